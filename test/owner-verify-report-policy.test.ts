// `owner verify-report` with a stated policy: expected measurement, report data, host data, minimum TCB.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { runCli } from '../src/cli/run.js';

const data = resolve(import.meta.dirname, '../../shared/testdata');
const report = join(data, 'snp-reports', 'milan-v2.report.bin');
const cert = join(data, 'snp-reports', 'milan-v2.vcek.der');
const roots = join(data, 'amd-roots');
const bytes = readFileSync(report);
// sev-reference §7.11: REPORT_DATA at 0x50 (64 bytes), MEASUREMENT at 0x90 (48), HOST_DATA at 0xC0 (32).
const measurement = bytes.subarray(0x90, 0xc0).toString('hex');
const reportData = bytes.subarray(0x50, 0x90).toString('hex');
const hostData = bytes.subarray(0xc0, 0xe0).toString('hex');

async function run(extra: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    out += typeof c === 'string' ? c : Buffer.from(c).toString();
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    out += typeof c === 'string' ? c : Buffer.from(c).toString();
    return true;
  });
  try {
    const code = await runCli([
      'owner',
      'verify-report',
      '--report',
      report,
      '--cert',
      cert,
      '--roots',
      roots,
      ...extra,
    ]);
    return { code, out };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('verify-report policy options', () => {
  it('the report’s own measurement, report data, host data and TCB pass', async () => {
    const r = await run([
      '--measurement',
      measurement,
      '--report-data',
      reportData,
      '--host-data',
      hostData,
      '--min-tcb',
      '0x7308000000000003',
    ]);
    expect(r.out).toMatch(/all \d+ checks pass/);
    expect(r.code).toBe(0);
  });

  it('another measurement, or a higher minimum TCB, fails with exit 1', async () => {
    const other = `${measurement.slice(0, -2)}${measurement.endsWith('00') ? '01' : '00'}`;
    expect((await run(['--measurement', other])).code).toBe(1);
    expect((await run(['--min-tcb', '0x7308000000000004'])).code).toBe(1);
  });

  it('malformed policy values are bad input (exit 2) with a clear message', async () => {
    const r = await run(['--measurement', 'abcd']);
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/--measurement needs 48 bytes/);
    expect((await run(['--min-tcb', 'zz'])).code).toBe(2);
  });
});
