// AMD's own key format for the ARK and ASK (sev-reference §3.2): a 0x40-byte header, then the RSA public
// exponent, modulus and signature, each sized by the header — 832 bytes for Naples, 1600 from Rome on.
import { AbiDecodeError, StructLayout } from './layout.js';
import { SevCertAlgo, SevCertUsage, sevUsageName } from './sev-cert.js';

// amd_cert_fixed_t: ASPFW amd_cert.h / sev-tool amdcert.h AMD_CERT (KEY_ID and CERTIFYING_ID as 16 raw bytes)
export const AmdRootCertHeaderLayout = new StructLayout('AMD root-key certificate', 0x40, {
  version: { offset: 0x00, type: 'u32' },
  keyId: { offset: 0x04, type: 'bytes', length: 16 },
  certifyingId: { offset: 0x14, type: 'bytes', length: 16 },
  keyUsage: { offset: 0x24, type: 'u32' },
  reserved: { offset: 0x28, type: 'bytes', length: 16 },
  pubexpBits: { offset: 0x38, type: 'u32' },
  modulusBits: { offset: 0x3c, type: 'u32' },
});
/** Bytes of the fixed header; the exponent starts here. */
export const AMD_ROOT_CERT_HEADER_SIZE = 0x40;

/** The two key sizes the firmware accepts for PUBEXP_SIZE and MODULUS_SIZE (ASPFW amd_cert.c key_size_is_valid). */
export const AMD_ROOT_KEY_BITS = [2048, 4096] as const;

/** A decoded ARK or ASK. `encodeAmdRootCert(decodeAmdRootCert(b))` gives back `b` byte for byte. */
export interface AmdRootCert {
  version: number;
  keyId: Buffer;
  /** The KEY_ID of the signer: the ARK's for an ASK, its own for the ARK. */
  certifyingId: Buffer;
  keyUsage: number;
  /** Bytes 0x28–0x37, kept verbatim. */
  reserved: Buffer;
  pubexpBits: number;
  modulusBits: number;
  /** Little-endian, PUBEXP_SIZE/8 bytes. */
  pubexp: Buffer;
  /** Little-endian, MODULUS_SIZE/8 bytes. */
  modulus: Buffer;
  /**
   * Byte-reversed RSA-PSS signature, MODULUS_SIZE/8 bytes; undefined for the unsigned form (the header and
   * key only), as AMD first published the Naples ARK.
   */
  signature: Buffer | undefined;
}

/** Length of the signed part: header, exponent and modulus. */
export function amdRootCertSignedLength(cert: Pick<AmdRootCert, 'pubexpBits' | 'modulusBits'>): number {
  return AMD_ROOT_CERT_HEADER_SIZE + cert.pubexpBits / 8 + cert.modulusBits / 8;
}

/**
 * The SEV algorithm of an AMD root key, as a CEK's signature slot names it: RSA_SHA256 for 2048-bit keys
 * (the real Naples CEK's ASK slot is 0x13/0x1), RSA_SHA384 for 4096-bit ones (Rome's is 0x13/0x101).
 */
export function amdRootCertAlgo(cert: Pick<AmdRootCert, 'modulusBits'>): SevCertAlgo {
  return cert.modulusBits === 2048 ? SevCertAlgo.RSA_SHA256 : SevCertAlgo.RSA_SHA384;
}

const FORMAT = AmdRootCertHeaderLayout.name;

function fail(field: string, offset: number, reason: string): never {
  throw new AbiDecodeError(FORMAT, field, offset, reason);
}

function isKeyBits(bits: number): boolean {
  return (AMD_ROOT_KEY_BITS as readonly number[]).includes(bits);
}

/**
 * Decodes and validates an ARK or ASK: VERSION 1, usage ARK (0x0) or ASK (0x13), 2048- or 4096-bit sizes,
 * and a length of exactly header + exponent + modulus (unsigned) or that plus the signature. Throws
 * AbiDecodeError naming the field and offset of the first problem.
 */
export function decodeAmdRootCert(bytes: Uint8Array): AmdRootCert {
  const h = AmdRootCertHeaderLayout.decode(bytes);
  if (h.version !== 1) fail('version', 0x00, `version ${h.version}, expected 1`);
  if (h.keyUsage !== SevCertUsage.ARK && h.keyUsage !== SevCertUsage.ASK)
    fail('keyUsage', 0x24, `${sevUsageName(h.keyUsage)} is neither ARK (0x0) nor ASK (0x13)`);
  if (!isKeyBits(h.pubexpBits))
    fail('pubexpBits', 0x38, `exponent size ${h.pubexpBits} bits is not 2048 or 4096`);
  if (!isKeyBits(h.modulusBits))
    fail('modulusBits', 0x3c, `modulus size ${h.modulusBits} bits is not 2048 or 4096`);
  const expAt = AMD_ROOT_CERT_HEADER_SIZE;
  const modAt = expAt + h.pubexpBits / 8;
  const sigAt = modAt + h.modulusBits / 8;
  const end = sigAt + h.modulusBits / 8;
  const cut = (field: string, at: number, size: number): never =>
    fail(field, at, `buffer ends at ${bytes.length} bytes, field needs ${at + size}`);
  if (bytes.length < modAt) cut('pubexp', expAt, h.pubexpBits / 8);
  if (bytes.length < sigAt) cut('modulus', modAt, h.modulusBits / 8);
  if (bytes.length !== sigAt && bytes.length < end) cut('signature', sigAt, h.modulusBits / 8);
  if (bytes.length > end)
    fail('(end)', end, `${bytes.length} bytes, this key's certificate is exactly ${end}`);
  const slice = (from: number, to: number): Buffer => Buffer.from(bytes.subarray(from, to));
  return {
    version: h.version,
    keyId: h.keyId,
    certifyingId: h.certifyingId,
    keyUsage: h.keyUsage,
    reserved: h.reserved,
    pubexpBits: h.pubexpBits,
    modulusBits: h.modulusBits,
    pubexp: slice(expAt, modAt),
    modulus: slice(modAt, sigAt),
    signature: bytes.length === end ? slice(sigAt, end) : undefined,
  };
}

/** The certificate's bytes; without a signature, the unsigned form (header, exponent, modulus). */
export function encodeAmdRootCert(cert: AmdRootCert): Buffer {
  const check = (field: string, at: number, buf: Buffer, bits: number): void => {
    if (buf.length !== bits / 8)
      throw new AbiDecodeError(FORMAT, field, at, `needs ${bits / 8} bytes, got ${buf.length}`);
  };
  const modAt = AMD_ROOT_CERT_HEADER_SIZE + cert.pubexpBits / 8;
  check('pubexp', AMD_ROOT_CERT_HEADER_SIZE, cert.pubexp, cert.pubexpBits);
  check('modulus', modAt, cert.modulus, cert.modulusBits);
  if (cert.signature !== undefined)
    check('signature', modAt + cert.modulusBits / 8, cert.signature, cert.modulusBits);
  const header = AmdRootCertHeaderLayout.encode({
    version: cert.version,
    keyId: cert.keyId,
    certifyingId: cert.certifyingId,
    keyUsage: cert.keyUsage,
    reserved: cert.reserved,
    pubexpBits: cert.pubexpBits,
    modulusBits: cert.modulusBits,
  });
  return Buffer.concat([
    header,
    cert.pubexp,
    cert.modulus,
    ...(cert.signature === undefined ? [] : [cert.signature]),
  ]);
}
