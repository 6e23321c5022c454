import { describe, expect, it } from 'vitest';
import { createPlatform } from '../src/psp/index.js';
import { Hypervisor } from '../src/host/index.js';
import { GuestKernel } from '../src/guest/index.js';

describe('smoke', () => {
  it('boots a guest and keeps its secret out of DRAM', () => {
    const platform = createPlatform({ seed: 1 });
    const hv = new Hypervisor(platform);
    hv.initPlatform();
    const kernel = new GuestKernel({ memoryBytes: 2 * 1024 * 1024, paging: platform.soc.paging });
    const vm = hv.createVm({ name: 'a', memoryBytes: 2 * 1024 * 1024, software: kernel });
    let r = hv.run(vm);
    expect(r.last.reason).toBe('guest halted');
    const secret = Buffer.from('TOP-SECRET-0123456789abcdef-xyz!');
    const run = kernel.exec('secret', function* (k) {
      const va = k.allocPages(1);
      yield* k.store(va, secret);
      const back = yield* k.load(va, secret.length);
      yield* k.print('hello host');
      return { va, back };
    });
    r = hv.run(vm);
    expect(run.status).toBe('done');
    expect(run.result?.back.equals(secret)).toBe(true);
    expect(vm.console).toEqual(['hello host']);
    platform.soc.hostMemory.wbinvd();
    expect(platform.soc.dram.scan(secret.subarray(0, 16))).toEqual([]);
  });
});
