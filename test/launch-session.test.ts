// The owner's launch session, checked from the PLATFORM's side: with a PDH whose private key the test
// holds, derive Z from the GODH certificate as the firmware does, unwrap TEK/TIK (WRAP_MAC first), check
// POLICY_MAC — plus virtee/sev's published session vector, real Naples/Rome PDHs, and fuzzing.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  SEV_CERT_CURVE_P384,
  SessionBuffer,
  SevCertAlgo,
  SevCertUsage,
  decodeSevCert,
  encodeSevCert,
} from '../src/abi/index.js';
import {
  Drbg,
  deriveChannelWrapKeys,
  ecdhP384,
  generateP384KeyPair,
  macEquals,
  p384PublicKeyFromAmd,
  p384PublicKeyToAmd,
  policyMac,
  unwrapTransportKeys,
} from '../src/crypto/index.js';
import {
  type LaunchSession,
  buildSessionBuffer,
  createLaunchSession,
  decodePdhCert,
  decodeTransportKeys,
  encodeTransportKeys,
} from '../src/owner/index.js';

const testdata = resolve(import.meta.dirname, '../../shared/testdata/sev-platform');
const zero16 = Buffer.alloc(16);

/** A SEV certificate for `key` with the given usage and algorithm, unsigned. */
function certFor(key: KeyObject, usage: number, algo: number): Buffer {
  const { qx, qy } = p384PublicKeyToAmd(key);
  return encodeSevCert({
    version: 1,
    apiMajor: 0,
    apiMinor: 24,
    reserved: Buffer.alloc(2),
    pubkey: {
      type: 'ec',
      usage: usage as SevCertUsage,
      algo: algo as SevCertAlgo,
      curve: SEV_CERT_CURVE_P384,
      qx,
      qy,
      reserved: Buffer.alloc(0x370),
    },
    signatures: [{ type: 'empty' }, { type: 'empty' }],
  });
}

const platform = generateP384KeyPair();
const pdhCert = certFor(platform.publicKey, SevCertUsage.PDH, SevCertAlgo.ECDH_SHA256);

/**
 * What the firmware does at LAUNCH_START (ASPFW establish_channel): sanity-check the GODH certificate,
 * Z = ECDH(PDH private, GODH public), verify WRAP_MAC, unwrap, verify POLICY_MAC. Undefined on any failure.
 */
function platformOpens(
  godhCert: Uint8Array,
  session: Uint8Array,
  policy: number,
): { tek: Buffer; tik: Buffer } | undefined {
  const godh = decodeSevCert(godhCert);
  const k = godh.pubkey;
  if (
    godh.version !== 1 ||
    k.type !== 'ec' ||
    k.usage !== SevCertUsage.PDH ||
    k.algo !== SevCertAlgo.ECDH_SHA256
  )
    return undefined;
  const z = ecdhP384(platform.privateKey, p384PublicKeyFromAmd(k));
  const s = SessionBuffer.decode(session);
  const keys = unwrapTransportKeys(deriveChannelWrapKeys(z, s.nonce), s.wrapIv, s.wrapTk, s.wrapMac);
  if (keys === undefined) return undefined;
  return macEquals(policyMac(keys.tik, policy), s.policyMac) ? keys : undefined;
}

const seeded = (seed: number): ((n: number) => Buffer) => {
  const drbg = Drbg.fromSeed(seed, 'launch-session-test');
  return (n) => drbg.generate(n);
};

describe('launch session: virtee/sev vector', () => {
  it('Z = 16 zero bytes, nonce/IV/TEK/TIK zero, policy 0 gives the published WRAP_TK, WRAP_MAC, POLICY_MAC', () => {
    const buf = buildSessionBuffer({
      sharedSecret: zero16,
      nonce: zero16,
      wrapIv: zero16,
      tek: zero16,
      tik: zero16,
      policy: 0,
    });
    expect(buf).toHaveLength(0x80);
    expect(buf.subarray(0x00, 0x10).equals(zero16)).toBe(true);
    expect(buf.subarray(0x10, 0x30).toString('hex')).toBe(
      '2137bc7f9bb8bd7c3e55a576a15d3454b3856b8ba27afadf46dcfee9f02c02c4',
    );
    expect(buf.subarray(0x30, 0x40).equals(zero16)).toBe(true);
    expect(buf.subarray(0x40, 0x60).toString('hex')).toBe(
      '3176c0752738bd9d5e86689534020f528c088f16238826b000b327dee6aeed7d',
    );
    expect(buf.subarray(0x60, 0x80).toString('hex')).toBe(
      'aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af',
    );
  });
});

