// Legacy SEV ATTESTATION reports: signed in the test with a PEK made by ec-p384, verified by the owner;
// every single-byte change fails, wrong PEKs and expectations fail, and malformed input is a typed error.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  SEV_ATTESTATION_SIGNED_LENGTH,
  SEV_CERT_CURVE_P384,
  SevAttestationReport,
  SevCertAlgo,
  SevCertUsage,
  encodeSevCert,
} from '../src/abi/index.js';
import { ecdsaP384Sign, generateP384KeyPair, p384PublicKeyToAmd } from '../src/crypto/index.js';
import { decodeSevAttestationReport, verifySevAttestationReport } from '../src/owner/index.js';

const testdata = resolve(import.meta.dirname, '../../shared/testdata/sev-platform');

function certFor(key: KeyObject, usage: number, algo: number): Buffer {
  const { qx, qy } = p384PublicKeyToAmd(key);
  return encodeSevCert({
    version: 1,
    apiMajor: 0,
    apiMinor: 24,
    reserved: Buffer.alloc(2),
    pubkey: {
      type: 'ec',
      usage: usage as SevCertUsage,
      algo: algo as SevCertAlgo,
      curve: SEV_CERT_CURVE_P384,
      qx,
      qy,
      reserved: Buffer.alloc(0x370),
    },
    signatures: [{ type: 'empty' }, { type: 'empty' }],
  });
}

const pek = generateP384KeyPair();
const pekCert = certFor(pek.publicKey, SevCertUsage.PEK, SevCertAlgo.ECDSA_SHA256);
const mnonce = Buffer.from('4fbe0bedbad6c86ae8f68971d103e554', 'hex');
const launchDigest = Buffer.from('82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff', 'hex');
const policy = 0x0001_0001;

/** A report as the firmware signs it: the PEK over bytes [0, 0x34) with the PEK's own algorithm. */
function signReport(key: KeyObject, algo: number = SevCertAlgo.ECDSA_SHA256): Buffer {
  const report = SevAttestationReport.encode({
    mnonce,
    launchDigest,
    policy,
    sigUsage: SevCertUsage.PEK,
    sigAlgo: algo,
  });
  const hash = algo === SevCertAlgo.ECDSA_SHA384 ? 'sha384' : 'sha256';
  const { r, s } = ecdsaP384Sign(key, hash, report.subarray(0, SEV_ATTESTATION_SIGNED_LENGTH));
  SevAttestationReport.write(report, { sigR: r, sigS: s });
  return report;
}

const report = signReport(pek.privateKey);
const expectAll = { mnonce, launchDigest, policy };

