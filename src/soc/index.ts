// The chip: DRAM, memory controller, cache, MMU, core, CPUID and product profiles.
export { Dram, PhysicalAddressError } from './dram.js';
export {
  KEY_HOST,
  KEY_NONE,
  LINE_SIZE,
  KeySlotEmptyError,
  type KeyId,
  type KeySlotInfo,
} from './memory-controller.js';
export type { LineState, CacheGeometry } from './cache.js';
export { DEFAULT_CACHE_GEOMETRY } from './cache.js';
export {
  PagingFormat,
  PAGE_SIZE,
  PTE_SIZE,
  ENTRIES_PER_TABLE,
  tableIndices,
  type PageTableEntry,
} from './paging.js';
export {
  PF_PRESENT,
  PF_WRITE,
  PF_USER,
  PF_RSVD,
  PF_FETCH,
  NPF_FINAL_GPA,
  NPF_GUEST_TABLE,
  VC_PAGE_NOT_VALIDATED,
  type PageFault,
  type NestedPageFault,
  type VcFault,
} from './mmu.js';
export {
  RmpStatus,
  rmpStatusName,
  VmplPerm,
  VMPL_PERMS_ALL,
  PAGES_PER_2M,
  NPF_RMP,
  NPF_ENC,
  NPF_SIZEM,
  NPF_VMPL,
  PF_RMP,
  HostRmpFault,
  encodeRmpEntry,
  RMP_HYPERVISOR_ENTRY,
  rmpPageState,
  type RmpStatusCode,
  type RmpEntry,
  type RmpPageSize,
  type RmpPageState,
  type RmpUpdateState,
} from './rmp.js';
export type { RmpFirmwareAccess } from './rmp.js';
export {
  GuestException,
  INSTRUCTION_BYTES,
  type Instruction,
  type InstructionResult,
  type GuestThread,
  type GuestSoftware,
  type Registers,
  type RmpInstructionResult,
} from './isa.js';
export { VMEXIT_INVALID, VMEXIT_INTR, VcpuHandoff, type VmExit, type VmrunOptions } from './core.js';
export { Soc, HostMemoryView, type SocOptions, type PspCapabilities } from './soc.js';
export type { PspDmaPort } from './psp-dma.js';
export type { KeySlotProgrammer } from './memory-controller.js';
export {
  PRODUCT_NAMES,
  productProfile,
  cpuidMemoryEncryptionLeaf,
  decodeCpuidMemoryEncryptionLeaf,
  type ProductName,
  type ProductProfile,
} from './products.js';
