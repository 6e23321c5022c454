// A model of what OVMF does with an SEV launch secret, executing the real firmware image: the CPU
// fetches (and checks) the image's own bytes at RIP — decrypted from DRAM with the guest's key — while
// this thread stands in for the firmware's logic. It reads the EFI secret table the owner injected
// into private memory (OVMF's SecretDxe exposes it to the OS the same way).
import { AbiDecodeError, type EfiSecretEntry, decodeEfiSecretTable, parseOvmfFooter } from '../abi/index.js';
import { type GuestSoftware, type GuestThread, PAGE_SIZE } from '../soc/index.js';
import { insn } from './kernel.js';

const FOUR_GIB = 0x1_0000_0000;

/**
 * Where the secret goes when the image publishes no SEV secret area (Debian's OVMF.fd builds without
 * the AmdSev secret page): a private page of low RAM, by convention between the host and this model.
 */
export const DEFAULT_SECRET_GPA = 0x10_0000;

export class OvmfFirmwareModel implements GuestSoftware {
  readonly codeBase: number;
  readonly code: Buffer;
  /** GPA and size of the secret area the firmware reads. */
  readonly secretArea: { readonly gpa: number; readonly size: number };
  /** What the guest found in its secret area (undefined until it ran; empty if there was no table). */
  secrets: readonly EfiSecretEntry[] | undefined;
  /** Why the secret area held no table, if it did not. */
  secretProblem: string | undefined;

  constructor(image: Buffer) {
    this.code = image;
    this.codeBase = FOUR_GIB - image.length;
    const area = parseOvmfFooter(image).sevSecretArea;
    this.secretArea =
      area !== undefined && area.size > 0
        ? { gpa: area.base, size: area.size }
        : { gpa: DEFAULT_SECRET_GPA, size: PAGE_SIZE };
  }

  *start(): GuestThread {
    // Paging is off: this load is private, decrypted with the VEK the PSP wrote the secret under.
    const bytes = (yield { op: 'load', va: this.secretArea.gpa, length: this.secretArea.size }) as Buffer;
    try {
      // Past the table the page holds whatever it held before (decrypted noise): read like Linux does.
      this.secrets = decodeEfiSecretTable(bytes, { trailing: 'any' }).entries;
    } catch (err) {
      this.secrets = [];
      this.secretProblem = err instanceof AbiDecodeError ? err.message : String(err);
    }
    for (;;) yield* insn.hltForever();
  }

  toJSON(): string {
    return '[OvmfFirmwareModel]';
  }
}
