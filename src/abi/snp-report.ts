// The SEV-SNP attestation report, 0x4A0 bytes (sev-reference §7.11; go-sev-guest abi/abi.go
// ReportToProto and the SEV-SNP ABI spec "ATTESTATION_REPORT"), and TCB_VERSION per product (§7.8).
// Versions 2, 3 (CPUID family/model/stepping at 0x188) and 5 (mitigation vectors at 0x1F8/0x200) are
// decoded; bytes a version reserves must be zero, bytes it defines may be anything.
import { AbiDecodeError, StructLayout, type Decoded } from './layout.js';

export const SNP_REPORT_SIZE = 0x4a0;
/** The signature covers [0, 0x2A0). */
export const SNP_REPORT_SIGNED_LENGTH = 0x2a0;
/** SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384. */
export const SNP_SIG_ALGO_ECDSA_P384_SHA384 = 1;
/** Report versions this decoder knows (go-sev-guest accepts 2–5; 4 is laid out like 3). */
export const SNP_REPORT_VERSIONS = [2, 3, 4, 5] as const;

// sev-reference §7.11 (go-sev-guest abi.go: the offsets in ReportToProto)
export const SnpReportLayout = new StructLayout('SNP attestation report', SNP_REPORT_SIZE, {
  version: { offset: 0x000, type: 'u32' },
  guestSvn: { offset: 0x004, type: 'u32' },
  policy: { offset: 0x008, type: 'u64' },
  familyId: { offset: 0x010, type: 'bytes', length: 16 },
  imageId: { offset: 0x020, type: 'bytes', length: 16 },
  vmpl: { offset: 0x030, type: 'u32' },
  signatureAlgo: { offset: 0x034, type: 'u32' },
  currentTcb: { offset: 0x038, type: 'u64' },
  platformInfo: { offset: 0x040, type: 'u64' },
  /** bit0 AUTHOR_KEY_EN, bit1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY. */
  signerInfo: { offset: 0x048, type: 'u32' },
  reserved04c: { offset: 0x04c, type: 'u32' },
  reportData: { offset: 0x050, type: 'bytes', length: 64 },
  measurement: { offset: 0x090, type: 'bytes', length: 48 },
  hostData: { offset: 0x0c0, type: 'bytes', length: 32 },
  idKeyDigest: { offset: 0x0e0, type: 'bytes', length: 48 },
  authorKeyDigest: { offset: 0x110, type: 'bytes', length: 48 },
  reportId: { offset: 0x140, type: 'bytes', length: 32 },
  reportIdMa: { offset: 0x160, type: 'bytes', length: 32 },
  reportedTcb: { offset: 0x180, type: 'u64' },
  cpuidFamId: { offset: 0x188, type: 'u8' },
  cpuidModId: { offset: 0x189, type: 'u8' },
  cpuidStep: { offset: 0x18a, type: 'u8' },
  reserved18b: { offset: 0x18b, type: 'bytes', length: 0x1a0 - 0x18b },
  chipId: { offset: 0x1a0, type: 'bytes', length: 64 },
  committedTcb: { offset: 0x1e0, type: 'u64' },
  currentBuild: { offset: 0x1e8, type: 'u8' },
  currentMinor: { offset: 0x1e9, type: 'u8' },
  currentMajor: { offset: 0x1ea, type: 'u8' },
  reserved1eb: { offset: 0x1eb, type: 'u8' },
  committedBuild: { offset: 0x1ec, type: 'u8' },
  committedMinor: { offset: 0x1ed, type: 'u8' },
  committedMajor: { offset: 0x1ee, type: 'u8' },
  reserved1ef: { offset: 0x1ef, type: 'u8' },
  launchTcb: { offset: 0x1f0, type: 'u64' },
  launchMitVector: { offset: 0x1f8, type: 'u64' },
  currentMitVector: { offset: 0x200, type: 'u64' },
  reserved208: { offset: 0x208, type: 'bytes', length: 0x2a0 - 0x208 },
  signatureR: { offset: 0x2a0, type: 'bytes', length: 72 },
  signatureS: { offset: 0x2e8, type: 'bytes', length: 72 },
  reserved330: { offset: 0x330, type: 'bytes', length: SNP_REPORT_SIZE - 0x330 },
});

export type SnpReportFields = Decoded<(typeof SnpReportLayout)['fields']>;

/** SIGNING_KEY values (bits 4:2 at 0x48). */
export const SNP_SIGNING_KEY = { 0: 'VCEK', 1: 'VLEK', 7: 'none' } as const;
export type SnpSigningKey = 'VCEK' | 'VLEK' | 'none' | 'reserved';

export interface SnpReport extends SnpReportFields {
  /** The raw 0x4A0 bytes (a copy). */
  raw: Buffer;
  authorKeyEn: boolean;
  maskChipKey: boolean;
  signingKey: SnpSigningKey;
  /** CPUID family/model/stepping, v3+ only. */
  cpuid?: { family: number; model: number; stepping: number };
}

function isZero(b: Uint8Array): boolean {
  return b.every((x) => x === 0);
}

/**
 * Decodes a 0x4A0-byte report. Throws AbiDecodeError (field, offset, reason) for a wrong size, an
 * unknown version or a non-zero byte that the report's version reserves.
 */
