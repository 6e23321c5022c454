// The SEV-SNP secrets page, one 4 KiB page the PSP writes at SNP_LAUNCH_UPDATE of a SECRETS page
// (sev-reference §7.9; ASPFW sev_mcmd.h snp_launch_update_secrets_page_t, Linux asm/sev.h
// snp_secrets_page). The PSP encodes it; the guest decodes it to find its VMPCKs.
import { AbiDecodeError, StructLayout, type Decoded } from './layout.js';

export const SNP_SECRETS_PAGE_SIZE = 0x1000;
/**
 * The version the PSP writes: 3, as the Genoa 1.55 firmware source does (ASPFW
 * SNP_LAUNCH_UPDATE_SECRETS_PAGE_VERSION); the sev-tool header says 2. Both are accepted on decode.
 */
export const SNP_SECRETS_PAGE_VERSION = 3;
export const SNP_SECRETS_PAGE_VERSIONS = [2, 3] as const;
/** Bytes of one VM platform communication key. */
export const SNP_VMPCK_BYTES = 32;
/**
 * TSC_FACTOR the Genoa firmware writes: the 0.2 % mean slow-down of spread-spectrum clocking, in units of
 * 0.001 % (ASPFW TSC_FACTOR_GENOA = (100000 − 99600) / 2).
 */
export const SNP_TSC_FACTOR_GENOA = 200;

// ASPFW snp_launch_update_secrets_page_t; SVSM fields from Linux snp_secrets_page (ASPFW: "Reserved for
// guest OS usage")
export const SnpSecretsPageLayout = new StructLayout('SNP secrets page', SNP_SECRETS_PAGE_SIZE, {
  version: { offset: 0x000, type: 'u32' },
  /** bit 0 IMI_EN; bits 31:1 reserved. */
  imiEn: { offset: 0x004, type: 'u32' },
  /** CPUID Fn0000_0001 EAX: family, model, stepping. */
  fms: { offset: 0x008, type: 'u32' },
  reserved00c: { offset: 0x00c, type: 'u32' },
  gosvw: { offset: 0x010, type: 'bytes', length: 16 },
  vmpck0: { offset: 0x020, type: 'bytes', length: SNP_VMPCK_BYTES },
  vmpck1: { offset: 0x040, type: 'bytes', length: SNP_VMPCK_BYTES },
  vmpck2: { offset: 0x060, type: 'bytes', length: SNP_VMPCK_BYTES },
  vmpck3: { offset: 0x080, type: 'bytes', length: SNP_VMPCK_BYTES },
  /** 96 bytes for the guest OS (layout: SnpSecretsOsAreaLayout); the PSP leaves it zero. */
  osArea: { offset: 0x0a0, type: 'bytes', length: 0x60 },
  /** Which VMSA qwords the firmware's register-protection XOR tweak covers. */
  vmsaTweakBitmap: { offset: 0x100, type: 'bytes', length: 0x40 },
  svsmBase: { offset: 0x140, type: 'u64' },
  svsmSize: { offset: 0x148, type: 'u64' },
  svsmCaa: { offset: 0x150, type: 'u64' },
  svsmMaxVersion: { offset: 0x158, type: 'u32' },
  svsmGuestVmpl: { offset: 0x15c, type: 'u8' },
  reserved15d: { offset: 0x15d, type: 'bytes', length: 3 },
  tscFactor: { offset: 0x160, type: 'u32' },
  reserved164: { offset: 0x164, type: 'bytes', length: SNP_SECRETS_PAGE_SIZE - 0x164 },
});

// GHCB specification "secrets page OS area" = Linux secrets_os_area (the guest's per-VMPCK sequence numbers)
export const SnpSecretsOsAreaLayout = new StructLayout('SNP secrets page OS area', 0x60, {
  msgSeqno0: { offset: 0x00, type: 'u32' },
  msgSeqno1: { offset: 0x04, type: 'u32' },
  msgSeqno2: { offset: 0x08, type: 'u32' },
  msgSeqno3: { offset: 0x0c, type: 'u32' },
  apJumpTablePa: { offset: 0x10, type: 'u64' },
  reserved18: { offset: 0x18, type: 'bytes', length: 40 },
  guestUsage: { offset: 0x40, type: 'bytes', length: 32 },
});

