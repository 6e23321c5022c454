// SEV-SNP attestation reports from real AMD hardware verify against AMD's real roots; every tampering
// the testdata README names fails, naming the check; the decoders raise typed errors only.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  AbiDecodeError,
  SNP_REPORT_SIGNED_LENGTH,
  SNP_REPORT_SIZE,
  decodeAmdCertExtensions,
  decodeSnpReport,
  decodeTcb,
  encodeTcb,
  x509Extensions,
} from '../src/abi/index.js';
import {
  type SnpRootSet,
  type SnpVerifyInput,
  snpRootSetFromBundle,
  SnpChainCache,
  verifySnpReport,
} from '../src/owner/index.js';
import { addVerifyReportCommand } from '../src/cli/owner-verify-report.js';

const TESTDATA = resolve(import.meta.dirname, '../../shared/testdata');
const REPORTS = join(TESTDATA, 'snp-reports');
const ROOTS_DIR = join(TESTDATA, 'amd-roots');
const read = (name: string): Buffer => readFileSync(join(REPORTS, name));

const ROOTS: SnpRootSet[] = ['milan', 'genoa', 'turin'].map(
  (n) => snpRootSetFromBundle(n, readFileSync(join(ROOTS_DIR, n, 'ask_ark_asvk.pem'))) as SnpRootSet,
);
const rootsFor = (n: string): SnpRootSet[] => ROOTS.filter((r) => r.name === n);

/** stem, certificate file, roots folder */
const CASES: [string, string, string][] = [
  ['milan-v2', 'milan-v2.vcek.der', 'milan'],
  ['milan-v2-reported-tcb', 'milan-v2-reported-tcb.vcek.der', 'milan'],
  ['genoa-v3', 'genoa-v3.vcek.pem', 'genoa'],
  ['genoa-v5', 'genoa-v5.vcek.der', 'genoa'],
  ['turin-v5', 'turin-v5.vcek.der', 'turin'],
  ['milan-v2-cloud', 'milan-v2-cloud.vcek-chain.pem', 'milan'],
  ['milan-v3-cloud', 'milan-v3-cloud.vcek.pem', 'milan'],
  ['milan-v3-cb', 'milan-v3-cb.vcek.der', 'milan'],
  ['milan-v3-oc-release', 'milan-v3-oc.vcek.der', 'milan'],
  ['milan-v3-oc-staging', 'milan-v3-oc.vcek.der', 'milan'],
  ['milan-v3-rk-release', 'milan-v3-rk.vcek.der', 'milan'],
  ['milan-v3-rk-staging', 'milan-v3-rk.vcek.der', 'milan'],
];

function verify(
  stem: string,
  cert: string,
  extra: Partial<SnpVerifyInput> = {},
): ReturnType<typeof verifySnpReport> {
  return verifySnpReport({
    report: read(`${stem}.report.bin`),
    certificate: read(cert),
    roots: ROOTS,
    ...extra,
  });
}

const failedNames = (r: ReturnType<typeof verifySnpReport>): string[] => r.failed;

