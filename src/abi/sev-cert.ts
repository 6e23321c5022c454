// The legacy SEV certificate, 0x824 bytes (sev-reference §3.1): CEK, OCA, PEK, PDH and the owner's GODH.
import { AMD_EC_FIELD_BYTES, P384_BYTES, isP384Point } from '../crypto/ec-p384.js';
import { AbiDecodeError, StructLayout } from './layout.js';

/** PUBKEY_USAGE / SIGn_USAGE values (ASPFW sev_cert.h enum sev_cert_usage). */
export const SevCertUsage = {
  ARK: 0x0000,
  ASK: 0x0013,
  INVALID: 0x1000,
  OCA: 0x1001,
  PEK: 0x1002,
  PDH: 0x1003,
  CEK: 0x1004,
} as const;
export type SevCertUsage = (typeof SevCertUsage)[keyof typeof SevCertUsage];

/** PUBKEY_ALGO / SIGn_ALGO values (ASPFW sev_cert.h enum sev_cert_algo). */
export const SevCertAlgo = {
  INVALID: 0x000,
  RSA_SHA256: 0x001,
  ECDSA_SHA256: 0x002,
  ECDH_SHA256: 0x003,
  RSA_SHA384: 0x101,
  ECDSA_SHA384: 0x102,
  ECDH_SHA384: 0x103,
} as const;
export type SevCertAlgo = (typeof SevCertAlgo)[keyof typeof SevCertAlgo];

/**
 * The only curve the firmware accepts (ASPFW ecc.c ecc_pubkey_is_valid requires SECP384R1 = 2). Curve 1
 * is P-256 to sev-tool but secp256k1 to the firmware's ecc.h; neither is accepted in a certificate.
 */
export const SEV_CERT_CURVE_P384 = 2;

/** Size of a SEV certificate. */
export const SEV_CERT_SIZE = 0x824;
/** Signatures cover bytes [0, 0x414): VERSION through PUBKEY (ASPFW sev_cert_body_t). */
export const SEV_CERT_SIGNED_LENGTH = 0x414;
/** Offsets of the two signature slots (their USAGE field). */
export const SEV_CERT_SIG_OFFSETS = [0x414, 0x61c] as const;
/** Bytes of one signature slot: USAGE, ALGO and the 0x200-byte signature union. */
export const SEV_CERT_SIG_SLOT_SIZE = 0x208;

// sev_cert_t: ASPFW sev_cert.h (sev_cert_body_t, then sig1 and sig2 as sev_cert_sig_t); sev-tool sevapi.h sev_cert
export const SevCertLayout = new StructLayout('SEV certificate', SEV_CERT_SIZE, {
  version: { offset: 0x000, type: 'u32' },
  apiMajor: { offset: 0x004, type: 'u8' },
  apiMinor: { offset: 0x005, type: 'u8' },
  reserved: { offset: 0x006, type: 'bytes', length: 2 },
  pubkeyUsage: { offset: 0x008, type: 'u32' },
  pubkeyAlgo: { offset: 0x00c, type: 'u32' },
  pubkey: { offset: 0x010, type: 'bytes', length: 0x404 },
  sig1Usage: { offset: 0x414, type: 'u32' },
  sig1Algo: { offset: 0x418, type: 'u32' },
  sig1: { offset: 0x41c, type: 'bytes', length: 0x200 },
  sig2Usage: { offset: 0x61c, type: 'u32' },
  sig2Algo: { offset: 0x620, type: 'u32' },
  sig2: { offset: 0x624, type: 'bytes', length: 0x200 },
});
const PUBKEY_AT = 0x010;

// ecc_pubkey_t inside PUBKEY: ASPFW ecc.h (curve, Q.x, Q.y as 72-byte LE scalars); the rest is RMBZ in sev-tool
export const SevEcPublicKeyLayout = new StructLayout('SEV certificate EC public key', 0x404, {
  curve: { offset: 0x00, type: 'u32' },
  qx: { offset: 0x04, type: 'bytes', length: AMD_EC_FIELD_BYTES },
  qy: { offset: 0x4c, type: 'bytes', length: AMD_EC_FIELD_BYTES },
  reserved: { offset: 0x94, type: 'bytes', length: 0x370 },
});

// rsa_pubkey_t inside PUBKEY: ASPFW rsa.h (modulus_size_bits, pub_exp[512], modulus[512], little-endian)
export const SevRsaPublicKeyLayout = new StructLayout('SEV certificate RSA public key', 0x404, {
  modulusBits: { offset: 0x000, type: 'u32' },
  pubexp: { offset: 0x004, type: 'bytes', length: 0x200 },
  modulus: { offset: 0x204, type: 'bytes', length: 0x200 },
});

