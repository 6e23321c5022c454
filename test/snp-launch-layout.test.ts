// What a host SNP_LAUNCH_UPDATEs for an OVMF image (abi/snp-launch-layout.ts): the order and page
// types of sev-reference §7.5 for QEMU, GCE and EC2, checked on firmware images built here with known
// metadata and on the published fixtures, and every inconsistent input refused with its code.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  FIRMWARE_END_GPA,
  OvmfGuid,
  SNP_VMSA_GPA,
  SnpLaunchLayoutError,
  type SnpLaunchLayoutErrorCode,
  type SnpLaunchLayoutInput,
  type SnpLaunchStep,
  SnpPageType,
  guidToBytes,
  parseOvmfFooter,
  snpLaunchLayout,
} from '../src/abi/index.js';
import { LaunchDigestError, computeLaunchDigest } from '../src/owner/index.js';

const testdata = resolve(import.meta.dirname, '../../shared/testdata');
const AMD_SEV = readFileSync(join(testdata, 'measure/ovmf_AmdSev_suffix.bin'));
const OVMF_X64 = readFileSync(join(testdata, 'measure/ovmf_OvmfX64_suffix.bin'));

const le32 = (...v: number[]): Buffer => Buffer.from(new Uint32Array(v).buffer);

interface Section {
  gpa: number;
  size: number;
  type: number;
}

/**
 * A firmware image of `size` bytes whose footer table holds the given reset address, kernel-hashes
 * area and SEV metadata (edk2 layout: "ASEV" header, then {u32 gpa, u32 size, u32 type} descriptors).
 */
function firmware(opts: {
  sections?: Section[];
  resetEip?: number;
  hashArea?: [number, number];
  size?: number;
}): Buffer {
  const size = opts.size ?? 0x2000;
  const img = Buffer.alloc(size);
  const entries: { guid: string; data: Buffer }[] = [];
  if (opts.resetEip !== undefined)
    entries.push({ guid: OvmfGuid.SEV_ES_RESET_BLOCK, data: le32(opts.resetEip) });
  if (opts.hashArea !== undefined)
    entries.push({ guid: OvmfGuid.SEV_HASH_TABLE_RV, data: le32(...opts.hashArea) });
  if (opts.sections !== undefined) {
    const at = 0x100;
    const header = Buffer.concat([
      Buffer.from('ASEV'),
      le32(16 + 12 * opts.sections.length, 1, opts.sections.length),
      ...opts.sections.map((s) => le32(s.gpa, s.size, s.type)),
    ]);
    header.copy(img, at);
    entries.push({ guid: OvmfGuid.SEV_METADATA, data: le32(size - at) });
  }
  let end = size - 50;
  for (const e of entries) {
    img.writeUInt16LE(e.data.length + 18, end - 18);
    guidToBytes(e.guid).copy(img, end - 16);
    e.data.copy(img, end - 18 - e.data.length);
    end -= e.data.length + 18;
  }
  img.writeUInt16LE(size - 32 - end, size - 50);
  guidToBytes(OvmfGuid.TABLE_FOOTER).copy(img, size - 48);
  return img;
}

// The AmdSevX64 layout (edk2 OvmfSevMetadata.asm), with a kernel-hashes area at 0x810C00.
const SECTIONS: Section[] = [
  { gpa: 0x800000, size: 0x9000, type: 1 },
  { gpa: 0x80a000, size: 0x3000, type: 1 },
  { gpa: 0x80d000, size: 0x1000, type: 2 },
  { gpa: 0x80e000, size: 0x1000, type: 3 },
  { gpa: 0x80f000, size: 0x1000, type: 4 },
  { gpa: 0x810000, size: 0x1000, type: 0x10 },
  { gpa: 0x811000, size: 0xf000, type: 1 },
];
const IMAGE = firmware({ sections: SECTIONS, resetEip: 0x80b004, hashArea: [0x810c00, 0x400] });
const base = (over: Partial<SnpLaunchLayoutInput> = {}): SnpLaunchLayoutInput => ({
  footer: parseOvmfFooter(IMAGE),
  kernelHashes: true,
  vcpus: 2,
  ...over,
});

const summary = (steps: readonly SnpLaunchStep[]): string[] =>
  steps.map(
    (s) =>
      `${s.source} ${Object.keys(SnpPageType)[s.type]} 0x${s.gpa.toString(16)}+0x${s.length.toString(16)}`,
  );

