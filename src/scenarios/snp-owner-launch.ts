// The guest owner's SEV-SNP flow against a simulated platform (`sevsim launch --mode snp`): the host
// launches OVMF as QEMU does; the guest, executing the image, asks the PSP for a report with the
// owner's nonce through its GHCB; the owner fetches the VCEK from the (simulated) KDS and verifies
// the report — signature, chain to the simulated AMD root, hwID and TCB against the VCEK, the
// MEASUREMENT it computed itself, its nonce — exactly as it would a real report.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  SNP_CERT_GUID,
  VCPU_TYPES,
  cpuidSignature,
  encodeSnpCertTable,
  snpCertByKind,
  derToPem,
  parseOvmfFooter,
  type VcpuTypeName,
} from '../abi/index.js';
import { SnpAttestationAgent } from '../guest/index.js';
import {
  Hypervisor,
  initSnpPlatform,
  launchSnpFirmware,
  runSnpGuest,
  snpPlatformIdentity,
  type SnpVm,
} from '../host/index.js';
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
/** Shared pages for the certificate table of an extended request (ARK + ASK + VCEK ≈ 5 KiB). */
const SNP_CERT_BUFFER_GPA = 0x11_0000;
const SNP_CERT_BUFFER_PAGES = 4;
const SNP_POLICY = 0x30000n;

/** What a host-and-guest pair needs to launch an attesting OVMF guest under SNP. */
export interface AttestingGuestOptions {
  readonly name: string;
  readonly reportData: Buffer;
  readonly vcpus?: number;
  readonly vcpuType?: VcpuTypeName;
  readonly certificates?: { readonly gpa: number; readonly pages: number };
  /** A reordering host (integrity scenarios). */
  readonly swapImagePages?: readonly [number, number];
}

/**
 * Launches OVMF under SNP as QEMU does, with the attestation agent as what the image executes (page
 * tables in its first SNP_SEC_MEM section, shared pages at {@link SNP_SHARED_GPA}).
 */
export function launchAttestingGuest(
  hv: Hypervisor,
  platform: Platform,
  ovmf: Buffer,
  o: AttestingGuestOptions,
): { snp: SnpVm; agent: SnpAttestationAgent } {
  const sections = parseOvmfFooter(ovmf).sevMetadata?.sections ?? [];
  const secrets = sections.find((x) => x.typeName === 'SNP_SECRETS');
  const secMem = sections.find((x) => x.typeName === 'SNP_SEC_MEM');
  if (secrets === undefined || secMem === undefined)
    throw new RangeError(
      'the firmware image has no SNP_SECRETS / SNP_SEC_MEM sections: it cannot run under SNP',
    );
  const agent = new SnpAttestationAgent(ovmf, {
    paging: platform.soc.paging,
    secretsGpa: secrets.gpa,
    pageTableGpa: secMem.gpa,
    sharedGpa: SNP_SHARED_GPA,
    reportData: o.reportData,
    ...(o.certificates !== undefined ? { certificates: o.certificates } : {}),
  });
  const snp = launchSnpFirmware(hv, {
    name: o.name,
    memoryBytes: LOW_RAM,
    firmware: ovmf,
    software: agent,
    policy: SNP_POLICY,
    vcpus: o.vcpus ?? 1,
    vcpuSignature: cpuidSignature(VCPU_TYPES[o.vcpuType ?? 'EPYC-Milan']),
    guestFeatures: 0x1n,
    ...(o.swapImagePages !== undefined ? { swapImagePages: o.swapImagePages } : {}),
  });
  return { snp, agent };
}

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

  const { snp, agent } = launchAttestingGuest(host.hv, host.platform, options.ovmf, {
    name: 'snp-guest',
    reportData,
    vcpus,
    vcpuType,
    certificates: { gpa: SNP_CERT_BUFFER_GPA, pages: SNP_CERT_BUFFER_PAGES },
  });
  const launched = host.platform.soc.rmpAssignedPages().filter((p) => p.entry.asid === snp.vm.asid).length;
  steps.push({
    step: 'host launches OVMF under SNP',
    ok: true,
    detail: `${launched} pages RMPUPDATEd to PRE_GUEST and SNP_LAUNCH_UPDATEd in QEMU's order (ASID ${snp.vm.asid}, policy 0x${SNP_POLICY.toString(16)}, ${vcpus} VMSA${vcpus === 1 ? '' : 's'})`,
  });

  // The host fetches its certificates from AMD's (simulated) KDS, as snphost does, and hands them out
  // with extended guest requests (KVM's per-VM certificate table).
  const id = snpPlatformIdentity(host.hv);
  const hwId = hwIdFromChipId(id.chipId, info.product);
  const kds = new SimulatedKds();
  kds.registerSeededChip(seed, info.product);
  const url = kdsVcekPath(info.product, hwId, id.reportedTcb);
  const vcekAnswer = kds.handle('GET', url);
  const { ark, ask } = simulatedAmdRoot().snpCertificates(info.product);
  steps.push({
    step: 'host fetches its VCEK from the (simulated) KDS',
    ok: vcekAnswer.status === 200,
    detail: `GET_ID + SNP_PLATFORM_STATUS (reported TCB 0x${id.reportedTcb.toString(16).padStart(16, '0')}), then GET ${url.slice(0, 48)}… → ${vcekAnswer.status}`,
  });
  if (vcekAnswer.status !== 200) return { ok: false, steps, artifacts, snp, report: undefined };
  snp.certificates = encodeSnpCertTable([
    { guid: SNP_CERT_GUID.ARK, data: ark },
    { guid: SNP_CERT_GUID.ASK, data: ask },
    { guid: SNP_CERT_GUID.VCEK, data: vcekAnswer.body },
  ]);

  const exits = runSnpGuest(host.hv, snp);
  const report = agent.report;
  const vcek = agent.certificates === undefined ? undefined : snpCertByKind(agent.certificates, 'VCEK');
  steps.push({
    step: 'guest asks the PSP for a report through its GHCB',
    ok: report !== undefined && vcek !== undefined,
    detail:
      report !== undefined
        ? `extended MSG_REPORT_REQ sealed with VMPCK0 from the secrets page; the host relayed only ciphertext and added its certificate table (${(agent.certificates ?? []).map((c) => c.kind ?? c.guid).join(', ')}); ${exits.length} exits`
        : `no report: ${agent.problem ?? exits[exits.length - 1]?.reason ?? 'no exit'}`,
  });
  if (report === undefined || vcek === undefined) return { ok: false, steps, artifacts, snp, report };
  save('report.bin', report);
  save('vcek.der', vcek);
  save(join('roots', info.product, 'ark.pem'), derToPem(ark));
  save(join('roots', info.product, 'ask.pem'), derToPem(ask));

  // The owner trusts its own copy of the AMD root, not the ARK/ASK the host put in the table.
  const verdict = verifySnpReport({
    report,
    certificate: vcek,
    roots: [{ name: info.product, ark, ask }],
    policy: { measurement: expected, reportData },
  });
  steps.push({
    step: 'owner verifies the report',
    ok: verdict.ok,
    detail: verdict.checks.map((c) => `${c.name} ${c.ok ? 'ok' : `FAILED (${c.detail})`}`).join('; '),
  });

  // What the host can do with the guest's memory now: read ciphertext, write nothing.
  const secretsGpa = (parseOvmfFooter(options.ovmf).sevMetadata?.sections ?? []).find(
    (x) => x.typeName === 'SNP_SECRETS',
  )?.gpa as number;
  const spa = snp.vm.spaOf(secretsGpa);
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
