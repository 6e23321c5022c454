// The SEV-SNP wire formats byte by byte: every offset checked against a buffer built by hand from
// sev-reference §7 / ASPFW, guest messages sealed and opened (and a known answer computed here with
// node:crypto), ID blocks signed and every rejection of SNP_LAUNCH_FINISH, and every real report
// re-encoded to its exact bytes.
import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  type ReservedCheckedLayout,
  type FieldSpecs,
  SNP_CPUID_COUNT_MAX,
  SNP_GUEST_MSG_MAX_PAYLOAD,
  SNP_ID_AUTH_SIZE,
  SNP_MIX_DATA_SIZE,
  SNP_POLICY_RESERVED_MASK_ASPFW,
  SNP_REPORT_RSP_SIZE,
  SNP_REPORT_SIGNED_LENGTH,
  SNP_SECRETS_PAGE_SIZE,
  SevCommand,
  SevStatus,
  SnpActivateBuffer,
  SnpCommitBuffer,
  SnpConfigBuffer,
  SnpDbgBuffer,
  SnpGctxBuffer,
  SnpGuestFieldSelect,
  SnpGuestRequestBuffer,
  SnpGuestState,
  SnpGuestStatus,
  SnpGuestStatusBuffer,
  SnpInitExBuffer,
  SnpLaunchFinishBuffer,
  SnpLaunchStartBuffer,
  SnpLaunchUpdateBuffer,
  SnpMsgType,
  SnpPageReclaimBuffer,
  SnpPlatformStatus,
  SnpPlatformStatusBuffer,
  SnpShutdownExBuffer,
  SnpVlekLoadBuffer,
  commandName,
  decodeSnpCpuidPage,
  decodeSnpGuestMessageHeader,
  decodeSnpIdAuth,
  decodeSnpIdBlock,
  decodeSnpKeyRequest,
  decodeSnpKeyResponse,
  decodeSnpLaunchUpdatePageInfo,
  decodeSnpPolicy,
  decodeSnpReport,
  decodeSnpReportRequest,
  decodeSnpReportResponse,
  decodeSnpSecretsPage,
  decodeSnpVmplPerms,
  encodeSnpCpuidPage,
  encodeSnpEcdsaPublicKey,
  encodeSnpIdBlock,
  encodeSnpKeyRequest,
  encodeSnpKeyResponse,
  encodeSnpLaunchUpdatePageInfo,
  encodeSnpMixData,
  encodeSnpPolicy,
  encodeSnpReport,
  encodeSnpReportRequest,
  encodeSnpReportResponse,
  encodeSnpSecretsPage,
  encodeSnpVmplPerms,
  openSnpGuestMessage,
  sealSnpGuestMessage,
  signIdBlock,
  snpCommandBufferLayout,
  snpEcdsaPublicKeyToKeyObject,
  snpGuestStateName,
  snpMsgTypeName,
  snpReportSignedBytes,
  validateSnpPolicy,
  verifyIdAuth,
  type SnpIdBlock,
} from '../src/abi/index.js';
import { ecdsaP384Sign, p384PrivateKeyFromScalar } from '../src/crypto/index.js';

const REPORTS = resolve(import.meta.dirname, '../../shared/testdata/snp-reports');
const REPORT_FILES = readdirSync(REPORTS).filter((f) => f.endsWith('.report.bin'));
const readReport = (name: string): Buffer => readFileSync(join(REPORTS, name));

/** A buffer of `size` bytes with little-endian integers written at the given offsets. */
function hand(size: number, writes: [number, 'u8' | 'u16' | 'u32' | 'u64', number | bigint][]): Buffer {
  const b = Buffer.alloc(size);
  for (const [at, type, v] of writes) {
    if (type === 'u8') b.writeUInt8(Number(v), at);
    else if (type === 'u16') b.writeUInt16LE(Number(v), at);
    else if (type === 'u32') b.writeUInt32LE(Number(v), at);
    else b.writeBigUInt64LE(BigInt(v), at);
  }
  return b;
}

const fill = (n: number, start: number): Buffer =>
  Buffer.from(Array.from({ length: n }, (_, i) => (start + i) & 0xff));

describe('SNP command IDs and states', () => {
  it('SNP IDs are those of sev-reference §2.2, next to the unchanged legacy IDs', () => {
    expect(SevCommand.SNP_INIT).toBe(0x81);
    expect(SevCommand.SNP_PLATFORM_STATUS).toBe(0x83);
    expect(SevCommand.SNP_INIT_EX).toBe(0x85);
    expect(SevCommand.SNP_DECOMMISSION).toBe(0x90);
    expect(SevCommand.SNP_GCTX_CREATE).toBe(0x93);
    expect(SevCommand.SNP_GUEST_REQUEST).toBe(0x94);
    expect(SevCommand.SNP_LAUNCH_START).toBe(0xa0);
    expect(SevCommand.SNP_LAUNCH_UPDATE).toBe(0xa1);
    expect(SevCommand.SNP_LAUNCH_FINISH).toBe(0xa2);
    expect(SevCommand.SNP_DBG_ENCRYPT).toBe(0xb1);
    expect(SevCommand.SNP_PAGE_RECLAIM).toBe(0xc7);
    expect(SevCommand.SNP_CONFIG).toBe(0xc9);
    expect(SevCommand.SNP_COMMIT).toBe(0xcb);
    expect(SevCommand.SNP_VLEK_LOAD).toBe(0xcd);
    expect(SevCommand.DBG_ENCRYPT).toBe(0x61);
    expect(SevCommand.LAUNCH_START).toBe(0x30);
    expect(commandName(0xa1)).toBe('SNP_LAUNCH_UPDATE (0xa1)');
    expect(new Set(Object.values(SevCommand)).size).toBe(Object.values(SevCommand).length);
  });

  it('SNP guest states INIT 0, LAUNCH 1, RUNNING 2', () => {
    expect(SnpGuestState).toEqual({ INIT: 0, LAUNCH: 1, RUNNING: 2 });
    expect(snpGuestStateName(2)).toBe('RUNNING');
    expect(snpGuestStateName(9)).toBe('UNKNOWN(9)');
  });
});

