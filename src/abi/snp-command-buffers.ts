// SEV-SNP command buffer layouts and their reserved fields (sev-reference §7.4; ASPFW sev_mcmd.h
// snp_mcmd_*_t, the ground truth; Linux include/linux/psp-sev.h sev_data_snp_*). The firmware rejects a
// command whose reserved bits are not zero with INVALID_PARAM before it looks at anything else, so each
// layout lists its reserved ranges and `reservedNonZero` finds the first one that is set.
import { AbiDecodeError, type Decoded, type FieldSpecs, StructLayout } from './layout.js';

/**
 * A reserved range: `length` bytes at `offset`, all of which must be zero, or — with `mask` — the bits of
 * `mask` in the little-endian integer those bytes hold (length ≤ 8), e.g. the low 12 bits of a page
 * address, which the firmware reserves (ASPFW SNP_ADDR_RESERVED_MASK).
 */
export interface ReservedRange {
  /** Name used in errors, e.g. "gctxPaddr[11:0]". */
  readonly name: string;
  readonly offset: number;
  readonly length: number;
  readonly mask?: bigint;
}

/** The first reserved range found non-zero: its name, byte offset and the offending (masked) value. */
export interface ReservedViolation {
  field: string;
  offset: number;
  value: bigint;
}

function leValue(buf: Uint8Array, at: number, length: number): bigint {
  let v = 0n;
  for (let i = length - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[at + i] as number);
  return v;
}

/** A StructLayout that also knows which of its bits the firmware reserves (must be zero). */
export class ReservedCheckedLayout<S extends FieldSpecs> extends StructLayout<S> {
  constructor(
    name: string,
    size: number,
    fields: S,
    /** Reserved ranges in offset order, so the first violation is the lowest one. */
    readonly reserved: readonly ReservedRange[],
  ) {
    super(name, size, fields);
    for (const r of reserved) {
      if (r.offset + r.length > size) throw new Error(`${name}.${r.name} overruns the ${size}-byte layout`);
      if (r.mask !== undefined && r.length > 8) throw new Error(`${name}.${r.name}: a mask needs ≤ 8 bytes`);
    }
  }

  /**
   * The first reserved range that is not zero, or undefined when all are; the firmware answers
   * INVALID_PARAM for any. Throws AbiDecodeError if `buf` is shorter than the layout.
   */
  reservedNonZero(buf: Uint8Array, offset = 0): ReservedViolation | undefined {
    if (buf.byteLength - offset < this.size)
      throw new AbiDecodeError(
        this.name,
        'buffer',
        0,
        `buffer ends at ${buf.byteLength - offset} bytes, layout needs ${this.size}`,
      );
    for (const r of this.reserved) {
      const at = offset + r.offset;
      if (r.mask === undefined) {
        for (let i = 0; i < r.length; i++)
          if (buf[at + i] !== 0)
            return { field: r.name, offset: r.offset + i, value: BigInt(buf[at + i] as number) };
      } else {
        const value = leValue(buf, at, r.length) & r.mask;
        if (value !== 0n) return { field: r.name, offset: r.offset, value };
      }
    }
    return undefined;
  }

  /** Decodes like `decode`, then throws AbiDecodeError naming the first reserved range that is set. */
  decodeChecked(buf: Uint8Array, offset = 0): Decoded<S> {
    const bad = this.reservedNonZero(buf, offset);
    if (bad !== undefined)
      throw new AbiDecodeError(
        this.name,
        bad.field,
        bad.offset,
        `reserved, must be zero (found 0x${bad.value.toString(16)})`,
      );
    return this.decode(buf, offset);
  }
}

/** The low 12 bits of an address the firmware takes as a page address (ASPFW SNP_ADDR_RESERVED_MASK). */
const PAGE_OFFSET_MASK = 0xfffn;
const pageAddr = (name: string, offset: number): ReservedRange => ({
  name: `${name}[11:0]`,
  offset,
  length: 8,
  mask: PAGE_OFFSET_MASK,
});

// ---------------------------------------------------------------------------------------------------
// Platform commands

