// The MMU of a core running a guest: guest page walk (tables in guest memory, always read with the
// guest key under SEV), nested walk GPA→SPA (host-owned tables in host memory), C-bit key
// selection, and an ASID-tagged TLB (ARCHITECTURE.md, "data path of one guest memory access").
import type { Cache } from './cache.js';
import { KEY_HOST, KEY_NONE, type KeyId } from './memory-controller.js';
import { PAGE_SIZE, PTE_SIZE, type PagingFormat, tableIndices } from './paging.js';
import type { Rmp, RmpPageSize } from './rmp.js';

export type AccessKind = 'read' | 'write' | 'fetch';

/** Page-fault error-code bits (APM vol. 2 §8.4.2); the same bits start #NPF's EXITINFO1. */
export const PF_PRESENT = 1 << 0;
export const PF_WRITE = 1 << 1;
export const PF_USER = 1 << 2;
export const PF_RSVD = 1 << 3;
export const PF_FETCH = 1 << 4;
/** #NPF EXITINFO1 bit 32: fault on the final GPA; bit 33: fault while walking guest page tables. */
export const NPF_FINAL_GPA = 2 ** 32;
export const NPF_GUEST_TABLE = 2 ** 33;

/** A guest #PF: delivered to the guest's own handler (CR2 = va). */
export interface PageFault {
  readonly kind: '#PF';
  readonly va: number;
  readonly errorCode: number;
  readonly reason: string;
}

/** A #NPF: a VMEXIT to the host with EXITINFO1 = error code, EXITINFO2 = GPA. */
export interface NestedPageFault {
  readonly kind: '#NPF';
  readonly gpa: number;
  readonly exitInfo1: number;
  readonly reason: string;
}

/**
 * A #VC raised by the RMP check (SNP: a private access to a page the guest has not validated);
 * delivered to the guest's own handler with error code PAGE_NOT_VALIDATED, and the core leaves `va`
 * in CR2 (APM vol. 2 §15.36.10).
 */
export interface VcFault {
  readonly kind: '#VC';
  readonly va: number;
  readonly errorCode: number;
  readonly reason: string;
}

export type TranslationFault = PageFault | NestedPageFault | VcFault;

/**
 * #VC error code of an RMP "page not validated" event: PAGE_NOT_VALIDATED, 0x404 (APM vol. 2
 * §15.36.10: "A failure of the page validation check results in a #VC with error code
 * PAGE_NOT_VALIDATED (0x404). The faulting guest virtual address is saved to CR2"). Linux's
 * uapi/asm/svm.h has no name for it (its exit codes stop at VMGEXIT 0x403, then PML_FULL 0x407):
 * its #VC handler treats the event as fatal.
 */
export const VC_PAGE_NOT_VALIDATED = 0x404;

/** The only nested page size the model's nested tables map (their large-page bit is reserved here). */
const NESTED_PAGE_SIZE: RmpPageSize = '4K';

export interface Translation {
  readonly kind: 'ok';
  readonly spa: number;
  readonly key: KeyId;
}

/** The paging state the core runs a guest with (from its VMCB / registers). */
export interface GuestPagingState {
  /** ASID of the running guest: its memory-controller key id. */
  readonly asid: number;
  /** SEV enabled in the VMCB: private accesses use the guest key. */
  readonly sev: boolean;
  readonly pagingEnabled: boolean;
  /** CR3 as loaded (may carry the C-bit; under SEV the tables are private regardless). */
  readonly cr3: number;
  /** Nested CR3 (host physical, may carry the C-bit for SME-encrypted tables). */
  readonly nestedCr3: number;
  /** SEV-SNP active for this guest (VMSA SEV_FEATURES bit 0): every access is RMP-checked as the guest's. */
  readonly snp?: boolean;
  /** The VMPL the vCPU runs at (SNP). */
  readonly vmpl?: number;
}

/** Bits of TlbEntry.rmpChecked: which access kinds the RMP has allowed for this entry. */
const RMP_OK: Readonly<Record<AccessKind, number>> = { read: 1, write: 2, fetch: 4 };

