// LAUNCH_MEASURE verification and LAUNCH_SECRET packaging against the published vectors (virtee/sev
// `verify`, sevctl `measurement build` and `secret build`), checked from the platform's side, and fuzzed.
import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AbiDecodeError, PacketHeader, encodeEfiSecretTable } from '../src/abi/index.js';
import { ChannelContext, aes128Ctr, macEquals, packetMac } from '../src/crypto/index.js';
import {
  type LaunchMeasureExpectation,
  LaunchSecretError,
  decodeLaunchMeasureBlob,
  expectedLaunchMeasurement,
  packageLaunchSecret,
  verifyLaunchMeasurement,
} from '../src/owner/index.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const b64 = (s: string): Buffer => Buffer.from(s, 'base64');

// virtee/sev src/session/mod.rs test `verify`.
const VIRTEE: { blob: Buffer; expect: LaunchMeasureExpectation } = {
  blob: Buffer.concat([
    hex('6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea'),
    hex('4fbe0bedbad6c86ae8f68971d103e554'),
  ]),
  expect: {
    tik: hex('66320db73158a35a255d051758e95ed4'),
    firmware: { major: 0, minor: 0x12, build: 0x0f },
    policy: 0,
    launchDigest: createHash('sha256').update('').digest(),
  },
};

// virtee/sevctl tests/measurementbuild.rs (--launch-digest case): tests/data/measurement/tik1.bin.
const SEVCTL_MEASURE: { blob: Buffer; expect: LaunchMeasureExpectation } = {
  blob: b64('lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA'),
  expect: {
    tik: hex('3569cf61a32a602b87185ac6e0f55913'),
    firmware: { major: 1, minor: 40, build: 40 },
    policy: 3,
    launchDigest: b64('xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM='),
  },
};

// virtee/sevctl tests/secretbuild.rs: tests/data/secret/{tek1,tik1}.bin, secret1.txt, --iv.
const SEVCTL_SECRET = {
  tek: hex('52a869b79ab9c13bb6a92b0561619cb3'),
  tik: hex('c6d5a99561330509' + '12b24bbe5c372686'),
  blob: b64('TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS'),
  iv: b64('rFR07U3TLH2YnsUj2SVZ7A=='),
  secret: { guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('MY-LUKS-PASSPHRASE') },
  header: b64('AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q=='),
  payload: b64('0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA=='),
};

describe('LAUNCH_MEASURE verification', () => {
  it.each([
    ['virtee/sev (API 0.18 build 15, policy 0, empty digest)', VIRTEE],
    ['sevctl measurement build (API 1.40 build 40, policy 3)', SEVCTL_MEASURE],
  ])('%s matches', (_name, v) => {
    const verdict = verifyLaunchMeasurement(v.blob, v.expect);
    expect(verdict.ok).toBe(true);
    expect(verdict.withContext).toBe(true);
    expect(verdict.expected.equals(v.blob.subarray(0, 32))).toBe(true);
    expect(verdict.mnonce.equals(v.blob.subarray(32))).toBe(true);
    expect(verdict.reason).toMatch(/matches/);
  });

  it('any other digest, policy, firmware version, build or TIK fails', () => {
    const e = SEVCTL_MEASURE.expect;
    const others: LaunchMeasureExpectation[] = [
      { ...e, launchDigest: Buffer.alloc(32) },
      { ...e, policy: 1 },
      { ...e, firmware: { ...e.firmware, major: 0 } },
      { ...e, firmware: { ...e.firmware, minor: 41 } },
      { ...e, firmware: { ...e.firmware, build: 41 } },
      { ...e, tik: Buffer.alloc(16) },
    ];
    for (const o of others) {
      const v = verifyLaunchMeasurement(SEVCTL_MEASURE.blob, o);
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/does not match/);
    }
  });

  it('any flipped bit of the blob fails', () => {
    fc.assert(
      fc.property(fc.nat(48 * 8 - 1), (bit) => {
        const b = Buffer.from(VIRTEE.blob);
        b[bit >> 3] = (b[bit >> 3] as number) ^ (1 << (bit & 7));
        expect(verifyLaunchMeasurement(b, VIRTEE.expect).ok).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it('before API 0.17 the context byte and version are not measured (sev-tool calculate_measurement)', () => {
    const e = { ...VIRTEE.expect, firmware: { major: 0, minor: 16, build: 3 } };
    const mnonce = VIRTEE.blob.subarray(32);
    const policy = Buffer.alloc(4);
    const legacy = createHmac('sha256', e.tik).update(policy).update(e.launchDigest).update(mnonce).digest();
    expect(expectedLaunchMeasurement(e.tik, e.firmware, 0, e.launchDigest, mnonce).equals(legacy)).toBe(true);
    const v = verifyLaunchMeasurement(Buffer.concat([legacy, mnonce]), e);
    expect(v.ok).toBe(true);
    expect(v.withContext).toBe(false);
  });

  it('refuses inputs of the wrong size', () => {
    const e = VIRTEE.expect;
    expect(() => verifyLaunchMeasurement(VIRTEE.blob, { ...e, tik: Buffer.alloc(15) })).toThrow(RangeError);
    expect(() => verifyLaunchMeasurement(VIRTEE.blob, { ...e, launchDigest: Buffer.alloc(48) })).toThrow(
      RangeError,
    );
    expect(() =>
      verifyLaunchMeasurement(VIRTEE.blob, { ...e, firmware: { major: 256, minor: 0, build: 0 } }),
    ).toThrow(RangeError);
  });

  it('fuzz: a blob of any other length throws AbiDecodeError naming where it ends', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        if (bytes.length === 48) {
          expect(decodeLaunchMeasureBlob(bytes).mnonce).toHaveLength(16);
          expect(verifyLaunchMeasurement(bytes, VIRTEE.expect).ok).toBe(false);
        } else {
          expect(() => verifyLaunchMeasurement(bytes, VIRTEE.expect)).toThrow(AbiDecodeError);
        }
      }),
      { numRuns: 300 },
    );
    expect(() => decodeLaunchMeasureBlob(Buffer.alloc(40))).toThrow(/field mnonce at offset 0x20/);
    expect(() => decodeLaunchMeasureBlob(Buffer.alloc(49))).toThrow(/offset 0x30/);
  });
});

