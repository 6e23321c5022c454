// `sevsim kds` over real HTTP on loopback, `sevsim kds --export`, and `owner verify-report --kds`: a
// report signed by a simulated chip's VCEK verifies with certificates fetched from the simulated KDS (or
// with the exported roots), and fails against AMD's real roots.
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  SNP_REPORT_SIGNED_LENGTH,
  SNP_REPORT_SIZE,
  certificatesFromPemOrDer,
  encodeTcb,
} from '../src/abi/index.js';
import { type KdsServer, addKdsCommand, isLoopbackHost, startKdsServer } from '../src/cli/kds-command.js';
import { buildProgram } from '../src/cli/program.js';
import { runCli } from '../src/cli/run.js';
import { SimulatedKds, kdsCertChainPath, kdsVcekPath } from '../src/psp/index.js';
import { chipSecret } from '../src/psp/chip-fuses.js';
import { simulatedAmdRoot } from '../src/psp/simulated-amd-root.js';
import {
  type SnpProduct,
  chipIdFromSecret,
  snpReportChipId,
  vcekPublicKey,
  vcekSignReport,
} from '../src/psp/vcek.js';

const TESTDATA = resolve(import.meta.dirname, '../../shared/testdata');
const AMD_ROOTS = join(TESTDATA, 'amd-roots');
const MILAN_TCB = encodeTcb({ layout: 'milan-genoa', bootloader: 3, tee: 0, snp: 8, microcode: 115 });
const TURIN_TCB = encodeTcb({ layout: 'turin', fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71 });

/** A report signed with the VCEK of the chip of `seed` (v2 without CPUID, or v3 with it). */
function report(seed: string, product: SnpProduct, tcb: bigint, version: 2 | 3): Buffer {
  const secret = chipSecret(seed, undefined);
  const r = Buffer.alloc(SNP_REPORT_SIZE);
  r.writeUInt32LE(version, 0x000);
  r.writeBigUInt64LE(0x30000n, 0x008);
  r.writeUInt32LE(1, 0x034);
  r.writeBigUInt64LE(tcb, 0x038);
  r.fill(0xff, 0x160, 0x180);
  r.writeBigUInt64LE(tcb, 0x180);
  if (version === 3) {
    r[0x188] = product === 'turin' ? 0x1a : 0x19;
    r[0x189] = product === 'genoa' ? 0x11 : product === 'turin' ? 0x02 : 0x01;
  }
  snpReportChipId(chipIdFromSecret(secret), product).copy(r, 0x1a0);
  r.writeBigUInt64LE(tcb, 0x1e0);
  r.writeBigUInt64LE(tcb, 0x1f0);
  const sig = vcekSignReport(secret, product, tcb, r.subarray(0, SNP_REPORT_SIGNED_LENGTH));
  sig.r.copy(r, 0x2a0);
  sig.s.copy(r, 0x2e8);
  return r;
}

/** Runs `sevsim …` in-process, collecting stdout and stderr. */
async function sevsim(
  args: string[],
  live: { out: string } = { out: '' },
): Promise<{ code: number; out: string }> {
  const sink = (c: string | Uint8Array): boolean => {
    live.out += typeof c === 'string' ? c : Buffer.from(c).toString();
    return true;
  };
  const o = vi.spyOn(process.stdout, 'write').mockImplementation(sink);
  const e = vi.spyOn(process.stderr, 'write').mockImplementation(sink);
  try {
    const program = buildProgram();
    if (!program.commands.some((c) => c.name() === 'kds')) addKdsCommand(program);
    return { code: await runCli(args, program), out: live.out };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

let dir: string;
let server: KdsServer;
const kds = new SimulatedKds({ root: simulatedAmdRoot() });
const milan = kds.registerSeededChip('kds-cli-milan', 'milan');
const turin = kds.registerSeededChip('kds-cli-turin', 'turin');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sevsim-kds-cli-'));
  server = await startKdsServer({ kds, port: 0 });
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the KDS server on loopback', () => {
  it('answers the cert chain, a VCEK and errors over real HTTP', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const chain = await fetch(server.url + kdsCertChainPath('milan'));
    expect(chain.status).toBe(200);
    expect(chain.headers.get('content-type')).toBe('application/x-pem-file');
    const [ask, ark] = certificatesFromPemOrDer(Buffer.from(await chain.arrayBuffer()));
    expect(new X509Certificate(ask ?? Buffer.alloc(0)).subject).toMatch(/CN=SEV-Milan-SIMULATED$/);
    expect(new X509Certificate(ark ?? Buffer.alloc(0)).subject).toMatch(/CN=ARK-Milan-SIMULATED$/);

    const path = kdsVcekPath('turin', Buffer.from(turin.hwId, 'hex'), TURIN_TCB);
    const vcek = await fetch(server.url + path);
    expect(vcek.status).toBe(200);
    expect(vcek.headers.get('content-type')).toBe('application/x-x509-ca-cert');
    const der = Buffer.from(await vcek.arrayBuffer());
    expect(der.equals(kds.handle('GET', path).body)).toBe(true);
    const key = new X509Certificate(der).publicKey.export({ format: 'jwk' });
    expect(key).toEqual(
      vcekPublicKey(chipSecret('kds-cli-turin', undefined), 'turin', TURIN_TCB).export({ format: 'jwk' }),
    );

    const missing = await fetch(
      `${server.url}/vcek/v1/Milan/${'00'.repeat(64)}?blSPL=0&teeSPL=0&snpSPL=0&ucodeSPL=0`,
    );
    expect(missing.status).toBe(404);
    expect(await missing.text()).toMatch(/^404 - Not Found/);
    const bad = await fetch(`${server.url}/vcek/v1/Milan/${milan.hwId}?blSPL=1`);
    expect(bad.status).toBe(400);
    expect((await fetch(server.url + kdsCertChainPath('genoa'), { method: 'POST' })).status).toBe(405);
  });

  it('refuses to listen beyond loopback', async () => {
    expect(isLoopbackHost('127.0.0.1')).toBe(true);
    expect(isLoopbackHost('::1')).toBe(true);
    expect(isLoopbackHost('localhost')).toBe(true);
    expect(isLoopbackHost('0.0.0.0')).toBe(false);
    expect(isLoopbackHost('::')).toBe(false);
    expect(isLoopbackHost('192.168.1.2')).toBe(false);
    await expect(startKdsServer({ kds, host: '0.0.0.0' })).rejects.toThrow(/loopback/);
  });
});

