// The SEV-SNP demo (issue 4): an SNP guest launched from the real OVMF.fd attests itself to its owner;
// four integrity attacks run against an SEV guest and an SNP guest side by side (SEV: the guest
// silently gets the wrong data, or the owner accepts a reordered image; SNP: the RMP or the launch
// digest stops each); and an application inside an SNP guest keeps its memory from its own kernel
// (VMPL0 vs VMPL1) as well as from the host.
import { randomBytes } from 'node:crypto';
import { SvmExit, VCPU_TYPES, cpuidSignature, decodeSnpReport, parseOvmfFooter } from '../abi/index.js';
import type { SnpAttestationAgent } from '../guest/index.js';
import { VmplPartitionedFirmware, type VmplLayout } from '../guest/index.js';
import {
  Adversary,
  Hypervisor,
  initSnpPlatform,
  launchSnpFirmware,
  runSnpGuest,
  startFirmwareLaunch,
  type SnpVm,
} from '../host/index.js';
import { OvmfFirmwareModel } from '../guest/firmware-model.js';
import { computeLaunchDigest, verifyLaunchMeasurement } from '../owner/index.js';
import { createPlatform, type Platform } from '../psp/index.js';
import type { SnpProduct } from '../psp/vcek.js';
import { HostRmpFault, NPF_RMP, NPF_VMPL, PAGE_SIZE } from '../soc/index.js';
import { exec, launchGuest } from './sev-demo.js';
import { SNP_SHARED_GPA, launchAttestingGuest, runSnpOwnerLaunch } from './snp-owner-launch.js';
import type { DemoCheck } from './sev-demo.js';

export interface SnpDemoOptions {
  readonly product?: string;
  readonly seed?: string | number;
  /** The firmware image to launch (OVMF.fd with SNP metadata). */
  readonly ovmf: Buffer;
}

/** One attack, against an SEV guest and an SNP guest. */
export interface IntegrityRow {
  readonly id: string;
  readonly attack: string;
  readonly sev: { readonly stopped: boolean; readonly outcome: string };
  readonly snp: { readonly stopped: boolean; readonly outcome: string };
}

export interface SnpDemoResult {
  readonly product: string;
  readonly checks: readonly DemoCheck[];
  readonly integrity: readonly IntegrityRow[];
}

const POLICY = 0x30000n;
const LOW_RAM = 10 * 1024 * 1024;
const SHARED_GPA = SNP_SHARED_GPA;
const VCPU_TYPES_SIGNATURE = cpuidSignature(VCPU_TYPES['EPYC-Milan']);
/** Whether EXITINFO1 has a single-bit flag set (bits ≥ 31 do not survive JavaScript's 32-bit `&`). */
const hasFlag = (value: number, flag: number): boolean => Math.floor(value / flag) % 2 === 1;
const hex = (b: Uint8Array, n = 32): string => Buffer.from(b.subarray(0, n)).toString('hex');

interface SnpSections {
  readonly secrets: number;
  readonly cpuid: number;
  /** The first SNP_SEC_MEM section and the second (validated private pages). */
  readonly secMem: number;
  readonly secMem2: number;
}

function sectionsOf(ovmf: Buffer): SnpSections {
  const sections = parseOvmfFooter(ovmf).sevMetadata?.sections ?? [];
  const find = (name: string, nth = 0): number => {
    const s = sections.filter((x) => x.typeName === name)[nth];
    if (s === undefined) throw new Error(`the firmware image has no ${name} section`);
    return s.gpa;
  };
  return {
    secrets: find('SNP_SECRETS'),
    cpuid: find('CPUID'),
    secMem: find('SNP_SEC_MEM', 0),
    secMem2: find('SNP_SEC_MEM', 1),
  };
}

function launchAgent(
  hv: Hypervisor,
  platform: Platform,
  ovmf: Buffer,
  name: string,
  swapImagePages?: readonly [number, number],
): { snp: SnpVm; agent: SnpAttestationAgent } {
  return launchAttestingGuest(hv, platform, ovmf, {
    name,
    reportData: Buffer.alloc(64, 0x5a),
    ...(swapImagePages !== undefined ? { swapImagePages } : {}),
  });
}