describe('SNP command buffers', () => {
  const ALL: [string, ReservedCheckedLayout<FieldSpecs>, number][] = [
    ['SNP_PLATFORM_STATUS', SnpPlatformStatusBuffer, 0x08],
    ['platform status output', SnpPlatformStatus, 0x20],
    ['SNP_INIT_EX', SnpInitExBuffer, 0x40],
    ['SNP_SHUTDOWN_EX', SnpShutdownExBuffer, 0x08],
    ['SNP_GCTX_CREATE', SnpGctxBuffer, 0x08],
    ['SNP_ACTIVATE', SnpActivateBuffer, 0x0c],
    ['SNP_GUEST_STATUS', SnpGuestStatusBuffer, 0x10],
    ['guest status output', SnpGuestStatus, 0x20],
    ['SNP_GUEST_REQUEST', SnpGuestRequestBuffer, 0x18],
    ['SNP_LAUNCH_START', SnpLaunchStartBuffer, 0x30],
    ['SNP_LAUNCH_UPDATE', SnpLaunchUpdateBuffer, 0x20],
    ['SNP_LAUNCH_FINISH', SnpLaunchFinishBuffer, 0x40],
    ['SNP_DBG_*', SnpDbgBuffer, 0x18],
    ['SNP_PAGE_RECLAIM', SnpPageReclaimBuffer, 0x08],
    ['SNP_CONFIG', SnpConfigBuffer, 0x40],
    ['SNP_COMMIT', SnpCommitBuffer, 0x04],
    ['SNP_VLEK_LOAD', SnpVlekLoadBuffer, 0x10],
  ];

  it.each(ALL)('%s is %i bytes', (_n, layout, size) => {
    expect(layout.size).toBe(size);
  });

  it.each(ALL)('%s: each reserved range is found, nothing else is', (_n, layout) => {
    expect(layout.reservedNonZero(Buffer.alloc(layout.size))).toBeUndefined();
    for (const r of layout.reserved) {
      const b = Buffer.alloc(layout.size);
      // the lowest reserved bit of the range
      const bit = r.mask === undefined ? 0 : r.mask.toString(2).split('').reverse().indexOf('1');
      b[r.offset + (bit >> 3)] = 1 << (bit & 7);
      expect(layout.reservedNonZero(b)?.field).toBe(r.name);
      expect(() => layout.decodeChecked(b)).toThrow(AbiDecodeError);
    }
    // bits outside every reserved range: set them all, no violation
    const reservedBits = new Set<number>();
    for (const r of layout.reserved)
      for (let i = 0; i < r.length * 8; i++)
        if (r.mask === undefined || ((r.mask >> BigInt(i)) & 1n) === 1n) reservedBits.add(r.offset * 8 + i);
    const free = Buffer.alloc(layout.size);
    for (let i = 0; i < layout.size * 8; i++)
      if (!reservedBits.has(i)) free[i >> 3] = (free[i >> 3] as number) | (1 << (i & 7));
    expect(layout.reservedNonZero(free)).toBeUndefined();
  });

  it('short buffers raise AbiDecodeError', () => {
    expect(() => SnpLaunchStartBuffer.reservedNonZero(Buffer.alloc(0x2f))).toThrow(AbiDecodeError);
    expect(() => SnpLaunchStartBuffer.decode(Buffer.alloc(0x2f))).toThrow(/gosvw at offset 0x20/);
  });

  it('SNP_LAUNCH_START at its offsets', () => {
    const b = hand(0x30, [
      [0x00, 'u64', 0x12345000n],
      [0x08, 'u64', 0x30000n],
      [0x10, 'u64', 0x6789a000n],
      [0x18, 'u32', 0x3],
      [0x1c, 'u32', 2_500_000],
    ]);
    fill(16, 0xa0).copy(b, 0x20);
    expect(SnpLaunchStartBuffer.decodeChecked(b)).toEqual({
      gctxPaddr: 0x12345000n,
      policy: 0x30000n,
      maGctxPaddr: 0x6789a000n,
      flags: 3,
      desiredTscFreq: 2_500_000,
      gosvw: fill(16, 0xa0),
    });
    b[0x18] = 0x4;
    expect(SnpLaunchStartBuffer.reservedNonZero(b)).toEqual({
      field: 'flags[31:2]',
      offset: 0x18,
      value: 4n,
    });
    b[0x18] = 0;
    b[0x10] = 0x01;
    expect(SnpLaunchStartBuffer.reservedNonZero(b)?.field).toBe('maGctxPaddr[11:0]');
    b[0x01] = 0x08; // bit 11 of GCTX_PADDR, lower offset: reported first
    expect(SnpLaunchStartBuffer.reservedNonZero(b)).toEqual({
      field: 'gctxPaddr[11:0]',
      offset: 0,
      value: 0x800n,
    });
  });

  it('SNP_LAUNCH_UPDATE packs PAGE_SIZE/PAGE_TYPE/IMI_PAGE and the VMPL1-3 perms', () => {
    expect(encodeSnpLaunchUpdatePageInfo({ pageSize: 1, pageType: 6, imiPage: true })).toBe(0b1_110_1);
    expect(encodeSnpLaunchUpdatePageInfo({ pageSize: 0, pageType: 2, imiPage: false })).toBe(0x4);
    expect(decodeSnpLaunchUpdatePageInfo(0x1d)).toEqual({ pageSize: 1, pageType: 6, imiPage: true });
    expect(() => encodeSnpLaunchUpdatePageInfo({ pageSize: 0, pageType: 8, imiPage: false })).toThrow(
      RangeError,
    );
    expect(encodeSnpVmplPerms({ vmpl1: 0x0f, vmpl2: 0x03, vmpl3: 0x01 })).toBe(0x01030f00);
    expect(decodeSnpVmplPerms(0x1f0703ff)).toEqual({ vmpl1: 0x03, vmpl2: 0x07, vmpl3: 0x1f });
    expect(() => encodeSnpVmplPerms({ vmpl1: 0x100, vmpl2: 0, vmpl3: 0 })).toThrow(RangeError);

    const b = hand(0x20, [
      [0x00, 'u64', 0x5000n],
      [0x08, 'u32', 0x03], // 2 MiB, NORMAL
      [0x10, 'u64', 0x200000n],
      [0x18, 'u32', 0x01030f00],
    ]);
    const f = SnpLaunchUpdateBuffer.decodeChecked(b);
    expect(f).toEqual({ gctxPaddr: 0x5000n, pageInfo: 3, pagePaddr: 0x200000n, vmplPerms: 0x01030f00 });
    expect(decodeSnpLaunchUpdatePageInfo(f.pageInfo)).toEqual({ pageSize: 1, pageType: 1, imiPage: false });
    for (const [at, value, field] of [
      [0x08, 0x20, 'pageInfo[31:5]'],
      [0x0e, 0x01, 'reserved0c'],
      [0x11, 0x01, 'pagePaddr[11:0]'],
      [0x18, 0x80, 'vmplPerms[7:0]'],
      [0x1f, 0x80, 'reserved1c'],
    ] as const) {
      const c = Buffer.from(b);
      c[at] = (c[at] as number) | value;
      expect(SnpLaunchUpdateBuffer.reservedNonZero(c)?.field).toBe(field);
    }
  });

  it('SNP_LAUNCH_FINISH at its offsets; only flag bits 63:3 and the GCTX page offset are reserved', () => {
    const b = hand(0x40, [
      [0x00, 'u64', 0x7000n],
      [0x08, 'u64', 0x8123n], // not page aligned: ASPFW does not check it
      [0x10, 'u64', 0x9000n],
      [0x18, 'u64', 0x7n],
    ]);
    fill(32, 0x40).copy(b, 0x20);
    expect(SnpLaunchFinishBuffer.decodeChecked(b)).toEqual({
      gctxPaddr: 0x7000n,
      idBlockPaddr: 0x8123n,
      idAuthPaddr: 0x9000n,
      flags: 7n,
      hostData: fill(32, 0x40),
    });
    b[0x1f] = 0x80;
    expect(SnpLaunchFinishBuffer.reservedNonZero(b)).toEqual({
      field: 'flags[63:3]',
      offset: 0x18,
      value: 1n << 63n,
    });
  });

  it('small buffers at their offsets', () => {
    expect(
      SnpActivateBuffer.decodeChecked(
        hand(0x0c, [
          [0, 'u64', 0x3000n],
          [8, 'u32', 17],
        ]),
      ),
    ).toEqual({
      gctxPaddr: 0x3000n,
      asid: 17,
    });
    expect(
      SnpGuestRequestBuffer.decodeChecked(
        hand(0x18, [
          [0, 'u64', 0x1000n],
          [8, 'u64', 0x2000n],
          [0x10, 'u64', 0x3000n],
        ]),
      ),
    ).toEqual({ gctxPaddr: 0x1000n, requestPaddr: 0x2000n, responsePaddr: 0x3000n });
    expect(
      SnpDbgBuffer.reservedNonZero(
        hand(0x18, [
          [0, 'u64', 0x1000n],
          [8, 'u64', 0x2000n],
          [0x10, 'u64', 0x3001n],
        ]),
      )?.field,
    ).toBe('dstPaddr[11:0]');
    expect(SnpPageReclaimBuffer.reservedNonZero(hand(8, [[0, 'u64', 0x200001n]]))).toBeUndefined();
    expect(SnpPageReclaimBuffer.reservedNonZero(hand(8, [[0, 'u64', 0x200002n]]))?.field).toBe('paddr[11:1]');
    expect(
      SnpConfigBuffer.decodeChecked(
        hand(0x40, [
          [0, 'u64', 0x7300000000000003n],
          [8, 'u32', 3],
        ]),
      ),
    ).toEqual({
      reportedTcb: 0x7300000000000003n,
      flags: 3,
    });
    expect(SnpConfigBuffer.reservedNonZero(hand(0x40, [[0x3f, 'u8', 1]]))?.field).toBe('reserved0c');
    expect(SnpCommitBuffer.decode(hand(4, [[0, 'u32', 4]]))).toEqual({ length: 4 });
    expect(
      SnpInitExBuffer.decodeChecked(
        hand(0x40, [
          [0, 'u32', 3],
          [8, 'u64', 0x4000n],
        ]),
      ),
    ).toEqual({
      flags: 3,
      listPaddr: 0x4000n,
    });
    expect(SnpInitExBuffer.reservedNonZero(hand(0x40, [[0x10, 'u16', 100]]))?.field).toBe('reserved10');
    expect(
      SnpVlekLoadBuffer.decodeChecked(
        hand(0x10, [
          [0, 'u32', 0x10],
          [4, 'u8', 0],
          [8, 'u64', 0x5000n],
        ]),
      ),
    ).toEqual({ length: 0x10, vlekWrappedVersion: 0, vlekWrappedPaddr: 0x5000n });
    expect(SnpGctxBuffer.reservedNonZero(hand(8, [[0, 'u64', 0xfffn]]))?.value).toBe(0xfffn);
    expect(
      SnpGuestStatusBuffer.decodeChecked(
        hand(0x10, [
          [0, 'u64', 0x1000n],
          [8, 'u64', 0x2040n],
        ]),
      ),
    ).toEqual({
      gctxPaddr: 0x1000n,
      statusPaddr: 0x2040n,
    });
  });

  it('SNP_PLATFORM_STATUS and SNP_GUEST_STATUS outputs at their offsets', () => {
    const ps = hand(0x20, [
      [0x00, 'u8', 1],
      [0x01, 'u8', 55],
      [0x02, 'u8', 1],
      [0x03, 'u8', 1],
      [0x04, 'u32', 25],
      [0x08, 'u32', 0b1101],
      [0x0c, 'u32', 3],
      [0x10, 'u64', 0xd315000000000004n],
      [0x18, 'u64', 0xd315000000000003n],
    ]);
    expect(SnpPlatformStatus.decodeChecked(ps)).toEqual({
      apiMajor: 1,
      apiMinor: 55,
      state: 1,
      rmpFlags: 1,
      buildId: 25,
      flags: 0b1101,
      guestCount: 3,
      currentTcb: 0xd315000000000004n,
      reportedTcb: 0xd315000000000003n,
    });
    expect(SnpPlatformStatus.reservedNonZero(hand(0x20, [[0x03, 'u8', 2]]))?.field).toBe('rmpFlags[7:1]');
    const gs = hand(0x20, [
      [0x00, 'u64', 0x30000n],
      [0x08, 'u32', 5],
      [0x0c, 'u8', 2],
      [0x10, 'u32', 1],
    ]);
    expect(SnpGuestStatus.decodeChecked(gs)).toEqual({ policy: 0x30000n, asid: 5, state: 2, vcekDis: 1 });
    expect(SnpGuestStatus.reservedNonZero(hand(0x20, [[0x1f, 'u8', 1]]))?.field).toBe('reserved14');
  });

  it('layouts by command ID', () => {
    expect(snpCommandBufferLayout(SevCommand.SNP_LAUNCH_UPDATE)).toBe(SnpLaunchUpdateBuffer);
    expect(snpCommandBufferLayout(SevCommand.SNP_DECOMMISSION)).toBe(SnpGctxBuffer);
    expect(snpCommandBufferLayout(SevCommand.SNP_GCTX_CREATE)).toBe(SnpGctxBuffer);
    expect(snpCommandBufferLayout(SevCommand.SNP_DBG_DECRYPT)).toBe(SnpDbgBuffer);
    expect(snpCommandBufferLayout(SevCommand.SNP_INIT)).toBeUndefined();
  });
});

