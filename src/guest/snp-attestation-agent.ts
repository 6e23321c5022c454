// What an SNP guest's firmware does to attest itself, executing the real firmware image (the CPU
// fetches and checks the image's bytes, decrypted with the guest's key; this thread stands in for the
// firmware's logic): build page tables in its validated SNP_SEC_MEM pages, map a GHCB and two message
// pages shared (C=0) in low RAM the host never assigned, read VMPCK0 from the secrets page the PSP
// wrote, and ask the PSP for a report through the host (MSG_REPORT_REQ under AES-256-GCM, VMGEXIT).
// The host relays ciphertext only: it can drop or replay the request, never read or forge it.
import {
  AbiDecodeError,
  GHCB_VMM_ERROR_INVALID_LEN,
  type SnpCertTableEntry,
  decodeSnpCertTable,
  Ghcb,
  GhcbExit,
  GHCB_PROTOCOL_VERSION,
  SnpKeySel,
  SnpMsgType,
  decodeSnpReportResponse,
  decodeSnpSecretsPage,
  encodeSnpReportRequest,
  openSnpGuestMessage,
  sealSnpGuestMessage,
} from '../abi/index.js';
import {
  ENTRIES_PER_TABLE,
  PAGE_SIZE,
  type GuestSoftware,
  type GuestThread,
  type PagingFormat,
  tableIndices,
} from '../soc/index.js';
import { insn, type Step } from './kernel.js';

const FOUR_GIB = 0x1_0000_0000;
const TWO_MIB = 0x20_0000;

export interface SnpAttestationAgentOptions {
  /** C-bit position and address width, as the guest reads them from CPUID. */
  readonly paging: PagingFormat;
  /** GPA of the secrets page (OVMF's SNP_SECRETS section). */
  readonly secretsGpa: number;
  /** A validated private range for the page tables (OVMF's first SNP_SEC_MEM section; ≥ 8 pages). */
  readonly pageTableGpa: number;
  /** Three shared pages of low RAM: GHCB, request, response. */
  readonly sharedGpa: number;
  /** 64 bytes the owner asked to see in the report (a nonce, a key's hash). */
  readonly reportData: Buffer;
  /** Ask with an extended request: the host's certificate table lands in these shared pages. */
  readonly certificates?: { readonly gpa: number; readonly pages: number };
  /** The VMPL the report should name (this firmware runs at VMPL0). */
  readonly vmpl?: number;
}

/** Pages to map in an SNP guest's identity page tables (the tables' own 2 MiB region is always mapped). */
export interface SnpPageTableLayout {
  readonly paging: PagingFormat;
  /** Where the tables go: validated private pages (OVMF's first SNP_SEC_MEM section; ≥ 8 pages). */
  readonly pageTableGpa: number;
  /** Private (C=1) pages besides the tables' region, e.g. the firmware image and the secrets page. */
  readonly privatePages: readonly number[];
  /** Shared (C=0) pages: GHCBs and message pages in low RAM the host never assigned. */
  readonly sharedPages: readonly number[];
}

