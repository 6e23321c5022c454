// A CPU core in SVM guest mode: VMRUN loads the VMCB, executes guest instructions through the MMU
// and cache, and #VMEXIT writes the state back to the VMCB in host memory — in plain SEV, where the
// host can read every saved register (attacks.md C4).
import {
  CR0_PG,
  CR0_PE,
  NESTED_CTL_NP_ENABLE,
  NESTED_CTL_SEV_ENABLE,
  NESTED_CTL_SEV_ES_ENABLE,
  SaveArea,
  SevFeature,
  VMSA_SIZE,
  Vmsa,
  SvmExit,
  TLB_CONTROL_FLUSH_ASID,
  VMCB_SAVE_AREA_OFFSET,
  VmcbControl,
} from '../abi/index.js';
import type { Cache } from './cache.js';
import {
  KEY_HOST,
  KEY_NONE,
  KeySlotEmptyError,
  LINE_SIZE,
  type MemoryController,
} from './memory-controller.js';
import {
  NPF_FINAL_GPA,
  PF_PRESENT,
  PF_USER,
  VC_PAGE_NOT_VALIDATED,
  type Mmu,
  type NestedPageFault,
  type TranslationFault,
} from './mmu.js';
import { NPF_ENC, type Rmp, type RmpViolation } from './rmp.js';
import { PAGE_SIZE, type PagingFormat } from './paging.js';
import {
  GuestException,
  INSTRUCTION_BYTES,
  type GuestSoftware,
  type GuestThread,
  type Instruction,
  type InstructionResult,
  type Registers,
} from './isa.js';

/** Exit code for a VMRUN whose VMCB is invalid (APM: VMEXIT_INVALID = -1). */
export const VMEXIT_INVALID = -1;
/** Exit code of a physical interrupt (the host's timer ending a time slice). */
export const VMEXIT_INTR = 0x60;

export interface VmExit {
  /** SVM exit code (SvmExit.*, VMEXIT_INTR or VMEXIT_INVALID). */
  readonly code: number;
  readonly exitInfo1: number;
  readonly exitInfo2: number;
  /** Instructions retired in this run. */
  readonly instructions: number;
  /** Why, in words (the model's commentary, not part of the VMCB). */
  readonly reason: string;
}

export interface VmrunOptions {
  /** Stop with an INTR exit after this many instructions (the host's APIC timer, C8). */
  readonly maxInstructions?: number;
}

interface VcpuRuntime {
  readonly software: GuestSoftware;
  thread: GuestThread | undefined;
  /** An instruction that caused an exit and must be restarted (e.g. after a #NPF). */
  pending: Instruction | undefined;
  /** Waiting for the host to finish a VMMCALL. */
  inHypercall: boolean;
  /** Value to resume the thread with. */
  resume: InstructionResult;
  dead: string | undefined;
}

const DEFAULT_BUDGET = 1_000_000;

/**
 * What a host may learn of a guest's crash: the architectural fault (vector, address, error code),
 * never the text of an exception the guest's own code raised, which could carry guest data.
 */
function guestFailure(err: unknown): string {
  return err instanceof GuestException ? err.message : 'an exception inside the guest';
}

/**
 * The #VMEXIT(NPF) of a PVALIDATE/RMPADJUST that met a larger page (APM vol. 2 §15.36.11): on the
 * final GPA, with the RMP and SIZEM bits. ENC when the guest's mapping had C=1 is inferred, not
 * quoted: the APM defines ENC as the guest's effective C-bit, and KVM treats an #NPF as private
 * only with ENC (npf_interception), so without it KVM would start a page conversion instead of
 * the PSMASH. The low bits are those of the model's other RMP faults: present, user. The
 * instruction restarts after the host's PSMASH.
 */
function rmpInstructionNpf(v: RmpViolation, gpa: number, isPrivate: boolean): NestedPageFault {
  // Bits 31+ are added: JavaScript's `|` would keep only 32 of them.
  const exitInfo1 = NPF_FINAL_GPA + (PF_PRESENT | PF_USER) + v.exitInfoBits + (isPrivate ? NPF_ENC : 0);
  return { kind: '#NPF', gpa, exitInfo1, reason: v.reason };
}

