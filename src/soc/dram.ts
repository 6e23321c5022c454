// Physical memory: what a DMA device, a cold-boot attacker or an unencrypted host mapping sees.

export const PAGE_SIZE = 4096;

/** An access outside installed memory: a machine-check in real hardware, a typed error here. */
export class PhysicalAddressError extends Error {
  constructor(
    readonly spa: number,
    readonly length: number,
    readonly installedBytes: number,
  ) {
    super(
      `physical access 0x${spa.toString(16)}+${length} outside installed DRAM (0x${installedBytes.toString(16)} bytes)`,
    );
    this.name = 'PhysicalAddressError';
  }
}

/** Sparse DRAM: pages that were never written read as zero and cost nothing. */
export class Dram {
  readonly #pages = new Map<number, Buffer>();

  constructor(readonly sizeBytes: number) {
    if (sizeBytes <= 0 || sizeBytes % PAGE_SIZE !== 0)
      throw new RangeError('DRAM size must be a positive multiple of 4 KiB');
  }

  #check(spa: number, length: number): void {
    if (!Number.isSafeInteger(spa) || spa < 0 || length < 0 || spa + length > this.sizeBytes) {
      throw new PhysicalAddressError(spa, length, this.sizeBytes);
    }
  }

  #page(n: number, create: boolean): Buffer | undefined {
    let p = this.#pages.get(n);
    if (p === undefined && create) {
      p = Buffer.alloc(PAGE_SIZE);
      this.#pages.set(n, p);
    }
    return p;
  }

  /** Copies `length` bytes at `spa` as stored (ciphertext for encrypted memory). */
  read(spa: number, length: number): Buffer {
    this.#check(spa, length);
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const at = spa + done;
      const n = Math.floor(at / PAGE_SIZE);
      const off = at - n * PAGE_SIZE;
      const take = Math.min(PAGE_SIZE - off, length - done);
      const p = this.#page(n, false);
      if (p !== undefined) p.copy(out, done, off, off + take);
      else out.fill(0, done, done + take);
      done += take;
    }
    return out;
  }

  /** Stores bytes as given. */
  write(spa: number, data: Uint8Array): void {
    this.#check(spa, data.length);
    let done = 0;
    while (done < data.length) {
      const at = spa + done;
      const n = Math.floor(at / PAGE_SIZE);
      const off = at - n * PAGE_SIZE;
      const take = Math.min(PAGE_SIZE - off, data.length - done);
      (this.#page(n, true) as Buffer).set(data.subarray(done, done + take), off);
      done += take;
    }
  }

  /** Number of pages ever written (a measure of the simulation's memory use). */
  get populatedPages(): number {
    return this.#pages.size;
  }

  /**
   * Every physical address where `needle` occurs: the cold-boot attacker's scan of all of DRAM.
   * Matches that straddle a page boundary, also into never-written (zero) pages, are found. A needle
   * of zeros only is refused: every never-written byte would match it.
   */
  scan(needle: Uint8Array): number[] {
    if (needle.length === 0 || needle.length > PAGE_SIZE)
      throw new RangeError('needle must be 1..4096 bytes');
    if (needle.every((b) => b === 0)) throw new RangeError('an all-zero needle matches all unwritten memory');
    const hits = new Set<number>();
    const needleBuf = Buffer.from(needle);
    const margin = needle.length - 1;
    const zeros = Buffer.alloc(margin);
    for (const n of this.#pages.keys()) {
      const base = n * PAGE_SIZE;
      const prev = this.#pages.get(n - 1);
      const next = this.#pages.get(n + 1);
      const head = n === 0 ? Buffer.alloc(0) : prev === undefined ? zeros : prev.subarray(PAGE_SIZE - margin);
      const tail =
        base + PAGE_SIZE >= this.sizeBytes
          ? Buffer.alloc(0)
          : next === undefined
            ? zeros
            : next.subarray(0, margin);
      const window = Buffer.concat([head, this.#pages.get(n) as Buffer, tail]);
      for (let i = window.indexOf(needleBuf); i !== -1; i = window.indexOf(needleBuf, i + 1))
        hits.add(base - head.length + i);
    }
    return [...hits].sort((a, b) => a - b);
  }
}
