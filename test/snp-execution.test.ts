// SEV-ES and SEV-SNP execution through the real chip (sev-reference §6, §7.1–7.2; AMD APM vol. 2
// §15.35–15.36): the RMP checked on host writes and on every guest access, #VC for unvalidated
// pages, PVALIDATE and RMPADJUST from guest code, VMPLs, registers kept in the encrypted VMSA, and
// exits through the GHCB (VMGEXIT).
//
// The PSP's SNP commands do not exist yet, so the tests play the firmware's part themselves with the
// capabilities Soc.assemble hands the PSP: SNP_INIT (`rmp.enable()`), the RMP entries
// SNP_LAUNCH_UPDATE would write (`rmp.write`), the VEK in the ASID's key slot and the ASID's
// validity (as ACTIVATE does), and the guest's initial memory encrypted in place (the DMA port, as
// LAUNCH_UPDATE does).
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  CR0_PE,
  CR0_PG,
  Ghcb,
  NESTED_CTL_NP_ENABLE,
  NESTED_CTL_SEV_ENABLE,
  NESTED_CTL_SEV_ES_ENABLE,
  SaveArea,
  SevFeature,
  SvmExit,
  VMCB_SAVE_AREA_OFFSET,
  VMSA_SIZE,
  Vmsa,
  VmcbControl,
} from '../src/abi/index.js';
import { Hypervisor, type Vm } from '../src/host/index.js';
import { createPlatform, type Platform } from '../src/psp/index.js';
import {
  GuestException,
  HostRmpFault,
  INSTRUCTION_BYTES,
  NPF_ENC,
  NPF_FINAL_GPA,
  NPF_RMP,
  NPF_SIZEM,
  NPF_VMPL,
  PAGES_PER_2M,
  PAGE_SIZE,
  PF_PRESENT,
  PF_USER,
  PF_WRITE,
  RmpStatus,
  Soc,
  VC_PAGE_NOT_VALIDATED,
  VMEXIT_INVALID,
  VMPL_PERMS_ALL,
  VmplPerm,
  type GuestSoftware,
  type GuestThread,
  type Instruction,
  type InstructionResult,
  type PspCapabilities,
  type RmpEntry,
  type RmpInstructionResult,
  type VmExit,
} from '../src/soc/index.js';

/** An SEV-ES/SNP ASID (Milan: 1 .. minSevAsid − 1). */
const ASID = 1;
const OTHER_ASID = 2;
const GUEST_BYTES = 64 * PAGE_SIZE;

/** Guest-physical layout. */
const GPA = {
  code: 0x0000,
  pml4: 0x1000,
  pdpt: 0x2000,
  pd: 0x3000,
  pt: 0x4000,
  vmsa: 0x8000,
  vmsa1: 0x9000,
  data: 0x1_0000,
  data2: 0x1_1000,
  data3: 0x1_2000,
  ghcb: 0x2_0000,
} as const;
/** A 2 MiB-aligned GPA range the tests back with a 2 MiB-aligned host block (see `mapLargePage`). */
const GPA_2M = 0x20_0000;
const SIZE_2M = PAGE_SIZE * PAGES_PER_2M;
/** Guest-virtual aliases that exist only with paging on: data2 privately, data shared (C=0). */
const VA_PRIVATE_ALIAS = 0x10_0000;
const VA_SHARED_ALIAS = 0x10_1000;

/** The guest's code image (what a fetch under the guest key must return). */
const CODE = Buffer.from(Array.from({ length: PAGE_SIZE }, (_, i) => (i * 151 + 7) & 0xff));

/** A fixed test VEK + tweak key (the PSP would draw one per guest). */
function vek(): Buffer {
  return Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff));
}

/**
 * Guest software for every vCPU of one guest: they share the code frames, so they share the
 * software object. Threads are handed out in the order the vCPUs first run.
 */
class ScriptedGuest implements GuestSoftware {
  readonly codeBase = GPA.code;
  readonly code = CODE;
  readonly #threads: (() => GuestThread)[] = [];

  add(thread: () => GuestThread): this {
    this.#threads.push(thread);
    return this;
  }

  start(): GuestThread {
    const next = this.#threads.shift();
    if (next === undefined) throw new Error('no guest thread left to start');
    return next();
  }
}

/** createPlatform, with the capabilities Soc.assemble handed to its PSP kept for the test. */
function platformWithCapabilities(seed: string): { platform: Platform; caps: PspCapabilities } {
  const spy = vi.spyOn(Soc, 'assemble');
  try {
    const platform = createPlatform({ product: 'milan', dramBytes: 64 << 20, seed });
    const result = spy.mock.results[0];
    if (result?.type !== 'return') throw new Error('createPlatform did not assemble a chip');
    return { platform, caps: result.value.pspCapabilities };
  } finally {
    spy.mockRestore();
  }
}

interface MachineOptions {
  readonly seed?: string;
  /** SEV_FEATURES.SNPActive in the VMSA (default true); false = an SEV-ES guest. */
  readonly snp?: boolean;
  /** Turn the RMP on (SNP_INIT) — default true. */
  readonly rmp?: boolean;
  /** Build the guest's page tables (private, identity map plus aliases); default: when `paging`. */
  readonly pageTables?: boolean;
  /** Start the vCPUs with paging on; default false. */
  readonly paging?: boolean;
}

interface VcpuOptions {
  readonly vmpl?: number;
  readonly vmsaGpa?: number;
  readonly registers?: { rax?: bigint; rbx?: bigint; rcx?: bigint; rdx?: bigint };
  /** Whether the VMSA's RMP entry is a VMSA page of the guest (default: yes, for SNP). */
  readonly vmsaRmp?: Partial<RmpEntry> | 'none';
}

/** One host with one SNP (or SEV-ES) guest whose memory the test sets up as the firmware would. */
class Machine {
  readonly platform: Platform;
  readonly caps: PspCapabilities;
  readonly hv: Hypervisor;
  readonly soc: Soc;
  readonly vm: Vm;
  readonly guest = new ScriptedGuest();
  readonly snp: boolean;
  readonly paging: boolean;
  /** VMCB host address (without the C-bit) per vCPU. */
  readonly vmcbs: number[] = [];

  constructor(opts: MachineOptions = {}) {
    const { platform, caps } = platformWithCapabilities(opts.seed ?? 'snp-execution');
    this.platform = platform;
    this.caps = caps;
    this.soc = platform.soc;
    this.hv = new Hypervisor(platform);
    this.snp = opts.snp ?? true;
    this.paging = opts.paging ?? false;
    if (opts.rmp ?? true) caps.rmp.enable();
    caps.keySlots.install(ASID, vek());
    caps.asids.setValid(ASID, true);
    this.vm = this.hv.allocateVm('snp-guest', ASID, true, 0, [{ gpa: 0, bytes: GUEST_BYTES }]);
    this.writePrivate(GPA.code, CODE);
    if (this.snp) this.assign(GPA.code, { vmplPerms: [VMPL_PERMS_ALL, VmplPerm.EXEC_SUPERVISOR, 0, 0] });
    if (opts.pageTables ?? this.paging) this.#buildPageTables();
  }

  spa(gpa: number): number {
    return this.vm.spaOf(gpa);
  }

