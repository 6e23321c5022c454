// EPYC product profiles and CPUID Fn8000_001F (sev-reference §1.1).
import { describe, expect, it } from 'vitest';
import { PagingFormat } from '../src/soc/paging.js';
import {
  PRODUCT_NAMES,
  type ProductName,
  cpuidMemoryEncryptionLeaf,
  decodeCpuidMemoryEncryptionLeaf,
  productProfile,
} from '../src/soc/products.js';

const EXPECTED_C_BIT: Record<ProductName, number> = { naples: 47, rome: 47, milan: 51, genoa: 51, turin: 51 };

describe('product profiles', () => {
  it('knows the five EPYC generations', () => {
    expect([...PRODUCT_NAMES].sort()).toEqual(['genoa', 'milan', 'naples', 'rome', 'turin']);
  });

  for (const name of PRODUCT_NAMES) {
    describe(name, () => {
      const p = productProfile(name);

      it('is named after itself and looked up case-insensitively', () => {
        expect(p.name).toBe(name);
        expect(productProfile(name.toUpperCase())).toBe(p);
        expect(productProfile(name[0]!.toUpperCase() + name.slice(1))).toBe(p);
      });

      it('CPUID Fn8000_001F round-trips through decodeCpuidMemoryEncryptionLeaf', () => {
        const leaf = cpuidMemoryEncryptionLeaf(p);
        for (const r of [leaf.eax, leaf.ebx, leaf.ecx, leaf.edx]) {
          expect(Number.isInteger(r)).toBe(true);
          expect(r).toBeGreaterThanOrEqual(0);
          expect(r).toBeLessThan(2 ** 32);
        }
        expect(decodeCpuidMemoryEncryptionLeaf(leaf)).toEqual({
          sme: true,
          sev: true,
          sevEs: p.sevEs,
          sevSnp: p.sevSnp,
          cBitPosition: p.cBitPosition,
          reducedPhysBits: p.reducedPhysBits,
          maxSevAsid: p.maxSevAsid,
          minSevAsid: p.minSevAsid,
        });
      });

      it('encodes the register fields at their documented positions', () => {
        const { eax, ebx, ecx, edx } = cpuidMemoryEncryptionLeaf(p);
        expect(eax & 0b11).toBe(0b11); // SME, SEV
        expect((eax >>> 3) & 1).toBe(p.sevEs ? 1 : 0);
        expect((eax >>> 4) & 1).toBe(p.sevSnp ? 1 : 0);
        expect(ebx & 0x3f).toBe(p.cBitPosition);
        expect((ebx >>> 6) & 0x3f).toBe(p.reducedPhysBits);
        expect((ebx >>> 12) & 0xf).toBe(p.sevSnp ? 4 : 0); // VMPLs
        expect(ecx).toBe(p.maxSevAsid);
        expect(edx).toBe(p.minSevAsid);
      });

      it(`has its C-bit at ${EXPECTED_C_BIT[name]}`, () => {
        expect(p.cBitPosition).toBe(EXPECTED_C_BIT[name]);
        expect(decodeCpuidMemoryEncryptionLeaf(cpuidMemoryEncryptionLeaf(p)).cBitPosition).toBe(
          EXPECTED_C_BIT[name],
        );
      });

      it(`uses the ${name === 'naples' ? 'zen1-xe' : 'xex'} memory cipher`, () => {
        expect(p.cipherMode).toBe(name === 'naples' ? 'zen1-xe' : 'xex');
      });

      it('has a consistent ASID layout', () => {
        expect(Number.isInteger(p.minSevAsid) && Number.isInteger(p.maxSevAsid)).toBe(true);
        expect(p.minSevAsid).toBeGreaterThanOrEqual(1);
        // Plain-SEV range MIN..MAX is non-empty.
        expect(p.minSevAsid).toBeLessThanOrEqual(p.maxSevAsid);
        // SEV-ES/SNP guests use 1..MIN-1: non-empty exactly where SEV-ES exists.
        const esAsids = p.minSevAsid - 1;
        if (p.sevEs) expect(esAsids).toBeGreaterThan(0);
        else expect(esAsids).toBe(0);
      });

      it('SNP implies SEV-ES; the C-bit lies above MAXPHYADDR and below bit 52', () => {
        if (p.sevSnp) expect(p.sevEs).toBe(true);
        const f = new PagingFormat(p);
        expect(p.reducedPhysBits).toBeGreaterThan(0);
        expect(f.maxPhysAddrBits).toBe(p.physAddrBits - p.reducedPhysBits);
        expect(p.cBitPosition).toBeGreaterThanOrEqual(f.maxPhysAddrBits);
        expect(p.cBitPosition).toBeLessThan(52);
        expect(p.physAddrBits).toBeLessThanOrEqual(52);
      });
    });
  }

  it('only Naples lacks SEV-ES; Milan and later have SNP', () => {
    expect(PRODUCT_NAMES.filter((n) => !productProfile(n).sevEs)).toEqual(['naples']);
    expect(PRODUCT_NAMES.filter((n) => productProfile(n).sevSnp).sort()).toEqual(['genoa', 'milan', 'turin']);
  });

  it('an unknown product name throws a RangeError listing the known ones', () => {
    for (const bad of ['bergamo', '', 'milan ', 'zen3']) {
      let err: unknown;
      try {
        productProfile(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RangeError);
      const msg = (err as Error).message;
      expect(msg).toContain(`"${bad}"`);
      for (const known of PRODUCT_NAMES) expect(msg).toContain(known);
    }
  });

  // Regression: the lookup once went through the prototype chain, so 'constructor' and '__proto__'
  // were "found" as products.
  for (const name of ['constructor', '__proto__']) {
    it(`rejects the inherited property name "${name}"`, () => {
      expect(() => productProfile(name)).toThrow(RangeError);
    });
  }
});
