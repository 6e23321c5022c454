// The guest owner's SNP launch digest (owner/launch-digest.ts, mode snp) beyond vectors.json: the
// other published sev-snp-measure vectors (EC2, GCE with 4 vCPUs, SEV_FEATURES 0x1), and Debian's full
// OVMF.fd — for which nothing is published, so the digest is checked against a fold of
// extendSnpLaunchDigest over pages built here independently, and for sensitivity to every input.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  SNP_VMSA_GPA,
  SnpPageType,
  VCPU_TYPES,
  Vmsa,
  buildResetVmsa,
  cpuidSignature,
  extendSnpLaunchDigest,
  parseOvmfFooter,
  snpInitialLaunchDigest,
  type SnpMeasuredPage,
} from '../src/abi/index.js';
import {
  type LaunchDigestInput,
  computeLaunchDigest,
  computeSnpOvmfHash,
  precomputeOvmf,
} from '../src/owner/index.js';

const testdata = resolve(import.meta.dirname, '../../shared/testdata');
const AMD_SEV = readFileSync(join(testdata, 'measure/ovmf_AmdSev_suffix.bin'));
const OVMF_X64 = readFileSync(join(testdata, 'measure/ovmf_OvmfX64_suffix.bin'));
const DEBIAN = readFileSync(join(testdata, 'ovmf/OVMF.fd'));
const empty = Buffer.alloc(0);
const sha384 = (b: Uint8Array): Buffer => createHash('sha384').update(b).digest();

// sev-snp-measure tests/test_guest.py (kernel = initrd = /dev/null, vCPU EPYC-v4), the cases
// vectors.json does not carry.
describe('published SNP vectors (sev-snp-measure tests/test_guest.py)', () => {
  const withKernel = { kernel: empty, initrd: empty } as const;
  it.each<[string, Partial<LaunchDigestInput>, string]>([
    [
      'test_snp_ec2_default',
      { ...withKernel, append: '', vmm: 'ec2', guestFeatures: 0x21n },
      '0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb',
    ],
    [
      'test_snp_ec2_feature_snp_only',
      { ...withKernel, append: '', vmm: 'ec2', guestFeatures: 0x1n },
      '0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056',
    ],
    [
      'test_snp_gce_with_multiple_vcpus_default',
      { ...withKernel, append: '', vmm: 'gce', vcpus: 4, vcpuType: undefined, guestFeatures: 0x1n },
      '5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d',
    ],
    [
      'test_snp_guest_feature_snp_only',
      { ...withKernel, append: 'console=ttyS0 loglevel=7', guestFeatures: 0x1n },
      '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa',
    ],
    [
      'test_snp_ovmf_hash_gen_feature_snp_only',
      { ...withKernel, append: '', guestFeatures: 0x1n, snpOvmfHash: computeSnpOvmfHash(AMD_SEV) },
      'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5',
    ],
    [
      'test_snp_without_kernel_feature_snp_only',
      { guestFeatures: 0x1n },
      '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d',
    ],
    [
      'test_snp_with_multiple_vcpus_feature_snp_only',
      { ...withKernel, append: '', vcpus: 4, guestFeatures: 0x1n },
      '5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5',
    ],
    [
      'test_snp_with_ovmfx64_without_kernel_feature_snp_only',
      { ovmf: OVMF_X64, guestFeatures: 0x1n },
      'da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005',
    ],
  ])('%s', (_name, change, expected) => {
    const input: LaunchDigestInput = { mode: 'snp', ovmf: AMD_SEV, vcpus: 1, vcpuType: 'EPYC-v4', ...change };
    expect(computeLaunchDigest(input).digest.toString('hex')).toBe(expected);
  });

  it('guest features default to 0x1 (SNPActive), as in sev-snp-measure', () => {
    const base = { mode: 'snp', ovmf: AMD_SEV, vcpus: 1, vcpuType: 'EPYC-v4' } as const;
    const r = computeLaunchDigest(base);
    expect(r.vmsaSevFeatures).toBe(0x1n);
    expect(r.digest.toString('hex')).toBe(
      '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d',
    );
  });
});