// SNP_PLATFORM_STATUS: ASPFW sev_mcmd.h snp_mcmd_platform_status_t (only the output address)
export const SnpPlatformStatusBuffer = new ReservedCheckedLayout(
  'SNP_PLATFORM_STATUS command buffer',
  0x08,
  { statusPaddr: { offset: 0x00, type: 'u64' } },
  [],
);

// SNP_PLATFORM_STATUS output: ASPFW snp_platform_status_buffer_t = Linux uapi sev_user_data_snp_status
export const SnpPlatformStatus = new ReservedCheckedLayout(
  'SNP_PLATFORM_STATUS output',
  0x20,
  {
    apiMajor: { offset: 0x00, type: 'u8' },
    apiMinor: { offset: 0x01, type: 'u8' },
    state: { offset: 0x02, type: 'u8' },
    /** bit 0 IS_RMP_INITIALIZED. */
    rmpFlags: { offset: 0x03, type: 'u8' },
    buildId: { offset: 0x04, type: 'u32' },
    /** SNP_PLATFORM_STATUS_FLAG bits. */
    flags: { offset: 0x08, type: 'u32' },
    guestCount: { offset: 0x0c, type: 'u32' },
    currentTcb: { offset: 0x10, type: 'u64' },
    reportedTcb: { offset: 0x18, type: 'u64' },
  },
  [
    { name: 'rmpFlags[7:1]', offset: 0x03, length: 1, mask: 0xfen },
    { name: 'flags[31:7]', offset: 0x08, length: 4, mask: 0xffffff80n },
  ],
);
/** SNP_PLATFORM_STATUS byte 3 bit 0: the RMP is initialised. */
export const SNP_PLATFORM_STATUS_RMP_INITIALIZED = 0x1;
/**
 * SNP_PLATFORM_STATUS flags at 0x08. Bits 0–3 are in ASPFW (Genoa 1.55); bits 4–6 only in Linux's uapi
 * for newer firmware (RAPL_DIS, ciphertext hiding), which the Genoa source keeps reserved.
 */
export const SNP_PLATFORM_STATUS_FLAG = {
  MASK_CHIP_ID: 1 << 0,
  MASK_CHIP_KEY: 1 << 1,
  VLEK_EN: 1 << 2,
  FEATURE_INFO: 1 << 3,
  RAPL_DIS: 1 << 4,
  CIPHERTEXT_HIDING_CAP: 1 << 5,
  CIPHERTEXT_HIDING_EN: 1 << 6,
} as const;

// SNP_INIT_EX: ASPFW sev_mcmd.h snp_mcmd_init_ex_t (0x40 bytes). Linux names flag bits 2–4 (RAPL_DIS,
// CIPHERTEXT_HIDING_EN, TIO_EN) and a u16 MAX_SNP_ASID at 0x10 for newer firmware; the Genoa source
// reserves all of them, and so does this layout (it follows ASPFW).
export const SnpInitExBuffer = new ReservedCheckedLayout(
  'SNP_INIT_EX command buffer',
  0x40,
  {
    /** SNP_INIT_EX_FLAG bits. */
    flags: { offset: 0x00, type: 'u32' },
    listPaddr: { offset: 0x08, type: 'u64' },
  },
  [
    { name: 'flags[31:2]', offset: 0x00, length: 4, mask: 0xfffffffcn },
    { name: 'reserved04', offset: 0x04, length: 4 },
    { name: 'reserved10', offset: 0x10, length: 0x30 },
  ],
);
/** SNP_INIT_EX flags: initialise the RMP; LIST_PADDR names a RANGE_LIST of pages to make HV_FIXED. */
export const SNP_INIT_EX_FLAG = { INIT_RMP: 1 << 0, LIST_PADDR_EN: 1 << 1 } as const;

