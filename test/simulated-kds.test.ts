// The simulated AMD KDS as a request handler: AMD's URL shapes, the cert chain (ASK then ARK), VCEKs for
// registered chips at any TCB, AMD-like 400/404 answers, and no VCEK private scalar or chip secret in
// anything it says.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { certificatesFromPemOrDer, decodeAmdCertExtensions, encodeTcb } from '../src/abi/index.js';
import { SimulatedKds, kdsCertChainPath, kdsVcekPath } from '../src/psp/index.js';
import { chipSecret } from '../src/psp/chip-fuses.js';
import { simulatedAmdRoot } from '../src/psp/simulated-amd-root.js';
import {
  type SnpProduct,
  SNP_PRODUCT_NAMES,
  chipIdFromSecret,
  hwIdFromChipId,
  vcekPrivateKey,
  vcekPublicKey,
} from '../src/psp/vcek.js';

const MILAN_TCB = encodeTcb({ layout: 'milan-genoa', bootloader: 3, tee: 0, snp: 8, microcode: 115 });
const TURIN_TCB = encodeTcb({ layout: 'turin', fmc: 1, bootloader: 1, tee: 0, snp: 2, microcode: 71 });
const TCB: Record<SnpProduct, bigint> = { milan: MILAN_TCB, genoa: MILAN_TCB + 1n, turin: TURIN_TCB };

const kds = new SimulatedKds({ root: simulatedAmdRoot() });
const chips = Object.fromEntries(
  SNP_PRODUCT_NAMES.map((p) => [p, kds.registerSeededChip(`kds-${p}`, p)]),
) as Record<SnpProduct, ReturnType<SimulatedKds['registerSeededChip']>>;
const hwIdOf = (p: SnpProduct): Buffer => Buffer.from(chips[p].hwId, 'hex');
const get = (url: string): ReturnType<SimulatedKds['handle']> => kds.handle('GET', url);

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('SimulatedKds: certificates', () => {
  it.each(SNP_PRODUCT_NAMES.map((p) => [p]))('%s cert_chain: PEM, the ASK then the ARK', (p) => {
    const res = get(kdsCertChainPath(p));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-pem-file');
    expect(Number(res.headers['content-length'])).toBe(res.body.length);
    const [ask, ark, ...rest] = certificatesFromPemOrDer(res.body);
    expect(rest).toEqual([]);
    const root = simulatedAmdRoot().snpCertificates(p);
    expect(ask?.equals(root.ask)).toBe(true);
    expect(ark?.equals(root.ark)).toBe(true);
    expect(kdsCertChainPath(p)).toBe(`/vcek/v1/${p[0]?.toUpperCase()}${p.slice(1)}/cert_chain`);
  });

  it.each(SNP_PRODUCT_NAMES.map((p) => [p]))(
    '%s VCEK: DER for the chip and TCB, the same bytes twice',
    (p) => {
      const path = kdsVcekPath(p, hwIdOf(p), TCB[p]);
      const res = get(path);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/x-x509-ca-cert');
      const cert = new X509Certificate(res.body);
      const secret = chipSecret(`kds-${p}`, undefined);
      expect(cert.publicKey.export({ format: 'jwk' })).toEqual(
        vcekPublicKey(secret, p, TCB[p]).export({ format: 'jwk' }),
      );
      expect(cert.verify(new X509Certificate(simulatedAmdRoot().snpCertificates(p).ask).publicKey)).toBe(
        true,
      );
      const ext = decodeAmdCertExtensions(res.body);
      expect(ext.hwID?.equals(hwIdFromChipId(chipIdFromSecret(secret), p))).toBe(true);
      expect(get(path).body.equals(res.body)).toBe(true);
      // An absolute URL (what an HTTP server hands over) is answered the same.
      expect(get(`http://127.0.0.1:8080${path}`).body.equals(res.body)).toBe(true);
    },
  );

  it('writes URLs the way go-sev-guest does (Turin: 8-byte hwID, fmcSPL first)', () => {
    expect(kdsVcekPath('milan', hwIdOf('milan'), MILAN_TCB)).toBe(
      `/vcek/v1/Milan/${chips.milan.hwId}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115`,
    );
    expect(chips.milan.hwId).toHaveLength(128);
    expect(chips.turin.hwId).toHaveLength(16);
    expect(kdsVcekPath('turin', hwIdOf('turin'), TURIN_TCB)).toBe(
      `/vcek/v1/Turin/${chips.turin.hwId}?fmcSPL=1&blSPL=1&teeSPL=0&snpSPL=2&ucodeSPL=71`,
    );
  });

  it('accepts the SPL parameters in any order, and upper-case hex', () => {
    const res = get(
      `/vcek/v1/Milan/${chips.milan.hwId.toUpperCase()}?ucodeSPL=115&snpSPL=8&teeSPL=0&blSPL=3`,
    );
    expect(res.status).toBe(200);
    expect(res.body.equals(get(kdsVcekPath('milan', hwIdOf('milan'), MILAN_TCB)).body)).toBe(true);
  });

  it('HEAD answers the headers with an empty body', () => {
    const res = kds.handle('HEAD', kdsCertChainPath('genoa'));
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(0);
    expect(Number(res.headers['content-length'])).toBe(get(kdsCertChainPath('genoa')).body.length);
  });

  it('takes validity from its clock, and lists its chips', () => {
    const at = new Date('2025-01-02T03:04:05Z');
    const k = new SimulatedKds({ root: simulatedAmdRoot(), now: () => at });
    const chip = k.registerSeededChip('clock', 'Milan');
    expect(k.chips).toEqual([chip]);
    const res = k.handle('GET', kdsVcekPath('milan', Buffer.from(chip.hwId, 'hex'), MILAN_TCB));
    expect(new Date(new X509Certificate(res.body).validFrom).toISOString()).toBe('2025-01-02T03:04:05.000Z');
  });

  it('registers the chip of a platform state directory (fuses.bin), read only', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sevsim-kds-'));
    dirs.push(dir);
    const k = new SimulatedKds({ root: simulatedAmdRoot() });
    expect(() => k.registerStateDirectory(dir, 'milan')).toThrow(/no chip/);
    const secret = chipSecret(undefined, dir); // the platform fuses its chip
    const chip = k.registerStateDirectory(dir, 'milan');
    expect(chip.hwId).toBe(chipIdFromSecret(secret).toString('hex'));
  });
});

