// Benchmark 1: the memory controller's cipher (XEX and Zen 1 XE) on 4 KiB pages and 64-byte lines,
// against raw AES-128-ECB from node:crypto measured in the same run.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  BLOCK_SIZE,
  XeTweakFunction,
  createMemoryCipher,
  type CipherMode,
  type MemoryCipher,
} from '../src/crypto/index.js';
import { PAGE_SIZE } from '../src/soc/index.js';
import {
  calibrate,
  collectGarbage,
  mbps,
  measureRate,
  type Row,
  type Settings,
  type Stat,
} from './harness.js';

/** A rate statistic multiplied by `k` (e.g. pages/s → MB/s). */
function scaled(stat: Stat, k: number): Stat {
  return {
    median: stat.median * k,
    min: stat.min * k,
    max: stat.max * k,
    samples: stat.samples.map((x) => x * k),
  };
}

/** Raw-ECB buffers: 1 MiB, large enough that per-call overhead vanishes (the firmware model's chunk size). */
const RAW_BUFFER_BYTES = 1024 * 1024;
/** The cipher's figure should reach this fraction of raw AES-128-ECB. */
export const CIPHER_TARGET_RATIO = 0.5;
const LINE = 64;
/** Pages a "warm" run cycles over: 4 MiB, inside the cipher's 2048-page tweak cache. */
const WARM_PAGES = 1024;
/** Pages a "cold" run strides over: 256 MiB, far beyond the tweak cache (what LAUNCH_UPDATE sees). */
const COLD_PAGES = 65536;
/** Seconds one measured repetition should take. */
const REP_SECONDS = 0.5;

function ecbEncryptor(key: Buffer): { update(b: Buffer): Buffer } {
  const c = createCipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return c;
}

function ecbDecryptor(key: Buffer): { update(b: Buffer): Buffer } {
  const d = createDecipheriv('aes-128-ecb', key, null);
  d.setAutoPadding(false);
  return d;
}

/** A fresh cipher of `mode` with random keys (and, for XE, random boot-time tweak constants). */
export function benchCipher(mode: CipherMode): MemoryCipher {
  const xe =
    mode === 'zen1-xe'
      ? new XeTweakFunction(Array.from({ length: 48 - 4 }, () => randomBytes(BLOCK_SIZE)))
      : undefined;
  return createMemoryCipher(mode, randomBytes(32), xe);
}

/** Raw AES-128-ECB throughput (MB/s) on large buffers. */
function rawEcb(direction: 'encrypt' | 'decrypt', settings: Settings): Stat {
  const c = direction === 'encrypt' ? ecbEncryptor(randomBytes(16)) : ecbDecryptor(randomBytes(16));
  const buf = randomBytes(RAW_BUFFER_BYTES);
  let sink = 0;
  const body = (n: number): void => {
    for (let i = 0; i < n; i++) sink ^= c.update(buf)[i & 0xff] as number;
  };
  const n = calibrate(body, 1, REP_SECONDS);
  const stat = measureRate(body, n, settings);
  if (sink === -1) console.error(sink);
  return scaled(stat, RAW_BUFFER_BYTES / 1e6);
}

/** Raw AES-128-ECB on single 64-byte buffers: the per-call floor a line-sized request pays. */
function rawEcbLines(settings: Settings): Stat {
  const d = ecbDecryptor(randomBytes(16));
  const lines = Array.from({ length: 256 }, () => randomBytes(LINE));
  let sink = 0;
  const body = (n: number): void => {
    for (let i = 0; i < n; i++) sink ^= d.update(lines[i & 0xff] as Buffer)[0] as number;
  };
  const n = calibrate(body, 1024, REP_SECONDS);
  const stat = measureRate(body, n, settings);
  if (sink === -1) console.error(sink);
  return stat;
}

/** Memory-cipher throughput (MB/s) on 4 KiB pages at `pages` distinct page addresses. */
function cipherPages(
  mode: CipherMode,
  direction: 'encrypt' | 'decrypt',
  pages: number,
  settings: Settings,
): Stat {
  const cipher = benchCipher(mode);
  const data = Array.from({ length: 64 }, () => randomBytes(PAGE_SIZE));
  const base = 0x100_0000;
  let cursor = 0;
  let sink = 0;
  const op = direction === 'encrypt' ? cipher.encrypt.bind(cipher) : cipher.decrypt.bind(cipher);
  const body = (n: number): void => {
    for (let i = 0; i < n; i++) {
      sink ^= op(base + cursor * PAGE_SIZE, data[i & 63] as Buffer)[i & 0xff] as number;
      cursor = cursor + 1 === pages ? 0 : cursor + 1;
    }
  };
  // Cycling over more pages than the tweak cache holds (insertion-order eviction) misses every time.
  const n = calibrate(body, 64, REP_SECONDS);
  const stat = measureRate(body, n, settings);
  if (sink === -1) console.error(sink);
  return scaled(stat, PAGE_SIZE / 1e6);
}

