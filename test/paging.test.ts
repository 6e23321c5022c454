// Page-table entry format with the C-bit (sev-reference §1.1–1.2; AMD APM vol. 2 §5.3, §7.10).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ENTRIES_PER_TABLE,
  PAGE_SIZE,
  PTE_SIZE,
  PagingFormat,
  type PageTableEntry,
  tableIndices,
} from '../src/soc/paging.js';
import { productProfile } from '../src/soc/products.js';

const FORMATS = {
  milan: new PagingFormat(productProfile('milan')), // C-bit 51, MAXPHYADDR 48 − 5 = 43
  naples: new PagingFormat(productProfile('naples')), // C-bit 47, MAXPHYADDR 43
  genoa: new PagingFormat(productProfile('genoa')), // C-bit 51, MAXPHYADDR 52 − 6 = 46
};

/** The raw 64-bit entry as a bigint. */
function raw(entry: Buffer): bigint {
  return entry.readBigUInt64LE(0);
}

function entryWithBits(...bits: number[]): Buffer {
  const b = Buffer.alloc(PTE_SIZE);
  let v = 0n;
  for (const bit of bits) v |= 1n << BigInt(bit);
  b.writeBigUInt64LE(v, 0);
  return b;
}

function pageAddressArb(maxPhysAddrBits: number): fc.Arbitrary<number> {
  return fc.integer({ min: 0, max: 2 ** (maxPhysAddrBits - 12) - 1 }).map((pfn) => pfn * PAGE_SIZE);
}

const flagsArb = fc.record({
  present: fc.boolean(),
  writable: fc.boolean(),
  user: fc.boolean(),
  noExecute: fc.boolean(),
  encrypted: fc.boolean(),
});

describe('PagingFormat', () => {
  it('takes the C-bit and MAXPHYADDR from the profile', () => {
    expect(FORMATS.milan.cBit).toBe(51);
    expect(FORMATS.milan.maxPhysAddrBits).toBe(43);
    expect(FORMATS.milan.addressLimit).toBe(2 ** 43);
    expect(FORMATS.naples.cBit).toBe(47);
    expect(FORMATS.naples.maxPhysAddrBits).toBe(43);
    expect(FORMATS.genoa.cBit).toBe(51);
    expect(FORMATS.genoa.maxPhysAddrBits).toBe(46);
    expect(ENTRIES_PER_TABLE * PTE_SIZE).toBe(PAGE_SIZE);
  });

  for (const [name, f] of Object.entries(FORMATS)) {
    describe(name, () => {
      it('decode ∘ encode is the identity on every field', () => {
        fc.assert(
          fc.property(pageAddressArb(f.maxPhysAddrBits), flagsArb, (address, flags) => {
            const e = { ...flags, address };
            const enc = f.encode(e);
            expect(enc.length).toBe(PTE_SIZE);
            const d = f.decode(enc);
            const want: PageTableEntry = { ...e, largePage: false, reservedBitsSet: false };
            expect(d).toEqual(want);
            // And encode ∘ decode gives back the same bytes.
            expect(f.encode(d)).toEqual(enc);
          }),
          { numRuns: 300 },
        );
      });

      it('puts each field at its architectural bit', () => {
        fc.assert(
          fc.property(pageAddressArb(f.maxPhysAddrBits), flagsArb, (address, flags) => {
            const v = raw(f.encode({ ...flags, address }));
            expect((v & 1n) === 1n).toBe(flags.present);
            expect(((v >> 1n) & 1n) === 1n).toBe(flags.writable);
            expect(((v >> 2n) & 1n) === 1n).toBe(flags.user);
            expect(((v >> 63n) & 1n) === 1n).toBe(flags.noExecute);
            expect(((v >> BigInt(f.cBit)) & 1n) === 1n).toBe(flags.encrypted);
            expect(v & 0x000f_ffff_ffff_f000n & ~(1n << BigInt(f.cBit))).toBe(BigInt(address));
            // Nothing else is set.
            const known =
              0b111n |
              (1n << 63n) |
              (1n << BigInt(f.cBit)) |
              (((1n << BigInt(f.maxPhysAddrBits)) - 1n) & ~0xfffn);
            expect(v & ~known).toBe(0n);
          }),
          { numRuns: 200 },
        );
      });

      it('present defaults to true; other flags default to false', () => {
        expect(f.decode(f.encode({ address: 0x5000 }))).toEqual({
          present: true,
          writable: false,
          user: false,
          noExecute: false,
          encrypted: false,
          largePage: false,
          address: 0x5000,
          reservedBitsSet: false,
        });
        expect(f.decode(f.encode({ address: 0x5000, present: false })).present).toBe(false);
      });

      it('drops the page offset and address bits at or above MAXPHYADDR when encoding', () => {
        const e = f.decode(f.encode({ address: 0x1234_5fff }));
        expect(e.address).toBe(0x1234_5000);
        const high = f.decode(f.encode({ address: 2 ** f.maxPhysAddrBits + 0x3000 }));
        expect(high.address).toBe(0x3000);
        expect(high.reservedBitsSet).toBe(false);
        expect(high.encrypted).toBe(false);
      });

      it('C-bit alone: encrypted, not reserved; NX alone: noExecute', () => {
        const c = f.decode(entryWithBits(0, f.cBit));
        expect(c.encrypted).toBe(true);
        expect(c.reservedBitsSet).toBe(false);
        expect(c.address).toBe(0);
        const nx = f.decode(entryWithBits(0, 63));
        expect(nx.noExecute).toBe(true);
        expect(nx.encrypted).toBe(false);
        expect(nx.reservedBitsSet).toBe(false);
        expect(f.decode(entryWithBits(7)).largePage).toBe(true);
      });

      it('reservedBitsSet exactly for bits MAXPHYADDR..51 other than the C-bit', () => {
        for (let bit = 0; bit < 64; bit++) {
          const e = f.decode(entryWithBits(bit));
          const reserved = bit >= f.maxPhysAddrBits && bit <= 51 && bit !== f.cBit;
          expect({ bit, reserved: e.reservedBitsSet }).toEqual({ bit, reserved });
          if (bit >= 12 && bit < f.maxPhysAddrBits) expect(e.address).toBe(2 ** bit);
          else expect(e.address).toBe(0);
        }
        // With other bits set too.
        const withC = f.decode(entryWithBits(0, 1, 20, f.cBit, f.maxPhysAddrBits));
        expect(withC.reservedBitsSet).toBe(true);
        expect(withC.encrypted).toBe(true);
      });

      it('decodes at an offset inside a table', () => {
        const table = Buffer.alloc(PAGE_SIZE);
        f.encode({ address: 0x7000, writable: true, encrypted: true }).copy(table, 17 * PTE_SIZE);
        const view = new Uint8Array(table.buffer, table.byteOffset, table.length);
        expect(f.decode(view, 17 * PTE_SIZE)).toMatchObject({
          address: 0x7000,
          writable: true,
          encrypted: true,
          present: true,
        });
        expect(f.decode(view, 16 * PTE_SIZE).present).toBe(false);
        expect(f.decode(table.subarray(17 * PTE_SIZE)).address).toBe(0x7000);
      });

      it('withCBit / splitCBit round trip', () => {
        fc.assert(
          fc.property(fc.integer({ min: 0, max: 2 ** f.cBit - 1 }), (a) => {
            const c = f.withCBit(a);
            expect(c).toBe(a + 2 ** f.cBit);
            expect(f.splitCBit(c)).toEqual({ address: a, encrypted: true });
            expect(f.splitCBit(a)).toEqual({ address: a, encrypted: false });
          }),
          { numRuns: 200 },
        );
        // A bit above the C-bit is not mistaken for it.
        if (f.cBit < 52)
          expect(f.splitCBit(2 ** (f.cBit + 1))).toEqual({ address: 2 ** (f.cBit + 1), encrypted: false });
      });
    });
  }

  it('the same raw entry means different things on Milan and Naples', () => {
    const bit47 = entryWithBits(0, 47);
    expect(FORMATS.naples.decode(bit47)).toMatchObject({ encrypted: true, reservedBitsSet: false });
    expect(FORMATS.milan.decode(bit47)).toMatchObject({ encrypted: false, reservedBitsSet: true });
    const bit51 = entryWithBits(0, 51);
    expect(FORMATS.milan.decode(bit51)).toMatchObject({ encrypted: true, reservedBitsSet: false });
    expect(FORMATS.naples.decode(bit51)).toMatchObject({ encrypted: false, reservedBitsSet: true });
    expect(raw(FORMATS.milan.encode({ address: 0, encrypted: true }))).toBe((1n << 51n) | 1n);
    expect(raw(FORMATS.naples.encode({ address: 0, encrypted: true }))).toBe((1n << 47n) | 1n);
  });
});

