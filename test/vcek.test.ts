// The VCEK: derived from the chip secret and the TCB through per-component hash sticks; its X.509
// certificate and the simulated ARK/ASK shaped like AMD's real ones; the chain verifies a report signed
// with the derived key against the simulated root and not against AMD's, and AMD's real VCEKs fail
// against the simulated root.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  AMD_OID,
  SNP_REPORT_SIGNED_LENGTH,
  SNP_REPORT_SIZE,
  decodeAmdCertExtensions,
  decodeAmdRootCert,
  decodeSnpReport,
  derRead,
  encodeTcb,
  x509Extensions,
} from '../src/abi/index.js';
import { X509_OID, derToPem } from '../src/abi/der-writer.js';
import { rsaPublicKeyToLe } from '../src/crypto/index.js';
import { type SnpRootSet, snpRootSetFromBundle, verifySnpReport } from '../src/owner/index.js';
import { chipSecret } from '../src/psp/chip-fuses.js';
import { simulatedAmdRoot } from '../src/psp/simulated-amd-root.js';
import {
  type SnpProduct,
  SNP_PRODUCTS,
  SNP_PRODUCT_NAMES,
  SnpProductError,
  VcekTcbError,
  chipIdFromSecret,
  hashStickDescend,
  hashStickSeed,
  hwIdFromChipId,
  snpProduct,
  snpReportChipId,
  tcbComponents,
  vcekPrivateKey,
  vcekPublicKey,
  vcekSignReport,
} from '../src/psp/vcek.js';

const TESTDATA = resolve(import.meta.dirname, '../../shared/testdata');
const realRoots = (p: string): SnpRootSet =>
  snpRootSetFromBundle(p, readFileSync(join(TESTDATA, 'amd-roots', p, 'ask_ark_asvk.pem'))) as SnpRootSet;

const spki = (k: ReturnType<typeof vcekPublicKey>): string =>
  k.export({ type: 'spki', format: 'der' }).toString('hex');

/** Sample TCBs per product (REPORTED_TCB values like the real reports'). */
const TCB: Record<SnpProduct, bigint> = {
  milan: encodeTcb({ layout: 'milan-genoa', bootloader: 3, tee: 0, snp: 8, microcode: 115 }),
  genoa: encodeTcb({ layout: 'milan-genoa', bootloader: 10, tee: 0, snp: 25, microcode: 84 }),
  turin: encodeTcb({ layout: 'turin', fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71 }),
};
/** CPUID family/model a v3 report of each product carries. */
const CPUID: Record<SnpProduct, [number, number]> = {
  milan: [0x19, 0x01],
  genoa: [0x19, 0x11],
  turin: [0x1a, 0x02],
};

/** A v3 report as the firmware would build it, signed with the derived VCEK (built here, not by the PSP). */
function signedReport(secret: Buffer, product: SnpProduct, tcb: bigint): Buffer {
  const r = Buffer.alloc(SNP_REPORT_SIZE);
  r.writeUInt32LE(3, 0x000); // VERSION
  r.writeBigUInt64LE(0x30000n, 0x008); // POLICY: SMT allowed, reserved bit 17
  r.writeUInt32LE(1, 0x034); // SIGNATURE_ALGO: ECDSA P-384 SHA-384
  r.writeBigUInt64LE(tcb, 0x038); // CURRENT_TCB
  r.writeUInt32LE(0, 0x048); // SIGNING_KEY 0 = VCEK
  Buffer.from('sevsim vcek test').copy(r, 0x050); // REPORT_DATA
  r.fill(0xff, 0x160, 0x180); // REPORT_ID_MA: no migration agent
  r.writeBigUInt64LE(tcb, 0x180); // REPORTED_TCB
  r[0x188] = CPUID[product][0];
  r[0x189] = CPUID[product][1];
  snpReportChipId(chipIdFromSecret(secret), product).copy(r, 0x1a0);
  r.writeBigUInt64LE(tcb, 0x1e0); // COMMITTED_TCB
  r.writeBigUInt64LE(tcb, 0x1f0); // LAUNCH_TCB
  const sig = vcekSignReport(secret, product, tcb, r.subarray(0, SNP_REPORT_SIGNED_LENGTH));
  sig.r.copy(r, 0x2a0);
  sig.s.copy(r, 0x2e8);
  return r;
}

