// Issue 3 §6: the owner-verified launch end to end, in both modes, and what a tampering host gets.
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildProgram } from '../src/cli/program.js';
import { runOwnerLaunch } from '../src/scenarios/owner-launch.js';

const ovmf = readFileSync(resolve(import.meta.dirname, '../../shared/testdata/ovmf/OVMF.fd'));
const roots = resolve(import.meta.dirname, '../../shared/testdata/amd-roots');

function cli(args: string[]): { out: string; code: number } {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  const program = buildProgram();
  const all = [program, ...program.commands, ...program.commands.flatMap((c) => c.commands)];
  for (const c of all)
    c.exitOverride().configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  process.exitCode = undefined;
  try {
    program.parse(args, { from: 'user' });
  } catch (err) {
    out += String(err);
  }
  const code = Number(process.exitCode ?? 0);
  vi.restoreAllMocks();
  process.exitCode = undefined;
  return { out, code };
}

describe('owner-verified launch', () => {
  afterEach(() => vi.restoreAllMocks());

  it('SEV: every step passes and the guest reads the secret nobody else can', () => {
    const r = runOwnerLaunch({ ovmf, mode: 'sev' });
    expect(r.steps.map((s) => [s.step, s.ok])).toEqual(r.steps.map((s) => [s.step, true]));
    expect(r.steps.find((s) => s.step === 'guest reads its secret')?.skipped).toBeUndefined();
    expect(r.ok).toBe(true);
  });

  it('SEV-ES with 4 vCPUs: the PSP measures 4 VMSAs and the owner’s prediction matches', () => {
    const r = runOwnerLaunch({ ovmf, mode: 'sev-es', vcpus: 4, vcpuType: 'EPYC-Milan' });
    expect(r.ok).toBe(true);
    expect(r.steps.find((s) => s.step === 'owner verifies the measurement')?.ok).toBe(true);
    // The SEV-ES guest runs from its encrypted VMSA and finds the owner's secret.
    const read = r.steps.find((s) => s.step === 'guest reads its secret');
    expect(read?.skipped).toBeUndefined();
    expect(read?.ok).toBe(true);
    expect(read?.detail).toMatch(/encrypted VMSA/);
  });

  it('a host that loads a modified OVMF fails the owner’s check and never gets the secret', () => {
    const tampered = Buffer.from(ovmf);
    tampered[0x1000] = (tampered[0x1000] as number) ^ 0x01;
    const r = runOwnerLaunch({ ovmf, mode: 'sev', hostImage: tampered });
    expect(r.ok).toBe(false);
    expect(r.steps.at(-1)).toMatchObject({ step: 'owner verifies the measurement', ok: false });
    expect(r.steps.some((s) => s.step === 'host injects the secret')).toBe(false);
  });

  it('sevsim launch --out writes the established artifacts, and the exported chain verifies against the simulated root only', () => {
    const out = mkdtempSync(join(tmpdir(), 'sevsim-launch-'));
    const run = cli([
      'launch',
      '--ovmf',
      resolve(import.meta.dirname, '../../shared/testdata/ovmf/OVMF.fd'),
      '--out',
      out,
    ]);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/The owner-verified launch succeeded/);
    for (const f of [
      'pdh.cert',
      'cek.cert',
      'godh.cert',
      'launch_blob.bin',
      'tmp_tk.bin',
      'packaged_secret.bin',
      'packaged_secret_header.bin',
    ]) {
      expect(readFileSync(join(out, f)).length, f).toBeGreaterThan(0);
    }
    expect(readFileSync(join(out, 'launch_blob.bin'))).toHaveLength(0x80);
    expect(readFileSync(join(out, 'packaged_secret_header.bin'))).toHaveLength(0x34);
    const simulated = cli([
      'owner',
      'verify-chain',
      '--ark',
      join(out, 'ark.cert'),
      '--ask',
      join(out, 'ask.cert'),
      out,
    ]);
    expect(simulated.code).toBe(0);
    expect(simulated.out).toMatch(/SIMULATED AMD root/);
    expect((statSync(join(out, 'tmp_tk.bin')).mode & 0o777).toString(8)).toBe('600');
    const real = cli(['owner', 'verify-chain', '--roots', roots, out]);
    expect(real.code).toBe(1);
  });

  it('sevsim launch --mode snp: the guest attests, and the written report verifies with owner verify-report against the simulated roots only', () => {
    const out = mkdtempSync(join(tmpdir(), 'sevsim-snp-launch-'));
    const run = cli([
      'launch',
      '--mode',
      'snp',
      '--ovmf',
      resolve(import.meta.dirname, '../../shared/testdata/ovmf/OVMF.fd'),
      '--out',
      out,
    ]);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/PASS +guest asks the PSP for a report through its GHCB/);
    expect(run.out).toMatch(/PASS +owner verifies the report\n.*measurement ok/);
    expect(run.out).toMatch(/PASS +host cannot write the guest/);
    const simulated = cli([
      'owner',
      'verify-report',
      '--report',
      join(out, 'report.bin'),
      '--cert',
      join(out, 'vcek.der'),
      '--roots',
      join(out, 'roots'),
    ]);
    expect(simulated.code).toBe(0);
    const real = cli([
      'owner',
      'verify-report',
      '--report',
      join(out, 'report.bin'),
      '--cert',
      join(out, 'vcek.der'),
      '--roots',
      roots,
    ]);
    expect(real.code).toBe(1);
    expect(real.out).toMatch(/chain/);
  });

  it('sevsim launch --mode snp refuses a product without SNP', () => {
    const run = cli([
      'launch',
      '--mode',
      'snp',
      '--product',
      'rome',
      '--ovmf',
      resolve(import.meta.dirname, '../../shared/testdata/ovmf/OVMF.fd'),
    ]);
    expect(run.out).toMatch(/--mode snp needs an SNP product/);
  });

  it('sevsim launch refuses an unreadable image with a clear message', () => {
    const run = cli(['launch', '--ovmf', '/nonexistent/OVMF.fd']);
    expect(run.out).toMatch(/cannot read --ovmf/);
  });
});
