// The instruction set guest software executes. A guest program is a generator: each yielded
// Instruction is one instruction boundary, where the host may stop, inspect or inject (ARCHITECTURE.md).

/** The general registers the model carries across VMMCALL (u64). */
export interface Registers {
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
}

export type Instruction =
  /** Load `length` bytes (a MOV or REP MOVS) at a virtual address; yields the bytes. */
  | { readonly op: 'load'; readonly va: number; readonly length: number }
  /** Store bytes at a virtual address. */
  | { readonly op: 'store'; readonly va: number; readonly data: Uint8Array }
  /** MOV CR3: new top-level table (flushes this ASID's TLB). */
  | { readonly op: 'writeCr3'; readonly value: number }
  /** Set CR0.PG|PE: turn paging on. */
  | { readonly op: 'enablePaging' }
  | { readonly op: 'invlpg'; readonly va: number }
  | { readonly op: 'clflush'; readonly va: number }
  | { readonly op: 'wbinvd' }
  /** Hypercall: registers go to the VMCB save area and the host handles the exit; yields the registers after. */
  | { readonly op: 'vmmcall'; readonly registers: Registers }
  | { readonly op: 'hlt' };

export type InstructionResult = Buffer | Registers | undefined;

/** A running guest thread. */
export type GuestThread = Generator<Instruction, void, InstructionResult>;

/** What the core executes for a vCPU: code bytes (checked on every fetch) and a thread. */
export interface GuestSoftware {
  /** Guest-virtual (and, with paging off, guest-physical) base of the code region. */
  readonly codeBase: number;
  /** The instruction bytes a correct fetch must return, 16 per instruction, cyclically. */
  readonly code: Buffer;
  /** Starts the vCPU's thread at its first VMRUN. */
  start(): GuestThread;
}

/** A fault delivered into the guest (thrown into its thread, for its own handler to catch). */
export class GuestException extends Error {
  constructor(
    readonly vector: '#PF' | '#UD' | '#GP',
    readonly address: number,
    readonly errorCode: number,
    reason: string,
  ) {
    super(`${vector} at 0x${address.toString(16)} (error code 0x${errorCode.toString(16)}): ${reason}`);
    this.name = 'GuestException';
  }
}

/** Bytes per modelled instruction (one fetch block). */
export const INSTRUCTION_BYTES = 16;