describe('SNP guest policy', () => {
  const FW = { apiMajor: 1, apiMinor: 55 };

  it('decodes and encodes every field', () => {
    expect(decodeSnpPolicy(0x30000n)).toMatchObject({
      abiMajor: 0,
      abiMinor: 0,
      smt: true,
      reservedMbo: true,
    });
    const all = encodeSnpPolicy({
      abiMajor: 1,
      abiMinor: 51,
      smt: true,
      migrateMa: true,
      debug: true,
      singleSocket: true,
      cxlAllow: true,
      memAes256Xts: true,
      raplDis: true,
      ciphertextHiding: true,
      pageSwapDisable: true,
    });
    expect(all).toBe(0x3ff0133n);
    expect(decodeSnpPolicy(all)).toEqual({
      abiMinor: 51,
      abiMajor: 1,
      smt: true,
      reservedMbo: true,
      migrateMa: true,
      debug: true,
      singleSocket: true,
      cxlAllow: true,
      memAes256Xts: true,
      raplDis: true,
      ciphertextHiding: true,
      pageSwapDisable: true,
      reserved: 0n,
    });
    expect(encodeSnpPolicy({})).toBe(1n << 17n);
    expect(encodeSnpPolicy({ reservedMbo: false, debug: true })).toBe(1n << 19n);
    expect(encodeSnpPolicy(decodeSnpPolicy(0xf00000000030000n))).toBe(0xf00000000030000n);
    expect(() => encodeSnpPolicy({ abiMajor: 256 })).toThrow(RangeError);
    expect(() => encodeSnpPolicy({ reserved: 1n })).toThrow(RangeError);
  });

  it('reports the first rule broken, in the firmware order', () => {
    expect(validateSnpPolicy(0x30000n, FW)).toEqual({ ok: true });
    expect(validateSnpPolicy(0x10000n, FW)).toMatchObject({
      ok: false,
      status: 'POLICY_FAILURE',
      rule: 'RESERVED_MBO',
    });
    expect(validateSnpPolicy(0x30000n | (1n << 26n), FW)).toMatchObject({ rule: 'RESERVED_BITS' });
    expect(validateSnpPolicy(0x30000n | (1n << 63n), FW)).toMatchObject({ rule: 'RESERVED_BITS' });
    // bit 21 (CXL_ALLOW) is fine for a current ABI but reserved in the Genoa 1.55 source
    expect(validateSnpPolicy(0x230000n, FW)).toEqual({ ok: true });
    expect(
      validateSnpPolicy(0x230000n, { ...FW, reservedMask: SNP_POLICY_RESERVED_MASK_ASPFW }),
    ).toMatchObject({
      rule: 'RESERVED_BITS',
    });
    expect(validateSnpPolicy(0x30137n, FW)).toEqual({ ok: true }); // ABI 1.55
    expect(validateSnpPolicy(0x30138n, FW)).toMatchObject({ rule: 'ABI_VERSION' }); // 1.56
    expect(validateSnpPolicy(0x30200n, FW)).toMatchObject({ rule: 'ABI_VERSION' }); // 2.0
    expect(validateSnpPolicy(0x300ffn, FW)).toEqual({ ok: true }); // 0.255
    expect(validateSnpPolicy(0x20000n, { ...FW, smtEnabled: true })).toMatchObject({ rule: 'SMT' });
    expect(validateSnpPolicy(0x20000n, { ...FW, smtEnabled: false })).toEqual({ ok: true });
    expect(validateSnpPolicy(0x30000n, { ...FW, maEnabled: true })).toMatchObject({ rule: 'MIGRATE_MA' });
    expect(validateSnpPolicy(0x70000n, { ...FW, maEnabled: true })).toEqual({ ok: true });
    // several broken: the first in order wins
    expect(validateSnpPolicy(0x10200n | (1n << 40n), { ...FW, smtEnabled: true })).toMatchObject({
      rule: 'RESERVED_MBO',
    });
    expect(validateSnpPolicy(0x20200n | (1n << 40n), FW)).toMatchObject({ rule: 'ABI_VERSION' });
    expect(validateSnpPolicy(-1n, FW)).toMatchObject({ rule: 'RESERVED_BITS' });
    expect(validateSnpPolicy(1n << 64n, FW)).toMatchObject({ rule: 'RESERVED_BITS' });
  });
});

