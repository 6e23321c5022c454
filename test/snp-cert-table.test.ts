// The extended guest request's certificate table (sev-reference §7.12): RFC 4122 GUID bytes, round trips,
// and typed errors for unterminated, out-of-bounds and overlapping tables; random and mutated bytes only
// ever raise AbiDecodeError.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  SNP_CERT_GUID,
  SNP_CERT_TABLE_ENTRY_SIZE,
  decodeSnpCertTable,
  encodeSnpCertTable,
  snpCertByKind,
  snpGuidFromBytes,
  snpGuidToBytes,
} from '../src/abi/index.js';

const ark = Buffer.from('ark certificate bytes');
const ask = Buffer.from('ask certificate, a bit longer');
const vcek = Buffer.from('vcek');

function table(): Buffer {
  return encodeSnpCertTable([
    { guid: SNP_CERT_GUID.ARK, data: ark },
    { guid: SNP_CERT_GUID.ASK, data: ask },
    { guid: SNP_CERT_GUID.VCEK, data: vcek },
  ]);
}

/** Rewrites entry `i`'s offset and length. */
function patch(buf: Buffer, i: number, offset: number, length: number): Buffer {
  const out = Buffer.from(buf);
  out.writeUInt32LE(offset, i * SNP_CERT_TABLE_ENTRY_SIZE + 16);
  out.writeUInt32LE(length, i * SNP_CERT_TABLE_ENTRY_SIZE + 20);
  return out;
}

function decodeError(buf: Uint8Array): AbiDecodeError {
  try {
    decodeSnpCertTable(buf);
  } catch (err) {
    if (err instanceof AbiDecodeError) return err;
    throw err;
  }
  throw new Error('expected an AbiDecodeError');
}

describe('SNP certificate table', () => {
  it('stores GUIDs in RFC 4122 byte order (the ARK GUID starts c0 b4 06 a4)', () => {
    const buf = table();
    expect(buf.subarray(0, 16).toString('hex')).toBe('c0b406a4a80349529743' + '3fb6014cd0ae');
    expect(snpGuidFromBytes(snpGuidToBytes(SNP_CERT_GUID.VLEK))).toBe(SNP_CERT_GUID.VLEK);
    expect(snpGuidFromBytes(snpGuidToBytes(SNP_CERT_GUID.VCEK.toUpperCase()))).toBe(SNP_CERT_GUID.VCEK);
  });

  it('lays out entries, terminator, then data, with offsets from the buffer start', () => {
    const buf = table();
    const tableEnd = 4 * SNP_CERT_TABLE_ENTRY_SIZE;
    expect(buf.readUInt32LE(16)).toBe(tableEnd);
    expect(buf.readUInt32LE(20)).toBe(ark.length);
    expect(buf.subarray(3 * 24, 4 * 24).every((b) => b === 0)).toBe(true);
    expect(buf.length).toBe(tableEnd + ark.length + ask.length + vcek.length);
  });

  it('round-trips, names AMD’s GUIDs and ignores page padding after the data', () => {
    const padded = Buffer.concat([table(), Buffer.alloc(4096 - table().length)]);
    const entries = decodeSnpCertTable(padded);
    expect(entries.map((e) => e.kind)).toEqual(['ARK', 'ASK', 'VCEK']);
    expect(snpCertByKind(entries, 'ASK')?.equals(ask)).toBe(true);
    expect(snpCertByKind(entries, 'VCEK')?.equals(vcek)).toBe(true);
    expect(snpCertByKind(entries, 'VLEK')).toBeUndefined();
    const other = '11111111-2222-3333-4444-555555555555';
    const [e] = decodeSnpCertTable(encodeSnpCertTable([{ guid: other, data: Buffer.from('x') }]));
    expect(e).toMatchObject({ guid: other, kind: undefined });
  });

  it('an empty buffer and a lone terminator are empty tables', () => {
    expect(decodeSnpCertTable(Buffer.alloc(0))).toEqual([]);
    expect(decodeSnpCertTable(Buffer.alloc(4096))).toEqual([]);
    expect(encodeSnpCertTable([])).toEqual(Buffer.alloc(SNP_CERT_TABLE_ENTRY_SIZE));
  });

  it('refuses to encode bad, NULL or repeated GUIDs', () => {
    expect(() => encodeSnpCertTable([{ guid: 'not-a-guid', data: ark }])).toThrow(RangeError);
    expect(() => encodeSnpCertTable([{ guid: '00000000-0000-0000-0000-000000000000', data: ark }])).toThrow(
      /terminator/,
    );
    expect(() =>
      encodeSnpCertTable([
        { guid: SNP_CERT_GUID.ARK, data: ark },
        { guid: SNP_CERT_GUID.ARK, data: ask },
      ]),
    ).toThrow(/twice/);
  });

  it('an unterminated table is a typed error naming the entry and offset', () => {
    const buf = table().subarray(0, 3 * SNP_CERT_TABLE_ENTRY_SIZE + 10);
    const err = decodeError(buf);
    expect(err.field).toBe('entry[3]');
    expect(err.offset).toBe(72);
    expect(err.message).toMatch(/terminating entry/);
  });

  it('data outside the buffer, inside the table or overlapping another entry is a typed error', () => {
    const buf = table();
    const outside = decodeError(patch(buf, 1, buf.length - 2, 10));
    expect(outside.field).toBe('entry[1].length');
    expect(outside.offset).toBe(24 + 20);
    const inside = decodeError(patch(buf, 0, 50, 4));
    expect(inside.field).toBe('entry[0].offset');
    expect(inside.message).toMatch(/inside the table/);
    const overlap = decodeError(patch(buf, 2, buf.readUInt32LE(16) + 3, 4));
    expect(overlap.field).toBe('entry[2].offset');
    expect(overlap.message).toMatch(/overlaps entry 0/);
    const huge = decodeError(patch(buf, 0, 0xffff_ffff, 0xffff_ffff));
    expect(huge.field).toBe('entry[0].length');
  });

  it('a repeated GUID or a NULL GUID with data is a typed error', () => {
    const buf = table();
    const dup = Buffer.from(buf);
    dup.set(dup.subarray(0, 16), 24);
    expect(decodeError(dup).message).toMatch(/already names entry 0/);
    const nul = Buffer.from(buf);
    nul.fill(0, 24, 40);
    expect(decodeError(nul).field).toBe('entry[1].guid');
  });

  it('random and mutated bytes only ever raise AbiDecodeError', () => {
    const typed = (bytes: Uint8Array): boolean => {
      try {
        decodeSnpCertTable(bytes);
        return true;
      } catch (err) {
        return err instanceof AbiDecodeError;
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), typed), { numRuns: 2000 });
    const base = table();
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        fc.nat(base.length),
        (edits, cut) => {
          const b = Buffer.from(base);
          for (const [at, v] of edits) b[at] = v;
          return typed(b) && typed(b.subarray(0, cut));
        },
      ),
      { numRuns: 2000 },
    );
    // Targeted mutations of the u32 fields: offsets and lengths anywhere, including past 2^31.
    fc.assert(
      fc.property(fc.nat(3), fc.nat(0xffff_ffff), fc.nat(0xffff_ffff), (i, off, len) =>
        typed(patch(base, i, off, len)),
      ),
      { numRuns: 1000 },
    );
  });
});
