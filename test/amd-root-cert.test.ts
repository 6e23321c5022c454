// AMD's root-key format (ARK, ASK) against the real keys of five generations and the truncated Naples
// ARK; its typed errors and fuzzing; and RSA-PSS in AMD's little-endian encoding.
import { constants, generateKeyPairSync, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  type AmdRootCert,
  SevCertAlgo,
  amdRootCertAlgo,
  amdRootCertSignedLength,
  decodeAmdRootCert,
  encodeAmdRootCert,
} from '../src/abi/index.js';
import {
  RsaKeyError,
  rsaModulusBytes,
  rsaPssSignLe,
  rsaPssVerifyLe,
  rsaPublicKeyFromLe,
  rsaPublicKeyToLe,
} from '../src/crypto/index.js';

const ROOTS = resolve(import.meta.dirname, '../../shared/testdata/amd-roots');
const GENERATIONS = ['naples', 'rome', 'milan', 'genoa', 'turin'] as const;

function root(gen: string, file: string): Buffer {
  return readFileSync(resolve(ROOTS, gen, file));
}

const REAL = GENERATIONS.flatMap((gen) =>
  (['ark', 'ask'] as const).map((kind) => ({ gen, kind, bytes: root(gen, `${kind}.cert`) })),
);

/** ARK KEY_IDs (bytes 0x04..0x13), sev-reference §3.2. */
const ARK_KEY_IDS: Record<(typeof GENERATIONS)[number], string> = {
  naples: '1bb987c359494606b174945601c9ea5b',
  rome: 'e6002122fb58419399d15fee7b131351',
  milan: '94c38e4177d0479292a7ae671d083fb6',
  genoa: '9f9d4a8fe761456599f6946c4c010f3a',
  turin: 'd05c3a8bde484904b49552422ceb3942',
};

function expectDecodeError(fn: () => unknown, field: string, offset: number): AbiDecodeError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(AbiDecodeError);
  const e = caught as AbiDecodeError;
  expect({ field: e.field, offset: e.offset }).toEqual({ field, offset });
  return e;
}

function mutate(bytes: Buffer, edit: (b: Buffer) => void): Buffer {
  const b = Buffer.from(bytes);
  edit(b);
  return b;
}

describe('AMD root-key certificate: the real ARKs and ASKs', () => {
  it.each(REAL.map((r) => [`${r.gen}/${r.kind}`, r] as const))('%s decodes as expected', (_name, r) => {
    const c = decodeAmdRootCert(r.bytes);
    const bits = r.gen === 'naples' ? 2048 : 4096;
    expect(r.bytes.length).toBe(bits === 2048 ? 832 : 1600);
    expect(c.version).toBe(1);
    expect(c.keyUsage).toBe(r.kind === 'ark' ? 0x00 : 0x13);
    expect([c.pubexpBits, c.modulusBits]).toEqual([bits, bits]);
    expect(c.pubexp.readUInt32LE(0)).toBe(0x010001);
    expect(c.signature?.length).toBe(bits / 8);
    expect(amdRootCertAlgo(c)).toBe(bits === 2048 ? SevCertAlgo.RSA_SHA256 : SevCertAlgo.RSA_SHA384);
    const arkId = ARK_KEY_IDS[r.gen];
    expect(c.certifyingId.toString('hex')).toBe(arkId);
    if (r.kind === 'ark') expect(c.keyId.toString('hex')).toBe(arkId);
  });

  it.each(REAL.map((r) => [`${r.gen}/${r.kind}`, r.bytes] as const))(
    '%s: decode → encode gives back the same bytes',
    (_name, bytes) => {
      expect(encodeAmdRootCert(decodeAmdRootCert(bytes)).equals(bytes)).toBe(true);
    },
  );

  it('the truncated Naples ARK is the same key as ark.cert, reported unsigned', () => {
    const truncated = root('naples', 'ark.cert.truncated');
    const full = decodeAmdRootCert(root('naples', 'ark.cert'));
    const t = decodeAmdRootCert(truncated);
    expect(truncated.length).toBe(576);
    expect(t.signature).toBeUndefined();
    expect({ ...t, signature: full.signature }).toEqual(full);
    expect(encodeAmdRootCert(t).equals(truncated)).toBe(true);
    expect(amdRootCertSignedLength(t)).toBe(576);
  });

  it('the signatures are RSA-PSS over [0, 0x40 + exponent + modulus): SHA-256 for Naples, SHA-384 after', () => {
    for (const gen of GENERATIONS) {
      const ark = decodeAmdRootCert(root(gen, 'ark.cert'));
      const askBytes = root(gen, 'ask.cert');
      const ask = decodeAmdRootCert(askBytes);
      const key = rsaPublicKeyFromLe(ark.modulus, ark.pubexp);
      const hash = gen === 'naples' ? 'sha256' : 'sha384';
      const other = gen === 'naples' ? 'sha384' : 'sha256';
      const signed = askBytes.subarray(0, amdRootCertSignedLength(ask));
      expect(rsaPssVerifyLe(key, hash, signed, ask.signature ?? Buffer.alloc(0))).toBe(true);
      expect(rsaPssVerifyLe(key, other, signed, ask.signature ?? Buffer.alloc(0))).toBe(false);
    }
  });
});

