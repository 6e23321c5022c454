// The EFI secret table (LAUNCH_SECRET's plaintext) against sevctl's published `secret build` outputs,
// Linux efi_secret's reading rules, and fuzzing: any input decodes or throws AbiDecodeError.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  EFI_NULL_GUID,
  EFI_SECRET_TABLE_HEADER_GUID,
  EfiSecretTableError,
  decodeEfiSecretTable,
  encodeEfiSecretTable,
  guidFromBytes,
} from '../src/abi/index.js';
import { aes128Ctr } from '../src/crypto/index.js';

const b64 = (s: string): Buffer => Buffer.from(s, 'base64');

// virtee/sevctl tests/secretbuild.rs `secret_build`: tests/data/secret/{tek1,tik1}.bin, the --iv given,
// secret1.txt = "MY-LUKS-PASSPHRASE", secret2.txt = "SOME OTHER SECRET" (no newlines).
const SEVCTL = {
  tek: Buffer.from('52a869b79ab9c13bb6a92b0561619cb3', 'hex'),
  iv: b64('rFR07U3TLH2YnsUj2SVZ7A=='),
  secret1: { guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('MY-LUKS-PASSPHRASE') },
  secret2: { guid: '736869e5-aaaa-4973-92ec-06879ce3da0b', data: Buffer.from('SOME OTHER SECRET') },
  payload1: b64('0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA=='),
  payload2: b64(
    '0U3e5PcXv0UW+H4tSBFKObWYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCC+WWs332lpLNUX1ZI3YK7vYgtys4X+uGxEIlkIQ90v8/w8ZFmQMe',
  ),
};

