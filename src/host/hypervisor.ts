// The hypervisor (KVM/QEMU-like): ASID allocation, guest memory and nested page tables, the SEV
// launch flow through the PSP mailbox, the vCPU run loop and exit handling. It holds handles and
// ASIDs — never a key.
import {
  ActivateBuffer,
  CR0_PE,
  HC_EINVAL,
  HC_MAP_GPA_RANGE,
  HC_OK,
  HC_SEVSIM_BOOTED,
  HC_SEVSIM_PRINT,
  HandleBuffer,
  INIT_FLAG_ES,
  InitBuffer,
  LaunchMeasureBuffer,
  LaunchMeasurement,
  LaunchStartBuffer,
  LaunchUpdateBuffer,
  MAP_GPA_RANGE_ENCRYPTED,
  NESTED_CTL_NP_ENABLE,
  NESTED_CTL_SEV_ENABLE,
  NESTED_CTL_SEV_ES_ENABLE,
  PlatformStatusBuffer,
  SaveArea,
  SevCommand,
  SvmExit,
  TLB_CONTROL_FLUSH_ASID,
  TMR_SIZE,
  VMCB_SAVE_AREA_OFFSET,
  VmcbControl,
  encodeSevPolicy,
  type Decoded,
} from '../abi/index.js';
import type { Platform } from '../psp/index.js';
import { PAGE_SIZE, VMEXIT_INTR, type GuestSoftware, type Soc, type VmExit } from '../soc/index.js';
import { FrameAllocator } from './frame-allocator.js';
import { NestedPageTable } from './nested-page-table.js';
import { PspDriver } from './psp-driver.js';

/** Memory the host kernel keeps for itself below the frames it hands out. */
const HOST_RESERVED_BYTES = 16 * 1024 * 1024;
/** EFER.SVME, required in a VMCB save area. */
const EFER_SVME = 0x1000n;

export interface VmConfig {
  readonly name: string;
  /** Guest RAM, GPA 0 .. memoryBytes (multiple of 4 KiB). */
  readonly memoryBytes: number;
  /** The image to boot: its code is loaded at `codeBase` and measured. */
  readonly software: GuestSoftware;
  /** Launch as an SEV guest (default) or as a plain VM. */
  readonly sev?: boolean;
  /** Legacy guest policy; default NODBG | NOKS. */
  readonly policy?: number;
  /** Use this ASID instead of allocating one (attack scenarios). */
  readonly asid?: number;
}

export type GuestPageState = 'private' | 'shared';

export class Vm {
  handle = 0;
  measurement: Buffer | undefined;
  mnonce: Buffer | undefined;
  /** Lines the guest printed through its shared console buffer. */
  readonly console: string[] = [];
  readonly exits: VmExit[] = [];
  /** What the guest told the host about its pages (KVM_HC_MAP_GPA_RANGE). */
  readonly pageStates = new Map<number, GuestPageState>();
  sharedRegion: { gpa: number; bytes: number } | undefined;
  status: 'created' | 'running' | 'halted' | 'dead' | 'destroyed' = 'created';

  constructor(
    readonly name: string,
    readonly asid: number,
    readonly sev: boolean,
    readonly policy: number,
    readonly memoryBytes: number,
    readonly vmcb: number,
    readonly npt: NestedPageTable,
    /** Guest frame number → host physical address. */
    readonly frames: ReadonlyMap<number, number>,
  ) {}

  /** Host physical address backing `gpa` at launch (the NPT may have been edited since). */
  spaOf(gpa: number): number {
    const spa = this.frames.get(Math.floor(gpa / PAGE_SIZE));
    if (spa === undefined) throw new RangeError(`GPA 0x${gpa.toString(16)} is outside ${this.name}'s memory`);
    return spa + (gpa % PAGE_SIZE);
  }
}

export interface RunResult {
  readonly exits: readonly VmExit[];
  readonly last: VmExit;
}

export class Hypervisor {
  readonly soc: Soc;
  readonly frames: FrameAllocator;
  readonly driver: PspDriver;
  readonly vms: Vm[] = [];
  /** ASIDs freed by destroyed VMs: reusable only after WBINVD + DF_FLUSH. */
  readonly #reclaimable = new Set<number>();
  readonly #usedAsids = new Set<number>();
  #plainVms = 0;

