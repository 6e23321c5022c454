// Issue 4, "bad input", for SEV-SNP: with an SNP guest launched from OVMF.fd, running and attested once,
// the host throws random and mutated SNP command buffers at the PSP mailbox (flipped bits, addresses
// swapped for the guest's context page, its private and shared pages, its VMSA, the bounce pages, a
// firmware page, out-of-range values, reserved fields set), and random and mutated guest messages at
// SNP_GUEST_REQUEST. Whatever it sends, `issue()` answers a known status and no handler fails
// internally; a command that fails changes nothing — not the RMP, not SNP_PLATFORM_STATUS, not the
// guest's SNP_GUEST_STATUS, not the report the guest gets when it attests afterwards — and no command
// changes the guest's launch digest. The test speaks for the guest with the VMPCKs it regenerates from
// the seed (the PSP's 'psp-key-rng' stream: the SME key, then the guest's VEK and VMPCK0..3).
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  SevCommand,
  SevStatus,
  SnpActivateBuffer,
  SnpCommitBuffer,
  SnpConfigBuffer,
  SnpGctxBuffer,
  SnpGuestRequestBuffer,
  SnpGuestStatus,
  SnpGuestStatusBuffer,
  SnpKeySel,
  SnpLaunchFinishBuffer,
  SnpLaunchStartBuffer,
  SnpLaunchUpdateBuffer,
  SnpMsgType,
  SnpPageReclaimBuffer,
  SnpPageType,
  SnpPlatformStatus,
  SnpPlatformStatusBuffer,
  SNP_GUEST_MSG_HEADER_SIZE,
  type SnpCommandLayout,
  VCPU_TYPES,
  commandName,
  cpuidSignature,
  decodeSnpGuestMessageHeader,
  decodeSnpKeyRequest,
  decodeSnpKeyResponse,
  decodeSnpReport,
  decodeSnpReportRequest,
  decodeSnpReportResponse,
  encodeSnpKeyRequest,
  encodeSnpLaunchUpdatePageInfo,
  encodeSnpReportRequest,
  openSnpGuestMessage,
  parseOvmfFooter,
  sealSnpGuestMessage,
  snpCommandBufferLayout,
} from '../src/index.js';
import { Drbg, MEMORY_KEY_MATERIAL_BYTES, ecdsaP384Verify } from '../src/crypto/index.js';
import { SnpAttestationAgent } from '../src/guest/snp-attestation-agent.js';
import { Hypervisor } from '../src/host/hypervisor.js';
import {
  type SnpVm,
  forwardGuestRequest,
  initSnpPlatform,
  launchSnpFirmware,
  runSnpGuest,
} from '../src/host/snp-launch.js';
import { computeLaunchDigest } from '../src/owner/launch-digest.js';
import { chipSecret } from '../src/psp/chip-fuses.js';
import { type Platform, createPlatform } from '../src/psp/platform.js';
import { vcekPublicKey } from '../src/psp/vcek.js';
import { PAGE_SIZE, type RmpUpdateState, encodeRmpEntry } from '../src/soc/index.js';

const OVMF = readFileSync(new URL('../../shared/testdata/ovmf/OVMF.fd', import.meta.url));
const SEED = 'snp-mailbox-fuzz';
const DRAM = 64 * 1024 * 1024;
const POLICY = 0x30000n;
/** The agent's shared pages (low RAM the host never assigned): GHCB, request, response. */
const GHCB_GPA = 0x10_0000;
const REQUEST_GPA = GHCB_GPA + PAGE_SIZE;
const RESPONSE_GPA = GHCB_GPA + 2 * PAGE_SIZE;
/** What the test, speaking for the guest, binds into every report it asks for. */
const REPORT_DATA = Buffer.alloc(64, 0xc3);

const S = SevStatus;
const KNOWN_STATUS = new Set<number>(Object.values(SevStatus));
const FIRMWARE_PAGE: RmpUpdateState = { gpa: 0, assigned: true, pageSize: '4K', immutable: true, asid: 0 };
const HYPERVISOR_PAGE: RmpUpdateState = {
  gpa: 0,
  assigned: false,
  pageSize: '4K',
  immutable: false,
  asid: 0,
};

const footer = parseOvmfFooter(OVMF);
function sectionGpa(name: string): number {
  const s = (footer.sevMetadata?.sections ?? []).find((x) => x.typeName === name);
  if (s === undefined) throw new Error(`OVMF.fd has no ${name} section`);
  return s.gpa;
}
const SECRETS_GPA = sectionGpa('SNP_SECRETS');
const CPUID_GPA = sectionGpa('CPUID');
const SEC_MEM_GPA = sectionGpa('SNP_SEC_MEM');
/** What `owner measure --mode snp` predicts for this launch: MEASUREMENT must stay this, always. */
const LAUNCH_DIGEST = computeLaunchDigest({
  mode: 'snp',
  ovmf: OVMF,
  vcpus: 1,
  vcpuType: 'EPYC-Milan',
  guestFeatures: 0x1n,
}).digest.toString('hex');
const CHIP = chipSecret(SEED, undefined);

/** The SNP commands the firmware implements (SNP_COMMANDS in psp/snp-firmware.ts). */
const IMPLEMENTED: readonly number[] = [
  SevCommand.SNP_INIT,
  SevCommand.SNP_PLATFORM_STATUS,
  SevCommand.SNP_DF_FLUSH,
  SevCommand.SNP_GCTX_CREATE,
  SevCommand.SNP_DECOMMISSION,
  SevCommand.SNP_ACTIVATE,
  SevCommand.SNP_GUEST_STATUS,
  SevCommand.SNP_GUEST_REQUEST,
  SevCommand.SNP_LAUNCH_START,
  SevCommand.SNP_LAUNCH_UPDATE,
  SevCommand.SNP_LAUNCH_FINISH,
  SevCommand.SNP_PAGE_RECLAIM,
  SevCommand.SNP_CONFIG,
  SevCommand.SNP_COMMIT,
];
/** Every other SNP_* command ID: not modelled, so INVALID_COMMAND. */
const UNIMPLEMENTED: readonly number[] = Object.entries(SevCommand)
  .filter(([name, id]) => name.startsWith('SNP_') && !IMPLEMENTED.includes(id))
  .map(([, id]) => id);
/** Commands that, when they succeed, may rewrite RMP entries. */
const RMP_WRITERS = new Set<number>([
  SevCommand.SNP_GCTX_CREATE,
  SevCommand.SNP_DECOMMISSION,
  SevCommand.SNP_PAGE_RECLAIM,
  SevCommand.SNP_LAUNCH_UPDATE,
]);
/** Commands that, when they succeed, may change what SNP_PLATFORM_STATUS reports. */
const PLATFORM_WRITERS = new Set<number>([
  SevCommand.SNP_CONFIG,
  SevCommand.SNP_COMMIT,
  SevCommand.SNP_GCTX_CREATE,
  SevCommand.SNP_DECOMMISSION,
]);

