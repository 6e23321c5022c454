// The memory controller's AES-128 cipher with a physical-address tweak (sev-reference §1.3).
//
// AMD does not document the construction; the model follows the published reverse engineering:
// Zen 1 ("XE"):  C = E_K(P ⊕ T(pa)),      T linear in the address bits (Du et al. 2017; SEVurity 2020)
// Zen 2+ (XEX):  C = E_K(P ⊕ T) ⊕ T,      T = E_K2(le128(pa)), a fresh tweak per 16-byte block.
// XEX with a 16-byte data unit and IV = le128(pa) is exactly IEEE 1619 XTS-AES-128, which the tests
// use as an independent check.
import { createCipheriv, createDecipheriv, type Cipher, type Decipher } from 'node:crypto';
import { words64, xorInto, xorWords } from './xor.js';

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

/** A reusable, 8-byte aligned work area with a prebuilt word view (grown on demand). */
class Scratch {
  buf = Buffer.alloc(PAGE_SIZE);
  words = words64(this.buf);
  take(length: number): Buffer {
    if (this.buf.length < length) {
      this.buf = Buffer.alloc(length);
      this.words = words64(this.buf);
    }
    return this.buf.subarray(0, length);
  }
}

/** A tweak table for one page: 256 tweaks × 16 bytes, with its word view. */
interface TweakPage {
  readonly bytes: Buffer;
  readonly words: BigInt64Array;
}

/** Per-page tweak tables, oldest-inserted evicted first (FIFO). */
class TweakCache {
  readonly #pages = new Map<number, TweakPage>();
  constructor(private readonly compute: (pageBase: number) => Buffer) {}

  page(pageNumber: number): TweakPage {
    let t = this.#pages.get(pageNumber);
    if (t !== undefined) return t;
    const bytes = Buffer.from(this.compute(pageNumber * PAGE_SIZE));
    t = { bytes, words: words64(bytes) };
    if (this.#pages.size >= TWEAK_CACHE_PAGES) {
      const oldest = this.#pages.keys().next().value;
      if (oldest !== undefined) this.#pages.delete(oldest);
    }
    this.#pages.set(pageNumber, t);
    return t;
  }
}

/** Page-aligned runs at least this long take the bulk path: tweaks computed for the run, not cached. */
const BULK_BYTES = 64 * 1024;

/**
 * The skeleton both constructions share: XOR a run with its tweaks (page by page from the cache, or
 * all at once for bulk runs), AES-ECB it, and for XEX XOR again. Keys exist only inside the OpenSSL
 * contexts: nothing in these objects can be read back as key bytes.
 */
abstract class TweakedCipher implements MemoryCipher {
  abstract readonly mode: CipherMode;
  /** XEX whitens the AES output with the tweak too; XE only the input. */
  protected abstract readonly whitenOutput: boolean;
  readonly #enc: Cipher;
  readonly #dec: Decipher;
  readonly #tweaks: TweakCache;
  readonly #work = new Scratch();
  readonly #bulk = new Scratch();

  constructor(dataKey: Uint8Array) {
    this.#enc = ecbEncryptor(dataKey);
    this.#dec = ecbDecryptor(dataKey);
    this.#tweaks = new TweakCache((base) => this.pageTweaks(base));
  }

  /** The 256 tweaks of the page at `pageBase`. */
  protected abstract pageTweaks(pageBase: number): Buffer;
  /** The tweaks of a page-aligned run, as words (valid until the next call). */
  protected abstract bulkTweaks(spa: number, length: number, scratch: Scratch): BigInt64Array;

  /** words[0 .. length/8) ^= T(spa ..). */
  #applyTweaks(spa: number, length: number, words: BigInt64Array): void {
    if (length >= BULK_BYTES && spa % PAGE_SIZE === 0 && length % PAGE_SIZE === 0) {
      xorWords(words, 0, this.bulkTweaks(spa, length, this.#bulk), 0, length >> 3);
      return;
    }
    for (let done = 0; done < length;) {
      const at = spa + done;
      const page = Math.floor(at / PAGE_SIZE);
      const inPage = at - page * PAGE_SIZE;
      const take = Math.min(PAGE_SIZE - inPage, length - done);
      xorWords(words, done >> 3, this.#tweaks.page(page).words, inPage >> 3, take >> 3);
      done += take;
    }
  }

  /** AES over `data` with the tweak applied before (`tweakIn`) and/or after (`tweakOut`). */
  #run(spa: number, data: Uint8Array, aes: Cipher | Decipher, tweakIn: boolean, tweakOut: boolean): Buffer {
    checkAlignment(spa, data.length);
    const n = data.length;
    let out: Buffer;
    if (tweakIn) {
      const x = this.#work.take(n);
      x.set(data);
      this.#applyTweaks(spa, n, this.#work.words);
      out = aes.update(x);
    } else {
      out = aes.update(data);
    }
    if (tweakOut) {
      if (out.byteOffset % 8 === 0) {
        this.#applyTweaks(spa, n, words64(out));
      } else {
        const y = this.#work.take(n);
        y.set(out);
        this.#applyTweaks(spa, n, this.#work.words);
        out.set(y);
      }
    }
    return out;
  }

  encrypt(spa: number, data: Uint8Array): Buffer {
    return this.#run(spa, data, this.#enc, true, this.whitenOutput);
  }

  decrypt(spa: number, data: Uint8Array): Buffer {
    return this.#run(spa, data, this.#dec, this.whitenOutput, true);
  }

  toJSON(): string {
    return `[MemoryCipher ${this.mode}]`;
  }
}

/** Zen 2+ XEX: T = E_K2(le128(spa)) per block; a second AES context holds the tweak key. */
class XexCipher extends TweakedCipher {
  readonly mode = 'xex' as const;
  protected readonly whitenOutput = true;
  readonly #tweakEnc: Cipher;
  readonly #addrs = new Scratch();