  constructor(readonly platform: Platform) {
    this.soc = platform.soc;
    this.frames = new FrameAllocator(HOST_RESERVED_BYTES, this.soc.dram.sizeBytes);
    this.driver = new PspDriver(
      platform.psp,
      this.soc.hostMemory,
      this.soc.paging,
      this.frames.allocate(),
      this.frames.allocate(),
    );
  }

  /** Platform bring-up as Linux does it: INIT (with SEV-ES and a TMR when supported), then WBINVD + DF_FLUSH. */
  initPlatform(): void {
    const es = this.platform.profile.sevEs;
    const tmr = es ? this.frames.allocateAligned(TMR_SIZE, TMR_SIZE) : 0;
    this.driver.call(SevCommand.INIT, InitBuffer, {
      flags: es ? INIT_FLAG_ES : 0,
      tmrPaddr: BigInt(tmr),
      tmrLength: es ? TMR_SIZE : 0,
    });
    this.soc.hostMemory.wbinvd();
    this.driver.callSimple(SevCommand.DF_FLUSH);
  }

  platformStatus(): Decoded<typeof PlatformStatusBuffer.fields> {
    return this.driver.call(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {});
  }

  /**
   * KVM's sev_asid_new: lowest never-used ASID of the guest's range (SEV-ES/SNP: 1 .. minSevAsid-1,
   * plain SEV: minSevAsid .. max), else reclaim freed ones with WBINVD + DF_FLUSH.
   */
  allocateAsid(encryptedState = false): number {
    const { minSevAsid, maxSevAsid } = this.platform.profile;
    const [lo, hi] = encryptedState ? [1, minSevAsid - 1] : [minSevAsid, maxSevAsid];
    for (let a = lo; a <= hi; a++) if (!this.#usedAsids.has(a)) return a;
    const freed = [...this.#reclaimable].filter((a) => a >= lo && a <= hi);
    if (freed.length > 0) {
      this.soc.hostMemory.wbinvd();
      this.driver.callSimple(SevCommand.DF_FLUSH);
      const a = Math.min(...freed);
      this.#reclaimable.delete(a);
      return a;
    }
    throw new Error(`no free ${encryptedState ? 'SEV-ES' : 'SEV'} ASID`);
  }

  /**
   * Guest memory for the given GPA ranges: host frames (contiguous per range), zeroed, flushed (the
   * guest will use them under its own key; KVM flushes on KVM_MEMORY_ENCRYPT_REG_REGION) and mapped
   * in fresh nested page tables. The low-level half of createVm and of firmware launches.
   */
  allocateVm(
    name: string,
    asid: number,
    sev: boolean,
    policy: number,
    ranges: readonly { gpa: number; bytes: number }[],
  ): Vm {
    this.#usedAsids.add(asid);
    this.#reclaimable.delete(asid);
    const mem = this.soc.hostMemory;
    const npt = new NestedPageTable(mem, this.frames, this.soc.paging);
    const frames = new Map<number, number>();
    let total = 0;
    for (const range of ranges) {
      if (range.bytes % PAGE_SIZE !== 0 || range.bytes <= 0 || range.gpa % PAGE_SIZE !== 0) {
        throw new RangeError('guest memory ranges must be page-aligned and non-empty');
      }
      // Fresh frames read as zero and are in no cache, so unlike reused ones they need no
      // zero-and-flush before a guest uses them under its key (KVM flushes on REG_REGION).
      const pages = range.bytes / PAGE_SIZE;
      const base = this.frames.allocateFresh(pages);
      for (let i = 0; i < pages; i++) frames.set(range.gpa / PAGE_SIZE + i, base + i * PAGE_SIZE);
      npt.mapRange(range.gpa, base, pages, { writable: true, executable: true, hostEncrypted: false });
      total += range.bytes;
    }
    const vm = new Vm(name, asid, sev, policy, total, this.frames.allocate(), npt, frames);
    this.vms.push(vm);
    return vm;
  }

  /** The VMCB of a new VM (ASID, nested paging, SEV) starting at `rip` with paging off, and its software. */
  prepareVmcb(vm: Vm, software: GuestSoftware): void {
    const mem = this.soc.hostMemory;
    this.#writeVmcbControl(vm, vm.vmcb, vm.sev ? NESTED_CTL_SEV_ENABLE : 0n);
    mem.write(
      vm.vmcb + VMCB_SAVE_AREA_OFFSET,
      SaveArea.encode({ rip: BigInt(software.codeBase), cr0: CR0_PE, efer: EFER_SVME }),
      true,
    );
    this.soc.attachGuestSoftware(this.soc.paging.withCBit(vm.vmcb), software);
  }

  /**
   * The VMCB of an SEV-ES or SNP vCPU (SEV-ES on: its registers live in the VMSA at `vmsa`, encrypted
   * with the guest's key; the host names the page, never sees the registers) and its software.
   */
  prepareEncryptedStateVmcb(
    vm: Vm,
    vmcb: number,
    vmsa: number,
    /** What the vCPU executes, or `{ sameAs: vmcb }`: another vCPU of the same guest. */
    software: GuestSoftware | { readonly sameAs: number },
  ): void {
    this.#writeVmcbControl(vm, vmcb, NESTED_CTL_SEV_ENABLE | NESTED_CTL_SEV_ES_ENABLE, BigInt(vmsa));
    const address = this.soc.paging.withCBit(vmcb);
    if ('sameAs' in software) this.soc.attachSoftwareOf(this.soc.paging.withCBit(software.sameAs), address);
    else this.soc.attachGuestSoftware(address, software);
  }

  /** The VMCB of a VM arriving by migration: the sender's saved registers, this machine's ASID and tables. */
  prepareVmcbFromSave(vm: Vm, save: Decoded<typeof SaveArea.fields>): void {
    this.#writeVmcbControl(vm, vm.vmcb, NESTED_CTL_SEV_ENABLE);
    this.soc.hostMemory.write(vm.vmcb + VMCB_SAVE_AREA_OFFSET, SaveArea.encode(save), true);
  }

  /** A fresh VMCB page with its control area: the VM's ASID and nested tables, nested paging on. */
  #writeVmcbControl(vm: Vm, vmcb: number, sevControl: bigint, vmsaPaddr = 0n): void {
    const mem = this.soc.hostMemory;
    mem.write(vmcb, Buffer.alloc(PAGE_SIZE), true);
    mem.write(
      vmcb,
      VmcbControl.encode({
        asid: vm.asid,
        nestedControl: NESTED_CTL_NP_ENABLE | sevControl,
        nestedCr3: BigInt(vm.npt.nestedCr3),
        tlbControl: TLB_CONTROL_FLUSH_ASID,
        vmsaPaddr,
      }),
      true,
    );
  }

  /** Writes bytes into guest memory through the host's unencrypted mapping (loading an image). */
  loadGuestImage(vm: Vm, gpa: number, image: Uint8Array): void {
    for (let off = 0; off < image.length; off += PAGE_SIZE) {
      this.soc.hostMemory.write(
        vm.spaOf(gpa + off),
        image.subarray(off, Math.min(off + PAGE_SIZE, image.length)),
        false,
      );
    }
  }

  /** Creates a VM, loads its image and, for SEV, launches it through the PSP. */
  createVm(config: VmConfig): Vm {
    const sev = config.sev ?? true;
    const policy = config.policy ?? encodeSevPolicy({ noDebug: true, noKeySharing: true });
    if (config.memoryBytes % PAGE_SIZE !== 0 || config.memoryBytes <= 0)
      throw new RangeError('guest memory must be a positive multiple of 4 KiB');
    // Non-SEV guests take ASIDs above the SEV range (SVM has far more ASIDs than key slots).
    const asid =
      config.asid ?? (sev ? this.allocateAsid() : this.platform.profile.maxSevAsid + ++this.#plainVms);
    const vm = this.allocateVm(config.name, asid, sev, policy, [{ gpa: 0, bytes: config.memoryBytes }]);
    this.loadGuestImage(vm, config.software.codeBase, config.software.code);
    if (sev) this.#launch(vm, config.software, policy);
    this.prepareVmcb(vm, config.software);
    return vm;
  }

  /**
   * LAUNCH_MEASURE into the driver's data page: records the measurement and mnonce on the VM and
   * returns the 0x30-byte blob (what QEMU's query-sev-launch-measure hands the owner).
   */
  measureLaunch(vm: Vm): Buffer {
    const d = this.driver;
    d.call(SevCommand.LAUNCH_MEASURE, LaunchMeasureBuffer, {
      handle: vm.handle,
      paddr: BigInt(this.soc.paging.withCBit(d.dataPage)),
      length: LaunchMeasurement.size,
    });
    const blob = this.soc.hostMemory.read(d.dataPage, LaunchMeasurement.size, true);
    const m = LaunchMeasurement.decode(blob);
    vm.measurement = m.measurement;
    vm.mnonce = m.mnonce;
    return blob;
  }

  /** Copies bytes into fresh host pages (C=0, flushed for the PSP) and returns their address. */
  stageBytes(bytes: Uint8Array): number {
    const pages = Math.max(1, Math.ceil(bytes.length / PAGE_SIZE));
    const base = this.frames.allocateFresh(pages);
    this.soc.hostMemory.write(base, bytes, false);
    this.soc.hostMemory.clflushRange(base, pages * PAGE_SIZE);
    return base;
  }

  /** LAUNCH_START → ACTIVATE → LAUNCH_UPDATE_DATA (image) → LAUNCH_MEASURE → LAUNCH_FINISH. */
  #launch(vm: Vm, software: GuestSoftware, policy: number): void {
    const d = this.driver;
    vm.handle = d.call(SevCommand.LAUNCH_START, LaunchStartBuffer, { handle: 0, policy }).handle;
    d.call(SevCommand.ACTIVATE, ActivateBuffer, { handle: vm.handle, asid: vm.asid });
    for (let off = 0; off < software.code.length; off += PAGE_SIZE) {
      const spa = vm.spaOf(software.codeBase + off);
      const length = Math.min(PAGE_SIZE, software.code.length - off);
      // The PSP re-encrypts in place with C=1; drop any C=0 lines first (Linux sev_clflush_pages).
      this.soc.hostMemory.clflushRange(spa, length);
      d.call(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
        handle: vm.handle,
        paddr: BigInt(spa),
        length,
      });
    }
    this.measureLaunch(vm);
    d.call(SevCommand.LAUNCH_FINISH, HandleBuffer, { handle: vm.handle });
  }