describe('SNP guest messages', () => {
  const vmpck = fill(32, 0x11);
  const payload = fill(0x60, 0x80);

  it('the header at its offsets (sev-reference §7.10)', () => {
    const b = hand(0x60 + 0x20, [
      [0x20, 'u64', 0x1122334455667788n],
      [0x30, 'u8', 1],
      [0x31, 'u8', 1],
      [0x32, 'u16', 0x60],
      [0x34, 'u8', 5],
      [0x35, 'u8', 1],
      [0x36, 'u16', 0x20],
      [0x3c, 'u8', 3],
    ]);
    fill(16, 0xe0).copy(b, 0);
    expect(decodeSnpGuestMessageHeader(b, { request: true })).toEqual({
      authTag: fill(16, 0xe0),
      msgSeqno: 0x1122334455667788n,
      algo: 1,
      hdrVersion: 1,
      hdrSize: 0x60,
      msgType: SnpMsgType.REPORT_REQ,
      msgVersion: 1,
      msgSize: 0x20,
      msgVmpck: 3,
    });
    expect(snpMsgTypeName(6)).toBe('REPORT_RSP (0x06)');
    expect(SnpMsgType.TSC_INFO_REQ).toBe(0x11);
  });

  it('a known answer computed here with node:crypto: IV le64(seqno) ‖ 0⁴, AAD header[0x30..0x60)', () => {
    const seqno = 0x0102030405060708n;
    const sealed = sealSnpGuestMessage({ vmpck, vmpckIndex: 2, seqno, type: 3, version: 1, payload });
    const header = hand(0x60, [
      [0x20, 'u64', seqno],
      [0x30, 'u8', 1],
      [0x31, 'u8', 1],
      [0x32, 'u16', 0x60],
      [0x34, 'u8', 3],
      [0x35, 'u8', 1],
      [0x36, 'u16', payload.length],
      [0x3c, 'u8', 2],
    ]);
    const iv = Buffer.from([8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0]);
    const c = createCipheriv('aes-256-gcm', vmpck, iv);
    c.setAAD(header.subarray(0x30, 0x60));
    const ct = Buffer.concat([c.update(payload), c.final()]);
    c.getAuthTag().copy(header, 0);
    expect(sealed.toString('hex')).toBe(Buffer.concat([header, ct]).toString('hex'));
    expect(sealed.subarray(16, 32).equals(Buffer.alloc(16))).toBe(true);
  });

  it('seal/open round trip, also from a whole 4 KiB page', () => {
    const sealed = sealSnpGuestMessage({ vmpck, vmpckIndex: 0, seqno: 1n, type: 5, version: 1, payload });
    const opened = openSnpGuestMessage(sealed, vmpck, { request: true });
    expect(opened.ok).toBe(true);
    if (opened.ok) expect(opened.payload.equals(payload)).toBe(true);
    const page = Buffer.alloc(0x1000, 0xcc);
    sealed.copy(page);
    const fromPage = openSnpGuestMessage(page, vmpck);
    expect(fromPage.ok && fromPage.payload.equals(payload)).toBe(true);
    const max = sealSnpGuestMessage({
      vmpck,
      vmpckIndex: 1,
      seqno: (1n << 64n) - 1n,
      type: 1,
      version: 1,
      payload: Buffer.alloc(SNP_GUEST_MSG_MAX_PAYLOAD, 7),
    });
    expect(max.length).toBe(0x1000);
    expect(openSnpGuestMessage(max, vmpck).ok).toBe(true);
  });

  it('every AAD byte, the tag, the ciphertext, the sequence number and the key are authenticated', () => {
    const sealed = sealSnpGuestMessage({ vmpck, vmpckIndex: 1, seqno: 41n, type: 3, version: 1, payload });
    const rejected = (m: Buffer, key: Buffer = vmpck): boolean => {
      try {
        return !openSnpGuestMessage(m, key).ok;
      } catch (err) {
        // ALGO, HDR_VERSION, HDR_SIZE, MSG_SIZE and MSG_VMPCK changes are refused before decryption
        expect(err).toBeInstanceOf(AbiDecodeError);
        return true;
      }
    };
    const flip = (i: number, mask = 0x01): Buffer => {
      const m = Buffer.from(sealed);
      m[i] = (m[i] as number) ^ mask;
      return m;
    };
    for (let i = 0x30; i < 0x60; i++)
      for (const mask of [0x01, 0x80])
        expect(rejected(flip(i, mask)), `AAD byte 0x${i.toString(16)}`).toBe(true);
    for (let i = 0; i < 16; i++) expect(rejected(flip(i)), `tag byte ${i}`).toBe(true);
    for (let i = 0x60; i < sealed.length; i++) expect(rejected(flip(i)), `ciphertext byte ${i}`).toBe(true);
    for (let i = 0x20; i < 0x28; i++) expect(rejected(flip(i)), `seqno byte ${i}`).toBe(true);
    expect(rejected(sealed, fill(32, 0x12))).toBe(true);
    // a message sealed under another sequence number (wrong IV) whose header claims this one
    const other = sealSnpGuestMessage({ vmpck, vmpckIndex: 1, seqno: 43n, type: 3, version: 1, payload });
    other.writeBigUInt64LE(41n, 0x20);
    expect(openSnpGuestMessage(other, vmpck)).toMatchObject({ ok: false, reason: 'AUTHENTICATION_FAILED' });
    // bytes 16..31 and 0x28..0x2F are covered by nothing, in ASPFW and Linux alike
    expect(openSnpGuestMessage(flip(20), vmpck).ok).toBe(true);
    expect(openSnpGuestMessage(flip(0x2a), vmpck).ok).toBe(true);
  });

  it('malformed headers name field and offset', () => {
    const sealed = sealSnpGuestMessage({ vmpck, vmpckIndex: 0, seqno: 1n, type: 5, version: 1, payload });
    const edit = (at: number, v: number, width: 1 | 2 = 1): Buffer => {
      const m = Buffer.from(sealed);
      if (width === 1) m[at] = v;
      else m.writeUInt16LE(v, at);
      return m;
    };
    expect(() => decodeSnpGuestMessageHeader(edit(0x30, 2))).toThrow(/field algo at offset 0x30/);
    expect(() => decodeSnpGuestMessageHeader(edit(0x30, 0))).toThrow(AbiDecodeError);
    expect(() => decodeSnpGuestMessageHeader(edit(0x31, 2))).toThrow(/field hdrVersion at offset 0x31/);
    expect(() => decodeSnpGuestMessageHeader(edit(0x32, 0x50, 2))).toThrow(/field hdrSize at offset 0x32/);
    expect(() => decodeSnpGuestMessageHeader(edit(0x3c, 4))).toThrow(/field msgVmpck at offset 0x3c/);
    const page = Buffer.alloc(0x1000);
    sealed.copy(page);
    page.writeUInt16LE(0xfa1, 0x36);
    expect(() => decodeSnpGuestMessageHeader(page)).toThrow(/msgSize at offset 0x36.*one 4 KiB page/);
    page.writeUInt16LE(0xfa0, 0x36);
    expect(decodeSnpGuestMessageHeader(page).msgSize).toBe(0xfa0);
    expect(() => decodeSnpGuestMessageHeader(edit(0x36, 0x70, 2))).toThrow(
      /msgSize at offset 0x36.*buffer holds/,
    );
    expect(() => decodeSnpGuestMessageHeader(edit(0x36, 0x18, 2), { request: true })).toThrow(
      /multiple of 16/,
    );
    expect(() => decodeSnpGuestMessageHeader(edit(0x36, 0, 2), { request: true })).toThrow(/multiple of 16/);
    expect(decodeSnpGuestMessageHeader(edit(0x36, 0x18, 2)).msgSize).toBe(0x18);
    expect(() => decodeSnpGuestMessageHeader(sealed.subarray(0, 0x5f))).toThrow(AbiDecodeError);
    expect(() => openSnpGuestMessage(edit(0x31, 0), vmpck)).toThrow(AbiDecodeError);
  });

  it('sealing refuses what cannot be a message', () => {
    const base = { vmpck, vmpckIndex: 0, seqno: 1n, type: 5, version: 1, payload };
    expect(() => sealSnpGuestMessage({ ...base, vmpck: Buffer.alloc(16) })).toThrow(RangeError);
    expect(() => sealSnpGuestMessage({ ...base, vmpckIndex: 4 })).toThrow(RangeError);
    expect(() => sealSnpGuestMessage({ ...base, seqno: -1n })).toThrow(RangeError);
    expect(() => sealSnpGuestMessage({ ...base, seqno: 1n << 64n })).toThrow(RangeError);
    expect(() => sealSnpGuestMessage({ ...base, type: 256 })).toThrow(RangeError);
    expect(() => sealSnpGuestMessage({ ...base, payload: Buffer.alloc(0xfa1) })).toThrow(RangeError);
    expect(() => openSnpGuestMessage(sealSnpGuestMessage(base), Buffer.alloc(16))).toThrow(RangeError);
  });

  it('MSG_REPORT_REQ / MSG_REPORT_RSP at their offsets', () => {
    const req = hand(0x60, [
      [0x40, 'u32', 1],
      [0x44, 'u32', 2],
    ]);
    fill(64, 0).copy(req, 0);
    expect(decodeSnpReportRequest(req)).toEqual({ reportData: fill(64, 0), vmpl: 1, keySel: 2 });
    expect(encodeSnpReportRequest({ reportData: fill(64, 0), vmpl: 1, keySel: 2 }).equals(req)).toBe(true);
    req[0x44] = 0x06;
    expect(decodeSnpReportRequest(req).reservedNonZero).toBe('keySel[31:2]');
    req[0x44] = 0x02;
    req[0x5f] = 1;
    expect(decodeSnpReportRequest(req).reservedNonZero).toBe('reserved48');
    expect(() => decodeSnpReportRequest(Buffer.alloc(0x50))).toThrow(AbiDecodeError);

    const report = readReport('milan-v2.report.bin');
    const rsp = hand(SNP_REPORT_RSP_SIZE, [
      [0, 'u32', 0],
      [4, 'u32', 0x4a0],
    ]);
    report.copy(rsp, 0x20);
    expect(SNP_REPORT_RSP_SIZE).toBe(0x4c0);
    expect(encodeSnpReportResponse({ status: 0, report }).equals(rsp)).toBe(true);
    expect(decodeSnpReportResponse(rsp)).toEqual({ status: 0, reportSize: 0x4a0, report });
    const failed = encodeSnpReportResponse({ status: SevStatus.INVALID_KEY });
    expect(decodeSnpReportResponse(failed)).toMatchObject({ status: 0x27, reportSize: 0x4a0 });
    rsp.writeUInt32LE(0x400, 4);
    expect(() => decodeSnpReportResponse(rsp)).toThrow(/reportSize at offset 0x4/);
    rsp.writeUInt32LE(0x4a0, 4);
    rsp[0x10] = 1;
    expect(() => decodeSnpReportResponse(rsp)).toThrow(/reserved08 at offset 0x10/);
  });

  it('MSG_KEY_REQ (0x20 and 0x28) and MSG_KEY_RSP at their offsets', () => {
    const req = hand(0x28, [
      [0x00, 'u32', 0b101], // VMRK, KEY_SEL 2
      [0x08, 'u64', 0x3fn],
      [0x10, 'u32', 1],
      [0x14, 'u32', 7],
      [0x18, 'u64', 0x0800000000000003n],
      [0x20, 'u64', 0x55n],
    ]);
    const decoded = {
      rootKeySelect: 1,
      keySel: 2,
      guestFieldSelect: 0x3fn,
      vmpl: 1,
      guestSvn: 7,
      tcbVersion: 0x0800000000000003n,
    };
    expect(decodeSnpKeyRequest(req.subarray(0, 0x20))).toEqual(decoded);
    expect(decodeSnpKeyRequest(req)).toEqual({ ...decoded, launchMitVector: 0x55n });
    expect(encodeSnpKeyRequest(decoded).equals(req.subarray(0, 0x20))).toBe(true);
    expect(encodeSnpKeyRequest({ ...decoded, launchMitVector: 0x55n }).equals(req)).toBe(true);
    req[0] = 0b1101;
    expect(decodeSnpKeyRequest(req).reservedNonZero).toBe('flags[31:3]');
    expect(() => decodeSnpKeyRequest(Buffer.alloc(0x1f))).toThrow(AbiDecodeError);

    const key = fill(32, 0x33);
    const rsp = hand(0x40, [[0, 'u32', 0]]);
    key.copy(rsp, 0x20);
    expect(encodeSnpKeyResponse({ status: 0, derivedKey: key }).equals(rsp)).toBe(true);
    expect(decodeSnpKeyResponse(rsp)).toEqual({ status: 0, derivedKey: key });
    rsp[4] = 1;
    expect(() => decodeSnpKeyResponse(rsp)).toThrow(/reserved04 at offset 0x4/);
  });

  it('MIX_DATA: 168 bytes, unselected fields zero, digests cut to 32 bytes', () => {
    const input = {
      rootKeySelect: 0,
      idBlockKeySelect: 2,
      guestFieldSelect: 0x3fn,
      vmpl: 2,
      guestSvn: 9,
      tcbVersion: 0x0800000000000003n,
      guestPolicy: 0x30000n,
      imageId: fill(16, 0x10),
      familyId: fill(16, 0x20),
      measurement: fill(48, 0x30),
      hostData: fill(32, 0x60),
      idBlockKeyDigest: fill(48, 0x90),
    };
    const want = hand(SNP_MIX_DATA_SIZE, [
      [0x00, 'u32', 0b100],
      [0x08, 'u64', 0x3fn],
      [0x10, 'u32', 2],
      [0x14, 'u32', 9],
      [0x18, 'u64', 0x0800000000000003n],
      [0x20, 'u64', 0x30000n],
    ]);
    fill(16, 0x10).copy(want, 0x28);
    fill(16, 0x20).copy(want, 0x38);
    fill(32, 0x30).copy(want, 0x48);
    fill(32, 0x60).copy(want, 0x68);
    fill(32, 0x90).copy(want, 0x88);
    expect(SNP_MIX_DATA_SIZE).toBe(168);
    expect(encodeSnpMixData(input).toString('hex')).toBe(want.toString('hex'));

    const none = encodeSnpMixData({ ...input, guestFieldSelect: 0n, idBlockKeySelect: 0, rootKeySelect: 1 });
    const wantNone = hand(SNP_MIX_DATA_SIZE, [
      [0x00, 'u32', 1],
      [0x10, 'u32', 2],
    ]);
    fill(32, 0x60).copy(wantNone, 0x68);
    expect(none.toString('hex')).toBe(wantNone.toString('hex'));
    const onlyMeasurement = encodeSnpMixData({ ...input, guestFieldSelect: SnpGuestFieldSelect.MEASUREMENT });
    expect(onlyMeasurement.subarray(0x48, 0x68).equals(fill(32, 0x30))).toBe(true);
    expect(onlyMeasurement.subarray(0x14, 0x48).equals(Buffer.alloc(0x34))).toBe(true);
  });

  it('a report request from the guest and the response from the PSP, end to end', () => {
    const keys = [fill(32, 0), fill(32, 0x20), fill(32, 0x40), fill(32, 0x60)];
    const reportData = createHash('sha512').update('nonce').digest();
    const request = sealSnpGuestMessage({
      vmpck: keys[0] as Buffer,
      vmpckIndex: 0,
      seqno: 1n,
      type: SnpMsgType.REPORT_REQ,
      version: 1,
      payload: encodeSnpReportRequest({ reportData, vmpl: 0, keySel: 0 }),
    });
    // the PSP: decode the header, pick the key it names, open, answer with seqno + 1
    const hdr = decodeSnpGuestMessageHeader(request, { request: true });
    const opened = openSnpGuestMessage(request, keys[hdr.msgVmpck] as Buffer, { request: true });
    expect(opened.ok).toBe(true);
    if (!opened.ok) return;
    expect(decodeSnpReportRequest(opened.payload).reportData.equals(reportData)).toBe(true);
    const report = readReport('genoa-v3.report.bin');
    const response = sealSnpGuestMessage({
      vmpck: keys[hdr.msgVmpck] as Buffer,
      vmpckIndex: hdr.msgVmpck,
      seqno: hdr.msgSeqno + 1n,
      type: SnpMsgType.REPORT_RSP,
      version: 1,
      payload: encodeSnpReportResponse({ status: 0, report }),
    });
    // the guest
    const back = openSnpGuestMessage(response, keys[0] as Buffer);
    expect(back.ok && back.header.msgSeqno).toBe(2n);
    if (!back.ok) return;
    expect(back.header.msgType).toBe(SnpMsgType.REPORT_RSP);
    expect(decodeSnpReport(decodeSnpReportResponse(back.payload).report).raw.equals(report)).toBe(true);
  });
});

