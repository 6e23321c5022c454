// A simulated AMD root: ARK (self-signed) and ASK, RSA-4096 with RSA-PSS SHA-384 — the shape of AMD's real
// Rome+ roots — in two encodings over the same two keys: AMD's root-key format (1600 bytes, key IDs that
// begin "SIMULATED") for the legacy SEV chain, and X.509 per SNP product (ARK-Milan-SIMULATED,
// SEV-Milan-SIMULATED, …, OU "SIMULATED") for the SNP chain ARK → ASK → VCEK (sev-reference §3.4). It
// stands for AMD's signing service: it signs each chip's CEK at "manufacturing" and, for the simulated KDS,
// each VCEK certificate. AMD's real roots reject everything it signs.
//
// RSA-4096 generation takes seconds, so a root is created once and kept in a cache directory
// (SEVSIM_AMD_ROOT_DIR, default <tmpdir>/sevsim-simulated-amd-root-<uid>, private to the user); every
// simulated platform on the machine then chains to the same root, as real chips chain to AMD's. The X.509
// ARK and ASK are made together with the keys and stored; the ARK's private key is then dropped, as AMD
// keeps its ARK offline. Roots cached before the X.509 certificates existed (root.json) cannot gain them
// without that key, so this version keeps its root in root-v2.json.
import {
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  type KeyObject,
} from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AMD_OID,
  type AmdRootCert,
  SevCertAlgo,
  SevCertUsage,
  amdRootCertSignedLength,
  encodeAmdRootCert,
  encodeSevCert,
  sevCertSignedBytes,
  type SevCert,
} from '../abi/index.js';
import {
  type X509NameAttribute,
  X509_OID,
  derBitString,
  derImplicitPrimitive,
  derBoolean,
  derInteger,
  derIa5String,
  derOctetString,
  derSequence,
  rsassaPssSha384AlgorithmIdentifier,
  x509Certificate,
  x509Extension,
  x509Name,
  x509TbsCertificate,
} from '../abi/der-writer.js';
import { rsaPssSignLe, rsaPublicKeyToLe } from '../crypto/index.js';
import { type SnpProduct, SNP_PRODUCTS, SNP_PRODUCT_NAMES, tcbSpls } from './vcek.js';

const KEY_BITS = 4096;
/** Key IDs start with this, in ASCII: the root says it is simulated. */
export const SIMULATED_KEY_ID_PREFIX = Buffer.from('SIMULATED', 'ascii');

/** The X.509 roots of one SNP product: ARK (self-signed) and ASK (signed by the ARK), DER. */
export interface SnpRootCertificates {
  readonly ark: Buffer;
  readonly ask: Buffer;
}

/** What AMD's KDS puts in a VCEK certificate. */
export interface VcekCertificateRequest {
  readonly product: SnpProduct;
  /** The VCEK's public key (P-384). A private key is refused: certificates carry public keys only. */
  readonly publicKey: KeyObject;
  /** The chip's hwID: 64 bytes (Milan, Genoa) or 8 (Turin). */
  readonly hwId: Uint8Array;
  /** The TCB_VERSION the VCEK belongs to (its SPLs become the certificate's extensions). */
  readonly tcb: bigint;
  /** Start of validity (default now); the certificate is valid 7 years, as AMD's VCEKs are. */
  readonly notBefore?: Date;
}

/** A VCEK certificate request the simulated AMD cannot honour (wrong key type, hwID length, …). */
export class VcekCertificateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VcekCertificateError';
  }
}