// ---- a launched, attested SNP guest -------------------------------------------------------------------

interface Target {
  readonly name: string;
  readonly address: bigint;
}

interface Machine {
  readonly platform: Platform;
  readonly hv: Hypervisor;
  readonly snp: SnpVm;
  /** VMPCK0..3, regenerated from the seed. */
  readonly vmpck: readonly Buffer[];
  /** The MSG_SEQNO the firmware expects next, per VMPCK (its count + 1). */
  readonly next: bigint[];
  /** False once a (fuzzed) SNP_DECOMMISSION of the guest's context page succeeded. */
  alive: boolean;
  /** Host pages: command buffers; outputs the fuzz asks for; a page handed to the firmware; observation. */
  readonly scratch: number;
  readonly out: number;
  readonly spare: number;
  readonly statusPage: number;
  /** The guest's context page, VMSA and every frame of its RAM and firmware. */
  readonly guestPages: readonly number[];
  readonly hostPages: readonly number[];
  readonly targets: readonly Target[];
  /** The last request the firmware accepted (for replays). */
  lastAccepted: Buffer | undefined;
}

function boot(): Machine {
  const platform = createPlatform({ product: 'milan', seed: SEED, dramBytes: DRAM });
  const hv = new Hypervisor(platform);
  initSnpPlatform(hv);
  const agent = new SnpAttestationAgent(OVMF, {
    paging: platform.soc.paging,
    secretsGpa: SECRETS_GPA,
    pageTableGpa: SEC_MEM_GPA,
    sharedGpa: GHCB_GPA,
    reportData: Buffer.alloc(64, 0x5a),
  });
  const snp = launchSnpFirmware(hv, {
    name: 'snp-fuzz',
    memoryBytes: 9 * 1024 * 1024, // OVMF's SNP sections end at 8.125 MiB
    firmware: OVMF,
    software: agent,
    policy: POLICY,
    vcpus: 1,
    vcpuSignature: cpuidSignature(VCPU_TYPES['EPYC-Milan']),
    guestFeatures: 0x1n,
  });
  runSnpGuest(hv, snp);
  expect(agent.problem).toBeUndefined();
  expect(decodeSnpReport(agent.report as Buffer).measurement.toString('hex')).toBe(LAUNCH_DIGEST);

  // The PSP's key stream: the host's SME key at boot, then SNP_LAUNCH_START's VEK and VMPCK0..3.
  const stream = Drbg.fromSeed(SEED, 'psp-key-rng');
  stream.generate(MEMORY_KEY_MATERIAL_BYTES);
  stream.generate(MEMORY_KEY_MATERIAL_BYTES);
  const vmpck = [0, 1, 2, 3].map(() => stream.generate(32));

  const [scratch, out, spare, statusPage] = [0, 1, 2, 3].map(() => hv.frames.allocate()) as [
    number,
    number,
    number,
    number,
  ];
  // A page the host has handed to the firmware (as for a context page), so that fuzzed GCTX_CREATEs,
  // outputs and responses can also land somewhere valid.
  hv.soc.hostMemory.clflushRange(spare, PAGE_SIZE);
  expect(hv.soc.rmpupdate(spare, FIRMWARE_PAGE)).toBe(0);
  const spa = (gpa: number): bigint => BigInt(snp.vm.spaOf(gpa));
  const targets: Target[] = [
    { name: 'context page', address: BigInt(snp.gctx) },
    { name: 'VMSA', address: BigInt(snp.vmsas[0] as number) },
    { name: 'secrets page', address: spa(SECRETS_GPA) },
    { name: 'CPUID page', address: spa(CPUID_GPA) },
    { name: 'page-table page', address: spa(SEC_MEM_GPA) },
    { name: 'reset-vector page', address: spa(0xffff_f000) },
    { name: 'GHCB', address: spa(GHCB_GPA) },
    { name: 'guest request page', address: spa(REQUEST_GPA) },
    { name: 'unassigned guest RAM', address: spa(0x20_0000) },
    { name: 'bounce request page', address: BigInt(snp.bounce.request) },
    { name: 'bounce response page', address: BigInt(snp.bounce.response) },
    { name: 'firmware page', address: BigInt(spare) },
    { name: 'host output page', address: BigInt(out) },
    { name: 'context page with the C-bit', address: BigInt(platform.soc.paging.withCBit(snp.gctx)) },
    { name: 'zero', address: 0n },
    { name: 'last DRAM page', address: BigInt(DRAM - PAGE_SIZE) },
    { name: 'end of DRAM', address: BigInt(DRAM) },
    { name: '2^52', address: 1n << 52n },
    { name: 'all ones', address: (1n << 64n) - 1n },
  ];
  return {
    platform,
    hv,
    snp,
    vmpck,
    next: [3n, 1n, 1n, 1n], // the agent's request used VMPCK0's sequence numbers 1 and 2
    alive: true,
    scratch,
    out,
    spare,
    statusPage,
    guestPages: [snp.gctx, ...snp.vmsas, ...snp.vm.frames.values()],
    hostPages: [snp.bounce.request, snp.bounce.response, scratch, out, spare, statusPage, snp.vm.vmcb],
    targets,
    lastAccepted: undefined,
  };
}

/**
 * The machine a property run left behind, if that run completed and the guest still exists: every check
 * compares before with after, so a run may start where the last one ended. Booting (launching OVMF) is
 * what costs; a run that fails or decommissions the guest makes the next one boot afresh.
 */
let kept: Machine | undefined;
function reuse(): Machine {
  const m = kept?.alive === true ? kept : boot();
  kept = undefined;
  return m;
}

// ---- what the host (and the guest) can observe ----------------------------------------------------------

interface Observation {
  /** RMP: the guest's pages, the host's pages and every assigned page (spa:entry). */
  readonly rmp: { readonly guest: string; readonly host: string; readonly assigned: readonly string[] };
  readonly platform: unknown;
  readonly guest: unknown;
  /** The signed part of a fresh report (hex), while the guest exists. */
  readonly report: string;
}

/** The RMP entries of `pages` that are not a plain hypervisor page's, as "spa:fields". */
function rmpView(m: Machine, pages: readonly number[]): string {
  const out: string[] = [];
  for (const spa of pages) {
    const e = m.platform.soc.rmpread(spa);
    const perms = e.vmplPerms;
    if (
      !e.assigned &&
      !e.immutable &&
      !e.validated &&
      !e.vmsa &&
      !e.metadata &&
      e.asid === 0 &&
      e.gpa === 0 &&
      e.pageSize === '4K' &&
      perms[0] === 0 &&
      perms[1] === 0 &&
      perms[2] === 0 &&
      perms[3] === 0
    )
      continue;
    out.push(`${spa.toString(16)}:${encodeRmpEntry(e).toString('hex')}`);
  }
  return out.join(' ');
}