describe('sevsim kds', () => {
  it('serves until SIGINT, printing its URL and the hwIDs it knows', async () => {
    const live = { out: '' };
    const running = sevsim(['kds', '--port', '0', '--seed', 'kds-cli-a', '--seed', 'kds-cli-b'], live);
    for (let i = 0; i < 400 && !/Press Ctrl-C/.test(live.out); i++)
      await new Promise((r) => setTimeout(r, 25));
    const out = live.out;
    const url = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
    expect(url, out).toBeDefined();
    const hwIdA = chipIdFromSecret(chipSecret('kds-cli-a', undefined)).toString('hex');
    expect(out).toContain(`Milan hwID ${hwIdA}  (seed kds-cli-a)`);
    const res = await fetch(`${url}${kdsVcekPath('milan', Buffer.from(hwIdA, 'hex'), MILAN_TCB)}`);
    expect(res.status).toBe(200);
    process.emit('SIGINT');
    const done = await running;
    expect(done.code).toBe(0);
    expect(done.out).toMatch(
      /GET \/vcek\/v1\/Milan\/[0-9a-f]{128}\?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115 → 200/,
    );
    expect(done.out).toMatch(/KDS stopped/);
  });

  it('refuses a non-loopback host and a state directory without a chip (exit 2)', async () => {
    const r = await sevsim(['kds', '--host', '0.0.0.0']);
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/not a loopback address/);
    const empty = mkdtempSync(join(dir, 'empty-'));
    const s = await sevsim(['kds', '--state-dir', empty]);
    expect(s.code).toBe(2);
    expect(s.out).toMatch(/no chip \(fuses\.bin\)/);
    expect((await sevsim(['kds', '--port', '70000'])).code).toBe(2);
  });

  it('--help explains the URLs with examples', async () => {
    const r = await sevsim(['kds', '--help']);
    expect(r.out).toMatch(/cert_chain/);
    expect(r.out).toMatch(/Examples:/);
    expect(r.out).toMatch(/--export <dir>/);
  });

  it('--export writes roots laid out like AMD’s that owner verify-report --roots trusts', async () => {
    const out = join(dir, 'roots');
    const r = await sevsim(['kds', '--export', out]);
    expect(r.code).toBe(0);
    for (const p of ['milan', 'genoa', 'turin'])
      for (const f of ['ark.pem', 'ask.pem', 'cert_chain']) expect(existsSync(join(out, p, f))).toBe(true);
    const [ask, ark] = certificatesFromPemOrDer(readFileSync(join(out, 'milan', 'cert_chain')));
    expect(
      ask?.equals(
        certificatesFromPemOrDer(readFileSync(join(out, 'milan', 'ask.pem')))[0] ?? Buffer.alloc(0),
      ),
    ).toBe(true);
    expect(ark?.equals(simulatedAmdRoot().snpCertificates('milan').ark)).toBe(true);

    const reportFile = join(dir, 'export.report.bin');
    const certFile = join(dir, 'export.vcek.der');
    writeFileSync(reportFile, report('kds-cli-milan', 'milan', MILAN_TCB, 2));
    writeFileSync(
      certFile,
      kds.handle('GET', kdsVcekPath('milan', Buffer.from(milan.hwId, 'hex'), MILAN_TCB)).body,
    );
    const ok = await sevsim([
      'owner',
      'verify-report',
      '--report',
      reportFile,
      '--cert',
      certFile,
      '--roots',
      out,
    ]);
    expect(ok.out).toMatch(/The report verifies/);
    expect(ok.code).toBe(0);
    const amd = await sevsim([
      'owner',
      'verify-report',
      '--report',
      reportFile,
      '--cert',
      certFile,
      '--roots',
      AMD_ROOTS,
    ]);
    expect(amd.code).toBe(1);
    expect(amd.out).toMatch(/FAIL {2}chain/);

    const only = join(dir, 'turin-only');
    expect((await sevsim(['kds', '--export', only, '--product', 'turin'])).code).toBe(0);
    expect(existsSync(join(only, 'turin', 'ark.pem'))).toBe(true);
    expect(existsSync(join(only, 'milan'))).toBe(false);
  });
});

