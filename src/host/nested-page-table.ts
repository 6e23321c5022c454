// The hypervisor's nested page tables (GPA→SPA), 4-level, in host memory. The tables themselves are
// SME-encrypted host pages (C-bit in nCR3 and in every non-leaf entry); the leaf C-bit decides how
// the guest's SHARED (C=0) accesses reach DRAM: clear = plaintext, as DMA bounce buffers need.
import {
  ENTRIES_PER_TABLE,
  PAGE_SIZE,
  PTE_SIZE,
  type HostMemoryView,
  type PagingFormat,
  tableIndices,
} from '../soc/index.js';
import type { FrameAllocator } from './frame-allocator.js';

export interface NestedMapping {
  readonly spa: number;
  readonly writable: boolean;
  readonly executable: boolean;
  /** Leaf C-bit: the host key encrypts the guest's shared accesses to this page. */
  readonly hostEncrypted: boolean;
}

export class NestedPageTable {
  readonly root: number;

  constructor(
    private readonly memory: HostMemoryView,
    private readonly frames: FrameAllocator,
    private readonly format: PagingFormat,
  ) {
    this.root = this.#newTable();
  }

  /** nCR3 for the VMCB: the root table's address with the C-bit (the tables are SME-encrypted). */
  get nestedCr3(): number {
    return this.format.withCBit(this.root);
  }

  #newTable(): number {
    const t = this.frames.allocate();
    this.memory.write(t, Buffer.alloc(PAGE_SIZE), true);
    return t;
  }

  #entryAddress(table: number, index: number): number {
    return table + index * PTE_SIZE;
  }

  /** The leaf entry's address for `gpa`, creating intermediate tables when `create`. */
  #leafSlot(gpa: number, create: boolean): number | undefined {
    const idx = tableIndices(gpa);
    let table = this.root;
    for (let level = 0; level < 3; level++) {
      const at = this.#entryAddress(table, idx[level] as number);
      const e = this.format.decode(this.memory.read(at, PTE_SIZE, true));
      if (!e.present) {
        if (!create) return undefined;
        const next = this.#newTable();
        this.memory.write(
          at,
          this.format.encode({ address: next, present: true, writable: true, user: true, encrypted: true }),
          true,
        );
        table = next;
      } else {
        table = e.address;
      }
    }
    return this.#entryAddress(table, idx[3]);
  }

  map(gpa: number, mapping: NestedMapping): void {
    const slot = this.#leafSlot(gpa, true) as number;
    this.memory.write(
      slot,
      this.format.encode({
        address: mapping.spa,
        present: true,
        writable: mapping.writable,
        user: true,
        noExecute: !mapping.executable,
        encrypted: mapping.hostEncrypted,
      }),
      true,
    );
  }

  /** Maps `pages` consecutive pages at `gpa` to consecutive frames at `spa`: one table write per 2 MiB. */
  mapRange(gpa: number, spa: number, pages: number, flags: Omit<NestedMapping, 'spa'>): void {
    for (let done = 0; done < pages;) {
      const at = gpa + done * PAGE_SIZE;
      const first = this.#leafSlot(at, true) as number;
      const inTable = Math.min(
        pages - done,
        NestedPageTable.ENTRIES - ((at / PAGE_SIZE) % NestedPageTable.ENTRIES),
      );
      const entries = Buffer.alloc(inTable * PTE_SIZE);
      for (let i = 0; i < inTable; i++) {
        this.format
          .encode({
            address: spa + (done + i) * PAGE_SIZE,
            present: true,
            writable: flags.writable,
            user: true,
            noExecute: !flags.executable,
            encrypted: flags.hostEncrypted,
          })
          .copy(entries, i * PTE_SIZE);
      }
      this.memory.write(first, entries, true);
      done += inTable;
    }
  }

  unmap(gpa: number): void {
    const slot = this.#leafSlot(gpa, false);
    if (slot !== undefined) this.memory.write(slot, Buffer.alloc(PTE_SIZE), true);
  }

  lookup(gpa: number): NestedMapping | undefined {
    const slot = this.#leafSlot(gpa, false);
    if (slot === undefined) return undefined;
    const e = this.format.decode(this.memory.read(slot, PTE_SIZE, true));
    if (!e.present) return undefined;
    return {
      spa: e.address + (gpa % PAGE_SIZE),
      writable: e.writable,
      executable: !e.noExecute,
      hostEncrypted: e.encrypted,
    };
  }

  static readonly ENTRIES = ENTRIES_PER_TABLE;
}