describe('AMD root-key certificate: validation names the field and offset', () => {
  const ark = root('rome', 'ark.cert');

  it('wrong version', () => {
    expectDecodeError(() => decodeAmdRootCert(mutate(ark, (b) => b.writeUInt32LE(0, 0))), 'version', 0);
  });

  it('a usage other than ARK or ASK', () => {
    for (const usage of [0x1001, 0x1004, 0x12, 0x1000])
      expectDecodeError(
        () => decodeAmdRootCert(mutate(ark, (b) => b.writeUInt32LE(usage, 0x24))),
        'keyUsage',
        0x24,
      );
  });

  it('key sizes other than 2048 and 4096 bits', () => {
    for (const bits of [0, 1024, 3072, 8192]) {
      expectDecodeError(
        () => decodeAmdRootCert(mutate(ark, (b) => b.writeUInt32LE(bits, 0x38))),
        'pubexpBits',
        0x38,
      );
      expectDecodeError(
        () => decodeAmdRootCert(mutate(ark, (b) => b.writeUInt32LE(bits, 0x3c))),
        'modulusBits',
        0x3c,
      );
    }
  });

  it('truncated: in the header, the exponent, the modulus, or part-way through the signature', () => {
    expectDecodeError(() => decodeAmdRootCert(ark.subarray(0, 0x20)), 'certifyingId', 0x14);
    expectDecodeError(() => decodeAmdRootCert(ark.subarray(0, 0x40)), 'pubexp', 0x40);
    expectDecodeError(() => decodeAmdRootCert(ark.subarray(0, 0x300)), 'modulus', 0x240);
    const e = expectDecodeError(() => decodeAmdRootCert(ark.subarray(0, 1599)), 'signature', 0x440);
    expect(e.message).toMatch(/buffer ends at 1599 bytes, field needs 1600/);
  });

  it('oversized', () => {
    expectDecodeError(() => decodeAmdRootCert(Buffer.concat([ark, Buffer.alloc(4)])), '(end)', 1600);
    const naples = root('naples', 'ark.cert');
    expectDecodeError(() => decodeAmdRootCert(Buffer.concat([naples, Buffer.alloc(1)])), '(end)', 0x340);
    expectDecodeError(() => decodeAmdRootCert(naples.subarray(0, 0x241)), 'signature', 0x240);
  });

  it('encode refuses fields of the wrong length', () => {
    const c: AmdRootCert = { ...decodeAmdRootCert(ark), modulus: Buffer.alloc(10) };
    expect(() => encodeAmdRootCert(c)).toThrow(AbiDecodeError);
  });
});

