// SEV-SNP guest messages (SNP_GUEST_REQUEST): the 0x60-byte header, AES-256-GCM sealing with a VMPCK, and
// the payloads of the report and key-derivation messages (sev-reference §7.10; ASPFW sev_rmp.h
// snp_guest_message_header_t, snp_msg_*; Linux asm/sev.h snp_guest_msg_hdr, uapi sev-guest.h).
import { aesGcmOpen, aesGcmSeal, GCM_TAG_BYTES } from '../crypto/aes-gcm.js';
import { AbiDecodeError, StructLayout } from './layout.js';
import { ReservedCheckedLayout } from './snp-command-buffers.js';
import { SNP_REPORT_SIZE } from './snp-report.js';

export const SNP_GUEST_MSG_HEADER_SIZE = 0x60;
/** Header and payload must fit in the one 4 KiB page the request or response lives in. */
export const SNP_GUEST_MSG_PAGE_BYTES = 0x1000;
export const SNP_GUEST_MSG_MAX_PAYLOAD = SNP_GUEST_MSG_PAGE_BYTES - SNP_GUEST_MSG_HEADER_SIZE;
/** The authenticated header bytes: [0x30, 0x60) (ASPFW SNP_GMSG_HDR_AAD_SIZE). */
export const SNP_GUEST_MSG_AAD_OFFSET = 0x30;
export const SNP_GUEST_MSG_AAD_LENGTH = 0x30;
/** ALGO 1: AES-256-GCM (ASPFW AEAD_ALGO_AES_256_GCM). */
export const SNP_AEAD_ALGO_AES_256_GCM = 1;
/** The only header version (ASPFW SNP_GMSG_MAX_HDR_VERSION). */
export const SNP_GUEST_MSG_HDR_VERSION = 1;
/** Four VMPCKs, 0..3. */
export const SNP_VMPCK_COUNT = 4;

// ASPFW sev_rmp.h snp_guest_message_header_t (packed; AAD = 0x30..0x5F)
export const SnpGuestMessageHeaderLayout = new StructLayout(
  'SNP guest message header',
  SNP_GUEST_MSG_HEADER_SIZE,
  {
    /** The 16-byte GCM tag, then 16 bytes that are zero (and covered by nothing). */
    authTag: { offset: 0x00, type: 'bytes', length: 32 },
    msgSeqno: { offset: 0x20, type: 'u64' },
    reserved28: { offset: 0x28, type: 'bytes', length: 8 },
    algo: { offset: 0x30, type: 'u8' },
    hdrVersion: { offset: 0x31, type: 'u8' },
    hdrSize: { offset: 0x32, type: 'u16' },
    msgType: { offset: 0x34, type: 'u8' },
    msgVersion: { offset: 0x35, type: 'u8' },
    msgSize: { offset: 0x36, type: 'u16' },
    reserved38: { offset: 0x38, type: 'u32' },
    msgVmpck: { offset: 0x3c, type: 'u8' },
    reserved3d: { offset: 0x3d, type: 'bytes', length: 0x60 - 0x3d },
  },
);

/** Message types (ASPFW sev_rmp.h snp_guest_message_t = Linux enum msg_type). */
export const SnpMsgType = {
  INVALID: 0x00,
  CPUID_REQ: 0x01,
  CPUID_RSP: 0x02,
  KEY_REQ: 0x03,
  KEY_RSP: 0x04,
  REPORT_REQ: 0x05,
  REPORT_RSP: 0x06,
  EXPORT_REQ: 0x07,
  EXPORT_RSP: 0x08,
  IMPORT_REQ: 0x09,
  IMPORT_RSP: 0x0a,
  ABSORB_REQ: 0x0b,
  ABSORB_RSP: 0x0c,
  VMRK_REQ: 0x0d,
  VMRK_RSP: 0x0e,
  ABSORB_NOMA_REQ: 0x0f,
  ABSORB_NOMA_RSP: 0x10,
  TSC_INFO_REQ: 0x11,
  TSC_INFO_RSP: 0x12,
} as const;
export type SnpMsgTypeCode = (typeof SnpMsgType)[keyof typeof SnpMsgType];