/** AMD's signing service for simulated chips: the root certificates, and signatures with the ASK. */
export interface SimulatedAmdRoot {
  /** ARK and ASK certificates (1600 bytes each, AMD root-key format). */
  readonly ark: Buffer;
  readonly ask: Buffer;
  /** Signs a CEK body with the ASK (slot usage ASK 0x13, algo RSA_SHA384). */
  signCek(cek: SevCert): SevCert;
  /** The product's X.509 ARK and ASK (the same RSA keys as `ark` and `ask`). */
  snpCertificates(product: SnpProduct): SnpRootCertificates;
  /**
   * A VCEK certificate signed by the ASK with RSASSA-PSS SHA-384 (salt 48), shaped like the ones AMD's KDS
   * issues: serial 0, issuer the product's ASK, subject CN SEV-VCEK, AMD's extensions (structVersion,
   * productName, the SPLs, hwID as raw bytes). DER.
   */
  issueVcekCertificate(request: VcekCertificateRequest): Buffer;
}

/** Marks every name of the simulated root: its certificates say they are not AMD's. */
export const SIMULATED_MARK = 'SIMULATED';

/** AMD's name layout (OU, C, L, ST, O, CN — the order of real certificates), with OU saying SIMULATED. */
export function simulatedAmdName(commonName: string): X509NameAttribute[] {
  return [
    { oid: X509_OID.organizationalUnitName, value: SIMULATED_MARK, type: 'utf8' },
    { oid: X509_OID.countryName, value: 'US', type: 'printable' },
    { oid: X509_OID.localityName, value: 'Santa Clara', type: 'utf8' },
    { oid: X509_OID.stateOrProvinceName, value: 'CA', type: 'utf8' },
    { oid: X509_OID.organizationName, value: 'Advanced Micro Devices', type: 'utf8' },
    { oid: X509_OID.commonName, value: commonName, type: 'utf8' },
  ];
}

/** Subject CNs of a product's simulated ARK and ASK ("ARK-Milan-SIMULATED", "SEV-Milan-SIMULATED"). */
export function simulatedRootCommonNames(product: SnpProduct): { ark: string; ask: string } {
  const name = SNP_PRODUCTS[product].kdsName;
  return { ark: `ARK-${name}-${SIMULATED_MARK}`, ask: `SEV-${name}-${SIMULATED_MARK}` };
}

/** The validity AMD gives its certificates: 25 years for ARK/ASK, 7 for VCEKs. */
const ROOT_YEARS = 25;
const VCEK_YEARS = 7;

function plusYears(d: Date, years: number): Date {
  const out = new Date(d.getTime());
  out.setUTCFullYear(out.getUTCFullYear() + years);
  return out;
}

/** X.509 has second resolution; dropping the milliseconds keeps validity checks honest. */
function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

/** RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48 — what AMD's ASK and ARK sign with. */
function rsaPssSign(key: KeyObject, tbs: Uint8Array): Buffer {
  return sign('sha384', tbs, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 });
}

/** RFC 5280 §4.2.1.2 method 1, as AMD computes it: SHA-1 of the PKCS#1 RSAPublicKey. */
function keyIdentifier(key: KeyObject): Buffer {
  // Always of the public key: exporting a private key as PKCS#1 would hash the private key.
  const pkcs1 = publicOf(key).export({ type: 'pkcs1', format: 'der' });
  return createHash('sha1').update(pkcs1).digest();
}

function publicOf(key: KeyObject): KeyObject {
  return key.type === 'private' ? createPublicKey(key) : key;
}

function spki(key: KeyObject): Buffer {
  return publicOf(key).export({ type: 'spki', format: 'der' });
}

