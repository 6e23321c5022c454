// The AMD Secure Processor's SEV firmware: platform state machine, guest contexts and the legacy
// SEV command handlers, behind the mailbox (command ID + command-buffer address → status).
// Check order and status codes follow AMD's firmware source (amd/AMD-ASPFW sev_mcmd.c): platform
// state first, then the handle, then guest state, then everything else; nothing changes unless
// every check passes.

import {
  ActivateBuffer,
  AttestationBuffer,
  ReceiveStartBuffer,
  SendStartBuffer,
  decodeAmdRootCert,
  type ChainCert,
  verifyCertSignature,
  DebugBuffer,
  GET_ID_BYTES,
  GetIdBuffer,
  PACKET_FLAG_COMPRESSED,
  POLICY_RESERVED_MASK,
  PacketHeader,
  PdhCertExportBuffer,
  PekCertImportBuffer,
  PekCsrBuffer,
  SEV_ATTESTATION_SIGNED_LENGTH,
  SEV_CERT_SIZE,
  SessionBuffer,
  SevAttestationReport,
  SevCertAlgo,
  SevCertUsage,
  TransportBuffer,
  decodeSevCert,
  COMMAND_BUFFER_SIZE,
  GuestState,
  GuestStatusBuffer,
  HandleBuffer,
  INIT_FLAG_ES,
  InitBuffer,
  LaunchMeasureBuffer,
  LaunchMeasurement,
  LaunchStartBuffer,
  LaunchUpdateBuffer,
  PLATFORM_CONFIG_ES,
  PlatformState,
  type GuestStateCode,
  type PlatformStateCode,
  PlatformStatusBuffer,
  SevCommand,
  SevStatus,
  type SevStatusCode,
  type Decoded,
  type FieldSpecs,
  type StructLayout,
  TMR_SIZE,
  decodeSevPolicy,
} from '../abi/index.js';
import type { KeyObject } from 'node:crypto';
import {
  ChannelContext,
  Drbg,
  MEMORY_KEY_MATERIAL_BYTES,
  deriveChannelWrapKeys,
  wrapTransportKeys,
  macEquals,
  p384PublicKeyFromAmd,
  policyMac,
  unwrapTransportKeys,
} from '../crypto/index.js';
import { chipSecret } from './chip-fuses.js';
import { NvStorage } from './nv-storage.js';
import { PlatformIdentity } from './platform-identity.js';
import { type SimulatedAmdRoot, simulatedAmdRoot } from './simulated-amd-root.js';
import {
  KEY_HOST,
  KEY_NONE,
  type KeyId,
  type PagingFormat,
  type ProductProfile,
  type PspCapabilities,
} from '../soc/index.js';
import { AsidTable } from './asid-table.js';
import { GuestContext } from './guest-context.js';
import { SNP_COMMANDS, SnpFirmware } from './snp-firmware.js';

/** At most 1024 guests, handles 1..1024 (ASPFW sev_plat.h SEV_GUEST_COUNT_MAX). */
export const MAX_GUESTS = 1024;
/** The firmware's bounce buffer bounds one LAUNCH_SECRET packet (ASPFW SEV_SCRATCH_BUF_LEN). */
const SCRATCH_BUFFER_BYTES = 0x5000;
/** An SEV-ES VMSA is one page. */
const VMSA_SIZE = 0x1000;
/** Firmware reads LAUNCH_UPDATE data in chunks (ASPFW uses 0x5000; larger here for speed). */
const UPDATE_CHUNK = 1 << 20;

/** One mailbox transaction, kept for the demo's narration and for tests. */
export interface MailboxRecord {
  readonly command: number;
  readonly status: SevStatusCode;
}

/** The host's side of the PSP mailbox (C2PMSG registers, sev-reference §2.1). */
export interface Mailbox {
  /** Issues `command` with its command buffer at `bufferAddress` (may carry the C-bit); returns the status. */
  issue(command: number, bufferAddress: number): SevStatusCode;
}

type Result = { status: SevStatusCode; output?: Buffer };
const ok = (output?: Buffer): Result =>
  output === undefined ? { status: SevStatus.SUCCESS } : { status: SevStatus.SUCCESS, output };
/** The command buffer with some fields filled in (lengths, handles, outputs), written back with `status`. */
function withBuffer<S extends FieldSpecs>(
  buf: Buffer,
  layout: StructLayout<S>,
  fields: Partial<Decoded<S>>,
  status: SevStatusCode,
): Result {
  const out = Buffer.from(buf);
  layout.write(out, fields);
  return { status, output: out };
}
const fail = (status: SevStatusCode, output?: Buffer): Result =>
  output === undefined ? { status } : { status, output };

export interface PspOptions {
  readonly profile: ProductProfile;
  readonly paging: PagingFormat;
  readonly seed?: string | number | bigint;
  /** Where the platform keeps its identity across restarts (the PSP's flash); in memory if absent. */
  readonly stateDirectory?: string;
  /** The AMD root that signed this chip's CEK; the machine's simulated root by default. */
  readonly amdRoot?: () => SimulatedAmdRoot;
}

const IDENTITY_RECORD = 'identity';

export class Psp implements Mailbox {
  #platformState: PlatformStateCode = PlatformState.UNINIT;
  #configFlags = 0;
  /** The SEV-ES Trusted Memory Region reserved at INIT (1 MiB), off limits to every command. */
  #tmr: number | undefined;
  readonly #guests = new Map<number, GuestContext>();
  readonly #asids: AsidTable;
  readonly #keyRng: Drbg;
  readonly #nonceRng: Drbg;
  /** OCA/PEK/PDH and channel keys: their own stream, so creating an identity never shifts a VEK. */
  readonly #identityRng: Drbg;
  readonly #caps: PspCapabilities;
  readonly #profile: ProductProfile;
  readonly #paging: PagingFormat;
  readonly log: MailboxRecord[] = [];
  readonly #chipSecret: Buffer;
  readonly #nv: NvStorage | undefined;
  readonly #amdRoot: () => SimulatedAmdRoot;
  #identityCache: PlatformIdentity | undefined;
  /** The SEV-SNP commands (their own state machine; ASIDs, keys and DF_FLUSH shared with SEV). */
  readonly #snp: SnpFirmware;