/** A fault the core delivers: the MMU's, or an undefined opcode. */
type DeliveredFault =
  | TranslationFault
  | { readonly kind: '#UD'; readonly va: number; readonly errorCode: number; readonly reason: string };

const handoffs = new WeakMap<VcpuHandoff, VcpuRuntime>();

function takeHandoff(h: VcpuHandoff): VcpuRuntime {
  const r = handoffs.get(h);
  if (r === undefined) throw new Error('this vCPU state was already resumed');
  handoffs.delete(h);
  return r;
}

/** A vCPU's execution state in transit between cores (opaque: nothing in it can be read; usable once). */
export class VcpuHandoff {
  constructor(runtime: VcpuRuntime) {
    handoffs.set(this, runtime);
  }

  toJSON(): string {
    return '[VcpuHandoff]';
  }
}

/** What #execute did: the details are left in the core's out-fields (no object per instruction). */
type Outcome = 0 | 1 | 2;
const OUTCOME_OK: Outcome = 0;
const OUTCOME_FAULT: Outcome = 1;
const OUTCOME_EXIT: Outcome = 2;

interface PagingRegisters {
  asid: number;
  sev: boolean;
  es: boolean;
  snp: boolean;
  vmpl: number;
  pagingEnabled: boolean;
  cr3: number;
  cr0: bigint;
  cr2: bigint;
  rip: number;
  nestedCr3: number;
}

export class Core {
  readonly #vcpus = new Map<number, VcpuRuntime>();
  /** Which software each code frame belongs to (see #bindCode). */
  readonly #codeOwners = new Map<number, GuestSoftware>();
  /** SEV ASIDs the PSP has made valid for VMRUN. */
  readonly #validAsids = new Set<number>();
  #verifiedLine = -1;
  #verifiedSpaLine = -1;
  #valueOut: InstructionResult;
  #faultOut: DeliveredFault | undefined;
  #exitCode = 0;
  #exitReason = '';
  retired = 0;

  readonly #cache: Cache;
  readonly #mmu: Mmu;
  readonly #mc: MemoryController;
  readonly #format: PagingFormat;
  readonly #rmp: Rmp;
  /** The GHCB GPA a VMGEXIT left (written to VMCB.ghcbGpa at #VMEXIT). */
  #ghcbOut = 0;

  constructor(cache: Cache, mmu: Mmu, mc: MemoryController, format: PagingFormat, rmp: Rmp) {
    this.#cache = cache;
    this.#mmu = mmu;
    this.#mc = mc;
    this.#format = format;
    this.#rmp = rmp;
  }

