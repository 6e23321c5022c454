// The SEV-SNP launch digest (GCTX.LD): what SNP_LAUNCH_UPDATE folds into it for each 4 KiB page
// (ASPFW sev_mcmd.c snp_mcmd_launch_update; sev-reference §7.5 and §11 fact 6).
//
//   LD₀ = 0^48
//   LDₙ₊₁ = SHA-384(PAGE_INFO{ DIGEST_CUR = LDₙ, CONTENTS, LENGTH 0x70, type, IMI, perms, GPA })
//
// CONTENTS is SHA-384 of the page for NORMAL and VMSA pages (VMSA with GUEST_TSC_SCALE/OFFSET read as
// zero) and 48 zero bytes for every other type — which still extend the digest. The module is shared
// by the guest owner's calculator and the simulated PSP, so it is pure (node:crypto only) and hashes
// pages in place, never copying them.
import { createHash } from 'node:crypto';
import { StructLayout } from './layout.js';

/** Bytes of a launch digest and of PAGE_INFO's CONTENTS: one SHA-384. */
export const SNP_LAUNCH_DIGEST_SIZE = 48;
/** The unit SNP_LAUNCH_UPDATE measures: a 2 MiB page is measured as 512 of these. */
export const SNP_PAGE_SIZE = 0x1000;
/** PAGE_INFO's size, which is also the value of its LENGTH field. */
export const SNP_PAGE_INFO_SIZE = 0x70;
/** The RMP keeps GPA bits 51:12, so a measured GPA is below 2^52 and page aligned. */
export const SNP_MAX_GPA = (1n << 52n) - BigInt(SNP_PAGE_SIZE);

/** SNP_LAUNCH_UPDATE page types (ASPFW sev_mcmd.h SNP_PAGE_TYPE_*; Linux psp-sev.h; sev-reference §7.4). */
export const SnpPageType = {
  /** Invalid: the firmware answers INVALID_PARAM. */
  RESERVED: 0,
  /** Guest data, measured (SHA-384 of the page) and encrypted as given. */
  NORMAL: 1,
  /** A vCPU save area: measured with the TSC fields read as zero, then set up by the firmware. */
  VMSA: 2,
  /** Zeroed by the firmware; extends the digest with zero CONTENTS. */
  ZERO: 3,
  /** Encrypted as given but not measured; still extends the digest with zero CONTENTS. */
  UNMEASURED: 4,
  /** Overwritten with the secrets page (VMPCKs, …); zero CONTENTS. */
  SECRETS: 5,
  /** The hypervisor's CPUID table, checked by the firmware; zero CONTENTS. */
  CPUID: 6,
} as const;
export type SnpPageTypeName = keyof typeof SnpPageType;
export type SnpPageTypeValue = (typeof SnpPageType)[SnpPageTypeName];

const PAGE_TYPE_NAMES = Object.keys(SnpPageType) as readonly SnpPageTypeName[];

/** The name of a page type ("NORMAL", …), or undefined for a value outside 0..6. */
export function snpPageTypeName(type: number): SnpPageTypeName | undefined {
  return PAGE_TYPE_NAMES.find((n) => SnpPageType[n] === type);
}

/** Whether a page type is one SNP_LAUNCH_UPDATE accepts (RESERVED is not). */
export function isSnpPageType(type: number): type is Exclude<SnpPageTypeValue, 0> {
  return Number.isInteger(type) && type >= SnpPageType.NORMAL && type <= SnpPageType.CPUID;
}

// ASPFW sev_mcmd.h snp_mcmd_launch_update_page_info_t (0x70 bytes, packed); sev-reference §7.5.
//
// Bytes 0x64..0x67 follow AMD's firmware source: reserved, VMPL1, VMPL2, VMPL3. sev-snp-measure
// (gctx.py) and virtee/sev (measurement/gctx.rs) write them the other way round (VMPL3, VMPL2, VMPL1,
// reserved); both orders give the same bytes — and digests — whenever the three permissions are 0,
// as in every QEMU/KVM, OVMF and SVSM launch.
export const SnpPageInfo = new StructLayout('SNP PAGE_INFO', SNP_PAGE_INFO_SIZE, {
  digestCur: { offset: 0x00, type: 'bytes', length: SNP_LAUNCH_DIGEST_SIZE },
  contents: { offset: 0x30, type: 'bytes', length: SNP_LAUNCH_DIGEST_SIZE },
  length: { offset: 0x60, type: 'u16' },
  pageType: { offset: 0x62, type: 'u8' },
  /** Bit 0 IMI_PAGE; bits 7:1 reserved. */
  imiPage: { offset: 0x63, type: 'u8' },
  reserved: { offset: 0x64, type: 'u8' },
  vmpl1Perms: { offset: 0x65, type: 'u8' },
  vmpl2Perms: { offset: 0x66, type: 'u8' },
  vmpl3Perms: { offset: 0x67, type: 'u8' },
  /** RMP.GPA of the page: a byte address, page aligned. */
  gpa: { offset: 0x68, type: 'u64' },
});