describe('SNP secrets page', () => {
  const input = {
    imiEn: true,
    fms: 0x00a10f11,
    gosvw: fill(16, 0x01),
    vmpck: [fill(32, 0x20), fill(32, 0x40), fill(32, 0x60), fill(32, 0x80)] as const,
    vmsaTweakBitmap: fill(64, 0xc0),
  };

  it('the PSP encoding at the offsets of §7.9, OS area and SVSM fields zero', () => {
    const page = encodeSnpSecretsPage(input);
    const want = hand(SNP_SECRETS_PAGE_SIZE, [
      [0x000, 'u32', 3],
      [0x004, 'u32', 1],
      [0x008, 'u32', 0x00a10f11],
      [0x160, 'u32', 200],
    ]);
    fill(16, 0x01).copy(want, 0x10);
    fill(32, 0x20).copy(want, 0x20);
    fill(32, 0x40).copy(want, 0x40);
    fill(32, 0x60).copy(want, 0x60);
    fill(32, 0x80).copy(want, 0x80);
    fill(64, 0xc0).copy(want, 0x100);
    expect(page.equals(want)).toBe(true);
    expect(
      encodeSnpSecretsPage({ ...input, version: 2, tscFactor: 0, vmsaTweakBitmap: undefined, imiEn: false })
        .subarray(0, 8)
        .equals(hand(8, [[0, 'u32', 2]])),
    ).toBe(true);
    expect(() =>
      encodeSnpSecretsPage({ ...input, vmpck: [Buffer.alloc(31), ...input.vmpck.slice(1)] as never }),
    ).toThrow(RangeError);
  });

  it('the guest decoding, including the OS area it owns', () => {
    const page = encodeSnpSecretsPage(input);
    page.writeUInt32LE(5, 0xa0); // MSG_SEQNO_0
    page.writeBigUInt64LE(0x9000n, 0xb0); // AP_JUMP_TABLE_PA
    page.writeBigUInt64LE(0x8000000n, 0x140); // SVSM_BASE
    page[0x15c] = 2;
    const s = decodeSnpSecretsPage(page);
    expect(s).toMatchObject({ version: 3, imiEn: true, fms: 0x00a10f11, tscFactor: 200 });
    expect(s.vmpck.map((k) => k[0])).toEqual([0x20, 0x40, 0x60, 0x80]);
    expect(s.gosvw.equals(input.gosvw)).toBe(true);
    expect(s.vmsaTweakBitmap.equals(input.vmsaTweakBitmap)).toBe(true);
    expect(s.osArea.msgSeqno0).toBe(5);
    expect(s.osArea.apJumpTablePa).toBe(0x9000n);
    expect(s.svsm).toEqual({ base: 0x8000000n, size: 0n, caa: 0n, maxVersion: 0, guestVmpl: 2 });
  });

  it('rejects what the firmware never writes', () => {
    const page = encodeSnpSecretsPage(input);
    const edit = (at: number, v: number): Buffer => {
      const p = Buffer.from(page);
      p[at] = v;
      return p;
    };
    expect(() => decodeSnpSecretsPage(page.subarray(0, 0xfff))).toThrow(AbiDecodeError);
    expect(() => decodeSnpSecretsPage(edit(0, 4))).toThrow(/field version at offset 0x0/);
    expect(() => decodeSnpSecretsPage(edit(4, 3))).toThrow(/field imiEn at offset 0x4/);
    expect(() => decodeSnpSecretsPage(edit(0xc, 1))).toThrow(/reserved00c at offset 0xc/);
    expect(() => decodeSnpSecretsPage(edit(0x800, 1))).toThrow(/reserved164 at offset 0x800/);
    expect(decodeSnpSecretsPage(edit(0, 2)).version).toBe(2);
  });
});

