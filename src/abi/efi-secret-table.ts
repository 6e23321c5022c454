// The EFI secret table: what a guest owner injects with LAUNCH_SECRET into the secret area OVMF reserves
// (OvmfPkg/AmdSev SecretDxe publishes it; Linux drivers/virt/coco/efi_secret reads it; sevctl `secret
// build` writes it). Little-endian, no alignment inside:
//
//   0x00 GUID  1e74f542-71dd-4d66-963e-ef4287ff173b      (table header)
//   0x10 u32   length of the table, header included, padding excluded
//   0x14       entries: { GUID, u32 length (= 20 + data), data } …
//   …          zero padding to a multiple of 16 bytes (LAUNCH_SECRET moves 16-byte multiples)
//
// GUIDs are stored in the EFI ("bytes_le") order: sevctl writes `Uuid::to_bytes_le()`, Linux compares
// with EFI_GUID(0x1e74f542, 0x71dd, 0x4d66, …). The padding is not counted in the header's length (sevctl
// measurement.rs build_table pads after encoding the header).
import { AbiDecodeError, StructLayout } from './layout.js';
import { GUID_SIZE, guidFromBytes, guidToBytes } from './ovmf-footer.js';

/** The GUID that opens a populated secret area (Linux EFI_SECRET_TABLE_HEADER_GUID). */
export const EFI_SECRET_TABLE_HEADER_GUID = '1e74f542-71dd-4d66-963e-ef4287ff173b';
/** An entry with this GUID is a deleted secret: Linux skips it (efi_secret.c). */
export const EFI_NULL_GUID = '00000000-0000-0000-0000-000000000000';
/** LAUNCH_SECRET needs a 16-byte multiple (ASPFW: guest_len 16-byte aligned), so tables are padded to it. */
export const EFI_SECRET_TABLE_ALIGNMENT = 16;
/** Linux exposes at most this many secrets (efi_secret.c EFI_SECRET_NUM_FILES); later ones are dropped. */
export const LINUX_EFI_SECRET_MAX_ENTRIES = 64;

const FORMAT = 'EFI secret table';

// Linux efi_secret.c struct secret_header / struct secret_entry (both packed, 20 bytes)
const TableHeader = new StructLayout(FORMAT, 20, {
  guid: { offset: 0x00, type: 'bytes', length: GUID_SIZE },
  length: { offset: 0x10, type: 'u32' },
});
const EntryHeader = new StructLayout(`${FORMAT} entry`, 20, {
  guid: { offset: 0x00, type: 'bytes', length: GUID_SIZE },
  length: { offset: 0x10, type: 'u32' },
});
/** Bytes of the table header and of each entry header. */
export const EFI_SECRET_HEADER_SIZE = TableHeader.size;

/** One secret: the GUID names its use (e.g. a disk passphrase), the data is opaque. */
export interface EfiSecretEntry {
  /** Lower-case text form, e.g. "736869e5-84f0-4973-92ec-06879ce3da0b". */
  readonly guid: string;
  readonly data: Buffer;
}

/** A decoded table. */
export interface EfiSecretTable {
  /** Every entry in order, deleted ones (NULL GUID) included. */
  readonly entries: readonly EfiSecretEntry[];
  /** The header's length: header and entries, without the padding. */
  readonly length: number;
  /** Bytes after `length` in the buffer given (the padding, or the rest of the secret area). */
  readonly trailingLength: number;
}

/** Why a set of secrets cannot become a table the guest will read back intact. */
export type EfiSecretTableErrorCode =
  'BAD_GUID' | 'NULL_GUID' | 'DUPLICATE_GUID' | 'TOO_MANY_ENTRIES' | 'TOO_LARGE';

/** A table the encoder refuses to build; `code` says which rule, the message which entry. */
export class EfiSecretTableError extends Error {
  constructor(
    readonly code: EfiSecretTableErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'EfiSecretTableError';
  }
}

/** Normalises a GUID's text form (lower case), or throws BAD_GUID. */
function entryGuidBytes(guid: string, index: number): Buffer {
  try {
    return guidToBytes(guid);
  } catch {
    throw new EfiSecretTableError(
      'BAD_GUID',
      `secret ${index + 1}: "${guid}" is not a GUID (8-4-4-4-12 hex digits)`,
    );
  }
}

/**
 * The table for `entries`, padded with zeros to a multiple of 16 bytes — the plaintext of LAUNCH_SECRET.
 * Refuses what the guest would not read back intact: a NULL GUID (Linux treats it as deleted), the same
 * GUID twice (Linux fails to create the second file and drops every secret), more than 64 entries
 * (Linux ignores the rest), or more than 4 GiB.
 */
