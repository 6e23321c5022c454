// The OVMF footer table parser on real firmware (../shared/testdata: the 4 KiB suffixes of two edk2
// builds and Debian's 2 MiB OVMF.fd), on hand-built tables that break one rule each, and fuzzed: any
// input either parses or throws AbiDecodeError — never another exception.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  OvmfGuid,
  SevSectionType,
  guidFromBytes,
  guidToBytes,
  parseOvmfFooter,
} from '../src/abi/index.js';

const testdata = resolve(import.meta.dirname, '../../shared/testdata');
const amdSev = readFileSync(join(testdata, 'measure/ovmf_AmdSev_suffix.bin'));
const ovmfX64 = readFileSync(join(testdata, 'measure/ovmf_OvmfX64_suffix.bin'));
const debianOvmf = readFileSync(join(testdata, 'ovmf/OVMF.fd'));

interface Entry {
  guid: string;
  data: Buffer;
}

const u32s = (...v: number[]): Buffer => {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeUInt32LE(x, 4 * i));
  return b;
};

/** A 4 KiB image whose footer table holds `entries`, nearest the footer first (as the parser reports). */
function imageWith(entries: Entry[], opts: { size?: number; tableLength?: number } = {}): Buffer {
  const size = opts.size ?? 0x1000;
  const img = Buffer.alloc(size);
  const footerAt = size - 32 - 18;
  let end = footerAt;
  for (const e of entries) {
    const length = e.data.length + 18;
    img.writeUInt16LE(length, end - 18);
    guidToBytes(e.guid).copy(img, end - 16);
    e.data.copy(img, end - length);
    end -= length;
  }
  img.writeUInt16LE(opts.tableLength ?? footerAt + 18 - end, footerAt);
  guidToBytes(OvmfGuid.TABLE_FOOTER).copy(img, footerAt + 2);
  return img;
}

/** An "ASEV" metadata block at `at` in `img`, and the footer entry pointing at it. */
function withMetadata(
  at: number,
  sections: [number, number, number][],
  header: { signature?: string; version?: number; length?: number } = {},
): Buffer {
  const img = imageWith([{ guid: OvmfGuid.SEV_METADATA, data: u32s(0x1000 - at) }]);
  Buffer.from(header.signature ?? 'ASEV', 'latin1').copy(img, at);
  img.writeUInt32LE(header.length ?? 16 + 12 * sections.length, at + 4);
  img.writeUInt32LE(header.version ?? 1, at + 8);
  img.writeUInt32LE(sections.length, at + 12);
  sections.forEach((s, i) => u32s(...s).copy(img, at + 16 + 12 * i));
  return img;
}

function expectAbiError(run: () => unknown, field: string | RegExp, offset?: number): AbiDecodeError {
  let caught: unknown;
  try {
    run();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(AbiDecodeError);
  const e = caught as AbiDecodeError;
  if (typeof field === 'string') expect(e.field).toBe(field);
  else expect(e.field).toMatch(field);
  if (offset !== undefined) expect(e.offset).toBe(offset);
  expect(e.message).toContain(`0x${e.offset.toString(16)}`);
  return e;
}

describe('EFI GUID encoding', () => {
  it('stores the first three groups little-endian (QEMU docs: the footer GUID bytes)', () => {
    expect(guidToBytes(OvmfGuid.TABLE_FOOTER).toString('hex')).toBe('de82b596b21ff745baeaa366c55a082d');
    expect(amdSev.subarray(0x1000 - 48, 0x1000 - 32)).toEqual(guidToBytes(OvmfGuid.TABLE_FOOTER));
  });

  it('round-trips any 16 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        expect(guidToBytes(guidFromBytes(b))).toEqual(Buffer.from(b));
      }),
      { numRuns: 200 },
    );
  });

  it('refuses what is not a GUID', () => {
    expect(() => guidToBytes('96b582de-1fb2-45f7-baea')).toThrow(RangeError);
    expect(() => guidFromBytes(new Uint8Array(15))).toThrow(RangeError);
  });
});

