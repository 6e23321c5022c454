// The 0x824-byte SEV certificate against the eight real Naples and Rome certificates, its typed
// validation errors, fuzzing; and the P-384 primitives in AMD's little-endian encodings it relies on.
import { createECDH } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  SEV_CERT_SIGNED_LENGTH,
  SEV_CERT_SIZE,
  SevCertAlgo,
  SevCertUsage,
  decodeSevCert,
  encodeSevCert,
  sevCertSignedBytes,
  type SevCert,
} from '../src/abi/index.js';
import {
  P384KeyError,
  P384_N,
  P384_P,
  bigIntToLe,
  ecdhP384,
  ecdsaP384Sign,
  ecdsaP384Verify,
  generateP384KeyPair,
  isP384Point,
  leToBigInt,
  p384PrivateKeyFromBytes,
  p384PrivateKeyFromScalar,
  p384PublicKeyFromAmd,
  p384PublicKeyToAmd,
} from '../src/crypto/index.js';

const TESTDATA = resolve(import.meta.dirname, '../../shared/testdata');
const GENERATIONS = ['naples', 'rome'] as const;
const ROLES = ['cek', 'oca', 'pek', 'pdh'] as const;

function cert(gen: string, role: string): Buffer {
  return readFileSync(resolve(TESTDATA, 'sev-platform', gen, `${role}.cert`));
}

const REAL = GENERATIONS.flatMap((gen) => ROLES.map((role) => ({ gen, role, bytes: cert(gen, role) })));

/** What each real certificate holds (sev-reference §3.1 table, API versions read from the files). */
const EXPECTED: Record<
  string,
  { api: [number, number]; usage: number; algo: number; slots: [number, number][] }
> = {
  'naples/cek': {
    api: [0, 14],
    usage: 0x1004,
    algo: 0x2,
    slots: [
      [0x13, 0x1],
      [0x1000, 0],
    ],
  },
  'naples/oca': {
    api: [0, 16],
    usage: 0x1001,
    algo: 0x2,
    slots: [
      [0x1001, 0x2],
      [0x1000, 0],
    ],
  },
  'naples/pek': {
    api: [0, 16],
    usage: 0x1002,
    algo: 0x2,
    slots: [
      [0x1001, 0x2],
      [0x1004, 0x2],
    ],
  },
  'naples/pdh': {
    api: [0, 16],
    usage: 0x1003,
    algo: 0x3,
    slots: [
      [0x1002, 0x2],
      [0x1000, 0],
    ],
  },
  'rome/cek': {
    api: [0, 14],
    usage: 0x1004,
    algo: 0x2,
    slots: [
      [0x13, 0x101],
      [0x1000, 0],
    ],
  },
  'rome/oca': {
    api: [0, 22],
    usage: 0x1001,
    algo: 0x2,
    slots: [
      [0x1001, 0x2],
      [0x1000, 0],
    ],
  },
  'rome/pek': {
    api: [0, 22],
    usage: 0x1002,
    algo: 0x2,
    slots: [
      [0x1001, 0x2],
      [0x1004, 0x2],
    ],
  },
  'rome/pdh': {
    api: [0, 22],
    usage: 0x1003,
    algo: 0x3,
    slots: [
      [0x1002, 0x2],
      [0x1000, 0],
    ],
  },
};

function slotOf(c: SevCert, i: 0 | 1): [number, number] {
  const s = c.signatures[i];
  return s.type === 'empty' ? [SevCertUsage.INVALID, SevCertAlgo.INVALID] : [s.usage, s.algo];
}

/** Expects `fn` to throw an AbiDecodeError naming `field` at `offset`. */
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
  expect(e.message).toContain(`field ${field} at offset 0x${offset.toString(16)}`);
  return e;
}

function mutate(bytes: Buffer, edit: (b: Buffer) => void): Buffer {
  const b = Buffer.from(bytes);
  edit(b);
  return b;
}