describe('AMD root-key certificate: fuzzing', () => {
  function decodesOrTypedError(bytes: Uint8Array): void {
    let decoded: AmdRootCert;
    try {
      decoded = decodeAmdRootCert(bytes);
    } catch (err) {
      expect(err).toBeInstanceOf(AbiDecodeError);
      return;
    }
    expect(encodeAmdRootCert(decoded).equals(Buffer.from(bytes))).toBe(true);
  }

  it('random bytes of any length', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 1700 }), decodesOrTypedError), {
      numRuns: 300,
    });
  });

  it('random bytes behind a plausible header', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 1700 }),
        fc.constantFrom(0, 0x13, 0x1001),
        fc.constantFrom(2048, 4096, 1024),
        fc.constantFrom(2048, 4096, 1024),
        (raw, usage, e, m) => {
          const b = Buffer.alloc(Math.max(raw.length, 0x40));
          b.set(raw);
          b.writeUInt32LE(1, 0);
          b.writeUInt32LE(usage, 0x24);
          b.writeUInt32LE(e, 0x38);
          b.writeUInt32LE(m, 0x3c);
          decodesOrTypedError(b);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('real certificates with random bytes changed, cut or extended', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...REAL.map((r) => r.bytes), root('naples', 'ark.cert.truncated')),
        fc.array(fc.tuple(fc.nat(0x7f), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        fc.integer({ min: -300, max: 300 }),
        (bytes, edits, resize) => {
          let b = Buffer.from(bytes);
          for (const [at, v] of edits) b[at] = v;
          if (resize < 0) b = b.subarray(0, Math.max(0, b.length + resize));
          if (resize > 0) b = Buffer.concat([b, Buffer.alloc(resize, 0x55)]);
          decodesOrTypedError(b);
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('RSA-PSS in AMD encoding', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

  it('keys round-trip through little-endian modulus and exponent fields', () => {
    const ark = decodeAmdRootCert(root('naples', 'ark.cert'));
    const key = rsaPublicKeyFromLe(ark.modulus, ark.pubexp);
    expect(rsaModulusBytes(key)).toBe(256);
    const back = rsaPublicKeyToLe(key, 256, 256);
    expect(back.modulus.equals(ark.modulus)).toBe(true);
    expect(back.exponent.equals(ark.pubexp)).toBe(true);
    // Wider fields with zero high bytes are the same key.
    const wide = rsaPublicKeyFromLe(
      Buffer.concat([ark.modulus, Buffer.alloc(256)]),
      ark.pubexp.subarray(0, 4),
    );
    expect(wide.equals(key)).toBe(true);
  });

  it('refuses a zero modulus or exponent', () => {
    expect(() => rsaPublicKeyFromLe(Buffer.alloc(256), Buffer.from([1, 0, 1]))).toThrow(RsaKeyError);
    expect(() => rsaPublicKeyFromLe(Buffer.alloc(256, 0xff), Buffer.alloc(4))).toThrow(RsaKeyError);
  });

  it('signatures are byte-reversed PSS with salt = digest length and MGF1 on the same hash', () => {
    const msg = Buffer.from('ASK body');
    for (const [hash, salt] of [
      ['sha256', 32],
      ['sha384', 48],
    ] as const) {
      const le = rsaPssSignLe(privateKey, hash, msg);
      expect(le.length).toBe(256);
      expect(rsaPssVerifyLe(publicKey, hash, msg, le)).toBe(true);
      const be = Buffer.from(le).reverse();
      const pss = (saltLength: number) =>
        verify(hash, msg, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }, be);
      expect(pss(salt)).toBe(true);
      expect(pss(20)).toBe(false);
      // Big-endian is not AMD's order.
      expect(rsaPssVerifyLe(publicKey, hash, msg, be)).toBe(false);
    }
  });

  it('a signature in a wider field verifies only if the bytes above the modulus are zero', () => {
    const msg = Buffer.from('CEK body');
    const le = rsaPssSignLe(privateKey, 'sha256', msg);
    const slot = Buffer.concat([le, Buffer.alloc(256)]);
    expect(rsaPssVerifyLe(publicKey, 'sha256', msg, slot)).toBe(true);
    slot[400] = 1;
    expect(rsaPssVerifyLe(publicKey, 'sha256', msg, slot)).toBe(false);
    expect(rsaPssVerifyLe(publicKey, 'sha256', msg, le.subarray(0, 255))).toBe(false);
  });
});
