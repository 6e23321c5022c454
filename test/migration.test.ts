// Issue 3 §3: SEND_* / RECEIVE_* between two simulated machines. The guest keeps running on the
// destination with its memory intact; the source's copy is gone; the hosts only see ciphertext.
import { describe, expect, it } from 'vitest';
import { GuestStatusBuffer, HandleBuffer, SevCommand, SevStatus, encodeSevPolicy } from '../src/abi/index.js';
import { GuestKernel } from '../src/guest/index.js';
import { Hypervisor, PspCommandError, migrateVm } from '../src/host/index.js';
import { createPlatform } from '../src/psp/index.js';
import { simulatedAmdRoot } from '../src/psp/simulated-amd-root.js';

const RAM = 1024 * 1024;
const secret = Buffer.from('state that must survive migration');

function machine(seed: string): Hypervisor {
  const hv = new Hypervisor(createPlatform({ seed, dramBytes: 128 << 20 }));
  hv.initPlatform();
  return hv;
}

function amdCerts(): Buffer {
  const root = simulatedAmdRoot();
  return Buffer.concat([root.ask, root.ark]);
}

function runningGuest(policy: number) {
  const source = machine('source');
  const kernel = new GuestKernel({ memoryBytes: RAM, paging: source.soc.paging });
  const vm = source.createVm({ name: 'traveller', memoryBytes: RAM, software: kernel, policy });
  source.run(vm);
  const stored = kernel.exec('store', function* (k) {
    const va = k.allocPages(1);
    yield* k.store(va, secret);
    yield* k.print('hello from the source machine');
    return va;
  });
  source.run(vm);
  return { source, kernel, vm, va: stored.result ?? 0 };
}

describe('SEV live migration', () => {
  for (const [name, policy] of [
    ['no platform checks', encodeSevPolicy({ noDebug: true, noKeySharing: true })],
    [
      'policy.SEV: the destination must chain to the AMD root',
      encodeSevPolicy({ noDebug: true, sevOnly: true }),
    ],
  ] as const) {
    it(`${name}: the guest resumes on the destination with its memory, the source copy is gone`, () => {
      const { source, kernel, vm, va } = runningGuest(policy);
      const destination = machine('destination');
      const result = migrateVm(source, vm, destination, amdCerts());
      expect(result.privatePages).toBeGreaterThan(0);
      expect(result.sharedPages).toBe(16); // the kernel's 64 KiB shared region
      const read = kernel.exec('read', (k) => k.load(va, secret.length));
      destination.run(result.vm);
      expect(read.status).toBe('done');
      expect(read.result).toEqual(secret);
      // The source PSP no longer knows the guest; neither machine's DRAM holds the plaintext.
      const st = source.driver.call(SevCommand.GUEST_STATUS, GuestStatusBuffer, { handle: vm.handle });
      expect(st.state).toBe(0);
      for (const hv of [source, destination]) {
        hv.soc.hostMemory.wbinvd();
        expect(hv.soc.dram.scan(secret.subarray(0, 16))).toEqual([]);
      }
      // The destination encrypts it under a different key at a different place: no ciphertext in common.
      const destCt = destination.soc.dram.read(result.vm.spaOf(va), 32);
      expect(source.soc.dram.scan(destCt.subarray(0, 16))).toEqual([]);
    });
  }

  it('policy.NOSEND: SEND_START answers POLICY_FAILURE and the guest keeps running on the source', () => {
    const { source, kernel, vm, va } = runningGuest(encodeSevPolicy({ noDebug: true, noSend: true }));
    const destination = machine('destination');
    expect(() => migrateVm(source, vm, destination, amdCerts())).toThrow(PspCommandError);
    try {
      migrateVm(source, vm, destination, amdCerts());
    } catch (err) {
      expect((err as PspCommandError).status).toBe(SevStatus.POLICY_FAILURE);
    }
    const read = kernel.exec('read', (k) => k.load(va, secret.length));
    source.run(vm);
    expect(read.result).toEqual(secret);
  });

  it('policy.SEV with a destination whose ARK is not the trusted one: refused', () => {
    const { source, vm } = runningGuest(encodeSevPolicy({ noDebug: true, sevOnly: true }));
    const destination = machine('destination');
    const root = simulatedAmdRoot();
    const forgedArk = Buffer.from(root.ark);
    forgedArk[0x100] = (forgedArk[0x100] as number) ^ 1;
    expect(() => migrateVm(source, vm, destination, Buffer.concat([root.ask, forgedArk]))).toThrow(
      /INVALID_CERTIFICATE/,
    );
  });

  it('SEND_CANCEL returns the guest to RUNNING; state rules of the SEND/RECEIVE commands', () => {
    const { source, vm } = runningGuest(encodeSevPolicy({ noDebug: true }));
    expect(source.driver.raw(SevCommand.SEND_FINISH, HandleBuffer, { handle: vm.handle }).status).toBe(
      SevStatus.INVALID_GUEST_STATE,
    );
    expect(source.driver.raw(SevCommand.RECEIVE_FINISH, HandleBuffer, { handle: vm.handle }).status).toBe(
      SevStatus.INVALID_GUEST_STATE,
    );
    expect(source.driver.raw(SevCommand.SEND_CANCEL, HandleBuffer, { handle: 99 }).status).toBe(
      SevStatus.INVALID_GUEST,
    );
  });
});
