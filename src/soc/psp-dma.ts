// The PSP's path to system memory. It can use any key id (it is the only agent that may), its
// accesses snoop same-key cache lines, and — like the real firmware — it relies on the host having
// flushed lines cached under other keys (Linux sev_clflush_pages before LAUNCH_UPDATE_DATA).
import { BLOCK_SIZE } from '../crypto/index.js';
import { type Cache, cacheDeviceSide } from './cache.js';
import { KEY_NONE, type KeyId, type MemoryController } from './memory-controller.js';

export class PspDmaPort {
  readonly #mc: MemoryController;
  readonly #cache: Cache;
  readonly #device: ReturnType<typeof cacheDeviceSide>;

  constructor(mc: MemoryController, cache: Cache) {
    this.#mc = mc;
    this.#cache = cache;
    this.#device = cacheDeviceSide(cache);
  }

  /** Reads `length` bytes at `spa`, decrypted with `key` (any alignment). */
  read(spa: number, length: number, key: KeyId): Buffer {
    if (length === 0) return Buffer.alloc(0);
    this.#device.snoop(spa, length, key);
    if (key === KEY_NONE) return this.#mc.read(spa, length, key);
    const start = Math.floor(spa / BLOCK_SIZE) * BLOCK_SIZE;
    const end = Math.ceil((spa + length) / BLOCK_SIZE) * BLOCK_SIZE;
    return this.#mc.read(start, end - start, key).subarray(spa - start, spa - start + length);
  }

  /** Writes bytes at `spa`, encrypted with `key`; partial blocks are read-modify-written. */
  write(spa: number, data: Uint8Array, key: KeyId): void {
    if (data.length === 0) return;
    this.#device.snoop(spa, data.length, key);
    if (key === KEY_NONE) {
      this.#mc.write(spa, data, key);
      return;
    }
    const start = Math.floor(spa / BLOCK_SIZE) * BLOCK_SIZE;
    const end = Math.ceil((spa + data.length) / BLOCK_SIZE) * BLOCK_SIZE;
    if (start === spa && end === spa + data.length) {
      this.#mc.write(spa, data, key);
      return;
    }
    const buf = this.#mc.read(start, end - start, key);
    buf.set(data, spa - start);
    this.#mc.write(start, buf, key);
  }

  /** The cores' WBINVD_DONE flag, which DF_FLUSH requires (ASPFW is_wbinvd_done). */
  get wbinvdDone(): boolean {
    return this.#cache.wbinvdDone;
  }

  /** Cleared by the firmware at INIT and when a running ASID is deactivated. */
  clearWbinvdDone(): void {
    this.#device.clearWbinvdDone();
  }

  /** Physical memory size, for address validation. */
  get dramBytes(): number {
    return this.#mc.dram.sizeBytes;
  }

  toJSON(): string {
    return '[PspDmaPort]';
  }
}
