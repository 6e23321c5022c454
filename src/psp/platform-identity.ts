// The platform's identity keys and certificates (sev-reference §2.8, §3.3): CEK (derived from the chip
// secret, so stable across resets, signed by AMD's ASK), OCA (self-signed while the platform owns
// itself), PEK (signed by OCA and CEK) and PDH (signed by PEK, the key-agreement key guest owners use).
// Private keys stay in this object; only certificates leave it.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import {
  type ChainCert,
  SEV_CERT_SIGNED_LENGTH,
  SEV_CERT_SIZE,
  SEV_CERT_CURVE_P384,
  type SevCert,
  SevCertAlgo,
  SevCertUsage,
  type SevSignature,
  decodeSevCert,
  encodeSevCert,
} from '../abi/index.js';
import {
  type AmdEcdsaSignature,
  type Drbg,
  type FirmwareVersion,
  ecdhP384,
  ecdsaP384Verify,
  p384PublicKeyFromAmd,
  ecdsaP384Sign,
  p384PrivateKeyFromBytes,
  p384PublicKeyToAmd,
  sevKdf,
} from '../crypto/index.js';
import type { SimulatedAmdRoot } from './simulated-amd-root.js';
import { chipIdFromSecret } from './vcek.js';

/** Bytes of randomness per P-384 key (FIPS 186-4 B.4.1: 384 + 64 bits, as the firmware draws). */
const KEY_SEED_BYTES = 56;

/** An unsigned EC certificate for `key`. */
function ecCert(
  key: KeyObject,
  usage: SevCertUsage,
  algo: SevCertAlgo,
  api: { major: number; minor: number },
): SevCert {
  const { qx, qy } = p384PublicKeyToAmd(key);
  return {
    version: 1,
    apiMajor: api.major,
    apiMinor: api.minor,
    reserved: Buffer.alloc(2),
    pubkey: { type: 'ec', usage, algo, curve: SEV_CERT_CURVE_P384, qx, qy, reserved: Buffer.alloc(0x370) },
    signatures: [{ type: 'empty' }, { type: 'empty' }],
  };
}

/**
 * ASPFW sev_cert_validate_sig: INVALID_CERTIFICATE unless a slot names the signer's usage and algorithm,
 * BAD_SIGNATURE if such a slot does not verify (or the signer's key cannot sign); undefined when valid.
 */
function firmwareSignatureStatus(
  subject: SevCert,
  subjectBytes: Buffer,
  signer: SevCert,
): 'INVALID_CERTIFICATE' | 'BAD_SIGNATURE' | undefined {
  const key = signer.pubkey;
  if (key.type !== 'ec' || key.algo !== SevCertAlgo.ECDSA_SHA256) return 'INVALID_CERTIFICATE';
  let publicKey: KeyObject;
  try {
    publicKey = p384PublicKeyFromAmd(key);
  } catch {
    return 'INVALID_CERTIFICATE';
  }
  let status: 'INVALID_CERTIFICATE' | undefined = 'INVALID_CERTIFICATE';
  for (const sig of subject.signatures) {
    if (sig.type !== 'ecdsa' || sig.usage !== key.usage || sig.algo !== key.algo) continue;
    if (!ecdsaP384Verify(publicKey, 'sha256', subjectBytes.subarray(0, SEV_CERT_SIGNED_LENGTH), sig))
      return 'BAD_SIGNATURE';
    status = undefined;
  }
  return status;
}

/** Fills the first empty slot with the signer's ECDSA P-384/SHA-256 signature (the firmware's order). */
function signInto(cert: SevCert, signer: KeyObject, signerUsage: SevCertUsage): SevCert {
  const sig: AmdEcdsaSignature = ecdsaP384Sign(
    signer,
    'sha256',
    encodeSevCert(cert).subarray(0, SEV_CERT_SIGNED_LENGTH),
  );
  const slot: SevSignature = {
    type: 'ecdsa',
    usage: signerUsage,
    algo: SevCertAlgo.ECDSA_SHA256,
    r: sig.r,
    s: sig.s,
  };
  const signatures: [SevSignature, SevSignature] = [...cert.signatures];
  const empty = signatures.findIndex((s) => s.type === 'empty');
  if (empty < 0) throw new Error('no empty signature slot');
  signatures[empty] = slot;
  return { ...cert, signatures };
}

function sevChainCert(bytes: Buffer): ChainCert {
  return { format: 'sev', cert: decodeSevCert(bytes), bytes };
}

interface OwnerKeys {
  oca: KeyObject;
  pek: KeyObject;
  pdh: KeyObject;
  ocaCert: Buffer;
  pekCert: Buffer;
  pdhCert: Buffer;
  /** PEK_CERT_IMPORT done: the OCA is the owner's, not the firmware's. */
  externallyOwned: boolean;
}