/** Runs `command` with the observation page handed to the firmware, as Linux does for status commands. */
function intoFirmwarePage(
  m: Machine,
  issue: (page: bigint) => number,
  size: number,
): { status: number; out: Buffer } {
  const mem = m.platform.soc.hostMemory;
  const page = m.statusPage;
  mem.write(page, Buffer.alloc(PAGE_SIZE), false);
  mem.clflushRange(page, PAGE_SIZE);
  expect(m.platform.soc.rmpupdate(page, FIRMWARE_PAGE)).toBe(0);
  const status = issue(BigInt(page));
  expect(
    m.hv.driver.raw(SevCommand.SNP_PAGE_RECLAIM, SnpPageReclaimBuffer, { paddr: BigInt(page) }).status,
  ).toBe(S.SUCCESS);
  expect(m.platform.soc.rmpupdate(page, HYPERVISOR_PAGE)).toBe(0);
  return { status, out: mem.read(page, size, false) };
}

function platformStatus(m: Machine): unknown {
  const r = intoFirmwarePage(
    m,
    (statusPaddr) =>
      m.hv.driver.raw(SevCommand.SNP_PLATFORM_STATUS, SnpPlatformStatusBuffer, { statusPaddr }).status,
    SnpPlatformStatus.size,
  );
  expect(r.status).toBe(S.SUCCESS);
  return SnpPlatformStatus.decode(r.out);
}

function guestStatus(m: Machine): unknown {
  const r = intoFirmwarePage(
    m,
    (statusPaddr) =>
      m.hv.driver.raw(SevCommand.SNP_GUEST_STATUS, SnpGuestStatusBuffer, {
        gctxPaddr: BigInt(m.snp.gctx),
        statusPaddr,
      }).status,
    SnpGuestStatus.size,
  );
  return r.status === S.SUCCESS
    ? { status: r.status, ...SnpGuestStatus.decode(r.out) }
    : { status: r.status };
}

/** A sealed request the guest would send under VMPCK `index` with the next sequence number. */
function reportRequest(m: Machine, index = 0, reportData = REPORT_DATA): Buffer {
  return sealSnpGuestMessage({
    vmpck: m.vmpck[index] as Buffer,
    vmpckIndex: index,
    seqno: m.next[index] as bigint,
    type: SnpMsgType.REPORT_REQ,
    version: 1,
    payload: encodeSnpReportRequest({ reportData, vmpl: index, keySel: SnpKeySel.VLEK_OR_VCEK }),
  });
}

function writeGuestPage(m: Machine, gpa: number, bytes: Buffer): void {
  const page = Buffer.alloc(PAGE_SIZE);
  bytes.copy(page, 0, 0, Math.min(bytes.length, PAGE_SIZE));
  m.platform.soc.hostMemory.write(m.snp.vm.spaOf(gpa), page, false);
}

function readGuestPage(m: Machine, gpa: number): Buffer {
  return m.platform.soc.hostMemory.read(m.snp.vm.spaOf(gpa), PAGE_SIZE, false);
}

const vcekCache = new Map<bigint, ReturnType<typeof vcekPublicKey>>();
function vcekOf(tcb: bigint): ReturnType<typeof vcekPublicKey> {
  let k = vcekCache.get(tcb);
  if (k === undefined) {
    k = vcekPublicKey(CHIP, 'milan', tcb);
    vcekCache.set(tcb, k);
  }
  return k;
}

/** A report checked like a verifier would: MEASUREMENT, REPORT_DATA, VMPL, and the VCEK's signature. */
function checkReport(raw: Buffer, reportData: Buffer, vmpl: number): void {
  const report = decodeSnpReport(raw);
  expect(report.measurement.toString('hex')).toBe(LAUNCH_DIGEST);
  expect(report.reportData).toEqual(reportData);
  expect(report.vmpl).toBe(vmpl);
  expect(report.policy).toBe(POLICY);
  if (report.signingKey === 'VCEK') {
    const sig = { r: report.signatureR, s: report.signatureS };
    expect(ecdsaP384Verify(vcekOf(report.reportedTcb), 'sha384', raw.subarray(0, 0x2a0), sig)).toBe(true);
  } else {
    expect(report.signingKey).toBe('none');
    expect(report.maskChipKey).toBe(true);
  }
}

/** The guest attests (VMPCK0, through its shared pages and the host's relay); the signed body, hex. */
function attest(m: Machine): string {
  if (!m.alive) return 'decommissioned';
  const seqno = m.next[0] as bigint;
  writeGuestPage(m, REQUEST_GPA, reportRequest(m));
  const status = forwardGuestRequest(m.hv, m.snp, REQUEST_GPA, RESPONSE_GPA);
  expect(status, 'the guest can no longer attest').toBe(S.SUCCESS);
  m.next[0] = seqno + 2n;
  const opened = openSnpGuestMessage(readGuestPage(m, RESPONSE_GPA), m.vmpck[0] as Buffer);
  expect(opened.ok).toBe(true);
  if (!opened.ok) return 'unreadable';
  expect([opened.header.msgSeqno, opened.header.msgType]).toEqual([seqno + 1n, SnpMsgType.REPORT_RSP]);
  const rsp = decodeSnpReportResponse(opened.payload);
  expect(rsp.status).toBe(S.SUCCESS);
  checkReport(rsp.report, REPORT_DATA, 0);
  return rsp.report.subarray(0, 0x2a0).toString('hex');
}

/** What the host sees now; `report`, if given, stands in for a fresh attestation (see the fuzz loop). */
function observe(m: Machine, report?: string): Observation {
  const assigned = m.platform.soc
    .rmpAssignedPages()
    .map(({ spa, entry }) => `${spa.toString(16)}:${encodeRmpEntry(entry).toString('hex')}`);
  return {
    rmp: { guest: rmpView(m, m.guestPages), host: rmpView(m, m.hostPages), assigned },
    platform: platformStatus(m),
    guest: guestStatus(m),
    report: report ?? attest(m),
  };
}

// ---- issuing a (fuzzed) command ---------------------------------------------------------------------------

/** Where the command buffer is: the scratch page through the C-bit (as the driver does), without it, or a target. */
type Placement = 'scratch' | 'scratch-plain' | number;

function issueBuffer(m: Machine, command: number, bytes: Buffer, placement: Placement): number {
  const mem = m.platform.soc.hostMemory;
  if (placement === 'scratch' || placement === 'scratch-plain') {
    const encrypted = placement === 'scratch';
    mem.write(m.scratch, bytes, encrypted);
    return m.platform.psp.issue(command, encrypted ? m.platform.soc.paging.withCBit(m.scratch) : m.scratch);
  }
  // The PSP reads whatever is at the target (possibly a guest's private page, or outside DRAM).
  const target = m.targets[placement % m.targets.length] as Target;
  return m.platform.psp.issue(command, Number(target.address));
}