function vcekCert(secret: Buffer, product: SnpProduct, tcb: bigint): Buffer {
  return simulatedAmdRoot().issueVcekCertificate({
    product,
    publicKey: vcekPublicKey(secret, product, tcb),
    hwId: hwIdFromChipId(chipIdFromSecret(secret), product),
    tcb,
  });
}

function simulatedRootSet(product: SnpProduct): SnpRootSet {
  const { ark, ask } = simulatedAmdRoot().snpCertificates(product);
  return { name: `simulated-${product}`, ark, ask };
}

describe('VCEK derivation', () => {
  const secret = chipSecret('vcek-1', undefined);

  it('is deterministic per chip secret and TCB, and differs between chips', () => {
    for (const p of SNP_PRODUCT_NAMES) {
      expect(spki(vcekPublicKey(secret, p, TCB[p]))).toBe(
        spki(vcekPublicKey(Buffer.from(secret), p, TCB[p])),
      );
      expect(spki(vcekPublicKey(chipSecret('vcek-2', undefined), p, TCB[p]))).not.toBe(
        spki(vcekPublicKey(secret, p, TCB[p])),
      );
    }
  });

  it('gives a new VCEK for every change of any TCB component', () => {
    for (const p of SNP_PRODUCT_NAMES) {
      const layout = SNP_PRODUCTS[p].tcbLayout;
      const seen = new Set<string>([spki(vcekPublicKey(secret, p, TCB[p]))]);
      const byte: Record<string, number> =
        layout === 'turin'
          ? { fmc: 0, bootloader: 1, tee: 2, snp: 3, microcode: 7 }
          : { bootloader: 0, tee: 1, snp: 6, microcode: 7 };
      for (const c of tcbComponents(p)) {
        const shift = BigInt(8 * (byte[c] as number));
        const bumped = TCB[p] + (1n << shift);
        seen.add(spki(vcekPublicKey(secret, p, bumped)));
      }
      expect(seen.size).toBe(tcbComponents(p).length + 1);
    }
  });

  it('builds on hash sticks: a seed at a lower SPL is reachable from a higher one, not the reverse', () => {
    for (const c of ['bootloader', 'tee', 'snp', 'microcode', 'fmc'] as const) {
      const at10 = hashStickSeed(secret, c, 10);
      expect(hashStickDescend(at10, 10, 3).equals(hashStickSeed(secret, c, 3))).toBe(true);
      expect(hashStickDescend(at10, 10, 10).equals(at10)).toBe(true);
      expect(
        hashStickDescend(hashStickSeed(secret, c, 255), 255, 0).equals(hashStickSeed(secret, c, 0)),
      ).toBe(true);
      expect(() => hashStickDescend(at10, 10, 11)).toThrow(VcekTcbError);
      expect(hashStickSeed(secret, c, 10).equals(hashStickSeed(secret, c, 11))).toBe(false);
    }
    // Components have independent sticks.
    expect(hashStickSeed(secret, 'tee', 5).equals(hashStickSeed(secret, 'snp', 5))).toBe(false);
  });

  it('refuses TCBs with reserved bytes set, and SPLs out of range', () => {
    expect(() => vcekPrivateKey(secret, 'milan', TCB.milan | (1n << 16n))).toThrow(/byte 2 is reserved/);
    expect(() => vcekPrivateKey(secret, 'turin', TCB.turin | (1n << 40n))).toThrow(VcekTcbError);
    expect(() => vcekPrivateKey(secret, 'milan', 1n << 64n)).toThrow(VcekTcbError);
    expect(() => hashStickSeed(secret, 'tee', 256)).toThrow(VcekTcbError);
  });

  it('names products in either spelling and refuses others', () => {
    expect(snpProduct('Milan').product).toBe('milan');
    expect(snpProduct('turin').kdsName).toBe('Turin');
    for (const bad of ['rome', 'naples', 'constructor', '__proto__', ''])
      expect(() => snpProduct(bad)).toThrow(SnpProductError);
  });

  it('has one chip-ID derivation: 64 bytes, Turin hwID = its first 8, Turin CHIP_ID zero-padded', () => {
    const id = chipIdFromSecret(secret);
    expect(id.length).toBe(64);
    expect(hwIdFromChipId(id, 'milan').equals(id)).toBe(true);
    expect(hwIdFromChipId(id, 'turin').equals(id.subarray(0, 8))).toBe(true);
    const turinChipId = snpReportChipId(id, 'turin');
    expect(turinChipId.subarray(0, 8).equals(id.subarray(0, 8))).toBe(true);
    expect(turinChipId.subarray(8).every((b) => b === 0)).toBe(true);
  });
});

