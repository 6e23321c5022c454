// The state table of the legacy SEV command set: every implemented legacy command, in every platform
// state (UNINIT, INIT, WORKING) and, for guest commands, against a guest in every reachable guest state
// (LUPDATE, LSECRET, RUNNING, SUPDATE, SENT, RUPDATE), inactive and activated (pending or active).
// Every state is reached through the real mailbox, and every command buffer is well formed, so that only
// the state decides the outcome. Expected statuses come from AMD's firmware source (amd/AMD-ASPFW
// @3ca6650, fw/psp_bl_uapps/sev_uapp/src: sev_mcmd.c, sev_guest.c, sev_plat.c, sev_dispatch.c), never
// from running the model. A failure must change nothing the host can observe.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
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

function machine(seed: string | number = 1): Env {
  const platform = createPlatform({ seed, dramBytes: 64 << 20 });
  const hv = new Hypervisor(platform);
  return { platform, hv, d: hv.driver };
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
      createHash('sha256')
        .update(`${label}/${counter++}`)
        .digest()
        .copy(out, done);
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

const read = (e: Env, spa: number, length: number): Buffer => e.platform.soc.hostMemory.read(spa, length, false);

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
  return bare(machine());
}

/** INIT (with SEV-ES and a TMR, as Linux does), WBINVD, DF_FLUSH; the identity exists. */
function initFixture(): Fixture {
  const e = machine();
  e.hv.initPlatform();
  exportCerts(e);
  return bare(e);
}

/** An owner session for `policy` against this platform's PDH (sev-tool generate_launch_blob). */
function ownerSession(f: Fixture, label: string): { godh: Buffer; session: Buffer; keys: Channel } {
  const ps = f.e.d.call(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {});
  // In UNINIT there is no PDH to export; the command fails on the platform state before reading it.
  const pdh = ps.state === PlatformState.UNINIT ? destinationCerts().pdh : exportCerts(f.e).pdh;
  const s = createLaunchSession(pdh, POLICY, { random: seededRandom(label) });
  return { godh: s.godhCert, session: s.session, keys: { tek: s.tek, tik: s.tik } };
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
  else expect(activation).toBe(kind.state === GuestState.LUPDATE || kind.state === GuestState.LSECRET || kind.state === GuestState.RUPDATE ? 'pending' : 'active');
  return f;
}

// ---- observation ----------------------------------------------------------------------------------

