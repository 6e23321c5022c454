// Live migration of a legacy SEV guest between two simulated machines (sev-reference §8), the way
// QEMU/KVM drive it: the destination's certificates go to the source PSP (SEND_START wraps fresh
// transport keys to the destination's PDH), private pages travel as SEND_UPDATE_DATA packets and are
// re-encrypted under the destination's new VEK by RECEIVE_UPDATE_DATA, shared pages are copied in
// the clear, and the vCPU resumes on the destination. The hosts only ever handle ciphertext.
import {
  ActivateBuffer,
  HandleBuffer,
  PacketHeader,
  PdhCertExportBuffer,
  ReceiveStartBuffer,
  SEV_CERT_SIZE,
  SendStartBuffer,
  SessionBuffer,
  SevCommand,
  TransportBuffer,
  decodeSevPolicy,
} from '../abi/index.js';
import { PAGE_SIZE } from '../soc/index.js';
import type { Hypervisor, Vm } from './hypervisor.js';

/** The platform certificates a host exports (PDH_CERT_EXPORT): PDH, and PEK ‖ OCA ‖ CEK. */
export function exportPlatformCerts(hv: Hypervisor): { pdh: Buffer; chain: Buffer } {
  const page = hv.frames.allocateMany(4, true)[0] as number;
  hv.driver.call(SevCommand.PDH_CERT_EXPORT, PdhCertExportBuffer, {
    pdhPaddr: BigInt(page),
    pdhLength: SEV_CERT_SIZE,
    chainPaddr: BigInt(page + SEV_CERT_SIZE),
    chainLength: 3 * SEV_CERT_SIZE,
  });
  const mem = hv.soc.hostMemory;
  return {
    pdh: mem.read(page, SEV_CERT_SIZE, false),
    chain: mem.read(page + SEV_CERT_SIZE, 3 * SEV_CERT_SIZE, false),
  };
}

export interface MigrationResult {
  readonly vm: Vm;
  readonly privatePages: number;
  readonly sharedPages: number;
}

/**
 * Moves `vm` from `source` to `destination`. `amdCerts` (ASK ‖ ARK) let the source PSP check the
 * destination's chain when the guest policy demands an AMD platform. Throws PspCommandError if a PSP
 * refuses (the guest then keeps running on the source).
 */
export function migrateVm(
  source: Hypervisor,
  vm: Vm,
  destination: Hypervisor,
  amdCerts: Buffer,
): MigrationResult {
  const src = source.driver;
  const dst = destination.driver;
  const destCerts = exportPlatformCerts(destination);
  const srcCerts = exportPlatformCerts(source);

  // 1. SEND_START on the source, to the destination's PDH.
  const sessionPage = source.frames.allocate();
  const start = src.call(SevCommand.SEND_START, SendStartBuffer, {
    handle: vm.handle,
    pdhCertPaddr: BigInt(source.stageBytes(destCerts.pdh)),
    pdhCertLength: SEV_CERT_SIZE,
    platCertsPaddr: BigInt(source.stageBytes(destCerts.chain)),
    platCertsLength: destCerts.chain.length,
    amdCertsPaddr: BigInt(source.stageBytes(amdCerts)),
    amdCertsLength: amdCerts.length,
    sessionPaddr: BigInt(sessionPage),
    sessionLength: SessionBuffer.size,
  });
  const session = source.soc.hostMemory.read(sessionPage, SessionBuffer.size, false);

  // 2. RECEIVE_START on the destination with the source's PDH; same GPA layout, fresh frames.
  const ranges = [...vm.frames.keys()]
    .sort((a, b) => a - b)
    .map((gfn) => ({ gpa: gfn * PAGE_SIZE, bytes: PAGE_SIZE }));
  const handle = dst.call(SevCommand.RECEIVE_START, ReceiveStartBuffer, {
    handle: 0,
    policy: start.policy,
    pdhCertPaddr: BigInt(destination.stageBytes(srcCerts.pdh)),
    pdhCertLength: SEV_CERT_SIZE,
    sessionPaddr: BigInt(destination.stageBytes(session)),
    sessionLength: SessionBuffer.size,
  }).handle;
  const es = decodeSevPolicy(start.policy).encryptedState;
  const moved = destination.allocateVm(vm.name, destination.allocateAsid(es), true, start.policy, ranges);
  moved.handle = handle;
  dst.call(SevCommand.ACTIVATE, ActivateBuffer, { handle, asid: moved.asid });

  // 3. Pages: private ones through the PSPs, shared ones (the guest told us which) in the clear.
  const hdrPage = source.frames.allocate();
  const transPage = source.frames.allocate();
  const inHdr = destination.frames.allocate();
  const inTrans = destination.frames.allocate();
  let privatePages = 0;
  let sharedPages = 0;
  for (const gfn of vm.frames.keys()) {
    const gpa = gfn * PAGE_SIZE;
    if (vm.pageStates.get(gfn) === 'shared') {
      destination.soc.hostMemory.write(
        moved.spaOf(gpa),
        source.soc.hostMemory.read(vm.spaOf(gpa), PAGE_SIZE, false),
        false,
      );
      sharedPages++;
      continue;
    }
    src.call(SevCommand.SEND_UPDATE_DATA, TransportBuffer, {
      handle: vm.handle,
      hdrPaddr: BigInt(hdrPage),
      hdrLength: PacketHeader.size,
      guestPaddr: BigInt(vm.spaOf(gpa)),
      guestLength: PAGE_SIZE,
      transPaddr: BigInt(transPage),
      transLength: PAGE_SIZE,
    });
    // The "network": header and ciphertext only.
    destination.soc.hostMemory.write(
      inHdr,
      source.soc.hostMemory.read(hdrPage, PacketHeader.size, false),
      false,
    );
    destination.soc.hostMemory.write(inTrans, source.soc.hostMemory.read(transPage, PAGE_SIZE, false), false);
    dst.call(SevCommand.RECEIVE_UPDATE_DATA, TransportBuffer, {
      handle,
      hdrPaddr: BigInt(inHdr),
      hdrLength: PacketHeader.size,
      guestPaddr: BigInt(moved.spaOf(gpa)),
      guestLength: PAGE_SIZE,
      transPaddr: BigInt(inTrans),
      transLength: PAGE_SIZE,
    });
    privatePages++;
  }
  for (const [gfn, state] of vm.pageStates) moved.pageStates.set(gfn, state);
  moved.sharedRegion = vm.sharedRegion;

  // 4. Finish both sides; the vCPU (its VMCB registers and in-flight state) moves over.
  src.call(SevCommand.SEND_FINISH, HandleBuffer, { handle: vm.handle });
  dst.call(SevCommand.RECEIVE_FINISH, HandleBuffer, { handle });
  const softwareState = source.soc.exportVcpu(source.soc.paging.withCBit(vm.vmcb));
  const save = source.readVmcbSave(vm);
  destination.prepareVmcbFromSave(moved, save);
  destination.soc.importVcpu(destination.soc.paging.withCBit(moved.vmcb), softwareState);
  // The source's copy is gone: its context is decommissioned and its frames scrubbed and freed.
  source.destroyVm(vm);
  for (const spa of vm.frames.values()) {
    source.soc.hostMemory.write(spa, Buffer.alloc(PAGE_SIZE), false);
    source.soc.hostMemory.clflush(spa);
    source.frames.release(spa);
  }
  return { vm: moved, privatePages, sharedPages };
}
