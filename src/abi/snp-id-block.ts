// The SEV-SNP ID block and its authentication page, given to SNP_LAUNCH_FINISH (sev-reference §7.6; ASPFW
// sev_mcmd.h snp_mcmd_launch_finish_id_block_t / _id_auth_page_t, ecc.h ecc_pubkey_t, ecdsa.h ecdsa_sig_t).
// The owner signs an ID block with signIdBlock; the PSP checks it with verifyIdAuth, in the firmware's
// order (ASPFW snp_mcmd_launch_finish), and keeps the key digests the report carries.
import { createHash, type KeyObject } from 'node:crypto';
import {
  type AmdEcPoint,
  type AmdEcdsaSignature,
  AMD_EC_FIELD_BYTES,
  ecdsaP384Sign,
  ecdsaP384Verify,
  p384PublicKeyFromAmd,
  p384PublicKeyToAmd,
} from '../crypto/ec-p384.js';
import { AbiDecodeError, StructLayout } from './layout.js';
import { SevStatus } from './sev-commands.js';

export const SNP_ID_BLOCK_SIZE = 0x60;
export const SNP_ID_AUTH_SIZE = 0x1000;
/** An AMD-format ECDSA public key (CURVE ‖ QX ‖ QY ‖ zero padding). */
export const SNP_ECDSA_PUBKEY_SIZE = 0x404;
/** An AMD-format ECDSA signature (R ‖ S ‖ zero padding). */
export const SNP_ECDSA_SIG_SIZE = 0x200;
/** The ID block format version the owner writes (ASPFW SNP_LAUNCH_FINISH_ID_BLOCK_MAX_VERSION). */
export const SNP_ID_BLOCK_VERSION = 1;
/** ID_KEY_ALGO / AUTH_KEY_ALGO 1: ECDSA P-384 with SHA-384 (ASPFW SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384). */
export const SNP_ID_ALGO_ECDSA_P384_SHA384 = 1;
/** CURVE 2: P-384 (ASPFW ecc.h ECC_CURVE_NAME_SECP384R1). */
export const SNP_ECC_CURVE_P384 = 2;

// ASPFW sev_mcmd.h snp_mcmd_launch_finish_id_block_t
export const SnpIdBlockLayout = new StructLayout('SNP ID block', SNP_ID_BLOCK_SIZE, {
  /** The launch digest the guest must have. */
  ld: { offset: 0x00, type: 'bytes', length: 48 },
  familyId: { offset: 0x30, type: 'bytes', length: 16 },
  imageId: { offset: 0x40, type: 'bytes', length: 16 },
  version: { offset: 0x50, type: 'u32' },
  guestSvn: { offset: 0x54, type: 'u32' },
  policy: { offset: 0x58, type: 'u64' },
});

// ASPFW sev_mcmd.h snp_mcmd_launch_finish_id_auth_page_t
export const SnpIdAuthLayout = new StructLayout('SNP ID authentication page', SNP_ID_AUTH_SIZE, {
  idKeyAlgo: { offset: 0x000, type: 'u32' },
  authKeyAlgo: { offset: 0x004, type: 'u32' },
  reserved008: { offset: 0x008, type: 'bytes', length: 0x38 },
  idBlockSig: { offset: 0x040, type: 'bytes', length: SNP_ECDSA_SIG_SIZE },
  idKey: { offset: 0x240, type: 'bytes', length: SNP_ECDSA_PUBKEY_SIZE },
  reserved644: { offset: 0x644, type: 'bytes', length: 0x3c },
  idKeySig: { offset: 0x680, type: 'bytes', length: SNP_ECDSA_SIG_SIZE },
  authorKey: { offset: 0x880, type: 'bytes', length: SNP_ECDSA_PUBKEY_SIZE },
  reservedC84: { offset: 0xc84, type: 'bytes', length: SNP_ID_AUTH_SIZE - 0xc84 },
});

// ASPFW ecc.h ecc_pubkey_t (u32 curve, then QX and QY as 72-byte little-endian CCP operands)
export const SnpEcdsaPublicKeyLayout = new StructLayout('SNP ECDSA public key', SNP_ECDSA_PUBKEY_SIZE, {
  curve: { offset: 0x000, type: 'u32' },
  qx: { offset: 0x004, type: 'bytes', length: AMD_EC_FIELD_BYTES },
  qy: { offset: 0x04c, type: 'bytes', length: AMD_EC_FIELD_BYTES },
  reserved094: { offset: 0x094, type: 'bytes', length: SNP_ECDSA_PUBKEY_SIZE - 0x094 },
});