describe('SimulatedKds: errors', () => {
  const hw = chips.milan.hwId;
  const q = 'blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115';
  const cases: [string, string, number, RegExp][] = [
    ['unknown product', `/vcek/v1/Rome/${hw}?${q}`, 404, /unknown product "Rome"/],
    ['lower-case product', '/vcek/v1/milan/cert_chain', 404, /unknown product/],
    ['unknown path', '/vcek/v2/Milan/cert_chain', 404, /no such resource/],
    ['root path', '/', 404, /no such resource/],
    ['trailing slash', '/vcek/v1/Milan/cert_chain/', 404, /no such resource/],
    ['VLEK', `/vlek/v1/Milan/cert?${q}`, 404, /cloud providers/],
    ['CRL', '/vcek/v1/Milan/crl', 404, /no CRL/],
    ['unknown chip', `/vcek/v1/Milan/${'ab'.repeat(64)}?${q}`, 404, /no Milan chip/],
    ['zero hwID (MASK_CHIP_ID)', `/vcek/v1/Milan/${'00'.repeat(64)}?${q}`, 404, /no Milan chip/],
    ['Milan chip asked as Genoa', `/vcek/v1/Genoa/${hw}?${q}`, 404, /no Genoa chip/],
    ['hwID too short', `/vcek/v1/Milan/${hw.slice(2)}?${q}`, 400, /128 hex digits/],
    ['hwID not hex', `/vcek/v1/Milan/${'zz'.repeat(64)}?${q}`, 400, /hex digits/],
    ['64-byte hwID on Turin', `/vcek/v1/Turin/${hw}?fmcSPL=0&${q}`, 400, /16 hex digits/],
    ['missing SPL', `/vcek/v1/Milan/${hw}?blSPL=3&teeSPL=0&snpSPL=8`, 400, /missing ucodeSPL/],
    ['no query', `/vcek/v1/Milan/${hw}`, 400, /missing blSPL, teeSPL, snpSPL, ucodeSPL/],
    ['SPL too large', `/vcek/v1/Milan/${hw}?blSPL=256&teeSPL=0&snpSPL=8&ucodeSPL=115`, 400, /0-255/],
    ['SPL negative', `/vcek/v1/Milan/${hw}?blSPL=-1&teeSPL=0&snpSPL=8&ucodeSPL=115`, 400, /0-255/],
    ['SPL not a number', `/vcek/v1/Milan/${hw}?blSPL=x&teeSPL=0&snpSPL=8&ucodeSPL=115`, 400, /0-255/],
    ['SPL empty', `/vcek/v1/Milan/${hw}?blSPL=&teeSPL=0&snpSPL=8&ucodeSPL=115`, 400, /0-255/],
    ['SPL twice', `/vcek/v1/Milan/${hw}?${q}&blSPL=3`, 400, /given 2 times/],
    ['unknown parameter', `/vcek/v1/Milan/${hw}?${q}&spl4=0`, 400, /unexpected parameter spl4/],
    ['fmcSPL on Milan', `/vcek/v1/Milan/${hw}?fmcSPL=0&${q}`, 400, /unexpected parameter fmcSPL/],
    ['Turin without fmcSPL', `/vcek/v1/Turin/${chips.turin.hwId}?${q}`, 400, /missing fmcSPL/],
  ];

  it.each(cases)('%s → %i', (_name, url, status, detail) => {
    const res = get(url);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text = res.body.toString();
    expect(text.startsWith(`${status} - ${status === 404 ? 'Not Found' : 'Bad Request'}\n`)).toBe(true);
    expect(text).toMatch(detail);
  });

  it('answers other methods with 405 and Allow', () => {
    const res = kds.handle('POST', kdsCertChainPath('milan'));
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD');
  });

  it('never throws, whatever the URL', () => {
    for (const url of [
      '',
      '//',
      'http://[bad',
      '/vcek/v1/%zz/cert_chain',
      '/vcek/v1/Milan/%00?blSPL=%ff',
      '?x',
    ]) {
      expect(() => get(url)).not.toThrow();
    }
  });
});