  /** Guest memory written under the guest key (LAUNCH_UPDATE's re-encryption in place). */
  writePrivate(gpa: number, data: Uint8Array): void {
    this.caps.dma.write(this.spa(gpa), data, ASID);
  }

  /**
   * A 2 MiB host block, 2 MiB-aligned, mapped (with 4K nested entries: the only kind the model has)
   * at GPA_2M..+2M, so that the RMP may hold it as one 2M page. Returns the block's SPA.
   */
  mapLargePage(): number {
    const block = this.hv.frames.allocateAligned(SIZE_2M, SIZE_2M);
    this.vm.npt.mapRange(GPA_2M, block, PAGES_PER_2M, {
      writable: true,
      executable: false,
      hostEncrypted: false,
    });
    return block;
  }

  /** Guest memory as the guest sees it privately (decrypted with its key). */
  readPrivate(gpa: number, length: number): Buffer {
    return this.caps.dma.read(this.spa(gpa), length, ASID);
  }

  /** The RMP entry the firmware would leave for a launched page: GUEST_VALID, VMPL0 only. */
  assign(gpa: number, fields: Partial<RmpEntry> = {}): void {
    this.caps.rmp.write(this.spa(gpa), {
      assigned: true,
      pageSize: '4K',
      immutable: false,
      gpa,
      asid: ASID,
      vmsa: false,
      validated: true,
      metadata: false,
      vmplPerms: [VMPL_PERMS_ALL, 0, 0, 0],
      ...fields,
    });
  }

  /** Identity map of guest RAM (C=1, the GHCB C=0), plus the two aliases; the tables are private. */
  #buildPageTables(): void {
    const f = this.soc.paging;
    const table = (entries: [number, Buffer][]): Buffer => {
      const t = Buffer.alloc(PAGE_SIZE);
      for (const [i, e] of entries) e.copy(t, i * 8);
      return t;
    };
    const link = (address: number): Buffer =>
      f.encode({ address, present: true, writable: true, user: false, encrypted: true });
    const leaf = (address: number, encrypted: boolean): Buffer =>
      f.encode({
        address,
        present: true,
        writable: true,
        user: false,
        encrypted,
        noExecute: address !== GPA.code,
      });
    this.writePrivate(GPA.pml4, table([[0, link(GPA.pdpt)]]));
    this.writePrivate(GPA.pdpt, table([[0, link(GPA.pd)]]));
    this.writePrivate(GPA.pd, table([[0, link(GPA.pt)]]));
    const ptes: [number, Buffer][] = [];
    for (let gpa = 0; gpa < GUEST_BYTES; gpa += PAGE_SIZE)
      ptes.push([gpa / PAGE_SIZE, leaf(gpa, gpa !== GPA.ghcb)]);
    ptes.push([VA_PRIVATE_ALIAS / PAGE_SIZE, leaf(GPA.data2, true)]);
    ptes.push([VA_SHARED_ALIAS / PAGE_SIZE, leaf(GPA.data, false)]);
    this.writePrivate(GPA.pt, table(ptes));
    if (this.snp) for (const t of [GPA.pml4, GPA.pdpt, GPA.pd, GPA.pt]) this.assign(t);
  }

  /**
   * A vCPU: its VMSA (encrypted with the guest key; for SNP an RMP VMSA page) and a VMCB with
   * SEV-ES enabled pointing at it. The save area gets decoy values the guest must never see.
   * Returns the vCPU's index.
   */
  addVcpu(opts: VcpuOptions = {}): number {
    const vmsaGpa = opts.vmsaGpa ?? (opts.vmpl === undefined || opts.vmpl === 0 ? GPA.vmsa : GPA.vmsa1);
    const r = opts.registers ?? {};
    this.writePrivate(
      vmsaGpa,
      Vmsa.encode({
        rip: BigInt(GPA.code),
        cr0: this.paging ? CR0_PE | CR0_PG : CR0_PE,
        cr3: this.paging ? BigInt(GPA.pml4) : 0n,
        efer: 0x1000n,
        vmpl: opts.vmpl ?? 0,
        sevFeatures: this.snp ? SevFeature.SNP_ACTIVE : 0n,
        rax: r.rax ?? 0n,
        rbx: r.rbx ?? 0n,
        rcx: r.rcx ?? 0n,
        rdx: r.rdx ?? 0n,
      }),
    );
    if (this.snp && opts.vmsaRmp !== 'none') this.assign(vmsaGpa, { vmsa: true, ...(opts.vmsaRmp ?? {}) });
    const vmcb = this.hv.frames.allocate();
    this.writeVmcb(vmcb, vmsaGpa);
    this.soc.attachGuestSoftware(this.soc.paging.withCBit(vmcb), this.guest);
    this.vmcbs.push(vmcb);
    return this.vmcbs.length - 1;
  }

  writeVmcb(
    vmcb: number,
    vmsaGpa: number,
    nestedControl = NESTED_CTL_NP_ENABLE | NESTED_CTL_SEV_ENABLE | NESTED_CTL_SEV_ES_ENABLE,
  ): void {
    const mem = this.soc.hostMemory;
    mem.write(vmcb, Buffer.alloc(PAGE_SIZE), true);
    mem.write(
      vmcb,
      VmcbControl.encode({
        asid: ASID,
        nestedControl,
        nestedCr3: BigInt(this.vm.npt.nestedCr3),
        tlbControl: 3,
        vmsaPaddr: BigInt(this.soc.paging.withCBit(this.spa(vmsaGpa))),
      }),
      true,
    );
    mem.write(
      vmcb + VMCB_SAVE_AREA_OFFSET,
      SaveArea.encode({ rax: DECOY, rip: 0x800n, cr3: 0xdead_0000n }),
      true,
    );
  }

  run(vcpu = 0): VmExit {
    return this.soc.vmrun(this.soc.paging.withCBit(this.vmcbs[vcpu] as number));
  }

  control(vcpu = 0): ReturnType<typeof VmcbControl.decode> {
    return VmcbControl.decode(this.soc.hostMemory.read(this.vmcbs[vcpu] as number, VmcbControl.size, true));
  }

  saveArea(vcpu = 0): ReturnType<typeof SaveArea.decode> {
    return SaveArea.decode(
      this.soc.hostMemory.read((this.vmcbs[vcpu] as number) + VMCB_SAVE_AREA_OFFSET, SaveArea.size, true),
    );
  }

  /** The VMSA as only the guest key can read it. */
  vmsa(gpa: number = GPA.vmsa): ReturnType<typeof Vmsa.decode> {
    return Vmsa.decode(this.readPrivate(gpa, VMSA_SIZE));
  }
}

const DECOY = 0x0bad_0bad_0bad_0badn;

/** What the guest saw: values it loaded, exceptions delivered to it, RMP instruction results. */
interface Log {
  loads: Buffer[];
  faults: GuestException[];
  results: RmpInstructionResult[];
}

function newLog(): Log {
  return { loads: [], faults: [], results: [] };
}

function* load(log: Log, va: number, length: number): Generator<Instruction, void, InstructionResult> {
  try {
    log.loads.push((yield { op: 'load', va, length }) as Buffer);
  } catch (err) {
    if (!(err instanceof GuestException)) throw err;
    log.faults.push(err);
  }
}

const SECRET = Buffer.from('private to the SNP guest, 32 B!!');

