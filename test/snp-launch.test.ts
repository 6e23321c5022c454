// An SNP launch of the real OVMF.fd through the simulated host and PSP: every page RMPUPDATEd and
// SNP_LAUNCH_UPDATEd in QEMU's order, the guest executing the image asks the PSP for a report through
// the host (AES-256-GCM under VMPCK0, VMGEXIT), and the report is checked like a real one: signature
// by the VCEK of its REPORTED_TCB, MEASUREMENT equal to what `owner measure --mode snp` predicts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  SNP_CERT_GUID,
  encodeSnpCertTable,
  GHCB_PROTOCOL_VERSION,
  Ghcb,
  GhcbExit,
  SevCommand,
  SevStatus,
  SnpGctxBuffer,
  SnpMsgType,
  VCPU_TYPES,
  cpuidSignature,
  decodeSnpReport,
  ecdsaP384Verify,
  parseOvmfFooter,
  sealSnpGuestMessage,
  encodeSnpReportRequest,
} from '../src/index.js';
import { createPlatform } from '../src/psp/platform.js';
import { Hypervisor } from '../src/host/hypervisor.js';
import {
  initSnpPlatform,
  launchSnpFirmware,
  runSnpGuest,
  forwardGuestRequest,
} from '../src/host/snp-launch.js';
import { SnpAttestationAgent } from '../src/guest/snp-attestation-agent.js';
import { computeLaunchDigest } from '../src/owner/launch-digest.js';
import { HostRmpFault, PAGE_SIZE } from '../src/soc/index.js';
import { SvmExit } from '../src/abi/index.js';
import { chipSecret } from '../src/psp/chip-fuses.js';
import { vcekPublicKey } from '../src/psp/vcek.js';

const OVMF = readFileSync(new URL('../../shared/testdata/ovmf/OVMF.fd', import.meta.url));
const SEED = 'snp-launch-test';
const POLICY = 0x30000n;

function boot(vcpus = 1, reportData = Buffer.alloc(64, 0x5a), certificates?: { gpa: number; pages: number }) {
  const platform = createPlatform({ product: 'milan', seed: SEED, dramBytes: 64 * 1024 * 1024 });
  const hv = new Hypervisor(platform);
  initSnpPlatform(hv);
  const footer = parseOvmfFooter(OVMF);
  const sections = footer.sevMetadata?.sections ?? [];
  const secrets = sections.find((s) => s.typeName === 'SNP_SECRETS');
  const secMem = sections.find((s) => s.typeName === 'SNP_SEC_MEM');
  if (secrets === undefined || secMem === undefined) throw new Error('OVMF.fd has no SNP metadata');
  const agent = new SnpAttestationAgent(OVMF, {
    paging: platform.soc.paging,
    secretsGpa: secrets.gpa,
    pageTableGpa: secMem.gpa,
    sharedGpa: 0x10_0000,
    reportData,
    ...(certificates !== undefined ? { certificates } : {}),
  });
  const snp = launchSnpFirmware(hv, {
    name: 'snp-ovmf',
    memoryBytes: 16 * 1024 * 1024,
    firmware: OVMF,
    software: agent,
    policy: POLICY,
    vcpus,
    vcpuSignature: cpuidSignature(VCPU_TYPES['EPYC-Milan']),
    guestFeatures: 0x1n,
  });
  return { platform, hv, agent, snp };
}

describe('extended guest requests (SNP_EXT_GUEST_REQUEST)', () => {
  const table = encodeSnpCertTable([
    { guid: SNP_CERT_GUID.ARK, data: Buffer.from('ark certificate') },
    { guid: SNP_CERT_GUID.VCEK, data: Buffer.alloc(5000, 0x56) },
  ]);

  it('the guest gets the report and the host’s certificate table, GUIDs in RFC 4122 byte order', () => {
    const { agent, hv, snp } = boot(1, Buffer.alloc(64, 1), { gpa: 0x11_0000, pages: 4 });
    snp.certificates = table;
    runSnpGuest(hv, snp);
    expect(agent.problem).toBeUndefined();
    expect(agent.report).toBeDefined();
    expect(agent.certificates?.map((c) => c.kind)).toEqual(['ARK', 'VCEK']);
    expect(agent.certificates?.[1]?.data).toEqual(Buffer.alloc(5000, 0x56));
    // The first entry's GUID bytes as the guest received them: the text's hex digits in order.
    const raw = hv.readGuestMemory(snp.vm, 0x11_0000, 16);
    expect(raw.toString('hex')).toBe(SNP_CERT_GUID.ARK.replaceAll('-', ''));
  });

  it('a certificate buffer too small gets VMM error INVALID_LEN and the pages needed, and no report', () => {
    const { agent, hv, snp } = boot(1, Buffer.alloc(64, 1), { gpa: 0x11_0000, pages: 1 });
    snp.certificates = table;
    runSnpGuest(hv, snp);
    expect(agent.report).toBeUndefined();
    expect(agent.problem).toBe('the certificate buffer is too small: the host needs 2 pages');
  });

  it('a host without certificates answers with an empty table', () => {
    const { agent, hv, snp } = boot(1, Buffer.alloc(64, 1), { gpa: 0x11_0000, pages: 1 });
    runSnpGuest(hv, snp);
    expect(agent.report).toBeDefined();
    expect(agent.certificates).toEqual([]);
  });
});

describe('AP creation', () => {
  it('a new vCPU runs the image of an existing one; naming a VMCB nobody runs from is refused', () => {
    const { platform, snp } = boot();
    expect(() => platform.soc.attachSoftwareOf(platform.soc.paging.withCBit(0x4000_0000), 0x5000)).toThrow(
      /no vCPU runs from that VMCB/,
    );
    // SnpVm hands the host VMCB addresses only, never the guest's software.
    expect(Object.keys(snp)).not.toContain('software');
  });
});

