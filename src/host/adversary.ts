// The hypervisor as an adversary (attacks.md capabilities C1–C9): every way the host can look at,
// move or re-key guest memory. Each attempt reports what it obtained, so a scenario can check that
// no guest plaintext comes out.
import {
  ActivateBuffer,
  DebugBuffer,
  HandleBuffer,
  LaunchStartBuffer,
  LaunchUpdateBuffer,
  NESTED_CTL_NP_ENABLE,
  NESTED_CTL_SEV_ENABLE,
  SevCommand,
  VmcbControl,
  statusName,
} from '../abi/index.js';
import { PAGE_SIZE, type VmExit } from '../soc/index.js';
import type { Hypervisor, Vm } from './hypervisor.js';

export interface AttackAttempt {
  /** attacks.md capability id(s). */
  readonly capability: string;
  readonly action: string;
  /** Bytes the attempt produced (searched for the victim's plaintext). */
  readonly obtained: Buffer;
  /** What happened, in words. */
  readonly outcome: string;
}

export class Adversary {
  constructor(readonly hv: Hypervisor) {}

  /** C1: raw DRAM, after WBINVD pushed every dirty line out (C7). */
  readDram(spa: number, length: number): Buffer {
    this.hv.soc.hostMemory.wbinvd();
    return this.hv.soc.dram.read(spa, length);
  }

  /** C2: raw DRAM write (cold-boot / DMA style), after WBINVD so no cached line overrides it. */
  writeDram(spa: number, data: Uint8Array): void {
    this.hv.soc.hostMemory.wbinvd();
    this.hv.soc.dram.write(spa, data);
  }

  /** C3: point a guest page at another host frame (and flush that guest's TLB). */
  remap(vm: Vm, gpa: number, spa: number): void {
    const old = vm.npt.lookup(gpa);
    vm.npt.map(gpa, {
      spa,
      writable: old?.writable ?? true,
      executable: old?.executable ?? true,
      hostEncrypted: old?.hostEncrypted ?? false,
    });
    this.hv.requestTlbFlush(vm);
  }

  /**
   * C5: VMRUN `vm` under another guest's ASID with SEV on, so every access of `vm` uses that
   * guest's key (CrossLine's primitive). Restores the VMCB afterwards.
   */
  runUnderAsid(vm: Vm, asid: number): VmExit {
    const mem = this.hv.soc.hostMemory;
    const before = VmcbControl.decode(mem.read(vm.vmcb, VmcbControl.size, true));
    mem.write(
      vm.vmcb,
      VmcbControl.encode({
        ...before,
        asid,
        nestedControl: NESTED_CTL_NP_ENABLE | NESTED_CTL_SEV_ENABLE,
        tlbControl: 3,
      }),
      true,
    );
    const exit = this.hv.run(vm, { maxInstructions: 1000, maxExits: 4 }).last;
    const after = VmcbControl.decode(mem.read(vm.vmcb, VmcbControl.size, true));
    mem.write(
      vm.vmcb,
      VmcbControl.encode({ ...after, asid: before.asid, nestedControl: before.nestedControl, tlbControl: 3 }),
      true,
    );
    return exit;
  }

