// The guest owner's whole flow against a simulated platform (issue 3 §6), with the same artifacts and
// steps as on real hardware: export the platform chain → the owner verifies it against the AMD root →
// the owner makes a launch session for the PDH → the host launches OVMF (SEV or SEV-ES) → the owner
// checks the measurement → the owner's secret is injected → the guest reads it from private memory →
// the host, DRAM and DBG_DECRYPT under NODBG all fail to reveal it.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DebugBuffer,
  PlatformStatusBuffer,
  SEV_CERT_SIZE,
  SevCommand,
  VCPU_TYPES,
  type VcpuTypeName,
  cpuidSignature,
  encodeEfiSecretTable,
  encodeSevPolicy,
  statusName,
} from '../abi/index.js';
import { OvmfFirmwareModel } from '../guest/index.js';
import {
  Adversary,
  Hypervisor,
  exportPlatformCerts,
  finishFirmwareLaunch,
  injectLaunchSecret,
  startFirmwareLaunch,
} from '../host/index.js';
import {
  computeLaunchDigest,
  createLaunchSession,
  encodeTransportKeys,
  packageLaunchSecret,
  verifyLaunchMeasurement,
  verifySevChain,
} from '../owner/index.js';
import { createPlatform } from '../psp/index.js';
import { simulatedAmdRoot } from '../psp/simulated-amd-root.js';

export interface OwnerLaunchOptions {
  readonly ovmf: Buffer;
  readonly mode: 'sev' | 'sev-es';
  readonly vcpus?: number;
  readonly vcpuType?: VcpuTypeName;
  readonly product?: string;
  readonly seed?: string;
  /** Write every artifact here (the file names sev-tool and sevctl use). */
  readonly outDir?: string;
  /** The secret to inject (default: a demo string). */
  readonly secret?: Buffer;
  /** What the host actually loads, if not `ovmf` (a tampering host: the owner must notice). */
  readonly hostImage?: Buffer;
}

export interface LaunchStep {
  readonly step: string;
  readonly ok: boolean;
  readonly detail: string;
  /** Not performed (the model cannot do it yet); `ok` is then true and says nothing. */
  readonly skipped?: boolean;
}

export interface OwnerLaunchResult {
  readonly ok: boolean;
  readonly steps: readonly LaunchStep[];
  readonly artifacts: readonly string[];
}

/** The GUID the demo secret is filed under in the EFI secret table (sevctl's "secret" example GUID form). */
export const DEMO_SECRET_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
const GUEST_RAM = 16 * 1024 * 1024;

