// The hypervisor's side of SEV-SNP, in KVM/QEMU's order (sev-reference §7.3): SNP_INIT before the
// legacy INIT; a context page handed to the firmware; every initial page RMPUPDATEd to PRE_GUEST and
// SNP_LAUNCH_UPDATEd in the order OVMF's SNP metadata dictates (the same `snpLaunchLayout` the
// owner's calculator folds, so the report's MEASUREMENT is what the owner predicts); VMSAs last, at
// KVM's GPA; then a run loop that forwards the guest's attestation requests (VMGEXIT through its
// GHCB) to the PSP through firmware-owned bounce pages, as KVM does.
import {
  type Decoded,
  GET_ID_BYTES,
  GetIdBuffer,
  SnpPlatformStatus,
  SnpPlatformStatusBuffer,
  GHCB_VMM_ERROR_INVALID_LEN,
  SNP_CERT_TABLE_ENTRY_SIZE,
  GHCB_PROTOCOL_VERSION,
  Ghcb,
  GhcbExit,
  SNP_VMSA_GPA,
  SevCommand,
  SevStatus,
  SnpActivateBuffer,
  SnpGctxBuffer,
  SnpGuestRequestBuffer,
  SnpLaunchFinishBuffer,
  SnpLaunchStartBuffer,
  SnpLaunchUpdateBuffer,
  SnpPageReclaimBuffer,
  SnpPageType,
  SvmExit,
  type VmmType,
  VmcbControl,
  buildResetVmsa,
  encodeSnpCpuidPage,
  encodeSnpLaunchUpdatePageInfo,
  encodeSnpVmplPerms,
  parseOvmfFooter,
  snpLaunchLayout,
  SNP_LAUNCH_FINISH_FLAG,
} from '../abi/index.js';
import { PAGE_SIZE, type GuestSoftware, type RmpUpdateState, type VmExit } from '../soc/index.js';
import { firmwareBase, swappedPage } from './firmware-launch.js';
import type { Hypervisor, Vm } from './hypervisor.js';

/** A host page the firmware owns while a command uses it, then gets back (Linux snp_reclaim_pages). */
function withFirmwarePage<T>(hv: Hypervisor, spa: number, use: () => T): T {
  const soc = hv.soc;
  // The page goes to the firmware clean: no host line under any key may be written back over it.
  soc.hostMemory.clflushRange(spa, PAGE_SIZE);
  rmpupdateOrThrow(hv, spa, { gpa: 0, assigned: true, pageSize: '4K', immutable: true, asid: 0 });
  try {
    return use();
  } finally {
    hv.driver.call(SevCommand.SNP_PAGE_RECLAIM, SnpPageReclaimBuffer, { paddr: BigInt(spa) });
    rmpupdateOrThrow(hv, spa, { gpa: 0, assigned: false, pageSize: '4K', immutable: false, asid: 0 });
  }
}

/** RMPUPDATE failed: the host's own bookkeeping is wrong (or it attacked itself). */
export class RmpUpdateError extends Error {
  constructor(
    readonly spa: number,
    readonly code: number,
  ) {
    super(`RMPUPDATE of SPA 0x${spa.toString(16)} failed with ${code}`);
    this.name = 'RmpUpdateError';
  }
}

function rmpupdateOrThrow(hv: Hypervisor, spa: number, state: RmpUpdateState): void {
  const code = hv.soc.rmpupdate(spa, state);
  if (code !== 0) throw new RmpUpdateError(spa, code);
}

/**
 * Platform bring-up for SNP as Linux does it: SNP_INIT (the RMP is initialised and checked from now
 * on), then the legacy INIT and DF_FLUSH so SEV and SEV-ES guests keep working beside SNP ones.
 */
export function initSnpPlatform(hv: Hypervisor): void {
  if (hv.platform.psp.snpPlatformState !== 0) return;
  if (hv.platform.psp.platformState !== 0) hv.driver.callSimple(SevCommand.SHUTDOWN);
  hv.driver.callSimple(SevCommand.SNP_INIT);
  hv.initPlatform();
}

