// Benchmark 5: SEV-SNP — attestation reports, their verification, an SNP launch, `owner measure --mode snp`.
//
//   5a Reports signed per second by the PSP, for a launched SNP guest (OVMF.fd, Milan). A guest program
//      reads VMPCK0 from its secrets page through its own MMU (the only way a guest has it) and seals
//      MSG_REPORT_REQ messages into shared pages; the host relays each with forwardGuestRequest (bounce
//      page, firmware-owned response page, SNP_GUEST_REQUEST through the mailbox, copy back) — that loop
//      is timed; the guest then opens and checks every answer (not timed). Second row: the whole agent
//      round trip, timed — the guest seals, VMGEXITs, the host relays, the guest opens the answer.
//      Baseline: raw node:crypto ECDSA P-384/SHA-384 over 0x2A0 bytes + AES-256-GCM open of a 0x60-byte
//      request and seal of a 0x4C0-byte response (the round trip's baseline adds the guest's seal of the
//      request and open of the response).
//   5b Reports verified per second by verifySnpReport on a real report (milan-v2.report.bin, its VCEK,
//      the roots of ../shared/testdata/amd-roots as `--roots` loads them); the verifier keeps no cache,
//      so every call parses and checks the chain again. Second row: the signature alone (decode the
//      report, ECDSA verify under the VCEK parsed once) — what a verifier with the chain cached per VCEK
//      would still do. Baseline: raw node:crypto ECDSA P-384/SHA-384 verify of the same bytes.
//   5c SNP launch of a guest of N MiB (default 1 GiB; --quick 64 MiB; --snp-launch-mib N): every page
//      RMPUPDATEd to PRE_GUEST and measured by SNP_LAUNCH_UPDATE (NORMAL pages, 4 KiB each as the host's
//      launchSnpFirmware does; a second row with 2 MiB pages, which the firmware accepts and the host path
//      does not use). Baseline: raw SHA-384 + AES-128-ECB over the same bytes in 1 MiB chunks.
//   5d `sevsim owner measure --mode snp` on OVMF.fd as a child process, against sev-snp-measure when it is
//      importable, else `node -e` startup + read + SHA-384 of the file.
//
// Rates: ratio = rate / baseline rate. Times (5d): ratio = time / baseline time.
import {
  X509Certificate,
  createCipheriv,
  createDecipheriv,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import {
  GHCB_PROTOCOL_VERSION,
  Ghcb,
  GhcbExit,
  SNP_REPORT_SIGNED_LENGTH,
  SevCommand,
  SevStatus,
  SnpActivateBuffer,
  SnpGctxBuffer,
  SnpKeySel,
  SnpLaunchStartBuffer,
  SnpLaunchUpdateBuffer,
  SnpMsgType,
  SnpPageReclaimBuffer,
  SnpPageType,
  SvmExit,
  VCPU_TYPES,
  type VcpuTypeName,
  commandName,
  cpuidSignature,
  decodeSnpReport,
  decodeSnpReportResponse,
  decodeSnpSecretsPage,
  encodeSnpLaunchUpdatePageInfo,
  encodeSnpReportRequest,
  encodeSnpVmplPerms,
  openSnpGuestMessage,
  parseOvmfFooter,
  sealSnpGuestMessage,
} from '../src/abi/index.js';
import { ecdsaP384Verify } from '../src/crypto/index.js';
import { firmwarePages, insn, snpIdentityPageTables } from '../src/guest/index.js';
import {
  Hypervisor,
  forwardGuestRequest,
  initSnpPlatform,
  launchSnpFirmware,
  runSnpGuest,
} from '../src/host/index.js';
import {
  type SnpRootSet,
  computeLaunchDigest,
  snpRootSetFromBundle,
  SnpChainCache,
  verifySnpReport,
} from '../src/owner/index.js';
import { chipSecret } from '../src/psp/chip-fuses.js';
import { createPlatform } from '../src/psp/index.js';
import { vcekPrivateKey } from '../src/psp/vcek.js';
import { PAGE_SIZE, type GuestSoftware, type GuestThread, type PagingFormat } from '../src/soc/index.js';
import {
  calibrate,
  collectGarbage,
  mbps,
  now,
  progressBar,
  summarize,
  type Row,
  type Settings,
  type Stat,
} from './harness.js';
import { type Child, hasSevSnpMeasure, instrument, repoRoot, runChild } from './owner-launch.js';

const GROUP = '5 snp';
const MiB = 1024 * 1024;
const SEED = 'bench-snp';
/** SNP policy: bit 17 (must be one) and SMT allowed; no debugging. */
const POLICY = 0x30000n;
const VCPUS = 4;
const VCPU_TYPE: VcpuTypeName = 'EPYC-Milan';
const FOUR_GIB = 0x1_0000_0000;
const TWO_MIB = 0x20_0000;

/** What run.ts hands this group. */
export interface SnpBenchSettings {
  /** Warm-up and repetitions for the in-process rates (reports, verification). */
  readonly rates: Settings;
  /** Warm-up and repetitions of the launch (each a whole launch of `launchBytes`). */
  readonly launch: Settings;
  /** Rounds of child processes (5d). */
  readonly cli: Settings;
  /** Size of the launched guest, bytes (a multiple of 2 MiB). */
  readonly launchBytes: number;
}

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));

/**
 * Several measurements taken in turn, repetition by repetition (each body returns one rate), so drift
 * in the machine's load shifts a figure and its baseline alike: `warmup` unmeasured rounds, then `reps`.
 */
