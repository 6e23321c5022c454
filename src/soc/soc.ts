// The assembled chip. Host software sees only the facades here; the key-slot programmer and the
// PSP's DMA port are handed out once, at assembly, to whoever builds the PSP.
import { Drbg } from '../crypto/index.js';
import { Cache, DEFAULT_CACHE_GEOMETRY, type CacheGeometry, type LineState } from './cache.js';
import { Core, type VcpuHandoff, type VmExit, type VmrunOptions } from './core.js';
import { Dram } from './dram.js';
import type { GuestSoftware } from './isa.js';
import {
  KEY_HOST,
  KEY_NONE,
  KeySlotProgrammer,
  MemoryController,
  type KeyId,
  type KeySlotInfo,
} from './memory-controller.js';
import { Mmu } from './mmu.js';
import { PagingFormat } from './paging.js';
import { type ProductProfile, cpuidMemoryEncryptionLeaf } from './products.js';
import { PspDmaPort } from './psp-dma.js';
import { Rmp, RmpFirmwareAccess, type RmpEntry, type RmpStatusCode, type RmpUpdateState } from './rmp.js';

export interface SocOptions {
  readonly profile: ProductProfile;
  /** Installed DRAM (sparse: only written pages cost memory). Default 1 GiB. */
  readonly dramBytes?: number;
  readonly cache?: CacheGeometry;
  /** Makes the boot-time tweak constants (Zen 1) reproducible. */
  readonly seed?: string | number | bigint;
}

/** The host CPU's view of memory: its own mappings, with (SME) or without the C-bit. */
export class HostMemoryView {
  readonly #cache: Cache;
  readonly #rmp: Rmp;

  constructor(cache: Cache, rmp: Rmp) {
    this.#cache = cache;
    this.#rmp = rmp;
  }

  /** A host load through its direct map; `encrypted` = the mapping's C-bit (SME key). */
  read(spa: number, length: number, encrypted: boolean): Buffer {
    return this.#cache.read(spa, length, encrypted ? KEY_HOST : KEY_NONE);
  }

  /** A host store; on an SNP host, a store into an RMP-assigned page throws HostRmpFault (#PF). */
  write(spa: number, data: Uint8Array, encrypted: boolean): void {
    this.#rmp.checkHostWrite(spa, data.length);
    this.#cache.write(spa, data, encrypted ? KEY_HOST : KEY_NONE);
  }

  wbinvd(): void {
    this.#cache.wbinvd();
  }

  /** INVD: drops dirty lines without writing them back. */
  invd(): void {
    this.#cache.invd();
  }

  clflush(spa: number): void {
    this.#cache.clflush(spa);
  }

  clflushRange(spa: number, length: number): void {
    this.#cache.clflushRange(spa, length);
  }

  /** Whether (line, key id) is cached and dirty — state, never data (attacks.md C7). */
  probe(spa: number, keyId: KeyId): LineState {
    return this.#cache.probe(spa, keyId);
  }

  toJSON(): string {
    return '[HostMemoryView]';
  }
}

export class Soc {
  readonly dram: Dram;
  readonly paging: PagingFormat;
  readonly hostMemory: HostMemoryView;
  readonly #core: Core;
  readonly #mc: MemoryController;
  readonly #cache: Cache;
  readonly #mmu: Mmu;
  readonly #rmp: Rmp;

  private constructor(
    readonly profile: ProductProfile,
    opts: SocOptions,
  ) {
    this.dram = new Dram(opts.dramBytes ?? 1024 * 1024 * 1024);
    this.paging = new PagingFormat(profile);
    this.#mc = new MemoryController(
      this.dram,
      profile.cipherMode,
      profile.maxSevAsid,
      profile.physAddrBits,
      Drbg.create(opts.seed, 'umc-tweak'),
    );
    this.#cache = new Cache(this.#mc, opts.cache ?? DEFAULT_CACHE_GEOMETRY);
    this.#rmp = new Rmp(this.dram.sizeBytes);
    this.#mmu = new Mmu(this.#cache, this.paging, this.#rmp);
    this.#core = new Core(this.#cache, this.#mmu, this.#mc, this.paging, this.#rmp);
    this.hostMemory = new HostMemoryView(this.#cache, this.#rmp);
  }

