// sevsim benchmarks: `npm run bench` (builds, then `node --expose-gc dist/bench/run.js`).
//
//   --json          print one JSON object instead of the table
//   --only LIST     comma-separated subset of: cipher, guest, launch, owner, snp
//   --quick         fewer repetitions and a smaller launch image (a smoke run, not for figures)
//   --snp-launch-mib N   size of the SNP launch (group snp): default 1024, --quick 64
//
// Every figure is the median of several measured repetitions after warm-up, printed with a
// baseline measured in the same run and their ratio.
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { runCipherBenchmarks } from './cipher.js';
import { runGuestAccessBenchmarks } from './guest-access.js';
import {
  collectGarbage,
  formatRatio,
  formatTarget,
  formatValue,
  now,
  table,
  type Row,
  type Settings,
} from './harness.js';
import { runLaunchBenchmarks } from './launch-update.js';
import { runOwnerBenchmarks } from './owner-launch.js';
import { runSnpBenchmarks } from './snp.js';

const SUITES = ['cipher', 'guest', 'launch', 'owner', 'snp'] as const;
type Suite = (typeof SUITES)[number];

interface Args {
  readonly json: boolean;
  readonly quick: boolean;
  readonly only: readonly Suite[];
  /** Guest size of the SNP launch benchmark, MiB (undefined: 1024, or 64 with --quick). */
  readonly snpLaunchMiB: number | undefined;
}

