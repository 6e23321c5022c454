// The product's core promise: keys never leave the PSP and the memory controller's slots. The test
// regenerates the PSP's key stream from the seed (so it knows every key the run drew), proves it
// really holds the guest's key by decrypting guest memory with it, and then searches every
// host-visible object, output and all of DRAM for any 8-byte piece of any key.
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Drbg, MEMORY_KEY_MATERIAL_BYTES, createMemoryCipher } from '../src/crypto/index.js';
import { Adversary, Hypervisor, PspCommandError } from '../src/host/index.js';
import { GuestKernel } from '../src/guest/index.js';
import { createPlatform } from '../src/psp/index.js';
import { runSevDemo } from '../src/scenarios/sev-demo.js';
import { HandleBuffer, SevCommand } from '../src/abi/index.js';

const SEED = 'secrecy';
const RAM = 1024 * 1024;

/** Every 8-byte window of each key, as hex and as raw bytes. */
function fragments(keys: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const k of keys) for (let i = 0; i + 8 <= k.length; i += 4) out.push(k.subarray(i, i + 8));
  return out;
}

function leaks(text: string, keys: Buffer[]): string[] {
  // util.inspect prints Buffers as "<Buffer 3a 4f …>": search with white space removed too.
  const lower = `${text.toLowerCase()}\n${text.toLowerCase().replace(/\s+/g, '')}`;
  // …and as the decimal list JSON.stringify makes of a Buffer.
  const decimals = lower.replace(/\s+/g, '');
  return fragments(keys)
    .filter(
      (f) =>
        lower.includes(f.toString('hex')) ||
        text.includes(f.toString('base64').slice(0, 10)) ||
        decimals.includes([...f].join(',')),
    )
    .map((f) => f.toString('hex'));
}

describe('keys never leave the PSP', () => {
  it('the leak detector sees a key however it is printed', () => {
    const key = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    expect(leaks(inspect({ k: key }), [key])).not.toEqual([]);
    expect(leaks(JSON.stringify({ k: key.toString('hex') }), [key])).not.toEqual([]);
    expect(leaks(JSON.stringify({ k: key }), [key])).not.toEqual([]);
    expect(leaks(key.toString('base64'), [key])).not.toEqual([]);
    expect(leaks(inspect({ other: Buffer.alloc(16, 7) }), [key])).toEqual([]);
  });

  for (const product of ['milan', 'naples']) {
    it(`on ${product}: no host-visible object, output or DRAM byte holds key material`, () => {
      const platform = createPlatform({ product, seed: SEED, dramBytes: 64 * 1024 * 1024 });
      const hv = new Hypervisor(platform);
      hv.initPlatform();
      const kernel = new GuestKernel({ memoryBytes: RAM, paging: platform.soc.paging });
      const vm = hv.createVm({ name: 'victim', memoryBytes: RAM, software: kernel });
      hv.run(vm);
      const secret = Buffer.from('a secret that only the guest knows');
      const run = kernel.exec('secret', function* (k) {
        const va = k.allocPages(1);
        yield* k.store(va, secret);
        return va;
      });
      hv.run(vm);
      const va = run.result ?? 0;

      // The run's key stream: host SME key first, then one VEK per LAUNCH_START.
      const stream = Drbg.fromSeed(SEED, 'psp-key-rng');
      const smeKey = stream.generate(MEMORY_KEY_MATERIAL_BYTES);
      const vek = stream.generate(MEMORY_KEY_MATERIAL_BYTES);
      const keys = [smeKey, vek];
      if (product === 'naples') {
        const tweak = Drbg.fromSeed(SEED, 'umc-tweak');
        for (let i = 0; i < platform.profile.physAddrBits - 4; i++) keys.push(tweak.generate(16));
      }

      // Non-vacuity: the regenerated VEK decrypts the guest's DRAM (so the search below is meaningful).
      platform.soc.hostMemory.wbinvd();
      const spa = vm.spaOf(va);
      const ct = platform.soc.dram.read(spa, 48);
      if (product === 'milan') {
        const cipher = createMemoryCipher('xex', Buffer.from(vek));
        expect(cipher.decrypt(spa, ct).subarray(0, secret.length)).toEqual(secret);
      }

      // Every host capability, exercised.
      const adversary = new Adversary(hv);
      const attempts = adversary.tryEverything(vm, undefined);
      let errorText = '';
      try {
        hv.driver.call(SevCommand.DECOMMISSION, HandleBuffer, { handle: vm.handle });
      } catch (err) {
        expect(err).toBeInstanceOf(PspCommandError);
        errorText = `${(err as Error).message}\n${(err as Error).stack ?? ''}`;
      }

      const visible = [
        inspect(hv, { showHidden: true, depth: Infinity, getters: true }),
        inspect(platform, { showHidden: true, depth: Infinity, getters: true }),
        inspect(vm, { showHidden: true, depth: Infinity }),
        JSON.stringify(hv.platform.psp.describe()),
        JSON.stringify(platform.psp.log),
        JSON.stringify(platform),
        JSON.stringify(attempts.map((a) => ({ ...a, obtained: a.obtained.toString('hex') }))),
        errorText,
      ].join('\n');
      expect(visible.length).toBeGreaterThan(10_000);
      expect(leaks(visible, keys)).toEqual([]);

      // All of DRAM: no 8-byte piece of any key, anywhere.
      for (const f of fragments(keys)) expect(platform.soc.dram.scan(f), f.toString('hex')).toEqual([]);
    });
  }

  it('the demo output and its JSON carry no key material', () => {
    const r = runSevDemo({ seed: SEED });
    const stream = Drbg.fromSeed(SEED, 'psp-key-rng');
    const keys = Array.from({ length: 4 }, () => stream.generate(MEMORY_KEY_MATERIAL_BYTES));
    expect(leaks(JSON.stringify(r), keys)).toEqual([]);
  });
});