describe('SEV certificate: the real Naples and Rome certificates', () => {
  it.each(REAL.map((r) => [`${r.gen}/${r.role}`, r.bytes] as const))(
    '%s decodes as expected',
    (name, bytes) => {
      const want = EXPECTED[name];
      if (want === undefined) throw new Error(name);
      const c = decodeSevCert(bytes);
      expect(bytes.length).toBe(SEV_CERT_SIZE);
      expect(c.version).toBe(1);
      expect([c.apiMajor, c.apiMinor]).toEqual(want.api);
      expect([c.pubkey.usage, c.pubkey.algo]).toEqual([want.usage, want.algo]);
      if (c.pubkey.type !== 'ec') throw new Error('expected an EC key');
      expect(c.pubkey.curve).toBe(2);
      expect(c.pubkey.qx.subarray(48).every((b) => b === 0)).toBe(true);
      expect(isP384Point(c.pubkey.qx, c.pubkey.qy)).toBe(true);
      expect([slotOf(c, 0), slotOf(c, 1)]).toEqual(want.slots);
    },
  );

  it.each(REAL.map((r) => [`${r.gen}/${r.role}`, r.bytes] as const))(
    '%s: decode → encode gives back the same 2084 bytes',
    (_name, bytes) => {
      expect(encodeSevCert(decodeSevCert(bytes)).equals(bytes)).toBe(true);
    },
  );

  it('the signed region is VERSION through PUBKEY, [0, 0x414)', () => {
    const pek = cert('naples', 'pek');
    expect(SEV_CERT_SIGNED_LENGTH).toBe(0x414);
    expect(sevCertSignedBytes(pek).equals(pek.subarray(0, 0x414))).toBe(true);
  });

  it("the real OCA's self-signature verifies with SHA-256 on P-384 (algo 0x2), not SHA-384", () => {
    for (const gen of GENERATIONS) {
      const oca = cert(gen, 'oca');
      const c = decodeSevCert(oca);
      const sig = c.signatures[0];
      if (c.pubkey.type !== 'ec' || sig.type !== 'ecdsa') throw new Error('expected ECDSA');
      const key = p384PublicKeyFromAmd(c.pubkey);
      expect(ecdsaP384Verify(key, 'sha256', oca.subarray(0, 0x414), sig)).toBe(true);
      expect(ecdsaP384Verify(key, 'sha384', oca.subarray(0, 0x414), sig)).toBe(false);
    }
  });
});

