// The GHCB: the one page an SEV-ES/SNP guest shares with its hypervisor for an exit (VMGEXIT).
// Everything in it is chosen by the guest and readable by the host; registers stay in the VMSA.
import { StructLayout } from './layout.js';

export const GHCB_SIZE = 0x1000;

// Linux arch/x86/include/asm/svm.h struct ghcb / ghcb_save_area (sev-reference §6.2).
export const Ghcb = new StructLayout('GHCB', GHCB_SIZE, {
  rax: { offset: 0x1f8, type: 'u64' },
  rcx: { offset: 0x308, type: 'u64' },
  rdx: { offset: 0x310, type: 'u64' },
  rbx: { offset: 0x318, type: 'u64' },
  swExitCode: { offset: 0x390, type: 'u64' },
  swExitInfo1: { offset: 0x398, type: 'u64' },
  swExitInfo2: { offset: 0x3a0, type: 'u64' },
  swScratch: { offset: 0x3a8, type: 'u64' },
  validBitmap: { offset: 0x3f0, type: 'bytes', length: 16 },
  protocolVersion: { offset: 0xffa, type: 'u16' },
  ghcbUsage: { offset: 0xffc, type: 'u32' },
});

/** Software-defined VMGEXIT exit codes (Linux uapi asm/svm.h; sev-reference §6.3). */
export const GhcbExit = {
  PSC: 0x8000_0010,
  SNP_GUEST_REQUEST: 0x8000_0011,
  SNP_EXT_GUEST_REQUEST: 0x8000_0012,
  AP_CREATION: 0x8000_0013,
  SNP_RUN_VMPL: 0x8000_0018,
  TERM_REQUEST: 0x8000_fffe,
} as const;

/** GHCB protocol version the model speaks (Linux GHCB_PROTOCOL_MAX). */
export const GHCB_PROTOCOL_VERSION = 2;

/** SW_EXITINFO2 of a guest request the hypervisor could not serve: VMM error in bits 63:32. */
export const GHCB_VMM_ERROR_INVALID_LEN = 1n << 32n;
export const GHCB_VMM_ERROR_BUSY = 2n << 32n;
