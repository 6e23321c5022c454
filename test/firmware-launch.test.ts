// Issue 3 §5: the hypervisor launches firmware the way QEMU does, so the simulated PSP's measurement
// equals the published launch digests (sev-snp-measure's vectors), direct kernel boot included.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VCPU_TYPES, cpuidSignature, encodeSevPolicy } from '../src/abi/index.js';
import { launchMeasurementMac } from '../src/crypto/index.js';
import { OvmfFirmwareModel } from '../src/guest/index.js';
import { Hypervisor, startFirmwareLaunch } from '../src/host/index.js';
import { createPlatform } from '../src/psp/index.js';

const measure = resolve(import.meta.dirname, '../../shared/testdata/measure');
interface Vector {
  name: string;
  mode: string;
  vcpus: number;
  vcpuType: keyof typeof VCPU_TYPES | null;
  ovmf: string;
  kernel: string | null;
  initrd: string | null;
  append: string | null;
  expectedDigest?: string;
  expectError?: boolean;
}
const raw = JSON.parse(readFileSync(join(measure, 'vectors.json'), 'utf8')) as Vector[] | { cases: Vector[] };
const vectors = (Array.isArray(raw) ? raw : raw.cases).filter((v) => v.mode === 'sev' || v.mode === 'sev-es');
const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

function launch(v: Vector) {
  const platform = createPlatform({ seed: v.name, dramBytes: 128 << 20 });
  const hv = new Hypervisor(platform);
  hv.initPlatform();
  const image = readFileSync(join(measure, v.ovmf));
  const es = v.mode === 'sev-es';
  const policy = encodeSevPolicy({ noDebug: true, encryptedState: es });
  const kernelHashes =
    v.kernel === null
      ? undefined
      : {
          kernel: sha256(Buffer.alloc(0)),
          initrd: sha256(Buffer.alloc(0)),
          cmdline: sha256(Buffer.from(`${v.append ?? ''}\0`)),
        };
  const pending = startFirmwareLaunch(hv, {
    name: v.name,
    memoryBytes: 16 << 20,
    firmware: image,
    software: new OvmfFirmwareModel(image),
    policy,
    encryptedState: es,
    vcpus: v.vcpus,
    vcpuSignature: cpuidSignature(VCPU_TYPES[v.vcpuType ?? 'EPYC-v4']),
    ...(kernelHashes !== undefined ? { kernelHashes } : {}),
  });
  return { platform, pending, policy };
}

describe('QEMU-faithful firmware launch', () => {
  for (const v of vectors) {
    if (v.expectError === true) {
      it(`${v.name}: refused like QEMU (no kernel-hashes area)`, () => {
        expect(() => launch(v)).toThrow(/no usable kernel-hashes area/);
      });
      continue;
    }
    it(`${v.name}: LAUNCH_MEASURE covers exactly the published digest`, () => {
      const { platform, pending, policy } = launch(v);
      // No owner session: the TIK is all zero, so the measurement can be recomputed from the digest.
      const expected = launchMeasurementMac(
        Buffer.alloc(16),
        platform.profile.firmware,
        policy,
        Buffer.from(v.expectedDigest ?? '', 'hex'),
        pending.vm.mnonce ?? Buffer.alloc(16),
      );
      expect(pending.vm.measurement?.toString('hex')).toBe(expected.toString('hex'));
    });
  }
});
