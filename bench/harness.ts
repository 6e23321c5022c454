// Measurement helpers for the benchmarks: warm-up, repetitions, median, and the result rows the
// report prints. Nothing here knows about SEV.
import { performance } from 'node:perf_hooks';
import cliProgress from 'cli-progress';

/** Summary of one measurement: a rate (units per second) over several repetitions. */
export interface Stat {
  /** Median of the per-repetition rates. */
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Per-repetition rates, in run order. */
  readonly samples: readonly number[];
}

/** One line of the report: a figure, its same-run baseline and their ratio. */
export interface Row {
  readonly id: string;
  readonly group: string;
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly stat?: Stat;
  readonly baseline?: { readonly name: string; readonly value: number; readonly unit: string };
  /** value / baseline.value (both in the same unit). */
  readonly ratio?: number;
  /** What the figure (or, with `on: 'ratio'`, the ratio) should reach. */
  readonly target?: { readonly min: number; readonly on: 'value' | 'ratio' };
  readonly met?: boolean;
  /** Counters that show which path was measured (cache hits/misses, TLB, …). */
  readonly detail?: Readonly<Record<string, number | string>>;
  readonly note?: string;
}

export interface Settings {
  /** Discarded repetitions before the measured ones. */
  readonly warmup: number;
  /** Measured repetitions; the median is reported. */
  readonly reps: number;
  /** Scale for work sizes (1 = full run, smaller for a quick check). */
  readonly scale: number;
  /** Show progress bars (stdout is a TTY and no --json). */
  readonly progress: boolean;
}

export function now(): number {
  return performance.now();
}

/** A full collection between measurements, so one benchmark's garbage does not bill the next. */
export function collectGarbage(): void {
  if (typeof globalThis.gc === 'function') globalThis.gc();
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function summarize(samples: readonly number[]): Stat {
  return {
    median: median(samples),
    min: Math.min(...samples),
    max: Math.max(...samples),
    samples: [...samples],
  };
}

/**
 * Runs `body(n)`, which does `n` units of work, `warmup` times unmeasured and then `reps` times,
 * and returns units per second (median over the repetitions).
 */
export function measureRate(
  body: (n: number) => void,
  n: number,
  settings: Pick<Settings, 'warmup' | 'reps'>,
): Stat {
  for (let i = 0; i < settings.warmup; i++) body(n);
  collectGarbage();
  const samples: number[] = [];
  for (let i = 0; i < settings.reps; i++) {
    const t0 = now();
    body(n);
    const seconds = (now() - t0) / 1000;
    samples.push(n / seconds);
  }
  return summarize(samples);
}

/**
 * Finds a work size that takes about `seconds` (doubling from `n0`); the calls double as warm-up.
 * `granule` keeps n a multiple of some unit (e.g. a page count).
 */
export function calibrate(body: (n: number) => void, n0: number, seconds: number, granule = 1): number {
  let n = Math.max(granule, Math.ceil(n0 / granule) * granule);
  for (;;) {
    const t0 = now();
    body(n);
    const took = (now() - t0) / 1000;
    if (took >= seconds / 4) {
      const scaled = Math.ceil((n * seconds) / took / granule) * granule;
      return Math.max(granule, scaled);
    }
    n *= 2;
  }
}

/** A progress bar on stderr when enabled, a no-op otherwise. */
export interface Progress {
  tick(delta?: number): void;
  stop(): void;
}

export function progressBar(
  settings: Pick<Settings, 'progress'>,
  title: string,
  total: number,
  unit: string,
): Progress {
  if (!settings.progress) return { tick: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      format: `${title.padEnd(34)} [{bar}] {percentage}% | {value}/{total} ${unit} | {duration_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return {
    tick: (delta = 1) => bar.increment(delta),
    stop: () => bar.stop(),
  };
}

/** Human-readable number with an SI suffix. */
export function si(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  const abs = Math.abs(x);
  if (abs >= 1e9) return `${(x / 1e9).toPrecision(digits)} G`;
  if (abs >= 1e6) return `${(x / 1e6).toPrecision(digits)} M`;
  if (abs >= 1e3) return `${(x / 1e3).toPrecision(digits)} k`;
  return `${x.toPrecision(digits)} `;
}

export function formatValue(value: number, unit: string): string {
  if (unit === 'MB/s') return `${value.toFixed(1)} MB/s`;
  return `${si(value)}${unit}`;
}

export function formatRatio(ratio: number | undefined): string {
  if (ratio === undefined) return '';
  return ratio >= 0.01 ? ratio.toFixed(3) : ratio.toExponential(2);
}

export function formatTarget(row: Row): string {
  if (row.target === undefined) return '';
  const what =
    row.target.on === 'ratio' ? `ratio ≥ ${row.target.min}` : `≥ ${formatValue(row.target.min, row.unit)}`;
  return `${what}: ${row.met === true ? 'MET' : 'MISSED'}`;
}

/** A plain-text table (columns padded to their widest cell). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join(' | ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}

/** Bytes per second → MB/s (10^6 bytes). */
export function mbps(bytesPerSecond: number): number {
  return bytesPerSecond / 1e6;
}