  /** Binds guest software to the vCPU whose VMCB is at `vmcbAddress` (what its firmware image boots). */
  attachSoftware(vmcbAddress: number, software: GuestSoftware): void {
    this.#bindCode(vmcbAddress, software);
    this.#vcpus.set(this.#format.splitCBit(vmcbAddress).address, {
      software,
      thread: undefined,
      pending: undefined,
      inHypercall: false,
      resume: undefined,
      dead: undefined,
    });
  }

  /**
   * A new vCPU (another VMCB) of the guest whose vCPU runs from `existingVmcb`: the same image, so the
   * same software — which never leaves the core (AP creation: the host names VMCBs, not software).
   */
  attachSoftwareOf(existingVmcb: number, vmcbAddress: number): void {
    const existing = this.#vcpus.get(this.#format.splitCBit(existingVmcb).address);
    if (existing === undefined) throw new RangeError('no vCPU runs from that VMCB');
    this.attachSoftware(vmcbAddress, existing.software);
  }

  /**
   * Ties the physical frames holding `software`'s code (found through the VMCB's nested tables) to
   * that software. What a guest's bytes *do* is fixed by the guest, not by the host: a host that
   * points another VMCB at those frames can make the CPU run the guest's own code, never code of
   * its choosing. Throws if the frames already belong to other software.
   */
  #bindCode(vmcbAddress: number, software: GuestSoftware): void {
    const vmcb = this.#format.splitCBit(vmcbAddress);
    const control = VmcbControl.decode(
      this.#cache.read(vmcb.address, VmcbControl.size, vmcb.encrypted ? KEY_HOST : KEY_NONE),
    );
    const frames: number[] = [];
    for (let off = 0; off < software.code.length; off += PAGE_SIZE) {
      const spa = this.#mmu.nestedTranslate(Number(control.nestedCr3), software.codeBase + off);
      if (spa === undefined) continue;
      const page = Math.floor(spa / PAGE_SIZE);
      const owner = this.#codeOwners.get(page);
      if (owner !== undefined && owner !== software)
        throw new Error(
          `code frame 0x${(page * PAGE_SIZE).toString(16)} already holds another guest's software`,
        );
      frames.push(page);
    }
    for (const page of frames) this.#codeOwners.set(page, software);
  }

  /** Releases the code frames of software leaving this machine. */
  #unbindCode(software: GuestSoftware): void {
    for (const [page, owner] of this.#codeOwners) if (owner === software) this.#codeOwners.delete(page);
  }

  /**
   * Takes a vCPU's in-flight execution state off this core (live migration: what the source host
   * hands over with the VMCB). The returned object is opaque: nothing in it can be inspected.
   */
  exportVcpu(vmcbAddress: number): VcpuHandoff {
    const key = this.#format.splitCBit(vmcbAddress).address;
    const vcpu = this.#vcpus.get(key);
    if (vcpu === undefined) throw new RangeError('no vCPU runs from that VMCB');
    this.#vcpus.delete(key);
    this.#unbindCode(vcpu.software);
    return new VcpuHandoff(vcpu);
  }

  /** Resumes an exported vCPU from a VMCB on this core. */
  importVcpu(vmcbAddress: number, handoff: VcpuHandoff): void {
    const runtime = takeHandoff(handoff);
    this.#bindCode(vmcbAddress, runtime.software);
    this.#vcpus.set(this.#format.splitCBit(vmcbAddress).address, runtime);
  }

  /** The PSP's view of ASID validity (ASPFW marks an ASID valid at activation, invalid at DEACTIVATE). */
  setAsidValid(asid: number, valid: boolean): void {
    if (valid) this.#validAsids.add(asid);
    else this.#validAsids.delete(asid);
  }

  invalidateAllAsids(): void {
    this.#validAsids.clear();
  }

  #vmcbRead(vmcb: { address: number; encrypted: boolean }): {
    control: ReturnType<typeof VmcbControl.decode>;
    save: ReturnType<typeof SaveArea.decode>;
  } {
    const key = vmcb.encrypted ? KEY_HOST : KEY_NONE;
    const control = VmcbControl.decode(this.#cache.read(vmcb.address, VmcbControl.size, key));
    const save = SaveArea.decode(this.#cache.read(vmcb.address + VMCB_SAVE_AREA_OFFSET, SaveArea.size, key));
    return { control, save };
  }

  /** VMRUN: runs the guest until an exit. `vmcbAddress` may carry the C-bit (SME-encrypted VMCB). */
  vmrun(vmcbAddress: number, options: VmrunOptions = {}): VmExit {
    const vmcb = this.#format.splitCBit(vmcbAddress);
    const key = vmcb.encrypted ? KEY_HOST : KEY_NONE;
    const { control, save } = this.#vmcbRead(vmcb);
    const asid = control.asid;
    const nestedCtl = control.nestedControl;
    const invalid = (reason: string): VmExit => {
      this.#cache.write(
        vmcb.address,
        VmcbControl.encode({ ...control, exitCode: BigInt.asUintN(64, -1n), exitInfo1: 0n, exitInfo2: 0n }),
        key,
      );
      return { code: VMEXIT_INVALID, exitInfo1: 0, exitInfo2: 0, instructions: 0, reason };
    };
    if (asid === 0) return invalid('VMCB ASID 0 is the host');
    if ((nestedCtl & NESTED_CTL_NP_ENABLE) === 0n) return invalid('the model requires nested paging');
    const sev = (nestedCtl & NESTED_CTL_SEV_ENABLE) !== 0n;
    if (sev && !this.#mc.slotInfo(asid).programmed)
      return invalid(`SEV guest ASID ${asid} has no key installed`);
    if (sev && !this.#validAsids.has(asid))
      return invalid(`SEV ASID ${asid} is not valid (no activated, launched guest owns it)`);
    const vcpu = this.#vcpus.get(vmcb.address);
    if (vcpu === undefined) return invalid('no guest software attached to this VMCB');

    // SEV-ES/SNP: the register state lives in the VMSA, a guest page encrypted with the guest's key;
    // the VMCB's save area is not used and the host never sees a register.
    const es = (nestedCtl & NESTED_CTL_SEV_ES_ENABLE) !== 0n;
    let vmsaSpa = -1;
    let snp = false;
    let vmpl = 0;
    let csBase = 0n;
    let state: {
      rax: bigint;
      rbx: bigint;
      rcx: bigint;
      rdx: bigint;
      cr0: bigint;
      cr2: bigint;
      cr3: bigint;
      rip: bigint;
    } = save;
    if (es) {
      if (!sev) return invalid('SEV-ES requires SEV');
      vmsaSpa = this.#format.splitCBit(Number(control.vmsaPaddr)).address;
      if (vmsaSpa % PAGE_SIZE !== 0) return invalid('VMSA pointer is not page aligned');
      const vmsa = Vmsa.decode(this.#cache.read(vmsaSpa, VMSA_SIZE, asid));
      snp = (vmsa.sevFeatures & BigInt(SevFeature.SNP_ACTIVE)) !== 0n;
      // Without SNP the VMSA must be the hypervisor's page (APM Table 15-41): otherwise a host could
      // run a vCPU from a guest's private page that merely decrypts to "not SNP", unchecked.
      if (!snp && this.#rmp.enabled && this.#rmp.lookup(vmsaSpa).assigned)
        return invalid(`VMSA page 0x${vmsaSpa.toString(16)} of a non-SNP vCPU is assigned in the RMP`);
      if (snp) {
        if (!this.#rmp.enabled) return invalid('SNP guest on a host without an initialised RMP');
        const e = this.#rmp.lookup(vmsaSpa);
        if (!e.assigned || e.asid !== asid || !e.vmsa || !e.validated || e.immutable)
          return invalid(`VMSA page 0x${vmsaSpa.toString(16)} is not a VMSA of ASID ${asid} in the RMP`);
      }
      vmpl = vmsa.vmpl;
      // The model keeps one linear RIP; the reset VMSA has CS.base 0xFFFF0000 and RIP 0xFFF0.
      csBase = vmsa.csBase;
      state = { ...vmsa, rip: BigInt.asUintN(64, vmsa.csBase + vmsa.rip) };
    }

    if (control.tlbControl === TLB_CONTROL_FLUSH_ASID || control.tlbControl === 1) this.#mmu.flushAsid(asid);

    const regs: Registers = { rax: state.rax, rbx: state.rbx, rcx: state.rcx, rdx: state.rdx };
    const st = {
      asid,
      sev,
      es,
      snp,
      vmpl,
      pagingEnabled: (state.cr0 & CR0_PG) !== 0n,
      cr3: Number(state.cr3),
      cr0: state.cr0,
      cr2: state.cr2,
      rip: Number(state.rip),
      nestedCr3: Number(control.nestedCr3),
    };
    if (vcpu.inHypercall) {
      vcpu.resume = { ...regs };
      vcpu.inHypercall = false;
    }

    const budget = options.maxInstructions ?? DEFAULT_BUDGET;
    let retired = 0;
    let exit: VmExit | undefined;
    const exitWith = (code: number, info1: number, info2: number, reason: string): VmExit => ({
      code,
      exitInfo1: info1,
      exitInfo2: info2,
      instructions: retired,
      reason,
    });

    if (vcpu.dead !== undefined) exit = exitWith(SvmExit.SHUTDOWN, 0, 0, vcpu.dead);
    // The fetch unit checks a 64-byte line once and then decodes its instructions, until anything
    // that could change those bytes or their translation happens (see #invalidatesFetch).
    this.#verifiedLine = -1;
    while (exit === undefined) {
      if (retired >= budget) {
        exit = exitWith(VMEXIT_INTR, 0, 0, 'time slice over (host timer interrupt)');
        break;
      }
      // 1. Instruction fetch at RIP: always private in an SEV guest.
      const code = vcpu.software.code;
      const codeOffset = st.rip - vcpu.software.codeBase;
      if (codeOffset < 0 || codeOffset >= code.length) {
        exit = this.#kill(vcpu, exitWith, `RIP 0x${st.rip.toString(16)} is outside the guest's code`);
        break;
      }
      const line = Math.floor(st.rip / LINE_SIZE);
      if (line !== this.#verifiedLine) {
        const fetch = this.#mmu.translate(st, st.rip, 'fetch');
        if (fetch.kind !== 'ok') {
          this.#verifiedLine = -1;
          exit = this.#fault(vcpu, fetch, exitWith);
          if (exit !== undefined) break;
          continue;
        }
        // The rest of the line from RIP, compared in place with the guest's code.
        const length = Math.min((line + 1) * LINE_SIZE - st.rip, code.length - codeOffset);
        if (!this.#cache.matches(fetch.spa, fetch.key, code, codeOffset, length)) {
          // Never the fetched bytes: they are memory decrypted with the guest's key, and a host that
          // points RIP at a guest's data would otherwise read it in this exit reason.
          exit = this.#kill(
            vcpu,
            exitWith,
            `#UD: instruction bytes at RIP 0x${st.rip.toString(16)} are not the guest's code`,
          );
          break;
        }
        this.#verifiedLine = line;
        this.#verifiedSpaLine = Math.floor(fetch.spa / LINE_SIZE);
      }
      // 2. The next instruction of the thread (or the one to restart).
      let insn = vcpu.pending;
      if (insn === undefined) {
        if (vcpu.thread === undefined) vcpu.thread = vcpu.software.start();
        let step: IteratorResult<Instruction, void>;
        try {
          step = vcpu.thread.next(vcpu.resume);
        } catch (err) {
          exit = this.#kill(vcpu, exitWith, `guest crashed: ${guestFailure(err)}`);
          break;
        }
        vcpu.resume = undefined;
        if (step.done === true) {
          exit = this.#kill(vcpu, exitWith, 'guest thread ended');
          break;
        }
        insn = step.value;
      }
      // 3. Execute.
      const outcome = this.#execute(insn, st, regs, vcpu);
      if (outcome === OUTCOME_FAULT) {
        const fault = this.#faultOut as DeliveredFault;
        vcpu.pending = fault.kind === '#NPF' ? insn : undefined;
        this.#verifiedLine = -1;
        exit = this.#fault(vcpu, fault, exitWith);
        if (exit !== undefined) break;
        continue;
      }
      vcpu.pending = undefined;
      retired++;
      this.retired++;
      st.rip = vcpu.software.codeBase + ((codeOffset + INSTRUCTION_BYTES) % code.length);
      if (outcome === OUTCOME_EXIT) {
        exit = exitWith(this.#exitCode, 0, 0, this.#exitReason);
        break;
      }
      vcpu.resume = this.#valueOut;
    }

    // #VMEXIT: exit information to the VMCB; the registers to the VMCB's save area, where plain SEV
    // leaves them readable by the host, or (SEV-ES/SNP) into the encrypted VMSA.
    this.#cache.write(
      vmcb.address,
      VmcbControl.encode({
        ...control,
        tlbControl: 0,
        exitCode: BigInt.asUintN(64, BigInt(exit.code)),
        exitInfo1: BigInt(exit.exitInfo1),
        exitInfo2: BigInt(exit.exitInfo2),
        ghcbGpa: exit.code === SvmExit.VMGEXIT ? BigInt(this.#ghcbOut) : control.ghcbGpa,
      }),
      key,
    );
    const registers = {
      rip: BigInt(st.rip),
      cr0: st.cr0,
      cr3: BigInt(st.cr3),
      cr2: st.cr2,
      rax: regs.rax,
      rbx: regs.rbx,
      rcx: regs.rcx,
      rdx: regs.rdx,
    };
    if (es) {
      const page = this.#cache.read(vmsaSpa, VMSA_SIZE, asid);
      Vmsa.write(page, { ...registers, rip: BigInt.asUintN(64, registers.rip - csBase) });
      this.#cache.write(vmsaSpa, page, asid);
    } else {
      this.#cache.write(
        vmcb.address + VMCB_SAVE_AREA_OFFSET,
        SaveArea.encode({ ...save, ...registers }),
        key,
      );
    }
    return exit;
  }

  #kill(
    vcpu: VcpuRuntime,
    exitWith: (c: number, i1: number, i2: number, r: string) => VmExit,
    reason: string,
  ): VmExit {
    vcpu.dead = reason;
    return exitWith(SvmExit.SHUTDOWN, 0, 0, reason);
  }

  /** #NPF exits to the host; a #PF is thrown into the guest thread (its handler) and may kill it. */
  #fault(
    vcpu: VcpuRuntime,
    fault: DeliveredFault,
    exitWith: (c: number, i1: number, i2: number, r: string) => VmExit,
  ): VmExit | undefined {
    if (fault.kind === '#NPF') return exitWith(SvmExit.NPF, fault.exitInfo1, fault.gpa, fault.reason);
    const thread = vcpu.thread;
    if (thread === undefined)
      return this.#kill(vcpu, exitWith, `${fault.kind} before the guest started: ${fault.reason}`);
    try {
      const step = thread.throw(new GuestException(fault.kind, fault.va, fault.errorCode, fault.reason));
      if (step.done === true) return this.#kill(vcpu, exitWith, 'guest thread ended');
      vcpu.pending = step.value;
      return undefined;
    } catch (err) {
      return this.#kill(vcpu, exitWith, `triple fault: unhandled ${guestFailure(err)}`);
    }
  }

  #execute(insn: Instruction, st: PagingRegisters, regs: Registers, vcpu: VcpuRuntime): Outcome {
    this.#valueOut = undefined;
    switch (insn.op) {
      case 'load': {
        const out = Buffer.allocUnsafe(insn.length);
        for (let done = 0; done < insn.length;) {
          const va = insn.va + done;
          const t = this.#mmu.translate(st, va, 'read');
          if (t.kind !== 'ok') return this.#recordFault(st, t);
          const take = Math.min(PAGE_SIZE - (va % PAGE_SIZE), insn.length - done);
          this.#cache.readInto(out, done, t.spa, take, t.key);
          done += take;
        }
        this.#valueOut = out;
        return OUTCOME_OK;
      }
      case 'store': {
        const data = insn.data;
        if ((insn.va % PAGE_SIZE) + data.length <= PAGE_SIZE) {
          const t = this.#mmu.translate(st, insn.va, 'write');
          if (t.kind !== 'ok') return this.#recordFault(st, t);
          this.#storeTouches(t.spa, data.length);
          this.#cache.write(t.spa, data, t.key);
          return OUTCOME_OK;
        }
        // Across pages: translate every page first so a faulting store writes nothing.
        const parts: { spa: number; key: number; from: number; to: number }[] = [];
        for (let done = 0; done < data.length;) {
          const va = insn.va + done;
          const t = this.#mmu.translate(st, va, 'write');
          if (t.kind !== 'ok') return this.#recordFault(st, t);
          const take = Math.min(PAGE_SIZE - (va % PAGE_SIZE), data.length - done);
          parts.push({ spa: t.spa, key: t.key, from: done, to: done + take });
          done += take;
        }
        for (const p of parts) {
          this.#storeTouches(p.spa, p.to - p.from);
          this.#cache.write(p.spa, data.subarray(p.from, p.to), p.key);
        }
        return OUTCOME_OK;
      }
      case 'writeCr3':
        st.cr3 = insn.value;
        this.#mmu.flushAsid(st.asid);
        this.#verifiedLine = -1;
        return OUTCOME_OK;
      case 'enablePaging':
        st.cr0 |= CR0_PG | CR0_PE;
        st.pagingEnabled = true;
        this.#mmu.flushAsid(st.asid);
        this.#verifiedLine = -1;
        return OUTCOME_OK;
      case 'invlpg':
        this.#mmu.invalidatePage(st.asid, insn.va);
        this.#verifiedLine = -1;
        return OUTCOME_OK;
      case 'clflush': {
        const t = this.#mmu.translate(st, insn.va, 'read');
        if (t.kind !== 'ok') return this.#recordFault(st, t);
        this.#cache.clflush(t.spa);
        this.#verifiedLine = -1;
        return OUTCOME_OK;
      }
      case 'wbinvd':
        this.#cache.wbinvd();
        this.#verifiedLine = -1;
        return OUTCOME_OK;
      case 'vmmcall':
        if (st.es)
          return this.#recordFault(st, {
            kind: '#VC',
            va: st.rip,
            errorCode: SvmExit.VMMCALL,
            reason: 'VMMCALL in an SEV-ES guest is a non-automatic exit: use the GHCB (VMGEXIT)',
          });
        Object.assign(regs, insn.registers);
        vcpu.inHypercall = true;
        this.#exitCode = SvmExit.VMMCALL;
        this.#exitReason = `hypercall rax=0x${insn.registers.rax.toString(16)}`;
        return OUTCOME_EXIT;
      case 'hlt':
        this.#exitCode = SvmExit.HLT;
        this.#exitReason = 'guest halted';
        return OUTCOME_EXIT;
      case 'vmgexit':
        if (!st.es) return this.#undefinedOpcode(st, 'VMGEXIT outside an SEV-ES guest');
        this.#ghcbOut = insn.ghcbGpa;
        this.#exitCode = SvmExit.VMGEXIT;
        this.#exitReason = `VMGEXIT (GHCB at GPA 0x${insn.ghcbGpa.toString(16)})`;
        return OUTCOME_EXIT;
      case 'pvalidate':
      case 'rmpadjust': {
        if (!st.snp) return this.#undefinedOpcode(st, `${insn.op.toUpperCase()} outside an SNP guest`);
        const t = this.#mmu.translateForRmpInstruction(st, insn.va);
        if (t.kind !== 'ok') return this.#recordFault(st, t);
        const guest = { asid: st.asid, vmpl: st.vmpl };
        if (insn.op === 'pvalidate') {
          const r = this.#rmp.pvalidate(guest, t.gpa, t.spa, insn.size, insn.validate, t.nestedPageSize);
          if ('kind' in r) return this.#recordFault(st, rmpInstructionNpf(r, t.gpa, t.private));
          this.#valueOut = r;
        } else {
          const r = this.#rmp.rmpadjust(
            guest,
            t.gpa,
            t.spa,
            insn.size,
            { vmpl: insn.targetVmpl, perms: insn.perms, vmsa: insn.vmsa },
            t.nestedPageSize,
          );
          if (typeof r !== 'number') return this.#recordFault(st, rmpInstructionNpf(r, t.gpa, t.private));
          this.#valueOut = { status: r, noUpdate: false };
        }
        this.#verifiedLine = -1;
        return OUTCOME_OK;
      }
    }
  }

  /** #UD into the guest (an instruction this vCPU's mode does not have). */
  #undefinedOpcode(st: { rip: number }, reason: string): Outcome {
    this.#faultOut = { kind: '#UD', va: st.rip, errorCode: 0, reason };
    return OUTCOME_FAULT;
  }

  /** A store to the physical line the fetch unit verified (under any key) makes it re-check. */
  #storeTouches(spa: number, length: number): void {
    const first = Math.floor(spa / LINE_SIZE);
    const last = Math.floor((spa + length - 1) / LINE_SIZE);
    if (this.#verifiedSpaLine >= first && this.#verifiedSpaLine <= last) this.#verifiedLine = -1;
  }

  #recordFault(st: { cr2: bigint }, fault: DeliveredFault): Outcome {
    // CR2 takes the faulting VA on a #PF, and on the RMP's PAGE_NOT_VALIDATED #VC (APM vol. 2
    // §15.36.10: "The faulting guest virtual address is saved to CR2"), not on other #VCs.
    if (fault.kind === '#PF' || (fault.kind === '#VC' && fault.errorCode === VC_PAGE_NOT_VALIDATED))
      st.cr2 = BigInt(fault.va);
    this.#faultOut = fault;
    return OUTCOME_FAULT;
  }

  toJSON(): string {
    return '[Core]';
  }
}

export { KeySlotEmptyError };