const msgTypeNames = new Map<number, string>(Object.entries(SnpMsgType).map(([k, v]) => [v, k]));
/** "REPORT_REQ (0x05)" for display. */
export function snpMsgTypeName(type: number): string {
  return `${msgTypeNames.get(type) ?? 'UNKNOWN'} (0x${type.toString(16).padStart(2, '0')})`;
}

/** A decoded, well-formed guest message header. */
export interface SnpGuestMessageHeader {
  /** The 16-byte GCM tag (bytes 0..15). */
  authTag: Buffer;
  msgSeqno: bigint;
  algo: number;
  hdrVersion: number;
  hdrSize: number;
  msgType: number;
  msgVersion: number;
  /** Payload bytes after the header. */
  msgSize: number;
  msgVmpck: number;
}

/** Header checks beyond the shape. */
export interface SnpGuestMessageHeaderOptions {
  /**
   * Apply the request rules of SNP_GUEST_REQUEST (ASPFW snp_mcmd_guest_request): MSG_SIZE non-zero and a
   * multiple of 16. Responses are not held to it.
   */
  request?: boolean;
}

const HDR = SnpGuestMessageHeaderLayout.name;

/**
 * Decodes and checks a guest message header (`buf` may be the whole page). Throws AbiDecodeError naming
 * field and offset for what the firmware answers INVALID_PARAM to before decrypting: ALGO ≠ 1,
 * HDR_VERSION ≠ 1, HDR_SIZE ≠ 0x60, MSG_VMPCK > 3, header + MSG_SIZE beyond one 4 KiB page (or beyond
 * `buf`), and with `request` a MSG_SIZE that is zero or not a multiple of 16. The reserved bytes are not
 * checked: neither ASPFW nor Linux does, and those in 0x30..0x5F are authenticated anyway.
 */
export function decodeSnpGuestMessageHeader(
  buf: Uint8Array,
  options: SnpGuestMessageHeaderOptions = {},
): SnpGuestMessageHeader {
  const h = SnpGuestMessageHeaderLayout.decode(buf);
  if (h.algo !== SNP_AEAD_ALGO_AES_256_GCM)
    throw new AbiDecodeError(HDR, 'algo', 0x30, `unsupported AEAD ${h.algo} (1 = AES-256-GCM)`);
  if (h.hdrVersion !== SNP_GUEST_MSG_HDR_VERSION)
    throw new AbiDecodeError(HDR, 'hdrVersion', 0x31, `unsupported header version ${h.hdrVersion} (1)`);
  if (h.hdrSize !== SNP_GUEST_MSG_HEADER_SIZE)
    throw new AbiDecodeError(HDR, 'hdrSize', 0x32, `header size 0x${h.hdrSize.toString(16)}, must be 0x60`);
  if (h.msgVmpck >= SNP_VMPCK_COUNT)
    throw new AbiDecodeError(HDR, 'msgVmpck', 0x3c, `VMPCK ${h.msgVmpck} does not exist (0..3)`);
  if (options.request === true && (h.msgSize === 0 || h.msgSize % 16 !== 0))
    throw new AbiDecodeError(
      HDR,
      'msgSize',
      0x36,
      `request size ${h.msgSize} is not a non-zero multiple of 16`,
    );
  if (h.msgSize > SNP_GUEST_MSG_MAX_PAYLOAD)
    throw new AbiDecodeError(
      HDR,
      'msgSize',
      0x36,
      `header + ${h.msgSize} payload bytes do not fit one 4 KiB page (max ${SNP_GUEST_MSG_MAX_PAYLOAD})`,
    );
  if (SNP_GUEST_MSG_HEADER_SIZE + h.msgSize > buf.length)
    throw new AbiDecodeError(
      HDR,
      'msgSize',
      0x36,
      `${h.msgSize} payload bytes, buffer holds ${buf.length - 0x60}`,
    );
  return {
    authTag: h.authTag.subarray(0, GCM_TAG_BYTES),
    msgSeqno: h.msgSeqno,
    algo: h.algo,
    hdrVersion: h.hdrVersion,
    hdrSize: h.hdrSize,
    msgType: h.msgType,
    msgVersion: h.msgVersion,
    msgSize: h.msgSize,
    msgVmpck: h.msgVmpck,
  };
}