function interleaved(
  bodies: readonly (() => number)[],
  s: Pick<Settings, 'warmup' | 'reps' | 'progress'>,
  title: string,
): Stat[] {
  const bar = progressBar(s, title, (s.warmup + s.reps) * bodies.length, 'runs');
  for (let i = 0; i < s.warmup; i++)
    for (const body of bodies) {
      body();
      bar.tick();
    }
  collectGarbage();
  const samples = bodies.map((): number[] => []);
  for (let i = 0; i < s.reps; i++)
    bodies.forEach((body, k) => {
      samples[k]?.push(body());
      bar.tick();
    });
  bar.stop();
  return samples.map((x) => summarize(x));
}

/** `body(n)` once, timed: units per second. */
function timedRate(body: (n: number) => void, n: number): () => number {
  return () => {
    const t0 = now();
    body(n);
    return n / ((now() - t0) / 1000);
  };
}

// ---------------------------------------------------------------------------------------------------
// 5a: the guest program that asks for reports

/** Shared (C=0) pages of low RAM the host never assigned: a GHCB and one request/response pair … */
const GHCB_GPA = 0x10_0000;
const RT_REQUEST_GPA = 0x10_1000;
const RT_RESPONSE_GPA = 0x10_2000;
/** … and up to MAX_BATCH requests sealed ahead, with their responses, for the PSP-only figure. */
const REQUESTS_GPA = 0x20_0000;
const RESPONSES_GPA = 0x30_0000;
const MAX_BATCH = 256;

type GuestCommand =
  | { readonly kind: 'init' }
  /** Seal `count` MSG_REPORT_REQs into the request pages, then HLT. */
  | { readonly kind: 'seal'; readonly count: number }
  /** Open and check the `count` answers to the last sealed batch, then HLT. */
  | { readonly kind: 'open'; readonly count: number }
  /** `count` × (seal, VMGEXIT, open and check), then HLT. */
  | { readonly kind: 'roundtrip'; readonly count: number };

interface ReportGuestLayout {
  readonly paging: PagingFormat;
  readonly secretsGpa: number;
  /** OVMF's first SNP_SEC_MEM section: validated private pages for the page tables. */
  readonly pageTableGpa: number;
}

/**
 * An SNP guest executing OVMF.fd that asks the PSP for reports over and over: identity page tables in
 * its SNP_SEC_MEM pages (the firmware image and the secrets page private, the message pages shared),
 * VMPCK0 read from the secrets page, then whatever `command` says each time the host runs it.
 */
class ReportBenchGuest implements GuestSoftware {
  readonly codeBase: number;
  readonly code: Buffer;
  command: GuestCommand = { kind: 'init' };
  /** Answers the guest opened and found to be its reports. */
  reports = 0;
  lastReport: Buffer | undefined;
  problem: string | undefined;
  /** MSG_SEQNO of the next request under VMPCK0: the firmware wants 1, 3, 5, … */
  #seqno = 1n;
  #batchFirst = 1n;

  constructor(
    image: Buffer,
    private readonly layout: ReportGuestLayout,
  ) {
    this.code = image;
    this.codeBase = FOUR_GIB - image.length;
  }

