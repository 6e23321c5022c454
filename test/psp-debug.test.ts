// DBG_DECRYPT / DBG_ENCRYPT (ASPFW sev_mcmd_dbg_decrypt/encrypt): what a debuggable guest allows,
// and that NODBG, bad alignment, unknown handles and inactive guests are refused in AMD's order.
import { describe, expect, it } from 'vitest';
import { DebugBuffer, HandleBuffer, SevCommand, SevStatus, encodeSevPolicy } from '../src/abi/index.js';
import { GuestKernel } from '../src/guest/index.js';
import { Hypervisor } from '../src/host/index.js';
import { createPlatform } from '../src/psp/index.js';

const RAM = 1024 * 1024;

function setup(noDebug: boolean) {
  const platform = createPlatform({ seed: 'dbg' });
  const hv = new Hypervisor(platform);
  hv.initPlatform();
  const kernel = new GuestKernel({ memoryBytes: RAM, paging: platform.soc.paging });
  const vm = hv.createVm({
    name: 'g',
    memoryBytes: RAM,
    software: kernel,
    policy: encodeSevPolicy({ noDebug }),
  });
  hv.run(vm);
  const secret = Buffer.from('debuggable guest secret, 32 B!!!');
  const run = kernel.exec('w', function* (k) {
    const va = k.allocPages(1);
    yield* k.store(va, secret);
    return va;
  });
  hv.run(vm);
  const va = run.result ?? 0;
  const dst = hv.frames.allocate();
  const dbg = (
    cmd: number,
    f: Partial<{ handle: number; srcPaddr: bigint; dstPaddr: bigint; length: number }>,
  ) =>
    hv.driver.raw(cmd, DebugBuffer, {
      handle: vm.handle,
      srcPaddr: BigInt(vm.spaOf(va)),
      dstPaddr: BigInt(dst),
      length: 32,
      ...f,
    }).status;
  return { platform, hv, kernel, vm, secret, va, dst, dbg };
}

describe('DBG_DECRYPT / DBG_ENCRYPT', () => {
  it('a debuggable guest: DBG_DECRYPT yields its plaintext (even while still dirty in the cache)', () => {
    const { hv, secret, dst, dbg } = setup(false);
    expect(dbg(SevCommand.DBG_DECRYPT, {})).toBe(SevStatus.SUCCESS);
    expect(hv.soc.hostMemory.read(dst, 32, false)).toEqual(secret);
  });

  it('DBG_ENCRYPT writes host plaintext into guest memory, which the guest then reads', () => {
    const { hv, kernel, vm, va, dst, dbg } = setup(false);
    const injected = Buffer.from('written by the debugger, 32 B!!!');
    hv.soc.hostMemory.write(dst, injected, false);
    expect(dbg(SevCommand.DBG_ENCRYPT, { srcPaddr: BigInt(dst), dstPaddr: BigInt(vm.spaOf(va)) })).toBe(
      SevStatus.SUCCESS,
    );
    // The PSP's write snoops the guest-key lines of the range, so the guest's next load sees it.
    const run = kernel.exec('r', (k) => k.load(va, 32));
    hv.run(vm);
    expect(run.result).toEqual(injected);
  });

  it('NODBG: POLICY_FAILURE and the destination is untouched', () => {
    const { hv, dst, dbg } = setup(true);
    hv.soc.hostMemory.write(dst, Buffer.alloc(32, 0xee), false);
    expect(dbg(SevCommand.DBG_DECRYPT, {})).toBe(SevStatus.POLICY_FAILURE);
    expect(dbg(SevCommand.DBG_ENCRYPT, {})).toBe(SevStatus.POLICY_FAILURE);
    expect(hv.soc.hostMemory.read(dst, 32, false)).toEqual(Buffer.alloc(32, 0xee));
  });

  it('checks in AMD order: alignment before length before handle before NODBG before activation', () => {
    const { hv, vm, dbg } = setup(true);
    expect(dbg(SevCommand.DBG_DECRYPT, { srcPaddr: 8n, handle: 999 })).toBe(SevStatus.INVALID_ADDRESS);
    expect(dbg(SevCommand.DBG_DECRYPT, { dstPaddr: 4n, handle: 999 })).toBe(SevStatus.INVALID_ADDRESS);
    expect(dbg(SevCommand.DBG_DECRYPT, { length: 17, handle: 999 })).toBe(SevStatus.INVALID_LENGTH);
    expect(dbg(SevCommand.DBG_DECRYPT, { handle: 999 })).toBe(SevStatus.INVALID_GUEST);
    expect(dbg(SevCommand.DBG_DECRYPT, {})).toBe(SevStatus.POLICY_FAILURE);
    hv.driver.call(SevCommand.DEACTIVATE, HandleBuffer, { handle: vm.handle });
    const dbgVm = setup(false);
    dbgVm.hv.driver.call(SevCommand.DEACTIVATE, HandleBuffer, { handle: dbgVm.vm.handle });
    expect(dbgVm.dbg(SevCommand.DBG_DECRYPT, {})).toBe(SevStatus.INACTIVE);
  });

  it('outside DRAM or in another platform state', () => {
    const { hv, dbg } = setup(false);
    expect(dbg(SevCommand.DBG_DECRYPT, { dstPaddr: BigInt(hv.soc.dram.sizeBytes) })).toBe(
      SevStatus.INVALID_ADDRESS,
    );
    hv.driver.callSimple(SevCommand.SHUTDOWN);
    expect(dbg(SevCommand.DBG_DECRYPT, {})).toBe(SevStatus.INVALID_PLATFORM_STATE);
  });
});