describe('no host-visible object leads to a key-handling component', () => {
  it('walking every own property, Map and Set from the platform and hypervisor reaches no memory controller, cache, DMA port, key programmer or PSP internals', async () => {
    const { MemoryController, KeySlotProgrammer } = await import('../src/soc/memory-controller.js');
    const { Cache } = await import('../src/soc/cache.js');
    const { PspDmaPort } = await import('../src/soc/psp-dma.js');
    const { GuestContext } = await import('../src/psp/guest-context.js');
    const { PlatformIdentity } = await import('../src/psp/platform-identity.js');
    const forbidden = [
      MemoryController,
      KeySlotProgrammer,
      Cache,
      PspDmaPort,
      GuestContext,
      PlatformIdentity,
    ];
    const platform = createPlatform({ seed: 'reach', dramBytes: 64 << 20 });
    const hv = new Hypervisor(platform);
    hv.initPlatform();
    const kernel = new GuestKernel({ memoryBytes: RAM, paging: platform.soc.paging });
    const vm = hv.createVm({ name: 'v', memoryBytes: RAM, software: kernel });
    hv.run(vm);
    const seen = new Set<unknown>();
    const queue: unknown[] = [platform, hv, vm, platform.soc, platform.psp];
    let visited = 0;
    while (queue.length > 0) {
      const x = queue.pop();
      if (x === null || (typeof x !== 'object' && typeof x !== 'function') || seen.has(x)) continue;
      seen.add(x);
      visited++;
      for (const cls of forbidden) expect(x instanceof cls, `reached a ${cls.name}`).toBe(false);
      if (ArrayBuffer.isView(x) || x instanceof ArrayBuffer) continue;
      if (x instanceof Map) for (const [k, v] of x) queue.push(k, v);
      if (x instanceof Set) for (const v of x) queue.push(v);
      for (const key of Reflect.ownKeys(x)) {
        const desc = Reflect.getOwnPropertyDescriptor(x, key);
        if (desc !== undefined && 'value' in desc) queue.push(desc.value);
      }
      queue.push(Reflect.getPrototypeOf(x));
    }
    expect(visited).toBeGreaterThan(50);
  });
});

