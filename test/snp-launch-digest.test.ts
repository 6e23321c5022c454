// The SNP launch-digest primitive (abi/snp-launch-digest.ts): PAGE_INFO byte for byte against
// sev-reference §7.5 and AMD's firmware struct, the chaining rule of §11 fact 6 rebuilt by hand, the
// CONTENTS of each page type (VMSA with its TSC fields read as zero), and the published OVMF hash.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  SNP_LAUNCH_DIGEST_SIZE,
  SNP_PAGE_INFO_SIZE,
  SnpPageInfo,
  SnpPageInfoError,
  SnpPageType,
  VMSA_TSC_FIELDS,
  encodeSnpPageInfo,
  extendSnpLaunchDigest,
  extendSnpLaunchDigestNormal,
  isSnpPageType,
  snpInitialLaunchDigest,
  snpPageContents,
  snpPageTypeName,
  type SnpMeasuredPage,
} from '../src/abi/index.js';

const sha384 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha384');
  for (const p of parts) h.update(p);
  return h.digest();
};
const le16 = (v: number): Buffer => Buffer.from([v & 0xff, v >> 8]);
const le64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};
/** 48 bytes 0x00, 0x01, … offset by `seed`, so every byte of a field is recognisable. */
const ramp = (seed: number): Buffer => Buffer.from(Array.from({ length: 48 }, (_, i) => (seed + i) & 0xff));

describe('PAGE_INFO (sev-reference §7.5; ASPFW snp_mcmd_launch_update_page_info_t)', () => {
  it('is 0x70 bytes with the fields at the offsets AMD gives', () => {
    expect(SNP_PAGE_INFO_SIZE).toBe(0x70);
    expect(SnpPageInfo.size).toBe(0x70);
    const f = SnpPageInfo.fields;
    expect([f.digestCur.offset, f.contents.offset, f.length.offset, f.pageType.offset]).toEqual([
      0x00, 0x30, 0x60, 0x62,
    ]);
    expect([f.imiPage.offset, f.reserved.offset, f.vmpl1Perms.offset]).toEqual([0x63, 0x64, 0x65]);
    expect([f.vmpl2Perms.offset, f.vmpl3Perms.offset, f.gpa.offset]).toEqual([0x66, 0x67, 0x68]);
  });

  it('encodes every byte where a hand count puts it', () => {
    const current = ramp(0x10);
    const contents = ramp(0x80);
    const info = encodeSnpPageInfo(current, {
      type: SnpPageType.NORMAL,
      contents,
      gpa: 0x0000_1234_5678_9000n,
      imi: true,
      vmplPerms: [0xa1, 0xb2, 0xc3],
    });
    expect(info.length).toBe(112);
    expect(info.subarray(0, 48)).toEqual(current); // DIGEST_CUR
    expect(info.subarray(48, 96)).toEqual(contents); // CONTENTS
    // LENGTH = 0x0070 LE, PAGE_TYPE 1, IMI 1, then reserved, VMPL1, VMPL2, VMPL3 (the firmware's order)
    expect([...info.subarray(96, 104)]).toEqual([0x70, 0x00, 0x01, 0x01, 0x00, 0xa1, 0xb2, 0xc3]);
    // GPA, little-endian
    expect([...info.subarray(104, 112)]).toEqual([0x00, 0x90, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00]);
  });

  it('writes into a caller buffer (as a PSP keeping one per guest would)', () => {
    const out = Buffer.alloc(0x70, 0xee);
    const page = { type: SnpPageType.ZERO, contents: Buffer.alloc(48), gpa: 0x800000n };
    expect(encodeSnpPageInfo(snpInitialLaunchDigest(), page, out)).toBe(out);
    expect(out).toEqual(encodeSnpPageInfo(snpInitialLaunchDigest(), page));
    expect(() => encodeSnpPageInfo(snpInitialLaunchDigest(), page, Buffer.alloc(0x60))).toThrow(RangeError);
  });
});

