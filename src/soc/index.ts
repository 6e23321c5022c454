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
  type PageFault,
  type NestedPageFault,
} from './mmu.js';
export {
  GuestException,
  INSTRUCTION_BYTES,
  type Instruction,
  type InstructionResult,
  type GuestThread,
  type GuestSoftware,
  type Registers,
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
