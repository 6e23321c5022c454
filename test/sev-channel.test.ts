// The SEV transport channel against published vectors (virtee/sev src/session, sev-reference §4–§5).
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ChannelContext,
  aes128Ctr,
  deriveChannelWrapKeys,
  launchMeasurementMac,
  packetMac,
  policyMac,
  sevKdf,
  unwrapTransportKeys,
  wrapTransportKeys,
} from '../src/crypto/index.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const zero16 = Buffer.alloc(16);

describe('SP 800-108 KDF with little-endian counters', () => {
  it('matches the virtee vector KDF(0^16, 16, "sev-master-secret", 0^16)', () => {
    expect(sevKdf(zero16, 16, 'sev-master-secret', zero16).toString('hex')).toBe(
      'ab4d269fcc62bedb4511d56c386ce706',
    );
  });

  it('longer outputs are the concatenation of counter blocks 1, 2, … (prefix-consistent per length)', () => {
    const k = Buffer.alloc(32, 7);
    const out = sevKdf(k, 80, 'label', Buffer.from('ctx'));
    expect(out).toHaveLength(80);
    // The length is an input of every block, so a shorter request is not a prefix.
    expect(sevKdf(k, 32, 'label', Buffer.from('ctx')).equals(out.subarray(0, 32))).toBe(false);
  });

  it('rejects a non-positive length', () => {
    expect(() => sevKdf(zero16, 0, 'x')).toThrow(RangeError);
  });
});

describe('session wrap (virtee test "session")', () => {
  // Z = 16 zero bytes (sic), nonce, IV, TEK and TIK all zero, policy 0.
  const wrap = deriveChannelWrapKeys(zero16, zero16);
  const { wrapTk, wrapMac } = wrapTransportKeys(wrap, zero16, zero16, zero16);

  it('WRAP_TK, WRAP_MAC and POLICY_MAC equal the published values', () => {
    expect(wrapTk.toString('hex')).toBe('2137bc7f9bb8bd7c3e55a576a15d3454b3856b8ba27afadf46dcfee9f02c02c4');
    expect(wrapMac.toString('hex')).toBe('3176c0752738bd9d5e86689534020f528c088f16238826b000b327dee6aeed7d');
    expect(policyMac(zero16, 0).toString('hex')).toBe(
      'aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af',
    );
  });

  it('unwrap returns TEK and TIK, and refuses any flipped bit of the wrapped keys or the MAC', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.nat(511),
        (tek, tik, bit) => {
          const w = wrapTransportKeys(wrap, zero16, tek, tik);
          const back = unwrapTransportKeys(wrap, zero16, w.wrapTk, w.wrapMac);
          expect(back?.tek.equals(Buffer.from(tek))).toBe(true);
          expect(back?.tik.equals(Buffer.from(tik))).toBe(true);
          const both = Buffer.concat([w.wrapTk, w.wrapMac]);
          both[bit >> 3] = (both[bit >> 3] as number) ^ (1 << (bit & 7));
          expect(unwrapTransportKeys(wrap, zero16, both.subarray(0, 32), both.subarray(32))).toBeUndefined();
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe('launch measurement (virtee test "verify")', () => {
  it('HMAC(TIK, 0x04‖0‖18‖15‖le32(0)‖SHA256("")‖MNONCE) equals the published measurement', () => {
    const ld = createHash('sha256').update('').digest();
    const m = launchMeasurementMac(
      hex('66320db73158a35a255d051758e95ed4'),
      { major: 0, minor: 18, build: 0x0f },
      0,
      ld,
      hex('4fbe0bedbad6c86ae8f68971d103e554'),
    );
    expect(m.toString('hex')).toBe('6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea');
  });
});

describe('secret packet', () => {
  it('CTR is its own inverse and the MAC covers every field', () => {
    const tek = Buffer.alloc(16, 1);
    const tik = Buffer.alloc(16, 2);
    const iv = Buffer.alloc(16, 3);
    const secret = Buffer.from('a secret of 32 bytes exactly!!!!');
    const ct = aes128Ctr(tek, iv, secret);
    expect(aes128Ctr(tek, iv, ct)).toEqual(secret);
    const meas = Buffer.alloc(32, 9);
    const mac = packetMac(tik, ChannelContext.SECRET, 0, iv, ct.length, ct, meas);
    expect(packetMac(tik, ChannelContext.SECRET, 0, iv, ct.length, ct, Buffer.alloc(32, 8)).equals(mac)).toBe(
      false,
    );
    expect(packetMac(tik, ChannelContext.DATA, 0, iv, ct.length, ct, meas).equals(mac)).toBe(false);
    expect(packetMac(tik, ChannelContext.SECRET, 1, iv, ct.length, ct, meas).equals(mac)).toBe(false);
  });
});
