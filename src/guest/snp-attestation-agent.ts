// What an SNP guest's firmware does to attest itself, executing the real firmware image (the CPU
// fetches and checks the image's bytes, decrypted with the guest's key; this thread stands in for the
// firmware's logic): build page tables in its validated SNP_SEC_MEM pages, map a GHCB and two message
// pages shared (C=0) in low RAM the host never assigned, read VMPCK0 from the secrets page the PSP
// wrote, and ask the PSP for a report through the host (MSG_REPORT_REQ under AES-256-GCM, VMGEXIT).
// The host relays ciphertext only: it can drop or replay the request, never read or forge it.
import {
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
import { insn } from './kernel.js';

const FOUR_GIB = 0x1_0000_0000;
const TWO_MIB = 0x20_0000;

export interface SnpAttestationAgentOptions {
  /** C-bit position and address width, as the guest reads them from CPUID. */
  readonly paging: PagingFormat;
  /** GPA of the secrets page (OVMF's SNP_SECRETS section). */
  readonly secretsGpa: number;
  /** A validated private range for the page tables (OVMF's first SNP_SEC_MEM section; ≥ 7 pages). */
  readonly pageTableGpa: number;
  /** Three shared pages of low RAM: GHCB, request, response. */
  readonly sharedGpa: number;
  /** 64 bytes the owner asked to see in the report (a nonce, a key's hash). */
  readonly reportData: Buffer;
  /** The VMPL the report should name (this firmware runs at VMPL0). */
  readonly vmpl?: number;
}

export class SnpAttestationAgent implements GuestSoftware {
  readonly codeBase: number;
  readonly code: Buffer;
  /** The report the PSP returned (undefined until the guest ran, or if it failed: see `problem`). */
  report: Buffer | undefined;
  problem: string | undefined;
  /** Firmware status the host wrote back in the GHCB. */
  requestStatus: bigint | undefined;

  constructor(
    image: Buffer,
    readonly options: SnpAttestationAgentOptions,
  ) {
    this.code = image;
    this.codeBase = FOUR_GIB - image.length;
  }

  /** Identity page tables for the firmware, the secrets/tables region and the shared pages. */
  #pageTables(): { gpa: number; bytes: Buffer }[] {
    const o = this.options;
    const f = o.paging;
    const t = (i: number): number => o.pageTableGpa + i * PAGE_SIZE;
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
    for (let gpa = this.codeBase; gpa < FOUR_GIB; gpa += PAGE_SIZE) mapPage(gpa, true);
    const tablesRegion = Math.floor(o.pageTableGpa / TWO_MIB) * TWO_MIB;
    for (let i = 0; i < ENTRIES_PER_TABLE; i++) mapPage(tablesRegion + i * PAGE_SIZE, true);
    if (Math.floor(o.secretsGpa / TWO_MIB) * TWO_MIB !== tablesRegion) mapPage(o.secretsGpa, true);
    for (let i = 0; i < 3; i++) mapPage(o.sharedGpa + i * PAGE_SIZE, false);
    return [{ gpa: t(0), bytes: pml4 }, { gpa: t(1), bytes: pdpt }, ...tables];
  }

  *start(): GuestThread {
    const o = this.options;
    // Paging is off: these stores are private, into pages the PSP validated at launch.
    for (const { gpa, bytes } of this.#pageTables()) yield* insn.store(gpa, bytes);
    yield { op: 'writeCr3', value: o.paging.withCBit(o.pageTableGpa) };
    yield { op: 'enablePaging' };

    const secrets = decodeSnpSecretsPage(yield* insn.load(o.secretsGpa, PAGE_SIZE));
    const vmpck = secrets.vmpck[0];
    const [ghcbGpa, requestGpa, responseGpa] = [0, 1, 2].map((i) => o.sharedGpa + i * PAGE_SIZE) as [
      number,
      number,
      number,
    ];
    const request = sealSnpGuestMessage({
      vmpck,
      vmpckIndex: 0,
      seqno: 1n,
      type: SnpMsgType.REPORT_REQ,
      version: 1,
      payload: encodeSnpReportRequest({
        reportData: o.reportData,
        vmpl: o.vmpl ?? 0,
        keySel: SnpKeySel.VLEK_OR_VCEK,
      }),
    });
    yield* insn.store(requestGpa, request);
    yield* insn.store(
      ghcbGpa,
      Ghcb.encode({
        swExitCode: BigInt(GhcbExit.SNP_GUEST_REQUEST),
        swExitInfo1: BigInt(requestGpa),
        swExitInfo2: BigInt(responseGpa),
        protocolVersion: GHCB_PROTOCOL_VERSION,
      }),
    );
    yield { op: 'vmgexit', ghcbGpa };

    this.requestStatus = Ghcb.decode(yield* insn.load(ghcbGpa, PAGE_SIZE)).swExitInfo2;
    if (this.requestStatus !== 0n) {
      this.problem = `the firmware refused the request (status 0x${this.requestStatus.toString(16)})`;
    } else {
      const opened = openSnpGuestMessage(yield* insn.load(responseGpa, PAGE_SIZE), vmpck);
      if (!opened.ok) this.problem = 'the response does not authenticate under VMPCK0';
      else if (opened.header.msgSeqno !== 2n || opened.header.msgType !== SnpMsgType.REPORT_RSP)
        this.problem = 'the response is not the answer to this request';
      else {
        const rsp = decodeSnpReportResponse(opened.payload);
        if (rsp.status !== 0) this.problem = `MSG_REPORT_RSP status 0x${rsp.status.toString(16)}`;
        else this.report = rsp.report;
      }
    }
    for (;;) yield* insn.hltForever();
  }

  toJSON(): string {
    return '[SnpAttestationAgent]';
  }
}
