// The memory controller's cipher (sev-reference §1.3): XEX checked against Node's IEEE 1619 XTS,
// XE checked against an independent reference, and the properties the attacks rely on.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BLOCK_SIZE,
  CipherAlignmentError,
  type CipherMode,
  Drbg,
  MEMORY_KEY_MATERIAL_BYTES,
  type MemoryCipher,
  XeTweakFunction,
  createMemoryCipher,
  writeLe128Address,
} from '../src/crypto/index.js';

const PAGE_SIZE = 4096;
/** Physical-address bits the XE tweak covers in these tests (Naples: 48). */
const PHYS_BITS = 48;
const XE_CONSTANTS = PHYS_BITS - 4;

// ---------------------------------------------------------------------------------------------
// Independent references

/** IV for XTS: the 128-bit little-endian physical address (written without writeLe128Address). */
function le128(spa: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64LE(BigInt(spa), 0);
  return iv;
}

/** One 16-byte data unit of AES-128-XTS (key = dataKey || tweakKey, IV = le128(spa)). */
function xtsBlock(key: Buffer, spa: number, block: Uint8Array, direction: 'encrypt' | 'decrypt'): Buffer {
  const c =
    direction === 'encrypt'
      ? createCipheriv('aes-128-xts', key, le128(spa))
      : createDecipheriv('aes-128-xts', key, le128(spa));
  return Buffer.concat([c.update(block), c.final()]);
}

/** Block-by-block XTS over a run starting at `spa`. */
function xtsRun(key: Buffer, spa: number, data: Uint8Array, direction: 'encrypt' | 'decrypt'): Buffer {
  const out = Buffer.alloc(data.length);
  for (let off = 0; off < data.length; off += BLOCK_SIZE) {
    xtsBlock(key, spa + off, data.subarray(off, off + BLOCK_SIZE), direction).copy(out, off);
  }
  return out;
}

function aesEcb(key: Uint8Array, block: Uint8Array, direction: 'encrypt' | 'decrypt'): Buffer {
  const c =
    direction === 'encrypt'
      ? createCipheriv('aes-128-ecb', key, null)
      : createDecipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(block), c.final()]);
}

function xor(a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}

/** T(pa) for XE, straight from the definition: XOR of the constants of pa's set bits ≥ 4. */
function xeTweakRef(constants: readonly Buffer[], spa: number): Buffer {
  let t: Buffer = Buffer.alloc(BLOCK_SIZE);
  const a = BigInt(spa);
  constants.forEach((c, i) => {
    if (((a >> BigInt(i + 4)) & 1n) === 1n) t = xor(t, c);
  });
  return t;
}

/** XE reference: C = AES_K(P ⊕ T(pa)) per block. */
function xeRun(dataKey: Uint8Array, constants: readonly Buffer[], spa: number, data: Uint8Array): Buffer {
  const out = Buffer.alloc(data.length);
  for (let off = 0; off < data.length; off += BLOCK_SIZE) {
    const t = xeTweakRef(constants, spa + off);
    aesEcb(dataKey, xor(data.subarray(off, off + BLOCK_SIZE), t), 'encrypt').copy(out, off);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries and helpers

/** 32 bytes of key material whose halves differ (OpenSSL's XTS rejects equal halves). */
const keyArb = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .filter((k) => !Buffer.from(k.subarray(0, 16)).equals(Buffer.from(k.subarray(16, 32))))
  .map((k) => Buffer.from(k));

/** A 16-byte aligned address below 2^48, leaving room for runs of up to 1024 blocks. */
const spaArb = fc.integer({ min: 0, max: 2 ** (PHYS_BITS - 4) - 1024 }).map((i) => i * BLOCK_SIZE);

function blocksArb(minBlocks: number, maxBlocks: number): fc.Arbitrary<Buffer> {
  return fc
    .integer({ min: minBlocks, max: maxBlocks })
    .chain((n) =>
      fc.uint8Array({ minLength: n * BLOCK_SIZE, maxLength: n * BLOCK_SIZE }).map((d) => Buffer.from(d)),
    );
}

const modeArb = fc.constantFrom<CipherMode>('xex', 'zen1-xe');

function tweakConstants(seed: number): Buffer[] {
  const rng = Drbg.fromSeed(seed, 'test-xe-tweak');
  return Array.from({ length: XE_CONSTANTS }, () => rng.generate(BLOCK_SIZE));
}

const CONSTANTS = tweakConstants(1);
const TWEAK = new XeTweakFunction(CONSTANTS);

/** A cipher from a copy of `key` (createMemoryCipher wipes what it is given). */
function cipher(mode: CipherMode, key: Buffer, tweak: XeTweakFunction = TWEAK): MemoryCipher {
  return createMemoryCipher(mode, Buffer.from(key), tweak);
}

/** T(a) as the model's tweak function reports it. */
function modelTweak(tweak: XeTweakFunction, spa: number): Buffer {
  const base = Math.floor(spa / PAGE_SIZE) * PAGE_SIZE;
  const off = spa - base;
  return Buffer.from(tweak.pageTable(base).subarray(off, off + BLOCK_SIZE));
}

// ---------------------------------------------------------------------------------------------

describe('writeLe128Address', () => {
  it('writes the 128-bit little-endian encoding of an address', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (spa) => {
        const out = Buffer.alloc(20, 0xee);
        writeLe128Address(out, 2, spa);
        expect(out.subarray(2, 18)).toEqual(le128(spa));
        expect(out[0]).toBe(0xee);
        expect(out[19]).toBe(0xee);
      }),
      { numRuns: 200 },
    );
  });
});

