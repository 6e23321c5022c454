// `owner session | verify-measurement | secret | verify-attestation` on a fresh commander Command, files
// in a temp dir: a whole launch played against a platform whose PDH private key the test holds, the
// published sevctl outputs reproduced through the CLI, and exit statuses 0 / 1 (check failed) / 2 (bad
// input, naming file, field and offset, never a stack trace).
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { Command, CommanderError } from 'commander';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../src/cli/run.js';
import {
  PacketHeader,
  SEV_ATTESTATION_SIGNED_LENGTH,
  SEV_CERT_CURVE_P384,
  SessionBuffer,
  SevAttestationReport,
  SevCertAlgo,
  SevCertUsage,
  decodeEfiSecretTable,
  decodeSevCert,
  encodeSevCert,
} from '../src/abi/index.js';
import {
  ChannelContext,
  aes128Ctr,
  deriveChannelWrapKeys,
  ecdhP384,
  ecdsaP384Sign,
  generateP384KeyPair,
  launchMeasurementMac,
  macEquals,
  p384PublicKeyFromAmd,
  p384PublicKeyToAmd,
  packetMac,
  policyMac,
  unwrapTransportKeys,
} from '../src/crypto/index.js';
import { computeLaunchDigest } from '../src/owner/index.js';
import {
  addSecretCommand,
  addSessionCommand,
  addVerifyAttestationCommand,
  addVerifyMeasurementCommand,
} from '../src/cli/owner-session.js';

const TESTDATA = resolve(import.meta.dirname, '../../shared/testdata');
const AMD_SEV_OVMF = join(TESTDATA, 'measure/ovmf_AmdSev_suffix.bin');
const DEBIAN_OVMF = join(TESTDATA, 'ovmf/OVMF.fd');
const b64 = (s: string): Buffer => Buffer.from(s, 'base64');

