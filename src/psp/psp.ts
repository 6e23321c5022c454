// The AMD Secure Processor's SEV firmware: platform state machine, guest contexts and the legacy
// SEV command handlers, behind the mailbox (command ID + command-buffer address → status).
// Check order and status codes follow AMD's firmware source (amd/AMD-ASPFW sev_mcmd.c): platform
// state first, then the handle, then guest state, then everything else; nothing changes unless
// every check passes.

import {
  ActivateBuffer,
  DebugBuffer,
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
  type PlatformStateCode,
  PlatformStatusBuffer,
  SevCommand,
  SevStatus,
  type SevStatusCode,
  TMR_SIZE,
  decodeSevPolicy,
} from '../abi/index.js';
import { Drbg, MEMORY_KEY_MATERIAL_BYTES } from '../crypto/index.js';
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

/** At most 1024 guests, handles 1..1024 (ASPFW sev_plat.h SEV_GUEST_COUNT_MAX). */
export const MAX_GUESTS = 1024;
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
const fail = (status: SevStatusCode, output?: Buffer): Result =>
  output === undefined ? { status } : { status, output };

export interface PspOptions {
  readonly profile: ProductProfile;
  readonly paging: PagingFormat;
  readonly seed?: string | number | bigint;
}

export class Psp implements Mailbox {
  #platformState: PlatformStateCode = PlatformState.UNINIT;
  #configFlags = 0;
  /** The SEV-ES Trusted Memory Region reserved at INIT (1 MiB), off limits to every command. */
  #tmr: number | undefined;
  readonly #guests = new Map<number, GuestContext>();
  readonly #asids: AsidTable;
  readonly #keyRng: Drbg;
  readonly #nonceRng: Drbg;
  readonly #caps: PspCapabilities;
  readonly #profile: ProductProfile;
  readonly #paging: PagingFormat;
  readonly log: MailboxRecord[] = [];

  constructor(caps: PspCapabilities, opts: PspOptions) {
    this.#caps = caps;
    this.#profile = opts.profile;
    this.#paging = opts.paging;
    this.#keyRng = Drbg.create(opts.seed, 'psp-key-rng');
    this.#nonceRng = Drbg.create(opts.seed, 'psp-nonce-rng');
    this.#asids = new AsidTable(opts.profile.maxSevAsid);
    // The host's SME key: generated inside the SoC at boot, never visible to software.
    caps.keySlots.install(KEY_HOST, this.#keyRng.generate(MEMORY_KEY_MATERIAL_BYTES));
  }

  /** PLATFORM_STATUS state, for display (the same value the command returns). */
  get platformState(): PlatformStateCode {
    return this.#platformState;
  }

  issue(command: number, bufferAddress: number): SevStatusCode {
    const status = this.#dispatch(command, bufferAddress);
    this.log.push({ command, status });
    return status;
  }

  #dispatch(command: number, bufferAddress: number): SevStatusCode {
    const size = COMMAND_BUFFER_SIZE[command];
    if (size === undefined) return SevStatus.INVALID_COMMAND;
    let buffer: Buffer = Buffer.alloc(0);
    const where = this.#paging.splitCBit(bufferAddress);
    const key = where.encrypted ? KEY_HOST : KEY_NONE;
    if (size > 0) {
      if (!this.#validRange(where.address, size)) return SevStatus.INVALID_ADDRESS;
      buffer = this.#caps.dma.read(where.address, size, key);
    }
    const result = this.#handle(command, buffer);
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
      case SevCommand.LAUNCH_MEASURE:
        return this.#launchMeasure(buf);
      case SevCommand.LAUNCH_FINISH:
        return this.#launchFinish(buf);
      case SevCommand.ACTIVATE:
        return this.#activate(buf);
      case SevCommand.DEACTIVATE:
        return this.#deactivate(buf);
      case SevCommand.DECOMMISSION:
        return this.#decommission(buf);
      case SevCommand.GUEST_STATUS:
        return this.#guestStatus(buf);
      case SevCommand.DBG_DECRYPT:
        return this.#debugCrypt(buf, false);
      case SevCommand.DBG_ENCRYPT:
        return this.#debugCrypt(buf, true);
      default:
        return fail(SevStatus.INVALID_COMMAND);
    }
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
    this.#caps.dma.clearWbinvdDone();
    this.#configFlags = cmd.flags & INIT_FLAG_ES ? PLATFORM_CONFIG_ES : 0;
    this.#platformState = PlatformState.INIT;
    return ok();
  }