describe("SNP from Debian's full OVMF.fd (no published vector: consistency)", () => {
  const milan = cpuidSignature(VCPU_TYPES['EPYC-Milan']);
  const footer = parseOvmfFooter(DEBIAN);

  /** Every page a QEMU launch measures, built from the image, its metadata and the VMSA builder. */
  function pagesByHand(vcpus: number, features: bigint): SnpMeasuredPage[] {
    const pages: SnpMeasuredPage[] = [];
    const imageGpa = 0x1_0000_0000n - BigInt(DEBIAN.length);
    for (let at = 0; at < DEBIAN.length; at += 0x1000)
      pages.push({ type: 1, contents: sha384(DEBIAN.subarray(at, at + 0x1000)), gpa: imageGpa + BigInt(at) });
    const typeOf: Record<number, number> = {
      1: SnpPageType.ZERO,
      2: SnpPageType.SECRETS,
      3: SnpPageType.CPUID,
    };
    for (const s of footer.sevMetadata?.sections ?? []) {
      const type = typeOf[s.type];
      if (type === undefined) throw new Error(`OVMF.fd was expected to have no section of type ${s.type}`);
      for (let at = 0; at < s.size; at += 0x1000)
        pages.push({ type, contents: Buffer.alloc(48), gpa: BigInt(s.gpa + at) });
    }
    for (let i = 0; i < vcpus; i++) {
      const vmsa = buildResetVmsa({
        vcpuIndex: i,
        vcpuSignature: milan,
        sevFeatures: features,
        apResetEip: footer.sevEsResetEip,
      });
      // The builder leaves the TSC fields zero, so the firmware's zeroing changes nothing here.
      const v = Vmsa.decode(vmsa);
      expect([v.guestTscScale, v.guestTscOffset]).toEqual([0n, 0n]);
      pages.push({ type: SnpPageType.VMSA, contents: sha384(vmsa), gpa: SNP_VMSA_GPA });
    }
    return pages;
  }
  const fold = (pages: readonly SnpMeasuredPage[]): Buffer =>
    pages.reduce((ld, p) => extendSnpLaunchDigest(ld, p), snpInitialLaunchDigest());
  const snp = (over: Partial<LaunchDigestInput> = {}): Buffer =>
    computeLaunchDigest({ mode: 'snp', ovmf: DEBIAN, vcpus: 1, vcpuType: 'EPYC-Milan', ...over }).digest;

  it('has the SNP metadata this test relies on', () => {
    expect(DEBIAN.length).toBe(2 << 20);
    expect(footer.sevEsResetEip).toBe(0x80b004);
    expect(footer.sevMetadata?.sections.map((s) => s.typeName)).toEqual([
      'SNP_SEC_MEM',
      'SNP_SEC_MEM',
      'SNP_SECRETS',
      'CPUID',
      'SNP_SEC_MEM',
    ]);
  });

  it.each([1, 4])('%i EPYC-Milan vCPU(s): the digest is the fold over independently built pages', (vcpus) => {
    const r = computeLaunchDigest({ mode: 'snp', ovmf: DEBIAN, vcpus, vcpuType: 'EPYC-Milan' });
    const pages = pagesByHand(vcpus, 0x1n);
    expect(r.digest).toEqual(fold(pages));
    expect(r.digest).toHaveLength(48);
    expect(r.vcpuSignature).toBe(0x00a00f11);
    // 512 image pages, 9 + 3 + 1 + 1 + 17 metadata pages, one VMSA each
    expect(pages).toHaveLength(512 + 31 + vcpus);
    expect(r.measured.map((m) => [m.pageType, m.bytes])).toEqual([
      ['NORMAL', 2 << 20],
      ['ZERO', 0x9000],
      ['ZERO', 0x3000],
      ['SECRETS', 0x1000],
      ['CPUID', 0x1000],
      ['ZERO', 0x11000],
      ...Array.from({ length: vcpus }, () => ['VMSA', 0x1000]),
    ]);
  });

  it('every input changes the digest: vCPU count, type, guest features, VMM', () => {
    const digests = [
      snp(),
      snp({ vcpus: 4 }),
      snp({ vcpus: 2 }),
      snp({ vcpuType: 'EPYC-Genoa' }),
      snp({ guestFeatures: 0x21n }),
      snp({ vmm: 'gce' }),
      snp({ vmm: 'ec2' }),
      snp({ vmm: 'ec2', vcpus: 4 }),
    ].map((d) => d.toString('hex'));
    expect(new Set(digests).size).toBe(digests.length);
    // model versions share a signature, so they share a digest
    expect(snp({ vcpuType: 'EPYC-Milan-v2' })).toEqual(snp());
  });

  it('reordering two measured pages changes the digest', () => {
    const pages = pagesByHand(4, 0x1n);
    const secrets = pages.findIndex((p) => p.type === SnpPageType.SECRETS);
    const cpuid = pages.findIndex((p) => p.type === SnpPageType.CPUID);
    const swapped = [...pages];
    [swapped[secrets], swapped[cpuid]] = [pages[cpuid] as SnpMeasuredPage, pages[secrets] as SnpMeasuredPage];
    expect(fold(swapped)).not.toEqual(fold(pages));
    const [first, second, ...rest] = pages;
    expect(fold([second as SnpMeasuredPage, first as SnpMeasuredPage, ...rest])).not.toEqual(fold(pages));
    expect(fold(pages)).toEqual(snp({ vcpus: 4 }));
  });

  it('the BSP and the APs differ (start address), and the APs share one VMSA', () => {
    const r = computeLaunchDigest({ mode: 'snp', ovmf: DEBIAN, vcpus: 4, vcpuType: 'EPYC-Milan' });
    expect(r.bspVmsa).toBeDefined();
    expect(r.apVmsa).toBeDefined();
    expect(r.bspVmsa?.equals(r.apVmsa as Buffer)).toBe(false);
    expect(r.snpLaunchSteps?.filter((s) => s.source === 'vmsa').map((s) => s.gpa)).toEqual(
      Array.from({ length: 4 }, () => SNP_VMSA_GPA),
    );
  });

  it('the OVMF hash: precomputed once, given back, or computed — the same digest', () => {
    const oneStep = snp({ vcpus: 4 });
    const part = precomputeOvmf(DEBIAN);
    expect(part.snpOvmfHash()).toEqual(computeSnpOvmfHash(DEBIAN));
    expect(fold(pagesByHand(0, 0x1n).slice(0, 512))).toEqual(computeSnpOvmfHash(DEBIAN));
    expect(snp({ ovmf: part, vcpus: 4 })).toEqual(oneStep);
    expect(snp({ ovmf: part, vcpus: 4 })).toEqual(oneStep);
    expect(snp({ vcpus: 4, snpOvmfHash: computeSnpOvmfHash(DEBIAN) })).toEqual(oneStep);
    // the precomputed part still serves SEV and SEV-ES
    expect(computeLaunchDigest({ mode: 'sev', ovmf: part }).digest).toEqual(
      createHash('sha256').update(DEBIAN).digest(),
    );
  });
});