const scratch = mkdtempSync(join(tmpdir(), 'sevsim-owner-session-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let counter = 0;
/** A fresh directory with the given files. */
function dir(files: Record<string, Uint8Array | string> = {}): string {
  const d = mkdtempSync(join(scratch, `t${counter++}-`));
  for (const [name, data] of Object.entries(files)) writeFileSync(join(d, name), data);
  return d;
}

interface Run {
  out: string;
  err: string;
  exitCode: number;
}

function addAll(owner: Command): void {
  addSessionCommand(owner);
  addVerifyMeasurementCommand(owner);
  addSecretCommand(owner);
  addVerifyAttestationCommand(owner);
}

function run(args: string[]): Run {
  let out = '';
  let err = '';
  const owner = new Command('owner')
    .exitOverride()
    .configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (err += s) });
  addAll(owner);
  let exitCode = 0;
  try {
    owner.parse(args, { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    exitCode = e.exitCode;
  }
  expect(err).not.toMatch(/\n\s+at /); // no stack traces
  return { out, err, exitCode };
}

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

/** A platform the test plays: its PDH and PEK private keys, firmware 0.24 build 15. */
const platform = {
  pdh: generateP384KeyPair(),
  pek: generateP384KeyPair(),
  fw: { major: 0, minor: 24, build: 15 },
};
const pdhCert = certFor(platform.pdh.publicKey, SevCertUsage.PDH, SevCertAlgo.ECDH_SHA256);
const pekCert = certFor(platform.pek.publicKey, SevCertUsage.PEK, SevCertAlgo.ECDSA_SHA256);

/** LAUNCH_START as the firmware runs it: the transport keys out of godh.cert and launch_blob.bin. */
function launchStart(godhCert: Buffer, session: Buffer, policy: number): { tek: Buffer; tik: Buffer } {
  const godh = decodeSevCert(godhCert).pubkey;
  if (godh.type !== 'ec') throw new Error('GODH is not EC');
  const s = SessionBuffer.decode(session);
  const z = ecdhP384(platform.pdh.privateKey, p384PublicKeyFromAmd(godh));
  const keys = unwrapTransportKeys(deriveChannelWrapKeys(z, s.nonce), s.wrapIv, s.wrapTk, s.wrapMac);
  if (keys === undefined || !macEquals(policyMac(keys.tik, policy), s.policyMac))
    throw new Error('BAD_MEASUREMENT');
  return keys;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('owner session', () => {
  it('writes godh.cert, launch_blob.bin and tmp_tk.bin (owner-only) that the platform opens', () => {
    const d = dir({ 'pdh.cert': pdhCert });
    const out = join(d, 'launch');
    const r = run(['session', '--pdh', join(d, 'pdh.cert'), '--policy', '0x1', '--out', out]);
    expect(r.exitCode).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toContain('policy 0x00000001 (NODBG)');
    expect(r.out).toMatch(/tmp_tk\.bin {2}TEK ‖ TIK, 32 bytes.*never give it to the host/);
    const godh = readFileSync(join(out, 'godh.cert'));
    const blob = readFileSync(join(out, 'launch_blob.bin'));
    const tk = readFileSync(join(out, 'tmp_tk.bin'));
    expect([godh.length, blob.length, tk.length]).toEqual([0x824, 0x80, 32]);
    expect(statSync(join(out, 'tmp_tk.bin')).mode & 0o777).toBe(0o600);
    const keys = launchStart(godh, blob, 1);
    expect(Buffer.concat([keys.tek, keys.tik]).equals(tk)).toBe(true);
  });

  it('--base64 adds the files QEMU reads; --help says tmp_tk.bin stays with the owner', () => {
    const d = dir({ 'pdh.cert': pdhCert });
    expect(
      run(['session', '--pdh', join(d, 'pdh.cert'), '--policy', '5', '--out', d, '--base64']).exitCode,
    ).toBe(0);
    expect(readFileSync(join(d, 'godh.b64'), 'utf8')).toBe(
      readFileSync(join(d, 'godh.cert')).toString('base64'),
    );
    expect(
      b64(readFileSync(join(d, 'launch_blob.b64'), 'utf8')).equals(readFileSync(join(d, 'launch_blob.bin'))),
    ).toBe(true);
    const help = run(['session', '--help']);
    expect(help.exitCode).toBe(0);
    expect(help.out.replace(/\s+/g, ' ')).toMatch(
      /tmp_tk\.bin, which holds the owner's transport keys .* must stay with the owner/,
    );
  });

  it('warns about reserved policy bits', () => {
    const d = dir({ 'pdh.cert': pdhCert });
    const r = run(['session', '--pdh', join(d, 'pdh.cert'), '--policy', '0x40', '--out', d]);
    expect(r.exitCode).toBe(0);
    expect(r.err).toMatch(/reserved bits 15:6/);
  });

  it.each<[string, (d: string) => string[], RegExp]>([
    ['no --pdh', () => ['--policy', '1'], /--pdh is required/],
    ['no --policy', (d) => ['--pdh', join(d, 'pdh.cert')], /--policy is required/],
    [
      'a policy that is not a u32',
      (d) => ['--pdh', join(d, 'pdh.cert'), '--policy', '0x100000000'],
      /--policy 0x100000000 is not/,
    ],
    [
      'a missing file',
      (d) => ['--pdh', join(d, 'nope.cert'), '--policy', '1'],
      /cannot read PDH certificate .*nope\.cert: no such file/,
    ],
    [
      'a PEK given as PDH',
      (d) => ['--pdh', join(d, 'pek.cert'), '--policy', '1'],
      /pek\.cert: SEV certificate: field pubkeyUsage at offset 0x8: PEK \(0x1002\), expected a PDH/,
    ],
    [
      'a truncated PDH',
      (d) => ['--pdh', join(d, 'short.cert'), '--policy', '1'],
      /short\.cert: SEV certificate: field pubkey at offset 0x10/,
    ],
  ])('exit 2 for %s', (_name, args, message) => {
    const d = dir({ 'pdh.cert': pdhCert, 'pek.cert': pekCert, 'short.cert': pdhCert.subarray(0, 0x100) });
    const r = run(['session', ...args(d), '--out', d]);
    expect(r.exitCode).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).toMatch(/^error: /);
  });
});

// virtee/sevctl tests/measurementbuild.rs and tests/secretbuild.rs.
const SEVCTL = {
  measureTik: Buffer.from('3569cf61a32a602b87185ac6e0f55913', 'hex'),
  measureBlob: 'lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA',
  digest: 'xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=',
  tek: Buffer.from('52a869b79ab9c13bb6a92b0561619cb3', 'hex'),
  tik: Buffer.from('c6d5a9956133050912b24bbe5c372686', 'hex'),
  secretBlob: 'TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS',
  iv: 'rFR07U3TLH2YnsUj2SVZ7A==',
  header: 'AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q==',
  payload: '0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA==',
};

describe('owner verify-measurement', () => {
  const fw = ['--api-major', '0x01', '--api-minor', '40', '--build', '40'];

  it('passes sevctl’s vector (base64 blob and digest, sevctl TIK file), hex and a blob file too', () => {
    const d = dir({ 'tik.bin': SEVCTL.measureTik, 'blob.bin': b64(SEVCTL.measureBlob) });
    const base = ['verify-measurement', '--policy', '0x03', ...fw, '--tik', join(d, 'tik.bin')];
    const r = run([...base, '--measurement', SEVCTL.measureBlob, '--digest', SEVCTL.digest]);
    expect(r.exitCode).toBe(0);
    expect(r.out).toMatch(/^PASS {2}the measurement matches API 1\.40 build 40, policy 0x00000003/m);
    const hexDigest = b64(SEVCTL.digest).toString('hex');
    const r2 = run([...base, '--measurement', join(d, 'blob.bin'), '--digest', hexDigest, '--json']);
    expect(r2.exitCode).toBe(0);
    expect(JSON.parse(r2.out)).toMatchObject({ ok: true, launchDigest: hexDigest, withContext: true });
    const r3 = run([
      ...base,
      '--measurement',
      b64(SEVCTL.measureBlob).toString('hex'),
      '--digest',
      `0x${hexDigest}`,
    ]);
    expect(r3.exitCode).toBe(0);
  });

  it('exit 1 when anything differs', () => {
    const d = dir({ 'tik.bin': SEVCTL.measureTik });
    const r = run([
      ...['verify-measurement', '--policy', '0x03', '--api-major', '1', '--api-minor', '40', '--build', '41'],
      ...['--tik', join(d, 'tik.bin'), '--measurement', SEVCTL.measureBlob, '--digest', SEVCTL.digest],
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.out).toMatch(/^FAIL {2}the measurement does not match/m);
    expect(r.err).toMatch(/do not send secrets to this guest/);
  });

  it.each<[string, string[], RegExp]>([
    [
      'a blob file of 47 bytes',
      ['--measurement', 'short.bin'],
      /short\.bin: LAUNCH_MEASURE output: field mnonce at offset 0x20/,
    ],
    [
      'a blob that is neither file, hex nor base64',
      ['--measurement', 'zz'],
      /--measurement: "zz" is no file, nor 48 bytes in hex or base64/,
    ],
    ['both --digest and --ovmf', ['--ovmf', AMD_SEV_OVMF], /--digest or --ovmf, not both/],
    ['--vcpu-type with --digest', ['--vcpu-type', 'EPYC-v4'], /--vcpu-type describes the launch for --ovmf/],
    [
      'a tmp_tk.bin of 31 bytes',
      ['--tk', 'tk31.bin'],
      /tk31\.bin: transport keys \(TEK ‖ TIK\): field tik at offset 0x10/,
    ],
    ['--tk with --tik', ['--tk', 'tk31.bin', '--tik', 'tik.bin'], /give --tk, or --tik and --tek, not both/],
    ['an API version above 255', ['--api-minor', '256'], /--api-minor 256 is not an integer from 0 to 0xff/],
  ])('exit 2 for %s', (_name, change, message) => {
    const d = dir({
      'tik.bin': SEVCTL.measureTik,
      'short.bin': Buffer.alloc(47),
      'tk31.bin': Buffer.alloc(31),
    });
    const opts: Record<string, string> = {
      '--policy': '3',
      '--api-major': '1',
      '--api-minor': '40',
      '--build': '40',
      '--measurement': SEVCTL.measureBlob,
      '--digest': SEVCTL.digest,
    };
    const args = Object.entries(opts).flatMap(([k, v]) => [k, v]);
    const extra = change.map((a) => (a.endsWith('.bin') ? join(d, a) : a));
    const withTik = extra.includes('--tk') ? [] : ['--tik', join(d, 'tik.bin')];
    const r = run(['verify-measurement', ...args, ...withTik, ...extra]);
    expect(r.exitCode).toBe(2);
    expect(r.err).toMatch(message);
  });
});

describe('owner secret', () => {
  it('reproduces sevctl secret build through the CLI (separate TEK/TIK files, base64 blob)', () => {
    const d = dir({ 'tek.bin': SEVCTL.tek, 'tik.bin': SEVCTL.tik, 'secret1.txt': 'MY-LUKS-PASSPHRASE' });
    const r = run([
      ...[
        'secret',
        '--tek',
        join(d, 'tek.bin'),
        '--tik',
        join(d, 'tik.bin'),
        '--measurement',
        SEVCTL.secretBlob,
      ],
      ...[
        '--secret',
        `736869e5-84f0-4973-92ec-06879ce3da0b:${join(d, 'secret1.txt')}`,
        '--iv',
        SEVCTL.iv,
        '--out',
        d,
      ],
    ]);
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(d, 'packaged_secret.bin')).toString('base64')).toBe(SEVCTL.payload);
    expect(readFileSync(join(d, 'packaged_secret_header.bin')).toString('base64')).toBe(SEVCTL.header);
    expect(r.out).toMatch(/1 secret, 64 bytes with padding/);
  });

  it("accepts sev-tool's 32-byte calc_measurement_out.bin and a tmp_tk.bin", () => {
    const measurement = b64(SEVCTL.secretBlob).subarray(0, 32);
    const d = dir({
      'tmp_tk.bin': Buffer.concat([SEVCTL.tek, SEVCTL.tik]),
      'calc_measurement_out.bin': measurement,
      's.txt': 'MY-LUKS-PASSPHRASE',
    });
    const r = run([
      ...['secret', '--tk', join(d, 'tmp_tk.bin'), '--measurement', join(d, 'calc_measurement_out.bin')],
      ...[
        '--secret',
        `736869E5-84F0-4973-92EC-06879CE3DA0B:${join(d, 's.txt')}`,
        '--iv',
        SEVCTL.iv,
        '--out',
        d,
      ],
    ]);
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(d, 'packaged_secret_header.bin')).toString('base64')).toBe(SEVCTL.header);
  });

  it('--ovmf: the table must fit the secret area the firmware publishes', () => {
    const d = dir({ 'tmp_tk.bin': Buffer.alloc(32, 1), small: 'x', big: Buffer.alloc(3100) });
    const base = ['secret', '--tk', join(d, 'tmp_tk.bin'), '--measurement', SEVCTL.secretBlob, '--out', d];
    const guid = '736869e5-84f0-4973-92ec-06879ce3da0b';
    const ok = run([...base, '--secret', `${guid}:${join(d, 'small')}`, '--ovmf', AMD_SEV_OVMF]);
    expect(ok.exitCode).toBe(0);
    expect(ok.out).toMatch(/fits the 3072-byte secret area at 0x810000/);
    const big = run([...base, '--secret', `${guid}:${join(d, 'big')}`, '--ovmf', AMD_SEV_OVMF]);
    expect(big.exitCode).toBe(2);
    expect(big.err).toMatch(
      /the secret table is 3152 bytes, but ovmf_AmdSev_suffix\.bin's secret area holds 3072/,
    );
    const none = run([...base, '--secret', `${guid}:${join(d, 'small')}`, '--ovmf', DEBIAN_OVMF]);
    expect(none.exitCode).toBe(2);
    expect(none.err).toMatch(/publishes no SEV secret area/);
  });

  it.each<[string, string[], RegExp]>([
    ['no --secret', [], /--secret GUID:FILE is required/],
    ['a --secret without a colon', ['--secret', 'abc'], /--secret "abc" is not GUID:FILE/],
    ['a bad GUID', ['--secret', 'not-a-guid:s.txt'], /"not-a-guid" is not a GUID/],
    [
      'the same GUID twice',
      ['--secret', 'G:s.txt', '--secret', 'G:s.txt'],
      /share the GUID .* Linux would refuse/,
    ],
    ['a missing secret file', ['--secret', 'G:nope.txt'], /cannot read secret .*nope\.txt: no such file/],
    [
      'a 40-byte measurement',
      ['--secret', 'G:s.txt', '--measurement', 'm40.bin'],
      /m40\.bin: LAUNCH_MEASURE output: field mnonce at offset 0x20/,
    ],
  ])('exit 2 for %s', (_name, change, message) => {
    const d = dir({ 'tmp_tk.bin': Buffer.alloc(32, 1), 's.txt': 'secret', 'm40.bin': Buffer.alloc(40) });
    const guid = '736869e5-84f0-4973-92ec-06879ce3da0b';
    const args = change.map((a) =>
      a
        .replace(/^G:/, `${guid}:`)
        .replace(
          /^(.*:)?([\w.]+\.(?:txt|bin))$/,
          (_m, pre: string | undefined, f: string) => `${pre ?? ''}${join(d, f)}`,
        ),
    );
    const measurement = args.includes('--measurement') ? [] : ['--measurement', SEVCTL.secretBlob];
    const r = run(['secret', '--tk', join(d, 'tmp_tk.bin'), ...measurement, ...args, '--out', d]);
    expect(r.exitCode).toBe(2);
    expect(r.err).toMatch(message);
  });
});