/** 4-level identity page tables, as (GPA, bytes) to store; CR3 is `pageTableGpa` with the C-bit. */
export function snpIdentityPageTables(l: SnpPageTableLayout): { gpa: number; bytes: Buffer }[] {
  const f = l.paging;
  const t = (i: number): number => l.pageTableGpa + i * PAGE_SIZE;
  const table = (): Buffer => Buffer.alloc(PAGE_SIZE);
  const put = (tbl: Buffer, index: number, address: number, encrypted: boolean): void => {
    f.encode({ address, writable: true, encrypted }).copy(tbl, index * 8);
  };
  const pml4 = table();
  const pdpt = table();
  const pds = new Map<number, Buffer>();
  const pts = new Map<number, Buffer>();
  const tables: { gpa: number; bytes: Buffer }[] = [];
  let next = 2;
  put(pml4, 0, t(1), true);
  const mapPage = (gpa: number, encrypted: boolean): void => {
    const [, p3, p2, p1] = tableIndices(gpa);
    let pd = pds.get(p3);
    if (pd === undefined) {
      pd = table();
      pds.set(p3, pd);
      put(pdpt, p3, t(next), true);
      tables.push({ gpa: t(next++), bytes: pd });
    }
    const region = Math.floor(gpa / TWO_MIB);
    let pt = pts.get(region);
    if (pt === undefined) {
      pt = table();
      pts.set(region, pt);
      put(pd, p2, t(next), true);
      tables.push({ gpa: t(next++), bytes: pt });
    }
    put(pt, p1, gpa - (gpa % PAGE_SIZE), encrypted);
  };
  const tablesRegion = Math.floor(l.pageTableGpa / TWO_MIB) * TWO_MIB;
  for (let i = 0; i < ENTRIES_PER_TABLE; i++) mapPage(tablesRegion + i * PAGE_SIZE, true);
  for (const gpa of l.privatePages) mapPage(gpa, true);
  for (const gpa of l.sharedPages) mapPage(gpa, false);
  return [{ gpa: t(0), bytes: pml4 }, { gpa: t(1), bytes: pdpt }, ...tables];
}

/** The firmware image's pages (it ends at 4 GiB). */
export function firmwarePages(image: Buffer): number[] {
  const base = FOUR_GIB - image.length;
  return Array.from({ length: image.length / PAGE_SIZE }, (_, i) => base + i * PAGE_SIZE);
}

/** One attestation request through the host: where, under which VMPCK, for which VMPL. */
export interface SnpReportRequestPlan {
  readonly vmpck: Buffer;
  readonly vmpckIndex: number;
  /** MSG_SEQNO of the request (the firmware expects its count + 1: 1, 3, 5 … per VMPCK). */
  readonly seqno: bigint;
  readonly vmpl: number;
  readonly reportData: Buffer;
  /** Three shared pages: GHCB, request, response. */
  readonly sharedGpa: number;
  /**
   * An extended request (SNP_EXT_GUEST_REQUEST): shared pages where the host puts its certificate
   * table (ARK, ASK, VCEK) next to the report.
   */
  readonly certificates?: { readonly gpa: number; readonly pages: number };
}

/** What came back: the report, or why not (firmware status in the GHCB or in MSG_REPORT_RSP). */
export interface SnpReportOutcome {
  readonly report?: Buffer;
  /** The host's certificate table (extended requests). */
  readonly certificates?: readonly SnpCertTableEntry[];
  readonly problem?: string;
}

/**
 * MSG_REPORT_REQ through the GHCB: seal under the VMPCK, VMGEXIT, open the answer. The host sees
 * only ciphertext; a wrong answer does not authenticate.
 */
