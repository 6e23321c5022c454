// The guest owner's side of LAUNCH_MEASURE and LAUNCH_SECRET (sev-reference §5.2–§5.3): check that the
// platform measured the expected launch under the owner's TIK, then encrypt and authenticate a secret
// that only that launch will accept — the packet sev-tool `package_secret` and sevctl `secret build` make.
import { randomBytes } from 'node:crypto';
import { AbiDecodeError, LaunchMeasurement, PacketHeader } from '../abi/index.js';
import {
  ChannelContext,
  type FirmwareVersion,
  aes128Ctr,
  hmacSha256,
  launchMeasurementMac,
  macEquals,
  packetMac,
} from '../crypto/index.js';
import { type RandomBytes, TRANSPORT_KEY_BYTES } from './launch-session.js';

/** Bytes of LAUNCH_MEASURE's output: MEASUREMENT[32] ‖ MNONCE[16]. */
export const LAUNCH_MEASURE_BLOB_SIZE = LaunchMeasurement.size;
/** Bytes of a measurement (an HMAC-SHA256) and of a launch digest (a SHA-256). */
export const MEASUREMENT_BYTES = 32;
export const LAUNCH_DIGEST_BYTES = 32;
/** Bytes of the LAUNCH_SECRET packet header. */
export const PACKET_HEADER_SIZE = PacketHeader.size;
/** LAUNCH_SECRET moves whole 16-byte blocks (ASPFW: guest_len 16-byte aligned and non-zero). */
export const LAUNCH_SECRET_ALIGNMENT = 16;

/** The two halves of LAUNCH_MEASURE's output. */
export interface LaunchMeasureBlob {
  readonly measurement: Buffer;
  readonly mnonce: Buffer;
}

/** Splits a LAUNCH_MEASURE blob (QEMU query-sev-launch-measure, base64-decoded); exactly 0x30 bytes. */
export function decodeLaunchMeasureBlob(bytes: Uint8Array): LaunchMeasureBlob {
  if (bytes.length > LAUNCH_MEASURE_BLOB_SIZE)
    throw new AbiDecodeError(
      LaunchMeasurement.name,
      '(end)',
      LAUNCH_MEASURE_BLOB_SIZE,
      `${bytes.length} bytes, expected exactly ${LAUNCH_MEASURE_BLOB_SIZE} (MEASUREMENT ‖ MNONCE)`,
    );
  return LaunchMeasurement.decode(bytes);
}

/**
 * Firmware before API 0.17 left the context byte and its version out of the measurement and the
 * measurement out of the LAUNCH_SECRET MAC (sev-tool: `min_api_version(major, minor, 0, 17)`).
 */
export function hasMeasureContext(fw: { major: number; minor: number }): boolean {
  return fw.major > 0 || fw.minor >= 17;
}