/** The 12-byte GCM IV of a message: le64(MSG_SEQNO) ‖ 0⁴ (ASPFW snp_mcmd_guest_request). */
export function snpGuestMessageIv(seqno: bigint): Buffer {
  if (seqno < 0n || seqno >= 1n << 64n) throw new RangeError(`sequence number ${seqno} is not a u64`);
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64LE(seqno, 0);
  return iv;
}

/** What sealSnpGuestMessage needs. */
export interface SnpGuestMessageInput {
  /** VMPCK[vmpckIndex], 32 bytes. */
  vmpck: Uint8Array;
  vmpckIndex: number;
  seqno: bigint;
  /** SnpMsgType. */
  type: number;
  /** MSG_VERSION (1 for every message this ABI knows). */
  version: number;
  payload: Uint8Array;
}

/**
 * A sealed guest message, header ‖ ciphertext: ALGO 1, HDR_VERSION 1, HDR_SIZE 0x60, reserved bytes zero;
 * ciphertext = AES-256-GCM(VMPCK, IV = le64(seqno) ‖ 0⁴, AAD = header[0x30..0x60), payload); tag in
 * bytes 0..15, bytes 16..31 zero. Throws RangeError for a key that is not 32 bytes, an index outside
 * 0..3, a type or version that is not a byte, or a payload that does not fit the page with its header.
 */
export function sealSnpGuestMessage(m: SnpGuestMessageInput): Buffer {
  if (m.vmpck.length !== 32) throw new RangeError(`VMPCK must be 32 bytes, got ${m.vmpck.length}`);
  if (!Number.isInteger(m.vmpckIndex) || m.vmpckIndex < 0 || m.vmpckIndex >= SNP_VMPCK_COUNT)
    throw new RangeError(`VMPCK index ${m.vmpckIndex} is not 0..3`);
  for (const [name, v] of [
    ['type', m.type],
    ['version', m.version],
  ] as const)
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`message ${name} ${v} is not a byte`);
  if (m.payload.length > SNP_GUEST_MSG_MAX_PAYLOAD)
    throw new RangeError(`payload of ${m.payload.length} bytes exceeds ${SNP_GUEST_MSG_MAX_PAYLOAD}`);
  const iv = snpGuestMessageIv(m.seqno);
  const header = SnpGuestMessageHeaderLayout.encode({
    msgSeqno: m.seqno,
    algo: SNP_AEAD_ALGO_AES_256_GCM,
    hdrVersion: SNP_GUEST_MSG_HDR_VERSION,
    hdrSize: SNP_GUEST_MSG_HEADER_SIZE,
    msgType: m.type,
    msgVersion: m.version,
    msgSize: m.payload.length,
    msgVmpck: m.vmpckIndex,
  });
  const aad = header.subarray(SNP_GUEST_MSG_AAD_OFFSET, SNP_GUEST_MSG_AAD_OFFSET + SNP_GUEST_MSG_AAD_LENGTH);
  const sealed = aesGcmSeal(m.vmpck, iv, aad, m.payload);
  const ciphertext = sealed.subarray(0, m.payload.length);
  header.set(sealed.subarray(m.payload.length), 0);
  return Buffer.concat([header, ciphertext]);
}

/** The outcome of openSnpGuestMessage: the plaintext, or a typed authentication failure. */
export type SnpGuestMessageOpenResult =
  | { ok: true; header: SnpGuestMessageHeader; payload: Buffer }
  | { ok: false; reason: 'AUTHENTICATION_FAILED'; header: SnpGuestMessageHeader };

/**
 * Checks the header (decodeSnpGuestMessageHeader: AbiDecodeError for a malformed one) and decrypts the
 * payload with `vmpck` — the key of header.msgVmpck, which the caller picks after decoding the header.
 * A wrong key, a changed AAD byte, sequence number (it is the IV), tag or ciphertext gives
 * `{ ok: false, reason: 'AUTHENTICATION_FAILED' }`. Sequence-number policy (count + 1) is the caller's.
 * Throws RangeError if `vmpck` is not 32 bytes.
 */