/** What PEK_CERT_IMPORT found wrong, as the firmware's status name. */
export type ImportRefusal = 'INVALID_CERTIFICATE' | 'BAD_SIGNATURE' | 'ALREADY_OWNED' | 'INVALID_LENGTH';

export class PlatformIdentity {
  readonly #cek: KeyObject;
  readonly cekCert: Buffer;
  readonly chipId: Buffer;
  #owner: OwnerKeys;

  private constructor(cek: KeyObject, cekCert: Buffer, chipId: Buffer, owner: OwnerKeys) {
    this.#cek = cek;
    this.cekCert = cekCert;
    this.chipId = chipId;
    this.#owner = owner;
  }

  /** The CEK is a function of the chip secret (label "sev-chip-endorsement-key", ASPFW sev_plat.c). */
  static #cekFor(chipSecret: Uint8Array): KeyObject {
    return p384PrivateKeyFromBytes(sevKdf(chipSecret, KEY_SEED_BYTES, 'sev-chip-endorsement-key'));
  }

  /** GET_ID: 64 bytes identifying the chip, from the chip secret. */
  static #chipIdFor(chipSecret: Uint8Array): Buffer {
    return chipIdFromSecret(chipSecret);
  }

  static #ownerKeys(rng: Drbg, cek: KeyObject, fw: FirmwareVersion): OwnerKeys {
    const oca = p384PrivateKeyFromBytes(rng.generate(KEY_SEED_BYTES));
    const pek = p384PrivateKeyFromBytes(rng.generate(KEY_SEED_BYTES));
    const pdh = p384PrivateKeyFromBytes(rng.generate(KEY_SEED_BYTES));
    const api = { major: fw.major, minor: fw.minor };
    const ocaCert = signInto(
      ecCert(oca, SevCertUsage.OCA, SevCertAlgo.ECDSA_SHA256, api),
      oca,
      SevCertUsage.OCA,
    );
    const pekCert = signInto(
      signInto(ecCert(pek, SevCertUsage.PEK, SevCertAlgo.ECDSA_SHA256, api), oca, SevCertUsage.OCA),
      cek,
      SevCertUsage.CEK,
    );
    const pdhCert = signInto(
      ecCert(pdh, SevCertUsage.PDH, SevCertAlgo.ECDH_SHA256, api),
      pek,
      SevCertUsage.PEK,
    );
    return {
      oca,
      pek,
      pdh,
      ocaCert: encodeSevCert(ocaCert),
      pekCert: encodeSevCert(pekCert),
      pdhCert: encodeSevCert(pdhCert),
      externallyOwned: false,
    };
  }

  /** A factory-fresh identity: CEK from the chip secret, signed by the (simulated) ASK; new OCA, PEK, PDH. */
  static create(
    chipSecret: Uint8Array,
    root: SimulatedAmdRoot,
    rng: Drbg,
    fw: FirmwareVersion,
  ): PlatformIdentity {
    const cek = PlatformIdentity.#cekFor(chipSecret);
    const cekCert = encodeSevCert(
      root.signCek(
        ecCert(cek, SevCertUsage.CEK, SevCertAlgo.ECDSA_SHA256, { major: fw.major, minor: fw.minor }),
      ),
    );
    return new PlatformIdentity(
      cek,
      cekCert,
      PlatformIdentity.#chipIdFor(chipSecret),
      PlatformIdentity.#ownerKeys(rng, cek, fw),
    );
  }

  get pekCert(): Buffer {
    return this.#owner.pekCert;
  }
  get ocaCert(): Buffer {
    return this.#owner.ocaCert;
  }
  get pdhCert(): Buffer {
    return this.#owner.pdhCert;
  }
  get externallyOwned(): boolean {
    return this.#owner.externallyOwned;
  }

  /** PEK_GEN: a new OCA (self-signed), PEK and PDH; the platform owns itself again. */
  regeneratePek(rng: Drbg, fw: FirmwareVersion): void {
    this.#owner = PlatformIdentity.#ownerKeys(rng, this.#cek, fw);
  }

  /** PDH_GEN: a new PDH signed by the current PEK. */
  regeneratePdh(rng: Drbg, fw: FirmwareVersion): void {
    const pdh = p384PrivateKeyFromBytes(rng.generate(KEY_SEED_BYTES));
    const cert = signInto(
      ecCert(pdh, SevCertUsage.PDH, SevCertAlgo.ECDH_SHA256, { major: fw.major, minor: fw.minor }),
      this.#owner.pek,
      SevCertUsage.PEK,
    );
    this.#owner = { ...this.#owner, pdh, pdhCert: encodeSevCert(cert) };
  }

  /** PEK_CSR: the PEK certificate with both signature slots empty. */
  pekCsr(): Buffer {
    const pek = decodeSevCert(this.#owner.pekCert);
    return encodeSevCert({ ...pek, signatures: [{ type: 'empty' }, { type: 'empty' }] });
  }

  /**
   * PEK_CERT_IMPORT (ASPFW sev_mcmd_pek_cert_import): the OCA must be self-signed, the PEK signed by
   * that OCA and identical to ours in its body; the firmware then adds its CEK signature, takes the
   * new OCA, marks itself externally owned and regenerates the PDH.
   */
  importPek(pekBytes: Buffer, ocaBytes: Buffer, rng: Drbg, fw: FirmwareVersion): ImportRefusal | undefined {
    if (this.#owner.externallyOwned) return 'ALREADY_OWNED';
    if (pekBytes.length !== SEV_CERT_SIZE || ocaBytes.length !== SEV_CERT_SIZE) return 'INVALID_LENGTH';
    let oca: ChainCert;
    let pek: ChainCert;
    try {
      oca = sevChainCert(ocaBytes);
      pek = sevChainCert(pekBytes);
    } catch {
      return 'INVALID_CERTIFICATE';
    }
    if (oca.format !== 'sev' || pek.format !== 'sev') return 'INVALID_CERTIFICATE';
    // ASPFW sev_cert_validate: the signature first, then who may sign whom (usage rules).
    for (const [subject, rule] of [
      [oca, [SevCertUsage.OCA]],
      [pek, [SevCertUsage.OCA, SevCertUsage.CEK]],
    ] as const) {
      const sig = firmwareSignatureStatus(subject.cert, subject.bytes, oca.cert);
      if (sig !== undefined) return sig;
      const expected = subject === oca ? SevCertUsage.OCA : SevCertUsage.PEK;
      if (
        subject.cert.pubkey.usage !== expected ||
        !(rule as readonly number[]).includes(oca.cert.pubkey.usage)
      ) {
        return 'INVALID_CERTIFICATE';
      }
    }
    if (
      !pekBytes
        .subarray(0, SEV_CERT_SIGNED_LENGTH)
        .equals(this.#owner.pekCert.subarray(0, SEV_CERT_SIGNED_LENGTH))
    ) {
      return 'INVALID_CERTIFICATE';
    }
    // The firmware adds its CEK signature in the first empty slot; none left is a bad certificate.
    if (!pek.cert.signatures.some((sig) => sig.type === 'empty')) return 'INVALID_CERTIFICATE';
    const withCek = signInto(pek.cert, this.#cek, SevCertUsage.CEK);
    this.#owner = {
      ...this.#owner,
      ocaCert: Buffer.from(ocaBytes),
      pekCert: encodeSevCert(withCek),
      externallyOwned: true,
    };
    this.regeneratePdh(rng, fw);
    return undefined;
  }

  /** Z for a guest owner's GODH public key: ECDH with the PDH (big-endian X). */
  agreeWithPdh(peer: KeyObject): Buffer {
    return ecdhP384(this.#owner.pdh, peer);
  }

  /** ECDSA P-384/SHA-256 with the PEK (legacy ATTESTATION). */
  signWithPek(message: Uint8Array): AmdEcdsaSignature {
    return ecdsaP384Sign(this.#owner.pek, 'sha256', message);
  }

  /** The identity as the PSP keeps it in non-volatile storage (sealed there). */
  serialize(): Buffer {
    const d = (k: KeyObject): string => k.export({ format: 'der', type: 'pkcs8' }).toString('base64');
    const o = this.#owner;
    return Buffer.from(
      JSON.stringify({
        cekCert: this.cekCert.toString('base64'),
        oca: d(o.oca),
        pek: d(o.pek),
        pdh: d(o.pdh),
        ocaCert: o.ocaCert.toString('base64'),
        pekCert: o.pekCert.toString('base64'),
        pdhCert: o.pdhCert.toString('base64'),
        externallyOwned: o.externallyOwned,
      }),
    );
  }

  /** Restores an identity; the CEK is re-derived from the chip secret, never stored. */
  static deserialize(bytes: Buffer, chipSecret: Uint8Array): PlatformIdentity {
    const j = JSON.parse(bytes.toString('utf8')) as Record<string, string | boolean>;
    const key = (name: string): KeyObject =>
      createPrivateKey({ key: Buffer.from(String(j[name]), 'base64'), format: 'der', type: 'pkcs8' });
    const buf = (name: string): Buffer => Buffer.from(String(j[name]), 'base64');
    return new PlatformIdentity(
      PlatformIdentity.#cekFor(chipSecret),
      buf('cekCert'),
      PlatformIdentity.#chipIdFor(chipSecret),
      {
        oca: key('oca'),
        pek: key('pek'),
        pdh: key('pdh'),
        ocaCert: buf('ocaCert'),
        pekCert: buf('pekCert'),
        pdhCert: buf('pdhCert'),
        externallyOwned: j.externallyOwned === true,
      },
    );
  }

  toJSON(): string {
    return '[PlatformIdentity]';
  }
}
