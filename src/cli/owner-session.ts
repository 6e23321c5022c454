// `sevsim owner session | verify-measurement | secret | verify-attestation`: the guest owner's side of an
// SEV launch, with the file names sev-tool uses (godh.cert, launch_blob.bin, tmp_tk.bin,
// packaged_secret.bin, packaged_secret_header.bin) and the inputs QEMU and sevctl give (a LAUNCH_MEASURE
// blob in base64, sevctl's separate TEK and TIK files), so these tools and the established ones can stand
// in for each other against a real platform or a simulated one.
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type Command, Option } from 'commander';
import {
  AbiDecodeError,
  EfiSecretTableError,
  POLICY_RESERVED_MASK,
  decodeSevPolicy,
  encodeEfiSecretTable,
  parseOvmfFooter,
} from '../abi/index.js';
import {
  LaunchDigestError,
  LaunchSecretError,
  type TransportKeys,
  computeLaunchDigest,
  createLaunchSession,
  decodeLaunchMeasureBlob,
  decodePekCert,
  decodeSevAttestationReport,
  decodeTransportKeys,
  encodeTransportKeys,
  packageLaunchSecret,
  verifyLaunchMeasurement,
  verifySevAttestationReport,
} from '../owner/index.js';
import {
  EXIT_CHECK_FAILED as EXIT_CHECK,
  EXIT_INPUT,
  InputError,
  readFailure,
  readInput,
} from './cli-input.js';

/** sev-tool's names (src/commands.h), so its users find the files where they expect them. */
export const OwnerFiles = {
  GODH_CERT: 'godh.cert',
  LAUNCH_BLOB: 'launch_blob.bin',
  TRANSPORT_KEYS: 'tmp_tk.bin',
  PACKAGED_SECRET: 'packaged_secret.bin',
  PACKAGED_SECRET_HEADER: 'packaged_secret_header.bin',
} as const;

/** Runs a decoder on a file's bytes; a malformed file names the file, the field and the offset. */
function decodeInput<T>(label: string, bytes: Buffer, decode: (b: Buffer) => T): T {
  try {
    return decode(bytes);
  } catch (err) {
    if (err instanceof AbiDecodeError) throw new InputError(`${label}: ${err.message}`);
    throw err;
  }
}

function writeOutput(path: string, data: Uint8Array, secret = false): void {
  try {
    // Transport keys are readable by their owner only, whatever the umask.
    writeFileSync(path, data, secret ? { mode: 0o600 } : {});
    if (secret) chmodSync(path, 0o600);
  } catch (err) {
    throw new InputError(`cannot write ${path}: ${readFailure(err)}`);
  }
}

function makeOutDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new InputError(`cannot create output directory ${dir}: ${readFailure(err)}`);
  }
}

function required<T>(value: T | undefined, option: string, what: string): T {
  if (value === undefined) throw new InputError(`${option} is required: ${what}`);
  return value;
}

/** An integer option as sevctl reads them: 0x-prefixed hex or decimal, at most `max`. */
function parseUint(option: string, v: string, max: number): number {
  const n = /^0x[0-9a-f]{1,8}$/i.test(v)
    ? Number.parseInt(v.slice(2), 16)
    : /^[0-9]{1,10}$/.test(v)
      ? Number(v)
      : NaN;
  if (!Number.isInteger(n) || n > max)
    throw new InputError(`${option} ${v} is not an integer from 0 to 0x${max.toString(16)} (decimal or 0x…)`);
  return n;
}

const isFile = (p: string): boolean => statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;

/**
 * A byte-string option given as hex (optionally 0x-prefixed) or base64 — QEMU's QMP and sevctl print
 * base64 — of one of `lengths` bytes. Hex is tried first: 64 hex digits are 32 bytes, not base64.
 */
