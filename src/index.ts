// sevsim's public API: one entry point for the whole model.

/** Pure primitives: the memory cipher (XEX / Zen 1 XE) and the seedable DRBG. */
export * from './crypto/index.js';
/** Byte-exact formats: command IDs, status codes, command buffers, guest policy, VMCB. */
export * from './abi/index.js';
/** The chip: DRAM, memory controller, cache, MMU, core, product profiles. */
export * from './soc/index.js';
/** The AMD Secure Processor and platform assembly (`createPlatform`). */
export * from './psp/index.js';
/** The hypervisor, its PSP driver and the adversary's capabilities. */
export * from './host/index.js';
/** The guest kernel and its programs. */
export * from './guest/index.js';
/** End-to-end stories. */
export {
  runSevDemo,
  keySlotTable,
  type DemoResult,
  type DemoCheck,
  type DemoOptions,
  type KeySlotRow,
} from './scenarios/sev-demo.js';
/** The guest owner's checks and tools (they need only AMD's formats, so they work on real hardware output). */
export * from './owner/index.js';
/** The owner-verified launch of a real firmware image. */
export {
  runOwnerLaunch,
  type OwnerLaunchOptions,
  type OwnerLaunchResult,
  type LaunchStep,
} from './scenarios/owner-launch.js';