/** The owner's expectation for OVMF on one EPYC-Milan vCPU with SNP_ACTIVE. */
function expectedDigest(ovmf: Buffer): Buffer {
  return computeLaunchDigest({ mode: 'snp', ovmf, vcpus: 1, vcpuType: 'EPYC-Milan', guestFeatures: 0x1n })
    .digest;
}

/** Attempts a host store; the RMP's answer if it faulted. */
function hostWrite(platform: Platform, spa: number, data: Buffer): string | undefined {
  try {
    platform.soc.hostMemory.write(spa, data, false);
    platform.soc.hostMemory.clflushRange(spa, data.length);
    return undefined;
  } catch (err) {
    if (err instanceof HostRmpFault) return err.message;
    throw err;
  }
}

export function runSnpDemo(options: SnpDemoOptions): SnpDemoResult {
  const seed = String(options.seed ?? 1);
  const product = (options.product ?? 'milan') as SnpProduct;
  const platform = createPlatform({ product, seed, dramBytes: 512 * 1024 * 1024 });
  if (!platform.profile.sevSnp) throw new RangeError(`${platform.profile.title} has no SEV-SNP`);
  const hv = new Hypervisor(platform);
  initSnpPlatform(hv);
  const adversary = new Adversary(hv);
  const ovmf = options.ovmf;
  const s = sectionsOf(ovmf);
  const checks: DemoCheck[] = [];
  const integrity: IntegrityRow[] = [];

  // ---- 8a: attestation of the real firmware --------------------------------------------------
  const attested = runSnpOwnerLaunch({ ovmf, product, seed, host: { platform, hv } });
  const alice = attested.snp;
  {
    const report = attested.report === undefined ? undefined : decodeSnpReport(attested.report);
    checks.push({
      id: '8a',
      name: 'an SNP guest launched from OVMF.fd gets a VCEK-signed report of the measurement its owner predicts',
      passed: attested.ok,
      detail: attested.steps.map((st) => `${st.ok ? 'ok' : 'FAILED'}: ${st.step} (${st.detail})`).join('; '),
      views:
        report === undefined
          ? []
          : [
              { who: 'report MEASUREMENT', hex: hex(report.measurement) },
              { who: 'owner measure', hex: hex(expectedDigest(ovmf)) },
            ],
    });
  }

  // ---- 8b–8e: integrity, SEV against SNP ---------------------------------------------------
  const sevGuest = launchGuest(hv, platform, 'sev-victim');

  // 8b: replaying an old ciphertext page.
  {
    const v1 = Buffer.from('balance: 100 coins (old)');
    const v2 = Buffer.from('balance: 0 coins (new!)!');
    const run1 = exec(hv, sevGuest, 'store-v1', function* (k) {
      const va = k.allocPages(1);
      yield* k.store(va, v1);
      return va;
    });
    const va = run1.result as number;
    const spa = sevGuest.vm.spaOf(va);
    const old = adversary.readDram(spa, PAGE_SIZE);
    exec(hv, sevGuest, 'store-v2', function* (k) {
      yield* k.store(va, v2);
    });
    hv.soc.hostMemory.wbinvd();
    const sevFault = hostWrite(platform, spa, old);
    const seen = exec(hv, sevGuest, 'read', function* (k) {
      return yield* k.load(va, v1.length);
    }).result as Buffer;
    const snpSpa = alice.vm.spaOf(s.secrets);
    const snpOld = adversary.readDram(snpSpa, PAGE_SIZE);
    const snpFault = hostWrite(platform, snpSpa, snpOld);
    integrity.push({
      id: '8b',
      attack: 'host replays an old ciphertext page',
      sev: {
        stopped: sevFault !== undefined || !seen.equals(v1),
        outcome: seen.equals(v1)
          ? `accepted: the guest silently reads its old value "${seen.toString()}"`
          : `guest read ${hex(seen, 8)}`,
      },
      snp: {
        stopped: snpFault !== undefined,
        outcome: snpFault ?? 'the write went through',
      },
    });
  }

  // 8c: remapping a guest page onto another of its frames.
  {
    const [a, b] = [Buffer.from('page A: pay bob 5'), Buffer.from('page B: pay eve 9')];
    const run = exec(hv, sevGuest, 'two-pages', function* (k) {
      const pa = k.allocPages(1);
      const pb = k.allocPages(1);
      yield* k.store(pa, a);
      yield* k.store(pb, b);
      return [pa, pb] as const;
    });
    const [pa, pb] = run.result as readonly [number, number];
    adversary.remap(sevGuest.vm, pa, sevGuest.vm.spaOf(pb));
    const seen = exec(hv, sevGuest, 'read-A', function* (k) {
      return yield* k.load(pa, a.length);
    }).result as Buffer;
    // SNP: a fresh guest whose secrets GPA the host points at the frame of its CPUID page.
    const { snp: victim, agent: victimAgent } = launchAgent(hv, platform, ovmf, 'snp-remap');
    adversary.remap(victim.vm, s.secrets, victim.vm.spaOf(s.cpuid));
    const exits = runSnpGuest(hv, victim, 4);
    const last = exits[exits.length - 1];
    const npf = last?.code === SvmExit.NPF && hasFlag(last.exitInfo1, NPF_RMP);
    integrity.push({
      id: '8c',
      attack: 'host remaps a guest page onto another of its frames',
      sev: {
        stopped: !seen.equals(b),
        outcome: seen.equals(b)
          ? `accepted: reading page A the guest silently gets "${seen.toString()}"`
          : 'refused',
      },
      snp: {
        stopped: npf && victimAgent.report === undefined,
        outcome: npf ? `#NPF to the host — ${last.reason}` : `no fault (${last?.reason ?? 'no exit'})`,
      },
    });
  }

  // 8d: the host writing into guest memory.
  {
    const secret = Buffer.from('alice: launch code 0000');
    const run = exec(hv, sevGuest, 'keep', function* (k) {
      const va = k.allocPages(1);
      yield* k.store(va, secret);
      return va;
    });
    const va = run.result as number;
    const sevFault = hostWrite(platform, sevGuest.vm.spaOf(va), randomBytes(secret.length));
    const seen = exec(hv, sevGuest, 'read', function* (k) {
      return yield* k.load(va, secret.length);
    }).result as Buffer;
    const snpFault = hostWrite(platform, alice.vm.spaOf(s.secMem2), randomBytes(32));
    integrity.push({
      id: '8d',
      attack: 'host writes into guest memory',
      sev: {
        stopped: sevFault !== undefined,
        outcome: seen.equals(secret)
          ? 'the guest still reads its data'
          : `accepted: the guest silently reads garbage ${hex(seen, 8)}…`,
      },
      snp: { stopped: snpFault !== undefined, outcome: snpFault ?? 'the write went through' },
    });
  }

  // 8e: reordering pages during launch (image pages 100 and 200 trade places, measured in order).
  {
    const swap = [100, 200] as const;
    const sevLaunch = startFirmwareLaunch(hv, {
      name: 'sev-reordered',
      memoryBytes: LOW_RAM,
      firmware: ovmf,
      software: new OvmfFirmwareModel(ovmf),
      policy: 0,
      encryptedState: false,
      vcpus: 1,
      vcpuSignature: VCPU_TYPES_SIGNATURE,
      swapImagePages: swap,
    });
    const fw = platform.profile.firmware;
    const legacy = verifyLaunchMeasurement(sevLaunch.measurementBlob, {
      launchDigest: computeLaunchDigest({ mode: 'sev', ovmf }).digest,
      policy: 0,
      firmware: fw,
      tik: Buffer.alloc(16),
    });
    const { snp: reordered, agent: rAgent } = launchAgent(hv, platform, ovmf, 'snp-reordered', swap);
    runSnpGuest(hv, reordered);
    const got = rAgent.report === undefined ? undefined : decodeSnpReport(rAgent.report).measurement;
    const expected = expectedDigest(ovmf);
    integrity.push({
      id: '8e',
      attack: 'host reorders pages during launch',
      sev: {
        stopped: !legacy.ok,
        outcome: legacy.ok
          ? `accepted: the owner's measurement check passes although image pages ${swap[0]} and ${swap[1]} swapped places (the digest hashes contents, not addresses)`
          : legacy.reason,
      },
      snp: {
        stopped: got !== undefined && !got.equals(expected),
        outcome:
          got === undefined
            ? `no report (${rAgent.problem ?? 'unknown'})`
            : `refused by the owner: MEASUREMENT ${hex(got, 8)}… ≠ expected ${hex(expected, 8)}… (PAGE_INFO binds each page's GPA)`,
      },
    });
  }

  for (const row of integrity) {
    checks.push({
      id: row.id,
      name: `${row.attack}: SEV ${row.sev.stopped ? 'stops it' : 'does not notice'}, SNP stops it`,
      passed: !row.sev.stopped && row.snp.stopped,
      detail: `SEV: ${row.sev.outcome}. SNP: ${row.snp.outcome}`,
      views: [],
    });
  }

  // ---- 8f: an application its own kernel cannot read ----------------------------------------
  checks.push(vmplIsolation(hv, platform, ovmf, s));

  return { product, checks, integrity };
}