describe('SNP CPUID page', () => {
  const entries = [
    {
      eaxIn: 0x1,
      ecxIn: 0,
      xcr0In: 0n,
      xssIn: 0n,
      eax: 0xa10f11,
      ebx: 0x800,
      ecx: 0xfeda3203,
      edx: 0x178bfbff,
    },
    { eaxIn: 0xd, ecxIn: 1, xcr0In: 0x7n, xssIn: 0x800n, eax: 0xf, ebx: 0x3c8, ecx: 0, edx: 0 },
  ];

  it('at the offsets of §7.9, zero-padded to a page', () => {
    const page = encodeSnpCpuidPage(entries);
    const want = hand(0x1000, [
      [0x00, 'u32', 2],
      [0x10, 'u32', 0x1],
      [0x28, 'u32', 0xa10f11],
      [0x2c, 'u32', 0x800],
      [0x30, 'u32', 0xfeda3203],
      [0x34, 'u32', 0x178bfbff],
      [0x40, 'u32', 0xd],
      [0x44, 'u32', 1],
      [0x48, 'u64', 7n],
      [0x50, 'u64', 0x800n],
      [0x58, 'u32', 0xf],
      [0x5c, 'u32', 0x3c8],
    ]);
    expect(page.equals(want)).toBe(true);
    expect(decodeSnpCpuidPage(page)).toEqual(entries.map((e) => ({ ...e, reserved: 0n })));
    expect(decodeSnpCpuidPage(page.subarray(0, 0x70))).toHaveLength(2);
  });

  it('typed errors: more than 64 entries, reserved header fields, short buffers', () => {
    const full = Array.from({ length: SNP_CPUID_COUNT_MAX }, (_, i) => ({
      ...(entries[0] as (typeof entries)[0]),
      eaxIn: i,
    }));
    expect(decodeSnpCpuidPage(encodeSnpCpuidPage(full))).toHaveLength(64);
    expect(() => encodeSnpCpuidPage([...full, entries[1] as (typeof entries)[1]])).toThrow(
      /field count at offset 0x0/,
    );
    const page = encodeSnpCpuidPage(entries);
    const bad = (at: number, v: number): Buffer => {
      const p = Buffer.from(page);
      p.writeUInt32LE(v, at);
      return p;
    };
    expect(() => decodeSnpCpuidPage(bad(0, 65))).toThrow(/field count at offset 0x0/);
    expect(() => decodeSnpCpuidPage(bad(4, 1))).toThrow(/reserved04 at offset 0x4/);
    expect(() => decodeSnpCpuidPage(bad(0xc, 1))).toThrow(/reserved08 at offset 0x8/);
    expect(() => decodeSnpCpuidPage(page.subarray(0, 0x6f))).toThrow(/field entries/);
    expect(() => decodeSnpCpuidPage(page.subarray(0, 0xf))).toThrow(AbiDecodeError);
    // an entry's reserved qword is not checked by the firmware: decoded as found
    expect(decodeSnpCpuidPage(bad(0x38, 9))[0]?.reserved).toBe(9n);
  });
});