export interface SnpLaunchConfig {
  readonly name: string;
  /** Low RAM, GPA 0 .. memoryBytes (left to the hypervisor: shared until the guest asks otherwise). */
  readonly memoryBytes: number;
  /** The firmware image (OVMF.fd with SNP metadata), mapped to end at 4 GiB. */
  readonly firmware: Buffer;
  /** What executes the image (its code must be the image at its GPA). */
  readonly software: GuestSoftware;
  /** SNP guest policy (64-bit; bit 17 must be one). */
  readonly policy: bigint;
  readonly vcpus: number;
  /** CPUID(1).EAX of the vCPU model, for QEMU's VMSAs. */
  readonly vcpuSignature?: number;
  /** SEV_FEATURES of every VMSA (bit 0 SNP_ACTIVE). */
  readonly guestFeatures: bigint;
  readonly vmm?: VmmType;
  /** 32 bytes the host binds into every report (SNP_LAUNCH_FINISH HOST_DATA). */
  readonly hostData?: Buffer;
  /** An ID block and its authentication page, checked by the firmware at LAUNCH_FINISH. */
  readonly idBlock?: { readonly block: Buffer; readonly auth: Buffer; readonly authorKey: boolean };
  /**
   * A host that reorders the image: pages i and j trade places in guest memory while the pages are
   * still issued in image order (the integrity scenarios; honest hosts leave it unset).
   */
  readonly swapImagePages?: readonly [number, number];
}

/** A launched SNP guest: the VM, its context page and its vCPUs' VMSA pages. */
export interface SnpVm {
  readonly vm: Vm;
  /** SPA of the guest-context page (the firmware's; the host only names it). */
  readonly gctx: number;
  readonly vmsas: readonly number[];
  readonly policy: bigint;
  /** The host's bounce pages for guest requests (KVM keeps one pair per guest). */
  readonly bounce: { readonly request: number; readonly response: number };
  /** VMCBs of vCPUs the guest created at run time (AP creation), by their VMSA's GPA. */
  readonly createdVcpus: Map<number, number>;
  /**
   * The certificate table the host hands out with extended guest requests (KVM's per-VM certificates,
   * set by the host from AMD's KDS: ARK, ASK, VCEK); undefined until the host sets one.
   */
  certificates: Buffer | undefined;
}

