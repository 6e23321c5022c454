// Checking one signature of AMD's certificate formats as the firmware does (ASPFW sev_cert.c
// sev_cert_validate_sig, amd_cert.c amd_cert_validate): used by the PSP (PEK_CERT_IMPORT, SEND_START)
// and by the guest owner's chain verifier alike, so both judge a signature the same way.
import { type KeyObject } from 'node:crypto';
import {
  P384KeyError,
  RsaKeyError,
  ecdsaP384Verify,
  p384PublicKeyFromAmd,
  rsaModulusBytes,
  rsaPssVerifyLe,
  rsaPublicKeyFromLe,
} from '../crypto/index.js';
import { type AmdRootCert, amdRootCertAlgo, amdRootCertSignedLength } from './amd-root-cert.js';
import {
  SEV_CERT_SIGNED_LENGTH,
  type SevCert,
  SevCertAlgo,
  SevCertUsage,
  type SevSignature,
  sevAlgoHash,
  sevAlgoKind,
  sevAlgoName,
  sevUsageName,
} from './sev-cert.js';

/** A decoded certificate in either of AMD's formats, with the bytes it came from. */
export type ChainCert =
  { format: 'amd-root'; cert: AmdRootCert; bytes: Buffer } | { format: 'sev'; cert: SevCert; bytes: Buffer };

/** The outcome of checking one signature: whether it holds and why (or why not). */
export interface LinkCheck {
  ok: boolean;
  reason: string;
  /** The SEV signature slot (1 or 2) that verified, when the subject is a SEV certificate. */
  slot?: 1 | 2;
}

/** Who may sign a key of each usage (ASPFW sev_cert.c sev_cert_validate, amd_cert.c amd_cert_validate). */
const ALLOWED_SIGNERS = new Map<number, readonly number[]>([
  [SevCertUsage.ARK, [SevCertUsage.ARK]],
  [SevCertUsage.ASK, [SevCertUsage.ARK]],
  [SevCertUsage.CEK, [SevCertUsage.ASK]],
  [SevCertUsage.OCA, [SevCertUsage.OCA]],
  [SevCertUsage.PEK, [SevCertUsage.OCA, SevCertUsage.CEK]],
  [SevCertUsage.PDH, [SevCertUsage.PEK]],
]);

interface SignerKey {
  usage: number;
  algo: SevCertAlgo;
  /** The key, or why it cannot verify anything. */
  key: KeyObject | string;
}

export function certUsage(c: ChainCert): number {
  return c.format === 'amd-root' ? c.cert.keyUsage : c.cert.pubkey.usage;
}

function signerKey(signer: ChainCert): SignerKey {
  try {
    if (signer.format === 'amd-root') {
      const c = signer.cert;
      return { usage: c.keyUsage, algo: amdRootCertAlgo(c), key: rsaPublicKeyFromLe(c.modulus, c.pubexp) };
    }
    const k = signer.cert.pubkey;
    if (k.type === 'rsa') {
      const n = k.modulusBits / 8;
      return {
        usage: k.usage,
        algo: k.algo,
        key: rsaPublicKeyFromLe(k.modulus.subarray(0, n), k.pubexp.subarray(0, n)),
      };
    }
    if (sevAlgoKind(k.algo) === 'ecdh')
      return {
        usage: k.usage,
        algo: k.algo,
        key: `its key is ${sevAlgoName(k.algo)}, a key-agreement key that cannot sign`,
      };
    return { usage: k.usage, algo: k.algo, key: p384PublicKeyFromAmd(k) };
  } catch (err) {
    if (err instanceof RsaKeyError || err instanceof P384KeyError)
      return {
        usage: certUsage(signer),
        algo: SevCertAlgo.INVALID,
        key: `its public key is unusable: ${err.message}`,
      };
    throw err;
  }
}

function slotName(sig: SevSignature): string {
  return sig.type === 'empty' ? 'empty' : `${sevUsageName(sig.usage)}/${sevAlgoName(sig.algo)}`;
}

function hashName(hash: 'sha256' | 'sha384'): string {
  return hash === 'sha256' ? 'SHA-256' : 'SHA-384';
}

function hex3(n: number): string {
  return `0x${n.toString(16).padStart(3, '0')}`;
}