/** The command buffer the PSP will read: the host's bytes, or what lies at the target (through C=0). */
function bufferAsRead(m: Machine, bytes: Buffer, placement: Placement): Buffer {
  if (typeof placement === 'string') return bytes;
  const at = Number((m.targets[placement % m.targets.length] as Target).address);
  if (!Number.isSafeInteger(at) || at + bytes.length > DRAM) return Buffer.alloc(bytes.length);
  return m.platform.soc.hostMemory.read(at, bytes.length, false);
}

/** Around an SNP_GUEST_REQUEST, as forwardGuestRequest does: a fresh request, a firmware response page. */
function stageGuestRequest(m: Machine): { seqno: bigint } {
  const mem = m.platform.soc.hostMemory;
  const { request, response } = m.snp.bounce;
  const seqno = m.next[0] as bigint;
  const page = Buffer.alloc(PAGE_SIZE);
  reportRequest(m, 0, Buffer.alloc(64, 0x11)).copy(page);
  mem.write(request, page, false);
  mem.clflushRange(request, PAGE_SIZE);
  mem.clflushRange(response, PAGE_SIZE);
  expect(m.platform.soc.rmpupdate(response, FIRMWARE_PAGE)).toBe(0);
  return { seqno };
}

function unstageGuestRequest(m: Machine): void {
  const { response } = m.snp.bounce;
  expect(
    m.hv.driver.raw(SevCommand.SNP_PAGE_RECLAIM, SnpPageReclaimBuffer, { paddr: BigInt(response) }).status,
  ).toBe(S.SUCCESS);
  expect(m.platform.soc.rmpupdate(response, HYPERVISOR_PAGE)).toBe(0);
}

/** The guest's next request under VMPCK0 went through: its answer must open under VMPCK0. */
function acceptedGuestRequest(m: Machine, bytes: Buffer, seqno: bigint): void {
  const cmd = SnpGuestRequestBuffer.decode(bytes);
  const response = Number(cmd.responsePaddr & ~0xfffn);
  const opened = openSnpGuestMessage(
    m.platform.soc.hostMemory.read(response, PAGE_SIZE, false),
    m.vmpck[0] as Buffer,
  );
  expect(opened.ok).toBe(true);
  expect(opened.header.msgSeqno).toBe(seqno + 1n);
  m.next[0] = seqno + 2n;
}

/** What may differ after a command that answered `status`, and what never may. */
function checkStep(
  m: Machine,
  before: Observation,
  after: Observation,
  command: number,
  status: number,
): void {
  const what = `${commandName(command)} → 0x${status.toString(16)}`;
  if (status !== S.SUCCESS) {
    // A failed command changes nothing anyone can observe.
    expect(after, what).toEqual(before);
    return;
  }
  if (!RMP_WRITERS.has(command)) expect(after.rmp, what).toEqual(before.rmp);
  if (!PLATFORM_WRITERS.has(command)) expect(after.platform, what).toEqual(before.platform);
  if (!m.alive) return;
  // Nothing but its own DECOMMISSION touches the running guest: its pages, its state, its report.
  expect(after.rmp.guest, what).toBe(before.rmp.guest);
  expect(after.guest, what).toEqual(before.guest);
  if (command !== SevCommand.SNP_CONFIG && command !== SevCommand.SNP_COMMIT)
    expect(after.report, what).toBe(before.report);
}

// ---- building buffers ----------------------------------------------------------------------------------

/** A valid command buffer for `command` aimed at the running guest (undefined layout: 0x40 zero bytes). */
function template(m: Machine, command: number): Buffer {
  const gctxPaddr = BigInt(m.snp.gctx);
  switch (command) {
    case SevCommand.SNP_PLATFORM_STATUS:
      return SnpPlatformStatusBuffer.encode({ statusPaddr: BigInt(m.out) });
    case SevCommand.SNP_GCTX_CREATE:
      return SnpGctxBuffer.encode({ gctxPaddr: BigInt(m.spare) });
    case SevCommand.SNP_DECOMMISSION:
      return SnpGctxBuffer.encode({ gctxPaddr });
    case SevCommand.SNP_ACTIVATE:
      return SnpActivateBuffer.encode({ gctxPaddr, asid: m.snp.vm.asid });
    case SevCommand.SNP_GUEST_STATUS:
      return SnpGuestStatusBuffer.encode({ gctxPaddr, statusPaddr: BigInt(m.out) });
    case SevCommand.SNP_GUEST_REQUEST:
      return SnpGuestRequestBuffer.encode({
        gctxPaddr,
        requestPaddr: BigInt(m.snp.bounce.request),
        responsePaddr: BigInt(m.snp.bounce.response),
      });
    case SevCommand.SNP_LAUNCH_START:
      return SnpLaunchStartBuffer.encode({ gctxPaddr, policy: POLICY });
    case SevCommand.SNP_LAUNCH_UPDATE:
      return SnpLaunchUpdateBuffer.encode({
        gctxPaddr,
        pageInfo: encodeSnpLaunchUpdatePageInfo({
          pageSize: 0,
          pageType: SnpPageType.NORMAL,
          imiPage: false,
        }),
        pagePaddr: BigInt(m.snp.vm.spaOf(0xffff_f000)),
      });
    case SevCommand.SNP_LAUNCH_FINISH:
      return SnpLaunchFinishBuffer.encode({ gctxPaddr });
    case SevCommand.SNP_PAGE_RECLAIM:
      return SnpPageReclaimBuffer.encode({ paddr: BigInt(m.snp.vm.spaOf(SECRETS_GPA)) });
    case SevCommand.SNP_CONFIG:
      return SnpConfigBuffer.encode({ reportedTcb: 0n, flags: 0 });
    case SevCommand.SNP_COMMIT:
      return SnpCommitBuffer.encode({ length: SnpCommitBuffer.size });
    default:
      return Buffer.alloc(snpCommandBufferLayout(command)?.size ?? 0x40);
  }
}

function slots(layout: SnpCommandLayout | undefined, size: number, type: 'u64' | 'u32'): number[] {
  const width = type === 'u64' ? 8 : 4;
  const fromLayout =
    layout === undefined
      ? []
      : Object.values(layout.fields as Record<string, { offset: number; type: string }>)
          .filter((f) => f.type === type)
          .map((f) => f.offset);
  return fromLayout.length > 0
    ? fromLayout
    : Array.from({ length: Math.floor(size / width) }, (_, i) => i * width);
}