  constructor(dataKey: Uint8Array, tweakKey: Uint8Array) {
    super(dataKey);
    this.#tweakEnc = ecbEncryptor(tweakKey);
  }

  protected pageTweaks(pageBase: number): Buffer {
    return this.#tweakEnc.update(this.#addresses(pageBase, PAGE_SIZE));
  }

  protected bulkTweaks(spa: number, length: number): BigInt64Array {
    // A fresh update() output of this size is its own 8-aligned ArrayBuffer.
    return words64(this.#tweakEnc.update(this.#addresses(spa, length)));
  }

  /** le128(spa + 16i) for every block of a page-aligned run. */
  #addresses(spa: number, length: number): Buffer {
    const buf = this.#addrs.take(length);
    const u32 = new Uint32Array(buf.buffer, buf.byteOffset, length >> 2);
    for (let page = 0; page < length; page += PAGE_SIZE) {
      // A page base has its low 12 bits clear: le128(base + off) is base's words with `off` or-ed in.
      const base = spa + page;
      const lo = base % 0x1_0000_0000;
      const hi = Math.floor(base / 0x1_0000_0000);
      // Words 2 and 3 of each block stay zero: this scratch holds nothing but addresses.
      for (let i = 0, w = page >> 2; i < BLOCKS_PER_PAGE; i++, w += 4) {
        u32[w] = (lo | (i * BLOCK_SIZE)) >>> 0;
        u32[w + 1] = hi;
      }
    }
    return buf;
  }
}

/**
 * Zen 1 tweak function: one secret 128-bit constant per physical-address bit, drawn at boot and
 * shared by every key (the property SEVurity exploited). T(pa) = XOR of the constants of pa's set bits.
 */
export class XeTweakFunction {
  readonly #constants: Buffer[];
  readonly #inPage: Buffer;
  readonly #inPageWords: BigInt64Array;

  /** `constants[i]` is the 16-byte constant for address bit `i + 4`. */
  constructor(constants: Buffer[]) {
    this.#constants = constants.map((c) => Buffer.from(c));
    this.#inPage = Buffer.alloc(PAGE_SIZE);
    for (let i = 0; i < BLOCKS_PER_PAGE; i++) this.#accumulate(this.#inPage, i * BLOCK_SIZE, i * BLOCK_SIZE);
    this.#inPageWords = words64(this.#inPage);
  }

  /** Number of address bits covered. */
  get addressBits(): number {
    return this.#constants.length + XE_FIRST_BIT;
  }

  /** The 256 tweaks of the page at `pageBase`. */
  pageTable(pageBase: number): Buffer {
    const base = Buffer.alloc(BLOCK_SIZE);
    this.#accumulate(base, 0, pageBase);
    // Linear: T(base + off) = T(base) ⊕ T(off) for off < 4096.
    const out = Buffer.alloc(PAGE_SIZE).fill(base);
    xorWords(words64(out), 0, this.#inPageWords, 0, PAGE_SIZE >> 3);
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
class XeCipher extends TweakedCipher {
  readonly mode = 'zen1-xe' as const;
  protected readonly whitenOutput = false;
  readonly #tweak: XeTweakFunction;

  constructor(dataKey: Uint8Array, tweak: XeTweakFunction) {
    super(dataKey);
    this.#tweak = tweak;
  }

  protected pageTweaks(pageBase: number): Buffer {
    return this.#tweak.pageTable(pageBase);
  }

  protected bulkTweaks(spa: number, length: number, scratch: Scratch): BigInt64Array {
    const out = scratch.take(length);
    for (let page = 0; page < length; page += PAGE_SIZE) this.#tweak.pageTable(spa + page).copy(out, page);
    return scratch.words;
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