  #pageTables(): { gpa: number; bytes: Buffer }[] {
    const { paging, pageTableGpa, secretsGpa } = this.layout;
    const batch = Array.from({ length: MAX_BATCH }, (_, i) => [
      REQUESTS_GPA + i * PAGE_SIZE,
      RESPONSES_GPA + i * PAGE_SIZE,
    ]).flat();
    return snpIdentityPageTables({
      paging,
      pageTableGpa,
      privatePages: [...firmwarePages(this.code), secretsGpa],
      sharedPages: [GHCB_GPA, RT_REQUEST_GPA, RT_RESPONSE_GPA, ...batch],
    });
  }

  /** REPORT_DATA of request `seqno`: a nonce the answer must carry. */
  static reportData(seqno: bigint): Buffer {
    const b = Buffer.alloc(64, 0xa5);
    b.writeBigUInt64LE(seqno, 0);
    return b;
  }

  #seal(vmpck: Buffer, seqno: bigint): Buffer {
    return sealSnpGuestMessage({
      vmpck,
      vmpckIndex: 0,
      seqno,
      type: SnpMsgType.REPORT_REQ,
      version: 1,
      payload: encodeSnpReportRequest({
        reportData: ReportBenchGuest.reportData(seqno),
        vmpl: 0,
        keySel: SnpKeySel.VLEK_OR_VCEK,
      }),
    });
  }

  #check(page: Buffer, vmpck: Buffer, seqno: bigint): void {
    if (this.problem !== undefined) return;
    const opened = openSnpGuestMessage(page, vmpck);
    if (!opened.ok) {
      this.problem = `answer to request ${seqno} does not authenticate under VMPCK0`;
      return;
    }
    if (opened.header.msgSeqno !== seqno + 1n || opened.header.msgType !== SnpMsgType.REPORT_RSP) {
      this.problem = `answer ${opened.header.msgSeqno} is not the answer to request ${seqno}`;
      return;
    }
    const rsp = decodeSnpReportResponse(opened.payload);
    if (rsp.status !== 0) {
      this.problem = `MSG_REPORT_RSP status 0x${rsp.status.toString(16)}`;
      return;
    }
    if (!rsp.report.subarray(0x50, 0x90).equals(ReportBenchGuest.reportData(seqno))) {
      this.problem = `report ${seqno} carries another request's REPORT_DATA`;
      return;
    }
    this.reports++;
    this.lastReport = rsp.report;
  }

  *start(): GuestThread {
    const { paging, pageTableGpa, secretsGpa } = this.layout;
    // Paging is off: these stores are private, into pages the PSP validated at launch.
    for (const { gpa, bytes } of this.#pageTables()) yield* insn.store(gpa, bytes);
    yield { op: 'writeCr3', value: paging.withCBit(pageTableGpa) };
    yield { op: 'enablePaging' };
    const vmpck = decodeSnpSecretsPage(yield* insn.load(secretsGpa, PAGE_SIZE)).vmpck[0];
    for (;;) {
      const c = this.command;
      if (c.kind === 'seal') {
        this.#batchFirst = this.#seqno;
        for (let i = 0; i < c.count; i++) {
          yield* insn.store(REQUESTS_GPA + i * PAGE_SIZE, this.#seal(vmpck, this.#seqno));
          this.#seqno += 2n;
        }
      } else if (c.kind === 'open') {
        for (let i = 0; i < c.count; i++) {
          const page = yield* insn.load(RESPONSES_GPA + i * PAGE_SIZE, PAGE_SIZE);
          this.#check(page, vmpck, this.#batchFirst + 2n * BigInt(i));
        }
      } else if (c.kind === 'roundtrip') {
        for (let i = 0; i < c.count && this.problem === undefined; i++) {
          const seqno = this.#seqno;
          this.#seqno += 2n;
          yield* insn.store(RT_REQUEST_GPA, this.#seal(vmpck, seqno));
          yield* insn.store(
            GHCB_GPA,
            Ghcb.encode({
              swExitCode: BigInt(GhcbExit.SNP_GUEST_REQUEST),
              swExitInfo1: BigInt(RT_REQUEST_GPA),
              swExitInfo2: BigInt(RT_RESPONSE_GPA),
              protocolVersion: GHCB_PROTOCOL_VERSION,
            }),
          );
          yield { op: 'vmgexit', ghcbGpa: GHCB_GPA };
          const status = Ghcb.decode(yield* insn.load(GHCB_GPA, PAGE_SIZE)).swExitInfo2;
          if (status !== 0n)
            this.problem = `the firmware refused request ${seqno} (0x${status.toString(16)})`;
          else this.#check(yield* insn.load(RT_RESPONSE_GPA, PAGE_SIZE), vmpck, seqno);
        }
      }
      yield { op: 'hlt' };
    }
  }

  toJSON(): string {
    return '[ReportBenchGuest]';
  }
}

/** Raw node:crypto: what the PSP must compute per report (and, with `guestSide`, what the guest adds). */
function rawReportWork(guestSide: boolean): (n: number) => void {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const signed = randomBytes(SNP_REPORT_SIGNED_LENGTH);
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const aad = randomBytes(0x30);
  const seal = (plaintext: Buffer): { ct: Buffer; tag: Buffer } => {
    const c = createCipheriv('aes-256-gcm', key, iv);
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    return { ct, tag: c.getAuthTag() };
  };
  const open = (m: { ct: Buffer; tag: Buffer }): Buffer => {
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAAD(aad);
    d.setAuthTag(m.tag);
    return Buffer.concat([d.update(m.ct), d.final()]);
  };
  const requestPayload = randomBytes(0x60);
  const responsePayload = randomBytes(0x4c0);
  const request = seal(requestPayload);
  const response = seal(responsePayload);
  return (n) => {
    let sink = 0;
    for (let i = 0; i < n; i++) {
      if (guestSide) sink ^= seal(requestPayload).tag[0] as number;
      sink ^= open(request)[0] as number;
      sink ^= sign('sha384', signed, { key: privateKey, dsaEncoding: 'ieee-p1363' })[0] as number;
      sink ^= seal(responsePayload).tag[0] as number;
      if (guestSide) sink ^= open(response)[0] as number;
    }
    if (sink === -1) console.error(sink);
  };
}

function reportBenchmarks(s: Settings, log: (msg: string) => void): Row[] {
  const root = repoRoot();
  const ovmf = readFileSync(resolve(root, '../shared/testdata/ovmf/OVMF.fd'));
  log('snp: launching an SNP guest of OVMF.fd (Milan)');
  const platform = createPlatform({ product: 'milan', seed: SEED, dramBytes: 64 * MiB });
  const hv = new Hypervisor(platform);
  initSnpPlatform(hv);
  const sections = parseOvmfFooter(ovmf).sevMetadata?.sections ?? [];
  const secrets = sections.find((x) => x.typeName === 'SNP_SECRETS');
  const secMem = sections.find((x) => x.typeName === 'SNP_SEC_MEM');
  if (secrets === undefined || secMem === undefined) throw new Error('OVMF.fd has no SNP metadata');
  const guest = new ReportBenchGuest(ovmf, {
    paging: platform.soc.paging,
    secretsGpa: secrets.gpa,
    pageTableGpa: secMem.gpa,
  });
  const snp = launchSnpFirmware(hv, {
    name: 'bench-snp',
    memoryBytes: 16 * MiB,
    firmware: ovmf,
    software: guest,
    policy: POLICY,
    vcpus: 1,
    vcpuSignature: cpuidSignature(VCPU_TYPES[VCPU_TYPE]),
    guestFeatures: 0x1n,
  });
  const run = (command: GuestCommand, maxExits: number): void => {
    guest.command = command;
    const exits = runSnpGuest(hv, snp, maxExits);
    const last = exits[exits.length - 1];
    if (last?.code !== SvmExit.HLT || guest.problem !== undefined)
      throw new Error(
        `snp guest (${command.kind}): exit ${last?.code} ${last?.reason ?? ''}; ${guest.problem ?? ''}`,
      );
  };
  run({ kind: 'init' }, 1);

  /** Seals `count` requests in the guest, relays them (timed), checks the answers in the guest; reports/s. */
  const pspBatch = (count: number): number => {
    run({ kind: 'seal', count }, 1);
    const t0 = now();
    for (let i = 0; i < count; i++) {
      const status = forwardGuestRequest(
        hv,
        snp,
        REQUESTS_GPA + i * PAGE_SIZE,
        RESPONSES_GPA + i * PAGE_SIZE,
      );
      if (status !== SevStatus.SUCCESS)
        throw new Error(`SNP_GUEST_REQUEST failed: status 0x${status.toString(16)}`);
    }
    const seconds = (now() - t0) / 1000;
    const before = guest.reports;
    run({ kind: 'open', count }, 1);
    if (guest.reports - before !== count) throw new Error('the guest did not get every report');
    return count / seconds;
  };
  /** `count` whole round trips driven by the guest (timed); reports/s. */
  const guestBatch = (count: number): number => {
    const before = guest.reports;
    const t0 = now();
    run({ kind: 'roundtrip', count }, count + 1);
    const seconds = (now() - t0) / 1000;
    if (guest.reports - before !== count) throw new Error('the guest did not get every report');
    return count / seconds;
  };

  // A batch of about 0.5 s (at most MAX_BATCH sealed requests: the guest's shared pages); the raw
  // baselines sized to the same time; all four measured in turn.
  const probe = pspBatch(8);
  const batch = Math.max(8, Math.min(MAX_BATCH, Math.ceil(probe * 0.5)));
  const pspWork = rawReportWork(false);
  const guestWork = rawReportWork(true);
  log(`snp: reports through the PSP and the agent round trip (batches of ${batch}), raw baselines`);
  const [psp, roundTrip, base, baseGuest] = interleaved(
    [
      () => pspBatch(batch),
      () => guestBatch(batch),
      timedRate(pspWork, calibrate(pspWork, 8, 0.45)),
      timedRate(guestWork, calibrate(guestWork, 8, 0.45)),
    ],
    s,
    'snp: reports',
  ) as [Stat, Stat, Stat, Stat];

  // Check the PSP's signature with the VCEK of the reported TCB, and time that key's derivation alone
  // (from the seeded chip secret, as the test suite and AMD's KDS do; the PSP derives it per report).
  const report = decodeSnpReport(guest.lastReport as Buffer);
  const secret = chipSecret(SEED, undefined);
  let vcek: KeyObject | undefined;
  const derivations: number[] = [];
  for (let i = 0; i < 12; i++) {
    const t0 = now();
    vcek = vcekPrivateKey(secret, 'milan', report.reportedTcb);
    if (i >= 2) derivations.push(now() - t0);
  }
  const verified = ecdsaP384Verify(
    createPublicKey(vcek as KeyObject),
    'sha384',
    report.raw.subarray(0, SNP_REPORT_SIGNED_LENGTH),
    { r: report.signatureR, s: report.signatureS },
  );
  if (!verified) throw new Error('the PSP’s report does not verify under the VCEK of its REPORTED_TCB');
  const signOnly: number[] = [];
  for (let i = 0; i < 12; i++) {
    const t0 = now();
    sign('sha384', report.raw.subarray(0, SNP_REPORT_SIGNED_LENGTH), {
      key: vcek as KeyObject,
      dsaEncoding: 'ieee-p1363',
    });
    if (i >= 2) signOnly.push(now() - t0);
  }

  // One more batch, instrumented: the mailbox commands' share of the host's relay.
  const spent = new Map<string, number>();
  instrument(hv.driver, 'raw', (args) => commandName(args[0] as number).split(' ')[0] ?? '?', spent);
  const t0 = now();
  pspBatch(batch);
  const instrumented = now() - t0;
  const perReport = (k: string): number => round((spent.get(k) ?? 0) / batch, 3);
  const accounted = [...spent.values()].reduce((a, b) => a + b, 0);

  const commonDetail = {
    'reports per batch': batch,
    'VCEK derivation alone (vcekPrivateKey of REPORTED_TCB), median ms': round(
      summarize(derivations).median,
      3,
    ),
    'ECDSA sign with that key, median ms': round(summarize(signOnly).median, 3),
  };
  return [
    {
      id: 'snp.report.psp',
      group: GROUP,
      name: 'MSG_REPORT_REQ → signed report: host relay + SNP_GUEST_REQUEST (PSP), Milan, VCEK',
      value: psp.median,
      unit: 'reports/s',
      stat: psp,
      baseline: {
        name: 'raw ECDSA P-384 sign of 0x2A0 B + AES-256-GCM open 0x60 B + seal 0x4C0 B',
        value: base.median,
        unit: 'reports/s',
      },
      ratio: psp.median / base.median,
      detail: {
        ...commonDetail,
        'one instrumented batch, ms per report':
          `SNP_GUEST_REQUEST ${perReport('SNP_GUEST_REQUEST')}, SNP_PAGE_RECLAIM ${perReport('SNP_PAGE_RECLAIM')}, ` +
          `host relay (copies, RMPUPDATE, CLFLUSH) ${round(Math.max(0, instrumented - accounted) / batch, 3)}`,
      },
      note: 'requests sealed by the guest (VMPCK0 from its secrets page), relayed with forwardGuestRequest; every answer opened and checked by the guest afterwards, one report verified under the VCEK',
    },
    {
      id: 'snp.report.guest',
      group: GROUP,
      name: 'the agent round trip: guest seals, VMGEXIT, host relays, PSP signs, guest opens',
      value: roundTrip.median,
      unit: 'reports/s',
      stat: roundTrip,
      baseline: {
        name: 'raw: the same + the guest’s GCM seal 0x60 B and open 0x4C0 B',
        value: baseGuest.median,
        unit: 'reports/s',
      },
      ratio: roundTrip.median / baseGuest.median,
      detail: { 'reports per batch': batch },
      note: 'one runSnpGuest per batch: VMRUN, each VMGEXIT served by forwardGuestRequest, the guest checks every report',
    },
  ];
}

// ---------------------------------------------------------------------------------------------------
// 5b: the verifier

const isFile = (p: string): boolean => statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;

/** The root sets `sevsim owner verify-report --roots DIR` loads (cli/owner-verify-report.ts loadRoots). */
function rootsLikeCli(dir: string): SnpRootSet[] {
  const sets: SnpRootSet[] = [];
  for (const name of ['genoa', 'milan', 'naples', 'rome', 'turin']) {
    const gen = join(dir, name);
    const set: Partial<SnpRootSet> = { name };
    if (isFile(join(gen, 'ask_ark_asvk.pem')))
      Object.assign(set, snpRootSetFromBundle(name, readFileSync(join(gen, 'ask_ark_asvk.pem'))));
    if (isFile(join(gen, 'ark.pem'))) set.ark = readFileSync(join(gen, 'ark.pem'));
    if (isFile(join(gen, 'ask.pem'))) set.ask = readFileSync(join(gen, 'ask.pem'));
    if (set.ark !== undefined) sets.push(set as SnpRootSet);
  }
  return sets;
}

function verifyBenchmarks(s: Settings, log: (msg: string) => void): Row[] {
  const root = repoRoot();
  const testdata = resolve(root, '../shared/testdata');
  const reportBytes = readFileSync(join(testdata, 'snp-reports/milan-v2.report.bin'));
  const vcekDer = readFileSync(join(testdata, 'snp-reports/milan-v2.vcek.der'));
  const roots = rootsLikeCli(join(testdata, 'amd-roots'));
  const milan = roots.filter((r) => r.name === 'milan');
  const check = verifySnpReport({ report: reportBytes, certificate: vcekDer, roots });
  if (!check.ok || check.roots !== 'milan')
    throw new Error(`milan-v2 does not verify: ${check.failed.join(', ')} (roots ${check.roots})`);

  const full =
    (sets: SnpRootSet[]) =>
    (n: number): void => {
      for (let i = 0; i < n; i++)
        if (!verifySnpReport({ report: reportBytes, certificate: vcekDer, roots: sets }).ok)
          throw new Error('verification failed');
    };
  // The measure: the whole verification, with the chain verdict cached per VCEK.
  const cache = new SnpChainCache();
  const cached = (n: number): void => {
    for (let i = 0; i < n; i++)
      if (!verifySnpReport({ report: reportBytes, certificate: vcekDer, roots, chainCache: cache }).ok)
        throw new Error('verification failed');
  };
  const vcekKey = new X509Certificate(vcekDer).publicKey;
  const signatureOnly = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const r = decodeSnpReport(reportBytes);
      if (
        !ecdsaP384Verify(vcekKey, 'sha384', r.raw.subarray(0, SNP_REPORT_SIGNED_LENGTH), {
          r: r.signatureR,
          s: r.signatureS,
        })
      )
        throw new Error('signature failed');
    }
  };
  // The chain alone, as verifySnpReport checks it on every call (parse, then three RSA-4096 checks).
  const milanSet = milan[0] as SnpRootSet;
  const chainOnly = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const ark = new X509Certificate(milanSet.ark);
      const ask = new X509Certificate(milanSet.ask as Uint8Array);
      const leaf = new X509Certificate(vcekDer);
      if (!(ark.verify(ark.publicKey) && ask.verify(ark.publicKey) && leaf.verify(ask.publicKey)))
        throw new Error('chain failed');
    }
  };
  // Raw: the same signature over the same bytes, prepared once (big-endian r ‖ s).
  const signedBytes = reportBytes.subarray(0, SNP_REPORT_SIGNED_LENGTH);
  const decoded = decodeSnpReport(reportBytes);
  const be = (field: Buffer): Buffer => Buffer.from(field.subarray(0, 48)).reverse();
  const rawSig = Buffer.concat([be(decoded.signatureR), be(decoded.signatureS)]);
  const raw = (n: number): void => {
    for (let i = 0; i < n; i++)
      if (!verify('sha384', signedBytes, { key: vcekKey, dsaEncoding: 'ieee-p1363' }, rawSig))
        throw new Error('raw verify failed');
  };

  log('snp: verifySnpReport (full), signature only, chain only, raw ECDSA verify');
  const sized = (body: (n: number) => void): (() => number) => timedRate(body, calibrate(body, 8, 0.45));
  const [fullAll, fullMilan, withCache, sigOnly, chain, base] = interleaved(
    [
      sized(full(roots)),
      sized(full(milan)),
      sized(cached),
      sized(signatureOnly),
      sized(chainOnly),
      sized(raw),
    ],
    s,
    'snp: verify',
  ) as [Stat, Stat, Stat, Stat, Stat, Stat];
  const baseline = {
    name: 'raw node:crypto ECDSA P-384/SHA-384 verify of the same 0x2A0 bytes',
    value: base.median,
    unit: 'verifies/s',
  };
  return [
    {
      id: 'snp.verify.full',
      group: GROUP,
      name: `verifySnpReport, milan-v2.report.bin + VCEK, --roots amd-roots (${roots.map((r) => r.name).join(', ')})`,
      value: fullAll.median,
      unit: 'verifies/s',
      stat: fullAll,
      baseline,
      ratio: fullAll.median / base.median,
      detail: {
        'same, milan roots only (verifies/s)': Math.round(fullMilan.median),
        'chain alone: parse ARK, ASK, VCEK + 3 signature checks (per s)': Math.round(chain.median),
      },
      note: 'no chain cache: every call parses the VCEK and the roots and checks ARK → ASK → VCEK again',
    },
    {
      id: 'snp.verify.cached',
      group: GROUP,
      name: 'verifySnpReport with a SnpChainCache (chain verdict cached per VCEK; every other check per report)',
      value: withCache.median,
      unit: 'verifies/s',
      stat: withCache,
      baseline,
      ratio: withCache.median / base.median,
    },
    {
      id: 'snp.verify.signature',
      group: GROUP,
      name: 'signature only: decodeSnpReport + ecdsaP384Verify under the VCEK parsed once (= chain cached per VCEK)',
      value: sigOnly.median,
      unit: 'verifies/s',
      stat: sigOnly,
      baseline,
      ratio: sigOnly.median / base.median,
    },
  ];
}

