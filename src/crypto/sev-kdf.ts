// NIST SP 800-108 counter-mode KDF with HMAC-SHA256 and LITTLE-endian counters, as AMD's firmware
// implements it (sev-reference §4.1; ASPFW nist_kdf.c, sev-tool crypto.cpp kdf()).
import { createHmac } from 'node:crypto';

const PRF_BYTES = 32;

/** KDF(K, L, label, context) = first L bytes of HMAC(K, le32(i) ‖ label ‖ 0x00 ‖ context ‖ le32(L·8)), i = 1, 2, … */
export function sevKdf(
  key: Uint8Array,
  lengthBytes: number,
  label: string,
  context: Uint8Array = new Uint8Array(0),
): Buffer {
  if (!Number.isInteger(lengthBytes) || lengthBytes <= 0 || lengthBytes > 0xfffffff) {
    throw new RangeError(`KDF output length must be a positive byte count, got ${lengthBytes}`);
  }
  const lengthBits = Buffer.alloc(4);
  lengthBits.writeUInt32LE(lengthBytes * 8);
  const labelBytes = Buffer.from(label, 'utf8');
  const blocks: Buffer[] = [];
  for (let i = 1; blocks.length * PRF_BYTES < lengthBytes; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32LE(i);
    blocks.push(
      createHmac('sha256', key)
        .update(counter)
        .update(labelBytes)
        .update(Buffer.from([0]))
        .update(context)
        .update(lengthBits)
        .digest(),
    );
  }
  return Buffer.concat(blocks).subarray(0, lengthBytes);
}
