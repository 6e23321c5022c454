// QEMU's kernel-hashes table for measured direct boot (QEMU target/i386/sev.c SevHashTable /
// PaddedSevHashTable; OVMF BlobVerifierLibSevHashes; sev-reference §9.1).
//
// With `-kernel` and `kernel-hashes=on`, QEMU writes this table at the GPA the firmware publishes in its
// SEV hash table footer entry and measures it (LAUNCH_UPDATE_DATA under SEV/SEV-ES, a NORMAL page under
// SNP). OVMF later refuses a kernel, initrd or command line whose SHA-256 differs from the table.
import { AbiDecodeError, StructLayout } from './layout.js';
import { guidFromBytes, guidToBytes } from './ovmf-footer.js';

/** GUIDs of the table header and its three entries (QEMU sev.c, OVMF SevHashes). */
export const SevHashTableGuid = {
  TABLE: '9438d606-4f22-4cc9-b479-a793d411fd21',
  CMDLINE: '97d02dd8-bd20-4c94-aa78-e7714d36ab2a',
  INITRD: '44baf731-3a2f-4bd7-9af1-41e29169781d',
  KERNEL: '4de79437-abd2-427f-b835-d5b172d2045b',
} as const;

/** One entry: GUID, u16 length, SHA-256 — 50 bytes. */
export const SEV_HASH_TABLE_ENTRY_LENGTH = 16 + 2 + 32;
/** The table proper (header + three entries) — the value of its length field, 168. */
export const SEV_HASH_TABLE_LENGTH = 16 + 2 + 3 * SEV_HASH_TABLE_ENTRY_LENGTH;
/** What QEMU measures: the table zero-padded to a multiple of 16 bytes (LAUNCH_UPDATE_DATA's unit), 176. */
export const SEV_HASH_TABLE_PADDED_LENGTH = (SEV_HASH_TABLE_LENGTH + 15) & ~15;

// PaddedSevHashTable, packed; the entries appear cmdline, initrd, kernel in that order.
export const SevHashTableLayout = new StructLayout('SEV kernel-hashes table', SEV_HASH_TABLE_PADDED_LENGTH, {
  guid: { offset: 0x00, type: 'bytes', length: 16 },
  length: { offset: 0x10, type: 'u16' },
  cmdlineGuid: { offset: 0x12, type: 'bytes', length: 16 },
  cmdlineLength: { offset: 0x22, type: 'u16' },
  cmdlineHash: { offset: 0x24, type: 'bytes', length: 32 },
  initrdGuid: { offset: 0x44, type: 'bytes', length: 16 },
  initrdLength: { offset: 0x54, type: 'u16' },
  initrdHash: { offset: 0x56, type: 'bytes', length: 32 },
  kernelGuid: { offset: 0x76, type: 'bytes', length: 16 },
  kernelLength: { offset: 0x86, type: 'u16' },
  kernelHash: { offset: 0x88, type: 'bytes', length: 32 },
  padding: { offset: 0xa8, type: 'bytes', length: SEV_HASH_TABLE_PADDED_LENGTH - SEV_HASH_TABLE_LENGTH },
});

/** The three SHA-256 digests the table carries. */
export interface SevKernelHashes {
  /** SHA-256 of the command line including its terminating NUL (just "\0" when there is none). */
  readonly cmdline: Buffer;
  /** SHA-256 of the initrd (of zero bytes when there is none). */
  readonly initrd: Buffer;
  /** SHA-256 of the kernel file. */
  readonly kernel: Buffer;
}

const ENTRIES = [
  ['cmdline', SevHashTableGuid.CMDLINE],
  ['initrd', SevHashTableGuid.INITRD],
  ['kernel', SevHashTableGuid.KERNEL],
] as const;

/** The padded table (176 bytes) exactly as QEMU writes and measures it. */
export function encodeSevHashTable(hashes: SevKernelHashes): Buffer {
  for (const [name] of ENTRIES) {
    if (hashes[name].length !== 32)
      throw new RangeError(`${name} hash must be a 32-byte SHA-256, got ${hashes[name].length} bytes`);
  }
  return SevHashTableLayout.encode({
    guid: guidToBytes(SevHashTableGuid.TABLE),
    length: SEV_HASH_TABLE_LENGTH,
    cmdlineGuid: guidToBytes(SevHashTableGuid.CMDLINE),
    cmdlineLength: SEV_HASH_TABLE_ENTRY_LENGTH,
    cmdlineHash: hashes.cmdline,
    initrdGuid: guidToBytes(SevHashTableGuid.INITRD),
    initrdLength: SEV_HASH_TABLE_ENTRY_LENGTH,
    initrdHash: hashes.initrd,
    kernelGuid: guidToBytes(SevHashTableGuid.KERNEL),
    kernelLength: SEV_HASH_TABLE_ENTRY_LENGTH,
    kernelHash: hashes.kernel,
  });
}

/**
 * Reads a padded table back, checking every GUID, length and the zero padding — what a verifier inside
 * the guest (OVMF) relies on. Throws {@link AbiDecodeError} naming the first wrong field.
 */
export function decodeSevHashTable(buf: Uint8Array): SevKernelHashes {
  const t = SevHashTableLayout.decode(buf);
  const fields = SevHashTableLayout.fields;
  const expectGuid = (field: 'guid' | `${(typeof ENTRIES)[number][0]}Guid`, guid: string): void => {
    const found = guidFromBytes(t[field]);
    if (found !== guid)
      throw new AbiDecodeError(
        SevHashTableLayout.name,
        field,
        fields[field].offset,
        `${found} is not ${guid}`,
      );
  };
  const expectLength = (field: 'length' | `${(typeof ENTRIES)[number][0]}Length`, value: number): void => {
    if (t[field] !== value)
      throw new AbiDecodeError(
        SevHashTableLayout.name,
        field,
        fields[field].offset,
        `${t[field]} is not ${value}`,
      );
  };
  expectGuid('guid', SevHashTableGuid.TABLE);
  expectLength('length', SEV_HASH_TABLE_LENGTH);
  for (const [name, guid] of ENTRIES) {
    expectGuid(`${name}Guid`, guid);
    expectLength(`${name}Length`, SEV_HASH_TABLE_ENTRY_LENGTH);
  }
  if (t.padding.some((b) => b !== 0))
    throw new AbiDecodeError(
      SevHashTableLayout.name,
      'padding',
      fields.padding.offset,
      'padding is not zero',
    );
  return { cmdline: t.cmdlineHash, initrd: t.initrdHash, kernel: t.kernelHash };
}

/**
 * The 4 KiB page holding the table at `offsetInPage` and zeros elsewhere: the form SNP measures
 * (sev-reference §9.1: placed at the hash-table GPA's offset within its page).
 */
export function sevHashTablePage(table: Uint8Array, offsetInPage: number): Buffer {
  if (!Number.isInteger(offsetInPage) || offsetInPage < 0 || offsetInPage + table.length > 0x1000)
    throw new RangeError(`a ${table.length}-byte table does not fit a page at offset ${offsetInPage}`);
  const page = Buffer.alloc(0x1000);
  page.set(table, offsetInPage);
  return page;
}
