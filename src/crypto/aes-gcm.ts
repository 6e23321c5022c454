// AES-GCM sealing (NIST SP 800-38D) for the PSP's non-volatile records (and, later, SNP guest messages).
import { createCipheriv, createDecipheriv } from 'node:crypto';

export const GCM_TAG_BYTES = 16;

/** ciphertext ‖ tag under a 128- or 256-bit key. */
export function aesGcmSeal(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  const c = createCipheriv(key.length === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, iv);
  c.setAAD(aad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** The plaintext, or undefined when the tag does not verify. */
export function aesGcmOpen(
  key: Uint8Array,
  iv: Uint8Array,
  aad: Uint8Array,
  sealed: Uint8Array,
): Buffer | undefined {
  if (sealed.length < GCM_TAG_BYTES) return undefined;
  const d = createDecipheriv(key.length === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, iv);
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - GCM_TAG_BYTES));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - GCM_TAG_BYTES)), d.final()]);
  } catch {
    return undefined;
  }
}