describe('OVMF footer of real firmware', () => {
  it('AmdSevX64 suffix: reset block, secret and hashes areas, SEV metadata with a kernel-hashes page', () => {
    const f = parseOvmfFooter(amdSev);
    expect(f.layout).toBe('table');
    expect(f.entries.map((e) => e.guid)).toEqual([
      OvmfGuid.SEV_ES_RESET_BLOCK,
      OvmfGuid.SEV_SECRET_BLOCK,
      OvmfGuid.SEV_HASH_TABLE_RV,
      OvmfGuid.SEV_METADATA,
      OvmfGuid.TDX_METADATA,
    ]);
    expect(f.sevEsResetEip).toBe(0x80b004);
    expect(f.sevHashTableArea).toEqual({ base: 0x810c00, size: 0x400 });
    expect(f.sevSecretArea).toEqual({ base: 0x810000, size: 0xc00 });
    expect(f.sevMetadata?.version).toBe(1);
    expect(f.sevMetadata?.offset).toBe(0x1000 - 0x554);
    expect(f.sevMetadata?.sections.map((s) => s.typeName)).toEqual([
      'SNP_SEC_MEM',
      'SNP_SEC_MEM',
      'SNP_SECRETS',
      'CPUID',
      'SVSM_CAA',
      'SNP_KERNEL_HASHES',
      'SNP_SEC_MEM',
    ]);
    expect(f.sevMetadata?.sections[5]).toEqual({
      gpa: 0x810000,
      size: 0x1000,
      type: SevSectionType.SNP_KERNEL_HASHES,
      typeName: 'SNP_KERNEL_HASHES',
    });
  });

  it('OvmfX64 suffix: the hashes entry exists but reserves nothing (base 0, size 0)', () => {
    const f = parseOvmfFooter(ovmfX64);
    expect(f.sevHashTableArea).toEqual({ base: 0, size: 0 });
    expect(f.sevEsResetEip).toBe(0x80b004);
    expect(f.sevMetadata?.sections.some((s) => s.typeName === 'SNP_KERNEL_HASHES')).toBe(false);
  });

  it("Debian's 2 MiB OVMF.fd: SEV-ES reset block and SNP sections, no kernel-hashes area", () => {
    const f = parseOvmfFooter(debianOvmf);
    expect(f.imageSize).toBe(2 << 20);
    expect(f.sevEsResetEip).toBe(0x80b004);
    expect(f.sevHashTableArea).toEqual({ base: 0, size: 0 });
    expect(f.sevMetadata?.sections.map((s) => s.typeName)).toEqual([
      'SNP_SEC_MEM',
      'SNP_SEC_MEM',
      'SNP_SECRETS',
      'CPUID',
      'SNP_SEC_MEM',
    ]);
    // The last 4 KiB of the image say the same as the whole image.
    const tail = parseOvmfFooter(debianOvmf.subarray(debianOvmf.length - 0x1000));
    expect(tail.sevMetadata?.sections).toEqual(f.sevMetadata?.sections);
    expect(tail.sevEsResetEip).toBe(f.sevEsResetEip);
  });

  it('an image without the footer GUID simply has no table', () => {
    const f = parseOvmfFooter(Buffer.alloc(0x1000));
    expect(f).toMatchObject({
      layout: 'none',
      entries: [],
      sevEsResetEip: undefined,
      sevMetadata: undefined,
    });
  });

  it("reads the early SEV-ES layout (an SEV info block where the footer now is), as QEMU's fallback does", () => {
    const img = Buffer.alloc(0x1000);
    const at = 0x1000 - 32 - 18;
    img.writeUInt16LE(22, at);
    guidToBytes(OvmfGuid.SEV_ES_RESET_BLOCK).copy(img, at + 2);
    img.writeUInt32LE(0x80b004, at - 4);
    const f = parseOvmfFooter(img);
    expect(f.layout).toBe('legacy-sev-info-block');
    expect(f.sevEsResetEip).toBe(0x80b004);
    img.writeUInt16LE(2, at);
    expectAbiError(() => parseOvmfFooter(img), 'length', at);
  });
});

