// The Reverse Map Table (SEV-SNP, sev-reference §7.1–7.2): one entry per 4 KiB page of system
// memory saying who owns it — the hypervisor, the firmware, or one guest at one GPA — whether the
// guest has validated it, and what each lower VMPL may do with it. The CPU checks it on every guest
// access and every host write; only the PSP writes entries directly (module-private `pspWrite`,
// reached through `RmpFirmwareAccess`), the host changes them with RMPUPDATE/PSMASH and the guest
// with PVALIDATE/RMPADJUST.
//
// The real table lives in DRAM at RMP_BASE, in a format the PPR calls non-architectural; the model
// keeps the same fields in a sparse map (an absent entry is the all-zero HYPERVISOR entry) and
// encodes them in the firmware's 16-byte layout for display (`encodeRmpEntry`).
import { PAGE_SIZE } from './paging.js';

/** Pages per 2 MiB RMP entry. */
export const PAGES_PER_2M = 512;
const SIZE_2M = PAGE_SIZE * PAGES_PER_2M;
/** GPAs an entry can hold: GPA[50:12] (sev-reference §7.1); bit 51 up is the ASID field. */
const GPA_LIMIT = 2 ** 51;

/** Return codes of RMPUPDATE, PSMASH, PVALIDATE and RMPADJUST (APM vol. 3; Linux asm/sev.h). */
export const RmpStatus = {
  SUCCESS: 0,
  FAIL_INPUT: 1,
  FAIL_PERMISSION: 2,
  FAIL_INUSE: 3,
  FAIL_OVERLAP: 4,
  FAIL_SIZEMISMATCH: 6,
} as const;
export type RmpStatusCode = (typeof RmpStatus)[keyof typeof RmpStatus];

const statusNames = new Map<number, string>(Object.entries(RmpStatus).map(([k, v]) => [v, k]));
/** "FAIL_INPUT (1)" for display. */
export function rmpStatusName(code: number): string {
  return `${statusNames.get(code) ?? 'UNKNOWN'} (${code})`;
}

/** VMPL permission mask bits (RMP quadword 1, one byte per VMPL). */
export const VmplPerm = {
  READ: 1 << 0,
  WRITE: 1 << 1,
  EXEC_USER: 1 << 2,
  EXEC_SUPERVISOR: 1 << 3,
  SUPERVISOR_SHADOW_STACK: 1 << 4,
} as const;
/** Every permission (what VMPL0 always has on a validated page). */
export const VMPL_PERMS_ALL = 0x1f;

export type RmpPageSize = '4K' | '2M';

/** One RMP entry's architectural fields. */
export interface RmpEntry {
  readonly assigned: boolean;
  readonly pageSize: RmpPageSize;
  readonly immutable: boolean;
  /** Guest physical address of the page (page-aligned bytes); 0 for hypervisor/firmware pages. */
  readonly gpa: number;
  /** Owning guest's ASID; 0 = hypervisor or firmware. */
  readonly asid: number;
  /** The page is a VMSA (or, for the firmware, a guest-context page). */
  readonly vmsa: boolean;
  readonly validated: boolean;
  /** Firmware's tag for metadata pages (ASPFW keeps it in GPA bits 38:36). */
  readonly metadata: boolean;
  /** Permission masks of VMPL0..3. */
  readonly vmplPerms: readonly [number, number, number, number];
}

/** The all-zero entry: a page the hypervisor owns (what an absent entry reads as). */
export const RMP_HYPERVISOR_ENTRY: RmpEntry = Object.freeze({
  assigned: false,
  pageSize: '4K',
  immutable: false,
  gpa: 0,
  asid: 0,
  vmsa: false,
  validated: false,
  metadata: false,
  vmplPerms: Object.freeze<[number, number, number, number]>([0, 0, 0, 0]),
});