export function* requestSnpReport(plan: SnpReportRequestPlan): Step<SnpReportOutcome> {
  const [ghcbGpa, requestGpa, responseGpa] = [0, 1, 2].map((i) => plan.sharedGpa + i * PAGE_SIZE) as [
    number,
    number,
    number,
  ];
  const request = sealSnpGuestMessage({
    vmpck: plan.vmpck,
    vmpckIndex: plan.vmpckIndex,
    seqno: plan.seqno,
    type: SnpMsgType.REPORT_REQ,
    version: 1,
    payload: encodeSnpReportRequest({
      reportData: plan.reportData,
      vmpl: plan.vmpl,
      keySel: SnpKeySel.VLEK_OR_VCEK,
    }),
  });
  yield* insn.store(requestGpa, request);
  const certs = plan.certificates;
  yield* insn.store(
    ghcbGpa,
    Ghcb.encode({
      swExitCode: BigInt(certs === undefined ? GhcbExit.SNP_GUEST_REQUEST : GhcbExit.SNP_EXT_GUEST_REQUEST),
      swExitInfo1: BigInt(requestGpa),
      swExitInfo2: BigInt(responseGpa),
      rax: BigInt(certs?.gpa ?? 0),
      rbx: BigInt(certs?.pages ?? 0),
      protocolVersion: GHCB_PROTOCOL_VERSION,
    }),
  );
  yield { op: 'vmgexit', ghcbGpa };
  const answer = Ghcb.decode(yield* insn.load(ghcbGpa, PAGE_SIZE));
  const status = answer.swExitInfo2;
  if (status === GHCB_VMM_ERROR_INVALID_LEN)
    return { problem: `the certificate buffer is too small: the host needs ${answer.rbx} pages` };
  if (status !== 0n) return { problem: `the firmware refused the request (status 0x${status.toString(16)})` };
  const opened = openSnpGuestMessage(yield* insn.load(responseGpa, PAGE_SIZE), plan.vmpck);
  if (!opened.ok) return { problem: `the response does not authenticate under VMPCK${plan.vmpckIndex}` };
  if (opened.header.msgSeqno !== plan.seqno + 1n || opened.header.msgType !== SnpMsgType.REPORT_RSP)
    return { problem: 'the response is not the answer to this request' };
  const rsp = decodeSnpReportResponse(opened.payload);
  if (rsp.status !== 0) return { problem: `MSG_REPORT_RSP status 0x${rsp.status.toString(16)}` };
  if (certs === undefined) return { report: rsp.report };
  const table = yield* insn.load(certs.gpa, certs.pages * PAGE_SIZE);
  try {
    return { report: rsp.report, certificates: decodeSnpCertTable(table) };
  } catch (err) {
    if (!(err instanceof AbiDecodeError)) throw err;
    return { report: rsp.report, problem: `the host's certificate table is malformed: ${err.message}` };
  }
}

export class SnpAttestationAgent implements GuestSoftware {
  readonly codeBase: number;
  readonly code: Buffer;
  /** The report the PSP returned (undefined until the guest ran, or if it failed: see `problem`). */
  report: Buffer | undefined;
  /** The host's certificate table, for an extended request. */
  certificates: readonly SnpCertTableEntry[] | undefined;
  problem: string | undefined;

  constructor(
    image: Buffer,
    readonly options: SnpAttestationAgentOptions,
  ) {
    this.code = image;
    this.codeBase = FOUR_GIB - image.length;
  }

  *start(): GuestThread {
    const o = this.options;
    const tables = snpIdentityPageTables({
      paging: o.paging,
      pageTableGpa: o.pageTableGpa,
      privatePages: [...firmwarePages(this.code), o.secretsGpa],
      sharedPages: [
        ...[0, 1, 2].map((i) => o.sharedGpa + i * PAGE_SIZE),
        ...Array.from(
          { length: o.certificates?.pages ?? 0 },
          (_, i) => (o.certificates?.gpa ?? 0) + i * PAGE_SIZE,
        ),
      ],
    });
    // Paging is off: these stores are private, into pages the PSP validated at launch.
    for (const { gpa, bytes } of tables) yield* insn.store(gpa, bytes);
    yield { op: 'writeCr3', value: o.paging.withCBit(o.pageTableGpa) };
    yield { op: 'enablePaging' };
    const secrets = decodeSnpSecretsPage(yield* insn.load(o.secretsGpa, PAGE_SIZE));
    const outcome = yield* requestSnpReport({
      vmpck: secrets.vmpck[0],
      vmpckIndex: 0,
      seqno: 1n,
      vmpl: o.vmpl ?? 0,
      reportData: o.reportData,
      sharedGpa: o.sharedGpa,
      ...(o.certificates !== undefined ? { certificates: o.certificates } : {}),
    });
    this.report = outcome.report;
    this.certificates = outcome.certificates;
    this.problem = outcome.problem;
    for (;;) yield* insn.hltForever();
  }

  toJSON(): string {
    return '[SnpAttestationAgent]';
  }
}