// SNP_SHUTDOWN_EX: ASPFW sev_mcmd.h snp_mcmd_shutdown_ex_t = Linux sev_data_snp_shutdown_ex
export const SnpShutdownExBuffer = new ReservedCheckedLayout(
  'SNP_SHUTDOWN_EX command buffer',
  0x08,
  {
    length: { offset: 0x00, type: 'u32' },
    /** SNP_SHUTDOWN_EX_FLAG bits. */
    flags: { offset: 0x04, type: 'u32' },
  },
  [{ name: 'flags[31:2]', offset: 0x04, length: 4, mask: 0xfffffffcn }],
);
/** SNP_SHUTDOWN_EX flags: also disable SNP enforcement in the IOMMU / on all cores. */
export const SNP_SHUTDOWN_EX_FLAG = { IOMMU_SNP_SHUTDOWN: 1 << 0, X86_SNP_SHUTDOWN: 1 << 1 } as const;

// SNP_CONFIG (Linux SNP_SET_CONFIG): ASPFW sev_mcmd.h snp_mcmd_config_t = Linux uapi sev_user_data_snp_config
export const SnpConfigBuffer = new ReservedCheckedLayout(
  'SNP_CONFIG command buffer',
  0x40,
  {
    /** TCB to report and sign with; 0 means the committed TCB. */
    reportedTcb: { offset: 0x00, type: 'u64' },
    /** SNP_CONFIG_FLAG bits. */
    flags: { offset: 0x08, type: 'u32' },
  },
  [
    { name: 'flags[31:2]', offset: 0x08, length: 4, mask: 0xfffffffcn },
    { name: 'reserved0c', offset: 0x0c, length: 0x34 },
  ],
);
/** SNP_CONFIG flags: zero CHIP_ID in reports; refuse to sign with (and derive from) the VCEK. */
export const SNP_CONFIG_FLAG = { MASK_CHIP_ID: 1 << 0, MASK_CHIP_KEY: 1 << 1 } as const;

// SNP_COMMIT: ASPFW sev_mcmd.h snp_mcmd_commit_t = Linux sev_data_snp_commit (LENGTH only)
export const SnpCommitBuffer = new ReservedCheckedLayout(
  'SNP_COMMIT command buffer',
  0x04,
  { length: { offset: 0x00, type: 'u32' } },
  [],
);
/** SNP_COMMIT's LENGTH must equal the buffer size, else INVALID_PARAM (ASPFW snp_mcmd_commit). */
export const SNP_COMMIT_LENGTH = 0x04;

// SNP_VLEK_LOAD: ASPFW sev_mcmd.h snp_mcmd_vlek_load_t = Linux uapi sev_user_data_snp_vlek_load
export const SnpVlekLoadBuffer = new ReservedCheckedLayout(
  'SNP_VLEK_LOAD command buffer',
  0x10,
  {
    length: { offset: 0x00, type: 'u32' },
    /** Must be 0 (ASPFW snp_mcmd_vlek_load). */
    vlekWrappedVersion: { offset: 0x04, type: 'u8' },
    vlekWrappedPaddr: { offset: 0x08, type: 'u64' },
  },
  [{ name: 'reserved05', offset: 0x05, length: 3 }],
);
/** SNP_VLEK_LOAD's LENGTH must equal the buffer size (ASPFW snp_mcmd_vlek_load). */
export const SNP_VLEK_LOAD_LENGTH = 0x10;

// SNP_PAGE_RECLAIM: ASPFW sev_mcmd.h snp_mcmd_page_reclaim_t (bit 0 = 2 MiB page, bits 11:1 reserved:
// SNP_ADDR_PAGE_RECLAIM_RESERVED_MASK 0xFFE)
export const SnpPageReclaimBuffer = new ReservedCheckedLayout(
  'SNP_PAGE_RECLAIM command buffer',
  0x08,
  { paddr: { offset: 0x00, type: 'u64' } },
  [{ name: 'paddr[11:1]', offset: 0x00, length: 8, mask: 0xffen }],
);
/** SNP_PAGE_RECLAIM paddr bit 0: the page is a 2 MiB page. */
export const SNP_PAGE_RECLAIM_SIZE_2M = 0x1n;

// ---------------------------------------------------------------------------------------------------
// Guest commands

