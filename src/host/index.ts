// The hypervisor and the adversary it can become.
export { Hypervisor, Vm, type VmConfig, type RunResult, type GuestPageState } from './hypervisor.js';
export { PspDriver, PspCommandError } from './psp-driver.js';
export { NestedPageTable, type NestedMapping } from './nested-page-table.js';
export { FrameAllocator, OutOfMemoryError } from './frame-allocator.js';
export { Adversary, type AttackAttempt } from './adversary.js';
export {
  firmwareBase,
  startFirmwareLaunch,
  injectLaunchSecret,
  finishFirmwareLaunch,
  type FirmwareLaunchConfig,
  type PendingLaunch,
} from './firmware-launch.js';
export { migrateVm, exportPlatformCerts, type MigrationResult } from './migration.js';
export * from './snp-launch.js';