interface TlbEntry {
  spaPage: number;
  /** Key for data accesses (guest key for C=1, else per the nested leaf's C-bit). */
  dataKey: KeyId;
  writable: boolean;
  executable: boolean;
  /** GPA of the page (for RMP checks of further access kinds). */
  gpaPage: number;
  /** Whether the leaf was private (C=1). */
  private: boolean;
  /** RMP_OK bits of the access kinds already checked against the RMP... */
  rmpChecked: number;
  /** ...for this VMPL (vCPUs of one ASID at different VMPLs share the ASID's TLB entries). */
  rmpVmpl: number;
}

/** Distinct key for one (ASID, page) pair: ASIDs < 2^11, VAs < 2^48. */
function tlbTag(asid: number, page: number): number {
  return asid * 2 ** 36 + page;
}

export class Mmu {
  readonly #tlb = new Map<number, TlbEntry>();
  /** Counts for the bench and the demo. */
  readonly stats = { tlbHits: 0, tlbMisses: 0, walks: 0 };

  readonly #cache: Cache;
  readonly #rmp: Rmp | undefined;

  constructor(
    cache: Cache,
    readonly format: PagingFormat,
    rmp?: Rmp,
  ) {
    this.#cache = cache;
    this.#rmp = rmp;
    // Real TLBs cache RMP checks as well; any RMP change invalidates them here.
    rmp?.onChange(() => this.flushAll());
  }

  /** One-entry memo in front of the TLB map: the last (ASID, page) looked up. */
  #lastTag = -1;
  #lastEntry: TlbEntry | undefined;
  /** Reused result object: valid until the next translate() call. */
  readonly #ok: { kind: 'ok'; spa: number; key: KeyId } = { kind: 'ok', spa: 0, key: 0 };

  /** Drops every TLB entry of an ASID (VMCB TLB_CONTROL, or the guest's CR3 write). */
  flushAsid(asid: number): void {
    for (const tag of this.#tlb.keys()) if (Math.floor(tag / 2 ** 36) === asid) this.#tlb.delete(tag);
    this.#lastTag = -1;
  }

  /** INVLPG. */
  invalidatePage(asid: number, va: number): void {
    this.#tlb.delete(tlbTag(asid, Math.floor(va / PAGE_SIZE)));
    this.#lastTag = -1;
  }

  flushAll(): void {
    this.#tlb.clear();
    this.#lastTag = -1;
  }

  /** GPA → SPA through the nested tables at `nestedCr3`, or undefined if unmapped. */
  nestedTranslate(nestedCr3: number, gpa: number): number | undefined {
    const state: GuestPagingState = { asid: 0, sev: false, pagingEnabled: false, cr3: 0, nestedCr3 };
    const r = this.#nestedWalk(state, gpa, 'read', false);
    return r.kind === 'ok' ? r.spa : undefined;
  }

  /**
   * Translates a guest access; faults are returned, never thrown. The returned Translation is a
   * reused object, valid until the next call.
   */
  translate(state: GuestPagingState, va: number, access: AccessKind): Translation | TranslationFault {
    const page = Math.floor(va / PAGE_SIZE);
    const offset = va - page * PAGE_SIZE;
    const tag = tlbTag(state.asid, page);
    let entry = tag === this.#lastTag ? this.#lastEntry : this.#tlb.get(tag);
    if (entry === undefined) {
      this.stats.tlbMisses++;
      const walked = this.#walk(state, va, access);
      if (walked.kind !== 'entry') return walked;
      entry = walked.entry;
      this.#tlb.set(tag, entry);
    } else {
      this.stats.tlbHits++;
    }
    const vmpl = state.vmpl ?? 0;
    if (entry.rmpVmpl !== vmpl) {
      entry.rmpVmpl = vmpl;
      entry.rmpChecked = 0;
    }
    if ((entry.rmpChecked & RMP_OK[access]) === 0) {
      const v = this.#rmpCheck(
        state,
        va,
        entry.gpaPage * PAGE_SIZE + (va % PAGE_SIZE),
        entry.spaPage * PAGE_SIZE,
        access,
        access === 'fetch' ? state.sev : entry.private,
        false,
      );
      if (v !== undefined) return v;
      entry.rmpChecked |= RMP_OK[access];
    }
    if (access === 'write' && !entry.writable) {
      // Re-walk for a precise fault (which level forbids the write).
      this.#tlb.delete(tag);
      this.#lastTag = -1;
      const walked = this.#walk(state, va, access);
      if (walked.kind !== 'entry') return walked;
      entry = walked.entry;
    }
    this.#lastTag = tag;
    this.#lastEntry = entry;
    const ok = this.#ok;
    ok.spa = entry.spaPage * PAGE_SIZE + offset;
    if (access === 'fetch') {
      if (!entry.executable) {
        return {
          kind: '#PF',
          va,
          errorCode: PF_PRESENT | PF_FETCH,
          reason: 'instruction fetch from a no-execute page',
        };
      }
      // Instruction fetches are always private in an SEV guest (sev-reference §1.2).
      ok.key = state.sev ? state.asid : entry.dataKey;
      return ok;
    }
    ok.key = entry.dataKey;
    return ok;
  }

