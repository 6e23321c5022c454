// Benchmark 4: the guest owner's side of a launch, on the real OVMF.fd of ../shared/testdata.
//
//   4a `sevsim owner measure` as a child process of the built CLI (--mode sev, and --mode sev-es with
//      4 EPYC-Milan vCPUs), against the reference calculator sev-snp-measure when it is installed
//      (`python3 -m sevsnpmeasure.cli`), else against `node -e` reading the file and hashing it with
//      SHA-256 (node startup + raw SHA-256): the least any Node CLI computing an SEV digest must cost.
//   4b A full SEV-ES launch of OVMF.fd with 4 vCPUs through the simulated PSP (startFirmwareLaunch +
//      finishFirmwareLaunch on a fresh platform), against raw SHA-256 + one AES-128-ECB pass over the
//      bytes that launch measures (2 MiB image + 4 VMSA pages).
//   4c The whole owner-verified flow (runOwnerLaunch, SEV), with no baseline.
//
// Times are in ms; ratio = time / baseline time (> 1: slower than the baseline).
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import {
  VCPU_TYPES,
  type VcpuTypeName,
  commandName,
  cpuidSignature,
  encodeSevPolicy,
} from '../src/abi/index.js';
import { OvmfFirmwareModel } from '../src/guest/index.js';
import { Hypervisor, finishFirmwareLaunch, startFirmwareLaunch } from '../src/host/index.js';
import { computeLaunchDigest } from '../src/owner/index.js';
import { createPlatform } from '../src/psp/index.js';
import { runOwnerLaunch } from '../src/scenarios/owner-launch.js';
import {
  collectGarbage,
  now,
  progressBar,
  summarize,
  type Row,
  type Settings,
  type Stat,
} from './harness.js';

const GROUP = '4 owner';
const VCPUS = 4;
const VCPU_TYPE: VcpuTypeName = 'EPYC-Milan';
/** Low RAM of the launched guest (as runOwnerLaunch gives it). */
const GUEST_RAM = 16 * 1024 * 1024;
/** Host DRAM of each fresh platform (as runOwnerLaunch creates it). */
const DRAM_BYTES = 256 * 1024 * 1024;
/** The in-process baseline takes a few ms: more repetitions than the rest for a stable median. */
const MIN_BASELINE_REPS = 21;