export function openSnpGuestMessage(
  message: Uint8Array,
  vmpck: Uint8Array,
  options: SnpGuestMessageHeaderOptions = {},
): SnpGuestMessageOpenResult {
  const header = decodeSnpGuestMessageHeader(message, options);
  if (vmpck.length !== 32) throw new RangeError(`VMPCK must be 32 bytes, got ${vmpck.length}`);
  const aad = message.subarray(SNP_GUEST_MSG_AAD_OFFSET, SNP_GUEST_MSG_AAD_OFFSET + SNP_GUEST_MSG_AAD_LENGTH);
  const ciphertext = message.subarray(SNP_GUEST_MSG_HEADER_SIZE, SNP_GUEST_MSG_HEADER_SIZE + header.msgSize);
  const payload = aesGcmOpen(
    vmpck,
    snpGuestMessageIv(header.msgSeqno),
    aad,
    Buffer.concat([ciphertext, header.authTag]),
  );
  return payload === undefined
    ? { ok: false, reason: 'AUTHENTICATION_FAILED', header }
    : { ok: true, header, payload };
}

// ---------------------------------------------------------------------------------------------------
// Payloads

/** KEY_SEL of report and key requests (ASPFW sev_rmp.h): which key signs or roots the derivation. */
export const SnpKeySel = { VLEK_OR_VCEK: 0, VCEK_ONLY: 1, VLEK_ONLY: 2, RESERVED: 3 } as const;

export const SNP_REPORT_REQ_SIZE = 0x60;
// MSG_REPORT_REQ: ASPFW sev_rmp.h snp_msg_report_req_t (Linux uapi snp_report_req treats 0x44 as reserved)
export const SnpReportRequestLayout = new ReservedCheckedLayout(
  'SNP MSG_REPORT_REQ payload',
  SNP_REPORT_REQ_SIZE,
  {
    reportData: { offset: 0x00, type: 'bytes', length: 64 },
    /** Must be ≥ the message's VMPCK index, else STATUS INVALID_PARAM. */
    vmpl: { offset: 0x40, type: 'u32' },
    /** bits 1:0 KEY_SEL (SnpKeySel). */
    keySel: { offset: 0x44, type: 'u32' },
  },
  [
    { name: 'keySel[31:2]', offset: 0x44, length: 4, mask: 0xfffffffcn },
    { name: 'reserved48', offset: 0x48, length: 0x18 },
  ],
);

/** A decoded MSG_REPORT_REQ. */
export interface SnpReportRequest {
  reportData: Buffer;
  vmpl: number;
  /** SnpKeySel. */
  keySel: number;
  /** The first reserved field set, which the firmware answers with STATUS INVALID_PARAM. */
  reservedNonZero?: string;
}

/** Decodes a MSG_REPORT_REQ (AbiDecodeError if shorter than 0x60; reserved bits are reported, not thrown). */
export function decodeSnpReportRequest(payload: Uint8Array): SnpReportRequest {
  const f = SnpReportRequestLayout.decode(payload);
  const bad = SnpReportRequestLayout.reservedNonZero(payload);
  return {
    reportData: f.reportData,
    vmpl: f.vmpl,
    keySel: f.keySel & 3,
    ...(bad !== undefined ? { reservedNonZero: bad.field } : {}),
  };
}

/** Encodes a MSG_REPORT_REQ (0x60 bytes; REPORT_DATA must be 64 bytes, else AbiDecodeError). */
export function encodeSnpReportRequest(r: Omit<SnpReportRequest, 'reservedNonZero'>): Buffer {
  return SnpReportRequestLayout.encode({ reportData: r.reportData, vmpl: r.vmpl, keySel: r.keySel & 3 });
}

