// The SEV-SNP half of the PSP firmware (sev-reference §7.3–7.12; check order and status codes after
// AMD's published firmware, amd/AMD-ASPFW sev_mcmd.c snp_mcmd_*): SNP_INIT turns the RMP on; a
// guest lives in a context page the host hands over (GCTX_CREATE), is launched page by page into the
// RMP with a chained SHA-384 digest (LAUNCH_UPDATE), finished with an optional ID block, and talks to
// the firmware through AES-256-GCM messages under its VMPCKs (GUEST_REQUEST): attestation reports
// signed with the VCEK of the reported TCB, and derived keys.
import type { KeyObject } from 'node:crypto';
import {
  SevCommand,
  SevStatus,
  type SevStatusCode,
  SnpGuestState,
  SnpPlatformState,
  SnpActivateBuffer,
  SnpCommitBuffer,
  SnpConfigBuffer,
  SnpGctxBuffer,
  SnpGuestRequestBuffer,
  SnpGuestStatus,
  SnpGuestStatusBuffer,
  SnpLaunchFinishBuffer,
  SnpLaunchStartBuffer,
  SnpLaunchUpdateBuffer,
  SnpPageReclaimBuffer,
  SnpPlatformStatus,
  SnpPlatformStatusBuffer,
  SNP_CONFIG_FLAG,
  SNP_LAUNCH_FINISH_FLAG,
  SNP_LAUNCH_START_FLAG,
  SNP_PAGE_RECLAIM_SIZE_2M,
  SNP_PLATFORM_STATUS_FLAG,
  SNP_PLATFORM_STATUS_RMP_INITIALIZED,
  SNP_SIG_ALGO_ECDSA_P384_SHA384,
  SNP_REPORT_SIGNED_LENGTH,
  SnpKeySel,
  SNP_GUEST_MSG_HEADER_SIZE,
  SNP_ID_AUTH_SIZE,
  SNP_ID_BLOCK_SIZE,
  SnpMsgType,
  SnpPageType,
  type ReservedCheckedLayout,
  type FieldSpecs,
  cpuidSignature,
  decodeSnpCpuidPage,
  decodeSnpKeyRequest,
  decodeSnpLaunchUpdatePageInfo,
  decodeSnpReportRequest,
  decodeSnpVmplPerms,
  encodeSnpCpuidPage,
  encodeSnpKeyResponse,
  encodeSnpMixData,
  encodeSnpReport,
  encodeSnpReportResponse,
  encodeSnpSecretsPage,
  extendSnpLaunchDigest,
  openSnpGuestMessage,
  sealSnpGuestMessage,
  snpInitialLaunchDigest,
  snpPageContents,
  validateSnpPolicy,
  verifyIdAuth,
  decodeSnpGuestMessageHeader,
  type SnpCpuidEntry,
  AbiDecodeError,
  SNP_GUEST_FIELD_SELECT_ALL,
  SnpGuestFieldSelect,
} from '../abi/index.js';
import { type Drbg, MEMORY_KEY_MATERIAL_BYTES, ecdsaP384Sign, sevKdf } from '../crypto/index.js';
import {
  KEY_NONE,
  PAGE_SIZE,
  PAGES_PER_2M,
  VMPL_PERMS_ALL,
  RMP_HYPERVISOR_ENTRY,
  type ProductProfile,
  type PspCapabilities,
  type RmpEntry,
  cpuidMemoryEncryptionLeaf,
} from '../soc/index.js';
import type { AsidTable } from './asid-table.js';
import {
  type SnpProduct,
  chipIdFromSecret,
  snpReportChipId,
  tcbComponents,
  tcbSpls,
  vcekHashStick,
  vcekPrivateKey,
} from './vcek.js';

/** The SNP firmware's TCB for each product: the SPLs a real part of that generation reported. */
const PRODUCT_TCB: Readonly<Record<SnpProduct, bigint>> = {
  // bootloader 3, TEE 0, SNP 8, microcode 115 — the real Milan report in testdata (milan-v2).
  milan: 0x7308_0000_0000_0003n,
  // bootloader 10, TEE 0, SNP 23, microcode 84 — testdata genoa-v3.
  genoa: 0x5417_0000_0000_000an,
  // FMC 0, bootloader 1, TEE 0, SNP 2, microcode 0x47 — testdata turin-v5 (Turin layout).
  turin: 0x4700_0000_0200_0100n,
};

// ASPFW cpuid_lookup.h: the reserved bits and rules of the two leaves the model checks.
const CPUID1_EAX_RESERVED = 0xf000f000;
const CPUID1_EBX_CLFLUSH_MASK = 0xff00;
/** CLFLUSH line size in quadwords (8 = 64 bytes), exact in ASPFW. */
const CLFLUSH_LINE_QWORDS = 8;
const CPUID_8000001F_EAX_RESERVED = 0xfcf00000;
const MAX_VMPLS = 4;

/** A CPUID(1).EAX signature as one number ordered family, model, stepping (ASPFW compare_FMS). */
function fmsOrder(eax: number): number {
  const base = (eax >>> 8) & 0xf;
  const family = base === 0xf ? base + ((eax >>> 20) & 0xff) : base;
  const model = base === 0xf ? (((eax >>> 16) & 0xf) << 4) | ((eax >>> 4) & 0xf) : (eax >>> 4) & 0xf;
  return family * 0x1000 + model * 0x10 + (eax & 0xf);
}

/** PLATFORM_INFO bit 0: SMT is enabled on this host (a guest policy without SMT is refused). */
const PLATFORM_INFO_SMT_EN = 1n;
/** SIGNING_KEY values of the report (bits 4:2 of 0x48). */
const SIGNING_KEY_VCEK = 0;
const SIGNING_KEY_NONE = 7;
/** How many times a request's MSG_SEQNO may advance a VMPCK's count (ASPFW: count < 2^64 − 2). */
const MSG_COUNT_LIMIT = (1n << 64n) - 2n;