function vmplIsolation(hv: Hypervisor, platform: Platform, ovmf: Buffer, s: SnpSections): DemoCheck {
  const layout: VmplLayout = {
    paging: platform.soc.paging,
    secretsGpa: s.secrets,
    pageTableGpa: s.secMem,
    appGpa: s.secMem + 7 * PAGE_SIZE,
    kernelVmsaGpa: s.secMem + 8 * PAGE_SIZE,
    kernelDataGpa: s.secMem2,
    kernelKeyGpa: s.secMem2 + PAGE_SIZE,
    componentSharedGpa: SHARED_GPA,
    kernelSharedGpa: SHARED_GPA + 3 * PAGE_SIZE,
  };
  const appSecret = Buffer.from('app: private key d=0x5eed…, readable by VMPL0 only');
  const fw = new VmplPartitionedFirmware(ovmf, layout, appSecret);
  const snp = launchSnpFirmware(hv, {
    name: 'snp-vmpl',
    memoryBytes: LOW_RAM,
    firmware: ovmf,
    software: fw,
    policy: POLICY,
    vcpus: 1,
    vcpuSignature: VCPU_TYPES_SIGNATURE,
    guestFeatures: 0x1n,
  });
  runSnpGuest(hv, snp);
  const kernelVmcb = snp.createdVcpus.get(layout.kernelVmsaGpa);
  const kernelExits = kernelVmcb === undefined ? [] : runSnpGuest(hv, snp, 8, kernelVmcb);
  const last = kernelExits[kernelExits.length - 1];
  const o = fw.outcome;
  const component =
    o.componentReport?.report === undefined ? undefined : decodeSnpReport(o.componentReport.report);
  const kernel = o.kernelReport?.report === undefined ? undefined : decodeSnpReport(o.kernelReport.report);
  const vmplFault = last?.code === SvmExit.NPF && hasFlag(last.exitInfo1, NPF_VMPL);
  hv.soc.hostMemory.wbinvd();
  const hostView = platform.soc.hostMemory.read(snp.vm.spaOf(layout.appGpa), appSecret.length, false);
  const passed =
    o.grantStatuses.every((st) => st === 0) &&
    component?.vmpl === 0 &&
    kernel?.vmpl === 1 &&
    o.kernelDataOk === true &&
    o.kernelImpersonation?.report === undefined &&
    o.kernelTouchedApp === true &&
    o.kernelGotApp === undefined &&
    vmplFault &&
    !hostView.equals(appSecret);
  return {
    id: '8f',
    name: 'an application at VMPL0 keeps its memory from its own kernel (VMPL1) and from the host',
    passed,
    detail:
      `VMPL0 granted the kernel ${o.grantStatuses.length} pages with RMPADJUST (code, page tables, its data, VMPCK1); ` +
      `reports: component VMPL ${component?.vmpl ?? '?'}, kernel VMPL ${kernel?.vmpl ?? '?'}; the kernel asking ` +
      `for a VMPL0 report with VMPCK1: ${o.kernelImpersonation?.problem ?? 'granted!'}; the kernel reading the ` +
      `application's page: ${vmplFault ? `#NPF to the host — ${last.reason}` : (last?.reason ?? 'no exit')}`,
    views: [
      { who: 'application (VMPL0)', hex: hex(appSecret), note: appSecret.toString('utf8') },
      { who: 'kernel (VMPL1)', hex: '', note: vmplFault ? '#NPF (VMPL): no bytes' : 'read it!' },
      { who: 'host map C=0', hex: hex(hostView) },
    ],
  };
}