// ecdsa_sig_t inside SIGn: ASPFW ecdsa.h (r, s as 72-byte LE scalars), zero to the end of the union
export const SevEcdsaSignatureLayout = new StructLayout('SEV certificate ECDSA signature', 0x200, {
  r: { offset: 0x00, type: 'bytes', length: AMD_EC_FIELD_BYTES },
  s: { offset: 0x48, type: 'bytes', length: AMD_EC_FIELD_BYTES },
  reserved: { offset: 0x90, type: 'bytes', length: 0x170 },
});

/** An EC public key (ECDSA or ECDH) on P-384. */
export interface SevEcPublicKey {
  type: 'ec';
  usage: SevCertUsage;
  algo: SevCertAlgo;
  curve: number;
  /** 72-byte little-endian coordinates; only the low 48 bytes are non-zero. */
  qx: Buffer;
  qy: Buffer;
  /** 0x370 bytes after QY; zero in every real certificate, kept verbatim since signatures cover them. */
  reserved: Buffer;
}

/** An RSA public key (no real SEV certificate carries one, but the format allows it). */
export interface SevRsaPublicKey {
  type: 'rsa';
  usage: SevCertUsage;
  algo: SevCertAlgo;
  modulusBits: number;
  /** 512-byte little-endian fields. */
  pubexp: Buffer;
  modulus: Buffer;
}

export type SevPublicKey = SevEcPublicKey | SevRsaPublicKey;

/** A signature slot: empty (usage INVALID, algo INVALID, zeros), ECDSA, or RSA-PSS. */
export type SevSignature =
  | { type: 'empty' }
  | { type: 'ecdsa'; usage: SevCertUsage; algo: SevCertAlgo; r: Buffer; s: Buffer }
  | { type: 'rsa'; usage: SevCertUsage; algo: SevCertAlgo; signature: Buffer };

/** A decoded SEV certificate. `encodeSevCert(decodeSevCert(b))` gives back `b` byte for byte. */
export interface SevCert {
  version: number;
  apiMajor: number;
  apiMinor: number;
  /** Bytes 0x006–0x007, kept verbatim. */
  reserved: Buffer;
  pubkey: SevPublicKey;
  /** SIG1 and SIG2. The firmware fills the first empty slot, so their order is not fixed. */
  signatures: [SevSignature, SevSignature];
}

const USAGE_NAMES = new Map<number, string>(Object.entries(SevCertUsage).map(([k, v]) => [v, k]));
const ALGO_NAMES = new Map<number, string>(Object.entries(SevCertAlgo).map(([k, v]) => [v, k]));

/** "PEK (0x1002)", or the hex value for an unknown usage. */
export function sevUsageName(usage: number): string {
  const name = USAGE_NAMES.get(usage);
  return `${name ?? 'unknown usage'} (0x${usage.toString(16)})`;
}

/** "ECDSA_SHA256 (0x2)", or the hex value for an unknown algorithm. */
export function sevAlgoName(algo: number): string {
  const name = ALGO_NAMES.get(algo);
  return `${name ?? 'unknown algorithm'} (0x${algo.toString(16)})`;
}

/** Whether `usage` is one the firmware accepts for a key (ASPFW sev_cert.c usage_is_valid). */
export function isSevKeyUsage(usage: number): usage is SevCertUsage {
  return usage !== SevCertUsage.INVALID && USAGE_NAMES.has(usage);
}

/** Whether `algo` is a valid key algorithm (ASPFW sev_cert.c pubkey_is_valid). */
export function isSevKeyAlgo(algo: number): algo is SevCertAlgo {
  return algo !== SevCertAlgo.INVALID && ALGO_NAMES.has(algo);
}

/** The kind of key an algorithm names. */
export function sevAlgoKind(algo: SevCertAlgo): 'rsa' | 'ecdsa' | 'ecdh' | 'invalid' {
  switch (algo) {
    case SevCertAlgo.RSA_SHA256:
    case SevCertAlgo.RSA_SHA384:
      return 'rsa';
    case SevCertAlgo.ECDSA_SHA256:
    case SevCertAlgo.ECDSA_SHA384:
      return 'ecdsa';
    case SevCertAlgo.ECDH_SHA256:
    case SevCertAlgo.ECDH_SHA384:
      return 'ecdh';
    default:
      return 'invalid';
  }
}

/** The digest an algorithm signs with: the suffix, not the curve or key size, decides (sev-reference §11.3). */
export function sevAlgoHash(algo: SevCertAlgo): 'sha256' | 'sha384' {
  return algo >= 0x100 ? 'sha384' : 'sha256';
}

