// A minimal DER writer (ITU-T X.690 §8, §10) and the X.509 pieces (RFC 5280) needed to build
// certificates shaped byte for byte like AMD's SNP ARK, ASK and VCEK (sev-reference §3.4).
//
// Why not an X.509 library: AMD's certificates have quirks a generic builder normalises away — an explicit
// trailerField [3] 1 in the ARK/ASK RSASSA-PSS parameters (DER would omit the DEFAULT) but none in current
// VCEKs, NULL parameters in the hash AlgorithmIdentifiers, a key-usage BIT STRING with AMD's unused-bit
// count, AMD's own extension order (spl4–spl7 between teeSPL and snpSPL) and a hwID extnValue that is the
// raw 64 (Turin: 8) bytes rather than a DER value. Writing the few elements by hand keeps every byte under
// control, and keeps certificate building synchronous like the rest of the PSP model.

/** One attribute of a distinguished name and the string type AMD uses for it. */
export interface X509NameAttribute {
  readonly oid: string;
  readonly value: string;
  /** countryName is a PrintableString in AMD's names, everything else UTF8String. */
  readonly type: 'utf8' | 'printable' | 'ia5';
}

/** Object identifiers used by AMD's SNP certificates (RFC 5280, RFC 4055, X.520). */
export const X509_OID = {
  commonName: '2.5.4.3',
  countryName: '2.5.4.6',
  localityName: '2.5.4.7',
  stateOrProvinceName: '2.5.4.8',
  organizationName: '2.5.4.10',
  organizationalUnitName: '2.5.4.11',
  rsaEncryption: '1.2.840.113549.1.1.1',
  mgf1: '1.2.840.113549.1.1.8',
  rsassaPss: '1.2.840.113549.1.1.10',
  sha384: '2.16.840.1.101.3.4.2.2',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
} as const;

/** A definite-length element: tag byte, length (short or long form) and content. */
export function derTlv(tag: number, content: Uint8Array): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f)
    throw new RangeError(`DER tag 0x${tag.toString(16)} is not a single-byte tag`);
  const n = content.length;
  let header: Buffer;
  if (n < 0x80) header = Buffer.from([tag, n]);
  else {
    const len: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) len.unshift(v % 256);
    header = Buffer.from([tag, 0x80 | len.length, ...len]);
  }
  return Buffer.concat([header, content]);
}

/** SEQUENCE of the given encoded elements, in order. */
export function derSequence(...items: Uint8Array[]): Buffer {
  return derTlv(0x30, Buffer.concat(items));
}

/** SET OF the given encoded elements, sorted by their encodings as DER requires (X.690 §11.6). */
export function derSet(...items: Uint8Array[]): Buffer {
  const sorted = items.map((i) => Buffer.from(i)).sort((a, b) => Buffer.compare(a, b));
  return derTlv(0x31, Buffer.concat(sorted));
}

/** A non-negative INTEGER in its minimal two's-complement form. */
export function derInteger(value: bigint | number): Buffer {
  let v = BigInt(value);
  if (v < 0n) throw new RangeError('derInteger encodes non-negative values only');
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  // A set top bit would read as negative: prefix a zero byte.
  if ((bytes[0] as number) & 0x80) bytes.unshift(0);
  return derTlv(0x02, Buffer.from(bytes));
}

/** BOOLEAN: DER encodes TRUE as 0xFF. */
export function derBoolean(value: boolean): Buffer {
  return derTlv(0x01, Buffer.from([value ? 0xff : 0x00]));
}

/** NULL. */
export function derNull(): Buffer {
  return Buffer.from([0x05, 0x00]);
}

/** OBJECT IDENTIFIER from its dotted-decimal form. */
export function derOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => {
    if (!/^\d+$/.test(a)) throw new RangeError(`"${dotted}" is not a dotted-decimal OID`);
    return BigInt(a);
  });
  const [first, second] = arcs;
  if (first === undefined || second === undefined || first > 2n || (first < 2n && second >= 40n))
    throw new RangeError(`"${dotted}" is not a valid OID`);
  const out: number[] = [];
  for (const arc of [first * 40n + second, ...arcs.slice(2)]) {
    const base128: number[] = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) base128.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...base128);
  }
  return derTlv(0x06, Buffer.from(out));
}

/** OCTET STRING. */
export function derOctetString(bytes: Uint8Array): Buffer {
  return derTlv(0x04, bytes);
}

/** BIT STRING whose first content byte is the count of unused bits in the last byte. */
export function derBitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits))
    throw new RangeError(`BIT STRING cannot have ${unusedBits} unused bits here`);
  return derTlv(0x03, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** UTF8String. */
export function derUtf8String(value: string): Buffer {
  return derTlv(0x0c, Buffer.from(value, 'utf8'));
}

/** PrintableString (X.680 §41.4's character set). */
export function derPrintableString(value: string): Buffer {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value))
    throw new RangeError(`"${value}" has characters a PrintableString cannot hold`);
  return derTlv(0x13, Buffer.from(value, 'latin1'));
}