/** A product's X.509 ARK and ASK with AMD's extensions (checked against amd-roots/<product>/{ark,ask}.pem). */
function snpRootCertificates(
  product: SnpProduct,
  arkKey: KeyObject,
  askKey: KeyObject,
  now: Date,
): SnpRootCertificates {
  const cns = simulatedRootCommonNames(product);
  const arkName = x509Name(simulatedAmdName(cns.ark));
  const askName = x509Name(simulatedAmdName(cns.ask));
  const serial = BigInt(SNP_PRODUCTS[product].serialPrefix) << 16n;
  // AMD's ARK/ASK spell out trailerField 1 in the PSS parameters.
  const alg = rsassaPssSha384AlgorithmIdentifier({ explicitTrailerField: true });
  const notBefore = wholeSeconds(now);
  const notAfter = plusYears(notBefore, ROOT_YEARS);
  const arkId = keyIdentifier(arkKey);
  // AMD's bytes: KeyUsage 03 02 01 06 (keyCertSign, cRLSign) on the ARK and 03 02 01 04 (keyCertSign)
  // on the ASK, both with one unused bit as AMD writes them. AMD's CRL distribution points name
  // kdsintf.amd.com; the simulated root publishes no CRL, so it carries none.
  const arkTbs = x509TbsCertificate({
    serialNumber: serial,
    signatureAlgorithm: alg,
    issuer: arkName,
    subject: arkName,
    notBefore,
    notAfter,
    subjectPublicKeyInfo: spki(arkKey),
    extensions: [
      x509Extension(X509_OID.keyUsage, derBitString(Buffer.from([0x06]), 1), true),
      x509Extension(X509_OID.subjectKeyIdentifier, derOctetString(arkId)),
      x509Extension(X509_OID.basicConstraints, derSequence(derBoolean(true)), true),
    ],
  });
  const askTbs = x509TbsCertificate({
    serialNumber: serial + 1n,
    signatureAlgorithm: alg,
    issuer: arkName,
    subject: askName,
    notBefore,
    notAfter,
    subjectPublicKeyInfo: spki(askKey),
    extensions: [
      x509Extension(X509_OID.subjectKeyIdentifier, derOctetString(keyIdentifier(askKey))),
      x509Extension(X509_OID.authorityKeyIdentifier, derSequence(derImplicitPrimitive(0, arkId))),
      x509Extension(X509_OID.basicConstraints, derSequence(derBoolean(true), derInteger(0)), true),
      x509Extension(X509_OID.keyUsage, derBitString(Buffer.from([0x04]), 1), true),
    ],
  });
  return {
    ark: x509Certificate(arkTbs, alg, rsaPssSign(arkKey, arkTbs)),
    ask: x509Certificate(askTbs, alg, rsaPssSign(arkKey, askTbs)),
  };
}

function keyId(): Buffer {
  return Buffer.concat([SIMULATED_KEY_ID_PREFIX, randomBytes(16 - SIMULATED_KEY_ID_PREFIX.length)]);
}

function rootCert(
  key: KeyObject,
  usage: number,
  id: Buffer,
  certifyingId: Buffer,
  signer: KeyObject,
): Buffer {
  const { modulus, exponent } = rsaPublicKeyToLe(key, KEY_BITS / 8, KEY_BITS / 8);
  const unsigned: AmdRootCert = {
    version: 1,
    keyId: id,
    certifyingId,
    keyUsage: usage,
    reserved: Buffer.alloc(16),
    pubexpBits: KEY_BITS,
    modulusBits: KEY_BITS,
    pubexp: exponent,
    modulus,
    signature: undefined,
  };
  const signedPart = encodeAmdRootCert(unsigned).subarray(0, amdRootCertSignedLength(unsigned));
  return encodeAmdRootCert({ ...unsigned, signature: rsaPssSignLe(signer, 'sha384', signedPart) });
}

