// The SNP demo's checks (8a–8f), each asserted on the facts it narrates: attestation of OVMF.fd, the
// four integrity attacks against SEV and SNP, and VMPL isolation inside one guest.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeSnpReport } from '../src/abi/index.js';
import { runSnpDemo, type SnpDemoResult } from '../src/scenarios/snp-demo.js';
import { runSnpOwnerLaunch } from '../src/scenarios/snp-owner-launch.js';

const OVMF = readFileSync(new URL('../../shared/testdata/ovmf/OVMF.fd', import.meta.url));

describe('SNP demo', () => {
  let result: SnpDemoResult;
  it('runs on Milan and every check passes', () => {
    result = runSnpDemo({ ovmf: OVMF, seed: 'snp-demo-test' });
    for (const c of result.checks) expect(c.passed, `${c.id} ${c.name}: ${c.detail}`).toBe(true);
    expect(result.checks.map((c) => c.id)).toEqual(['8a', '8b', '8c', '8d', '8e', '8f']);
  });

  it('each integrity attack succeeds against SEV and is stopped by SNP, with its reason', () => {
    const rows = new Map(result.integrity.map((r) => [r.id, r]));
    expect(rows.get('8b')?.sev.outcome).toMatch(/old value/);
    expect(rows.get('8b')?.snp.outcome).toMatch(/RMP/);
    expect(rows.get('8c')?.sev.outcome).toMatch(/page B/);
    expect(rows.get('8c')?.snp.outcome).toMatch(/#NPF.*not here \(remapped\)/);
    expect(rows.get('8d')?.sev.outcome).toMatch(/garbage/);
    expect(rows.get('8d')?.snp.outcome).toMatch(/#PF \(error code bit 31, RMP\)/);
    expect(rows.get('8e')?.sev.outcome).toMatch(/passes/);
    expect(rows.get('8e')?.snp.outcome).toMatch(/MEASUREMENT .* ≠ expected/);
  });

  it('VMPL isolation names the VMPL fault and both reports’ VMPLs', () => {
    const vmpl = result.checks.find((c) => c.id === '8f');
    expect(vmpl?.detail).toMatch(/component VMPL 0, kernel VMPL 1/);
    expect(vmpl?.detail).toMatch(/MSG_REPORT_RSP status 0x16/);
    expect(vmpl?.detail).toMatch(/#NPF to the host — RMP: VMPL1 may not read/);
  });

  it.each([
    ['genoa', 3, 64],
    ['turin', 5, 8],
  ] as const)(
    '%s: the owner flow verifies a v%i report whose chip ID has %i bytes',
    (product, version, idBytes) => {
      const r = runSnpOwnerLaunch({ ovmf: OVMF, product, seed: `snp-${product}` });
      expect(r.ok, r.steps.map((st) => `${st.step}: ${st.detail}`).join('\n')).toBe(true);
      const report = decodeSnpReport(r.report as Buffer);
      expect(report.version).toBe(version);
      expect(report.chipId.subarray(0, idBytes)).not.toEqual(Buffer.alloc(idBytes));
      expect(report.chipId.subarray(idBytes)).toEqual(Buffer.alloc(64 - idBytes));
    },
  );

  it('refuses a product without SNP', () => {
    expect(() => runSnpDemo({ ovmf: OVMF, product: 'rome' })).toThrow(/no SEV-SNP/);
  });
});