export const SNP_REPORT_RSP_SIZE = 0x20 + SNP_REPORT_SIZE;
// MSG_REPORT_RSP: ASPFW sev_rmp.h snp_msg_report_rsp_t (STATUS, REPORT_SIZE, then the 0x4A0-byte report)
export const SnpReportResponseLayout = new ReservedCheckedLayout(
  'SNP MSG_REPORT_RSP payload',
  SNP_REPORT_RSP_SIZE,
  {
    /** Firmware status of the request (0 SUCCESS, 0x16 INVALID_PARAM, 0x27 INVALID_KEY). */
    status: { offset: 0x00, type: 'u32' },
    reportSize: { offset: 0x04, type: 'u32' },
    report: { offset: 0x20, type: 'bytes', length: SNP_REPORT_SIZE },
  },
  [{ name: 'reserved08', offset: 0x08, length: 0x18 }],
);

/** A decoded MSG_REPORT_RSP: the report's raw bytes (decode them with decodeSnpReport). */
export interface SnpReportResponse {
  status: number;
  reportSize: number;
  report: Buffer;
}

/**
 * Decodes a MSG_REPORT_RSP payload. Throws AbiDecodeError for a short payload, a non-zero reserved byte,
 * or STATUS 0 with a REPORT_SIZE other than 0x4A0.
 */
export function decodeSnpReportResponse(payload: Uint8Array): SnpReportResponse {
  const f = SnpReportResponseLayout.decodeChecked(payload);
  if (f.status === 0 && f.reportSize !== SNP_REPORT_SIZE)
    throw new AbiDecodeError(
      SnpReportResponseLayout.name,
      'reportSize',
      0x04,
      `report size 0x${f.reportSize.toString(16)}, must be 0x4a0`,
    );
  return { status: f.status, reportSize: f.reportSize, report: f.report };
}

/**
 * A MSG_REPORT_RSP payload (0x4C0 bytes, the size the firmware always answers with): REPORT_SIZE 0x4A0
 * and, on failure, a zero report.
 */
export function encodeSnpReportResponse(r: { status: number; report?: Uint8Array }): Buffer {
  return SnpReportResponseLayout.encode({
    status: r.status,
    reportSize: SNP_REPORT_SIZE,
    report: Buffer.from(r.report ?? Buffer.alloc(SNP_REPORT_SIZE)),
  });
}

/** MSG_KEY_REQ is 0x20 bytes (ASPFW, Linux); newer ABIs append LAUNCH_MIT_VECTOR (0x28). */
export const SNP_KEY_REQ_SIZE = 0x20;
export const SNP_KEY_REQ_SIZE_WITH_MIT = 0x28;
// MSG_KEY_REQ: ASPFW sev_rmp.h snp_msg_key_req_t = Linux uapi snp_derived_key_req
export const SnpKeyRequestLayout = new ReservedCheckedLayout(
  'SNP MSG_KEY_REQ payload',
  SNP_KEY_REQ_SIZE,
  {
    /** bit 0 ROOT_KEY_SELECT (0 VCEK/VLEK, 1 VMRK), bits 2:1 KEY_SEL (SnpKeySel). */
    flags: { offset: 0x00, type: 'u32' },
    /** SnpGuestFieldSelect bits. */
    guestFieldSelect: { offset: 0x08, type: 'u64' },
    vmpl: { offset: 0x10, type: 'u32' },
    guestSvn: { offset: 0x14, type: 'u32' },
    tcbVersion: { offset: 0x18, type: 'u64' },
  },
  [
    { name: 'flags[31:3]', offset: 0x00, length: 4, mask: 0xfffffff8n },
    { name: 'reserved04', offset: 0x04, length: 4 },
  ],
);

/** GUEST_FIELD_SELECT bits (ASPFW sev_rmp.h SNP_GUEST_FIELD_*; bit 6 from newer ABIs). */
export const SnpGuestFieldSelect = {
  GUEST_POLICY: 1n << 0n,
  IMAGE_ID: 1n << 1n,
  FAMILY_ID: 1n << 2n,
  MEASUREMENT: 1n << 3n,
  GUEST_SVN: 1n << 4n,
  TCB_VERSION: 1n << 5n,
  LAUNCH_MIT_VECTOR: 1n << 6n,
} as const;
/** The bits the Genoa firmware accepts (ASPFW SNP_GUEST_FIELD_ALL): any other is INVALID_PARAM. */
export const SNP_GUEST_FIELD_SELECT_ALL = 0x3fn;