  constructor(caps: PspCapabilities, opts: PspOptions) {
    this.#caps = caps;
    this.#profile = opts.profile;
    this.#paging = opts.paging;
    this.#chipSecret = chipSecret(opts.seed, opts.stateDirectory);
    this.#nv =
      opts.stateDirectory === undefined ? undefined : new NvStorage(opts.stateDirectory, this.#chipSecret);
    this.#amdRoot = opts.amdRoot ?? (() => simulatedAmdRoot());
    this.#keyRng = Drbg.create(opts.seed, 'psp-key-rng');
    this.#nonceRng = Drbg.create(opts.seed, 'psp-nonce-rng');
    this.#identityRng = Drbg.create(opts.seed, 'psp-identity-rng');
    this.#asids = new AsidTable(opts.profile.maxSevAsid);
    // The host's SME key: generated inside the SoC at boot, never visible to software.
    caps.keySlots.install(KEY_HOST, this.#keyRng.generate(MEMORY_KEY_MATERIAL_BYTES));
    this.#snp = new SnpFirmware({
      caps,
      profile: opts.profile,
      asids: this.#asids,
      keyRng: this.#keyRng,
      nonceRng: this.#nonceRng,
      chipSecret: this.#chipSecret,
      legacyPlatformState: () => this.#platformState,
      dfFlush: () => this.#dfFlush(),
      validRange: (spa, length) => this.#validRange(spa, length),
    });
  }

  /** SNP_PLATFORM_STATUS state (0 UNINIT, 1 INIT), for display. */
  get snpPlatformState(): number {
    return this.#snp.platformState;
  }

  /** PLATFORM_STATUS state, for display (the same value the command returns). */
  get platformState(): PlatformStateCode {
    return this.#platformState;
  }

  issue(command: number, bufferAddress: number): SevStatusCode {
    let status: SevStatusCode;
    try {
      status = this.#dispatch(command, bufferAddress);
    } catch {
      // Nothing escapes the firmware: an internal failure (unreadable flash, a corrupt root) is a
      // hardware error to the host, and handlers validate before they change state.
      status = SevStatus.HWERROR_PLATFORM;
    }
    this.log.push({ command, status });
    return status;
  }

  #dispatch(command: number, bufferAddress: number): SevStatusCode {
    // SNP commands size their buffers by layout (none for SNP_INIT/DF_FLUSH); legacy ones by table.
    const snp = SNP_COMMANDS.has(command);
    const size = snp ? (SNP_COMMANDS.get(command)?.size ?? 0) : COMMAND_BUFFER_SIZE[command];
    if (size === undefined) return SevStatus.INVALID_COMMAND;
    let buffer: Buffer = Buffer.alloc(0);
    const where = this.#paging.splitCBit(bufferAddress);
    const key = where.encrypted ? KEY_HOST : KEY_NONE;
    if (size > 0) {
      if (!this.#validRange(where.address, size)) return SevStatus.INVALID_ADDRESS;
      buffer = this.#caps.dma.read(where.address, size, key);
    }
    const result = snp ? this.#snp.handle(command, buffer) : this.#handle(command, buffer);
    if (result.output !== undefined) this.#caps.dma.write(where.address, result.output, key);
    return result.status;
  }

