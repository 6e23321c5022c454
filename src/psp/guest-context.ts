// A guest context inside the firmware (ASPFW sev_guest.h sev_guest_t): policy, state, the VEK,
// the launch digest and the transport keys. None of it leaves the PSP.
import { createHash, type Hash } from 'node:crypto';
import { type FirmwareVersion, aes128Ctr, launchMeasurementMac, packetMac } from '../crypto/index.js';
import { GuestState, type GuestStateCode, decodeSevPolicy } from '../abi/index.js';

export type Activation = 'inactive' | 'pending' | 'active';

export class GuestContext {
  state: GuestStateCode = GuestState.LUPDATE;
  asid = 0;
  activation: Activation = 'inactive';
  /** SHA-256 over every LAUNCH_UPDATE plaintext, finalised at LAUNCH_MEASURE. */
  launchDigest: Hash | undefined = createHash('sha256');
  /** The finalised digest (kept for ATTESTATION). */
  finalDigest: Buffer | undefined;
  measurement: Buffer | undefined;
  readonly #vek: Buffer;
  /** Transport keys: all zero when the launch had no session (sev-reference §10.10). */
  readonly #tek: Buffer = Buffer.alloc(16);
  readonly #tik: Buffer = Buffer.alloc(16);

  constructor(
    readonly handle: number,
    readonly policy: number,
    vekMaterial: Buffer,
  ) {
    this.#vek = Buffer.from(vekMaterial);
  }

  get encryptedState(): boolean {
    return decodeSevPolicy(this.policy).encryptedState;
  }

  /** A copy of the VEK: for the memory controller (which wipes it) or a key-sharing LAUNCH_START. */
  vekCopy(): Buffer {
    return Buffer.from(this.#vek);
  }

  /** LAUNCH_START with a session: the TEK and TIK the owner wrapped to the PDH. */
  openChannel(tek: Uint8Array, tik: Uint8Array): void {
    this.#tek.set(tek);
    this.#tik.set(tik);
  }

  /** LAUNCH_FINISH closes the channel (ASPFW sev_channel_close). */
  closeChannel(): void {
    this.#tek.fill(0);
    this.#tik.fill(0);
  }

  /** The MAC of a transport packet under the TIK. */
  packetMac(
    context: number,
    flags: number,
    iv: Uint8Array,
    guestLength: number,
    ciphertext: Uint8Array,
    measurement: Uint8Array,
  ): Buffer {
    return packetMac(this.#tik, context, flags, iv, guestLength, ciphertext, measurement);
  }

  /** Encrypts a transport payload with the TEK (AES-128-CTR; SEND_UPDATE_*). */
  encryptPacket(iv: Uint8Array, plaintext: Uint8Array): Buffer {
    return aes128Ctr(this.#tek, iv, plaintext);
  }

  /** Decrypts a transport payload with the TEK (AES-128-CTR). */
  decryptPacket(iv: Uint8Array, ciphertext: Uint8Array): Buffer {
    return aes128Ctr(this.#tek, iv, ciphertext);
  }

  /** LAUNCH_MEASURE's MAC under the TIK (which stays here). */
  measurementMac(fw: FirmwareVersion, launchDigest: Uint8Array, mnonce: Uint8Array): Buffer {
    return launchMeasurementMac(this.#tik, fw, this.policy, launchDigest, mnonce);
  }

  /** DECOMMISSION / SHUTDOWN: the context is zeroed. */
  wipe(): void {
    this.#vek.fill(0);
    this.#tek.fill(0);
    this.#tik.fill(0);
    this.launchDigest = undefined;
  }

  toJSON(): object {
    return {
      handle: this.handle,
      policy: this.policy,
      state: this.state,
      asid: this.asid,
      activation: this.activation,
    };
  }
}