describe('SNP launch of OVMF.fd', () => {
  it('the guest gets a VCEK-signed report whose MEASUREMENT is the owner-side digest', () => {
    const { agent, hv, snp } = boot();
    const exits = runSnpGuest(hv, snp);
    expect(exits.map((e) => e.code)).toEqual([SvmExit.VMGEXIT, SvmExit.HLT]);
    expect(agent.problem).toBeUndefined();
    const report = decodeSnpReport(agent.report as Buffer);
    const expected = computeLaunchDigest({
      mode: 'snp',
      ovmf: OVMF,
      vcpus: 1,
      vcpuType: 'EPYC-Milan',
      guestFeatures: 0x1n,
    });
    expect(report.measurement.toString('hex')).toBe(expected.digest.toString('hex'));
    expect(report.version).toBe(3);
    expect(report.vmpl).toBe(0);
    expect(report.policy).toBe(POLICY);
    expect(report.reportData).toEqual(Buffer.alloc(64, 0x5a));
    expect(report.reportIdMa).toEqual(Buffer.alloc(32, 0xff));
    expect([report.cpuidFamId, report.cpuidModId, report.cpuidStep]).toEqual([0x19, 0x01, 0x1]);
    // The VCEK of the reported TCB (derived here from the seeded chip secret, as AMD's KDS would).
    const vcek = vcekPublicKey(chipSecret(SEED, undefined), 'milan', report.reportedTcb);
    const sig = { r: report.signatureR, s: report.signatureS };
    expect(ecdsaP384Verify(vcek, 'sha384', (agent.report as Buffer).subarray(0, 0x2a0), sig)).toBe(true);
    const tampered = Buffer.from(agent.report as Buffer);
    tampered.writeUInt8((tampered[0x90] as number) ^ 1, 0x90);
    expect(ecdsaP384Verify(vcek, 'sha384', tampered.subarray(0, 0x2a0), sig)).toBe(false);
  });

  it('4 vCPUs: one VMSA each, still the owner-side digest', () => {
    const { agent, hv, snp } = boot(4);
    expect(snp.vmsas).toHaveLength(4);
    runSnpGuest(hv, snp);
    const report = decodeSnpReport(agent.report as Buffer);
    const expected = computeLaunchDigest({
      mode: 'snp',
      ovmf: OVMF,
      vcpus: 4,
      vcpuType: 'EPYC-Milan',
      guestFeatures: 0x1n,
    });
    expect(report.measurement).toEqual(expected.digest);
  });

  it('the host cannot write launched pages, and reads only ciphertext of the secrets page', () => {
    const { hv, snp, platform } = boot();
    const footer = parseOvmfFooter(OVMF);
    const secrets = (footer.sevMetadata?.sections ?? []).find((s) => s.typeName === 'SNP_SECRETS');
    const spa = snp.vm.spaOf(secrets?.gpa ?? 0);
    expect(() => platform.soc.hostMemory.write(spa, Buffer.alloc(16), false)).toThrow(HostRmpFault);
    expect(platform.soc.rmpread(spa)).toMatchObject({ assigned: true, validated: true, asid: snp.vm.asid });
    hv.soc.hostMemory.wbinvd();
    const seen = platform.soc.dram.read(spa, PAGE_SIZE);
    // Version 3 and the FMS would be plain bytes at the start of an unencrypted secrets page.
    expect(seen.readUInt32LE(0)).not.toBe(3);
  });

  it('a replayed request is refused (AEAD_OFLOW), and a forged one does not authenticate', () => {
    const { agent, hv, snp } = boot();
    runSnpGuest(hv, snp);
    expect(agent.report).toBeDefined();
    // The host kept the guest's request page: sending it again is a replay.
    expect(forwardGuestRequest(hv, snp, 0x10_1000, 0x10_2000)).toBe(SevStatus.AEAD_OFLOW);
    // A host that makes up a request must guess VMPCK0.
    const forged = sealSnpGuestMessage({
      vmpck: Buffer.alloc(32, 7),
      vmpckIndex: 0,
      seqno: 3n,
      type: SnpMsgType.REPORT_REQ,
      version: 1,
      payload: encodeSnpReportRequest({ reportData: Buffer.alloc(64), vmpl: 0, keySel: 0 }),
    });
    hv.writeGuestMemory(snp.vm, 0x10_1000, forged);
    expect(forwardGuestRequest(hv, snp, 0x10_1000, 0x10_2000)).toBe(SevStatus.BAD_MEASUREMENT);
  });

  it('DECOMMISSION of a page that is not a context page answers INVALID_GUEST and changes nothing', () => {
    const { hv, snp, agent } = boot();
    const status = hv.driver.raw(SevCommand.SNP_DECOMMISSION, SnpGctxBuffer, {
      gctxPaddr: BigInt(snp.vm.vmcb),
    }).status;
    expect(status).toBe(SevStatus.INVALID_GUEST);
    // The real guest is untouched: it still runs and is still attested.
    runSnpGuest(hv, snp);
    expect(agent.problem).toBeUndefined();
    expect(agent.report).toBeDefined();
    // The host answered in the GHCB the guest shared: status 0 in SW_EXITINFO2.
    const ghcb = Ghcb.decode(hv.readGuestMemory(snp.vm, 0x10_0000, Ghcb.size));
    expect(ghcb.swExitCode).toBe(BigInt(GhcbExit.SNP_GUEST_REQUEST));
    expect(ghcb.swExitInfo2).toBe(0n);
    expect(ghcb.protocolVersion).toBe(GHCB_PROTOCOL_VERSION);
  });
});