describe('simulated ARK and ASK in X.509', () => {
  const root = simulatedAmdRoot();

  it.each(SNP_PRODUCT_NAMES.map((p) => [p]))('%s: shaped like AMD’s and over the SEV-format keys', (p) => {
    const { ark, ask } = root.snpCertificates(p);
    const arkX = new X509Certificate(ark);
    const askX = new X509Certificate(ask);
    const name = SNP_PRODUCTS[p].kdsName;
    expect(arkX.subject).toBe(
      `OU=SIMULATED\nC=US\nL=Santa Clara\nST=CA\nO=Advanced Micro Devices\nCN=ARK-${name}-SIMULATED`,
    );
    expect(askX.subject).toContain(`CN=SEV-${name}-SIMULATED`);
    expect(askX.issuer).toBe(arkX.subject);
    expect(arkX.verify(arkX.publicKey)).toBe(true);
    expect(askX.verify(arkX.publicKey)).toBe(true);
    expect(askX.checkIssued(arkX)).toBe(true);
    expect(arkX.ca && askX.ca).toBe(true);
    // The same RSA-4096 keys as the AMD root-key format certificates.
    const sevArk = decodeAmdRootCert(root.ark);
    const sevAsk = decodeAmdRootCert(root.ask);
    expect(rsaPublicKeyToLe(arkX.publicKey, 512, 512).modulus.equals(sevArk.modulus)).toBe(true);
    expect(rsaPublicKeyToLe(askX.publicKey, 512, 512).modulus.equals(sevAsk.modulus)).toBe(true);
    // AMD's fields: serials 0xN0000/0xN0001, the PSS parameters with explicit trailerField, the same
    // extensions in the same order (less the CRL distribution point the simulated root has no CRL for).
    expect(arkX.serialNumber).toBe(`0${SNP_PRODUCTS[p].serialPrefix}0000`);
    expect(askX.serialNumber).toBe(`0${SNP_PRODUCTS[p].serialPrefix}0001`);
    const real = (f: string): Buffer =>
      Buffer.from(new X509Certificate(readFileSync(join(TESTDATA, 'amd-roots', p, f))).raw);
    const sigAlg = (der: Buffer): string => {
      const tbs = derRead(der, derRead(der, 0).contentStart);
      const version = derRead(der, tbs.contentStart);
      const serial = derRead(der, version.end);
      const alg = derRead(der, serial.end);
      return der.subarray(alg.start, alg.end).toString('hex');
    };
    expect(sigAlg(ark)).toBe(sigAlg(real('ark.pem')));
    expect(sigAlg(ask)).toBe(sigAlg(real('ask.pem')));
    const shape = (der: Buffer): string[] =>
      x509Extensions(der)
        .filter((e) => e.oid !== '2.5.29.31') // CRL distribution points
        .map((e) => {
          const fixed = e.oid === X509_OID.keyUsage || e.oid === X509_OID.basicConstraints;
          return `${e.oid}${e.critical ? ' critical' : ''}${fixed ? ` ${e.value.toString('hex')}` : ''}`;
        });
    expect(shape(ark)).toEqual(shape(real('ark.pem')));
    expect(shape(ask)).toEqual(shape(real('ask.pem')));
    expect(new Date(arkX.validTo).getUTCFullYear() - new Date(arkX.validFrom).getUTCFullYear()).toBe(25);
  });

  it('the roots cannot verify each other: AMD’s real ASK does not sign the simulated one', () => {
    const sim = new X509Certificate(root.snpCertificates('milan').ask);
    const amdArk = new X509Certificate(readFileSync(join(TESTDATA, 'amd-roots/milan/ark.pem')));
    expect(sim.verify(amdArk.publicKey)).toBe(false);
  });
});