describe('SEV certificate: validation names the field and offset', () => {
  const pek = cert('rome', 'pek');
  const pdh = cert('rome', 'pdh');

  it('wrong version', () => {
    const e = expectDecodeError(() => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(2, 0))), 'version', 0);
    expect(e.message).toMatch(/version 2, expected 1/);
  });

  it('unknown or INVALID key usage', () => {
    expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(0x1005, 0x8))),
      'pubkeyUsage',
      0x8,
    );
    expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(0x1000, 0x8))),
      'pubkeyUsage',
      0x8,
    );
  });

  it('unknown or INVALID key algorithm', () => {
    for (const algo of [0x0, 0x4, 0x100, 0x104])
      expectDecodeError(
        () => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(algo, 0xc))),
        'pubkeyAlgo',
        0xc,
      );
  });

  it('a curve other than P-384', () => {
    for (const curve of [0, 1, 3])
      expectDecodeError(
        () => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(curve, 0x10))),
        'pubkey.curve',
        0x10,
      );
  });

  it('a point not on the curve, or a coordinate of 2^384 or more', () => {
    const e = expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => b.writeUInt8(b.readUInt8(0x14) ^ 1, 0x14))),
      'pubkey.qx',
      0x14,
    );
    expect(e.message).toMatch(/not a point on the P-384 curve/);
    expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => b.writeUInt8(b.readUInt8(0x66) ^ 0x80, 0x66))),
      'pubkey.qx',
      0x14,
    );
    expectDecodeError(() => decodeSevCert(mutate(pek, (b) => (b[0x14 + 50] = 1))), 'pubkey.qx', 0x14 + 50);
    expectDecodeError(() => decodeSevCert(mutate(pek, (b) => (b[0x5c + 48] = 1))), 'pubkey.qy', 0x5c + 48);
    // x = p is not a field element even though it has only 48 bytes.
    const xp = mutate(pek, (b) => bigIntToLe(P384_P, 72).copy(b, 0x14));
    expectDecodeError(() => decodeSevCert(xp), 'pubkey.qx', 0x14);
  });

  it('a malformed signature slot: exactly one of usage/algo INVALID (the firmware rule)', () => {
    expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(0x1000, 0x414))),
      'sig1Algo',
      0x418,
    );
    expectDecodeError(() => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(0, 0x620))), 'sig2Usage', 0x61c);
  });

  it('a signature slot with an unknown usage, an unknown algorithm or a key-agreement algorithm', () => {
    expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(0x2000, 0x414))),
      'sig1Usage',
      0x414,
    );
    expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(0x7, 0x418))),
      'sig1Algo',
      0x418,
    );
    const e = expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => b.writeUInt32LE(SevCertAlgo.ECDH_SHA256, 0x418))),
      'sig1Algo',
      0x418,
    );
    expect(e.message).toMatch(/key-agreement/);
  });

  it('ECDSA r/s with bytes above the low 48, or junk after S', () => {
    expectDecodeError(() => decodeSevCert(mutate(pek, (b) => (b[0x41c + 60] = 1))), 'sig1.r', 0x41c + 60);
    expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => (b[0x624 + 0x48 + 48] = 1))),
      'sig2.s',
      0x624 + 0x48 + 48,
    );
    expectDecodeError(
      () => decodeSevCert(mutate(pek, (b) => (b[0x41c + 0x100] = 1))),
      'sig1.reserved',
      0x51c,
    );
  });

  it('an empty slot that holds non-zero bytes', () => {
    expectDecodeError(() => decodeSevCert(mutate(pdh, (b) => (b[0x700] = 0x5a))), 'sig2', 0x700);
  });

  it('truncated: names the first field the end cuts', () => {
    expectDecodeError(() => decodeSevCert(Buffer.alloc(0)), 'version', 0);
    expectDecodeError(() => decodeSevCert(pek.subarray(0, 0x100)), 'pubkey', 0x10);
    const e = expectDecodeError(() => decodeSevCert(pek.subarray(0, 0x823)), 'sig2', 0x624);
    expect(e.message).toMatch(/buffer ends at 2083 bytes/);
  });

  it('oversized', () => {
    const e = expectDecodeError(() => decodeSevCert(Buffer.concat([pek, Buffer.alloc(1)])), '(end)', 0x824);
    expect(e.message).toMatch(/2085 bytes/);
  });

  it('an RSA key: at most 4096 bits, a multiple of 8, and no wider than declared', () => {
    const rsa: SevCert = {
      version: 1,
      apiMajor: 0,
      apiMinor: 0,
      reserved: Buffer.alloc(2),
      pubkey: {
        type: 'rsa',
        usage: SevCertUsage.OCA,
        algo: SevCertAlgo.RSA_SHA256,
        modulusBits: 2048,
        pubexp: bigIntToLe(65537n, 512),
        modulus: Buffer.concat([Buffer.alloc(256, 0xc5), Buffer.alloc(256)]),
      },
      signatures: [{ type: 'empty' }, { type: 'empty' }],
    };
    const bytes = encodeSevCert(rsa);
    expect(decodeSevCert(bytes)).toEqual(rsa);
    for (const bits of [0, 4097, 4104, 2047])
      expectDecodeError(
        () => decodeSevCert(mutate(bytes, (b) => b.writeUInt32LE(bits, 0x10))),
        'pubkey.modulusBits',
        0x10,
      );
    expectDecodeError(
      () => decodeSevCert(mutate(bytes, (b) => (b[0x214 + 300] = 1))),
      'pubkey.modulus',
      0x214 + 300,
    );
    expectDecodeError(
      () => decodeSevCert(mutate(bytes, (b) => (b[0x14 + 256] = 1))),
      'pubkey.pubexp',
      0x14 + 256,
    );
  });
});