  /**
   * Runs the VM until it halts, dies, hits an exit the host does not handle, or (with
   * `maxInstructions`) its time slice ends. Hypercalls are served and the guest resumed.
   */
  run(vm: Vm, options: { maxInstructions?: number; maxExits?: number } = {}): RunResult {
    const exits: VmExit[] = [];
    const vmcbAddress = this.soc.paging.withCBit(vm.vmcb);
    vm.status = 'running';
    for (let i = 0; i < (options.maxExits ?? 10_000); i++) {
      const exit = this.soc.vmrun(
        vmcbAddress,
        options.maxInstructions !== undefined ? { maxInstructions: options.maxInstructions } : {},
      );
      exits.push(exit);
      vm.exits.push(exit);
      if (exit.code === SvmExit.VMMCALL) {
        this.#hypercall(vm);
        continue;
      }
      // A timer tick with no time slice asked for: the host just resumes the guest.
      if (exit.code === VMEXIT_INTR && options.maxInstructions === undefined) continue;
      if (exit.code === SvmExit.HLT) vm.status = 'halted';
      else if (exit.code === SvmExit.SHUTDOWN) vm.status = 'dead';
      else if (exit.code !== VMEXIT_INTR) vm.status = 'halted';
      return { exits, last: exit };
    }
    const last = exits[exits.length - 1] as VmExit;
    return { exits, last };
  }