describe('VCEK certificates', () => {
  const secret = chipSecret('vcek-cert', undefined);
  const realVcek: Record<SnpProduct, string> = {
    milan: 'milan-v3-cb.vcek.der',
    genoa: 'genoa-v5.vcek.der',
    turin: 'turin-v5.vcek.der',
  };

  it.each(SNP_PRODUCT_NAMES.map((p) => [p]))('%s: AMD’s fields, extensions and order', (p) => {
    const der = vcekCert(secret, p, TCB[p]);
    const x = new X509Certificate(der);
    const real = readFileSync(join(TESTDATA, 'snp-reports', realVcek[p]));
    const realX = new X509Certificate(real);
    expect(x.subject).toBe(realX.subject.replace('OU=Engineering', 'OU=SIMULATED'));
    expect(x.issuer).toBe(realX.issuer.replace('OU=Engineering', 'OU=SIMULATED') + '-SIMULATED');
    expect(x.serialNumber).toBe(realX.serialNumber); // 0, as every VCEK AMD issues
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    expect(spki(x.publicKey)).toBe(spki(vcekPublicKey(secret, p, TCB[p])));
    const years = new Date(x.validTo).getTime() - new Date(x.validFrom).getTime();
    const realYears = new Date(realX.validTo).getTime() - new Date(realX.validFrom).getTime();
    expect(Math.abs(years - realYears)).toBeLessThanOrEqual(2 * 86400_000); // 7 years, leap days aside
    // The same AlgorithmIdentifier bytes (RSASSA-PSS SHA-384, MGF1 SHA-384, salt 48, no trailerField).
    const tbsStart = derRead(der, 0).contentStart;
    const algOf = (d: Buffer): string => {
      const version = derRead(d, derRead(d, tbsStart).contentStart);
      const alg = derRead(d, derRead(d, version.end).end);
      return d.subarray(alg.start, alg.end).toString('hex');
    };
    expect(algOf(der)).toBe(algOf(real));
    // AMD's extensions in AMD's order, each encoded as AMD encodes it (hwID raw).
    expect(x509Extensions(der).map((e) => e.oid)).toEqual(x509Extensions(real).map((e) => e.oid));
    const ext = decodeAmdCertExtensions(der);
    const realExt = decodeAmdCertExtensions(real);
    expect(ext.productName).toBe(realExt.productName);
    expect(ext.structVersion).toBe(realExt.structVersion);
    expect(ext.hwIDEncoding).toBe('raw');
    expect(ext.hwID?.equals(hwIdFromChipId(chipIdFromSecret(secret), p))).toBe(true);
    const layout = SNP_PRODUCTS[p].tcbLayout;
    const b = (i: number): number => Number((TCB[p] >> BigInt(8 * i)) & 0xffn);
    if (layout === 'turin') {
      expect([ext.fmcSPL, ext.blSPL, ext.teeSPL, ext.snpSPL, ext.ucodeSPL]).toEqual([
        b(0),
        b(1),
        b(2),
        b(3),
        b(7),
      ]);
    } else {
      expect([ext.blSPL, ext.teeSPL, ext.snpSPL, ext.ucodeSPL]).toEqual([b(0), b(1), b(6), b(7)]);
      expect(ext.fmcSPL).toBeUndefined();
    }
    const spl4 = x509Extensions(der).find((e) => e.oid === AMD_OID.spl4);
    expect(spl4?.value.toString('hex')).toBe(layout === 'turin' ? undefined : '020100');
  });

  it('refuses a private key, a wrong-length hwID and a TCB with reserved bytes', () => {
    const root = simulatedAmdRoot();
    const hwId = hwIdFromChipId(chipIdFromSecret(secret), 'milan');
    const base = {
      product: 'milan' as const,
      publicKey: vcekPublicKey(secret, 'milan', TCB.milan),
      hwId,
      tcb: TCB.milan,
    };
    expect(() =>
      root.issueVcekCertificate({ ...base, publicKey: vcekPrivateKey(secret, 'milan', TCB.milan) }),
    ).toThrow(/public key/);
    expect(() => root.issueVcekCertificate({ ...base, hwId: hwId.subarray(0, 8) })).toThrow(/64 bytes/);
    expect(() => root.issueVcekCertificate({ ...base, tcb: TCB.milan | (1n << 24n) })).toThrow(/reserved/);
    expect(() =>
      root.issueVcekCertificate({
        ...base,
        publicKey: new X509Certificate(root.snpCertificates('milan').ask).publicKey,
      }),
    ).toThrow(/P-384/);
  });
});