/** Page states the firmware derives from the fields (ASPFW sev_rmp.c rmp_entry_get_state). */
export type RmpPageState =
  | 'HYPERVISOR'
  | 'HV_FIXED'
  | 'FIRMWARE'
  | 'RECLAIM'
  | 'CONTEXT'
  | 'METADATA'
  | 'PRE_GUEST'
  | 'PRE_SWAP'
  | 'GUEST_INVALID'
  | 'GUEST_VALID'
  | 'INVALID';

/** The firmware's name for an entry's combination of fields (sev-reference §7.1 table). */
export function rmpPageState(e: RmpEntry): RmpPageState {
  if (!e.assigned) {
    if (e.validated || e.asid !== 0) return 'INVALID';
    return e.immutable ? 'HV_FIXED' : 'HYPERVISOR';
  }
  if (e.asid === 0) {
    if (e.validated) return 'INVALID';
    if (!e.immutable) return 'RECLAIM';
    if (e.metadata) return 'METADATA';
    if (e.gpa === 0) return e.vmsa ? 'CONTEXT' : 'FIRMWARE';
    return 'INVALID';
  }
  if (e.immutable) return e.validated ? 'PRE_SWAP' : 'PRE_GUEST';
  return e.validated ? 'GUEST_VALID' : 'GUEST_INVALID';
}

// ASPFW sev_rmp.h rmp_fields / rmp_quadword2 (sev-reference §7.1): the in-DRAM entry, 16 bytes.
/** The entry in the firmware's 16-byte format (quadword 0 flags/GPA/ASID, quadword 1 VMPL masks). */
export function encodeRmpEntry(e: RmpEntry): Buffer {
  const out = Buffer.alloc(16);
  let q0 = 0n;
  if (e.assigned) q0 |= 1n;
  if (e.pageSize === '2M') q0 |= 1n << 1n;
  if (e.immutable) q0 |= 1n << 2n;
  q0 |= (BigInt(e.gpa) >> 12n) << 12n;
  if (e.metadata) q0 |= 1n << 48n;
  q0 |= BigInt(e.asid & 0x3ff) << 51n;
  if (e.vmsa) q0 |= 1n << 61n;
  if (e.validated) q0 |= 1n << 62n;
  out.writeBigUInt64LE(BigInt.asUintN(64, q0), 0);
  for (let v = 0; v < 4; v++) out[8 + v] = e.vmplPerms[v] as number;
  return out;
}

/** RMPUPDATE's 16-byte input (Linux struct rmp_state), decoded. */
export interface RmpUpdateState {
  readonly gpa: number;
  readonly assigned: boolean;
  readonly pageSize: RmpPageSize;
  readonly immutable: boolean;
  readonly asid: number;
}

/** A fault the RMP check raises on a guest access (the MMU turns it into #NPF or #VC). */
export interface RmpViolation {
  readonly kind: '#NPF' | '#VC';
  /** #NPF EXITINFO1 bits to add (RMP, encrypted access, size mismatch, VMPL). */
  readonly exitInfoBits: number;
  readonly reason: string;
}

/**
 * What PVALIDATE does: EAX and rFLAGS.CF — or, for a 4K request on a page the RMP holds as 2M, no
 * return at all but a #VMEXIT(NPF) with the SIZEM bit (APM Table 15-40), after which the host
 * PSMASHes and the guest's instruction restarts. (The #NPF's ENC bit is the caller's to add: it
 * depends on the C-bit of the guest's mapping, which the RMP does not see.)
 */
export type PvalidateOutcome = { readonly status: RmpStatusCode; readonly noUpdate: boolean } | RmpViolation;
/** What RMPADJUST does: EAX, or a #VMEXIT(NPF) with SIZEM as for PVALIDATE. */
export type RmpadjustOutcome = RmpStatusCode | RmpViolation;

/** #NPF EXITINFO1 bits of an RMP check (APM vol. 2 §15.36.10; KVM PFERR_GUEST_*). */
export const NPF_RMP = 2 ** 31;
export const NPF_ENC = 2 ** 34;
export const NPF_SIZEM = 2 ** 35;
export const NPF_VMPL = 2 ** 36;
/** Host #PF error-code bit 31: the write hit an RMP-assigned page. */
export const PF_RMP = 2 ** 31;