describe('real SNP reports verify', () => {
  it.each(CASES)('%s with %s under the %s roots', (stem, cert, product) => {
    const res = verify(stem, cert, { roots: rootsFor(product) });
    expect(res.checks.filter((c) => !c.ok)).toEqual([]);
    expect(res.ok).toBe(true);
    expect(res.roots).toBe(product);
    expect(res.leaf.kind).toBe('VCEK');
    // and with every generation's roots offered, the right one is found
    expect(verify(stem, cert).roots).toBe(product);
  });

  it('a chain cache gives the same verdicts and checks each chain once; signatures are still checked per report', () => {
    const cache = new SnpChainCache();
    const input = {
      report: read('milan-v2.report.bin'),
      certificate: read('milan-v2.vcek.der'),
      roots: ROOTS,
      asOf: new Date('2025-01-01T00:00:00Z'),
    };
    const plain = verifySnpReport(input);
    const first = verifySnpReport({ ...input, chainCache: cache });
    const second = verifySnpReport({ ...input, chainCache: cache });
    expect(cache.size).toBe(1);
    expect(first.checks).toEqual(plain.checks);
    expect(second.checks).toEqual(plain.checks);
    const flipped = Buffer.from(input.report);
    flipped.writeUInt8((flipped[21] as number) ^ 0x80, 21);
    const tampered = verifySnpReport({ ...input, report: flipped, chainCache: cache });
    expect(tampered.checks.find((c) => c.name === 'signature')?.ok).toBe(false);
    expect(tampered.checks.find((c) => c.name === 'chain')?.ok).toBe(true);
    // Another certificate is another entry, with its own verdict.
    const other = verifySnpReport({ ...input, certificate: read('genoa-v3.vcek.pem'), chainCache: cache });
    expect(cache.size).toBe(2);
    expect(other.ok).toBe(false);
  });

  it('a chain file carrying its ASK verifies whatever order the root sets come in', () => {
    const reversed = [...ROOTS].reverse();
    const r = verifySnpReport({
      report: read('milan-v2-cloud.report.bin'),
      certificate: read('milan-v2-cloud.vcek-chain.pem'),
      roots: reversed,
    });
    expect(r.checks.find((c) => c.name === 'chain')).toMatchObject({ ok: true });
    expect(r.checks.find((c) => c.name === 'chain')?.detail).toContain('milan roots');
  });

  it('milan-v2: the README facts (policy, TCB, firmware)', () => {
    const res = verify('milan-v2', 'milan-v2.vcek.der');
    expect(res.report.version).toBe(2);
    expect(res.report.policy).toBe(0x30000n);
    expect(res.report.reportedTcb).toBe(0x7308000000000003n);
    expect(res.tcb.reported).toMatchObject({ bootloader: 3, tee: 0, snp: 8, microcode: 0x73 });
    expect([res.report.currentMajor, res.report.currentMinor, res.report.currentBuild]).toEqual([1, 52, 4]);
    expect(res.report.cpuid).toBeUndefined();
    expect(res.extensions).toMatchObject({ blSPL: 3, teeSPL: 0, snpSPL: 8, ucodeSPL: 0x73 });
    expect(res.extensions.hwID?.equals(res.report.chipId)).toBe(true);
  });

  it('milan-v2-reported-tcb: the VCEK matches REPORTED_TCB, not CURRENT_TCB', () => {
    const res = verify('milan-v2-reported-tcb', 'milan-v2-reported-tcb.vcek.der');
    expect(res.report.currentTcb).not.toBe(res.report.reportedTcb);
    expect(res.tcb.reported.microcode).toBe(115);
    expect(res.report.policy).toBe(0x3001fn);
  });

  it('genoa-v3 carries CPUID family/model/stepping; genoa-v5 fills bytes v3 reserves', () => {
    const v3 = verify('genoa-v3', 'genoa-v3.vcek.pem');
    expect(v3.report.cpuid).toEqual({ family: 0x19, model: 0x11, stepping: 1 });
    expect([v3.report.currentMajor, v3.report.currentMinor, v3.report.currentBuild]).toEqual([1, 55, 40]);
    const v5 = verify('genoa-v5', 'genoa-v5.vcek.der');
    expect(v5.report.version).toBe(5);
    expect(v5.report.launchMitVector).not.toBe(0n);
    // the same bytes in a version-3 report are reserved and refused
    const asV3 = Buffer.from(read('genoa-v5.report.bin'));
    asV3.writeUInt32LE(3, 0);
    expect(() => decodeSnpReport(asV3)).toThrow(/launchMitVector at offset 0x1f8/);
  });

  it('turin-v5: FMC TCB layout, 8-byte hwID, fmcSPL', () => {
    const res = verify('turin-v5', 'turin-v5.vcek.der');
    expect(res.tcbLayout).toBe('turin');
    expect(res.tcb.reported).toMatchObject({ fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 0x47 });
    expect(res.extensions.hwID?.length).toBe(8);
    expect(res.extensions.fmcSPL).toBe(0);
    expect(res.extensions.productName).toBe('Turin');
  });

  it('milan-v2-debug: refused by default, accepted with allowDebug', () => {
    const def = verify('milan-v2-debug', 'milan-v2-debug.vcek.der');
    expect(def.ok).toBe(false);
    expect(failedNames(def)).toEqual(['debug']);
    expect(def.report.policy).toBe(0xb0000n);
    expect([...def.report.reportData.subarray(0, 5)]).toEqual([1, 2, 3, 4, 5]);
    const dbg = verify('milan-v2-debug', 'milan-v2-debug.vcek.der', { policy: { allowDebug: true } });
    expect(dbg.ok).toBe(true);
  });

  it('milan-v3-vlek: ARK → ASVK → VLEK; valid before 2025-12-10, expiry reported after', () => {
    const before = verify('milan-v3-vlek', 'milan-v3-vlek.vlek.der', {
      asOf: new Date('2025-06-01T00:00:00Z'),
    });
    expect(before.checks.filter((c) => !c.ok)).toEqual([]);
    expect(before.leaf.kind).toBe('VLEK');
    expect(before.report.signingKey).toBe('VLEK');
    expect(before.report.vmpl).toBe(1);
    expect(before.report.chipId.every((b) => b === 0)).toBe(true);
    expect(before.extensions.cspID).toMatch(/amazonaws/);
    const now = verify('milan-v3-vlek', 'milan-v3-vlek.vlek.der', { asOf: new Date('2026-01-01T00:00:00Z') });
    expect(failedNames(now)).toEqual(['validity']);
    expect(now.checks.find((c) => c.name === 'validity')?.detail).toMatch(/SEV-VLEK expired on 2025-12-10/);
    const byDefault = verify('milan-v3-vlek', 'milan-v3-vlek.vlek.der');
    if (Date.now() > Date.parse('2025-12-10T22:14:21Z')) expect(failedNames(byDefault)).toEqual(['validity']);
  });

  it('policy expectations: measurement, report data, host data, minimum TCB', () => {
    const rel = verify('milan-v3-oc-release', 'milan-v3-oc.vcek.der');
    const stg = verify('milan-v3-oc-staging', 'milan-v3-oc.vcek.der');
    const ok = verify('milan-v3-rk-release', 'milan-v3-rk.vcek.der', {
      policy: {
        measurement: rel.report.measurement,
        reportData: rel.report.reportData.subarray(0, 0),
        hostData: Buffer.alloc(0),
        minimumTcb: { bootloader: 4, snp: 24, microcode: 219 },
      },
    });
    // same-named stages share a measurement
    expect(ok.checks.find((c) => c.name === 'measurement')?.ok).toBe(true);
    expect(ok.checks.find((c) => c.name === 'minimum-tcb')?.ok).toBe(true);
    const bad = verify('milan-v3-oc-staging', 'milan-v3-oc.vcek.der', {
      policy: {
        measurement: rel.report.measurement,
        minimumTcb: { microcode: 220 },
        reportData: Buffer.from([9]),
      },
    });
    expect(rel.report.measurement.equals(stg.report.measurement)).toBe(false);
    expect(failedNames(bad).sort()).toEqual(['measurement', 'minimum-tcb', 'report-data']);
    const raw = verify('milan-v2', 'milan-v2.vcek.der', { policy: { minimumTcb: 0x7408000000000003n } });
    expect(failedNames(raw)).toEqual(['minimum-tcb']);
  });
});