describe('tableIndices', () => {
  it('splits a 48-bit address into four 9-bit indices, top level first', () => {
    expect(tableIndices(0)).toEqual([0, 0, 0, 0]);
    expect(tableIndices(0xfff)).toEqual([0, 0, 0, 0]);
    expect(tableIndices(0x1000)).toEqual([0, 0, 0, 1]);
    expect(tableIndices(0x20_0000)).toEqual([0, 0, 1, 0]);
    expect(tableIndices(0x4000_0000)).toEqual([0, 1, 0, 0]);
    expect(tableIndices(0x80_0000_0000)).toEqual([1, 0, 0, 0]);
    expect(tableIndices(0x7fff_ffff_f000)).toEqual([255, 511, 511, 511]);
    expect(tableIndices(0xffff_ffff_ffff)).toEqual([511, 511, 511, 511]);
  });

  it('indices and page offset reassemble the address', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), (va) => {
        const idx = tableIndices(va);
        for (const i of idx) {
          expect(Number.isInteger(i)).toBe(true);
          expect(i).toBeGreaterThanOrEqual(0);
          expect(i).toBeLessThan(ENTRIES_PER_TABLE);
        }
        const [l4, l3, l2, l1] = idx.map(BigInt) as [bigint, bigint, bigint, bigint];
        const back = (l4 << 39n) | (l3 << 30n) | (l2 << 21n) | (l1 << 12n) | BigInt(va % PAGE_SIZE);
        expect(back).toBe(BigInt(va));
      }),
      { numRuns: 300 },
    );
  });

  it('ignores bits above 47', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), fc.integer({ min: 1, max: 31 }), (va, high) => {
        expect(tableIndices(va + high * 2 ** 48)).toEqual(tableIndices(va));
      }),
      { numRuns: 100 },
    );
  });
});
