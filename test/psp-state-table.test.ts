// The state table of the legacy SEV command set: every implemented legacy command, in every platform
// state (UNINIT, INIT, WORKING) and, for guest commands, against a guest in every reachable guest state
// (LUPDATE, LSECRET, RUNNING, SUPDATE, SENT, RUPDATE), inactive and activated (pending or active).
// Every state is reached through the real mailbox, and every command buffer is well formed, so that only
// the state decides the outcome. Expected statuses come from AMD's firmware source (amd/AMD-ASPFW
// @3ca6650, fw/psp_bl_uapps/sev_uapp/src: sev_mcmd.c, sev_guest.c, sev_plat.c, sev_dispatch.c), never
// from running the model. A failure must change nothing the host can observe.
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ActivateBuffer,
  AttestationBuffer,
  COMMAND_BUFFER_SIZE,
  DebugBuffer,
  GET_ID_BYTES,
  GetIdBuffer,
  GuestState,
  GuestStatusBuffer,
  HandleBuffer,
  INIT_FLAG_ES,
  InitBuffer,
  LaunchMeasureBuffer,
  LaunchMeasurement,
  LaunchStartBuffer,
  LaunchUpdateBuffer,
  PacketHeader,
  PdhCertExportBuffer,
  PekCertImportBuffer,
  PekCsrBuffer,
  PlatformState,
  PlatformStatusBuffer,
  ReceiveStartBuffer,
  SEV_CERT_SIGNED_LENGTH,
  SEV_CERT_SIZE,
  SendStartBuffer,
  SessionBuffer,
  SevAttestationReport,
  SevCertAlgo,
  SevCertUsage,
  SevCommand,
  SevStatus,
  TMR_SIZE,
  TransportBuffer,
  decodeSevCert,
  encodeSevCert,
  encodeSevPolicy,
  type Decoded,
  type SevCert,
} from '../src/abi/index.js';
import {
  ChannelContext,
  aes128Ctr,
  ecdsaP384Sign,
  generateP384KeyPair,
  p384PublicKeyToAmd,
  packetMac,
} from '../src/crypto/index.js';
import { Hypervisor, type PspDriver } from '../src/host/index.js';
import { createLaunchSession, packageLaunchSecret } from '../src/owner/index.js';
import { createPlatform, type Platform } from '../src/psp/index.js';
import { simulatedAmdRoot } from '../src/psp/simulated-amd-root.js';

const S = SevStatus;
const PAGE = 4096;
const VMSA_SIZE = 0x1000;
/** An SEV-ES guest that allows debugging, key sharing and sending, with no SEV/DOMAIN restriction. */
const POLICY = encodeSevPolicy({ encryptedState: true });
/** The guest under test is activated on this ES ASID (SEV-ES ASIDs are 1 .. minSevAsid-1). */
const GUEST_ASID = 1;
/** A clean ES ASID no guest holds, for the ACTIVATE rows. */
const FREE_ASID = 2;

// ---- a machine and its pages --------------------------------------------------------------------

interface Env {
  readonly platform: Platform;
  readonly hv: Hypervisor;
  readonly d: PspDriver;
}

function machine(seed: string | number, stateDirectory?: string): Env {
  const platform = createPlatform({
    seed,
    dramBytes: 64 << 20,
    ...(stateDirectory === undefined ? {} : { stateDirectory }),
  });
  const hv = new Hypervisor(platform);
  return { platform, hv, d: hv.driver };
}

// Creating a platform identity (OCA, PEK, PDH; the CEK signed by the simulated AMD root) is the slow
// part of a machine. Every row's machine is the same chip (seed 1) with the same provisioned flash: a
// copy of one state directory whose identity a first INIT + PDH_CERT_EXPORT created. Each row gets its
// own copy, so PDH_GEN, PEK_GEN, PEK_CERT_IMPORT and PLATFORM_RESET change only their own machine.
const SEED = 1;
const directories: string[] = [];
let provisioned: string | undefined;
afterAll(() => {
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
});

function freshDirectory(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sevsim-state-table-'));
  directories.push(dir);
  return dir;
}

/** A machine of chip SEED with provisioned flash, platform UNINIT. */
function provisionedMachine(): Env {
  if (provisioned === undefined) {
    const dir = freshDirectory();
    const first = machine(SEED, dir);
    first.hv.initPlatform();
    exportCerts(first);
    provisioned = dir;
  }
  const dir = freshDirectory();
  cpSync(provisioned, dir, { recursive: true });
  return machine(SEED, dir);
}

/** Deterministic test bytes. */
function pattern(length: number, salt: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 131 + salt * 17 + (i >>> 8)) & 0xff;
  return b;
}

/** A deterministic random source for owner sessions and packet IVs. */
function seededRandom(label: string): (n: number) => Buffer {
  let counter = 0;
  return (n) => {
    const out = Buffer.alloc(n);
    for (let done = 0; done < n; done += 32)
      createHash('sha256').update(`${label}/${counter++}`).digest().copy(out, done);
    return out;
  };
}

/** Contiguous host frames holding `data` in the clear (C=0); at least `minBytes` long. */
function stage(e: Env, data: Buffer, minBytes = data.length): number {
  const pages = Math.max(1, Math.ceil(Math.max(data.length, minBytes) / PAGE));
  const spa = e.hv.frames.allocateMany(pages, true)[0] as number;
  e.platform.soc.hostMemory.write(spa, data, false);
  return spa;
}

const read = (e: Env, spa: number, length: number): Buffer =>
  e.platform.soc.hostMemory.read(spa, length, false);

/** PDH_CERT_EXPORT through the mailbox: the PDH, and the chain PEK ‖ OCA ‖ CEK. */
function exportCerts(e: Env): { pdh: Buffer; chain: Buffer } {
  const at = stage(e, Buffer.alloc(0), 4 * SEV_CERT_SIZE);
  e.d.call(SevCommand.PDH_CERT_EXPORT, PdhCertExportBuffer, {
    pdhPaddr: BigInt(at),
    pdhLength: SEV_CERT_SIZE,
    chainPaddr: BigInt(at + SEV_CERT_SIZE),
    chainLength: 3 * SEV_CERT_SIZE,
  });
  return { pdh: read(e, at, SEV_CERT_SIZE), chain: read(e, at + SEV_CERT_SIZE, 3 * SEV_CERT_SIZE) };
}

/** The migration destination: a second platform whose certificates SEND_START is given. */
let destination: { pdh: Buffer; chain: Buffer; amd: Buffer } | undefined;
function destinationCerts(): { pdh: Buffer; chain: Buffer; amd: Buffer } {
  if (destination === undefined) {
    const dst = machine('state-table-destination');
    dst.hv.initPlatform();
    const root = simulatedAmdRoot();
    destination = { ...exportCerts(dst), amd: Buffer.concat([root.ask, root.ark]) };
  }
  return destination;
}