describe('extending the launch digest (sev-reference §11 fact 6)', () => {
  /** The rule as the reference states it, concatenated by hand (VMPL perms zero). */
  const byHand = (ld: Buffer, type: number, contents: Buffer, gpa: bigint, imi = 0): Buffer =>
    sha384(ld, contents, le16(0x70), Buffer.from([type, imi]), Buffer.alloc(4), le64(gpa));

  it('starts from 48 zero bytes, a fresh buffer each time', () => {
    const a = snpInitialLaunchDigest();
    expect(a).toEqual(Buffer.alloc(SNP_LAUNCH_DIGEST_SIZE));
    a[0] = 1;
    expect(snpInitialLaunchDigest()[0]).toBe(0);
  });

  it('is SHA-384(LD ‖ CONTENTS ‖ le16(0x70) ‖ type ‖ imi ‖ perms[4] ‖ le64(gpa)) for every page type', () => {
    const page = Buffer.alloc(0x1000, 0x5a);
    let ld = snpInitialLaunchDigest();
    let hand = snpInitialLaunchDigest();
    for (const type of [1, 2, 3, 4, 5, 6]) {
      const contents = snpPageContents(type, page);
      const gpa = 0x80_0000n + BigInt(type) * 0x1000n;
      ld = extendSnpLaunchDigest(ld, { type, contents, gpa });
      hand = byHand(hand, type, contents, gpa);
      expect(ld).toEqual(hand);
    }
    expect(
      extendSnpLaunchDigest(ld, { type: 1, contents: snpPageContents(1, page), gpa: 0n, imi: true }),
    ).toEqual(byHand(ld, 1, snpPageContents(1, page), 0n, 1));
  });

  it('zero-contents pages still change the digest, and so does their GPA and type', () => {
    const zero = Buffer.alloc(48);
    const ld0 = snpInitialLaunchDigest();
    const a = extendSnpLaunchDigest(ld0, { type: SnpPageType.ZERO, contents: zero, gpa: 0x1000n });
    expect(a).not.toEqual(ld0);
    expect(extendSnpLaunchDigest(ld0, { type: SnpPageType.ZERO, contents: zero, gpa: 0x2000n })).not.toEqual(
      a,
    );
    expect(
      extendSnpLaunchDigest(ld0, { type: SnpPageType.SECRETS, contents: zero, gpa: 0x1000n }),
    ).not.toEqual(a);
  });

  it('VMPL permissions: the firmware order and sev-snp-measure’s agree only when all are zero', () => {
    const ld = ramp(1);
    const page = (perms: [number, number, number]): SnpMeasuredPage => ({
      type: SnpPageType.NORMAL,
      contents: ramp(9),
      gpa: 0x7000n,
      vmplPerms: perms,
    });
    // sev-snp-measure gctx.py / virtee gctx.rs write VMPL3, VMPL2, VMPL1, reserved at 0x64..0x67
    const virteeOrder = ([v1, v2, v3]: [number, number, number]): Buffer =>
      sha384(ld, ramp(9), le16(0x70), Buffer.from([1, 0, v3, v2, v1, 0]), le64(0x7000n));
    expect(extendSnpLaunchDigest(ld, page([0, 0, 0]))).toEqual(virteeOrder([0, 0, 0]));
    expect(extendSnpLaunchDigest(ld, page([0xf, 0x3, 0x1]))).not.toEqual(virteeOrder([0xf, 0x3, 0x1]));
    expect(encodeSnpPageInfo(ld, page([0xf, 0x3, 0x1])).subarray(0x64, 0x68)).toEqual(
      Buffer.from([0, 0xf, 0x3, 0x1]),
    );
  });

  it('a run of NORMAL pages is the fold of single pages at consecutive GPAs', () => {
    const data = Buffer.alloc(3 * 0x1000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    let ld = ramp(3);
    for (let i = 0; i < 3; i++)
      ld = extendSnpLaunchDigest(ld, {
        type: 1,
        contents: sha384(data.subarray(i * 0x1000, (i + 1) * 0x1000)),
        gpa: 0xfffd_0000n + BigInt(i * 0x1000),
      });
    expect(extendSnpLaunchDigestNormal(ramp(3), 0xfffd_0000n, data)).toEqual(ld);
    expect(extendSnpLaunchDigestNormal(ramp(3), 0n, Buffer.alloc(0))).toEqual(ramp(3));
    expect(() => extendSnpLaunchDigestNormal(ramp(3), 0n, Buffer.alloc(0x800))).toThrow(RangeError);
  });

  // sev-snp-measure calc_snp_ovmf_hash of its AmdSev fixture (tests/test_guest.py; sev-reference §12.1):
  // the image's NORMAL pages, the image ending at 4 GiB.
  it('reproduces the published OVMF hash of the AmdSev fixture', () => {
    const image = readFileSync(
      resolve(import.meta.dirname, '../../shared/testdata/measure/ovmf_AmdSev_suffix.bin'),
    );
    expect(extendSnpLaunchDigestNormal(snpInitialLaunchDigest(), 0xffff_f000n, image).toString('hex')).toBe(
      '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74',
    );
  });

  it('refuses what the firmware never hashes', () => {
    const ok: SnpMeasuredPage = { type: 1, contents: Buffer.alloc(48), gpa: 0x1000n };
    const fieldOf = (current: Uint8Array, page: SnpMeasuredPage): string => {
      try {
        extendSnpLaunchDigest(current, page);
        return 'accepted';
      } catch (err) {
        if (err instanceof SnpPageInfoError) return err.field;
        throw err;
      }
    };
    const ld = snpInitialLaunchDigest();
    expect(fieldOf(ld, ok)).toBe('accepted');
    expect(fieldOf(Buffer.alloc(32), ok)).toBe('digestCur');
    expect(fieldOf(ld, { ...ok, type: SnpPageType.RESERVED })).toBe('pageType');
    expect(fieldOf(ld, { ...ok, type: 7 })).toBe('pageType');
    expect(fieldOf(ld, { ...ok, contents: Buffer.alloc(32) })).toBe('contents');
    expect(fieldOf(ld, { ...ok, type: SnpPageType.CPUID, contents: Buffer.alloc(48, 1) })).toBe('contents');
    expect(fieldOf(ld, { ...ok, gpa: 0x1800n })).toBe('gpa');
    expect(fieldOf(ld, { ...ok, gpa: -0x1000n })).toBe('gpa');
    expect(fieldOf(ld, { ...ok, gpa: 1n << 52n })).toBe('gpa');
    expect(fieldOf(ld, { ...ok, gpa: (1n << 52n) - 0x1000n })).toBe('accepted');
    expect(fieldOf(ld, { ...ok, vmplPerms: [0, 256, 0] })).toBe('vmpl2Perms');
  });
});

describe('CONTENTS by page type (sev-reference §7.5)', () => {
  const page = Buffer.alloc(0x1000);
  for (let i = 0; i < page.length; i++) page[i] = (i * 13 + 5) & 0xff;

  it('NORMAL: SHA-384 of the page', () => {
    expect(snpPageContents(SnpPageType.NORMAL, page)).toEqual(sha384(page));
  });

  it('VMSA: SHA-384 with GUEST_TSC_SCALE and GUEST_TSC_OFFSET (0x2F0..0x2FF) zeroed, the page untouched', () => {
    expect(VMSA_TSC_FIELDS).toEqual({ offset: 0x2f0, length: 0x10 });
    const before = Buffer.from(page);
    const zeroed = Buffer.from(page);
    zeroed.fill(0, 0x2f0, 0x300);
    expect(snpPageContents(SnpPageType.VMSA, page)).toEqual(sha384(zeroed));
    expect(page).toEqual(before);
    // the TSC fields do not matter; the bytes on either side do
    const otherTsc = Buffer.from(page);
    otherTsc.fill(0xff, 0x2f0, 0x300);
    expect(snpPageContents(SnpPageType.VMSA, otherTsc)).toEqual(snpPageContents(SnpPageType.VMSA, page));
    for (const at of [0x2ef, 0x300]) {
      const changed = Buffer.from(page);
      changed[at] = (changed[at] ?? 0) ^ 1;
      expect(snpPageContents(SnpPageType.VMSA, changed)).not.toEqual(snpPageContents(SnpPageType.VMSA, page));
    }
  });

  it('ZERO, UNMEASURED, SECRETS, CPUID: 48 zero bytes, whatever the page holds', () => {
    for (const type of [3, 4, 5, 6]) {
      expect(snpPageContents(type, page)).toEqual(Buffer.alloc(48));
      expect(snpPageContents(type)).toEqual(Buffer.alloc(48));
    }
  });

  it('names the types, and refuses RESERVED, unknown types and pages that are not 4 KiB', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(snpPageTypeName)).toEqual([
      'RESERVED',
      'NORMAL',
      'VMSA',
      'ZERO',
      'UNMEASURED',
      'SECRETS',
      'CPUID',
      undefined,
    ]);
    expect([0, 1, 6, 7, 1.5].map(isSnpPageType)).toEqual([false, true, true, false, false]);
    expect(() => snpPageContents(SnpPageType.RESERVED, page)).toThrow(SnpPageInfoError);
    expect(() => snpPageContents(9, page)).toThrow(SnpPageInfoError);
    expect(() => snpPageContents(SnpPageType.NORMAL)).toThrow(/4 KiB page/);
    expect(() => snpPageContents(SnpPageType.VMSA, page.subarray(0, 0x800))).toThrow(RangeError);
  });
});