// SNP_GCTX_CREATE and SNP_DECOMMISSION: ASPFW sev_mcmd.h snp_mcmd_gctx_create_t / snp_mcmd_decommission_t
export const SnpGctxBuffer = new ReservedCheckedLayout(
  'SNP_GCTX_CREATE/SNP_DECOMMISSION command buffer',
  0x08,
  { gctxPaddr: { offset: 0x00, type: 'u64' } },
  [pageAddr('gctxPaddr', 0x00)],
);

// SNP_ACTIVATE: ASPFW sev_mcmd.h snp_mcmd_activate_t = Linux sev_data_snp_activate (packed, 0x0C)
export const SnpActivateBuffer = new ReservedCheckedLayout(
  'SNP_ACTIVATE command buffer',
  0x0c,
  {
    gctxPaddr: { offset: 0x00, type: 'u64' },
    asid: { offset: 0x08, type: 'u32' },
  },
  [pageAddr('gctxPaddr', 0x00)],
);

// SNP_GUEST_STATUS: ASPFW sev_mcmd.h snp_mcmd_guest_status_t = Linux sev_data_snp_guest_status
export const SnpGuestStatusBuffer = new ReservedCheckedLayout(
  'SNP_GUEST_STATUS command buffer',
  0x10,
  {
    gctxPaddr: { offset: 0x00, type: 'u64' },
    statusPaddr: { offset: 0x08, type: 'u64' },
  },
  [pageAddr('gctxPaddr', 0x00)],
);

// SNP_GUEST_STATUS output: ASPFW sev_mcmd.h snp_guest_status_buffer_t (Linux has no definition)
export const SnpGuestStatus = new ReservedCheckedLayout(
  'SNP_GUEST_STATUS output',
  0x20,
  {
    policy: { offset: 0x00, type: 'u64' },
    /** 0 while no ASID is bound. */
    asid: { offset: 0x08, type: 'u32' },
    /** SnpGuestState. */
    state: { offset: 0x0c, type: 'u8' },
    /** bit 0 VCEK_DIS (from SNP_LAUNCH_FINISH). */
    vcekDis: { offset: 0x10, type: 'u32' },
  },
  [
    { name: 'reserved0d', offset: 0x0d, length: 3 },
    { name: 'vcekDis[31:1]', offset: 0x10, length: 4, mask: 0xfffffffen },
    { name: 'reserved14', offset: 0x14, length: 0x0c },
  ],
);

// SNP_GUEST_REQUEST: ASPFW sev_mcmd.h snp_mcmd_guest_request_t = Linux sev_data_snp_guest_request
export const SnpGuestRequestBuffer = new ReservedCheckedLayout(
  'SNP_GUEST_REQUEST command buffer',
  0x18,
  {
    gctxPaddr: { offset: 0x00, type: 'u64' },
    requestPaddr: { offset: 0x08, type: 'u64' },
    responsePaddr: { offset: 0x10, type: 'u64' },
  },
  [pageAddr('gctxPaddr', 0x00)],
);

// SNP_LAUNCH_START: ASPFW sev_mcmd.h snp_mcmd_launch_start_t = Linux sev_data_snp_launch_start
export const SnpLaunchStartBuffer = new ReservedCheckedLayout(
  'SNP_LAUNCH_START command buffer',
  0x30,
  {
    gctxPaddr: { offset: 0x00, type: 'u64' },
    policy: { offset: 0x08, type: 'u64' },
    maGctxPaddr: { offset: 0x10, type: 'u64' },
    /** SNP_LAUNCH_START_FLAG bits. */
    flags: { offset: 0x18, type: 'u32' },
    /**
     * Desired mean TSC frequency in kHz (Linux desired_tsc_khz and the ASPFW guest context say kHz; the
     * ASPFW command-buffer comment says MHz — kHz followed).
     */
    desiredTscFreq: { offset: 0x1c, type: 'u32' },
    /** Guest OS visible workarounds, copied to the secrets page. */
    gosvw: { offset: 0x20, type: 'bytes', length: 16 },
  },
  [
    pageAddr('gctxPaddr', 0x00),
    pageAddr('maGctxPaddr', 0x10),
    { name: 'flags[31:2]', offset: 0x18, length: 4, mask: 0xfffffffcn },
  ],
);
/** SNP_LAUNCH_START flags: bound to a migration agent; launching an incoming migration image. */
export const SNP_LAUNCH_START_FLAG = { MA_EN: 1 << 0, IMI_EN: 1 << 1 } as const;