  /**
   * Builds the chip. The returned capabilities (key-slot programmer, PSP DMA port) must go to the
   * PSP and nowhere else.
   */
  static assemble(opts: SocOptions): { soc: Soc; pspCapabilities: PspCapabilities } {
    const soc = new Soc(opts.profile, opts);
    const core = soc.#core;
    const asids: AsidValidity = {
      setValid: (asid, valid) => core.setAsidValid(asid, valid),
      invalidateAll: () => core.invalidateAllAsids(),
    };
    return {
      soc,
      pspCapabilities: {
        keySlots: new KeySlotProgrammer(soc.#mc),
        dma: new PspDmaPort(soc.#mc, soc.#cache),
        asids,
        rmp: new RmpFirmwareAccess(soc.#rmp),
      },
    };
  }

  /** CPUID Fn8000_001F. */
  cpuid8000001f(): { eax: number; ebx: number; ecx: number; edx: number } {
    return cpuidMemoryEncryptionLeaf(this.profile);
  }

  /** Key-slot metadata (never key material). */
  keySlot(keyId: KeyId): KeySlotInfo {
    return this.#mc.slotInfo(keyId);
  }

  /** Lines currently cached under a key id. */
  cachedLines(keyId: KeyId): number {
    return this.#cache.linesUnder(keyId);
  }

  get cacheStats(): Readonly<{ hits: number; misses: number; writebacks: number }> {
    return this.#cache.stats;
  }

  get mmuStats(): Readonly<{ tlbHits: number; tlbMisses: number; walks: number }> {
    return this.#mmu.stats;
  }

  /** RMPUPDATE (host): set who owns the page at `spa` (clears VALIDATED and the VMPL permissions). */
  rmpupdate(spa: number, state: RmpUpdateState): RmpStatusCode {
    return this.#rmp.rmpupdate(spa, state);
  }

  /** PSMASH (host): split a 2M RMP entry into 512 4K entries. */
  psmash(spa: number): RmpStatusCode {
    return this.#rmp.psmash(spa);
  }

  /** RMPREAD (host): the RMP entry of a page (ownership metadata, never contents). */
  rmpread(spa: number): RmpEntry {
    return this.#rmp.read(spa);
  }

  /** Whether SNP_INIT has initialised the RMP (from then on every access is checked). */
  get rmpEnabled(): boolean {
    return this.#rmp.enabled;
  }

  /** Pages the RMP assigns, for display. */
  rmpAssignedPages(): { spa: number; entry: RmpEntry }[] {
    return this.#rmp.assignedPages();
  }

  /** VMRUN on the (only modelled) core. */
  vmrun(vmcbAddress: number, options?: VmrunOptions): VmExit {
    return this.#core.vmrun(vmcbAddress, options);
  }

  /** Live migration: a vCPU's execution state leaves this machine with its VMCB. */
  exportVcpu(vmcbAddress: number): VcpuHandoff {
    return this.#core.exportVcpu(vmcbAddress);
  }

  importVcpu(vmcbAddress: number, handoff: VcpuHandoff): void {
    this.#core.importVcpu(vmcbAddress, handoff);
  }

  /** Another vCPU of the same guest: the VMCB at `vmcbAddress` runs the software of `existingVmcb`'s. */
  attachSoftwareOf(existingVmcb: number, vmcbAddress: number): void {
    this.#core.attachSoftwareOf(existingVmcb, vmcbAddress);
  }

  /** Attaches the software a vCPU's firmware image boots into. */
  attachGuestSoftware(vmcbAddress: number, software: GuestSoftware): void {
    this.#core.attachSoftware(vmcbAddress, software);
  }

  toJSON(): string {
    return `[Soc ${this.profile.name}]`;
  }
}

/** The firmware's control of which SEV ASIDs the cores will run (ASPFW mark_asid_valid/invalid). */
export interface AsidValidity {
  setValid(asid: number, valid: boolean): void;
  invalidateAll(): void;
}

/** What only the PSP may hold. */
export interface PspCapabilities {
  readonly keySlots: KeySlotProgrammer;
  readonly dma: PspDmaPort;
  readonly asids: AsidValidity;
  /** The firmware's direct access to the RMP. */
  readonly rmp: RmpFirmwareAccess;
}