describe('tampering fails, naming the check', () => {
  it('flipping bit 7 of byte 21 of milan-v2 breaks the signature', () => {
    const report = Buffer.from(read('milan-v2.report.bin'));
    report[21] = (report[21] as number) ^ 0x80;
    const res = verifySnpReport({ report, certificate: read('milan-v2.vcek.der'), roots: ROOTS });
    expect(failedNames(res)).toContain('signature');
  });

  it('xor 0xff into byte 40 of the VCEK breaks the chain', () => {
    const certificate = Buffer.from(read('milan-v2.vcek.der'));
    certificate[40] = (certificate[40] as number) ^ 0xff;
    const res = verifySnpReport({ report: read('milan-v2.report.bin'), certificate, roots: ROOTS });
    expect(failedNames(res)).toContain('chain');
  });

  it('milan-v2-reported-tcb: +1 at byte 42 breaks the signature, +1 at byte 384 also the TCB match', () => {
    const a = Buffer.from(read('milan-v2-reported-tcb.report.bin'));
    a[42] = ((a[42] as number) + 1) & 0xff;
    const ra = verifySnpReport({
      report: a,
      certificate: read('milan-v2-reported-tcb.vcek.der'),
      roots: ROOTS,
    });
    expect(failedNames(ra)).toEqual(['signature']);
    const b = Buffer.from(read('milan-v2-reported-tcb.report.bin'));
    b[384] = ((b[384] as number) + 1) & 0xff;
    const rb = verifySnpReport({
      report: b,
      certificate: read('milan-v2-reported-tcb.vcek.der'),
      roots: ROOTS,
    });
    expect(failedNames(rb)).toEqual(['signature', 'tcb']);
  });

  it('single-bit flips over the signed bytes and R/S fail the signature (fast-check sample)', () => {
    const orig = read('genoa-v3.report.bin');
    const certificate = read('genoa-v3.vcek.pem');
    const roots = rootsFor('genoa');
    const positions = fc.oneof(
      fc.integer({ min: 0, max: SNP_REPORT_SIGNED_LENGTH - 1 }),
      fc.integer({ min: 0x2a0, max: 0x2a0 + 47 }),
      fc.integer({ min: 0x2e8, max: 0x2e8 + 47 }),
    );
    fc.assert(
      fc.property(positions, fc.integer({ min: 0, max: 7 }), (pos, bit) => {
        const report = Buffer.from(orig);
        report[pos] = (report[pos] as number) ^ (1 << bit);
        let res;
        try {
          res = verifySnpReport({ report, certificate, roots });
        } catch (err) {
          // a flip into a reserved (must-be-zero) byte is refused by the decoder, naming the field
          expect(err).toBeInstanceOf(AbiDecodeError);
          return;
        }
        expect(res.ok).toBe(false);
        expect(res.failed).toContain('signature');
      }),
      { numRuns: 150, seed: 42 },
    );
  });

  it('mismatched certificates: another chip’s VCEK, another generation’s roots, VCEK for a VLEK report', () => {
    const other = verify('milan-v2', 'milan-v3-cb.vcek.der');
    expect(failedNames(other)).toEqual(expect.arrayContaining(['signature', 'hwid', 'tcb']));
    const wrongRoots = verify('genoa-v3', 'genoa-v3.vcek.pem', { roots: rootsFor('milan') });
    expect(failedNames(wrongRoots)).toEqual(expect.arrayContaining(['chain', 'validity']));
    expect(wrongRoots.checks.find((c) => c.name === 'chain')?.detail).toMatch(
      /no ASK\/ASVK in milan signs SEV-VCEK/,
    );
    const vlekReport = verify('milan-v3-vlek', 'milan-v3-cb.vcek.der');
    expect(vlekReport.checks.find((c) => c.name === 'signature')?.detail).toMatch(
      /signed by VLEK, the certificate is a VCEK/,
    );
    const turinOnMilan = verify('turin-v5', 'milan-v2.vcek.der');
    expect(turinOnMilan.ok).toBe(false);
  });

  it('both synthetic hwID encodings parse to the same 64 bytes, and neither verifies', () => {
    const raw = decodeAmdCertExtensions(read('synthetic-vcek-hwid-raw.der'));
    const wrapped = decodeAmdCertExtensions(read('synthetic-vcek-hwid-wrapped.der'));
    expect(raw.hwIDEncoding).toBe('raw');
    expect(wrapped.hwIDEncoding).toBe('wrapped');
    const expected = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
    expect(wrapped.hwID).toEqual(expected);
    expect(raw.hwID?.length).toBe(64);
    for (const cert of ['synthetic-vcek-hwid-raw.der', 'synthetic-vcek-hwid-wrapped.der']) {
      const res = verify('milan-v2', cert);
      expect(res.ok).toBe(false);
      expect(failedNames(res)).toEqual(expect.arrayContaining(['signature', 'chain']));
    }
  });
});

