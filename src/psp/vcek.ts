// The chip's Versioned Chip Endorsement Key (VCEK): the ECDSA P-384 key that signs SNP attestation
// reports, derived from the chip secret and a TCB_VERSION (sev-reference §3.4, §7.8, §7.11), and the chip
// ID that names the chip to AMD's Key Distribution Service.
//
// AMD's published design (ASPFW sev_plat.c vcek_hash_derive / key_from_hash) is modelled honestly:
// each TCB component (boot loader, TEE, SNP firmware, microcode, and on Turin the FMC) has a "hash stick"
// — a per-component secret hashed (255 − SPL) times. Firmware running at SPL s holds the value for s, so
// it can compute the value for any s' ≤ s (hash s − s' more times) but never for s' > s: a patched
// firmware can still sign with older keys when asked, and a vulnerable old firmware cannot forge keys of
// the TCB that fixes it. The component values are combined, stretched with the SEV KDF (label
// "sev-versioned-chip-endorsement-key", as the firmware uses) to 56 bytes and mapped to a P-384 scalar by
// FIPS 186-4 B.4.1. A different TCB therefore gives a different VCEK, and the same chip and TCB always
// give the same one — which is what lets AMD's KDS certify a VCEK without asking the chip.
//
// Private keys never leave the psp layer: the functions that return or use a private key are for the PSP
// (and the simulated KDS, which stands for AMD holding the chip secrets); other layers get public keys
// and certificates only. This module is deliberately not re-exported from psp/index.ts.
import { type KeyObject, createHash, createPublicKey } from 'node:crypto';
import { SNP_REPORT_SIGNED_LENGTH, type TcbLayout } from '../abi/index.js';
import { type AmdEcdsaSignature, ecdsaP384Sign, p384PrivateKeyFromBytes, sevKdf } from '../crypto/index.js';

/** The SEV-SNP products AMD's KDS serves. */
export type SnpProduct = 'milan' | 'genoa' | 'turin';

/** What the KDS and the VCEK certificate say about a product (checked against real VCEKs). */
export interface SnpProductInfo {
  readonly product: SnpProduct;
  /** The KDS URL segment: /vcek/v1/{kdsName}/... */
  readonly kdsName: 'Milan' | 'Genoa' | 'Turin';
  /** The productName extension (1.3.6.1.4.1.3704.1.2) of its VCEKs. */
  readonly productName: string;
  /** The structVersion extension (1.3.6.1.4.1.3704.1.1): 0 Milan/Genoa, 1 Turin. */
  readonly structVersion: number;
  readonly tcbLayout: TcbLayout;
  /** hwID bytes: the whole 64-byte chip ID on Milan/Genoa, its first 8 bytes on Turin. */
  readonly hwIdBytes: 64 | 8;
  /** The high byte of AMD's ARK/ASK serial numbers (0x010000 Milan, 0x020000 Genoa, 0x030000 Turin). */
  readonly serialPrefix: number;
}

/** Per product, as real VCEKs (testdata/snp-reports/*.vcek.der) and go-sev-guest kds.go have them. */
export const SNP_PRODUCTS: Readonly<Record<SnpProduct, SnpProductInfo>> = {
  milan: {
    product: 'milan',
    kdsName: 'Milan',
    productName: 'Milan-B0',
    structVersion: 0,
    tcbLayout: 'milan-genoa',
    hwIdBytes: 64,
    serialPrefix: 1,
  },
  genoa: {
    product: 'genoa',
    kdsName: 'Genoa',
    productName: 'Genoa',
    structVersion: 0,
    tcbLayout: 'milan-genoa',
    hwIdBytes: 64,
    serialPrefix: 2,
  },
  turin: {
    product: 'turin',
    kdsName: 'Turin',
    productName: 'Turin',
    structVersion: 1,
    tcbLayout: 'turin',
    hwIdBytes: 8,
    serialPrefix: 3,
  },
};

/** The SNP products, in KDS order. */
export const SNP_PRODUCT_NAMES: readonly SnpProduct[] = ['milan', 'genoa', 'turin'];

/** A product name that is not an SNP product (Naples and Rome have no SNP, hence no VCEK). */
export class SnpProductError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnpProductError';
  }
}