// ASPFW ecdsa.h ecdsa_sig_t (R and S as 72-byte little-endian operands) in a 0x200-byte slot
export const SnpEcdsaSignatureLayout = new StructLayout('SNP ECDSA signature', SNP_ECDSA_SIG_SIZE, {
  r: { offset: 0x000, type: 'bytes', length: AMD_EC_FIELD_BYTES },
  s: { offset: 0x048, type: 'bytes', length: AMD_EC_FIELD_BYTES },
  reserved090: { offset: 0x090, type: 'bytes', length: SNP_ECDSA_SIG_SIZE - 0x090 },
});

/** A decoded ID block. */
export interface SnpIdBlock {
  /** 48-byte expected launch digest. */
  ld: Buffer;
  familyId: Buffer;
  imageId: Buffer;
  version: number;
  guestSvn: number;
  policy: bigint;
}

/** A decoded ID authentication page; keys and signatures stay in their AMD encodings. */
export interface SnpIdAuth {
  idKeyAlgo: number;
  authKeyAlgo: number;
  /** 0x200 bytes: signature of the ID block by the ID key. */
  idBlockSig: Buffer;
  /** 0x404 bytes: the ID key. */
  idKey: Buffer;
  /** 0x200 bytes: signature of the 0x404-byte ID key by the author key. */
  idKeySig: Buffer;
  /** 0x404 bytes: the author key. */
  authorKey: Buffer;
}

function exact(name: string, buf: Uint8Array, size: number): void {
  if (buf.length !== size)
    throw new AbiDecodeError(
      name,
      name === SnpIdAuthLayout.name ? 'page' : 'buffer',
      0,
      `expected ${size} bytes, got ${buf.length}`,
    );
}

/** Encodes an ID block (0x60 bytes); throws AbiDecodeError for wrongly sized byte fields. */
export function encodeSnpIdBlock(b: SnpIdBlock): Buffer {
  return SnpIdBlockLayout.encode(b);
}

/**
 * Decodes an ID block. Only the size is checked: the firmware compares LD and POLICY with the guest's and
 * never looks at VERSION (ASPFW defines SNP_LAUNCH_FINISH_ID_BLOCK_MAX_VERSION but does not use it).
 */
export function decodeSnpIdBlock(buf: Uint8Array): SnpIdBlock {
  exact(SnpIdBlockLayout.name, buf, SNP_ID_BLOCK_SIZE);
  return SnpIdBlockLayout.decode(buf);
}

/** Decodes an ID authentication page (size checked only; the firmware ignores its reserved bytes). */
export function decodeSnpIdAuth(buf: Uint8Array): SnpIdAuth {
  exact(SnpIdAuthLayout.name, buf, SNP_ID_AUTH_SIZE);
  const f = SnpIdAuthLayout.decode(buf);
  return {
    idKeyAlgo: f.idKeyAlgo,
    authKeyAlgo: f.authKeyAlgo,
    idBlockSig: f.idBlockSig,
    idKey: f.idKey,
    idKeySig: f.idKeySig,
    authorKey: f.authorKey,
  };
}

/** Encodes an ID authentication page; reserved bytes are zero. */
export function encodeSnpIdAuth(a: SnpIdAuth): Buffer {
  return SnpIdAuthLayout.encode(a);
}

/** A P-384 public key (or the public half of a private key) in AMD's 0x404-byte form, CURVE = 2. */
export function encodeSnpEcdsaPublicKey(key: KeyObject): Buffer {
  const { qx, qy } = p384PublicKeyToAmd(key);
  return SnpEcdsaPublicKeyLayout.encode({ curve: SNP_ECC_CURVE_P384, qx, qy });
}

/** The CURVE and point of a 0x404-byte AMD public key, unvalidated; AbiDecodeError only for the size. */
export function decodeSnpEcdsaPublicKey(buf: Uint8Array): { curve: number } & AmdEcPoint {
  exact(SnpEcdsaPublicKeyLayout.name, buf, SNP_ECDSA_PUBKEY_SIZE);
  const { curve, qx, qy } = SnpEcdsaPublicKeyLayout.decode(buf);
  return { curve, qx, qy };
}

