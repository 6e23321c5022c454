// Expected SEV / SEV-ES / SNP launch digests against the published vectors (../shared/testdata/measure/
// vectors.json, from sev-snp-measure's tests; read at run time), the kernel-hashes table byte layout
// (sev-reference §9.1), and every refusal of inputs that describe no launch QEMU would perform.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  OvmfGuid,
  SEV_HASH_TABLE_LENGTH,
  SEV_HASH_TABLE_PADDED_LENGTH,
  SevHashTableGuid,
  decodeSevHashTable,
  encodeSevHashTable,
  guidToBytes,
  sevHashTablePage,
} from '../src/abi/index.js';
import {
  type LaunchDigestErrorCode,
  type LaunchDigestInput,
  type LaunchMode,
  LaunchDigestError,
  computeLaunchDigest,
  computeSnpOvmfHash,
  measuredCommandLine,
  measuredKernelHashes,
  precomputeOvmf,
} from '../src/owner/index.js';

const testdata = resolve(import.meta.dirname, '../../shared/testdata');
const measureDir = join(testdata, 'measure');

interface Vector {
  name: string;
  mode: 'sev' | 'sev-es' | 'snp';
  vcpus: number;
  vcpuType: string | null;
  vmm: 'qemu' | 'gce' | 'ec2';
  ovmf: string;
  kernel: string | null;
  initrd: string | null;
  append: string | null;
  guestFeatures: string;
  viaOvmfHash?: boolean;
  expectError?: boolean;
  expectedDigest?: string;
}

const vectors = JSON.parse(readFileSync(join(measureDir, 'vectors.json'), 'utf8')) as Vector[];

const files = new Map<string, Buffer>();
/** A file next to vectors.json, or else the full firmware in ../ovmf/. */
function testFile(name: string): Buffer {
  let data = files.get(name);
  if (data === undefined) {
    const nextTo = join(measureDir, name);
    data = readFileSync(existsSync(nextTo) ? nextTo : join(testdata, 'ovmf', name));
    files.set(name, data);
  }
  return data;
}
/** "empty" is an empty file; null is no such input. */
const blob = (v: string | null): Buffer | undefined =>
  v === null ? undefined : v === 'empty' ? Buffer.alloc(0) : testFile(v);

function inputOf(v: Vector): LaunchDigestInput {
  return {
    mode: v.mode,
    // viaOvmfHash: the image part computed first and passed in, as sev-snp-measure's --snp-ovmf-hash
    snpOvmfHash: v.viaOvmfHash === true ? computeSnpOvmfHash(testFile(v.ovmf)) : undefined,
    ovmf: testFile(v.ovmf),
    kernel: blob(v.kernel),
    initrd: blob(v.initrd),
    append: v.append ?? undefined,
    vcpus: v.vcpus,
    vcpuType: v.vcpuType ?? undefined,
    vmm: v.vmm,
    guestFeatures: BigInt(v.guestFeatures),
  };
}

function codeOf(run: () => unknown): LaunchDigestErrorCode | 'no error' {
  try {
    run();
    return 'no error';
  } catch (err) {
    if (err instanceof LaunchDigestError) return err.code;
    throw err;
  }
}

const digestCases = vectors.filter((v) => v.expectError !== true);
const errorCases = vectors.filter((v) => v.expectError === true);
const AMD_SEV = 'ovmf_AmdSev_suffix.bin';
const OVMF_X64 = 'ovmf_OvmfX64_suffix.bin';
/** sev-snp-measure calc_snp_ovmf_hash of the AmdSev fixture (tests/test_guest.py; sev-reference §12.1). */
const AMD_SEV_SNP_OVMF_HASH =
  '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74';