describe('the chain is order-sensitive (property)', () => {
  const arbPage = fc
    .record({
      type: fc.integer({ min: 1, max: 6 }),
      seed: fc.integer({ min: 0, max: 255 }),
      gpaPage: fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }),
      imi: fc.boolean(),
    })
    .map(({ type, seed, gpaPage, imi }): SnpMeasuredPage => {
      const bytes = Buffer.alloc(0x1000, seed);
      return { type, contents: snpPageContents(type, bytes), gpa: gpaPage << 12n, imi };
    });
  const fold = (pages: readonly SnpMeasuredPage[]): Buffer =>
    pages.reduce((ld, p) => extendSnpLaunchDigest(ld, p), snpInitialLaunchDigest());
  const same = (a: SnpMeasuredPage, b: SnpMeasuredPage): boolean =>
    encodeSnpPageInfo(Buffer.alloc(48), a).equals(encodeSnpPageInfo(Buffer.alloc(48), b));

  it('swapping two different pages changes the digest; swapping identical ones does not', () => {
    fc.assert(
      fc.property(fc.array(arbPage, { minLength: 2, maxLength: 6 }), fc.nat(), fc.nat(), (pages, x, y) => {
        const i = x % pages.length;
        const j = y % pages.length;
        const swapped = [...pages];
        [swapped[i], swapped[j]] = [pages[j] as SnpMeasuredPage, pages[i] as SnpMeasuredPage];
        const differs = !same(pages[i] as SnpMeasuredPage, pages[j] as SnpMeasuredPage);
        expect(fold(swapped).equals(fold(pages))).toBe(!differs);
      }),
      { numRuns: 150 },
    );
  });
});
