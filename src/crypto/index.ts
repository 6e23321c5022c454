// Pure primitives in AMD's encodings.
export { Drbg } from './drbg.js';
export {
  type CipherMode,
  type MemoryCipher,
  BLOCK_SIZE,
  MEMORY_KEY_MATERIAL_BYTES,
  CipherAlignmentError,
  XeTweakFunction,
  createMemoryCipher,
  writeLe128Address,
} from './memory-cipher.js';
export { xorInto } from './xor.js';
export { sevKdf } from './sev-kdf.js';
export {
  ChannelContext,
  type ChannelWrapKeys,
  type FirmwareVersion,
  deriveChannelWrapKeys,
  hmacSha256,
  macEquals,
  aes128Ctr,
  wrapTransportKeys,
  unwrapTransportKeys,
  policyMac,
  launchMeasurementMac,
  packetMac,
} from './sev-channel.js';
export { GCM_TAG_BYTES, aesGcmSeal, aesGcmOpen } from './aes-gcm.js';