describe('launch-digest vectors (vectors.json)', () => {
  it('has SEV, SEV-ES and SNP cases to check', () => {
    for (const mode of ['sev', 'sev-es', 'snp'])
      expect(digestCases.filter((v) => v.mode === mode).length).toBeGreaterThan(0);
    expect(errorCases.length).toBeGreaterThan(0);
    expect(digestCases.filter((v) => v.viaOvmfHash === true).length).toBeGreaterThan(0);
  });

  it.each(digestCases.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    expect(computeLaunchDigest(inputOf(v)).digest.toString('hex')).toBe(v.expectedDigest);
  });

  it.each(digestCases.map((v) => [v.name, v] as const))(
    '%s: from a precomputed OVMF part, the same',
    (_n, v) => {
      const input = inputOf(v);
      const part = precomputeOvmf(testFile(v.ovmf));
      expect(computeLaunchDigest({ ...input, ovmf: part }).digest.toString('hex')).toBe(v.expectedDigest);
      // The part is reusable: a second launch from it gives the same answer.
      expect(computeLaunchDigest({ ...input, ovmf: part }).digest.toString('hex')).toBe(v.expectedDigest);
    },
  );

  it.each(errorCases.map((v) => [v.name, v] as const))('%s is refused, saying why', (_n, v) => {
    expect(() => computeLaunchDigest(inputOf(v))).toThrow(LaunchDigestError);
    expect(() => computeLaunchDigest(inputOf(v))).toThrow(/kernel-hashes/);
    expect(codeOf(() => computeLaunchDigest(inputOf(v)))).toBe('NO_KERNEL_HASHES_AREA');
  });

  it.each(errorCases.map((v) => [v.name, v] as const))(
    '%s is refused under SNP too: no SNP_KERNEL_HASHES section',
    (_n, v) => {
      const snp = { ...inputOf(v), mode: 'snp', vcpuType: 'EPYC-v4' } as const;
      expect(codeOf(() => computeLaunchDigest(snp))).toBe('NO_KERNEL_HASHES_SECTION');
      expect(() => computeLaunchDigest(snp)).toThrow(/SNP_KERNEL_HASHES/);
    },
  );

  it('viaOvmfHash cases: the one-step digest equals the one from the precomputed OVMF hash', () => {
    for (const v of digestCases.filter((x) => x.viaOvmfHash === true)) {
      const oneStep = computeLaunchDigest({ ...inputOf(v), snpOvmfHash: undefined });
      expect(oneStep.digest.toString('hex')).toBe(v.expectedDigest);
      expect(oneStep.snpOvmfHash).toEqual(computeSnpOvmfHash(testFile(v.ovmf)));
      expect(computeLaunchDigest(inputOf(v)).digest).toEqual(oneStep.digest);
    }
  });

  it('the SNP OVMF hash of the AmdSev fixture is the published one, and seeds the published digest', () => {
    const amdSev = testFile(AMD_SEV);
    expect(computeSnpOvmfHash(amdSev).toString('hex')).toBe(AMD_SEV_SNP_OVMF_HASH);
    expect(precomputeOvmf(amdSev).snpOvmfHash().toString('hex')).toBe(AMD_SEV_SNP_OVMF_HASH);
    // sev-snp-measure test_snp_ovmf_hash_gen_default: the hash given as hex, the image's contents ignored
    const r = computeLaunchDigest({
      mode: 'snp',
      ovmf: amdSev,
      snpOvmfHash: Buffer.from(AMD_SEV_SNP_OVMF_HASH, 'hex'),
      kernel: Buffer.alloc(0),
      initrd: Buffer.alloc(0),
      append: '',
      vcpus: 1,
      vcpuType: 'EPYC-v4',
      guestFeatures: 0x21n,
    });
    expect(r.digest.toString('hex')).toBe(
      '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198',
    );
  });

  it('the SNP OVMF hash stands for the image: a different hash gives a different digest', () => {
    const base = { mode: 'snp', ovmf: testFile(AMD_SEV), vcpus: 1, vcpuType: 'EPYC-v4' } as const;
    const seeded = computeLaunchDigest({ ...base, snpOvmfHash: Buffer.alloc(48, 1) });
    expect(seeded.digest).not.toEqual(computeLaunchDigest(base).digest);
    expect(seeded.snpOvmfHash).toEqual(Buffer.alloc(48, 1));
    expect(seeded.measured[0]?.what).toMatch(/given/);
  });
});

