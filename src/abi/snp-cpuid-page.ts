// The SEV-SNP CPUID page: the table of CPUID results the hypervisor offers at SNP_LAUNCH_UPDATE of a
// CPUID page, which the firmware checks (sev-reference §7.9; ASPFW sev_mcmd.h
// snp_launch_update_cpuid_page_t and cpuid_lookup.h snp_cpuid_function_t, Linux snp_cpuid_table).
import { AbiDecodeError, StructLayout } from './layout.js';

/** The CPUID page is one 4 KiB page; the table uses its first 0x10 + 64 × 0x30 = 0xC10 bytes. */
export const SNP_CPUID_PAGE_SIZE = 0x1000;
/** At most 64 entries (ASPFW SNP_CPUID_COUNT_MAX); more is INVALID_PARAM. */
export const SNP_CPUID_COUNT_MAX = 64;
export const SNP_CPUID_HEADER_SIZE = 0x10;
export const SNP_CPUID_ENTRY_SIZE = 0x30;

// ASPFW snp_launch_update_cpuid_page_t header (COUNT, then 12 reserved bytes the firmware checks)
export const SnpCpuidPageHeader = new StructLayout('SNP CPUID page', SNP_CPUID_HEADER_SIZE, {
  count: { offset: 0x00, type: 'u32' },
  reserved04: { offset: 0x04, type: 'u32' },
  reserved08: { offset: 0x08, type: 'u64' },
});

// ASPFW cpuid_lookup.h snp_cpuid_function_t (inputs EAX, ECX, XCR0, XSS; outputs EAX..EDX)
export const SnpCpuidEntryLayout = new StructLayout('SNP CPUID page entry', SNP_CPUID_ENTRY_SIZE, {
  eaxIn: { offset: 0x00, type: 'u32' },
  ecxIn: { offset: 0x04, type: 'u32' },
  xcr0In: { offset: 0x08, type: 'u64' },
  xssIn: { offset: 0x10, type: 'u64' },
  eax: { offset: 0x18, type: 'u32' },
  ebx: { offset: 0x1c, type: 'u32' },
  ecx: { offset: 0x20, type: 'u32' },
  edx: { offset: 0x24, type: 'u32' },
  reserved: { offset: 0x28, type: 'u64' },
});

/** One CPUID function: the inputs it answers and the four output registers. */
export interface SnpCpuidEntry {
  eaxIn: number;
  ecxIn: number;
  xcr0In: bigint;
  xssIn: bigint;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
  /**
   * The entry's reserved qword. Neither ASPFW's LAUNCH_UPDATE nor its CPUID message checks it, so it is
   * decoded as found (encoded as given, default 0) rather than rejected.
   */
  reserved?: bigint;
}

const NAME = SnpCpuidPageHeader.name;

/**
 * The CPUID page for `entries`, zero-padded to 4 KiB. Throws AbiDecodeError (field count) for more
 * than 64 entries, as the firmware answers INVALID_PARAM to such a table.
 */
export function encodeSnpCpuidPage(entries: readonly SnpCpuidEntry[]): Buffer {
  if (entries.length > SNP_CPUID_COUNT_MAX)
    throw new AbiDecodeError(NAME, 'count', 0, `${entries.length} entries, at most ${SNP_CPUID_COUNT_MAX}`);
  const page = Buffer.alloc(SNP_CPUID_PAGE_SIZE);
  SnpCpuidPageHeader.write(page, { count: entries.length });
  entries.forEach((e, i) =>
    SnpCpuidEntryLayout.write(
      page,
      { ...e, reserved: e.reserved ?? 0n },
      SNP_CPUID_HEADER_SIZE + i * SNP_CPUID_ENTRY_SIZE,
    ),
  );
  return page;
}

/**
 * Decodes a CPUID table from a page (or any buffer holding the header and COUNT entries). Throws
 * AbiDecodeError (field, offset) if COUNT exceeds 64, a reserved header field is non-zero (both are
 * INVALID_PARAM in ASPFW snp_mcmd_launch_update), or the buffer ends before the last entry.
 */
export function decodeSnpCpuidPage(buf: Uint8Array): SnpCpuidEntry[] {
  const h = SnpCpuidPageHeader.decode(buf);
  if (h.reserved04 !== 0) throw new AbiDecodeError(NAME, 'reserved04', 0x04, 'reserved, must be zero');
  if (h.reserved08 !== 0n) throw new AbiDecodeError(NAME, 'reserved08', 0x08, 'reserved, must be zero');
  if (h.count > SNP_CPUID_COUNT_MAX)
    throw new AbiDecodeError(NAME, 'count', 0x00, `${h.count} entries, at most ${SNP_CPUID_COUNT_MAX}`);
  const end = SNP_CPUID_HEADER_SIZE + h.count * SNP_CPUID_ENTRY_SIZE;
  if (buf.length < end)
    throw new AbiDecodeError(
      NAME,
      'entries',
      SNP_CPUID_HEADER_SIZE,
      `${h.count} entries need ${end} bytes, got ${buf.length}`,
    );
  const out: SnpCpuidEntry[] = [];
  for (let i = 0; i < h.count; i++)
    out.push(SnpCpuidEntryLayout.decode(buf, SNP_CPUID_HEADER_SIZE + i * SNP_CPUID_ENTRY_SIZE));
  return out;
}
