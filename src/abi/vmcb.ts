// VMCB layout: control area 0x000–0x3FF, save area from 0x400 (AMD APM vol. 2 App. B; Linux
// arch/x86/include/asm/svm.h struct vmcb_control_area / vmcb_save_area; sev-reference §1.1, §6.1).
import { StructLayout } from './layout.js';

export const VMCB_SIZE = 0x1000;
export const VMCB_SAVE_AREA_OFFSET = 0x400;

// Linux struct vmcb_control_area
export const VmcbControl = new StructLayout('VMCB control area', 0x400, {
  interceptMisc2: { offset: 0x10, type: 'u32' },
  asid: { offset: 0x58, type: 'u32' },
  tlbControl: { offset: 0x5c, type: 'u8' },
  exitCode: { offset: 0x70, type: 'u64' },
  exitInfo1: { offset: 0x78, type: 'u64' },
  exitInfo2: { offset: 0x80, type: 'u64' },
  exitIntInfo: { offset: 0x88, type: 'u64' },
  nestedControl: { offset: 0x90, type: 'u64' },
  // SEV-ES/SNP: the GHCB MSR (0xC0010130) as the guest last wrote it (APM: VMCB offset 0xA0).
  ghcbGpa: { offset: 0xa0, type: 'u64' },
  eventInject: { offset: 0xa8, type: 'u64' },
  nestedCr3: { offset: 0xb0, type: 'u64' },
  vmcbClean: { offset: 0xc0, type: 'u32' },
  nextRip: { offset: 0xc8, type: 'u64' },
  vmsaPaddr: { offset: 0x108, type: 'u64' },
});

/** VMCB nested_ctl bits (KVM doc "VMCB[0x90] Bit[1]"). */
export const NESTED_CTL_NP_ENABLE = 1n;
export const NESTED_CTL_SEV_ENABLE = 2n;
export const NESTED_CTL_SEV_ES_ENABLE = 4n;

/** TLB_CONTROL values (APM): 0 none, 1 flush all, 3 flush this guest's ASID. */
export const TLB_CONTROL_FLUSH_ASID = 3;

/**
 * Register save area, at VMCB+0x400. Offsets are those of Linux struct sev_es_save_area, a superset
 * of the legacy save area; legacy SVM does not keep RBX/RCX/RDX in the VMCB (KVM saves them in its
 * vCPU struct, equally visible to the host), so the model stores them at their SEV-ES offsets.
 */
export const SaveArea = new StructLayout('VMCB save area', 0x400, {
  cpl: { offset: 0x0cb, type: 'u8' },
  efer: { offset: 0x0d0, type: 'u64' },
  cr4: { offset: 0x148, type: 'u64' },
  cr3: { offset: 0x150, type: 'u64' },
  cr0: { offset: 0x158, type: 'u64' },
  rflags: { offset: 0x170, type: 'u64' },
  rip: { offset: 0x178, type: 'u64' },
  rsp: { offset: 0x1d8, type: 'u64' },
  rax: { offset: 0x1f8, type: 'u64' },
  cr2: { offset: 0x240, type: 'u64' },
  rcx: { offset: 0x308, type: 'u64' },
  rdx: { offset: 0x310, type: 'u64' },
  rbx: { offset: 0x318, type: 'u64' },
});

/** CR0.PG: paging enabled. */
export const CR0_PG = 0x8000_0000n;
/** CR0.PE: protected mode. */
export const CR0_PE = 0x1n;

/** SVM exit codes used by the model (Linux arch/x86/include/uapi/asm/svm.h). */
export const SvmExit = {
  EXCP_BASE: 0x40,
  UD: 0x46,
  PF: 0x4e,
  HLT: 0x78,
  SHUTDOWN: 0x7f,
  VMMCALL: 0x81,
  NPF: 0x400,
  /** SEV-ES/SNP automatic exit: the guest asks for the hypervisor through its GHCB. */
  VMGEXIT: 0x403,
} as const;
