// Host physical memory management: 4 KiB frames handed to the hypervisor's own structures and to guests.
import { PAGE_SIZE } from '../soc/index.js';

export class OutOfMemoryError extends Error {
  constructor(requested: number, free: number) {
    super(`host physical memory exhausted: ${requested} frames requested, ${free} free`);
    this.name = 'OutOfMemoryError';
  }
}

export class FrameAllocator {
  #next: number;
  readonly #free: number[] = [];

  /** Frames from `firstAddress` (the host kernel keeps the memory below) to `limit`. */
  constructor(
    firstAddress: number,
    private readonly limit: number,
  ) {
    this.#next = Math.ceil(firstAddress / PAGE_SIZE) * PAGE_SIZE;
  }

  get freeFrames(): number {
    return this.#free.length + Math.floor((this.limit - this.#next) / PAGE_SIZE);
  }

  allocate(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    if (this.#next + PAGE_SIZE > this.limit) throw new OutOfMemoryError(1, 0);
    const spa = this.#next;
    this.#next += PAGE_SIZE;
    return spa;
  }

  /** `count` frames; physically contiguous when `contiguous` (e.g. a TMR or a bulk image). */
  allocateMany(count: number, contiguous = false): number[] {
    if (count > this.freeFrames) throw new OutOfMemoryError(count, this.freeFrames);
    if (!contiguous) return Array.from({ length: count }, () => this.allocate());
    if (this.#next + count * PAGE_SIZE > this.limit)
      throw new OutOfMemoryError(count, Math.floor((this.limit - this.#next) / PAGE_SIZE));
    const base = this.#next;
    this.#next += count * PAGE_SIZE;
    return Array.from({ length: count }, (_, i) => base + i * PAGE_SIZE);
  }

  /** Aligned contiguous block of `bytes` (power-of-two alignment). */
  allocateAligned(bytes: number, alignment: number): number {
    const base = Math.ceil(this.#next / alignment) * alignment;
    if (base + bytes > this.limit) throw new OutOfMemoryError(bytes / PAGE_SIZE, this.freeFrames);
    for (let a = this.#next; a < base; a += PAGE_SIZE) this.#free.push(a);
    this.#next = base + bytes;
    return base;
  }

  /**
   * `count` contiguous frames never handed out before: they read as zero and no cache line holds
   * them, so a guest can take them without the zero-and-flush that reused frames need.
   */
  allocateFresh(count: number): number {
    if (this.#next + count * PAGE_SIZE > this.limit) {
      throw new OutOfMemoryError(count, Math.floor((this.limit - this.#next) / PAGE_SIZE));
    }
    const base = this.#next;
    this.#next += count * PAGE_SIZE;
    return base;
  }

  release(spa: number): void {
    this.#free.push(spa);
  }
}
