// The VMSA offset table against sev-reference §6.1, CPUID signatures against §9.2, and the reset-state
// VMSA QEMU/KVM measure (§6.1 "Reset-state VMSA used by QEMU"), byte for byte.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BSP_RESET_EIP,
  SevFeature,
  VCPU_TYPES,
  VCPU_TYPE_NAMES,
  VMSA_SIZE,
  Vmsa,
  buildResetVmsa,
  cpuidSignature,
  isVcpuTypeName,
  type FieldSpec,
} from '../src/abi/index.js';

// sev-reference §6.1, transcribed field by field.
const SECTION_6_1: Record<string, number> = {
  esSelector: 0x000,
  csSelector: 0x010,
  ssSelector: 0x020,
  dsSelector: 0x030,
  fsSelector: 0x040,
  gsSelector: 0x050,
  gdtrSelector: 0x060,
  ldtrSelector: 0x070,
  idtrSelector: 0x080,
  trSelector: 0x090,
  vmpl0Ssp: 0x0a0,
  vmpl1Ssp: 0x0a8,
  vmpl2Ssp: 0x0b0,
  vmpl3Ssp: 0x0b8,
  uCet: 0x0c0,
  vmpl: 0x0ca,
  cpl: 0x0cb,
  efer: 0x0d0,
  xss: 0x140,
  cr4: 0x148,
  cr3: 0x150,
  cr0: 0x158,
  dr7: 0x160,
  dr6: 0x168,
  rflags: 0x170,
  rip: 0x178,
  dr0: 0x180,
  dr3AddrMask: 0x1b8,
  rsp: 0x1d8,
  sCet: 0x1e0,
  ssp: 0x1e8,
  isstAddr: 0x1f0,
  rax: 0x1f8,
  star: 0x200,
  lstar: 0x208,
  cstar: 0x210,
  sfmask: 0x218,
  kernelGsBase: 0x220,
  sysenterCs: 0x228,
  sysenterEsp: 0x230,
  sysenterEip: 0x238,
  cr2: 0x240,
  gPat: 0x268,
  dbgctl: 0x270,
  brFrom: 0x278,
  brTo: 0x280,
  lastExcpFrom: 0x288,
  lastExcpTo: 0x290,
  pkru: 0x2e8,
  tscAux: 0x2ec,
  guestTscScale: 0x2f0,
  guestTscOffset: 0x2f8,
  regProtNonce: 0x300,
  rcx: 0x308,
  rdx: 0x310,
  rbx: 0x318,
  rbp: 0x328,
  rsi: 0x330,
  rdi: 0x338,
  r8: 0x340,
  r15: 0x378,
  guestExitInfo1: 0x390,
  guestExitInfo2: 0x398,
  guestExitIntInfo: 0x3a0,
  guestNrip: 0x3a8,
  sevFeatures: 0x3b0,
  vintrCtrl: 0x3b8,
  guestExitCode: 0x3c0,
  virtualTom: 0x3c8,
  tlbId: 0x3d0,
  pcpuId: 0x3d8,
  eventInj: 0x3e0,
  xcr0: 0x3e8,
  x87Dp: 0x400,
  mxcsr: 0x408,
  x87Ftw: 0x40c,
  x87Fsw: 0x40e,
  x87Fcw: 0x410,
  x87Fop: 0x412,
  x87Ds: 0x414,
  x87Cs: 0x416,
  x87Rip: 0x418,
  fpregX87: 0x420,
  fpregXmm: 0x470,
  fpregYmm: 0x570,
};

const width = (f: FieldSpec): number =>
  f.type === 'bytes' ? f.length : { u8: 1, u16: 2, u32: 4, u64: 8 }[f.type];