export function runOwnerLaunch(options: OwnerLaunchOptions): OwnerLaunchResult {
  const steps: LaunchStep[] = [];
  const artifacts: string[] = [];
  const record = (step: string, ok: boolean, detail: string, skipped = false): boolean => {
    steps.push(skipped ? { step, ok, detail, skipped } : { step, ok, detail });
    return ok;
  };
  const save = (name: string, bytes: Buffer, ownerSecret = false): void => {
    if (options.outDir === undefined) return;
    mkdirSync(options.outDir, { recursive: true });
    // The transport keys are the owner's: readable by the owner only.
    writeFileSync(join(options.outDir, name), bytes, { mode: ownerSecret ? 0o600 : 0o644 });
    if (ownerSecret) chmodSync(join(options.outDir, name), 0o600);
    artifacts.push(name);
  };
  const finish = (): OwnerLaunchResult => ({ ok: steps.every((s) => s.ok), steps, artifacts });

  const es = options.mode === 'sev-es';
  const vcpus = options.vcpus ?? 1;
  const vcpuType = options.vcpuType ?? 'EPYC-Milan';
  const policy = encodeSevPolicy({ noDebug: true, noKeySharing: true, encryptedState: es });
  const platform = createPlatform({
    product: options.product ?? 'milan',
    seed: options.seed ?? 'launch',
    dramBytes: 256 << 20,
  });
  const hv = new Hypervisor(platform);
  hv.initPlatform();
  const fw = platform.profile.firmware;

  // 1. The host exports the platform's certificates (PDH_CERT_EXPORT), as `sevctl export` does.
  const exported = exportPlatformCerts(hv);
  const at = (i: number): Buffer => exported.chain.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE);
  const chain = { pdh: exported.pdh, pek: at(0), oca: at(1), cek: at(2) };
  const page = hv.frames.allocate();
  const root = simulatedAmdRoot();
  for (const [name, bytes] of Object.entries({
    'pdh.cert': chain.pdh,
    'pek.cert': chain.pek,
    'oca.cert': chain.oca,
    'cek.cert': chain.cek,
    'ark.cert': root.ark,
    'ask.cert': root.ask,
  }))
    save(name, bytes);

  // 2. The owner verifies the chain against the (simulated) AMD root.
  const verdict = verifySevChain({ ark: root.ark, ask: root.ask, ...chain });
  if (
    !record(
      'owner verifies the platform chain',
      verdict.ok,
      verdict.ok
        ? 'ARK → ASK → CEK → PEK ← OCA, PEK → PDH: all 7 links hold'
        : `broken: ${verdict.broken.join(', ')}`,
    )
  )
    return finish();

  // 3. The owner makes the launch session for that PDH.
  const session = createLaunchSession(chain.pdh, policy);
  save('godh.cert', session.godhCert);
  save('launch_blob.bin', session.session);
  save('tmp_tk.bin', encodeTransportKeys({ tek: session.tek, tik: session.tik }), true);
  record(
    'owner makes the launch session',
    true,
    `GODH (P-384 ECDH) + session buffer for policy 0x${policy.toString(16)}; TEK/TIK stay with the owner`,
  );

  // 4. The host launches OVMF (QEMU's order), stopping after LAUNCH_MEASURE.
  const hostImage = options.hostImage ?? options.ovmf;
  const model = new OvmfFirmwareModel(hostImage);
  const signature = cpuidSignature(VCPU_TYPES[vcpuType]);
  const pending = startFirmwareLaunch(hv, {
    name: 'guest',
    memoryBytes: GUEST_RAM,
    firmware: hostImage,
    software: model,
    policy,
    encryptedState: es,
    vcpus,
    vcpuSignature: signature,
    session: { godhCert: session.godhCert, session: session.session },
  });
  save('launch_measure.bin', pending.measurementBlob);
  record(
    'host launches OVMF',
    true,
    `${options.mode}, ${options.ovmf.length} bytes at 0x${model.codeBase.toString(16)}${es ? `, ${vcpus} VMSA(s) for ${vcpuType}` : ''}, ASID ${pending.vm.asid}`,
  );

  // 5. The owner predicts the digest and checks the measurement with its TIK.
  const expected = computeLaunchDigest({
    mode: options.mode,
    ovmf: options.ovmf,
    vcpus,
    vcpuSignature: signature,
  });
  const status = hv.driver.call(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {});
  const measured = verifyLaunchMeasurement(pending.measurementBlob, {
    launchDigest: expected.digest,
    policy,
    firmware: { major: status.apiMajor, minor: status.apiMinor, build: status.buildId },
    tik: session.tik,
  });
  if (
    !record(
      'owner verifies the measurement',
      measured.ok,
      `expected digest ${expected.digest.toString('hex')} (API ${fw.major}.${fw.minor} build ${fw.build})`,
    )
  )
    return finish();

  // 6. The owner packages its secret; the host injects it (LAUNCH_SECRET) and finishes the launch.
  const secret = options.secret ?? Buffer.from('owner secret: disk key 9f1c-7ab2-44e0', 'utf8');
  const table = encodeEfiSecretTable([{ guid: DEMO_SECRET_GUID, data: secret }]);
  const packet = packageLaunchSecret({
    tek: session.tek,
    tik: session.tik,
    measurement: measured.measurement,
    plaintext: table,
  });
  save('packaged_secret.bin', packet.ciphertext);
  save('packaged_secret_header.bin', packet.header);
  const injected = injectLaunchSecret(hv, pending.vm, packet.header, packet.ciphertext, model.secretArea.gpa);
  if (
    !record(
      'host injects the secret',
      injected === 0,
      `LAUNCH_SECRET at GPA 0x${model.secretArea.gpa.toString(16)}: ${statusName(injected)}`,
    )
  )
    return finish();
  finishFirmwareLaunch(hv, pending, model);
  record('host finishes the launch', true, 'LAUNCH_FINISH: the transport channel is closed');

  // 7. The guest reads its secret from private memory (SEV-ES: its vCPU runs from the encrypted VMSA).
  hv.run(pending.vm);
  const found = model.secrets?.find((e) => e.guid === DEMO_SECRET_GUID);
  record(
    'guest reads its secret',
    found !== undefined && found.data.equals(secret),
    found === undefined
      ? `no secret found${model.secretProblem !== undefined ? `: ${model.secretProblem}` : ''}`
      : `the firmware found ${found.data.length} bytes under ${DEMO_SECRET_GUID} in private memory${es ? ' (registers in the encrypted VMSA)' : ''}`,
  );

  // 8. Nobody else can: host mappings, DRAM, DBG_DECRYPT under NODBG.
  const adversary = new Adversary(hv);
  const spa = pending.vm.spaOf(model.secretArea.gpa);
  const needle = secret.subarray(0, 12);
  const views = [
    adversary.readDram(spa, 4096),
    hv.soc.hostMemory.read(spa, 4096, false),
    hv.soc.hostMemory.read(spa, 4096, true),
  ];
  const dbg = hv.driver.raw(SevCommand.DBG_DECRYPT, DebugBuffer, {
    handle: pending.vm.handle,
    srcPaddr: BigInt(spa),
    dstPaddr: BigInt(page),
    length: 4096,
  });
  const scan = platform.soc.dram.scan(needle);
  const hidden = views.every((v) => v.indexOf(needle) === -1) && scan.length === 0 && dbg.status !== 0;
  record(
    'host, DRAM and DBG_DECRYPT do not reveal it',
    hidden,
    `host C=0/C=1 reads and DRAM hold no copy (scan of ${platform.soc.dram.populatedPages} pages: ${scan.length} hits); DBG_DECRYPT: ${statusName(dbg.status)}`,
  );
  return finish();
}