/** The product for a name in either spelling ("milan" as sevsim writes it, "Milan" as AMD's KDS does). */
export function snpProduct(name: string): SnpProductInfo {
  const key = name.toLowerCase();
  // hasOwn: "constructor" or "__proto__" must not find Object.prototype's members.
  const info = Object.hasOwn(SNP_PRODUCTS, key) ? SNP_PRODUCTS[key as SnpProduct] : undefined;
  if (info === undefined)
    throw new SnpProductError(`"${name}" is not an SEV-SNP product (one of: Milan, Genoa, Turin)`);
  return info;
}

/** Bytes of the chip ID (GET_ID, and the SNP report's CHIP_ID field). */
export const CHIP_ID_BYTES = 64;

/**
 * The chip's 64-byte ID, a function of the chip secret — the one derivation every user of the chip ID
 * (GET_ID, the SNP report's CHIP_ID, the KDS's registry) goes through.
 */
export function chipIdFromSecret(chipSecret: Uint8Array): Buffer {
  return sevKdf(chipSecret, CHIP_ID_BYTES, 'sevsim-chip-id');
}

/** The hwID AMD's KDS and VCEK certificates use: 64 bytes on Milan/Genoa, the first 8 on Turin. */
export function hwIdFromChipId(chipId: Uint8Array, product: SnpProduct): Buffer {
  if (chipId.length !== CHIP_ID_BYTES)
    throw new RangeError(`a chip ID has ${CHIP_ID_BYTES} bytes, got ${chipId.length}`);
  return Buffer.from(chipId.subarray(0, SNP_PRODUCTS[product].hwIdBytes));
}

/**
 * The CHIP_ID field of an SNP report (0x1A0, 64 bytes): the chip ID on Milan/Genoa; on Turin the 8-byte
 * hwID followed by zeros, as real Turin reports have it (testdata turin-v5.report.bin).
 */
export function snpReportChipId(chipId: Uint8Array, product: SnpProduct): Buffer {
  const out = Buffer.alloc(CHIP_ID_BYTES);
  out.set(hwIdFromChipId(chipId, product));
  return out;
}

/** A TCB component that has its own hash stick. */
export type TcbComponent = 'fmc' | 'bootloader' | 'tee' | 'snp' | 'microcode';

/** TCB_VERSION byte of each component, per layout (sev-reference §7.8); the other bytes are reserved. */
const COMPONENT_BYTE: Readonly<Record<TcbLayout, Partial<Record<TcbComponent, number>>>> = {
  'milan-genoa': { bootloader: 0, tee: 1, snp: 6, microcode: 7 },
  turin: { fmc: 0, bootloader: 1, tee: 2, snp: 3, microcode: 7 },
};

/** The components of a product's TCB, in TCB_VERSION byte order (the order the seeds are combined in). */
export function tcbComponents(product: SnpProduct): readonly TcbComponent[] {
  const bytes = COMPONENT_BYTE[SNP_PRODUCTS[product].tcbLayout];
  return (Object.keys(bytes) as TcbComponent[]).sort((a, b) => (bytes[a] as number) - (bytes[b] as number));
}

/** A TCB_VERSION no VCEK exists for: out of range, or a reserved byte set. */
export class VcekTcbError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VcekTcbError';
  }
}

/**
 * Each component's SPL in `tcb` for `product`. The firmware derives keys only for TCBs whose reserved
 * bytes are zero (sev-reference §7.8), and the KDS certifies only the components it names — so a
 * reserved byte set is an error, not something to ignore.
 */
export function tcbSpls(product: SnpProduct, tcb: bigint): Readonly<Partial<Record<TcbComponent, number>>> {
  if (tcb < 0n || tcb >> 64n !== 0n) throw new VcekTcbError(`TCB_VERSION 0x${tcb.toString(16)} is not a u64`);
  const layout = SNP_PRODUCTS[product].tcbLayout;
  const byteOf = COMPONENT_BYTE[layout];
  const used = new Set(Object.values(byteOf));
  const out: Partial<Record<TcbComponent, number>> = {};
  for (let i = 0; i < 8; i++) {
    const v = Number((tcb >> BigInt(8 * i)) & 0xffn);
    if (!used.has(i) && v !== 0)
      throw new VcekTcbError(
        `TCB_VERSION 0x${tcb.toString(16).padStart(16, '0')}: byte ${i} is reserved in the ${layout} layout but is ${v}`,
      );
  }
  for (const [c, i] of Object.entries(byteOf) as [TcbComponent, number][])
    out[c] = Number((tcb >> BigInt(8 * i)) & 0xffn);
  return out;
}

