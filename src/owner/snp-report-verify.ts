// The guest owner's check of a real SEV-SNP attestation report (sev-reference §3.4, §7.8, §7.11):
// the report's ECDSA P-384 signature under the VCEK/VLEK, the X.509 chain ARK → ASK → VCEK (or
// ARK → ASVK → VLEK) with validity "as of" a given time, AMD's certificate extensions against the
// report (hwID vs CHIP_ID, SPLs vs REPORTED_TCB), and the owner's policy (debug, minimum TCB, expected
// measurement / report data / host data).
import { createHash, X509Certificate } from 'node:crypto';
import {
  type AmdCertExtensions,
  type SnpReport,
  type TcbLayout,
  type TcbVersion,
  SNP_REPORT_SIGNED_LENGTH,
  SNP_SIG_ALGO_ECDSA_P384_SHA384,
  certificatesFromPemOrDer,
  decodeAmdCertExtensions,
  decodeSnpReport,
  decodeTcb,
  productFromCpuid,
  tcbLayoutFor,
} from '../abi/index.js';
import { ecdsaP384Verify } from '../crypto/index.js';

/** Policy bit 19: SNP_DBG_DECRYPT/ENCRYPT allowed (sev-reference §7.7). */
export const SNP_POLICY_DEBUG = 1n << 19n;

/** One generation's AMD roots: ARK, ASK (signs VCEKs) and ASVK (signs VLEKs), DER or PEM. */
export interface SnpRootSet {
  name: string;
  ark: Uint8Array;
  ask?: Uint8Array;
  asvk?: Uint8Array;
}

/** A minimum TCB: per-component SPLs (as decoded for the report's product), or a raw TCB_VERSION. */
export type SnpMinimumTcb = bigint | Partial<Omit<TcbVersion, 'raw' | 'layout'>>;

export interface SnpVerifyPolicy {
  /** Accept reports whose policy allows debugging (bit 19). Default false. */
  allowDebug?: boolean;
  minimumTcb?: SnpMinimumTcb;
  measurement?: Uint8Array;
  reportData?: Uint8Array;
  hostData?: Uint8Array;
}

export interface SnpVerifyInput {
  report: Uint8Array;
  /** The VCEK or VLEK (DER or PEM); a PEM file may carry the ASK/ASVK and ARK after it. */
  certificate: Uint8Array;
  roots: SnpRootSet[];
  /** Check validity as of this time (default: now). */
  asOf?: Date;
  /** Reuse chain verdicts across calls (a service verifying many reports from few chips). */
  chainCache?: SnpChainCache;
  policy?: SnpVerifyPolicy;
}

export type SnpCheckName =
  | 'signature'
  | 'chain'
  | 'validity'
  | 'hwid'
  | 'tcb'
  | 'debug'
  | 'minimum-tcb'
  | 'measurement'
  | 'report-data'
  | 'host-data';

export interface SnpCheck {
  name: SnpCheckName;
  ok: boolean;
  detail: string;
}

export interface SnpVerifyResult {
  ok: boolean;
  report: SnpReport;
  /** Which key the certificate is (by subject CN) and what its extensions say. */
  leaf: {
    kind: 'VCEK' | 'VLEK' | 'unknown';
    subject: string;
    issuer: string;
    validFrom: string;
    validTo: string;
  };
  extensions: AmdCertExtensions;
  product: string | undefined;
  tcbLayout: TcbLayout;
  tcb: { current: TcbVersion; reported: TcbVersion; committed: TcbVersion; launch: TcbVersion };
  /** The root set the chain was checked against (the one whose signer issued the leaf, when any). */
  roots: string | undefined;
  checks: SnpCheck[];
  /** Names of the failed checks. */
  failed: SnpCheckName[];
}

/** Inputs that cannot be checked at all: a certificate that does not parse, no roots. */
export class SnpVerifyInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnpVerifyInputError';
  }
}

function parseCert(der: Uint8Array, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw new SnpVerifyInputError(
      `${what} is not an X.509 certificate (${err instanceof Error ? err.message : String(err)})`,
    );
  }
}

function parseOne(data: Uint8Array, what: string): X509Certificate {
  const [der] = certificatesFromPemOrDer(data);
  if (der === undefined) throw new SnpVerifyInputError(`${what}: no certificate`);
  return parseCert(der, what);
}

const cn = (name: string): string => /(?:^|\n)CN=([^\n]*)/.exec(name)?.[1] ?? name;

