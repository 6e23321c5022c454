// The guest: a small kernel and the programs it runs.
export {
  GuestKernel,
  KernelApi,
  GuestLayout,
  insn,
  type KernelConfig,
  type ProgramRun,
  type GuestProgram,
  type Step,
} from './kernel.js';
export { OvmfFirmwareModel, DEFAULT_SECRET_GPA } from './firmware-model.js';
export * from './snp-attestation-agent.js';
export * from './vmpl-partitioned-firmware.js';