/** Where the firmware reads GUEST_TSC_SCALE and GUEST_TSC_OFFSET in a VMSA (ASPFW sev_es.h). */
export const VMSA_TSC_FIELDS = { offset: 0x2f0, length: 0x10 } as const;

/** A page of SNP_LAUNCH_UPDATE as it enters PAGE_INFO. */
export interface SnpMeasuredPage {
  /** NORMAL … CPUID (RESERVED is refused, as the firmware refuses it). */
  readonly type: number;
  /** CONTENTS: 48 bytes — {@link snpPageContents} gives them for each type. */
  readonly contents: Uint8Array;
  /** The page's RMP.GPA (KVM gives VMSA pages 0xFFFFFFFFF000). */
  readonly gpa: bigint;
  /** IMI_PAGE: the page also extends GCTX.IMD (the caller folds that digest with the same function). */
  readonly imi?: boolean;
  /** VMPL1, VMPL2, VMPL3 permission masks (SNP_LAUNCH_UPDATE bits 15:8, 23:16, 31:24); default 0. */
  readonly vmplPerms?: readonly [number, number, number];
}

/** Inputs that cannot be a PAGE_INFO the firmware builds; `field` names the PAGE_INFO field. */
export class SnpPageInfoError extends RangeError {
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`SNP PAGE_INFO ${field}: ${reason}`);
    this.name = 'SnpPageInfoError';
  }
}

const ZERO_TSC = Buffer.alloc(VMSA_TSC_FIELDS.length);

const isZero = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0);

function checkPage(page: SnpMeasuredPage): void {
  if (!isSnpPageType(page.type))
    throw new SnpPageInfoError(
      'pageType',
      `${page.type} is not a page type SNP_LAUNCH_UPDATE accepts (1..6)`,
    );
  if (page.contents.length !== SNP_LAUNCH_DIGEST_SIZE)
    throw new SnpPageInfoError(
      'contents',
      `must be ${SNP_LAUNCH_DIGEST_SIZE} bytes, got ${page.contents.length}`,
    );
  // The firmware computes CONTENTS itself; only NORMAL and VMSA pages ever have non-zero ones.
  if (page.type !== SnpPageType.NORMAL && page.type !== SnpPageType.VMSA && !isZero(page.contents))
    throw new SnpPageInfoError(
      'contents',
      `a ${snpPageTypeName(page.type)} page is measured with zero contents`,
    );
  if (page.gpa < 0n || page.gpa > SNP_MAX_GPA || (page.gpa & BigInt(SNP_PAGE_SIZE - 1)) !== 0n)
    throw new SnpPageInfoError(
      'gpa',
      `0x${page.gpa.toString(16)} is not a page-aligned GPA below 2^52 (what the RMP can hold)`,
    );
  for (const [i, p] of (page.vmplPerms ?? []).entries())
    if (!Number.isInteger(p) || p < 0 || p > 0xff)
      throw new SnpPageInfoError(`vmpl${i + 1}Perms`, `${p} is not a byte`);
}

/**
 * The 0x70-byte PAGE_INFO the firmware hashes for one 4 KiB page, written into `out` (a fresh buffer by
 * default) — for a PSP model that keeps one buffer per guest, or a test that reads it back.
 */
export function encodeSnpPageInfo(
  current: Uint8Array,
  page: SnpMeasuredPage,
  out: Buffer = Buffer.alloc(SNP_PAGE_INFO_SIZE),
): Buffer {
  if (current.length !== SNP_LAUNCH_DIGEST_SIZE)
    throw new SnpPageInfoError('digestCur', `must be ${SNP_LAUNCH_DIGEST_SIZE} bytes, got ${current.length}`);
  checkPage(page);
  if (out.length !== SNP_PAGE_INFO_SIZE) throw new RangeError(`PAGE_INFO is ${SNP_PAGE_INFO_SIZE} bytes`);
  const [vmpl1Perms, vmpl2Perms, vmpl3Perms] = page.vmplPerms ?? [0, 0, 0];
  const f = SnpPageInfo.fields;
  // Written field by field at the layout's offsets: this runs once per measured page (512 times for a
  // 2 MiB OVMF), and StructLayout.write's generic path would double its cost.
  out.set(current, f.digestCur.offset);
  out.set(page.contents, f.contents.offset);
  out.writeUInt16LE(SNP_PAGE_INFO_SIZE, f.length.offset);
  out[f.pageType.offset] = page.type;
  out[f.imiPage.offset] = page.imi === true ? 1 : 0;
  out[f.reserved.offset] = 0;
  out[f.vmpl1Perms.offset] = vmpl1Perms;
  out[f.vmpl2Perms.offset] = vmpl2Perms;
  out[f.vmpl3Perms.offset] = vmpl3Perms;
  out.writeBigUInt64LE(page.gpa, f.gpa.offset);
  return out;
}

