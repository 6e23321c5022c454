// Launching a real firmware image the way QEMU/KVM do for SEV and SEV-ES (sev-reference §5.1, §6.1):
// the image is mapped just below 4 GiB like a pflash device and measured whole with
// LAUNCH_UPDATE_DATA; for SEV-ES each vCPU's reset-state VMSA follows with LAUNCH_UPDATE_VMSA. The
// launch stops after LAUNCH_MEASURE so the guest owner can check the measurement and inject a secret
// (LAUNCH_SECRET) before LAUNCH_FINISH.
import {
  ActivateBuffer,
  HandleBuffer,
  LaunchStartBuffer,
  LaunchUpdateBuffer,
  PacketHeader,
  SEV_CERT_SIZE,
  SessionBuffer,
  SevCommand,
  TransportBuffer,
  buildResetVmsa,
  SEV_HASH_TABLE_PADDED_LENGTH,
  type SevKernelHashes,
  encodeSevHashTable,
  parseOvmfFooter,
} from '../abi/index.js';
import { PAGE_SIZE, type GuestSoftware } from '../soc/index.js';
import type { Hypervisor, Vm } from './hypervisor.js';

const FOUR_GIB = 0x1_0000_0000;
const VMSA_BYTES = 0x1000;

/** Where a firmware image of `size` bytes sits: just below 4 GiB (QEMU pc_system_flash_map). */
export function firmwareBase(size: number): number {
  return FOUR_GIB - size;
}

export interface FirmwareLaunchConfig {
  readonly name: string;
  /** Low RAM, GPA 0 .. memoryBytes. */
  readonly memoryBytes: number;
  /** The firmware image (e.g. OVMF.fd); its footer gives the SEV-ES AP reset address. */
  readonly firmware: Buffer;
  /** What executes the image once it runs (its code must be the image at {@link firmwareBase}). */
  readonly software: GuestSoftware;
  readonly policy: number;
  /** SEV-ES: one VMSA per vCPU is measured. */
  readonly encryptedState: boolean;
  readonly vcpus: number;
  /** CPUID(1).EAX of the vCPU model, for the VMSAs' RDX. */
  readonly vcpuSignature: number;
  /**
   * Direct kernel boot (QEMU -kernel/-initrd/-append with kernel-hashes=on): the three SHA-256 digests
   * QEMU puts in the firmware's hashes table, which is then measured after the image.
   */
  readonly kernelHashes?: SevKernelHashes;
  /** The guest owner's GODH certificate and session buffer (no transport keys without them). */
  readonly session?: { readonly godhCert: Buffer; readonly session: Buffer };
  /**
   * A host that reorders the image: image pages i and j trade places in guest memory, while the
   * pages are still measured in image order (the integrity scenarios; honest hosts leave it unset).
   */
  readonly swapImagePages?: readonly [number, number];
}

/** Where image page `k` goes when a host swaps pages i and j (identity otherwise). */
export function swappedPage(k: number, swap: readonly [number, number] | undefined): number {
  if (swap === undefined) return k;
  return k === swap[0] ? swap[1] : k === swap[1] ? swap[0] : k;
}

/** A launch waiting for its owner between LAUNCH_MEASURE and LAUNCH_FINISH. */
export interface PendingLaunch {
  readonly vm: Vm;
  /** The 0x30-byte LAUNCH_MEASURE output (measurement ‖ mnonce), what QEMU's query-sev-launch-measure returns. */
  readonly measurementBlob: Buffer;
  /** SEV-ES: the host pages holding each vCPU's VMSA (encrypted by LAUNCH_UPDATE_VMSA). */
  readonly vmsas: readonly number[];
}