describe('launch digests beyond the vectors', () => {
  const amdSev = testFile(AMD_SEV);
  const debian = readFileSync(join(testdata, 'ovmf/OVMF.fd'));
  const empty = Buffer.alloc(0);

  it('SEV-ES with 4 vCPUs: the APs start at the reset block address (sev-reference §12.1)', () => {
    const r = computeLaunchDigest({
      mode: 'sev-es',
      ovmf: amdSev,
      kernel: empty,
      initrd: empty,
      append: '',
      vcpus: 4,
      vcpuType: 'EPYC-v4',
    });
    expect(r.digest.toString('hex')).toBe('0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91');
    expect(r.measured.map((m) => m.bytes)).toEqual([0x1000, 176, 0x1000, 0x1000, 0x1000, 0x1000]);
  });

  it('plain SEV without a kernel measures the image alone: the digest is its SHA-256', () => {
    const r = computeLaunchDigest({ mode: 'sev', ovmf: debian });
    expect(r.digest).toEqual(createHash('sha256').update(debian).digest());
    expect(r.measured).toEqual([{ what: 'OVMF image', bytes: 2 << 20 }]);
  });

  // Reference value: sev-snp-measure 0.0.13 --mode seves --vcpus 2 --vcpu-type EPYC-Milan --ovmf OVMF.fd.
  it("SEV-ES from Debian's full 2 MiB OVMF.fd, 2 Milan vCPUs", () => {
    const r = computeLaunchDigest({ mode: 'sev-es', ovmf: debian, vcpus: 2, vcpuType: 'EPYC-Milan' });
    expect(r.digest.toString('hex')).toBe('e0adde7468e70028fce4c0150878129230f27fdba89f9db65682f82819b70763');
    expect(r.vcpuSignature).toBe(0x00a00f11);
    expect(r.vmsaSevFeatures).toBe(0n);
  });

  it('a signature in place of a named vCPU type gives the same digest', () => {
    const base = { mode: 'sev-es', ovmf: amdSev, vcpus: 2 } as const;
    expect(computeLaunchDigest({ ...base, vcpuSignature: 0x00800f12 }).digest).toEqual(
      computeLaunchDigest({ ...base, vcpuType: 'EPYC-v4' }).digest,
    );
  });

  it("SEV-ES VMSAs carry SEV_FEATURES 0 whatever guestFeatures says (sev-snp-measure's rule)", () => {
    const base = { mode: 'sev-es', ovmf: amdSev, vcpus: 1, vcpuType: 'EPYC-v4' } as const;
    expect(computeLaunchDigest({ ...base, guestFeatures: 0x21n }).digest).toEqual(
      computeLaunchDigest({ ...base }).digest,
    );
  });

  it('the digest is SHA-256(OVMF || table || VMSAs) for any kernel, initrd and command line', () => {
    const part = precomputeOvmf(amdSev);
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 256 }),
        fc.option(fc.uint8Array({ maxLength: 256 }), { nil: undefined }),
        fc.option(
          fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0')),
          { nil: undefined },
        ),
        fc.integer({ min: 1, max: 3 }),
        (kernel, initrd, append, vcpus) => {
          const input = { mode: 'sev-es', kernel, initrd, append, vcpus, vcpuType: 'EPYC-Rome' } as const;
          const r = computeLaunchDigest({ ...input, ovmf: amdSev });
          const h = createHash('sha256')
            .update(amdSev)
            .update(encodeSevHashTable(measuredKernelHashes(kernel, initrd, append)));
          for (let i = 0; i < vcpus; i++) h.update(i === 0 ? (r.bspVmsa as Buffer) : (r.apVmsa as Buffer));
          expect(r.digest).toEqual(h.digest());
          expect(computeLaunchDigest({ ...input, ovmf: part }).digest).toEqual(r.digest);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('refusals', () => {
  const amdSev = testFile(AMD_SEV);
  const es = { mode: 'sev-es', ovmf: amdSev, vcpus: 1, vcpuType: 'EPYC-v4' } as const;
  const empty = Buffer.alloc(0);

  /** A 4 KiB image whose footer table has only the given entries. */
  function ovmfWith(entries: { guid: string; data: Buffer }[]): Buffer {
    const img = Buffer.alloc(0x1000);
    let end = 0x1000 - 50;
    for (const e of entries) {
      img.writeUInt16LE(e.data.length + 18, end - 18);
      guidToBytes(e.guid).copy(img, end - 16);
      e.data.copy(img, end - 18 - e.data.length);
      end -= e.data.length + 18;
    }
    img.writeUInt16LE(0x1000 - 32 - end, 0x1000 - 50);
    guidToBytes(OvmfGuid.TABLE_FOOTER).copy(img, 0x1000 - 48);
    return img;
  }
  const le32 = (...v: number[]): Buffer => Buffer.from(new Uint32Array(v).buffer);

  it.each<[string, Partial<LaunchDigestInput>, LaunchDigestErrorCode]>([
    ['an unknown mode', { mode: 'tdx' as LaunchMode }, 'UNSUPPORTED_MODE'],
    ['a precomputed OVMF hash outside SNP', { snpOvmfHash: Buffer.alloc(48) }, 'OVMF_HASH_SNP_ONLY'],
    ['SEV-ES on the GCE VMM (modelled for SNP only)', { vmm: 'gce' }, 'UNSUPPORTED_VMM'],
    ['SEV-ES on the EC2 VMM (modelled for SNP only)', { vmm: 'ec2' }, 'UNSUPPORTED_VMM'],
    ['an unknown VMM', { vmm: 'xen' as 'qemu' }, 'UNSUPPORTED_VMM'],
    ['an initrd without a kernel', { initrd: empty }, 'INITRD_WITHOUT_KERNEL'],
    ['a command line without a kernel', { append: 'quiet' }, 'APPEND_WITHOUT_KERNEL'],
    ['a NUL in the command line', { kernel: empty, append: 'a\0b' }, 'BAD_COMMAND_LINE'],
    ['guest features beyond 64 bits', { guestFeatures: 1n << 64n }, 'BAD_GUEST_FEATURES'],
    ['no vCPU count', { vcpus: undefined }, 'MISSING_VCPUS'],
    ['zero vCPUs', { vcpus: 0 }, 'BAD_VCPUS'],
    ['a fractional vCPU count', { vcpus: 1.5 }, 'BAD_VCPUS'],
    ['no vCPU type', { vcpuType: undefined }, 'MISSING_VCPU_TYPE'],
    ['an unknown vCPU type', { vcpuType: 'EPYC-Zen9' }, 'UNKNOWN_VCPU_TYPE'],
    ['a type and a signature', { vcpuSignature: 0x800f12 }, 'CONFLICTING_VCPU_TYPE'],
    ['a signature beyond 32 bits', { vcpuType: undefined, vcpuSignature: 2 ** 32 }, 'BAD_VCPU_SIGNATURE'],
    ['an image QEMU cannot map', { ovmf: Buffer.alloc(0x1010) }, 'OVMF_SIZE'],
    ['an empty image', { ovmf: Buffer.alloc(0) }, 'OVMF_SIZE'],
    ['SEV-ES firmware without a reset block', { ovmf: Buffer.alloc(0x1000) }, 'NO_SEV_ES_RESET_BLOCK'],
    [
      'a reset block with address 0',
      { ovmf: ovmfWith([{ guid: OvmfGuid.SEV_ES_RESET_BLOCK, data: le32(0) }]) },
      'NO_SEV_ES_RESET_BLOCK',
    ],
    [
      'a kernel with firmware that has no hashes entry at all',
      { kernel: empty, ovmf: ovmfWith([{ guid: OvmfGuid.SEV_ES_RESET_BLOCK, data: le32(0x80b004) }]) },
      'NO_KERNEL_HASHES_AREA',
    ],
    [
      'a kernel with a hashes area too small for the table',
      {
        kernel: empty,
        ovmf: ovmfWith([
          { guid: OvmfGuid.SEV_ES_RESET_BLOCK, data: le32(0x80b004) },
          { guid: OvmfGuid.SEV_HASH_TABLE_RV, data: le32(0x810c00, 0xa8) },
        ]),
      },
      'NO_KERNEL_HASHES_AREA',
    ],
    [
      "a kernel with Debian's OVMF.fd (entry present, area base 0)",
      { kernel: empty, ovmf: readFileSync(join(testdata, 'ovmf/OVMF.fd')) },
      'NO_KERNEL_HASHES_AREA',
    ],
  ])('%s', (_what, change, code) => {
    expect(codeOf(() => computeLaunchDigest({ ...es, ...change }))).toBe(code);
  });

  const snp = { mode: 'snp', ovmf: amdSev, vcpus: 1, vcpuType: 'EPYC-v4' } as const;
  it.each<[string, Partial<LaunchDigestInput>, LaunchDigestErrorCode]>([
    ['SNP without a vCPU count', { vcpus: undefined }, 'MISSING_VCPUS'],
    ['SNP with more vCPUs than KVM allows', { vcpus: 4097 }, 'BAD_VCPUS'],
    ['SNP on QEMU without a vCPU type', { vcpuType: undefined }, 'MISSING_VCPU_TYPE'],
    ['SNP on GCE with an unknown vCPU type', { vmm: 'gce', vcpuType: 'EPYC-Zen9' }, 'UNKNOWN_VCPU_TYPE'],
    ['SNP on an unknown VMM', { vmm: 'xen' as 'qemu' }, 'UNSUPPORTED_VMM'],
    ['SNP guest features without SNPActive', { guestFeatures: 0x20n }, 'BAD_GUEST_FEATURES'],
    ['SNP guest features beyond 64 bits', { guestFeatures: (1n << 64n) | 1n }, 'BAD_GUEST_FEATURES'],
    ['an SNP OVMF hash that is not 48 bytes', { snpOvmfHash: Buffer.alloc(32) }, 'BAD_OVMF_HASH'],
    ['SNP with an initrd but no kernel', { initrd: empty }, 'INITRD_WITHOUT_KERNEL'],
    ['SNP from an image QEMU cannot map', { ovmf: Buffer.alloc(0x1800) }, 'OVMF_SIZE'],
    ['SNP from firmware without SEV metadata', { ovmf: Buffer.alloc(0x1000) }, 'NO_SEV_METADATA'],
    [
      'SNP, a kernel, OvmfX64 (no SNP_KERNEL_HASHES section)',
      { kernel: empty, ovmf: testFile(OVMF_X64) },
      'NO_KERNEL_HASHES_SECTION',
    ],
    [
      "SNP, a kernel, Debian's OVMF.fd (no SNP_KERNEL_HASHES section)",
      { kernel: empty, ovmf: readFileSync(join(testdata, 'ovmf/OVMF.fd')) },
      'NO_KERNEL_HASHES_SECTION',
    ],
  ])('%s', (_what, change, code) => {
    expect(codeOf(() => computeLaunchDigest({ ...snp, ...change }))).toBe(code);
  });

  it('SNP on GCE or EC2 needs no vCPU type: their RDX is fixed, so a given type changes nothing', () => {
    for (const vmm of ['gce', 'ec2'] as const) {
      const without = computeLaunchDigest({ ...snp, vmm, vcpuType: undefined });
      expect(without.vcpuSignature).toBeUndefined();
      expect(computeLaunchDigest({ ...snp, vmm }).digest).toEqual(without.digest);
    }
  });

  it('plain SEV needs neither vCPUs nor the SEV-ES reset block', () => {
    const r = computeLaunchDigest({ mode: 'sev', ovmf: Buffer.alloc(0x1000) });
    expect(r).toMatchObject({ vcpus: undefined, vmsaSevFeatures: undefined, bspVmsa: undefined });
  });

  it('a corrupted footer is the parser’s typed error, naming field and offset', () => {
    const img = Buffer.from(amdSev);
    img.writeUInt16LE(3, 0x1000 - 50 - 18); // the SEV-ES reset block entry's length
    expect(() => computeLaunchDigest({ mode: 'sev', ovmf: img })).toThrow(AbiDecodeError);
    expect(() => computeLaunchDigest({ mode: 'sev', ovmf: img })).toThrow(
      /field entry 00f771de-1a7e-4fcb-890e-68c77e2fb44e length at offset 0xfbc/,
    );
  });
});

describe('kernel-hashes table (sev-reference §9.1)', () => {
  const hashes = measuredKernelHashes(Buffer.alloc(0), undefined, 'console=ttyS0 loglevel=7');
  const table = encodeSevHashTable(hashes);

  it('is 168 bytes padded to 176: header GUID, length, then cmdline, initrd, kernel entries of 50', () => {
    expect([SEV_HASH_TABLE_LENGTH, SEV_HASH_TABLE_PADDED_LENGTH, table.length]).toEqual([168, 176, 176]);
    expect(table.subarray(0, 16)).toEqual(guidToBytes(SevHashTableGuid.TABLE));
    expect(table.readUInt16LE(16)).toBe(168);
    const entries = [SevHashTableGuid.CMDLINE, SevHashTableGuid.INITRD, SevHashTableGuid.KERNEL];
    entries.forEach((guid, i) => {
      const at = 18 + 50 * i;
      expect(table.subarray(at, at + 16)).toEqual(guidToBytes(guid));
      expect(table.readUInt16LE(at + 16)).toBe(50);
    });
    expect(table.subarray(168)).toEqual(Buffer.alloc(8));
  });

  it('hashes the command line with its NUL, and an empty initrd/kernel as SHA-256("")', () => {
    const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');
    expect(table.subarray(36, 68).toString('hex')).toBe(sha('console=ttyS0 loglevel=7\0'));
    expect(table.subarray(86, 118).toString('hex')).toBe(sha(''));
    expect(table.subarray(136, 168).toString('hex')).toBe(sha(''));
    expect(measuredCommandLine(undefined)).toEqual(Buffer.from([0]));
    expect(measuredCommandLine('')).toEqual(Buffer.from([0]));
  });

  // SHA-256 of the table sev-snp-measure 0.0.13 builds for kernel = initrd = /dev/null and this cmdline.
  it('is byte-identical to the reference calculator', () => {
    expect(createHash('sha256').update(table).digest('hex')).toBe(
      '9b8d003b7deacde5e1e4e53ffdeaeefcfeec67cdf0f7362fafe984996f03b59d',
    );
  });

  it('decodes back, and names the first wrong field of a corrupted table', () => {
    expect(decodeSevHashTable(table)).toEqual(hashes);
    const corrupt = (at: number): Buffer => {
      const t = Buffer.from(table);
      t[at] = (t[at] ?? 0) ^ 1;
      return t;
    };
    const fieldOf = (t: Uint8Array): string => {
      try {
        decodeSevHashTable(t);
        return 'decoded';
      } catch (err) {
        if (err instanceof AbiDecodeError) return err.field;
        throw err;
      }
    };
    expect(fieldOf(corrupt(0))).toBe('guid');
    expect(fieldOf(corrupt(16))).toBe('length');
    expect(fieldOf(corrupt(70))).toBe('initrdGuid');
    expect(fieldOf(corrupt(134))).toBe('kernelLength');
    expect(fieldOf(corrupt(170))).toBe('padding');
    expect(fieldOf(corrupt(100))).toBe('decoded'); // a hash byte: any value is a valid digest
    expect(fieldOf(table.subarray(0, 100))).toBe('initrdHash');
  });

  it('sits at its offset in an otherwise zero page (the form SNP measures)', () => {
    const page = sevHashTablePage(table, 0xc00);
    expect(page.subarray(0xc00, 0xc00 + 176)).toEqual(table);
    expect(page.length).toBe(0x1000);
    expect(() => sevHashTablePage(table, 0xf80)).toThrow(RangeError);
  });
});