/** SNP_GCTX_CREATE … SNP_LAUNCH_FINISH of a firmware image, and the BSP's VMCB. */
export function launchSnpFirmware(hv: Hypervisor, config: SnpLaunchConfig): SnpVm {
  const size = config.firmware.length;
  const base = firmwareBase(size);
  if (config.software.codeBase !== base)
    throw new RangeError(`the firmware's software must execute at 0x${base.toString(16)}`);
  const footer = parseOvmfFooter(config.firmware);
  const steps = snpLaunchLayout({
    footer,
    kernelHashes: false,
    vcpus: config.vcpus,
    vmm: config.vmm ?? 'qemu',
  });
  const d = hv.driver;
  const asid = hv.allocateAsid(true);

  const gctx = hv.frames.allocate();
  hv.soc.hostMemory.clflushRange(gctx, PAGE_SIZE);
  rmpupdateOrThrow(hv, gctx, { gpa: 0, assigned: true, pageSize: '4K', immutable: true, asid: 0 });
  d.call(SevCommand.SNP_GCTX_CREATE, SnpGctxBuffer, { gctxPaddr: BigInt(gctx) });
  d.call(SevCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer, {
    gctxPaddr: BigInt(gctx),
    policy: config.policy,
  });
  d.call(SevCommand.SNP_ACTIVATE, SnpActivateBuffer, { gctxPaddr: BigInt(gctx), asid });

  const vm = hv.allocateVm(config.name, asid, true, 0, [
    { gpa: 0, bytes: config.memoryBytes },
    { gpa: base, bytes: size },
  ]);
  const mem = hv.soc.hostMemory;
  const vmsas: number[] = [];
  const update = (spa: number, gpa: number, type: number, contents: Buffer): void => {
    mem.write(spa, contents, false);
    mem.clflushRange(spa, PAGE_SIZE);
    rmpupdateOrThrow(hv, spa, { gpa, assigned: true, pageSize: '4K', immutable: true, asid });
    d.call(SevCommand.SNP_LAUNCH_UPDATE, SnpLaunchUpdateBuffer, {
      gctxPaddr: BigInt(gctx),
      pageInfo: encodeSnpLaunchUpdatePageInfo({ pageSize: 0, pageType: type, imiPage: false }),
      pagePaddr: BigInt(spa),
      vmplPerms: encodeSnpVmplPerms({ vmpl1: 0, vmpl2: 0, vmpl3: 0 }),
    });
  };
  for (const step of steps) {
    const gpa0 = Number(step.gpa);
    for (let off = 0; off < step.length; off += PAGE_SIZE) {
      const gpa = gpa0 + off;
      switch (step.source) {
        case 'ovmf': {
          const at = Number(step.gpa) + swappedPage(off / PAGE_SIZE, config.swapImagePages) * PAGE_SIZE;
          update(
            vm.spaOf(at),
            at,
            step.type,
            config.firmware.subarray(step.imageOffset + off, step.imageOffset + off + PAGE_SIZE),
          );
          break;
        }
        case 'zero':
        case 'secrets':
        case 'kernel-hashes':
          update(vm.spaOf(gpa), gpa, step.type, Buffer.alloc(PAGE_SIZE));
          break;
        case 'cpuid':
          // An empty table: the firmware has nothing to correct (a guest then asks CPUID of the host).
          update(vm.spaOf(gpa), gpa, step.type, encodeSnpCpuidPage([]));
          break;
        case 'vmsa': {
          // VMSAs live outside guest RAM; KVM gives them the GPA tools hash.
          const frame = hv.frames.allocate();
          const vmsa = buildResetVmsa({
            vcpuIndex: step.vcpuIndex,
            apResetEip: footer.sevEsResetEip,
            sevFeatures: config.guestFeatures,
            vmm: config.vmm ?? 'qemu',
            ...(config.vcpuSignature !== undefined ? { vcpuSignature: config.vcpuSignature } : {}),
          });
          update(frame, Number(SNP_VMSA_GPA), SnpPageType.VMSA, vmsa);
          vmsas.push(frame);
          break;
        }
      }
    }
  }
  const finish: Partial<Decoded<typeof SnpLaunchFinishBuffer.fields>> = {
    gctxPaddr: BigInt(gctx),
    hostData: config.hostData ?? Buffer.alloc(32),
  };
  if (config.idBlock !== undefined) {
    const block = hv.stageBytes(config.idBlock.block);
    const auth = hv.stageBytes(config.idBlock.auth);
    finish.idBlockPaddr = BigInt(block);
    finish.idAuthPaddr = BigInt(auth);
    finish.flags =
      BigInt(SNP_LAUNCH_FINISH_FLAG.ID_BLOCK_EN) |
      (config.idBlock.authorKey ? BigInt(SNP_LAUNCH_FINISH_FLAG.AUTH_KEY_EN) : 0n);
  }
  d.call(SevCommand.SNP_LAUNCH_FINISH, SnpLaunchFinishBuffer, finish);

  hv.prepareEncryptedStateVmcb(vm, vm.vmcb, vmsas[0] as number, config.software);
  const bounce = { request: hv.frames.allocate(), response: hv.frames.allocate() };
  return {
    vm,
    gctx,
    vmsas,
    policy: config.policy,
    bounce,
    createdVcpus: new Map(),
    certificates: undefined,
  };
}

/**
 * SNP_GUEST_REQUEST for a guest's VMGEXIT: the request is copied to a host page, the firmware writes
 * its answer into a page it owns for the call, and the host copies that to the guest's response page
 * (both guest pages are shared). Returns the firmware status (what goes to SW_EXITINFO2).
 */
export function forwardGuestRequest(
  hv: Hypervisor,
  snp: SnpVm,
  requestGpa: number,
  responseGpa: number,
): number {
  const mem = hv.soc.hostMemory;
  const { request, response } = snp.bounce;
  mem.write(request, mem.read(snp.vm.spaOf(requestGpa), PAGE_SIZE, false), false);
  mem.clflushRange(request, PAGE_SIZE);
  const status = withFirmwarePage(
    hv,
    response,
    () =>
      hv.driver.raw(SevCommand.SNP_GUEST_REQUEST, SnpGuestRequestBuffer, {
        gctxPaddr: BigInt(snp.gctx),
        requestPaddr: BigInt(request),
        responsePaddr: BigInt(response),
      }).status,
  );
  if (status === SevStatus.SUCCESS)
    mem.write(snp.vm.spaOf(responseGpa), mem.read(response, PAGE_SIZE, false), false);
  return status;
}

/** GHCB AP creation (SW_EXITINFO1[31:0]): create the vCPU now (GHCB spec "SNP AP Creation"). */
const AP_CREATE = 1n;

/**
 * Runs one vCPU of an SNP guest (the BSP by default), serving its VMGEXITs — guest requests, and AP
 * creation (a new VMCB for the VMSA the guest built, e.g. a lower VMPL's) — until any other exit.
 */