describe('SNP ID block and ID authentication', () => {
  const idKey = p384PrivateKeyFromScalar(0x1d0bn);
  const authorKey = p384PrivateKeyFromScalar(0xa07a0bn);
  const otherKey = p384PrivateKeyFromScalar(0x07e4n);
  const block: SnpIdBlock = {
    ld: fill(48, 0x10),
    familyId: fill(16, 0x40),
    imageId: fill(16, 0x50),
    version: 1,
    guestSvn: 3,
    policy: 0x30000n,
  };
  const blockBytes = encodeSnpIdBlock(block);
  const withAuthor = signIdBlock(block, idKey, authorKey);
  const withoutAuthor = signIdBlock(blockBytes, idKey);
  const sha384 = (b: Uint8Array): Buffer => createHash('sha384').update(b).digest();
  const opts = { authorKeyEnabled: true, expectedLaunchDigest: block.ld, expectedPolicy: block.policy };

  it('layouts at the offsets of §7.6', () => {
    const want = hand(0x60, [
      [0x50, 'u32', 1],
      [0x54, 'u32', 3],
      [0x58, 'u64', 0x30000n],
    ]);
    fill(48, 0x10).copy(want, 0);
    fill(16, 0x40).copy(want, 0x30);
    fill(16, 0x50).copy(want, 0x40);
    expect(blockBytes.equals(want)).toBe(true);
    expect(decodeSnpIdBlock(want)).toEqual(block);

    expect(withAuthor.length).toBe(SNP_ID_AUTH_SIZE);
    expect(withAuthor.readUInt32LE(0)).toBe(1);
    expect(withAuthor.readUInt32LE(4)).toBe(1);
    expect(withoutAuthor.readUInt32LE(4)).toBe(0);
    expect(withoutAuthor.subarray(0x680).equals(Buffer.alloc(0x1000 - 0x680))).toBe(true);
    const auth = decodeSnpIdAuth(withAuthor);
    expect(auth.idKey.equals(withAuthor.subarray(0x240, 0x644))).toBe(true);
    expect(auth.idKey.equals(encodeSnpEcdsaPublicKey(idKey))).toBe(true);
    expect(auth.authorKey.equals(withAuthor.subarray(0x880, 0xc84))).toBe(true);
    expect(auth.idBlockSig.equals(withAuthor.subarray(0x40, 0x240))).toBe(true);
    expect(auth.idKeySig.equals(withAuthor.subarray(0x680, 0x880))).toBe(true);
    // the key: CURVE 2, QX at 4, QY at 0x4C (72-byte little-endian), zero after 0x94
    expect(auth.idKey.readUInt32LE(0)).toBe(2);
    expect(auth.idKey.subarray(4 + 48, 0x4c).equals(Buffer.alloc(24))).toBe(true);
    expect(auth.idKey.subarray(0x94).equals(Buffer.alloc(0x404 - 0x94))).toBe(true);
    const jwk = (k: Parameters<typeof snpEcdsaPublicKeyToKeyObject>[0]): unknown =>
      snpEcdsaPublicKeyToKeyObject(k).export({ format: 'jwk' });
    const pub = idKey.export({ format: 'jwk' });
    expect(jwk(auth.idKey)).toEqual({ kty: 'EC', crv: 'P-384', x: pub.x, y: pub.y });
    // the signature: R at 0, S at 0x48, zero after 0x90
    expect(auth.idBlockSig.subarray(0x30, 0x48).equals(Buffer.alloc(0x18))).toBe(true);
    expect(auth.idBlockSig.subarray(0x90).equals(Buffer.alloc(0x170))).toBe(true);
  });

  it('sign/verify round trip, with and without an author key; digests are SHA-384 of the keys', () => {
    const a = verifyIdAuth(blockBytes, withAuthor, opts);
    expect(a).toMatchObject({ ok: true, status: 'SUCCESS', code: 0 });
    if (!a.ok) return;
    expect(a.idBlock).toEqual(block);
    expect(a.idKeyDigest.equals(sha384(withAuthor.subarray(0x240, 0x644)))).toBe(true);
    expect(a.authorKeyDigest.equals(sha384(withAuthor.subarray(0x880, 0xc84)))).toBe(true);
    const b = verifyIdAuth(blockBytes, withoutAuthor, { ...opts, authorKeyEnabled: false });
    expect(b.ok && b.authorKeyDigest.equals(Buffer.alloc(48))).toBe(true);
    expect(b.ok && b.idKeyDigest.equals(a.idKeyDigest)).toBe(true);
    // AUTH_KEY_EN clear: the author half is not looked at, even when present
    expect(verifyIdAuth(blockBytes, withAuthor, { authorKeyEnabled: false }).ok).toBe(true);
    // ID_BLOCK.VERSION is not checked (ASPFW)
    const v7 = encodeSnpIdBlock({ ...block, version: 7 });
    expect(verifyIdAuth(v7, signIdBlock(v7, idKey), { authorKeyEnabled: false }).ok).toBe(true);
  });

  it('every rejection of SNP_LAUNCH_FINISH, in the firmware order', () => {
    const status = (blk: Buffer, auth: Buffer, o: Parameters<typeof verifyIdAuth>[2] = opts): string => {
      const r = verifyIdAuth(blk, auth, o);
      if (!r.ok) expect(r.code).toBe(SevStatus[r.status]);
      return r.status;
    };
    const edit = (b: Buffer, at: number, f: (x: number) => number): Buffer => {
      const c = Buffer.from(b);
      c[at] = f(c[at] as number) & 0xff;
      return c;
    };
    const put32 = (b: Buffer, at: number, v: number): Buffer => {
      const c = Buffer.from(b);
      c.writeUInt32LE(v, at);
      return c;
    };
    expect(status(blockBytes, withAuthor, { ...opts, expectedLaunchDigest: fill(48, 0x11) })).toBe(
      'BAD_MEASUREMENT',
    );
    expect(status(blockBytes, withAuthor, { ...opts, expectedPolicy: 0x70000n })).toBe('POLICY_FAILURE');
    expect(status(blockBytes, put32(withAuthor, 0, 2))).toBe('INVALID_PARAM');
    expect(status(blockBytes, put32(withAuthor, 4, 0))).toBe('INVALID_PARAM');
    expect(status(blockBytes, withoutAuthor)).toBe('INVALID_PARAM'); // AUTH_KEY_ALGO 0 with AUTH_KEY_EN
    // the ID key
    expect(status(blockBytes, put32(withAuthor, 0x240, 1))).toBe('BAD_SIGNATURE'); // CURVE
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0x244, (x) => x ^ 1),
      ),
    ).toBe('BAD_SIGNATURE'); // off the curve
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0x244 + 48, () => 1),
      ),
    ).toBe('BAD_SIGNATURE'); // QX ≥ 2^384
    // the ID block signature
    expect(
      status(
        edit(blockBytes, 0x54, (x) => x + 1),
        withAuthor,
        { authorKeyEnabled: true },
      ),
    ).toBe('BAD_SIGNATURE');
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0x40, (x) => x ^ 1),
      ),
    ).toBe('BAD_SIGNATURE'); // R
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0x88, (x) => x ^ 1),
      ),
    ).toBe('BAD_SIGNATURE'); // S
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0x40 + 60, () => 1),
      ),
    ).toBe('BAD_SIGNATURE'); // R ≥ 2^384
    const foreign = Buffer.from(withAuthor);
    Buffer.concat([
      ecdsaP384Sign(otherKey, 'sha384', blockBytes).r,
      ecdsaP384Sign(otherKey, 'sha384', blockBytes).s,
    ]).copy(foreign, 0x40);
    expect(status(blockBytes, foreign)).toBe('BAD_SIGNATURE');
    // the author key and its signature of the ID key
    expect(status(blockBytes, put32(withAuthor, 0x880, 3))).toBe('BAD_SIGNATURE');
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0x884, (x) => x ^ 1),
      ),
    ).toBe('BAD_SIGNATURE');
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0x680, (x) => x ^ 1),
      ),
    ).toBe('BAD_SIGNATURE');
    expect(status(blockBytes, signIdBlock(block, idKey, otherKey).fill(0, 0x880, 0xc84))).toBe(
      'BAD_SIGNATURE',
    );
    // an ID key swapped for another one that did not sign the block
    const swapped = Buffer.from(withAuthor);
    encodeSnpEcdsaPublicKey(otherKey).copy(swapped, 0x240);
    expect(status(blockBytes, swapped)).toBe('BAD_SIGNATURE');
    // order: the measurement is compared before anything is parsed
    expect(
      status(blockBytes, put32(withAuthor, 0, 9), { ...opts, expectedLaunchDigest: Buffer.alloc(48) }),
    ).toBe('BAD_MEASUREMENT');
    expect(status(blockBytes, put32(withAuthor, 0, 9), { ...opts, expectedPolicy: 0n })).toBe(
      'POLICY_FAILURE',
    );
    // reserved bytes of the page are ignored, as by the firmware
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0x10, () => 0xff),
      ),
    ).toBe('SUCCESS');
    expect(
      status(
        blockBytes,
        edit(withAuthor, 0xfff, () => 0xff),
      ),
    ).toBe('SUCCESS');
  });

  it('wrong sizes raise AbiDecodeError', () => {
    expect(() => verifyIdAuth(blockBytes.subarray(0, 0x5f), withAuthor, opts)).toThrow(AbiDecodeError);
    expect(() => verifyIdAuth(blockBytes, withAuthor.subarray(0, 0xfff), opts)).toThrow(AbiDecodeError);
    expect(() => signIdBlock(Buffer.alloc(0x61), idKey)).toThrow(AbiDecodeError);
    expect(() => encodeSnpIdBlock({ ...block, ld: Buffer.alloc(32) })).toThrow(/field ld/);
    expect(() => snpEcdsaPublicKeyToKeyObject(Buffer.alloc(0x404))).toThrow(/field curve at offset 0x0/);
  });
});