// ---- fixtures: a platform state, or a guest in a guest state ---------------------------------------

interface Channel {
  readonly tek: Buffer;
  readonly tik: Buffer;
}

interface Fixture {
  readonly e: Env;
  /** The guest the row's command names (1; or a free handle for the unknown-handle column). */
  handle: number;
  /** The launch channel of guest 1 and its LAUNCH_MEASURE measurement, once there is one. */
  launch?: Channel;
  measurement?: Buffer;
  /** The channel of a received guest 1. */
  receive?: Channel;
  /** Guest 1's pages: LAUNCH_UPDATE_DATA'd data and the LAUNCH_UPDATE_VMSA'd save area. */
  readonly guestPage: number;
  readonly vmsaPage: number;
}

function bare(e: Env): Fixture {
  return {
    e,
    handle: 1,
    guestPage: stage(e, pattern(PAGE, 1)),
    vmsaPage: stage(e, pattern(VMSA_SIZE, 2)),
  };
}

function uninitFixture(): Fixture {
  return bare(provisionedMachine());
}

/** INIT (with SEV-ES and a TMR, as Linux does), WBINVD, DF_FLUSH. */
function initFixture(): Fixture {
  const e = provisionedMachine();
  e.hv.initPlatform();
  return bare(e);
}

const sessions = new Map<string, { godh: Buffer; session: Buffer; keys: Channel }>();

/** An owner session for POLICY against this platform's PDH (sev-tool generate_launch_blob). */
function ownerSession(f: Fixture, label: string): { godh: Buffer; session: Buffer; keys: Channel } {
  const ps = f.e.d.call(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {});
  // In UNINIT there is no PDH to export; the command fails on the platform state before reading it.
  const pdh = ps.state === PlatformState.UNINIT ? destinationCerts().pdh : exportCerts(f.e).pdh;
  // Deterministic for a PDH and label, so one computation serves every machine with that PDH.
  const key = `${pdh.toString('hex')}/${label}`;
  let s = sessions.get(key);
  if (s === undefined) {
    const made = createLaunchSession(pdh, POLICY, { random: seededRandom(label) });
    s = { godh: made.godhCert, session: made.session, keys: { tek: made.tek, tik: made.tik } };
    sessions.set(key, s);
  }
  return s;
}

type Activation = 'inactive' | 'activated';
interface GuestKind {
  readonly name: string;
  readonly state: number;
  readonly activation: Activation;
}

// Pending (LUPDATE, LSECRET, RUPDATE: ACTIVATE before the guest runs) or active (RUNNING, SUPDATE, SENT).
// Inactive LUPDATE/LSECRET/RUNNING/RUPDATE guests were never activated; inactive SUPDATE/SENT guests
// were launched active, sent, then DEACTIVATEd.
const GUEST_KINDS: readonly GuestKind[] = [
  { name: 'LUPDATE, inactive', state: GuestState.LUPDATE, activation: 'inactive' },
  { name: 'LUPDATE, pending', state: GuestState.LUPDATE, activation: 'activated' },
  { name: 'LSECRET, inactive', state: GuestState.LSECRET, activation: 'inactive' },
  { name: 'LSECRET, pending', state: GuestState.LSECRET, activation: 'activated' },
  { name: 'RUNNING, inactive', state: GuestState.RUNNING, activation: 'inactive' },
  { name: 'RUNNING, active', state: GuestState.RUNNING, activation: 'activated' },
  { name: 'SUPDATE, inactive', state: GuestState.SUPDATE, activation: 'inactive' },
  { name: 'SUPDATE, active', state: GuestState.SUPDATE, activation: 'activated' },
  { name: 'SENT, inactive', state: GuestState.SENT, activation: 'inactive' },
  { name: 'SENT, active', state: GuestState.SENT, activation: 'activated' },
  { name: 'RUPDATE, inactive', state: GuestState.RUPDATE, activation: 'inactive' },
  { name: 'RUPDATE, pending', state: GuestState.RUPDATE, activation: 'activated' },
];

function kindNamed(name: string): GuestKind {
  const kind = GUEST_KINDS.find((k) => k.name === name);
  if (kind === undefined) throw new Error(`no guest kind ${name}`);
  return kind;
}

function ok(status: number): void {
  expect(status).toBe(S.SUCCESS);
}

/** SEND_START of guest `handle` to the destination platform's PDH (policy has neither SEV nor DOMAIN). */
function sendStart(f: Fixture, handle: number): () => number {
  const dst = destinationCerts();
  const e = f.e;
  const fields = {
    handle,
    pdhCertPaddr: BigInt(stage(e, dst.pdh)),
    pdhCertLength: SEV_CERT_SIZE,
    platCertsPaddr: BigInt(stage(e, dst.chain)),
    platCertsLength: dst.chain.length,
    amdCertsPaddr: BigInt(stage(e, dst.amd)),
    amdCertsLength: dst.amd.length,
    sessionPaddr: BigInt(stage(e, Buffer.alloc(0), SessionBuffer.size)),
    sessionLength: SessionBuffer.size,
  };
  return () => e.d.raw(SevCommand.SEND_START, SendStartBuffer, fields).status;
}

/** RECEIVE_START of a new guest (sharing no key unless `share`), with an owner session made for it. */
function receiveStart(f: Fixture, share: number, label: string): { run: () => number; keys: Channel } {
  const e = f.e;
  const s = ownerSession(f, label);
  const fields = {
    handle: share,
    policy: POLICY,
    pdhCertPaddr: BigInt(stage(e, s.godh)),
    pdhCertLength: SEV_CERT_SIZE,
    sessionPaddr: BigInt(stage(e, s.session)),
    sessionLength: SessionBuffer.size,
  };
  return { run: () => e.d.raw(SevCommand.RECEIVE_START, ReceiveStartBuffer, fields).status, keys: s.keys };
}

