// The platform's identity: a chain a guest owner can verify against the simulated AMD root (and
// not against AMD's real one), PEK/PDH lifecycle commands with AMD's length rules, ownership by an
// external OCA, GET_ID, and persistence across restarts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  GET_ID_BYTES,
  GetIdBuffer,
  PdhCertExportBuffer,
  PekCertImportBuffer,
  PekCsrBuffer,
  PlatformStatusBuffer,
  SEV_CERT_SIGNED_LENGTH,
  SEV_CERT_SIZE,
  SevCertAlgo,
  SevCertUsage,
  SevCommand,
  SevStatus,
  decodeAmdRootCert,
  decodeSevCert,
  encodeSevCert,
  type SevCert,
} from '../src/abi/index.js';
import { ecdsaP384Sign, generateP384KeyPair, p384PublicKeyToAmd } from '../src/crypto/index.js';
import { Hypervisor } from '../src/host/index.js';
import { verifySevChain } from '../src/owner/index.js';
import { createPlatform } from '../src/psp/index.js';
import { SIMULATED_KEY_ID_PREFIX, simulatedAmdRoot } from '../src/psp/simulated-amd-root.js';

const testdata = resolve(import.meta.dirname, '../../shared/testdata');

function machine(opts: { stateDirectory?: string; seed?: string } = {}) {
  const platform = createPlatform({
    seed: opts.seed ?? 'identity',
    dramBytes: 64 << 20,
    ...(opts.stateDirectory ? { stateDirectory: opts.stateDirectory } : {}),
  });
  const hv = new Hypervisor(platform);
  const page = hv.frames.allocateMany(4, true)[0] as number;
  const exportChain = (): { pdh: Buffer; pek: Buffer; oca: Buffer; cek: Buffer; status: number } => {
    const r = hv.driver.raw(SevCommand.PDH_CERT_EXPORT, PdhCertExportBuffer, {
      pdhPaddr: BigInt(page),
      pdhLength: SEV_CERT_SIZE,
      chainPaddr: BigInt(page + SEV_CERT_SIZE),
      chainLength: 3 * SEV_CERT_SIZE,
    });
    const mem = hv.soc.hostMemory;
    const at = (i: number): Buffer => mem.read(page + i * SEV_CERT_SIZE, SEV_CERT_SIZE, false);
    return { status: r.status, pdh: at(0), pek: at(1), oca: at(2), cek: at(3) };
  };
  return { platform, hv, page, exportChain };
}

function amdRootFiles(): { ark: Buffer; ask: Buffer } {
  const root = simulatedAmdRoot();
  return { ark: root.ark, ask: root.ask };
}