type Result = { status: SevStatusCode; output?: Buffer };
const fail = (status: SevStatusCode): Result => ({ status });
const ok = (output?: Buffer): Result =>
  output === undefined ? { status: SevStatus.SUCCESS } : { status: SevStatus.SUCCESS, output };

/** One SNP guest: what ASPFW keeps in its (encrypted, firmware-owned) guest context page. */
class SnpGuest {
  state: number = SnpGuestState.INIT;
  policy = 0n;
  asid = 0;
  imiEnabled = false;
  ld: Buffer = snpInitialLaunchDigest();
  vek: Buffer | undefined;
  vmpck: [Buffer, Buffer, Buffer, Buffer] | undefined;
  vmrk: Buffer | undefined;
  /** Messages processed per VMPCK (the next request must carry count + 1). */
  readonly msgCount: [bigint, bigint, bigint, bigint] = [0n, 0n, 0n, 0n];
  reportId: Buffer = Buffer.alloc(32);
  readonly reportIdMa: Buffer = Buffer.alloc(32, 0xff);
  gosvw: Buffer = Buffer.alloc(16);
  hostData: Buffer = Buffer.alloc(32);
  familyId: Buffer = Buffer.alloc(16);
  imageId: Buffer = Buffer.alloc(16);
  guestSvn = 0;
  idKeyDigest: Buffer = Buffer.alloc(48);
  authorKeyDigest: Buffer = Buffer.alloc(48);
  authorKeyEnabled = false;
  /** Finished with an ID block. */
  idBlock = false;
  vcekDisabled = false;
  launchTcb = 0n;

  constructor(readonly gctx: number) {}

  /** DECOMMISSION: keys and secrets forgotten. */
  wipe(): void {
    this.vek?.fill(0);
    for (const k of this.vmpck ?? []) k.fill(0);
    this.vmrk?.fill(0);
    this.vek = undefined;
    this.vmpck = undefined;
    this.vmrk = undefined;
  }

  toJSON(): string {
    return `[SnpGuest state ${this.state}]`;
  }
}

/** What the SNP firmware shares with the rest of the PSP. */
export interface SnpFirmwareContext {
  readonly caps: PspCapabilities;
  readonly profile: ProductProfile;
  readonly asids: AsidTable;
  readonly keyRng: Drbg;
  readonly nonceRng: Drbg;
  readonly chipSecret: Buffer;
  /** The legacy SEV platform state (SNP_INIT needs it UNINIT: SNP is initialised first). */
  legacyPlatformState(): number;
  /** DF_FLUSH, shared with legacy SEV. */
  dfFlush(): { status: SevStatusCode };
  /** Whether `length` bytes at `spa` are DRAM the firmware may touch (not the TMR). */
  validRange(spa: number, length: number): boolean;
}

/** The SNP commands the firmware answers, with their command-buffer layouts (undefined: no buffer). */
export const SNP_COMMANDS: ReadonlyMap<number, ReservedCheckedLayout<FieldSpecs> | undefined> = new Map<
  number,
  ReservedCheckedLayout<FieldSpecs> | undefined
>([
  [SevCommand.SNP_INIT, undefined],
  [SevCommand.SNP_PLATFORM_STATUS, SnpPlatformStatusBuffer],
  [SevCommand.SNP_DF_FLUSH, undefined],
  [SevCommand.SNP_GCTX_CREATE, SnpGctxBuffer],
  [SevCommand.SNP_DECOMMISSION, SnpGctxBuffer],
  [SevCommand.SNP_ACTIVATE, SnpActivateBuffer],
  [SevCommand.SNP_GUEST_STATUS, SnpGuestStatusBuffer],
  [SevCommand.SNP_GUEST_REQUEST, SnpGuestRequestBuffer],
  [SevCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer],
  [SevCommand.SNP_LAUNCH_UPDATE, SnpLaunchUpdateBuffer],
  [SevCommand.SNP_LAUNCH_FINISH, SnpLaunchFinishBuffer],
  [SevCommand.SNP_PAGE_RECLAIM, SnpPageReclaimBuffer],
  [SevCommand.SNP_CONFIG, SnpConfigBuffer],
  [SevCommand.SNP_COMMIT, SnpCommitBuffer],
]);

function snpProductOf(profile: ProductProfile): SnpProduct | undefined {
  return profile.name === 'milan' || profile.name === 'genoa' || profile.name === 'turin'
    ? profile.name
    : undefined;
}

export class SnpFirmware {
  #state: number = SnpPlatformState.UNINIT;
  readonly #guests = new Map<number, SnpGuest>();
  readonly #ctx: SnpFirmwareContext;
  readonly #product: SnpProduct | undefined;
  /** CURRENT_TCB (the running firmware), COMMITTED_TCB (SNP_COMMIT) and the SNP_CONFIG value. */
  readonly #currentTcb: bigint;
  #committedTcb: bigint;
  #configTcb = 0n;
  #maskChipId = false;
  #maskChipKey = false;
  /** VCEKs by TCB: deriving one walks every hash stick, so each is derived once (they never leave here). */
  readonly #vceks = new Map<bigint, KeyObject>();

  constructor(ctx: SnpFirmwareContext) {
    this.#ctx = ctx;
    this.#product = snpProductOf(ctx.profile);
    this.#currentTcb = this.#product === undefined ? 0n : PRODUCT_TCB[this.#product];
    this.#committedTcb = this.#currentTcb;
  }

  get platformState(): number {
    return this.#state;
  }

  get guestCount(): number {
    return this.#guests.size;
  }

  /** REPORTED_TCB: the SNP_CONFIG value if set, else the committed TCB (sev-reference §7.8). */
  get reportedTcb(): bigint {
    return this.#configTcb !== 0n ? this.#configTcb : this.#committedTcb;
  }