describe('SEV certificate: fuzzing', () => {
  /** Decoding any bytes either succeeds — and then re-encodes to the same bytes — or throws AbiDecodeError. */
  function decodesOrTypedError(bytes: Uint8Array): void {
    let decoded: SevCert;
    try {
      decoded = decodeSevCert(bytes);
    } catch (err) {
      expect(err).toBeInstanceOf(AbiDecodeError);
      return;
    }
    expect(encodeSevCert(decoded).equals(Buffer.from(bytes))).toBe(true);
  }

  it('random bytes of any length', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 0x900 }), decodesOrTypedError), {
      numRuns: 300,
    });
  });

  it('random bytes behind a plausible header (version 1, real usages and algorithms)', () => {
    const usage = fc.constantFrom(0x0, 0x13, 0x1000, 0x1001, 0x1002, 0x1003, 0x1004, 0x1005);
    const algo = fc.constantFrom(0x0, 0x1, 0x2, 0x3, 0x101, 0x102, 0x103, 0x4);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: SEV_CERT_SIZE, maxLength: SEV_CERT_SIZE }),
        usage,
        algo,
        fc.constantFrom(1, 2, 3),
        usage,
        algo,
        (raw, u, a, curve, su, sa) => {
          const b = Buffer.from(raw);
          b.writeUInt32LE(1, 0);
          b.writeUInt32LE(u, 0x8);
          b.writeUInt32LE(a, 0xc);
          b.writeUInt32LE(curve, 0x10);
          b.writeUInt32LE(su, 0x414);
          b.writeUInt32LE(sa, 0x418);
          decodesOrTypedError(b);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('real certificates with random bytes changed, cut or extended', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...REAL.map((r) => r.bytes)),
        fc.array(fc.tuple(fc.nat(SEV_CERT_SIZE - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.oneof(fc.constant(0), fc.integer({ min: -40, max: 40 })),
        (bytes, edits, resize) => {
          let b = Buffer.from(bytes);
          for (const [at, v] of edits) b[at] = v;
          if (resize < 0) b = b.subarray(0, b.length + resize);
          if (resize > 0) b = Buffer.concat([b, Buffer.alloc(resize, 0xaa)]);
          decodesOrTypedError(b);
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('P-384 in AMD encodings', () => {
  const G = {
    x: 0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7n,
    y: 0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5fn,
  };

  it('public keys round-trip through 72-byte little-endian QX/QY', () => {
    const { publicKey, privateKey } = generateP384KeyPair();
    const point = p384PublicKeyToAmd(publicKey);
    expect(point.qx.length).toBe(72);
    expect(point.qy.subarray(48).every((b) => b === 0)).toBe(true);
    expect(p384PublicKeyToAmd(privateKey)).toEqual(point);
    const back = p384PublicKeyFromAmd(point);
    expect(back.equals(publicKey)).toBe(true);
  });

  it('refuses points off the curve and coordinates wider than 48 bytes', () => {
    const point = p384PublicKeyToAmd(generateP384KeyPair().publicKey);
    const offCurve = { qx: point.qx, qy: Buffer.from(point.qy) };
    offCurve.qy[0] = (offCurve.qy[0] as number) ^ 1;
    expect(() => p384PublicKeyFromAmd(offCurve)).toThrow(P384KeyError);
    const wide = { qx: Buffer.from(point.qx), qy: point.qy };
    wide.qx[71] = 1;
    expect(() => p384PublicKeyFromAmd(wide)).toThrow(P384KeyError);
  });

  it('ECDSA: r and s are 72-byte little-endian; SHA-256 and SHA-384 are distinct', () => {
    const { publicKey, privateKey } = generateP384KeyPair();
    const msg = Buffer.from('sevsim certificate body');
    for (const hash of ['sha256', 'sha384'] as const) {
      const sig = ecdsaP384Sign(privateKey, hash, msg);
      expect(sig.r.length).toBe(72);
      expect(sig.s.subarray(48).every((b) => b === 0)).toBe(true);
      expect(leToBigInt(sig.r) < P384_N).toBe(true);
      expect(ecdsaP384Verify(publicKey, hash, msg, sig)).toBe(true);
      expect(ecdsaP384Verify(publicKey, hash === 'sha256' ? 'sha384' : 'sha256', msg, sig)).toBe(false);
      // Big-endian r/s (the OpenSSL order) is not the same signature.
      const reversed = {
        r: Buffer.from(sig.r.subarray(0, 48)).reverse(),
        s: Buffer.from(sig.s.subarray(0, 48)).reverse(),
      };
      expect(ecdsaP384Verify(publicKey, hash, msg, reversed)).toBe(false);
      const wide = { r: Buffer.from(sig.r), s: sig.s };
      wide.r[70] = 1;
      expect(ecdsaP384Verify(publicKey, hash, msg, wide)).toBe(false);
    }
  });

  it('a private key from bytes: d = (c mod (n − 1)) + 1, c little-endian (FIPS 186-4 B.4.1, ASPFW)', () => {
    const gOf = (bytes: Buffer) => p384PublicKeyToAmd(p384PrivateKeyFromBytes(bytes));
    // c = 0 → d = 1 → Q = G
    expect(gOf(Buffer.alloc(56))).toEqual({ qx: bigIntToLe(G.x, 72), qy: bigIntToLe(G.y, 72) });
    // c = n − 1 → d = 1 again; c = n − 2 → d = n − 1 → Q = −G
    expect(gOf(bigIntToLe(P384_N - 1n, 56))).toEqual({ qx: bigIntToLe(G.x, 72), qy: bigIntToLe(G.y, 72) });
    expect(gOf(bigIntToLe(P384_N - 2n, 48))).toEqual({
      qx: bigIntToLe(G.x, 72),
      qy: bigIntToLe(P384_P - G.y, 72),
    });
    // little-endian: byte 0 is the least significant, so c = 1 → d = 2
    const c1 = Buffer.alloc(56);
    c1[0] = 1;
    expect(p384PrivateKeyFromBytes(c1).export({ format: 'jwk' }).d).toBe(
      p384PrivateKeyFromScalar(2n).export({ format: 'jwk' }).d,
    );
    expect(() => p384PrivateKeyFromBytes(Buffer.alloc(47))).toThrow(P384KeyError);
    expect(() => p384PrivateKeyFromScalar(0n)).toThrow(P384KeyError);
    expect(() => p384PrivateKeyFromScalar(P384_N)).toThrow(P384KeyError);
  });

  it('the same bytes always give the same key', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 48, maxLength: 64 }), (bytes) => {
        const a = p384PublicKeyToAmd(p384PrivateKeyFromBytes(bytes));
        const b = p384PublicKeyToAmd(p384PrivateKeyFromBytes(Buffer.from(bytes)));
        expect(a).toEqual(b);
        expect(isP384Point(a.qx, a.qy)).toBe(true);
      }),
      { numRuns: 20 },
    );
  });

  it("ECDH: Z is the 48-byte big-endian X coordinate, the same on both sides and as OpenSSL's", () => {
    const d1 = 0x1234567890abcdefn;
    const d2 = P384_N - 12345n;
    const k1 = p384PrivateKeyFromScalar(d1);
    const k2 = p384PrivateKeyFromScalar(d2);
    const p1 = p384PublicKeyFromAmd(p384PublicKeyToAmd(k1));
    const p2 = p384PublicKeyFromAmd(p384PublicKeyToAmd(k2));
    const z = ecdhP384(k1, p2);
    expect(z.length).toBe(48);
    expect(ecdhP384(k2, p1).equals(z)).toBe(true);
    const openssl = createECDH('secp384r1');
    openssl.setPrivateKey(bigIntToLe(d1, 48).reverse());
    const other = createECDH('secp384r1');
    other.setPrivateKey(bigIntToLe(d2, 48).reverse());
    expect(openssl.computeSecret(other.getPublicKey()).equals(z)).toBe(true);
  });

  it('isP384Point: G is on the curve, G with y + 1 is not', () => {
    expect(isP384Point(bigIntToLe(G.x, 72), bigIntToLe(G.y, 72))).toBe(true);
    expect(isP384Point(bigIntToLe(G.x, 48), bigIntToLe(G.y + 1n, 48))).toBe(false);
  });
});