describe('VMSA layout', () => {
  const rows = Object.entries(SECTION_6_1).map(([f, o]) => [f, `0x${o.toString(16)}`, o] as const);
  it.each(rows)('%s at %s as in §6.1', (field, _hex, offset) => {
    expect((Vmsa.fields as Record<string, FieldSpec>)[field]?.offset).toBe(offset);
  });

  it('segments are vmcb_seg: u16 selector, u16 attrib, u32 limit, u64 base', () => {
    const f = Vmsa.fields;
    expect([f.csSelector, f.csAttrib, f.csLimit, f.csBase]).toEqual([
      { offset: 0x10, type: 'u16' },
      { offset: 0x12, type: 'u16' },
      { offset: 0x14, type: 'u32' },
      { offset: 0x18, type: 'u64' },
    ]);
  });

  it('is one page, and no two fields overlap', () => {
    expect(Vmsa.size).toBe(VMSA_SIZE);
    const spans = Object.entries(Vmsa.fields as Record<string, FieldSpec>)
      .map(([name, f]) => ({ name, start: f.offset, end: f.offset + width(f) }))
      .sort((a, b) => a.start - b.start);
    for (let i = 1; i < spans.length; i++) {
      const [prev, cur] = [spans[i - 1], spans[i]];
      expect(prev && cur && prev.end <= cur.start, `${prev?.name} overlaps ${cur?.name}`).toBe(true);
    }
    expect(spans.at(-1)?.end).toBe(0x670);
  });

  it('SEV_FEATURES bits (§6.1): SNP active is bit 0, DebugSwap bit 5', () => {
    expect(SevFeature.SNP_ACTIVE | SevFeature.DEBUG_SWAP).toBe(0x21n);
    expect(SevFeature.SMT_PROTECTION).toBe(0x8000n);
  });
});

describe('vCPU signatures (§9.2)', () => {
  it('encodes family/model/stepping as CPUID(1).EAX', () => {
    expect(cpuidSignature(VCPU_TYPES['EPYC-v4'])).toBe(0x00800f12);
    expect(cpuidSignature(VCPU_TYPES['EPYC-Milan'])).toBe(0x00a00f11);
    expect(cpuidSignature(VCPU_TYPES['EPYC-Genoa'])).toBe(0x00a10f10);
    expect(cpuidSignature(VCPU_TYPES['EPYC-Rome'])).toBe(0x00830f10);
    expect(cpuidSignature(VCPU_TYPES['EPYC-Turin'])).toBe(0x00b00f00);
    expect(cpuidSignature({ family: 6, model: 0x55, stepping: 7 })).toBe(0x00050657);
  });

  it("lists the calculator's EPYC models, and nothing from the prototype chain", () => {
    expect(VCPU_TYPE_NAMES).toContain('EPYC');
    expect(VCPU_TYPE_NAMES).toContain('EPYC-IBPB');
    expect(VCPU_TYPE_NAMES).toContain('EPYC-Genoa-v1');
    expect(VCPU_TYPE_NAMES).toHaveLength(16);
    expect(isVcpuTypeName('toString')).toBe(false);
  });

  it('refuses what CPUID cannot encode', () => {
    expect(() => cpuidSignature({ family: 0x10f, model: 0, stepping: 0 })).toThrow(RangeError);
    expect(() => cpuidSignature({ family: 25, model: 256, stepping: 0 })).toThrow(RangeError);
    expect(() => cpuidSignature({ family: 25, model: 1, stepping: 16 })).toThrow(RangeError);
  });

  it('decodes back to the same family, model and stepping', () => {
    fc.assert(
      fc.property(fc.nat(0x10e), fc.nat(0xff), fc.nat(0xf), (family, model, stepping) => {
        const sig = cpuidSignature({ family, model, stepping });
        const base = (sig >> 8) & 0xf;
        expect(base === 0xf ? base + ((sig >> 20) & 0xff) : base).toBe(family);
        expect((((sig >> 16) & 0xf) << 4) | ((sig >> 4) & 0xf)).toBe(model);
        expect(sig & 0xf).toBe(stepping);
      }),
      { numRuns: 200 },
    );
  });
});