type Mutation =
  | { kind: 'flip'; at: number }
  | { kind: 'byte'; at: number; value: number }
  | { kind: 'address'; slot: number; target: number; low: number }
  | { kind: 'u32'; slot: number; value: number }
  | { kind: 'reserved'; which: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('byte' as const),
      at: fc.nat(),
      value: fc.integer({ min: 0, max: 255 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('address' as const),
      slot: fc.nat(),
      target: fc.nat(),
      low: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.integer({ min: 1, max: 0xfff })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('u32' as const),
      slot: fc.nat(),
      value: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0xffff_ffff })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('reserved' as const), which: fc.nat(), value: fc.nat() }),
  },
);

/** Interesting u32 values (ASIDs around the guest's and the SEV-ES/SEV boundary, all ones), by index. */
function u32Value(m: Machine, v: number): number {
  const p = m.platform.profile;
  const asid = m.snp.vm.asid;
  const interesting = [0, 1, asid, asid + 1, p.minSevAsid - 1, p.minSevAsid, p.maxSevAsid, 0xffff_ffff, 4];
  return v < interesting.length ? (interesting[v] as number) : v >>> 0;
}

function lowestBit(mask: bigint): bigint {
  return mask & -mask;
}

function setReserved(buf: Buffer, layout: SnpCommandLayout, which: number, value: number): void {
  if (layout.reserved.length === 0) return;
  const r = layout.reserved[which % layout.reserved.length] as (typeof layout.reserved)[number];
  if (r.mask === undefined) {
    buf[r.offset + (value % r.length)] = (value % 255) + 1;
    return;
  }
  let v = 0n;
  for (let i = r.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[r.offset + i] as number);
  const bits = BigInt(value) & r.mask;
  v |= bits !== 0n ? bits : lowestBit(r.mask);
  for (let i = 0; i < r.length; i++) buf[r.offset + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

function mutate(m: Machine, buf: Buffer, layout: SnpCommandLayout | undefined, mu: Mutation): void {
  if (buf.length === 0) return;
  switch (mu.kind) {
    case 'flip': {
      const bit = mu.at % (buf.length * 8);
      buf[bit >> 3] = (buf[bit >> 3] as number) ^ (1 << (bit & 7));
      return;
    }
    case 'byte':
      buf[mu.at % buf.length] = mu.value;
      return;
    case 'address': {
      const at = slots(layout, buf.length, 'u64');
      const target = m.targets[mu.target % m.targets.length] as Target;
      if (at.length > 0)
        buf.writeBigUInt64LE(BigInt.asUintN(64, target.address + BigInt(mu.low)), at[mu.slot % at.length]);
      return;
    }
    case 'u32': {
      const at = slots(layout, buf.length, 'u32');
      if (at.length > 0) buf.writeUInt32LE(u32Value(m, mu.value), at[mu.slot % at.length]);
      return;
    }
    case 'reserved':
      if (layout !== undefined) setReserved(buf, layout, mu.which, mu.value);
      return;
  }
}

// ---- guest messages -------------------------------------------------------------------------------------

/** `arb` one time in five, else null. */
function rarely<T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
}

type Seq = { kind: 'next' } | { kind: 'delta'; d: number } | { kind: 'abs'; v: bigint };

interface MessageOp {
  vmpck: number;
  seqno: Seq;
  type: number;
  version: number;
  payload: Buffer;
  mutations: MessageMutation[];
  tail: Buffer;
  replay: boolean;
}

type MessageMutation =
  | { kind: 'flip'; at: number }
  | { kind: 'field'; at: number; width: 1 | 2 | 8; value: bigint }
  | { kind: 'truncate'; keep: number };

/** Header fields by offset and width: seqno, reserved, algo, header version/size, type, version, size, VMPCK. */
const HEADER_FIELDS: readonly [number, 1 | 2 | 8][] = [
  [0x20, 8],
  [0x28, 1],
  [0x30, 1],
  [0x31, 1],
  [0x32, 2],
  [0x34, 1],
  [0x35, 1],
  [0x36, 2],
  [0x3c, 1],
  [0x3d, 1],
  [0x10, 1], // the 16 bytes after the tag
];

const reportPayload = fc
  .record({
    reportData: fc.uint8Array({ minLength: 64, maxLength: 64 }),
    vmpl: fc.oneof(
      { weight: 4, arbitrary: fc.integer({ min: 0, max: 4 }) },
      fc.integer({ min: 0, max: 0xffff_ffff }),
    ),
    keySel: fc.integer({ min: 0, max: 3 }),
    reserved: rarely(fc.integer({ min: 0x44, max: 0x5f })),
  })
  .map(({ reportData, vmpl, keySel, reserved }) => {
    const p = encodeSnpReportRequest({ reportData: Buffer.from(reportData), vmpl, keySel });
    if (reserved !== null) p[reserved] = reserved === 0x44 ? (p[0x44] as number) | 0x80 : 0xff;
    return p;
  });

const keyPayload = fc
  .record({
    rootKeySelect: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.constant(1)),
    keySel: fc.integer({ min: 0, max: 3 }),
    guestFieldSelect: fc.oneof(
      { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 0x3fn }) },
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    ),
    vmpl: fc.oneof(
      { weight: 4, arbitrary: fc.integer({ min: 0, max: 4 }) },
      fc.integer({ min: 0, max: 0xffff_ffff }),
    ),
    guestSvn: fc.oneof(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 0xffff_ffff })),
    tcbVersion: fc.oneof(
      { weight: 2, arbitrary: fc.constant(0x7308_0000_0000_0003n) }, // Milan's committed TCB
      fc.constant(0n),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    ),
    launchMitVector: rarely(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
  })
  .map(({ launchMitVector, ...r }) =>
    encodeSnpKeyRequest(launchMitVector === null ? r : { ...r, launchMitVector }),
  );

const messageOp: fc.Arbitrary<MessageOp> = fc.record({
  vmpck: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, fc.integer({ min: 1, max: 3 })),
  seqno: fc.oneof(
    { weight: 6, arbitrary: fc.constant<Seq>({ kind: 'next' }) },
    { weight: 2, arbitrary: fc.integer({ min: -4, max: 4 }).map((d): Seq => ({ kind: 'delta', d })) },
    {
      weight: 1,
      arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v): Seq => ({ kind: 'abs', v })),
    },
  ),
  type: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom<number>(SnpMsgType.REPORT_REQ, SnpMsgType.KEY_REQ) },
    fc.integer({ min: 0, max: 255 }),
  ),
  version: fc.oneof({ weight: 8, arbitrary: fc.constant(1) }, fc.integer({ min: 0, max: 255 })),
  payload: fc.oneof(
    { weight: 4, arbitrary: reportPayload },
    { weight: 3, arbitrary: keyPayload },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 0x200 }).map((b) => Buffer.from(b)) },
  ),
  mutations: fc.array(
    fc.oneof(
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat() }) },
      {
        weight: 3,
        arbitrary: fc
          .record({
            field: fc.constantFrom(...HEADER_FIELDS),
            value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
          })
          .map(({ field: [at, width], value }): MessageMutation => ({ kind: 'field', at, width, value })),
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }) },
    ),
    { maxLength: 3 },
  ),
  tail: fc.uint8Array({ minLength: 0, maxLength: 0x40 }).map((b) => Buffer.from(b)),
  replay: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, fc.constant(true)),
});