  get currentTcb(): bigint {
    return this.#currentTcb;
  }

  /** Handles one SNP command whose buffer has been read (empty for buffer-less commands). */
  handle(command: number, buf: Buffer): Result {
    if (this.#product === undefined || !this.#ctx.profile.sevSnp) return fail(SevStatus.INVALID_COMMAND);
    const layout = SNP_COMMANDS.get(command);
    // Reserved fields first: the firmware answers INVALID_PARAM before looking at anything else.
    if (layout !== undefined && layout.reservedNonZero(buf) !== undefined)
      return fail(SevStatus.INVALID_PARAM);
    switch (command) {
      case SevCommand.SNP_INIT:
        return this.#init();
      case SevCommand.SNP_PLATFORM_STATUS:
        return this.#platformStatus(buf);
      case SevCommand.SNP_DF_FLUSH:
        return this.#ctx.dfFlush();
      case SevCommand.SNP_GCTX_CREATE:
        return this.#gctxCreate(buf);
      case SevCommand.SNP_DECOMMISSION:
        return this.#decommission(buf);
      case SevCommand.SNP_ACTIVATE:
        return this.#activate(buf);
      case SevCommand.SNP_GUEST_STATUS:
        return this.#guestStatus(buf);
      case SevCommand.SNP_LAUNCH_START:
        return this.#launchStart(buf);
      case SevCommand.SNP_LAUNCH_UPDATE:
        return this.#launchUpdate(buf);
      case SevCommand.SNP_LAUNCH_FINISH:
        return this.#launchFinish(buf);
      case SevCommand.SNP_GUEST_REQUEST:
        return this.#guestRequest(buf);
      case SevCommand.SNP_PAGE_RECLAIM:
        return this.#pageReclaim(buf);
      case SevCommand.SNP_CONFIG:
        return this.#config(buf);
      case SevCommand.SNP_COMMIT:
        // ASPFW snp_mcmd_commit: the buffer states its own length.
        if (SnpCommitBuffer.decode(buf).length !== SnpCommitBuffer.size) return fail(SevStatus.INVALID_PARAM);
        this.#committedTcb = this.#currentTcb;
        return ok();
      default:
        return fail(SevStatus.INVALID_COMMAND);
    }
  }

  // ---- helpers ----------------------------------------------------------------------------------

  /** A page address from a command buffer (bits 11:0 already checked reserved). */
  #page(raw: bigint): number | undefined {
    return this.#range(raw, PAGE_SIZE);
  }

