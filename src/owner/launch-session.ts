// The guest owner's half of LAUNCH_START (sev-reference §4.2–§4.3): an ephemeral GODH key agreed with
// the platform's PDH, and the 0x80-byte session buffer that carries the wrapped transport keys. The
// outputs are what sev-tool `generate_launch_blob` writes (godh.cert, launch_blob.bin, tmp_tk.bin), so a
// real platform's PDH works as well as a simulated one.
import { type KeyObject, randomBytes } from 'node:crypto';
import {
  AbiDecodeError,
  SEV_CERT_CURVE_P384,
  type SevEcPublicKey,
  SessionBuffer,
  SevCertAlgo,
  SevCertUsage,
  StructLayout,
  decodeSevCert,
  encodeSevCert,
  sevAlgoName,
  sevUsageName,
} from '../abi/index.js';
import {
  deriveChannelWrapKeys,
  ecdhP384,
  generateP384KeyPair,
  p384PrivateKeyFromBytes,
  p384PublicKeyFromAmd,
  p384PublicKeyToAmd,
  policyMac,
  wrapTransportKeys,
} from '../crypto/index.js';

/** A source of random bytes: node:crypto's randomBytes by default, a seeded generator in tests. */
export type RandomBytes = (length: number) => Uint8Array;

/** Bytes of TEK, TIK, the session nonce and the wrap IV. */
export const TRANSPORT_KEY_BYTES = 16;
/**
 * Random bytes a GODH private key is made from when an RNG is injected: 384 + 64 bits, FIPS 186-4
 * §B.4.1 "extra random bits", as the firmware draws its own ECC keys.
 */
export const GODH_KEY_SEED_BYTES = 56;

// sev-tool sevapi.h tek_tik, the layout of tmp_tk.bin: TEK then TIK, nothing else.
export const TransportKeysFile = new StructLayout('transport keys (TEK ‖ TIK)', 32, {
  tek: { offset: 0x00, type: 'bytes', length: TRANSPORT_KEY_BYTES },
  tik: { offset: 0x10, type: 'bytes', length: TRANSPORT_KEY_BYTES },
});

/** The guest owner's transport keys: TEK encrypts secrets, TIK authenticates the channel. */
export interface TransportKeys {
  readonly tek: Buffer;
  readonly tik: Buffer;
}

/** TEK ‖ TIK, the 32 bytes of sev-tool's tmp_tk.bin. */
export function encodeTransportKeys(keys: TransportKeys): Buffer {
  return TransportKeysFile.encode({ tek: keys.tek, tik: keys.tik });
}

/** Splits tmp_tk.bin; anything but exactly 32 bytes is an AbiDecodeError. */
export function decodeTransportKeys(bytes: Uint8Array): TransportKeys {
  if (bytes.length > TransportKeysFile.size)
    throw new AbiDecodeError(
      TransportKeysFile.name,
      '(end)',
      TransportKeysFile.size,
      `${bytes.length} bytes, expected exactly ${TransportKeysFile.size}`,
    );
  return TransportKeysFile.decode(bytes);
}

/**
 * Decodes a platform PDH certificate and checks it can take part in LAUNCH_START: a well-formed SEV
 * certificate (decodeSevCert: version 1, a P-384 point on the curve) with usage PDH and an ECDH
 * algorithm. Throws AbiDecodeError naming the field and offset. Signatures are not checked here: that
 * is the chain's job (verifySevChain), done by the caller before trusting the platform.
 */
export function decodePdhCert(bytes: Uint8Array): SevEcPublicKey {
  const cert = decodeSevCert(bytes);
  const k = cert.pubkey;
  if (k.usage !== SevCertUsage.PDH)
    throw new AbiDecodeError(
      'SEV certificate',
      'pubkeyUsage',
      0x008,
      `${sevUsageName(k.usage)}, expected a PDH (0x1003) certificate`,
    );
  // The PDH exists for key agreement: the firmware creates it ECDH_SHA256 and wants the GODH to match.
  if (k.type !== 'ec' || (k.algo !== SevCertAlgo.ECDH_SHA256 && k.algo !== SevCertAlgo.ECDH_SHA384))
    throw new AbiDecodeError(
      'SEV certificate',
      'pubkeyAlgo',
      0x00c,
      `${sevAlgoName(k.algo)}, a PDH must be an ECDH key (ECDH_SHA256, 0x3)`,
    );
  return k;
}

/**
 * The GODH certificate for `key`: the form the firmware's sanity check accepts (version 1, usage PDH,
 * ECDH_SHA256, curve P-384; ASPFW sev_cert_sanity_check). API 0.0 and both signature slots empty, as
 * virtee/sev's `Certificate::generate` writes it: the firmware ignores GODH signatures. (sev-tool instead
 * self-signs it in slot 1 as PEK/ECDSA_SHA256, which the firmware ignores just the same.)
 */
export function encodeGodhCert(key: KeyObject): Buffer {
  const { qx, qy } = p384PublicKeyToAmd(key);
  return encodeSevCert({
    version: 1,
    apiMajor: 0,
    apiMinor: 0,
    reserved: Buffer.alloc(2),
    pubkey: {
      type: 'ec',
      usage: SevCertUsage.PDH,
      algo: SevCertAlgo.ECDH_SHA256,
      curve: SEV_CERT_CURVE_P384,
      qx,
      qy,
      reserved: Buffer.alloc(0x370),
    },
    signatures: [{ type: 'empty' }, { type: 'empty' }],
  });
}