  #hypercall(vm: Vm): void {
    const save = this.readVmcbSave(vm);
    let ret = HC_OK;
    switch (save.rax) {
      case HC_SEVSIM_BOOTED:
        vm.sharedRegion = { gpa: Number(save.rbx), bytes: Number(save.rcx) };
        for (let g = 0; g < Number(save.rcx); g += PAGE_SIZE)
          vm.pageStates.set(Math.floor((Number(save.rbx) + g) / PAGE_SIZE), 'shared');
        break;
      case HC_SEVSIM_PRINT: {
        const len = Math.min(Number(save.rcx), 4096);
        vm.console.push(this.readGuestMemory(vm, Number(save.rbx), len).toString('utf8'));
        break;
      }
      case HC_MAP_GPA_RANGE: {
        const state: GuestPageState = (save.rdx & MAP_GPA_RANGE_ENCRYPTED) !== 0n ? 'private' : 'shared';
        for (let p = 0; p < Number(save.rcx); p++)
          vm.pageStates.set(Math.floor(Number(save.rbx) / PAGE_SIZE) + p, state);
        break;
      }
      default:
        ret = HC_EINVAL;
    }
    this.soc.hostMemory.write(vm.vmcb + VMCB_SAVE_AREA_OFFSET, SaveArea.encode({ ...save, rax: ret }), true);
  }

  /** The VMCB save area as the host reads it after an exit (plain SEV: the guest's registers). */
  readVmcbSave(vm: Vm): Decoded<typeof SaveArea.fields> {
    return SaveArea.decode(this.soc.hostMemory.read(vm.vmcb + VMCB_SAVE_AREA_OFFSET, SaveArea.size, true));
  }

  /** Asks the CPU to flush the guest's TLB entries on the next VMRUN (VMCB TLB_CONTROL). */
  requestTlbFlush(vm: Vm): void {
    const mem = this.soc.hostMemory;
    const control = VmcbControl.decode(mem.read(vm.vmcb, VmcbControl.size, true));
    mem.write(vm.vmcb, VmcbControl.encode({ ...control, tlbControl: TLB_CONTROL_FLUSH_ASID }), true);
  }

  /** Sets the VMCB's ASID (attacks.md C5: the host picks the ASID of each VMRUN). */
  setVmcbAsid(vm: Vm, asid: number): void {
    const mem = this.soc.hostMemory;
    const control = VmcbControl.decode(mem.read(vm.vmcb, VmcbControl.size, true));
    mem.write(vm.vmcb, VmcbControl.encode({ ...control, asid, tlbControl: TLB_CONTROL_FLUSH_ASID }), true);
  }

  /** Reads guest memory the way the host can: NPT lookup, then its own mapping (C=1 uses the SME key). */
  readGuestMemory(vm: Vm, gpa: number, length: number, encryptedMapping = false): Buffer {
    const out = Buffer.alloc(length);
    for (let done = 0; done < length;) {
      const at = gpa + done;
      const take = Math.min(PAGE_SIZE - (at % PAGE_SIZE), length - done);
      const m = vm.npt.lookup(at);
      if (m === undefined) throw new RangeError(`GPA 0x${at.toString(16)} is not mapped`);
      this.soc.hostMemory.read(m.spa, take, encryptedMapping).copy(out, done);
      done += take;
    }
    return out;
  }

  writeGuestMemory(vm: Vm, gpa: number, data: Uint8Array): void {
    for (let done = 0; done < data.length;) {
      const at = gpa + done;
      const take = Math.min(PAGE_SIZE - (at % PAGE_SIZE), data.length - done);
      const m = vm.npt.lookup(at);
      if (m === undefined) throw new RangeError(`GPA 0x${at.toString(16)} is not mapped`);
      this.soc.hostMemory.write(m.spa, data.subarray(done, done + take), false);
      done += take;
    }
  }

  /** Tears a VM down: DEACTIVATE, DECOMMISSION; its ASID needs WBINVD + DF_FLUSH before reuse. */
  destroyVm(vm: Vm): void {
    if (vm.sev && vm.handle !== 0) {
      this.driver.call(SevCommand.DEACTIVATE, HandleBuffer, { handle: vm.handle });
      this.driver.call(SevCommand.DECOMMISSION, HandleBuffer, { handle: vm.handle });
    }
    this.#reclaimable.add(vm.asid);
    vm.status = 'destroyed';
  }
}