describe('launch session: end to end from the platform side', () => {
  const policy = 0x0001_0005; // NODBG | ES, API ≥ 1.0
  const s: LaunchSession = createLaunchSession(pdhCert, policy);

  it('the GODH certificate is what the firmware accepts: v1, PDH, ECDH_SHA256, P-384, API 0.0, unsigned', () => {
    expect(s.godhCert).toHaveLength(0x824);
    const c = decodeSevCert(s.godhCert);
    expect(c.version).toBe(1);
    expect([c.apiMajor, c.apiMinor]).toEqual([0, 0]);
    expect(c.pubkey).toMatchObject({ type: 'ec', usage: 0x1003, algo: 0x3, curve: 2 });
    expect(c.signatures).toEqual([{ type: 'empty' }, { type: 'empty' }]);
    expect(encodeSevCert(c).equals(s.godhCert)).toBe(true);
  });

  it('the platform derives the same Z, unwraps TEK and TIK, and accepts the policy MAC', () => {
    expect(s.session).toHaveLength(0x80);
    const keys = platformOpens(s.godhCert, s.session, policy);
    expect(keys?.tek.equals(s.tek)).toBe(true);
    expect(keys?.tik.equals(s.tik)).toBe(true);
  });

  it('another policy, another platform, or any flipped bit of the session is refused', () => {
    expect(platformOpens(s.godhCert, s.session, policy ^ 1)).toBeUndefined();
    const other = createLaunchSession(certFor(generateP384KeyPair().publicKey, 0x1003, 0x3), policy);
    expect(platformOpens(other.godhCert, other.session, policy)).toBeUndefined();
    fc.assert(
      fc.property(fc.nat(0x80 * 8 - 1), (bit) => {
        const t = Buffer.from(s.session);
        t[bit >> 3] = (t[bit >> 3] as number) ^ (1 << (bit & 7));
        expect(platformOpens(s.godhCert, t, policy)).toBeUndefined();
      }),
      { numRuns: 150 },
    );
  });

  it('fresh keys every time; an injected RNG makes a session reproducible', () => {
    const again = createLaunchSession(pdhCert, policy);
    expect(again.tek.equals(s.tek) || again.godhCert.equals(s.godhCert)).toBe(false);
    const a = createLaunchSession(pdhCert, policy, { random: seeded(1) });
    const b = createLaunchSession(pdhCert, policy, { random: seeded(1) });
    const c = createLaunchSession(pdhCert, policy, { random: seeded(2) });
    expect(a.godhCert.equals(b.godhCert) && a.session.equals(b.session) && a.tek.equals(b.tek)).toBe(true);
    expect(a.godhCert.equals(c.godhCert) || a.session.equals(c.session)).toBe(false);
    // Draw order: 56 bytes of GODH key, then NONCE, TEK, TIK, WRAP_IV.
    const r = seeded(1);
    r(56);
    const [nonce, tek, tik, iv] = [r(16), r(16), r(16), r(16)];
    const parts = SessionBuffer.decode(a.session);
    expect([parts.nonce, a.tek, a.tik, parts.wrapIv].map((x) => x.toString('hex'))).toEqual(
      [nonce, tek, tik, iv].map((x) => x.toString('hex')),
    );
    expect(platformOpens(a.godhCert, a.session, policy)?.tik.equals(a.tik)).toBe(true);
  });

  it('refuses a random source that returns the wrong number of bytes, and a policy that is not a u32', () => {
    expect(() => createLaunchSession(pdhCert, 1, { random: () => Buffer.alloc(3) })).toThrow(RangeError);
    expect(() => createLaunchSession(pdhCert, 2 ** 32)).toThrow(RangeError);
    expect(() => createLaunchSession(pdhCert, -1)).toThrow(RangeError);
    expect(() => createLaunchSession(pdhCert, 0.5)).toThrow(RangeError);
  });
});

describe('launch session: PDH certificates', () => {
  it.each(['naples', 'rome'])('a real %s PDH opens a session', (gen) => {
    const pdh = readFileSync(join(testdata, gen, 'pdh.cert'));
    expect(decodePdhCert(pdh)).toMatchObject({ usage: 0x1003, algo: 0x3 });
    const s = createLaunchSession(pdh, 1);
    expect(decodeSevCert(s.godhCert).pubkey.usage).toBe(0x1003);
    expect(s.session).toHaveLength(0x80);
  });

  const refusal = (bytes: Uint8Array): AbiDecodeError => {
    try {
      createLaunchSession(bytes, 0);
    } catch (err) {
      if (err instanceof AbiDecodeError) return err;
      throw err;
    }
    throw new Error('expected the PDH to be refused');
  };

  it('refuses a PEK given as PDH, a PDH for signing, a short file and an off-curve point', () => {
    const pek = readFileSync(join(testdata, 'naples', 'pek.cert'));
    expect(refusal(pek)).toMatchObject({ field: 'pubkeyUsage', offset: 0x8 });
    const signingPdh = certFor(platform.publicKey, SevCertUsage.PDH, SevCertAlgo.ECDSA_SHA256);
    expect(refusal(signingPdh)).toMatchObject({ field: 'pubkeyAlgo', offset: 0xc });
    expect(refusal(pdhCert.subarray(0, 0x100))).toMatchObject({ field: 'pubkey', offset: 0x10 });
    const offCurve = Buffer.from(pdhCert);
    offCurve[0x14] = (offCurve[0x14] as number) ^ 1;
    expect(refusal(offCurve)).toMatchObject({ field: 'pubkey.qx', offset: 0x14 });
    expect(refusal(Buffer.concat([pdhCert, Buffer.alloc(1)])).field).toBe('(end)');
  });

  it('fuzz: mutated PDH certificates give a session or AbiDecodeError, nothing else', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(0x823), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(0x824),
        (edits, cut) => {
          const b = Buffer.from(pdhCert);
          for (const [at, v] of edits) b[at] = v;
          for (const input of [b, b.subarray(0, cut)]) {
            try {
              expect(createLaunchSession(input, 0).session).toHaveLength(0x80);
            } catch (err) {
              expect(err).toBeInstanceOf(AbiDecodeError);
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('transport keys file (tmp_tk.bin)', () => {
  it('is TEK ‖ TIK, 32 bytes, and nothing else decodes', () => {
    const tek = Buffer.alloc(16, 0xe);
    const tik = Buffer.alloc(16, 0x1);
    const file = encodeTransportKeys({ tek, tik });
    expect(file.toString('hex')).toBe('0e'.repeat(16) + '01'.repeat(16));
    expect(decodeTransportKeys(file)).toEqual({ tek, tik });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        if (bytes.length === 32) expect(decodeTransportKeys(bytes).tek).toHaveLength(16);
        else expect(() => decodeTransportKeys(bytes)).toThrow(AbiDecodeError);
      }),
      { numRuns: 200 },
    );
  });
});