/**
 * The usable P-384 key in a 0x404-byte AMD public key. Throws AbiDecodeError if CURVE is not P-384 or the
 * point is not on the curve (the checks of ASPFW's ecc_pubkey_is_valid).
 */
export function snpEcdsaPublicKeyToKeyObject(buf: Uint8Array): KeyObject {
  const { curve, qx, qy } = decodeSnpEcdsaPublicKey(buf);
  const name = SnpEcdsaPublicKeyLayout.name;
  if (curve !== SNP_ECC_CURVE_P384)
    throw new AbiDecodeError(name, 'curve', 0, `curve ${curve} is not P-384 (2)`);
  try {
    return p384PublicKeyFromAmd({ qx, qy });
  } catch (err) {
    throw new AbiDecodeError(name, 'qx', 0x004, err instanceof Error ? err.message : 'not a P-384 point');
  }
}

/** An ECDSA signature in AMD's 0x200-byte form. */
export function encodeSnpEcdsaSignature(sig: AmdEcdsaSignature): Buffer {
  return SnpEcdsaSignatureLayout.encode({ r: sig.r, s: sig.s });
}

/** R and S of a 0x200-byte AMD signature; AbiDecodeError only for the size. */
export function decodeSnpEcdsaSignature(buf: Uint8Array): AmdEcdsaSignature {
  exact(SnpEcdsaSignatureLayout.name, buf, SNP_ECDSA_SIG_SIZE);
  const { r, s } = SnpEcdsaSignatureLayout.decode(buf);
  return { r, s };
}

/**
 * The ID authentication page for an ID block, as the guest owner makes it: ID_BLOCK_SIG = ECDSA
 * P-384/SHA-384 by `idKey` over the 0x60-byte ID block, ID_KEY = its public key; with `authorKey`
 * also ID_KEY_SIG over the 0x404-byte ID_KEY and AUTHOR_KEY (AUTH_KEY_ALGO is 1 only then). Keys are
 * P-384 private keys.
 */
export function signIdBlock(
  idBlock: SnpIdBlock | Uint8Array,
  idKey: KeyObject,
  authorKey?: KeyObject,
): Buffer {
  const block = idBlock instanceof Uint8Array ? Buffer.from(idBlock) : encodeSnpIdBlock(idBlock);
  exact(SnpIdBlockLayout.name, block, SNP_ID_BLOCK_SIZE);
  const idKeyBytes = encodeSnpEcdsaPublicKey(idKey);
  const auth: SnpIdAuth = {
    idKeyAlgo: SNP_ID_ALGO_ECDSA_P384_SHA384,
    authKeyAlgo: 0,
    idBlockSig: encodeSnpEcdsaSignature(ecdsaP384Sign(idKey, 'sha384', block)),
    idKey: idKeyBytes,
    idKeySig: Buffer.alloc(SNP_ECDSA_SIG_SIZE),
    authorKey: Buffer.alloc(SNP_ECDSA_PUBKEY_SIZE),
  };
  if (authorKey !== undefined) {
    auth.authKeyAlgo = SNP_ID_ALGO_ECDSA_P384_SHA384;
    auth.idKeySig = encodeSnpEcdsaSignature(ecdsaP384Sign(authorKey, 'sha384', idKeyBytes));
    auth.authorKey = encodeSnpEcdsaPublicKey(authorKey);
  }
  return encodeSnpIdAuth(auth);
}

/** The statuses SNP_LAUNCH_FINISH can answer from its ID block checks. */
export type SnpIdAuthStatus =
  'SUCCESS' | 'BAD_MEASUREMENT' | 'POLICY_FAILURE' | 'INVALID_PARAM' | 'BAD_SIGNATURE';

/** The outcome of verifyIdAuth; `code` is the firmware status (SevStatus[status]). */
export type SnpIdAuthVerification =
  | {
      ok: true;
      status: 'SUCCESS';
      code: number;
      idBlock: SnpIdBlock;
      /** SHA-384 of the 0x404-byte ID_KEY. */
      idKeyDigest: Buffer;
      /** SHA-384 of the 0x404-byte AUTHOR_KEY, or 48 zero bytes without AUTH_KEY_EN. */
      authorKeyDigest: Buffer;
    }
  | { ok: false; status: Exclude<SnpIdAuthStatus, 'SUCCESS'>; code: number; reason: string };