  #handle(command: number, buf: Buffer): Result {
    switch (command) {
      case SevCommand.INIT:
        return this.#init(buf);
      case SevCommand.SHUTDOWN:
        return this.#shutdown();
      case SevCommand.PLATFORM_STATUS:
        return this.#platformStatus();
      case SevCommand.DF_FLUSH:
        return this.#dfFlush();
      case SevCommand.LAUNCH_START:
        return this.#launchStart(buf);
      case SevCommand.LAUNCH_UPDATE_DATA:
        return this.#launchUpdateData(buf);
      case SevCommand.LAUNCH_UPDATE_VMSA:
        return this.#launchUpdateData(buf, true);
      case SevCommand.LAUNCH_MEASURE:
        return this.#launchMeasure(buf);
      case SevCommand.LAUNCH_FINISH:
        return this.#finish(buf, GuestState.LSECRET);
      case SevCommand.ACTIVATE:
        return this.#activate(buf);
      case SevCommand.DEACTIVATE:
        return this.#deactivate(buf);
      case SevCommand.DECOMMISSION:
        return this.#decommission(buf);
      case SevCommand.GUEST_STATUS:
        return this.#guestStatus(buf);
      case SevCommand.PLATFORM_RESET:
        return this.#platformReset();
      case SevCommand.PEK_GEN:
        return this.#pekGen();
      case SevCommand.PEK_CSR:
        return this.#pekCsr(buf);
      case SevCommand.PEK_CERT_IMPORT:
        return this.#pekCertImport(buf);
      case SevCommand.PDH_GEN:
        return this.#pdhGen();
      case SevCommand.PDH_CERT_EXPORT:
        return this.#pdhCertExport(buf);
      case SevCommand.GET_ID:
        return this.#getId(buf);
      case SevCommand.LAUNCH_SECRET:
        return this.#launchSecret(buf);
      case SevCommand.ATTESTATION:
        return this.#attestation(buf);
      case SevCommand.SEND_START:
        return this.#sendStart(buf);
      case SevCommand.SEND_UPDATE_DATA:
        return this.#sendUpdate(buf, false);
      case SevCommand.SEND_UPDATE_VMSA:
        return this.#sendUpdate(buf, true);
      case SevCommand.SEND_FINISH:
        return this.#sendEnd(buf, GuestState.SENT);
      case SevCommand.SEND_CANCEL:
        return this.#sendEnd(buf, GuestState.RUNNING);
      case SevCommand.RECEIVE_START:
        return this.#receiveStart(buf);
      case SevCommand.RECEIVE_UPDATE_DATA:
        return this.#receiveUpdate(buf, false);
      case SevCommand.RECEIVE_UPDATE_VMSA:
        return this.#receiveUpdate(buf, true);
      case SevCommand.RECEIVE_FINISH:
        return this.#finish(buf, GuestState.RUPDATE);
      case SevCommand.DBG_DECRYPT:
        return this.#debugCrypt(buf, false);
      case SevCommand.DBG_ENCRYPT:
        return this.#debugCrypt(buf, true);
      default:
        return fail(SevStatus.INVALID_COMMAND);
    }
  }

  /** INIT or WORKING: the state most platform and launch commands require. */
  #initialised(): boolean {
    return this.#platformState === PlatformState.INIT || this.#platformState === PlatformState.WORKING;
  }

  #inDram(spa: number, length: number): boolean {
    return Number.isSafeInteger(spa) && spa >= 0 && length >= 0 && spa + length <= this.#caps.dma.dramBytes;
  }

  /** Inside DRAM and clear of the SEV-ES TMR, which only the firmware may touch (ASPFW validate_address_range). */
  #validRange(spa: number, length: number): boolean {
    if (!this.#inDram(spa, length)) return false;
    const tmr = this.#tmr;
    return tmr === undefined || spa + length <= tmr || spa >= tmr + TMR_SIZE;
  }

  /** A u64 physical address from a command buffer: C-bit split off, range-checked. */
  #address(raw: bigint, length: number): { spa: number; key: KeyId } | undefined {
    if (raw >= 1n << 53n) return undefined;
    const { address, encrypted } = this.#paging.splitCBit(Number(raw));
    if (!this.#validRange(address, length)) return undefined;
    return { spa: address, key: encrypted ? KEY_HOST : KEY_NONE };
  }

  #guest(handle: number): GuestContext | undefined {
    return this.#guests.get(handle);
  }

  // ---- platform commands -------------------------------------------------------------------

  #init(buf: Buffer): Result {
    if (this.#platformState !== PlatformState.UNINIT) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = InitBuffer.decode(buf);
    if ((cmd.flags & ~INIT_FLAG_ES) !== 0 || cmd.reserved.some((b) => b !== 0))
      return fail(SevStatus.INVALID_CONFIG);
    let tmr: number | undefined;
    if ((cmd.flags & INIT_FLAG_ES) !== 0) {
      if (!this.#profile.sevEs) return fail(SevStatus.UNSUPPORTED);
      // Alignment is checked on the full u64 before the length (ASPFW sev_es_reserve_trusted_region).
      if (cmd.tmrPaddr % BigInt(TMR_SIZE) !== 0n) return fail(SevStatus.INVALID_ADDRESS);
      if (cmd.tmrLength !== TMR_SIZE) return fail(SevStatus.INVALID_LENGTH);
      const where = this.#address(cmd.tmrPaddr, TMR_SIZE);
      if (where === undefined) return fail(SevStatus.INVALID_ADDRESS);
      tmr = where.spa;
    }
    this.#tmr = tmr;
    // Every ASID starts dirty: the host must WBINVD and DF_FLUSH before the first ACTIVATE.
    this.#asids.markAllDirty();
    this.#caps.asids.invalidateAll();
    this.#caps.dma.clearWbinvdDone();
    this.#configFlags = cmd.flags & INIT_FLAG_ES ? PLATFORM_CONFIG_ES : 0;
    this.#platformState = PlatformState.INIT;
    return ok();
  }

  #shutdown(): Result {
    for (const g of this.#guests.values()) g.wipe();
    this.#guests.clear();
    this.#asids.releaseAll();
    this.#caps.asids.invalidateAll();
    this.#configFlags = 0;
    this.#tmr = undefined;
    this.#platformState = PlatformState.UNINIT;
    return ok();
  }

  #platformStatus(): Result {
    const uninit = this.#platformState === PlatformState.UNINIT;
    // Output only: the firmware fills a zeroed buffer (reserved byte 0x06 stays 0).
    const out = PlatformStatusBuffer.encode({
      apiMajor: this.#profile.firmware.major,
      apiMinor: this.#profile.firmware.minor,
      state: this.#platformState,
      owner: !uninit && this.#existingIdentity()?.externallyOwned === true ? 1 : 0,
      config: uninit ? 0 : this.#configFlags,
      buildId: this.#profile.firmware.build,
      guestCount: uninit ? 0 : this.#guests.size,
    });
    return ok(out);
  }

  #dfFlush(): Result {
    if (!this.#caps.dma.wbinvdDone) return fail(SevStatus.WBINVD_REQUIRED);
    this.#asids.cleanAll();
    return ok();
  }

  // ---- guest commands ----------------------------------------------------------------------

  #launchStart(buf: Buffer): Result {
    if (!this.#initialised()) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = LaunchStartBuffer.decode(buf);
    // With a GODH certificate the owner opens a channel; without one, TEK and TIK stay zero and the
    // policy is not checked (ASPFW sev_mcmd_launch_start).
    let channel: { tek: Buffer; tik: Buffer } | undefined;
    if (cmd.gdhCertPaddr !== 0n) {
      const opened = this.#openChannel(
        cmd.gdhCertPaddr,
        cmd.gdhCertLength,
        cmd.sessionPaddr,
        cmd.sessionLength,
        cmd.policy,
      );
      if (typeof opened === 'number') return fail(opened);
      channel = opened;
    }
    const created = this.#createGuest(cmd.handle, cmd.policy, channel, GuestState.LUPDATE);
    if (typeof created === 'number') return fail(created);
    return withBuffer(buf, LaunchStartBuffer, { handle: created.handle }, SevStatus.SUCCESS);
  }

  /**
   * A new guest context (LAUNCH_START, RECEIVE_START): a fresh VEK, or the one of `shareWith` when the
   * policies allow key sharing; the lowest free handle; the channel's transport keys if any.
   */
  #createGuest(
    shareWith: number,
    policy: number,
    channel: { tek: Buffer; tik: Buffer } | undefined,
    state: GuestStateCode,
  ): GuestContext | SevStatusCode {
    const cmd = { handle: shareWith, policy };
    let vek: Buffer;
    if (cmd.handle !== 0) {
      const other = this.#guest(cmd.handle);
      if (other === undefined) return SevStatus.INVALID_GUEST;
      if (other.policy !== cmd.policy || decodeSevPolicy(other.policy).noKeySharing)
        return SevStatus.POLICY_FAILURE;
      vek = other.vekCopy();
    } else {
      vek = this.#keyRng.generate(MEMORY_KEY_MATERIAL_BYTES);
    }
    let handle = 0;
    for (let h = 1; h <= MAX_GUESTS; h++) {
      if (!this.#guests.has(h)) {
        handle = h;
        break;
      }
    }
    if (handle === 0) return SevStatus.RESOURCE_LIMIT;
    if (decodeSevPolicy(cmd.policy).encryptedState && (this.#configFlags & PLATFORM_CONFIG_ES) === 0) {
      return SevStatus.UNSUPPORTED;
    }
    const guest = new GuestContext(handle, cmd.policy, vek);
    vek.fill(0);
    guest.state = state;
    if (channel !== undefined) {
      guest.openChannel(channel.tek, channel.tik);
      channel.tek.fill(0);
      channel.tik.fill(0);
    }
    this.#guests.set(handle, guest);
    this.#platformState = PlatformState.WORKING;
    return guest;
  }

  /** The common prefix of guest commands: platform WORKING, a valid handle, an allowed state. */
  #guestFor(handle: number, states: readonly number[] | 'any'): GuestContext | SevStatusCode {
    if (this.#platformState !== PlatformState.WORKING) return SevStatus.INVALID_PLATFORM_STATE;
    const g = this.#guest(handle);
    if (g === undefined) return SevStatus.INVALID_GUEST;
    if (states !== 'any' && !states.includes(g.state)) return SevStatus.INVALID_GUEST_STATE;
    return g;
  }

  /** LAUNCH_UPDATE_DATA, and LAUNCH_UPDATE_VMSA (one 4 KiB save area of an SEV-ES vCPU). */
  #launchUpdateData(buf: Buffer, vmsa = false): Result {
    const cmd = LaunchUpdateBuffer.decode(buf);
    if (vmsa && cmd.length !== VMSA_SIZE) return fail(SevStatus.INVALID_LENGTH);
    const g = this.#guestFor(cmd.handle, [GuestState.LUPDATE]);
    if (typeof g === 'number') return fail(g);
    if (vmsa && !g.encryptedState) return fail(SevStatus.UNSUPPORTED);
    if (g.activation === 'inactive') return fail(SevStatus.INACTIVE);
    if (cmd.paddr % 16n !== 0n) return fail(SevStatus.INVALID_ADDRESS);
    if (cmd.length === 0 || cmd.length % 16 !== 0) return fail(SevStatus.INVALID_LENGTH);
    const where = this.#address(cmd.paddr, cmd.length);
    if (where === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const digest = g.launchDigest as NonNullable<typeof g.launchDigest>;
    for (let done = 0; done < cmd.length; done += UPDATE_CHUNK) {
      const n = Math.min(UPDATE_CHUNK, cmd.length - done);
      // Measure the unaltered plaintext, then encrypt it in place under the guest's key.
      const plain = this.#caps.dma.read(where.spa + done, n, where.key);
      digest.update(plain);
      this.#caps.dma.write(where.spa + done, plain, g.asid);
    }
    return ok();
  }

  #launchMeasure(buf: Buffer): Result {
    const cmd = LaunchMeasureBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, [GuestState.LUPDATE]);
    if (typeof g === 'number') return fail(g);
    if (cmd.length < LaunchMeasurement.size) {
      return withBuffer(
        buf,
        LaunchMeasureBuffer,
        { length: LaunchMeasurement.size },
        SevStatus.INVALID_LENGTH,
      );
    }
    const where = this.#address(cmd.paddr, LaunchMeasurement.size);
    if (where === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const ld = (g.launchDigest as NonNullable<typeof g.launchDigest>).digest();
    const mnonce = this.#nonceRng.generate(16);
    // sev-reference §5.2: HMAC(TIK, 0x04 || major || minor || build || le32(policy) || LD || MNONCE)
    const measurement = g.measurementMac(this.#profile.firmware, ld, mnonce);
    this.#caps.dma.write(where.spa, LaunchMeasurement.encode({ measurement, mnonce }), where.key);
    g.launchDigest = undefined;
    g.finalDigest = ld;
    g.measurement = measurement;
    g.state = GuestState.LSECRET;
    return ok();
  }

  /**
   * LAUNCH_FINISH (from LSECRET) and RECEIVE_FINISH (from RUPDATE): the guest runs, a pending
   * activation completes (its ASID becomes valid), and the transport channel closes.
   */
  #finish(buf: Buffer, from: GuestStateCode): Result {
    const cmd = HandleBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, [from]);
    if (typeof g === 'number') return fail(g);
    if (g.activation === 'pending') {
      g.activation = 'active';
      this.#asids.bind(g.asid, g.handle, 'in-use');
      this.#caps.asids.setValid(g.asid, true);
    }
    g.closeChannel();
    g.state = GuestState.RUNNING;
    return ok();
  }

  #activate(buf: Buffer): Result {
    const cmd = ActivateBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, 'any');
    if (typeof g === 'number') return fail(g);
    const asid = cmd.asid;
    const max = this.#profile.maxSevAsid;
    if (asid === 0 || asid > max) return fail(SevStatus.INVALID_ASID);
    if (this.#asids.use(asid) !== 'free') return fail(SevStatus.ASID_OWNED);
    if (g.activation !== 'inactive') return fail(SevStatus.ACTIVE);
    if (g.state === GuestState.SENT) return fail(SevStatus.INVALID_GUEST_STATE);
    if (this.#asids.dirty(asid)) return fail(SevStatus.DF_FLUSH_REQUIRED);
    const min = this.#profile.minSevAsid;
    if (g.encryptedState ? asid >= min : asid < min) return fail(SevStatus.INVALID_ASID);
    this.#caps.keySlots.install(asid, g.vekCopy());
    const running = g.state === GuestState.RUNNING || g.state === GuestState.SUPDATE;
    g.asid = asid;
    g.activation = running ? 'active' : 'pending';
    this.#asids.bind(asid, g.handle, running ? 'in-use' : 'allocated');
    if (running) this.#caps.asids.setValid(asid, true);
    return ok();
  }

  #deactivate(buf: Buffer): Result {
    const cmd = HandleBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, 'any');
    if (typeof g === 'number') return fail(g);
    if (g.activation === 'inactive') return fail(SevStatus.INACTIVE);
    // The key stays in the memory controller's slot (ASPFW: "We do not clear umc key here anymore");
    // the ASID becomes dirty, so its stale cache lines must be flushed before it is reused.
    if (this.#asids.use(g.asid) === 'in-use') this.#caps.dma.clearWbinvdDone();
    this.#asids.unbind(g.asid);
    this.#caps.asids.setValid(g.asid, false);
    g.asid = 0;
    g.activation = 'inactive';
    return ok();
  }

  #decommission(buf: Buffer): Result {
    const cmd = HandleBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, 'any');
    if (typeof g === 'number') return fail(g);
    if (g.activation !== 'inactive') return fail(SevStatus.ACTIVE);
    g.wipe();
    this.#guests.delete(g.handle);
    if (this.#guests.size === 0) this.#platformState = PlatformState.INIT;
    return ok();
  }

  #guestStatus(buf: Buffer): Result {
    if (!this.#initialised()) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = GuestStatusBuffer.decode(buf);
    const out = Buffer.from(buf);
    const g = this.#guest(cmd.handle);
    // An unknown handle is not an error: state INVALID (0), the rest echoed (ASPFW sev_mcmd_guest_status).
    if (g === undefined) GuestStatusBuffer.write(out, { state: GuestState.UNINIT });
    else GuestStatusBuffer.write(out, { policy: g.policy, asid: g.asid, state: g.state });
    return ok(out);
  }

  /**
   * DBG_DECRYPT (guest memory → host plaintext) and DBG_ENCRYPT (host plaintext → guest memory),
   * in ASPFW's check order: platform, alignment, length, handle, NODBG, activation.
   */
  #debugCrypt(buf: Buffer, encrypt: boolean): Result {
    if (this.#platformState !== PlatformState.WORKING) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = DebugBuffer.decode(buf);
    if (cmd.srcPaddr % 16n !== 0n || cmd.dstPaddr % 16n !== 0n) return fail(SevStatus.INVALID_ADDRESS);
    if (cmd.length % 16 !== 0) return fail(SevStatus.INVALID_LENGTH);
    const g = this.#guest(cmd.handle);
    if (g === undefined) return fail(SevStatus.INVALID_GUEST);
    if (decodeSevPolicy(g.policy).noDebug) return fail(SevStatus.POLICY_FAILURE);
    if (g.activation === 'inactive') return fail(SevStatus.INACTIVE);
    const src = this.#address(cmd.srcPaddr, cmd.length);
    const dst = this.#address(cmd.dstPaddr, cmd.length);
    if (src === undefined || dst === undefined) return fail(SevStatus.INVALID_ADDRESS);
    // The guest side uses the guest's key whatever C-bit the host put in that address.
    const data = this.#caps.dma.read(src.spa, cmd.length, encrypt ? src.key : g.asid);
    this.#caps.dma.write(dst.spa, data, encrypt ? g.asid : dst.key);
    return ok();
  }

  // ---- platform identity (sev-reference §2.8) ---------------------------------------------

  /** The identity in flash, created (and stored) on first use like the firmware's INIT does. */
  #identity(): PlatformIdentity {
    if (this.#identityCache !== undefined) return this.#identityCache;
    const existing = this.#existingIdentity();
    if (existing !== undefined) return existing;
    const identity = PlatformIdentity.create(
      this.#chipSecret,
      this.#amdRoot(),
      this.#identityRng,
      this.#profile.firmware,
    );
    this.#nv?.save(IDENTITY_RECORD, identity.serialize());
    this.#identityCache = identity;
    return identity;
  }

  /** The identity if it exists already (loaded from flash if need be), without creating one. */
  #existingIdentity(): PlatformIdentity | undefined {
    if (this.#identityCache !== undefined) return this.#identityCache;
    const stored = this.#nv?.load(IDENTITY_RECORD);
    if (stored !== undefined) this.#identityCache = PlatformIdentity.deserialize(stored, this.#chipSecret);
    return this.#identityCache;
  }

  /**
   * Applies `change` to a copy of the identity and commits it to flash; only then does the PSP use
   * it. A failed write (power loss, a broken flash) leaves the previous identity in force.
   */
  #updateIdentity(change: (id: PlatformIdentity) => string | undefined): SevStatusCode {
    const id = PlatformIdentity.deserialize(this.#identity().serialize(), this.#chipSecret);
    const refusal = change(id);
    if (refusal !== undefined) return SevStatus[refusal as keyof typeof SevStatus];
    try {
      this.#nv?.save(IDENTITY_RECORD, id.serialize());
    } catch {
      return SevStatus.HWERROR_PLATFORM;
    }
    this.#identityCache = id;
    return SevStatus.SUCCESS;
  }

  #platformReset(): Result {
    if (this.#platformState !== PlatformState.UNINIT) return fail(SevStatus.INVALID_PLATFORM_STATE);
    // OCA, PEK and PDH are erased; the CEK is a function of the chip and comes back unchanged.
    this.#nv?.erase(IDENTITY_RECORD);
    this.#identityCache = undefined;
    return ok();
  }

  #pekGen(): Result {
    if (this.#platformState !== PlatformState.INIT) return fail(SevStatus.INVALID_PLATFORM_STATE);
    return fail(
      this.#updateIdentity((id) => {
        id.regeneratePek(this.#identityRng, this.#profile.firmware);
        return undefined;
      }),
    );
  }

  #pdhGen(): Result {
    if (!this.#initialised()) return fail(SevStatus.INVALID_PLATFORM_STATE);
    return fail(
      this.#updateIdentity((id) => {
        id.regeneratePdh(this.#identityRng, this.#profile.firmware);
        return undefined;
      }),
    );
  }

  #pekCsr(buf: Buffer): Result {
    if (!this.#initialised()) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = PekCsrBuffer.decode(buf);
    if (cmd.csrLength < SEV_CERT_SIZE) {
      return withBuffer(buf, PekCsrBuffer, { csrLength: SEV_CERT_SIZE }, SevStatus.INVALID_LENGTH);
    }
    const where = this.#address(cmd.csrPaddr, SEV_CERT_SIZE);
    if (where === undefined) return fail(SevStatus.INVALID_ADDRESS);
    this.#caps.dma.write(where.spa, this.#identity().pekCsr(), where.key);
    return withBuffer(buf, PekCsrBuffer, { csrLength: SEV_CERT_SIZE }, SevStatus.SUCCESS);
  }

  #pekCertImport(buf: Buffer): Result {
    if (this.#platformState !== PlatformState.INIT) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = PekCertImportBuffer.decode(buf);
    if (this.#existingIdentity()?.externallyOwned === true) return fail(SevStatus.ALREADY_OWNED);
    if (cmd.pekLength !== SEV_CERT_SIZE || cmd.ocaLength !== SEV_CERT_SIZE)
      return fail(SevStatus.INVALID_LENGTH);
    const pekAt = this.#address(cmd.pekPaddr, SEV_CERT_SIZE);
    const ocaAt = this.#address(cmd.ocaPaddr, SEV_CERT_SIZE);
    if (pekAt === undefined || ocaAt === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const pek = this.#caps.dma.read(pekAt.spa, SEV_CERT_SIZE, pekAt.key);
    const oca = this.#caps.dma.read(ocaAt.spa, SEV_CERT_SIZE, ocaAt.key);
    return fail(
      this.#updateIdentity((id) => id.importPek(pek, oca, this.#identityRng, this.#profile.firmware)),
    );
  }

  #pdhCertExport(buf: Buffer): Result {
    if (!this.#initialised()) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = PdhCertExportBuffer.decode(buf);
    const chainLength = 3 * SEV_CERT_SIZE;
    if (cmd.pdhLength < SEV_CERT_SIZE || cmd.chainLength < chainLength) {
      return withBuffer(
        buf,
        PdhCertExportBuffer,
        { pdhLength: SEV_CERT_SIZE, chainLength },
        SevStatus.INVALID_LENGTH,
      );
    }
    const pdhAt = this.#address(cmd.pdhPaddr, SEV_CERT_SIZE);
    const chainAt = this.#address(cmd.chainPaddr, chainLength);
    if (pdhAt === undefined || chainAt === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const id = this.#identity();
    this.#caps.dma.write(pdhAt.spa, id.pdhCert, pdhAt.key);
    // The chain is PEK ‖ OCA ‖ CEK (sev-tool sev_cert_chain_buf).
    this.#caps.dma.write(chainAt.spa, Buffer.concat([id.pekCert, id.ocaCert, id.cekCert]), chainAt.key);
    return withBuffer(buf, PdhCertExportBuffer, { pdhLength: SEV_CERT_SIZE, chainLength }, SevStatus.SUCCESS);
  }

  #getId(buf: Buffer): Result {
    const cmd = GetIdBuffer.decode(buf);
    if (cmd.idLength < GET_ID_BYTES) {
      return withBuffer(buf, GetIdBuffer, { idLength: GET_ID_BYTES }, SevStatus.INVALID_LENGTH);
    }
    const where = this.#address(cmd.idPaddr, GET_ID_BYTES);
    if (where === undefined) return fail(SevStatus.INVALID_ADDRESS);
    this.#caps.dma.write(where.spa, this.#identity().chipId, where.key);
    return withBuffer(buf, GetIdBuffer, { idLength: GET_ID_BYTES }, SevStatus.SUCCESS);
  }

  // ---- the owner's channel (sev-reference §4, §5.3) -----------------------------------------

  /**
   * LAUNCH_START with a session: sanity-check the GODH certificate, ECDH with the PDH, derive KEK/KIK,
   * check the wrap MAC, unwrap TEK/TIK, check the policy MAC and the policy itself.
   */
  #openChannel(
    certPaddr: bigint,
    certLength: number,
    sessionPaddr: bigint,
    sessionLength: number,
    policy: number,
  ): { tek: Buffer; tik: Buffer } | SevStatusCode {
    // ASPFW: the session's length and copy first, then the certificate's.
    if (sessionLength !== SessionBuffer.size) return SevStatus.INVALID_LENGTH;
    const sessionAt = this.#address(sessionPaddr, SessionBuffer.size);
    if (sessionAt === undefined) return SevStatus.INVALID_ADDRESS;
    if (certLength !== SEV_CERT_SIZE) return SevStatus.INVALID_LENGTH;
    const certAt = this.#address(certPaddr, SEV_CERT_SIZE);
    if (certAt === undefined) return SevStatus.INVALID_ADDRESS;
    let godh: KeyObject;
    try {
      const cert = decodeSevCert(this.#caps.dma.read(certAt.spa, SEV_CERT_SIZE, certAt.key));
      // Only a sanity check: the GODH's signatures are ignored (ASPFW sev_cert_sanity_check).
      if (
        cert.pubkey.type !== 'ec' ||
        cert.pubkey.usage !== SevCertUsage.PDH ||
        cert.pubkey.algo !== SevCertAlgo.ECDH_SHA256
      ) {
        return SevStatus.INVALID_CERTIFICATE;
      }
      godh = p384PublicKeyFromAmd(cert.pubkey);
    } catch {
      return SevStatus.INVALID_CERTIFICATE;
    }
    const session = SessionBuffer.decode(
      this.#caps.dma.read(sessionAt.spa, SessionBuffer.size, sessionAt.key),
    );
    const z = this.#identity().agreeWithPdh(godh);
    const wrap = deriveChannelWrapKeys(z, session.nonce);
    z.fill(0);
    const keys = unwrapTransportKeys(wrap, session.wrapIv, session.wrapTk, session.wrapMac);
    wrap.kek.fill(0);
    wrap.kik.fill(0);
    if (keys === undefined || !macEquals(policyMac(keys.tik, policy), session.policyMac))
      return SevStatus.BAD_MEASUREMENT;
    const p = decodeSevPolicy(policy);
    const fw = this.#profile.firmware;
    if (
      (policy & POLICY_RESERVED_MASK) !== 0 ||
      p.apiMajor > fw.major ||
      (p.apiMajor === fw.major && p.apiMinor > fw.minor)
    ) {
      return SevStatus.POLICY_FAILURE;
    }
    return keys;
  }

  /** LAUNCH_SECRET: MAC-check the packet under the TIK, decrypt it with the TEK, write it under the VEK. */
  #launchSecret(buf: Buffer): Result {
    const cmd = TransportBuffer.decode(buf);
    // ASPFW sev_mcmd_launch_secret: platform, handle, address, lengths, then guest state and activation.
    const g = this.#guestFor(cmd.handle, 'any');
    if (typeof g === 'number') return fail(g);
    if (cmd.guestPaddr % 16n !== 0n) return fail(SevStatus.INVALID_ADDRESS);
    if (
      cmd.hdrLength !== PacketHeader.size ||
      cmd.guestLength === 0 ||
      cmd.guestLength % 16 !== 0 ||
      cmd.guestLength > SCRATCH_BUFFER_BYTES ||
      cmd.guestLength !== cmd.transLength
    ) {
      return fail(SevStatus.INVALID_LENGTH);
    }
    if (g.state !== GuestState.LSECRET) return fail(SevStatus.INVALID_GUEST_STATE);
    if (g.activation === 'inactive') return fail(SevStatus.INACTIVE);
    const hdrAt = this.#address(cmd.hdrPaddr, PacketHeader.size);
    const transAt = this.#address(cmd.transPaddr, cmd.transLength);
    const guestAt = this.#address(cmd.guestPaddr, cmd.guestLength);
    if (hdrAt === undefined || transAt === undefined || guestAt === undefined)
      return fail(SevStatus.INVALID_ADDRESS);
    const hdr = PacketHeader.decode(this.#caps.dma.read(hdrAt.spa, PacketHeader.size, hdrAt.key));
    const ct = this.#caps.dma.read(transAt.spa, cmd.transLength, transAt.key);
    const mac = g.packetMac(
      ChannelContext.SECRET,
      hdr.flags,
      hdr.iv,
      cmd.guestLength,
      ct,
      g.measurement ?? Buffer.alloc(32),
    );
    if (!macEquals(mac, hdr.mac)) return fail(SevStatus.BAD_MEASUREMENT);
    // The MAC is checked before the flags: a compressed packet with a good MAC is UNSUPPORTED.
    if ((hdr.flags & PACKET_FLAG_COMPRESSED) !== 0) return fail(SevStatus.UNSUPPORTED);
    const plain = g.decryptPacket(hdr.iv, ct);
    this.#caps.dma.write(guestAt.spa, plain, g.asid);
    plain.fill(0);
    return ok();
  }

  /** ATTESTATION: the launch digest and policy, with the caller's nonce, signed by the PEK. */
  #attestation(buf: Buffer): Result {
    const cmd = AttestationBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, [
      GuestState.LSECRET,
      GuestState.RUNNING,
      GuestState.SUPDATE,
      GuestState.SENT,
    ]);
    if (typeof g === 'number') return fail(g);
    if (cmd.length < SevAttestationReport.size) {
      return withBuffer(
        buf,
        AttestationBuffer,
        { length: SevAttestationReport.size },
        SevStatus.INVALID_LENGTH,
      );
    }
    const where = this.#address(cmd.paddr, SevAttestationReport.size);
    if (where === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const report = SevAttestationReport.encode({
      mnonce: cmd.mnonce,
      launchDigest: g.finalDigest ?? Buffer.alloc(32),
      policy: g.policy,
      sigUsage: SevCertUsage.PEK,
      sigAlgo: SevCertAlgo.ECDSA_SHA256,
    });
    const sig = this.#identity().signWithPek(report.subarray(0, SEV_ATTESTATION_SIGNED_LENGTH));
    SevAttestationReport.write(report, { sigR: sig.r, sigS: sig.s });
    this.#caps.dma.write(where.spa, report, where.key);
    return withBuffer(buf, AttestationBuffer, { length: SevAttestationReport.size }, SevStatus.SUCCESS);
  }

  // ---- migration (sev-reference §8) --------------------------------------------------------

  /**
   * The destination's certificates as SEND_START receives them: its PDH, PEK ‖ OCA ‖ CEK, and
   * ASK ‖ ARK. With policy.SEV the chain must reach the ARK this firmware trusts; with policy.DOMAIN
   * the destination's OCA must be ours (ASPFW validate_platform, validate_domain).
   */
  #checkDestination(
    cmd: ReturnType<typeof SendStartBuffer.decode>,
    policy: number,
  ): { pdh: KeyObject } | SevStatusCode {
    if (cmd.pdhCertLength !== SEV_CERT_SIZE) return SevStatus.INVALID_LENGTH;
    const pdhAt = this.#address(cmd.pdhCertPaddr, SEV_CERT_SIZE);
    if (pdhAt === undefined) return SevStatus.INVALID_ADDRESS;
    const p = decodeSevPolicy(policy);
    let pdhCert: ChainCert;
    try {
      const bytes = this.#caps.dma.read(pdhAt.spa, SEV_CERT_SIZE, pdhAt.key);
      pdhCert = { format: 'sev', cert: decodeSevCert(bytes), bytes };
    } catch {
      return SevStatus.INVALID_CERTIFICATE;
    }
    if (
      pdhCert.format !== 'sev' ||
      pdhCert.cert.pubkey.type !== 'ec' ||
      pdhCert.cert.pubkey.usage !== SevCertUsage.PDH
    ) {
      return SevStatus.INVALID_CERTIFICATE;
    }
    if (p.sevOnly || p.domain) {
      if (cmd.platCertsLength !== 3 * SEV_CERT_SIZE) return SevStatus.INVALID_LENGTH;
      const platAt = this.#address(cmd.platCertsPaddr, 3 * SEV_CERT_SIZE);
      if (platAt === undefined) return SevStatus.INVALID_ADDRESS;
      const plat = this.#caps.dma.read(platAt.spa, 3 * SEV_CERT_SIZE, platAt.key);
      let pek: ChainCert;
      let oca: ChainCert;
      let cek: ChainCert;
      try {
        const at = (i: number): Buffer => plat.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE);
        pek = { format: 'sev', cert: decodeSevCert(at(0)), bytes: at(0) };
        oca = { format: 'sev', cert: decodeSevCert(at(1)), bytes: at(1) };
        cek = { format: 'sev', cert: decodeSevCert(at(2)), bytes: at(2) };
      } catch {
        return SevStatus.INVALID_CERTIFICATE;
      }
      if (!verifyCertSignature(pdhCert, pek).ok) return SevStatus.BAD_SIGNATURE;
      if (p.sevOnly) {
        const askLength = cmd.amdCertsLength / 2;
        const amdAt = this.#address(cmd.amdCertsPaddr, cmd.amdCertsLength);
        if (amdAt === undefined || !Number.isInteger(askLength)) return SevStatus.INVALID_LENGTH;
        const amd = this.#caps.dma.read(amdAt.spa, cmd.amdCertsLength, amdAt.key);
        let ask: ChainCert;
        let ark: ChainCert;
        try {
          ask = {
            format: 'amd-root',
            cert: decodeAmdRootCert(amd.subarray(0, askLength)),
            bytes: amd.subarray(0, askLength),
          };
          ark = {
            format: 'amd-root',
            cert: decodeAmdRootCert(amd.subarray(askLength)),
            bytes: amd.subarray(askLength),
          };
        } catch {
          return SevStatus.INVALID_CERTIFICATE;
        }
        // The ARK must be the one this firmware trusts (AMD's, here the simulated root).
        if (!ark.bytes.equals(this.#amdRoot().ark)) return SevStatus.INVALID_CERTIFICATE;
        for (const [subject, signer] of [
          [ark, ark],
          [ask, ark],
          [cek, ask],
          [pek, cek],
        ] as const) {
          if (!verifyCertSignature(subject, signer).ok) return SevStatus.BAD_SIGNATURE;
        }
        const pekCert = pek.format === 'sev' ? pek.cert : undefined;
        if (
          pekCert === undefined ||
          pekCert.apiMajor < p.apiMajor ||
          (pekCert.apiMajor === p.apiMajor && pekCert.apiMinor < p.apiMinor)
        ) {
          return SevStatus.POLICY_FAILURE;
        }
      }
      if (p.domain) {
        if (!verifyCertSignature(pek, oca).ok) return SevStatus.BAD_SIGNATURE;
        if (!oca.bytes.equals(this.#identity().ocaCert)) return SevStatus.POLICY_FAILURE;
      }
    }
    try {
      return { pdh: p384PublicKeyFromAmd(pdhCert.cert.pubkey) };
    } catch {
      return SevStatus.INVALID_CERTIFICATE;
    }
  }

  /** SEND_START: this firmware opens the channel as the client, wrapped to the destination's PDH. */
  #sendStart(buf: Buffer): Result {
    if (this.#platformState !== PlatformState.WORKING) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = SendStartBuffer.decode(buf);
    const g = this.#guest(cmd.handle);
    if (g === undefined) return fail(SevStatus.INVALID_GUEST);
    if (cmd.sessionLength !== SessionBuffer.size) {
      return withBuffer(
        buf,
        SendStartBuffer,
        { sessionLength: SessionBuffer.size },
        SevStatus.INVALID_LENGTH,
      );
    }
    if (g.state !== GuestState.RUNNING) return fail(SevStatus.INVALID_GUEST_STATE);
    if (decodeSevPolicy(g.policy).noSend) return fail(SevStatus.POLICY_FAILURE);
    const dest = this.#checkDestination(cmd, g.policy);
    if (typeof dest === 'number') return fail(dest);
    const sessionAt = this.#address(cmd.sessionPaddr, SessionBuffer.size);
    if (sessionAt === undefined) return fail(SevStatus.INVALID_ADDRESS);
    const tek = this.#identityRng.generate(16);
    const tik = this.#identityRng.generate(16);
    const nonce = this.#nonceRng.generate(16);
    const wrapIv = this.#nonceRng.generate(16);
    const z = this.#identity().agreeWithPdh(dest.pdh);
    const wrap = deriveChannelWrapKeys(z, nonce);
    const { wrapTk, wrapMac } = wrapTransportKeys(wrap, wrapIv, tek, tik);
    const session = SessionBuffer.encode({
      nonce,
      wrapTk,
      wrapIv,
      wrapMac,
      policyMac: policyMac(tik, g.policy),
    });
    z.fill(0);
    wrap.kek.fill(0);
    wrap.kik.fill(0);
    this.#caps.dma.write(sessionAt.spa, session, sessionAt.key);
    g.openChannel(tek, tik);
    tek.fill(0);
    tik.fill(0);
    g.state = GuestState.SUPDATE;
    return withBuffer(buf, SendStartBuffer, { policy: g.policy }, SevStatus.SUCCESS);
  }

  /** SEND_UPDATE_DATA/VMSA: guest memory, decrypted with the VEK, re-encrypted under the TEK and MAC'd. */
  #sendUpdate(buf: Buffer, vmsa: boolean): Result {
    if (this.#platformState !== PlatformState.WORKING) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = TransportBuffer.decode(buf);
    // ASPFW sev_mcmd_send_update checks the header size before the handle and the guest's state.
    if (cmd.hdrLength < PacketHeader.size) {
      return withBuffer(buf, TransportBuffer, { hdrLength: PacketHeader.size }, SevStatus.INVALID_LENGTH);
    }
    const g = this.#guestFor(cmd.handle, [GuestState.SUPDATE]);
    if (typeof g === 'number') return fail(g);
    if (vmsa && !g.encryptedState) return fail(SevStatus.UNSUPPORTED);
    if (g.activation === 'inactive') return fail(SevStatus.INACTIVE);
    const len = cmd.guestLength;
    if (
      len === 0 ||
      len % 16 !== 0 ||
      len > SCRATCH_BUFFER_BYTES ||
      cmd.transLength < len ||
      (vmsa && len !== VMSA_SIZE)
    )
      return fail(SevStatus.INVALID_LENGTH);
    if (cmd.guestPaddr % 16n !== 0n) return fail(SevStatus.INVALID_ADDRESS);
    const guestAt = this.#address(cmd.guestPaddr, len);
    const hdrAt = this.#address(cmd.hdrPaddr, PacketHeader.size);
    const transAt = this.#address(cmd.transPaddr, len);
    if (guestAt === undefined || hdrAt === undefined || transAt === undefined)
      return fail(SevStatus.INVALID_ADDRESS);
    const iv = this.#nonceRng.generate(16);
    const plain = this.#caps.dma.read(guestAt.spa, len, g.asid);
    const ct = g.encryptPacket(iv, plain);
    plain.fill(0);
    // The firmware uses context 0x02 for both data and VMSA packets (ASPFW 1.55.25; sev-reference §8.1).
    const mac = g.packetMac(ChannelContext.DATA, 0, iv, len, ct, Buffer.alloc(0));
    this.#caps.dma.write(transAt.spa, ct, transAt.key);
    this.#caps.dma.write(hdrAt.spa, PacketHeader.encode({ flags: 0, iv, mac }), hdrAt.key);
    return withBuffer(
      buf,
      TransportBuffer,
      { hdrLength: PacketHeader.size, transLength: len },
      SevStatus.SUCCESS,
    );
  }

  /** SEND_FINISH (SUPDATE → SENT) and SEND_CANCEL (SUPDATE → RUNNING). */
  #sendEnd(buf: Buffer, to: GuestStateCode): Result {
    const cmd = HandleBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, [GuestState.SUPDATE]);
    if (typeof g === 'number') return fail(g);
    g.closeChannel();
    g.state = to;
    return ok();
  }

  /** RECEIVE_START: the server side of the channel, as LAUNCH_START, for the SENDER's PDH. */
  #receiveStart(buf: Buffer): Result {
    if (!this.#initialised()) return fail(SevStatus.INVALID_PLATFORM_STATE);
    const cmd = ReceiveStartBuffer.decode(buf);
    const channel = this.#openChannel(
      cmd.pdhCertPaddr,
      cmd.pdhCertLength,
      cmd.sessionPaddr,
      cmd.sessionLength,
      cmd.policy,
    );
    if (typeof channel === 'number') return fail(channel);
    const created = this.#createGuest(cmd.handle, cmd.policy, channel, GuestState.RUPDATE);
    if (typeof created === 'number') return fail(created);
    return withBuffer(buf, ReceiveStartBuffer, { handle: created.handle }, SevStatus.SUCCESS);
  }

  /** RECEIVE_UPDATE_DATA/VMSA: MAC-check under the TIK, decrypt with the TEK, store under the new VEK. */
  #receiveUpdate(buf: Buffer, vmsa: boolean): Result {
    const cmd = TransportBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, [GuestState.RUPDATE]);
    if (typeof g === 'number') return fail(g);
    if (vmsa && !g.encryptedState) return fail(SevStatus.UNSUPPORTED);
    if (g.activation === 'inactive') return fail(SevStatus.INACTIVE);
    const len = cmd.guestLength;
    if (
      cmd.hdrLength < PacketHeader.size ||
      len === 0 ||
      len % 16 !== 0 ||
      len > SCRATCH_BUFFER_BYTES ||
      len !== cmd.transLength ||
      (vmsa && len !== VMSA_SIZE)
    ) {
      return fail(SevStatus.INVALID_LENGTH);
    }
    if (cmd.guestPaddr % 16n !== 0n) return fail(SevStatus.INVALID_ADDRESS);
    const guestAt = this.#address(cmd.guestPaddr, len);
    const hdrAt = this.#address(cmd.hdrPaddr, PacketHeader.size);
    const transAt = this.#address(cmd.transPaddr, len);
    if (guestAt === undefined || hdrAt === undefined || transAt === undefined)
      return fail(SevStatus.INVALID_ADDRESS);
    const hdr = PacketHeader.decode(this.#caps.dma.read(hdrAt.spa, PacketHeader.size, hdrAt.key));
    if ((hdr.flags & PACKET_FLAG_COMPRESSED) !== 0) return fail(SevStatus.UNSUPPORTED);
    const ct = this.#caps.dma.read(transAt.spa, len, transAt.key);
    if (!macEquals(g.packetMac(ChannelContext.DATA, hdr.flags, hdr.iv, len, ct, Buffer.alloc(0)), hdr.mac)) {
      return fail(SevStatus.BAD_MEASUREMENT);
    }
    const plain = g.decryptPacket(hdr.iv, ct);
    this.#caps.dma.write(guestAt.spa, plain, g.asid);
    plain.fill(0);
    return ok();
  }

  /** A summary for display: guest handles, states and ASIDs (no keys exist here to show). */
  describe(): {
    platformState: number;
    guests: { handle: number; state: number; asid: number; policy: number; activation: string }[];
    dirtyAsids: number[];
  } {
    return {
      platformState: this.#platformState,
      guests: [...this.#guests.values()].map((g) => ({
        handle: g.handle,
        state: g.state,
        asid: g.asid,
        policy: g.policy,
        activation: g.activation,
      })),
      dirtyAsids: this.#asids.dirtyAsids(),
    };
  }

  toJSON(): string {
    return '[Psp]';
  }
}