describe('a whole launch: session → LAUNCH_MEASURE → verify-measurement → secret → LAUNCH_SECRET', () => {
  it('the guest receives exactly the secrets, bound to the measured launch', () => {
    const d = dir({ 'pdh.cert': pdhCert, 'luks.txt': 'correct horse battery staple', 'api.key': 'k-123' });
    const policy = 0x1;
    expect(run(['session', '--pdh', join(d, 'pdh.cert'), '--policy', '0x1', '--out', d]).exitCode).toBe(0);
    // The platform: LAUNCH_START opens the session; LAUNCH_MEASURE over the OVMF image.
    const keys = launchStart(
      readFileSync(join(d, 'godh.cert')),
      readFileSync(join(d, 'launch_blob.bin')),
      policy,
    );
    const ld = computeLaunchDigest({ mode: 'sev', ovmf: readFileSync(AMD_SEV_OVMF) }).digest;
    const mnonce = Buffer.alloc(16, 0x5a);
    const blob = Buffer.concat([launchMeasurementMac(keys.tik, platform.fw, policy, ld, mnonce), mnonce]);
    const measureB64 = blob.toString('base64'); // as QEMU query-sev-launch-measure prints it
    const verify = run([
      ...['verify-measurement', '--measurement', measureB64, '--ovmf', AMD_SEV_OVMF, '--policy', '1'],
      ...['--api-major', '0', '--api-minor', '24', '--build', '15', '--tk', join(d, 'tmp_tk.bin')],
    ]);
    expect(verify.exitCode).toBe(0);
    expect(verify.out).toMatch(/computed \(sev\) from OVMF image/);
    const luks = '736869e5-84f0-4973-92ec-06879ce3da0b';
    const apiKey = 'e6f5a162-d67f-4750-a67c-5d065f2a9910';
    const secret = run([
      ...['secret', '--tk', join(d, 'tmp_tk.bin'), '--measurement', measureB64, '--out', d, '--base64'],
      ...['--secret', `${luks}:${join(d, 'luks.txt')}`, '--secret', `${apiKey}:${join(d, 'api.key')}`],
    ]);
    expect(secret.exitCode).toBe(0);
    // LAUNCH_SECRET: verify the MAC over the header and ciphertext with the measurement, then decrypt.
    const header = PacketHeader.decode(readFileSync(join(d, 'packaged_secret_header.bin')));
    const ct = readFileSync(join(d, 'packaged_secret.bin'));
    expect(readFileSync(join(d, 'packaged_secret.b64'), 'utf8')).toBe(ct.toString('base64'));
    const mac = packetMac(
      keys.tik,
      ChannelContext.SECRET,
      header.flags,
      header.iv,
      ct.length,
      ct,
      blob.subarray(0, 32),
    );
    expect(macEquals(mac, header.mac)).toBe(true);
    const table = decodeEfiSecretTable(aes128Ctr(keys.tek, header.iv, ct));
    expect(table.entries.map((e) => [e.guid, e.data.toString()])).toEqual([
      [luks, 'correct horse battery staple'],
      [apiKey, 'k-123'],
    ]);
  });
});

