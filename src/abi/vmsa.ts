// SEV-ES/SEV-SNP VM save area (VMSA): one 4 KiB page of guest register state, encrypted with the guest
// key (AMD APM vol. 2 Table B-4; Linux arch/x86/include/asm/svm.h struct sev_es_save_area; ASPFW
// sev_es.h; sev-reference §6.1), and the reset-state VMSA a VMM hands to LAUNCH_UPDATE_VMSA or, under
// SNP, to SNP_LAUNCH_UPDATE — for QEMU/KVM, GCE and EC2 (§6.1, §9.2; sev-snp-measure vmsa.py).
import { StructLayout } from './layout.js';

export const VMSA_SIZE = 0x1000;

type Field<T extends 'u16' | 'u32' | 'u64'> = { readonly offset: number; readonly type: T };
type SegmentFields<N extends string> = { readonly [K in `${N}Selector` | `${N}Attrib`]: Field<'u16'> } & {
  readonly [K in `${N}Limit`]: Field<'u32'>;
} & { readonly [K in `${N}Base`]: Field<'u64'> };

/** A `struct vmcb_seg` (u16 selector, u16 attrib, u32 limit, u64 base) named `<name>Selector` etc. */
function segment<N extends string>(name: N, offset: number): SegmentFields<N> {
  return {
    [`${name}Selector`]: { offset, type: 'u16' },
    [`${name}Attrib`]: { offset: offset + 2, type: 'u16' },
    [`${name}Limit`]: { offset: offset + 4, type: 'u32' },
    [`${name}Base`]: { offset: offset + 8, type: 'u64' },
  } as SegmentFields<N>;
}