/** What SNP_LAUNCH_FINISH knows beyond the two pages. */
export interface SnpIdAuthOptions {
  /** SNP_LAUNCH_FINISH's AUTH_KEY_EN: ID_AUTH carries an author key that signed the ID key. */
  authorKeyEnabled: boolean;
  /** GCTX.LD; when given, ID_BLOCK.LD must equal it (else BAD_MEASUREMENT). */
  expectedLaunchDigest?: Uint8Array;
  /** GCTX.POLICY; when given, ID_BLOCK.POLICY must equal it (else POLICY_FAILURE). */
  expectedPolicy?: bigint;
}

const sha384 = (b: Uint8Array): Buffer => createHash('sha384').update(b).digest();

function verifyWith(keyBytes: Buffer, sigBytes: Buffer, message: Uint8Array): string | undefined {
  let key: KeyObject;
  try {
    key = snpEcdsaPublicKeyToKeyObject(keyBytes);
  } catch (err) {
    return err instanceof Error ? err.message : 'invalid key';
  }
  return ecdsaP384Verify(key, 'sha384', message, decodeSnpEcdsaSignature(sigBytes))
    ? undefined
    : 'signature does not verify';
}

/**
 * Checks an ID block and its authentication page as SNP_LAUNCH_FINISH does (ASPFW
 * snp_mcmd_launch_finish, in its order): LD (BAD_MEASUREMENT) and POLICY (POLICY_FAILURE) against the
 * guest when given; ID_KEY_ALGO — and AUTH_KEY_ALGO with AUTH_KEY_EN — must be 1 (INVALID_PARAM); the ID
 * key must be a P-384 point and sign the ID block (BAD_SIGNATURE); with AUTH_KEY_EN the author key must
 * be one and sign the ID key (BAD_SIGNATURE). On success returns the SHA-384 digests of the 0x404-byte
 * keys, which the report carries. Throws AbiDecodeError only if a buffer has the wrong size.
 */
export function verifyIdAuth(
  idBlockBytes: Uint8Array,
  idAuthBytes: Uint8Array,
  options: SnpIdAuthOptions,
): SnpIdAuthVerification {
  const idBlock = decodeSnpIdBlock(idBlockBytes);
  const auth = decodeSnpIdAuth(idAuthBytes);
  const fail = (status: Exclude<SnpIdAuthStatus, 'SUCCESS'>, reason: string): SnpIdAuthVerification => ({
    ok: false,
    status,
    code: SevStatus[status],
    reason,
  });
  if (options.expectedLaunchDigest !== undefined && !idBlock.ld.equals(options.expectedLaunchDigest))
    return fail('BAD_MEASUREMENT', 'ID block LD differs from the launch digest');
  if (options.expectedPolicy !== undefined && idBlock.policy !== options.expectedPolicy)
    return fail('POLICY_FAILURE', 'ID block POLICY differs from the guest policy');
  if (auth.idKeyAlgo !== SNP_ID_ALGO_ECDSA_P384_SHA384)
    return fail('INVALID_PARAM', `ID_KEY_ALGO ${auth.idKeyAlgo} is not ECDSA P-384/SHA-384 (1)`);
  if (options.authorKeyEnabled && auth.authKeyAlgo !== SNP_ID_ALGO_ECDSA_P384_SHA384)
    return fail('INVALID_PARAM', `AUTH_KEY_ALGO ${auth.authKeyAlgo} is not ECDSA P-384/SHA-384 (1)`);
  const idBad = verifyWith(auth.idKey, auth.idBlockSig, Buffer.from(idBlockBytes));
  if (idBad !== undefined) return fail('BAD_SIGNATURE', `ID block signature: ${idBad}`);
  let authorKeyDigest: Buffer = Buffer.alloc(48);
  if (options.authorKeyEnabled) {
    const authorBad = verifyWith(auth.authorKey, auth.idKeySig, auth.idKey);
    if (authorBad !== undefined) return fail('BAD_SIGNATURE', `ID key signature: ${authorBad}`);
    authorKeyDigest = sha384(auth.authorKey);
  }
  return {
    ok: true,
    status: 'SUCCESS',
    code: SevStatus.SUCCESS,
    idBlock,
    idKeyDigest: sha384(auth.idKey),
    authorKeyDigest,
  };
}