type RmpGuestInstruction = 'PVALIDATE' | 'RMPADJUST';

/** The #NPF of a 4K PVALIDATE/RMPADJUST on a larger page (APM §15.36.11: "with the SIZEM bit set"). */
function sizeMismatchNpf(instruction: RmpGuestInstruction, gpa: number, backing: string): RmpViolation {
  return {
    kind: '#NPF',
    exitInfoBits: NPF_RMP + NPF_SIZEM,
    reason:
      `RMP: 4K ${instruction} of GPA 0x${gpa.toString(16)}, backed by ${backing} ` +
      '(SIZEM: the host must PSMASH)',
  };
}

/**
 * The checks of a PVALIDATE/RMPADJUST operand made before the RMP entry is read: a 2M request needs
 * a 2M-aligned GPA (FAIL_INPUT) and a 2M nested mapping, hence a 2M-aligned SPA
 * (FAIL_SIZEMISMATCH: APM §15.36.6, a 2M PVALIDATE of a page "mapped as 4KB in the nested page
 * table" returns an error and the guest validates each 4K page instead); a 4K request through a 2M
 * nested mapping is a #VMEXIT(NPF) (same section).
 */
function guestPageSizeCheck(
  instruction: RmpGuestInstruction,
  gpa: number,
  spa: number,
  size: RmpPageSize,
  nestedPageSize: RmpPageSize,
): RmpStatusCode | RmpViolation | undefined {
  if (size === '2M') {
    if (gpa % SIZE_2M !== 0) return RmpStatus.FAIL_INPUT;
    if (nestedPageSize === '4K' || spa % SIZE_2M !== 0) return RmpStatus.FAIL_SIZEMISMATCH;
  } else if (nestedPageSize === '2M') {
    return sizeMismatchNpf(instruction, gpa, 'a 2M nested mapping');
  }
  return undefined;
}

/**
 * APM Table 15-40 against the RMP entry: a 2M request on a 4K entry fails with FAIL_SIZEMISMATCH, a
 * 4K one on a 2M entry is a #NPF.
 */
function entrySizeCheck(
  instruction: RmpGuestInstruction,
  e: RmpEntry,
  gpa: number,
  size: RmpPageSize,
): RmpStatusCode | RmpViolation | undefined {
  if (e.pageSize === size) return undefined;
  return size === '2M' ? RmpStatus.FAIL_SIZEMISMATCH : sizeMismatchNpf(instruction, gpa, 'a 2M RMP entry');
}

/** A host write to a page the RMP assigns to a guest or the firmware. */
export class HostRmpFault extends Error {
  constructor(
    readonly spa: number,
    readonly state: RmpPageState,
  ) {
    super(
      `#PF (error code bit 31, RMP): host write to SPA 0x${spa.toString(16)}, a ${state} page — the RMP ` +
        'gives it to a guest or the firmware',
    );
    this.name = 'HostRmpFault';
  }
}

export type GuestAccessKind = 'read' | 'write' | 'fetch';

const writers = new WeakMap<Rmp, (spa: number, entry: RmpEntry) => void>();

export class Rmp {
  readonly #entries = new Map<number, RmpEntry>();
  /** Bumped on every change, so cached translations that passed an RMP check can be dropped. */
  #generation = 0;
  /** Change listeners (the MMU flushes its TLB: real TLBs cache RMP checks too). */
  readonly #onChange: (() => void)[] = [];
  /** SNP enabled (SYSCFG.SNPEn and an initialised RMP); before that nothing is checked. */
  #enabled = false;