// Linux struct sev_es_save_area (offsets as in sev-reference §6.1); reserved ranges are omitted.
export const Vmsa = new StructLayout('VMSA', VMSA_SIZE, {
  ...segment('es', 0x000),
  ...segment('cs', 0x010),
  ...segment('ss', 0x020),
  ...segment('ds', 0x030),
  ...segment('fs', 0x040),
  ...segment('gs', 0x050),
  ...segment('gdtr', 0x060),
  ...segment('ldtr', 0x070),
  ...segment('idtr', 0x080),
  ...segment('tr', 0x090),
  vmpl0Ssp: { offset: 0x0a0, type: 'u64' },
  vmpl1Ssp: { offset: 0x0a8, type: 'u64' },
  vmpl2Ssp: { offset: 0x0b0, type: 'u64' },
  vmpl3Ssp: { offset: 0x0b8, type: 'u64' },
  uCet: { offset: 0x0c0, type: 'u64' },
  vmpl: { offset: 0x0ca, type: 'u8' },
  cpl: { offset: 0x0cb, type: 'u8' },
  efer: { offset: 0x0d0, type: 'u64' },
  xss: { offset: 0x140, type: 'u64' },
  cr4: { offset: 0x148, type: 'u64' },
  cr3: { offset: 0x150, type: 'u64' },
  cr0: { offset: 0x158, type: 'u64' },
  dr7: { offset: 0x160, type: 'u64' },
  dr6: { offset: 0x168, type: 'u64' },
  rflags: { offset: 0x170, type: 'u64' },
  rip: { offset: 0x178, type: 'u64' },
  dr0: { offset: 0x180, type: 'u64' },
  dr1: { offset: 0x188, type: 'u64' },
  dr2: { offset: 0x190, type: 'u64' },
  dr3: { offset: 0x198, type: 'u64' },
  dr0AddrMask: { offset: 0x1a0, type: 'u64' },
  dr1AddrMask: { offset: 0x1a8, type: 'u64' },
  dr2AddrMask: { offset: 0x1b0, type: 'u64' },
  dr3AddrMask: { offset: 0x1b8, type: 'u64' },
  rsp: { offset: 0x1d8, type: 'u64' },
  sCet: { offset: 0x1e0, type: 'u64' },
  ssp: { offset: 0x1e8, type: 'u64' },
  isstAddr: { offset: 0x1f0, type: 'u64' },
  rax: { offset: 0x1f8, type: 'u64' },
  star: { offset: 0x200, type: 'u64' },
  lstar: { offset: 0x208, type: 'u64' },
  cstar: { offset: 0x210, type: 'u64' },
  sfmask: { offset: 0x218, type: 'u64' },
  kernelGsBase: { offset: 0x220, type: 'u64' },
  sysenterCs: { offset: 0x228, type: 'u64' },
  sysenterEsp: { offset: 0x230, type: 'u64' },
  sysenterEip: { offset: 0x238, type: 'u64' },
  cr2: { offset: 0x240, type: 'u64' },
  gPat: { offset: 0x268, type: 'u64' },
  dbgctl: { offset: 0x270, type: 'u64' },
  brFrom: { offset: 0x278, type: 'u64' },
  brTo: { offset: 0x280, type: 'u64' },
  lastExcpFrom: { offset: 0x288, type: 'u64' },
  lastExcpTo: { offset: 0x290, type: 'u64' },
  pkru: { offset: 0x2e8, type: 'u32' },
  tscAux: { offset: 0x2ec, type: 'u32' },
  // Reserved in Linux; named by the firmware (ASPFW sev_es.h). SNP zeroes the TSC pair before
  // measuring a VMSA (sev-reference §11.6).
  guestTscScale: { offset: 0x2f0, type: 'u64' },
  guestTscOffset: { offset: 0x2f8, type: 'u64' },
  regProtNonce: { offset: 0x300, type: 'u64' },
  rcx: { offset: 0x308, type: 'u64' },
  rdx: { offset: 0x310, type: 'u64' },
  rbx: { offset: 0x318, type: 'u64' },
  rbp: { offset: 0x328, type: 'u64' },
  rsi: { offset: 0x330, type: 'u64' },
  rdi: { offset: 0x338, type: 'u64' },
  r8: { offset: 0x340, type: 'u64' },
  r9: { offset: 0x348, type: 'u64' },
  r10: { offset: 0x350, type: 'u64' },
  r11: { offset: 0x358, type: 'u64' },
  r12: { offset: 0x360, type: 'u64' },
  r13: { offset: 0x368, type: 'u64' },
  r14: { offset: 0x370, type: 'u64' },
  r15: { offset: 0x378, type: 'u64' },
  guestExitInfo1: { offset: 0x390, type: 'u64' },
  guestExitInfo2: { offset: 0x398, type: 'u64' },
  guestExitIntInfo: { offset: 0x3a0, type: 'u64' },
  guestNrip: { offset: 0x3a8, type: 'u64' },
  sevFeatures: { offset: 0x3b0, type: 'u64' },
  vintrCtrl: { offset: 0x3b8, type: 'u64' },
  guestExitCode: { offset: 0x3c0, type: 'u64' },
  virtualTom: { offset: 0x3c8, type: 'u64' },
  tlbId: { offset: 0x3d0, type: 'u64' },
  pcpuId: { offset: 0x3d8, type: 'u64' },
  eventInj: { offset: 0x3e0, type: 'u64' },
  xcr0: { offset: 0x3e8, type: 'u64' },
  x87Dp: { offset: 0x400, type: 'u64' },
  mxcsr: { offset: 0x408, type: 'u32' },
  x87Ftw: { offset: 0x40c, type: 'u16' },
  x87Fsw: { offset: 0x40e, type: 'u16' },
  x87Fcw: { offset: 0x410, type: 'u16' },
  x87Fop: { offset: 0x412, type: 'u16' },
  x87Ds: { offset: 0x414, type: 'u16' },
  x87Cs: { offset: 0x416, type: 'u16' },
  x87Rip: { offset: 0x418, type: 'u64' },
  fpregX87: { offset: 0x420, type: 'bytes', length: 80 },
  fpregXmm: { offset: 0x470, type: 'bytes', length: 256 },
  fpregYmm: { offset: 0x570, type: 'bytes', length: 256 },
});

/**
 * SEV_FEATURES bits (VMSA 0x3B0): SEV_STATUS bits shifted down by two (Linux msr-index.h, svm.h;
 * sev-reference §6.1).
 */