describe('platform identity', () => {
  it('PDH_CERT_EXPORT gives a chain that verifies against the simulated AMD root, link by link', () => {
    const { hv, exportChain } = machine();
    hv.initPlatform();
    const chain = exportChain();
    expect(chain.status).toBe(SevStatus.SUCCESS);
    const result = verifySevChain({ ...amdRootFiles(), ...chain });
    expect(result.broken).toEqual([]);
    expect(result.links).toHaveLength(7);
    expect(decodeSevCert(chain.cek).pubkey.usage).toBe(SevCertUsage.CEK);
  });

  it('the simulated root says so, and AMD’s real roots reject the simulated CEK', () => {
    const { ark, ask } = amdRootFiles();
    expect(decodeAmdRootCert(ark).keyId.subarray(0, 9)).toEqual(SIMULATED_KEY_ID_PREFIX);
    expect(decodeAmdRootCert(ask).keyId.subarray(0, 9)).toEqual(SIMULATED_KEY_ID_PREFIX);
    const { hv, exportChain } = machine();
    hv.initPlatform();
    const chain = exportChain();
    for (const gen of ['naples', 'rome', 'milan', 'genoa', 'turin']) {
      const real = {
        ark: readFileSync(join(testdata, 'amd-roots', gen, 'ark.cert')),
        ask: readFileSync(join(testdata, 'amd-roots', gen, 'ask.cert')),
      };
      const r = verifySevChain({ ...real, ...chain });
      expect(r.broken, gen).toContain('ASK → CEK');
    }
  });

  it('the CEK depends on the chip only: PEK_GEN and PLATFORM_RESET change OCA/PEK/PDH, never the CEK', () => {
    const { hv, exportChain } = machine();
    hv.initPlatform();
    const first = exportChain();
    expect(hv.driver.simple(SevCommand.PEK_GEN)).toBe(SevStatus.SUCCESS);
    const second = exportChain();
    expect(second.cek.subarray(0, SEV_CERT_SIGNED_LENGTH)).toEqual(
      first.cek.subarray(0, SEV_CERT_SIGNED_LENGTH),
    );
    expect(second.pek.equals(first.pek)).toBe(false);
    expect(second.oca.equals(first.oca)).toBe(false);
    expect(second.pdh.equals(first.pdh)).toBe(false);
    expect(verifySevChain({ ...amdRootFiles(), ...second }).broken).toEqual([]);
    expect(hv.driver.simple(SevCommand.PDH_GEN)).toBe(SevStatus.SUCCESS);
    const third = exportChain();
    expect(third.pek).toEqual(second.pek);
    expect(third.pdh.equals(second.pdh)).toBe(false);
    // PEK_GEN only in INIT; PLATFORM_RESET only in UNINIT.
    expect(hv.driver.simple(SevCommand.PLATFORM_RESET)).toBe(SevStatus.INVALID_PLATFORM_STATE);
    hv.driver.callSimple(SevCommand.SHUTDOWN);
    expect(hv.driver.simple(SevCommand.PEK_GEN)).toBe(SevStatus.INVALID_PLATFORM_STATE);
    expect(hv.driver.simple(SevCommand.PLATFORM_RESET)).toBe(SevStatus.SUCCESS);
    hv.initPlatform();
    const fourth = exportChain();
    expect(fourth.cek.subarray(0, SEV_CERT_SIGNED_LENGTH)).toEqual(
      first.cek.subarray(0, SEV_CERT_SIGNED_LENGTH),
    );
    expect(fourth.pek.equals(third.pek)).toBe(false);
  });

  it('length rules: short buffers answer INVALID_LENGTH with the needed lengths written back', () => {
    const { hv, page } = machine();
    hv.initPlatform();
    const exp = hv.driver.raw(SevCommand.PDH_CERT_EXPORT, PdhCertExportBuffer, {
      pdhPaddr: BigInt(page),
      pdhLength: 16,
      chainPaddr: BigInt(page),
      chainLength: 16,
    });
    expect(exp.status).toBe(SevStatus.INVALID_LENGTH);
    expect(exp.out).toMatchObject({ pdhLength: SEV_CERT_SIZE, chainLength: 3 * SEV_CERT_SIZE });
    const csr = hv.driver.raw(SevCommand.PEK_CSR, PekCsrBuffer, { csrPaddr: BigInt(page), csrLength: 0 });
    expect(csr).toMatchObject({ status: SevStatus.INVALID_LENGTH, out: { csrLength: SEV_CERT_SIZE } });
    const id = hv.driver.raw(SevCommand.GET_ID, GetIdBuffer, { idPaddr: BigInt(page), idLength: 8 });
    expect(id).toMatchObject({ status: SevStatus.INVALID_LENGTH, out: { idLength: GET_ID_BYTES } });
  });

  it('GET_ID: 64 bytes, the same for the same chip in any state, different for another chip', () => {
    const read = (seed: string): Buffer => {
      const { hv, page } = machine({ seed });
      expect(
        hv.driver.raw(SevCommand.GET_ID, GetIdBuffer, { idPaddr: BigInt(page), idLength: 64 }).status,
      ).toBe(SevStatus.SUCCESS);
      return hv.soc.hostMemory.read(page, 64, false);
    };
    expect(read('chip-a')).toEqual(read('chip-a'));
    expect(read('chip-a').equals(read('chip-b'))).toBe(false);
  });

  it('PEK_CSR + PEK_CERT_IMPORT: an external OCA takes ownership; the PEK then carries OCA and CEK signatures', () => {
    const { hv, page, exportChain } = machine();
    hv.initPlatform();
    const csrStatus = hv.driver.raw(SevCommand.PEK_CSR, PekCsrBuffer, {
      csrPaddr: BigInt(page),
      csrLength: SEV_CERT_SIZE,
    }).status;
    expect(csrStatus).toBe(SevStatus.SUCCESS);
    const csr = decodeSevCert(hv.soc.hostMemory.read(page, SEV_CERT_SIZE, false));
    expect(csr.signatures).toEqual([{ type: 'empty' }, { type: 'empty' }]);
    // The owner's OCA: self-signed, and it signs the CSR.
    const owner = generateP384KeyPair();
    const sign = (c: SevCert): SevCert => {
      const sig = ecdsaP384Sign(
        owner.privateKey,
        'sha256',
        encodeSevCert(c).subarray(0, SEV_CERT_SIGNED_LENGTH),
      );
      return {
        ...c,
        signatures: [
          { type: 'ecdsa', usage: SevCertUsage.OCA, algo: SevCertAlgo.ECDSA_SHA256, r: sig.r, s: sig.s },
          { type: 'empty' },
        ],
      };
    };
    const { qx, qy } = p384PublicKeyToAmd(owner.publicKey);
    const ocaBody: SevCert = {
      ...csr,
      pubkey: {
        type: 'ec',
        usage: SevCertUsage.OCA,
        algo: SevCertAlgo.ECDSA_SHA256,
        curve: 2,
        qx,
        qy,
        reserved: Buffer.alloc(0x370),
      },
    };
    const oca = encodeSevCert(sign(ocaBody));
    const pek = encodeSevCert(sign(csr));
    const mem = hv.soc.hostMemory;
    const importAt = (pekBytes: Buffer, ocaBytes: Buffer): number => {
      mem.write(page, pekBytes, false);
      mem.write(page + SEV_CERT_SIZE, ocaBytes, false);
      return hv.driver.raw(SevCommand.PEK_CERT_IMPORT, PekCertImportBuffer, {
        pekPaddr: BigInt(page),
        pekLength: SEV_CERT_SIZE,
        ocaPaddr: BigInt(page + SEV_CERT_SIZE),
        ocaLength: SEV_CERT_SIZE,
      }).status;
    };
    const before = exportChain();
    // A PEK signed by someone else, a PEK whose body differs, and wrong lengths are refused first.
    const forged = Buffer.from(pek);
    forged[0x420] = (forged[0x420] as number) ^ 1; // inside R of slot 1
    expect(importAt(forged, oca)).toBe(SevStatus.BAD_SIGNATURE);
    const otherBody = encodeSevCert(sign({ ...csr, apiMinor: csr.apiMinor + 1 }));
    expect(importAt(otherBody, oca)).toBe(SevStatus.INVALID_CERTIFICATE);
    // ASPFW sev_cert_validate_sig: no slot by the OCA at all (the unsigned CSR) is INVALID_CERTIFICATE.
    expect(importAt(encodeSevCert(csr), oca)).toBe(SevStatus.INVALID_CERTIFICATE);
    // The platform's own exported PEK and OCA: valid, but no empty slot for the CEK signature.
    const own = exportChain();
    expect(importAt(own.pek, own.oca)).toBe(SevStatus.INVALID_CERTIFICATE);
    expect(exportChain()).toEqual(before);
    expect(importAt(pek, oca)).toBe(SevStatus.SUCCESS);
    const after = exportChain();
    expect(after.oca).toEqual(oca);
    expect(after.pdh.equals(before.pdh)).toBe(false); // PDH regenerated
    expect(verifySevChain({ ...amdRootFiles(), ...after }).broken).toEqual([]);
    expect(hv.driver.call(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {}).owner).toBe(1);
    expect(importAt(pek, oca)).toBe(SevStatus.ALREADY_OWNED);
    // PEK_GEN takes ownership back.
    hv.driver.callSimple(SevCommand.PEK_GEN);
    expect(hv.driver.call(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {}).owner).toBe(0);
  });

  it('the identity survives a restart from the state directory, and a failed flash write changes nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sevsim-state-'));
    const a = machine({ stateDirectory: dir, seed: 'persist' });
    a.hv.initPlatform();
    const first = a.exportChain();
    const b = machine({ stateDirectory: dir, seed: 'persist' });
    b.hv.initPlatform();
    expect(b.exportChain()).toEqual(first);
    // The flash goes away: PDH_GEN cannot commit, so it fails and the old PDH stays in force.
    rmSync(dir, { recursive: true, force: true });
    writeFileSync(dir, 'not a directory');
    expect(b.hv.driver.simple(SevCommand.PDH_GEN)).toBe(SevStatus.HWERROR_PLATFORM);
    expect(b.exportChain()).toEqual(first);
  });
});