/** IA5String (7-bit ASCII). */
export function derIa5String(value: string): Buffer {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(value)) throw new RangeError(`"${value}" is not 7-bit ASCII`);
  return derTlv(0x16, Buffer.from(value, 'latin1'));
}

/** `[n]` EXPLICIT (constructed, context-specific) around one encoded element. */
export function derExplicit(tagNumber: number, inner: Uint8Array): Buffer {
  if (tagNumber < 0 || tagNumber > 30) throw new RangeError(`context tag [${tagNumber}] needs a long form`);
  return derTlv(0xa0 | tagNumber, inner);
}

/** `[n]` IMPLICIT primitive (context-specific) with the given content bytes. */
export function derImplicitPrimitive(tagNumber: number, content: Uint8Array): Buffer {
  if (tagNumber < 0 || tagNumber > 30) throw new RangeError(`context tag [${tagNumber}] needs a long form`);
  return derTlv(0x80 | tagNumber, content);
}

/**
 * An X.509 Time (RFC 5280 §4.1.2.5): UTCTime YYMMDDHHMMSSZ through 2049, GeneralizedTime
 * YYYYMMDDHHMMSSZ from 2050; fractions of a second are dropped.
 */
export function derTime(date: Date): Buffer {
  const t = date.getTime();
  if (!Number.isFinite(t)) throw new RangeError('not a valid date');
  const y = date.getUTCFullYear();
  if (y < 1950 || y > 9999) throw new RangeError(`year ${y} cannot be an X.509 time`);
  const two = (n: number): string => String(n).padStart(2, '0');
  const rest =
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  return y < 2050
    ? derTlv(0x17, Buffer.from(two(y % 100) + rest, 'ascii'))
    : derTlv(0x18, Buffer.from(String(y) + rest, 'ascii'));
}

/** A Name: one RelativeDistinguishedName (a SET of one attribute) per attribute, in the order given. */
export function x509Name(attributes: readonly X509NameAttribute[]): Buffer {
  return derSequence(
    ...attributes.map((a) =>
      derSet(
        derSequence(
          derOid(a.oid),
          a.type === 'printable'
            ? derPrintableString(a.value)
            : a.type === 'ia5'
              ? derIa5String(a.value)
              : derUtf8String(a.value),
        ),
      ),
    ),
  );
}

/**
 * AlgorithmIdentifier for RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt (RFC 4055 §3.1), with
 * NULL hash parameters as AMD writes them. AMD's ARK and ASK also spell out trailerField [3] 1 (the
 * DEFAULT); the VCEKs the KDS issues today do not.
 */
export function rsassaPssSha384AlgorithmIdentifier(opts: { explicitTrailerField: boolean }): Buffer {
  const sha384 = derSequence(derOid(X509_OID.sha384), derNull());
  return derSequence(
    derOid(X509_OID.rsassaPss),
    derSequence(
      derExplicit(0, sha384),
      derExplicit(1, derSequence(derOid(X509_OID.mgf1), sha384)),
      derExplicit(2, derInteger(48)),
      ...(opts.explicitTrailerField ? [derExplicit(3, derInteger(1))] : []),
    ),
  );
}

/** One Extension: extnID, critical only when true (DER omits the DEFAULT FALSE), extnValue's bytes. */
export function x509Extension(oid: string, value: Uint8Array, critical = false): Buffer {
  return derSequence(derOid(oid), ...(critical ? [derBoolean(true)] : []), derOctetString(value));
}

/** What a version-3 TBSCertificate holds (RFC 5280 §4.1). */
export interface X509TbsInput {
  readonly serialNumber: bigint;
  /** An AlgorithmIdentifier (e.g. from rsassaPssSha384AlgorithmIdentifier). */
  readonly signatureAlgorithm: Uint8Array;
  /** Encoded Names (x509Name). */
  readonly issuer: Uint8Array;
  readonly subject: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** A DER SubjectPublicKeyInfo (node:crypto's `export({ type: 'spki', format: 'der' })`). */
  readonly subjectPublicKeyInfo: Uint8Array;
  /** Encoded Extensions (x509Extension), in order; none omits the [3] field. */
  readonly extensions: readonly Uint8Array[];
}

/** The DER TBSCertificate — the bytes the issuer signs. */
export function x509TbsCertificate(t: X509TbsInput): Buffer {
  return derSequence(
    derExplicit(0, derInteger(2)), // v3
    derInteger(t.serialNumber),
    t.signatureAlgorithm,
    t.issuer,
    derSequence(derTime(t.notBefore), derTime(t.notAfter)),
    t.subject,
    t.subjectPublicKeyInfo,
    ...(t.extensions.length > 0 ? [derExplicit(3, derSequence(...t.extensions))] : []),
  );
}

/** The DER Certificate: TBSCertificate, signatureAlgorithm (the same as in the TBS), signatureValue. */
export function x509Certificate(
  tbs: Uint8Array,
  signatureAlgorithm: Uint8Array,
  signature: Uint8Array,
): Buffer {
  return derSequence(tbs, signatureAlgorithm, derBitString(signature));
}

/** PEM text (RFC 7468): base64 in 64-character lines between BEGIN/END lines, ending in a newline. */
export function derToPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