describe('SNP launch layout (sev-reference §7.5)', () => {
  it('QEMU with a kernel: image, then each section in metadata order, then one VMSA per vCPU', () => {
    const steps = snpLaunchLayout(base());
    expect(summary(steps)).toEqual([
      'ovmf NORMAL 0xffffe000+0x2000',
      'zero ZERO 0x800000+0x9000',
      'zero ZERO 0x80a000+0x3000',
      'secrets SECRETS 0x80d000+0x1000',
      'cpuid CPUID 0x80e000+0x1000',
      'zero ZERO 0x80f000+0x1000',
      'kernel-hashes NORMAL 0x810000+0x1000',
      'zero ZERO 0x811000+0xf000',
      'vmsa VMSA 0xfffffffff000+0x1000',
      'vmsa VMSA 0xfffffffff000+0x1000',
    ]);
    expect(steps[0]).toMatchObject({ source: 'ovmf', imageOffset: 0 });
    expect(steps[6]).toMatchObject({
      source: 'kernel-hashes',
      section: 'SNP_KERNEL_HASHES',
      tableOffset: 0xc00,
    });
    expect(steps[5]).toMatchObject({ section: 'SVSM_CAA' });
    expect(steps.slice(-2)).toMatchObject([{ vcpuIndex: 0 }, { vcpuIndex: 1 }]);
    expect(SNP_VMSA_GPA).toBe(0xfffffffff000n);
  });

  it('without a kernel the SNP_KERNEL_HASHES section is a ZERO page', () => {
    const steps = snpLaunchLayout(base({ kernelHashes: false }));
    expect(steps[6]).toEqual({
      source: 'zero',
      type: SnpPageType.ZERO,
      section: 'SNP_KERNEL_HASHES',
      gpa: 0x810000n,
      length: 0x1000,
    });
  });

  it('GCE: SNP_SEC_MEM is UNMEASURED instead of ZERO; nothing else changes', () => {
    const qemu = snpLaunchLayout(base());
    const gce = snpLaunchLayout(base({ vmm: 'gce' }));
    expect(gce.map((s) => s.gpa)).toEqual(qemu.map((s) => s.gpa));
    gce.forEach((s, i) => {
      const q = qemu[i] as SnpLaunchStep;
      const secMem = 'section' in s && s.section === 'SNP_SEC_MEM';
      expect(s.type).toBe(secMem ? SnpPageType.UNMEASURED : q.type);
    });
    expect(gce.filter((s) => s.type === SnpPageType.UNMEASURED)).toHaveLength(3);
  });

  it('EC2: the CPUID page moves after every other section, still before the VMSAs', () => {
    const ec2 = summary(snpLaunchLayout(base({ vmm: 'ec2', vcpus: 1 })));
    expect(ec2.slice(4, 8)).toEqual([
      'zero ZERO 0x80f000+0x1000',
      'kernel-hashes NORMAL 0x810000+0x1000',
      'zero ZERO 0x811000+0xf000',
      'cpuid CPUID 0x80e000+0x1000',
    ]);
    expect(ec2.at(-1)).toBe('vmsa VMSA 0xfffffffff000+0x1000');
  });

  it('places the image to end at 4 GiB unless told otherwise', () => {
    expect(snpLaunchLayout(base())[0]?.gpa).toBe(FIRMWARE_END_GPA - 0x2000n);
    const steps = snpLaunchLayout(base({ imageSize: 0x200000, imageGpa: 0xffe00000n }));
    expect(steps[0]).toMatchObject({ gpa: 0xffe00000n, length: 0x200000 });
  });

  it('a multi-page kernel-hashes section is one NORMAL range with the table in its first page', () => {
    const sections = SECTIONS.map((s) => (s.type === 0x10 ? { ...s, size: 0x2000 } : s)).filter(
      (s) => s.gpa !== 0x811000,
    );
    const img = firmware({ sections, resetEip: 0x80b004, hashArea: [0x810c00, 0x400] });
    const step = snpLaunchLayout({ footer: parseOvmfFooter(img), kernelHashes: true, vcpus: 1 })[6];
    expect(step).toMatchObject({ source: 'kernel-hashes', length: 0x2000, tableOffset: 0xc00 });
  });

  it('the published fixtures: AmdSev has a kernel-hashes page at offset 0xC00, OvmfX64 none', () => {
    const amd = snpLaunchLayout({ footer: parseOvmfFooter(AMD_SEV), kernelHashes: true, vcpus: 1 });
    expect(amd.filter((s) => s.source === 'kernel-hashes')).toMatchObject([
      { gpa: 0x810000n, tableOffset: 0xc00 },
    ]);
    const x64 = snpLaunchLayout({ footer: parseOvmfFooter(OVMF_X64), kernelHashes: false, vcpus: 1 });
    expect(x64.some((s) => s.source === 'kernel-hashes')).toBe(false);
    expect(x64.map((s) => s.source)).toEqual([
      'ovmf',
      'zero',
      'zero',
      'secrets',
      'cpuid',
      'zero',
      'zero',
      'vmsa',
    ]);
  });
});