function guestFixture(kind: GuestKind): Fixture {
  const f = initFixture();
  const d = f.e.d;
  const activate = (): void =>
    ok(d.raw(SevCommand.ACTIVATE, ActivateBuffer, { handle: 1, asid: GUEST_ASID }).status);
  if (kind.state === GuestState.RUPDATE) {
    const rs = receiveStart(f, 0, 'fixture-receive');
    ok(rs.run());
    f.receive = rs.keys;
    if (kind.activation === 'activated') activate();
  } else {
    const s = ownerSession(f, 'fixture-launch');
    const start = d.raw(SevCommand.LAUNCH_START, LaunchStartBuffer, {
      handle: 0,
      policy: POLICY,
      gdhCertPaddr: BigInt(stage(f.e, s.godh)),
      gdhCertLength: SEV_CERT_SIZE,
      sessionPaddr: BigInt(stage(f.e, s.session)),
      sessionLength: SessionBuffer.size,
    });
    ok(start.status);
    expect(start.out.handle).toBe(1);
    f.launch = s.keys;
    const sent = kind.state === GuestState.SUPDATE || kind.state === GuestState.SENT;
    const activated = kind.activation === 'activated' || sent;
    if (activated) {
      activate();
      ok(
        d.raw(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
          handle: 1,
          paddr: BigInt(f.guestPage),
          length: PAGE,
        }).status,
      );
      ok(
        d.raw(SevCommand.LAUNCH_UPDATE_VMSA, LaunchUpdateBuffer, {
          handle: 1,
          paddr: BigInt(f.vmsaPage),
          length: VMSA_SIZE,
        }).status,
      );
    }
    if (kind.state !== GuestState.LUPDATE) {
      const out = stage(f.e, Buffer.alloc(0), LaunchMeasurement.size);
      ok(
        d.raw(SevCommand.LAUNCH_MEASURE, LaunchMeasureBuffer, {
          handle: 1,
          paddr: BigInt(out),
          length: LaunchMeasurement.size,
        }).status,
      );
      f.measurement = LaunchMeasurement.decode(read(f.e, out, LaunchMeasurement.size)).measurement;
    }
    if (kind.state !== GuestState.LUPDATE && kind.state !== GuestState.LSECRET)
      ok(d.raw(SevCommand.LAUNCH_FINISH, HandleBuffer, { handle: 1 }).status);
    if (sent) ok(sendStart(f, 1)());
    if (kind.state === GuestState.SENT) ok(d.raw(SevCommand.SEND_FINISH, HandleBuffer, { handle: 1 }).status);
    if (sent && kind.activation === 'inactive')
      ok(d.raw(SevCommand.DEACTIVATE, HandleBuffer, { handle: 1 }).status);
  }
  // The fixture is what it claims to be.
  const gs = d.call(SevCommand.GUEST_STATUS, GuestStatusBuffer, { handle: 1 });
  expect(gs).toMatchObject({
    state: kind.state,
    policy: POLICY,
    asid: kind.activation === 'activated' ? GUEST_ASID : 0,
  });
  const activation = f.e.platform.psp.describe().guests[0]?.activation;
  if (kind.activation === 'inactive') expect(activation).toBe('inactive');
  else
    expect(activation).toBe(
      kind.state === GuestState.LUPDATE ||
        kind.state === GuestState.LSECRET ||
        kind.state === GuestState.RUPDATE
        ? 'pending'
        : 'active',
    );
  return f;
}

// ---- observation ----------------------------------------------------------------------------------

/** Everything the host can observe: PLATFORM_STATUS, GUEST_STATUS of handles 1..3, the certificates. */
function snapshot(f: Fixture): unknown {
  const d = f.e.d;
  const platform = d.raw(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {});
  const guests = [1, 2, 3].map((handle) => d.raw(SevCommand.GUEST_STATUS, GuestStatusBuffer, { handle }));
  // The identity as PDH_CERT_EXPORT shows it (digests: deep-comparing 8 KiB of buffers is slow).
  const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const exported = platform.out.state === PlatformState.UNINIT ? undefined : exportCerts(f.e);
  const certs = exported && { pdh: digest(exported.pdh), chain: digest(exported.chain) };
  return { platform, guests, certs, psp: JSON.stringify(f.e.platform.psp.describe()) };
}

function platformStatus(f: Fixture): Decoded<typeof PlatformStatusBuffer.fields> {
  return f.e.d.call(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {});
}

function guestStatus(f: Fixture, handle: number): Decoded<typeof GuestStatusBuffer.fields> {
  return f.e.d.call(SevCommand.GUEST_STATUS, GuestStatusBuffer, { handle });
}

// ---- the commands, each with a well-formed command buffer ------------------------------------------

/** Prepares a command's buffers (before the "before" snapshot); the returned thunk issues it once. */
type Prepare = (f: Fixture) => () => number;

function simple(id: number, before?: (f: Fixture) => void): Prepare {
  return (f) => {
    before?.(f);
    return () => f.e.d.simple(id);
  };
}

function withHandle(id: number): Prepare {
  return (f) => () => f.e.d.raw(id, HandleBuffer, { handle: f.handle }).status;
}

/** An owner-signed PEK for PEK_CERT_IMPORT: the platform's CSR (where it can make one) and a new OCA. */
function ownerSignedPek(f: Fixture): { pek: Buffer; oca: Buffer } {
  const ps = platformStatus(f);
  let csr: SevCert;
  if (ps.state === PlatformState.UNINIT) {
    // No CSR in UNINIT: another platform's PEK body, signed the same way (the state check comes first).
    csr = decodeSevCert(destinationCerts().chain.subarray(0, SEV_CERT_SIZE));
    csr = { ...csr, signatures: [{ type: 'empty' }, { type: 'empty' }] };
  } else {
    const at = stage(f.e, Buffer.alloc(0), SEV_CERT_SIZE);
    ok(
      f.e.d.raw(SevCommand.PEK_CSR, PekCsrBuffer, { csrPaddr: BigInt(at), csrLength: SEV_CERT_SIZE }).status,
    );
    csr = decodeSevCert(read(f.e, at, SEV_CERT_SIZE));
  }
  const owner = generateP384KeyPair();
  const sign = (c: SevCert): Buffer => {
    const sig = ecdsaP384Sign(
      owner.privateKey,
      'sha256',
      encodeSevCert(c).subarray(0, SEV_CERT_SIGNED_LENGTH),
    );
    return encodeSevCert({
      ...c,
      signatures: [
        { type: 'ecdsa', usage: SevCertUsage.OCA, algo: SevCertAlgo.ECDSA_SHA256, r: sig.r, s: sig.s },
        { type: 'empty' },
      ],
    });
  };
  const { qx, qy } = p384PublicKeyToAmd(owner.publicKey);
  const oca = sign({
    ...csr,
    pubkey: {
      type: 'ec',
      usage: SevCertUsage.OCA,
      algo: SevCertAlgo.ECDSA_SHA256,
      curve: 2,
      qx,
      qy,
      reserved: Buffer.alloc(0x370),
    },
  });
  return { pek: sign(csr), oca };
}

/** A transport command buffer (LAUNCH_SECRET, SEND_UPDATE_*, RECEIVE_UPDATE_*). */
function transport(
  id: number,
  f: Fixture,
  fields: { hdr: Buffer; guestPaddr: number; trans: Buffer; hdrLength?: number },
): () => number {
  const buf = {
    handle: f.handle,
    hdrPaddr: BigInt(stage(f.e, fields.hdr, PacketHeader.size)),
    hdrLength: fields.hdrLength ?? PacketHeader.size,
    guestPaddr: BigInt(fields.guestPaddr),
    guestLength: fields.trans.length,
    transPaddr: BigInt(stage(f.e, fields.trans)),
    transLength: fields.trans.length,
  };
  return () => f.e.d.raw(id, TransportBuffer, buf).status;
}