/**
 * The launch digest after one more 4 KiB page: SHA-384 of its PAGE_INFO with DIGEST_CUR = `current`.
 * Start from 48 zero bytes ({@link snpInitialLaunchDigest}). For an IMI page the firmware also
 * extends GCTX.IMD: call this again with the IMD as `current`.
 */
export function extendSnpLaunchDigest(current: Uint8Array, page: SnpMeasuredPage): Buffer {
  return createHash('sha384').update(encodeSnpPageInfo(current, page)).digest();
}

/** GCTX.LD after SNP_GCTX_CREATE: 48 zero bytes (a fresh buffer each time, so no caller can share it). */
export function snpInitialLaunchDigest(): Buffer {
  return Buffer.alloc(SNP_LAUNCH_DIGEST_SIZE);
}

function checkPageBytes(type: number, page: Uint8Array | undefined): Uint8Array {
  if (page === undefined)
    throw new RangeError(`a ${snpPageTypeName(type)} page is measured by its bytes: give the 4 KiB page`);
  if (page.length !== SNP_PAGE_SIZE)
    throw new RangeError(`a measured page is ${SNP_PAGE_SIZE} bytes, got ${page.length}`);
  return page;
}

/**
 * CONTENTS for a page of the given type, as the firmware computes it: SHA-384 of the 4 KiB page for
 * NORMAL, SHA-384 of the VMSA with bytes 0x2F0..0x2FF (GUEST_TSC_SCALE, GUEST_TSC_OFFSET) read as zero
 * for VMSA — hashed around them, so the caller's page is neither copied nor changed — and 48 zero bytes
 * for ZERO, UNMEASURED, SECRETS and CPUID (whose `page` is not needed).
 */
export function snpPageContents(type: number, page?: Uint8Array): Buffer {
  switch (type) {
    case SnpPageType.NORMAL:
      return createHash('sha384').update(checkPageBytes(type, page)).digest();
    case SnpPageType.VMSA: {
      const p = checkPageBytes(type, page);
      const { offset, length } = VMSA_TSC_FIELDS;
      return createHash('sha384')
        .update(p.subarray(0, offset))
        .update(ZERO_TSC)
        .update(p.subarray(offset + length))
        .digest();
    }
    case SnpPageType.ZERO:
    case SnpPageType.UNMEASURED:
    case SnpPageType.SECRETS:
    case SnpPageType.CPUID:
      return Buffer.alloc(SNP_LAUNCH_DIGEST_SIZE);
    default:
      throw new SnpPageInfoError('pageType', `${type} is not a page type SNP_LAUNCH_UPDATE accepts (1..6)`);
  }
}

/**
 * Extends `current` by consecutive NORMAL pages of `data` starting at `gpa` — one SNP_LAUNCH_UPDATE of
 * a range, e.g. the firmware image (sev-snp-measure's "OVMF hash" is this from the zero digest).
 */
export function extendSnpLaunchDigestNormal(current: Uint8Array, gpa: bigint, data: Uint8Array): Buffer {
  if (data.length % SNP_PAGE_SIZE !== 0)
    throw new RangeError(`${data.length} bytes is not a whole number of 4 KiB pages`);
  let ld: Uint8Array = current;
  const info = Buffer.alloc(SNP_PAGE_INFO_SIZE);
  for (let at = 0; at < data.length; at += SNP_PAGE_SIZE) {
    const contents = createHash('sha384')
      .update(data.subarray(at, at + SNP_PAGE_SIZE))
      .digest();
    const page = { type: SnpPageType.NORMAL, contents, gpa: gpa + BigInt(at) };
    ld = createHash('sha384')
      .update(encodeSnpPageInfo(ld, page, info))
      .digest();
  }
  return Buffer.from(ld);
}