describe('owner verify-report --kds', () => {
  const file = (name: string, bytes: Buffer): string => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  it('fetches the VCEK and chain for a v2 Milan report (product tried) and verifies it', async () => {
    const r = await sevsim([
      'owner',
      'verify-report',
      '--report',
      file('m.bin', report('kds-cli-milan', 'milan', MILAN_TCB, 2)),
      '--kds',
      server.url,
    ]);
    expect(r.out).toMatch(/The report verifies/);
    expect(r.out).toContain(
      `${server.url}/vcek/v1/Milan/${milan.hwId}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115`,
    );
    expect(r.out).toMatch(/not pinned/);
    expect(r.code).toBe(0);
  });

  it('a Turin v3 report: product from CPUID, 8-byte hwID, fmcSPL; --json names the URLs', async () => {
    const r = await sevsim([
      'owner',
      'verify-report',
      '--report',
      file('t.bin', report('kds-cli-turin', 'turin', TURIN_TCB, 3)),
      '--kds',
      `${server.url}/`,
      '--json',
    ]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { ok: boolean; kds: { vcek: string; pinnedRoots: boolean } };
    expect(j.ok).toBe(true);
    expect(j.kds.vcek).toBe(
      `${server.url}/vcek/v1/Turin/${turin.hwId}?fmcSPL=0&blSPL=1&teeSPL=0&snpSPL=2&ucodeSPL=71`,
    );
    expect(j.kds.pinnedRoots).toBe(false);
  });

  it('pinned AMD roots reject the simulated chain (exit 1); pinned simulated roots accept it', async () => {
    const m = file('m2.bin', report('kds-cli-milan', 'milan', MILAN_TCB, 3));
    const amd = await sevsim([
      'owner',
      'verify-report',
      '--report',
      m,
      '--kds',
      server.url,
      '--roots',
      AMD_ROOTS,
    ]);
    expect(amd.code).toBe(1);
    expect(amd.out).toMatch(/FAIL {2}chain/);
    const roots = join(dir, 'pinned');
    expect((await sevsim(['kds', '--export', roots])).code).toBe(0);
    const sim = await sevsim([
      'owner',
      'verify-report',
      '--report',
      m,
      '--kds',
      server.url,
      '--roots',
      roots,
    ]);
    expect(sim.code).toBe(0);
    expect(sim.out).toMatch(/roots pinned/);
  });

  it('bad input is exit 2 with the reason: unknown chip, both --cert and --kds, VLEK, unreachable KDS', async () => {
    const stranger = file('s.bin', report('not-registered', 'milan', MILAN_TCB, 3));
    const unknown = await sevsim(['owner', 'verify-report', '--report', stranger, '--kds', server.url]);
    expect(unknown.code).toBe(2);
    expect(unknown.out).toMatch(/no VCEK for this report .*answered 404 \(404 - Not Found\)/);
    const both = await sevsim([
      'owner',
      'verify-report',
      '--report',
      stranger,
      '--kds',
      server.url,
      '--cert',
      stranger,
    ]);
    expect(both.code).toBe(2);
    expect(both.out).toMatch(/either --cert FILE or --kds URL/);
    const vlek = await sevsim([
      'owner',
      'verify-report',
      '--report',
      join(TESTDATA, 'snp-reports', 'milan-v3-vlek.report.bin'),
      '--kds',
      server.url,
    ]);
    expect(vlek.code).toBe(2);
    expect(vlek.out).toMatch(/VLEK/);
    const closed = await startKdsServer({ kds, port: 0 });
    const url = closed.url;
    await closed.close();
    const down = await sevsim(['owner', 'verify-report', '--report', stranger, '--kds', url]);
    expect(down.code).toBe(2);
    expect(down.out).toMatch(/cannot fetch/);
    expect((await sevsim(['owner', 'verify-report', '--report', stranger, '--kds', 'ftp://x'])).code).toBe(2);
    expect(
      (
        await sevsim([
          'owner',
          'verify-report',
          '--report',
          stranger,
          '--kds',
          server.url,
          '--product',
          'rome',
        ])
      ).code,
    ).toBe(2);
  });
});
