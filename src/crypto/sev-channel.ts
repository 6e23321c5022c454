// The guest owner ↔ firmware transport channel of legacy SEV launch and migration
// (sev-reference §4.2–§5.3; ASPFW sev_channel.c, virtee/sev session). Shared by the PSP (which
// opens the channel) and the owner tools (which create it), so both compute it the same way.
import { createCipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { sevKdf } from './sev-kdf.js';

/** First byte of every HMAC on the channel (ASPFW sev_channel.h). */
export const ChannelContext = { SECRET: 0x01, DATA: 0x02, VMSA: 0x03, MEASURE: 0x04 } as const;

export interface ChannelWrapKeys {
  /** Key-encryption key for TEK‖TIK. */
  readonly kek: Buffer;
  /** Key-integrity key for the wrap MAC. */
  readonly kik: Buffer;
}

/** master = KDF(Z, 16, "sev-master-secret", nonce); KEK/KIK = KDF(master, 16, "sev-kek"/"sev-kik"). */
export function deriveChannelWrapKeys(sharedSecret: Uint8Array, nonce: Uint8Array): ChannelWrapKeys {
  const master = sevKdf(sharedSecret, 16, 'sev-master-secret', nonce);
  try {
    return { kek: sevKdf(master, 16, 'sev-kek'), kik: sevKdf(master, 16, 'sev-kik') };
  } finally {
    master.fill(0);
  }
}

export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Constant-time MAC comparison. */
export function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** AES-128-CTR with a 128-bit big-endian counter block starting at `iv` (encrypt = decrypt). */
export function aes128Ctr(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const c = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

/** WRAP_TK = AES-128-CTR(KEK, WRAP_IV, TEK‖TIK); WRAP_MAC = HMAC(KIK, WRAP_TK). */
export function wrapTransportKeys(
  wrap: ChannelWrapKeys,
  iv: Uint8Array,
  tek: Uint8Array,
  tik: Uint8Array,
): { wrapTk: Buffer; wrapMac: Buffer } {
  const wrapTk = aes128Ctr(wrap.kek, iv, Buffer.concat([tek, tik]));
  return { wrapTk, wrapMac: hmacSha256(wrap.kik, wrapTk) };
}

/** The firmware's order: check WRAP_MAC first, then decrypt TEK‖TIK; undefined on a bad MAC. */
export function unwrapTransportKeys(
  wrap: ChannelWrapKeys,
  iv: Uint8Array,
  wrapTk: Uint8Array,
  wrapMac: Uint8Array,
): { tek: Buffer; tik: Buffer } | undefined {
  if (!macEquals(hmacSha256(wrap.kik, wrapTk), wrapMac)) return undefined;
  const both = aes128Ctr(wrap.kek, iv, wrapTk);
  return { tek: both.subarray(0, 16), tik: both.subarray(16, 32) };
}

function le32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/** POLICY_MAC = HMAC(TIK, le32(policy)). */
export function policyMac(tik: Uint8Array, policy: number): Buffer {
  return hmacSha256(tik, le32(policy));
}

export interface FirmwareVersion {
  readonly major: number;
  readonly minor: number;
  readonly build: number;
}

/** LAUNCH_MEASURE: HMAC(TIK, 0x04 ‖ major ‖ minor ‖ build ‖ le32(policy) ‖ LD ‖ MNONCE) (API ≥ 0.17). */
export function launchMeasurementMac(
  tik: Uint8Array,
  fw: FirmwareVersion,
  policy: number,
  launchDigest: Uint8Array,
  mnonce: Uint8Array,
): Buffer {
  return hmacSha256(
    tik,
    Buffer.from([ChannelContext.MEASURE, fw.major, fw.minor, fw.build]),
    le32(policy),
    launchDigest,
    mnonce,
  );
}

/**
 * The packet MAC of LAUNCH_SECRET (and SEND/RECEIVE_UPDATE_*):
 * HMAC(TIK, ctx ‖ le32(flags) ‖ IV ‖ le32(guestLen) ‖ le32(transLen) ‖ CT ‖ MEASUREMENT).
 */
export function packetMac(
  tik: Uint8Array,
  context: number,
  flags: number,
  iv: Uint8Array,
  guestLength: number,
  ciphertext: Uint8Array,
  measurement: Uint8Array,
): Buffer {
  return hmacSha256(
    tik,
    Buffer.from([context]),
    le32(flags),
    iv,
    le32(guestLength),
    le32(ciphertext.length),
    ciphertext,
    measurement,
  );
}
