// Application isolation inside one SNP guest (issue 4 §6), the way an SVSM-style design does it: a
// privileged component runs at VMPL0 and keeps an application's memory to itself; the guest's kernel
// runs at VMPL1. VMPL0 grants the kernel what it needs with RMPADJUST (code, page tables, its own
// data, a copy of VMPCK1) and nothing else: not the application's page, not the secrets page with
// VMPCK0. It then builds the kernel's VMSA (RMPADJUST sets the page's VMSA bit) and asks the host to
// run it (GHCB AP creation). The CPU enforces the rest: a kernel access to the application's page is
// a #NPF with the VMPL bit, the host reads ciphertext, and each report names the VMPL that asked.
//
// Both components are the same firmware image (the CPU checks each fetch against its bytes); which
// one runs is decided by the VMSA a vCPU starts from. The model's software gives out the component's
// thread to the first vCPU and the kernel's to the next.
import { createHash } from 'node:crypto';
import {
  CR0_PE,
  CR0_PG,
  Ghcb,
  GhcbExit,
  GHCB_PROTOCOL_VERSION,
  SevFeature,
  Vmsa,
  decodeSnpSecretsPage,
} from '../abi/index.js';
import {
  PAGE_SIZE,
  VmplPerm,
  type GuestSoftware,
  type GuestThread,
  type PagingFormat,
  type RmpInstructionResult,
} from '../soc/index.js';
import { insn, type Step } from './kernel.js';
import {
  firmwarePages,
  requestSnpReport,
  snpIdentityPageTables,
  type SnpReportOutcome,
} from './snp-attestation-agent.js';

const FOUR_GIB = 0x1_0000_0000;
/** EFER.LME | LMA | SVME: the kernel's VMSA starts in long mode. */
const EFER_LONG_MODE = 0x1500n;

export interface VmplLayout {
  readonly paging: PagingFormat;
  readonly secretsGpa: number;
  /** Validated private pages (OVMF's SNP_SEC_MEM): page tables first, then the pages below. */
  readonly pageTableGpa: number;
  /** The application's page (VMPL0 only). */
  readonly appGpa: number;
  /** The page that becomes the kernel's VMSA. */
  readonly kernelVmsaGpa: number;
  /** The kernel's data page, and the page where VMPL0 leaves it VMPCK1. */
  readonly kernelDataGpa: number;
  readonly kernelKeyGpa: number;
  /** Three shared pages each for the component's and the kernel's requests. */
  readonly componentSharedGpa: number;
  readonly kernelSharedGpa: number;
}

/** What each party ended up with (read by the scenario that narrates it). */
export interface VmplOutcome {
  /** RMPADJUST statuses of the grants (all 0 when VMPL0 could give them). */
  grantStatuses: number[];
  componentReport?: SnpReportOutcome;
  kernelReport?: SnpReportOutcome;
  /** The kernel asking, with VMPCK1, for a VMPL0 report (the firmware must refuse). */
  kernelImpersonation?: SnpReportOutcome;
  /** The kernel read its own data page back. */
  kernelDataOk?: boolean;
  /** Set just before the kernel touches the application's page (it should never get further). */
  kernelTouchedApp?: boolean;
  /** Bytes the kernel obtained from the application's page, if it ever did. */
  kernelGotApp?: Buffer;
}

export class VmplPartitionedFirmware implements GuestSoftware {
  readonly codeBase: number;
  readonly code: Buffer;
  readonly outcome: VmplOutcome = { grantStatuses: [] };
  #threads = 0;

  constructor(
    image: Buffer,
    readonly layout: VmplLayout,
    /** The application's secret, placed in its page by VMPL0. */
    readonly appSecret: Buffer,
  ) {
    this.code = image;
    this.codeBase = FOUR_GIB - image.length;
  }

  start(): GuestThread {
    // The BSP boots the VMPL0 component; the vCPU it creates runs the VMPL1 kernel.
    return this.#threads++ === 0 ? this.#component() : this.#kernel();
  }