/** What the firmware does at LAUNCH_SECRET: check the MAC over the header and ciphertext, then decrypt. */
function platformAccepts(
  keys: { tek: Buffer; tik: Buffer },
  measurement: Buffer,
  header: Buffer,
  ciphertext: Buffer,
): Buffer | undefined {
  const h = PacketHeader.decode(header);
  if (header.length !== 0x34 || h.flags !== 0 || ciphertext.length % 16 !== 0) return undefined;
  const mac = packetMac(
    keys.tik,
    ChannelContext.SECRET,
    h.flags,
    h.iv,
    ciphertext.length,
    ciphertext,
    measurement,
  );
  return macEquals(mac, h.mac) ? aes128Ctr(keys.tek, h.iv, ciphertext) : undefined;
}

describe('LAUNCH_SECRET packaging', () => {
  const measurement = SEVCTL_SECRET.blob.subarray(0, 32);
  const table = encodeEfiSecretTable([SEVCTL_SECRET.secret]);

  it('reproduces sevctl secret build byte for byte (header and payload)', () => {
    const p = packageLaunchSecret({ ...SEVCTL_SECRET, measurement, plaintext: table });
    expect(p.header).toHaveLength(0x34);
    expect(p.header.toString('base64')).toBe(SEVCTL_SECRET.header.toString('base64'));
    expect(p.ciphertext.toString('base64')).toBe(SEVCTL_SECRET.payload.toString('base64'));
    expect(p.iv.equals(SEVCTL_SECRET.iv)).toBe(true);
  });

  it('the platform accepts it for that measurement only, and any flipped bit is refused', () => {
    const p = packageLaunchSecret({ ...SEVCTL_SECRET, measurement, plaintext: table, iv: undefined });
    expect(platformAccepts(SEVCTL_SECRET, measurement, p.header, p.ciphertext)?.equals(table)).toBe(true);
    expect(platformAccepts(SEVCTL_SECRET, Buffer.alloc(32), p.header, p.ciphertext)).toBeUndefined();
    const both = Buffer.concat([p.header, p.ciphertext]);
    fc.assert(
      fc.property(fc.nat(both.length * 8 - 1), (bit) => {
        const t = Buffer.from(both);
        t[bit >> 3] = (t[bit >> 3] as number) ^ (1 << (bit & 7));
        expect(
          platformAccepts(SEVCTL_SECRET, measurement, t.subarray(0, 0x34), t.subarray(0x34)),
        ).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it('draws a fresh IV each time, or from an injected source', () => {
    const a = packageLaunchSecret({ ...SEVCTL_SECRET, measurement, plaintext: table, iv: undefined });
    const b = packageLaunchSecret({ ...SEVCTL_SECRET, measurement, plaintext: table, iv: undefined });
    expect(a.iv.equals(b.iv)).toBe(false);
    const c = packageLaunchSecret({
      ...SEVCTL_SECRET,
      measurement,
      plaintext: table,
      iv: undefined,
      random: (n) => Buffer.alloc(n, 7),
    });
    expect(c.iv.equals(Buffer.alloc(16, 7))).toBe(true);
  });

  it('before API 0.17 the MAC leaves the measurement out (sev-tool create_launch_secret_header)', () => {
    const p = packageLaunchSecret({
      ...SEVCTL_SECRET,
      measurement,
      plaintext: table,
      firmware: { major: 0, minor: 16 },
    });
    expect(platformAccepts(SEVCTL_SECRET, Buffer.alloc(0), p.header, p.ciphertext)?.equals(table)).toBe(true);
    const modern = packageLaunchSecret({
      ...SEVCTL_SECRET,
      measurement,
      plaintext: table,
      firmware: { major: 0, minor: 17 },
    });
    expect(modern.header.equals(SEVCTL_SECRET.header)).toBe(true);
  });

  it.each<[string, Partial<Parameters<typeof packageLaunchSecret>[0]>, string]>([
    ['an empty secret', { plaintext: Buffer.alloc(0) }, 'BAD_LENGTH'],
    ['a secret that is not a multiple of 16 bytes', { plaintext: Buffer.alloc(18) }, 'BAD_LENGTH'],
    ['a short measurement', { measurement: Buffer.alloc(31) }, 'BAD_MEASUREMENT'],
    ['a short TEK', { tek: Buffer.alloc(15) }, 'BAD_KEY'],
    ['a long TIK', { tik: Buffer.alloc(32) }, 'BAD_KEY'],
    ['a short IV', { iv: Buffer.alloc(12) }, 'BAD_IV'],
  ])('refuses %s', (_name, change, code) => {
    try {
      packageLaunchSecret({ ...SEVCTL_SECRET, measurement, plaintext: table, ...change });
    } catch (err) {
      expect(err).toBeInstanceOf(LaunchSecretError);
      expect((err as LaunchSecretError).code).toBe(code);
      return;
    }
    throw new Error('expected a refusal');
  });
});
