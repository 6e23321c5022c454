// The memory controller's AES-128 cipher with a physical-address tweak (sev-reference §1.3).
//
// AMD does not document the construction; the model follows the published reverse engineering:
// Zen 1 ("XE"):  C = E_K(P ⊕ T(pa)),      T linear in the address bits (Du et al. 2017; SEVurity 2020)
// Zen 2+ (XEX):  C = E_K(P ⊕ T) ⊕ T,      T = E_K2(le128(pa)), a fresh tweak per 16-byte block.
// XEX with a 16-byte data unit and IV = le128(pa) is exactly IEEE 1619 XTS-AES-128, which the tests
// use as an independent check.
import { createCipheriv, createDecipheriv, type Cipher, type Decipher } from 'node:crypto';
import { xorInto } from './xor.js';

/** How the tweak enters the cipher: Zen 1's XE or Zen 2+'s XEX. */
export type CipherMode = 'zen1-xe' | 'xex';

export const BLOCK_SIZE = 16;
export const PAGE_SIZE = 4096;
const BLOCKS_PER_PAGE = PAGE_SIZE / BLOCK_SIZE;
/** Address bits 4 and up carry tweak constants in XE mode (bits 0..3 select a byte in a block). */
const XE_FIRST_BIT = 4;
/** Tweak tables kept per key; a page's table costs 4 KiB. */
const TWEAK_CACHE_PAGES = 2048;

/** Encrypts and decrypts 16-byte-aligned runs of bytes that live at a system physical address. */
export interface MemoryCipher {
  readonly mode: CipherMode;
  /** `data.length` and `spa` must be multiples of 16; `data` may span pages. */
  encrypt(spa: number, data: Uint8Array): Buffer;
  decrypt(spa: number, data: Uint8Array): Buffer;
}

/** Thrown for a misaligned or empty cipher request: a bug in the caller, never guest-triggered. */
export class CipherAlignmentError extends Error {
  constructor(spa: number, length: number) {
    super(
      `memory cipher needs 16-byte aligned address and length (spa=0x${spa.toString(16)}, length=${length})`,
    );
    this.name = 'CipherAlignmentError';
  }
}

function checkAlignment(spa: number, length: number): void {
  if (spa % BLOCK_SIZE !== 0 || length % BLOCK_SIZE !== 0 || length === 0 || spa < 0) {
    throw new CipherAlignmentError(spa, length);
  }
}

function ecbEncryptor(key: Uint8Array): Cipher {
  const c = createCipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return c;
}

function ecbDecryptor(key: Uint8Array): Decipher {
  const d = createDecipheriv('aes-128-ecb', key, null);
  d.setAutoPadding(false);
  return d;
}

/** Writes the 128-bit little-endian encoding of a physical address (< 2^53) at `offset`. */
export function writeLe128Address(out: Buffer, offset: number, spa: number): void {
  out.writeUInt32LE(spa % 0x1_0000_0000, offset);
  out.writeUInt32LE(Math.floor(spa / 0x1_0000_0000), offset + 4);
  out.writeUInt32LE(0, offset + 8);
  out.writeUInt32LE(0, offset + 12);
}

/** Per-page tweak tables (256 tweaks × 16 bytes), oldest-inserted evicted first (FIFO). */
class TweakCache {
  readonly #pages = new Map<number, Buffer>();
  constructor(private readonly compute: (pageBase: number) => Buffer) {}

  page(pageNumber: number): Buffer {
    let t = this.#pages.get(pageNumber);
    if (t !== undefined) return t;
    t = this.compute(pageNumber * PAGE_SIZE);
    if (this.#pages.size >= TWEAK_CACHE_PAGES) {
      const oldest = this.#pages.keys().next().value;
      if (oldest !== undefined) this.#pages.delete(oldest);
    }
    this.#pages.set(pageNumber, t);
    return t;
  }

  /** The tweaks for [spa, spa+length), as one contiguous buffer. */
  range(spa: number, length: number): Buffer {
    const first = Math.floor(spa / PAGE_SIZE);
    const offset = spa - first * PAGE_SIZE;
    if (offset + length <= PAGE_SIZE) return this.page(first).subarray(offset, offset + length);
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    let page = first;
    let inPage = offset;
    while (done < length) {
      const n = Math.min(PAGE_SIZE - inPage, length - done);
      this.page(page).copy(out, done, inPage, inPage + n);
      done += n;
      page++;
      inPage = 0;
    }
    return out;
  }
}

/**
 * Zen 2+ XEX. Holds its two AES keys only inside OpenSSL cipher contexts: nothing in this object
 * can be read back as key bytes.
 */
class XexCipher implements MemoryCipher {
  readonly mode = 'xex' as const;
  readonly #enc: Cipher;
  readonly #dec: Decipher;
  readonly #tweaks: TweakCache;