/** The bytes every signature of a SEV certificate covers. */
export function sevCertSignedBytes(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.subarray(0, SEV_CERT_SIGNED_LENGTH));
}

const FORMAT = SevCertLayout.name;

function fail(field: string, offset: number, reason: string): never {
  throw new AbiDecodeError(FORMAT, field, offset, reason);
}

/** Index of the first non-zero byte, or -1. */
function firstNonZero(bytes: Uint8Array): number {
  return bytes.findIndex((b) => b !== 0);
}

function decodePublicKey(raw: Buffer, usage: number, algo: number): SevPublicKey {
  if (!isSevKeyUsage(usage))
    fail('pubkeyUsage', 0x008, `${sevUsageName(usage)} is not a key usage (ARK, ASK, OCA, PEK, PDH, CEK)`);
  if (!isSevKeyAlgo(algo)) fail('pubkeyAlgo', 0x00c, `${sevAlgoName(algo)} is not a key algorithm`);
  if (sevAlgoKind(algo) === 'rsa') {
    const k = SevRsaPublicKeyLayout.decode(raw);
    // ASPFW rsa.c rsa_pubkey_is_valid accepts any size up to 4096 bits; the verifier uses size/8 bytes.
    if (k.modulusBits === 0 || k.modulusBits > 4096 || k.modulusBits % 8 !== 0)
      fail(
        'pubkey.modulusBits',
        PUBKEY_AT,
        `modulus size ${k.modulusBits} bits is not a multiple of 8 in 8..4096`,
      );
    const bytes = k.modulusBits / 8;
    const expHigh = firstNonZero(k.pubexp.subarray(bytes));
    if (expHigh >= 0)
      fail(
        'pubkey.pubexp',
        PUBKEY_AT + 0x004 + bytes + expHigh,
        `exponent is wider than ${k.modulusBits} bits`,
      );
    const modHigh = firstNonZero(k.modulus.subarray(bytes));
    if (modHigh >= 0)
      fail(
        'pubkey.modulus',
        PUBKEY_AT + 0x204 + bytes + modHigh,
        `modulus is wider than ${k.modulusBits} bits`,
      );
    if (firstNonZero(k.modulus) < 0) fail('pubkey.modulus', PUBKEY_AT + 0x204, 'modulus is zero');
    if (firstNonZero(k.pubexp) < 0) fail('pubkey.pubexp', PUBKEY_AT + 0x004, 'exponent is zero');
    return { type: 'rsa', usage, algo, modulusBits: k.modulusBits, pubexp: k.pubexp, modulus: k.modulus };
  }
  const k = SevEcPublicKeyLayout.decode(raw);
  if (k.curve !== SEV_CERT_CURVE_P384)
    fail('pubkey.curve', PUBKEY_AT, `curve ${k.curve} is not P-384 (2), the only curve the firmware accepts`);
  for (const [name, field, at] of [
    ['pubkey.qx', k.qx, 0x04],
    ['pubkey.qy', k.qy, 0x4c],
  ] as const) {
    const high = firstNonZero(field.subarray(P384_BYTES));
    if (high >= 0)
      fail(
        name,
        PUBKEY_AT + at + P384_BYTES + high,
        'coordinate has bytes set above the low 48 (value ≥ 2^384)',
      );
  }
  if (!isP384Point(k.qx, k.qy))
    fail('pubkey.qx', PUBKEY_AT + 0x04, '(QX, QY) is not a point on the P-384 curve');
  return { type: 'ec', usage, algo, curve: k.curve, qx: k.qx, qy: k.qy, reserved: k.reserved };
}

