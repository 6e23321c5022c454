// The memory controller (UMC): encrypts on write-back, decrypts on fill, with the key the access
// selects. Its key slots are programmable only through the KeySlotProgrammer capability, which
// the machine hands to the PSP alone when it is assembled (ARCHITECTURE.md, "secret-holding rule").
import {
  BLOCK_SIZE,
  type CipherMode,
  type MemoryCipher,
  XeTweakFunction,
  createMemoryCipher,
  type Drbg,
} from '../crypto/index.js';
import type { Dram } from './dram.js';

export const LINE_SIZE = 64;

/**
 * Which key an access uses: KEY_NONE (no encryption), KEY_HOST (the SME key the C-bit selects in
 * host mappings) or a guest ASID (1..maxAsid), whose slot holds that guest's VEK once ACTIVATEd.
 */
export type KeyId = number;
export const KEY_NONE: KeyId = -1;
export const KEY_HOST: KeyId = 0;

/** An encrypted access through a slot that has never been programmed. */
export class KeySlotEmptyError extends Error {
  constructor(readonly keyId: KeyId) {
    super(`memory-controller key slot ${keyId} holds no key`);
    this.name = 'KeySlotEmptyError';
  }
}

export interface KeySlotInfo {
  readonly keyId: KeyId;
  /** Programmed since boot; the key itself is never observable. */
  readonly programmed: boolean;
  /** How many times the slot has been (re)programmed. */
  readonly generation: number;
}

/**
 * The only way to write a key slot, per controller. Module-private: no exported name, no property of
 * any object leads here except through a KeySlotProgrammer.
 */
const slotWriters = new WeakMap<MemoryController, (keyId: KeyId, keyMaterial: Buffer | undefined) => void>();

export class MemoryController {
  readonly #slots: (MemoryCipher | undefined)[];
  readonly #generations: number[];
  readonly #xeTweak: XeTweakFunction | undefined;

  constructor(
    readonly dram: Dram,
    readonly cipherMode: CipherMode,
    /** Highest ASID with a key slot. */
    readonly maxAsid: number,
    physAddrBits: number,
    tweakRng: Drbg,
  ) {
    this.#slots = new Array<MemoryCipher | undefined>(maxAsid + 1).fill(undefined);
    this.#generations = new Array<number>(maxAsid + 1).fill(0);
    // Zen 1's tweak constants are drawn once per boot and shared by every key.
    slotWriters.set(this, (keyId, material) => this.#program(keyId, material));
    this.#xeTweak =
      cipherMode === 'zen1-xe'
        ? new XeTweakFunction(Array.from({ length: physAddrBits - 4 }, () => tweakRng.generate(BLOCK_SIZE)))
        : undefined;
  }

  #cipher(keyId: KeyId): MemoryCipher {
    const c = this.#slots[keyId];
    if (c === undefined) throw new KeySlotEmptyError(keyId);
    return c;
  }

  /** Fill: reads `length` bytes (16-byte aligned run) at `spa` and decrypts them with `keyId`. */
  read(spa: number, length: number, keyId: KeyId): Buffer {
    const raw = this.dram.read(spa, length);
    return keyId === KEY_NONE ? raw : this.#cipher(keyId).decrypt(spa, raw);
  }

  /** Write-back: encrypts a 16-byte aligned run with `keyId` and stores it. */
  write(spa: number, data: Uint8Array, keyId: KeyId): void {
    this.dram.write(spa, keyId === KEY_NONE ? data : this.#cipher(keyId).encrypt(spa, data));
  }

  /** Slot metadata for display: never the key. */
  slotInfo(keyId: KeyId): KeySlotInfo {
    return { keyId, programmed: this.#slots[keyId] !== undefined, generation: this.#generations[keyId] ?? 0 };
  }

  #program(keyId: KeyId, keyMaterial: Buffer | undefined): void {
    if (!Number.isInteger(keyId) || keyId < 0 || keyId > this.maxAsid)
      throw new RangeError(`no key slot ${keyId}`);
    this.#slots[keyId] =
      keyMaterial === undefined ? undefined : createMemoryCipher(this.cipherMode, keyMaterial, this.#xeTweak);
    this.#generations[keyId] = (this.#generations[keyId] ?? 0) + 1;
  }

  toJSON(): string {
    return '[MemoryController]';
  }
}

/**
 * The capability to load keys into the memory controller. Created once when the machine is
 * assembled and given to the PSP; nothing else holds a reference.
 */
export class KeySlotProgrammer {
  readonly #write: (keyId: KeyId, keyMaterial: Buffer | undefined) => void;

  constructor(memoryController: MemoryController) {
    const write = slotWriters.get(memoryController);
    if (write === undefined) throw new Error('not a memory controller');
    this.#write = write;
  }

  /** Loads 32 bytes of key material into a slot; the buffer is wiped. */
  install(keyId: KeyId, keyMaterial: Buffer): void {
    this.#write(keyId, keyMaterial);
  }

  /** Forgets a slot's key (a later access through it is a KeySlotEmptyError). */
  clear(keyId: KeyId): void {
    this.#write(keyId, undefined);
  }

  toJSON(): string {
    return '[KeySlotProgrammer]';
  }
}

export { LINE_SIZE as CACHE_LINE_SIZE };