afterEach(() => {
  vi.restoreAllMocks();
});

describe('host writes and reads on an SNP host', () => {
  it('a host write into a page the RMP assigns throws HostRmpFault; host reads still work and see ciphertext', () => {
    const m = new Machine({ seed: 'host-write' });
    m.writePrivate(GPA.data, SECRET);
    m.assign(GPA.data);
    const spa = m.spa(GPA.data);
    const mem = m.soc.hostMemory;
    for (const encrypted of [false, true]) {
      let thrown: unknown;
      try {
        mem.write(spa + 16, Buffer.from('host was here'), encrypted);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(HostRmpFault);
      expect(thrown).toMatchObject({ spa, state: 'GUEST_VALID' });
    }
    // A write that starts in a hypervisor page and runs into the guest's is refused as a whole.
    expect(() => mem.write(spa - 8, Buffer.alloc(16, 0x41), false)).toThrow(HostRmpFault);
    expect(mem.read(spa - 8, 8, false)).toEqual(Buffer.alloc(8));
    // The guest's data is intact, and the host reads only ciphertext.
    expect(m.readPrivate(GPA.data, SECRET.length)).toEqual(SECRET);
    for (const encrypted of [false, true]) {
      const seen = mem.read(spa, SECRET.length, encrypted);
      expect(seen.length).toBe(SECRET.length);
      expect(seen.equals(SECRET)).toBe(false);
      expect(seen.includes(SECRET.subarray(0, 8))).toBe(false);
    }
    // Pages the RMP leaves to the hypervisor are written as before; a page given back becomes writable.
    mem.write(m.spa(GPA.data2), Buffer.from('mine'), false);
    expect(mem.read(m.spa(GPA.data2), 4, false).toString()).toBe('mine');
    expect(m.soc.rmpupdate(spa, { assigned: false, pageSize: '4K', immutable: false, gpa: 0, asid: 0 })).toBe(
      0,
    );
    mem.write(spa, Buffer.from('mine now'), false);
    expect(mem.read(spa, 8, false).toString()).toBe('mine now');
  });

  // APM Table 15-39: host writes get the Hypervisor-Owned check (ASSIGNED = 0); HV_FIXED pages pass it
  // (Linux keeps PSP command buffers in HV_Fixed pages and writes the commands into them).
  it('a host write into an HV_FIXED page goes through; the page stays out of RMPUPDATE’s reach', () => {
    const m = new Machine({ seed: 'hv-fixed' });
    const spa = m.hv.frames.allocate();
    m.caps.rmp.write(spa, {
      assigned: false,
      pageSize: '4K',
      immutable: true,
      gpa: 0,
      asid: 0,
      vmsa: false,
      validated: false,
      metadata: false,
      vmplPerms: [0, 0, 0, 0],
    });
    expect(m.soc.rmpread(spa)).toMatchObject({ assigned: false, immutable: true });
    m.soc.hostMemory.write(spa, Buffer.from('psp command'), false);
    expect(m.soc.hostMemory.read(spa, 11, false).toString()).toBe('psp command');
    expect(
      m.soc.rmpupdate(spa, { assigned: true, pageSize: '4K', immutable: false, gpa: 0, asid: ASID }),
    ).toBe(RmpStatus.FAIL_PERMISSION);
  });

  it('before SNP_INIT nothing is checked', () => {
    const m = new Machine({ seed: 'no-rmp', rmp: false, snp: false });
    expect(m.soc.rmpEnabled).toBe(false);
    m.caps.rmp.write(m.spa(GPA.data), {
      assigned: true,
      pageSize: '4K',
      immutable: false,
      gpa: GPA.data,
      asid: ASID,
      vmsa: false,
      validated: true,
      metadata: false,
      vmplPerms: [VMPL_PERMS_ALL, 0, 0, 0],
    });
    expect(() => m.soc.hostMemory.write(m.spa(GPA.data), Buffer.from('ok'), false)).not.toThrow();
    expect(
      m.soc.rmpupdate(m.spa(GPA.data), { assigned: true, pageSize: '4K', immutable: false, gpa: 0, asid: 1 }),
    ).toBe(RmpStatus.FAIL_INPUT);
  });
});

describe('RMP checks on an SNP guest’s accesses', () => {
  it('a private access to a page assigned to another GPA or another ASID exits with #NPF (RMP), and restarts once fixed', () => {
    // The page's RMP entry: assigned at another GPA, to another ASID, or not assigned at all.
    for (const wrong of [{ gpa: GPA.data2 }, { asid: OTHER_ASID }, undefined]) {
      const m = new Machine({ seed: `remap-${JSON.stringify(wrong)}` });
      m.writePrivate(GPA.data, SECRET);
      if (wrong !== undefined) m.assign(GPA.data, wrong);
      const log = newLog();
      m.guest.add(function* () {
        yield* load(log, GPA.data, SECRET.length);
        yield { op: 'hlt' };
      });
      m.addVcpu();
      const exit = m.run();
      expect(exit.code).toBe(SvmExit.NPF);
      expect(exit.exitInfo2).toBe(GPA.data);
      expect(exit.reason).toMatch(/^RMP: /);
      expect(m.control().exitCode).toBe(BigInt(SvmExit.NPF));
      expect(m.control().exitInfo2).toBe(BigInt(GPA.data));
      expect(log.loads).toEqual([]);
      expect(log.faults).toEqual([]);
      // The firmware puts the right entry back (as if the page had never moved); the load restarts.
      m.assign(GPA.data);
      const again = m.run();
      expect(again.code).toBe(SvmExit.HLT);
      expect(log.loads).toEqual([SECRET]);
    }
  });

  // EXITINFO1 of an RMP #NPF (APM §15.36.10, KVM PFERR_GUEST_*): bit 32 (final GPA), the page-fault
  // bits, bit 31 RMP and bit 34 ENC for a private access. These must be added: JavaScript's 32-bit
  // `|` drops every bit from 32 up and makes bit 31 negative.
  it('the #NPF EXITINFO1 of a private read of another guest’s page has the final-GPA, RMP and ENC bits', () => {
    const m = new Machine({ seed: 'exitinfo' });
    m.assign(GPA.data, { asid: OTHER_ASID });
    m.guest.add(function* () {
      yield { op: 'load', va: GPA.data, length: 8 };
    });
    m.addVcpu();
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    const expected = NPF_FINAL_GPA + NPF_RMP + NPF_ENC + PF_PRESENT + PF_USER;
    expect(expected).toBe(0x5_8000_0005);
    expect(exit.exitInfo1).toBe(expected);
    expect(m.control().exitInfo1).toBe(BigInt(expected));
  });

  it('a private access to an unvalidated page of the guest raises #VC in the guest; after PVALIDATE it works', () => {
    const m = new Machine({ seed: 'pvalidate' });
    // The hypervisor hands the guest a new private page (RMPUPDATE: GUEST_INVALID).
    const spa = m.spa(GPA.data);
    expect(
      m.soc.rmpupdate(spa, { assigned: true, pageSize: '4K', immutable: false, gpa: GPA.data, asid: ASID }),
    ).toBe(RmpStatus.SUCCESS);
    // RMPUPDATE gave VMPL0 every right and the other VMPLs none (APM §15.36.7); PVALIDATE changes neither.
    expect(m.soc.rmpread(spa)).toMatchObject({
      assigned: true,
      validated: false,
      asid: ASID,
      gpa: GPA.data,
      vmplPerms: [VMPL_PERMS_ALL, 0, 0, 0],
    });
    const log = newLog();
    m.guest.add(function* () {
      yield* load(log, GPA.data + 8, 8);
      try {
        yield { op: 'store', va: GPA.data, data: SECRET };
      } catch (err) {
        log.faults.push(err as GuestException);
      }
      log.results.push(
        (yield { op: 'pvalidate', va: GPA.data, size: '4K', validate: true }) as RmpInstructionResult,
      );
      log.results.push(
        (yield { op: 'pvalidate', va: GPA.data, size: '4K', validate: true }) as RmpInstructionResult,
      );
      yield { op: 'store', va: GPA.data, data: SECRET };
      yield* load(log, GPA.data, SECRET.length);
      yield { op: 'hlt' };
    });
    m.addVcpu();
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.HLT);
    expect(log.faults.map((f) => [f.vector, f.address, f.errorCode])).toEqual([
      ['#VC', GPA.data + 8, VC_PAGE_NOT_VALIDATED],
      ['#VC', GPA.data, VC_PAGE_NOT_VALIDATED],
    ]);
    expect(log.faults[0]?.message).toMatch(/not validated/);
    expect(log.results).toEqual([
      { status: RmpStatus.SUCCESS, noUpdate: false },
      { status: RmpStatus.SUCCESS, noUpdate: true },
    ]);
    expect(log.loads).toEqual([SECRET]);
    expect(m.soc.rmpread(spa)).toMatchObject({ validated: true, vmplPerms: [VMPL_PERMS_ALL, 0, 0, 0] });
    expect(m.readPrivate(GPA.data, SECRET.length)).toEqual(SECRET);
    // The #VCs went to the guest: one run, ending with its HLT (the two faulting accesses did not retire).
    expect(exit.instructions).toBe(5);
  });

  // APM §15.36.10: "A failure of the page validation check results in a #VC with error code
  // PAGE_NOT_VALIDATED (0x404). The faulting guest virtual address is saved to CR2".
  it('the #VC of an unvalidated page has error code PAGE_NOT_VALIDATED (0x404)', () => {
    expect(VC_PAGE_NOT_VALIDATED).toBe(0x404);
  });

  it('the #VC of an unvalidated page leaves the faulting VA in CR2 (saved in the VMSA); other #VCs do not', () => {
    const m = new Machine({ seed: 'vc-cr2', paging: true });
    m.assign(GPA.data2, { validated: false });
    const log = newLog();
    m.guest.add(function* () {
      // Through the paging alias, so that CR2 shows the VA, not the GPA.
      yield* load(log, VA_PRIVATE_ALIAS + 0x18, 8);
      try {
        yield { op: 'vmmcall', registers: { rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n } };
      } catch (err) {
        log.faults.push(err as GuestException);
      }
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.vmsa().cr2).toBe(0n);
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.faults.map((f) => [f.vector, f.errorCode])).toEqual([
      ['#VC', 0x404],
      ['#VC', SvmExit.VMMCALL],
    ]);
    expect(m.vmsa().cr2).toBe(BigInt(VA_PRIVATE_ALIAS + 0x18));
  });

  it('PVALIDATE of a page that is not the guest’s, or at a GVA not 2M-aligned for a 2M page, fails with FAIL_INPUT', () => {
    const m = new Machine({ seed: 'pvalidate-fail' });
    m.assign(GPA.data3, { asid: OTHER_ASID, validated: false });
    const log = newLog();
    m.guest.add(function* () {
      for (const va of [GPA.data, GPA.data3])
        log.results.push((yield { op: 'pvalidate', va, size: '4K', validate: true }) as RmpInstructionResult);
      log.results.push(
        (yield { op: 'pvalidate', va: GPA.data, size: '2M', validate: true }) as RmpInstructionResult,
      );
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.results).toEqual([
      { status: RmpStatus.FAIL_INPUT, noUpdate: false },
      { status: RmpStatus.FAIL_INPUT, noUpdate: false },
      { status: RmpStatus.FAIL_INPUT, noUpdate: false },
    ]);
    expect(m.soc.rmpread(m.spa(GPA.data3))).toMatchObject({ asid: OTHER_ASID, validated: false });
    expect(m.soc.rmpread(m.spa(GPA.data)).assigned).toBe(false);
  });

  // APM §15.36.11 (Table 15-40): a 2M PVALIDATE on memory the RMP holds as 4K pages returns
  // FAIL_SIZEMISMATCH, and the guest retries page by page (Linux falls back only on that code, and
  // terminates on any other) — not FAIL_INPUT, though the SPA is not 2M-aligned: a fact the guest
  // cannot see. Here GPA 0 is 2M-aligned but backed by 4K host frames.
  it('a 2M PVALIDATE at a 2M-aligned GPA backed by 4K RMP pages is FAIL_SIZEMISMATCH (6)', () => {
    const m = new Machine({ seed: 'pvalidate-2m' });
    const log = newLog();
    m.guest.add(function* () {
      log.results.push(
        (yield { op: 'pvalidate', va: 0, size: '2M', validate: false }) as RmpInstructionResult,
      );
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.results).toEqual([{ status: RmpStatus.FAIL_SIZEMISMATCH, noUpdate: false }]);
  });

  it('an SEV-ES (non-SNP) guest on an SNP host may read an assigned page but its write exits with #NPF (RMP)', () => {
    const m = new Machine({ seed: 'es-on-snp', snp: false });
    m.caps.rmp.write(m.spa(GPA.data), {
      assigned: true,
      pageSize: '4K',
      immutable: false,
      gpa: GPA.data,
      asid: OTHER_ASID,
      vmsa: false,
      validated: true,
      metadata: false,
      vmplPerms: [VMPL_PERMS_ALL, 0, 0, 0],
    });
    const log = newLog();
    m.guest.add(function* () {
      yield* load(log, GPA.data, 16);
      yield { op: 'store', va: GPA.data, data: Buffer.from('overwrite') };
      yield { op: 'hlt' };
    });
    m.addVcpu();
    const exit = m.run();
    expect(log.loads).toHaveLength(1);
    expect(log.faults).toEqual([]);
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.exitInfo2).toBe(GPA.data);
    expect(exit.reason).toMatch(/RMP: write to .*an assigned page/);
  });

  // APM Table 15-39 checks an SNP guest's C=0 accesses on writes only: a shared read of a private
  // page is allowed and yields ciphertext, as a host read would.
  it('a shared (C=0) read of a page assigned to the guest is not checked: it reads ciphertext', () => {
    const m = new Machine({ seed: 'shared-read', paging: true });
    m.writePrivate(GPA.data, SECRET);
    m.assign(GPA.data);
    const log = newLog();
    m.guest.add(function* () {
      yield* load(log, VA_SHARED_ALIAS, SECRET.length);
      yield* load(log, GPA.data, SECRET.length);
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.faults).toEqual([]);
    expect(log.loads).toHaveLength(2);
    expect(log.loads[0]?.equals(SECRET)).toBe(false);
    expect(log.loads[1]).toEqual(SECRET);
  });

  it('a shared (C=0) write to a page assigned to the guest exits with #NPF (RMP bit, no ENC); to the hypervisor-owned GHCB it works', () => {
    const m = new Machine({ seed: 'shared', paging: true });
    m.writePrivate(GPA.data, SECRET);
    m.assign(GPA.data);
    const log = newLog();
    m.guest.add(function* () {
      yield { op: 'store', va: GPA.ghcb, data: Buffer.from('shared with the host') };
      yield { op: 'store', va: VA_SHARED_ALIAS, data: Buffer.from('leak through C=0') };
      yield* load(log, GPA.data, SECRET.length);
      yield { op: 'hlt' };
    });
    m.addVcpu();
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.exitInfo2).toBe(GPA.data);
    expect(exit.reason).toMatch(/shared \(C=0\) write/);
    expect(m.soc.hostMemory.read(m.spa(GPA.ghcb), 20, false).toString()).toBe('shared with the host');
    expect(m.readPrivate(GPA.data, SECRET.length)).toEqual(SECRET);
    // The host converts the page to shared (RMPUPDATE → hypervisor); the restarted store goes through in plaintext.
    expect(
      m.soc.rmpupdate(m.spa(GPA.data), {
        assigned: false,
        pageSize: '4K',
        immutable: false,
        gpa: 0,
        asid: 0,
      }),
    ).toBe(0);
    const next = m.run();
    // ... and the guest's private read of the now-shared page is an #NPF (RMP, ENC).
    expect(next.code).toBe(SvmExit.NPF);
    expect(next.reason).toMatch(/not assigned to ASID 1/);
    expect(m.soc.hostMemory.read(m.spa(GPA.data), 16, false).toString()).toBe('leak through C=0');
  });

  it('the shared-write #NPF has EXITINFO1 = final GPA | present | write | user | RMP, without ENC', () => {
    const m = new Machine({ seed: 'shared-bits', paging: true });
    m.assign(GPA.data);
    m.guest.add(function* () {
      yield { op: 'store', va: VA_SHARED_ALIAS, data: Buffer.from('x') };
    });
    m.addVcpu();
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.exitInfo1).toBe(NPF_FINAL_GPA + NPF_RMP + PF_PRESENT + PF_WRITE + PF_USER);
    expect(Math.floor(exit.exitInfo1 / NPF_ENC) % 2).toBe(0);
  });

  it('page-table walks are RMP-checked: a guest table page taken away by the host is an #NPF on the table access', () => {
    const m = new Machine({ seed: 'table-walk', paging: true });
    m.writePrivate(GPA.data2, SECRET);
    m.assign(GPA.data2);
    const log = newLog();
    m.guest.add(function* () {
      yield* load(log, VA_PRIVATE_ALIAS, SECRET.length);
      yield { op: 'vmgexit', ghcbGpa: GPA.ghcb };
      yield* load(log, VA_PRIVATE_ALIAS + 8, 8);
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.run().code).toBe(SvmExit.VMGEXIT);
    expect(log.loads).toEqual([SECRET]);
    // The host reassigns the page holding the guest's last-level table to another guest: the next
    // walk (the instruction fetch's, first) faults on the table access.
    m.assign(GPA.pt, { asid: OTHER_ASID });
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    expect(Math.floor(exit.exitInfo2 / PAGE_SIZE) * PAGE_SIZE).toBe(GPA.pt);
    expect(exit.reason).toMatch(/not assigned to ASID 1/);
    expect(log.loads).toHaveLength(1);
    // Given back, the walk succeeds again and the guest carries on.
    m.assign(GPA.pt);
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.loads).toEqual([SECRET, SECRET.subarray(8, 16)]);
  });

  it('the RMP check cached in the TLB is dropped when the RMP changes (no stale permission after RMPUPDATE)', () => {
    const m = new Machine({ seed: 'tlb' });
    m.writePrivate(GPA.data, SECRET);
    m.assign(GPA.data);
    const log = newLog();
    m.guest.add(function* () {
      yield* load(log, GPA.data, 8);
      yield { op: 'vmgexit', ghcbGpa: GPA.ghcb };
      yield* load(log, GPA.data, 8);
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.run().code).toBe(SvmExit.VMGEXIT);
    expect(log.loads).toEqual([SECRET.subarray(0, 8)]);
    // The VMCB asks for no TLB flush; only the RMP change may invalidate the cached check.
    expect(m.control().tlbControl).toBe(0);
    expect(
      m.soc.rmpupdate(m.spa(GPA.data), {
        assigned: true,
        pageSize: '4K',
        immutable: false,
        gpa: GPA.data3,
        asid: ASID,
      }),
    ).toBe(0);
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.exitInfo2).toBe(GPA.data);
    expect(exit.reason).toMatch(/remapped/);
    expect(log.loads).toHaveLength(1);
  });
});