export function encodeEfiSecretTable(entries: readonly { guid: string; data: Uint8Array }[]): Buffer {
  if (entries.length > LINUX_EFI_SECRET_MAX_ENTRIES)
    throw new EfiSecretTableError(
      'TOO_MANY_ENTRIES',
      `${entries.length} secrets; Linux's efi_secret exposes only the first ${LINUX_EFI_SECRET_MAX_ENTRIES}`,
    );
  const seen = new Map<string, number>();
  const parts: Buffer[] = [];
  let length = EFI_SECRET_HEADER_SIZE;
  entries.forEach((e, i) => {
    const guid = entryGuidBytes(e.guid, i);
    const text = guidFromBytes(guid);
    if (text === EFI_NULL_GUID)
      throw new EfiSecretTableError(
        'NULL_GUID',
        `secret ${i + 1}: the NULL GUID marks a deleted entry; the guest would skip it`,
      );
    const first = seen.get(text);
    if (first !== undefined)
      throw new EfiSecretTableError(
        'DUPLICATE_GUID',
        `secrets ${first + 1} and ${i + 1} share the GUID ${text}; Linux would refuse the whole table`,
      );
    seen.set(text, i);
    const entryLength = EFI_SECRET_HEADER_SIZE + e.data.length;
    length += entryLength;
    if (length > 0xffff_ffff)
      throw new EfiSecretTableError('TOO_LARGE', `the table exceeds the u32 length field at secret ${i + 1}`);
    parts.push(EntryHeader.encode({ guid, length: entryLength }), Buffer.from(e.data));
  });
  const header = TableHeader.encode({ guid: guidToBytes(EFI_SECRET_TABLE_HEADER_GUID), length });
  const padding =
    (EFI_SECRET_TABLE_ALIGNMENT - (length % EFI_SECRET_TABLE_ALIGNMENT)) % EFI_SECRET_TABLE_ALIGNMENT;
  return Buffer.concat([header, ...parts, Buffer.alloc(padding)]);
}

function fail(field: string, offset: number, reason: string): never {
  throw new AbiDecodeError(FORMAT, field, offset, reason);
}

/** How to treat the bytes after the table's length. */
export interface EfiSecretTableDecodeOptions {
  /**
   * `zero` (default): they must be zero, as the encoder's padding is. `any`: ignore them, as Linux does
   * when it reads the table out of a larger secret area.
   */
  readonly trailing?: 'zero' | 'any';
}

/**
 * Decodes a table with the checks Linux's efi_secret applies (header GUID, a length that covers the
 * header and fits the buffer, every entry at least its 20-byte header and inside the table), and two
 * more: the entries must fill the table exactly, and (by default) the bytes after it must be zero.
 * Throws AbiDecodeError naming the field and its offset.
 */
export function decodeEfiSecretTable(
  bytes: Uint8Array,
  options: EfiSecretTableDecodeOptions = {},
): EfiSecretTable {
  const h = TableHeader.decode(bytes); // names the field a short buffer cuts
  if (guidFromBytes(h.guid) !== EFI_SECRET_TABLE_HEADER_GUID)
    fail(
      'guid',
      0x00,
      `${guidFromBytes(h.guid)} is not the secret table GUID ${EFI_SECRET_TABLE_HEADER_GUID}`,
    );
  if (h.length < EFI_SECRET_HEADER_SIZE)
    fail('length', 0x10, `length ${h.length} is less than the ${EFI_SECRET_HEADER_SIZE}-byte header`);
  if (h.length > bytes.length)
    fail('length', 0x10, `length ${h.length} runs past the end of the ${bytes.length}-byte buffer`);
  const entries: EfiSecretEntry[] = [];
  let at = EFI_SECRET_HEADER_SIZE;
  while (at < h.length) {
    const left = h.length - at;
    const name = `entry[${entries.length}]`;
    // Linux silently stops at a remainder too short for an entry; no writer produces one, so it is refused.
    if (left < EFI_SECRET_HEADER_SIZE)
      fail(
        name,
        at,
        `${left} bytes left in the table, less than an entry header (${EFI_SECRET_HEADER_SIZE})`,
      );
    const e = EntryHeader.decode(bytes, at);
    if (e.length < EFI_SECRET_HEADER_SIZE)
      fail(
        `${name}.length`,
        at + 0x10,
        `entry length ${e.length} is less than its ${EFI_SECRET_HEADER_SIZE}-byte header`,
      );
    if (e.length > left)
      fail(
        `${name}.length`,
        at + 0x10,
        `entry length ${e.length} runs past the table's end (${left} bytes left)`,
      );
    entries.push({
      guid: guidFromBytes(e.guid),
      data: Buffer.from(bytes.subarray(at + EFI_SECRET_HEADER_SIZE, at + e.length)),
    });
    at += e.length;
  }
  if ((options.trailing ?? 'zero') === 'zero') {
    const junk = bytes.subarray(h.length).findIndex((b) => b !== 0);
    if (junk >= 0) fail('padding', h.length + junk, 'bytes after the table must be zero');
  }
  return { entries, length: h.length, trailingLength: bytes.length - h.length };
}