// SNP_LAUNCH_UPDATE: ASPFW sev_mcmd.h snp_mcmd_launch_update_t = Linux sev_data_snp_launch_update
export const SnpLaunchUpdateBuffer = new ReservedCheckedLayout(
  'SNP_LAUNCH_UPDATE command buffer',
  0x20,
  {
    gctxPaddr: { offset: 0x00, type: 'u64' },
    /** Packed {PAGE_SIZE, PAGE_TYPE, IMI_PAGE}: see decodeSnpLaunchUpdatePageInfo. */
    pageInfo: { offset: 0x08, type: 'u32' },
    pagePaddr: { offset: 0x10, type: 'u64' },
    /** Packed VMPL1-3 permission masks in bits 31:8: see decodeSnpVmplPerms. */
    vmplPerms: { offset: 0x18, type: 'u32' },
  },
  [
    pageAddr('gctxPaddr', 0x00),
    { name: 'pageInfo[31:5]', offset: 0x08, length: 4, mask: 0xffffffe0n },
    { name: 'reserved0c', offset: 0x0c, length: 4 },
    pageAddr('pagePaddr', 0x10),
    { name: 'vmplPerms[7:0]', offset: 0x18, length: 4, mask: 0xffn },
    { name: 'reserved1c', offset: 0x1c, length: 4 },
  ],
);

/** The SNP_LAUNCH_UPDATE word at 0x08: bit 0 PAGE_SIZE, bits 3:1 PAGE_TYPE, bit 4 IMI_PAGE. */
export interface SnpLaunchUpdatePageInfo {
  /** 0 = 4 KiB, 1 = 2 MiB. */
  pageSize: 0 | 1;
  /** The page type (SnpPageType in snp-launch-digest.ts: 1 NORMAL … 6 CPUID; 0 is invalid). */
  pageType: number;
  imiPage: boolean;
}

/** Unpacks the SNP_LAUNCH_UPDATE word at 0x08 (bits 31:5 are reserved and ignored here). */
export function decodeSnpLaunchUpdatePageInfo(word: number): SnpLaunchUpdatePageInfo {
  return { pageSize: (word & 1) as 0 | 1, pageType: (word >>> 1) & 0x7, imiPage: ((word >>> 4) & 1) === 1 };
}

/** Packs the SNP_LAUNCH_UPDATE word at 0x08; throws RangeError if PAGE_TYPE does not fit 3 bits. */
export function encodeSnpLaunchUpdatePageInfo(info: SnpLaunchUpdatePageInfo): number {
  if (!Number.isInteger(info.pageType) || info.pageType < 0 || info.pageType > 7)
    throw new RangeError(`PAGE_TYPE ${info.pageType} does not fit 3 bits`);
  return ((info.pageSize & 1) | (info.pageType << 1) | (info.imiPage ? 1 << 4 : 0)) >>> 0;
}

/** VMPL1–3 permission masks (each: bit0 READ, 1 WRITE, 2 EXEC_USER, 3 EXEC_SUPERVISOR, 4 SSS). */
export interface SnpVmplPerms {
  vmpl1: number;
  vmpl2: number;
  vmpl3: number;
}

/** Unpacks the SNP_LAUNCH_UPDATE word at 0x18: VMPL1 in bits 15:8, VMPL2 23:16, VMPL3 31:24. */
export function decodeSnpVmplPerms(word: number): SnpVmplPerms {
  return { vmpl1: (word >>> 8) & 0xff, vmpl2: (word >>> 16) & 0xff, vmpl3: (word >>> 24) & 0xff };
}