  #shutdown(): Result {
    for (const g of this.#guests.values()) g.wipe();
    this.#guests.clear();
    this.#asids.releaseAll();
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
      owner: 0,
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
    if (this.#platformState !== PlatformState.INIT && this.#platformState !== PlatformState.WORKING) {
      return fail(SevStatus.INVALID_PLATFORM_STATE);
    }
    const cmd = LaunchStartBuffer.decode(buf);
    if (cmd.gdhCertPaddr !== 0n) {
      // The owner's session (GODH certificate + session buffer) is part of the certificate work.
      return fail(SevStatus.UNSUPPORTED);
    }
    let vek: Buffer;
    if (cmd.handle !== 0) {
      const other = this.#guest(cmd.handle);
      if (other === undefined) return fail(SevStatus.INVALID_GUEST);
      if (other.policy !== cmd.policy || decodeSevPolicy(other.policy).noKeySharing)
        return fail(SevStatus.POLICY_FAILURE);
      vek = other.vekForSharing();
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
    if (handle === 0) return fail(SevStatus.RESOURCE_LIMIT);
    if (decodeSevPolicy(cmd.policy).encryptedState && (this.#configFlags & PLATFORM_CONFIG_ES) === 0) {
      return fail(SevStatus.UNSUPPORTED);
    }
    const guest = new GuestContext(handle, cmd.policy, vek);
    vek.fill(0);
    this.#guests.set(handle, guest);
    this.#platformState = PlatformState.WORKING;
    const out = Buffer.from(buf);
    LaunchStartBuffer.write(out, { handle });
    return ok(out);
  }

  /** The common prefix of guest commands: platform WORKING, a valid handle, an allowed state. */
  #guestFor(handle: number, states: readonly number[] | 'any'): GuestContext | SevStatusCode {
    if (this.#platformState !== PlatformState.WORKING) return SevStatus.INVALID_PLATFORM_STATE;
    const g = this.#guest(handle);
    if (g === undefined) return SevStatus.INVALID_GUEST;
    if (states !== 'any' && !states.includes(g.state)) return SevStatus.INVALID_GUEST_STATE;
    return g;
  }

  #launchUpdateData(buf: Buffer): Result {
    const cmd = LaunchUpdateBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, [GuestState.LUPDATE]);
    if (typeof g === 'number') return fail(g);
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
      const out = Buffer.from(buf);
      LaunchMeasureBuffer.write(out, { length: LaunchMeasurement.size });
      return fail(SevStatus.INVALID_LENGTH, out);
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

  #launchFinish(buf: Buffer): Result {
    const cmd = HandleBuffer.decode(buf);
    const g = this.#guestFor(cmd.handle, [GuestState.LSECRET]);
    if (typeof g === 'number') return fail(g);
    if (g.activation === 'pending') {
      g.activation = 'active';
      this.#asids.bind(g.asid, g.handle, 'in-use');
    }
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
    this.#caps.keySlots.install(asid, g.vekForInstall());
    const running = g.state === GuestState.RUNNING || g.state === GuestState.SUPDATE;
    g.asid = asid;
    g.activation = running ? 'active' : 'pending';
    this.#asids.bind(asid, g.handle, running ? 'in-use' : 'allocated');
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
    if (this.#platformState !== PlatformState.INIT && this.#platformState !== PlatformState.WORKING) {
      return fail(SevStatus.INVALID_PLATFORM_STATE);
    }
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
      dirtyAsids: this.#asids.dirtyAsids().slice(0, 16),
    };
  }

  toJSON(): string {
    return '[Psp]';
  }
}
