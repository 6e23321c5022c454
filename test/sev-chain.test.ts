// The guest owner's SEV chain verifier on the real Naples and Rome chains: every link passes with the
// right roots; wrong roots, reversed pairs, the unsigned Naples ARK and any flipped bit break the right link.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  SEV_CERT_SIG_OFFSETS,
  SEV_CERT_SIG_SLOT_SIZE,
  SEV_CERT_SIGNED_LENGTH,
  amdRootCertSignedLength,
  decodeAmdRootCert,
  decodeSevCert,
} from '../src/abi/index.js';
import {
  CHAIN_ROLES,
  type ChainRole,
  SEV_CHAIN_LINKS,
  type SevChainInput,
  decodeChainCert,
  findCekSigner,
  verifyCertSignature,
  verifySevChain,
} from '../src/owner/index.js';

const TESTDATA = resolve(import.meta.dirname, '../../shared/testdata');
const PLATFORMS = ['naples', 'rome'] as const;
const ALL_ROOTS = ['naples', 'rome', 'milan', 'genoa', 'turin'] as const;

const read = (...p: string[]): Buffer => readFileSync(resolve(TESTDATA, ...p));

function chain(platform: string, roots = platform): Required<SevChainInput> {
  return {
    ark: read('amd-roots', roots, 'ark.cert'),
    ask: read('amd-roots', roots, 'ask.cert'),
    cek: read('sev-platform', platform, 'cek.cert'),
    oca: read('sev-platform', platform, 'oca.cert'),
    pek: read('sev-platform', platform, 'pek.cert'),
    pdh: read('sev-platform', platform, 'pdh.cert'),
  };
}

const key = (role: ChainRole): keyof SevChainInput => role.toLowerCase() as keyof SevChainInput;

describe('SEV chain: the real chains', () => {
  it.each(PLATFORMS)('%s verifies under its own ARK and ASK, every link listed', (platform) => {
    const result = verifySevChain(chain(platform));
    expect(result.broken).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.problems).toEqual([]);
    expect(result.links.map((l) => [l.name, l.ok])).toEqual(
      SEV_CHAIN_LINKS.map(([s, t]) => [`${s} → ${t}`, true]),
    );
    const byName = new Map(result.links.map((l) => [l.name, l]));
    // PEK carries the OCA's signature in slot 1 and the CEK's in slot 2.
    expect(byName.get('OCA → PEK')?.slot).toBe(1);
    expect(byName.get('CEK → PEK')?.slot).toBe(2);
    expect(byName.get('ASK → CEK')?.reason).toMatch(
      platform === 'naples' ? /RSA-PSS SHA-256/ : /RSA-PSS SHA-384/,
    );
    expect(byName.get('PEK → PDH')?.reason).toMatch(/ECDSA P-384 SHA-256 over bytes 0x000–0x413 verifies/);
  });

  it('the Rome ASK does not verify the Naples CEK (nor the Naples ASK the Rome CEK)', () => {
    for (const [platform, roots] of [
      ['naples', 'rome'],
      ['rome', 'naples'],
    ] as const) {
      const result = verifySevChain(chain(platform, roots));
      expect(result.ok).toBe(false);
      expect(result.broken).toEqual(['ASK → CEK']);
      expect(result.links.find((l) => l.name === 'ASK → CEK')?.reason).toMatch(/no signature slot by ASK/);
    }
  });

  it("no other generation's roots sign either CEK; each is found by trying them all", () => {
    for (const platform of PLATFORMS) {
      for (const roots of ALL_ROOTS) {
        if (roots === platform) continue;
        expect(verifySevChain(chain(platform, roots)).broken).toEqual(['ASK → CEK']);
      }
      const candidates = ALL_ROOTS.map((name) => ({ name, ...chain(platform, name) }));
      const found = findCekSigner(candidates, chain(platform).cek);
      expect(found.match?.name).toBe(platform);
      expect(found.tried.filter((t) => t.ok).map((t) => t.name)).toEqual([platform]);
    }
  });

  it('every reversed pair, and every pair that is not a link, fails', () => {
    const links = new Set(SEV_CHAIN_LINKS.map(([s, t]) => `${s}>${t}`));
    for (const platform of PLATFORMS) {
      const input = chain(platform);
      const certs = new Map(CHAIN_ROLES.map((r) => [r, decodeChainCert(r, input[key(r)])]));
      for (const signer of CHAIN_ROLES) {
        for (const subject of CHAIN_ROLES) {
          const check = verifyCertSignature(certs.get(subject)!, certs.get(signer)!);
          expect(check.ok, `${platform}: ${signer} → ${subject}: ${check.reason}`).toBe(
            links.has(`${signer}>${subject}`),
          );
        }
      }
      // e.g. the PDH "verifying" the PEK: a key-agreement key cannot sign.
      expect(verifyCertSignature(certs.get('PEK')!, certs.get('PDH')!).reason).toMatch(/cannot sign/);
    }
  });

  it('the truncated Naples ARK does not verify', () => {
    const input = { ...chain('naples'), ark: read('amd-roots', 'naples', 'ark.cert.truncated') };
    const result = verifySevChain(input);
    expect(result.ok).toBe(false);
    expect(result.broken).toEqual(['ARK → ARK']);
    expect(result.links[0]?.reason).toMatch(/unsigned/);
  });

  it('matches signature slots by usage and algorithm, whatever their order', () => {
    for (const platform of PLATFORMS) {
      const input = chain(platform);
      const pek = Buffer.from(input.pek);
      const [s1, s2] = SEV_CERT_SIG_OFFSETS;
      const slot1 = Buffer.from(pek.subarray(s1, s1 + SEV_CERT_SIG_SLOT_SIZE));
      pek.copy(pek, s1, s2, s2 + SEV_CERT_SIG_SLOT_SIZE);
      slot1.copy(pek, s2);
      const result = verifySevChain({ ...input, pek });
      expect(result.ok).toBe(true);
      expect(result.links.find((l) => l.name === 'CEK → PEK')?.slot).toBe(1);
      expect(result.links.find((l) => l.name === 'OCA → PEK')?.slot).toBe(2);
    }
  });

  it('a certificate in the wrong place fails every link it is in, naming the file', () => {
    const input = chain('rome');
    const result = verifySevChain({ ...input, cek: input.pek }, { CEK: 'cek.cert' });
    expect(result.problems).toEqual([
      {
        role: 'CEK',
        problem: expect.stringMatching(/^cek.cert holds a PEK \(0x1002\) key, expected CEK/) as unknown,
      },
    ]);
    expect(result.broken).toEqual(['ASK → CEK', 'CEK → PEK']);
  });

  it('a PDH must be a key-agreement key, the others signing keys', () => {
    const input = chain('naples');
    const pdh = Buffer.from(input.pdh);
    pdh.writeUInt32LE(0x2, 0xc); // ECDSA_SHA256
    const pek = Buffer.from(input.pek);
    pek.writeUInt32LE(0x3, 0xc); // ECDH_SHA256
    const result = verifySevChain({ ...input, pdh, pek });
    expect(result.problems.map((p) => p.problem)).toEqual([
      'PEK holds a PEK key for ECDH_SHA256 (0x3), expected a signing algorithm',
      'PDH holds a PDH key for ECDSA_SHA256 (0x2), expected ECDH',
    ]);
  });

  it('a malformed certificate is reported with its field and offset', () => {
    const input = chain('naples');
    const pdh = Buffer.from(input.pdh);
    pdh.writeUInt32LE(7, 0);
    const result = verifySevChain({ ...input, pdh }, { PDH: 'pdh.cert' });
    expect(result.broken).toEqual(['PEK → PDH']);
    expect(result.links.at(-1)?.reason).toBe(
      'pdh.cert: SEV certificate: field version at offset 0x0: version 7, expected 1',
    );
  });

  it("without AMD's roots, the owner's half is still checked", () => {
    const { ark: _ark, ask: _ask, ...owner } = chain('rome');
    const result = verifySevChain(owner);
    expect(result.broken).toEqual(['ARK → ARK', 'ARK → ASK', 'ASK → CEK']);
    expect(result.links[0]?.reason).toBe('no ARK given');
  });
});

