// Every SEV-SNP decoder, fed random bytes and mutations of valid structures, either returns (a value or
// its typed failure) or raises AbiDecodeError — never another exception. The PSP and the guest read these
// structures from memory an attacker controls.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AbiDecodeError,
  SNP_ECDSA_PUBKEY_SIZE,
  SNP_ECDSA_SIG_SIZE,
  SNP_GUEST_MSG_MAX_PAYLOAD,
  SNP_ID_AUTH_SIZE,
  SNP_ID_BLOCK_SIZE,
  SNP_REPORT_SIZE,
  SevCommand,
  SnpGuestStatus,
  SnpPlatformStatus,
  decodeSnpCpuidPage,
  decodeSnpEcdsaPublicKey,
  decodeSnpEcdsaSignature,
  decodeSnpGuestMessageHeader,
  decodeSnpIdAuth,
  decodeSnpIdBlock,
  decodeSnpKeyRequest,
  decodeSnpKeyResponse,
  decodeSnpLaunchUpdatePageInfo,
  decodeSnpPolicy,
  decodeSnpReport,
  decodeSnpReportRequest,
  decodeSnpReportResponse,
  decodeSnpSecretsPage,
  decodeSnpVmplPerms,
  encodeSnpCpuidPage,
  encodeSnpIdBlock,
  encodeSnpKeyRequest,
  encodeSnpReport,
  encodeSnpLaunchUpdatePageInfo,
  encodeSnpReportRequest,
  encodeSnpReportResponse,
  encodeSnpSecretsPage,
  encodeSnpVmplPerms,
  openSnpGuestMessage,
  sealSnpGuestMessage,
  signIdBlock,
  snpCommandBufferLayout,
  snpEcdsaPublicKeyToKeyObject,
  validateSnpPolicy,
  verifyIdAuth,
} from '../src/abi/index.js';
import { p384PrivateKeyFromScalar } from '../src/crypto/index.js';

const REPORTS = resolve(import.meta.dirname, '../../shared/testdata/snp-reports');
const reports = readdirSync(REPORTS)
  .filter((f) => f.endsWith('.report.bin'))
  .map((f) => readFileSync(join(REPORTS, f)));

/** Calls `f`; any exception other than AbiDecodeError fails the property. */
function onlyAbiErrors(f: () => unknown): void {
  try {
    f();
  } catch (err) {
    if (!(err instanceof AbiDecodeError)) throw err;
  }
}

/** Random buffers up to `max` bytes, and mutations of `bases`: byte edits, truncations, extensions. */
function bytesAround(bases: readonly Buffer[], max: number): fc.Arbitrary<Buffer> {
  const base = fc.constantFrom(...bases);
  return fc.oneof(
    fc.uint8Array({ minLength: 0, maxLength: max }).map((u) => Buffer.from(u)),
    fc
      .tuple(
        base,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
      )
      .map(([b, edits]) => {
        const c = Buffer.from(b);
        for (const [i, v] of edits) c[i % c.length] = v;
        return c;
      }),
    fc.tuple(base, fc.nat()).map(([b, n]) => Buffer.from(b.subarray(0, n % (b.length + 1)))),
    fc
      .tuple(base, fc.uint8Array({ minLength: 1, maxLength: 64 }))
      .map(([b, tail]) => Buffer.concat([b, tail])),
  );
}

const RUNS = { numRuns: 300 };