describe('decoders raise typed errors only', () => {
  it('TCB_VERSION round-trips in both layouts', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (raw) => {
        for (const layout of ['milan-genoa', 'turin'] as const) {
          const t = decodeTcb(raw, layout);
          const reserved = layout === 'turin' ? 0x00ffffff00000000n : 0x0000ffffffff0000n;
          expect(encodeTcb(t)).toBe(raw & ~reserved);
        }
      }),
    );
  });

  it('wrong sizes and unknown versions name the field', () => {
    expect(() => decodeSnpReport(Buffer.alloc(100))).toThrow(/expected 1184 \(0x4a0\) bytes, got 100/);
    const bad = Buffer.from(read('milan-v2.report.bin'));
    bad.writeUInt32LE(7, 0);
    expect(() => decodeSnpReport(bad)).toThrow(AbiDecodeError);
    expect(() => decodeSnpReport(bad)).toThrow(/field version at offset 0x0/);
  });

  it('fuzzed reports decode or throw AbiDecodeError', () => {
    const base = read('turin-v5.report.bin');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: SNP_REPORT_SIZE + 8 }),
          fc
            .array(fc.tuple(fc.nat(SNP_REPORT_SIZE - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 })
            .map((edits) => {
              const b = Buffer.from(base);
              for (const [i, v] of edits) b[i] = v;
              return b;
            }),
        ),
        (buf) => {
          try {
            decodeSnpReport(buf);
          } catch (err) {
            expect(err).toBeInstanceOf(AbiDecodeError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('fuzzed certificates parse or throw AbiDecodeError', () => {
    const base = read('milan-v2.vcek.der');
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat(base.length),
        (edits, cut) => {
          const b = Buffer.from(base.subarray(0, cut));
          for (const [i, v] of edits) if (i < b.length) b[i] = v;
          try {
            x509Extensions(b);
            decodeAmdCertExtensions(b);
          } catch (err) {
            expect(err).toBeInstanceOf(AbiDecodeError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

interface Run {
  out: string;
  err: string;
  exitCode: number;
}

function run(args: string[]): Run {
  let out = '';
  let err = '';
  const owner = new Command('owner')
    .exitOverride()
    .configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (err += s) });
  addVerifyReportCommand(owner);
  let exitCode = 0;
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  process.exitCode = undefined;
  try {
    owner.parse(['verify-report', ...args], { from: 'user' });
    exitCode = Number(process.exitCode ?? 0);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    exitCode = e.exitCode;
  } finally {
    stderr.mockRestore();
    process.exitCode = undefined;
  }
  return { out, err, exitCode };
}

describe('owner verify-report', () => {
  it('prints every field and PASS for each check; exit 0', () => {
    const r = run([
      '--report',
      join(REPORTS, 'turin-v5.report.bin'),
      '--cert',
      join(REPORTS, 'turin-v5.vcek.der'),
      '--roots',
      ROOTS_DIR,
    ]);
    expect(r.exitCode).toBe(0);
    expect(r.out).toMatch(/REPORTED_TCB\s+0x4700000002000100 {2}\(fmc 0, bl 1, tee 0, snp 2, ucode 71\)/);
    expect(r.out).toMatch(/CURRENT_MIT_VECTOR/);
    expect(r.out).toMatch(/PASS {2}signature/);
    expect(r.out).toMatch(/The report verifies/);
  });

  it('a PEM chain with --ark/--ask, and --json', () => {
    const r = run([
      '--report',
      join(REPORTS, 'milan-v2-cloud.report.bin'),
      '--cert',
      join(REPORTS, 'milan-v2-cloud.vcek-chain.pem'),
      '--ark',
      join(ROOTS_DIR, 'milan', 'ark.pem'),
      '--ask',
      join(ROOTS_DIR, 'milan', 'ask.pem'),
      '--json',
    ]);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.out) as {
      ok: boolean;
      checks: { name: string; ok: boolean }[];
      report: { policy: string };
    };
    expect(j.ok).toBe(true);
    expect(j.report.policy).toMatch(/^0x/);
    expect(j.checks.every((c) => c.ok)).toBe(true);
  });

  it('the debug report: exit 1 by default, 0 with --allow-debug; VLEK with --as-of', () => {
    const args = [
      '--report',
      join(REPORTS, 'milan-v2-debug.report.bin'),
      '--cert',
      join(REPORTS, 'milan-v2-debug.vcek.der'),
      '--roots',
      ROOTS_DIR,
    ];
    const def = run(args);
    expect(def.exitCode).toBe(1);
    expect(def.out).toMatch(/FAIL {2}debug/);
    expect(def.err).toMatch(/error: report does not verify: debug:/);
    expect(run([...args, '--allow-debug']).exitCode).toBe(0);
    const vlek = [
      '--report',
      join(REPORTS, 'milan-v3-vlek.report.bin'),
      '--cert',
      join(REPORTS, 'milan-v3-vlek.vlek.der'),
      '--roots',
      ROOTS_DIR,
    ];
    expect(run([...vlek, '--as-of', '2025-06-01']).exitCode).toBe(0);
    expect(run([...vlek, '--as-of', '2026-01-01']).exitCode).toBe(1);
  });

  it('bad input exits 2 with a clear message and no stack trace', () => {
    const missing = run([
      '--report',
      join(REPORTS, 'nope.bin'),
      '--cert',
      join(REPORTS, 'milan-v2.vcek.der'),
      '--roots',
      ROOTS_DIR,
    ]);
    expect(missing.exitCode).toBe(2);
    expect(missing.err).toMatch(/cannot read report .*nope\.bin: no such file/);
    const wrongFile = run([
      '--report',
      join(REPORTS, 'milan-v2.vcek.der'),
      '--cert',
      join(REPORTS, 'milan-v2.vcek.der'),
      '--roots',
      ROOTS_DIR,
    ]);
    expect(wrongFile.exitCode).toBe(2);
    expect(wrongFile.err).toMatch(/SNP attestation report: field report at offset 0x0: expected 1184/);
    expect(wrongFile.err).not.toMatch(/\bat .*\.ts:\d+/);
    const noRoots = run([
      '--report',
      join(REPORTS, 'milan-v2.report.bin'),
      '--cert',
      join(REPORTS, 'milan-v2.vcek.der'),
    ]);
    expect(noRoots.exitCode).toBe(2);
    const badDate = run([
      '--report',
      join(REPORTS, 'milan-v2.report.bin'),
      '--cert',
      join(REPORTS, 'milan-v2.vcek.der'),
      '--roots',
      ROOTS_DIR,
      '--as-of',
      'soon',
    ]);
    expect(badDate.exitCode).toBe(2);
    expect(badDate.err).toMatch(/--as-of soon is not a date/);
  });
});