describe('SimulatedKds: key secrecy', () => {
  it('no 8-byte piece of a VCEK private scalar or of a chip secret is in anything it answers or shows', () => {
    const outputs: Buffer[] = [];
    const secrets: Buffer[] = [];
    const record = (r: ReturnType<SimulatedKds['handle']>): void => {
      outputs.push(r.body, Buffer.from(JSON.stringify(r.headers)));
    };
    for (const p of SNP_PRODUCT_NAMES) {
      const secret = chipSecret(`kds-${p}`, undefined);
      secrets.push(secret);
      for (const tcb of [TCB[p], TCB[p] + (1n << 56n), 0n]) {
        // The scalar, derived here through the PSP's own function.
        const d = Buffer.from(vcekPrivateKey(secret, p, tcb).export({ format: 'jwk' }).d ?? '', 'base64url');
        expect(d.length).toBe(48);
        secrets.push(d);
        record(get(kdsVcekPath(p, hwIdOf(p), tcb)));
      }
      record(get(kdsCertChainPath(p)));
      record(get(`/vcek/v1/${p}/${chips[p].hwId}?blSPL=1`)); // lower-case product: 404
      record(kds.handle('DELETE', kdsCertChainPath(p)));
    }
    record(get(`/vcek/v1/Milan/${'ab'.repeat(64)}?blSPL=1&teeSPL=0&snpSPL=0&ucodeSPL=0`)); // unknown chip
    outputs.push(
      Buffer.from(JSON.stringify(kds)),
      Buffer.from(JSON.stringify(simulatedAmdRoot())),
      Buffer.from(inspect(kds, { showHidden: true, depth: Infinity })),
      Buffer.from(inspect(kds.chips, { showHidden: true, depth: Infinity })),
    );
    const all = Buffer.concat(outputs);
    const text = all.toString('latin1').toLowerCase();
    for (const s of secrets) {
      for (const form of [s, Buffer.from(s).reverse()]) {
        for (let i = 0; i + 8 <= form.length; i++) {
          const piece = form.subarray(i, i + 8);
          expect(all.includes(piece)).toBe(false);
          expect(text.includes(piece.toString('hex'))).toBe(false);
        }
      }
    }
  });
});
