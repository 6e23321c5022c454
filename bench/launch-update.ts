// Benchmark 3: LAUNCH_UPDATE_DATA of a 256 MiB image through the PSP mailbox, against raw
// AES-128-ECB + SHA-256 over the same number of bytes measured in the same run.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import {
  ActivateBuffer,
  HandleBuffer,
  LaunchStartBuffer,
  LaunchUpdateBuffer,
  SevCommand,
  encodeSevPolicy,
} from '../src/abi/index.js';
import { Hypervisor } from '../src/host/index.js';
import { createPlatform } from '../src/psp/index.js';
import { PAGE_SIZE } from '../src/soc/index.js';
import { collectGarbage, mbps, now, progressBar, summarize, type Row, type Settings } from './harness.js';

const MiB = 1024 * 1024;
export const IMAGE_BYTES = 256 * MiB;
/** Bytes per LAUNCH_UPDATE_DATA command (KVM issues one per run of contiguous pages; 8 calls here). */
const CALL_BYTES = 32 * MiB;
/** The firmware model's internal chunk (psp.ts UPDATE_CHUNK), used for the baseline too. */
const BASELINE_CHUNK = 1 * MiB;
/** Distinct memory the baseline streams over (repeated to reach IMAGE_BYTES). */
const BASELINE_POOL_BYTES = 64 * MiB;

/** Raw AES-128-ECB encrypt + SHA-256 over `bytes`, 1 MiB at a time (bytes/s). */
function rawEcbSha(bytes: number, pool: Buffer): number {
  const ecb = createCipheriv('aes-128-ecb', randomBytes(16), null);
  ecb.setAutoPadding(false);
  const hash = createHash('sha256');
  let sink = 0;
  const t0 = now();
  for (let done = 0; done < bytes; done += BASELINE_CHUNK) {
    const off = done % pool.length;
    const chunk = pool.subarray(off, off + BASELINE_CHUNK);
    hash.update(chunk);
    sink ^= ecb.update(chunk)[0] as number;
  }
  const digest = hash.digest();
  const seconds = (now() - t0) / 1000;
  if (sink === -1) console.error(digest);
  return bytes / seconds;
}

/** Naples (Zen 1 XE) is measured on a smaller image to keep the run short: its cost per byte does not depend on the size. */
const NAPLES_IMAGE_BYTES = 64 * MiB;

export function runLaunchBenchmarks(settings: Settings, log: (msg: string) => void): Row[] {
  const sized = (bytes: number): number =>
    Math.max(CALL_BYTES, Math.round((bytes * settings.scale) / CALL_BYTES) * CALL_BYTES);
  const rows: Row[] = [];
  for (const [product, imageBytes] of [
    ['milan', sized(IMAGE_BYTES)],
    ['naples', sized(NAPLES_IMAGE_BYTES)],
  ] as const) {
    log(`launch: ${product}, building a 1 GiB host`);
    collectGarbage();
    const platform = createPlatform({ product, seed: 'bench-launch', dramBytes: 1024 * MiB });
    const hv = new Hypervisor(platform);
    hv.initPlatform();
    const host = platform.soc.hostMemory;
    const frames = hv.frames.allocateMany(imageBytes / PAGE_SIZE, true);
    const base = frames[0] as number;

    // The image, written as plaintext through the host's C=0 mapping (what QEMU's memcpy does).
    const pattern = randomBytes(MiB);
    let bar = progressBar(settings, `launch ${product}: write image`, imageBytes / MiB, 'MiB');
    const tWrite = now();
    for (let off = 0; off < imageBytes; off += MiB) {
      pattern.writeUInt32LE(off / MiB, 0);
      host.write(base + off, pattern, false);
      bar.tick();
    }
    bar.stop();
    const writeSeconds = (now() - tWrite) / 1000;
    // Linux's sev_clflush_pages before LAUNCH_UPDATE_DATA: drop the C=0 lines of the range.
    const tFlush = now();
    host.clflushRange(base, imageBytes);
    const flushSeconds = (now() - tFlush) / 1000;

    const policy = encodeSevPolicy({ noDebug: true, noKeySharing: true });
    const d = hv.driver;
    let asid = platform.profile.minSevAsid;
    /** One fresh guest (LAUNCH_START, ACTIVATE), LAUNCH_UPDATE_DATA over the first `bytes` of the image; returns bytes/s. */
    const launchOnce = (label: string, bytes: number): number => {
      const handle = d.call(SevCommand.LAUNCH_START, LaunchStartBuffer, { handle: 0, policy }).handle;
      d.call(SevCommand.ACTIVATE, ActivateBuffer, { handle, asid: asid++ });
      bar = progressBar(settings, `launch ${product}: ${label}`, bytes / MiB, 'MiB');
      const t0 = now();
      for (let off = 0; off < bytes; off += CALL_BYTES) {
        d.call(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
          handle,
          paddr: BigInt(base + off),
          length: CALL_BYTES,
        });
        bar.tick(CALL_BYTES / MiB);
      }
      const seconds = (now() - t0) / 1000;
      bar.stop();
      d.call(SevCommand.DEACTIVATE, HandleBuffer, { handle });
      d.call(SevCommand.DECOMMISSION, HandleBuffer, { handle });
      return bytes / seconds;
    };

    log(`launch: ${product}, LAUNCH_UPDATE_DATA of ${imageBytes / MiB} MiB`);
    const samples: number[] = [];
    // Warm-up (discarded): one command of CALL_BYTES, enough to compile the path. Each run
    // re-encrypts the region in place under a fresh guest's key (after the first run the input is
    // the previous run's ciphertext: the same work per byte).
    for (let i = 0; i < settings.warmup; i++) launchOnce(`warm-up ${i + 1}`, CALL_BYTES);
    for (let i = 0; i < settings.reps; i++) {
      collectGarbage();
      samples.push(launchOnce(`run ${i + 1}/${settings.reps}`, imageBytes));
    }
    const stat = summarize(samples.map(mbps));

    log(`launch: ${product}, raw AES-128-ECB + SHA-256 baseline`);
    collectGarbage();
    const pool = randomBytes(Math.min(BASELINE_POOL_BYTES, imageBytes));
    rawEcbSha(BASELINE_POOL_BYTES, pool);
    const baselineSamples: number[] = [];
    for (let i = 0; i < settings.reps; i++) baselineSamples.push(rawEcbSha(imageBytes, pool));
    const baseline = summarize(baselineSamples.map(mbps));

    rows.push({
      id: `launch.${product}.update-data`,
      group: '3 launch',
      name: `LAUNCH_UPDATE_DATA ${imageBytes / MiB} MiB, ${platform.profile.cipherMode} (${product}), ${imageBytes / CALL_BYTES} calls`,
      value: stat.median,
      unit: 'MB/s',
      stat,
      baseline: {
        name: 'raw AES-128-ECB encrypt + SHA-256, same bytes, 1 MiB chunks',
        value: baseline.median,
        unit: 'MB/s',
      },
      ratio: stat.median / baseline.median,
      detail: {
        'measured runs': samples.length,
        'image write via host C=0 mapping (s)': Number(writeSeconds.toFixed(2)),
        'clflushRange before launch (s)': Number(flushSeconds.toFixed(2)),
        'DRAM pages populated': platform.soc.dram.populatedPages,
      },
      note: 'time of the PSP commands only (mailbox, DMA read, SHA-256, encrypt, DMA write)',
    });
  }
  return rows;
}