describe('reset-state VMSA (QEMU/KVM)', () => {
  const milan = cpuidSignature(VCPU_TYPES['EPYC-Milan']);
  const bsp = Vmsa.decode(buildResetVmsa({ vcpuIndex: 0, vcpuSignature: milan, sevFeatures: 0x21n }));

  it('BSP: real mode at the reset vector, with the values §6.1 lists', () => {
    expect(bsp).toMatchObject({
      csSelector: 0xf000,
      csAttrib: 0x9b,
      csLimit: 0xffff,
      csBase: 0xffff0000n,
      rip: 0xfff0n,
      ssAttrib: 0x93,
      ldtrAttrib: 0x82,
      trAttrib: 0x8b,
      gdtrLimit: 0xffff,
      idtrLimit: 0xffff,
      efer: 0x1000n,
      cr4: 0x40n,
      cr0: 0x10n,
      dr7: 0x400n,
      dr6: 0xffff0ff0n,
      rflags: 0x2n,
      gPat: 0x0007040600070406n,
      rdx: 0x00a00f11n,
      xcr0: 1n,
      mxcsr: 0x1f80,
      x87Fcw: 0x37f,
      sevFeatures: 0x21n,
    });
    for (const s of ['es', 'ds', 'fs', 'gs'] as const) {
      expect(bsp[`${s}Attrib`]).toBe(0x93);
      expect(bsp[`${s}Limit`]).toBe(0xffff);
      expect(bsp[`${s}Base`]).toBe(0n);
    }
    expect(BSP_RESET_EIP).toBe(0xfffffff0);
  });

  it('an AP starts at the OVMF reset block address: CS base = its high half, IP = its low half', () => {
    const ap = Vmsa.decode(buildResetVmsa({ vcpuIndex: 3, apResetEip: 0x80b004, vcpuSignature: milan }));
    expect(ap).toMatchObject({ csSelector: 0xf000, csBase: 0x800000n, rip: 0xb004n, sevFeatures: 0n });
  });

  it('every byte the reset state does not set is zero', () => {
    const page = buildResetVmsa({
      vcpuIndex: 1,
      apResetEip: 0x80b004,
      vcpuSignature: milan,
      sevFeatures: 1n,
    });
    const decoded = Vmsa.decode(page) as Record<string, number | bigint | Buffer>;
    for (const [name, f] of Object.entries(Vmsa.fields as Record<string, FieldSpec>)) {
      const v = decoded[name];
      if (v !== 0 && v !== 0n && !(Buffer.isBuffer(v) && v.every((b) => b === 0)))
        page.fill(0, f.offset, f.offset + width(f));
    }
    expect(page.every((b) => b === 0)).toBe(true);
  });

  // SHA-256 of the VMSAs `sev-snp-measure --mode seves --vcpus 2 --vcpu-type EPYC-Milan --ovmf OVMF.fd
  // --dump-vmsa` writes (virtee/sev-snp-measure 0.0.13, run on ../shared/testdata/ovmf/OVMF.fd).
  it('is byte-identical to the reference calculator for the BSP and an AP', () => {
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(sha(buildResetVmsa({ vcpuIndex: 0, vcpuSignature: milan }))).toBe(
      'efcc96a66e22e3d25161643c1331c59ef2b11d0ac63369c49c0cf2133c0b58db',
    );
    expect(sha(buildResetVmsa({ vcpuIndex: 1, apResetEip: 0x80b004, vcpuSignature: milan }))).toBe(
      'a14b28cfdc8d4d0e2884708ff279ca1204b7e45d45970c38c32fcd3374ba9f4f',
    );
  });

  it('refuses an AP without a reset address, bad values, and VMMs without a profile', () => {
    expect(() => buildResetVmsa({ vcpuIndex: 1, vcpuSignature: milan })).toThrow(/AP/);
    expect(() => buildResetVmsa({ vcpuIndex: -1, vcpuSignature: milan })).toThrow(RangeError);
    expect(() => buildResetVmsa({ vcpuIndex: 0, vcpuSignature: 2 ** 32 })).toThrow(RangeError);
    expect(() => buildResetVmsa({ vcpuIndex: 0, vcpuSignature: milan, sevFeatures: 1n << 64n })).toThrow(
      RangeError,
    );
    expect(() => buildResetVmsa({ vcpuIndex: 0, vcpuSignature: milan, vmm: 'xen' as 'qemu' })).toThrow(/xen/);
    expect(() => buildResetVmsa({ vcpuIndex: 0, vmm: 'toString' as 'qemu' })).toThrow(/toString/);
    // QEMU's RDX is the signature: without one there is no QEMU VMSA.
    expect(() => buildResetVmsa({ vcpuIndex: 0 })).toThrow(/vcpuSignature/);
  });
});

