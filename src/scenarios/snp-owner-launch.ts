// The guest owner's SEV-SNP flow against a simulated platform (`sevsim launch --mode snp`): the host
// launches OVMF as QEMU does; the guest, executing the image, asks the PSP for a report with the
// owner's nonce through its GHCB; the owner fetches the VCEK from the (simulated) KDS and verifies
// the report — signature, chain to the simulated AMD root, hwID and TCB against the VCEK, the
// MEASUREMENT it computed itself, its nonce — exactly as it would a real report.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  VCPU_TYPES,
  cpuidSignature,
  decodeSnpReport,
  derToPem,
  parseOvmfFooter,
  type VcpuTypeName,
} from '../abi/index.js';
import { SnpAttestationAgent } from '../guest/index.js';
import { Hypervisor, initSnpPlatform, launchSnpFirmware, runSnpGuest, type SnpVm } from '../host/index.js';
import { computeLaunchDigest, verifySnpReport } from '../owner/index.js';
import { SimulatedKds, createPlatform, type Platform } from '../psp/index.js';
import { simulatedAmdRoot } from '../psp/simulated-amd-root.js';
import { kdsVcekPath } from '../psp/simulated-kds.js';
import { hwIdFromChipId, snpProduct } from '../psp/vcek.js';
import { PAGE_SIZE } from '../soc/index.js';
import type { LaunchStep, OwnerLaunchResult } from './owner-launch.js';

export interface SnpOwnerLaunchOptions {
  readonly ovmf: Buffer;
  readonly product?: string;
  readonly seed?: string | number;
  readonly vcpus?: number;
  readonly vcpuType?: VcpuTypeName;
  /** Launch on this host instead of a fresh platform (the demo shares one). */
  readonly host?: { readonly platform: Platform; readonly hv: Hypervisor };
  /** Write report.bin, vcek.der and roots/<product>/{ark,ask}.pem here. */
  readonly outDir?: string;
}

export interface SnpOwnerLaunchResult extends OwnerLaunchResult {
  /** The launched guest (for scenarios that go on with it). */
  readonly snp: SnpVm;
  readonly report: Buffer | undefined;
}

/** Low RAM of the guest; OVMF's SNP sections sit below 9 MiB. */
const LOW_RAM = 10 * 1024 * 1024;
/** Shared pages in low RAM (never launched, so never assigned): GHCB and message pages. */
export const SNP_SHARED_GPA = 0x10_0000;
const SNP_POLICY = 0x30000n;