  #tables(): { gpa: number; bytes: Buffer }[] {
    const l = this.layout;
    const shared = [l.componentSharedGpa, l.kernelSharedGpa].flatMap((base) =>
      [0, 1, 2].map((i) => base + i * PAGE_SIZE),
    );
    return snpIdentityPageTables({
      paging: l.paging,
      pageTableGpa: l.pageTableGpa,
      privatePages: [...firmwarePages(this.code), l.secretsGpa],
      sharedPages: shared,
    });
  }

  *#grant(gpa: number, perms: number, vmsa = false): Step<void> {
    const r = (yield {
      op: 'rmpadjust',
      va: gpa,
      size: '4K',
      targetVmpl: 1,
      perms,
      vmsa,
    }) as RmpInstructionResult;
    this.outcome.grantStatuses.push(r.status);
  }

  *#component(): GuestThread {
    const l = this.layout;
    const tables = this.#tables();
    for (const { gpa, bytes } of tables) yield* insn.store(gpa, bytes);
    yield { op: 'writeCr3', value: l.paging.withCBit(l.pageTableGpa) };
    yield { op: 'enablePaging' };

    // The application's secret lives in VMPL0's memory only.
    yield* insn.store(l.appGpa, this.appSecret);

    // What the kernel may use: the image (read, execute), the page tables (read), its own pages.
    const exec = VmplPerm.READ | VmplPerm.EXEC_SUPERVISOR;
    for (const gpa of firmwarePages(this.code)) yield* this.#grant(gpa, exec);
    for (const { gpa } of tables) yield* this.#grant(gpa, VmplPerm.READ);
    yield* this.#grant(l.kernelDataGpa, VmplPerm.READ | VmplPerm.WRITE);
    yield* this.#grant(l.kernelKeyGpa, VmplPerm.READ);

    // The kernel gets VMPCK1, never VMPCK0: the secrets page itself stays VMPL0's.
    const secrets = decodeSnpSecretsPage(yield* insn.load(l.secretsGpa, PAGE_SIZE));
    yield* insn.store(l.kernelKeyGpa, secrets.vmpck[1]);

    this.outcome.componentReport = yield* requestSnpReport({
      vmpck: secrets.vmpck[0],
      vmpckIndex: 0,
      seqno: 1n,
      vmpl: 0,
      reportData: createHash('sha512').update(this.appSecret).digest(),
      sharedGpa: l.componentSharedGpa,
    });

    // The kernel's vCPU: a VMSA at VMPL1, in long mode on these page tables, at the kernel's entry.
    const vmsa = Vmsa.encode({
      vmpl: 1,
      cpl: 0,
      efer: EFER_LONG_MODE,
      cr0: CR0_PG | CR0_PE,
      cr3: BigInt(l.paging.withCBit(l.pageTableGpa)),
      rip: BigInt(this.codeBase + PAGE_SIZE),
      rflags: 2n,
      sevFeatures: SevFeature.SNP_ACTIVE,
    });
    yield* insn.store(l.kernelVmsaGpa, vmsa);
    // VMPL1 gets no rights on its own VMSA; the VMSA bit makes it one.
    yield* this.#grant(l.kernelVmsaGpa, 0, true);
    const ghcbGpa = l.componentSharedGpa;
    yield* insn.store(
      ghcbGpa,
      Ghcb.encode({
        swExitCode: BigInt(GhcbExit.AP_CREATION),
        swExitInfo1: 1n,
        swExitInfo2: BigInt(l.kernelVmsaGpa),
        protocolVersion: GHCB_PROTOCOL_VERSION,
      }),
    );
    yield { op: 'vmgexit', ghcbGpa };
    for (;;) yield* insn.hltForever();
  }

  *#kernel(): GuestThread {
    const l = this.layout;
    const o = this.outcome;
    yield* insn.store(l.kernelDataGpa, Buffer.from('kernel data'));
    o.kernelDataOk = (yield* insn.load(l.kernelDataGpa, 11)).equals(Buffer.from('kernel data'));
    const vmpck1 = yield* insn.load(l.kernelKeyGpa, 32);
    o.kernelReport = yield* requestSnpReport({
      vmpck: vmpck1,
      vmpckIndex: 1,
      seqno: 1n,
      vmpl: 1,
      reportData: Buffer.alloc(64, 0x4b),
      sharedGpa: l.kernelSharedGpa,
    });
    o.kernelImpersonation = yield* requestSnpReport({
      vmpck: vmpck1,
      vmpckIndex: 1,
      seqno: 3n,
      vmpl: 0,
      reportData: Buffer.alloc(64, 0x4b),
      sharedGpa: l.kernelSharedGpa,
    });
    o.kernelTouchedApp = true;
    o.kernelGotApp = yield* insn.load(l.appGpa, this.appSecret.length);
    for (;;) yield* insn.hltForever();
  }

  toJSON(): string {
    return '[VmplPartitionedFirmware]';
  }
}