describe('SEV attestation report', () => {
  it('a report signed by the PEK verifies, with every expectation met', () => {
    const v = verifySevAttestationReport(report, pekCert, expectAll);
    expect(v.ok).toBe(true);
    expect(v.checks.map((c) => c.name)).toEqual([
      'signer',
      'reserved',
      'signature',
      'mnonce',
      'launch digest',
      'policy',
    ]);
    expect(v.checks.every((c) => c.ok)).toBe(true);
    expect(v.report).toMatchObject({ policy, sigUsage: 0x1002, sigAlgo: 0x2, reserved: 0 });
    expect(v.report.mnonce.equals(mnonce)).toBe(true);
  });

  it('flipping any bit of any byte makes it fail, even with no expectations', () => {
    for (let i = 0; i < report.length; i++) {
      for (const mask of [0x01, 0x80]) {
        const t = Buffer.from(report);
        t[i] = (t[i] as number) ^ mask;
        const v = verifySevAttestationReport(t, pekCert);
        expect(v.ok, `byte 0x${i.toString(16)} ^ 0x${mask.toString(16)}`).toBe(false);
      }
    }
  });

  it('names the failing check: signer fields, reserved word, signature', () => {
    const failing = (t: Buffer): string[] =>
      verifySevAttestationReport(t, pekCert)
        .checks.filter((c) => !c.ok)
        .map((c) => c.name);
    const usage = Buffer.from(report);
    usage.writeUInt32LE(SevCertUsage.CEK, 0x34);
    expect(failing(usage)).toEqual(['signer']);
    const reserved = Buffer.from(report);
    reserved[0x3e] = 1;
    expect(failing(reserved)).toEqual(['reserved']);
    const digest = Buffer.from(report);
    digest[0x10] = (digest[0x10] as number) ^ 1;
    expect(failing(digest)).toEqual(['signature']);
  });

  it('fails another PEK, and each unmet expectation by name', () => {
    const other = certFor(generateP384KeyPair().publicKey, SevCertUsage.PEK, SevCertAlgo.ECDSA_SHA256);
    expect(verifySevAttestationReport(report, other).checks.find((c) => !c.ok)?.name).toBe('signature');
    const real = readFileSync(join(testdata, 'naples', 'pek.cert'));
    expect(verifySevAttestationReport(report, real).ok).toBe(false);
    for (const [name, change] of [
      ['mnonce', { mnonce: Buffer.alloc(16) }],
      ['launch digest', { launchDigest: Buffer.alloc(32) }],
      ['policy', { policy: 1 }],
    ] as const) {
      const v = verifySevAttestationReport(report, pekCert, { ...expectAll, ...change });
      expect(v.ok).toBe(false);
      expect(v.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual([name]);
    }
    const short = verifySevAttestationReport(report, pekCert, { mnonce: mnonce.subarray(0, 8) });
    expect(short.ok).toBe(false);
  });

  it('a PEK with ECDSA_SHA384 signs with SHA-384 and says so in SIG_ALGO', () => {
    const cert384 = certFor(pek.publicKey, SevCertUsage.PEK, SevCertAlgo.ECDSA_SHA384);
    const r384 = signReport(pek.privateKey, SevCertAlgo.ECDSA_SHA384);
    expect(verifySevAttestationReport(r384, cert384).ok).toBe(true);
    expect(verifySevAttestationReport(report, cert384).ok).toBe(false); // SIG_ALGO 0x2 ≠ the PEK's 0x102
  });

  it('refuses a certificate that is not a PEK, and reports of the wrong size (field and offset)', () => {
    const pdh = certFor(pek.publicKey, SevCertUsage.PDH, SevCertAlgo.ECDH_SHA256);
    expect(() => verifySevAttestationReport(report, pdh)).toThrow(/field pubkeyUsage at offset 0x8/);
    const ecdhPek = certFor(pek.publicKey, SevCertUsage.PEK, SevCertAlgo.ECDH_SHA256);
    expect(() => verifySevAttestationReport(report, ecdhPek)).toThrow(/field pubkeyAlgo at offset 0xc/);
    expect(() => verifySevAttestationReport(report.subarray(0, 0x90), pekCert)).toThrow(
      /SEV attestation report: field sigS at offset 0x88/,
    );
    expect(() => decodeSevAttestationReport(Buffer.alloc(0xd1))).toThrow(/field \(end\) at offset 0xd0/);
  });

  it('fuzz: random or mutated reports and PEKs give a verdict or AbiDecodeError, nothing else', () => {
    const verdictOrTyped = (r: Uint8Array, c: Uint8Array): void => {
      try {
        expect(typeof verifySevAttestationReport(r, c, expectAll).ok).toBe('boolean');
      } catch (err) {
        expect(err).toBeInstanceOf(AbiDecodeError);
      }
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 0x100 }), (bytes) => verdictOrTyped(bytes, pekCert)),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(0xcf), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.array(fc.tuple(fc.nat(0x823), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        (reportEdits, certEdits) => {
          const r = Buffer.from(report);
          for (const [at, v] of reportEdits) r[at] = v;
          const c = Buffer.from(pekCert);
          for (const [at, v] of certEdits) c[at] = v;
          verdictOrTyped(r, c);
        },
      ),
      { numRuns: 200 },
    );
  });
});