function buildMessage(m: Machine, op: MessageOp): Buffer {
  if (op.replay && m.lastAccepted !== undefined) return Buffer.from(m.lastAccepted);
  const next = m.next[op.vmpck] as bigint;
  const seqno =
    op.seqno.kind === 'next'
      ? next
      : op.seqno.kind === 'delta'
        ? BigInt.asUintN(64, next + BigInt(op.seqno.d))
        : op.seqno.v;
  const msg = sealSnpGuestMessage({
    vmpck: m.vmpck[op.vmpck] as Buffer,
    vmpckIndex: op.vmpck,
    seqno,
    type: op.type,
    version: op.version,
    payload: op.payload,
  });
  const page = Buffer.alloc(PAGE_SIZE);
  msg.copy(page);
  op.tail.copy(page, msg.length);
  const used = msg.length + op.tail.length;
  for (const mu of op.mutations) {
    if (mu.kind === 'flip') {
      const bit = mu.at % (used * 8);
      page[bit >> 3] = (page[bit >> 3] as number) ^ (1 << (bit & 7));
    } else if (mu.kind === 'truncate') {
      page.fill(0, SNP_GUEST_MSG_HEADER_SIZE + (mu.keep % Math.max(1, used - SNP_GUEST_MSG_HEADER_SIZE)));
    } else if (mu.width === 8) {
      page.writeBigUInt64LE(BigInt.asUintN(64, mu.value), mu.at);
    } else if (mu.width === 2) {
      page.writeUInt16LE(Number(mu.value & 0xffffn), mu.at);
    } else {
      page[mu.at] = Number(mu.value & 0xffn);
    }
  }
  return page;
}

/** What the firmware must make of a request page, judged with the guest's own keys. */
type Verdict =
  | { kind: 'malformed' }
  | { kind: 'forged' }
  | { kind: 'stale' }
  | {
      kind: 'fresh';
      vmpck: number;
      seqno: bigint;
      type: number;
      version: number;
      size: number;
      payload: Buffer;
    };

function judge(m: Machine, page: Buffer): Verdict {
  let header;
  try {
    header = decodeSnpGuestMessageHeader(page);
  } catch (err) {
    if (err instanceof AbiDecodeError) return { kind: 'malformed' };
    throw err;
  }
  const opened = openSnpGuestMessage(page, m.vmpck[header.msgVmpck] as Buffer);
  if (!opened.ok) return { kind: 'forged' };
  if (header.msgSeqno !== m.next[header.msgVmpck]) return { kind: 'stale' };
  return {
    kind: 'fresh',
    vmpck: header.msgVmpck,
    seqno: header.msgSeqno,
    type: header.msgType,
    version: header.msgVersion,
    size: header.msgSize,
    payload: opened.payload,
  };
}

/** The firmware answered a fresh request: the answer opens under the same VMPCK and is the right one. */
function checkAnswer(m: Machine, v: Extract<Verdict, { kind: 'fresh' }>): void {
  const opened = openSnpGuestMessage(readGuestPage(m, RESPONSE_GPA), m.vmpck[v.vmpck] as Buffer);
  expect(opened.ok, 'the response does not open under the request’s VMPCK').toBe(true);
  if (!opened.ok) return;
  expect(opened.header).toMatchObject({
    msgSeqno: v.seqno + 1n,
    msgType: v.type + 1,
    msgVersion: 1,
    msgVmpck: v.vmpck,
  });
  if (v.type === SnpMsgType.REPORT_REQ) {
    const rsp = decodeSnpReportResponse(opened.payload);
    expect([S.SUCCESS, S.INVALID_PARAM, S.INVALID_KEY]).toContain(rsp.status);
    let req;
    try {
      req = decodeSnpReportRequest(v.payload);
    } catch (err) {
      expect(err).toBeInstanceOf(AbiDecodeError);
      expect(rsp.status).toBe(S.INVALID_PARAM);
      return;
    }
    // A VMPCK-n sender never gets a report for a more privileged VMPL.
    if (req.vmpl < v.vmpck || req.vmpl > 3 || req.reservedNonZero !== undefined)
      expect(rsp.status).not.toBe(S.SUCCESS);
    if (rsp.status === S.SUCCESS) checkReport(rsp.report, req.reportData, req.vmpl);
    else expect(rsp.report).toEqual(Buffer.alloc(rsp.report.length));
  } else {
    const rsp = decodeSnpKeyResponse(opened.payload);
    expect([S.SUCCESS, S.INVALID_PARAM, S.INVALID_KEY]).toContain(rsp.status);
    let req;
    try {
      req = decodeSnpKeyRequest(v.payload);
    } catch (err) {
      expect(err).toBeInstanceOf(AbiDecodeError);
      expect(rsp.status).toBe(S.INVALID_PARAM);
      return;
    }
    if (req.vmpl < v.vmpck || req.reservedNonZero !== undefined || req.rootKeySelect !== 0)
      expect(rsp.status).not.toBe(S.SUCCESS);
    if (rsp.status === S.SUCCESS) expect(rsp.derivedKey).not.toEqual(Buffer.alloc(32));
    else expect(rsp.derivedKey).toEqual(Buffer.alloc(32));
  }
}

// ---- the properties ---------------------------------------------------------------------------------------

const commandOp = fc.record({
  command: fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom(...IMPLEMENTED) },
    { weight: 2, arbitrary: fc.constantFrom(...UNIMPLEMENTED) },
    { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xcf }) },
  ),
  random: rarely(fc.uint8Array({ minLength: 0x40, maxLength: 0x40 })),
  mutations: fc.array(mutation, { minLength: 0, maxLength: 3 }),
  placement: fc.oneof(
    { weight: 12, arbitrary: fc.constant<Placement>('scratch') },
    { weight: 2, arbitrary: fc.constant<Placement>('scratch-plain') },
    { weight: 1, arbitrary: fc.nat().map((n): Placement => n) },
  ),
});