function verifiesUnder(cert: X509Certificate, signer: X509Certificate): boolean {
  try {
    return cert.checkIssued(signer) && cert.verify(signer.publicKey);
  } catch {
    return false;
  }
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

interface ChainOutcome {
  ok: boolean;
  detail: string;
  roots?: string;
  certs: X509Certificate[];
}

/** Finds the root set whose ASK/ASVK issued the leaf and checks ARK (self-signed) → signer → leaf. */
/**
 * Chain verdicts by (certificate file, roots): the RSA-PSS checks of ARK → ASK → VCEK do not depend on
 * the report, so a verifier that sees many reports from one chip does them once. Validity dates are
 * still checked on every call (they depend on the time).
 */
export class SnpChainCache {
  readonly #outcomes = new Map<string, ChainOutcome>();

  /** @internal */
  get(key: string): ChainOutcome | undefined {
    return this.#outcomes.get(key);
  }

  /** @internal */
  set(key: string, outcome: ChainOutcome): void {
    this.#outcomes.set(key, outcome);
  }

  get size(): number {
    return this.#outcomes.size;
  }
}

function chainKey(certificate: Uint8Array, roots: readonly SnpRootSet[]): string {
  const h = createHash('sha256').update(certificate);
  for (const r of roots) {
    h.update(`\0${r.name}\0`);
    for (const c of [r.ark, r.ask, r.asvk]) h.update(c ?? new Uint8Array(0)).update('\0');
  }
  return h.digest('hex');
}

function checkChain(leaf: X509Certificate, extra: X509Certificate[], roots: SnpRootSet[]): ChainOutcome {
  const attempts: string[] = [];
  let unsigned: string | undefined;
  for (const set of roots) {
    const ark = parseOne(set.ark, `${set.name} ARK`);
    const signers = [set.ask, set.asvk]
      .filter((c): c is Uint8Array => c !== undefined)
      .map((c, i) => parseOne(c, `${set.name} ${i === 0 && set.ask !== undefined ? 'ASK' : 'ASVK'}`));
    // An intermediate shipped with the leaf (a PEM chain) is usable only if the trusted ARK signed it.
    signers.push(...extra.filter((c) => !c.checkIssued(c)));
    const candidates = signers.filter((s) => verifiesUnder(leaf, s));
    if (candidates.length === 0) {
      attempts.push(set.name);
      continue;
    }
    if (!verifiesUnder(ark, ark))
      return {
        ok: false,
        detail: `${set.name}: ARK ${cn(ark.subject)} is not self-signed`,
        roots: set.name,
        certs: [],
      };
    const signer = candidates.find((c) => verifiesUnder(c, ark));
    if (signer === undefined) {
      // A shipped intermediate of another generation: try the next root set before failing.
      unsigned ??= `${set.name}: ${cn((candidates[0] as X509Certificate).subject)} is not signed by ${cn(ark.subject)}`;
      attempts.push(set.name);
      continue;
    }
    const names = `${cn(ark.subject)} → ${cn(signer.subject)} → ${cn(leaf.subject)}`;
    return { ok: true, detail: `${names} (${set.name} roots)`, roots: set.name, certs: [ark, signer, leaf] };
  }
  if (unsigned !== undefined) return { ok: false, detail: unsigned, certs: [] };
  return {
    ok: false,
    detail: `no ASK/ASVK in ${attempts.join(', ') || 'the given roots'} signs ${cn(leaf.subject)}`,
    certs: [],
  };
}

function checkValidity(certs: X509Certificate[], asOf: Date): SnpCheck {
  const when = asOf.toISOString();
  for (const c of certs) {
    const from = new Date(c.validFrom);
    const to = new Date(c.validTo);
    if (asOf < from)
      return {
        name: 'validity',
        ok: false,
        detail: `${cn(c.subject)} is not yet valid as of ${when} (from ${from.toISOString()})`,
      };
    if (asOf > to)
      return {
        name: 'validity',
        ok: false,
        detail: `${cn(c.subject)} expired on ${to.toISOString()} (checked as of ${when})`,
      };
  }
  return certs.length === 0
    ? { name: 'validity', ok: false, detail: 'no verified chain to check' }
    : { name: 'validity', ok: true, detail: `all ${certs.length} certificates valid as of ${when}` };
}

function componentNames(layout: TcbLayout): (keyof Omit<TcbVersion, 'raw' | 'layout'>)[] {
  return layout === 'turin'
    ? ['fmc', 'bootloader', 'tee', 'snp', 'microcode']
    : ['bootloader', 'tee', 'snp', 'microcode'];
}

const EXT_FOR: Record<keyof Omit<TcbVersion, 'raw' | 'layout'>, keyof AmdCertExtensions> = {
  fmc: 'fmcSPL',
  bootloader: 'blSPL',
  tee: 'teeSPL',
  snp: 'snpSPL',
  microcode: 'ucodeSPL',
};

function checkTcb(ext: AmdCertExtensions, reported: TcbVersion): SnpCheck {
  const mismatches: string[] = [];
  const seen: string[] = [];
  for (const c of componentNames(reported.layout)) {
    const certValue = ext[EXT_FOR[c]] as number | undefined;
    if (certValue === undefined) {
      mismatches.push(`${EXT_FOR[c]} missing from the certificate`);
      continue;
    }
    seen.push(`${c} ${reported[c]}`);
    if (certValue !== reported[c])
      mismatches.push(`${c}: certificate ${certValue}, REPORTED_TCB ${reported[c]}`);
  }
  return mismatches.length === 0
    ? { name: 'tcb', ok: true, detail: `certificate SPLs match REPORTED_TCB (${seen.join(', ')})` }
    : { name: 'tcb', ok: false, detail: mismatches.join('; ') };
}

function checkHwId(
  report: SnpReport,
  ext: AmdCertExtensions,
  kind: SnpVerifyResult['leaf']['kind'],
): SnpCheck {
  if (ext.hwID === undefined) {
    return kind === 'VLEK'
      ? { name: 'hwid', ok: true, detail: `VLEK: not bound to a chip (cspID ${ext.cspID ?? 'absent'})` }
      : { name: 'hwid', ok: false, detail: 'the certificate has no hwID extension' };
  }
  const id = ext.hwID;
  const chip = report.chipId;
  // Turin VCEKs carry an 8-byte ID: the first 8 bytes of CHIP_ID, the rest zero.
  const ok =
    id.length === 64
      ? id.equals(chip)
      : id.length < 64 &&
        id.equals(chip.subarray(0, id.length)) &&
        chip.subarray(id.length).every((b) => b === 0);
  return ok
    ? { name: 'hwid', ok: true, detail: `hwID (${id.length} bytes, ${ext.hwIDEncoding ?? 'raw'}) = CHIP_ID` }
    : {
        name: 'hwid',
        ok: false,
        detail: `hwID ${hex(id).slice(0, 32)}… ≠ CHIP_ID ${hex(chip).slice(0, 32)}…`,
      };
}

function compareBytes(name: SnpCheckName, label: string, expected: Uint8Array, actual: Buffer): SnpCheck {
  const want = Buffer.from(expected);
  // Shorter expectations are zero-padded, as tools pad report data to 64 bytes.
  const padded = Buffer.concat([want, Buffer.alloc(Math.max(0, actual.length - want.length))]);
  return padded.equals(actual)
    ? { name, ok: true, detail: `${label} as expected` }
    : { name, ok: false, detail: `${label} ${hex(actual)} ≠ expected ${hex(padded)}` };
}

function checkMinimumTcb(min: SnpMinimumTcb, reported: TcbVersion): SnpCheck {
  const want = typeof min === 'bigint' ? decodeTcb(min, reported.layout) : min;
  const low = componentNames(reported.layout).filter((c) => (want[c] ?? 0) > (reported[c] ?? 0));
  return low.length === 0
    ? { name: 'minimum-tcb', ok: true, detail: 'REPORTED_TCB meets the minimum' }
    : {
        name: 'minimum-tcb',
        ok: false,
        detail: low.map((c) => `${c} ${reported[c] ?? 0} < minimum ${want[c] ?? 0}`).join('; '),
      };
}

/**
 * Verifies a report. Throws AbiDecodeError for a malformed report or certificate file and
 * SnpVerifyInputError for unusable inputs; every check that can be made is in `checks`.
 */
export function verifySnpReport(input: SnpVerifyInput): SnpVerifyResult {
  const report = decodeSnpReport(input.report);
  const [leafDer, ...restDer] = certificatesFromPemOrDer(input.certificate);
  if (leafDer === undefined) throw new SnpVerifyInputError('no certificate given');
  if (input.roots.length === 0) throw new SnpVerifyInputError('no AMD roots given');
  const leaf = parseCert(leafDer, 'the VCEK/VLEK certificate');
  const extra = restDer.map((d, i) => parseCert(d, `certificate ${i + 2} of the chain file`));
  const extensions = decodeAmdCertExtensions(leafDer);
  const leafCn = cn(leaf.subject);
  const kind = leafCn === 'SEV-VCEK' ? 'VCEK' : leafCn === 'SEV-VLEK' ? 'VLEK' : 'unknown';
  const product =
    extensions.productName ?? (report.cpuid && productFromCpuid(report.cpuid.family, report.cpuid.model));
  const layout = tcbLayoutFor(extensions.productName, report.cpuid?.family);
  const tcb = {
    current: decodeTcb(report.currentTcb, layout),
    reported: decodeTcb(report.reportedTcb, layout),
    committed: decodeTcb(report.committedTcb, layout),
    launch: decodeTcb(report.launchTcb, layout),
  };
  const checks: SnpCheck[] = [];

  // (a) the signature
  const key = leaf.publicKey;
  const details = key.asymmetricKeyDetails;
  if (report.signatureAlgo !== SNP_SIG_ALGO_ECDSA_P384_SHA384) {
    checks.push({
      name: 'signature',
      ok: false,
      detail: `SIGNATURE_ALGO ${report.signatureAlgo} is not 1 (ECDSA P-384 SHA-384)`,
    });
  } else if (report.signingKey !== kind) {
    checks.push({
      name: 'signature',
      ok: false,
      detail: `the report says it is signed by ${report.signingKey}, the certificate is a ${kind}`,
    });
  } else if (key.asymmetricKeyType !== 'ec' || details?.namedCurve !== 'secp384r1') {
    checks.push({ name: 'signature', ok: false, detail: `${leafCn} does not hold a P-384 key` });
  } else {
    const ok = ecdsaP384Verify(key, 'sha384', report.raw.subarray(0, SNP_REPORT_SIGNED_LENGTH), {
      r: report.signatureR,
      s: report.signatureS,
    });
    checks.push({
      name: 'signature',
      ok,
      detail: ok
        ? `ECDSA P-384 SHA-384 over [0x000, 0x2A0) verifies under the ${kind}`
        : `ECDSA P-384 SHA-384 signature does not verify under this ${kind}`,
    });
  }

  // (b) the chain and its validity
  const cacheKey = input.chainCache === undefined ? '' : chainKey(input.certificate, input.roots);
  let chain = input.chainCache?.get(cacheKey);
  if (chain === undefined) {
    chain = checkChain(leaf, extra, input.roots);
    input.chainCache?.set(cacheKey, chain);
  }
  checks.push({ name: 'chain', ok: chain.ok, detail: chain.detail });
  checks.push(checkValidity(chain.certs, input.asOf ?? new Date()));

  // (c) AMD's extensions against the report
  checks.push(checkHwId(report, extensions, kind));
  checks.push(checkTcb(extensions, tcb.reported));

  // (d) the owner's policy
  const policy = input.policy ?? {};
  const debug = (report.policy & SNP_POLICY_DEBUG) !== 0n;
  checks.push(
    !debug
      ? { name: 'debug', ok: true, detail: 'policy does not allow debugging' }
      : policy.allowDebug === true
        ? { name: 'debug', ok: true, detail: 'policy allows debugging (accepted: debug allowed)' }
        : {
            name: 'debug',
            ok: false,
            detail: `policy 0x${report.policy.toString(16)} allows debugging (bit 19); refused`,
          },
  );
  if (policy.minimumTcb !== undefined) checks.push(checkMinimumTcb(policy.minimumTcb, tcb.reported));
  if (policy.measurement !== undefined)
    checks.push(compareBytes('measurement', 'MEASUREMENT', policy.measurement, report.measurement));
  if (policy.reportData !== undefined)
    checks.push(compareBytes('report-data', 'REPORT_DATA', policy.reportData, report.reportData));
  if (policy.hostData !== undefined)
    checks.push(compareBytes('host-data', 'HOST_DATA', policy.hostData, report.hostData));

  const failed = checks.filter((c) => !c.ok).map((c) => c.name);
  return {
    ok: failed.length === 0,
    report,
    leaf: {
      kind,
      subject: leafCn,
      issuer: cn(leaf.issuer),
      validFrom: leaf.validFrom,
      validTo: leaf.validTo,
    },
    extensions,
    product: product ?? undefined,
    tcbLayout: layout,
    tcb,
    roots: chain.roots,
    checks,
    failed,
  };
}

/** Splits a PEM bundle such as ask_ark_asvk.pem into a root set by subject CN (ARK-*, SEV-*, SEV-VLEK-*). */
export function snpRootSetFromBundle(name: string, pem: Uint8Array): Partial<SnpRootSet> {
  const out: Partial<SnpRootSet> = { name };
  for (const der of certificatesFromPemOrDer(pem)) {
    const c = cn(parseCert(der, `${name} bundle`).subject);
    if (c.startsWith('ARK-')) out.ark = der;
    else if (c.startsWith('SEV-VLEK-')) out.asvk = der;
    else if (c.startsWith('SEV-')) out.ask = der;
  }
  return out;
}