/** LAUNCH_START … LAUNCH_MEASURE. Throws PspCommandError if the PSP refuses a step. */
export function startFirmwareLaunch(hv: Hypervisor, config: FirmwareLaunchConfig): PendingLaunch {
  const size = config.firmware.length;
  if (size === 0 || size % PAGE_SIZE !== 0)
    throw new RangeError('a firmware image is a non-zero multiple of 4 KiB');
  const base = firmwareBase(size);
  if (config.software.codeBase !== base)
    throw new RangeError(`the firmware's software must execute at 0x${base.toString(16)}`);
  const footer = parseOvmfFooter(config.firmware);
  const asid = hv.allocateAsid(config.encryptedState);
  const vm = hv.allocateVm(config.name, asid, true, config.policy, [
    { gpa: 0, bytes: config.memoryBytes },
    { gpa: base, bytes: size },
  ]);
  const d = hv.driver;
  const session =
    config.session === undefined
      ? {}
      : {
          gdhCertPaddr: BigInt(hv.stageBytes(config.session.godhCert)),
          gdhCertLength: SEV_CERT_SIZE,
          sessionPaddr: BigInt(hv.stageBytes(config.session.session)),
          sessionLength: SessionBuffer.size,
        };
  vm.handle = d.call(SevCommand.LAUNCH_START, LaunchStartBuffer, {
    handle: 0,
    policy: config.policy,
    ...session,
  }).handle;
  d.call(SevCommand.ACTIVATE, ActivateBuffer, { handle: vm.handle, asid });
  if (config.swapImagePages === undefined) {
    // The whole flash image, in one command (QEMU sev_encrypt_flash).
    hv.loadGuestImage(vm, base, config.firmware);
    hv.soc.hostMemory.clflushRange(vm.spaOf(base), size);
    d.call(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
      handle: vm.handle,
      paddr: BigInt(vm.spaOf(base)),
      length: size,
    });
  } else {
    // Page by page, in image order, each at the GPA the host chose: the same bytes are measured.
    for (let k = 0; k < size / PAGE_SIZE; k++) {
      const gpa = base + swappedPage(k, config.swapImagePages) * PAGE_SIZE;
      hv.loadGuestImage(vm, gpa, config.firmware.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE));
      hv.soc.hostMemory.clflushRange(vm.spaOf(gpa), PAGE_SIZE);
      d.call(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
        handle: vm.handle,
        paddr: BigInt(vm.spaOf(gpa)),
        length: PAGE_SIZE,
      });
    }
  }
  if (config.kernelHashes !== undefined) {
    // QEMU sev_add_kernel_loader_hashes: the padded table goes where the firmware's footer says, measured.
    const area = footer.sevHashTableArea;
    if (area === undefined || area.base === 0 || area.size < SEV_HASH_TABLE_PADDED_LENGTH) {
      throw new RangeError('kernel specified but the firmware has no usable kernel-hashes area');
    }
    const table = encodeSevHashTable(config.kernelHashes);
    hv.loadGuestImage(vm, area.base, table);
    hv.soc.hostMemory.clflushRange(vm.spaOf(area.base), table.length);
    d.call(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
      handle: vm.handle,
      paddr: BigInt(vm.spaOf(area.base)),
      length: table.length,
    });
  }
  const vmsas: number[] = [];
  if (config.encryptedState) {
    for (let i = 0; i < config.vcpus; i++) {
      const vmsa = buildResetVmsa({
        vcpuIndex: i,
        vcpuSignature: config.vcpuSignature,
        ...(footer.sevEsResetEip !== undefined ? { apResetEip: footer.sevEsResetEip } : {}),
      });
      const page = hv.stageBytes(vmsa);
      vmsas.push(page);
      d.call(SevCommand.LAUNCH_UPDATE_VMSA, LaunchUpdateBuffer, {
        handle: vm.handle,
        paddr: BigInt(page),
        length: VMSA_BYTES,
      });
    }
  }
  const measurementBlob = hv.measureLaunch(vm);
  return { vm, measurementBlob, vmsas };
}

/** LAUNCH_SECRET (QEMU sev-inject-launch-secret): the owner's packet into guest memory at `gpa`. Returns the PSP status. */
export function injectLaunchSecret(
  hv: Hypervisor,
  vm: Vm,
  header: Buffer,
  ciphertext: Buffer,
  gpa: number,
): number {
  if (header.length !== PacketHeader.size)
    throw new RangeError(`a packet header is ${PacketHeader.size} bytes`);
  return hv.driver.raw(SevCommand.LAUNCH_SECRET, TransportBuffer, {
    handle: vm.handle,
    hdrPaddr: BigInt(hv.stageBytes(header)),
    hdrLength: header.length,
    guestPaddr: BigInt(vm.spaOf(gpa)),
    guestLength: ciphertext.length,
    transPaddr: BigInt(hv.stageBytes(ciphertext)),
    transLength: ciphertext.length,
  }).status;
}

/** LAUNCH_FINISH, then the VMCB (plain SEV guests can then run). */
export function finishFirmwareLaunch(hv: Hypervisor, launch: PendingLaunch, software: GuestSoftware): void {
  hv.driver.call(SevCommand.LAUNCH_FINISH, HandleBuffer, { handle: launch.vm.handle });
  // SEV-ES: the BSP runs from its VMSA; plain SEV: from the VMCB's save area.
  const bsp = launch.vmsas[0];
  if (bsp === undefined) hv.prepareVmcb(launch.vm, software);
  else hv.prepareEncryptedStateVmcb(launch.vm, launch.vm.vmcb, bsp, software);
}