describe('identity and channel keys never leave the PSP either', () => {
  it('OCA/PEK/PDH/CEK private scalars, the chip secret and the owner’s TEK/TIK appear in no host-visible object, output, state file or DRAM', async () => {
    const { runOwnerLaunch } = await import('../src/scenarios/owner-launch.js');
    const { sevKdf, p384PrivateKeyFromBytes } = await import('../src/crypto/index.js');
    const seed = 'identity-secrecy';
    // The keys this seed gives the platform: chip secret, CEK (from it), OCA, PEK, PDH (identity stream).
    const chip = Drbg.fromSeed(seed, 'chip-secret').generate(32);
    const identityStream = Drbg.fromSeed(seed, 'psp-identity-rng');
    const scalar = (bytes: Buffer): Buffer => {
      const jwk = p384PrivateKeyFromBytes(bytes).export({ format: 'jwk' });
      return Buffer.from(String(jwk.d), 'base64url');
    };
    const cek = scalar(sevKdf(chip, 56, 'sev-chip-endorsement-key'));
    const [oca, pek, pdh] = [0, 1, 2].map(() => scalar(identityStream.generate(56)));
    const keys = [chip, cek, oca as Buffer, pek as Buffer, pdh as Buffer];
    for (const k of [...keys]) keys.push(Buffer.from(k).reverse()); // little-endian forms too

    // A state directory, a full owner launch with a session and a secret, artifacts written.
    const state = mkdtempSync(join(tmpdir(), 'sevsim-secrecy-state-'));
    const out = mkdtempSync(join(tmpdir(), 'sevsim-secrecy-out-'));
    const ovmf = readFileSync(resolve(import.meta.dirname, '../../shared/testdata/ovmf/OVMF.fd'));
    const platform = createPlatform({ seed, stateDirectory: state, dramBytes: 64 << 20 });
    const hv = new Hypervisor(platform);
    hv.initPlatform();
    const { exportPlatformCerts } = await import('../src/host/index.js');
    const certs = exportPlatformCerts(hv);
    // Non-vacuity: the regenerated PDH scalar is the platform's (its public key is in the exported PDH).
    const { decodeSevCert } = await import('../src/abi/index.js');
    const { p384PublicKeyToAmd } = await import('../src/crypto/index.js');
    const again = Drbg.fromSeed(seed, 'psp-identity-rng');
    again.generate(56);
    again.generate(56);
    const pdhPoint = p384PublicKeyToAmd(p384PrivateKeyFromBytes(again.generate(56)));
    const exported = decodeSevCert(certs.pdh).pubkey;
    expect(exported.type === 'ec' && exported.qx.equals(pdhPoint.qx)).toBe(true);

    const launch = runOwnerLaunch({ ovmf, mode: 'sev', seed, outDir: out });
    expect(launch.ok).toBe(true);
    const tk = readFileSync(join(out, 'tmp_tk.bin')); // the owner's TEK‖TIK: must not reach the host
    const ownerKeys = [tk.subarray(0, 16), tk.subarray(16, 32)];

    const visible = [
      inspect(hv, { showHidden: true, depth: Infinity, getters: true }),
      inspect(platform, { showHidden: true, depth: Infinity, getters: true }),
      JSON.stringify(platform.psp.log),
      JSON.stringify(launch),
      certs.pdh.toString('hex'),
      certs.chain.toString('hex'),
      ...readdirSync(state)
        .filter((f) => f !== 'fuses.bin')
        .map((f) => readFileSync(join(state, f)).toString('hex')),
      ...readdirSync(out)
        .filter((f) => f !== 'tmp_tk.bin')
        .map((f) => readFileSync(join(out, f)).toString('hex')),
    ].join('\n');
    expect(leaks(visible, keys)).toEqual([]);
    expect(leaks(visible, ownerKeys)).toEqual([]);
    for (const f of fragments([...keys, ...ownerKeys])) expect(platform.soc.dram.scan(f)).toEqual([]);
  });
});