describe('SNP mailbox under bad input, with an attested SNP guest running', () => {
  it('random and mutated SNP command buffers: a known status, never an internal failure; failures change nothing, and the launch digest never changes', () => {
    let issued = 0;
    let succeeded = 0;
    const statuses = new Set<number>();
    fc.assert(
      fc.property(fc.array(commandOp, { minLength: 12, maxLength: 28 }), (ops) => {
        const m = reuse();
        let before = observe(m);
        for (const [i, op] of ops.entries()) {
          const { command, placement } = op;
          const layout = snpCommandBufferLayout(command);
          const size = layout?.size ?? 0x40;
          const bytes = op.random !== null ? Buffer.from(op.random).subarray(0, size) : template(m, command);
          for (const mu of op.mutations) mutate(m, bytes, layout, mu);
          const staged = command === SevCommand.SNP_GUEST_REQUEST ? stageGuestRequest(m) : undefined;
          const read = bufferAsRead(m, bytes, placement);
          const logLength = m.platform.psp.log.length;
          let status = -1;
          expect(() => {
            status = issueBuffer(m, command, bytes, placement);
          }).not.toThrow();
          issued++;
          statuses.add(status);
          const what = `${commandName(command)} ${bytes.toString('hex')} at ${String(placement)}`;
          expect(KNOWN_STATUS.has(status), what).toBe(true);
          // Nothing a handler does with host input may fail inside the firmware.
          expect(status, what).not.toBe(S.HWERROR_PLATFORM);
          expect(m.platform.psp.log.slice(logLength)).toEqual([{ command, status }]);
          if (!IMPLEMENTED.includes(command)) expect(status, what).toBe(S.INVALID_COMMAND);
          if (status === S.SUCCESS) {
            succeeded++;
            if (command === SevCommand.SNP_GUEST_REQUEST && staged !== undefined)
              acceptedGuestRequest(m, read, staged.seqno);
            if (
              command === SevCommand.SNP_DECOMMISSION &&
              SnpGctxBuffer.decode(read).gctxPaddr === BigInt(m.snp.gctx)
            )
              m.alive = false;
          }
          if (staged !== undefined) unstageGuestRequest(m);
          // The guest attests after every success, every fourth command and the last: a failed command that
          // had hurt its ability to attest would show at the next attestation (and fast-check shrinks to it).
          const fresh = status === S.SUCCESS || i % 4 === 3 || i === ops.length - 1;
          const after = observe(m, fresh ? undefined : before.report);
          checkStep(m, before, after, command, status);
          if (!m.alive) expect(after.guest).toEqual({ status: S.INVALID_GUEST });
          before = after;
        }
        kept = m;
      }),
      { seed: 0x5_4a11, numRuns: 6 },
    );
    // Non-vacuity: the fuzz reached past the reserved-field checks into the handlers, and some of it succeeded.
    expect(issued).toBeGreaterThan(80);
    expect(succeeded).toBeGreaterThan(10);
    for (const s of [
      S.SUCCESS,
      S.INVALID_PARAM,
      S.INVALID_ADDRESS,
      S.INVALID_GUEST,
      S.INVALID_GUEST_STATE,
      S.INVALID_PAGE_STATE,
      S.INVALID_COMMAND,
    ])
      expect(statuses).toContain(s);
  });

  it('random and mutated guest messages in the request page: only a fresh message under a VMPCK is answered, the answer is the right one, and nothing else changes', () => {
    const verdicts = new Map<string, number>();
    /** Message type → the VMPCKs under which a request of that type was answered. */
    const answered = new Map<number, Set<number>>();
    fc.assert(
      fc.property(fc.array(messageOp, { minLength: 10, maxLength: 20 }), (ops) => {
        const m = reuse();
        let before = observe(m);
        for (const [i, op] of ops.entries()) {
          const page = buildMessage(m, op);
          const verdict = judge(m, page);
          verdicts.set(verdict.kind, (verdicts.get(verdict.kind) ?? 0) + 1);
          writeGuestPage(m, REQUEST_GPA, page);
          writeGuestPage(m, RESPONSE_GPA, Buffer.alloc(0));
          const logLength = m.platform.psp.log.length;
          let status = -1;
          expect(() => {
            status = forwardGuestRequest(m.hv, m.snp, REQUEST_GPA, RESPONSE_GPA);
          }).not.toThrow();
          const what = `${verdict.kind}: ${page.subarray(0, 0x80).toString('hex')}`;
          expect(KNOWN_STATUS.has(status), what).toBe(true);
          expect(m.platform.psp.log.slice(logLength)).toEqual([
            { command: SevCommand.SNP_GUEST_REQUEST, status },
            { command: SevCommand.SNP_PAGE_RECLAIM, status: S.SUCCESS },
          ]);
          switch (verdict.kind) {
            case 'malformed':
              expect(status, what).toBe(S.INVALID_PARAM);
              break;
            case 'forged':
              // Without the VMPCK no message authenticates (ASPFW checks MSG_SIZE alignment before that).
              expect([S.BAD_MEASUREMENT, S.INVALID_PARAM], what).toContain(status);
              break;
            case 'stale':
              expect([S.AEAD_OFLOW, S.INVALID_PARAM], what).toContain(status);
              break;
            case 'fresh': {
              const supported =
                verdict.version === 1 &&
                (verdict.type === SnpMsgType.REPORT_REQ || verdict.type === SnpMsgType.KEY_REQ);
              if (!supported) expect(status, what).toBe(S.INVALID_PARAM);
              else if (verdict.size > 0 && verdict.size % 16 === 0) expect(status, what).toBe(S.SUCCESS);
              // (A MSG_SIZE that is zero or not a multiple of 16: see the expected failure below.)
              if (status === S.SUCCESS) {
                checkAnswer(m, verdict);
                answered.set(verdict.type, (answered.get(verdict.type) ?? new Set()).add(verdict.vmpck));
                m.next[verdict.vmpck] = verdict.seqno + 2n;
                m.lastAccepted = page;
              }
              break;
            }
          }
          const fresh = status === S.SUCCESS || i % 4 === 3 || i === ops.length - 1;
          const after = observe(m, fresh ? undefined : before.report);
          // SNP_GUEST_REQUEST, answered or not, changes no RMP entry, platform or guest state, or report.
          expect(after, what).toEqual(before);
          before = after;
        }
        kept = m;
      }),
      { seed: 0x5_4a12, numRuns: 8 },
    );
    // Non-vacuity: every kind of request was tried, and reports and keys were answered under several VMPCKs.
    expect([...verdicts.keys()].sort()).toEqual(['forged', 'fresh', 'malformed', 'stale']);
    expect(answered.get(SnpMsgType.REPORT_REQ)?.size).toBeGreaterThan(1);
    expect(answered.get(SnpMsgType.KEY_REQ)?.size).toBeGreaterThan(0);
  });

  it('each reserved field of each SNP command buffer, set alone, answers INVALID_PARAM; out-of-range addresses answer INVALID_ADDRESS; nothing changes', () => {
    const m = boot();
    const before = observe(m);
    let checked = 0;
    const run = (command: number, buf: Buffer): number => {
      const staged = command === SevCommand.SNP_GUEST_REQUEST ? stageGuestRequest(m) : undefined;
      const status = issueBuffer(m, command, buf, 'scratch');
      if (staged !== undefined) unstageGuestRequest(m);
      checked++;
      return status;
    };
    for (const command of IMPLEMENTED) {
      const layout = snpCommandBufferLayout(command);
      if (layout === undefined) continue;
      for (const r of layout.reserved) {
        const variants =
          r.mask === undefined
            ? [
                [r.offset, 0x01],
                [r.offset + r.length - 1, 0x80],
              ]
            : [lowestBit(r.mask), 1n << BigInt(r.mask.toString(2).length - 1)].map((bit) => {
                const i = bit.toString(2).length - 1;
                return [r.offset + (i >> 3), 1 << (i & 7)];
              });
        for (const [at, bit] of variants as [number, number][]) {
          const buf = template(m, command);
          buf[at] = (buf[at] as number) | bit;
          expect(run(command, buf), `${commandName(command)} ${r.name} byte 0x${at.toString(16)}`).toBe(
            S.INVALID_PARAM,
          );
        }
      }
      const addresses = Object.entries(
        layout.fields as Record<string, { offset: number; type: string }>,
      ).filter(([name, f]) => f.type === 'u64' && /paddr$/i.test(name));
      for (const [name, f] of addresses) {
        const original = template(m, command).readBigUInt64LE(f.offset);
        const bad = [
          BigInt(DRAM),
          (1n << 52n) - BigInt(PAGE_SIZE),
          BigInt(m.platform.soc.paging.withCBit(Number(original & ~0xfffn))),
          (1n << 64n) - BigInt(PAGE_SIZE),
        ];
        for (const address of bad) {
          const buf = template(m, command);
          buf.writeBigUInt64LE(address, f.offset);
          const status = run(command, buf);
          const what = `${commandName(command)} ${name} = 0x${address.toString(16)}`;
          // Addresses a running guest's command never reads (no ID block, no migration agent).
          if (['maGctxPaddr', 'idBlockPaddr', 'idAuthPaddr'].includes(name))
            expect(status, what).toBe(S.INVALID_GUEST_STATE);
          else expect(status, what).toBe(S.INVALID_ADDRESS);
        }
      }
    }
    expect(checked).toBeGreaterThan(60);
    expect(observe(m)).toEqual(before);
  });
});

