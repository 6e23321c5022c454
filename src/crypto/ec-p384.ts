// NIST P-384 keys, ECDSA and ECDH in AMD's encodings (sev-reference §3.1 and §11 fact 1): the PSP keeps
// coordinates and r/s as 72-byte little-endian fields, but hands out the ECDH secret big-endian.
import {
  type KeyObject,
  createECDH,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  sign,
  verify,
} from 'node:crypto';

/** Bytes of a P-384 coordinate or scalar. */
export const P384_BYTES = 48;
/**
 * Bytes of an EC coordinate or signature half in AMD's structures: the CCP's operand width (ASPFW ecc.h
 * ECC_SCALAR_SIZE_BYTES, 576 bits), of which P-384 uses the low 48 bytes.
 */
export const AMD_EC_FIELD_BYTES = 72;

/** The field prime p of P-384 (FIPS 186-4 §D.1.2.4). */
export const P384_P = 2n ** 384n - 2n ** 128n - 2n ** 96n + 2n ** 32n - 1n;
/** The order n of the P-384 base point. */
export const P384_N =
  0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n;
const P384_B =
  0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn;

/** The digest an AMD algorithm names: SHA-256 for `*_SHA256` (even on P-384), SHA-384 for `*_SHA384`. */
export type EcdsaHash = 'sha256' | 'sha384';

/** A P-384 public point as AMD stores it: QX and QY, 72-byte little-endian fields. */
export interface AmdEcPoint {
  qx: Buffer;
  qy: Buffer;
}

/** An ECDSA signature as AMD stores it: R and S, 72-byte little-endian fields. */
export interface AmdEcdsaSignature {
  r: Buffer;
  s: Buffer;
}

/** A key or key material that is not a usable P-384 key. */
export class P384KeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'P384KeyError';
  }
}

/** The unsigned integer a little-endian byte string encodes. */
export function leToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i] as number);
  return v;
}