export const SevFeature = {
  SNP_ACTIVE: 1n << 0n,
  VTOM: 1n << 1n,
  REFLECT_VC: 1n << 2n,
  RESTRICTED_INJECTION: 1n << 3n,
  ALTERNATE_INJECTION: 1n << 4n,
  DEBUG_SWAP: 1n << 5n,
  PREVENT_HOST_IBS: 1n << 6n,
  BTB_ISOLATION: 1n << 7n,
  VMPL_SSS: 1n << 8n,
  SECURE_TSC: 1n << 9n,
  VMGEXIT_PARAMETER: 1n << 10n,
  IBS_VIRT: 1n << 12n,
  VMSA_REG_PROT: 1n << 14n,
  SMT_PROTECTION: 1n << 15n,
} as const;

/** A CPU model as CPUID reports it. */
export interface CpuModel {
  readonly family: number;
  readonly model: number;
  readonly stepping: number;
}

/**
 * CPUID Fn0000_0001_EAX for a family/model/stepping (AMD CPUID spec #25481; sev-reference §9.2):
 * families above 0xF are encoded as base family 0xF plus an extended family.
 */
export function cpuidSignature({ family, model, stepping }: CpuModel): number {
  const ok = (v: number, max: number): boolean => Number.isInteger(v) && v >= 0 && v <= max;
  if (!ok(family, 0xff + 0xf) || !ok(model, 0xff) || !ok(stepping, 0xf))
    throw new RangeError(`family ${family} model ${model} stepping ${stepping} cannot be encoded in CPUID`);
  const [familyLow, familyExt] = family > 0xf ? [0xf, family - 0xf] : [family, 0];
  return (
    ((familyExt << 20) | ((model >> 4) << 16) | (familyLow << 8) | ((model & 0xf) << 4) | stepping) >>> 0
  );
}

/**
 * QEMU's EPYC vCPU models, by the names `-cpu` takes, with the family/model/stepping each reports
 * (QEMU target/i386/cpu.c builtin_x86_defs; the list sev-snp-measure vcpu_types.py accepts). Versions
 * of one model differ in features, not in CPUID(1).EAX.
 */
export const VCPU_TYPES = {
  EPYC: { family: 23, model: 1, stepping: 2 },
  'EPYC-v1': { family: 23, model: 1, stepping: 2 },
  'EPYC-v2': { family: 23, model: 1, stepping: 2 },
  'EPYC-IBPB': { family: 23, model: 1, stepping: 2 },
  'EPYC-v3': { family: 23, model: 1, stepping: 2 },
  'EPYC-v4': { family: 23, model: 1, stepping: 2 },
  'EPYC-Rome': { family: 23, model: 49, stepping: 0 },
  'EPYC-Rome-v1': { family: 23, model: 49, stepping: 0 },
  'EPYC-Rome-v2': { family: 23, model: 49, stepping: 0 },
  'EPYC-Rome-v3': { family: 23, model: 49, stepping: 0 },
  'EPYC-Milan': { family: 25, model: 1, stepping: 1 },
  'EPYC-Milan-v1': { family: 25, model: 1, stepping: 1 },
  'EPYC-Milan-v2': { family: 25, model: 1, stepping: 1 },
  'EPYC-Genoa': { family: 25, model: 17, stepping: 0 },
  'EPYC-Genoa-v1': { family: 25, model: 17, stepping: 0 },
  'EPYC-Turin': { family: 26, model: 0, stepping: 0 },
} as const satisfies Readonly<Record<string, CpuModel>>;
export type VcpuTypeName = keyof typeof VCPU_TYPES;
export const VCPU_TYPE_NAMES = Object.keys(VCPU_TYPES) as readonly VcpuTypeName[];

/** Whether `name` is one of {@link VCPU_TYPES} (own keys only, so "toString" is not a vCPU). */
export function isVcpuTypeName(name: string): name is VcpuTypeName {
  return Object.hasOwn(VCPU_TYPES, name);
}

/** The hypervisors whose reset state differs (sev-snp-measure vmm_types.py). */
export const VMM_TYPES = ['qemu', 'gce', 'ec2'] as const;
export type VmmType = (typeof VMM_TYPES)[number];

/** The reset-state registers that differ from one VMM to another. */
export interface VmmResetRegisters {
  readonly csAttrib: number;
  readonly ssAttrib: number;
  readonly trAttrib: number;
  readonly rdx: bigint;
  readonly mxcsr: number;
  readonly x87Fcw: number;
  readonly gPat: bigint;
}