  /** `length` bytes at a command buffer's address (any alignment), if the firmware may touch them. */
  #range(raw: bigint, length: number): number | undefined {
    if (raw >= 1n << 52n) return undefined;
    const spa = Number(raw);
    return this.#ctx.validRange(spa, length) ? spa : undefined;
  }

  #rmpState(spa: number): string {
    return this.#ctx.caps.rmp.state(spa);
  }

  /** The guest whose context page is `raw`; INVALID_GUEST if it is not a live context page. */
  #guestAt(raw: bigint): SnpGuest | SevStatusCode {
    const spa = this.#page(raw);
    if (spa === undefined) return SevStatus.INVALID_ADDRESS;
    if (this.#rmpState(spa) !== 'CONTEXT') return SevStatus.INVALID_GUEST;
    return this.#guests.get(spa) ?? SevStatus.INVALID_GUEST;
  }

  #writeRmp(spa: number, entry: Partial<RmpEntry>): void {
    this.#ctx.caps.rmp.write(spa, { ...RMP_HYPERVISOR_ENTRY, ...entry });
  }

  // ---- platform ---------------------------------------------------------------------------------

  #init(): Result {
    if (this.#state !== SnpPlatformState.UNINIT) return fail(SevStatus.INVALID_PLATFORM_STATE);
    // SNP is initialised before legacy SEV (ASPFW snp_mcmd_init_common: SEV must be UNINIT).
    if (this.#ctx.legacyPlatformState() !== 0) return fail(SevStatus.INVALID_PLATFORM_STATE);
    this.#ctx.caps.rmp.enable();
    this.#ctx.asids.markAllDirty();
    this.#state = SnpPlatformState.INIT;
    return ok();
  }

  #platformStatus(buf: Buffer): Result {
    const cmd = SnpPlatformStatusBuffer.decode(buf);
    if (cmd.statusPaddr % BigInt(PAGE_SIZE) > BigInt(PAGE_SIZE - SnpPlatformStatus.size))
      return fail(SevStatus.INVALID_PARAM);
    const spa = this.#range(cmd.statusPaddr, SnpPlatformStatus.size);
    if (spa === undefined) return fail(SevStatus.INVALID_ADDRESS);
    if (this.#state !== SnpPlatformState.UNINIT) {
      const state = this.#rmpState(spa);
      if (state !== 'FIRMWARE' && state !== 'HYPERVISOR') return fail(SevStatus.INVALID_PAGE_STATE);
    }
    const fw = this.#ctx.profile.firmware;
    const status = SnpPlatformStatus.encode({
      apiMajor: fw.major,
      apiMinor: fw.minor,
      state: this.#state,
      rmpFlags: this.#ctx.caps.rmp.enabled ? SNP_PLATFORM_STATUS_RMP_INITIALIZED : 0,
      buildId: fw.build,
      flags:
        (this.#maskChipId ? SNP_PLATFORM_STATUS_FLAG.MASK_CHIP_ID : 0) |
        (this.#maskChipKey ? SNP_PLATFORM_STATUS_FLAG.MASK_CHIP_KEY : 0),
      // Guests count from LAUNCH_START on (a bare context page is not yet a guest).
      guestCount: [...this.#guests.values()].filter((g) => g.state !== SnpGuestState.INIT).length,
      currentTcb: this.#currentTcb,
      reportedTcb: this.reportedTcb,
    });
    this.#ctx.caps.dma.write(spa, status, KEY_NONE);
    return ok();
  }

  #config(buf: Buffer): Result {
    const cmd = SnpConfigBuffer.decode(buf);
    // A reported TCB above the running one would name a VCEK this firmware cannot derive.
    if (cmd.reportedTcb !== 0n && !this.#tcbAtMost(cmd.reportedTcb, this.#currentTcb))
      return fail(SevStatus.INVALID_PARAM);
    this.#configTcb = cmd.reportedTcb;
    this.#maskChipId = (cmd.flags & SNP_CONFIG_FLAG.MASK_CHIP_ID) !== 0;
    this.#maskChipKey = (cmd.flags & SNP_CONFIG_FLAG.MASK_CHIP_KEY) !== 0;
    return ok();
  }

  /** Every SPL of `tcb` ≤ that of `limit`, and no reserved byte set. */
  #tcbAtMost(tcb: bigint, limit: bigint): boolean {
    const product = this.#product as SnpProduct;
    let spls: Readonly<Partial<Record<string, number>>>;
    try {
      spls = tcbSpls(product, tcb);
    } catch {
      return false;
    }
    const max = tcbSpls(product, limit);
    return tcbComponents(product).every((c) => (spls[c] as number) <= (max[c] as number));
  }

  // ---- guest lifecycle --------------------------------------------------------------------------

  #gctxCreate(buf: Buffer): Result {
    const spa = this.#page(SnpGctxBuffer.decode(buf).gctxPaddr);
    if (spa === undefined) return fail(SevStatus.INVALID_ADDRESS);
    // The host hands the page over in FIRMWARE state (RMPUPDATE assigned, immutable, ASID 0).
    if (this.#rmpState(spa) !== 'FIRMWARE') return fail(SevStatus.INVALID_PAGE_STATE);
    this.#writeRmp(spa, { assigned: true, immutable: true, vmsa: true });
    this.#ctx.caps.dma.write(spa, Buffer.alloc(PAGE_SIZE), KEY_NONE);
    this.#guests.set(spa, new SnpGuest(spa));
    return ok();
  }

  #launchStart(buf: Buffer): Result {
    const cmd = SnpLaunchStartBuffer.decode(buf);
    const g = this.#guestAt(cmd.gctxPaddr);
    if (typeof g === 'number') return fail(g);
    if (g.state !== SnpGuestState.INIT) return fail(SevStatus.INVALID_GUEST_STATE);
    const fw = this.#ctx.profile.firmware;
    const check = validateSnpPolicy(cmd.policy, {
      apiMajor: fw.major,
      apiMinor: fw.minor,
      smtEnabled: true,
      maEnabled: (cmd.flags & SNP_LAUNCH_START_FLAG.MA_EN) !== 0,
    });
    if (!check.ok) return fail(SevStatus.POLICY_FAILURE);
    // Migration agents are not modelled: an MA-bound launch is a parameter this firmware refuses.
    if ((cmd.flags & SNP_LAUNCH_START_FLAG.MA_EN) !== 0) return fail(SevStatus.INVALID_PARAM);
    g.policy = cmd.policy;
    g.imiEnabled = (cmd.flags & SNP_LAUNCH_START_FLAG.IMI_EN) !== 0;
    g.gosvw = Buffer.from(cmd.gosvw);
    g.vek = this.#ctx.keyRng.generate(MEMORY_KEY_MATERIAL_BYTES);
    g.vmpck = [0, 1, 2, 3].map(() => this.#ctx.keyRng.generate(32)) as [Buffer, Buffer, Buffer, Buffer];
    // The VM root key, drawn for every guest (ASPFW snp_mcmd_launch_start): a key-derivation root.
    g.vmrk = this.#ctx.keyRng.generate(32);
    g.reportId = this.#ctx.nonceRng.generate(32);
    g.launchTcb = this.#currentTcb;
    g.ld = snpInitialLaunchDigest();
    g.state = SnpGuestState.LAUNCH;
    return ok();
  }

  #activate(buf: Buffer): Result {
    const cmd = SnpActivateBuffer.decode(buf);
    const g = this.#guestAt(cmd.gctxPaddr);
    if (typeof g === 'number') return fail(g);
    if (g.state !== SnpGuestState.LAUNCH && g.state !== SnpGuestState.RUNNING)
      return fail(SevStatus.INVALID_GUEST_STATE);
    const asid = cmd.asid;
    // SNP guests use the SEV-ES range (ASIDs below MIN_SEV_ASID).
    if (asid === 0 || asid >= this.#ctx.profile.minSevAsid) return fail(SevStatus.INVALID_ASID);
    if (this.#ctx.caps.rmp.assignedCount(asid) !== 0) return fail(SevStatus.INVALID_CONFIG);
    if (g.asid !== 0) return fail(SevStatus.ACTIVE);
    if (this.#ctx.asids.use(asid) !== 'free') return fail(SevStatus.ASID_OWNED);
    if (this.#ctx.asids.dirty(asid)) return fail(SevStatus.DF_FLUSH_REQUIRED);
    this.#ctx.caps.keySlots.install(asid, Buffer.from(g.vek as Buffer));
    g.asid = asid;
    // Legacy handles are 1..1024; SNP guests are bound by context page, so the table records none.
    this.#ctx.asids.bind(asid, 0, 'in-use');
    if (g.state === SnpGuestState.RUNNING) this.#ctx.caps.asids.setValid(asid, true);
    return ok();
  }

  #decommission(buf: Buffer): Result {
    const cmd = SnpGctxBuffer.decode(buf);
    const g = this.#guestAt(cmd.gctxPaddr);
    if (typeof g === 'number') return fail(g);
    if (g.asid !== 0) {
      this.#ctx.asids.unbind(g.asid);
      this.#ctx.caps.asids.setValid(g.asid, false);
      this.#ctx.caps.dma.clearWbinvdDone();
    }
    g.wipe();
    this.#guests.delete(g.gctx);
    // The context page returns as a FIRMWARE page, for the host to reclaim.
    this.#writeRmp(g.gctx, { assigned: true, immutable: true });
    this.#ctx.caps.dma.write(g.gctx, Buffer.alloc(PAGE_SIZE), KEY_NONE);
    return ok();
  }

  #guestStatus(buf: Buffer): Result {
    const cmd = SnpGuestStatusBuffer.decode(buf);
    const g = this.#guestAt(cmd.gctxPaddr);
    if (typeof g === 'number') return fail(g);
    const spa = this.#range(cmd.statusPaddr, SnpGuestStatus.size);
    if (spa === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const state = this.#rmpState(spa);
    if (state !== 'FIRMWARE' && state !== 'HYPERVISOR') return fail(SevStatus.INVALID_PAGE_STATE);
    this.#ctx.caps.dma.write(
      spa,
      SnpGuestStatus.encode({
        policy: g.policy,
        asid: g.asid,
        state: g.state,
        vcekDis: g.vcekDisabled ? 1 : 0,
      }),
      KEY_NONE,
    );
    return ok();
  }

  #pageReclaim(buf: Buffer): Result {
    const cmd = SnpPageReclaimBuffer.decode(buf);
    const large = (cmd.paddr & SNP_PAGE_RECLAIM_SIZE_2M) !== 0n;
    const raw = cmd.paddr & ~0xfffn;
    const spa = this.#page(raw);
    if (spa === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const rmp = this.#ctx.caps.rmp;
    const entry = rmp.lookup(spa);
    if ((entry.pageSize === '2M') !== large) return fail(SevStatus.INVALID_PAGE_SIZE);
    if (large && spa % (PAGE_SIZE * PAGES_PER_2M) !== 0) return fail(SevStatus.INVALID_ADDRESS);
    const state = rmp.state(spa);
    switch (state) {
      case 'FIRMWARE':
      case 'METADATA':
        this.#writeRmp(spa, { assigned: true, pageSize: entry.pageSize });
        return ok();
      case 'PRE_GUEST':
      case 'PRE_SWAP':
        rmp.write(spa, { ...entry, immutable: false });
        return ok();
      case 'CONTEXT':
        // A live guest's context page is reclaimed only after DECOMMISSION.
        return fail(SevStatus.INVALID_PAGE_STATE);
      default:
        // Already mutable: nothing to do (ASPFW returns success).
        return entry.immutable ? fail(SevStatus.INVALID_PAGE_STATE) : ok();
    }
  }

  // ---- launch -----------------------------------------------------------------------------------

  #launchUpdate(buf: Buffer): Result {
    const cmd = SnpLaunchUpdateBuffer.decode(buf);
    const g = this.#guestAt(cmd.gctxPaddr);
    if (typeof g === 'number') return fail(g);
    const info = decodeSnpLaunchUpdatePageInfo(cmd.pageInfo);
    const large = info.pageSize === 1;
    const spa = this.#page(cmd.pagePaddr);
    if (spa === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const rmp = this.#ctx.caps.rmp;
    if (rmp.state(spa) !== 'PRE_GUEST') return fail(SevStatus.INVALID_PAGE_STATE);
    const entry = rmp.lookup(spa);
    if ((entry.pageSize === '2M') !== large) return fail(SevStatus.INVALID_PAGE_SIZE);
    const span = large ? PAGE_SIZE * PAGES_PER_2M : PAGE_SIZE;
    if (spa % span !== 0) return fail(SevStatus.INVALID_ADDRESS);
    const type = info.pageType;
    if (type === SnpPageType.RESERVED || type > SnpPageType.CPUID) return fail(SevStatus.INVALID_PARAM);
    const fourKOnly = type === SnpPageType.VMSA || type === SnpPageType.SECRETS || type === SnpPageType.CPUID;
    if (fourKOnly && large) return fail(SevStatus.INVALID_PARAM);
    if (g.state !== SnpGuestState.LAUNCH) return fail(SevStatus.INVALID_GUEST_STATE);
    if (g.asid === 0) return fail(SevStatus.INACTIVE);
    if (entry.asid !== g.asid) return fail(SevStatus.INVALID_PAGE_OWNER);
    if (g.imiEnabled && !info.imiPage) return fail(SevStatus.INVALID_PARAM);
    const perms = decodeSnpVmplPerms(cmd.vmplPerms);

    const dma = this.#ctx.caps.dma;
    const pages = span / PAGE_SIZE;
    // Prepare every 4K chunk before changing anything: a CPUID mismatch must leave the RMP as it was.
    const plaintexts: Buffer[] = [];
    for (let i = 0; i < pages; i++) {
      const at = spa + i * PAGE_SIZE;
      let page: Buffer;
      switch (type) {
        case SnpPageType.NORMAL:
        case SnpPageType.UNMEASURED:
        case SnpPageType.VMSA:
          page = dma.read(at, PAGE_SIZE, KEY_NONE);
          break;
        case SnpPageType.ZERO:
          page = Buffer.alloc(PAGE_SIZE);
          break;
        case SnpPageType.SECRETS:
          page = encodeSnpSecretsPage({
            imiEn: g.imiEnabled,
            fms: cpuidSignature(this.#ctx.profile),
            gosvw: g.gosvw,
            vmpck: g.vmpck as [Buffer, Buffer, Buffer, Buffer],
          });
          break;
        default: {
          const checked = this.#checkCpuidPage(dma.read(at, PAGE_SIZE, KEY_NONE));
          if (!checked.ok) {
            // The firmware writes the corrected table back in plaintext and lets the host retry.
            dma.write(at, checked.corrected, KEY_NONE);
            return fail(SevStatus.INVALID_PARAM);
          }
          page = checked.page;
        }
      }
      plaintexts.push(page);
    }
    let ld = g.ld;
    for (let i = 0; i < pages; i++) {
      const page = plaintexts[i] as Buffer;
      const gpa = BigInt(entry.gpa + i * PAGE_SIZE);
      ld = extendSnpLaunchDigest(ld, {
        type,
        contents: snpPageContents(type, page),
        gpa,
        imi: info.imiPage,
        vmplPerms: [perms.vmpl1, perms.vmpl2, perms.vmpl3],
      });
    }
    // One write for the whole (2 MiB) page: the memory controller encrypts page-aligned runs in bulk.
    dma.write(spa, pages === 1 ? (plaintexts[0] as Buffer) : Buffer.concat(plaintexts), g.asid);
    g.ld = ld;
    rmp.write(spa, {
      ...entry,
      immutable: false,
      validated: true,
      vmsa: type === SnpPageType.VMSA,
      vmplPerms: [VMPL_PERMS_ALL, perms.vmpl1, perms.vmpl2, perms.vmpl3],
    });
    return ok();
  }

  /**
   * The CPUID page check, with ASPFW's rules (cpuid_lookup.c) for the leaves the model knows: leaf 1's
   * family/model/stepping may be this CPU's or older, its reserved bits zero and its CLFLUSH size 8;
   * Fn8000_001F's EAX may hide features but not claim more, its C-bit position is exact and at most 4
   * VMPLs. A table that breaks a rule comes back corrected. Other leaves pass through.
   */
  #checkCpuidPage(page: Buffer): { ok: true; page: Buffer } | { ok: false; corrected: Buffer } {
    let entries: SnpCpuidEntry[];
    try {
      entries = decodeSnpCpuidPage(page);
    } catch (err) {
      if (!(err instanceof AbiDecodeError)) throw err;
      return { ok: false, corrected: encodeSnpCpuidPage([]) };
    }
    const profile = this.#ctx.profile;
    const fms = cpuidSignature(profile);
    const memEnc = cpuidMemoryEncryptionLeaf(profile);
    let lied = false;
    const corrected = entries.map((e) => {
      const fixed = { ...e };
      if (e.eaxIn === 0x1 && e.ecxIn === 0) {
        if (fmsOrder(e.eax) > fmsOrder(fms)) fixed.eax = fms;
        fixed.eax = (fixed.eax & ~CPUID1_EAX_RESERVED) >>> 0;
        fixed.ebx = ((fixed.ebx & ~CPUID1_EBX_CLFLUSH_MASK) | (CLFLUSH_LINE_QWORDS << 8)) >>> 0;
      } else if (e.eaxIn === 0x8000_001f && e.ecxIn === 0) {
        fixed.eax = (e.eax & memEnc.eax & ~CPUID_8000001F_EAX_RESERVED) >>> 0;
        const vmpls = Math.min((e.ebx >>> 12) & 0xf, MAX_VMPLS);
        // C-bit position exact; bits 11:6 (physical-address reduction) unchecked; VMPLs at most 4.
        fixed.ebx = ((e.ebx & 0xfc0) | (memEnc.ebx & 0x3f) | (vmpls << 12)) >>> 0;
      }
      if (fixed.eax !== e.eax || fixed.ebx !== e.ebx) lied = true;
      return fixed;
    });
    return lied ? { ok: false, corrected: encodeSnpCpuidPage(corrected) } : { ok: true, page };
  }

  #launchFinish(buf: Buffer): Result {
    const cmd = SnpLaunchFinishBuffer.decode(buf);
    const g = this.#guestAt(cmd.gctxPaddr);
    if (typeof g === 'number') return fail(g);
    if (g.state !== SnpGuestState.LAUNCH) return fail(SevStatus.INVALID_GUEST_STATE);
    const idBlockEnabled = (cmd.flags & BigInt(SNP_LAUNCH_FINISH_FLAG.ID_BLOCK_EN)) !== 0n;
    const authKeyEnabled = (cmd.flags & BigInt(SNP_LAUNCH_FINISH_FLAG.AUTH_KEY_EN)) !== 0n;
    const vcekDisabled = (cmd.flags & BigInt(SNP_LAUNCH_FINISH_FLAG.VCEK_DIS)) !== 0n;
    let idResult: ReturnType<typeof verifyIdAuth> | undefined;
    if (idBlockEnabled) {
      if (g.imiEnabled) return fail(SevStatus.INVALID_PARAM);
      const blockSpa = this.#range(cmd.idBlockPaddr, SNP_ID_BLOCK_SIZE);
      const authSpa = this.#range(cmd.idAuthPaddr, SNP_ID_AUTH_SIZE);
      if (blockSpa === undefined || authSpa === undefined) return fail(SevStatus.INVALID_ADDRESS);
      const dma = this.#ctx.caps.dma;
      idResult = verifyIdAuth(
        dma.read(blockSpa, SNP_ID_BLOCK_SIZE, KEY_NONE),
        dma.read(authSpa, SNP_ID_AUTH_SIZE, KEY_NONE),
        {
          authorKeyEnabled: authKeyEnabled,
          expectedLaunchDigest: g.ld,
          expectedPolicy: g.policy,
        },
      );
      if (!idResult.ok) return fail(idResult.code as SevStatusCode);
    }
    // AUTH_KEY_EN without ID_BLOCK_EN is ignored, as ASPFW snp_mcmd_launch_finish ignores it.
    if (idResult?.ok === true) {
      g.familyId = Buffer.from(idResult.idBlock.familyId);
      g.imageId = Buffer.from(idResult.idBlock.imageId);
      g.guestSvn = idResult.idBlock.guestSvn;
      g.idKeyDigest = idResult.idKeyDigest;
      g.authorKeyDigest = idResult.authorKeyDigest;
      g.authorKeyEnabled = authKeyEnabled;
      g.idBlock = true;
    }
    g.hostData = Buffer.from(cmd.hostData);
    g.vcekDisabled = vcekDisabled;
    g.state = SnpGuestState.RUNNING;
    if (g.asid !== 0) this.#ctx.caps.asids.setValid(g.asid, true);
    return ok();
  }

  // ---- guest messages ---------------------------------------------------------------------------

  #guestRequest(buf: Buffer): Result {
    const cmd = SnpGuestRequestBuffer.decode(buf);
    const g = this.#guestAt(cmd.gctxPaddr);
    if (typeof g === 'number') return fail(g);
    // The messages sit at the exact addresses given; their pages are what the RMP checks concern.
    const request = this.#range(cmd.requestPaddr, SNP_GUEST_MSG_HEADER_SIZE);
    const response = this.#range(cmd.responsePaddr, SNP_GUEST_MSG_HEADER_SIZE);
    if (request === undefined || response === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const requestPage = request - (request % PAGE_SIZE);
    const responsePage = response - (response % PAGE_SIZE);
    const rmp = this.#ctx.caps.rmp;
    if (rmp.state(responsePage) !== 'FIRMWARE') return fail(SevStatus.INVALID_PAGE_STATE);
    if (rmp.lookup(requestPage).pageSize !== '4K' || rmp.lookup(responsePage).pageSize !== '4K')
      return fail(SevStatus.INVALID_PAGE_SIZE);
    if (g.state !== SnpGuestState.RUNNING) return fail(SevStatus.INVALID_GUEST_STATE);
    const dma = this.#ctx.caps.dma;
    // Header and payload may not cross the page: read to its end, and the decoder checks the fit.
    const message = dma.read(request, requestPage + PAGE_SIZE - request, KEY_NONE);
    let header;
    try {
      header = decodeSnpGuestMessageHeader(message, { request: true });
    } catch (err) {
      if (err instanceof AbiDecodeError) return fail(SevStatus.INVALID_PARAM);
      throw err;
    }
    if (header.msgVmpck > 3) return fail(SevStatus.INVALID_PARAM);
    const vmpck = (g.vmpck as Buffer[])[header.msgVmpck] as Buffer;
    const opened = openSnpGuestMessage(message, vmpck, { request: true });
    if (!opened.ok) return fail(SevStatus.BAD_MEASUREMENT);
    const count = g.msgCount[header.msgVmpck] as bigint;
    // Replays and skipped numbers are refused: the request must carry exactly count + 1.
    if (count >= MSG_COUNT_LIMIT || header.msgSeqno !== count + 1n) return fail(SevStatus.AEAD_OFLOW);
    if (header.msgVersion !== 1) return fail(SevStatus.INVALID_PARAM);
    let type: number;
    let payload: Buffer;
    if (header.msgType === SnpMsgType.REPORT_REQ) {
      type = SnpMsgType.REPORT_RSP;
      payload = this.#reportResponse(g, opened.payload, header.msgVmpck);
    } else if (header.msgType === SnpMsgType.KEY_REQ) {
      type = SnpMsgType.KEY_RSP;
      payload = this.#keyResponse(g, opened.payload, header.msgVmpck);
    } else {
      // CPUID, export/import/absorb (migration agents) and TSC messages are not modelled.
      return fail(SevStatus.INVALID_PARAM);
    }
    const sealed = sealSnpGuestMessage({
      vmpck,
      vmpckIndex: header.msgVmpck,
      seqno: header.msgSeqno + 1n,
      type,
      version: 1,
      payload,
    });
    // The answer must fit the response page from RESPONSE_PADDR on, or nothing is consumed.
    if (response + sealed.length > responsePage + PAGE_SIZE) return fail(SevStatus.INVALID_PARAM);
    g.msgCount[header.msgVmpck] = count + 2n;
    dma.write(response, sealed, KEY_NONE);
    return ok();
  }

  /** MSG_REPORT_RSP: a report in this product's layout, signed with the VCEK of the reported TCB. */
  #reportResponse(g: SnpGuest, payload: Buffer, vmpckIndex: number): Buffer {
    let req;
    try {
      req = decodeSnpReportRequest(payload);
    } catch (err) {
      if (err instanceof AbiDecodeError) return encodeSnpReportResponse({ status: SevStatus.INVALID_PARAM });
      throw err;
    }
    // A VMPCK-n sender may not ask for a report of a more privileged VMPL.
    if (req.reservedNonZero !== undefined || req.vmpl > 3 || req.vmpl < vmpckIndex)
      return encodeSnpReportResponse({ status: SevStatus.INVALID_PARAM });
    if (req.keySel === SnpKeySel.RESERVED || req.keySel === SnpKeySel.VLEK_ONLY)
      return encodeSnpReportResponse({ status: SevStatus.INVALID_KEY });
    const product = this.#product as SnpProduct;
    const signed = !this.#maskChipKey && !g.vcekDisabled;
    const reported = this.reportedTcb;
    const fw = this.#ctx.profile.firmware;
    const profile = this.#ctx.profile;
    const v5 = product === 'turin';
    const chipId = this.#maskChipId
      ? Buffer.alloc(64)
      : snpReportChipId(chipIdFromSecret(this.#ctx.chipSecret), product);
    const report = encodeSnpReport({
      version: v5 ? 5 : 3,
      guestSvn: g.guestSvn,
      policy: g.policy,
      familyId: g.familyId,
      imageId: g.imageId,
      vmpl: req.vmpl,
      signatureAlgo: SNP_SIG_ALGO_ECDSA_P384_SHA384,
      currentTcb: this.#currentTcb,
      platformInfo: PLATFORM_INFO_SMT_EN,
      signerInfo:
        (g.authorKeyEnabled ? 1 : 0) |
        (this.#maskChipKey ? 2 : 0) |
        ((signed ? SIGNING_KEY_VCEK : SIGNING_KEY_NONE) << 2),
      reportData: req.reportData,
      measurement: g.ld,
      hostData: g.hostData,
      idKeyDigest: g.idKeyDigest,
      authorKeyDigest: g.authorKeyDigest,
      reportId: g.reportId,
      reportIdMa: g.reportIdMa,
      reportedTcb: reported,
      cpuidFamId: profile.family,
      cpuidModId: profile.model,
      cpuidStep: profile.stepping,
      chipId,
      committedTcb: this.#committedTcb,
      currentBuild: fw.build,
      currentMinor: fw.minor,
      currentMajor: fw.major,
      committedBuild: fw.build,
      committedMinor: fw.minor,
      committedMajor: fw.major,
      launchTcb: g.launchTcb,
    });
    if (signed) {
      const sig = ecdsaP384Sign(this.#vcek(reported), 'sha384', report.subarray(0, SNP_REPORT_SIGNED_LENGTH));
      Buffer.from(sig.r).copy(report, 0x2a0);
      Buffer.from(sig.s).copy(report, 0x2e8);
    }
    return encodeSnpReportResponse({ status: SevStatus.SUCCESS, report });
  }

  /**
   * MSG_KEY_REQ: KDF(root, "gmsg-keyreq", MIX_DATA) with root the VCEK hash stick of the requested
   * TCB (sev-reference §7.10; the same stick the VCEK is derived from, so a key requested for an
   * older TCB is one the older firmware also derived), or the guest's VMRK (ROOT_KEY_SELECT 1).
   */
  #keyResponse(g: SnpGuest, payload: Buffer, vmpckIndex: number): Buffer {
    let req;
    try {
      req = decodeSnpKeyRequest(payload);
    } catch (err) {
      if (err instanceof AbiDecodeError) return encodeSnpKeyResponse({ status: SevStatus.INVALID_PARAM });
      throw err;
    }
    const invalid = encodeSnpKeyResponse({ status: SevStatus.INVALID_PARAM });
    if (req.reservedNonZero !== undefined || req.vmpl > 3 || req.vmpl < vmpckIndex) return invalid;
    if ((req.guestFieldSelect & ~SNP_GUEST_FIELD_SELECT_ALL) !== 0n) return invalid;
    if (req.keySel === SnpKeySel.RESERVED || req.keySel === SnpKeySel.VLEK_ONLY)
      return encodeSnpKeyResponse({ status: SevStatus.INVALID_KEY });
    if (this.#maskChipKey) return encodeSnpKeyResponse({ status: SevStatus.INVALID_KEY });
    const useTcb = (req.guestFieldSelect & SnpGuestFieldSelect.TCB_VERSION) !== 0n;
    // Without a TCB field the root is the reported TCB's stick (ASPFW re-derives it at SNP_CONFIG).
    const tcb = useTcb ? req.tcbVersion : this.reportedTcb;
    if (useTcb && !this.#tcbAtMost(tcb, this.#committedTcb)) return invalid;
    if ((req.guestFieldSelect & SnpGuestFieldSelect.GUEST_SVN) !== 0n && req.guestSvn > g.guestSvn)
      return invalid;
    const gfs = req.guestFieldSelect;
    const pick = <T>(bit: bigint, value: T, zero: T): T => ((gfs & bit) !== 0n ? value : zero);
    // ASPFW mixes HOST_DATA and the ID block's key digest in always: 2 the author key, 1 the ID key.
    const idBlockKeySelect = g.authorKeyEnabled ? 2 : g.idBlock ? 1 : 0;
    const idBlockKeyDigest =
      idBlockKeySelect === 2 ? g.authorKeyDigest : idBlockKeySelect === 1 ? g.idKeyDigest : Buffer.alloc(48);
    const mix = encodeSnpMixData({
      rootKeySelect: req.rootKeySelect,
      idBlockKeySelect,
      guestFieldSelect: gfs,
      vmpl: req.vmpl,
      guestSvn: pick(SnpGuestFieldSelect.GUEST_SVN, req.guestSvn, 0),
      tcbVersion: pick(SnpGuestFieldSelect.TCB_VERSION, tcb, 0n),
      guestPolicy: pick(SnpGuestFieldSelect.GUEST_POLICY, g.policy, 0n),
      imageId: pick(SnpGuestFieldSelect.IMAGE_ID, g.imageId, Buffer.alloc(16)),
      familyId: pick(SnpGuestFieldSelect.FAMILY_ID, g.familyId, Buffer.alloc(16)),
      measurement: pick(SnpGuestFieldSelect.MEASUREMENT, g.ld.subarray(0, 32), Buffer.alloc(32)),
      hostData: g.hostData,
      idBlockKeyDigest: idBlockKeyDigest.subarray(0, 32),
    });
    const root =
      req.rootKeySelect === 1
        ? Buffer.from(g.vmrk as Buffer)
        : vcekHashStick(this.#ctx.chipSecret, this.#product as SnpProduct, tcb);
    const key = sevKdf(root, 32, 'gmsg-keyreq', mix);
    root.fill(0);
    return encodeSnpKeyResponse({ status: SevStatus.SUCCESS, derivedKey: key });
  }

  #vcek(tcb: bigint): KeyObject {
    let key = this.#vceks.get(tcb);
    if (key === undefined) {
      key = vcekPrivateKey(this.#ctx.chipSecret, this.#product as SnpProduct, tcb);
      this.#vceks.set(tcb, key);
    }
    return key;
  }

  toJSON(): string {
    return `[SnpFirmware state ${this.#state}, ${this.#guests.size} guests]`;
  }
}