export function runSnpOwnerLaunch(options: SnpOwnerLaunchOptions): SnpOwnerLaunchResult {
  const seed = String(options.seed ?? 'launch');
  const info = snpProduct(options.product ?? 'milan');
  const vcpus = options.vcpus ?? 1;
  const vcpuType = options.vcpuType ?? 'EPYC-Milan';
  const host =
    options.host ??
    (() => {
      const platform = createPlatform({ product: info.product, seed, dramBytes: 256 * 1024 * 1024 });
      const hv = new Hypervisor(platform);
      initSnpPlatform(hv);
      return { platform, hv };
    })();
  const steps: LaunchStep[] = [];
  const artifacts: string[] = [];
  const save = (name: string, bytes: Uint8Array | string): void => {
    if (options.outDir === undefined) return;
    const path = join(options.outDir, name);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, bytes);
    artifacts.push(name);
  };

  // The owner's side, before anything runs: its own digest of the image, and a fresh nonce.
  const expected = computeLaunchDigest({
    mode: 'snp',
    ovmf: options.ovmf,
    vcpus,
    vcpuType,
    guestFeatures: 0x1n,
  }).digest;
  const nonce = randomBytes(32);
  const reportData = createHash('sha512').update(nonce).digest();

  const sections = parseOvmfFooter(options.ovmf).sevMetadata?.sections ?? [];
  const secrets = sections.find((s) => s.typeName === 'SNP_SECRETS');
  const secMem = sections.find((s) => s.typeName === 'SNP_SEC_MEM');
  if (secrets === undefined || secMem === undefined)
    throw new RangeError(
      'the firmware image has no SNP_SECRETS / SNP_SEC_MEM sections: it cannot run under SNP',
    );
  const agent = new SnpAttestationAgent(options.ovmf, {
    paging: host.platform.soc.paging,
    secretsGpa: secrets.gpa,
    pageTableGpa: secMem.gpa,
    sharedGpa: SNP_SHARED_GPA,
    reportData,
  });
  const snp = launchSnpFirmware(host.hv, {
    name: 'snp-guest',
    memoryBytes: LOW_RAM,
    firmware: options.ovmf,
    software: agent,
    policy: SNP_POLICY,
    vcpus,
    vcpuSignature: cpuidSignature(VCPU_TYPES[vcpuType]),
    guestFeatures: 0x1n,
  });
  const launched = host.platform.soc.rmpAssignedPages().filter((p) => p.entry.asid === snp.vm.asid).length;
  steps.push({
    step: 'host launches OVMF under SNP',
    ok: true,
    detail: `${launched} pages RMPUPDATEd to PRE_GUEST and SNP_LAUNCH_UPDATEd in QEMU's order (ASID ${snp.vm.asid}, policy 0x${SNP_POLICY.toString(16)}, ${vcpus} VMSA${vcpus === 1 ? '' : 's'})`,
  });

  const exits = runSnpGuest(host.hv, snp);
  const report = agent.report;
  steps.push({
    step: 'guest asks the PSP for a report through its GHCB',
    ok: report !== undefined,
    detail:
      report !== undefined
        ? `MSG_REPORT_REQ sealed with VMPCK0 from the secrets page; ${exits.length} exits; the host relayed only ciphertext`
        : `no report: ${agent.problem ?? exits[exits.length - 1]?.reason ?? 'no exit'}`,
  });
  if (report === undefined) return { ok: false, steps, artifacts, snp, report };
  save('report.bin', report);

  const decoded = decodeSnpReport(report);
  const kds = new SimulatedKds();
  kds.registerSeededChip(seed, info.product);
  const vcekAnswer = kds.handle(
    'GET',
    kdsVcekPath(info.product, hwIdFromChipId(decoded.chipId, info.product), decoded.reportedTcb),
  );
  steps.push({
    step: 'owner fetches the VCEK from the (simulated) KDS',
    ok: vcekAnswer.status === 200,
    detail: `GET ${kdsVcekPath(info.product, hwIdFromChipId(decoded.chipId, info.product), decoded.reportedTcb).slice(0, 60)}… → ${vcekAnswer.status}`,
  });
  if (vcekAnswer.status !== 200) return { ok: false, steps, artifacts, snp, report };
  const { ark, ask } = simulatedAmdRoot().snpCertificates(info.product);
  save('vcek.der', vcekAnswer.body);
  save(join('roots', info.product, 'ark.pem'), derToPem(ark));
  save(join('roots', info.product, 'ask.pem'), derToPem(ask));

  const verdict = verifySnpReport({
    report,
    certificate: vcekAnswer.body,
    roots: [{ name: info.product, ark, ask }],
    policy: { measurement: expected, reportData },
  });
  steps.push({
    step: 'owner verifies the report',
    ok: verdict.ok,
    detail: verdict.checks.map((c) => `${c.name} ${c.ok ? 'ok' : `FAILED (${c.detail})`}`).join('; '),
  });

  // What the host can do with the guest's memory now: read ciphertext, write nothing.
  const spa = snp.vm.spaOf(secrets.gpa);
  let writeRefused = false;
  try {
    host.platform.soc.hostMemory.write(spa, Buffer.alloc(16), false);
  } catch {
    writeRefused = true;
  }
  host.platform.soc.hostMemory.wbinvd();
  const seen = host.platform.soc.dram.read(spa, PAGE_SIZE);
  steps.push({
    step: 'host cannot write the guest and reads only ciphertext',
    ok: writeRefused && seen.readUInt32LE(0) !== 3,
    detail: `host write to the secrets page: ${writeRefused ? 'RMP #PF' : 'went through!'}; DRAM there: ${seen.subarray(0, 16).toString('hex')}…`,
  });
  return { ok: steps.every((s) => s.ok), steps, artifacts, snp, report };
}
