// Host attacks the model must refuse (found in review): running host-chosen behaviour on a guest's
// code frames under its ASID, and VMRUN on an ASID the PSP has not made valid.
import { describe, expect, it } from 'vitest';
import { HandleBuffer, SevCommand, VmcbControl, encodeSevPolicy } from '../src/abi/index.js';
import { GuestKernel } from '../src/guest/index.js';
import { Hypervisor } from '../src/host/index.js';
import { createPlatform } from '../src/psp/index.js';
import {
  VMEXIT_INVALID,
  type GuestSoftware,
  type Instruction,
  type InstructionResult,
} from '../src/soc/index.js';

const RAM = 1024 * 1024;

function victim() {
  const platform = createPlatform({ seed: 'attacks', dramBytes: 64 << 20 });
  const hv = new Hypervisor(platform);
  hv.initPlatform();
  const kernel = new GuestKernel({ memoryBytes: RAM, paging: platform.soc.paging });
  const vm = hv.createVm({
    name: 'victim',
    memoryBytes: RAM,
    software: kernel,
    policy: encodeSevPolicy({ noDebug: true }),
  });
  hv.run(vm);
  const secret = Buffer.from('the victim guest keeps this here');
  const stored = kernel.exec('store', function* (k) {
    const va = k.allocPages(1);
    yield* k.store(va, secret);
    return va;
  });
  hv.run(vm);
  return { platform, hv, kernel, vm, secret, va: stored.result ?? 0 };
}

describe('host attacks on code and ASIDs', () => {
  it("a host cannot attach behaviour of its choosing to a guest's code frames", () => {
    const { hv, kernel, vm, va } = victim();
    // A second VMCB with the victim's ASID and nested tables, and "software" whose bytes are the
    // victim's (the host loaded and measured them, so it knows them) but whose behaviour leaks.
    const vmcb = hv.frames.allocate();
    const control = VmcbControl.decode(hv.soc.hostMemory.read(vm.vmcb, VmcbControl.size, true));
    hv.soc.hostMemory.write(vmcb, Buffer.alloc(4096), true);
    hv.soc.hostMemory.write(vmcb, VmcbControl.encode({ ...control, tlbControl: 3 }), true);
    const evil: GuestSoftware = {
      codeBase: kernel.codeBase,
      code: kernel.code,
      *start(): Generator<Instruction, void, InstructionResult> {
        yield { op: 'load', va, length: 32 };
      },
    };
    expect(() => hv.soc.attachGuestSoftware(hv.soc.paging.withCBit(vmcb), evil)).toThrow(
      /already holds another guest's software/,
    );
  });

  it('VMRUN on an ASID the PSP has not made valid (after DEACTIVATE) is refused with VMEXIT_INVALID', () => {
    const { hv, vm } = victim();
    hv.driver.call(SevCommand.DEACTIVATE, HandleBuffer, { handle: vm.handle });
    const exit = hv.soc.vmrun(hv.soc.paging.withCBit(vm.vmcb));
    expect(exit.code).toBe(VMEXIT_INVALID);
    expect(exit.reason).toMatch(/not valid/);
  });

  it('a fetch of guest data under the guest key (RIP pointed at a secret page) reveals nothing in the exit', () => {
    const { hv, vm, secret, va } = victim();
    // The host's own VM, run under the victim's ASID, with its code GPA mapped onto the victim's secret.
    const own = new GuestKernel({ memoryBytes: RAM, paging: hv.soc.paging, version: 'attacker' });
    const attacker = hv.createVm({ name: 'attacker', memoryBytes: RAM, software: own, sev: false });
    attacker.npt.map(own.codeBase, {
      spa: vm.spaOf(va),
      writable: true,
      executable: true,
      hostEncrypted: false,
    });
    const mem = hv.soc.hostMemory;
    const control = VmcbControl.decode(mem.read(attacker.vmcb, VmcbControl.size, true));
    mem.write(
      attacker.vmcb,
      VmcbControl.encode({ ...control, asid: vm.asid, nestedControl: 3n, tlbControl: 3 }),
      true,
    );
    const exit = hv.soc.vmrun(hv.soc.paging.withCBit(attacker.vmcb));
    expect(exit.reason).toMatch(/#UD/);
    expect(exit.reason).not.toContain(secret.subarray(0, 8).toString('hex'));
    expect(exit.reason).not.toContain(secret.subarray(0, 8).toString('utf8'));
  });
});