describe('SNP attestation report encoding', () => {
  it.each(REPORT_FILES)('%s: decode → encode gives identical bytes', (name) => {
    const raw = readReport(name);
    const report = decodeSnpReport(raw);
    expect(encodeSnpReport(report).equals(raw)).toBe(true);
    expect(snpReportSignedBytes(raw).equals(raw.subarray(0, SNP_REPORT_SIGNED_LENGTH))).toBe(true);
    expect(snpReportSignedBytes(report).equals(raw.subarray(0, 0x2a0))).toBe(true);
  });

  it('finds every real report', () => {
    expect(REPORT_FILES.length).toBeGreaterThanOrEqual(10);
  });

  it('builds a report from fields, and refuses one the guest could not decode', () => {
    const built = encodeSnpReport({
      version: 2,
      policy: 0x30000n,
      vmpl: 1,
      signerInfo: 0x1c,
      reportData: fill(64, 1),
    });
    const back = decodeSnpReport(built);
    expect(back).toMatchObject({ version: 2, policy: 0x30000n, vmpl: 1, signingKey: 'none' });
    expect(built.subarray(0x50, 0x90).equals(fill(64, 1))).toBe(true);
    expect(() => encodeSnpReport({ version: 9 })).toThrow(/field version/);
    expect(() => encodeSnpReport({ version: 2, launchMitVector: 1n })).toThrow(/launchMitVector/);
    expect(() => snpReportSignedBytes(Buffer.alloc(0x2a0))).toThrow(AbiDecodeError);
  });
});