  constructor(readonly dramBytes: number) {
    writers.set(this, (spa, entry) => this.#set(Math.floor(spa / PAGE_SIZE), entry));
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  get generation(): number {
    return this.#generation;
  }

  /** Calls `fn` after every change to the table. */
  onChange(fn: () => void): void {
    this.#onChange.push(fn);
  }

  /** The entry governing the page at `spa`: its own 4K entry, or the 2M entry covering it. */
  lookup(spa: number): RmpEntry {
    const pfn = Math.floor(spa / PAGE_SIZE);
    const own = this.#entries.get(pfn);
    if (own !== undefined && own.pageSize === '4K') return own;
    const base = pfn - (pfn % PAGES_PER_2M);
    const large = this.#entries.get(base);
    if (large !== undefined && large.pageSize === '2M') {
      // Pages of a 2M guest page each map the matching 4K slice of its GPA range.
      return { ...large, gpa: large.gpa === 0 ? 0 : large.gpa + (pfn - base) * PAGE_SIZE };
    }
    return own ?? RMP_HYPERVISOR_ENTRY;
  }

  /** RMPREAD: the entry (a copy) for display or a host's own bookkeeping. */
  read(spa: number): RmpEntry {
    return { ...this.lookup(spa) };
  }

  state(spa: number): RmpPageState {
    return rmpPageState(this.lookup(spa));
  }

  /** How many entries assign pages to `asid` (SNP_ACTIVATE refuses an ASID that still owns pages). */
  assignedCount(asid: number): number {
    let n = 0;
    for (const e of this.#entries.values()) if (e.assigned && e.asid === asid) n++;
    return n;
  }

  /** Assigned pages, for display: (spa, entry) in address order. */
  assignedPages(): { spa: number; entry: RmpEntry }[] {
    return [...this.#entries]
      .filter(([, e]) => e.assigned || e.immutable)
      .sort(([a], [b]) => a - b)
      .map(([pfn, entry]) => ({ spa: pfn * PAGE_SIZE, entry }));
  }

  #set(pfn: number, entry: RmpEntry): void {
    if (!entry.assigned && !entry.immutable && !entry.validated && entry.asid === 0)
      this.#entries.delete(pfn);
    else
      this.#entries.set(
        pfn,
        Object.freeze({ ...entry, vmplPerms: Object.freeze([...entry.vmplPerms]) }) as RmpEntry,
      );
    this.#generation++;
    for (const fn of this.#onChange) fn();
  }

  #inRange(spa: number, size: RmpPageSize): boolean {
    return (
      Number.isSafeInteger(spa) && spa >= 0 && spa + (size === '2M' ? SIZE_2M : PAGE_SIZE) <= this.dramBytes
    );
  }

  // ---- host instructions ----

  /**
   * RMPUPDATE (host, CPL0): writes assigned/page size/immutable/ASID/GPA of one entry and clears
   * VALIDATED and VMSA; an assigned page gets every permission for VMPL0 and none for VMPL1–3
   * (APM vol. 2 §15.36.7: "When the hypervisor assigns a page to a guest using RMPUPDATE, full
   * permissions are enabled for VMPL0 and are disabled for all other VMPLs"; VeriSMo's RMP model,
   * rmp_perm_init, likewise). An immutable entry is the firmware's (FAIL_PERMISSION); a 2M update
   * over assigned 4K entries, or a 4K update of any page of an assigned 2M entry, overlaps
   * (FAIL_OVERLAP, Linux: "RMPUPDATE detected 4K page and 2MB page overlap"; KVM PSMASHes first).
   */
  rmpupdate(spa: number, next: RmpUpdateState): RmpStatusCode {
    if (!this.#enabled) return RmpStatus.FAIL_INPUT;
    if (spa % PAGE_SIZE !== 0 || !this.#inRange(spa, next.pageSize)) return RmpStatus.FAIL_INPUT;
    if (next.pageSize === '2M' && spa % SIZE_2M !== 0) return RmpStatus.FAIL_INPUT;
    const span = next.pageSize === '2M' ? SIZE_2M : PAGE_SIZE;
    // The entry keeps GPA[50:12] only: a larger GPA would spill into the ASID bits of the encoded
    // entry (and alias another page's reverse map), so it is refused like any other bad input.
    if (!Number.isSafeInteger(next.gpa) || next.gpa < 0 || next.gpa + span > GPA_LIMIT)
      return RmpStatus.FAIL_INPUT;
    if (next.gpa % span !== 0) return RmpStatus.FAIL_INPUT;
    if (!Number.isInteger(next.asid) || next.asid < 0 || next.asid > 0x3ff) return RmpStatus.FAIL_INPUT;
    if (!next.assigned && next.asid !== 0) return RmpStatus.FAIL_INPUT;
    const pfn = spa / PAGE_SIZE;
    const current = this.lookup(spa);
    if (current.immutable) return RmpStatus.FAIL_PERMISSION;
    const base = pfn - (pfn % PAGES_PER_2M);
    const large = this.#entries.get(base);
    // Including the 2M page's own base: a 4K entry there would replace the 2M one and hand the other
    // 511 pages, validated or not, silently back to the hypervisor.
    if (next.pageSize === '4K' && large?.pageSize === '2M' && large.assigned) return RmpStatus.FAIL_OVERLAP;
    if (next.pageSize === '2M') {
      for (let i = 1; i < PAGES_PER_2M; i++) {
        const e = this.#entries.get(pfn + i);
        if (e?.immutable === true) return RmpStatus.FAIL_PERMISSION;
        if (e?.assigned === true && next.assigned) return RmpStatus.FAIL_OVERLAP;
      }
    }
    this.#set(pfn, {
      assigned: next.assigned,
      pageSize: next.pageSize,
      immutable: next.immutable,
      gpa: next.assigned ? next.gpa : 0,
      asid: next.asid,
      vmsa: false,
      validated: false,
      metadata: false,
      vmplPerms: next.assigned ? [VMPL_PERMS_ALL, 0, 0, 0] : [0, 0, 0, 0],
    });
    return RmpStatus.SUCCESS;
  }

  /**
   * PSMASH (host): splits the 2M entry at `spa` into 512 4K entries with the same owner, consecutive
   * GPAs and the same VALIDATED and permissions — so a guest's validated 2M page stays validated.
   */
  psmash(spa: number): RmpStatusCode {
    if (!this.#enabled) return RmpStatus.FAIL_INPUT;
    if (spa % SIZE_2M !== 0 || !this.#inRange(spa, '2M')) return RmpStatus.FAIL_INPUT;
    const base = spa / PAGE_SIZE;
    const large = this.#entries.get(base);
    if (large === undefined || large.pageSize !== '2M') return RmpStatus.FAIL_INPUT;
    if (large.immutable) return RmpStatus.FAIL_PERMISSION;
    for (let i = PAGES_PER_2M - 1; i >= 0; i--) {
      this.#set(base + i, { ...large, pageSize: '4K', gpa: large.assigned ? large.gpa + i * PAGE_SIZE : 0 });
    }
    return RmpStatus.SUCCESS;
  }

  // ---- guest instructions (the core calls these with the running guest's identity) ----

  /**
   * PVALIDATE (guest, VMPL0 only): sets or clears VALIDATED — and nothing else — of the guest's own
   * page at `gpa` (translated to `spa` by the CPU). `noUpdate` is rFLAGS.CF: the bit already had
   * that value. `nestedPageSize` is the size of the nested mapping the CPU found (default: the
   * requested size, i.e. a matching mapping).
   *
   * Page sizes (APM vol. 2 §15.36.6, §15.36.11, Table 15-40): a 2M request over a 4K nested
   * mapping or a 4K RMP entry returns FAIL_SIZEMISMATCH, and the guest retries page by page; a 4K
   * request on a 2M RMP entry (or through a 2M nested mapping) is a #VMEXIT(NPF) with the SIZEM
   * bit, for the host to PSMASH.
   */
  pvalidate(
    guest: { asid: number; vmpl: number },
    gpa: number,
    spa: number,
    size: RmpPageSize,
    validate: boolean,
    nestedPageSize: RmpPageSize = size,
  ): PvalidateOutcome {
    const fail = (status: RmpStatusCode) => ({ status, noUpdate: false });
    // ASID 0 is the host, which has no PVALIDATE (#UD outside a guest); without this check "the
    // guest of ASID 0" would own every firmware page.
    if (guest.asid === 0) return fail(RmpStatus.FAIL_INPUT);
    if (guest.vmpl !== 0) return fail(RmpStatus.FAIL_PERMISSION);
    const sizeCheck = guestPageSizeCheck('PVALIDATE', gpa, spa, size, nestedPageSize);
    if (sizeCheck !== undefined) return typeof sizeCheck === 'number' ? fail(sizeCheck) : sizeCheck;
    const pfn = Math.floor(spa / PAGE_SIZE);
    const e = this.lookup(spa);
    if (!e.assigned || e.asid !== guest.asid || e.immutable || e.gpa !== gpa - (gpa % PAGE_SIZE))
      return fail(RmpStatus.FAIL_INPUT);
    const entrySize = entrySizeCheck('PVALIDATE', e, gpa, size);
    if (entrySize !== undefined) return typeof entrySize === 'number' ? fail(entrySize) : entrySize;
    if (e.validated === validate) return { status: RmpStatus.SUCCESS, noUpdate: true };
    // A matching size means the entry is stored at this pfn (4K) or at this 2M-aligned pfn (2M).
    // Only VALIDATED changes (APM §15.36.3: PVALIDATE "allows the guest to write the Validated
    // flag"; VeriSMo's RMP model sets nothing else): the VMPL masks RMPUPDATE and RMPADJUST wrote
    // stay, and so does the VMSA bit, which VMPL0 clears with RMPADJUST.
    const stored = this.#entries.get(pfn) as RmpEntry;
    this.#set(pfn, { ...stored, validated: validate });
    return { status: RmpStatus.SUCCESS, noUpdate: false };
  }

  /**
   * RMPADJUST (guest): a VMPL sets the permissions of a strictly less privileged VMPL on one of the
   * guest's validated pages; it can grant only what it has itself. Page sizes as for PVALIDATE.
   */
  rmpadjust(
    guest: { asid: number; vmpl: number },
    gpa: number,
    spa: number,
    size: RmpPageSize,
    target: { vmpl: number; perms: number; vmsa: boolean },
    nestedPageSize: RmpPageSize = size,
  ): RmpadjustOutcome {
    if (guest.asid === 0) return RmpStatus.FAIL_INPUT; // the host has no RMPADJUST (see pvalidate)
    if (!Number.isInteger(target.vmpl) || target.vmpl < 0 || target.vmpl > 3) return RmpStatus.FAIL_INPUT;
    if (target.vmpl <= guest.vmpl) return RmpStatus.FAIL_PERMISSION;
    if ((target.perms & ~VMPL_PERMS_ALL) !== 0) return RmpStatus.FAIL_INPUT;
    const sizeCheck = guestPageSizeCheck('RMPADJUST', gpa, spa, size, nestedPageSize);
    if (sizeCheck !== undefined) return sizeCheck;
    const pfn = Math.floor(spa / PAGE_SIZE);
    const e = this.lookup(spa);
    if (!e.assigned || e.asid !== guest.asid || e.gpa !== gpa - (gpa % PAGE_SIZE))
      return RmpStatus.FAIL_INPUT;
    if (!e.validated) return RmpStatus.FAIL_INPUT;
    const entrySize = entrySizeCheck('RMPADJUST', e, gpa, size);
    if (entrySize !== undefined) return entrySize;
    const mine = e.vmplPerms[guest.vmpl] as number;
    if ((target.perms & ~mine) !== 0) return RmpStatus.FAIL_PERMISSION;
    const stored = this.#entries.get(pfn) as RmpEntry;
    const perms = [...stored.vmplPerms] as [number, number, number, number];
    perms[target.vmpl] = target.perms;
    // The VMSA bit is VMPL0's alone: "can be set by the AMD-SP or by a vCPU running at VMPL0 using
    // RMPADJUST" (APM §15.36.12); below VMPL0 the request is ignored, not refused (OVMF
    // SevSnpRmpAdjust: "The VMSA change is only made when running at VMPL0 and is ignored
    // otherwise"). Else a VMPL1 kernel could turn a page it may write into a VMSA.
    const vmsa = guest.vmpl === 0 ? target.vmsa : stored.vmsa;
    this.#set(pfn, { ...stored, vmplPerms: perms, vmsa });
    return RmpStatus.SUCCESS;
  }

  // ---- checks the CPU makes ----

  /**
   * The check on every access of a running guest, after the nested walk (APM vol. 2 §15.36.10,
   * Table 15-39): `private` = the access uses the guest's key (C=1; the MMU passes true for
   * instruction fetches and page-table walks of an SEV guest, whose effective C-bit is always 1).
   * `nestedPageSize` is the size of the nested mapping — 4K, the only size the model's nested
   * tables have. Returns undefined when allowed.
   *
   * - A non-SNP guest gets the Hypervisor-Owned check on writes (the host's rule).
   * - An SNP guest's C=0 write gets the Hypervisor-Owned check; its C=0 *read* is not checked at
   *   all (it reads ciphertext of an assigned page, as the host may).
   * - Private accesses: RMP-Covered, Guest-Owned, Reverse-Map, Mutable and Page-Size (#NPF), then
   *   Validated (#VC), then VMPL (#NPF) — in that priority.
   */
  checkGuestAccess(
    guest: { asid: number; snp: boolean; vmpl: number },
    gpa: number,
    spa: number,
    access: GuestAccessKind,
    isPrivate: boolean,
    nestedPageSize: RmpPageSize = '4K',
  ): RmpViolation | undefined {
    if (!this.#enabled) return undefined;
    const where = `GPA 0x${gpa.toString(16)} (SPA 0x${spa.toString(16)})`;
    if (!guest.snp || !isPrivate) {
      if (access === 'write' && !this.#hypervisorOwned(spa, nestedPageSize))
        return {
          kind: '#NPF',
          exitInfoBits: NPF_RMP,
          reason: guest.snp
            ? `RMP: shared (C=0) write to ${where}, a page assigned as private`
            : `RMP: write to ${where}, an assigned page`,
        };
      return undefined;
    }
    const e = this.lookup(spa);
    const pageGpa = gpa - (gpa % PAGE_SIZE);
    if (!e.assigned || e.asid !== guest.asid)
      return {
        kind: '#NPF',
        exitInfoBits: NPF_RMP + NPF_ENC,
        reason: `RMP: private access to ${where}, a page not assigned to ASID ${guest.asid}`,
      };
    if (e.gpa !== pageGpa)
      return {
        kind: '#NPF',
        exitInfoBits: NPF_RMP + NPF_ENC,
        reason: `RMP: ${where} is assigned to this guest at GPA 0x${e.gpa.toString(16)}, not here (remapped)`,
      };
    if (e.immutable)
      return {
        kind: '#NPF',
        exitInfoBits: NPF_RMP + NPF_ENC,
        reason: `RMP: ${where} is still being set up by the firmware (${rmpPageState(e)})`,
      };
    // Page-Size: "If the nested page table indicates a 4KB page size, the Page_Size field of the RMP
    // entry of the target page is 0" (and 1 for 2M/1G) — both ways, so a 4K nested mapping of a 2M
    // guest page faults too, and the host PSMASHes it (KVM sev_handle_rmp_fault: "Guest access via
    // NPT can trigger an #NPF if the NPT mapping is smaller than what is indicated by the 2MB RMP
    // entry"). Not the SIZEM bit: that one is PVALIDATE's and RMPADJUST's.
    if (e.pageSize !== nestedPageSize)
      return {
        kind: '#NPF',
        exitInfoBits: NPF_RMP + NPF_ENC,
        reason:
          `RMP: ${where} is a ${e.pageSize} RMP page ` +
          `reached through a ${nestedPageSize} nested mapping (the host must PSMASH or remap it)`,
      };
    if (!e.validated) return { kind: '#VC', exitInfoBits: 0, reason: `page not validated: ${where}` };
    const need =
      access === 'read' ? VmplPerm.READ : access === 'write' ? VmplPerm.WRITE : VmplPerm.EXEC_SUPERVISOR;
    // VMPL0's mask is full from RMPUPDATE on, and nothing can lower it (RMPADJUST targets only
    // higher VMPLs), so it is not consulted.
    const perms = guest.vmpl === 0 ? VMPL_PERMS_ALL : (e.vmplPerms[guest.vmpl] as number);
    if ((perms & need) === 0)
      return {
        kind: '#NPF',
        exitInfoBits: NPF_RMP + NPF_ENC + NPF_VMPL,
        reason: `RMP: VMPL${guest.vmpl} may not ${access} ${where}`,
      };
    return undefined;
  }

  /**
   * The Hypervisor-Owned check (APM §15.36.10): ASSIGNED = 0 — for a 2M mapping, of every 4K page in
   * it. IMMUTABLE does not matter: an HV_FIXED page (ASSIGNED 0, IMMUTABLE 1) is the hypervisor's
   * (Table 15-35, Owner = Hypervisor: Assigned 0, ASID 0, Immutable "-").
   */
  #hypervisorOwned(spa: number, size: RmpPageSize): boolean {
    if (size === '4K') return !this.lookup(spa).assigned;
    const base = spa - (spa % SIZE_2M);
    for (let i = 0; i < PAGES_PER_2M; i++) if (this.lookup(base + i * PAGE_SIZE).assigned) return false;
    return true;
  }

  /**
   * Host writes to pages that fail the Hypervisor-Owned check fault (#PF with the RMP bit, APM
   * Table 15-39). HV_FIXED pages pass: they stay the hypervisor's, only frozen against RMPUPDATE
   * so that the firmware may write them too (Linux keeps PSP command buffers there, e.g. the SFS
   * buffer from snp_alloc_hv_fixed_pages, and writes the commands into them).
   */
  checkHostWrite(spa: number, length: number): void {
    if (!this.#enabled || length <= 0) return;
    const first = Math.floor(spa / PAGE_SIZE);
    const last = Math.floor((spa + length - 1) / PAGE_SIZE);
    for (let pfn = first; pfn <= last; pfn++) {
      const e = this.lookup(pfn * PAGE_SIZE);
      if (e.assigned) throw new HostRmpFault(pfn * PAGE_SIZE, rmpPageState(e));
    }
  }

  /** SNP_INIT's part in hardware: the RMP is initialised (all HYPERVISOR) and checking starts. */
  enable(): void {
    if (this.#enabled) return;
    this.#entries.clear();
    this.#enabled = true;
    this.#generation++;
    for (const fn of this.#onChange) fn();
  }

  toJSON(): string {
    return `[Rmp ${this.#entries.size} entries]`;
  }
}

/**
 * The firmware's direct access to the RMP (the PSP writes entries without the host instructions'
 * restrictions: FIRMWARE/CONTEXT pages, LAUNCH_UPDATE's GUEST_VALID, reclaim). Handed to the PSP
 * at assembly, as the key-slot programmer is.
 */
export class RmpFirmwareAccess {
  readonly #rmp: Rmp;

  constructor(rmp: Rmp) {
    this.#rmp = rmp;
  }

  get enabled(): boolean {
    return this.#rmp.enabled;
  }

  lookup(spa: number): RmpEntry {
    return this.#rmp.lookup(spa);
  }

  state(spa: number): RmpPageState {
    return this.#rmp.state(spa);
  }

  assignedCount(asid: number): number {
    return this.#rmp.assignedCount(asid);
  }

  /** Writes one 4K (or 2M) entry as the firmware does. */
  write(spa: number, entry: RmpEntry): void {
    (writers.get(this.#rmp) as (spa: number, entry: RmpEntry) => void)(spa, entry);
  }

  /** SNP_INIT: initialise the table and turn checking on. */
  enable(): void {
    this.#rmp.enable();
  }

  toJSON(): string {
    return '[RmpFirmwareAccess]';
  }
}