describe('2M RMP pages under the model’s 4K nested mappings (APM Tables 15-39, 15-40)', () => {
  // Table 15-40 and §15.36.11: a 4K PVALIDATE of a page "backed by a 2MB page" is a #VMEXIT(NPF)
  // with the SIZEM bit; "the hypervisor can smash the 2MB page and then allow the guest to retry".
  it('a 4K PVALIDATE of a page the RMP holds as 2M exits with #NPF (RMP, ENC, SIZEM); after PSMASH it restarts and succeeds', () => {
    const m = new Machine({ seed: 'pvalidate-sizem' });
    const block = m.mapLargePage();
    expect(
      m.soc.rmpupdate(block, { assigned: true, pageSize: '2M', immutable: false, gpa: GPA_2M, asid: ASID }),
    ).toBe(RmpStatus.SUCCESS);
    const va = GPA_2M + 5 * PAGE_SIZE;
    const log = newLog();
    m.guest.add(function* () {
      // 2M first, as Linux does: the nested mapping is 4K, so FAIL_SIZEMISMATCH, and the guest goes 4K.
      log.results.push(
        (yield { op: 'pvalidate', va: GPA_2M, size: '2M', validate: true }) as RmpInstructionResult,
      );
      log.results.push((yield { op: 'pvalidate', va, size: '4K', validate: true }) as RmpInstructionResult);
      yield { op: 'store', va, data: SECRET };
      yield* load(log, va, SECRET.length);
      yield { op: 'hlt' };
    });
    m.addVcpu();
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.exitInfo2).toBe(va);
    const expected = NPF_FINAL_GPA + NPF_RMP + NPF_ENC + NPF_SIZEM + PF_PRESENT + PF_USER;
    expect(expected).toBe(0xd_8000_0005);
    expect(exit.exitInfo1).toBe(expected);
    expect(m.control().exitInfo1).toBe(BigInt(expected));
    expect(exit.reason).toMatch(/4K PVALIDATE .* 2M RMP entry/);
    expect(exit.instructions).toBe(1); // the 2M PVALIDATE retired; the 4K one did not
    expect(log.results).toEqual([{ status: RmpStatus.FAIL_SIZEMISMATCH, noUpdate: false }]);
    expect(m.soc.rmpread(block + 5 * PAGE_SIZE)).toMatchObject({ pageSize: '2M', validated: false });

    // What KVM does with SIZEM: PSMASH the 2M entry and resume the guest.
    expect(m.soc.psmash(block)).toBe(RmpStatus.SUCCESS);
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.results).toEqual([
      { status: RmpStatus.FAIL_SIZEMISMATCH, noUpdate: false },
      { status: RmpStatus.SUCCESS, noUpdate: false },
    ]);
    expect(log.loads).toEqual([SECRET]);
    expect(log.faults).toEqual([]);
    expect(m.soc.rmpread(block + 5 * PAGE_SIZE)).toMatchObject({ pageSize: '4K', validated: true, gpa: va });
    expect(m.soc.rmpread(block + 6 * PAGE_SIZE)).toMatchObject({ pageSize: '4K', validated: false });
  });

  /** GPA_2M as a validated 2M guest page (what a 2M SNP_LAUNCH_UPDATE leaves), holding SECRET at +5 pages. */
  function launchedLargePage(seed: string): { m: Machine; block: number } {
    const m = new Machine({ seed });
    const block = m.mapLargePage();
    m.caps.dma.write(block + 5 * PAGE_SIZE, SECRET, ASID);
    m.caps.rmp.write(block, {
      assigned: true,
      pageSize: '2M',
      immutable: false,
      gpa: GPA_2M,
      asid: ASID,
      vmsa: false,
      validated: true,
      metadata: false,
      vmplPerms: [VMPL_PERMS_ALL, 0, 0, 0],
    });
    return { m, block };
  }

  it('RMPADJUST likewise: a 4K request on a 2M page exits with SIZEM, and restarts after PSMASH', () => {
    const { m, block } = launchedLargePage('rmpadjust-sizem');
    const va = GPA_2M + 5 * PAGE_SIZE;
    const log = newLog();
    m.guest.add(function* () {
      log.results.push(
        (yield {
          op: 'rmpadjust',
          va,
          size: '4K',
          targetVmpl: 1,
          perms: VmplPerm.READ,
          vmsa: false,
        }) as RmpInstructionResult,
      );
      yield { op: 'hlt' };
    });
    m.addVcpu();
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.exitInfo1).toBe(NPF_FINAL_GPA + NPF_RMP + NPF_ENC + NPF_SIZEM + PF_PRESENT + PF_USER);
    expect(exit.reason).toMatch(/4K RMPADJUST/);
    expect(m.soc.psmash(block)).toBe(RmpStatus.SUCCESS);
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.results).toEqual([{ status: RmpStatus.SUCCESS, noUpdate: false }]);
    expect(m.soc.rmpread(block + 5 * PAGE_SIZE).vmplPerms).toEqual([VMPL_PERMS_ALL, VmplPerm.READ, 0, 0]);
    expect(m.soc.rmpread(block + 6 * PAGE_SIZE).vmplPerms).toEqual([VMPL_PERMS_ALL, 0, 0, 0]);
  });

  // §15.36.10 Page-Size: a 4K nested mapping needs RMP Page_Size 0. With nested tables of 4K pages
  // only, a guest reaches a 2M RMP page only once the host has smashed it (as KVM does on this fault).
  it('a guest access to a page of a 2M RMP entry through a 4K nested mapping is #NPF (RMP, ENC; no SIZEM) until PSMASH', () => {
    const { m, block } = launchedLargePage('page-size');
    const va = GPA_2M + 5 * PAGE_SIZE;
    const log = newLog();
    m.guest.add(function* () {
      yield* load(log, va, SECRET.length);
      yield { op: 'hlt' };
    });
    m.addVcpu();
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.exitInfo2).toBe(va);
    expect(exit.exitInfo1).toBe(NPF_FINAL_GPA + NPF_RMP + NPF_ENC + PF_PRESENT + PF_USER);
    expect(exit.reason).toMatch(/2M RMP page reached through a 4K nested mapping/);
    expect(log.loads).toEqual([]);
    expect(m.soc.psmash(block)).toBe(RmpStatus.SUCCESS);
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.loads).toEqual([SECRET]);
    expect(log.faults).toEqual([]);
  });
});

