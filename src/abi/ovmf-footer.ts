// OVMF GUIDed footer table and the SEV metadata it points to (QEMU docs/specs/sev-guest-firmware.rst and
// hw/i386/pc_sysfw_ovmf.c; edk2 OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm, X64/OvmfSevMetadata.asm;
// sev-reference §9.1).
//
// The table sits at the very end of the firmware image, just before the last 32 bytes (AP entry code,
// "VTF" signature, reset vector). It is read backwards from its footer:
//
//   … [data][u16 length][GUID] … [data][u16 length][GUID] [u16 table length][footer GUID] [32 bytes]
//
// Each entry's length counts its data, its length field and its GUID; the table length counts every
// entry plus the 18-byte footer itself. Offsets in errors are byte offsets within the image given.
import { AbiDecodeError, StructLayout } from './layout.js';

/** Bytes of an EFI GUID. */
export const GUID_SIZE = 16;

const GUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The EFI (Microsoft "bytes_le") encoding of a GUID written as text: the first three groups are stored
 * little-endian, the last two as written. This is how every GUID in OVMF and QEMU's tables is laid out.
 */
export function guidToBytes(guid: string): Buffer {
  const g = guid.toLowerCase();
  if (!GUID_PATTERN.test(g)) throw new RangeError(`not a GUID: ${guid}`);
  const hex = g.replaceAll('-', '');
  const raw = Buffer.from(hex, 'hex');
  raw.subarray(0, 4).reverse();
  raw.subarray(4, 6).reverse();
  raw.subarray(6, 8).reverse();
  return raw;
}