/** The highest SPL a hash stick covers: the chain is 255 − SPL hashes long. */
export const MAX_SPL = 255;

function checkSpl(spl: number, what: string): void {
  if (!Number.isInteger(spl) || spl < 0 || spl > MAX_SPL)
    throw new VcekTcbError(`${what} must be an integer 0–${MAX_SPL}, got ${spl}`);
}

function sha384Times(value: Uint8Array, times: number): Buffer {
  let v = Buffer.from(value);
  for (let i = 0; i < times; i++) v = createHash('sha384').update(v).digest();
  return v;
}

/**
 * The hash-stick value of `component` at `spl`: SHA-384 applied (255 − spl) times to the component's
 * secret (itself derived from the chip secret). A secret of the chip: PSP-internal.
 */
export function hashStickSeed(chipSecret: Uint8Array, component: TcbComponent, spl: number): Buffer {
  checkSpl(spl, `${component} SPL`);
  const componentSecret = sevKdf(chipSecret, 48, `sevsim-vcek-hash-stick-${component}`);
  return sha384Times(componentSecret, MAX_SPL - spl);
}

/**
 * From a component's hash-stick value at `fromSpl`, its value at any `toSpl` ≤ `fromSpl` — what firmware
 * at `fromSpl` can do. Going up is refused: that would need to invert SHA-384.
 */
export function hashStickDescend(seed: Uint8Array, fromSpl: number, toSpl: number): Buffer {
  checkSpl(fromSpl, 'fromSpl');
  checkSpl(toSpl, 'toSpl');
  if (toSpl > fromSpl)
    throw new VcekTcbError(`a hash stick at SPL ${fromSpl} cannot reach the higher SPL ${toSpl}`);
  return sha384Times(seed, fromSpl - toSpl);
}

/**
 * The VCEK private key for `tcb` (PSP-internal: never hand it to another layer). Throws VcekTcbError for a
 * TCB with a reserved byte set.
 */
/**
 * The hash stick of `tcb`: every component's seed at its SPL, hashed together (PSP-internal: the root
 * of the VCEK and of MSG_KEY_REQ's derived keys).
 */
export function vcekHashStick(chipSecret: Uint8Array, product: SnpProduct, tcb: bigint): Buffer {
  const spls = tcbSpls(product, tcb);
  const stick = createHash('sha384');
  for (const c of tcbComponents(product)) stick.update(hashStickSeed(chipSecret, c, spls[c] as number));
  return stick.digest();
}

export function vcekPrivateKey(chipSecret: Uint8Array, product: SnpProduct, tcb: bigint): KeyObject {
  // ASPFW: rdata[56] = KDF(hashstick, "sev-versioned-chip-endorsement-key"), then key_from_hash (B.4.1).
  const rdata = sevKdf(vcekHashStick(chipSecret, product, tcb), 56, 'sev-versioned-chip-endorsement-key');
  return p384PrivateKeyFromBytes(rdata);
}

/** The VCEK public key for `tcb` — the only form of the VCEK other layers may see. */
export function vcekPublicKey(chipSecret: Uint8Array, product: SnpProduct, tcb: bigint): KeyObject {
  return createPublicKey(vcekPrivateKey(chipSecret, product, tcb));
}

/**
 * Signs an SNP attestation report with the VCEK for `tcb` (the report's REPORTED_TCB): ECDSA P-384 with
 * SHA-384 over bytes [0, 0x2A0), R and S as the 72-byte little-endian fields the report stores at 0x2A0
 * and 0x2E8 (sev-reference §7.11). What the PSP calls for MSG_REPORT_REQ.
 */
export function vcekSignReport(
  chipSecret: Uint8Array,
  product: SnpProduct,
  tcb: bigint,
  report: Uint8Array,
): AmdEcdsaSignature {
  if (report.length < SNP_REPORT_SIGNED_LENGTH)
    throw new RangeError(`a report has at least 0x2a0 signed bytes, got ${report.length}`);
  return ecdsaP384Sign(
    vcekPrivateKey(chipSecret, product, tcb),
    'sha384',
    report.subarray(0, SNP_REPORT_SIGNED_LENGTH),
  );
}