function parseArgs(argv: readonly string[]): Args {
  let json = false;
  let quick = false;
  let only: Suite[] = [...SUITES];
  let snpLaunchMiB: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--quick') quick = true;
    else if (a === '--only') {
      const list = (argv[++i] ?? '').split(',').filter((s) => s.length > 0);
      for (const s of list)
        if (!(SUITES as readonly string[]).includes(s))
          throw new Error(`unknown suite ${s} (use ${SUITES.join(', ')})`);
      only = list as Suite[];
    } else if (a === '--snp-launch-mib') {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 2 || v % 2 !== 0)
        throw new Error('--snp-launch-mib needs an even number of MiB (2 MiB pages), at least 2');
      snpLaunchMiB = v;
    } else if (a === '--help' || a === '-h') {
      console.log(
        'usage: node --expose-gc dist/bench/run.js [--json] [--quick] [--only cipher,guest,launch,owner,snp] [--snp-launch-mib N]',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return { json, quick, only, snpLaunchMiB };
}

function machine(): Record<string, string | number> {
  const cpu = cpus()[0];
  return {
    node: process.version,
    v8: process.versions.v8,
    openssl: process.versions.openssl ?? '',
    platform: `${process.platform}-${process.arch}`,
    cpu: cpu?.model ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    gcExposed: typeof globalThis.gc === 'function' ? 'yes' : 'no',
    /** 1-minute load average when the run started: other work on the machine skews the figures. */
    loadAverageAtStart: Number((loadavg()[0] ?? 0).toFixed(2)),
  };
}

function render(rows: readonly Row[]): string {
  const cells = rows.map((r) => [
    r.group,
    r.name,
    formatValue(r.value, r.unit),
    r.baseline === undefined ? '' : `${formatValue(r.baseline.value, r.baseline.unit)} (${r.baseline.name})`,
    formatRatio(r.ratio),
    formatTarget(r),
  ]);
  return table(['#', 'benchmark', 'median', 'baseline (same run)', 'ratio', 'target'], cells);
}

function renderDetails(rows: readonly Row[]): string {
  const out: string[] = [];
  for (const r of rows) {
    const parts: string[] = [];
    if (r.stat !== undefined && r.stat.samples.length > 1)
      parts.push(
        `range ${formatValue(r.stat.min, r.unit)} … ${formatValue(r.stat.max, r.unit)} over ${r.stat.samples.length} reps`,
      );
    if (r.detail !== undefined) for (const [k, v] of Object.entries(r.detail)) parts.push(`${k}: ${v}`);
    if (r.note !== undefined) parts.push(r.note);
    if (parts.length > 0) out.push(`- ${r.id}: ${parts.join('; ')}`);
  }
  return out.join('\n');
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const settings: Settings = {
    warmup: args.quick ? 1 : 2,
    reps: args.quick ? 3 : 5,
    scale: args.quick ? 0.125 : 1,
    progress: process.stdout.isTTY === true && !args.json,
  };
  const log = (msg: string): void => {
    if (settings.progress) console.error(`… ${msg}`);
  };
  const info = machine();
  const launchSettings: Settings = { ...settings, warmup: 1, reps: args.quick ? 2 : 3 };
  /** Owner benchmarks: child processes and launches of ~0.1–0.5 s each, so more repetitions are cheap. */
  const ownerSettings: Settings = { ...settings, warmup: 1, reps: args.quick ? 3 : 9 };
  /** SNP launch: whole launches of 1 GiB (64 MiB with --quick) each, 4 KiB and 2 MiB pages. */
  const snpLaunchMiB = args.snpLaunchMiB ?? (args.quick ? 64 : 1024);
  const snpLaunchSettings: Settings = { ...settings, warmup: 1, reps: args.quick ? 2 : 3 };
  const started = now();
  const rows: Row[] = [];
  const seconds: Record<string, number> = {};
  for (const suite of args.only) {
    const t0 = now();
    collectGarbage();
    if (suite === 'cipher') rows.push(...runCipherBenchmarks(settings, log));
    else if (suite === 'guest') rows.push(...runGuestAccessBenchmarks(settings, log));
    else if (suite === 'launch') rows.push(...runLaunchBenchmarks(launchSettings, log));
    else if (suite === 'owner') rows.push(...runOwnerBenchmarks(ownerSettings, log));
    else
      rows.push(
        ...runSnpBenchmarks(
          {
            rates: settings,
            launch: snpLaunchSettings,
            cli: ownerSettings,
            launchBytes: snpLaunchMiB * 1024 * 1024,
          },
          log,
        ),
      );
    seconds[suite] = Number(((now() - t0) / 1000).toFixed(1));
  }
  const totalSeconds = Number(((now() - started) / 1000).toFixed(1));
  info.loadAverageAtEnd = Number((loadavg()[0] ?? 0).toFixed(2));
  const targets = rows.filter((r) => r.target !== undefined).map((r) => ({ id: r.id, met: r.met === true }));

  if (args.json) {
    console.log(
      JSON.stringify(
        {
          machine: info,
          settings,
          launchSettings,
          ownerSettings,
          snpLaunchSettings: { ...snpLaunchSettings, launchMiB: snpLaunchMiB },
          seconds: { ...seconds, total: totalSeconds },
          rows,
          targets,
        },
        null,
        2,
      ),
    );
    return;
  }
  console.log(
    `sevsim benchmarks — node ${info.node}, ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB, gc exposed: ${info.gcExposed}`,
  );
  console.log(`load average (1 min) at start ${info.loadAverageAtStart}, at end ${info.loadAverageAtEnd}`);
  console.log(
    `median of ${settings.reps} repetitions after ${settings.warmup} warm-up (launch: ${launchSettings.reps} after ${launchSettings.warmup}; owner: ${ownerSettings.reps} after ${ownerSettings.warmup}; snp launch: ${snpLaunchSettings.reps} × ${snpLaunchMiB} MiB after ${snpLaunchSettings.warmup} × ${Math.min(32, snpLaunchMiB)} MiB); total ${totalSeconds} s ${JSON.stringify(seconds)}`,
  );
  console.log('');
  console.log(render(rows));
  console.log('');
  console.log(renderDetails(rows));
  console.log('');
  const missed = targets.filter((t) => !t.met);
  console.log(
    `targets: ${targets.length - missed.length}/${targets.length} met${missed.length > 0 ? ` (missed: ${missed.map((t) => t.id).join(', ')})` : ''}`,
  );
}

main();
