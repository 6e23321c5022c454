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

const HYPERVISOR_ENTRY: RmpEntry = Object.freeze({
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

/** #NPF EXITINFO1 bits of an RMP check (KVM PFERR_GUEST_*; sev-reference §7.2, unverified vs APM). */
export const NPF_RMP = 2 ** 31;
export const NPF_ENC = 2 ** 34;
export const NPF_SIZEM = 2 ** 35;
export const NPF_VMPL = 2 ** 36;
/** Host #PF error-code bit 31: the write hit an RMP-assigned page. */
export const PF_RMP = 2 ** 31;

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
    return own ?? HYPERVISOR_ENTRY;
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
   * VALIDATED, VMSA and the VMPL permissions. An immutable entry is the firmware's
   * (FAIL_PERMISSION); a 2M update over assigned 4K entries, or a 4K update inside an assigned 2M
   * entry, overlaps (FAIL_OVERLAP, Linux then PSMASHes and retries).
   */
  rmpupdate(spa: number, next: RmpUpdateState): RmpStatusCode {
    if (!this.#enabled) return RmpStatus.FAIL_INPUT;
    if (spa % PAGE_SIZE !== 0 || !this.#inRange(spa, next.pageSize)) return RmpStatus.FAIL_INPUT;
    if (next.pageSize === '2M' && spa % SIZE_2M !== 0) return RmpStatus.FAIL_INPUT;
    if (next.gpa % PAGE_SIZE !== 0 || (next.pageSize === '2M' && next.gpa % SIZE_2M !== 0))
      return RmpStatus.FAIL_INPUT;
    if (!Number.isInteger(next.asid) || next.asid < 0 || next.asid > 0x3ff) return RmpStatus.FAIL_INPUT;
    if (!next.assigned && next.asid !== 0) return RmpStatus.FAIL_INPUT;
    const pfn = spa / PAGE_SIZE;
    const current = this.lookup(spa);
    if (current.immutable) return RmpStatus.FAIL_PERMISSION;
    const base = pfn - (pfn % PAGES_PER_2M);
    const large = this.#entries.get(base);
    if (next.pageSize === '4K' && large?.pageSize === '2M' && large.assigned && base !== pfn)
      return RmpStatus.FAIL_OVERLAP;
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
      vmplPerms: [0, 0, 0, 0],
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
   * PVALIDATE (guest, VMPL0 only): sets or clears VALIDATED of the guest's own page at `gpa`
   * (translated to `spa` by the CPU). `noUpdate` is rFLAGS.CF: the bit already had that value.
   */
  pvalidate(
    guest: { asid: number; vmpl: number },
    gpa: number,
    spa: number,
    size: RmpPageSize,
    validate: boolean,
  ): { status: RmpStatusCode; noUpdate: boolean } {
    const fail = (status: RmpStatusCode) => ({ status, noUpdate: false });
    if (guest.vmpl !== 0) return fail(RmpStatus.FAIL_PERMISSION);
    if (size === '2M' && (gpa % SIZE_2M !== 0 || spa % SIZE_2M !== 0)) return fail(RmpStatus.FAIL_INPUT);
    const pfn = Math.floor(spa / PAGE_SIZE);
    const e = this.lookup(spa);
    if (!e.assigned || e.asid !== guest.asid || e.immutable || e.gpa !== gpa - (gpa % PAGE_SIZE))
      return fail(RmpStatus.FAIL_INPUT);
    if (e.pageSize !== size) return fail(RmpStatus.FAIL_SIZEMISMATCH);
    if (e.validated === validate) return { status: RmpStatus.SUCCESS, noUpdate: true };
    // A matching size means the entry is stored at this pfn (4K) or at this 2M-aligned pfn (2M).
    const stored = this.#entries.get(pfn) as RmpEntry;
    // Validating grants VMPL0 everything and lower VMPLs nothing (VMPL0 hands out rights with RMPADJUST).
    this.#set(pfn, {
      ...stored,
      validated: validate,
      vmplPerms: validate ? [VMPL_PERMS_ALL, 0, 0, 0] : [0, 0, 0, 0],
      vmsa: validate ? stored.vmsa : false,
    });
    return { status: RmpStatus.SUCCESS, noUpdate: false };
  }

  /**
   * RMPADJUST (guest): a VMPL sets the permissions (and the VMSA bit) of a strictly less privileged
   * VMPL on one of the guest's validated pages; it can grant only what it has itself.
   */
  rmpadjust(
    guest: { asid: number; vmpl: number },
    gpa: number,
    spa: number,
    size: RmpPageSize,
    target: { vmpl: number; perms: number; vmsa: boolean },
  ): RmpStatusCode {
    if (!Number.isInteger(target.vmpl) || target.vmpl < 0 || target.vmpl > 3) return RmpStatus.FAIL_INPUT;
    if (target.vmpl <= guest.vmpl) return RmpStatus.FAIL_PERMISSION;
    if ((target.perms & ~VMPL_PERMS_ALL) !== 0) return RmpStatus.FAIL_INPUT;
    const pfn = Math.floor(spa / PAGE_SIZE);
    const e = this.lookup(spa);
    if (!e.assigned || e.asid !== guest.asid || e.gpa !== gpa - (gpa % PAGE_SIZE))
      return RmpStatus.FAIL_INPUT;
    if (!e.validated) return RmpStatus.FAIL_INPUT;
    if (e.pageSize !== size) return RmpStatus.FAIL_SIZEMISMATCH;
    const mine = e.vmplPerms[guest.vmpl] as number;
    if ((target.perms & ~mine) !== 0) return RmpStatus.FAIL_PERMISSION;
    if (size === '2M' && spa % SIZE_2M !== 0) return RmpStatus.FAIL_INPUT;
    const stored = this.#entries.get(pfn) as RmpEntry;
    const perms = [...stored.vmplPerms] as [number, number, number, number];
    perms[target.vmpl] = target.perms;
    this.#set(pfn, { ...stored, vmplPerms: perms, vmsa: target.vmsa });
    return RmpStatus.SUCCESS;
  }

  // ---- checks the CPU makes ----

  /**
   * The check on every access of a running guest, after the nested walk (sev-reference §7.2):
   * `private` = the access uses the guest's key (C=1, page-table walk or instruction fetch).
   * Returns undefined when allowed. Non-SNP guests are held to the host's rule: no writes into
   * assigned pages.
   */
  checkGuestAccess(
    guest: { asid: number; snp: boolean; vmpl: number },
    gpa: number,
    spa: number,
    access: GuestAccessKind,
    isPrivate: boolean,
  ): RmpViolation | undefined {
    if (!this.#enabled) return undefined;
    const e = this.lookup(spa);
    const where = `GPA 0x${gpa.toString(16)} (SPA 0x${spa.toString(16)})`;
    if (!guest.snp) {
      if (access === 'write' && e.assigned)
        return { kind: '#NPF', exitInfoBits: NPF_RMP, reason: `RMP: write to ${where}, an assigned page` };
      return undefined;
    }
    if (!isPrivate) {
      if (e.assigned)
        return {
          kind: '#NPF',
          exitInfoBits: NPF_RMP,
          reason: `RMP: shared (C=0) access to ${where}, a page assigned as private`,
        };
      return undefined;
    }
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
    if (!e.validated) return { kind: '#VC', exitInfoBits: 0, reason: `page not validated: ${where}` };
    const need =
      access === 'read' ? VmplPerm.READ : access === 'write' ? VmplPerm.WRITE : VmplPerm.EXEC_SUPERVISOR;
    const perms = guest.vmpl === 0 ? VMPL_PERMS_ALL : (e.vmplPerms[guest.vmpl] as number);
    if ((perms & need) === 0)
      return {
        kind: '#NPF',
        exitInfoBits: NPF_RMP + NPF_ENC + NPF_VMPL,
        reason: `RMP: VMPL${guest.vmpl} may not ${access} ${where}`,
      };
    return undefined;
  }

  /** Host writes to assigned (or HV_FIXED) pages fault (#PF with the RMP bit). */
  checkHostWrite(spa: number, length: number): void {
    if (!this.#enabled || length <= 0) return;
    const first = Math.floor(spa / PAGE_SIZE);
    const last = Math.floor((spa + length - 1) / PAGE_SIZE);
    for (let pfn = first; pfn <= last; pfn++) {
      const e = this.lookup(pfn * PAGE_SIZE);
      if (e.assigned || e.immutable) throw new HostRmpFault(pfn * PAGE_SIZE, rmpPageState(e));
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
