// Text rendering of the demo: side-by-side views, the key-slot table and the verdict table.
import type { DemoCheck, DemoResult } from '../scenarios/sev-demo.js';
import type { SnpDemoResult } from '../scenarios/snp-demo.js';

const pad = (s: string, n: number): string => (s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length));

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => pad(c, widths[i] ?? 0)).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Each check: its verdict, the same bytes as each party sees them, and what happened. */
function renderChecks(checks: readonly DemoCheck[]): string[] {
  const out: string[] = [];
  for (const c of checks) {
    out.push('');
    out.push(`[${c.id}] ${c.name} — ${c.passed ? 'PASS' : 'FAIL'}`);
    const who = Math.max(0, ...c.views.map((v) => v.who.length));
    for (const v of c.views)
      out.push(
        `    ${pad(v.who, who)}  ${v.hex}${v.note !== undefined ? `  ${JSON.stringify(v.note)}` : ''}`,
      );
    out.push(`    ${c.detail}`);
  }
  return out;
}

/** The SEV-SNP part: attestation, the integrity table (SEV against SNP) and VMPL isolation. */
export function renderSnpDemo(r: SnpDemoResult): string {
  const out: string[] = [`SEV-SNP on ${r.product}: the same host, now with the RMP and signed reports`];
  out.push(...renderChecks(r.checks));
  out.push('');
  out.push('Integrity, generation against generation');
  out.push(
    table(
      ['', 'the host…', 'under SEV', 'under SNP'],
      r.integrity.map((row) => [
        row.id,
        row.attack,
        row.sev.stopped ? 'stopped' : 'succeeds, unnoticed',
        row.snp.stopped ? 'stopped' : 'SUCCEEDS',
      ]),
    ),
  );
  const failed = r.checks.filter((c) => !c.passed).length;
  out.push('');
  out.push(
    failed === 0
      ? `All ${r.checks.length} SNP checks passed.`
      : `${failed} of ${r.checks.length} SNP checks FAILED.`,
  );
  return out.join('\n');
}

export function renderDemo(r: DemoResult): string {
  const out: string[] = [];
  out.push(`sevsim demo — ${r.productTitle}, memory cipher ${r.cipherMode}, seed ${r.seed}`);
  out.push('');
  out.push(
    table(
      ['guest', 'ASID', 'handle', 'launch measurement (HMAC-SHA256, no owner session)'],
      r.guests.map((g) => [g.name, String(g.asid), String(g.handle), g.measurement]),
    ),
  );
  out.push(...renderChecks(r.checks));
  out.push('');
  out.push(
    'Memory-controller key slots (owner and state only: key material never leaves the PSP and the slots)',
  );
  out.push(
    table(
      ['ASID', 'owner', 'PSP guest state', 'slot', 'loads', 'cached lines'],
      r.keySlots.map((k) => [
        String(k.asid),
        k.owner,
        k.pspState,
        k.slotProgrammed ? 'programmed' : 'empty',
        String(k.slotGeneration),
        String(k.cachedLines),
      ]),
    ),
  );
  out.push('');
  out.push('Verdict');
  out.push(
    table(
      ['check', 'protection', 'result'],
      r.checks.map((c) => [c.id, c.name, c.passed ? 'PASS' : 'FAIL']),
    ),
  );
  const failed = r.checks.filter((c) => !c.passed).length;
  out.push('');
  out.push(
    failed === 0 ? `All ${r.checks.length} checks passed.` : `${failed} of ${r.checks.length} checks FAILED.`,
  );
  return out.join('\n');
}