describe('SNP decoders under fuzzing raise only AbiDecodeError', () => {
  it('attestation reports: decode, and encode what decodes', () => {
    fc.assert(
      fc.property(bytesAround(reports, SNP_REPORT_SIZE + 8), (buf) =>
        onlyAbiErrors(() => {
          expect(encodeSnpReport(decodeSnpReport(buf)).equals(buf)).toBe(true);
        }),
      ),
      RUNS,
    );
  });

  it('guest message headers and sealed messages', () => {
    const key = Buffer.alloc(32, 7);
    const sealed = [
      sealSnpGuestMessage({
        vmpck: key,
        vmpckIndex: 0,
        seqno: 1n,
        type: 5,
        version: 1,
        payload: Buffer.alloc(0x60),
      }),
      sealSnpGuestMessage({
        vmpck: key,
        vmpckIndex: 3,
        seqno: 2n,
        type: 4,
        version: 1,
        payload: Buffer.alloc(0x40, 1),
      }),
      sealSnpGuestMessage({
        vmpck: key,
        vmpckIndex: 1,
        seqno: 9n,
        type: 1,
        version: 1,
        payload: Buffer.alloc(SNP_GUEST_MSG_MAX_PAYLOAD, 2),
      }),
    ];
    fc.assert(
      fc.property(bytesAround(sealed, 0x1010), fc.boolean(), (buf, request) =>
        onlyAbiErrors(() => {
          decodeSnpGuestMessageHeader(buf, { request });
          const r = openSnpGuestMessage(buf, key, { request });
          // whatever opens was sealed by us: the payload is one of ours
          if (r.ok) expect(sealed.some((s) => s.subarray(0x60).length === r.payload.length)).toBe(true);
        }),
      ),
      RUNS,
    );
  });

  it('report and key request/response payloads', () => {
    const bases = [
      encodeSnpReportRequest({ reportData: Buffer.alloc(64, 3), vmpl: 1, keySel: 1 }),
      encodeSnpReportResponse({ status: 0, report: reports[0] }),
      encodeSnpKeyRequest({
        rootKeySelect: 0,
        keySel: 0,
        guestFieldSelect: 0x3fn,
        vmpl: 0,
        guestSvn: 1,
        tcbVersion: 0n,
      }),
      encodeSnpKeyRequest({
        rootKeySelect: 1,
        keySel: 2,
        guestFieldSelect: 0x7fn,
        vmpl: 3,
        guestSvn: 0,
        tcbVersion: 5n,
        launchMitVector: 1n,
      }),
    ];
    fc.assert(
      fc.property(bytesAround(bases, 0x500), (buf) => {
        onlyAbiErrors(() => decodeSnpReportRequest(buf));
        onlyAbiErrors(() => decodeSnpReportResponse(buf));
        onlyAbiErrors(() => decodeSnpKeyRequest(buf));
        onlyAbiErrors(() => decodeSnpKeyResponse(buf));
      }),
      RUNS,
    );
  });

  it('ID blocks, ID auth pages, AMD keys and signatures; verifyIdAuth returns a typed status', () => {
    const idKey = p384PrivateKeyFromScalar(0x1234n);
    const author = p384PrivateKeyFromScalar(0x5678n);
    const ld = createHash('sha384').update('ld').digest();
    const block = encodeSnpIdBlock({
      ld,
      familyId: Buffer.alloc(16, 1),
      imageId: Buffer.alloc(16, 2),
      version: 1,
      guestSvn: 1,
      policy: 0x30000n,
    });
    const withAuthor = signIdBlock(block, idKey, author);
    const auths = [withAuthor, signIdBlock(block, idKey)];
    const statuses = new Set([
      'SUCCESS',
      'BAD_MEASUREMENT',
      'POLICY_FAILURE',
      'INVALID_PARAM',
      'BAD_SIGNATURE',
    ]);
    const seen = new Set<string>();
    fc.assert(
      fc.property(
        bytesAround([block], SNP_ID_BLOCK_SIZE + 4),
        bytesAround(auths, SNP_ID_AUTH_SIZE + 4),
        fc.boolean(),
        fc.boolean(),
        (blk, auth, authorKeyEnabled, againstGuest) => {
          onlyAbiErrors(() => decodeSnpIdBlock(blk));
          onlyAbiErrors(() => decodeSnpIdAuth(auth));
          onlyAbiErrors(() => {
            const r = verifyIdAuth(
              blk,
              auth,
              againstGuest
                ? { authorKeyEnabled, expectedLaunchDigest: ld, expectedPolicy: 0x30000n }
                : { authorKeyEnabled },
            );
            expect(statuses.has(r.status)).toBe(true);
            seen.add(r.status);
          });
        },
      ),
      { numRuns: 200 },
    );
    // the mutations reach the signature checks, not only the cheap comparisons
    expect(seen.has('BAD_SIGNATURE')).toBe(true);
    const keys = [withAuthor.subarray(0x240, 0x644), withAuthor.subarray(0x880, 0xc84)];
    const sigs = [withAuthor.subarray(0x40, 0x240)];
    fc.assert(
      fc.property(
        bytesAround(keys, SNP_ECDSA_PUBKEY_SIZE + 4),
        bytesAround(sigs, SNP_ECDSA_SIG_SIZE + 4),
        (k, s) => {
          onlyAbiErrors(() => decodeSnpEcdsaPublicKey(k));
          onlyAbiErrors(() => snpEcdsaPublicKeyToKeyObject(k));
          onlyAbiErrors(() => decodeSnpEcdsaSignature(s));
        },
      ),
      RUNS,
    );
  });

  it('CPUID pages', () => {
    const entry = { eaxIn: 1, ecxIn: 0, xcr0In: 1n, xssIn: 0n, eax: 2, ebx: 3, ecx: 4, edx: 5 };
    const bases = [
      encodeSnpCpuidPage([entry]),
      encodeSnpCpuidPage(Array.from({ length: 64 }, () => entry)),
      encodeSnpCpuidPage([]),
    ];
    fc.assert(
      fc.property(bytesAround(bases, 0x1010), (buf) =>
        onlyAbiErrors(() => {
          const entries = decodeSnpCpuidPage(buf);
          expect(entries.length).toBeLessThanOrEqual(64);
        }),
      ),
      RUNS,
    );
  });

  it('secrets pages', () => {
    const k = (b: number): Buffer => Buffer.alloc(32, b);
    const base = encodeSnpSecretsPage({
      imiEn: false,
      fms: 0xa10f11,
      gosvw: Buffer.alloc(16),
      vmpck: [k(1), k(2), k(3), k(4)],
    });
    fc.assert(
      fc.property(bytesAround([base], 0x1010), (buf) =>
        onlyAbiErrors(() => {
          const s = decodeSnpSecretsPage(buf);
          expect(s.vmpck.every((v) => v.length === 32)).toBe(true);
        }),
      ),
      RUNS,
    );
  });

  it('every SNP command buffer layout, with its reserved-field check', () => {
    const ids = Object.values(SevCommand).filter((id) => id >= 0x80);
    const layouts = [...new Set(ids.map((id) => snpCommandBufferLayout(id)).filter((l) => l !== undefined))];
    layouts.push(SnpPlatformStatus, SnpGuestStatus);
    expect(layouts.length).toBeGreaterThanOrEqual(14);
    const bases = layouts.map((l) => Buffer.alloc(l.size));
    fc.assert(
      fc.property(fc.constantFrom(...layouts), bytesAround(bases, 0x48), (layout, buf) => {
        onlyAbiErrors(() => layout.decode(buf));
        onlyAbiErrors(() => layout.reservedNonZero(buf));
        onlyAbiErrors(() => layout.decodeChecked(buf));
      }),
      RUNS,
    );
  });

  it('packed words and policies never throw', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.bigInt({ min: -1n, max: 1n << 65n }),
        (w, p) => {
          const info = decodeSnpLaunchUpdatePageInfo(w);
          expect(encodeSnpLaunchUpdatePageInfo(info)).toBe(w & 0x1f);
          expect(encodeSnpVmplPerms(decodeSnpVmplPerms(w))).toBe((w & ~0xff) >>> 0);
          decodeSnpPolicy(p);
          const check = validateSnpPolicy(p, { apiMajor: 1, apiMinor: 55, smtEnabled: (w & 1) === 1 });
          expect(check.ok || check.status === 'POLICY_FAILURE').toBe(true);
        },
      ),
      RUNS,
    );
  });
});