// ---------------------------------------------------------------------------------------------------
// 5c: an SNP launch

/** Distinct memory the baselines stream over (repeated to reach the launch size). */
const BASELINE_POOL_BYTES = 64 * MiB;

/** Raw SHA-384 + AES-128-ECB over `bytes`, 1 MiB at a time (bytes/s). */
function rawShaEcb(bytes: number, pool: Buffer): number {
  const ecb = createCipheriv('aes-128-ecb', randomBytes(16), null);
  ecb.setAutoPadding(false);
  const hash = createHash('sha384');
  let sink = 0;
  const t0 = now();
  for (let done = 0; done < bytes; done += MiB) {
    const off = done % pool.length;
    const chunk = pool.subarray(off, off + MiB);
    hash.update(chunk);
    sink ^= ecb.update(chunk)[0] as number;
  }
  sink ^= hash.digest()[0] as number;
  const seconds = (now() - t0) / 1000;
  if (sink === -1) console.error(sink);
  return bytes / seconds;
}

/**
 * Raw, page by page as the firmware works: SHA-384 of each 4 KiB page, SHA-384 of a 0x70-byte PAGE_INFO,
 * AES-128-XTS of the page with its page number as the tweak (bytes/s).
 */
function rawPerPage(bytes: number, pool: Buffer): number {
  const key = randomBytes(32);
  const iv = Buffer.alloc(16);
  const info = Buffer.alloc(0x70);
  let sink = 0;
  const t0 = now();
  for (let done = 0; done < bytes; done += PAGE_SIZE) {
    const off = done % pool.length;
    const page = pool.subarray(off, off + PAGE_SIZE);
    createHash('sha384').update(page).digest().copy(info, 0x30);
    sink ^= createHash('sha384').update(info).digest()[0] as number;
    iv.writeUInt32LE(done / PAGE_SIZE, 0);
    sink ^= createCipheriv('aes-128-xts', key, iv).update(page)[0] as number;
  }
  const seconds = (now() - t0) / 1000;
  if (sink === -1) console.error(sink);
  return bytes / seconds;
}