function parseBytes(option: string, v: string, lengths: readonly number[]): Buffer {
  const h = v.replace(/^0x/i, '');
  if (/^(?:[0-9a-f]{2})+$/i.test(h) && lengths.includes(h.length / 2)) return Buffer.from(h, 'hex');
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(v) && v.length % 4 === 0) {
    const b = Buffer.from(v, 'base64');
    if (lengths.includes(b.length)) return b;
  }
  throw new InputError(`${option}: "${v}" is not ${lengths.join(' or ')} bytes in hex or base64`);
}

/**
 * The LAUNCH_MEASURE output (0x30 bytes) from a file, or as hex or base64 (QEMU query-sev-launch-measure
 * prints base64). With `bare`, the 32-byte MEASUREMENT alone is accepted too: sev-tool's
 * calc_measurement_out.bin holds just that.
 */
function readMeasurement(
  option: string,
  v: string,
  bare: boolean,
): { measurement: Buffer; blob?: Buffer; source: string } {
  const fromFile = isFile(v);
  let bytes: Buffer;
  try {
    bytes = fromFile ? readInput(v, 'LAUNCH_MEASURE output') : parseBytes(option, v, bare ? [48, 32] : [48]);
  } catch (err) {
    // A mistyped file name would otherwise read as bad hex.
    if (err instanceof InputError && !fromFile)
      throw new InputError(
        `${option}: "${v}" is no file, nor ${bare ? '48 or 32' : '48'} bytes in hex or base64`,
      );
    throw err;
  }
  const source = fromFile ? v : `${option} (${bytes.length} bytes)`;
  if (bare && bytes.length === 32) return { measurement: bytes, source };
  const { measurement } = decodeInput(source, bytes, decodeLaunchMeasureBlob);
  return { measurement, blob: bytes, source };
}

interface KeyOptions {
  tk?: string;
  tek?: string;
  tik?: string;
}

/** The owner's transport keys: sev-tool's tmp_tk.bin (TEK ‖ TIK) or sevctl's separate 16-byte files. */
function readKeys(o: KeyOptions, needTek: boolean): { tik: Buffer; tek?: Buffer } {
  if (o.tk !== undefined) {
    if (o.tik !== undefined || o.tek !== undefined)
      throw new InputError('give --tk, or --tik and --tek, not both');
    const path = o.tk;
    return decodeInput(path, readInput(path, 'transport keys'), decodeTransportKeys);
  }
  const sixteen = (option: string, path: string): Buffer => {
    const what = option.slice(2).toUpperCase();
    const b = readInput(path, what);
    if (b.length !== 16) throw new InputError(`${path}: ${b.length} bytes, a ${what} file holds exactly 16`);
    return b;
  };
  if (o.tik === undefined)
    throw new InputError(
      `--tk is required (${OwnerFiles.TRANSPORT_KEYS} from \`owner session\`), or --tik${needTek ? ' and --tek' : ''}`,
    );
  const tik = sixteen('--tik', o.tik);
  if (!needTek) return { tik };
  return { tik, tek: sixteen('--tek', required(o.tek, '--tek', 'the TEK file that goes with --tik')) };
}

function output(cmd: Command): (s: string) => void {
  const config = cmd.configureOutput();
  return (s) => (config.writeOut ? config.writeOut(s) : process.stdout.write(s));
}

function warn(cmd: Command): (s: string) => void {
  const config = cmd.configureOutput();
  return (s) => (config.writeErr ? config.writeErr(s) : process.stderr.write(s));
}

const hex8 = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

function policyFlags(policy: number): string {
  const p = decodeSevPolicy(policy);
  const names = (
    [
      ['noDebug', 'NODBG'],
      ['noKeySharing', 'NOKS'],
      ['encryptedState', 'ES'],
      ['noSend', 'NOSEND'],
      ['domain', 'DOMAIN'],
      ['sevOnly', 'SEV'],
    ] as const
  )
    .filter(([k]) => p[k])
    .map(([, n]) => n);
  return names.length === 0 ? 'no flags' : names.join(' ');
}

function failCheck(cmd: Command, message: string): never {
  return cmd.error(`error: ${message}`, { exitCode: EXIT_CHECK, code: 'sevsim.check-failed' });
}

