// SNP firmware behaviours with no direct test elsewhere, checked against AMD's firmware source (ASPFW
// fw/psp_bl_uapps/sev_uapp/src/sev_mcmd.c snp_mcmd_*, cpuid_lookup.c, sev_plat.c) and sev-reference
// §7.3–7.11: MSG_KEY_REQ derivation and refusals, SNP_CONFIG / SNP_COMMIT / REPORTED_TCB, ID blocks at
// SNP_LAUNCH_FINISH, the CPUID page check, and the guest/page lifecycle. The test speaks for the guest
// with VMPCKs regenerated from the seed (as snp-key-secrecy.test.ts does) and recomputes derived keys
// and VCEKs from the seeded chip secret; status codes are literal values from sev-reference §2.3.
// Each test states ASPFW's behaviour; ten of them first found the model departing from it (since fixed).
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Decoded,
  type FieldSpecs,
  type SnpCpuidEntry,
  type StructLayout,
  SNP_CONFIG_FLAG,
  SNP_LAUNCH_FINISH_FLAG,
  SevCommand,
  SnpActivateBuffer,
  SnpCommitBuffer,
  SnpConfigBuffer,
  SnpGctxBuffer,
  SnpGuestStatus,
  SnpGuestStatusBuffer,
  SnpLaunchFinishBuffer,
  SnpLaunchStartBuffer,
  SnpLaunchUpdateBuffer,
  SnpMsgType,
  SnpPageReclaimBuffer,
  SnpPageType,
  SnpPlatformStatus,
  SnpPlatformStatusBuffer,
  VCPU_TYPES,
  cpuidSignature,
  decodeSnpCpuidPage,
  decodeSnpKeyResponse,
  decodeSnpReportResponse,
  encodeSnpCpuidPage,
  encodeSnpIdBlock,
  encodeSnpKeyRequest,
  encodeSnpLaunchUpdatePageInfo,
  encodeSnpReportRequest,
  encodeSnpVmplPerms,
  encodeTcb,
  openSnpGuestMessage,
  parseOvmfFooter,
  sealSnpGuestMessage,
  signIdBlock,
} from '../src/abi/index.js';
import { Drbg, MEMORY_KEY_MATERIAL_BYTES, ecdsaP384Verify, sevKdf } from '../src/crypto/index.js';
import { SnpAttestationAgent } from '../src/guest/snp-attestation-agent.js';
import { Hypervisor, PspCommandError } from '../src/host/index.js';
import {
  type SnpVm,
  forwardGuestRequest,
  initSnpPlatform,
  launchSnpFirmware,
  snpPlatformIdentity,
} from '../src/host/snp-launch.js';
import { computeLaunchDigest } from '../src/owner/launch-digest.js';
import { chipSecret } from '../src/psp/chip-fuses.js';
import { type Platform, createPlatform } from '../src/psp/platform.js';
import { vcekHashStick, vcekPublicKey } from '../src/psp/vcek.js';
import { PAGE_SIZE, rmpPageState } from '../src/soc/index.js';

const OVMF = readFileSync(new URL('../../shared/testdata/ovmf/OVMF.fd', import.meta.url));
/** The real Milan report in testdata: REPORTED_TCB (0x180) is bootloader 3, TEE 0, SNP 8, microcode 115. */
const MILAN_REPORT = readFileSync(
  new URL('../../shared/testdata/snp-reports/milan-v2.report.bin', import.meta.url),
);
const MILAN_TCB = MILAN_REPORT.readBigUInt64LE(0x180);
/** An older TCB: every SPL below MILAN_TCB's. */
const OLDER_TCB = encodeTcb({ layout: 'milan-genoa', bootloader: 2, tee: 0, snp: 6, microcode: 100 });
/** CPUID Fn0000_0001 EAX of the Milan part the model is (family 19h, model 01h, stepping 1). */
const MILAN_FMS = 0x00a00f11;
const POLICY = 0x30000n;
const DRAM = 256 * 1024 * 1024;
/** Pages of the guest's low RAM (never assigned in the RMP) the test, speaking for the guest, uses. */
const REQUEST_GPA = 0x10_4000;
const RESPONSE_GPA = 0x10_5000;

/** Firmware status codes (sev-reference §2.3). */
const S = {
  SUCCESS: 0x00,
  INVALID_PLATFORM_STATE: 0x01,
  INVALID_CONFIG: 0x03,
  POLICY_FAILURE: 0x07,
  BAD_SIGNATURE: 0x0a,
  BAD_MEASUREMENT: 0x0b,
  INVALID_GUEST: 0x10,
  INVALID_PARAM: 0x16,
  INVALID_PAGE_STATE: 0x1a,
  INVALID_PAGE_OWNER: 0x1c,
  INVALID_KEY: 0x27,
} as const;
/** SNP guest states (sev-reference §7.3). */
const GUEST = { INIT: 0, LAUNCH: 1, RUNNING: 2 } as const;
/** GUEST_FIELD_SELECT bits (sev-reference §7.10). */
const GFS = { POLICY: 1n, IMAGE_ID: 2n, FAMILY_ID: 4n, MEASUREMENT: 8n, GUEST_SVN: 16n, TCB: 32n } as const;

const footer = parseOvmfFooter(OVMF);
function sectionGpa(name: string): number {
  const s = (footer.sevMetadata?.sections ?? []).find((x) => x.typeName === name);
  if (s === undefined) throw new Error(`OVMF.fd has no ${name} section`);
  return s.gpa;
}
/** The owner-side launch digest of OVMF.fd with `vcpus` EPYC-Milan vCPUs (sev-reference §7.5). */
function ownerDigest(vcpus: number): Buffer {
  return computeLaunchDigest({ mode: 'snp', ovmf: OVMF, vcpus, vcpuType: 'EPYC-Milan', guestFeatures: 0x1n })
    .digest;
}
const LD1 = ownerDigest(1);
const LD2 = ownerDigest(2);
const sha384 = (b: Uint8Array): Buffer => createHash('sha384').update(b).digest();
const p384 = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;

// ---- the world: a seeded platform, its guests and their regenerated VMPCKs ---------------------------

interface Guest {
  readonly snp: SnpVm;
  readonly vmpck: readonly Buffer[];
  /** The last MSG_SEQNO used per VMPCK (the firmware wants count + 1). */
  readonly seqno: bigint[];
}

interface LaunchOptions {
  vcpus?: number;
  hostData?: Buffer;
  idBlock?: { block: Buffer; auth: Buffer; authorKey: boolean };
}

class World {
  readonly platform: Platform;
  readonly hv: Hypervisor;
  readonly chip: Buffer;
  /** The PSP's key DRBG, replayed: the SME key at boot, then a VEK and VMPCK0..3 per SNP_LAUNCH_START. */
  readonly #keyStream: Drbg;
  #launches = 0;

  constructor(readonly seed: string) {
    this.platform = createPlatform({ product: 'milan', seed, dramBytes: DRAM });
    this.hv = new Hypervisor(this.platform);
    initSnpPlatform(this.hv);
    this.chip = chipSecret(seed, undefined);
    this.#keyStream = Drbg.fromSeed(seed, 'psp-key-rng');
    this.#keyStream.generate(MEMORY_KEY_MATERIAL_BYTES);
  }