/** A decoded MSG_KEY_REQ. */
export interface SnpKeyRequest {
  /** 0: VCEK or VLEK (per keySel); 1: VMRK. */
  rootKeySelect: number;
  keySel: number;
  guestFieldSelect: bigint;
  vmpl: number;
  guestSvn: number;
  tcbVersion: bigint;
  /** Present only in a 0x28-byte request. */
  launchMitVector?: bigint;
  /** The first reserved field set, which the firmware answers with STATUS INVALID_PARAM. */
  reservedNonZero?: string;
}

/** Decodes a MSG_KEY_REQ of 0x20 or more bytes (LAUNCH_MIT_VECTOR read from 0x28 or more). */
export function decodeSnpKeyRequest(payload: Uint8Array): SnpKeyRequest {
  const f = SnpKeyRequestLayout.decode(payload);
  const bad = SnpKeyRequestLayout.reservedNonZero(payload);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return {
    rootKeySelect: f.flags & 1,
    keySel: (f.flags >>> 1) & 3,
    guestFieldSelect: f.guestFieldSelect,
    vmpl: f.vmpl,
    guestSvn: f.guestSvn,
    tcbVersion: f.tcbVersion,
    ...(payload.length >= SNP_KEY_REQ_SIZE_WITH_MIT
      ? { launchMitVector: view.getBigUint64(SNP_KEY_REQ_SIZE, true) }
      : {}),
    ...(bad !== undefined ? { reservedNonZero: bad.field } : {}),
  };
}

/** Encodes a MSG_KEY_REQ: 0x20 bytes, or 0x28 when `launchMitVector` is given. */
export function encodeSnpKeyRequest(r: Omit<SnpKeyRequest, 'reservedNonZero'>): Buffer {
  const base = SnpKeyRequestLayout.encode({
    flags: ((r.rootKeySelect & 1) | ((r.keySel & 3) << 1)) >>> 0,
    guestFieldSelect: r.guestFieldSelect,
    vmpl: r.vmpl,
    guestSvn: r.guestSvn,
    tcbVersion: r.tcbVersion,
  });
  if (r.launchMitVector === undefined) return base;
  const mit = Buffer.alloc(8);
  mit.writeBigUInt64LE(r.launchMitVector);
  return Buffer.concat([base, mit]);
}

export const SNP_KEY_RSP_SIZE = 0x40;
// MSG_KEY_RSP: ASPFW sev_rmp.h snp_msg_key_rsp_t
export const SnpKeyResponseLayout = new ReservedCheckedLayout(
  'SNP MSG_KEY_RSP payload',
  SNP_KEY_RSP_SIZE,
  {
    status: { offset: 0x00, type: 'u32' },
    derivedKey: { offset: 0x20, type: 'bytes', length: 32 },
  },
  [{ name: 'reserved04', offset: 0x04, length: 0x1c }],
);

/** A MSG_KEY_RSP payload (0x40 bytes); on failure the key is zero. */
export function encodeSnpKeyResponse(r: { status: number; derivedKey?: Uint8Array }): Buffer {
  return SnpKeyResponseLayout.encode({
    status: r.status,
    derivedKey: Buffer.from(r.derivedKey ?? Buffer.alloc(32)),
  });
}

/** Decodes a MSG_KEY_RSP; AbiDecodeError for a short payload or a non-zero reserved byte. */
export function decodeSnpKeyResponse(payload: Uint8Array): { status: number; derivedKey: Buffer } {
  const f = SnpKeyResponseLayout.decodeChecked(payload);
  return { status: f.status, derivedKey: f.derivedKey };
}