describe('SEV chain: any flipped bit breaks the right link', () => {
  /** Byte ranges a signature covers or is, each with the links a flip there must break. */
  function regions(role: ChainRole, bytes: Buffer): { from: number; to: number; breaks: string[] }[] {
    const asSubject = SEV_CHAIN_LINKS.filter(([, t]) => t === role).map(([s, t]) => `${s} → ${t}`);
    if (role === 'ARK' || role === 'ASK') {
      const signed = amdRootCertSignedLength(decodeAmdRootCert(bytes));
      return [
        { from: 0, to: signed, breaks: asSubject },
        { from: signed, to: bytes.length, breaks: asSubject },
      ];
    }
    const usageRole = new Map<number, ChainRole>([
      [0x13, 'ASK'],
      [0x1001, 'OCA'],
      [0x1002, 'PEK'],
      [0x1004, 'CEK'],
    ]);
    const out = [{ from: 0, to: SEV_CERT_SIGNED_LENGTH, breaks: asSubject }];
    decodeSevCert(bytes).signatures.forEach((sig, i) => {
      if (sig.type === 'empty') return;
      const at = SEV_CERT_SIG_OFFSETS[i] as number;
      out.push({
        from: at,
        to: at + SEV_CERT_SIG_SLOT_SIZE,
        breaks: [`${usageRole.get(sig.usage)} → ${role}`],
      });
    });
    return out;
  }

  for (const platform of PLATFORMS) {
    for (const role of CHAIN_ROLES) {
      it(`${platform} ${role}`, () => {
        const input = chain(platform);
        const original = Buffer.from(input[key(role)]);
        const regs = regions(role, original);
        fc.assert(
          fc.property(
            fc.nat(regs.length - 1).chain((r) => {
              const reg = regs[r]!;
              return fc.tuple(fc.constant(reg), fc.integer({ min: reg.from * 8, max: reg.to * 8 - 1 }));
            }),
            ([reg, bit]) => {
              const flipped = Buffer.from(original);
              flipped[bit >> 3] = (flipped[bit >> 3] as number) ^ (1 << (bit & 7));
              const result = verifySevChain({ ...input, [key(role)]: flipped });
              expect(result.ok).toBe(false);
              for (const name of reg.breaks) expect(result.broken, `bit ${bit}`).toContain(name);
              for (const l of result.links)
                if (l.signer !== role && l.subject !== role)
                  expect(l.ok, `${l.name} after bit ${bit}`).toBe(true);
            },
          ),
          { numRuns: 40 },
        );
      });
    }
  }
});