/** How one VMM initialises a vCPU before LAUNCH_UPDATE_VMSA / SNP_LAUNCH_UPDATE. */
export interface VmmResetProfile {
  readonly description: string;
  /**
   * Whether RDX carries the vCPU model's CPUID signature (so the launch needs a vCPU type). GCE and
   * EC2 put a fixed value there, which is why sev-snp-measure takes no vCPU type for them.
   */
  readonly usesVcpuSignature: boolean;
  /** `vcpuSignature` is defined whenever `usesVcpuSignature` is. */
  registers(eip: number, vcpuSignature: number | undefined): VmmResetRegisters;
}

/** The PAT MSR's power-on value (AMD APM vol. 2 §A.3), which KVM also puts in the VMSA's G_PAT. */
export const PAT_RESET_VALUE = 0x0007_0406_0007_0406n;

/** The BSP starts at the architectural reset vector, CS base 0xFFFF0000, IP 0xFFF0. */
export const BSP_RESET_EIP = 0xffff_fff0;

/** RDX at reset on the GCE and EC2 VMMs: KVM's value when no CPUID(1) is configured (kvm_vcpu_reset). */
const FIXED_RESET_RDX = 0x600n;

/**
 * Reset-state profiles by VMM (sev-snp-measure vmsa.py build_save_area, reproduced byte for byte). QEMU
 * gives the x86 reset state; GCE and EC2 differ in RDX, MXCSR and the x87 control word (left zero),
 * GCE in G_PAT, EC2 in the SS/TR attributes and in the BSP's code segment (not yet accessed).
 */
export const VMM_RESET_PROFILES: Readonly<Record<VmmType, VmmResetProfile>> = {
  qemu: {
    description: 'QEMU/KVM: x86 reset state (QEMU x86_cpu_reset) synced into the VMSA by KVM',
    usesVcpuSignature: true,
    registers: (_eip, vcpuSignature) => ({
      // code segment: present, S, code, readable, accessed
      csAttrib: 0x9b,
      ssAttrib: 0x93,
      trAttrib: 0x8b,
      // RDX holds CPUID(1).EAX after reset
      rdx: BigInt(vcpuSignature ?? 0),
      mxcsr: 0x1f80,
      x87Fcw: 0x37f,
      gPat: PAT_RESET_VALUE,
    }),
  },
  gce: {
    description: "Google Compute Engine's VMM (as sev-snp-measure models it): fixed RDX, its own G_PAT",
    usesVcpuSignature: false,
    registers: () => ({
      csAttrib: 0x9b,
      ssAttrib: 0x93,
      trAttrib: 0x8b,
      rdx: FIXED_RESET_RDX,
      mxcsr: 0,
      x87Fcw: 0,
      // GCE's hypervisor overwrites the PAT reset value (sev-snp-measure vmsa.py)
      gPat: 0x0007_0106n,
    }),
  },
  ec2: {
    description: "Amazon EC2's VMM (as sev-snp-measure models it): fixed RDX, other segment attributes",
    usesVcpuSignature: false,
    registers: (eip) => ({
      // the BSP's code segment is not marked accessed; an AP's is
      csAttrib: eip === BSP_RESET_EIP ? 0x9a : 0x9b,
      ssAttrib: 0x92,
      trAttrib: 0x83,
      rdx: FIXED_RESET_RDX,
      mxcsr: 0,
      x87Fcw: 0,
      gPat: PAT_RESET_VALUE,
    }),
  },
};

/** Inputs of {@link buildResetVmsa}. */
export interface ResetVmsaOptions {
  /** 0 is the BSP; the others are APs. */
  readonly vcpuIndex: number;
  /** The APs' start address from OVMF's SEV-ES reset block; needed when `vcpuIndex > 0`. */
  readonly apResetEip?: number;
  /**
   * CPUID(1).EAX of the vCPU model ({@link cpuidSignature}); required by VMMs that put it in RDX (qemu),
   * checked but unused by the others.
   */
  readonly vcpuSignature?: number;
  /** SEV_FEATURES: 0 for SEV-ES under QEMU/KVM's legacy interface, the guest features (e.g. 0x1) for SNP. */
  readonly sevFeatures?: bigint;
  readonly vmm?: VmmType;
}

