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
  | { readonly op: 'hlt' }
  /**
   * PVALIDATE (SNP, VMPL0): set or clear the RMP VALIDATED bit of the guest page at `va`; yields
   * an RmpInstructionResult (status, and CF = "already had that value"). A 4K request on a page the
   * RMP holds as 2M yields nothing yet: it exits to the host (#NPF, SIZEM) and restarts after the
   * host's PSMASH.
   */
  | { readonly op: 'pvalidate'; readonly va: number; readonly size: '4K' | '2M'; readonly validate: boolean }
  /**
   * RMPADJUST (SNP): set a less privileged VMPL's permissions (and, from VMPL0 only, the VMSA bit)
   * on the guest page at `va`; yields an RmpInstructionResult, or exits and restarts as PVALIDATE.
   */
  | {
      readonly op: 'rmpadjust';
      readonly va: number;
      readonly size: '4K' | '2M';
      readonly targetVmpl: number;
      readonly perms: number;
      readonly vmsa: boolean;
    }
  /**
   * VMGEXIT (SEV-ES/SNP): write the GHCB MSR with the GHCB's GPA and exit to the hypervisor, which
   * reads and answers the request in that shared page; yields nothing.
   */
  | { readonly op: 'vmgexit'; readonly ghcbGpa: number };

/** What PVALIDATE and RMPADJUST return: EAX, and rFLAGS.CF for PVALIDATE. */
export interface RmpInstructionResult {
  readonly status: number;
  readonly noUpdate: boolean;
}

export type InstructionResult = Buffer | Registers | RmpInstructionResult | undefined;

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
    readonly vector: '#PF' | '#UD' | '#GP' | '#VC',
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