let shared: Machine | undefined;
/** One machine for the comparisons below (each leaves it as it found it, sequence numbers tracked). */
function machine(): Machine {
  shared ??= boot();
  return shared;
}

/** SNP_COMMIT with LENGTH `length` on a machine with a running guest. */
function commit(length: number): number {
  const m = machine();
  return issueBuffer(m, SevCommand.SNP_COMMIT, SnpCommitBuffer.encode({ length }), 'scratch');
}

/** An authentic, fresh MSG_REPORT_REQ under VMPCK0, `extra` bytes longer than 0x60 (negative: empty). */
function requestOfSize(extra: number): number {
  const m = machine();
  const report = encodeSnpReportRequest({ reportData: REPORT_DATA, vmpl: 0, keySel: SnpKeySel.VLEK_OR_VCEK });
  const payload = extra >= 0 ? Buffer.concat([report, Buffer.alloc(extra)]) : Buffer.alloc(0);
  const request = sealSnpGuestMessage({
    vmpck: m.vmpck[0] as Buffer,
    vmpckIndex: 0,
    seqno: m.next[0] as bigint,
    type: SnpMsgType.REPORT_REQ,
    version: 1,
    payload,
  });
  writeGuestPage(m, REQUEST_GPA, request);
  const status = forwardGuestRequest(m.hv, m.snp, REQUEST_GPA, RESPONSE_GPA);
  if (status === S.SUCCESS) m.next[0] = (m.next[0] as bigint) + 2n;
  return status;
}

/** The guest's next request placed at `offset` in the bounce request page, named with that offset. */
function requestAtOffset(offset: number): number {
  const m = machine();
  const mem = m.platform.soc.hostMemory;
  const { request, response } = m.snp.bounce;
  const page = Buffer.alloc(PAGE_SIZE);
  reportRequest(m).copy(page, offset);
  mem.write(request, page, false);
  mem.clflushRange(request, PAGE_SIZE);
  mem.clflushRange(response, PAGE_SIZE);
  expect(m.platform.soc.rmpupdate(response, FIRMWARE_PAGE)).toBe(0);
  const status = issueBuffer(
    m,
    SevCommand.SNP_GUEST_REQUEST,
    SnpGuestRequestBuffer.encode({
      gctxPaddr: BigInt(m.snp.gctx),
      requestPaddr: BigInt(request + offset),
      responsePaddr: BigInt(response),
    }),
    'scratch',
  );
  unstageGuestRequest(m);
  if (status === S.SUCCESS) m.next[0] = (m.next[0] as bigint) + 2n;
  return status;
}

describe('SNP firmware vs AMD’s published firmware (amd/AMD-ASPFW sev_mcmd.c) on bad input', () => {
  it('controls: SNP_COMMIT with LENGTH 4, a 0x60-byte request, a request at offset 0 all succeed', () => {
    expect(commit(SnpCommitBuffer.size)).toBe(S.SUCCESS);
    expect(requestOfSize(0)).toBe(S.SUCCESS);
    expect(requestAtOffset(0)).toBe(S.SUCCESS);
  });

  // ASPFW's snp_mcmd_commit answers INVALID_PARAM unless LENGTH == sizeof(snp_mcmd_commit_t) == 4
  // (a regression test: the model once committed whatever LENGTH said).
  it('SNP_COMMIT with a LENGTH other than 4 answers INVALID_PARAM', () => {
    expect(commit(0)).toBe(S.INVALID_PARAM);
  });

  // ASPFW's snp_mcmd_guest_request refuses a request whose MSG_SIZE is 0 or not a multiple of 16 with
  // INVALID_PARAM before decrypting it (a regression test: the model once answered such requests and
  // consumed two sequence numbers).
  it('SNP_GUEST_REQUEST refuses an authentic request whose MSG_SIZE is 0x61', () => {
    expect(requestOfSize(1)).toBe(S.INVALID_PARAM);
  });
  it('SNP_GUEST_REQUEST refuses an authentic request whose MSG_SIZE is 0', () => {
    expect(requestOfSize(-1)).toBe(S.INVALID_PARAM);
  });

  // ASPFW reads the request at REQUEST_PADDR itself (copy_from_x86(gr->request_paddr, …); the message
  // must not cross the page) and writes the answer at RESPONSE_PADDR (a regression test: the model once
  // masked both to their page base).
  it('SNP_GUEST_REQUEST reads a request at REQUEST_PADDR’s page offset', () => {
    expect(requestAtOffset(0x100)).toBe(S.SUCCESS);
  });
});