/** Packs VMPL1–3 masks into the SNP_LAUNCH_UPDATE word at 0x18 (bits 7:0 stay zero, as required). */
export function encodeSnpVmplPerms(perms: SnpVmplPerms): number {
  for (const [name, v] of Object.entries(perms))
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${name} ${v} is not a byte`);
  return ((perms.vmpl1 << 8) | (perms.vmpl2 << 16) | (perms.vmpl3 << 24)) >>> 0;
}

// SNP_LAUNCH_FINISH: ASPFW sev_mcmd.h snp_mcmd_launch_finish_t = Linux sev_data_snp_launch_finish. ASPFW
// defines SNP_ADDR_LAUNCH_FINISH_RESERVED_MASK for the ID block/auth addresses but never applies it;
// only GCTX_PADDR's low bits and flag bits 63:3 are checked, and so here.
export const SnpLaunchFinishBuffer = new ReservedCheckedLayout(
  'SNP_LAUNCH_FINISH command buffer',
  0x40,
  {
    gctxPaddr: { offset: 0x00, type: 'u64' },
    idBlockPaddr: { offset: 0x08, type: 'u64' },
    idAuthPaddr: { offset: 0x10, type: 'u64' },
    /** SNP_LAUNCH_FINISH_FLAG bits. */
    flags: { offset: 0x18, type: 'u64' },
    hostData: { offset: 0x20, type: 'bytes', length: 32 },
  },
  [
    pageAddr('gctxPaddr', 0x00),
    { name: 'flags[63:3]', offset: 0x18, length: 8, mask: ~0x7n & 0xffffffffffffffffn },
  ],
);
/** SNP_LAUNCH_FINISH flags: an ID block is given; ID_AUTH carries an author key; never sign with the VCEK. */
export const SNP_LAUNCH_FINISH_FLAG = {
  ID_BLOCK_EN: 1n << 0n,
  AUTH_KEY_EN: 1n << 1n,
  VCEK_DIS: 1n << 2n,
} as const;

// SNP_DBG_DECRYPT / SNP_DBG_ENCRYPT: ASPFW sev_mcmd.h snp_mcmd_dbg_decrypt_t = Linux sev_data_snp_dbg
// (one 4 KiB page; all three addresses are page addresses)
export const SnpDbgBuffer = new ReservedCheckedLayout(
  'SNP_DBG_DECRYPT/SNP_DBG_ENCRYPT command buffer',
  0x18,
  {
    gctxPaddr: { offset: 0x00, type: 'u64' },
    srcPaddr: { offset: 0x08, type: 'u64' },
    dstPaddr: { offset: 0x10, type: 'u64' },
  },
  [pageAddr('gctxPaddr', 0x00), pageAddr('srcPaddr', 0x08), pageAddr('dstPaddr', 0x10)],
);

/** Any of the layouts above, for code that handles them generically (e.g. by command ID). */
export type SnpCommandLayout = ReservedCheckedLayout<FieldSpecs>;

const BY_COMMAND = new Map<number, SnpCommandLayout>([
  [0x83, SnpPlatformStatusBuffer],
  [0x85, SnpInitExBuffer],
  [0x86, SnpShutdownExBuffer],
  [0x90, SnpGctxBuffer],
  [0x91, SnpActivateBuffer],
  [0x92, SnpGuestStatusBuffer],
  [0x93, SnpGctxBuffer],
  [0x94, SnpGuestRequestBuffer],
  [0xa0, SnpLaunchStartBuffer],
  [0xa1, SnpLaunchUpdateBuffer],
  [0xa2, SnpLaunchFinishBuffer],
  [0xb0, SnpDbgBuffer],
  [0xb1, SnpDbgBuffer],
  [0xc7, SnpPageReclaimBuffer],
  [0xc9, SnpConfigBuffer],
  [0xcb, SnpCommitBuffer],
  [0xcd, SnpVlekLoadBuffer],
]);

/**
 * The command buffer layout of an SNP command ID (SevCommand.SNP_*), or undefined for commands without a
 * buffer (SNP_INIT, SNP_SHUTDOWN, SNP_DF_FLUSH) or not modelled here.
 */
export function snpCommandBufferLayout(commandId: number): SnpCommandLayout | undefined {
  return BY_COMMAND.get(commandId);
}