describe('OVMF footer: each broken rule is a typed error naming field and offset', () => {
  const footerAt = 0x1000 - 50;

  it('an image too short to hold the footer', () => {
    expectAbiError(() => parseOvmfFooter(new Uint8Array(49)), 'footer', 0);
  });

  it('a table length shorter than the footer itself, or reaching before the image', () => {
    expectAbiError(() => parseOvmfFooter(imageWith([], { tableLength: 17 })), 'length', footerAt);
    expectAbiError(
      () => parseOvmfFooter(imageWith([], { size: 0x100, tableLength: 0x200 })),
      'length',
      0x100 - 50,
    );
  });

  it('an entry shorter than 18 bytes, or longer than what is left of the table', () => {
    const img = imageWith([{ guid: OvmfGuid.SEV_ES_RESET_BLOCK, data: u32s(0x80b004) }]);
    img.writeUInt16LE(17, footerAt - 18);
    expectAbiError(() => parseOvmfFooter(img), /length$/, footerAt - 18);
    img.writeUInt16LE(23, footerAt - 18);
    expectAbiError(() => parseOvmfFooter(img), /length$/, footerAt - 18);
  });

  it('bytes left over that cannot be an entry', () => {
    const entries = [{ guid: OvmfGuid.SEV_ES_RESET_BLOCK, data: u32s(0x80b004) }];
    const img = imageWith(entries, { tableLength: 18 + 22 + 5 });
    expectAbiError(() => parseOvmfFooter(img), 'entry', footerAt - 22 - 5);
  });

  it('a GUID twice (QEMU and sev-snp-measure would pick different ones)', () => {
    const e = { guid: OvmfGuid.SEV_ES_RESET_BLOCK, data: u32s(0x80b004) };
    expectAbiError(() => parseOvmfFooter(imageWith([e, e])), new RegExp(OvmfGuid.SEV_ES_RESET_BLOCK));
  });

  it('known entries too short for their values', () => {
    const short = Buffer.alloc(2);
    expectAbiError(
      () => parseOvmfFooter(imageWith([{ guid: OvmfGuid.SEV_ES_RESET_BLOCK, data: short }])),
      'resetAddress',
      footerAt - 20,
    );
    expectAbiError(
      () => parseOvmfFooter(imageWith([{ guid: OvmfGuid.SEV_HASH_TABLE_RV, data: u32s(0x810c00) }])),
      'size',
      footerAt - 18,
    );
  });

  it('SEV metadata: pointer outside the image, signature, version, lengths', () => {
    const pointer = (v: number): Buffer => imageWith([{ guid: OvmfGuid.SEV_METADATA, data: u32s(v) }]);
    expectAbiError(() => parseOvmfFooter(pointer(0x1001)), 'offsetFromEnd', footerAt - 22);
    expectAbiError(() => parseOvmfFooter(pointer(8)), 'offsetFromEnd', footerAt - 22);
    expectAbiError(
      () => parseOvmfFooter(withMetadata(0x800, [[0, 0, 1]], { signature: 'ASEW' })),
      'signature',
      0x800,
    );
    expectAbiError(() => parseOvmfFooter(withMetadata(0x800, [[0, 0, 1]], { version: 2 })), 'version', 0x808);
    expectAbiError(() => parseOvmfFooter(withMetadata(0x800, [[0, 0, 1]], { length: 27 })), 'length', 0x804);
    expectAbiError(
      () => parseOvmfFooter(withMetadata(0x800, [[0, 0, 1]], { length: 0x900 })),
      'length',
      0x804,
    );
    const ok = parseOvmfFooter(withMetadata(0x800, [[0x1000, 0x2000, 0x99]]));
    expect(ok.sevMetadata?.sections).toEqual([
      { gpa: 0x1000, size: 0x2000, type: 0x99, typeName: undefined },
    ]);
  });
});

describe('OVMF footer fuzzing: typed errors only', () => {
  /** Parses, or throws AbiDecodeError; anything else fails the property. */
  function outcome(bytes: Uint8Array): 'parsed' | 'refused' {
    try {
      parseOvmfFooter(bytes);
      return 'parsed';
    } catch (err) {
      if (err instanceof AbiDecodeError) return 'refused';
      throw err;
    }
  }

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (b) => {
        outcome(b);
      }),
      { numRuns: 300 },
    );
  });

  it('random tables behind a genuine footer GUID (or the early SEV info block GUID)', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 50, maxLength: 1024 }),
        fc.nat(0xffff),
        fc.boolean(),
        (b, length, legacy) => {
          const img = Buffer.from(b);
          img.writeUInt16LE(length, img.length - 50);
          guidToBytes(legacy ? OvmfGuid.SEV_ES_RESET_BLOCK : OvmfGuid.TABLE_FOOTER).copy(
            img,
            img.length - 48,
          );
          seen.add(outcome(img));
        },
      ),
      { numRuns: 400 },
    );
    expect(seen.has('refused')).toBe(true);
  });

  it('the real AmdSev suffix with bytes of its table and metadata changed', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.integer({ min: 0xa00, max: 0xfff }), value: fc.nat(0xff) }), {
          minLength: 1,
          maxLength: 6,
        }),
        (edits) => {
          const img = Buffer.from(amdSev);
          for (const { at, value } of edits) img[at] = value;
          seen.add(outcome(img));
        },
      ),
      { numRuns: 600 },
    );
    expect([...seen].sort()).toEqual(['parsed', 'refused']);
  });

  it('the real suffixes cut at any point, from either end', () => {
    fc.assert(
      fc.property(fc.nat(0x1000), fc.boolean(), fc.boolean(), (cut, fromFront, x64) => {
        const img = x64 ? ovmfX64 : amdSev;
        outcome(fromFront ? img.subarray(cut) : img.subarray(0, cut));
      }),
      { numRuns: 300 },
    );
  });
});
