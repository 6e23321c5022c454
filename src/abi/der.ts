// A minimal DER reader (ITU-T X.690 §8, §10): just enough to walk an X.509 certificate to its
// extensions and read AMD's VCEK/VLEK extensions (sev-reference §3.4; go-sev-guest kds/kds.go).
// Malformed input is an AbiDecodeError naming the element and its byte offset, never a RangeError.
import { AbiDecodeError } from './layout.js';

/** One DER element: tag byte, where its content lies in the buffer, and where it ends. */
export interface DerElement {
  readonly tag: number;
  readonly constructed: boolean;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset one past the last content byte. */
  readonly end: number;
}

export const DER_TAG = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  SEQUENCE: 0x30,
  BOOLEAN: 0x01,
} as const;

/** Reads the element starting at `offset`; it must end by `limit` (default: the buffer's end). */
export function derRead(buf: Uint8Array, offset: number, what = 'element', limit = buf.length): DerElement {
  const fail = (reason: string, at = offset): never => {
    throw new AbiDecodeError('DER', what, at, reason);
  };
  if (offset + 2 > limit) fail('truncated header');
  const tag = buf[offset] as number;
  if ((tag & 0x1f) === 0x1f) fail('multi-byte tags are not supported');
  let len = buf[offset + 1] as number;
  let at = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) fail('indefinite length is not DER');
    if (n > 4) fail(`length of ${n} bytes is too long`);
    if (at + n > limit) fail('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[at + i] as number);
    at += n;
  }
  if (at + len > limit) fail(`content of ${len} bytes runs past the end (${limit - at} left)`);
  return { tag, constructed: (tag & 0x20) !== 0, start: offset, contentStart: at, end: at + len };
}

/** The elements inside a constructed element, in order; they must fill it exactly. */
export function derChildren(buf: Uint8Array, parent: DerElement, what = 'element'): DerElement[] {
  if (!parent.constructed)
    throw new AbiDecodeError(
      'DER',
      what,
      parent.start,
      `tag 0x${parent.tag.toString(16)} is not constructed`,
    );
  const out: DerElement[] = [];
  let at = parent.contentStart;
  while (at < parent.end) {
    const el = derRead(buf, at, what, parent.end);
    out.push(el);
    at = el.end;
  }
  return out;
}

/** The content bytes of an element. */
export function derContent(buf: Uint8Array, el: DerElement): Buffer {
  return Buffer.from(buf.subarray(el.contentStart, el.end));
}

function expectTag(el: DerElement, tag: number, what: string): void {
  if (el.tag !== tag)
    throw new AbiDecodeError(
      'DER',
      what,
      el.start,
      `expected tag 0x${tag.toString(16)}, found 0x${el.tag.toString(16)}`,
    );
}

/** Dotted-decimal form of an OBJECT IDENTIFIER's content bytes. */
export function derOidToString(content: Uint8Array, what = 'OBJECT IDENTIFIER', at = 0): string {
  if (content.length === 0) throw new AbiDecodeError('DER', what, at, 'empty OBJECT IDENTIFIER');
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < content.length; i++) {
    const b = content[i] as number;
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) throw new AbiDecodeError('DER', what, at + i, 'arc too large');
    if ((b & 0x80) === 0) {
      arcs.push(v);
      v = 0;
    } else if (i === content.length - 1) {
      throw new AbiDecodeError('DER', what, at + i, 'last arc is unterminated');
    }
  }
  const first = arcs[0] as number;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

/** A non-negative INTEGER's value (AMD's SPLs are small); negative values are refused. */
export function derUnsigned(buf: Uint8Array, el: DerElement, what: string): number {
  expectTag(el, DER_TAG.INTEGER, what);
  const c = buf.subarray(el.contentStart, el.end);
  if (c.length === 0) throw new AbiDecodeError('DER', what, el.start, 'empty INTEGER');
  if ((c[0] as number) & 0x80) throw new AbiDecodeError('DER', what, el.start, 'negative INTEGER');
  if (c.length > 7)
    throw new AbiDecodeError('DER', what, el.start, `INTEGER of ${c.length} bytes is too large`);
  let v = 0;
  for (const b of c) v = v * 256 + b;
  return v;
}

/** One X.509 v3 extension (RFC 5280 §4.1): its OID, criticality and the bytes inside extnValue. */
export interface X509Extension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Buffer;
  /** Offset of extnValue's content in the certificate. */
  readonly offset: number;
}

/**
 * The extensions of a DER X.509 certificate, in order: Certificate → tbsCertificate → [3] EXPLICIT
 * Extensions. A certificate without extensions gives an empty list.
 */
export function x509Extensions(der: Uint8Array): X509Extension[] {
  const cert = derRead(der, 0, 'Certificate');
  expectTag(cert, DER_TAG.SEQUENCE, 'Certificate');
  const [tbs] = derChildren(der, cert, 'Certificate');
  if (tbs === undefined) throw new AbiDecodeError('DER', 'tbsCertificate', cert.contentStart, 'missing');
  expectTag(tbs, DER_TAG.SEQUENCE, 'tbsCertificate');
  const extsWrapper = derChildren(der, tbs, 'tbsCertificate').find((e) => e.tag === 0xa3);
  if (extsWrapper === undefined) return [];
  const [exts] = derChildren(der, extsWrapper, 'extensions');
  if (exts === undefined) return [];
  expectTag(exts, DER_TAG.SEQUENCE, 'extensions');
  return derChildren(der, exts, 'extensions').map((ext) => {
    expectTag(ext, DER_TAG.SEQUENCE, 'Extension');
    const parts = derChildren(der, ext, 'Extension');
    const oidEl = parts[0];
    const valueEl = parts[parts.length - 1];
    if (oidEl === undefined || valueEl === undefined || parts.length < 2 || parts.length > 3)
      throw new AbiDecodeError(
        'DER',
        'Extension',
        ext.start,
        `expected 2 or 3 elements, found ${parts.length}`,
      );
    expectTag(oidEl, DER_TAG.OID, 'Extension.extnID');
    expectTag(valueEl, DER_TAG.OCTET_STRING, 'Extension.extnValue');
    const critEl = parts.length === 3 ? parts[1] : undefined;
    if (critEl !== undefined) expectTag(critEl, DER_TAG.BOOLEAN, 'Extension.critical');
    return {
      oid: derOidToString(
        der.subarray(oidEl.contentStart, oidEl.end),
        'Extension.extnID',
        oidEl.contentStart,
      ),
      critical: critEl !== undefined && der[critEl.contentStart] !== 0,
      value: derContent(der, valueEl),
      offset: valueEl.contentStart,
    };
  });
}