/** The text form (lower case) of a 16-byte EFI GUID; the inverse of {@link guidToBytes}. */
export function guidFromBytes(bytes: Uint8Array): string {
  if (bytes.length !== GUID_SIZE) throw new RangeError(`a GUID is 16 bytes, got ${bytes.length}`);
  const b = Buffer.from(bytes);
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** GUIDs of the footer table and of the entries QEMU and the calculators look for. */
export const OvmfGuid = {
  /** The table's own footer, 48 bytes before the end of the image. */
  TABLE_FOOTER: '96b582de-1fb2-45f7-baea-a366c55a082d',
  /** SEV-ES reset block ("SEV info block" in QEMU): u32 AP reset address (CS base [31:16] | IP [15:0]). */
  SEV_ES_RESET_BLOCK: '00f771de-1a7e-4fcb-890e-68c77e2fb44e',
  /** Where QEMU writes the kernel-hashes table: u32 base GPA, u32 size. */
  SEV_HASH_TABLE_RV: '7255371f-3a3b-4b04-927b-1da6efa8d454',
  /** Where LAUNCH_SECRET injects the guest owner's secret: u32 base GPA, u32 size. */
  SEV_SECRET_BLOCK: '4c2eb361-7d9b-4cc3-8081-127c90d3d294',
  /** u32 offset from the end of the image to the SEV metadata header ("ASEV"). */
  SEV_METADATA: 'dc886566-984a-4798-a75e-5585a7bf67cc',
  /** u32 offset from the end of the image to Intel TDX metadata (present in generic OVMF builds). */
  TDX_METADATA: 'e47a6535-984a-4798-865e-4685a7bf8ec2',
} as const;

/** Bytes after the footer GUID: AP entry code, "\0\0\0\0VTF\0", the 16-byte reset vector. */
export const OVMF_FOOTER_TRAILER_SIZE = 0x20;

// Every table entry and the footer end in the same 18 bytes (ResetVectorVtf0.asm: DW length, DB guid).
const EntryTrailer = new StructLayout('OVMF footer table entry', 18, {
  length: { offset: 0x00, type: 'u16' },
  guid: { offset: 0x02, type: 'bytes', length: GUID_SIZE },
});
const ENTRY_TRAILER_SIZE = EntryTrailer.size;

// SEV metadata header (OvmfSevMetadata.asm _Descriptor: Signature, Length, Version, NumberOfItems).
const SevMetadataHeader = new StructLayout('OVMF SEV metadata header', 16, {
  signature: { offset: 0x00, type: 'bytes', length: 4 },
  length: { offset: 0x04, type: 'u32' },
  version: { offset: 0x08, type: 'u32' },
  numItems: { offset: 0x0c, type: 'u32' },
});
// One section descriptor (OvmfSevMetadata.asm OVMF_SECTION: DataBase, DataSize, Type).
const SevMetadataSectionDesc = new StructLayout('OVMF SEV metadata section', 12, {
  gpa: { offset: 0x00, type: 'u32' },
  size: { offset: 0x04, type: 'u32' },
  type: { offset: 0x08, type: 'u32' },
});

/** "ASEV": the SEV metadata signature. */
export const SEV_METADATA_SIGNATURE = Buffer.from('ASEV', 'latin1');
/** The only SEV metadata version defined (edk2, sev-snp-measure ovmf.py checks it). */
export const SEV_METADATA_VERSION = 1;

/** Section types of the SEV metadata (edk2 OvmfSevMetadata.asm; sev-reference §9.1). */
export const SevSectionType = {
  SNP_SEC_MEM: 1,
  SNP_SECRETS: 2,
  CPUID: 3,
  SVSM_CAA: 4,
  SNP_KERNEL_HASHES: 0x10,
} as const;
export type SevSectionTypeName = keyof typeof SevSectionType;

/** One entry of the footer table. */
export interface OvmfTableEntry {
  readonly guid: string;
  /** Offset of the entry's data within the image. */
  readonly offset: number;
  readonly data: Buffer;
}

/** A guest-physical area published by the firmware (base GPA and size). */
export interface OvmfGpaArea {
  readonly base: number;
  readonly size: number;
}

/** One SEV metadata section descriptor. */
export interface SevMetadataSection {
  readonly gpa: number;
  readonly size: number;
  /** The raw type; `typeName` is undefined for types this model does not know. */
  readonly type: number;
  readonly typeName: SevSectionTypeName | undefined;
}

/** The SEV metadata block ("ASEV" header and its section descriptors). */
export interface SevMetadata {
  /** Offset of the header within the image. */
  readonly offset: number;
  readonly version: number;
  readonly sections: readonly SevMetadataSection[];
}

/** What a hypervisor or a launch-digest calculator learns from the end of an OVMF image. */
export interface OvmfFooter {
  readonly imageSize: number;
  /**
   * `table`: the GUIDed footer table; `legacy-sev-info-block`: an early SEV-ES OVMF that put the SEV
   * info block alone where the footer now is (QEMU still accepts it); `none`: no table (plain firmware).
   */
  readonly layout: 'table' | 'legacy-sev-info-block' | 'none';
  /** Entries from the footer backwards (the order QEMU scans them). */
  readonly entries: readonly OvmfTableEntry[];
  /** The AP reset address from the SEV-ES reset block, if the firmware has one. */
  readonly sevEsResetEip: number | undefined;
  /** The kernel-hashes area, if the entry exists (base 0 means the firmware reserved none). */
  readonly sevHashTableArea: OvmfGpaArea | undefined;
  readonly sevSecretArea: OvmfGpaArea | undefined;
  readonly sevMetadata: SevMetadata | undefined;
}

function fail(format: string, field: string, offset: number, reason: string): never {
  throw new AbiDecodeError(format, field, offset, reason);
}

function readEntryTrailer(image: Uint8Array, at: number): { length: number; guid: string } {
  const t = EntryTrailer.decode(image, at);
  return { length: t.length, guid: guidFromBytes(t.guid) };
}

/** Walks the table backwards from the footer; every length is checked before it is used. */
function parseTable(image: Uint8Array, footerAt: number, tableLength: number): OvmfTableEntry[] {
  const format = 'OVMF footer table';
  if (tableLength < ENTRY_TRAILER_SIZE)
    fail(format, 'length', footerAt, `table length ${tableLength} is less than its own 18-byte footer`);
  const tableStart = footerAt + ENTRY_TRAILER_SIZE - tableLength;
  if (tableStart < 0)
    fail(format, 'length', footerAt, `table length ${tableLength} reaches before the start of the image`);
  const entries: OvmfTableEntry[] = [];
  const seen = new Set<string>();
  let end = footerAt; // the entries occupy [tableStart, end)
  while (end > tableStart) {
    const remaining = end - tableStart;
    if (remaining < ENTRY_TRAILER_SIZE)
      fail(format, 'entry', tableStart, `${remaining} bytes left over, too few for an entry (18)`);
    const at = end - ENTRY_TRAILER_SIZE;
    const { length, guid } = readEntryTrailer(image, at);
    if (length < ENTRY_TRAILER_SIZE)
      fail(format, `entry ${guid} length`, at, `entry length ${length} is less than 18`);
    if (length > remaining)
      fail(
        format,
        `entry ${guid} length`,
        at,
        `entry length ${length} overruns the table (${remaining} left)`,
      );
    // QEMU takes the entry nearest the footer, sev-snp-measure the farthest: a repeated GUID has no
    // single meaning, so it is refused.
    if (seen.has(guid)) fail(format, `entry ${guid}`, at, 'GUID appears twice in the table');
    seen.add(guid);
    const offset = end - length;
    entries.push({ guid, offset, data: Buffer.from(image.subarray(offset, at)) });
    end = offset;
  }
  return entries;
}

function u32At(entry: OvmfTableEntry, index: number, format: string, field: string): number {
  const at = index * 4;
  if (entry.data.length < at + 4)
    fail(format, field, entry.offset + at, `entry data is ${entry.data.length} bytes, needs ${at + 4}`);
  return entry.data.readUInt32LE(at);
}

function areaOf(entry: OvmfTableEntry | undefined, format: string): OvmfGpaArea | undefined {
  if (entry === undefined) return undefined;
  return { base: u32At(entry, 0, format, 'base'), size: u32At(entry, 1, format, 'size') };
}

function parseSevMetadata(image: Uint8Array, entry: OvmfTableEntry): SevMetadata {
  const format = 'OVMF SEV metadata';
  const fromEnd = u32At(entry, 0, 'OVMF SEV metadata entry', 'offsetFromEnd');
  const start = image.length - fromEnd;
  if (fromEnd < SevMetadataHeader.size || start < 0)
    fail(
      'OVMF SEV metadata entry',
      'offsetFromEnd',
      entry.offset,
      `0x${fromEnd.toString(16)} does not point at a 16-byte header inside the ${image.length}-byte image`,
    );
  const h = SevMetadataHeader.decode(image, start);
  if (!h.signature.equals(SEV_METADATA_SIGNATURE))
    fail(format, 'signature', start, `expected "ASEV", found ${h.signature.toString('hex')}`);
  if (h.version !== SEV_METADATA_VERSION)
    fail(format, 'version', start + 8, `version ${h.version} is not ${SEV_METADATA_VERSION}`);
  const needed = SevMetadataHeader.size + h.numItems * SevMetadataSectionDesc.size;
  if (h.length < needed)
    fail(
      format,
      'length',
      start + 4,
      `length ${h.length} cannot hold ${h.numItems} sections (${needed} bytes)`,
    );
  if (h.length > image.length - start)
    fail(format, 'length', start + 4, `length ${h.length} runs past the end of the image`);
  const sections: SevMetadataSection[] = [];
  const names = Object.entries(SevSectionType) as [SevSectionTypeName, number][];
  for (let i = 0; i < h.numItems; i++) {
    const d = SevMetadataSectionDesc.decode(image, start + SevMetadataHeader.size + i * 12);
    sections.push({ ...d, typeName: names.find(([, v]) => v === d.type)?.[0] });
  }
  return { offset: start, version: h.version, sections };
}

/**
 * Parses the footer of an OVMF image (the whole image, or any suffix of it that still holds the table
 * and the metadata it points to, such as the 4 KiB fixtures calculators ship). An image without the
 * footer GUID is not an error: it simply has no table (`layout: 'none'`). A table that is there but
 * truncated or inconsistent throws {@link AbiDecodeError} naming the field and its offset.
 */
export function parseOvmfFooter(image: Uint8Array): OvmfFooter {
  const footerAt = image.length - OVMF_FOOTER_TRAILER_SIZE - ENTRY_TRAILER_SIZE;
  if (footerAt < 0)
    fail(
      'OVMF footer table',
      'footer',
      0,
      `image is ${image.length} bytes, too short for the footer (needs ${OVMF_FOOTER_TRAILER_SIZE + ENTRY_TRAILER_SIZE})`,
    );
  const footer = readEntryTrailer(image, footerAt);
  let entries: OvmfTableEntry[] = [];
  let layout: OvmfFooter['layout'] = 'none';
  if (footer.guid === OvmfGuid.TABLE_FOOTER) {
    entries = parseTable(image, footerAt, footer.length);
    layout = 'table';
  } else if (footer.guid === OvmfGuid.SEV_ES_RESET_BLOCK) {
    // The first SEV-ES OVMF builds (2020) had only this block, where the footer now is; QEMU's
    // sev_es_find_reset_vector falls back to it. Its length field spans the data before it.
    const offset = footerAt + ENTRY_TRAILER_SIZE - footer.length;
    if (footer.length < ENTRY_TRAILER_SIZE || offset < 0)
      fail(
        'OVMF SEV info block',
        'length',
        footerAt,
        `length ${footer.length} is outside the image or below 18`,
      );
    entries = [{ guid: footer.guid, offset, data: Buffer.from(image.subarray(offset, footerAt)) }];
    layout = 'legacy-sev-info-block';
  }
  const find = (g: string): OvmfTableEntry | undefined => entries.find((e) => e.guid === g);
  const reset = find(OvmfGuid.SEV_ES_RESET_BLOCK);
  const metadata = find(OvmfGuid.SEV_METADATA);
  return {
    imageSize: image.length,
    layout,
    entries,
    sevEsResetEip: reset && u32At(reset, 0, 'OVMF SEV-ES reset block', 'resetAddress'),
    sevHashTableArea: areaOf(find(OvmfGuid.SEV_HASH_TABLE_RV), 'OVMF SEV hash table entry'),
    sevSecretArea: areaOf(find(OvmfGuid.SEV_SECRET_BLOCK), 'OVMF SEV secret block entry'),
    sevMetadata: metadata && parseSevMetadata(image, metadata),
  };
}
