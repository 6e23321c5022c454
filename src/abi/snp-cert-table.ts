// The certificate table of the SNP extended guest request (sev-reference §7.12; GHCB spec "SNP Extended
// Guest Request"; go-sev-guest abi.ParseSnpCertTableHeader, virtee CertTableEntry): 24-byte entries
// {GUID[16], u32 OFFSET, u32 LENGTH} ending with an all-zero entry, then the certificates. OFFSET counts
// from the start of the buffer. GUIDs are stored in RFC 4122 byte order (the hex digits in the order they
// are written) — unlike the EFI mixed-endian GUIDs of the OVMF footer table.
import { AbiDecodeError, StructLayout } from './layout.js';

const FORMAT = 'SNP certificate table';

/** Bytes of one table entry (and of the all-zero terminator). */
export const SNP_CERT_TABLE_ENTRY_SIZE = 24;

const Entry = new StructLayout(FORMAT, SNP_CERT_TABLE_ENTRY_SIZE, {
  guid: { offset: 0x00, type: 'bytes', length: 16 },
  offset: { offset: 0x10, type: 'u32' },
  length: { offset: 0x14, type: 'u32' },
});

/** The GUIDs AMD defines for the table's certificates (lower case, 8-4-4-4-12). */
export const SNP_CERT_GUID = {
  /** AMD Root Key. */
  ARK: 'c0b406a4-a803-4952-9743-3fb6014cd0ae',
  /** AMD SEV Key, or the ASVK when the table carries a VLEK: both use this GUID. */
  ASK: '4ab7b379-bbac-4fe4-a02f-05aef327c782',
  /** Versioned Chip Endorsement Key. */
  VCEK: '63da758d-e664-4564-adc5-f4b93be8accd',
  /** Versioned Loaded Endorsement Key. */
  VLEK: 'a8074bc2-a25a-483e-aae6-39c045a0b8a1',
} as const;

/** The name of a GUID AMD defines. */
export type SnpCertKind = keyof typeof SNP_CERT_GUID;

const KIND_BY_GUID = new Map<string, SnpCertKind>(
  (Object.entries(SNP_CERT_GUID) as [SnpCertKind, string][]).map(([k, g]) => [g, k]),
);

/** One certificate of the table. */
export interface SnpCertTableEntry {
  /** Lower-case 8-4-4-4-12 text form. */
  readonly guid: string;
  /** Which of AMD's certificates the GUID names; undefined for a GUID AMD does not define. */
  readonly kind: SnpCertKind | undefined;
  /** The certificate bytes (a copy). */
  readonly data: Buffer;
}

/** A GUID in RFC 4122 byte order: the 32 hex digits in the order they are written. */
export function snpGuidToBytes(guid: string): Buffer {
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(guid))
    throw new RangeError(`"${guid}" is not a GUID (8-4-4-4-12 hex digits)`);
  return Buffer.from(guid.replace(/-/g, ''), 'hex');
}

