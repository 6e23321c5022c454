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
export {
  type AmdEcPoint,
  type AmdEcdsaSignature,
  type EcdsaHash,
  AMD_EC_FIELD_BYTES,
  P384_BYTES,
  P384_N,
  P384_P,
  P384KeyError,
  bigIntToLe,
  ecdhP384,
  ecdsaP384Sign,
  ecdsaP384Verify,
  generateP384KeyPair,
  isP384Point,
  leToBigInt,
  p384PrivateKeyFromBytes,
  p384PrivateKeyFromScalar,
  p384PublicKeyFromAmd,
  p384PublicKeyToAmd,
} from './ec-p384.js';
export {
  type RsaPssHash,
  RsaKeyError,
  rsaModulusBytes,
  rsaPssSignLe,
  rsaPssVerifyLe,
  rsaPublicKeyFromLe,
  rsaPublicKeyToLe,
} from './rsa-pss.js';