  /**
   * The guest walk for PVALIDATE and RMPADJUST: GPA and SPA of `va`, with every check except the
   * RMP check of the final page (those instructions exist to change that entry), the leaf's C-bit
   * (the ENC bit of a #NPF they raise) and the nested mapping's page size (their size checks).
   * Not cached.
   */
  translateForRmpInstruction(
    state: GuestPagingState,
    va: number,
  ):
    | { kind: 'ok'; gpa: number; spa: number; private: boolean; nestedPageSize: RmpPageSize }
    | TranslationFault {
    const walked = this.#walk(state, va, 'read', false);
    if (walked.kind !== 'entry') return walked;
    const offset = va % PAGE_SIZE;
    return {
      kind: 'ok',
      gpa: walked.entry.gpaPage * PAGE_SIZE + offset,
      spa: walked.entry.spaPage * PAGE_SIZE + offset,
      private: walked.entry.private,
      nestedPageSize: NESTED_PAGE_SIZE,
    };
  }

  #walk(
    state: GuestPagingState,
    va: number,
    access: AccessKind,
    checkFinalRmp = true,
  ): { kind: 'entry'; entry: TlbEntry } | TranslationFault {
    this.stats.walks++;
    const privateKey = state.sev ? state.asid : KEY_NONE;
    let gpa: number;
    let cBit: boolean;
    let writable = true;
    let executable = true;
    if (!state.pagingEnabled) {
      // With paging off every access of an SEV guest is private.
      gpa = Math.floor(va / PAGE_SIZE) * PAGE_SIZE;
      cBit = state.sev;
    } else {
      let table = this.format.splitCBit(state.cr3).address;
      const idx = tableIndices(va);
      let leaf = undefined as ReturnType<PagingFormat['decode']> | undefined;
      for (let level = 0; level < 4; level++) {
        const entryGpa = Math.floor(table / PAGE_SIZE) * PAGE_SIZE + (idx[level] as number) * PTE_SIZE;
        // Guest page tables are always private under SEV, whatever the C-bits say.
        const nested = this.#nestedWalk(state, entryGpa, 'read', true);
        if (nested.kind !== 'ok') return nested;
        const tableFault = this.#rmpCheck(state, va, entryGpa, nested.spa, 'read', state.sev, true);
        if (tableFault !== undefined) return tableFault;
        const raw = this.#cache.read(nested.spa, PTE_SIZE, privateKey);
        const e = this.format.decode(raw);
        const code = (access === 'write' ? PF_WRITE : 0) | (access === 'fetch' ? PF_FETCH : 0);
        if (!e.present)
          return { kind: '#PF', va, errorCode: code, reason: `level-${4 - level} entry not present` };
        if (e.reservedBitsSet || (e.largePage && level < 3)) {
          return {
            kind: '#PF',
            va,
            errorCode: code | PF_PRESENT | PF_RSVD,
            reason: `level-${4 - level} entry has reserved bits set`,
          };
        }
        writable &&= e.writable;
        executable &&= !e.noExecute;
        table = e.address;
        leaf = e;
      }
      if (access === 'write' && !writable) {
        return { kind: '#PF', va, errorCode: PF_PRESENT | PF_WRITE, reason: 'write to a read-only page' };
      }
      gpa = table;
      cBit = state.sev && (leaf as NonNullable<typeof leaf>).encrypted;
    }
    const final = this.#nestedWalk(state, gpa, access, false);
    if (final.kind !== 'ok') return final;
    writable &&= final.writable;
    executable &&= final.executable;
    if (access === 'write' && !final.writable) {
      return {
        kind: '#NPF',
        gpa,
        exitInfo1: NPF_FINAL_GPA + (PF_PRESENT | PF_WRITE | PF_USER),
        reason: 'nested page is read-only',
      };
    }
    const dataKey = cBit ? privateKey : final.sharedKey;
    const isPrivate = access === 'fetch' ? state.sev : cBit;
    if (checkFinalRmp) {
      const rmpFault = this.#rmpCheck(state, va, gpa, final.spa, access, isPrivate, false);
      if (rmpFault !== undefined) return rmpFault;
    }
    return {
      kind: 'entry',
      entry: {
        spaPage: Math.floor(final.spa / PAGE_SIZE),
        dataKey,
        writable,
        executable,
        gpaPage: Math.floor(gpa / PAGE_SIZE),
        private: cBit,
        rmpChecked: checkFinalRmp ? RMP_OK[access] : 0,
        rmpVmpl: state.vmpl ?? 0,
      },
    };
  }

  /** The RMP check of one access (SNP hosts only), as a #NPF to the host or a #VC to the guest. */
  #rmpCheck(
    state: GuestPagingState,
    va: number,
    gpa: number,
    spa: number,
    access: AccessKind,
    isPrivate: boolean,
    tableAccess: boolean,
  ): TranslationFault | undefined {
    const rmp = this.#rmp;
    if (rmp === undefined || !rmp.enabled) return undefined;
    const v = rmp.checkGuestAccess(
      { asid: state.asid, snp: state.snp === true, vmpl: state.vmpl ?? 0 },
      gpa,
      spa,
      access,
      isPrivate,
      NESTED_PAGE_SIZE,
    );
    if (v === undefined) return undefined;
    if (v.kind === '#VC') return { kind: '#VC', va, errorCode: VC_PAGE_NOT_VALIDATED, reason: v.reason };
    const code =
      (tableAccess ? NPF_GUEST_TABLE : NPF_FINAL_GPA) +
      (PF_PRESENT | PF_USER | (access === 'write' ? PF_WRITE : 0) | (access === 'fetch' ? PF_FETCH : 0));
    return { kind: '#NPF', gpa, exitInfo1: code + v.exitInfoBits, reason: v.reason };
  }

  /** GPA→SPA through the host's nested tables (4-level, host memory, SME per each entry's C-bit). */
  #nestedWalk(
    state: GuestPagingState,
    gpa: number,
    access: AccessKind,
    tableAccess: boolean,
  ): { kind: 'ok'; spa: number; sharedKey: KeyId; writable: boolean; executable: boolean } | NestedPageFault {
    const where = tableAccess ? NPF_GUEST_TABLE : NPF_FINAL_GPA;
    // EXITINFO1 bits 32+ do not survive JavaScript's 32-bit `|`: the low error-code bits are or-ed,
    // the high ones added.
    const low = PF_USER | (access === 'write' ? PF_WRITE : 0) | (access === 'fetch' ? PF_FETCH : 0);
    const code = where + low;
    if (gpa >= this.format.addressLimit)
      return { kind: '#NPF', gpa, exitInfo1: where + (low | PF_RSVD), reason: 'GPA beyond MAXPHYADDR' };
    let { address: table, encrypted } = this.format.splitCBit(state.nestedCr3);
    const idx = tableIndices(gpa);
    let writable = true;
    let executable = true;
    for (let level = 0; level < 4; level++) {
      const entrySpa = Math.floor(table / PAGE_SIZE) * PAGE_SIZE + (idx[level] as number) * PTE_SIZE;
      const raw = this.#cache.read(entrySpa, PTE_SIZE, encrypted ? KEY_HOST : KEY_NONE);
      const e = this.format.decode(raw);
      if (!e.present)
        return { kind: '#NPF', gpa, exitInfo1: code, reason: `nested level-${4 - level} entry not present` };
      if (e.reservedBitsSet || (e.largePage && level < 3)) {
        return {
          kind: '#NPF',
          gpa,
          exitInfo1: where + (low | PF_PRESENT | PF_RSVD),
          reason: `nested level-${4 - level} entry has reserved bits set`,
        };
      }
      writable &&= e.writable;
      executable &&= !e.noExecute;
      table = e.address;
      encrypted = e.encrypted;
    }
    const offset = gpa % PAGE_SIZE;
    return {
      kind: 'ok',
      spa: table + offset,
      sharedKey: encrypted ? KEY_HOST : KEY_NONE,
      writable,
      executable,
    };
  }

  toJSON(): string {
    return '[Mmu]';
  }
}