/** The text form of 16 bytes in RFC 4122 byte order. */
export function snpGuidFromBytes(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError(`a GUID has 16 bytes, got ${bytes.length}`);
  const h = Buffer.from(bytes).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const NULL_GUID = '00000000-0000-0000-0000-000000000000';

/**
 * The table and its certificates: entries in the order given, the terminator, then each certificate's
 * bytes in the same order. The result is exactly as long as that; a host copying it into the guest's
 * pages pads with zeros. Refuses (RangeError) a malformed, NULL or repeated GUID — the NULL GUID would read
 * as the terminator, a repeated one would make the guest's choice ambiguous — and a table beyond the u32
 * fields.
 */
export function encodeSnpCertTable(entries: readonly { guid: string; data: Uint8Array }[]): Buffer {
  const tableBytes = (entries.length + 1) * SNP_CERT_TABLE_ENTRY_SIZE;
  const headers: Buffer[] = [];
  const seen = new Set<string>();
  let at = tableBytes;
  entries.forEach((e, i) => {
    const guid = snpGuidToBytes(e.guid);
    const text = snpGuidFromBytes(guid);
    if (text === NULL_GUID) throw new RangeError(`entry ${i}: the NULL GUID is the table's terminator`);
    if (seen.has(text)) throw new RangeError(`entry ${i}: GUID ${text} appears twice`);
    seen.add(text);
    if (at + e.data.length > 0xffff_ffff) throw new RangeError(`entry ${i}: the table exceeds 4 GiB`);
    headers.push(Entry.encode({ guid, offset: at, length: e.data.length }));
    at += e.data.length;
  });
  return Buffer.concat([
    ...headers,
    Buffer.alloc(SNP_CERT_TABLE_ENTRY_SIZE),
    ...entries.map((e) => Buffer.from(e.data)),
  ]);
}

function fail(field: string, offset: number, reason: string): never {
  throw new AbiDecodeError(FORMAT, field, offset, reason);
}

/**
 * Decodes a certificate buffer. An empty buffer is an empty table (go-sev-guest accepts it: a host that
 * supplies no certificates). Throws AbiDecodeError naming the entry field and its offset for a table
 * that runs off the buffer without its terminator, an entry whose data lies outside the buffer or inside
 * the table, entries whose data overlap, and a repeated GUID. Bytes after the last certificate (page
 * padding) are ignored.
 */
export function decodeSnpCertTable(buf: Uint8Array): SnpCertTableEntry[] {
  if (buf.length === 0) return [];
  const raw: { guid: Buffer; offset: number; length: number; at: number }[] = [];
  let at = 0;
  for (;;) {
    if (at + SNP_CERT_TABLE_ENTRY_SIZE > buf.length)
      fail(
        `entry[${raw.length}]`,
        at,
        `the buffer (${buf.length} bytes) ends before the all-zero terminating entry`,
      );
    const e = Entry.decode(buf, at);
    const isTerminator = e.offset === 0 && e.length === 0 && e.guid.every((b) => b === 0);
    at += SNP_CERT_TABLE_ENTRY_SIZE;
    if (isTerminator) break;
    raw.push({ guid: e.guid, offset: e.offset, length: e.length, at: at - SNP_CERT_TABLE_ENTRY_SIZE });
  }
  const tableEnd = at;
  const seen = new Map<string, number>();
  const out: SnpCertTableEntry[] = raw.map((e, i) => {
    const guid = snpGuidFromBytes(e.guid);
    if (guid === NULL_GUID)
      fail(`entry[${i}].guid`, e.at, 'NULL GUID in an entry that is not the terminator');
    const first = seen.get(guid);
    if (first !== undefined) fail(`entry[${i}].guid`, e.at, `GUID ${guid} already names entry ${first}`);
    seen.set(guid, i);
    if (e.offset < tableEnd)
      fail(
        `entry[${i}].offset`,
        e.at + 0x10,
        `data at 0x${e.offset.toString(16)} lies inside the table (which ends at 0x${tableEnd.toString(16)})`,
      );
    if (e.offset + e.length > buf.length)
      fail(
        `entry[${i}].length`,
        e.at + 0x14,
        `data [0x${e.offset.toString(16)}, 0x${(e.offset + e.length).toString(16)}) runs past the buffer's ${buf.length} bytes`,
      );
    return {
      guid,
      kind: KIND_BY_GUID.get(guid),
      data: Buffer.from(buf.subarray(e.offset, e.offset + e.length)),
    };
  });
  // Overlap: sort by offset and compare neighbours (empty entries overlap nothing).
  const spans = raw
    .map((e, i) => ({ i, start: e.offset, end: e.offset + e.length, at: e.at }))
    .filter((s) => s.end > s.start)
    .sort((a, b) => a.start - b.start || a.i - b.i);
  for (let k = 1; k < spans.length; k++) {
    const prev = spans[k - 1] as (typeof spans)[number];
    const cur = spans[k] as (typeof spans)[number];
    if (cur.start < prev.end) {
      const later = cur.i > prev.i ? cur : prev;
      const other = later === cur ? prev : cur;
      fail(
        `entry[${later.i}].offset`,
        later.at + 0x10,
        `data [0x${later.start.toString(16)}, 0x${later.end.toString(16)}) overlaps entry ${other.i}'s [0x${other.start.toString(16)}, 0x${other.end.toString(16)})`,
      );
    }
  }
  return out;
}

/** The certificate of a kind in a decoded table (ASK also finds an ASVK: they share a GUID). */
export function snpCertByKind(entries: readonly SnpCertTableEntry[], kind: SnpCertKind): Buffer | undefined {
  return entries.find((e) => e.kind === kind)?.data;
}