/** Everything that determines a session buffer, for reproducing published vectors. */
export interface SessionBufferInput {
  /** Z: the ECDH shared secret (48-byte big-endian X for P-384). */
  readonly sharedSecret: Uint8Array;
  readonly nonce: Uint8Array;
  readonly wrapIv: Uint8Array;
  readonly tek: Uint8Array;
  readonly tik: Uint8Array;
  /** The 32-bit guest policy the firmware will check POLICY_MAC against. */
  readonly policy: number;
}

function check16(name: string, v: Uint8Array): void {
  if (v.length !== TRANSPORT_KEY_BYTES)
    throw new RangeError(`${name} must be ${TRANSPORT_KEY_BYTES} bytes, got ${v.length}`);
}

/** Throws a RangeError unless `policy` is a 32-bit unsigned integer. */
export function checkPolicy(policy: number): void {
  if (!Number.isInteger(policy) || policy < 0 || policy > 0xffff_ffff)
    throw new RangeError(`policy ${policy} is not a 32-bit unsigned integer`);
}

/**
 * The 0x80-byte session buffer: NONCE ‖ WRAP_TK ‖ WRAP_IV ‖ WRAP_MAC ‖ POLICY_MAC, with master =
 * KDF(Z, "sev-master-secret", NONCE), KEK/KIK from master, WRAP_TK = AES-128-CTR(KEK, WRAP_IV, TEK ‖ TIK),
 * WRAP_MAC = HMAC(KIK, WRAP_TK), POLICY_MAC = HMAC(TIK, le32(policy)).
 */
export function buildSessionBuffer(input: SessionBufferInput): Buffer {
  check16('nonce', input.nonce);
  check16('wrap IV', input.wrapIv);
  check16('TEK', input.tek);
  check16('TIK', input.tik);
  checkPolicy(input.policy);
  const wrap = deriveChannelWrapKeys(input.sharedSecret, input.nonce);
  try {
    const { wrapTk, wrapMac } = wrapTransportKeys(wrap, input.wrapIv, input.tek, input.tik);
    return SessionBuffer.encode({
      nonce: Buffer.from(input.nonce),
      wrapTk,
      wrapIv: Buffer.from(input.wrapIv),
      wrapMac,
      policyMac: policyMac(input.tik, input.policy),
    });
  } finally {
    wrap.kek.fill(0);
    wrap.kik.fill(0);
  }
}

/** What the owner sends (GODH certificate, session buffer) and what it keeps (TEK, TIK). */
export interface LaunchSession {
  /** LAUNCH_START's GODH certificate, 0x824 bytes (godh.cert). */
  readonly godhCert: Buffer;
  /** LAUNCH_START's session buffer, 0x80 bytes (launch_blob.bin). */
  readonly session: Buffer;
  /** Transport keys: secret, they stay with the owner (tmp_tk.bin). */
  readonly tek: Buffer;
  readonly tik: Buffer;
}

export interface LaunchSessionOptions {
  /**
   * Where randomness comes from (default node:crypto randomBytes). With an injected source the GODH key
   * is derived from its first 56 bytes, then NONCE, TEK, TIK and WRAP_IV are drawn, 16 bytes each, in
   * that order — so a seeded source gives a reproducible session.
   */
  readonly random?: RandomBytes;
}

function draw(random: RandomBytes, length: number): Buffer {
  const bytes = random(length);
  if (bytes.length !== length)
    throw new RangeError(`the random source returned ${bytes.length} bytes, ${length} were asked`);
  return Buffer.from(bytes);
}

/**
 * Opens a launch session with the platform whose PDH certificate is `pdhCert`, for a guest with
 * `policy`: a fresh GODH key pair and its certificate, fresh TEK, TIK, nonce and wrap IV, and the session
 * buffer the firmware will unwrap them from. Throws AbiDecodeError if the PDH is malformed or not a PDH.
 */
export function createLaunchSession(
  pdhCert: Uint8Array,
  policy: number,
  options: LaunchSessionOptions = {},
): LaunchSession {
  checkPolicy(policy);
  const pdh = p384PublicKeyFromAmd(decodePdhCert(pdhCert));
  const random = options.random;
  // One GODH key per session: it is never stored, so only this session can ever derive Z.
  const godh =
    random === undefined
      ? generateP384KeyPair().privateKey
      : p384PrivateKeyFromBytes(draw(random, GODH_KEY_SEED_BYTES));
  const rng = random ?? ((n: number): Uint8Array => randomBytes(n));
  const nonce = draw(rng, TRANSPORT_KEY_BYTES);
  const tek = draw(rng, TRANSPORT_KEY_BYTES);
  const tik = draw(rng, TRANSPORT_KEY_BYTES);
  const wrapIv = draw(rng, TRANSPORT_KEY_BYTES);
  const z = ecdhP384(godh, pdh);
  try {
    const session = buildSessionBuffer({ sharedSecret: z, nonce, wrapIv, tek, tik, policy });
    return { godhCert: encodeGodhCert(godh), session, tek, tik };
  } finally {
    z.fill(0);
  }
}