function launchBenchmarks(s: Settings, bytes: number, log: (msg: string) => void): Row[] {
  if (bytes % TWO_MIB !== 0 || bytes <= 0)
    throw new RangeError('the SNP launch size must be a multiple of 2 MiB');
  log(`snp: launch, building a host with ${bytes / MiB} MiB of guest memory`);
  collectGarbage();
  const platform = createPlatform({ product: 'milan', seed: `${SEED}-launch`, dramBytes: bytes + 128 * MiB });
  const hv = new Hypervisor(platform);
  initSnpPlatform(hv);
  const soc = platform.soc;
  const host = soc.hostMemory;
  const d = hv.driver;
  const base = hv.frames.allocateAligned(bytes, TWO_MIB);

  // The image, written as plaintext through the host's C=0 mapping, then flushed (QEMU's memcpy, and
  // the CLFLUSH launchSnpFirmware does before each RMPUPDATE — done once for the range, not timed).
  const pattern = randomBytes(MiB);
  let bar = progressBar(s, 'snp launch: write image', bytes / MiB, 'MiB');
  const tWrite = now();
  for (let off = 0; off < bytes; off += MiB) {
    pattern.writeUInt32LE(off / MiB, 0);
    host.write(base + off, pattern, false);
    bar.tick();
  }
  bar.stop();
  host.clflushRange(base, bytes);
  const writeSeconds = (now() - tWrite) / 1000;
  const firstLine = soc.dram.read(base, 64);

  let nextAsid = 1;
  const normal4k = encodeSnpLaunchUpdatePageInfo({
    pageSize: 0,
    pageType: SnpPageType.NORMAL,
    imiPage: false,
  });
  const normal2m = encodeSnpLaunchUpdatePageInfo({
    pageSize: 1,
    pageType: SnpPageType.NORMAL,
    imiPage: false,
  });
  const vmplPerms = encodeSnpVmplPerms({ vmpl1: 0, vmpl2: 0, vmpl3: 0 });
  const rmp = (spa: number, state: Parameters<typeof soc.rmpupdate>[1]): void => {
    const code = soc.rmpupdate(spa, state);
    if (code !== 0) throw new Error(`RMPUPDATE 0x${spa.toString(16)} failed (${code})`);
  };
  /**
   * A fresh guest (GCTX_CREATE, LAUNCH_START, ACTIVATE with a new ASID), then RMPUPDATE + SNP_LAUNCH_UPDATE
   * of the first `size` bytes in `granule` pages (timed), then DECOMMISSION and the pages back to the
   * hypervisor (not timed). Returns bytes/s.
   */
  const launchOnce = (size: number, granule: '4K' | '2M', label: string): number => {
    const step = granule === '4K' ? PAGE_SIZE : TWO_MIB;
    const asid = nextAsid++;
    const gctx = hv.frames.allocate();
    host.clflushRange(gctx, PAGE_SIZE);
    rmp(gctx, { gpa: 0, assigned: true, pageSize: '4K', immutable: true, asid: 0 });
    d.call(SevCommand.SNP_GCTX_CREATE, SnpGctxBuffer, { gctxPaddr: BigInt(gctx) });
    d.call(SevCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer, { gctxPaddr: BigInt(gctx), policy: POLICY });
    d.call(SevCommand.SNP_ACTIVATE, SnpActivateBuffer, { gctxPaddr: BigInt(gctx), asid });
    const pageInfo = granule === '4K' ? normal4k : normal2m;
    const tickEvery = Math.max(1, (4 * MiB) / step);
    bar = progressBar(s, `snp launch ${granule}: ${label}`, size / MiB, 'MiB');
    const t0 = now();
    for (let off = 0, k = 0; off < size; off += step, k++) {
      const spa = base + off;
      rmp(spa, { gpa: off, assigned: true, pageSize: granule, immutable: true, asid });
      d.call(SevCommand.SNP_LAUNCH_UPDATE, SnpLaunchUpdateBuffer, {
        gctxPaddr: BigInt(gctx),
        pageInfo,
        pagePaddr: BigInt(spa),
        vmplPerms,
      });
      if (k % tickEvery === tickEvery - 1) bar.tick((tickEvery * step) / MiB);
    }
    const seconds = (now() - t0) / 1000;
    bar.stop();
    const last = soc.rmpread(base + size - PAGE_SIZE);
    if (!last.assigned || !last.validated || last.asid !== asid)
      throw new Error('a launched page is not validated');
    d.call(SevCommand.SNP_DECOMMISSION, SnpGctxBuffer, { gctxPaddr: BigInt(gctx) });
    for (let off = 0; off < size; off += step)
      rmp(base + off, { gpa: 0, assigned: false, pageSize: granule, immutable: false, asid: 0 });
    d.call(SevCommand.SNP_PAGE_RECLAIM, SnpPageReclaimBuffer, { paddr: BigInt(gctx) });
    rmp(gctx, { gpa: 0, assigned: false, pageSize: '4K', immutable: false, asid: 0 });
    hv.frames.release(gctx);
    return size / seconds;
  };

  const rows: Row[] = [];
  const results = new Map<'4K' | '2M', Stat>();
  const pool = randomBytes(Math.min(BASELINE_POOL_BYTES, bytes));
  const bulkSamples: number[] = [];
  const pageSamples: number[] = [];
  for (const granule of ['4K', '2M'] as const) {
    log(`snp: SNP_LAUNCH_UPDATE of ${bytes / MiB} MiB in ${granule} pages`);
    // Warm-up (discarded): 32 MiB, enough to compile the path; each run re-measures the region under a
    // new guest's key (after the first run the input is the previous run's ciphertext: the same work).
    for (let i = 0; i < s.warmup; i++) launchOnce(Math.min(bytes, 32 * MiB), granule, `warm-up ${i + 1}`);
    if (granule === '4K') {
      // The raw baselines' warm-up.
      rawShaEcb(Math.min(bytes, BASELINE_POOL_BYTES), pool);
      rawPerPage(Math.min(bytes, 16 * MiB), pool);
    }
    const samples: number[] = [];
    for (let i = 0; i < s.reps; i++) {
      collectGarbage();
      samples.push(launchOnce(bytes, granule, `run ${i + 1}/${s.reps}`));
      if (granule === '4K' && i === 0 && soc.dram.read(base, 64).equals(firstLine))
        throw new Error('the launched memory is still plaintext in DRAM');
      if (granule === '4K') {
        // Each 4K run followed by the baselines over the same number of bytes, so they share its load.
        log(`snp: raw SHA-384 + AES-128-ECB and per-page baselines, ${bytes / MiB} MiB`);
        bulkSamples.push(rawShaEcb(bytes, pool));
        pageSamples.push(rawPerPage(bytes, pool));
      }
    }
    results.set(granule, summarize(samples.map(mbps)));
  }
  const bulk = summarize(bulkSamples.map(mbps));
  const perPage = summarize(pageSamples.map(mbps));
  for (const granule of ['4K', '2M'] as const) {
    const stat = results.get(granule) as Stat;
    const pages = bytes / (granule === '4K' ? PAGE_SIZE : TWO_MIB);
    rows.push({
      id: `snp.launch.${granule.toLowerCase()}`,
      group: GROUP,
      name: `SNP launch ${bytes / MiB} MiB: RMPUPDATE + SNP_LAUNCH_UPDATE, ${pages} NORMAL ${granule} pages, Milan (${platform.profile.cipherMode})${granule === '2M' ? ' — firmware path, launchSnpFirmware uses 4K' : ''}`,
      value: stat.median,
      unit: 'MB/s',
      stat,
      baseline: {
        name: 'raw SHA-384 + AES-128-ECB, same bytes, 1 MiB chunks',
        value: bulk.median,
        unit: 'MB/s',
      },
      ratio: stat.median / bulk.median,
      detail: {
        'launch size (MiB)': bytes / MiB,
        'seconds per launch (median)': round(bytes / 1e6 / stat.median, 2),
        'per-page raw baseline: SHA-384 of page + of PAGE_INFO, AES-128-XTS per page (MB/s)': round(
          perPage.median,
        ),
        'ratio to the per-page baseline': round(stat.median / perPage.median, 3),
        ...(granule === '4K'
          ? {
              'image write via host C=0 mapping + clflush, not timed (s)': round(writeSeconds, 2),
              'DRAM pages populated': soc.dram.populatedPages,
            }
          : {}),
      },
      note: 'time of RMPUPDATE + the PSP commands only (mailbox, DMA read, SHA-384 of the page and of PAGE_INFO, encrypt under the guest key, DMA write, RMP update)',
    });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------
// 5d: `sevsim owner measure --mode snp`

function measureCliBenchmark(s: Settings, log: (msg: string) => void): Row[] {
  const root = repoRoot();
  const ovmfPath = resolve(root, '../shared/testdata/ovmf/OVMF.fd');
  const mainJs = join(root, 'dist/src/cli/main.js');
  if (!existsSync(mainJs)) throw new Error(`the snp benchmarks need the built CLI ${mainJs} (npm run build)`);
  const ovmf = readFileSync(ovmfPath);
  const ovmfRel = relative(root, ovmfPath);
  const expect = computeLaunchDigest({
    mode: 'snp',
    ovmf,
    vcpus: VCPUS,
    vcpuType: VCPU_TYPE,
  }).digest.toString('hex');
  const snpArgs = ['--mode', 'snp', '--ovmf', ovmfRel, '--vcpus', String(VCPUS), '--vcpu-type', VCPU_TYPE];
  const cli: Child = {
    label: 'sevsim owner measure --mode snp',
    command: process.execPath,
    args: ['dist/src/cli/main.js', 'owner', 'measure', ...snpArgs],
    expect,
  };
  const python = hasSevSnpMeasure(root);
  const base: Child = python
    ? {
        label: 'sev-snp-measure --mode snp',
        command: 'python3',
        args: ['-m', 'sevsnpmeasure.cli', ...snpArgs],
        expect,
      }
    : {
        label: 'node -e: read OVMF.fd + SHA-384',
        command: process.execPath,
        args: [
          '-e',
          "process.stdout.write(require('node:crypto').createHash('sha384')" +
            ".update(require('node:fs').readFileSync(process.argv[1])).digest('hex') + '\\n')",
          ovmfRel,
        ],
        expect: createHash('sha384').update(ovmf).digest('hex'),
      };
  log(`snp: sevsim owner measure --mode snp, child processes (baseline: ${base.label})`);
  const rounds = s.warmup + s.reps;
  const times = new Map<Child, number[]>([
    [cli, []],
    [base, []],
  ]);
  const bar = progressBar(s, 'snp: owner measure (child procs)', rounds * 2, 'runs');
  for (let i = 0; i < rounds; i++) {
    for (const c of [cli, base]) {
      const took = runChild(c, root);
      if (i >= s.warmup) times.get(c)?.push(took);
      bar.tick();
    }
  }
  bar.stop();
  // The digest in process (what the CLI computes once started), for the split.
  const inProcess: number[] = [];
  for (let i = 0; i < 11; i++) {
    const t0 = now();
    computeLaunchDigest({ mode: 'snp', ovmf, vcpus: VCPUS, vcpuType: VCPU_TYPE });
    if (i >= 1) inProcess.push(now() - t0);
  }
  const stat = summarize(times.get(cli) ?? []);
  const baseStat = summarize(times.get(base) ?? []);
  return [
    {
      id: 'snp.measure.cli',
      group: GROUP,
      name: `sevsim owner measure --mode snp --vcpus ${VCPUS} --vcpu-type ${VCPU_TYPE}, OVMF.fd (child process)`,
      value: stat.median,
      unit: 'ms',
      stat,
      baseline: {
        name: python
          ? 'sev-snp-measure --mode snp, same arguments (python3 child process)'
          : 'node -e startup + read + SHA-384 of OVMF.fd (sev-snp-measure not installed)',
        value: baseStat.median,
        unit: 'ms',
      },
      ratio: stat.median / baseStat.median,
      detail: {
        command: `node ${cli.args.join(' ')}`,
        digest: expect,
        'baseline range (ms)': `${round(baseStat.min)} … ${round(baseStat.max)}`,
        'computeLaunchDigest in process, median ms': round(summarize(inProcess).median, 2),
      },
      note: 'ratio = time / baseline time; the child’s output is checked against computeLaunchDigest',
    },
  ];
}

export function runSnpBenchmarks(settings: SnpBenchSettings, log: (msg: string) => void): Row[] {
  return [
    ...reportBenchmarks(settings.rates, log),
    ...verifyBenchmarks(settings.rates, log),
    ...launchBenchmarks(settings.launch, settings.launchBytes, log),
    ...measureCliBenchmark(settings.cli, log),
  ];
}
