// The shared last-level cache: set-associative, write-back, 64-byte lines of PLAINTEXT tagged by
// (physical line, key id). Encryption happens below it, in the memory controller (sev-reference §1.4).
// Lines for the same address under different keys are distinct and not coherent with each other,
// which is why the firmware needs WBINVD + DF_FLUSH before reusing an ASID.
import { KEY_NONE, LINE_SIZE, type KeyId, type MemoryController } from './memory-controller.js';

export interface CacheGeometry {
  /** Number of sets (power of two not required). */
  readonly sets: number;
  readonly ways: number;
}

/** 4 MiB, 16-way: the scale of one EPYC CCX's L3. */
export const DEFAULT_CACHE_GEOMETRY: CacheGeometry = { sets: 4096, ways: 16 };

/** What a cache probe tells (no data: probing is a host capability, C7). */
export interface LineState {
  readonly present: boolean;
  readonly dirty: boolean;
}

export interface CacheStats {
  hits: number;
  misses: number;
  writebacks: number;
}

/** What the PSP's DMA port may do to the cache; module-private, handed out by {@link cacheDeviceSide}. */
interface CacheDeviceSide {
  snoop(spa: number, length: number, key: KeyId): void;
  clearWbinvdDone(): void;
}
const deviceSides = new WeakMap<Cache, CacheDeviceSide>();

/** @internal For the PSP's DMA port, built at assembly: coherent device access and WBINVD_DONE clearing. */
export function cacheDeviceSide(cache: Cache): CacheDeviceSide {
  const side = deviceSides.get(cache);
  if (side === undefined) throw new Error('not a cache');
  return side;
}

export class Cache {
  readonly #sets: number;
  readonly #ways: number;
  /** Physical line number per way, -1 when invalid. */
  readonly #line: Float64Array;
  readonly #key: Int32Array;
  readonly #dirty: Uint8Array;
  readonly #lru: Float64Array;
  readonly #data: Buffer;
  #tick = 0;
  /** Valid lines per key id (lets a device snoop skip keys the cache holds nothing of). */
  readonly #perKey = new Map<KeyId, number>();
  #wbinvdDone = false;
  readonly stats: CacheStats = { hits: 0, misses: 0, writebacks: 0 };

  readonly #mc: MemoryController;

  constructor(mc: MemoryController, geometry: CacheGeometry = DEFAULT_CACHE_GEOMETRY) {
    this.#mc = mc;
    deviceSides.set(this, {
      snoop: (spa, length, key) => this.#snoop(spa, length, key),
      clearWbinvdDone: () => {
        this.#wbinvdDone = false;
      },
    });
    this.#sets = geometry.sets;
    this.#ways = geometry.ways;
    const n = geometry.sets * geometry.ways;
    this.#line = new Float64Array(n).fill(-1);
    this.#key = new Int32Array(n);
    this.#dirty = new Uint8Array(n);
    this.#lru = new Float64Array(n);
    this.#data = Buffer.alloc(n * LINE_SIZE);
  }

  get sizeBytes(): number {
    return this.#sets * this.#ways * LINE_SIZE;
  }

  /** The slot holding (line, key), or -1. */
  #find(line: number, key: KeyId): number {
    const base = (line % this.#sets) * this.#ways;
    for (let i = base, end = base + this.#ways; i < end; i++) {
      if (this.#line[i] === line && this.#key[i] === key) return i;
    }
    return -1;
  }

  #writeBack(slot: number): void {
    const line = this.#line[slot] as number;
    const off = slot * LINE_SIZE;
    this.#mc.write(line * LINE_SIZE, this.#data.subarray(off, off + LINE_SIZE), this.#key[slot] as number);
    this.#dirty[slot] = 0;
    this.stats.writebacks++;
  }

