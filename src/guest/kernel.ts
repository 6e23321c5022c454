// A small SEV guest kernel. It boots with paging off (every access private), builds its page tables
// inside its own encrypted memory, maps a shared (C=0) region for talking to the host, then runs
// the programs given on its console. Its "binary" is a 4 KiB code page, measured at launch and
// checked by the CPU on every instruction fetch.
import { createHash } from 'node:crypto';
import {
  HC_MAP_GPA_RANGE,
  HC_SEVSIM_BOOTED,
  HC_SEVSIM_PRINT,
  MAP_GPA_RANGE_ENCRYPTED,
} from '../abi/index.js';
import {
  ENTRIES_PER_TABLE,
  GuestException,
  LINE_SIZE,
  PAGE_SIZE,
  PTE_SIZE,
  type GuestSoftware,
  type GuestThread,
  type Instruction,
  type InstructionResult,
  type PagingFormat,
  type Registers,
} from '../soc/index.js';

/** A guest computation: each yielded Instruction is one instruction boundary. */
export type Step<T> = Generator<Instruction, T, InstructionResult>;
export type GuestProgram<T> = (k: KernelApi) => Step<T>;

/** Where the kernel puts things in guest-physical memory (identity-mapped once paging is on). */
export const GuestLayout = {
  codeBase: 0x0,
  pml4: 0x1000,
  pdpt: 0x2000,
  pd: 0x3000,
  /** Page tables, one per 2 MiB of RAM. */
  ptBase: 0x4000,
  /** First page the kernel hands to programs. */
  heapBase: 0x40000,
} as const;

export interface KernelConfig {
  readonly memoryBytes: number;
  /** Bytes at the top of RAM mapped shared (C=0); default 64 KiB. */
  readonly sharedBytes?: number;
  /** The C-bit position and address width, as the guest reads them from CPUID. */
  readonly paging: PagingFormat;
  /** Distinguishes kernel builds (and so their measurements). */
  readonly version?: string;
}

export interface ProgramRun<T> {
  readonly name: string;
  status: 'queued' | 'running' | 'done' | 'faulted';
  result: T | undefined;
  fault: GuestException | Error | undefined;
}

/** Instruction helpers: the only place that casts an instruction's result to its type. */
export const insn = {
  *load(va: number, length: number): Step<Buffer> {
    return (yield { op: 'load', va, length }) as Buffer;
  },
  *store(va: number, data: Uint8Array): Step<void> {
    yield { op: 'store', va, data };
  },
  *vmmcall(registers: Registers): Step<Registers> {
    return (yield { op: 'vmmcall', registers }) as Registers;
  },
  *invlpg(va: number): Step<void> {
    yield { op: 'invlpg', va };
  },
  /** HLT until the host stops running the vCPU. */
  *hltForever(): Step<void> {
    yield { op: 'hlt' };
  },
  *clflushPage(va: number): Step<void> {
    for (let off = 0; off < PAGE_SIZE; off += LINE_SIZE) yield { op: 'clflush', va: va + off };
  },
};

/** What a program may use: memory, the shared console, page conversion. */
export class KernelApi {
  #heapNext: number = GuestLayout.heapBase;

  constructor(private readonly kernel: GuestKernel) {}

  get sharedBase(): number {
    return this.kernel.sharedBase;
  }

  load(va: number, length: number): Step<Buffer> {
    return insn.load(va, length);
  }

  store(va: number, data: Uint8Array): Step<void> {
    return insn.store(va, data);
  }

  /** Fresh private pages from the kernel's heap (bookkeeping only: no instruction). */
  allocPages(count: number): number {
    const va = this.#heapNext;
    if (va + count * PAGE_SIZE > this.kernel.sharedBase) throw new RangeError('guest heap exhausted');
    this.#heapNext += count * PAGE_SIZE;
    return va;
  }

  /** Writes text to the shared console buffer and tells the host (a deliberate disclosure). */
  *print(text: string): Step<void> {
    const bytes = Buffer.from(text, 'utf8').subarray(0, 1024);
    yield* insn.store(this.kernel.sharedBase, bytes);
    yield* insn.vmmcall({
      rax: HC_SEVSIM_PRINT,
      rbx: BigInt(this.kernel.sharedBase),
      rcx: BigInt(bytes.length),
      rdx: 0n,
    });
  }

  hypercall(registers: Registers): Step<Registers> {
    return insn.vmmcall(registers);
  }

  /** Guest-physical address of the PTE that maps `va` (the tables live in private memory). */
  pteAddress(va: number): number {
    return this.kernel.pteAddress(va);
  }

  /**
   * Private → shared: flush the page's private lines, clear the C-bit, INVLPG, tell the host.
   * The bytes then seen through C=0 are whatever DRAM holds (ciphertext), so callers rewrite it.
   */
  *makeShared(va: number): Step<void> {
    yield* this.kernel.convert(va, false);
  }

  /** Shared → private: the reverse; the page's old contents decrypt to garbage and should be rewritten. */
  *makePrivate(va: number): Step<void> {
    yield* this.kernel.convert(va, true);
  }
}

export class GuestKernel implements GuestSoftware {
  readonly codeBase = GuestLayout.codeBase;
  readonly code: Buffer;
  readonly sharedBase: number;
  readonly sharedBytes: number;
  readonly api: KernelApi;
  readonly #queue: ProgramRun<unknown>[] = [];
  readonly #programs = new Map<ProgramRun<unknown>, GuestProgram<unknown>>();
  booted = false;