  /** Every capability that could reveal the contents of `victim`'s private memory. */
  tryEverything(victim: Vm, accomplice: Vm | undefined): AttackAttempt[] {
    const hv = this.hv;
    const soc = hv.soc;
    const attempts: AttackAttempt[] = [];
    const frames = [...victim.frames.values()];
    const all = (read: (spa: number) => Buffer): Buffer => Buffer.concat(frames.map(read));

    attempts.push({
      capability: 'C1',
      action: 'scan every frame of the guest in DRAM',
      obtained: all((spa) => this.readDram(spa, PAGE_SIZE)),
      outcome: 'ciphertext',
    });
    attempts.push({
      capability: 'C1',
      action: 'read the guest through the host mapping without the C-bit',
      obtained: all((spa) => soc.hostMemory.read(spa, PAGE_SIZE, false)),
      outcome: 'ciphertext',
    });
    attempts.push({
      capability: 'C1',
      action: 'read the guest through the host mapping with the C-bit (SME key)',
      obtained: all((spa) => soc.hostMemory.read(spa, PAGE_SIZE, true)),
      outcome: 'ciphertext decrypted with the wrong key: garbage',
    });
    soc.hostMemory.invd();
    attempts.push({
      capability: 'C7',
      action: 'INVD (drop dirty lines), then read DRAM',
      obtained: all((spa) => soc.dram.read(spa, PAGE_SIZE)),
      outcome: 'ciphertext (the guest only loses its unwritten data)',
    });
    const save = hv.readVmcbSave(victim);
    const regs = Buffer.alloc(32);
    regs.writeBigUInt64LE(save.rax, 0);
    regs.writeBigUInt64LE(save.rbx, 8);
    regs.writeBigUInt64LE(save.rcx, 16);
    regs.writeBigUInt64LE(save.rdx, 24);
    attempts.push({
      capability: 'C4',
      action: 'read the VMCB save area after the last exit',
      obtained: regs,
      outcome: `registers visible in plain SEV (RIP 0x${save.rip.toString(16)}, RAX 0x${save.rax.toString(16)}); SEV-ES encrypts them`,
    });

    const d = hv.driver;
    const share = d.raw(SevCommand.LAUNCH_START, LaunchStartBuffer, {
      handle: victim.handle,
      policy: victim.policy,
    });
    if (share.status === 0) {
      d.raw(SevCommand.DECOMMISSION, HandleBuffer, { handle: share.out.handle });
    }
    const pspAttempt = (action: string, status: number): AttackAttempt => ({
      capability: 'C9',
      action,
      obtained: Buffer.alloc(0),
      outcome: `PSP answered ${statusName(status)}`,
    });
    attempts.push(pspAttempt("LAUNCH_START asking to share the guest's key", share.status));
    const reMeasure = d.raw(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, {
      handle: victim.handle,
      paddr: BigInt(frames[0] ?? 0),
      length: PAGE_SIZE,
    });
    attempts.push(pspAttempt('LAUNCH_UPDATE_DATA on the running guest', reMeasure.status));
    const reActivate = d.raw(SevCommand.ACTIVATE, ActivateBuffer, {
      handle: victim.handle,
      asid: hv.platform.profile.maxSevAsid,
    });
    attempts.push(pspAttempt('ACTIVATE the guest on another ASID', reActivate.status));
    // DBG_DECRYPT of the guest's first frames into the PSP driver's data page.
    const debug = d.raw(SevCommand.DBG_DECRYPT, DebugBuffer, {
      handle: victim.handle,
      srcPaddr: BigInt(frames[0] ?? 0),
      dstPaddr: BigInt(d.dataPage),
      length: PAGE_SIZE,
    });
    attempts.push({
      ...pspAttempt('DBG_DECRYPT of guest memory', debug.status),
      obtained: hv.soc.hostMemory.read(d.dataPage, PAGE_SIZE, false),
    });

    if (accomplice !== undefined) {
      // C3: map the victim's frames into the attacker's own VM and let its software read them.
      attempts.push(...this.#throughAccomplice(victim, accomplice));
    }
    return attempts;
  }

  #throughAccomplice(victim: Vm, accomplice: Vm): AttackAttempt[] {
    const out: AttackAttempt[] = [];
    const hv = this.hv;
    // Alias a window of the accomplice's RAM onto the victim's frames.
    const window = Math.min(victim.frames.size, 64);
    const base = 0x80000;
    const originals: { gpa: number; spa: number }[] = [];
    for (let i = 0; i < window; i++) {
      const gpa = base + i * PAGE_SIZE;
      originals.push({ gpa, spa: accomplice.spaOf(gpa) });
      this.remap(accomplice, gpa, victim.spaOf(i * PAGE_SIZE));
    }
    const read = hv.readGuestMemory(accomplice, base, window * PAGE_SIZE);
    out.push({
      capability: 'C3',
      action: "map the guest's frames into another VM's address space (host view)",
      obtained: read,
      outcome: 'ciphertext',
    });
    for (const o of originals) this.remap(accomplice, o.gpa, o.spa);
    return out;
  }
}