/** AMD's VCEK extensions in AMD's order (real VCEKs: spl4–spl7 sit between teeSPL and snpSPL; Turin has fmcSPL first and no spl4). */
function vcekExtensions(product: SnpProduct, hwId: Uint8Array, tcb: bigint): Buffer[] {
  const info = SNP_PRODUCTS[product];
  let spls: ReturnType<typeof tcbSpls>;
  try {
    spls = tcbSpls(product, tcb);
  } catch (err) {
    throw new VcekCertificateError(err instanceof Error ? err.message : String(err));
  }
  const int = (oid: string, v: number): Buffer => x509Extension(oid, derInteger(v));
  // The reserved SPLs are zero: tcbSpls refuses a TCB with a reserved byte set.
  const order: [string, number][] =
    info.tcbLayout === 'turin'
      ? [
          [AMD_OID.fmcSPL, spls.fmc ?? 0],
          [AMD_OID.blSPL, spls.bootloader ?? 0],
          [AMD_OID.teeSPL, spls.tee ?? 0],
          [AMD_OID.snpSPL, spls.snp ?? 0],
          [AMD_OID.spl5, 0],
          [AMD_OID.spl6, 0],
          [AMD_OID.spl7, 0],
          [AMD_OID.ucodeSPL, spls.microcode ?? 0],
        ]
      : [
          [AMD_OID.blSPL, spls.bootloader ?? 0],
          [AMD_OID.teeSPL, spls.tee ?? 0],
          [AMD_OID.spl4, 0],
          [AMD_OID.spl5, 0],
          [AMD_OID.spl6, 0],
          [AMD_OID.spl7, 0],
          [AMD_OID.snpSPL, spls.snp ?? 0],
          [AMD_OID.ucodeSPL, spls.microcode ?? 0],
        ];
  return [
    int(AMD_OID.structVersion, info.structVersion),
    x509Extension(AMD_OID.productName, derIa5String(info.productName)),
    ...order.map(([oid, v]) => int(oid, v)),
    // AMD's KDS puts the hwID bytes directly into extnValue, with no OCTET STRING of its own (go-sev-guest
    // kds.go: "for some reason the KDS doesn't add that for the HWID").
    x509Extension(AMD_OID.hwID, hwId),
  ];
}

class Root implements SimulatedAmdRoot {
  readonly #askKey: KeyObject;
  readonly #snp: Readonly<Record<SnpProduct, SnpRootCertificates>>;

  constructor(
    readonly ark: Buffer,
    readonly ask: Buffer,
    askKey: KeyObject,
    snp: Record<SnpProduct, SnpRootCertificates>,
  ) {
    this.#askKey = askKey;
    this.#snp = snp;
  }

