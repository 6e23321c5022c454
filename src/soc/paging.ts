// x86-64 4-level paging entries with the SME/SEV C-bit (AMD APM vol. 2 §5.3, §7.10; sev-reference §1.2).
import type { ProductProfile } from './products.js';

import { PAGE_SIZE } from './dram.js';
export { PAGE_SIZE };
export const ENTRIES_PER_TABLE = 512;
export const PTE_SIZE = 8;

/** Page-table entry bits below 32 used by the model. */
export const PTE_P = 1 << 0;
export const PTE_RW = 1 << 1;
export const PTE_US = 1 << 2;
export const PTE_PS = 1 << 7;

export interface PageTableEntry {
  present: boolean;
  writable: boolean;
  user: boolean;
  /** Bit 63. */
  noExecute: boolean;
  /** The C-bit: the page (or next table) is encrypted. */
  encrypted: boolean;
  /** Bit 7 at a non-leaf level: a large page (not modelled; treated as a reserved-bit fault). */
  largePage: boolean;
  /** Physical address of the page or next table (bits 12 .. MAXPHYADDR-1). */
  address: number;
  /** Any bit between MAXPHYADDR and 51 other than the C-bit is set. */
  reservedBitsSet: boolean;
}

const TWO32 = 0x1_0000_0000;

/**
 * The entry format of one product: where the C-bit sits and how many address bits remain when
 * memory encryption is on (MAXPHYADDR = physical bits − reduction).
 */
export class PagingFormat {
  readonly cBit: number;
  readonly maxPhysAddrBits: number;
  readonly #addrHiMask: number;
  readonly #reservedHiMask: number;
  readonly #cBitHi: number;

  constructor(profile: Pick<ProductProfile, 'cBitPosition' | 'physAddrBits' | 'reducedPhysBits'>) {
    this.cBit = profile.cBitPosition;
    this.maxPhysAddrBits = profile.physAddrBits - profile.reducedPhysBits;
    this.#cBitHi = 2 ** (this.cBit - 32);
    this.#addrHiMask = 2 ** (this.maxPhysAddrBits - 32) - 1;
    // Bits MAXPHYADDR..51 of the high word, less the C-bit.
    this.#reservedHiMask = ((2 ** 20 - 1) & ~this.#addrHiMask & ~this.#cBitHi) >>> 0;
  }

  /** Highest physical address usable with encryption on, plus one. */
  get addressLimit(): number {
    return 2 ** this.maxPhysAddrBits;
  }

  /** `spa` with the C-bit set: how a host or guest names an encrypted mapping. */
  withCBit(spa: number): number {
    return spa + 2 ** this.cBit;
  }

  /** Splits an address that may carry the C-bit (CR3, a command-buffer pointer, an nCR3). */
  splitCBit(address: number): { address: number; encrypted: boolean } {
    const c = 2 ** this.cBit;
    const encrypted = Math.floor(address / c) % 2 === 1;
    return { address: encrypted ? address - c : address, encrypted };
  }

  encode(e: Partial<PageTableEntry> & { address: number }): Buffer {
    const lo =
      ((e.address % TWO32) & 0xfffff000) |
      (e.present === false ? 0 : PTE_P) |
      (e.writable ? PTE_RW : 0) |
      (e.user ? PTE_US : 0);
    let hi = Math.floor(e.address / TWO32) & this.#addrHiMask;
    if (e.encrypted) hi |= this.#cBitHi;
    if (e.noExecute) hi |= 0x8000_0000;
    const out = Buffer.alloc(PTE_SIZE);
    out.writeUInt32LE(lo >>> 0, 0);
    out.writeUInt32LE(hi >>> 0, 4);
    return out;
  }

  decode(entry: Uint8Array, offset = 0): PageTableEntry {
    const v = new DataView(entry.buffer, entry.byteOffset + offset, PTE_SIZE);
    const lo = v.getUint32(0, true);
    const hi = v.getUint32(4, true);
    return {
      present: (lo & PTE_P) !== 0,
      writable: (lo & PTE_RW) !== 0,
      user: (lo & PTE_US) !== 0,
      noExecute: (hi & 0x8000_0000) !== 0,
      encrypted: (hi & this.#cBitHi) !== 0,
      largePage: (lo & PTE_PS) !== 0,
      address: ((lo & 0xfffff000) >>> 0) + (hi & this.#addrHiMask) * TWO32,
      reservedBitsSet: (hi & this.#reservedHiMask) !== 0,
    };
  }
}

/** The four table indices of a virtual (or guest-physical) address, top level first. */
export function tableIndices(address: number): [number, number, number, number] {
  const vpn = Math.floor(address / PAGE_SIZE);
  return [
    Math.floor(vpn / 2 ** 27) % 512,
    Math.floor(vpn / 2 ** 18) % 512,
    Math.floor(vpn / 2 ** 9) % 512,
    vpn % 512,
  ];
}