describe('owner verify-attestation', () => {
  const mnonce = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const digest = Buffer.alloc(32, 0xd1);
  const report = SevAttestationReport.encode({
    mnonce,
    launchDigest: digest,
    policy: 1,
    sigUsage: 0x1002,
    sigAlgo: 2,
  });
  SevAttestationReport.write(
    report,
    (({ r, s }) => ({ sigR: r, sigS: s }))(
      ecdsaP384Sign(platform.pek.privateKey, 'sha256', report.subarray(0, SEV_ATTESTATION_SIGNED_LENGTH)),
    ),
  );

  it('exit 0 when every check holds; --json lists them', () => {
    const d = dir({ 'attestation_report.bin': report, 'pek.cert': pekCert });
    const args = ['--report', join(d, 'attestation_report.bin'), '--pek', join(d, 'pek.cert')];
    const r = run([
      'verify-attestation',
      ...args,
      '--mnonce',
      mnonce.toString('hex'),
      '--digest',
      digest.toString('base64'),
      '--policy',
      '1',
    ]);
    expect(r.exitCode).toBe(0);
    expect(r.out.match(/^ {2}PASS /gm)).toHaveLength(6);
    expect(r.out).toMatch(/The report verifies\./);
    const j = run(['verify-attestation', ...args, '--json']);
    expect(JSON.parse(j.out)).toMatchObject({
      ok: true,
      report: { policy: '0x00000001', sigUsage: '0x1002' },
    });
  });

  it('exit 1 for another MNONCE or a tampered report', () => {
    const tampered = Buffer.from(report);
    tampered[0x30] = 5;
    const d = dir({ 'r.bin': report, 't.bin': tampered, 'pek.cert': pekCert });
    const stale = run([
      'verify-attestation',
      '--report',
      join(d, 'r.bin'),
      '--pek',
      join(d, 'pek.cert'),
      '--mnonce',
      '00'.repeat(16),
    ]);
    expect(stale.exitCode).toBe(1);
    expect(stale.err).toMatch(/attestation report fails: mnonce/);
    const t = run(['verify-attestation', '--report', join(d, 't.bin'), '--pek', join(d, 'pek.cert')]);
    expect(t.exitCode).toBe(1);
    expect(t.out).toMatch(/FAIL {2}signature/);
  });

  it.each<[string, Record<string, Uint8Array>, string[], RegExp]>([
    [
      'a short report',
      { 'r.bin': report.subarray(0, 0x50) },
      [],
      /r\.bin: SEV attestation report: field sigR at offset 0x40: buffer ends at 80 bytes/,
    ],
    [
      'a PDH as PEK',
      { 'pek.cert': pdhCert },
      [],
      /pek\.cert: SEV certificate: field pubkeyUsage at offset 0x8/,
    ],
    ['an MNONCE of 15 bytes', {}, ['--mnonce', '00'.repeat(15)], /--mnonce: .* is not 16 bytes/],
    ['no --pek', {}, ['--pek'], /--pek is required/],
  ])('exit 2 for %s', (_name, replace, extra, message) => {
    const d = dir({ 'r.bin': report, 'pek.cert': pekCert, ...replace });
    const args = [
      '--report',
      join(d, 'r.bin'),
      ...(extra.includes('--pek') ? [] : ['--pek', join(d, 'pek.cert')]),
    ];
    const r = run(['verify-attestation', ...args, ...extra.filter((a) => a !== '--pek')]);
    expect(r.exitCode).toBe(2);
    expect(r.err).toMatch(message);
  });
});

describe('exit statuses through sevsim itself (runCli)', () => {
  it("commander's usage errors exit 2 (bad input), help 0, a failed check 1", async () => {
    const quiet = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const quietOut = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    expect(await runCli(['owner', 'session', '--bogus'])).toBe(2);
    expect(await runCli(['owner', 'secret', '--tk'])).toBe(2);
    expect(await runCli(['owner', 'verify-attestation', '--help'])).toBe(0);
    const d = dir({ 'tik.bin': SEVCTL.measureTik });
    const mismatch = [
      ...[
        'owner',
        'verify-measurement',
        '--policy',
        '4',
        '--api-major',
        '1',
        '--api-minor',
        '40',
        '--build',
        '40',
      ],
      ...['--tik', join(d, 'tik.bin'), '--measurement', SEVCTL.measureBlob, '--digest', SEVCTL.digest],
    ];
    expect(await runCli(mismatch)).toBe(1);
    expect(await runCli(['owner', 'session'])).toBe(2);
    quiet.mockRestore();
    quietOut.mockRestore();
  });
});