describe('VMPLs', () => {
  /** A guest with a VMPL0 vCPU (0) and a VMPL1 vCPU (1) and a data page only VMPL0 may touch. */
  function twoVmpls(seed: string): Machine {
    const m = new Machine({ seed });
    m.writePrivate(GPA.data, SECRET);
    m.assign(GPA.data);
    return m;
  }

  it('VMPL1 without RMPADJUST rights gets #NPF with the VMPL bit; once VMPL0 grants READ the read succeeds, writes still fault', () => {
    const m = twoVmpls('vmpl');
    const log1 = newLog();
    const log0 = newLog();
    // Threads in the order the vCPUs first run: VMPL1, then VMPL0.
    const vmpl0 = function* (): GuestThread {
      // VMPL0: grant VMPL1 read access, check it cannot grant to itself, halt.
      log0.results.push(
        (yield {
          op: 'rmpadjust',
          va: GPA.data,
          size: '4K',
          targetVmpl: 1,
          perms: VmplPerm.READ,
          vmsa: false,
        }) as RmpInstructionResult,
      );
      log0.results.push(
        (yield {
          op: 'rmpadjust',
          va: GPA.data,
          size: '4K',
          targetVmpl: 0,
          perms: VMPL_PERMS_ALL,
          vmsa: false,
        }) as RmpInstructionResult,
      );
      yield { op: 'hlt' };
    };
    m.guest.add(function* () {
      // VMPL1
      yield* load(log1, GPA.data, SECRET.length);
      log1.results.push(
        (yield { op: 'pvalidate', va: GPA.data, size: '4K', validate: false }) as RmpInstructionResult,
      );
      log1.results.push(
        (yield {
          op: 'rmpadjust',
          va: GPA.data,
          size: '4K',
          targetVmpl: 2,
          perms: VmplPerm.READ | VmplPerm.WRITE,
          vmsa: false,
        }) as RmpInstructionResult,
      );
      yield { op: 'store', va: GPA.data, data: Buffer.from('vmpl1') };
      yield { op: 'hlt' };
    });
    m.guest.add(vmpl0);
    m.addVcpu({ vmpl: 0 });
    m.addVcpu({ vmpl: 1 });
    expect(m.vmsa(GPA.vmsa1).vmpl).toBe(1);

    const denied = m.run(1);
    expect(denied.code).toBe(SvmExit.NPF);
    expect(denied.exitInfo2).toBe(GPA.data);
    expect(denied.reason).toMatch(/VMPL1 may not read/);
    expect(log1.loads).toEqual([]);

    expect(m.run(0).code).toBe(SvmExit.HLT);
    expect(log0.results.map((r) => r.status)).toEqual([RmpStatus.SUCCESS, RmpStatus.FAIL_PERMISSION]);
    expect(m.soc.rmpread(m.spa(GPA.data)).vmplPerms).toEqual([VMPL_PERMS_ALL, VmplPerm.READ, 0, 0]);

    const exit = m.run(1);
    expect(log1.loads).toEqual([SECRET]);
    // VMPL1 may not PVALIDATE, nor grant what it does not hold; its write still faults.
    expect(log1.results.map((r) => r.status)).toEqual([RmpStatus.FAIL_PERMISSION, RmpStatus.FAIL_PERMISSION]);
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.reason).toMatch(/VMPL1 may not write/);
    expect(m.readPrivate(GPA.data, SECRET.length)).toEqual(SECRET);
  });

  it('the VMPL #NPF has EXITINFO1 = final GPA | present | user | RMP | ENC | VMPL', () => {
    const m = twoVmpls('vmpl-bits');
    m.guest.add(function* () {
      yield { op: 'load', va: GPA.data, length: 1 };
    });
    m.addVcpu({ vmpl: 1 });
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.NPF);
    expect(exit.exitInfo1).toBe(NPF_FINAL_GPA + NPF_RMP + NPF_ENC + NPF_VMPL + PF_PRESENT + PF_USER);
  });

  // vCPUs of one guest at different VMPLs share the ASID's TLB entries in the model: an entry that
  // passed the RMP check for VMPL0 must not spare VMPL1 its own permission check (the APM keeps a TLB
  // context per VMSA, TLB_ID/PCPU_ID, §15.36.15).
  it('a VMPL0 vCPU’s TLB entry does not let a VMPL1 vCPU of the same ASID skip the VMPL check', () => {
    const m = twoVmpls('vmpl-tlb');
    const log0 = newLog();
    const log1 = newLog();
    m.guest.add(function* () {
      yield* load(log0, GPA.data, SECRET.length);
      yield { op: 'hlt' };
    });
    m.guest.add(function* () {
      yield* load(log1, GPA.data, SECRET.length);
      yield { op: 'hlt' };
    });
    m.addVcpu({ vmpl: 0 });
    m.addVcpu({ vmpl: 1 });
    // No TLB flush asked for by either VMCB after their first run.
    expect(m.run(0).code).toBe(SvmExit.HLT);
    expect(log0.loads).toEqual([SECRET]);
    const vmcb1 = m.vmcbs[1] as number;
    m.soc.hostMemory.write(vmcb1, VmcbControl.encode({ ...m.control(1), tlbControl: 0 }), true);
    const exit = m.run(1);
    expect(log1.loads).toEqual([]);
    expect(exit.code).toBe(SvmExit.NPF);
  });
});

