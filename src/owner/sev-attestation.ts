// The guest owner's check of a legacy SEV ATTESTATION report (0xD0 bytes, sev-reference §5.4): the
// platform's PEK signs MNONCE ‖ LAUNCH_DIGEST ‖ POLICY with ECDSA P-384 / SHA-256, which lets an owner
// who trusts the PEK (verifySevChain) learn what was launched without holding the session's TIK.
import {
  AbiDecodeError,
  SEV_ATTESTATION_SIGNED_LENGTH,
  SevAttestationReport,
  SevCertUsage,
  type SevEcPublicKey,
  decodeSevCert,
  sevAlgoHash,
  sevAlgoKind,
  sevAlgoName,
  sevUsageName,
} from '../abi/index.js';
import { ecdsaP384Verify, macEquals, p384PublicKeyFromAmd } from '../crypto/index.js';

/** Bytes of a legacy SEV attestation report. */
export const SEV_ATTESTATION_REPORT_SIZE = SevAttestationReport.size;
/** The u32 between SIG_ALGO and the signature: not signed, written as zero. */
const RESERVED_AT = 0x3c;

/** A decoded report: the signed fields, who signed it and how, and the raw signature. */
export interface SevAttestationReportFields {
  readonly mnonce: Buffer;
  readonly launchDigest: Buffer;
  readonly policy: number;
  readonly sigUsage: number;
  readonly sigAlgo: number;
  readonly reserved: number;
  /** 72-byte little-endian fields; only the low 48 bytes are used by P-384. */
  readonly sigR: Buffer;
  readonly sigS: Buffer;
}

/** Decodes a report; anything but exactly 0xD0 bytes is an AbiDecodeError naming where it ends. */
export function decodeSevAttestationReport(bytes: Uint8Array): SevAttestationReportFields {
  if (bytes.length > SEV_ATTESTATION_REPORT_SIZE)
    throw new AbiDecodeError(
      SevAttestationReport.name,
      '(end)',
      SEV_ATTESTATION_REPORT_SIZE,
      `${bytes.length} bytes, a report is exactly ${SEV_ATTESTATION_REPORT_SIZE}`,
    );
  const r = SevAttestationReport.decode(bytes);
  const reserved = Buffer.from(bytes.subarray(RESERVED_AT, RESERVED_AT + 4)).readUInt32LE(0);
  return { ...r, reserved };
}

/**
 * Decodes the PEK certificate and checks it can have signed a report: usage PEK and an ECDSA algorithm
 * (the firmware signs with the PEK's own algorithm and writes it in SIG_ALGO). Throws AbiDecodeError.
 */
export function decodePekCert(bytes: Uint8Array): SevEcPublicKey {
  const k = decodeSevCert(bytes).pubkey;
  if (k.usage !== SevCertUsage.PEK)
    throw new AbiDecodeError(
      'SEV certificate',
      'pubkeyUsage',
      0x008,
      `${sevUsageName(k.usage)}, expected a PEK (0x1002) certificate`,
    );
  if (k.type !== 'ec' || sevAlgoKind(k.algo) !== 'ecdsa')
    throw new AbiDecodeError(
      'SEV certificate',
      'pubkeyAlgo',
      0x00c,
      `${sevAlgoName(k.algo)}, the PEK signs reports with ECDSA P-384`,
    );
  return k;
}

/** What the owner expects the report to say; each one given adds a check. */
export interface SevAttestationExpectation {
  /** The MNONCE the owner sent with the ATTESTATION request (freshness). */
  readonly mnonce?: Uint8Array;
  /** The launch digest computeLaunchDigest predicts. */
  readonly launchDigest?: Uint8Array;
  readonly policy?: number;
}

/** One check: its name, the verdict, and why. */
export interface AttestationCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** The verdict on a report: every check and the decoded fields. */
export interface SevAttestationVerdict {
  readonly ok: boolean;
  readonly checks: readonly AttestationCheck[];
  readonly report: SevAttestationReportFields;
}

const hex32 = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

function compare(
  name: string,
  field: string,
  offset: number,
  got: Buffer,
  want: Uint8Array,
): AttestationCheck {
  const ok = macEquals(got, want);
  return {
    name,
    ok,
    detail: ok
      ? `${field} at 0x${offset.toString(16)} is ${got.toString('hex')}, as expected`
      : `${field} at 0x${offset.toString(16)} is ${got.toString('hex')}, expected ${Buffer.from(want).toString('hex')}`,
  };
}

/**
 * Verifies a legacy SEV attestation report against the PEK certificate (whose chain the caller checks
 * with verifySevChain): SIG_USAGE and SIG_ALGO name the PEK, the reserved word is zero, the ECDSA
 * signature over bytes [0x00, 0x34) holds, and MNONCE, LAUNCH_DIGEST and POLICY equal what is expected.
 * Every check is reported; malformed inputs throw AbiDecodeError.
 */
export function verifySevAttestationReport(
  reportBytes: Uint8Array,
  pekCert: Uint8Array,
  expectation: SevAttestationExpectation = {},
): SevAttestationVerdict {
  const report = decodeSevAttestationReport(reportBytes);
  const pek = decodePekCert(pekCert);
  const checks: AttestationCheck[] = [];
  const signerOk = report.sigUsage === SevCertUsage.PEK && report.sigAlgo === pek.algo;
  checks.push({
    name: 'signer',
    ok: signerOk,
    detail:
      `SIG_USAGE (0x34) ${sevUsageName(report.sigUsage)}, SIG_ALGO (0x38) ${sevAlgoName(report.sigAlgo)}` +
      (signerOk ? '' : `; expected ${sevUsageName(SevCertUsage.PEK)} and the PEK's ${sevAlgoName(pek.algo)}`),
  });
  checks.push({
    name: 'reserved',
    ok: report.reserved === 0,
    detail: `bytes 0x3c–0x3f are ${hex32(report.reserved)}${report.reserved === 0 ? '' : ', expected zero'}`,
  });
  const hash = sevAlgoHash(pek.algo);
  const signed = Buffer.from(reportBytes.subarray(0, SEV_ATTESTATION_SIGNED_LENGTH));
  const sigOk = ecdsaP384Verify(p384PublicKeyFromAmd(pek), hash, signed, { r: report.sigR, s: report.sigS });
  const what = `ECDSA P-384 ${hash === 'sha256' ? 'SHA-256' : 'SHA-384'} over bytes 0x00–0x33 under the PEK`;
  checks.push({ name: 'signature', ok: sigOk, detail: `${what} ${sigOk ? 'verifies' : 'does not verify'}` });
  if (expectation.mnonce !== undefined)
    checks.push(compare('mnonce', 'MNONCE', 0x00, report.mnonce, expectation.mnonce));
  if (expectation.launchDigest !== undefined)
    checks.push(
      compare('launch digest', 'LAUNCH_DIGEST', 0x10, report.launchDigest, expectation.launchDigest),
    );
  if (expectation.policy !== undefined) {
    const ok = report.policy === expectation.policy;
    checks.push({
      name: 'policy',
      ok,
      detail: `POLICY at 0x30 is ${hex32(report.policy)}${ok ? ', as expected' : `, expected ${hex32(expectation.policy)}`}`,
    });
  }
  return { ok: checks.every((c) => c.ok), checks, report };
}