/** Which start address a vCPU uses: the reset vector for the BSP, OVMF's AP entry for the others. */
export function resetEip(vcpuIndex: number, apResetEip: number | undefined): number {
  if (!Number.isInteger(vcpuIndex) || vcpuIndex < 0) throw new RangeError(`bad vCPU index ${vcpuIndex}`);
  if (vcpuIndex === 0) return BSP_RESET_EIP;
  if (
    apResetEip === undefined ||
    !Number.isInteger(apResetEip) ||
    apResetEip <= 0 ||
    apResetEip > 0xffff_ffff
  )
    throw new RangeError(`vCPU ${vcpuIndex} is an AP and needs the firmware's SEV-ES reset address`);
  return apResetEip;
}

/**
 * The 4 KiB VMSA a vCPU has at launch, byte for byte what the VMM passes to LAUNCH_UPDATE_VMSA (SEV-ES)
 * or SNP_LAUNCH_UPDATE (SNP, page type VMSA): the x86 reset state (real mode, CS:IP at the start
 * address) as that VMM sets it ({@link VMM_RESET_PROFILES}), plus what KVM sets — EFER.SVME, CR4.MCE,
 * CR0.ET, XCR0 = x87 — and SEV_FEATURES. Every other byte is zero, the TSC fields SNP ignores included.
 */
export function buildResetVmsa(options: ResetVmsaOptions): Buffer {
  const vmm = options.vmm ?? 'qemu';
  const profile = Object.hasOwn(VMM_RESET_PROFILES, vmm) ? VMM_RESET_PROFILES[vmm] : undefined;
  if (profile === undefined) throw new RangeError(`no reset-state profile for VMM ${vmm}`);
  const sig = options.vcpuSignature;
  if (sig === undefined) {
    if (profile.usesVcpuSignature)
      throw new RangeError(`the ${vmm} VMM puts the vCPU's CPUID signature in RDX: give vcpuSignature`);
  } else if (!Number.isInteger(sig) || sig < 0 || sig > 0xffff_ffff)
    throw new RangeError(`bad CPUID signature ${sig}`);
  const sevFeatures = options.sevFeatures ?? 0n;
  if (sevFeatures < 0n || sevFeatures >= 1n << 64n)
    throw new RangeError(`SEV_FEATURES ${sevFeatures} is not a u64`);
  const eip = resetEip(options.vcpuIndex, options.apResetEip);
  const r = profile.registers(eip, sig);
  // ES, DS, FS, GS: selector 0, base 0, a 64 KiB read/write data segment (present, S, writable, accessed)
  const data = { attrib: 0x93, limit: 0xffff };
  return Vmsa.encode({
    esAttrib: data.attrib,
    esLimit: data.limit,
    csSelector: 0xf000,
    csAttrib: r.csAttrib,
    csLimit: 0xffff,
    csBase: BigInt(eip & 0xffff_0000) & 0xffff_ffffn,
    ssAttrib: r.ssAttrib,
    ssLimit: 0xffff,
    dsAttrib: data.attrib,
    dsLimit: data.limit,
    fsAttrib: data.attrib,
    fsLimit: data.limit,
    gsAttrib: data.attrib,
    gsLimit: data.limit,
    gdtrLimit: 0xffff,
    ldtrAttrib: 0x82,
    ldtrLimit: 0xffff,
    idtrLimit: 0xffff,
    trAttrib: r.trAttrib,
    trLimit: 0xffff,
    efer: 0x1000n, // EFER.SVME: KVM sets it for every SVM guest
    cr4: 0x40n, // CR4.MCE
    cr0: 0x10n, // CR0.ET
    dr7: 0x400n,
    dr6: 0xffff_0ff0n,
    rflags: 0x2n,
    rip: BigInt(eip & 0xffff),
    gPat: r.gPat,
    rdx: r.rdx,
    sevFeatures,
    xcr0: 0x1n,
    mxcsr: r.mxcsr,
    x87Fcw: r.x87Fcw,
  });
}