/** MIX_DATA is 168 bytes (ASPFW sev_rmp.h snp_mix_data_t, packed). */
export const SNP_MIX_DATA_SIZE = 0xa8;
// Key-derivation context: ASPFW sev_rmp.h snp_mix_data_t, used as KDF(root, "gmsg-keyreq", MIX_DATA)
export const SnpMixDataLayout = new StructLayout('SNP key derivation MIX_DATA', SNP_MIX_DATA_SIZE, {
  /** bit 0 ROOT_KEY_SELECT, bits 2:1 IDBLOCK_KEY_SELECT (0 none, 1 ID key, 2 author key). */
  flags: { offset: 0x00, type: 'u32' },
  reserved04: { offset: 0x04, type: 'u32' },
  guestFieldSelect: { offset: 0x08, type: 'u64' },
  vmpl: { offset: 0x10, type: 'u32' },
  guestSvn: { offset: 0x14, type: 'u32' },
  tcbVersion: { offset: 0x18, type: 'u64' },
  guestPolicy: { offset: 0x20, type: 'u64' },
  imageId: { offset: 0x28, type: 'bytes', length: 16 },
  familyId: { offset: 0x38, type: 'bytes', length: 16 },
  /** The first 32 bytes of the 48-byte launch digest. */
  measurement: { offset: 0x48, type: 'bytes', length: 32 },
  hostData: { offset: 0x68, type: 'bytes', length: 32 },
  /** The first 32 bytes of the selected 48-byte key digest. */
  idBlockKey: { offset: 0x88, type: 'bytes', length: 32 },
});

/** The guest's values the key derivation may mix in. */
export interface SnpMixDataInput {
  rootKeySelect: number;
  /** 0 no ID block, 1 ID key (ID block without author key), 2 author key. */
  idBlockKeySelect: number;
  guestFieldSelect: bigint;
  vmpl: number;
  guestSvn: number;
  tcbVersion: bigint;
  guestPolicy: bigint;
  imageId: Uint8Array;
  familyId: Uint8Array;
  /** GCTX.LD, 48 bytes (or its first 32). */
  measurement: Uint8Array;
  hostData: Uint8Array;
  /** The selected key digest, 48 bytes (or its first 32); ignored when idBlockKeySelect is 0. */
  idBlockKeyDigest: Uint8Array;
}

/**
 * MIX_DATA as the firmware builds it (ASPFW snp_mcmd_guest_request, KEY_REQ): ROOT_KEY_SELECT,
 * IDBLOCK_KEY_SELECT, GUEST_FIELD_SELECT, VMPL, HOST_DATA and the ID key digest always; TCB_VERSION,
 * GUEST_SVN, MEASUREMENT, FAMILY_ID, IMAGE_ID and POLICY only when their GUEST_FIELD_SELECT bit is set,
 * else zero. The 48-byte digests are truncated to 32 bytes, as the Genoa source does (sev-reference §10
 * item 9: not cross-checked with the ABI spec). LAUNCH_MIT_VECTOR has no place in this 168-byte form.
 */
export function encodeSnpMixData(m: SnpMixDataInput): Buffer {
  const gfs = m.guestFieldSelect;
  const on = (bit: bigint): boolean => (gfs & bit) !== 0n;
  const first = (name: string, b: Uint8Array, n: number): Buffer => {
    if (b.length < n) throw new RangeError(`${name} needs at least ${n} bytes, got ${b.length}`);
    return Buffer.from(b.subarray(0, n));
  };
  const zero = (n: number): Buffer => Buffer.alloc(n);
  return SnpMixDataLayout.encode({
    flags: ((m.rootKeySelect & 1) | ((m.idBlockKeySelect & 3) << 1)) >>> 0,
    guestFieldSelect: gfs,
    vmpl: m.vmpl,
    guestSvn: on(SnpGuestFieldSelect.GUEST_SVN) ? m.guestSvn : 0,
    tcbVersion: on(SnpGuestFieldSelect.TCB_VERSION) ? m.tcbVersion : 0n,
    guestPolicy: on(SnpGuestFieldSelect.GUEST_POLICY) ? m.guestPolicy : 0n,
    imageId: on(SnpGuestFieldSelect.IMAGE_ID) ? first('imageId', m.imageId, 16) : zero(16),
    familyId: on(SnpGuestFieldSelect.FAMILY_ID) ? first('familyId', m.familyId, 16) : zero(16),
    measurement: on(SnpGuestFieldSelect.MEASUREMENT) ? first('measurement', m.measurement, 32) : zero(32),
    hostData: first('hostData', m.hostData, 32),
    idBlockKey: m.idBlockKeySelect === 0 ? zero(32) : first('idBlockKeyDigest', m.idBlockKeyDigest, 32),
  });
}