// The GCE and EC2 VMMs as sev-snp-measure vmsa.py build_save_area models them; their digests are
// checked end to end against the published vectors in test/snp-launch-measure.test.ts.
describe('reset-state VMSA of the cloud VMMs (sev-snp-measure vmsa.py)', () => {
  const milan = cpuidSignature(VCPU_TYPES['EPYC-Milan']);
  const ap = { vcpuIndex: 2, apResetEip: 0x80b004 } as const;
  const decode = (o: Parameters<typeof buildResetVmsa>[0]): ReturnType<typeof Vmsa.decode> =>
    Vmsa.decode(buildResetVmsa(o));

  it('GCE: RDX 0x600 whatever the vCPU, MXCSR and FCW 0, G_PAT 0x70106, QEMU segment attributes', () => {
    for (const vcpu of [{ vcpuIndex: 0 }, ap]) {
      const v = decode({ ...vcpu, vmm: 'gce', sevFeatures: 0x1n });
      expect(v).toMatchObject({
        csAttrib: 0x9b,
        ssAttrib: 0x93,
        trAttrib: 0x8b,
        rdx: 0x600n,
        mxcsr: 0,
        x87Fcw: 0,
        gPat: 0x70106n,
        sevFeatures: 0x1n,
        efer: 0x1000n,
        xcr0: 1n,
      });
    }
    // the signature is not used: GCE's VMSAs are the same with or without one
    expect(buildResetVmsa({ vcpuIndex: 0, vmm: 'gce', vcpuSignature: milan })).toEqual(
      buildResetVmsa({ vcpuIndex: 0, vmm: 'gce' }),
    );
  });

  it('EC2: the BSP code segment is 0x9A (an AP keeps 0x9B), SS 0x92, TR 0x83, RDX 0x600, reset PAT', () => {
    const bsp = decode({ vcpuIndex: 0, vmm: 'ec2', sevFeatures: 0x21n });
    const apVmsa = decode({ ...ap, vmm: 'ec2', sevFeatures: 0x21n });
    expect(bsp).toMatchObject({ csAttrib: 0x9a, csBase: 0xffff0000n, rip: 0xfff0n });
    expect(apVmsa).toMatchObject({ csAttrib: 0x9b, csBase: 0x800000n, rip: 0xb004n });
    for (const v of [bsp, apVmsa])
      expect(v).toMatchObject({
        ssAttrib: 0x92,
        trAttrib: 0x83,
        rdx: 0x600n,
        mxcsr: 0,
        x87Fcw: 0,
        gPat: 0x0007040600070406n,
        sevFeatures: 0x21n,
      });
  });

  it('the VMMs differ only in the registers their profiles name', () => {
    const pages = (['qemu', 'gce', 'ec2'] as const).map((vmm) =>
      buildResetVmsa({ vcpuIndex: 0, vmm, vcpuSignature: milan, sevFeatures: 1n }),
    );
    const differing = (a: Buffer, b: Buffer): string[] =>
      Object.entries(Vmsa.fields as Record<string, FieldSpec>)
        .filter(
          ([, f]) =>
            !a.subarray(f.offset, f.offset + width(f)).equals(b.subarray(f.offset, f.offset + width(f))),
        )
        .map(([name]) => name)
        .sort();
    const [qemu, gce, ec2] = pages as [Buffer, Buffer, Buffer];
    expect(differing(qemu, gce)).toEqual(['gPat', 'mxcsr', 'rdx', 'x87Fcw']);
    expect(differing(qemu, ec2)).toEqual(['csAttrib', 'mxcsr', 'rdx', 'ssAttrib', 'trAttrib', 'x87Fcw']);
  });

  it('SNP VMSAs carry the guest features; the TSC fields the firmware ignores stay zero', () => {
    for (const vmm of ['qemu', 'gce', 'ec2'] as const) {
      const v = decode({ vcpuIndex: 0, vmm, vcpuSignature: milan, sevFeatures: 0x21n });
      expect([v.sevFeatures, v.guestTscScale, v.guestTscOffset]).toEqual([0x21n, 0n, 0n]);
    }
  });
});