export function runSnpGuest(hv: Hypervisor, snp: SnpVm, maxExits = 64, vmcb = snp.vm.vmcb): VmExit[] {
  const exits: VmExit[] = [];
  const mem = hv.soc.hostMemory;
  for (let i = 0; i < maxExits; i++) {
    const exit = hv.soc.vmrun(hv.soc.paging.withCBit(vmcb));
    exits.push(exit);
    snp.vm.exits.push(exit);
    if (exit.code !== SvmExit.VMGEXIT) break;
    const control = VmcbControl.decode(mem.read(vmcb, VmcbControl.size, true));
    const ghcbSpa = snp.vm.spaOf(Number(control.ghcbGpa));
    const ghcb = Ghcb.decode(mem.read(ghcbSpa, Ghcb.size, false));
    let info2: bigint;
    let extra: { rbx?: bigint } = {};
    if (ghcb.swExitCode === BigInt(GhcbExit.SNP_GUEST_REQUEST)) {
      info2 = BigInt(forwardGuestRequest(hv, snp, Number(ghcb.swExitInfo1), Number(ghcb.swExitInfo2)));
    } else if (ghcb.swExitCode === BigInt(GhcbExit.SNP_EXT_GUEST_REQUEST)) {
      // RAX = the guest's certificate buffer, RBX = its size in pages (GHCB spec; sev-reference §7.12).
      const table = snp.certificates ?? Buffer.alloc(SNP_CERT_TABLE_ENTRY_SIZE);
      const need = Math.ceil(table.length / PAGE_SIZE);
      if (ghcb.rbx < BigInt(need)) {
        // Too small: nothing goes to the firmware; the guest learns how many pages it needs.
        info2 = GHCB_VMM_ERROR_INVALID_LEN;
        extra = { rbx: BigInt(need) };
      } else {
        info2 = BigInt(forwardGuestRequest(hv, snp, Number(ghcb.swExitInfo1), Number(ghcb.swExitInfo2)));
        if (info2 === 0n) hv.writeGuestMemory(snp.vm, Number(ghcb.rax), table);
      }
    } else if (
      ghcb.swExitCode === BigInt(GhcbExit.AP_CREATION) &&
      (ghcb.swExitInfo1 & 0xffffffffn) === AP_CREATE
    ) {
      // The host only names the page: VMRUN itself refuses it unless the RMP marks it a VMSA of this guest.
      const vmsaGpa = Number(ghcb.swExitInfo2);
      const apVmcb = hv.frames.allocate();
      // The new vCPU runs the same image as the one that asked.
      hv.prepareEncryptedStateVmcb(snp.vm, apVmcb, snp.vm.spaOf(vmsaGpa), { sameAs: vmcb });
      snp.createdVcpus.set(vmsaGpa, apVmcb);
      info2 = 0n;
    } else {
      // Not served: an invalid GHCB input (INVALID_INPUT).
      info2 = 5n;
    }
    const answer = Buffer.from(mem.read(ghcbSpa, Ghcb.size, false));
    Ghcb.write(answer, { swExitInfo2: info2, protocolVersion: GHCB_PROTOCOL_VERSION, ...extra });
    mem.write(ghcbSpa, answer, false);
  }
  return exits;
}

/** What a host needs to fetch its VCEK from AMD's KDS: the chip ID (GET_ID) and the reported TCB. */
export interface SnpPlatformIdentity {
  readonly chipId: Buffer;
  readonly reportedTcb: bigint;
  readonly currentTcb: bigint;
}

/** GET_ID and SNP_PLATFORM_STATUS, as `snphost` does before asking the KDS for the VCEK. */
export function snpPlatformIdentity(hv: Hypervisor): SnpPlatformIdentity {
  const d = hv.driver;
  const mem = hv.soc.hostMemory;
  d.call(SevCommand.GET_ID, GetIdBuffer, { idPaddr: BigInt(d.dataPage), idLength: GET_ID_BYTES });
  const chipId = mem.read(d.dataPage, GET_ID_BYTES, false);
  d.call(SevCommand.SNP_PLATFORM_STATUS, SnpPlatformStatusBuffer, { statusPaddr: BigInt(d.dataPage) });
  const status = SnpPlatformStatus.decode(mem.read(d.dataPage, SnpPlatformStatus.size, false));
  return { chipId, reportedTcb: status.reportedTcb, currentTcb: status.currentTcb };
}