function decodeSignature(slot: 1 | 2, usage: number, algo: number, raw: Buffer): SevSignature {
  const at = slot === 1 ? SEV_CERT_SIG_OFFSETS[0] : SEV_CERT_SIG_OFFSETS[1];
  const name = `sig${slot}`;
  const usageInvalid = usage === SevCertUsage.INVALID;
  const algoInvalid = algo === SevCertAlgo.INVALID;
  if (usageInvalid && algoInvalid) {
    // An unused slot is written as zeros (ASPFW sev_cert_init); it is not signed, so anything else is junk.
    const junk = firstNonZero(raw);
    if (junk >= 0) fail(name, at + 8 + junk, 'empty signature slot holds non-zero bytes');
    return { type: 'empty' };
  }
  // Exactly one of the two INVALID: the firmware's definition of a malformed slot (sev_cert_validate_sig).
  if (usageInvalid)
    fail(`${name}Algo`, at + 4, `slot usage is INVALID but algorithm is ${sevAlgoName(algo)}`);
  if (algoInvalid) fail(`${name}Usage`, at, `slot algorithm is INVALID but usage is ${sevUsageName(usage)}`);
  if (!isSevKeyUsage(usage)) fail(`${name}Usage`, at, `${sevUsageName(usage)} is not a key usage`);
  if (!isSevKeyAlgo(algo)) fail(`${name}Algo`, at + 4, `${sevAlgoName(algo)} is not a key algorithm`);
  const kind = sevAlgoKind(algo);
  if (kind === 'ecdh')
    fail(`${name}Algo`, at + 4, `${sevAlgoName(algo)} is a key-agreement algorithm, not a signature`);
  if (kind === 'rsa') return { type: 'rsa', usage, algo, signature: raw };
  const sig = SevEcdsaSignatureLayout.decode(raw);
  for (const [part, field, rel] of [
    ['r', sig.r, 0x00],
    ['s', sig.s, 0x48],
  ] as const) {
    const high = firstNonZero(field.subarray(P384_BYTES));
    if (high >= 0)
      fail(`${name}.${part}`, at + 8 + rel + P384_BYTES + high, `${part} has bytes set above the low 48`);
  }
  const junk = firstNonZero(sig.reserved);
  if (junk >= 0) fail(`${name}.reserved`, at + 8 + 0x90 + junk, 'bytes after S must be zero');
  return { type: 'ecdsa', usage, algo, r: sig.r, s: sig.s };
}

/**
 * Decodes and validates a SEV certificate: exactly 0x824 bytes, VERSION 1, a key usage and algorithm the
 * firmware accepts, a P-384 point on the curve (or an RSA key of at most 4096 bits), and well-formed
 * signature slots. Throws AbiDecodeError naming the field and offset of the first problem.
 */
export function decodeSevCert(bytes: Uint8Array): SevCert {
  if (bytes.length > SEV_CERT_SIZE)
    fail('(end)', SEV_CERT_SIZE, `${bytes.length} bytes, a SEV certificate is exactly ${SEV_CERT_SIZE}`);
  const c = SevCertLayout.decode(bytes); // names the first field a short buffer cuts
  if (c.version !== 1) fail('version', 0x000, `version ${c.version}, expected 1`);
  const pubkey = decodePublicKey(c.pubkey, c.pubkeyUsage, c.pubkeyAlgo);
  return {
    version: c.version,
    apiMajor: c.apiMajor,
    apiMinor: c.apiMinor,
    reserved: c.reserved,
    pubkey,
    signatures: [
      decodeSignature(1, c.sig1Usage, c.sig1Algo, c.sig1),
      decodeSignature(2, c.sig2Usage, c.sig2Algo, c.sig2),
    ],
  };
}

function encodeSignature(sig: SevSignature): { usage: number; algo: number; raw: Buffer } {
  switch (sig.type) {
    case 'empty':
      return { usage: SevCertUsage.INVALID, algo: SevCertAlgo.INVALID, raw: Buffer.alloc(0x200) };
    case 'rsa':
      return { usage: sig.usage, algo: sig.algo, raw: sig.signature };
    case 'ecdsa':
      return {
        usage: sig.usage,
        algo: sig.algo,
        raw: SevEcdsaSignatureLayout.encode({ r: sig.r, s: sig.s }),
      };
  }
}

/** The 0x824 bytes of a certificate (no validation: what you give is what is written). */
export function encodeSevCert(cert: SevCert): Buffer {
  const k = cert.pubkey;
  const pubkey =
    k.type === 'ec'
      ? SevEcPublicKeyLayout.encode({ curve: k.curve, qx: k.qx, qy: k.qy, reserved: k.reserved })
      : SevRsaPublicKeyLayout.encode({ modulusBits: k.modulusBits, pubexp: k.pubexp, modulus: k.modulus });
  const [s1, s2] = cert.signatures.map(encodeSignature) as [
    ReturnType<typeof encodeSignature>,
    ReturnType<typeof encodeSignature>,
  ];
  return SevCertLayout.encode({
    version: cert.version,
    apiMajor: cert.apiMajor,
    apiMinor: cert.apiMinor,
    reserved: cert.reserved,
    pubkeyUsage: k.usage,
    pubkeyAlgo: k.algo,
    pubkey,
    sig1Usage: s1.usage,
    sig1Algo: s1.algo,
    sig1: s1.raw,
    sig2Usage: s2.usage,
    sig2Algo: s2.algo,
    sig2: s2.raw,
  });
}