  signCek(cek: SevCert): SevCert {
    const signature = rsaPssSignLe(this.#askKey, 'sha384', sevCertSignedBytes(encodeSevCert(cek)));
    const slot = {
      type: 'rsa' as const,
      usage: SevCertUsage.ASK,
      algo: SevCertAlgo.RSA_SHA384,
      signature: Buffer.concat([signature, Buffer.alloc(0x200 - signature.length)]),
    };
    return { ...cek, signatures: [slot, { type: 'empty' }] };
  }

  snpCertificates(product: SnpProduct): SnpRootCertificates {
    const certs = Object.hasOwn(this.#snp, product) ? this.#snp[product] : undefined;
    if (certs === undefined) throw new VcekCertificateError(`"${String(product)}" is not an SNP product`);
    return { ark: Buffer.from(certs.ark), ask: Buffer.from(certs.ask) };
  }

  issueVcekCertificate(request: VcekCertificateRequest): Buffer {
    const { product, publicKey, hwId, tcb } = request;
    const info = Object.hasOwn(SNP_PRODUCTS, product) ? SNP_PRODUCTS[product] : undefined;
    if (info === undefined) throw new VcekCertificateError(`"${String(product)}" is not an SNP product`);
    if (
      publicKey.type !== 'public' ||
      publicKey.asymmetricKeyType !== 'ec' ||
      publicKey.asymmetricKeyDetails?.namedCurve !== 'secp384r1'
    )
      throw new VcekCertificateError('a VCEK certificate needs the VCEK’s P-384 public key');
    if (hwId.length !== info.hwIdBytes)
      throw new VcekCertificateError(
        `a ${info.kdsName} hwID has ${info.hwIdBytes} bytes, got ${hwId.length}`,
      );
    const extensions = vcekExtensions(product, hwId, tcb);
    const issuer = x509Name(simulatedAmdName(simulatedRootCommonNames(product).ask));
    const notBefore = wholeSeconds(request.notBefore ?? new Date());
    // Current KDS VCEKs omit the DEFAULT trailerField (2023 ones spelled it out, like the ARK/ASK).
    const alg = rsassaPssSha384AlgorithmIdentifier({ explicitTrailerField: false });
    const tbs = x509TbsCertificate({
      serialNumber: 0n, // every VCEK AMD issues has serial number 0
      signatureAlgorithm: alg,
      issuer,
      subject: x509Name(simulatedAmdName('SEV-VCEK')),
      notBefore,
      notAfter: plusYears(notBefore, VCEK_YEARS),
      subjectPublicKeyInfo: spki(publicKey),
      extensions,
    });
    return x509Certificate(tbs, alg, rsaPssSign(this.#askKey, tbs));
  }

  toJSON(): string {
    return '[SimulatedAmdRoot]';
  }
}

interface StoredRoot {
  version: 2;
  ark: string;
  ask: string;
  askKey: string;
  snp: Record<SnpProduct, { ark: string; ask: string }>;
}

function generate(): StoredRoot {
  const ark = generateKeyPairSync('rsa', { modulusLength: KEY_BITS, publicExponent: 0x10001 });
  const ask = generateKeyPairSync('rsa', { modulusLength: KEY_BITS, publicExponent: 0x10001 });
  const arkId = keyId();
  const askId = keyId();
  const now = new Date();
  const snp = Object.fromEntries(
    SNP_PRODUCT_NAMES.map((p) => {
      const c = snpRootCertificates(p, ark.privateKey, ask.privateKey, now);
      return [p, { ark: c.ark.toString('base64'), ask: c.ask.toString('base64') }];
    }),
  ) as StoredRoot['snp'];
  return {
    version: 2,
    ark: rootCert(ark.privateKey, SevCertUsage.ARK, arkId, arkId, ark.privateKey).toString('base64'),
    ask: rootCert(ask.privateKey, SevCertUsage.ASK, askId, arkId, ark.privateKey).toString('base64'),
    askKey: ask.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    snp,
  };
}

const loaded = new Map<string, SimulatedAmdRoot>();

/** Per user, so another local user cannot plant a root everyone's platforms would chain to. */
function defaultRootDirectory(): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return process.env.SEVSIM_AMD_ROOT_DIR ?? join(tmpdir(), `sevsim-simulated-amd-root-${uid}`);
}

/** Refuses a root directory another user owns or others may write. */
function checkOwnership(directory: string): void {
  const st = statSync(directory);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new Error(`simulated AMD root directory ${directory} is not private to this user`);
  }
}

/** The cache file of this root format (see the header: root.json predates the X.509 certificates). */
const ROOT_FILE = 'root-v2.json';

/** The machine's simulated AMD root, created on first use. */
export function simulatedAmdRoot(directory = defaultRootDirectory()): SimulatedAmdRoot {
  const cached = loaded.get(directory);
  if (cached !== undefined) return cached;
  const file = join(directory, ROOT_FILE);
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  checkOwnership(directory);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const temp = `${file}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify(generate()), { mode: 0o600 });
    // link() never replaces: if another process won the race, everyone uses its root.
    try {
      linkSync(temp, file);
    } catch {
      /* another process created it first */
    }
    rmSync(temp, { force: true });
    text = readFileSync(file, 'utf8');
  }
  const parsed = JSON.parse(text) as Partial<StoredRoot>;
  if (parsed.version !== 2 || parsed.ark === undefined || parsed.askKey === undefined || !parsed.snp)
    throw new Error(`simulated AMD root ${file} is not a version-2 root; remove it to make a new one`);
  const snp = Object.fromEntries(
    SNP_PRODUCT_NAMES.map((p) => {
      const c = parsed.snp?.[p];
      if (c === undefined) throw new Error(`simulated AMD root ${file} has no ${p} certificates`);
      return [p, { ark: Buffer.from(c.ark, 'base64'), ask: Buffer.from(c.ask, 'base64') }];
    }),
  ) as Record<SnpProduct, SnpRootCertificates>;
  const root = new Root(
    Buffer.from(parsed.ark, 'base64'),
    Buffer.from(parsed.ask ?? '', 'base64'),
    createPrivateKey(parsed.askKey),
    snp,
  );
  loaded.set(directory, root);
  return root;
}