/** `value` as `length` little-endian bytes; throws a RangeError if it does not fit. */
export function bigIntToLe(value: bigint, length: number): Buffer {
  if (value < 0n || value >> BigInt(8 * length) !== 0n)
    throw new RangeError(`integer does not fit in ${length} bytes`);
  const out = Buffer.alloc(length);
  let v = value;
  for (let i = 0; i < length; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function bigIntToBe(value: bigint, length: number): Buffer {
  return bigIntToLe(value, length).reverse();
}

/** Little-endian field → 48-byte big-endian, or undefined if a byte above the low 48 is set. */
function fieldToBe48(field: Uint8Array): Buffer | undefined {
  for (let i = P384_BYTES; i < field.length; i++) if (field[i] !== 0) return undefined;
  const out = Buffer.alloc(P384_BYTES);
  out.set(field.subarray(0, P384_BYTES));
  return out.reverse();
}

/** 48-byte big-endian (as OpenSSL and JWK give it) → 72-byte little-endian AMD field. */
function be48ToField(be: Uint8Array): Buffer {
  const out = Buffer.alloc(AMD_EC_FIELD_BYTES);
  out.set(Buffer.from(be).reverse());
  return out;
}

function mod(a: bigint, m: bigint): bigint {
  const r = a % m;
  return r < 0n ? r + m : r;
}

/**
 * Whether little-endian QX, QY (any field width) name a point of P-384: both coordinates below p and
 * y² = x³ − 3x + b (mod p). The cofactor is 1, so this is the full public-key validation of SP 800-56A
 * §5.6.2.3.3, and what the firmware checks before using a key (ASPFW ecc.c check_ec_points_on_curve).
 */
export function isP384Point(qx: Uint8Array, qy: Uint8Array): boolean {
  const x = leToBigInt(qx);
  const y = leToBigInt(qy);
  if (x >= P384_P || y >= P384_P) return false;
  return mod(y * y - (x * x * x - 3n * x + P384_B), P384_P) === 0n;
}

function assertP384(key: KeyObject, type: 'public' | 'private'): void {
  if (
    key.type !== type ||
    key.asymmetricKeyType !== 'ec' ||
    key.asymmetricKeyDetails?.namedCurve !== 'secp384r1'
  )
    throw new P384KeyError(`expected a P-384 ${type} key`);
}

/** Imports an AMD-encoded public point; throws P384KeyError if it is not a point of P-384. */
export function p384PublicKeyFromAmd(point: AmdEcPoint): KeyObject {
  const x = fieldToBe48(point.qx);
  const y = fieldToBe48(point.qy);
  if (x === undefined || y === undefined) throw new P384KeyError('coordinate has bytes set above the low 48');
  if (!isP384Point(point.qx, point.qy)) throw new P384KeyError('point is not on the P-384 curve');
  return createPublicKey({
    key: { kty: 'EC', crv: 'P-384', x: x.toString('base64url'), y: y.toString('base64url') },
    format: 'jwk',
  });
}

/** The public point of a P-384 key (public or private) in AMD's 72-byte little-endian fields. */
export function p384PublicKeyToAmd(key: KeyObject): AmdEcPoint {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  assertP384(pub, 'public');
  const jwk = pub.export({ format: 'jwk' });
  if (jwk.x === undefined || jwk.y === undefined) throw new P384KeyError('key has no coordinates');
  return {
    qx: be48ToField(Buffer.from(jwk.x, 'base64url')),
    qy: be48ToField(Buffer.from(jwk.y, 'base64url')),
  };
}

/** A fresh P-384 key pair from the system RNG. */
export function generateP384KeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-384' });
}

/** The P-384 private key with scalar `d`, 1 ≤ d < n. */
export function p384PrivateKeyFromScalar(d: bigint): KeyObject {
  if (d < 1n || d >= P384_N) throw new P384KeyError('private scalar must be in [1, n-1]');
  // OpenSSL derives the public point (Q = dG) for us; JWK import then needs d, x and y together.
  const ecdh = createECDH('secp384r1');
  const dBe = bigIntToBe(d, P384_BYTES);
  ecdh.setPrivateKey(dBe);
  const q = ecdh.getPublicKey(); // 0x04 ‖ X ‖ Y, big-endian
  return createPrivateKey({
    key: {
      kty: 'EC',
      crv: 'P-384',
      d: dBe.toString('base64url'),
      x: q.subarray(1, 1 + P384_BYTES).toString('base64url'),
      y: q.subarray(1 + P384_BYTES).toString('base64url'),
    },
    format: 'jwk',
  });
}

/**
 * A deterministic P-384 private key from at least 48 random bytes, by FIPS 186-4 §B.4.1 ("key pair
 * generation using extra random bits"): c = the bytes as an integer, d = (c mod (n − 1)) + 1.
 *
 * The bytes are read little-endian, as the firmware does (ASPFW ecc.c ecc_keypair_from_extra_bits copies
 * them into a little-endian CCP scalar). B.4.1 asks for 384 + 64 bits (56 bytes, what the firmware takes);
 * 48 bytes are accepted too: P-384's n is within 2^190 of 2^384, so the bias of reducing 384 bits is
 * below 2^-190.
 */
export function p384PrivateKeyFromBytes(bytes: Uint8Array): KeyObject {
  if (bytes.length < P384_BYTES)
    throw new P384KeyError(`need at least ${P384_BYTES} bytes, got ${bytes.length}`);
  return p384PrivateKeyFromScalar((leToBigInt(bytes) % (P384_N - 1n)) + 1n);
}

/** ECDSA over `message` with P-384 and `hash`; R and S as 72-byte little-endian fields. */
export function ecdsaP384Sign(
  privateKey: KeyObject,
  hash: EcdsaHash,
  message: Uint8Array,
): AmdEcdsaSignature {
  assertP384(privateKey, 'private');
  const rs = sign(hash, message, { key: privateKey, dsaEncoding: 'ieee-p1363' }); // r ‖ s, big-endian
  return { r: be48ToField(rs.subarray(0, P384_BYTES)), s: be48ToField(rs.subarray(P384_BYTES)) };
}

/**
 * Whether (R, S), little-endian fields of any width, is a valid ECDSA P-384 signature of `message`
 * under `hash`. A field with bytes set above the low 48 holds a value ≥ n and cannot verify.
 */
export function ecdsaP384Verify(
  publicKey: KeyObject,
  hash: EcdsaHash,
  message: Uint8Array,
  signature: AmdEcdsaSignature,
): boolean {
  assertP384(publicKey, 'public');
  const r = fieldToBe48(signature.r);
  const s = fieldToBe48(signature.s);
  if (r === undefined || s === undefined) return false;
  try {
    return verify(hash, message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.concat([r, s]));
  } catch {
    return false; // OpenSSL refusing a malformed signature is a failed verification, not an error
  }
}

/**
 * ECDH on P-384: the shared secret Z is the 48-byte big-endian X coordinate of d·Q — the one value the
 * firmware leaves in OpenSSL byte order (ASPFW ecdh.c reverses the CCP's output; sev-reference §11).
 */
export function ecdhP384(privateKey: KeyObject, peerPublicKey: KeyObject): Buffer {
  assertP384(privateKey, 'private');
  assertP384(peerPublicKey, 'public');
  return diffieHellman({ privateKey, publicKey: peerPublicKey });
}