describe('SEV-ES/SNP vCPU state lives in the VMSA', () => {
  for (const snp of [false, true]) {
    it(`${snp ? 'SNP' : 'SEV-ES'}: registers load from and save to the encrypted VMSA; the VMCB save area never holds them`, () => {
      const m = new Machine({ seed: `vmsa-${snp}`, snp });
      const rax = 0x1122_3344_5566_7788n;
      const rbx = 0x0102_0304_0506_0708n;
      const log = newLog();
      m.guest.add(function* () {
        yield { op: 'store', va: GPA.data2, data: SECRET };
        yield* load(log, GPA.data2, SECRET.length);
        yield { op: 'hlt' };
        yield { op: 'vmgexit', ghcbGpa: GPA.ghcb };
        yield { op: 'hlt' };
      });
      if (snp) m.assign(GPA.data2);
      m.addVcpu({ registers: { rax, rbx, rcx: 3n, rdx: 4n } });

      const first = m.run();
      expect(first.code).toBe(SvmExit.HLT);
      expect(first.instructions).toBe(3);
      expect(log.loads).toEqual([SECRET]);
      const v1 = m.vmsa();
      expect([v1.rax, v1.rbx, v1.rcx, v1.rdx]).toEqual([rax, rbx, 3n, 4n]);
      expect(v1.rip).toBe(BigInt(GPA.code + 3 * INSTRUCTION_BYTES));
      expect(v1.vmpl).toBe(0);
      expect(v1.sevFeatures).toBe(snp ? SevFeature.SNP_ACTIVE : 0n);

      // The VMCB save area keeps the host's decoys: no guest register reached it.
      expect(m.saveArea()).toMatchObject({ rax: DECOY, rip: 0x800n, cr3: 0xdead_0000n, rbx: 0n });
      // The host sees the VMSA page only as ciphertext, under either of its mappings.
      m.soc.hostMemory.wbinvd();
      const plain = m.readPrivate(GPA.vmsa, VMSA_SIZE);
      const raxBytes = plain.subarray(0x1f8, 0x200);
      expect(raxBytes.readBigUInt64LE(0)).toBe(rax);
      for (const encrypted of [false, true]) {
        const page = m.soc.hostMemory.read(m.spa(GPA.vmsa), VMSA_SIZE, encrypted);
        expect(page.equals(plain)).toBe(false);
        expect(page.includes(raxBytes)).toBe(false);
        expect(Vmsa.decode(page).rax).not.toBe(rax);
      }

      // A host rewriting the VMCB save area changes nothing for the guest: it resumes from the VMSA.
      m.soc.hostMemory.write(
        (m.vmcbs[0] as number) + VMCB_SAVE_AREA_OFFSET,
        SaveArea.encode({ rax: 0n, rip: 0x400n, cr0: 0n }),
        true,
      );
      const second = m.run();
      expect(second.code).toBe(SvmExit.VMGEXIT);
      expect(second.instructions).toBe(1);
      const v2 = m.vmsa();
      expect(v2.rip).toBe(BigInt(GPA.code + 4 * INSTRUCTION_BYTES));
      expect([v2.rax, v2.rbx]).toEqual([rax, rbx]);
      expect(m.saveArea().rip).toBe(0x400n);
    });
  }

  it('the guest’s paging state (CR0, CR3) survives exits in the VMSA, whatever the host puts in the VMCB', () => {
    // Page tables exist, but the vCPU starts with paging off; the guest turns it on itself.
    const m = new Machine({ seed: 'vmsa-paging', pageTables: true });
    m.writePrivate(GPA.data2, SECRET);
    m.assign(GPA.data2);
    const log = newLog();
    m.guest.add(function* () {
      yield { op: 'writeCr3', value: GPA.pml4 };
      yield { op: 'enablePaging' };
      yield { op: 'vmgexit', ghcbGpa: GPA.ghcb };
      yield* load(log, VA_PRIVATE_ALIAS, SECRET.length);
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.run().code).toBe(SvmExit.VMGEXIT);
    const v = m.vmsa();
    expect(v.cr3).toBe(BigInt(GPA.pml4));
    expect(v.cr0 & CR0_PG).toBe(CR0_PG);
    expect(m.saveArea()).toMatchObject({ cr3: 0xdead_0000n, cr0: 0n });
    // VA_PRIVATE_ALIAS exists only in the guest's page tables (with paging off it would be GPA 0x100000, unmapped).
    expect(m.run().code).toBe(SvmExit.HLT);
    expect(log.loads).toEqual([SECRET]);
    expect(log.faults).toEqual([]);
  });
});

describe('exits of an SEV-ES/SNP guest', () => {
  it('VMGEXIT exits with 0x403 and leaves the GHCB GPA in the VMCB; the request is in the shared GHCB', () => {
    const m = new Machine({ seed: 'vmgexit', paging: true });
    m.guest.add(function* () {
      yield {
        op: 'store',
        va: GPA.ghcb,
        data: Ghcb.encode({ swExitCode: 0x8000_fffen, swExitInfo1: 0x1234n, protocolVersion: 2 }),
      };
      yield { op: 'vmgexit', ghcbGpa: GPA.ghcb };
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.control().ghcbGpa).toBe(0n);
    const exit = m.run();
    expect(exit.code).toBe(SvmExit.VMGEXIT);
    expect(SvmExit.VMGEXIT).toBe(0x403);
    expect(exit.reason).toMatch(/VMGEXIT/);
    const control = m.control();
    expect(control.exitCode).toBe(0x403n);
    expect(control.ghcbGpa).toBe(BigInt(GPA.ghcb));
    const ghcb = Ghcb.decode(m.soc.hostMemory.read(m.spa(GPA.ghcb), PAGE_SIZE, false));
    expect(ghcb).toMatchObject({ swExitCode: 0x8000_fffen, swExitInfo1: 0x1234n, protocolVersion: 2 });
    // The next exit (HLT) keeps the GHCB GPA the guest last gave.
    const next = m.run();
    expect(next.code).toBe(SvmExit.HLT);
    expect(m.control()).toMatchObject({ exitCode: BigInt(SvmExit.HLT), ghcbGpa: BigInt(GPA.ghcb) });
  });

  it('VMMCALL in an SEV-ES guest is a #VC (error code VMMCALL 0x81) in the guest, not an exit', () => {
    for (const snp of [false, true]) {
      const m = new Machine({ seed: `vmmcall-${snp}`, snp });
      const log = newLog();
      m.guest.add(function* () {
        try {
          yield { op: 'vmmcall', registers: { rax: 12n, rbx: 0n, rcx: 0n, rdx: 0n } };
        } catch (err) {
          log.faults.push(err as GuestException);
        }
        yield { op: 'hlt' };
      });
      m.addVcpu({ registers: { rax: 7n } });
      const exit = m.run();
      expect(exit.code).toBe(SvmExit.HLT);
      expect(log.faults.map((f) => [f.vector, f.errorCode])).toEqual([['#VC', SvmExit.VMMCALL]]);
      expect(SvmExit.VMMCALL).toBe(0x81);
      expect(m.vmsa().rax).toBe(7n); // the hypercall's registers never reached the vCPU state
    }
  });

  it('PVALIDATE outside an SNP guest and VMGEXIT outside an SEV-ES guest are #UD', () => {
    const es = new Machine({ seed: 'ud-es', snp: false });
    const log = newLog();
    es.guest.add(function* () {
      try {
        yield { op: 'pvalidate', va: GPA.data, size: '4K', validate: true };
      } catch (err) {
        log.faults.push(err as GuestException);
      }
      yield { op: 'hlt' };
    });
    es.addVcpu();
    expect(es.run().code).toBe(SvmExit.HLT);
    expect(log.faults.map((f) => f.vector)).toEqual(['#UD']);

    // A plain SEV guest (no SEV-ES): registers in the VMCB save area, no GHCB protocol.
    const sev = new Machine({ seed: 'ud-sev', snp: false });
    const log2 = newLog();
    sev.guest.add(function* () {
      try {
        yield { op: 'vmgexit', ghcbGpa: GPA.ghcb };
      } catch (err) {
        log2.faults.push(err as GuestException);
      }
      yield { op: 'hlt' };
    });
    const vmcb = sev.hv.frames.allocate();
    sev.writeVmcb(vmcb, GPA.vmsa, NESTED_CTL_NP_ENABLE | NESTED_CTL_SEV_ENABLE);
    sev.soc.hostMemory.write(
      vmcb + VMCB_SAVE_AREA_OFFSET,
      SaveArea.encode({ rip: 0n, cr0: CR0_PE, rax: 5n }),
      true,
    );
    sev.soc.attachGuestSoftware(sev.soc.paging.withCBit(vmcb), sev.guest);
    sev.vmcbs.push(vmcb);
    const exit = sev.run();
    expect(exit.code).toBe(SvmExit.HLT);
    expect(log2.faults.map((f) => f.vector)).toEqual(['#UD']);
    // The #UD did not retire; the HLT did.
    expect(sev.saveArea()).toMatchObject({ rax: 5n, rip: BigInt(INSTRUCTION_BYTES) });
  });
});

describe('VMRUN of an SNP vCPU checks its VMSA page in the RMP', () => {
  it.each<[string, Partial<RmpEntry> | 'none']>([
    ['a hypervisor page', 'none'],
    ['a guest page without the VMSA bit', { vmsa: false }],
    ['a VMSA page of another ASID', { asid: OTHER_ASID }],
    ['an unvalidated page', { validated: false }],
    ['an immutable (PRE_GUEST) page', { immutable: true, validated: false }],
  ])('refuses a VMSA in %s with VMEXIT_INVALID', (_what, vmsaRmp) => {
    const m = new Machine({ seed: `vmsa-check-${JSON.stringify(vmsaRmp)}` });
    m.guest.add(function* () {
      yield { op: 'hlt' };
    });
    m.addVcpu({ vmsaRmp });
    const exit = m.run();
    expect(exit.code).toBe(VMEXIT_INVALID);
    expect(exit.reason).toMatch(/is not a VMSA of ASID 1 in the RMP/);
    expect(m.control().exitCode).toBe(2n ** 64n - 1n);
  });

  it('refuses an SNP vCPU on a host without an initialised RMP', () => {
    const m = new Machine({ seed: 'no-snp-init', rmp: false });
    m.guest.add(function* () {
      yield { op: 'hlt' };
    });
    m.addVcpu({ vmsaRmp: 'none' });
    const exit = m.run();
    expect(exit.code).toBe(VMEXIT_INVALID);
    expect(exit.reason).toMatch(/without an initialised RMP/);
  });

  it('runs the vCPU once its VMSA page is a VMSA of the guest', () => {
    const m = new Machine({ seed: 'vmsa-ok' });
    m.guest.add(function* () {
      yield { op: 'hlt' };
    });
    m.addVcpu();
    expect(m.soc.rmpread(m.spa(GPA.vmsa))).toMatchObject({ vmsa: true, validated: true, asid: ASID });
    expect(m.run().code).toBe(SvmExit.HLT);
  });

  // APM Table 15-41 (VMRUN page checks): for a guest that is not SNP-active the VMSA page must pass
  // the Hypervisor-Owned check, else VMEXIT_INVALID. Core.vmrun checks the RMP only for SNP, so
  // a host can point an SEV-ES VMCB of the guest's ASID at one of its private pages whose decrypted
  // SEV_FEATURES lacks SNPActive, run it without RMP checks, and have #VMEXIT write the registers
  // into that page. (Reported.)
  it('an SEV-ES VMCB whose VMSA pointer names an RMP-assigned page is refused (APM Table 15-41)', () => {
    const m = new Machine({ seed: 'es-vmsa-assigned' });
    const zeros = Buffer.alloc(PAGE_SIZE); // decrypts to SEV_FEATURES = 0: "not SNP"
    m.writePrivate(GPA.data3, zeros);
    m.assign(GPA.data3);
    m.guest.add(function* () {
      yield { op: 'hlt' };
    });
    const vmcb = m.hv.frames.allocate();
    m.writeVmcb(vmcb, GPA.data3);
    m.soc.attachGuestSoftware(m.soc.paging.withCBit(vmcb), m.guest);
    m.vmcbs.push(vmcb);
    const exit = m.run();
    expect(m.readPrivate(GPA.data3, PAGE_SIZE).equals(zeros)).toBe(true);
    expect(exit.code).toBe(VMEXIT_INVALID);
  });
});