describe('the simulated chain in verifySnpReport', () => {
  const secret = chipSecret('vcek-chain', undefined);

  it.each(SNP_PRODUCT_NAMES.map((p) => [p]))(
    '%s: a report signed with the derived VCEK verifies against the simulated root, not AMD’s',
    (p) => {
      const report = signedReport(secret, p, TCB[p]);
      expect(decodeSnpReport(report).signingKey).toBe('VCEK');
      const certificate = vcekCert(secret, p, TCB[p]);
      const ok = verifySnpReport({ report, certificate, roots: [simulatedRootSet(p)] });
      expect(ok.failed).toEqual([]);
      expect(ok.ok).toBe(true);
      expect(ok.checks.find((c) => c.name === 'chain')?.detail).toContain(
        `ARK-${SNP_PRODUCTS[p].kdsName}-SIMULATED`,
      );
      const amd = verifySnpReport({ report, certificate, roots: [realRoots(p)] });
      expect(amd.failed).toContain('chain');
      // The simulated ASK and ARK shipped with the VCEK (as a PEM chain) do not help against AMD's roots.
      const { ark, ask } = simulatedAmdRoot().snpCertificates(p);
      const bundled = Buffer.from(derToPem(certificate) + derToPem(ask) + derToPem(ark));
      expect(verifySnpReport({ report, certificate: bundled, roots: [realRoots(p)] }).failed).toContain(
        'chain',
      );
    },
  );

  it('a VCEK for another TCB or chip fails the signature and TCB/hwID checks', () => {
    const report = signedReport(secret, 'milan', TCB.milan);
    const otherTcb = TCB.milan + 1n;
    const r1 = verifySnpReport({
      report,
      certificate: vcekCert(secret, 'milan', otherTcb),
      roots: [simulatedRootSet('milan')],
    });
    expect(r1.failed).toEqual(expect.arrayContaining(['signature', 'tcb']));
    const r2 = verifySnpReport({
      report,
      certificate: vcekCert(chipSecret('someone-else', undefined), 'milan', TCB.milan),
      roots: [simulatedRootSet('milan')],
    });
    expect(r2.failed).toEqual(expect.arrayContaining(['signature', 'hwid']));
  });

  it('AMD’s real VCEKs fail against the simulated root', () => {
    for (const [stem, cert, p] of [
      ['milan-v2', 'milan-v2.vcek.der', 'milan'],
      ['genoa-v5', 'genoa-v5.vcek.der', 'genoa'],
      ['turin-v5', 'turin-v5.vcek.der', 'turin'],
    ] as const) {
      const res = verifySnpReport({
        report: readFileSync(join(TESTDATA, 'snp-reports', `${stem}.report.bin`)),
        certificate: readFileSync(join(TESTDATA, 'snp-reports', cert)),
        roots: [simulatedRootSet(p), ...SNP_PRODUCT_NAMES.map(simulatedRootSet)],
      });
      expect(res.failed).toContain('chain');
      expect(res.checks.find((c) => c.name === 'signature')?.ok).toBe(true); // the report itself is fine
    }
  });
});