  /** The VMPCKs the next SNP_LAUNCH_START draws (call once per LAUNCH_START, in order): VEK, VMPCK0..3, VMRK. */
  launchKeys(): Buffer[] {
    this.#keyStream.generate(MEMORY_KEY_MATERIAL_BYTES);
    const vmpcks = [0, 1, 2, 3].map(() => this.#keyStream.generate(32));
    this.#keyStream.generate(32);
    return vmpcks;
  }

  /** OVMF.fd launched as launchSnpFirmware does; keys are drawn even if LAUNCH_FINISH fails. */
  launch(o: LaunchOptions = {}): Guest {
    const agent = new SnpAttestationAgent(OVMF, {
      paging: this.platform.soc.paging,
      secretsGpa: sectionGpa('SNP_SECRETS'),
      pageTableGpa: sectionGpa('SNP_SEC_MEM'),
      sharedGpa: 0x10_0000,
      reportData: Buffer.alloc(64),
    });
    let snp: SnpVm;
    try {
      snp = launchSnpFirmware(this.hv, {
        name: `guest-${this.#launches++}`,
        memoryBytes: 9 * 1024 * 1024,
        firmware: OVMF,
        software: agent,
        policy: POLICY,
        vcpus: o.vcpus ?? 1,
        vcpuSignature: cpuidSignature(VCPU_TYPES['EPYC-Milan']),
        guestFeatures: 0x1n,
        ...(o.hostData !== undefined ? { hostData: o.hostData } : {}),
        ...(o.idBlock !== undefined ? { idBlock: o.idBlock } : {}),
      });
    } catch (err) {
      this.launchKeys();
      throw err;
    }
    return { snp, vmpck: this.launchKeys(), seqno: [0n, 0n, 0n, 0n] };
  }

  /** As the guest: a sealed request under VMPCK `index`, relayed by the host; the opened answer. */
  request(g: Guest, index: number, type: number, payload: Buffer): Buffer {
    const vmpck = g.vmpck[index] as Buffer;
    const seqno = (g.seqno[index] as bigint) + 1n;
    const page = Buffer.alloc(PAGE_SIZE);
    sealSnpGuestMessage({ vmpck, vmpckIndex: index, seqno, type, version: 1, payload }).copy(page);
    const mem = this.hv.soc.hostMemory;
    mem.write(g.snp.vm.spaOf(REQUEST_GPA), page, false);
    expect(forwardGuestRequest(this.hv, g.snp, REQUEST_GPA, RESPONSE_GPA)).toBe(S.SUCCESS);
    g.seqno[index] = seqno + 1n;
    const opened = openSnpGuestMessage(mem.read(g.snp.vm.spaOf(RESPONSE_GPA), PAGE_SIZE, false), vmpck);
    if (!opened.ok) throw new Error('the answer does not open under the regenerated VMPCK');
    expect(opened.header.msgSeqno).toBe(seqno + 1n);
    return opened.payload;
  }

  /** MSG_KEY_REQ (defaults: VCEK root, KEY_SEL 0, no guest field, VMPL = the VMPCK index). */
  key(
    g: Guest,
    r: {
      vmpck?: number;
      root?: number;
      keySel?: number;
      gfs?: bigint;
      vmpl?: number;
      svn?: number;
      tcb?: bigint;
    },
  ): { status: number; derivedKey: Buffer } {
    const index = r.vmpck ?? 0;
    return decodeSnpKeyResponse(
      this.request(
        g,
        index,
        SnpMsgType.KEY_REQ,
        encodeSnpKeyRequest({
          rootKeySelect: r.root ?? 0,
          keySel: r.keySel ?? 0,
          guestFieldSelect: r.gfs ?? 0n,
          vmpl: r.vmpl ?? index,
          guestSvn: r.svn ?? 0,
          tcbVersion: r.tcb ?? 0n,
        }),
      ),
    );
  }

  /** MSG_REPORT_REQ under VMPCK0; the raw 0x4A0-byte report (status asserted SUCCESS). */
  report(g: Guest, keySel = 0): Buffer {
    const rsp = decodeSnpReportResponse(
      this.request(
        g,
        0,
        SnpMsgType.REPORT_REQ,
        encodeSnpReportRequest({ reportData: Buffer.alloc(64, 0x42), vmpl: 0, keySel }),
      ),
    );
    expect(rsp.status).toBe(S.SUCCESS);
    return rsp.report;
  }

  status<L extends FieldSpecs>(
    command: number,
    layout: StructLayout<L>,
    fields: Partial<Decoded<L>>,
  ): number {
    return this.hv.driver.raw(command, layout, fields).status;
  }

  platformStatus(): ReturnType<typeof SnpPlatformStatus.decode> {
    const d = this.hv.driver;
    d.call(SevCommand.SNP_PLATFORM_STATUS, SnpPlatformStatusBuffer, { statusPaddr: BigInt(d.dataPage) });
    return SnpPlatformStatus.decode(this.hv.soc.hostMemory.read(d.dataPage, SnpPlatformStatus.size, false));
  }

  /** SNP_GUEST_STATUS of the context page at `gctx`: the status, and the output if it succeeded. */
  guestStatus(gctx: number): { status: number; out?: ReturnType<typeof SnpGuestStatus.decode> } {
    const d = this.hv.driver;
    const status = d.raw(SevCommand.SNP_GUEST_STATUS, SnpGuestStatusBuffer, {
      gctxPaddr: BigInt(gctx),
      statusPaddr: BigInt(d.dataPage),
    }).status;
    if (status !== S.SUCCESS) return { status };
    return {
      status,
      out: SnpGuestStatus.decode(this.hv.soc.hostMemory.read(d.dataPage, SnpGuestStatus.size, false)),
    };
  }

  config(reportedTcb: bigint, flags = 0): number {
    return this.hv.driver.raw(SevCommand.SNP_CONFIG, SnpConfigBuffer, { reportedTcb, flags }).status;
  }

  /** Every page whose RMP entry reads CONTEXT (sev-reference §7.1). */
  contextPages(): Set<number> {
    return new Set(
      this.platform.soc
        .rmpAssignedPages()
        .filter((p) => rmpPageState(p.entry) === 'CONTEXT')
        .map((p) => p.spa),
    );
  }

  state(spa: number): string {
    return rmpPageState(this.platform.soc.rmpread(spa));
  }

  /**
   * A guest driven by hand to LAUNCH and ACTIVATE (RMPUPDATE of its context page to FIRMWARE, GCTX_CREATE,
   * LAUNCH_START, ACTIVATE), with 1 MiB of unassigned guest memory at GPA 0.
   */
  startGuest(
    name: string,
    activate = true,
  ): { gctx: number; asid: number; vmpck: Buffer[]; spaOf: (gpa: number) => number } {
    const hv = this.hv;
    const d = hv.driver;
    const asid = hv.allocateAsid(true);
    const vm = hv.allocateVm(name, asid, true, 0, [{ gpa: 0, bytes: 1024 * 1024 }]);
    const gctx = hv.frames.allocate();
    hv.soc.hostMemory.clflushRange(gctx, PAGE_SIZE);
    expect(hv.soc.rmpupdate(gctx, { gpa: 0, assigned: true, pageSize: '4K', immutable: true, asid: 0 })).toBe(
      0,
    );
    d.call(SevCommand.SNP_GCTX_CREATE, SnpGctxBuffer, { gctxPaddr: BigInt(gctx) });
    d.call(SevCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer, { gctxPaddr: BigInt(gctx), policy: POLICY });
    const vmpck = this.launchKeys();
    if (activate) d.call(SevCommand.SNP_ACTIVATE, SnpActivateBuffer, { gctxPaddr: BigInt(gctx), asid });
    return { gctx, asid, vmpck, spaOf: (gpa) => vm.spaOf(gpa) };
  }

  /** Host writes `contents` to `spa`, RMPUPDATEs it to PRE_GUEST (`asid`, `gpa`) and issues SNP_LAUNCH_UPDATE. */
  launchUpdate(
    u: { gctx: number; spa: number; gpa: number; asid: number; type: number; contents?: Buffer },
    perms = { vmpl1: 0, vmpl2: 0, vmpl3: 0 },
    preGuest = true,
  ): number {
    const mem = this.hv.soc.hostMemory;
    if (u.contents !== undefined) {
      mem.write(u.spa, u.contents, false);
      mem.clflushRange(u.spa, PAGE_SIZE);
    }
    if (preGuest)
      expect(
        this.hv.soc.rmpupdate(u.spa, {
          gpa: u.gpa,
          assigned: true,
          pageSize: '4K',
          immutable: true,
          asid: u.asid,
        }),
      ).toBe(0);
    return this.hv.driver.raw(SevCommand.SNP_LAUNCH_UPDATE, SnpLaunchUpdateBuffer, {
      gctxPaddr: BigInt(u.gctx),
      pageInfo: encodeSnpLaunchUpdatePageInfo({ pageSize: 0, pageType: u.type, imiPage: false }),
      pagePaddr: BigInt(u.spa),
      vmplPerms: encodeSnpVmplPerms(perms),
    }).status;
  }
}

/**
 * The key ASPFW derives for MSG_KEY_REQ (snp_mcmd_guest_request, case SNP_MSG_KEY_REQ):
 * nist_kdf(root, "gmsg-keyreq", MIX_DATA) with MIX_DATA the packed 0xA8-byte snp_mix_data_t (sev_rmp.h):
 * root/ID-block key selects, GFS, VMPL, HOST_DATA and the selected ID-block key digest always; the other
 * fields only when their GUEST_FIELD_SELECT bit is set (the caller passes only those). Built here from
 * the firmware source, not with the model's encoder.
 */
function aspfwKey(
  root: Buffer,
  m: {
    gfs: bigint;
    vmpl: number;
    idBlockKeySelect?: number;
    guestSvn?: number;
    tcb?: bigint;
    policy?: bigint;
    imageId?: Buffer;
    familyId?: Buffer;
    measurement?: Buffer;
    hostData?: Buffer;
    idBlockKey?: Buffer;
  },
): Buffer {
  const mix = Buffer.alloc(0xa8);
  mix.writeUInt32LE(((m.idBlockKeySelect ?? 0) << 1) >>> 0, 0x00);
  mix.writeBigUInt64LE(m.gfs, 0x08);
  mix.writeUInt32LE(m.vmpl, 0x10);
  mix.writeUInt32LE(m.guestSvn ?? 0, 0x14);
  mix.writeBigUInt64LE(m.tcb ?? 0n, 0x18);
  mix.writeBigUInt64LE(m.policy ?? 0n, 0x20);
  m.imageId?.copy(mix, 0x28, 0, 16);
  m.familyId?.copy(mix, 0x38, 0, 16);
  m.measurement?.copy(mix, 0x48, 0, 32);
  m.hostData?.copy(mix, 0x68, 0, 32);
  m.idBlockKey?.copy(mix, 0x88, 0, 32);
  return sevKdf(root, 32, 'gmsg-keyreq', mix);
}

/** Whether the VCEK of `tcb` signed `report` (ECDSA P-384/SHA-384 over [0, 0x2A0), R and S little-endian). */
function signedBy(w: World, report: Buffer, tcb: bigint): boolean {
  return ecdsaP384Verify(vcekPublicKey(w.chip, 'milan', tcb), 'sha384', report.subarray(0, 0x2a0), {
    r: report.subarray(0x2a0, 0x2e8),
    s: report.subarray(0x2e8, 0x330),
  });
}

/** An ID block for OVMF.fd with one vCPU, signed by a fresh ID key (and author key). */
function idBlockFor(o: { ld?: Buffer; policy?: bigint; authorKey?: boolean } = {}): {
  block: Buffer;
  auth: Buffer;
  authorKey: boolean;
  familyId: Buffer;
  imageId: Buffer;
  guestSvn: number;
} {
  const familyId = Buffer.alloc(16, 0xfa);
  const imageId = Buffer.alloc(16, 0x1d);
  const guestSvn = 7;
  const block = encodeSnpIdBlock({
    ld: o.ld ?? LD1,
    familyId,
    imageId,
    version: 1,
    guestSvn,
    policy: o.policy ?? POLICY,
  });
  const withAuthor = o.authorKey ?? true;
  const auth = signIdBlock(block, p384(), withAuthor ? p384() : undefined);
  return { block, auth, authorKey: withAuthor, familyId, imageId, guestSvn };
}

/** The ID_KEY (0x240) and AUTHOR_KEY (0x880) of an ID authentication page, 0x404 bytes each (§7.6). */
const idKeyOf = (auth: Buffer): Buffer => auth.subarray(0x240, 0x240 + 0x404);
const authorKeyOf = (auth: Buffer): Buffer => auth.subarray(0x880, 0x880 + 0x404);

// ---- 1. MSG_KEY_REQ -------------------------------------------------------------------------------------

describe('MSG_KEY_REQ (sev-reference §7.10; ASPFW snp_mcmd_guest_request, SNP_MSG_KEY_REQ)', () => {
  let w: World;
  let a: Guest;
  let b: Guest;
  let stick: Buffer;
  beforeAll(() => {
    w = new World('snp-fw-keys');
    a = w.launch();
    b = w.launch({ vcpus: 2 });
    // Before any SNP_CONFIG the root is the hash stick of the committed (= current, = reported) TCB.
    stick = vcekHashStick(w.chip, 'milan', w.platformStatus().reportedTcb);
  });

  it('the same request twice gives the same 32-byte key, KDF(VCEK hash stick, "gmsg-keyreq", MIX_DATA)', () => {
    const first = w.key(a, {});
    const second = w.key(a, {});
    expect(first.status).toBe(S.SUCCESS);
    expect(second.status).toBe(S.SUCCESS);
    expect(first.derivedKey).toHaveLength(32);
    expect(second.derivedKey).toEqual(first.derivedKey);
    expect(first.derivedKey).toEqual(aspfwKey(stick, { gfs: 0n, vmpl: 0 }));
  });

  it('VMPL, each GUEST_FIELD_SELECT bit (policy, measurement, TCB) and the TCB value give different keys', () => {
    const cases: [string, Parameters<World['key']>[1], Buffer][] = [
      ['VMPL 0', { vmpl: 0 }, aspfwKey(stick, { gfs: 0n, vmpl: 0 })],
      ['VMPL 1', { vmpl: 1 }, aspfwKey(stick, { gfs: 0n, vmpl: 1 })],
      ['VMPL 3', { vmpl: 3 }, aspfwKey(stick, { gfs: 0n, vmpl: 3 })],
      ['policy', { gfs: GFS.POLICY }, aspfwKey(stick, { gfs: GFS.POLICY, vmpl: 0, policy: POLICY })],
      [
        'measurement',
        { gfs: GFS.MEASUREMENT },
        aspfwKey(stick, { gfs: GFS.MEASUREMENT, vmpl: 0, measurement: LD1 }),
      ],
      [
        'TCB (committed)',
        { gfs: GFS.TCB, tcb: MILAN_TCB },
        aspfwKey(stick, { gfs: GFS.TCB, vmpl: 0, tcb: MILAN_TCB }),
      ],
      [
        'TCB (older): the root is the older TCB’s hash stick',
        { gfs: GFS.TCB, tcb: OLDER_TCB },
        aspfwKey(vcekHashStick(w.chip, 'milan', OLDER_TCB), { gfs: GFS.TCB, vmpl: 0, tcb: OLDER_TCB }),
      ],
      [
        'policy + measurement + TCB',
        { gfs: GFS.POLICY | GFS.MEASUREMENT | GFS.TCB, tcb: MILAN_TCB },
        aspfwKey(stick, {
          gfs: GFS.POLICY | GFS.MEASUREMENT | GFS.TCB,
          vmpl: 0,
          policy: POLICY,
          measurement: LD1,
          tcb: MILAN_TCB,
        }),
      ],
    ];
    const keys = cases.map(([name, req, expected]) => {
      const rsp = w.key(a, req);
      expect(rsp.status, name).toBe(S.SUCCESS);
      expect(rsp.derivedKey.toString('hex'), name).toBe(expected.toString('hex'));
      return rsp.derivedKey.toString('hex');
    });
    expect(new Set(keys).size).toBe(cases.length);
  });

  it('a TCB above the committed one, or with a reserved byte set, is INVALID_PARAM; unselected, it is ignored', () => {
    const above = [
      encodeTcb({ layout: 'milan-genoa', bootloader: 4, tee: 0, snp: 8, microcode: 115 }),
      encodeTcb({ layout: 'milan-genoa', bootloader: 3, tee: 1, snp: 8, microcode: 115 }),
      encodeTcb({ layout: 'milan-genoa', bootloader: 3, tee: 0, snp: 9, microcode: 115 }),
      encodeTcb({ layout: 'milan-genoa', bootloader: 3, tee: 0, snp: 8, microcode: 116 }),
      MILAN_TCB | (1n << 16n),
    ];
    for (const tcb of above) {
      const rsp = w.key(a, { gfs: GFS.TCB, tcb });
      expect(rsp.status, `TCB 0x${tcb.toString(16)}`).toBe(S.INVALID_PARAM);
      expect(rsp.derivedKey).toEqual(Buffer.alloc(32));
    }
    // ASPFW looks at TCB_VERSION only when GUEST_FIELD_SELECT bit 5 asks for it.
    const ignored = w.key(a, { gfs: 0n, tcb: MILAN_TCB + (1n << 56n) });
    expect(ignored.status).toBe(S.SUCCESS);
    expect(ignored.derivedKey).toEqual(aspfwKey(stick, { gfs: 0n, vmpl: 0 }));
  });

  it('a GUEST_SVN above the ID block’s (0 without one) and a GUEST_FIELD_SELECT bit beyond bit 5 are INVALID_PARAM', () => {
    expect(w.key(a, { gfs: GFS.GUEST_SVN, svn: 1 }).status).toBe(S.INVALID_PARAM);
    expect(w.key(a, { gfs: GFS.GUEST_SVN, svn: 0 }).status).toBe(S.SUCCESS);
    // ASPFW SNP_GUEST_FIELD_ALL is bits 0-5 (LAUNCH_MIT_VECTOR, bit 6, is a newer ABI's).
    expect(w.key(a, { gfs: 1n << 6n }).status).toBe(S.INVALID_PARAM);
  });

  it('a VMPL below the VMPCK index is INVALID_PARAM; the key does not depend on which VMPCK asked', () => {
    expect(w.key(a, { vmpck: 1, vmpl: 0 }).status).toBe(S.INVALID_PARAM);
    expect(w.key(a, { vmpck: 3, vmpl: 2 }).status).toBe(S.INVALID_PARAM);
    const viaVmpck1 = w.key(a, { vmpck: 1, vmpl: 1 });
    const viaVmpck0 = w.key(a, { vmpck: 0, vmpl: 1 });
    expect(viaVmpck1.status).toBe(S.SUCCESS);
    expect(viaVmpck1.derivedKey).toEqual(viaVmpck0.derivedKey);
    expect(viaVmpck1.derivedKey).toEqual(aspfwKey(stick, { gfs: 0n, vmpl: 1 }));
  });

  it('KEY_SEL 2 (VLEK only, none loaded) and 3 (reserved) are INVALID_KEY; KEY_SEL 1 is the VCEK as KEY_SEL 0 is', () => {
    expect(w.key(a, { keySel: 2 }).status).toBe(S.INVALID_KEY);
    expect(w.key(a, { keySel: 3 }).status).toBe(S.INVALID_KEY);
    const vcekOnly = w.key(a, { keySel: 1 });
    expect(vcekOnly.status).toBe(S.SUCCESS);
    expect(vcekOnly.derivedKey).toEqual(aspfwKey(stick, { gfs: 0n, vmpl: 0 }));
  });

  // ASPFW sev_mcmd.c snp_mcmd_launch_start draws gctx->vmrk with sev_hal_trng for every guest (not only
  // for migration agents; sev-reference §7.3 "TRNG generates OEK, VMPCK0..3, VMRK"), and the KEY_REQ
  // case derives from it when ROOT_KEY_SELECT is 1 (`key = &gctx->vmrk[0]`), with no MA check: the
  // answer is SUCCESS and a key unrelated to the VCEK's.
  it('ROOT_KEY_SELECT 1 derives from the guest’s VMRK (ASPFW: SUCCESS, a key other than the VCEK one)', () => {
    const vmrk = w.key(a, { root: 1 });
    expect(vmrk.status).toBe(S.SUCCESS);
    expect(vmrk.derivedKey).not.toEqual(Buffer.alloc(32));
    expect(vmrk.derivedKey).not.toEqual(aspfwKey(stick, { gfs: 0n, vmpl: 0 }));
  });

  it('another guest (other measurement) gets another key when MEASUREMENT is selected, the same otherwise', () => {
    expect(LD2).not.toEqual(LD1);
    const measured = w.key(b, { gfs: GFS.MEASUREMENT });
    expect(measured.derivedKey).toEqual(aspfwKey(stick, { gfs: GFS.MEASUREMENT, vmpl: 0, measurement: LD2 }));
    expect(measured.derivedKey).not.toEqual(w.key(a, { gfs: GFS.MEASUREMENT }).derivedKey);
    // With no guest-specific field, and the same VMPL, TCB, HOST_DATA (zero) and no ID block, MIX_DATA is
    // the same for both guests (§7.10: unselected fields are zero) — the key is the chip's and the TCB's.
    for (const req of [{}, { vmpl: 2 }, { gfs: GFS.TCB, tcb: OLDER_TCB }, { gfs: GFS.POLICY }]) {
      const ka = w.key(a, req);
      const kb = w.key(b, req);
      expect(kb.status).toBe(S.SUCCESS);
      expect(
        kb.derivedKey,
        JSON.stringify(req, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}` : v)),
      ).toEqual(ka.derivedKey);
    }
  });

  // ASPFW snp_mcmd_guest_request (KEY_REQ) copies gctx->host_data into MIX_DATA unconditionally ("Always"
  // block, before the optional fields), so two guests that differ only in HOST_DATA get different keys
  // for the same request.
  it('HOST_DATA is always mixed in: a guest with other HOST_DATA gets another key (ASPFW)', () => {
    const hostData = Buffer.alloc(32, 0x77);
    const c = w.launch({ hostData });
    const kc = w.key(c, {});
    expect(kc.status).toBe(S.SUCCESS);
    expect(kc.derivedKey).toEqual(aspfwKey(stick, { gfs: 0n, vmpl: 0, hostData }));
    expect(kc.derivedKey).not.toEqual(w.key(a, {}).derivedKey);
  });

  // ASPFW sets MIX_DATA.IDBLOCK_KEY_SELECT to 2 (author key) when the guest was finished with AUTH_KEY_EN,
  // 1 (ID key) with an ID block alone, and always copies the first 32 bytes of that key's digest into
  // IDBLOCK_KEY.
  it('an ID-block guest’s keys mix in the author key digest, IMAGE_ID, FAMILY_ID and GUEST_SVN (ASPFW)', () => {
    const id = idBlockFor();
    const d = w.launch({ idBlock: { block: id.block, auth: id.auth, authorKey: true } });
    const authorDigest = sha384(authorKeyOf(id.auth));
    const gfs = GFS.IMAGE_ID | GFS.FAMILY_ID | GFS.GUEST_SVN;
    const kd = w.key(d, { gfs, svn: id.guestSvn });
    expect(kd.status).toBe(S.SUCCESS);
    expect(kd.derivedKey).toEqual(
      aspfwKey(stick, {
        gfs,
        vmpl: 0,
        idBlockKeySelect: 2,
        idBlockKey: authorDigest,
        imageId: id.imageId,
        familyId: id.familyId,
        guestSvn: id.guestSvn,
      }),
    );
    expect(w.key(d, {}).derivedKey).toEqual(
      aspfwKey(stick, { gfs: 0n, vmpl: 0, idBlockKeySelect: 2, idBlockKey: authorDigest }),
    );
  });

  it('an ID-block guest may ask for its GUEST_SVN or lower, not higher (INVALID_PARAM)', () => {
    const id = idBlockFor({ authorKey: false });
    const d = w.launch({ idBlock: { block: id.block, auth: id.auth, authorKey: false } });
    expect(w.key(d, { gfs: GFS.GUEST_SVN, svn: id.guestSvn }).status).toBe(S.SUCCESS);
    expect(w.key(d, { gfs: GFS.GUEST_SVN, svn: id.guestSvn - 1 }).status).toBe(S.SUCCESS);
    expect(w.key(d, { gfs: GFS.GUEST_SVN, svn: id.guestSvn + 1 }).status).toBe(S.INVALID_PARAM);
  });
});

// ---- 2. SNP_CONFIG, SNP_COMMIT, REPORTED_TCB ------------------------------------------------------------

describe('SNP_CONFIG / SNP_COMMIT / REPORTED_TCB (sev-reference §7.4, §7.8, §7.11; ASPFW snp_mcmd_config)', () => {
  let w: World;
  let a: Guest;
  beforeAll(() => {
    w = new World('snp-fw-config');
    a = w.launch();
  });

  it('SNP_PLATFORM_STATUS: INIT, RMP initialised, current TCB = reported TCB (no SNP_CONFIG yet), no masks', () => {
    const st = w.platformStatus();
    expect(st.state).toBe(1);
    expect(st.rmpFlags & 1).toBe(1);
    expect(st.currentTcb).toBe(MILAN_TCB);
    expect(st.reportedTcb).toBe(MILAN_TCB);
    expect(st.flags & 3).toBe(0);
    const report = w.report(a);
    expect(report.readBigUInt64LE(0x038)).toBe(MILAN_TCB); // CURRENT_TCB
    expect(report.readBigUInt64LE(0x180)).toBe(MILAN_TCB); // REPORTED_TCB
    expect(report.readBigUInt64LE(0x1e0)).toBe(MILAN_TCB); // COMMITTED_TCB
    expect(signedBy(w, report, MILAN_TCB)).toBe(true);
  });

  it('after SNP_CONFIG with an older TCB, reports carry it as REPORTED_TCB and verify only under its VCEK', () => {
    expect(w.config(OLDER_TCB)).toBe(S.SUCCESS);
    const st = w.platformStatus();
    expect(st.reportedTcb).toBe(OLDER_TCB);
    expect(st.currentTcb).toBe(MILAN_TCB);
    const report = w.report(a);
    expect(report.readBigUInt64LE(0x180)).toBe(OLDER_TCB);
    expect(report.readBigUInt64LE(0x038)).toBe(MILAN_TCB);
    expect(report.readBigUInt64LE(0x1e0)).toBe(MILAN_TCB);
    expect((report.readUInt32LE(0x048) >> 2) & 7).toBe(0); // SIGNING_KEY VCEK
    expect(signedBy(w, report, OLDER_TCB)).toBe(true);
    expect(signedBy(w, report, MILAN_TCB)).toBe(false);
    // A key for an explicit TCB is still the key of that TCB.
    const k = w.key(a, { gfs: GFS.TCB, tcb: OLDER_TCB });
    expect(k.derivedKey).toEqual(
      aspfwKey(vcekHashStick(w.chip, 'milan', OLDER_TCB), { gfs: GFS.TCB, vmpl: 0, tcb: OLDER_TCB }),
    );
  });

  // ASPFW snp_mcmd_config re-derives gpDram->perm.snp_identity.vcek_hash from the requested TCB
  // (vcek_hash_derive(..., &requested_tcb)); MSG_KEY_REQ without GUEST_FIELD_SELECT.TCB_VERSION derives
  // from that vcek_hash. So after SNP_CONFIG the default root is the REPORTED_TCB's hash stick.
  it('after SNP_CONFIG, a key without the TCB field is rooted in the reported TCB’s hash stick (ASPFW)', () => {
    expect(w.config(OLDER_TCB)).toBe(S.SUCCESS);
    expect(w.key(a, {}).derivedKey).toEqual(
      aspfwKey(vcekHashStick(w.chip, 'milan', OLDER_TCB), { gfs: 0n, vmpl: 0 }),
    );
  });

  it('SNP_CONFIG with a TCB above the current one is INVALID_PARAM and changes nothing (TCB, masks)', () => {
    expect(w.config(OLDER_TCB)).toBe(S.SUCCESS);
    const before = w.platformStatus();
    const above = encodeTcb({ layout: 'milan-genoa', bootloader: 3, tee: 0, snp: 8, microcode: 116 });
    expect(w.config(above, SNP_CONFIG_FLAG.MASK_CHIP_ID | SNP_CONFIG_FLAG.MASK_CHIP_KEY)).toBe(
      S.INVALID_PARAM,
    );
    expect(w.config(encodeTcb({ layout: 'milan-genoa', bootloader: 4, tee: 0, snp: 0, microcode: 0 }))).toBe(
      S.INVALID_PARAM,
    );
    expect(w.platformStatus()).toEqual(before);
    const report = w.report(a);
    expect(report.readBigUInt64LE(0x180)).toBe(OLDER_TCB);
    expect(report.subarray(0x1a0, 0x1e0)).not.toEqual(Buffer.alloc(64));
    expect(signedBy(w, report, OLDER_TCB)).toBe(true);
  });

  it('MASK_CHIP_ID zeroes CHIP_ID in the next report (otherwise GET_ID’s value); REPORTED_TCB 0 is the committed one', () => {
    expect(w.config(0n)).toBe(S.SUCCESS);
    const chipId = snpPlatformIdentity(w.hv).chipId;
    const plain = w.report(a);
    expect(plain.subarray(0x1a0, 0x1e0)).toEqual(chipId.subarray(0, 64));
    expect(w.config(0n, SNP_CONFIG_FLAG.MASK_CHIP_ID)).toBe(S.SUCCESS);
    const st = w.platformStatus();
    expect(st.flags & 3).toBe(1);
    expect(st.reportedTcb).toBe(MILAN_TCB);
    const masked = w.report(a);
    expect(masked.subarray(0x1a0, 0x1e0)).toEqual(Buffer.alloc(64));
    expect(masked.readBigUInt64LE(0x180)).toBe(MILAN_TCB);
    expect(signedBy(w, masked, MILAN_TCB)).toBe(true);
  });

  it('MASK_CHIP_KEY: reports are unsigned (MASK_CHIP_KEY bit, SIGNING_KEY 7, zero signature), keys INVALID_KEY', () => {
    expect(w.config(0n, SNP_CONFIG_FLAG.MASK_CHIP_KEY)).toBe(S.SUCCESS);
    expect(w.platformStatus().flags & 3).toBe(2);
    for (const keySel of [0, 1]) {
      const report = w.report(a, keySel);
      const signer = report.readUInt32LE(0x048);
      expect(signer & 2, `KEY_SEL ${keySel}`).toBe(2);
      expect((signer >> 2) & 7, `KEY_SEL ${keySel}`).toBe(7);
      expect(report.subarray(0x2a0, 0x4a0)).toEqual(Buffer.alloc(0x200));
      // Everything else is still there.
      expect(report.subarray(0x1a0, 0x1e0)).not.toEqual(Buffer.alloc(64));
      expect(report.subarray(0x090, 0x0c0)).toEqual(LD1);
    }
    expect(w.key(a, {}).status).toBe(S.INVALID_KEY);
    // SNP_CONFIG without the mask signs again.
    expect(w.config(0n)).toBe(S.SUCCESS);
    const signed = w.report(a);
    expect((signed.readUInt32LE(0x048) >> 1) & 0xf).toBe(0);
    expect(signedBy(w, signed, MILAN_TCB)).toBe(true);
  });

  it('SNP_COMMIT needs LENGTH = 4 (else INVALID_PARAM); COMMITTED_TCB then is the current TCB', () => {
    expect(w.status(SevCommand.SNP_COMMIT, SnpCommitBuffer, { length: 8 })).toBe(S.INVALID_PARAM);
    expect(w.status(SevCommand.SNP_COMMIT, SnpCommitBuffer, { length: 4 })).toBe(S.SUCCESS);
    const report = w.report(a);
    expect(report.readBigUInt64LE(0x1e0)).toBe(MILAN_TCB);
    expect(w.platformStatus().currentTcb).toBe(MILAN_TCB);
  });
});

// ---- 3. SNP_LAUNCH_FINISH with an ID block --------------------------------------------------------------

describe('SNP_LAUNCH_FINISH with an ID block (sev-reference §7.6; ASPFW snp_mcmd_launch_finish)', () => {
  let w: World;
  beforeAll(() => {
    w = new World('snp-fw-id-block');
  });

  /** Launches with `id`; on failure returns the status and the failed guest's context page. */
  function tryLaunch(id: { block: Buffer; auth: Buffer; authorKey: boolean }): {
    guest?: Guest;
    status: number;
    gctx: number;
  } {
    const before = w.contextPages();
    try {
      const guest = w.launch({ idBlock: id });
      return { guest, status: S.SUCCESS, gctx: guest.snp.gctx };
    } catch (err) {
      if (!(err instanceof PspCommandError)) throw err;
      expect(err.command).toBe(SevCommand.SNP_LAUNCH_FINISH);
      const created = [...w.contextPages()].filter((p) => !before.has(p));
      expect(created).toHaveLength(1);
      return { status: err.status, gctx: created[0] as number };
    }
  }

  it('with an author key: the report carries ID_KEY_DIGEST, AUTHOR_KEY_DIGEST, FAMILY_ID, IMAGE_ID, GUEST_SVN, AUTHOR_KEY_EN', () => {
    const id = idBlockFor();
    const { guest, status } = tryLaunch(id);
    expect(status).toBe(S.SUCCESS);
    const report = w.report(guest as Guest);
    expect(report.readUInt32LE(0x004)).toBe(id.guestSvn);
    expect(report.readBigUInt64LE(0x008)).toBe(POLICY);
    expect(report.subarray(0x010, 0x020)).toEqual(id.familyId);
    expect(report.subarray(0x020, 0x030)).toEqual(id.imageId);
    expect(report.readUInt32LE(0x048) & 1).toBe(1);
    expect(report.subarray(0x090, 0x0c0)).toEqual(LD1);
    expect(report.subarray(0x0e0, 0x110)).toEqual(sha384(idKeyOf(id.auth)));
    expect(report.subarray(0x110, 0x140)).toEqual(sha384(authorKeyOf(id.auth)));
    expect(idKeyOf(id.auth).readUInt32LE(0)).toBe(2); // CURVE P-384
    expect(signedBy(w, report, MILAN_TCB)).toBe(true);
  });

  it('without an author key: ID_KEY_DIGEST only, AUTHOR_KEY_DIGEST zero, AUTHOR_KEY_EN 0', () => {
    const id = idBlockFor({ authorKey: false });
    const { guest, status } = tryLaunch(id);
    expect(status).toBe(S.SUCCESS);
    const report = w.report(guest as Guest);
    expect(report.subarray(0x0e0, 0x110)).toEqual(sha384(idKeyOf(id.auth)));
    expect(report.subarray(0x110, 0x140)).toEqual(Buffer.alloc(48));
    expect(report.readUInt32LE(0x048) & 1).toBe(0);
    expect(report.readUInt32LE(0x004)).toBe(id.guestSvn);
  });

  it('failures leave the guest in LAUNCH (no state transition in ASPFW); a right ID block then finishes it', () => {
    const lied = idBlockFor({ ld: LD2 });
    const wrongPolicy = idBlockFor({ policy: POLICY | (1n << 19n) });
    const badBlockSig = idBlockFor();
    badBlockSig.block.writeUInt8(badBlockSig.block.readUInt8(0x30) ^ 1, 0x30); // FAMILY_ID, after signing
    const badAuthorSig = idBlockFor();
    badAuthorSig.auth.writeUInt8(badAuthorSig.auth.readUInt8(0x680) ^ 1, 0x680); // ID_KEY_SIG
    const cases: [string, typeof lied, number][] = [
      ['LD of another launch', lied, S.BAD_MEASUREMENT],
      ['another policy', wrongPolicy, S.POLICY_FAILURE],
      ['ID block signature', badBlockSig, S.BAD_SIGNATURE],
      ['ID key signature by the author key', badAuthorSig, S.BAD_SIGNATURE],
    ];
    for (const [name, id, expected] of cases) {
      const { status, gctx } = tryLaunch(id);
      expect(status, name).toBe(expected);
      const gs = w.guestStatus(gctx);
      expect(gs.status, name).toBe(S.SUCCESS);
      expect(gs.out?.state, name).toBe(GUEST.LAUNCH);
      expect(gs.out?.policy, name).toBe(POLICY);
      expect(gs.out?.asid, name).not.toBe(0);
    }
    // The last failed guest is finished with a good ID block: LAUNCH → RUNNING.
    const { gctx } = tryLaunch(idBlockFor({ ld: LD2 }));
    const good = idBlockFor();
    const d = w.hv.driver;
    expect(
      d.raw(SevCommand.SNP_LAUNCH_FINISH, SnpLaunchFinishBuffer, {
        gctxPaddr: BigInt(gctx),
        idBlockPaddr: BigInt(w.hv.stageBytes(good.block)),
        idAuthPaddr: BigInt(w.hv.stageBytes(good.auth)),
        flags: BigInt(SNP_LAUNCH_FINISH_FLAG.ID_BLOCK_EN | SNP_LAUNCH_FINISH_FLAG.AUTH_KEY_EN),
        hostData: Buffer.alloc(32),
      }).status,
    ).toBe(S.SUCCESS);
    expect(w.guestStatus(gctx).out?.state).toBe(GUEST.RUNNING);
  });

  // ASPFW snp_mcmd_launch_finish checks AUTH_KEY_EN only inside `if (lf->id_block_en)`; without an ID
  // block it just stores gctx->author_key_en = lf->auth_key_en and finishes.
  it('AUTH_KEY_EN without ID_BLOCK_EN is not checked: LAUNCH_FINISH succeeds (ASPFW)', () => {
    const g = w.startGuest('auth-key-only');
    expect(
      w.hv.driver.raw(SevCommand.SNP_LAUNCH_FINISH, SnpLaunchFinishBuffer, {
        gctxPaddr: BigInt(g.gctx),
        flags: BigInt(SNP_LAUNCH_FINISH_FLAG.AUTH_KEY_EN),
      }).status,
    ).toBe(S.SUCCESS);
  });
});

// ---- 4. The CPUID page check ----------------------------------------------------------------------------

describe('the CPUID page check (sev-reference §7.5; ASPFW snp_mcmd_launch_update, cpuid_lookup.c)', () => {
  let w: World;
  let g: ReturnType<World['startGuest']>;
  let nextGpa = 0x1000;
  beforeAll(() => {
    w = new World('snp-fw-cpuid');
    g = w.startGuest('cpuid');
  });

  const leaf1 = (eax: number, ebx = 0x0000_0800): SnpCpuidEntry => ({
    eaxIn: 1,
    ecxIn: 0,
    xcr0In: 0n,
    xssIn: 0n,
    eax,
    // EBX[15:8] CLFLUSH line size 8 (64 bytes), exact in ASPFW FN00000001_CUSTOM.
    ebx,
    ecx: 0,
    edx: 0,
  });
  /** Fn8000_001F as the CPU reports it to the host. */
  const memEnc = (patch: Partial<SnpCpuidEntry> = {}): SnpCpuidEntry => ({
    eaxIn: 0x8000_001f,
    ecxIn: 0,
    xcr0In: 0n,
    xssIn: 0n,
    ...w.hv.soc.cpuid8000001f(),
    ...patch,
  });
  /** A CPUID page at a fresh GPA; the status of its LAUNCH_UPDATE and the page as the host then reads it. */
  function submit(entries: SnpCpuidEntry[]): {
    status: number;
    spa: number;
    seen: Buffer;
    retry: () => number;
  } {
    const gpa = nextGpa;
    nextGpa += PAGE_SIZE;
    const spa = g.spaOf(gpa);
    const u = { gctx: g.gctx, spa, gpa, asid: g.asid, type: SnpPageType.CPUID };
    const status = w.launchUpdate({ ...u, contents: encodeSnpCpuidPage(entries) });
    w.hv.soc.hostMemory.clflushRange(spa, PAGE_SIZE);
    return {
      status,
      spa,
      seen: w.hv.soc.hostMemory.read(spa, PAGE_SIZE, false),
      retry: () => w.launchUpdate(u, undefined, false),
    };
  }

  it('the truthful table (leaf 1 = Milan’s FMS, Fn8000_001F = the CPU’s) launches: the page is GUEST_VALID, encrypted', () => {
    const entries = [leaf1(MILAN_FMS), memEnc()];
    const { status, spa, seen } = submit(entries);
    expect(status).toBe(S.SUCCESS);
    expect(w.state(spa)).toBe('GUEST_VALID');
    expect(seen).not.toEqual(encodeSnpCpuidPage(entries));
    expect(memEnc().ebx & 0x3f).toBe(51);
  });

  it('leaf 1 claiming a newer family (1Ah) is INVALID_PARAM; the page then holds the corrected table in plaintext', () => {
    const turin = 0x00b00f21; // family 1Ah, model 02h, stepping 1
    const entries = [leaf1(turin), memEnc()];
    const { status, spa, seen, retry } = submit(entries);
    expect(status).toBe(S.INVALID_PARAM);
    // Still PRE_GUEST: nothing was launched, the host may retry.
    expect(w.state(spa)).toBe('PRE_GUEST');
    const corrected = decodeSnpCpuidPage(seen);
    expect(corrected).toHaveLength(2);
    expect(corrected[0]).toMatchObject({ eaxIn: 1, ecxIn: 0, eax: MILAN_FMS, ebx: 0x800 });
    expect(corrected[1]).toEqual({ ...memEnc(), reserved: 0n });
    // The corrected page is what the firmware now accepts.
    expect(retry()).toBe(S.SUCCESS);
    expect(w.state(spa)).toBe('GUEST_VALID');
  });

  it('Fn8000_001F with a wrong C-bit position (47) is INVALID_PARAM; the corrected EBX[5:0] is 51 (0x33)', () => {
    const truth = memEnc();
    const { status, seen } = submit([memEnc({ ebx: (truth.ebx & ~0x3f) | 47 })]);
    expect(status).toBe(S.INVALID_PARAM);
    const corrected = decodeSnpCpuidPage(seen);
    expect(corrected).toHaveLength(1);
    expect((corrected[0] as SnpCpuidEntry).ebx & 0x3f).toBe(0x33);
    expect((corrected[0] as SnpCpuidEntry).ebx).toBe(truth.ebx);
  });

  // ASPFW FN00000001_CUSTOM checks EAX with compare_FMS, a "LessThan" rule: a family/model/stepping at or
  // below the real one passes. Claiming an older family (17h) is SUCCESS.
  it('leaf 1 claiming an older family (17h) is accepted (ASPFW: the FMS rule is less-or-equal)', () => {
    expect(submit([leaf1(0x00830f10), memEnc()]).status).toBe(S.SUCCESS);
  });

  // ASPFW FN8000001F_CUSTOM checks EAX as a bitmask: it fails only for bits outside FN8000001F_EAX_DEFAULT
  // or in FN8000001F_EAX_RESERVED, so a hypervisor may hide features, SNP (bit 4) included.
  it('Fn8000_001F hiding SNP (EAX bit 4 clear) is accepted (ASPFW: EAX is a bitmask rule)', () => {
    const truth = memEnc();
    expect(truth.eax & 0x10).toBe(0x10);
    expect(submit([leaf1(MILAN_FMS), memEnc({ eax: truth.eax & ~0x10 })]).status).toBe(S.SUCCESS);
  });

  it('Fn8000_001F claiming a reserved EAX bit (31) is INVALID_PARAM, and the bit is cleared in the page', () => {
    const truth = memEnc();
    const { status, seen } = submit([memEnc({ eax: (truth.eax | 0x8000_0000) >>> 0 })]);
    expect(status).toBe(S.INVALID_PARAM);
    expect((decodeSnpCpuidPage(seen)[0] as SnpCpuidEntry).eax).toBe(truth.eax);
  });

  // ASPFW FN00000001_CUSTOM: EBX[15:8] (CLFLUSH size) must be exactly 8, else it is corrected and the
  // page fails INVALID_PARAM.
  it('leaf 1 with a CLFLUSH size other than 8 in EBX[15:8] is INVALID_PARAM (ASPFW)', () => {
    const { status, seen } = submit([leaf1(MILAN_FMS, 0), memEnc()]);
    expect(status).toBe(S.INVALID_PARAM);
    expect((decodeSnpCpuidPage(seen)[0] as SnpCpuidEntry).ebx).toBe(0x800);
  });
});

// ---- 5. Lifecycle ---------------------------------------------------------------------------------------

describe('guest and page lifecycle (sev-reference §7.3; ASPFW snp_mcmd_*)', () => {
  let w: World;
  beforeAll(() => {
    w = new World('snp-fw-lifecycle');
  });

  it('SNP_GUEST_STATUS follows the guest: INIT, LAUNCH with its policy, its ASID once active, RUNNING', () => {
    const hv = w.hv;
    const d = hv.driver;
    const asid = hv.allocateAsid(true);
    hv.allocateVm('status', asid, true, 0, [{ gpa: 0, bytes: PAGE_SIZE }]);
    const gctx = hv.frames.allocate();
    hv.soc.hostMemory.clflushRange(gctx, PAGE_SIZE);
    expect(hv.soc.rmpupdate(gctx, { gpa: 0, assigned: true, pageSize: '4K', immutable: true, asid: 0 })).toBe(
      0,
    );
    expect(w.state(gctx)).toBe('FIRMWARE');
    d.call(SevCommand.SNP_GCTX_CREATE, SnpGctxBuffer, { gctxPaddr: BigInt(gctx) });
    expect(w.state(gctx)).toBe('CONTEXT');
    expect(w.guestStatus(gctx).out).toMatchObject({ policy: 0n, asid: 0, state: GUEST.INIT });
    d.call(SevCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer, { gctxPaddr: BigInt(gctx), policy: POLICY });
    w.launchKeys();
    expect(w.guestStatus(gctx).out).toMatchObject({ policy: POLICY, asid: 0, state: GUEST.LAUNCH });
    d.call(SevCommand.SNP_ACTIVATE, SnpActivateBuffer, { gctxPaddr: BigInt(gctx), asid });
    expect(w.guestStatus(gctx).out).toMatchObject({ policy: POLICY, asid, state: GUEST.LAUNCH });
    d.call(SevCommand.SNP_LAUNCH_FINISH, SnpLaunchFinishBuffer, { gctxPaddr: BigInt(gctx) });
    expect(w.guestStatus(gctx).out).toMatchObject({ policy: POLICY, asid, state: GUEST.RUNNING, vcekDis: 0 });
  });

  it('DECOMMISSION, then PAGE_RECLAIM (FIRMWARE → RECLAIM) and RMPUPDATE give the context page and the guest’s pages back', () => {
    const g = w.launch();
    const { gctx } = g.snp;
    const asid = g.snp.vm.asid;
    const d = w.hv.driver;
    const soc = w.platform.soc;
    // A live context page is neither reclaimable nor host-writable in the RMP.
    expect(w.status(SevCommand.SNP_PAGE_RECLAIM, SnpPageReclaimBuffer, { paddr: BigInt(gctx) })).toBe(
      S.INVALID_PAGE_STATE,
    );
    expect(soc.rmpupdate(gctx, { gpa: 0, assigned: false, pageSize: '4K', immutable: false, asid: 0 })).toBe(
      2,
    );
    // ACTIVATE of another guest with this ASID, which still owns RMP pages: INVALID_CONFIG.
    const other = w.startGuest('other', false);
    const reuse = (): number =>
      w.status(SevCommand.SNP_ACTIVATE, SnpActivateBuffer, { gctxPaddr: BigInt(other.gctx), asid });
    expect(reuse()).toBe(S.INVALID_CONFIG);

    d.call(SevCommand.SNP_DECOMMISSION, SnpGctxBuffer, { gctxPaddr: BigInt(gctx) });
    expect(w.state(gctx)).toBe('FIRMWARE');
    expect(w.guestStatus(gctx).status).toBe(S.INVALID_GUEST);
    d.call(SevCommand.SNP_PAGE_RECLAIM, SnpPageReclaimBuffer, { paddr: BigInt(gctx) });
    expect(w.state(gctx)).toBe('RECLAIM');
    expect(soc.rmpupdate(gctx, { gpa: 0, assigned: false, pageSize: '4K', immutable: false, asid: 0 })).toBe(
      0,
    );
    expect(w.state(gctx)).toBe('HYPERVISOR');

    // The decommissioned guest's pages still name its ASID, so the ASID is not yet reusable.
    expect(reuse()).toBe(S.INVALID_CONFIG);
    const pages = soc.rmpAssignedPages().filter((p) => p.entry.asid === asid);
    expect(pages.length).toBeGreaterThan(OVMF.length / PAGE_SIZE);
    for (const { spa } of pages) {
      expect(w.state(spa)).toBe('GUEST_VALID');
      expect(soc.rmpupdate(spa, { gpa: 0, assigned: false, pageSize: '4K', immutable: false, asid: 0 })).toBe(
        0,
      );
      expect(w.state(spa)).toBe('HYPERVISOR');
    }
    expect(soc.rmpAssignedPages().filter((p) => p.entry.asid === asid)).toEqual([]);
    soc.hostMemory.wbinvd();
    expect(w.hv.driver.simple(SevCommand.SNP_DF_FLUSH)).toBe(S.SUCCESS);
    expect(reuse()).toBe(S.SUCCESS);
    expect(w.guestStatus(other.gctx).out?.asid).toBe(asid);
  });

  it('ACTIVATE with the ASID of a live guest (it owns RMP pages) is INVALID_CONFIG', () => {
    const live = w.launch();
    const g = w.startGuest('second', false);
    expect(
      w.status(SevCommand.SNP_ACTIVATE, SnpActivateBuffer, {
        gctxPaddr: BigInt(g.gctx),
        asid: live.snp.vm.asid,
      }),
    ).toBe(S.INVALID_CONFIG);
  });

  it('LAUNCH_UPDATE of a page not in PRE_GUEST is INVALID_PAGE_STATE; of another ASID’s page INVALID_PAGE_OWNER', () => {
    const g = w.startGuest('update-checks');
    const soc = w.platform.soc;
    const normal = (gpa: number): { gctx: number; spa: number; gpa: number; asid: number; type: number } => ({
      gctx: g.gctx,
      spa: g.spaOf(gpa),
      gpa,
      asid: g.asid,
      type: SnpPageType.NORMAL,
    });
    // HYPERVISOR: never RMPUPDATEd.
    expect(w.launchUpdate(normal(0x1000), undefined, false)).toBe(S.INVALID_PAGE_STATE);
    // GUEST_INVALID: assigned to the guest but mutable.
    const spa2 = g.spaOf(0x2000);
    expect(
      soc.rmpupdate(spa2, { gpa: 0x2000, assigned: true, pageSize: '4K', immutable: false, asid: g.asid }),
    ).toBe(0);
    expect(w.state(spa2)).toBe('GUEST_INVALID');
    expect(w.launchUpdate(normal(0x2000), undefined, false)).toBe(S.INVALID_PAGE_STATE);
    // PRE_GUEST, but of another ASID.
    expect(w.launchUpdate({ ...normal(0x3000), asid: g.asid + 50 })).toBe(S.INVALID_PAGE_OWNER);
    expect(w.state(g.spaOf(0x3000))).toBe('PRE_GUEST');
    // And the right one works.
    expect(w.launchUpdate({ ...normal(0x4000), contents: Buffer.alloc(PAGE_SIZE, 0x90) })).toBe(S.SUCCESS);
    expect(w.state(g.spaOf(0x4000))).toBe('GUEST_VALID');
  });

  // ASPFW snp_mcmd_launch_update does not look at the VMPL permissions of a VMSA page: it hashes them into
  // PAGE_INFO, writes them to RMP quadword 1 and sets RMP.VMSA, for any page type.
  it('a VMSA page with lower-VMPL permissions is launched as given (ASPFW has no such check)', () => {
    const g = w.startGuest('vmsa-perms');
    const frame = w.hv.frames.allocate();
    const status = w.launchUpdate(
      {
        gctx: g.gctx,
        spa: frame,
        gpa: 0x1000,
        asid: g.asid,
        type: SnpPageType.VMSA,
        contents: Buffer.alloc(PAGE_SIZE),
      },
      { vmpl1: 0x1, vmpl2: 0, vmpl3: 0 },
    );
    expect(status).toBe(S.SUCCESS);
    expect(w.platform.soc.rmpread(frame)).toMatchObject({
      vmsa: true,
      vmplPerms: [expect.any(Number), 1, 0, 0],
    });
  });

  // ASPFW counts guests in snp_guest_count at SNP_LAUNCH_START (snp_mcmd_launch_start: snp_guest_count++)
  // and uncounts only launched ones at DECOMMISSION (mcmd_decommission_common: "Only count launched guests
  // in guest_count"); a context page alone is no guest.
  it('SNP_PLATFORM_STATUS GUEST_COUNT counts launched guests, not context pages (ASPFW)', () => {
    const hv = w.hv;
    const before = w.platformStatus().guestCount;
    const gctx = hv.frames.allocate();
    expect(hv.soc.rmpupdate(gctx, { gpa: 0, assigned: true, pageSize: '4K', immutable: true, asid: 0 })).toBe(
      0,
    );
    hv.driver.call(SevCommand.SNP_GCTX_CREATE, SnpGctxBuffer, { gctxPaddr: BigInt(gctx) });
    expect(w.platformStatus().guestCount).toBe(before);
    hv.driver.call(SevCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer, {
      gctxPaddr: BigInt(gctx),
      policy: POLICY,
    });
    w.launchKeys();
    expect(w.platformStatus().guestCount).toBe(before + 1);
  });

  it('SNP_INIT twice is INVALID_PLATFORM_STATE; SNP_INIT after the legacy INIT too (SNP first)', () => {
    expect(w.hv.driver.simple(SevCommand.SNP_INIT)).toBe(S.INVALID_PLATFORM_STATE);
    const platform = createPlatform({ product: 'milan', seed: 'snp-fw-legacy-first', dramBytes: DRAM });
    const hv = new Hypervisor(platform);
    hv.initPlatform();
    expect(hv.driver.simple(SevCommand.SNP_INIT)).toBe(S.INVALID_PLATFORM_STATE);
    expect(platform.psp.snpPlatformState).toBe(0);
  });
});