  constructor(readonly config: KernelConfig) {
    if (config.memoryBytes % PAGE_SIZE !== 0 || config.memoryBytes < 0x80000)
      throw new RangeError('guest memory must be ≥ 512 KiB and page-aligned');
    if (
      Math.ceil(config.memoryBytes / (PAGE_SIZE * ENTRIES_PER_TABLE)) * PAGE_SIZE + GuestLayout.ptBase >
      GuestLayout.heapBase
    ) {
      throw new RangeError('guest memory too large for the page-table pool');
    }
    this.sharedBytes = config.sharedBytes ?? 64 * 1024;
    this.sharedBase = config.memoryBytes - this.sharedBytes;
    this.code = GuestKernel.image(config.version ?? 'sevsim-kernel-1');
    this.api = new KernelApi(this);
  }

  /** The kernel binary: 4 KiB derived from its version string (what the owner measures). */
  static image(version: string): Buffer {
    const out = Buffer.alloc(PAGE_SIZE);
    for (let i = 0; i < PAGE_SIZE / 32; i++)
      createHash('sha256')
        .update(`${version}/${i}`)
        .digest()
        .copy(out, i * 32);
    return out;
  }

  /** Queues a program on the console; it runs the next time the host runs the vCPU. */
  exec<T>(name: string, program: GuestProgram<T>): ProgramRun<T> {
    const run: ProgramRun<T> = { name, status: 'queued', result: undefined, fault: undefined };
    this.#queue.push(run);
    this.#programs.set(run, program);
    return run;
  }

  pteAddress(va: number): number {
    const page = Math.floor(va / PAGE_SIZE);
    return (
      GuestLayout.ptBase +
      Math.floor(page / ENTRIES_PER_TABLE) * PAGE_SIZE +
      (page % ENTRIES_PER_TABLE) * PTE_SIZE
    );
  }

  #leafEntry(gpa: number, encrypted: boolean): Buffer {
    const isCode = gpa >= this.codeBase && gpa < this.codeBase + this.code.length;
    return this.config.paging.encode({
      address: gpa,
      present: true,
      writable: !isCode,
      noExecute: !isCode,
      encrypted,
    });
  }

  *#boot(): Step<void> {
    const f = this.config.paging;
    const tables = Math.ceil(this.config.memoryBytes / (PAGE_SIZE * ENTRIES_PER_TABLE));
    const table = (entries: Buffer[]): Buffer => {
      const t = Buffer.alloc(PAGE_SIZE);
      entries.forEach((e, i) => e.copy(t, i * PTE_SIZE));
      return t;
    };
    const dir = (address: number): Buffer =>
      f.encode({ address, present: true, writable: true, encrypted: true });
    // Paging is off: these stores are private, so the tables are born encrypted.
    yield* insn.store(GuestLayout.pml4, table([dir(GuestLayout.pdpt)]));
    yield* insn.store(GuestLayout.pdpt, table([dir(GuestLayout.pd)]));
    yield* insn.store(
      GuestLayout.pd,
      table(Array.from({ length: tables }, (_, i) => dir(GuestLayout.ptBase + i * PAGE_SIZE))),
    );
    for (let t = 0; t < tables; t++) {
      const entries: Buffer[] = [];
      for (let i = 0; i < ENTRIES_PER_TABLE; i++) {
        const gpa = (t * ENTRIES_PER_TABLE + i) * PAGE_SIZE;
        if (gpa >= this.config.memoryBytes) break;
        entries.push(this.#leafEntry(gpa, gpa < this.sharedBase));
      }
      yield* insn.store(GuestLayout.ptBase + t * PAGE_SIZE, table(entries));
    }
    yield { op: 'writeCr3', value: f.withCBit(GuestLayout.pml4) };
    yield { op: 'enablePaging' };
    // The shared region was never written privately; start it clean.
    yield* insn.store(this.sharedBase, Buffer.alloc(this.sharedBytes));
    yield* insn.vmmcall({
      rax: HC_SEVSIM_BOOTED,
      rbx: BigInt(this.sharedBase),
      rcx: BigInt(this.sharedBytes),
      rdx: 0n,
    });
    this.booted = true;
  }

  *convert(va: number, toPrivate: boolean): Step<void> {
    const gpa = Math.floor(va / PAGE_SIZE) * PAGE_SIZE;
    yield* insn.clflushPage(gpa);
    yield* insn.store(this.pteAddress(gpa), this.#leafEntry(gpa, toPrivate));
    yield* insn.invlpg(gpa);
    yield* insn.vmmcall({
      rax: HC_MAP_GPA_RANGE,
      rbx: BigInt(gpa),
      rcx: 1n,
      rdx: toPrivate ? MAP_GPA_RANGE_ENCRYPTED : 0n,
    });
  }

  /** The vCPU's thread: boot, then serve the console queue, halting when idle. */
  *start(): GuestThread {
    yield* this.#boot();
    for (;;) {
      const run = this.#queue.shift();
      if (run === undefined) {
        yield { op: 'hlt' };
        continue;
      }
      const program = this.#programs.get(run) as GuestProgram<unknown>;
      this.#programs.delete(run);
      run.status = 'running';
      try {
        run.result = yield* program(this.api);
        run.status = 'done';
      } catch (err) {
        // The kernel's fault handler: the program dies, the kernel survives.
        run.status = 'faulted';
        run.fault = err instanceof Error ? err : new Error(String(err));
      }
    }
  }

  toJSON(): string {
    return '[GuestKernel]';
  }
}

export { GuestException };