const ZERO_KEYS: Channel = { tek: Buffer.alloc(16), tik: Buffer.alloc(16) };

/** A migration packet as the source firmware makes it (sev-reference §8.1; ASPFW sev_mcmd_send_update). */
function migrationPacket(keys: Channel, plaintext: Buffer, salt: string): { hdr: Buffer; trans: Buffer } {
  const iv = seededRandom(salt)(16);
  const trans = aes128Ctr(keys.tek, iv, plaintext);
  const mac = packetMac(keys.tik, ChannelContext.DATA, 0, iv, plaintext.length, trans, Buffer.alloc(0));
  return { hdr: PacketHeader.encode({ flags: 0, iv, mac }), trans };
}

function receiveUpdate(id: number, length: number): Prepare {
  return (f) => {
    const pkt = migrationPacket(f.receive ?? ZERO_KEYS, pattern(length, 7), `receive-${id}`);
    return transport(id, f, {
      ...pkt,
      guestPaddr: id === SevCommand.RECEIVE_UPDATE_VMSA ? f.vmsaPage : f.guestPage,
    });
  };
}

function sendUpdate(id: number): Prepare {
  return (f) => {
    const vmsa = id === SevCommand.SEND_UPDATE_VMSA;
    const length = vmsa ? VMSA_SIZE : PAGE;
    return transport(id, f, {
      hdr: Buffer.alloc(PacketHeader.size),
      guestPaddr: vmsa ? f.vmsaPage : f.guestPage,
      trans: Buffer.alloc(length),
    });
  };
}

function debug(id: number): Prepare {
  return (f) => {
    const host = stage(f.e, pattern(64, 9));
    const fields = {
      handle: f.handle,
      srcPaddr: BigInt(id === SevCommand.DBG_DECRYPT ? f.guestPage : host),
      dstPaddr: BigInt(id === SevCommand.DBG_DECRYPT ? host : f.guestPage),
      length: 64,
    };
    return () => f.e.d.raw(id, DebugBuffer, fields).status;
  };
}

const PREPARE: Record<string, Prepare> = {
  INIT: (f) => {
    const tmr = f.e.hv.frames.allocateAligned(TMR_SIZE, TMR_SIZE);
    return () =>
      f.e.d.raw(SevCommand.INIT, InitBuffer, {
        flags: INIT_FLAG_ES,
        tmrPaddr: BigInt(tmr),
        tmrLength: TMR_SIZE,
      }).status;
  },
  SHUTDOWN: simple(SevCommand.SHUTDOWN),
  PLATFORM_RESET: simple(SevCommand.PLATFORM_RESET),
  PLATFORM_STATUS: (f) => () => f.e.d.raw(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {}).status,
  PEK_GEN: simple(SevCommand.PEK_GEN),
  PEK_CSR: (f) => {
    const at = stage(f.e, Buffer.alloc(0), SEV_CERT_SIZE);
    return () =>
      f.e.d.raw(SevCommand.PEK_CSR, PekCsrBuffer, { csrPaddr: BigInt(at), csrLength: SEV_CERT_SIZE }).status;
  },
  PEK_CERT_IMPORT: (f) => {
    const { pek, oca } = ownerSignedPek(f);
    const fields = {
      pekPaddr: BigInt(stage(f.e, pek)),
      pekLength: SEV_CERT_SIZE,
      ocaPaddr: BigInt(stage(f.e, oca)),
      ocaLength: SEV_CERT_SIZE,
    };
    return () => f.e.d.raw(SevCommand.PEK_CERT_IMPORT, PekCertImportBuffer, fields).status;
  },
  PDH_CERT_EXPORT: (f) => {
    const at = stage(f.e, Buffer.alloc(0), 4 * SEV_CERT_SIZE);
    const fields = {
      pdhPaddr: BigInt(at),
      pdhLength: SEV_CERT_SIZE,
      chainPaddr: BigInt(at + SEV_CERT_SIZE),
      chainLength: 3 * SEV_CERT_SIZE,
    };
    return () => f.e.d.raw(SevCommand.PDH_CERT_EXPORT, PdhCertExportBuffer, fields).status;
  },
  PDH_GEN: simple(SevCommand.PDH_GEN),
  // The host's WBINVD precedes DF_FLUSH, as the driver does it.
  DF_FLUSH: simple(SevCommand.DF_FLUSH, (f) => f.e.platform.soc.hostMemory.wbinvd()),
  GET_ID: (f) => {
    const at = stage(f.e, Buffer.alloc(0), GET_ID_BYTES);
    return () =>
      f.e.d.raw(SevCommand.GET_ID, GetIdBuffer, { idPaddr: BigInt(at), idLength: GET_ID_BYTES }).status;
  },

  DECOMMISSION: withHandle(SevCommand.DECOMMISSION),
  ACTIVATE: (f) => () =>
    f.e.d.raw(SevCommand.ACTIVATE, ActivateBuffer, { handle: f.handle, asid: FREE_ASID }).status,
  DEACTIVATE: withHandle(SevCommand.DEACTIVATE),
  GUEST_STATUS: (f) => () =>
    f.e.d.raw(SevCommand.GUEST_STATUS, GuestStatusBuffer, { handle: f.handle }).status,
  // A new guest without a session; in the unknown-handle column it asks to share that handle's key.
  LAUNCH_START: (f) => () =>
    f.e.d.raw(SevCommand.LAUNCH_START, LaunchStartBuffer, {
      handle: f.handle === 1 ? 0 : f.handle,
      policy: POLICY,
    }).status,
  LAUNCH_UPDATE_DATA: (f) => {
    const at = stage(f.e, pattern(PAGE, 3));
    return () =>
      f.e.d.raw(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
        handle: f.handle,
        paddr: BigInt(at),
        length: PAGE,
      }).status;
  },
  LAUNCH_UPDATE_VMSA: (f) => {
    const at = stage(f.e, pattern(VMSA_SIZE, 4));
    return () =>
      f.e.d.raw(SevCommand.LAUNCH_UPDATE_VMSA, LaunchUpdateBuffer, {
        handle: f.handle,
        paddr: BigInt(at),
        length: VMSA_SIZE,
      }).status;
  },
  LAUNCH_MEASURE: (f) => {
    const at = stage(f.e, Buffer.alloc(0), LaunchMeasurement.size);
    return () =>
      f.e.d.raw(SevCommand.LAUNCH_MEASURE, LaunchMeasureBuffer, {
        handle: f.handle,
        paddr: BigInt(at),
        length: LaunchMeasurement.size,
      }).status;
  },
  // The owner's secret, bound to guest 1's measurement under its launch TEK/TIK (sev-reference §5.3).
  LAUNCH_SECRET: (f) => {
    const keys = f.launch ?? ZERO_KEYS;
    const secret = packageLaunchSecret({
      tek: keys.tek,
      tik: keys.tik,
      measurement: f.measurement ?? Buffer.alloc(32),
      plaintext: pattern(64, 5),
      iv: seededRandom('secret-iv')(16),
    });
    return transport(SevCommand.LAUNCH_SECRET, f, {
      hdr: secret.header,
      guestPaddr: f.guestPage,
      trans: secret.ciphertext,
    });
  },
  LAUNCH_FINISH: withHandle(SevCommand.LAUNCH_FINISH),
  ATTESTATION: (f) => {
    const at = stage(f.e, Buffer.alloc(0), SevAttestationReport.size);
    const fields = {
      handle: f.handle,
      paddr: BigInt(at),
      mnonce: pattern(16, 6),
      length: SevAttestationReport.size,
    };
    return () => f.e.d.raw(SevCommand.ATTESTATION, AttestationBuffer, fields).status;
  },
  SEND_START: (f) => sendStart(f, f.handle),
  SEND_UPDATE_DATA: sendUpdate(SevCommand.SEND_UPDATE_DATA),
  SEND_UPDATE_VMSA: sendUpdate(SevCommand.SEND_UPDATE_VMSA),
  SEND_FINISH: withHandle(SevCommand.SEND_FINISH),
  SEND_CANCEL: withHandle(SevCommand.SEND_CANCEL),
  RECEIVE_START: (f) => receiveStart(f, f.handle === 1 ? 0 : f.handle, 'row-receive').run,
  RECEIVE_UPDATE_DATA: receiveUpdate(SevCommand.RECEIVE_UPDATE_DATA, PAGE),
  RECEIVE_UPDATE_VMSA: receiveUpdate(SevCommand.RECEIVE_UPDATE_VMSA, VMSA_SIZE),
  RECEIVE_FINISH: withHandle(SevCommand.RECEIVE_FINISH),
  DBG_DECRYPT: debug(SevCommand.DBG_DECRYPT),
  DBG_ENCRYPT: debug(SevCommand.DBG_ENCRYPT),
};