/** Everything the host can observe: PLATFORM_STATUS, GUEST_STATUS of handles 1..3, the certificates. */
function snapshot(f: Fixture): unknown {
  const d = f.e.d;
  const platform = d.raw(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {});
  const guests = [1, 2, 3].map((handle) => d.raw(SevCommand.GUEST_STATUS, GuestStatusBuffer, { handle }));
  const certs = platform.out.state === PlatformState.UNINIT ? undefined : exportCerts(f.e);
  return { platform, guests, certs, psp: f.e.platform.psp.describe() };
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
    ok(f.e.d.raw(SevCommand.PEK_CSR, PekCsrBuffer, { csrPaddr: BigInt(at), csrLength: SEV_CERT_SIZE }).status);
    csr = decodeSevCert(read(f.e, at, SEV_CERT_SIZE));
  }
  const owner = generateP384KeyPair();
  const sign = (c: SevCert): Buffer => {
    const sig = ecdsaP384Sign(owner.privateKey, 'sha256', encodeSevCert(c).subarray(0, SEV_CERT_SIGNED_LENGTH));
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
  fields: { hdr: Buffer; guestPaddr: number; trans: Buffer },
): () => number {
  const buf = {
    handle: f.handle,
    hdrPaddr: BigInt(stage(f.e, fields.hdr, PacketHeader.size)),
    hdrLength: PacketHeader.size,
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
    return transport(id, f, { ...pkt, guestPaddr: id === SevCommand.RECEIVE_UPDATE_VMSA ? f.vmsaPage : f.guestPage });
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
      f.e.d.raw(SevCommand.INIT, InitBuffer, { flags: INIT_FLAG_ES, tmrPaddr: BigInt(tmr), tmrLength: TMR_SIZE })
        .status;
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
    return () => f.e.d.raw(SevCommand.GET_ID, GetIdBuffer, { idPaddr: BigInt(at), idLength: GET_ID_BYTES }).status;
  },

  DECOMMISSION: withHandle(SevCommand.DECOMMISSION),
  ACTIVATE: (f) => () => f.e.d.raw(SevCommand.ACTIVATE, ActivateBuffer, { handle: f.handle, asid: FREE_ASID }).status,
  DEACTIVATE: withHandle(SevCommand.DEACTIVATE),
  GUEST_STATUS: (f) => () => f.e.d.raw(SevCommand.GUEST_STATUS, GuestStatusBuffer, { handle: f.handle }).status,
  // A new guest without a session; in the unknown-handle column it asks to share that handle's key.
  LAUNCH_START: (f) => () =>
    f.e.d.raw(SevCommand.LAUNCH_START, LaunchStartBuffer, { handle: f.handle === 1 ? 0 : f.handle, policy: POLICY })
      .status,
  LAUNCH_UPDATE_DATA: (f) => {
    const at = stage(f.e, pattern(PAGE, 3));
    return () =>
      f.e.d.raw(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, { handle: f.handle, paddr: BigInt(at), length: PAGE })
        .status;
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

// Platform commands, in UNINIT, INIT, WORKING (one RUNNING, active guest). State checks: sev_mcmd.c
// sev_mcmd_init_common (UNINIT only), sev_mcmd_shutdown (sev_plat.c state_tbl_sev: any → UNINIT),
// sev_mcmd_platform_reset (UNINIT only), sev_mcmd_platform_status (none), sev_mcmd_pek_gen (INIT only),
// sev_mcmd_pek_csr (INIT or WORKING), sev_mcmd_pek_cert_import (INIT only), sev_mcmd_pdh_cert_export and
// sev_mcmd_pdh_gen (INIT or WORKING), mcmd_df_flush_common and sev_mcmd_get_id (none).
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
  // mcmd_decommission_common: an active or pending guest (asid_is_active) → ACTIVE; any guest state.
  DECOMMISSION:        [IPS, IPS, IG,    OK,  ACT,  OK,  ACT,  OK,  ACT,  OK,  ACT,  OK,  ACT,  OK,  ACT],
  // mcmd_activate_common: INVALID_ASID, ASID_OWNED, then ACTIVE; activate_common: SENT → INVALID_GUEST_STATE.
  ACTIVATE:            [IPS, IPS, IG,    OK,  ACT,  OK,  ACT,  OK,  ACT,  OK,  ACT,  IGS, ACT,  OK,  ACT],
  // sev_mcmd_deactivate: inactive → INACTIVE; no guest-state check.
  DEACTIVATE:          [IPS, IPS, IG,    INA, OK,   INA, OK,   INA, OK,   INA, OK,   INA, OK,   INA, OK ],
  // sev_mcmd_guest_status: INIT or WORKING; an unknown handle is SUCCESS with state 0.
  GUEST_STATUS:        [IPS, OK,  OK,    OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK ],
  // sev_mcmd_launch_start: INIT or WORKING; the other guests' states do not matter; sharing an unknown
  // handle's key → INVALID_GUEST.
  LAUNCH_START:        [IPS, OK,  IG,    OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK ],
  // launch_update_common: LUPDATE, then (ES,) then inactive → INACTIVE.
  LAUNCH_UPDATE_DATA:  [IPS, IPS, IG,    INA, OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  LAUNCH_UPDATE_VMSA:  [IPS, IPS, IG,    INA, OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_launch_measure: LUPDATE; no INACTIVE check.
  LAUNCH_MEASURE:      [IPS, IPS, IG,    OK,  OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_launch_secret: LSECRET, then inactive → INACTIVE.
  LAUNCH_SECRET:       [IPS, IPS, IG,    IGS, IGS,  INA, OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_launch_finish: LSECRET; no INACTIVE check.
  LAUNCH_FINISH:       [IPS, IPS, IG,    IGS, IGS,  OK,  OK,   IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_attestation: LSECRET, RUNNING, SUPDATE or SENT; no INACTIVE check.
  ATTESTATION:         [IPS, IPS, IG,    IGS, IGS,  OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   IGS, IGS],
  // sev_mcmd_send_start: RUNNING; no INACTIVE check.
  SEND_START:          [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  OK,  OK,   IGS, IGS,  IGS, IGS,  IGS, IGS],
  // sev_mcmd_send_update: SUPDATE, (ES,) then no active ASID → INACTIVE.
  SEND_UPDATE_DATA:    [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  INA, OK,   IGS, IGS,  IGS, IGS],
  SEND_UPDATE_VMSA:    [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  INA, OK,   IGS, IGS,  IGS, IGS],
  // sev_mcmd_send_finish / sev_mcmd_send_cancel: SUPDATE.
  SEND_FINISH:         [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  OK,  OK,   IGS, IGS,  IGS, IGS],
  SEND_CANCEL:         [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  OK,  OK,   IGS, IGS,  IGS, IGS],
  // sev_mcmd_receive_start: INIT or WORKING, as LAUNCH_START.
  RECEIVE_START:       [IPS, OK,  IG,    OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK,   OK,  OK ],
  // sev_mcmd_receive_update: RUPDATE, (ES,) then no active or allocated ASID → INACTIVE.
  RECEIVE_UPDATE_DATA: [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  INA, OK ],
  RECEIVE_UPDATE_VMSA: [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  INA, OK ],
  // sev_mcmd_receive_finish: RUPDATE; no INACTIVE check.
  RECEIVE_FINISH:      [IPS, IPS, IG,    IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  IGS, IGS,  OK,  OK ],
  // sev_mcmd_dbg_decrypt / _encrypt → debug_crypt_common: no guest-state check; inactive → INACTIVE.
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
const KNOWN_DISAGREEMENTS: Record<string, string> = {};

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

function rowTest(key: string): typeof it {
  return KNOWN_DISAGREEMENTS[key] === undefined ? it : it.fails;
}

describe('platform commands in every platform state', () => {
  const columns = ['UNINIT', 'INIT', 'WORKING'] as const;
  const fixtures: Record<(typeof columns)[number], () => Fixture> = {
    UNINIT: uninitFixture,
    INIT: initFixture,
    WORKING: () => guestFixture(GUEST_KINDS[5] as GuestKind),
  };
  for (const [name, statuses] of Object.entries(PLATFORM_COMMANDS)) {
    columns.forEach((column, i) => {
      const status = statuses[i] as number;
      rowTest(`${name}/${column}`)(title(name, column, status), () => {
        const f = fixtures[column]();
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
      });
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
        const f = guestFixture(GUEST_KINDS[5] as GuestKind);
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
        rowTest(`${name}/${column.name}`)(title(name, column.name, status), () => {
          const f = column.make();
          const prepare = PREPARE[name] as Prepare;
          const run = prepare(f);
          const platformBefore = platformStatus(f);
          expectOutcome(f, status, run);
          if (status !== S.SUCCESS || column.kind === undefined) return;
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
        });
      });
    });
  }

  it('the table names every implemented legacy command', () => {
    const named = new Set([...Object.keys(PLATFORM_COMMANDS), ...Object.keys(GUEST_COMMANDS)]);
    // Implemented = the model reads a command buffer for it (COMMAND_BUFFER_SIZE); the rest are INVALID_COMMAND.
    const implemented = Object.entries(SevCommand)
      .filter(([, id]) => COMMAND_BUFFER_SIZE[id] !== undefined)
      .map(([n]) => n);
    expect([...named].sort()).toEqual(implemented.sort());
    for (const statuses of Object.values(GUEST_COMMANDS)) expect(statuses).toHaveLength(columns.length);
  });
});