/** What the PSP puts in a secrets page. */
export interface SnpSecretsPageInput {
  /** Default SNP_SECRETS_PAGE_VERSION (3). */
  version?: number;
  /** GCTX.IMI_EN. */
  imiEn: boolean;
  /** CPUID family/model/stepping signature. */
  fms: number;
  /** 16 bytes from SNP_LAUNCH_START. */
  gosvw: Uint8Array;
  /** VMPCK0..3, 32 bytes each. */
  vmpck: readonly [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  /** Default SNP_TSC_FACTOR_GENOA. */
  tscFactor?: number;
  /** 64 bytes; default zero (no register-protection tweak). */
  vmsaTweakBitmap?: Uint8Array;
}

/** A decoded secrets page, as the guest sees it. */
export interface SnpSecretsPage {
  version: number;
  imiEn: boolean;
  fms: number;
  gosvw: Buffer;
  /** VMPCK0..3. */
  vmpck: [Buffer, Buffer, Buffer, Buffer];
  osArea: Decoded<(typeof SnpSecretsOsAreaLayout)['fields']>;
  vmsaTweakBitmap: Buffer;
  svsm: { base: bigint; size: bigint; caa: bigint; maxVersion: number; guestVmpl: number };
  tscFactor: number;
}

const NAME = SnpSecretsPageLayout.name;

/**
 * The secrets page the PSP writes (ASPFW snp_mcmd_launch_update: the page is zeroed first, so the OS
 * area, the SVSM fields and every reserved byte are zero). Throws RangeError for wrongly sized keys.
 */
export function encodeSnpSecretsPage(input: SnpSecretsPageInput): Buffer {
  const need = (name: string, b: Uint8Array, n: number): Buffer => {
    if (b.length !== n) throw new RangeError(`${name} must be ${n} bytes, got ${b.length}`);
    return Buffer.from(b);
  };
  return SnpSecretsPageLayout.encode({
    version: input.version ?? SNP_SECRETS_PAGE_VERSION,
    imiEn: input.imiEn ? 1 : 0,
    fms: input.fms >>> 0,
    gosvw: need('gosvw', input.gosvw, 16),
    vmpck0: need('vmpck0', input.vmpck[0], SNP_VMPCK_BYTES),
    vmpck1: need('vmpck1', input.vmpck[1], SNP_VMPCK_BYTES),
    vmpck2: need('vmpck2', input.vmpck[2], SNP_VMPCK_BYTES),
    vmpck3: need('vmpck3', input.vmpck[3], SNP_VMPCK_BYTES),
    vmsaTweakBitmap: need('vmsaTweakBitmap', input.vmsaTweakBitmap ?? Buffer.alloc(0x40), 0x40),
    tscFactor: input.tscFactor ?? SNP_TSC_FACTOR_GENOA,
  });
}

/**
 * Decodes a secrets page. Throws AbiDecodeError (field, offset) for a buffer that is not 4 KiB, a
 * version other than 2 or 3, or a non-zero byte the firmware reserves (IMI_EN bits 31:1, 0x00C,
 * 0x164..0xFFF); the OS area and the SVSM fields belong to the guest and may hold anything.
 */
export function decodeSnpSecretsPage(buf: Uint8Array): SnpSecretsPage {
  if (buf.length !== SNP_SECRETS_PAGE_SIZE)
    throw new AbiDecodeError(NAME, 'page', 0, `expected ${SNP_SECRETS_PAGE_SIZE} bytes, got ${buf.length}`);
  const f = SnpSecretsPageLayout.decode(buf);
  if (!(SNP_SECRETS_PAGE_VERSIONS as readonly number[]).includes(f.version))
    throw new AbiDecodeError(NAME, 'version', 0, `unsupported version ${f.version} (known: 2, 3)`);
  if ((f.imiEn & ~1) !== 0)
    throw new AbiDecodeError(NAME, 'imiEn', 0x004, `reserved bits 31:1 set (0x${f.imiEn.toString(16)})`);
  if (f.reserved00c !== 0) throw new AbiDecodeError(NAME, 'reserved00c', 0x00c, 'reserved, must be zero');
  const rsvd = f.reserved164.findIndex((b) => b !== 0);
  if (rsvd >= 0) throw new AbiDecodeError(NAME, 'reserved164', 0x164 + rsvd, 'reserved, must be zero');
  return {
    version: f.version,
    imiEn: f.imiEn === 1,
    fms: f.fms,
    gosvw: f.gosvw,
    vmpck: [f.vmpck0, f.vmpck1, f.vmpck2, f.vmpck3],
    osArea: SnpSecretsOsAreaLayout.decode(f.osArea),
    vmsaTweakBitmap: f.vmsaTweakBitmap,
    svsm: {
      base: f.svsmBase,
      size: f.svsmSize,
      caa: f.svsmCaa,
      maxVersion: f.svsmMaxVersion,
      guestVmpl: f.svsmGuestVmpl,
    },
    tscFactor: f.tscFactor,
  };
}
