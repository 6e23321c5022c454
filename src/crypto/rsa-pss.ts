// RSASSA-PSS in AMD's encoding (sev-reference §3.1–3.2): modulus, exponent and signature are little-endian
// integers, MGF1 uses the message hash, and the salt is as long as the digest.
import { type KeyObject, constants, createPublicKey, sign, verify } from 'node:crypto';

/** The digest of an AMD RSA algorithm: SHA-256 (`RSA_SHA256`, 2048-bit AMD roots) or SHA-384. */
export type RsaPssHash = 'sha256' | 'sha384';

const SALT_BYTES: Record<RsaPssHash, number> = { sha256: 32, sha384: 48 };

/** Key material that is not a usable RSA key. */
export class RsaKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RsaKeyError';
  }
}

/** Little-endian integer → minimal big-endian bytes (at least one byte). */
function leToMinimalBe(le: Uint8Array): Buffer {
  let top = le.length;
  while (top > 1 && le[top - 1] === 0) top--;
  return Buffer.from(le.subarray(0, Math.max(top, 1))).reverse();
}

function isZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

/** An RSA public key from AMD's little-endian modulus and public exponent fields (any width). */
export function rsaPublicKeyFromLe(modulusLe: Uint8Array, exponentLe: Uint8Array): KeyObject {
  if (isZero(modulusLe)) throw new RsaKeyError('modulus is zero');
  if (isZero(exponentLe)) throw new RsaKeyError('public exponent is zero');
  try {
    return createPublicKey({
      key: {
        kty: 'RSA',
        n: leToMinimalBe(modulusLe).toString('base64url'),
        e: leToMinimalBe(exponentLe).toString('base64url'),
      },
      format: 'jwk',
    });
  } catch (err) {
    throw new RsaKeyError(`not an RSA key: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Bytes of the key's modulus (its signatures have exactly this length). */
export function rsaModulusBytes(key: KeyObject): number {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (key.asymmetricKeyType !== 'rsa' || bits === undefined) throw new RsaKeyError('expected an RSA key');
  return Math.ceil(bits / 8);
}

/** The key's modulus and exponent as little-endian fields of `modulusBytes` and `exponentBytes`. */
export function rsaPublicKeyToLe(
  key: KeyObject,
  modulusBytes: number,
  exponentBytes: number,
): { modulus: Buffer; exponent: Buffer } {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  if (jwk.kty !== 'RSA' || jwk.n === undefined || jwk.e === undefined)
    throw new RsaKeyError('expected an RSA key');
  const field = (b64: string, length: number, name: string): Buffer => {
    const be = Buffer.from(b64, 'base64url');
    if (be.length > length) throw new RsaKeyError(`${name} needs ${be.length} bytes, field has ${length}`);
    const out = Buffer.alloc(length);
    out.set(be.reverse());
    return out;
  };
  return {
    modulus: field(jwk.n, modulusBytes, 'modulus'),
    exponent: field(jwk.e, exponentBytes, 'exponent'),
  };
}

/** RSASSA-PSS signature of `message` (MGF1 with `hash`, salt = digest length), byte-reversed. */
export function rsaPssSignLe(privateKey: KeyObject, hash: RsaPssHash, message: Uint8Array): Buffer {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'rsa')
    throw new RsaKeyError('expected an RSA private key');
  return sign(hash, message, {
    key: privateKey,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: SALT_BYTES[hash],
  }).reverse();
}

/**
 * Whether `signatureLe` — a little-endian integer, as AMD stores it — is a valid RSASSA-PSS signature of
 * `message` (MGF1 with `hash`, salt = digest length). The field may be wider than the modulus (a 2048-bit
 * signature in a 512-byte slot); bytes above the modulus length must then be zero.
 */
export function rsaPssVerifyLe(
  publicKey: KeyObject,
  hash: RsaPssHash,
  message: Uint8Array,
  signatureLe: Uint8Array,
): boolean {
  if (publicKey.type !== 'public') throw new RsaKeyError('expected an RSA public key');
  const length = rsaModulusBytes(publicKey);
  if (signatureLe.length < length || !isZero(signatureLe.subarray(length))) return false;
  const signature = Buffer.from(signatureLe.subarray(0, length)).reverse();
  try {
    return verify(
      hash,
      message,
      { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: SALT_BYTES[hash] },
      signature,
    );
  } catch {
    return false; // OpenSSL refusing a malformed signature or key is a failed verification
  }
}