function checkU8(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${name} ${v} is not a byte`);
}

function checkLength(name: string, v: Uint8Array, length: number): void {
  if (v.length !== length) throw new RangeError(`${name} must be ${length} bytes, got ${v.length}`);
}

/**
 * The measurement a platform running firmware `fw` returns for a launch with `launchDigest` and `policy`
 * under `tik`: HMAC(TIK, 0x04 ‖ major ‖ minor ‖ build ‖ le32(policy) ‖ LD ‖ MNONCE), without the first
 * four bytes before API 0.17.
 */
export function expectedLaunchMeasurement(
  tik: Uint8Array,
  fw: FirmwareVersion,
  policy: number,
  launchDigest: Uint8Array,
  mnonce: Uint8Array,
): Buffer {
  checkLength('TIK', tik, TRANSPORT_KEY_BYTES);
  checkLength('launch digest', launchDigest, LAUNCH_DIGEST_BYTES);
  checkLength('MNONCE', mnonce, 16);
  checkU8('API major', fw.major);
  checkU8('API minor', fw.minor);
  checkU8('build', fw.build);
  if (!Number.isInteger(policy) || policy < 0 || policy > 0xffff_ffff)
    throw new RangeError(`policy ${policy} is not a 32-bit unsigned integer`);
  if (hasMeasureContext(fw)) return launchMeasurementMac(tik, fw, policy, launchDigest, mnonce);
  const le32 = Buffer.alloc(4);
  le32.writeUInt32LE(policy);
  return hmacSha256(tik, le32, launchDigest, mnonce);
}

/** What the owner expects the platform to have measured. */
export interface LaunchMeasureExpectation {
  /** GCTX.LD: SHA-256 of everything LAUNCH_UPDATE_* measured (computeLaunchDigest). */
  readonly launchDigest: Uint8Array;
  readonly policy: number;
  /** The firmware's API version and build (PLATFORM_STATUS; QEMU query-sev). */
  readonly firmware: FirmwareVersion;
  readonly tik: Uint8Array;
}

/** The verdict on a LAUNCH_MEASURE blob. */
export interface LaunchMeasureVerdict {
  readonly ok: boolean;
  readonly measurement: Buffer;
  readonly mnonce: Buffer;
  /** The measurement the expectation implies for this MNONCE. */
  readonly expected: Buffer;
  /** Whether the API ≥ 0.17 form (context byte and version) was used. */
  readonly withContext: boolean;
  readonly reason: string;
}

/**
 * Checks a LAUNCH_MEASURE blob against what the owner expects, comparing in constant time. A mismatch
 * means another digest, policy, firmware version, or TIK (another session) — the MAC cannot say which.
 * A blob that is not 0x30 bytes throws AbiDecodeError.
 */
export function verifyLaunchMeasurement(
  blob: Uint8Array,
  expectation: LaunchMeasureExpectation,
): LaunchMeasureVerdict {
  const { measurement, mnonce } = decodeLaunchMeasureBlob(blob);
  const { tik, firmware, policy, launchDigest } = expectation;
  const expected = expectedLaunchMeasurement(tik, firmware, policy, launchDigest, mnonce);
  const ok = macEquals(measurement, expected);
  const what =
    `API ${firmware.major}.${firmware.minor} build ${firmware.build}, policy ` +
    `0x${policy.toString(16).padStart(8, '0')}, launch digest ${Buffer.from(launchDigest).toString('hex')}`;
  return {
    ok,
    measurement,
    mnonce,
    expected,
    withContext: hasMeasureContext(firmware),
    reason: ok
      ? `the measurement matches ${what} under this TIK`
      : `the measurement does not match ${what} under this TIK: the platform measured other contents, ` +
        'policy or firmware, or the session used other transport keys',
  };
}

/** Why a secret cannot be packaged. */
export type LaunchSecretErrorCode = 'BAD_LENGTH' | 'BAD_KEY' | 'BAD_MEASUREMENT' | 'BAD_IV';

/** A secret LAUNCH_SECRET would refuse, or inputs of the wrong size. */
export class LaunchSecretError extends Error {
  constructor(
    readonly code: LaunchSecretErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LaunchSecretError';
  }
}

/** The secret and the keys and measurement it is bound to. */
export interface LaunchSecretInput {
  readonly tek: Uint8Array;
  readonly tik: Uint8Array;
  /** The 32-byte MEASUREMENT of the LAUNCH_MEASURE the owner verified. */
  readonly measurement: Uint8Array;
  /** The guest-visible bytes, typically an EFI secret table; a non-zero multiple of 16 bytes. */
  readonly plaintext: Uint8Array;
  /** The packet IV; by default 16 fresh random bytes. Never reuse one with the same TEK. */
  readonly iv?: Uint8Array;
  /** Where a fresh IV comes from (default node:crypto randomBytes). */
  readonly random?: RandomBytes;
  /** The firmware's API version; before 0.17 the MAC omits the measurement. Default: 0.17 or later. */
  readonly firmware?: { readonly major: number; readonly minor: number };
}

/** LAUNCH_SECRET's inputs: the packet header and the ciphertext (packaged_secret{_header}.bin). */
export interface PackagedLaunchSecret {
  /** FLAGS ‖ IV ‖ MAC, 0x34 bytes. */
  readonly header: Buffer;
  readonly ciphertext: Buffer;
  readonly iv: Buffer;
}

/**
 * Packages a secret for LAUNCH_SECRET: CT = AES-128-CTR(TEK, IV, plaintext), header = {FLAGS 0, IV,
 * MAC = HMAC(TIK, 0x01 ‖ le32(0) ‖ IV ‖ le32(len) ‖ le32(len) ‖ CT ‖ MEASUREMENT)}. The MAC binds the
 * secret to that one measurement, so only the launch the owner verified can accept it. Throws
 * LaunchSecretError for a plaintext the firmware would refuse (empty or not a multiple of 16 bytes).
 */
export function packageLaunchSecret(input: LaunchSecretInput): PackagedLaunchSecret {
  const { tek, tik, measurement, plaintext } = input;
  if (tek.length !== TRANSPORT_KEY_BYTES || tik.length !== TRANSPORT_KEY_BYTES)
    throw new LaunchSecretError('BAD_KEY', `TEK and TIK are ${TRANSPORT_KEY_BYTES} bytes each`);
  if (measurement.length !== MEASUREMENT_BYTES)
    throw new LaunchSecretError(
      'BAD_MEASUREMENT',
      `the measurement is ${measurement.length} bytes, expected ${MEASUREMENT_BYTES}`,
    );
  if (plaintext.length === 0 || plaintext.length % LAUNCH_SECRET_ALIGNMENT !== 0)
    throw new LaunchSecretError(
      'BAD_LENGTH',
      `the secret is ${plaintext.length} bytes; LAUNCH_SECRET needs a non-zero multiple of ` +
        `${LAUNCH_SECRET_ALIGNMENT} (pad it, as encodeEfiSecretTable does)`,
    );
  if (plaintext.length > 0xffff_ffff)
    throw new LaunchSecretError('BAD_LENGTH', 'the secret does not fit the u32 length fields');
  const iv = Buffer.from(input.iv ?? (input.random ?? randomBytes)(16));
  if (iv.length !== 16) throw new LaunchSecretError('BAD_IV', `the IV is ${iv.length} bytes, expected 16`);
  const flags = 0; // bit 0 (COMPRESSED) is the only flag, and the firmware answers UNSUPPORTED to it
  const ciphertext = aes128Ctr(tek, iv, plaintext);
  const bound =
    input.firmware === undefined || hasMeasureContext(input.firmware) ? measurement : Buffer.alloc(0);
  const mac = packetMac(tik, ChannelContext.SECRET, flags, iv, plaintext.length, ciphertext, bound);
  return { header: PacketHeader.encode({ flags, iv, mac }), ciphertext, iv };
}