  constructor(dataKey: Uint8Array, tweakKey: Uint8Array) {
    this.#enc = ecbEncryptor(dataKey);
    this.#dec = ecbDecryptor(dataKey);
    const tweakEnc = ecbEncryptor(tweakKey);
    this.#tweaks = new TweakCache((pageBase) => {
      const addrs = Buffer.allocUnsafe(PAGE_SIZE);
      for (let i = 0; i < BLOCKS_PER_PAGE; i++)
        writeLe128Address(addrs, i * BLOCK_SIZE, pageBase + i * BLOCK_SIZE);
      return tweakEnc.update(addrs);
    });
  }

  encrypt(spa: number, data: Uint8Array): Buffer {
    checkAlignment(spa, data.length);
    const t = this.#tweaks.range(spa, data.length);
    const x = Buffer.allocUnsafe(data.length);
    xorInto(x, data, t);
    const c = this.#enc.update(x);
    xorInto(c, c, t);
    return c;
  }

  decrypt(spa: number, data: Uint8Array): Buffer {
    checkAlignment(spa, data.length);
    const t = this.#tweaks.range(spa, data.length);
    const x = Buffer.allocUnsafe(data.length);
    xorInto(x, data, t);
    const p = this.#dec.update(x);
    xorInto(p, p, t);
    return p;
  }

  toJSON(): string {
    return '[MemoryCipher xex]';
  }
}

/**
 * Zen 1 tweak function: one secret 128-bit constant per physical-address bit, drawn at boot and
 * shared by every key (the property SEVurity exploited). T(pa) = XOR of the constants of pa's set bits.
 */
export class XeTweakFunction {
  readonly #constants: Buffer[];
  readonly #inPage: Buffer;

  /** `constants[i]` is the 16-byte constant for address bit `i + 4`. */
  constructor(constants: Buffer[]) {
    this.#constants = constants.map((c) => Buffer.from(c));
    this.#inPage = Buffer.alloc(PAGE_SIZE);
    for (let i = 0; i < BLOCKS_PER_PAGE; i++) this.#accumulate(this.#inPage, i * BLOCK_SIZE, i * BLOCK_SIZE);
  }

  /** Number of address bits covered. */
  get addressBits(): number {
    return this.#constants.length + XE_FIRST_BIT;
  }

  /** The 256 tweaks of the page at `pageBase`. */
  pageTable(pageBase: number): Buffer {
    const base = Buffer.alloc(BLOCK_SIZE);
    this.#accumulate(base, 0, pageBase);
    const out = Buffer.allocUnsafe(PAGE_SIZE);
    for (let i = 0; i < BLOCKS_PER_PAGE; i++) {
      xorInto(
        out.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE),
        this.#inPage.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE),
        base,
      );
    }
    return out;
  }

  #accumulate(out: Buffer, offset: number, address: number): void {
    let rest = Math.floor(address / 2 ** XE_FIRST_BIT);
    for (let bit = 0; rest > 0; bit++, rest = Math.floor(rest / 2)) {
      if (rest % 2 === 1) {
        const c = this.#constants[bit];
        if (c === undefined)
          throw new RangeError(
            `address 0x${address.toString(16)} beyond the tweak function's ${this.addressBits} bits`,
          );
        const dst = out.subarray(offset, offset + BLOCK_SIZE);
        xorInto(dst, dst, c);
      }
    }
  }

  toJSON(): string {
    return '[XeTweakFunction]';
  }
}

/** Zen 1 XE: one AES key, the boot-time linear tweak. */
class XeCipher implements MemoryCipher {
  readonly mode = 'zen1-xe' as const;
  readonly #enc: Cipher;
  readonly #dec: Decipher;
  readonly #tweaks: TweakCache;

  constructor(dataKey: Uint8Array, tweak: XeTweakFunction) {
    this.#enc = ecbEncryptor(dataKey);
    this.#dec = ecbDecryptor(dataKey);
    this.#tweaks = new TweakCache((pageBase) => tweak.pageTable(pageBase));
  }

  encrypt(spa: number, data: Uint8Array): Buffer {
    checkAlignment(spa, data.length);
    const t = this.#tweaks.range(spa, data.length);
    const x = Buffer.allocUnsafe(data.length);
    xorInto(x, data, t);
    return this.#enc.update(x);
  }

  decrypt(spa: number, data: Uint8Array): Buffer {
    checkAlignment(spa, data.length);
    const t = this.#tweaks.range(spa, data.length);
    const p = this.#dec.update(data);
    xorInto(p, p, t);
    return p;
  }

  toJSON(): string {
    return '[MemoryCipher zen1-xe]';
  }
}

/** Bytes of key material a slot consumes: the data key, then (XEX) the tweak key. */
export const MEMORY_KEY_MATERIAL_BYTES = 32;

/**
 * Builds the cipher for one key slot from 32 bytes of key material, which it wipes: the caller
 * keeps no copy. In XE mode the second half is unused and the boot-time tweak function applies.
 */
export function createMemoryCipher(
  mode: CipherMode,
  keyMaterial: Buffer,
  xeTweak?: XeTweakFunction,
): MemoryCipher {
  try {
    if (keyMaterial.length !== MEMORY_KEY_MATERIAL_BYTES) {
      throw new RangeError(`memory key material must be ${MEMORY_KEY_MATERIAL_BYTES} bytes`);
    }
    if (mode === 'xex') return new XexCipher(keyMaterial.subarray(0, 16), keyMaterial.subarray(16, 32));
    if (xeTweak === undefined) throw new Error('zen1-xe mode needs the boot-time tweak function');
    return new XeCipher(keyMaterial.subarray(0, 16), xeTweak);
  } finally {
    keyMaterial.fill(0);
  }
}