/** The repository root: the nearest directory above this module with a package.json. */
export function repoRoot(): string {
  for (let dir = import.meta.dirname; ;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${import.meta.dirname}`);
    dir = up;
  }
}

const ms = (samples: readonly number[]): Stat => summarize(samples);
const round = (x: number, digits = 1): number => Number(x.toFixed(digits));

export interface Child {
  readonly label: string;
  readonly command: string;
  readonly args: readonly string[];
  /** The digest the child must print (hex); a run that prints anything else is an error. Undefined: exit 0 only. */
  readonly expect: string | undefined;
}

/** Runs a child process to completion; returns its wall time in ms. */
export function runChild(child: Child, cwd: string): number {
  const t0 = now();
  const r = spawnSync(child.command, child.args, { cwd, encoding: 'utf8' });
  const took = now() - t0;
  if (r.error !== undefined) throw r.error;
  const out = r.stdout.trim();
  if (r.status !== 0 || (child.expect !== undefined && out !== child.expect))
    throw new Error(
      `${child.label}: exit ${r.status}, printed "${out}" (expected ${child.expect}); stderr: ${r.stderr.trim()}`,
    );
  return took;
}

/** True when the reference calculator (virtee/sev-snp-measure) is importable. Never installs it. */
export function hasSevSnpMeasure(cwd: string): boolean {
  const r = spawnSync('python3', ['-c', 'import sevsnpmeasure'], { cwd, encoding: 'utf8' });
  return r.error === undefined && r.status === 0;
}

/** SHA-256 + one AES-128-ECB encrypt pass over `parts` (a fresh context and key each time); returns ms. */
function rawShaEcb(parts: readonly Buffer[], expect: Buffer): number {
  const t0 = now();
  const hash = createHash('sha256');
  const ecb = createCipheriv('aes-128-ecb', randomBytes(16), null);
  ecb.setAutoPadding(false);
  let sink = 0;
  for (const p of parts) {
    hash.update(p);
    sink ^= ecb.update(p)[0] as number;
  }
  const digest = hash.digest();
  const took = now() - t0;
  if (!digest.equals(expect) || sink === -1)
    throw new Error('baseline: SHA-256 of the measured bytes is not the launch digest');
  return took;
}

/** Wraps `obj[key]` so each call adds its duration (ms) to `into` under `label(args)`. */
export function instrument<T extends object>(
  obj: T,
  key: keyof T & string,
  label: (args: readonly unknown[]) => string,
  into: Map<string, number>,
): void {
  const original: unknown = obj[key];
  if (typeof original !== 'function') throw new TypeError(`${key} is not a method`);
  const fn = original as (...args: unknown[]) => unknown;
  Object.defineProperty(obj, key, {
    configurable: true,
    writable: true,
    value: (...args: unknown[]): unknown => {
      const t0 = now();
      try {
        return fn.apply(obj, args);
      } finally {
        const k = label(args);
        into.set(k, (into.get(k) ?? 0) + now() - t0);
      }
    },
  });
}

export function runOwnerBenchmarks(settings: Settings, log: (msg: string) => void): Row[] {
  const root = repoRoot();
  const ovmfPath = resolve(root, '../shared/testdata/ovmf/OVMF.fd');
  const mainJs = join(root, 'dist/src/cli/main.js');
  if (!existsSync(ovmfPath)) throw new Error(`owner benchmarks need ${ovmfPath}`);
  if (!existsSync(mainJs)) throw new Error(`owner benchmarks need the built CLI ${mainJs} (npm run build)`);
  const ovmf = readFileSync(ovmfPath);
  const ovmfRel = relative(root, ovmfPath);
  const signature = cpuidSignature(VCPU_TYPES[VCPU_TYPE]);
  const expectSev = computeLaunchDigest({ mode: 'sev', ovmf });
  const expectEs = computeLaunchDigest({ mode: 'sev-es', ovmf, vcpus: VCPUS, vcpuType: VCPU_TYPE });
  const rows: Row[] = [];

  // 4a. `sevsim owner measure` as a child process, against the best baseline this machine has.
  const esArgs = ['--vcpus', String(VCPUS), '--vcpu-type', VCPU_TYPE];
  const cli = (mode: 'sev' | 'sev-es'): Child => ({
    label: `sevsim owner measure --mode ${mode}`,
    command: process.execPath,
    args: [
      'dist/src/cli/main.js',
      'owner',
      'measure',
      '--mode',
      mode,
      '--ovmf',
      ovmfRel,
      ...(mode === 'sev' ? [] : esArgs),
    ],
    expect: (mode === 'sev' ? expectSev : expectEs).digest.toString('hex'),
  });
  const python = hasSevSnpMeasure(root);
  const py = (mode: 'sev' | 'seves'): Child => ({
    label: `sev-snp-measure --mode ${mode}`,
    command: 'python3',
    args: ['-m', 'sevsnpmeasure.cli', '--mode', mode, '--ovmf', ovmfRel, ...(mode === 'sev' ? [] : esArgs)],
    expect: (mode === 'sev' ? expectSev : expectEs).digest.toString('hex'),
  });
  const nodeHash: Child = {
    label: 'node -e: read OVMF.fd + SHA-256',
    command: process.execPath,
    args: [
      '-e',
      "process.stdout.write(require('node:crypto').createHash('sha256')" +
        ".update(require('node:fs').readFileSync(process.argv[1])).digest('hex') + '\\n')",
      ovmfRel,
    ],
    expect: expectSev.ovmf.sha256.toString('hex'),
  };
  /** The CLI's startup and module loading alone, to split the CLI's time (a detail, not a figure). */
  const cliHelp: Child = {
    label: 'sevsim owner measure --help',
    command: process.execPath,
    args: ['dist/src/cli/main.js', 'owner', 'measure', '--help'],
    expect: undefined,
  };
  const pairs: readonly { readonly mode: 'sev' | 'sev-es'; readonly subject: Child; readonly base: Child }[] =
    [
      { mode: 'sev', subject: cli('sev'), base: python ? py('sev') : nodeHash },
      { mode: 'sev-es', subject: cli('sev-es'), base: python ? py('seves') : nodeHash },
    ];
  // Each baseline child once per round, the CLI runs interleaved with it, so drift in the machine's
  // load shifts both alike.
  const children = [...new Set(pairs.flatMap((p) => [p.subject, p.base])), cliHelp];
  const times = new Map<Child, number[]>(children.map((c) => [c, []]));
  log(
    `owner: sevsim owner measure, child processes (baseline: ${python ? 'sev-snp-measure' : 'node -e + SHA-256'})`,
  );
  const rounds = settings.warmup + settings.reps;
  let bar = progressBar(settings, 'owner: measure CLI (child procs)', rounds * children.length, 'runs');
  for (let i = 0; i < rounds; i++) {
    for (const c of children) {
      const took = runChild(c, root);
      if (i >= settings.warmup) times.get(c)?.push(took);
      bar.tick();
    }
  }
  bar.stop();
  for (const { mode, subject, base } of pairs) {
    const stat = ms(times.get(subject) ?? []);
    const baseStat = ms(times.get(base) ?? []);
    rows.push({
      id: `owner.measure.${mode}`,
      group: GROUP,
      name: `sevsim owner measure --mode ${mode}${mode === 'sev-es' ? ` --vcpus ${VCPUS} --vcpu-type ${VCPU_TYPE}` : ''}, OVMF.fd (child process)`,
      value: stat.median,
      unit: 'ms',
      stat,
      baseline: python
        ? {
            name: `sev-snp-measure ${base.args.slice(2).join(' ')} (python3 child process)`,
            value: baseStat.median,
            unit: 'ms',
          }
        : {
            name: 'node -e startup + read + SHA-256 of OVMF.fd (sev-snp-measure not installed)',
            value: baseStat.median,
            unit: 'ms',
          },
      ratio: stat.median / baseStat.median,
      detail: {
        command: `node ${subject.args.join(' ')}`,
        digest: subject.expect ?? '',
        'baseline range (ms)': `${round(baseStat.min)} … ${round(baseStat.max)}`,
        'CLI startup alone (owner measure --help), median ms': round(ms(times.get(cliHelp) ?? []).median),
      },
      note: `ratio = time / baseline time; ${python ? 'baseline: the reference Python calculator' : 'baseline: node startup + raw SHA-256 (python3 cannot import sevsnpmeasure here)'}; both outputs checked against computeLaunchDigest`,
    });
  }

  // 4b. SEV-ES launch, 4 vCPUs, fresh platform each time (setup timed apart).
  const policy = encodeSevPolicy({ noDebug: true, noKeySharing: true, encryptedState: true });
  const freshHost = (): { hv: Hypervisor; setupMs: number } => {
    const t0 = now();
    const platform = createPlatform({ product: 'milan', seed: 'bench-owner', dramBytes: DRAM_BYTES });
    const hv = new Hypervisor(platform);
    hv.initPlatform();
    return { hv, setupMs: now() - t0 };
  };
  const launchOnce = (hv: Hypervisor): number => {
    const model = new OvmfFirmwareModel(ovmf);
    const t0 = now();
    const pending = startFirmwareLaunch(hv, {
      name: 'bench-es',
      memoryBytes: GUEST_RAM,
      firmware: ovmf,
      software: model,
      policy,
      encryptedState: true,
      vcpus: VCPUS,
      vcpuSignature: signature,
    });
    finishFirmwareLaunch(hv, pending, model);
    return now() - t0;
  };
  log(`owner: SEV-ES launch of OVMF.fd, ${VCPUS} vCPUs`);
  const setupSamples: number[] = [];
  const launchSamples: number[] = [];
  bar = progressBar(settings, 'owner: SEV-ES launch', rounds, 'launches');
  for (let i = 0; i < rounds; i++) {
    collectGarbage();
    const { hv, setupMs } = freshHost();
    const took = launchOnce(hv);
    if (i >= settings.warmup) {
      setupSamples.push(setupMs);
      launchSamples.push(took);
    }
    bar.tick();
  }
  bar.stop();
  // One extra run, instrumented, to show where a launch's time goes (not part of the figure).
  const spent = new Map<string, number>();
  {
    collectGarbage();
    const { hv } = freshHost();
    instrument(hv, 'allocateVm', () => 'allocateVm', spent);
    instrument(hv, 'loadGuestImage', () => 'loadGuestImage', spent);
    instrument(hv.driver, 'raw', (args) => commandName(args[0] as number).split(' ')[0] ?? '?', spent);
    const total = launchOnce(hv);
    const accounted = [...spent.values()].reduce((a, b) => a + b, 0);
    spent.set('other', Math.max(0, total - accounted));
  }
  log('owner: raw SHA-256 + AES-128-ECB baseline');
  collectGarbage();
  const { bspVmsa, apVmsa } = expectEs;
  if (bspVmsa === undefined || apVmsa === undefined) throw new Error('computeLaunchDigest gave no VMSA');
  const measuredParts = [ovmf, bspVmsa, ...Array.from({ length: VCPUS - 1 }, () => apVmsa)];
  const measuredBytes = measuredParts.reduce((n, b) => n + b.length, 0);
  const baselineReps = Math.max(settings.reps, MIN_BASELINE_REPS);
  for (let i = 0; i < settings.warmup + 2; i++) rawShaEcb(measuredParts, expectEs.digest);
  const baselineSamples: number[] = [];
  for (let i = 0; i < baselineReps; i++) baselineSamples.push(rawShaEcb(measuredParts, expectEs.digest));
  const launch = ms(launchSamples);
  const baseline = ms(baselineSamples);
  const setup = ms(setupSamples);
  rows.push({
    id: 'owner.launch.sev-es',
    group: GROUP,
    name: `SEV-ES launch of OVMF.fd, ${VCPUS} vCPUs (${VCPU_TYPE}), Milan: LAUNCH_START … LAUNCH_FINISH`,
    value: launch.median,
    unit: 'ms',
    stat: launch,
    baseline: {
      name: `raw SHA-256 + AES-128-ECB over the ${measuredBytes / 1024} KiB measured (image + ${VCPUS} VMSAs)`,
      value: baseline.median,
      unit: 'ms',
    },
    ratio: launch.median / baseline.median,
    detail: {
      'platform setup, not in the figure (createPlatform + Hypervisor + initPlatform), median ms': round(
        setup.median,
      ),
      'baseline reps': baselineReps,
      'one extra instrumented launch, ms': [...spent.entries()]
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${round(v)}`)
        .join(', '),
    },
    note: `startFirmwareLaunch + finishFirmwareLaunch on a fresh platform each run (${GUEST_RAM / 2 ** 20} MiB guest RAM + the image mapped below 4 GiB); ratio = time / baseline time`,
  });

  // 4c. The whole owner-verified flow, SEV (platform creation included: it is part of the flow).
  log('owner: runOwnerLaunch, sev');
  const flowSamples: number[] = [];
  bar = progressBar(settings, 'owner: runOwnerLaunch sev', rounds, 'flows');
  let steps = 0;
  for (let i = 0; i < rounds; i++) {
    collectGarbage();
    const t0 = now();
    const r = runOwnerLaunch({ ovmf, mode: 'sev' });
    const took = now() - t0;
    if (!r.ok)
      throw new Error(`runOwnerLaunch failed: ${r.steps.find((s) => !s.ok)?.step ?? 'unknown step'}`);
    steps = r.steps.length;
    if (i >= settings.warmup) flowSamples.push(took);
    bar.tick();
  }
  bar.stop();
  const flow = ms(flowSamples);
  rows.push({
    id: 'owner.flow.sev',
    group: GROUP,
    name: 'runOwnerLaunch, SEV, OVMF.fd: chain export … secret injected, read by the guest, hidden from the host',
    value: flow.median,
    unit: 'ms',
    stat: flow,
    detail: { steps, 'all steps ok': 'yes' },
    note: 'no baseline; includes its own createPlatform + initPlatform, no artifacts written',
  });
  return rows;
}
