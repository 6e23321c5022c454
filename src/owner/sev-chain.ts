// The guest owner's check of a platform's SEV certificate chain (sev-reference §3.3):
// ARK (self-signed) → ASK → CEK → PEK ← OCA (self-signed), and PEK → PDH. Works on real AMD artifacts.
import { type KeyObject } from 'node:crypto';
import {
  type AmdRootCert,
  AbiDecodeError,
  type SevCert,
  SevCertAlgo,
  SevCertUsage,
  type SevSignature,
  SEV_CERT_SIGNED_LENGTH,
  amdRootCertAlgo,
  amdRootCertSignedLength,
  decodeAmdRootCert,
  decodeSevCert,
  sevAlgoHash,
  sevAlgoKind,
  sevAlgoName,
  sevUsageName,
} from '../abi/index.js';
import {
  P384KeyError,
  RsaKeyError,
  ecdsaP384Verify,
  p384PublicKeyFromAmd,
  rsaModulusBytes,
  rsaPssVerifyLe,
  rsaPublicKeyFromLe,
} from '../crypto/index.js';

/** The six certificates of a legacy SEV platform chain. */
export type ChainRole = 'ARK' | 'ASK' | 'CEK' | 'OCA' | 'PEK' | 'PDH';
export const CHAIN_ROLES: readonly ChainRole[] = ['ARK', 'ASK', 'CEK', 'OCA', 'PEK', 'PDH'];

/** Every signature the owner checks, as [signer, subject], from AMD's root down to the PDH. */
export const SEV_CHAIN_LINKS: readonly (readonly [ChainRole, ChainRole])[] = [
  ['ARK', 'ARK'],
  ['ARK', 'ASK'],
  ['ASK', 'CEK'],
  ['CEK', 'PEK'],
  ['OCA', 'OCA'],
  ['OCA', 'PEK'],
  ['PEK', 'PDH'],
];

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

/** One link of the chain: `signer` vouches for `subject`. */
export interface ChainLink extends LinkCheck {
  signer: ChainRole;
  subject: ChainRole;
  /** "ASK → CEK". */
  name: string;
}

/** The verdict on a whole chain: every link, pass or fail, and the names of the broken ones. */
export interface SevChainResult {
  ok: boolean;
  links: ChainLink[];
  broken: string[];
  /** Certificates that are missing, do not decode, or hold a key of the wrong usage for their place. */
  problems: { role: ChainRole; problem: string }[];
}

/**
 * The certificates' bytes: ARK and ASK in AMD's root-key format, the rest in the SEV format. Without an
 * ARK or ASK, the links they take part in fail and the owner's half of the chain is still checked.
 */
export interface SevChainInput {
  ark?: Uint8Array;
  ask?: Uint8Array;
  cek: Uint8Array;
  oca: Uint8Array;
  pek: Uint8Array;
  pdh: Uint8Array;
}

/** The usage each role's key must carry. */
const ROLE_USAGE: Record<ChainRole, number> = {
  ARK: SevCertUsage.ARK,
  ASK: SevCertUsage.ASK,
  CEK: SevCertUsage.CEK,
  OCA: SevCertUsage.OCA,
  PEK: SevCertUsage.PEK,
  PDH: SevCertUsage.PDH,
};

/** Who may sign a key of each usage (ASPFW sev_cert.c sev_cert_validate, amd_cert.c amd_cert_validate). */
const ALLOWED_SIGNERS = new Map<number, readonly number[]>([
  [SevCertUsage.ARK, [SevCertUsage.ARK]],
  [SevCertUsage.ASK, [SevCertUsage.ARK]],
  [SevCertUsage.CEK, [SevCertUsage.ASK]],
  [SevCertUsage.OCA, [SevCertUsage.OCA]],
  [SevCertUsage.PEK, [SevCertUsage.OCA, SevCertUsage.CEK]],
  [SevCertUsage.PDH, [SevCertUsage.PEK]],
]);

/** Decodes `bytes` in the format `role` uses; throws AbiDecodeError if they are malformed. */
export function decodeChainCert(role: ChainRole, bytes: Uint8Array): ChainCert {
  const copy = Buffer.from(bytes);
  return role === 'ARK' || role === 'ASK'
    ? { format: 'amd-root', cert: decodeAmdRootCert(copy), bytes: copy }
    : { format: 'sev', cert: decodeSevCert(copy), bytes: copy };
}