function verifySevSubject(
  subject: Extract<ChainCert, { format: 'sev' }>,
  signer: SignerKey,
  key: KeyObject,
): LinkCheck {
  const message = subject.bytes.subarray(0, SEV_CERT_SIGNED_LENGTH);
  const hash = sevAlgoHash(signer.algo);
  const kind = sevAlgoKind(signer.algo);
  const matching = subject.cert.signatures
    .map((sig, i) => ({ sig, slot: (i + 1) as 1 | 2 }))
    .filter(({ sig }) => sig.type !== 'empty' && sig.usage === signer.usage && sig.algo === signer.algo);
  if (matching.length === 0) {
    return {
      ok: false,
      reason:
        `no signature slot by ${sevUsageName(signer.usage)} with ${sevAlgoName(signer.algo)} ` +
        `(slots: ${subject.cert.signatures.map(slotName).join(', ')})`,
    };
  }
  const what = `${kind === 'rsa' ? 'RSA-PSS' : 'ECDSA P-384'} ${hashName(hash)} over bytes 0x000–${hex3(SEV_CERT_SIGNED_LENGTH - 1)}`;
  // Any matching slot may carry the signature: the firmware fills the first empty one, so order is not fixed.
  for (const { sig, slot } of matching) {
    const ok =
      sig.type === 'rsa'
        ? kind === 'rsa' && rsaPssVerifyLe(key, hash, message, sig.signature)
        : sig.type === 'ecdsa' && kind === 'ecdsa' && ecdsaP384Verify(key, hash, message, sig);
    if (ok) return { ok: true, slot, reason: `slot ${slot} (${slotName(sig)}): ${what} verifies` };
  }
  const slots = matching.map((m) => m.slot).join(' and ');
  return {
    ok: false,
    reason: `slot ${slots} (${sevUsageName(signer.usage)}/${sevAlgoName(signer.algo)}): ${what} does not verify`,
  };
}

function verifyRootSubject(
  subject: Extract<ChainCert, { format: 'amd-root' }>,
  signer: SignerKey,
  key: KeyObject,
): LinkCheck {
  const c = subject.cert;
  if (c.signature === undefined)
    return {
      ok: false,
      reason: `unsigned: ${subject.bytes.length} bytes end where the signature would start`,
    };
  if (sevAlgoKind(signer.algo) !== 'rsa')
    return {
      ok: false,
      reason: `signer's ${sevAlgoName(signer.algo)} key cannot check an RSA-PSS signature`,
    };
  const hash = sevAlgoHash(signer.algo);
  const length = amdRootCertSignedLength(c);
  if (rsaModulusBytes(key) !== c.signature.length)
    return {
      ok: false,
      reason: `signature is ${c.signature.length} bytes, signer's modulus ${rsaModulusBytes(key)}`,
    };
  if (!rsaPssVerifyLe(key, hash, subject.bytes.subarray(0, length), c.signature))
    return {
      ok: false,
      reason: `RSA-PSS ${hashName(hash)} over bytes 0x000–${hex3(length - 1)} does not verify`,
    };
  return { ok: true, reason: `RSA-PSS ${hashName(hash)} over bytes 0x000–${hex3(length - 1)} verifies` };
}

/**
 * Checks that `signer`'s key signed `subject`, as the firmware does: the signature first (for a SEV
 * certificate, in a slot whose usage and algorithm equal the signer's key), then that a key of the
 * signer's usage may sign a key of the subject's (PEK by OCA or CEK, PDH by PEK, OCA by itself, CEK by
 * ASK, ASK by ARK, ARK by itself) and, for AMD root keys, that CERTIFYING_ID names the signer.
 */
export function verifyCertSignature(subject: ChainCert, signer: ChainCert): LinkCheck {
  const sk = signerKey(signer);
  if (typeof sk.key === 'string') return { ok: false, reason: `signer ${sk.key}` };
  const check =
    subject.format === 'sev' ? verifySevSubject(subject, sk, sk.key) : verifyRootSubject(subject, sk, sk.key);
  if (!check.ok) return check;
  const subjectUsage = certUsage(subject);
  if (!(ALLOWED_SIGNERS.get(subjectUsage) ?? []).includes(sk.usage))
    return {
      ok: false,
      reason: `a ${sevUsageName(sk.usage)} key may not sign a ${sevUsageName(subjectUsage)} key`,
    };
  if (subject.format === 'amd-root') {
    if (signer.format !== 'amd-root' || !subject.cert.certifyingId.equals(signer.cert.keyId))
      return {
        ok: false,
        reason: `CERTIFYING_ID ${subject.cert.certifyingId.toString('hex')} is not the signer's KEY_ID`,
      };
    if (subjectUsage === SevCertUsage.ARK && !subject.cert.keyId.equals(signer.cert.keyId))
      return { ok: false, reason: 'the ARK must be signed by itself' };
  }
  return check;
}