  /** Finds or fills (line, key); evicts the least recently used way of the set. */
  #slotFor(line: number, key: KeyId, fill: boolean): number {
    const hit = this.#find(line, key);
    if (hit >= 0) {
      this.stats.hits++;
      this.#lru[hit] = ++this.#tick;
      return hit;
    }
    this.stats.misses++;
    const base = (line % this.#sets) * this.#ways;
    let victim = base;
    for (let i = base, end = base + this.#ways; i < end; i++) {
      if (this.#line[i] === -1) {
        victim = i;
        break;
      }
      if ((this.#lru[i] as number) < (this.#lru[victim] as number)) victim = i;
    }
    if (this.#line[victim] !== -1) {
      if (this.#dirty[victim] === 1) this.#writeBack(victim);
      this.#invalidate(victim);
    }
    const off = victim * LINE_SIZE;
    if (fill) {
      this.#mc.read(line * LINE_SIZE, LINE_SIZE, key).copy(this.#data, off);
    }
    this.#line[victim] = line;
    this.#key[victim] = key;
    this.#perKey.set(key, (this.#perKey.get(key) ?? 0) + 1);
    this.#dirty[victim] = 0;
    this.#lru[victim] = ++this.#tick;
    return victim;
  }

  /** A CPU load: `length` bytes at `spa` through key `key` (may cross lines). */
  read(spa: number, length: number, key: KeyId): Buffer {
    const out = Buffer.allocUnsafe(length);
    this.readInto(out, 0, spa, length, key);
    return out;
  }

  /** A CPU load into `out` at `at` (no allocation). */
  readInto(out: Uint8Array, at: number, spa: number, length: number, key: KeyId): void {
    let done = 0;
    while (done < length) {
      const addr = spa + done;
      const l = Math.floor(addr / LINE_SIZE);
      const o = addr - l * LINE_SIZE;
      const take = Math.min(LINE_SIZE - o, length - done);
      const start = this.#slotFor(l, key, true) * LINE_SIZE + o;
      if (take <= 16) {
        // Buffer.copy's call overhead dominates for a register-sized load.
        const data = this.#data;
        for (let i = 0; i < take; i++) out[at + done + i] = data[start + i] as number;
      } else {
        this.#data.copy(out, at + done, start, start + take);
      }
      done += take;
    }
  }

  /**
   * An instruction fetch's check: do the `length` bytes at `spa` (within one line) read under `key`
   * equal `expected[offset..]`? Compared in place, nothing allocated.
   */
  matches(spa: number, key: KeyId, expected: Buffer, offset: number, length: number): boolean {
    const l = Math.floor(spa / LINE_SIZE);
    const start = this.#slotFor(l, key, true) * LINE_SIZE + (spa - l * LINE_SIZE);
    // A byte loop: Buffer.compare's native call costs more than comparing ≤ 64 bytes here.
    const data = this.#data;
    for (let i = 0; i < length; i++) if (data[start + i] !== expected[offset + i]) return false;
    return true;
  }

  /** A CPU store: write-allocate, the line becomes dirty. */
  write(spa: number, data: Uint8Array, key: KeyId): void {
    let done = 0;
    while (done < data.length) {
      const at = spa + done;
      const l = Math.floor(at / LINE_SIZE);
      const o = at - l * LINE_SIZE;
      const take = Math.min(LINE_SIZE - o, data.length - done);
      // A full-line store need not read the old line.
      const slot = this.#slotFor(l, key, take !== LINE_SIZE);
      const start = slot * LINE_SIZE + o;
      if (take <= 16) {
        const cached = this.#data;
        for (let i = 0; i < take; i++) cached[start + i] = data[done + i] as number;
      } else {
        this.#data.set(data.subarray(done, done + take), start);
      }
      this.#dirty[slot] = 1;
      done += take;
    }
  }

  /** Drops a valid slot (no write-back). */
  #invalidate(slot: number): void {
    const key = this.#key[slot] as number;
    this.#perKey.set(key, (this.#perKey.get(key) ?? 1) - 1);
    this.#line[slot] = -1;
    this.#dirty[slot] = 0;
  }

  /** WBINVD: write back every dirty line, invalidate everything, and set the core's WBINVD_DONE flag. */
  wbinvd(): void {
    for (let i = 0; i < this.#line.length; i++) {
      if (this.#line[i] === -1) continue;
      if (this.#dirty[i] === 1) this.#writeBack(i);
      this.#line[i] = -1;
    }
    this.#perKey.clear();
    this.#wbinvdDone = true;
  }

  /** INVD: invalidate everything WITHOUT writing back: dirty data is lost (CacheWarp's primitive). */
  invd(): void {
    this.#line.fill(-1);
    this.#dirty.fill(0);
    this.#perKey.clear();
  }

  /** CLFLUSH: write back and invalidate the line holding `spa`, under every key it is cached with. */
  clflush(spa: number): void {
    const line = Math.floor(spa / LINE_SIZE);
    const base = (line % this.#sets) * this.#ways;
    for (let i = base, end = base + this.#ways; i < end; i++) {
      if (this.#line[i] !== line) continue;
      if (this.#dirty[i] === 1) this.#writeBack(i);
      this.#invalidate(i);
    }
  }

  /** CLFLUSH over a range, line by line (what Linux's sev_clflush_pages does before LAUNCH_UPDATE). */
  clflushRange(spa: number, length: number): void {
    const first = Math.floor(spa / LINE_SIZE);
    const last = Math.floor((spa + length - 1) / LINE_SIZE);
    for (let l = first; l <= last; l++) this.clflush(l * LINE_SIZE);
  }

  /** Presence and dirtiness of (spa's line, key): the host's cache-state probe. */
  probe(spa: number, key: KeyId): LineState {
    const slot = this.#find(Math.floor(spa / LINE_SIZE), key);
    return { present: slot >= 0, dirty: slot >= 0 && this.#dirty[slot] === 1 };
  }

  /** Number of valid lines cached under `key` (for the key-slot table). */
  linesUnder(key: KeyId): number {
    return this.#perKey.get(key) ?? 0;
  }

  /** Has this core executed WBINVD since the firmware last cleared the flag? */
  get wbinvdDone(): boolean {
    return this.#wbinvdDone;
  }

  /**
   * A coherent device access (the PSP's DMA): lines of the same key in the range are
   * written back and invalidated first; lines under OTHER keys are not touched — the fabric is not
   * coherent across keys (no SME_COHERENT), so their stale dirty data can still overwrite DRAM later.
   */
  #snoop(spa: number, length: number, key: KeyId): void {
    if (length === 0 || (this.#perKey.get(key) ?? 0) === 0) return;
    const first = Math.floor(spa / LINE_SIZE);
    const last = Math.floor((spa + length - 1) / LINE_SIZE);
    const snoop = (slot: number): void => {
      if (this.#dirty[slot] === 1) this.#writeBack(slot);
      this.#invalidate(slot);
    };
    if ((last - first + 1) * this.#ways > this.#line.length) {
      // A range larger than the cache: one pass over the slots is cheaper than a lookup per line.
      for (let i = 0; i < this.#line.length; i++) {
        const l = this.#line[i] as number;
        if (l >= first && l <= last && this.#key[i] === key) snoop(i);
      }
      return;
    }
    for (let l = first; l <= last; l++) {
      const slot = this.#find(l, key);
      if (slot >= 0) snoop(slot);
    }
  }

  toJSON(): string {
    return '[Cache]';
  }
}

export { KEY_NONE };