describe('SNP launch layout refusals', () => {
  const codeOf = (input: SnpLaunchLayoutInput): SnpLaunchLayoutErrorCode | 'accepted' => {
    try {
      snpLaunchLayout(input);
      return 'accepted';
    } catch (err) {
      if (err instanceof SnpLaunchLayoutError) return err.code;
      throw err;
    }
  };
  const withSections = (
    sections: Section[],
    more: Parameters<typeof firmware>[0] = {},
  ): SnpLaunchLayoutInput =>
    base({
      footer: parseOvmfFooter(
        firmware({ resetEip: 0x80b004, hashArea: [0x810c00, 0x400], sections, ...more }),
      ),
    });
  const replace = (gpa: number, s: Partial<Section>): Section[] =>
    SECTIONS.map((x) => (x.gpa === gpa ? { ...x, ...s } : x));

  it.each<[string, SnpLaunchLayoutInput, SnpLaunchLayoutErrorCode]>([
    [
      'firmware without SEV metadata',
      base({ footer: parseOvmfFooter(firmware({ resetEip: 0x80b004 })) }),
      'NO_SEV_METADATA',
    ],
    [
      'firmware without the SEV-ES reset block',
      withSections(SECTIONS, { resetEip: undefined }),
      'NO_SEV_ES_RESET_BLOCK',
    ],
    ['a reset block with address 0', withSections(SECTIONS, { resetEip: 0 }), 'NO_SEV_ES_RESET_BLOCK'],
    ['a section of unknown type', withSections(replace(0x80f000, { type: 5 })), 'UNKNOWN_SEV_SECTION'],
    ['a section at an unaligned GPA', withSections(replace(0x80a000, { gpa: 0x80a800 })), 'BAD_SEV_SECTION'],
    ['an empty section', withSections(replace(0x80a000, { size: 0 })), 'BAD_SEV_SECTION'],
    ['a section of part of a page', withSections(replace(0x80a000, { size: 0x2800 })), 'BAD_SEV_SECTION'],
    ['a two-page SECRETS section', withSections(replace(0x80d000, { size: 0x2000 })), 'BAD_SEV_SECTION'],
    [
      'a section past 4 GiB',
      withSections([...SECTIONS, { gpa: 0xfffff000, size: 0x2000, type: 1 }]),
      'BAD_SEV_SECTION',
    ],
    ['two sections sharing a page', withSections(replace(0x80a000, { size: 0x4000 })), 'OVERLAPPING_PAGES'],
    [
      'a section inside the image',
      withSections([...SECTIONS, { gpa: 0xfffff000, size: 0x1000, type: 1 }]),
      'OVERLAPPING_PAGES',
    ],
    [
      'a kernel without an SNP_KERNEL_HASHES section',
      withSections(SECTIONS.filter((s) => s.type !== 0x10)),
      'NO_KERNEL_HASHES_SECTION',
    ],
    [
      'a kernel with two SNP_KERNEL_HASHES sections',
      withSections([
        ...SECTIONS.filter((s) => s.gpa !== 0x811000),
        { gpa: 0x811000, size: 0x1000, type: 0x10 },
      ]),
      'BAD_SEV_SECTION',
    ],
    [
      'a kernel without a hashes area entry',
      withSections(SECTIONS, { hashArea: undefined }),
      'NO_KERNEL_HASHES_AREA',
    ],
    [
      'a kernel with a hashes area at 0',
      withSections(SECTIONS, { hashArea: [0, 0] }),
      'NO_KERNEL_HASHES_AREA',
    ],
    [
      'a hashes area too small for the table',
      withSections(SECTIONS, { hashArea: [0x810c00, 0xa8] }),
      'NO_KERNEL_HASHES_AREA',
    ],
    [
      'a hashes area outside the section',
      withSections(SECTIONS, { hashArea: [0x80fc00, 0x400] }),
      'NO_KERNEL_HASHES_AREA',
    ],
    [
      'a table that would run off the page',
      withSections(SECTIONS, { hashArea: [0x810f80, 0x400] }),
      'NO_KERNEL_HASHES_AREA',
    ],
    ['zero vCPUs', base({ vcpus: 0 }), 'BAD_VCPUS'],
    ['a fractional vCPU count', base({ vcpus: 1.5 }), 'BAD_VCPUS'],
    ['an image that is not whole pages', base({ imageSize: 0x2800 }), 'BAD_IMAGE_PLACEMENT'],
    ['an image at an unaligned GPA', base({ imageGpa: 0xffffe800n }), 'BAD_IMAGE_PLACEMENT'],
  ])('%s', (_what, input, code) => {
    expect(codeOf(input)).toBe(code);
  });

  it('without a kernel, only the kernel-hashes checks are skipped', () => {
    expect(codeOf(withSections(SECTIONS, { hashArea: undefined }))).toBe('NO_KERNEL_HASHES_AREA');
    expect(codeOf({ ...withSections(SECTIONS, { hashArea: undefined }), kernelHashes: false })).toBe(
      'accepted',
    );
    expect(codeOf({ ...withSections(replace(0x80f000, { type: 5 })), kernelHashes: false })).toBe(
      'UNKNOWN_SEV_SECTION',
    );
  });

  it('the owner’s calculator passes the code on as a LaunchDigestError', () => {
    const img = firmware({ resetEip: 0x80b004, sections: replace(0x80f000, { type: 5 }) });
    const run = (): unknown => computeLaunchDigest({ mode: 'snp', ovmf: img, vcpus: 1, vcpuType: 'EPYC-v4' });
    expect(run).toThrow(LaunchDigestError);
    expect(run).toThrow(/unknown type 0x5/);
    try {
      run();
    } catch (err) {
      expect((err as LaunchDigestError).code).toBe('UNKNOWN_SEV_SECTION');
    }
  });
});