/** Runs an action; bad input becomes `error: …` with exit 2, everything else propagates. */
function guarded(cmd: Command, run: () => void): void {
  try {
    run();
  } catch (err) {
    if (
      err instanceof InputError ||
      err instanceof LaunchDigestError ||
      err instanceof EfiSecretTableError ||
      err instanceof LaunchSecretError
    )
      cmd.error(`error: ${err.message}`, { exitCode: EXIT_INPUT, code: 'sevsim.input' });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// owner session

interface SessionOptions {
  pdh?: string;
  policy?: string;
  out: string;
  base64?: boolean;
}

function runSession(o: SessionOptions, cmd: Command): void {
  const pdhPath = required(o.pdh, '--pdh', "the platform's PDH certificate (pdh.cert)");
  const policy = parseUint(
    '--policy',
    required(o.policy, '--policy', 'the guest policy, e.g. 0x1'),
    0xffff_ffff,
  );
  const pdh = readInput(pdhPath, 'PDH certificate');
  const s = decodeInput(pdhPath, pdh, (b) => createLaunchSession(b, policy));
  if ((policy & POLICY_RESERVED_MASK) !== 0)
    warn(cmd)(
      `warning: policy ${hex8(policy)} sets reserved bits 15:6; LAUNCH_START will answer POLICY_FAILURE\n`,
    );
  makeOutDir(o.out);
  const tkPath = join(o.out, OwnerFiles.TRANSPORT_KEYS);
  const godhPath = join(o.out, OwnerFiles.GODH_CERT);
  const blobPath = join(o.out, OwnerFiles.LAUNCH_BLOB);
  writeOutput(tkPath, encodeTransportKeys(s), true);
  writeOutput(godhPath, s.godhCert);
  writeOutput(blobPath, s.session);
  const lines = [
    `Launch session with the PDH in ${pdhPath}, policy ${hex8(policy)} (${policyFlags(policy)}):`,
    `  ${godhPath}  GODH certificate, ${s.godhCert.length} bytes (LAUNCH_START GDH_CERT)`,
    `  ${blobPath}  session buffer, ${s.session.length} bytes (LAUNCH_START SESSION)`,
    `  ${tkPath}  TEK ‖ TIK, 32 bytes: the transport keys. Keep this file with the owner, never give it to the host.`,
  ];
  if (o.base64 === true) {
    // QEMU's sev-guest object reads dh-cert-file and session-file as base64 (sev_read_file_base64).
    for (const [path, data] of [
      [join(o.out, 'godh.b64'), s.godhCert],
      [join(o.out, 'launch_blob.b64'), s.session],
    ] as const) {
      writeOutput(path, Buffer.from(data.toString('base64')));
      lines.push(
        `  ${path}  the same, base64 (QEMU sev-guest ${path.endsWith('godh.b64') ? 'dh-cert-file' : 'session-file'})`,
      );
    }
  }
  output(cmd)(`${lines.join('\n')}\n`);
}

/**
 * Adds `session --pdh FILE --policy N [--out DIR] [--base64]`: opens a launch session with a platform, as
 * sev-tool `generate_launch_blob` does. Exit 0, or 2 for bad input.
 */
export function addSessionCommand(owner: Command): void {
  owner
    .command('session')
    .description(
      'Open a launch session with a platform: check its PDH certificate, make an ephemeral GODH key and pick ' +
        'the transport keys (TEK, TIK), and write what LAUNCH_START needs — godh.cert and launch_blob.bin, ' +
        `for the host — and ${OwnerFiles.TRANSPORT_KEYS}, which holds the owner's transport keys (TEK ‖ TIK) ` +
        'and must stay with the owner: whoever has it can read and forge the secrets of this launch. ' +
        'Check the PDH first with `owner verify-chain`. Exits 2 for bad input.',
    )
    .option(
      '--pdh <file>',
      "the platform's PDH certificate, 0x824 bytes (required; pdh.cert from PDH_CERT_EXPORT)",
    )
    .option('--policy <n>', 'guest policy, decimal or 0x-prefixed hex (required), e.g. 0x1 for NODBG')
    .option('--out <dir>', 'directory for godh.cert, launch_blob.bin and tmp_tk.bin', '.')
    .option('--base64', "also write godh.b64 and launch_blob.b64, the form QEMU's sev-guest object reads")
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  sevsim owner session --pdh certs/pdh.cert --policy 0x1 --out launch/\n' +
        '  qemu-system-x86_64 -object sev-guest,id=sev0,policy=0x1,dh-cert-file=launch/godh.b64,' +
        'session-file=launch/launch_blob.b64,... (after --base64)',
    )
    .action((opts: SessionOptions, c: Command) => guarded(c, () => runSession(opts, c)));
}

// ---------------------------------------------------------------------------------------------------
// owner verify-measurement

interface VerifyMeasurementOptions extends KeyOptions {
  measurement?: string;
  digest?: string;
  ovmf?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  vcpus?: string;
  vcpuType?: string;
  policy?: string;
  apiMajor?: string;
  apiMinor?: string;
  build?: string;
  json?: boolean;
}

/** The launch digest to expect: given, or computed from the firmware (and kernel) like `owner measure`. */
function expectedDigest(o: VerifyMeasurementOptions, policy: number): { digest: Buffer; how: string } {
  if (o.digest !== undefined) {
    if (o.ovmf !== undefined) throw new InputError('give --digest or --ovmf, not both');
    const stray = (['kernel', 'initrd', 'append', 'vcpus', 'vcpuType'] as const).find(
      (k) => o[k] !== undefined,
    );
    if (stray !== undefined)
      throw new InputError(
        `--${stray.replace('T', '-t')} describes the launch for --ovmf; with --digest it is unused`,
      );
    return { digest: parseBytes('--digest', o.digest, [32]), how: 'given with --digest' };
  }
  const ovmf = required(
    o.ovmf,
    '--digest or --ovmf',
    'the expected launch digest, or the OVMF image to compute it',
  );
  // The policy says which generation launched it, as sevctl `measurement build` reads it (bit 2, ES).
  const mode = decodeSevPolicy(policy).encryptedState ? 'sev-es' : 'sev';
  const r = computeLaunchDigest({
    mode,
    ovmf: readInput(ovmf, '--ovmf'),
    kernel: o.kernel === undefined ? undefined : readInput(o.kernel, '--kernel'),
    initrd: o.initrd === undefined ? undefined : readInput(o.initrd, '--initrd'),
    append: o.append,
    vcpus: o.vcpus === undefined ? undefined : parseUint('--vcpus', o.vcpus, 4096),
    vcpuType: o.vcpuType,
  });
  return { digest: r.digest, how: `computed (${mode}) from ${r.measured.map((m) => m.what).join(', ')}` };
}

function runVerifyMeasurement(o: VerifyMeasurementOptions, cmd: Command): void {
  const blobArg = required(o.measurement, '--measurement', 'the LAUNCH_MEASURE output (file, hex or base64)');
  const policy = parseUint('--policy', required(o.policy, '--policy', 'the guest policy'), 0xffff_ffff);
  const firmware = {
    major: parseUint(
      '--api-major',
      required(o.apiMajor, '--api-major', "the firmware's API major version"),
      0xff,
    ),
    minor: parseUint(
      '--api-minor',
      required(o.apiMinor, '--api-minor', "the firmware's API minor version"),
      0xff,
    ),
    build: parseUint('--build', required(o.build, '--build', "the firmware's build ID"), 0xff),
  };
  const { tik } = readKeys(o, false);
  const blob = readMeasurement('--measurement', blobArg, false);
  const { digest, how } = expectedDigest(o, policy);
  const v = verifyLaunchMeasurement(blob.blob ?? blob.measurement, {
    launchDigest: digest,
    policy,
    firmware,
    tik,
  });
  const write = output(cmd);
  if (o.json === true) {
    write(
      `${JSON.stringify(
        {
          ok: v.ok,
          measurement: v.measurement.toString('hex'),
          mnonce: v.mnonce.toString('hex'),
          expected: v.expected.toString('hex'),
          launchDigest: digest.toString('hex'),
          launchDigestSource: how,
          policy: hex8(policy),
          firmware,
          withContext: v.withContext,
          reason: v.reason,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    write(
      [
        `LAUNCH_MEASURE from ${blob.source}`,
        `  MEASUREMENT    ${v.measurement.toString('hex')}`,
        `  MNONCE         ${v.mnonce.toString('hex')}`,
        `  expected       ${v.expected.toString('hex')}`,
        `  launch digest  ${digest.toString('hex')} (${how})`,
        `${v.ok ? 'PASS' : 'FAIL'}  ${v.reason}`,
      ].join('\n') + '\n',
    );
  }
  if (!v.ok) failCheck(cmd, 'the launch measurement does not match: do not send secrets to this guest');
}

/**
 * Adds `verify-measurement`: checks a LAUNCH_MEASURE blob against the expected launch digest, policy,
 * firmware version and the owner's TIK (sevctl `measurement build`, sev-tool `calc_measurement`). Exit 0
 * if it matches, 1 if not, 2 for bad input.
 */
export function addVerifyMeasurementCommand(owner: Command): void {
  owner
    .command('verify-measurement')
    .description(
      'Check the LAUNCH_MEASURE output of a launch: HMAC-SHA256(TIK, 0x04 ‖ API major ‖ minor ‖ build ‖ policy ‖ ' +
        'launch digest ‖ MNONCE) must equal its MEASUREMENT — the proof that the platform holds this ' +
        "session's keys and measured the expected firmware. The expected digest is given (--digest) or " +
        'computed from the OVMF image like `owner measure` (SEV-ES if the policy has the ES bit). ' +
        'Exits 1 if it does not match, 2 for bad input.',
    )
    .option(
      '--measurement <blob>',
      'LAUNCH_MEASURE output, 48 bytes: a file, or hex, or base64 (QEMU query-sev-launch-measure)',
    )
    .option('--digest <hex>', 'expected launch digest, 32 bytes in hex or base64')
    .option('--ovmf <file>', 'OVMF image, to compute the expected digest instead of --digest')
    .option('--kernel <file>', 'with --ovmf: kernel of a measured direct boot')
    .option('--initrd <file>', 'with --ovmf and --kernel: initrd')
    .option('--append <cmdline>', 'with --ovmf and --kernel: kernel command line')
    .option('--vcpus <n>', 'with --ovmf, SEV-ES: number of vCPUs')
    .option('--vcpu-type <type>', 'with --ovmf, SEV-ES: QEMU vCPU model, e.g. EPYC-v4')
    .option('--policy <n>', 'guest policy, decimal or 0x-prefixed hex (required)')
    .option('--api-major <n>', 'firmware API major version (required; PLATFORM_STATUS, QEMU query-sev)')
    .option('--api-minor <n>', 'firmware API minor version (required)')
    .option('--build <n>', 'firmware build ID (required)')
    .option('--tk <file>', `the owner's transport keys, ${OwnerFiles.TRANSPORT_KEYS} from \`owner session\``)
    .option('--tik <file>', 'instead of --tk: a 16-byte TIK file (sevctl session vm_tik.bin)')
    .option('--json', 'print one JSON object: ok, measurement, mnonce, expected, launchDigest, reason')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  sevsim owner verify-measurement --measurement "$(virsh domlaunchsecinfo vm | …)" --digest 82a3…35ff \\\n' +
        '      --policy 0x1 --api-major 0 --api-minor 24 --build 15 --tk launch/tmp_tk.bin\n' +
        '  sevsim owner verify-measurement --measurement launch_measure.bin --ovmf OVMF.fd --policy 0x5 \\\n' +
        '      --vcpus 4 --vcpu-type EPYC-v4 --api-major 1 --api-minor 49 --build 6 --tik vm_tik.bin',
    )
    .action((opts: VerifyMeasurementOptions, c: Command) => guarded(c, () => runVerifyMeasurement(opts, c)));
}

// ---------------------------------------------------------------------------------------------------
// owner secret

interface SecretOptions extends KeyOptions {
  measurement?: string;
  secret?: string[];
  out: string;
  ovmf?: string;
  apiMajor?: string;
  apiMinor?: string;
  iv?: string;
  base64?: boolean;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `GUID:FILE` as sevctl `secret build --secret` takes it; the GUID has no colon, so split at the first. */
function readSecretArg(arg: string): { guid: string; data: Buffer; file: string } {
  const at = arg.indexOf(':');
  if (at <= 0 || at === arg.length - 1) throw new InputError(`--secret "${arg}" is not GUID:FILE`);
  const file = arg.slice(at + 1);
  return { guid: arg.slice(0, at), data: readInput(file, 'secret'), file };
}

/** With --ovmf: the table must fit the secret area the firmware publishes, or it would overrun it. */
function checkSecretArea(ovmfPath: string, length: number): string {
  const footer = decodeInput(ovmfPath, readInput(ovmfPath, '--ovmf'), parseOvmfFooter);
  const area = footer.sevSecretArea;
  if (area === undefined || area.size === 0)
    throw new InputError(
      `${ovmfPath} publishes no SEV secret area (footer entry 4c2eb361-…): no guest code would find the secret; ` +
        'use a firmware built for it (OvmfPkg/AmdSev/AmdSevX64.dsc)',
    );
  if (length > area.size)
    throw new InputError(
      `the secret table is ${length} bytes, but ${basename(ovmfPath)}'s secret area holds ${area.size} ` +
        `(at 0x${area.base.toString(16)})`,
    );
  return `fits the ${area.size}-byte secret area at 0x${area.base.toString(16)}`;
}

function runSecret(o: SecretOptions, cmd: Command): void {
  const blobArg = required(
    o.measurement,
    '--measurement',
    'the verified LAUNCH_MEASURE output (file, hex or base64)',
  );
  if (o.secret === undefined || o.secret.length === 0)
    throw new InputError('--secret GUID:FILE is required (one per secret)');
  const keys = readKeys(o, true);
  const tek = required(keys.tek, '--tek', 'the TEK');
  const tk: TransportKeys = { tek, tik: keys.tik };
  const { measurement } = readMeasurement('--measurement', blobArg, true);
  if ((o.apiMajor === undefined) !== (o.apiMinor === undefined))
    throw new InputError('--api-major and --api-minor go together');
  const firmware =
    o.apiMajor === undefined || o.apiMinor === undefined
      ? undefined
      : {
          major: parseUint('--api-major', o.apiMajor, 0xff),
          minor: parseUint('--api-minor', o.apiMinor, 0xff),
        };
  const iv = o.iv === undefined ? undefined : parseBytes('--iv', o.iv, [16]);
  const secrets = o.secret.map(readSecretArg);
  const table = encodeEfiSecretTable(secrets);
  const fits = o.ovmf === undefined ? undefined : checkSecretArea(o.ovmf, table.length);
  const p = packageLaunchSecret({ ...tk, measurement, plaintext: table, iv, firmware });
  makeOutDir(o.out);
  const ctPath = join(o.out, OwnerFiles.PACKAGED_SECRET);
  const hdrPath = join(o.out, OwnerFiles.PACKAGED_SECRET_HEADER);
  writeOutput(ctPath, p.ciphertext);
  writeOutput(hdrPath, p.header);
  const lines = [
    `EFI secret table: ${secrets.length} secret${secrets.length === 1 ? '' : 's'}, ${table.length} bytes with padding` +
      (fits === undefined ? '' : `; ${fits}`),
    ...secrets.map((s) => `  ${s.guid.toLowerCase()}  ${s.data.length} bytes from ${s.file}`),
    `  ${ctPath}  AES-128-CTR under the TEK, ${p.ciphertext.length} bytes (LAUNCH_SECRET guest data)`,
    `  ${hdrPath}  packet header, ${p.header.length} bytes: flags 0, IV ${p.iv.toString('hex')}, MAC bound to ` +
      `measurement ${measurement.toString('hex')}${firmware !== undefined && firmware.major === 0 && firmware.minor < 17 ? ' (API < 0.17: not in the MAC)' : ''}`,
  ];
  if (o.base64 === true) {
    // QEMU's QMP sev-inject-launch-secret takes packet-header and secret as base64 strings.
    for (const [path, data] of [
      [join(o.out, 'packaged_secret.b64'), p.ciphertext],
      [join(o.out, 'packaged_secret_header.b64'), p.header],
    ] as const) {
      writeOutput(path, Buffer.from(data.toString('base64')));
      lines.push(`  ${path}  the same, base64 (QMP sev-inject-launch-secret)`);
    }
  }
  output(cmd)(`${lines.join('\n')}\n`);
}

/**
 * Adds `secret`: packages secrets for LAUNCH_SECRET as an EFI secret table (sevctl `secret build`, written
 * under sev-tool `package_secret`'s file names). Exit 0, or 2 for bad input.
 */
export function addSecretCommand(owner: Command): void {
  owner
    .command('secret')
    .description(
      'Package secrets for LAUNCH_SECRET: an EFI secret table (the format OVMF publishes and Linux efi_secret ' +
        'reads, padded to 16 bytes), encrypted with the TEK and authenticated with the TIK over the launch ' +
        'measurement, so only the launch you verified (`owner verify-measurement`) accepts it. Writes ' +
        `${OwnerFiles.PACKAGED_SECRET} and ${OwnerFiles.PACKAGED_SECRET_HEADER}. Exits 2 for bad input.`,
    )
    .option('--tk <file>', `the owner's transport keys, ${OwnerFiles.TRANSPORT_KEYS} from \`owner session\``)
    .option('--tek <file>', 'instead of --tk: a 16-byte TEK file (sevctl session vm_tek.bin), with --tik')
    .option('--tik <file>', 'instead of --tk: a 16-byte TIK file, with --tek')
    .option(
      '--measurement <blob>',
      'the verified LAUNCH_MEASURE output (48 bytes) or its 32-byte MEASUREMENT: a file, hex or base64 (required)',
    )
    .option('--secret <guid:file>', 'a secret: its GUID and the file holding it (repeat for more)', collect)
    .option(
      '--out <dir>',
      `directory for ${OwnerFiles.PACKAGED_SECRET} and ${OwnerFiles.PACKAGED_SECRET_HEADER}`,
      '.',
    )
    .option('--ovmf <file>', "check that the table fits the firmware's SEV secret area")
    .option('--api-major <n>', 'firmware API major version (only needed for firmware older than 0.17)')
    .option('--api-minor <n>', 'firmware API minor version')
    .option('--base64', 'also write packaged_secret.b64 and packaged_secret_header.b64 (for QMP)')
    .addOption(
      // Reusing an IV with the same TEK reveals the XOR of two secrets: only for reproducible tests.
      new Option('--iv <hex>', 'packet IV (tests only)').hideHelp(),
    )
    .addHelpText(
      'after',
      '\nExample:\n' +
        '  sevsim owner secret --tk launch/tmp_tk.bin --measurement launch_measure.bin \\\n' +
        '      --secret 736869e5-84f0-4973-92ec-06879ce3da0b:luks-passphrase.txt --out launch/',
    )
    .action((opts: SecretOptions, c: Command) => guarded(c, () => runSecret(opts, c)));
}

// ---------------------------------------------------------------------------------------------------
// owner verify-attestation

interface VerifyAttestationOptions {
  report?: string;
  pek?: string;
  mnonce?: string;
  digest?: string;
  policy?: string;
  json?: boolean;
}

function runVerifyAttestation(o: VerifyAttestationOptions, cmd: Command): void {
  const reportPath = required(o.report, '--report', 'the ATTESTATION report (attestation_report.bin)');
  const pekPath = required(o.pek, '--pek', "the platform's PEK certificate (pek.cert)");
  const expectation = {
    mnonce: o.mnonce === undefined ? undefined : parseBytes('--mnonce', o.mnonce, [16]),
    launchDigest: o.digest === undefined ? undefined : parseBytes('--digest', o.digest, [32]),
    policy: o.policy === undefined ? undefined : parseUint('--policy', o.policy, 0xffff_ffff),
  };
  const report = readInput(reportPath, 'attestation report');
  const pek = readInput(pekPath, 'PEK certificate');
  // Each file is decoded on its own first, so the message names the malformed one.
  decodeInput(pekPath, pek, decodePekCert);
  decodeInput(reportPath, report, decodeSevAttestationReport);
  const v = verifySevAttestationReport(report, pek, expectation);
  const write = output(cmd);
  if (o.json === true) {
    write(
      `${JSON.stringify(
        {
          ok: v.ok,
          report: {
            mnonce: v.report.mnonce.toString('hex'),
            launchDigest: v.report.launchDigest.toString('hex'),
            policy: hex8(v.report.policy),
            sigUsage: `0x${v.report.sigUsage.toString(16)}`,
            sigAlgo: `0x${v.report.sigAlgo.toString(16)}`,
          },
          checks: v.checks,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    const width = Math.max(...v.checks.map((c) => c.name.length));
    write(
      [
        `SEV attestation report ${reportPath}, PEK ${pekPath}`,
        `  MNONCE ${v.report.mnonce.toString('hex')}  LAUNCH_DIGEST ${v.report.launchDigest.toString('hex')}  ` +
          `POLICY ${hex8(v.report.policy)}`,
        ...v.checks.map((c) => `  ${c.ok ? 'PASS' : 'FAIL'}  ${c.name.padEnd(width)}  ${c.detail}`),
        v.ok ? 'The report verifies.' : `The report does NOT verify.`,
      ].join('\n') + '\n',
    );
  }
  if (!v.ok)
    failCheck(
      cmd,
      `attestation report fails: ${v.checks
        .filter((c) => !c.ok)
        .map((c) => c.name)
        .join(', ')}`,
    );
}

/**
 * Adds `verify-attestation --report FILE --pek FILE [--mnonce HEX] [--digest HEX] [--policy N]`: checks a
 * legacy SEV ATTESTATION report as sev-tool `validate_attestation` does, plus the expected values. Exit
 * 0 if every check holds, 1 if one fails, 2 for bad input.
 */
export function addVerifyAttestationCommand(owner: Command): void {
  owner
    .command('verify-attestation')
    .description(
      'Verify a legacy SEV ATTESTATION report (0xD0 bytes): the PEK signature (ECDSA P-384 SHA-256 over bytes ' +
        '0x00–0x33), the signer fields, and the MNONCE, launch digest and policy you expect. Check the PEK ' +
        'itself with `owner verify-chain`. Exits 1 if a check fails, 2 for bad input.',
    )
    .option('--report <file>', 'the report, 0xD0 bytes (required; attestation_report.bin)')
    .option('--pek <file>', "the platform's PEK certificate, 0x824 bytes (required; pek.cert)")
    .option('--mnonce <hex>', 'the MNONCE sent with the request, 16 bytes in hex or base64')
    .option('--digest <hex>', 'the expected launch digest, 32 bytes in hex or base64')
    .option('--policy <n>', 'the expected guest policy')
    .option('--json', 'print one JSON object: ok, report fields, checks [{name, ok, detail}]')
    .addHelpText(
      'after',
      '\nExample:\n' +
        '  sevsim owner verify-attestation --report attestation_report.bin --pek certs/pek.cert \\\n' +
        '      --mnonce 4fbe0bedbad6c86ae8f68971d103e554 --digest 82a3ee5d…35ff',
    )
    .action((opts: VerifyAttestationOptions, c: Command) => guarded(c, () => runVerifyAttestation(opts, c)));
}