/** Memory-cipher decrypts of single 64-byte lines (lines/s), over the warm page range. */
function cipherLines(mode: CipherMode, settings: Settings): Stat {
  const cipher = benchCipher(mode);
  const lines = Array.from({ length: 256 }, () => randomBytes(LINE));
  const base = 0x100_0000;
  const span = (WARM_PAGES * PAGE_SIZE) / LINE;
  let cursor = 0;
  let sink = 0;
  const body = (n: number): void => {
    for (let i = 0; i < n; i++) {
      sink ^= cipher.decrypt(base + cursor * LINE, lines[i & 0xff] as Buffer)[0] as number;
      cursor = cursor + 1 === span ? 0 : cursor + 1;
    }
  };
  const n = calibrate(body, 4096, REP_SECONDS);
  const stat = measureRate(body, n, settings);
  if (sink === -1) console.error(sink);
  return stat;
}

export function runCipherBenchmarks(settings: Settings, log: (msg: string) => void): Row[] {
  const rows: Row[] = [];
  log('cipher: raw AES-128-ECB baselines');
  const raw = { encrypt: rawEcb('encrypt', settings), decrypt: rawEcb('decrypt', settings) };
  collectGarbage();
  const rawLines = rawEcbLines(settings);
  const pageRow = (
    id: string,
    name: string,
    stat: Stat,
    direction: 'encrypt' | 'decrypt',
    note: string,
  ): Row => {
    const ratio = stat.median / raw[direction].median;
    return {
      id,
      group: '1 cipher',
      name,
      value: stat.median,
      unit: 'MB/s',
      stat,
      baseline: {
        name: `raw AES-128-ECB ${direction}, 1 MiB buffers`,
        value: raw[direction].median,
        unit: 'MB/s',
      },
      ratio,
      target: { min: CIPHER_TARGET_RATIO, on: 'ratio' },
      met: ratio >= CIPHER_TARGET_RATIO,
      note,
    };
  };
  for (const mode of ['xex', 'zen1-xe'] as const) {
    for (const direction of ['encrypt', 'decrypt'] as const) {
      log(`cipher: ${mode} ${direction} 4 KiB pages`);
      collectGarbage();
      const stat = cipherPages(mode, direction, WARM_PAGES, settings);
      rows.push(
        pageRow(
          `cipher.${mode}.${direction}.page`,
          `${mode} ${direction}, 4 KiB pages (tweak cached)`,
          stat,
          direction,
          `${WARM_PAGES} distinct pages, inside the 2048-page tweak cache`,
        ),
      );
    }
    log(`cipher: ${mode} encrypt 4 KiB pages, tweak cache cold`);
    collectGarbage();
    const cold = cipherPages(mode, 'encrypt', COLD_PAGES, settings);
    rows.push(
      pageRow(
        `cipher.${mode}.encrypt.page-cold`,
        `${mode} encrypt, 4 KiB pages (tweak cache cold)`,
        cold,
        'encrypt',
        `pages strided over ${(COLD_PAGES * PAGE_SIZE) / 2 ** 20} MiB: every page recomputes its tweak table (the LAUNCH_UPDATE case)`,
      ),
    );
    log(`cipher: ${mode} decrypt 64-byte lines`);
    collectGarbage();
    const lines = cipherLines(mode, settings);
    rows.push({
      id: `cipher.${mode}.decrypt.line`,
      group: '1 cipher',
      name: `${mode} decrypt, 64-byte lines`,
      value: lines.median,
      unit: 'lines/s',
      stat: lines,
      baseline: {
        name: 'raw AES-128-ECB decrypt() of one 64 B buffer per call',
        value: rawLines.median,
        unit: 'lines/s',
      },
      ratio: lines.median / rawLines.median,
      detail: {
        'as MB/s': Number(mbps(lines.median * LINE).toFixed(1)),
        'raw ECB 1 MiB-buffer rate in lines/s': Math.round((raw.decrypt.median * 1e6) / LINE),
      },
    });
  }
  rows.push(
    {
      id: 'cipher.raw.encrypt',
      group: '1 baseline',
      name: 'raw AES-128-ECB encrypt, 1 MiB buffers',
      value: raw.encrypt.median,
      unit: 'MB/s',
      stat: raw.encrypt,
    },
    {
      id: 'cipher.raw.decrypt',
      group: '1 baseline',
      name: 'raw AES-128-ECB decrypt, 1 MiB buffers',
      value: raw.decrypt.median,
      unit: 'MB/s',
      stat: raw.decrypt,
    },
    {
      id: 'cipher.raw.line',
      group: '1 baseline',
      name: 'raw AES-128-ECB decrypt, one 64 B buffer per call',
      value: rawLines.median,
      unit: 'lines/s',
      stat: rawLines,
    },
  );
  return rows;
}