// ---- the expected statuses (AMD-ASPFW) -------------------------------------------------------------

const OK = S.SUCCESS;
const IPS = S.INVALID_PLATFORM_STATE;
const IGS = S.INVALID_GUEST_STATE;
const IG = S.INVALID_GUEST;
const INA = S.INACTIVE;
const ACT = S.ACTIVE;

// Platform commands, in UNINIT, INIT, WORKING (one RUNNING, active guest). State checks (sev_mcmd.c):
// sev_mcmd_init_common l.674 (UNINIT only); sev_mcmd_shutdown l.1102 (sev_plat.c state_tbl_sev: any →
// UNINIT); sev_mcmd_platform_reset l.1142 (UNINIT only); sev_mcmd_platform_status l.1155 (none);
// sev_mcmd_pek_gen l.1199 (INIT only); sev_mcmd_pek_csr l.1248 (INIT or WORKING); sev_mcmd_pek_cert_import
// l.1300 (INIT only); sev_mcmd_pdh_cert_export l.1457 and sev_mcmd_pdh_gen l.1514 (INIT or WORKING);
// mcmd_df_flush_common l.253 and sev_mcmd_get_id l.1581 (none). DF_FLUSH follows the host's WBINVD;
// in UNINIT real hardware may also depend on topology sev_init fills in (aspfw-commands.md: unconfirmed).
const PLATFORM_COMMANDS: Record<string, readonly [number, number, number]> = {
  INIT: [OK, IPS, IPS],
  SHUTDOWN: [OK, OK, OK],
  PLATFORM_RESET: [OK, IPS, IPS],
  PLATFORM_STATUS: [OK, OK, OK],
  PEK_GEN: [IPS, OK, IPS],
  PEK_CSR: [IPS, OK, OK],
  PEK_CERT_IMPORT: [IPS, OK, IPS],
  PDH_CERT_EXPORT: [IPS, OK, OK],
  PDH_GEN: [IPS, OK, OK],
  DF_FLUSH: [OK, OK, OK],
  GET_ID: [OK, OK, OK],
};

