// The guest owner's check of a platform's SEV certificate chain (sev-reference §3.3):
// ARK (self-signed) → ASK → CEK → PEK ← OCA (self-signed), and PEK → PDH. Works on real AMD artifacts.
import {
  AbiDecodeError,
  type ChainCert,
  type LinkCheck,
  SevCertUsage,
  certUsage,
  decodeAmdRootCert,
  decodeSevCert,
  sevAlgoKind,
  sevAlgoName,
  sevUsageName,
  verifyCertSignature,
} from '../abi/index.js';

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

export type { ChainCert, LinkCheck };
export { verifyCertSignature };

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

/** Decodes `bytes` in the format `role` uses; throws AbiDecodeError if they are malformed. */
export function decodeChainCert(role: ChainRole, bytes: Uint8Array): ChainCert {
  const copy = Buffer.from(bytes);
  return role === 'ARK' || role === 'ASK'
    ? { format: 'amd-root', cert: decodeAmdRootCert(copy), bytes: copy }
    : { format: 'sev', cert: decodeSevCert(copy), bytes: copy };
}

/** Why `cert` cannot stand in `role`'s place: a key of another usage, or of the wrong kind. */
function misplaced(role: ChainRole, cert: ChainCert, label: string): string | undefined {
  const usage = certUsage(cert);
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