export function decodeSnpReport(buf: Uint8Array): SnpReport {
  const name = SnpReportLayout.name;
  if (buf.length !== SNP_REPORT_SIZE)
    throw new AbiDecodeError(
      name,
      'report',
      0,
      `expected ${SNP_REPORT_SIZE} (0x4a0) bytes, got ${buf.length}`,
    );
  const f = SnpReportLayout.decode(buf);
  if (!(SNP_REPORT_VERSIONS as readonly number[]).includes(f.version))
    throw new AbiDecodeError(name, 'version', 0, `unsupported version ${f.version} (known: 2, 3, 4, 5)`);
  const mbz = (field: keyof SnpReportFields, nonZero: boolean): void => {
    if (nonZero)
      throw new AbiDecodeError(
        name,
        field,
        SnpReportLayout.fields[field].offset,
        `reserved in version ${f.version} but not zero`,
      );
  };
  if ((f.signerInfo & ~0x1f) >>> 0 !== 0)
    throw new AbiDecodeError(
      name,
      'signerInfo',
      0x48,
      `reserved bits 31:5 set (0x${f.signerInfo.toString(16)})`,
    );
  mbz('reserved04c', f.reserved04c !== 0);
  if (f.version < 3) {
    mbz('cpuidFamId', f.cpuidFamId !== 0);
    mbz('cpuidModId', f.cpuidModId !== 0);
    mbz('cpuidStep', f.cpuidStep !== 0);
  }
  mbz('reserved18b', !isZero(f.reserved18b));
  mbz('reserved1eb', f.reserved1eb !== 0);
  mbz('reserved1ef', f.reserved1ef !== 0);
  if (f.version < 5) {
    mbz('launchMitVector', f.launchMitVector !== 0n);
    mbz('currentMitVector', f.currentMitVector !== 0n);
  }
  mbz('reserved208', !isZero(f.reserved208));
  mbz('reserved330', !isZero(f.reserved330));
  const key = (f.signerInfo >> 2) & 7;
  const signingKey: SnpSigningKey = key === 0 ? 'VCEK' : key === 1 ? 'VLEK' : key === 7 ? 'none' : 'reserved';
  return {
    ...f,
    raw: Buffer.from(buf),
    authorKeyEn: (f.signerInfo & 1) !== 0,
    maskChipKey: (f.signerInfo & 2) !== 0,
    signingKey,
    ...(f.version >= 3
      ? { cpuid: { family: f.cpuidFamId, model: f.cpuidModId, stepping: f.cpuidStep } }
      : {}),
  };
}

/**
 * Encodes a report: the inverse of decodeSnpReport (omitted fields are zero, extra properties such as
 * those of a decoded SnpReport are ignored, so `encodeSnpReport(decodeSnpReport(b))` equals `b`). The
 * result is checked with decodeSnpReport, so a report the guest could not parse — unknown version, a
 * reserved byte set — throws AbiDecodeError here, in the PSP, rather than in the guest.
 */
export function encodeSnpReport(fields: Partial<SnpReportFields>): Buffer {
  const buf = SnpReportLayout.encode(fields);
  decodeSnpReport(buf);
  return buf;
}

/**
 * The bytes the report signature covers, [0, 0x2A0) — from raw report bytes or a decoded report. Throws
 * AbiDecodeError if raw bytes are not a whole report.
 */
export function snpReportSignedBytes(report: Uint8Array | SnpReport): Buffer {
  const raw = report instanceof Uint8Array ? report : report.raw;
  if (raw.length !== SNP_REPORT_SIZE)
    throw new AbiDecodeError(
      SnpReportLayout.name,
      'report',
      0,
      `expected ${SNP_REPORT_SIZE} (0x4a0) bytes, got ${raw.length}`,
    );
  return Buffer.from(raw.subarray(0, SNP_REPORT_SIGNED_LENGTH));
}

/** The two TCB_VERSION byte layouts (sev-reference §7.8). */
export type TcbLayout = 'milan-genoa' | 'turin';

/** A decoded TCB_VERSION: security patch levels of each firmware component. */
export interface TcbVersion {
  raw: bigint;
  layout: TcbLayout;
  /** Turin and later only. */
  fmc?: number;
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
}

/** Decodes a TCB_VERSION: Milan/Genoa bytes BL, TEE, -, -, -, -, SNP, UCODE; Turin FMC, BL, TEE, SNP, -, -, -, UCODE. */
export function decodeTcb(raw: bigint, layout: TcbLayout): TcbVersion {
  const byte = (i: number): number => Number((raw >> BigInt(8 * i)) & 0xffn);
  return layout === 'turin'
    ? { raw, layout, fmc: byte(0), bootloader: byte(1), tee: byte(2), snp: byte(3), microcode: byte(7) }
    : { raw, layout, bootloader: byte(0), tee: byte(1), snp: byte(6), microcode: byte(7) };
}

/** Encodes SPLs into a TCB_VERSION of the given layout. */
export function encodeTcb(t: Omit<TcbVersion, 'raw'>): bigint {
  const at = (v: number | undefined, i: number): bigint => BigInt(v ?? 0) << BigInt(8 * i);
  return t.layout === 'turin'
    ? at(t.fmc, 0) | at(t.bootloader, 1) | at(t.tee, 2) | at(t.snp, 3) | at(t.microcode, 7)
    : at(t.bootloader, 0) | at(t.tee, 1) | at(t.snp, 6) | at(t.microcode, 7);
}

/** The product a CPUID family/model names, for the TCB layout (Zen 3/4 = family 0x19, Zen 5 = 0x1A). */
export function productFromCpuid(family: number, model: number): string | undefined {
  if (family === 0x19) return model < 0x10 ? 'Milan' : 'Genoa';
  if (family === 0x1a) return 'Turin';
  return undefined;
}

/** Which TCB layout a product uses: Turin and later (family ≥ 0x1A) have the FMC layout. */
export function tcbLayoutFor(productName: string | undefined, cpuidFamily?: number): TcbLayout {
  if (cpuidFamily !== undefined && cpuidFamily >= 0x1a) return 'turin';
  if (productName !== undefined && /^(turin|venice)/i.test(productName)) return 'turin';
  return 'milan-genoa';
}