interface SignerKey {
  usage: number;
  algo: SevCertAlgo;
  /** The key, or why it cannot verify anything. */
  key: KeyObject | string;
}

function usageOf(c: ChainCert): number {
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
        usage: usageOf(signer),
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
  const subjectUsage = usageOf(subject);
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

/** Why `cert` cannot stand in `role`'s place: a key of another usage, or of the wrong kind. */
function misplaced(role: ChainRole, cert: ChainCert, label: string): string | undefined {
  const usage = usageOf(cert);
  if (usage !== ROLE_USAGE[role])
    return `${label} holds a ${sevUsageName(usage)} key, expected ${sevUsageName(ROLE_USAGE[role])}`;
  if (cert.format !== 'sev') return undefined;
  // The PDH exists for key agreement (the firmware's GODH check wants ECDH); the others sign.
  const kind = sevAlgoKind(cert.cert.pubkey.algo);
  const wanted = role === 'PDH' ? ['ecdh'] : ['ecdsa', 'rsa'];
  return wanted.includes(kind)
    ? undefined
    : `${label} holds a ${role} key for ${sevAlgoName(cert.cert.pubkey.algo)}, expected ${role === 'PDH' ? 'ECDH' : 'a signing algorithm'}`;
}

function describeProblem(err: unknown): string {
  if (err instanceof AbiDecodeError) return err.message;
  throw err;
}

/**
 * Verifies a platform's whole SEV chain and reports every link. A certificate that does not decode, or
 * whose key has the wrong usage for its place, fails every link it takes part in, with the reason.
 * `labels` names the certificates in reasons (e.g. their file names); by default the role names.
 */
export function verifySevChain(
  input: SevChainInput,
  labels: Partial<Record<ChainRole, string>> = {},
): SevChainResult {
  const certs = new Map<ChainRole, ChainCert | string>();
  for (const role of CHAIN_ROLES) {
    const label = labels[role] ?? role;
    const bytes = input[role.toLowerCase() as Lowercase<ChainRole>];
    if (bytes === undefined) {
      certs.set(role, `no ${label} given`);
      continue;
    }
    try {
      const cert = decodeChainCert(role, bytes);
      certs.set(role, misplaced(role, cert, label) ?? cert);
    } catch (err) {
      certs.set(role, `${label}: ${describeProblem(err)}`);
    }
  }
  const links = SEV_CHAIN_LINKS.map(([signer, subject]): ChainLink => {
    const name = `${signer} → ${subject}`;
    const s = certs.get(signer);
    const t = certs.get(subject);
    if (typeof t === 'string') return { signer, subject, name, ok: false, reason: t };
    if (typeof s === 'string') return { signer, subject, name, ok: false, reason: s };
    if (s === undefined || t === undefined) throw new Error('unreachable: every role was decoded');
    return { signer, subject, name, ...verifyCertSignature(t, s) };
  });
  const broken = links.filter((l) => !l.ok).map((l) => l.name);
  const problems = CHAIN_ROLES.flatMap((role) => {
    const c = certs.get(role);
    return typeof c === 'string' ? [{ role, problem: c }] : [];
  });
  return { ok: broken.length === 0, links, broken, problems };
}

/** A candidate AMD root pair, e.g. one product generation's ARK and ASK. */
export interface AmdRootCandidate {
  name: string;
  ark: Uint8Array;
  ask: Uint8Array;
}

/**
 * Finds which candidate's ASK signed `cek` — how a verifier that holds every generation's roots picks
 * the platform's generation. Returns the first match and, for each candidate tried, why it did or did not.
 */
export function findCekSigner<C extends AmdRootCandidate>(
  candidates: readonly C[],
  cek: Uint8Array,
): { match: C | undefined; tried: { name: string; ok: boolean; reason: string }[] } {
  const tried: { name: string; ok: boolean; reason: string }[] = [];
  let subject: ChainCert;
  try {
    subject = decodeChainCert('CEK', cek);
  } catch (err) {
    return { match: undefined, tried: [{ name: 'CEK', ok: false, reason: describeProblem(err) }] };
  }
  for (const c of candidates) {
    let check: LinkCheck;
    try {
      check = verifyCertSignature(subject, decodeChainCert('ASK', c.ask));
    } catch (err) {
      check = { ok: false, reason: `ASK: ${describeProblem(err)}` };
    }
    tried.push({ name: c.name, ...check });
    if (check.ok) return { match: c, tried };
  }
  return { match: undefined, tried };
}