// Guest commands. Columns: UNINIT, INIT (no guest), WORKING with no guest at the handle, then the guest
// kinds of GUEST_KINDS in order. Every guest command but LAUNCH_START, RECEIVE_START and GUEST_STATUS
// needs WORKING; a handle that names no guest is INVALID_GUEST right after the platform check
// (handle_is_valid, sev_guest.c l.180), and GUEST_STATUS reports it as state 0 instead.
// prettier-ignore
const GUEST_COMMANDS: Record<string, readonly number[]> = {
  //                    UNINIT INIT  none  LUPDATE    LSECRET    RUNNING    SUPDATE    SENT       RUPDATE
  //                                       inact pend inact pend inact act  inact act  inact act  inact pend
  // sev_mcmd_decommission l.1802 → mcmd_decommission_common l.337: active or pending (asid_is_active) → ACTIVE.
  DECOMMISSION:        [IPS, IPS, IG,    OK,  ACT,  OK,  ACT,  OK,  ACT,  OK,  ACT,  OK,  ACT,  OK,  ACT],
  // sev_mcmd_activate l.1841 → mcmd_activate_common l.476 (not inactive → ACTIVE) → activate_common l.387 (SENT).
  ACTIVATE:            [IPS, IPS, IG,    OK,  ACT,  OK,  ACT,  OK,  ACT,  OK,  ACT,  IGS, ACT,  OK,  ACT],
  // sev_mcmd_deactivate l.1878, l.1895 (inactive → INACTIVE); no guest-state check.
  DEACTIVATE:          [IPS, IPS, IG,    INA, OK,   INA, OK,   INA, OK,   INA, OK,   INA, OK,   INA, OK ],
  // sev_mcmd_guest_status l.1937 (INIT or WORKING); an unknown handle is SUCCESS with state 0.
  GUEST_STATUS:        [IPS, OK,  OK,    OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK ],
  // sev_mcmd_launch_start l.2091 (INIT or WORKING); other guests' states do not matter; sharing an
  // unknown handle's key → INVALID_GUEST.
  LAUNCH_START:        [IPS, OK,  IG,    OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK ],
  // launch_update_common l.985, l.999 (LUPDATE), l.1011 (inactive → INACTIVE).
  LAUNCH_UPDATE_DATA:  [IPS, IPS, IG,    INA, OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  LAUNCH_UPDATE_VMSA:  [IPS, IPS, IG,    INA, OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_launch_measure l.2280, l.2294 (LUPDATE); no INACTIVE check.
  LAUNCH_MEASURE:      [IPS, IPS, IG,    OK,  OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_launch_secret l.2360, l.2390 (LSECRET), l.2396 (inactive → INACTIVE).
  LAUNCH_SECRET:       [IPS, IPS, IG,    IGS, IGS,  INA, OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_launch_finish l.2478, l.2492 (LSECRET); no INACTIVE check.
  LAUNCH_FINISH:       [IPS, IPS, IG,    IGS, IGS,  OK,  OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_attestation l.2546, l.2560 (LSECRET, RUNNING, SUPDATE or SENT); no INACTIVE check.
  ATTESTATION:         [IPS, IPS, IG,    IGS, IGS,  OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   IGS, IGS],
  // sev_mcmd_send_start l.2809, l.2830 (RUNNING); no INACTIVE check.
  SEND_START:          [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  OK,  OK,   IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_send_update l.2947, l.2968 (SUPDATE), l.2980 (no active ASID → INACTIVE).
  SEND_UPDATE_DATA:    [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  INA, OK,   IGS, IGS,  IGS, IGS],
  SEND_UPDATE_VMSA:    [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  INA, OK,   IGS, IGS,  IGS, IGS],
  // sev_mcmd_send_finish l.3098, l.3112 / sev_mcmd_send_cancel l.3142, l.3156 (SUPDATE).
  SEND_FINISH:         [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  OK,  OK,   IGS, IGS,  IGS, IGS],
  SEND_CANCEL:         [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  OK,  OK,   IGS, IGS,  IGS, IGS],
  // sev_mcmd_receive_start l.3197 (INIT or WORKING), as LAUNCH_START.
  RECEIVE_START:       [IPS, OK,  IG,    OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK ],
  // sev_mcmd_receive_update l.3349, l.3363 (RUPDATE), l.3375 (no active or allocated ASID → INACTIVE).
  RECEIVE_UPDATE_DATA: [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  INA, OK ],
  RECEIVE_UPDATE_VMSA: [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  INA, OK ],
  // sev_mcmd_receive_finish l.3507, l.3521 (RUPDATE); no INACTIVE check.
  RECEIVE_FINISH:      [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  OK,  OK ],
  // sev_mcmd_dbg_decrypt l.3573 / _encrypt l.3633 → debug_crypt_common l.607: no guest-state check.
  DBG_DECRYPT:         [IPS, IPS, IG,    INA, OK,   INA, OK,   INA, OK,   INA, OK,   INA, OK,   INA, OK ],
  DBG_ENCRYPT:         [IPS, IPS, IG,    INA, OK,   INA, OK,   INA, OK,   INA, OK,   INA, OK,   INA, OK ],
};

/** The guest state a successful command leaves guest 1 in (sev_guest.c state_tbl_sev). */
const NEXT_GUEST_STATE: Record<string, number> = {
  DECOMMISSION: GuestState.UNINIT,
  LAUNCH_MEASURE: GuestState.LSECRET,
  LAUNCH_FINISH: GuestState.RUNNING,
  SEND_START: GuestState.SUPDATE,
  SEND_FINISH: GuestState.SENT,
  SEND_CANCEL: GuestState.RUNNING,
  RECEIVE_FINISH: GuestState.RUNNING,
};

/**
 * Rows where the model disagrees with AMD's source: "<command>/<column>" → the ASPFW reference.
 * Those rows run as it.fails, so they pass while the model is wrong and fail once it is fixed.
 */
const KNOWN_DISAGREEMENTS: Record<string, string> = {
  // None at present. (SEND_UPDATE's header-size check once came after the handle and state checks;
  // ASPFW sev_mcmd_send_update l.2955 puts it first.)
};

// ---- running a row -------------------------------------------------------------------------------

function expectOutcome(f: Fixture, expected: number, run: () => number): void {
  if (expected === S.SUCCESS) {
    expect(run()).toBe(S.SUCCESS);
    return;
  }
  const before = snapshot(f);
  expect(run()).toBe(expected);
  expect(snapshot(f)).toEqual(before);
}

function title(name: string, column: string, status: number): string {
  const statusName = Object.entries(SevStatus).find(([, v]) => v === status)?.[0] ?? String(status);
  return `${name} in ${column} → ${statusName}`;
}

/**
 * Runs a row in its column's fixture. A row that must fail changes nothing (expectOutcome checks it),
 * so the failing rows of a column share one fixture; a row that succeeds, or disagrees with ASPFW, gets
 * its own. A shared fixture is dropped as soon as a row on it fails, so one failure cannot spread.
 */
const sharedFixtures = new Map<string, Fixture>();
function inFixture(
  column: string,
  make: () => Fixture,
  status: number,
  key: string,
  body: (f: Fixture) => void,
): void {
  const shared = status !== S.SUCCESS && KNOWN_DISAGREEMENTS[key] === undefined;
  let f = shared ? sharedFixtures.get(column) : undefined;
  if (f === undefined) {
    f = make();
    if (shared) sharedFixtures.set(column, f);
  }
  try {
    body(f);
  } catch (err) {
    sharedFixtures.delete(column);
    throw err;
  }
}

/** A row; a known disagreement runs as it.fails (it passes while the model is wrong). */
function rowTest(key: string, name: string, body: () => void): void {
  if (KNOWN_DISAGREEMENTS[key] === undefined) it(name, body);
  else it.fails(`${name} [model disagrees: ${KNOWN_DISAGREEMENTS[key]}]`, body);
}

describe('platform commands in every platform state', () => {
  const columns = ['UNINIT', 'INIT', 'WORKING'] as const;
  const fixtures: Record<(typeof columns)[number], () => Fixture> = {
    UNINIT: uninitFixture,
    INIT: initFixture,
    WORKING: () => guestFixture(kindNamed('RUNNING, active')),
  };
  for (const [name, statuses] of Object.entries(PLATFORM_COMMANDS)) {
    columns.forEach((column, i) => {
      const status = statuses[i] as number;
      const key = `${name}/${column}`;
      rowTest(key, title(name, column, status), () =>
        inFixture(`platform/${column}`, fixtures[column], status, key, (f) => {
          const prepare = PREPARE[name] as Prepare;
          const before = platformStatus(f);
          expectOutcome(f, status, prepare(f));
          if (status !== S.SUCCESS) return;
          // sev_plat.c state_tbl_sev: INIT UNINIT→INIT; SHUTDOWN any→UNINIT; the rest keep the state.
          const after = platformStatus(f);
          const state =
            name === 'INIT' ? PlatformState.INIT : name === 'SHUTDOWN' ? PlatformState.UNINIT : before.state;
          expect(after.state).toBe(state);
          if (name === 'SHUTDOWN') expect(after.guestCount).toBe(0);
          if (name === 'PEK_CERT_IMPORT') expect(after.owner).toBe(1);
        }),
      );
    });
  }
});

describe('guest commands in every platform state and guest state', () => {
  const columns: { name: string; make: () => Fixture; kind?: GuestKind }[] = [
    { name: 'UNINIT', make: uninitFixture },
    { name: 'INIT', make: initFixture },
    {
      name: 'WORKING, no guest at the handle',
      make: () => {
        const f = guestFixture(kindNamed('RUNNING, active'));
        f.handle = 2;
        return f;
      },
    },
    ...GUEST_KINDS.map((kind) => ({ name: kind.name, make: () => guestFixture(kind), kind })),
  ];

  for (const [name, statuses] of Object.entries(GUEST_COMMANDS)) {
    describe(name, () => {
      columns.forEach((column, i) => {
        const status = statuses[i] as number;
        const key = `${name}/${column.name}`;
        rowTest(key, title(name, column.name, status), () =>
          inFixture(`guest/${column.name}`, column.make, status, key, (f) => {
            const prepare = PREPARE[name] as Prepare;
            const run = prepare(f);
            const platformBefore = platformStatus(f);
            expectOutcome(f, status, run);
            if (status !== S.SUCCESS) return;
            if (column.kind === undefined) {
              if (name === 'GUEST_STATUS') expect(guestStatus(f, f.handle).state).toBe(GuestState.UNINIT);
              // In INIT the new guest is handle 1 and the platform goes INIT → WORKING (state_tbl_sev).
              if (name === 'LAUNCH_START' || name === 'RECEIVE_START') {
                expect(guestStatus(f, 1).state).toBe(
                  name === 'LAUNCH_START' ? GuestState.LUPDATE : GuestState.RUPDATE,
                );
                expect(platformStatus(f)).toMatchObject({ state: PlatformState.WORKING, guestCount: 1 });
              }
              return;
            }
            const kind = column.kind;
            const guest = guestStatus(f, 1);
            // LAUNCH_START / RECEIVE_START create guest 2 (the lowest free handle) and leave guest 1 alone.
            if (name === 'LAUNCH_START' || name === 'RECEIVE_START') {
              expect(guestStatus(f, 2)).toMatchObject({
                state: name === 'LAUNCH_START' ? GuestState.LUPDATE : GuestState.RUPDATE,
                policy: POLICY,
                asid: 0,
              });
              expect(platformStatus(f)).toMatchObject({ state: PlatformState.WORKING, guestCount: 2 });
            }
            expect(guest.state).toBe(NEXT_GUEST_STATE[name] ?? kind.state);
            if (name === 'DECOMMISSION') {
              // The last guest gone: WORKING → INIT (sev_mcmd_decommission, guest_count 0).
              expect(platformStatus(f)).toMatchObject({ state: PlatformState.INIT, guestCount: 0 });
              return;
            }
            if (name === 'ACTIVATE') expect(guest.asid).toBe(FREE_ASID);
            if (name === 'DEACTIVATE') expect(guest.asid).toBe(0);
            if (name !== 'LAUNCH_START' && name !== 'RECEIVE_START')
              expect(platformStatus(f)).toEqual(platformBefore);
            // LAUNCH_FINISH / RECEIVE_FINISH complete a pending activation (sev_guest_finish_pending_activate).
            if ((name === 'LAUNCH_FINISH' || name === 'RECEIVE_FINISH') && kind.activation === 'activated')
              expect(f.e.platform.psp.describe().guests[0]?.activation).toBe('active');
          }),
        );
      });
    });
  }

  it('the tables name every implemented legacy command', () => {
    const named = new Set([...Object.keys(PLATFORM_COMMANDS), ...Object.keys(GUEST_COMMANDS)]);
    // Implemented = the model reads a command buffer for it (COMMAND_BUFFER_SIZE); the rest are INVALID_COMMAND.
    const implemented = Object.entries(SevCommand)
      .filter(([, id]) => COMMAND_BUFFER_SIZE[id] !== undefined)
      .map(([n]) => n);
    expect([...named].sort()).toEqual(implemented.sort());
    for (const statuses of Object.values(GUEST_COMMANDS)) expect(statuses).toHaveLength(columns.length);
  });
});

// The table above keeps every buffer well formed. AMD's handlers do not all check the state first,
// though: some buffer checks come before the guest-state (or even the handle or platform) check, others
// after it, so a malformed buffer sent in the wrong state shows which check sits first.
describe('where the state checks sit among the buffer checks', () => {
  const kind = kindNamed;
  const secret = (f: Fixture, over: { guestPaddr?: number; trans?: Buffer }): (() => number) =>
    transport(SevCommand.LAUNCH_SECRET, f, {
      hdr: Buffer.alloc(PacketHeader.size),
      guestPaddr: over.guestPaddr ?? f.guestPage,
      trans: over.trans ?? Buffer.alloc(64),
    });
  const shortHeader = (f: Fixture): (() => number) =>
    transport(SevCommand.SEND_UPDATE_DATA, f, {
      hdr: Buffer.alloc(PacketHeader.size),
      guestPaddr: f.guestPage,
      trans: Buffer.alloc(PAGE),
      hdrLength: 0,
    });
  const rows: {
    name: string;
    fixture: () => Fixture;
    run: (f: Fixture) => () => number;
    status: number;
  }[] = [
    // sev_mcmd_launch_update_vmsa l.2254: the length, before launch_update_common's platform check.
    {
      name: 'LAUNCH_UPDATE_VMSA of 0x800 bytes in UNINIT → INVALID_LENGTH',
      fixture: uninitFixture,
      run: (f) => () =>
        f.e.d.raw(SevCommand.LAUNCH_UPDATE_VMSA, LaunchUpdateBuffer, {
          handle: 1,
          paddr: BigInt(f.vmsaPage),
          length: 0x800,
        }).status,
      status: S.INVALID_LENGTH,
    },
    // sev_mcmd_send_start l.2822: session_len, before the RUNNING check at l.2830.
    {
      name: 'SEND_START with a short session buffer, guest in LUPDATE → INVALID_LENGTH',
      fixture: () => guestFixture(kind('LUPDATE, pending')),
      run: (f) => {
        const dst = destinationCerts();
        const fields = {
          handle: 1,
          pdhCertPaddr: BigInt(stage(f.e, dst.pdh)),
          pdhCertLength: SEV_CERT_SIZE,
          platCertsPaddr: BigInt(stage(f.e, dst.chain)),
          platCertsLength: dst.chain.length,
          amdCertsPaddr: BigInt(stage(f.e, dst.amd)),
          amdCertsLength: dst.amd.length,
          sessionPaddr: BigInt(stage(f.e, Buffer.alloc(0), SessionBuffer.size)),
          sessionLength: SessionBuffer.size / 2,
        };
        return () => f.e.d.raw(SevCommand.SEND_START, SendStartBuffer, fields).status;
      },
      status: S.INVALID_LENGTH,
    },
    // sev_mcmd_dbg_decrypt l.3580-3591: alignment and length, before handle_is_valid (l.3593).
    {
      name: 'DBG_DECRYPT from a misaligned address, no guest at the handle → INVALID_ADDRESS',
      fixture: () => guestFixture(kind('RUNNING, active')),
      run: (f) => () =>
        f.e.d.raw(SevCommand.DBG_DECRYPT, DebugBuffer, {
          handle: 2,
          srcPaddr: BigInt(f.guestPage + 8),
          dstPaddr: BigInt(f.vmsaPage),
          length: 64,
        }).status,
      status: S.INVALID_ADDRESS,
    },
    // sev_mcmd_launch_secret l.2373: guest_paddr alignment, before the LSECRET check at l.2390.
    {
      name: 'LAUNCH_SECRET to a misaligned guest address, guest RUNNING → INVALID_ADDRESS',
      fixture: () => guestFixture(kind('RUNNING, active')),
      run: (f) => secret(f, { guestPaddr: f.guestPage + 8 }),
      status: S.INVALID_ADDRESS,
    },
    // sev_mcmd_launch_secret l.2379-2386: guest_len 0, before the LSECRET check at l.2390.
    {
      name: 'LAUNCH_SECRET of 0 bytes, guest RUNNING → INVALID_LENGTH',
      fixture: () => guestFixture(kind('RUNNING, active')),
      run: (f) => secret(f, { trans: Buffer.alloc(0) }),
      status: S.INVALID_LENGTH,
    },
    // sev_mcmd_send_update l.2955: hdr_size < 0x34, before handle_is_valid (l.2961).
    {
      name: 'SEND_UPDATE_DATA with hdr_len 0, no guest at the handle → INVALID_LENGTH',
      fixture: () => {
        const f = guestFixture(kind('SUPDATE, active'));
        f.handle = 2;
        return f;
      },
      run: shortHeader,
      status: S.INVALID_LENGTH,
    },
    // sev_mcmd_send_update l.2955: hdr_size, before the SUPDATE check (l.2968).
    {
      name: 'SEND_UPDATE_DATA with hdr_len 0, guest RUNNING → INVALID_LENGTH',
      fixture: () => guestFixture(kind('RUNNING, active')),
      run: shortHeader,
      status: S.INVALID_LENGTH,
    },
    // sev_mcmd_send_update l.2955: hdr_size, before the INACTIVE check (l.2980).
    {
      name: 'SEND_UPDATE_DATA with hdr_len 0, guest SUPDATE but inactive → INVALID_LENGTH',
      fixture: () => guestFixture(kind('SUPDATE, inactive')),
      run: shortHeader,
      status: S.INVALID_LENGTH,
    },
    // Checks that come after the state check: a malformed buffer in the wrong state is a state error.
    // mcmd_activate_common l.462 (ASID range) precedes activate_common l.387 (SENT).
    {
      name: 'ACTIVATE on ASID 0, guest SENT → INVALID_ASID',
      fixture: () => guestFixture(kind('SENT, inactive')),
      run: (f) => () => f.e.d.raw(SevCommand.ACTIVATE, ActivateBuffer, { handle: 1, asid: 0 }).status,
      status: S.INVALID_ASID,
    },
    // activate_common l.387 (SENT) precedes l.397 (dirty ASID → DF_FLUSH_REQUIRED). GUEST_ASID is dirty:
    // the guest ran on it and was DEACTIVATEd.
    {
      name: 'ACTIVATE of a SENT guest on its old, dirty ASID → INVALID_GUEST_STATE',
      fixture: () => guestFixture(kind('SENT, inactive')),
      run: (f) => () =>
        f.e.d.raw(SevCommand.ACTIVATE, ActivateBuffer, { handle: 1, asid: GUEST_ASID }).status,
      status: S.INVALID_GUEST_STATE,
    },
    // launch_update_common l.1011 (INACTIVE) precedes l.1017 (alignment).
    {
      name: 'LAUNCH_UPDATE_DATA from a misaligned address, guest LUPDATE but inactive → INACTIVE',
      fixture: () => guestFixture(kind('LUPDATE, inactive')),
      run: (f) => () =>
        f.e.d.raw(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
          handle: 1,
          paddr: BigInt(f.guestPage + 8),
          length: 8,
        }).status,
      status: S.INACTIVE,
    },
    // sev_mcmd_launch_measure l.2294 (LUPDATE) precedes l.2300 (measure_len).
    {
      name: 'LAUNCH_MEASURE with a 0-byte buffer, guest LSECRET → INVALID_GUEST_STATE',
      fixture: () => guestFixture(kind('LSECRET, pending')),
      run: (f) => () =>
        f.e.d.raw(SevCommand.LAUNCH_MEASURE, LaunchMeasureBuffer, {
          handle: 1,
          paddr: BigInt(f.guestPage),
          length: 0,
        }).status,
      status: S.INVALID_GUEST_STATE,
    },
    // sev_mcmd_attestation l.2560 (guest state) precedes l.2567 (length).
    {
      name: 'ATTESTATION with a 0-byte buffer, guest LUPDATE → INVALID_GUEST_STATE',
      fixture: () => guestFixture(kind('LUPDATE, pending')),
      run: (f) => () =>
        f.e.d.raw(SevCommand.ATTESTATION, AttestationBuffer, {
          handle: 1,
          paddr: BigInt(f.guestPage),
          mnonce: Buffer.alloc(16),
          length: 0,
        }).status,
      status: S.INVALID_GUEST_STATE,
    },
    // sev_mcmd_receive_update l.3375 (INACTIVE) precedes l.3381 (lengths).
    {
      name: 'RECEIVE_UPDATE_DATA of 0 bytes, guest RUPDATE but inactive → INACTIVE',
      fixture: () => guestFixture(kind('RUPDATE, inactive')),
      run: (f) =>
        transport(SevCommand.RECEIVE_UPDATE_DATA, f, {
          hdr: Buffer.alloc(PacketHeader.size),
          guestPaddr: f.guestPage,
          trans: Buffer.alloc(0),
        }),
      status: S.INACTIVE,
    },
  ];
  for (const row of rows) {
    rowTest(`order/${row.name}`, row.name, () => {
      const f = row.fixture();
      expectOutcome(f, row.status, row.run(f));
    });
  }
});