const decodesOrTypedError = (bytes: Uint8Array): void => {
  try {
    decodeEfiSecretTable(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(AbiDecodeError);
  }
};

function decodeError(bytes: Uint8Array): AbiDecodeError {
  try {
    decodeEfiSecretTable(bytes);
  } catch (err) {
    if (err instanceof AbiDecodeError) return err;
    throw err;
  }
  throw new Error('expected the table to be refused');
}

function encodeError(entries: { guid: string; data: Uint8Array }[]): EfiSecretTableError {
  try {
    encodeEfiSecretTable(entries);
  } catch (err) {
    if (err instanceof EfiSecretTableError) return err;
    throw err;
  }
  throw new Error('expected the entries to be refused');
}

describe('EFI secret table: the bytes sevctl writes', () => {
  it('decrypting sevctl’s payloads gives exactly our tables (one and two secrets)', () => {
    const one = encodeEfiSecretTable([SEVCTL.secret1]);
    const two = encodeEfiSecretTable([SEVCTL.secret1, SEVCTL.secret2]);
    expect(aes128Ctr(SEVCTL.tek, SEVCTL.iv, SEVCTL.payload1).equals(one)).toBe(true);
    expect(aes128Ctr(SEVCTL.tek, SEVCTL.iv, SEVCTL.payload2).equals(two)).toBe(true);
  });

  it('lays out the header GUID in EFI byte order, a length without the padding, then the entries', () => {
    const t = encodeEfiSecretTable([SEVCTL.secret1]);
    expect(t.subarray(0, 16).toString('hex')).toBe('42f5741edd71664d963eef4287ff173b');
    expect(guidFromBytes(t.subarray(0, 16))).toBe(EFI_SECRET_TABLE_HEADER_GUID);
    expect(t.readUInt32LE(16)).toBe(20 + 20 + 18);
    expect(t.subarray(20, 36).toString('hex')).toBe('e5696873f0847349' + '92ec06879ce3da0b');
    expect(t.readUInt32LE(36)).toBe(20 + 18);
    expect(t.subarray(40, 58).toString()).toBe('MY-LUKS-PASSPHRASE');
    expect(t.subarray(58).equals(Buffer.alloc(6))).toBe(true);
    expect(t).toHaveLength(64);
  });

  it('pads to 16 bytes only when needed (sevctl: 16343- and 16344-byte secrets both give 16384)', () => {
    const guid = '23058844-597b-42fb-8259-a0f5d9d495af';
    expect(encodeEfiSecretTable([{ guid, data: Buffer.alloc(16343, 1) }])).toHaveLength(16384);
    expect(encodeEfiSecretTable([{ guid, data: Buffer.alloc(16344, 1) }])).toHaveLength(16384);
    expect(encodeEfiSecretTable([])).toHaveLength(32);
  });

  it('decodes what it encodes, GUIDs normalised to lower case', () => {
    const t = decodeEfiSecretTable(
      encodeEfiSecretTable([{ ...SEVCTL.secret1, guid: SEVCTL.secret1.guid.toUpperCase() }, SEVCTL.secret2]),
    );
    expect(t.entries.map((e) => e.guid)).toEqual([SEVCTL.secret1.guid, SEVCTL.secret2.guid]);
    expect(t.entries[1]?.data.toString()).toBe('SOME OTHER SECRET');
    expect(t.length).toBe(95);
    expect(t.trailingLength).toBe(1);
  });

  it('round-trips any set of distinct secrets', () => {
    const entry = fc.record({
      guid: fc.uuid().filter((g) => g !== EFI_NULL_GUID),
      data: fc.uint8Array({ maxLength: 80 }),
    });
    fc.assert(
      fc.property(fc.uniqueArray(entry, { maxLength: 8, selector: (e) => e.guid }), (entries) => {
        const bytes = encodeEfiSecretTable(entries);
        expect(bytes.length % 16).toBe(0);
        const t = decodeEfiSecretTable(bytes);
        expect(t.entries.map((e) => e.guid)).toEqual(entries.map((e) => e.guid));
        t.entries.forEach((e, i) => expect(e.data.equals(Buffer.from(entries[i]?.data ?? []))).toBe(true));
        expect(t.trailingLength).toBeLessThan(16);
      }),
      { numRuns: 200 },
    );
  });
});

describe('EFI secret table: what the encoder refuses', () => {
  const data = Buffer.from('x');
  it.each([
    [[{ guid: 'not-a-guid', data }], 'BAD_GUID'],
    [[{ guid: EFI_NULL_GUID, data }], 'NULL_GUID'],
    [[SEVCTL.secret1, { guid: SEVCTL.secret1.guid.toUpperCase(), data }], 'DUPLICATE_GUID'],
  ])('%j → %s', (entries, code) => {
    expect(encodeError(entries).code).toBe(code);
  });

  it('more than the 64 secrets Linux exposes', () => {
    const many = Array.from({ length: 65 }, (_, i) => ({
      guid: `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
      data,
    }));
    expect(encodeEfiSecretTable(many.slice(1))).toBeInstanceOf(Buffer);
    const err = encodeError(many);
    expect(err.code).toBe('TOO_MANY_ENTRIES');
    expect(err.message).toMatch(/first 64/);
  });
});

describe('EFI secret table: what the decoder refuses (field and offset)', () => {
  const good = encodeEfiSecretTable([SEVCTL.secret1, SEVCTL.secret2]); // length 95, one byte of padding

  const mutate = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };

  it.each<[string, Buffer, string, number]>([
    ['a short buffer', good.subarray(0, 19), 'length', 0x10],
    ['another GUID', mutate((b) => (b[0] = 0)), 'guid', 0x00],
    ['a length below the header', mutate((b) => b.writeUInt32LE(19, 16)), 'length', 0x10],
    ['a length past the buffer', mutate((b) => b.writeUInt32LE(97, 16)), 'length', 0x10],
    ['an entry shorter than its header', mutate((b) => b.writeUInt32LE(19, 36)), 'entry[0].length', 0x24],
    ['an entry past the table', mutate((b) => b.writeUInt32LE(76, 36)), 'entry[0].length', 0x24],
    ['a remainder too short for an entry', mutate((b) => b.writeUInt32LE(58 + 19, 16)), 'entry[1]', 58],
    ['non-zero padding', mutate((b) => (b[95] = 1)), 'padding', 95],
  ])('%s', (_name, bytes, field, offset) => {
    const err = decodeError(bytes);
    expect(err.field).toBe(field);
    expect(err.offset).toBe(offset);
    expect(err.message).toContain('EFI secret table');
  });

  it('with trailing: any, reads a table out of a larger secret area as Linux does', () => {
    const area = Buffer.concat([good, Buffer.alloc(3072 - good.length, 0xcc)]);
    expect(() => decodeEfiSecretTable(area)).toThrow(AbiDecodeError);
    const t = decodeEfiSecretTable(area, { trailing: 'any' });
    expect(t.entries).toHaveLength(2);
    expect(t.trailingLength).toBe(3072 - 95);
  });

  it('keeps deleted (NULL GUID) entries, which Linux skips', () => {
    const b = Buffer.from(good);
    b.fill(0, 20, 36);
    expect(decodeEfiSecretTable(b).entries[0]?.guid).toBe(EFI_NULL_GUID);
  });

  it('fuzz: random bytes decode or throw AbiDecodeError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), decodesOrTypedError), { numRuns: 500 });
  });

  it('fuzz: a valid table with random bytes overwritten decodes or throws AbiDecodeError', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.nat(good.length),
        (edits, cut) => {
          const b = Buffer.from(good);
          for (const [at, v] of edits) b[at] = v;
          decodesOrTypedError(b);
          decodesOrTypedError(b.subarray(0, cut));
        },
      ),
      { numRuns: 1000 },
    );
  });
});
