// AMD's X.509 extensions in VCEK and VLEK certificates (sev-reference §3.4; go-sev-guest kds/kds.go):
// OIDs under 1.3.6.1.4.1.3704.1 — structVersion, productName, the TCB SPLs, hwID (VCEK) and cspID (VLEK).
import { AbiDecodeError } from './layout.js';
import { DER_TAG, derChildren, derRead, derUnsigned, x509Extensions } from './der.js';

export const AMD_OID_PREFIX = '1.3.6.1.4.1.3704.1';
export const AMD_OID = {
  structVersion: `${AMD_OID_PREFIX}.1`,
  productName: `${AMD_OID_PREFIX}.2`,
  blSPL: `${AMD_OID_PREFIX}.3.1`,
  teeSPL: `${AMD_OID_PREFIX}.3.2`,
  snpSPL: `${AMD_OID_PREFIX}.3.3`,
  spl4: `${AMD_OID_PREFIX}.3.4`,
  spl5: `${AMD_OID_PREFIX}.3.5`,
  spl6: `${AMD_OID_PREFIX}.3.6`,
  spl7: `${AMD_OID_PREFIX}.3.7`,
  ucodeSPL: `${AMD_OID_PREFIX}.3.8`,
  fmcSPL: `${AMD_OID_PREFIX}.3.9`,
  hwID: `${AMD_OID_PREFIX}.4`,
  cspID: `${AMD_OID_PREFIX}.5`,
} as const;

/** What AMD's extensions say about the key: the chip (hwID) or provider (cspID) and the TCB it stands for. */
export interface AmdCertExtensions {
  structVersion?: number;
  productName?: string;
  blSPL?: number;
  teeSPL?: number;
  snpSPL?: number;
  ucodeSPL?: number;
  /** Turin and later. */
  fmcSPL?: number;
  /** The chip's ID: 64 bytes on Milan/Genoa (= report CHIP_ID), 8 on Turin. VCEK only. */
  hwID?: Buffer;
  /** How hwID was encoded: raw bytes in extnValue, or a DER OCTET STRING inside it. */
  hwIDEncoding?: 'raw' | 'wrapped';
  /** The cloud provider a VLEK belongs to. */
  cspID?: string;
}

const SPL_NAMES = ['blSPL', 'teeSPL', 'snpSPL', 'ucodeSPL', 'fmcSPL', 'structVersion'] as const;

/** hwID lengths AMD issues as raw extnValue bytes. */
const RAW_HWID_LENGTHS = new Set([8, 64]);

function readString(value: Buffer, oid: string, offset: number): string {
  // AMD encodes productName as an IA5String; accept the other string types too, and bare bytes.
  try {
    const el = derRead(value, 0, oid);
    if (
      el.end === value.length &&
      (el.tag === DER_TAG.IA5_STRING || el.tag === DER_TAG.UTF8_STRING || el.tag === DER_TAG.PRINTABLE_STRING)
    )
      return value.subarray(el.contentStart).toString('latin1');
  } catch (err) {
    if (!(err instanceof AbiDecodeError)) throw err;
  }
  if (value.length === 0) throw new AbiDecodeError('AMD certificate extension', oid, offset, 'empty string');
  return value.toString('latin1');
}

/** Reads hwID either as raw bytes (8 or 64 of them) or as an OCTET STRING wrapped in extnValue. */
export function decodeHwId(value: Buffer): { hwID: Buffer; encoding: 'raw' | 'wrapped' } {
  if (RAW_HWID_LENGTHS.has(value.length)) return { hwID: Buffer.from(value), encoding: 'raw' };
  try {
    const el = derRead(value, 0, 'hwID');
    if (el.tag === DER_TAG.OCTET_STRING && el.end === value.length)
      return { hwID: Buffer.from(value.subarray(el.contentStart)), encoding: 'wrapped' };
  } catch (err) {
    if (!(err instanceof AbiDecodeError)) throw err;
  }
  return { hwID: Buffer.from(value), encoding: 'raw' };
}

/** AMD's extensions of a DER certificate (unknown AMD OIDs and other extensions are ignored). */
export function decodeAmdCertExtensions(der: Uint8Array): AmdCertExtensions {
  const out: AmdCertExtensions = {};
  const byOid = new Map<string, string>(Object.entries(AMD_OID).map(([k, v]) => [v, k]));
  for (const ext of x509Extensions(der)) {
    const name = byOid.get(ext.oid);
    if (name === undefined) continue;
    if ((SPL_NAMES as readonly string[]).includes(name)) {
      const el = derRead(ext.value, 0, name);
      if (el.end !== ext.value.length)
        throw new AbiDecodeError(
          'AMD certificate extension',
          name,
          ext.offset,
          'trailing bytes after INTEGER',
        );
      out[name as (typeof SPL_NAMES)[number]] = derUnsigned(ext.value, el, name);
    } else if (name === 'productName') {
      out.productName = readString(ext.value, name, ext.offset);
    } else if (name === 'cspID') {
      out.cspID = readString(ext.value, name, ext.offset);
    } else if (name === 'hwID') {
      const { hwID, encoding } = decodeHwId(ext.value);
      out.hwID = hwID;
      out.hwIDEncoding = encoding;
    }
  }
  return out;
}

/** Splits PEM text into DER certificates; DER input (starting with a SEQUENCE) is returned as is. */
export function certificatesFromPemOrDer(data: Uint8Array): Buffer[] {
  if (data[0] === DER_TAG.SEQUENCE) {
    const el = derRead(data, 0, 'Certificate');
    return [Buffer.from(data.subarray(0, el.end))];
  }
  const text = Buffer.from(data).toString('latin1');
  const blocks = [...text.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)];
  if (blocks.length === 0)
    throw new AbiDecodeError('certificate file', 'PEM', 0, 'neither DER (0x30) nor a PEM CERTIFICATE block');
  return blocks.map((m) => {
    const der = Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64');
    const el = derRead(der, 0, 'Certificate');
    expectWhole(el.end, der.length, m.index);
    derChildren(der, el, 'Certificate');
    return der;
  });
}

function expectWhole(end: number, length: number, at: number): void {
  if (end !== length)
    throw new AbiDecodeError(
      'certificate file',
      'PEM',
      at,
      `${length - end} trailing bytes after the certificate`,
    );
}