describe('XEX (Zen 2+)', () => {
  it('equals AES-128-XTS with a 16-byte data unit, block by block, at random addresses', () => {
    fc.assert(
      fc.property(keyArb, spaArb, blocksArb(1, 8), (key, spa, data) => {
        const c = cipher('xex', key);
        const ct = c.encrypt(spa, data);
        expect(ct).toEqual(xtsRun(key, spa, data, 'encrypt'));
        expect(c.decrypt(spa, ct)).toEqual(data);
        // And decryption agrees with XTS decryption of arbitrary ciphertext.
        expect(c.decrypt(spa, data)).toEqual(xtsRun(key, spa, data, 'decrypt'));
      }),
      { numRuns: 150 },
    );
  });

  it('equals AES-128-XTS over multi-page runs that start and end mid-page', () => {
    fc.assert(
      fc.property(
        keyArb,
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.integer({ min: 0, max: PAGE_SIZE / BLOCK_SIZE - 1 }),
        fc.integer({ min: PAGE_SIZE / BLOCK_SIZE - 8, max: (5 * PAGE_SIZE) / 2 / BLOCK_SIZE }),
        fc.integer(),
        (key, page, startBlock, blocks, fill) => {
          const spa = page * PAGE_SIZE + startBlock * BLOCK_SIZE;
          const data = Drbg.fromSeed(fill, 'data').generate(blocks * BLOCK_SIZE);
          const c = cipher('xex', key);
          const ct = c.encrypt(spa, data);
          expect(ct.equals(xtsRun(key, spa, data, 'encrypt'))).toBe(true);
          expect(c.decrypt(spa, ct).equals(data)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('a run equals the concatenation of its blocks encrypted one at a time', () => {
    fc.assert(
      fc.property(keyArb, spaArb, blocksArb(2, 40), (key, spa, data) => {
        const c = cipher('xex', key);
        const whole = c.encrypt(spa, data);
        for (let off = 0; off < data.length; off += BLOCK_SIZE) {
          expect(c.encrypt(spa + off, data.subarray(off, off + BLOCK_SIZE))).toEqual(
            whole.subarray(off, off + BLOCK_SIZE),
          );
        }
      }),
      { numRuns: 50 },
    );
  });

  it('gives the same results after its tweak cache has evicted a page', () => {
    const key = Buffer.from('00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0', 'hex');
    const c = cipher('xex', key);
    const block = Buffer.alloc(BLOCK_SIZE, 0x5a);
    const first = c.encrypt(0x1230, block);
    // Touch more pages than the cache holds (2048), then come back to the first.
    for (let p = 1; p <= 2100; p++) c.encrypt(p * PAGE_SIZE, block);
    expect(c.encrypt(0x1230, block)).toEqual(first);
    expect(first).toEqual(xtsBlock(key, 0x1230, block, 'encrypt'));
  });
});

describe('XE (Zen 1)', () => {
  it('equals AES_K(P ⊕ T(pa)) with T computed from the per-bit constants', () => {
    fc.assert(
      fc.property(keyArb, spaArb, blocksArb(1, 8), (key, spa, data) => {
        const c = cipher('zen1-xe', key);
        const ct = c.encrypt(spa, data);
        expect(ct).toEqual(xeRun(key.subarray(0, 16), CONSTANTS, spa, data));
        expect(c.decrypt(spa, ct)).toEqual(data);
      }),
      { numRuns: 150 },
    );
  });

  it('equals the reference over multi-page runs', () => {
    fc.assert(
      fc.property(
        keyArb,
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 250, max: 600 }),
        (key, page, startBlock, blocks) => {
          const spa = page * PAGE_SIZE + startBlock * BLOCK_SIZE;
          const data = Drbg.fromSeed(spa, 'data').generate(blocks * BLOCK_SIZE);
          const ct = cipher('zen1-xe', key).encrypt(spa, data);
          expect(ct.equals(xeRun(key.subarray(0, 16), CONSTANTS, spa, data))).toBe(true);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('ignores the second half of the key material', () => {
    fc.assert(
      fc.property(keyArb, keyArb, spaArb, blocksArb(1, 4), (k1, k2, spa, data) => {
        const sameDataKey = Buffer.concat([k1.subarray(0, 16), k2.subarray(16, 32)]);
        expect(cipher('zen1-xe', sameDataKey).encrypt(spa, data)).toEqual(
          cipher('zen1-xe', k1).encrypt(spa, data),
        );
      }),
      { numRuns: 50 },
    );
  });

  it('the tweak function is linear: T(a ⊕ b) = T(a) ⊕ T(b), T(0) = 0, and covers physAddrBits bits', () => {
    expect(TWEAK.addressBits).toBe(PHYS_BITS);
    expect(modelTweak(TWEAK, 0)).toEqual(Buffer.alloc(16));
    fc.assert(
      fc.property(spaArb, spaArb, (a, b) => {
        const ab = Number(BigInt(a) ^ BigInt(b));
        expect(modelTweak(TWEAK, ab)).toEqual(xor(modelTweak(TWEAK, a), modelTweak(TWEAK, b)));
        expect(modelTweak(TWEAK, a)).toEqual(xeTweakRef(CONSTANTS, a));
      }),
      { numRuns: 200 },
    );
  });

  it('rejects an address beyond the tweak function’s bits', () => {
    const c = cipher('zen1-xe', Buffer.alloc(32, 7));
    expect(() => c.encrypt(2 ** PHYS_BITS, Buffer.alloc(16))).toThrow(RangeError);
  });
});

describe('both modes', () => {
  it('decrypt ∘ encrypt = identity', () => {
    fc.assert(
      fc.property(modeArb, keyArb, spaArb, blocksArb(1, 300), (mode, key, spa, data) => {
        const c = cipher(mode, key);
        expect(c.decrypt(spa, c.encrypt(spa, data)).equals(data)).toBe(true);
        expect(c.encrypt(spa, c.decrypt(spa, data)).equals(data)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('reports its mode', () => {
    expect(cipher('xex', Buffer.alloc(32, 1).fill(2, 16)).mode).toBe('xex');
    expect(cipher('zen1-xe', Buffer.alloc(32, 1)).mode).toBe('zen1-xe');
  });

  it('is deterministic: same key, address and plaintext give the same ciphertext', () => {
    fc.assert(
      fc.property(modeArb, keyArb, spaArb, blocksArb(1, 8), (mode, key, spa, data) => {
        const a = cipher(mode, key);
        const b = cipher(mode, key); // a separate instance from the same key material
        const ct = a.encrypt(spa, data);
        expect(a.encrypt(spa, data)).toEqual(ct);
        expect(b.encrypt(spa, data)).toEqual(ct);
        // A copy of the plaintext gives the same ciphertext.
        expect(a.encrypt(spa, Buffer.from(data))).toEqual(ct);
      }),
      { numRuns: 100 },
    );
  });

  it('does not modify its input', () => {
    fc.assert(
      fc.property(modeArb, keyArb, spaArb, blocksArb(1, 8), (mode, key, spa, data) => {
        const copy = Buffer.from(data);
        const c = cipher(mode, key);
        c.encrypt(spa, data);
        c.decrypt(spa, data);
        expect(data).toEqual(copy);
      }),
      { numRuns: 50 },
    );
  });

  it('a different address gives a different ciphertext for every block', () => {
    fc.assert(
      fc.property(modeArb, keyArb, spaArb, spaArb, blocksArb(1, 4), (mode, key, a, b, data) => {
        fc.pre(a !== b);
        const c = cipher(mode, key);
        const ca = c.encrypt(a, data);
        const cb = c.encrypt(b, data);
        for (let off = 0; off < data.length; off += BLOCK_SIZE) {
          expect(ca.subarray(off, off + BLOCK_SIZE).equals(cb.subarray(off, off + BLOCK_SIZE))).toBe(false);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('a different key gives a different ciphertext', () => {
    fc.assert(
      fc.property(modeArb, keyArb, keyArb, spaArb, blocksArb(1, 2), (mode, k1, k2, spa, data) => {
        fc.pre(!k1.subarray(0, 16).equals(k2.subarray(0, 16)));
        expect(cipher(mode, k1).encrypt(spa, data).equals(cipher(mode, k2).encrypt(spa, data))).toBe(false);
      }),
      { numRuns: 50 },
    );
  });

  it('one flipped ciphertext bit garbles exactly its own 16-byte block', () => {
    fc.assert(
      fc.property(modeArb, keyArb, spaArb, blocksArb(1, 8), fc.nat(), (mode, key, spa, data, bitSeed) => {
        const c = cipher(mode, key);
        const ct = c.encrypt(spa, data);
        const bit = bitSeed % (ct.length * 8);
        const flipped = Buffer.from(ct);
        flipped[bit >> 3] = (flipped[bit >> 3] as number) ^ (1 << (bit & 7));
        const pt = c.decrypt(spa, flipped);
        const hit = Math.floor(bit / 8 / BLOCK_SIZE);
        for (let blk = 0; blk < data.length / BLOCK_SIZE; blk++) {
          const got = pt.subarray(blk * BLOCK_SIZE, (blk + 1) * BLOCK_SIZE);
          const want = data.subarray(blk * BLOCK_SIZE, (blk + 1) * BLOCK_SIZE);
          if (blk !== hit) {
            expect(got.equals(want)).toBe(true);
          } else {
            // A permutation of the whole block: never equal, and not a mere bit flip.
            const diff = xor(got, want);
            let bits = 0;
            for (const byte of diff) for (let b = byte; b !== 0; b &= b - 1) bits++;
            expect(bits).toBeGreaterThan(8);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  for (const mode of ['xex', 'zen1-xe'] as const) {
    it(`throws CipherAlignmentError for misaligned or empty requests (${mode})`, () => {
      const c = cipher(mode, Buffer.alloc(32, 3).fill(4, 16));
      const bad: [number, number][] = [
        [8, 16],
        [1, 16],
        [0x1008, 32],
        [0, 15],
        [0, 17],
        [16, 0],
        [-16, 16],
      ];
      for (const [spa, len] of bad) {
        expect(() => c.encrypt(spa, Buffer.alloc(len))).toThrow(CipherAlignmentError);
        expect(() => c.decrypt(spa, Buffer.alloc(len))).toThrow(CipherAlignmentError);
      }
      const err = (() => {
        try {
          c.encrypt(8, Buffer.alloc(16));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).name).toBe('CipherAlignmentError');
      expect(() => c.encrypt(16, Buffer.alloc(16))).not.toThrow();
    });
  }
});

describe('Zen 1 XE linearity (the SEVurity relocation property)', () => {
  it('moving a block from a to b XORs the plaintext with T(a) ⊕ T(b), for every plaintext and every key', () => {
    fc.assert(
      fc.property(
        keyArb,
        keyArb,
        spaArb,
        spaArb,
        fc.array(blocksArb(1, 1), { minLength: 2, maxLength: 5 }),
        (k1, k2, a, b, plaintexts) => {
          fc.pre(a !== b);
          // Two guests' keys, one boot-time tweak function.
          const ciphers = [cipher('zen1-xe', k1), cipher('zen1-xe', k2)];
          const expected = xor(modelTweak(TWEAK, a), modelTweak(TWEAK, b));
          expect(expected).toEqual(xor(xeTweakRef(CONSTANTS, a), xeTweakRef(CONSTANTS, b)));
          for (const c of ciphers) {
            for (const p of plaintexts) {
              const moved = c.decrypt(b, c.encrypt(a, p));
              expect(xor(moved, p)).toEqual(expected);
            }
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('under XEX the same XOR differs between plaintexts', () => {
    fc.assert(
      fc.property(keyArb, spaArb, spaArb, blocksArb(1, 1), blocksArb(1, 1), (key, a, b, p1, p2) => {
        fc.pre(a !== b && !p1.equals(p2));
        const c = cipher('xex', key);
        const d1 = xor(c.decrypt(b, c.encrypt(a, p1)), p1);
        const d2 = xor(c.decrypt(b, c.encrypt(a, p2)), p2);
        expect(d1.equals(d2)).toBe(false);
      }),
      { numRuns: 100 },
    );
  });
});

describe('key handling', () => {
  it('createMemoryCipher wipes the key material it is given (both modes)', () => {
    fc.assert(
      fc.property(modeArb, keyArb, spaArb, blocksArb(1, 2), (mode, key, spa, data) => {
        const material = Buffer.from(key);
        const c = createMemoryCipher(mode, material, TWEAK);
        expect(material.equals(Buffer.alloc(MEMORY_KEY_MATERIAL_BYTES))).toBe(true);
        // The cipher still works with the key it was given.
        const want =
          mode === 'xex'
            ? xtsRun(key, spa, data, 'encrypt')
            : xeRun(key.subarray(0, 16), CONSTANTS, spa, data);
        expect(c.encrypt(spa, data)).toEqual(want);
      }),
      { numRuns: 50 },
    );
  });

  it('wipes the key material even when XE mode lacks a tweak function', () => {
    const material = Buffer.alloc(32, 0xab);
    expect(() => createMemoryCipher('zen1-xe', material)).toThrow();
    expect(material.equals(Buffer.alloc(32))).toBe(true);
  });

  it('rejects key material of the wrong length', () => {
    for (const n of [0, 16, 31, 33, 64]) {
      expect(() => createMemoryCipher('xex', Buffer.alloc(n, 1))).toThrow(RangeError);
    }
  });

  it('does not expose key bytes through JSON.stringify or util.inspect', () => {
    const key = Buffer.from('c0ffee11deadbeef5ec12e7a1b2c3d4e' + '0badcafe8badf00dfeedface13579bdf', 'hex');
    const forms = (b: Buffer): string[] => [
      b.toString('hex'),
      [...b].map((x) => x.toString(16).padStart(2, '0')).join(' '),
      [...b].join(', '),
      b.toString('base64'),
    ];
    const needles = [
      ...forms(key.subarray(0, 16)),
      ...forms(key.subarray(16, 32)),
      ...forms(key.subarray(0, 8)),
      ...forms(key.subarray(16, 24)),
    ];
    for (const mode of ['xex', 'zen1-xe'] as const) {
      const c = createMemoryCipher(mode, Buffer.from(key), TWEAK);
      c.encrypt(0x4000, Buffer.alloc(64)); // populate any internal caches
      const texts = [
        JSON.stringify(c),
        JSON.stringify({ c }),
        inspect(c, { showHidden: true, depth: Infinity }),
      ];
      for (const t of texts) {
        for (const n of needles) expect(t.toLowerCase()).not.toContain(n.toLowerCase());
      }
    }
    // The tweak function's constants stay hidden too.
    const tweakTexts = [JSON.stringify(TWEAK), inspect(TWEAK, { showHidden: true, depth: Infinity })];
    for (const t of tweakTexts) expect(t).not.toContain((CONSTANTS[0] as Buffer).toString('hex'));
  });

  it('XeTweakFunction copies its constants (later changes to the caller’s buffers do not matter)', () => {
    const constants = tweakConstants(2);
    const tweak = new XeTweakFunction(constants);
    const before = modelTweak(tweak, 0x10);
    (constants[0] as Buffer).fill(0);
    expect(modelTweak(tweak, 0x10)).toEqual(before);
  });
});
