// `sevsim owner verify-report`: the guest owner's check of a real SEV-SNP attestation report — its
// signature under the VCEK/VLEK, the AMD chain, the certificate's extensions and the owner's policy. The
// VCEK comes from a file (--cert) or from a Key Distribution Service (--kds: AMD's, or sevsim's simulated
// one), fetched for the report's CHIP_ID and REPORTED_TCB as AMD's URL shapes ask.
import type { SnpVerifyPolicy } from '../owner/index.js';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Command } from 'commander';
import { AbiDecodeError, certificatesFromPemOrDer, decodeSnpReport, productFromCpuid } from '../abi/index.js';
import {
  type SnpRootSet,
  type SnpVerifyResult,
  SnpVerifyInputError,
  snpRootSetFromBundle,
  verifySnpReport,
} from '../owner/index.js';
import {
  type SnpProduct,
  SNP_PRODUCTS,
  SNP_PRODUCT_NAMES,
  kdsCertChainPath,
  kdsVcekPath,
  snpProduct,
} from '../psp/index.js';
import { EXIT_CHECK_FAILED as EXIT_FAILED, EXIT_INPUT, InputError, readInput } from './cli-input.js';

interface VerifyReportOptions {
  report?: string;
  cert?: string;
  kds?: string;
  product?: string;
  roots?: string;
  ark?: string;
  ask?: string;
  allowDebug?: boolean;
  asOf?: string;
  json?: boolean;
  measurement?: string;
  reportData?: string;
  hostData?: string;
  minTcb?: string;
}

/** A hex option of an exact byte length (the report's field width). */
function hexOption(value: string | undefined, name: string, bytes: number): Buffer | undefined {
  if (value === undefined) return undefined;
  const clean = value.replace(/^0x/i, '');
  if (!/^[0-9a-fA-F]*$/.test(clean) || clean.length !== bytes * 2) {
    throw new InputError(`${name} needs ${bytes} bytes as ${bytes * 2} hex digits`);
  }
  return Buffer.from(clean, 'hex');
}

/** The policy the user states beyond debug: expected fields and a minimum TCB (raw u64, hex). */
function optionalPolicy(opts: VerifyReportOptions): Omit<SnpVerifyPolicy, 'allowDebug'> {
  const measurement = hexOption(opts.measurement, '--measurement', 48);
  const reportData = hexOption(opts.reportData, '--report-data', 64);
  const hostData = hexOption(opts.hostData, '--host-data', 32);
  let minimumTcb: bigint | undefined;
  if (opts.minTcb !== undefined) {
    if (!/^(0x)?[0-9a-fA-F]{1,16}$/.test(opts.minTcb))
      throw new InputError('--min-tcb needs a TCB_VERSION as up to 16 hex digits');
    minimumTcb = BigInt(opts.minTcb.startsWith('0x') ? opts.minTcb : `0x${opts.minTcb}`);
  }
  return {
    ...(measurement !== undefined ? { measurement } : {}),
    ...(reportData !== undefined ? { reportData } : {}),
    ...(hostData !== undefined ? { hostData } : {}),
    ...(minimumTcb !== undefined ? { minimumTcb } : {}),
  };
}

const isFile = (p: string): boolean => statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;

/** Each generation folder under `dir` with ark.pem (and ask.pem and/or ask_ark_asvk.pem). */
function loadRoots(opts: VerifyReportOptions): SnpRootSet[] {
  if (opts.roots !== undefined) {
    if (opts.ark !== undefined || opts.ask !== undefined)
      throw new InputError('give either --roots DIR or --ark FILE and --ask FILE, not both');
    let names: string[];
    try {
      names = readdirSync(opts.roots).sort();
    } catch {
      throw new InputError(`cannot read roots directory ${opts.roots}`);
    }
    const sets: SnpRootSet[] = [];
    for (const name of names) {
      const dir = join(opts.roots, name);
      const set: Partial<SnpRootSet> = { name };
      if (isFile(join(dir, 'ask_ark_asvk.pem')))
        Object.assign(
          set,
          snpRootSetFromBundle(name, readInput(join(dir, 'ask_ark_asvk.pem'), 'root bundle')),
        );
      if (isFile(join(dir, 'ark.pem'))) set.ark = readInput(join(dir, 'ark.pem'), 'ARK');
      if (isFile(join(dir, 'ask.pem'))) set.ask = readInput(join(dir, 'ask.pem'), 'ASK');
      if (set.ark !== undefined) sets.push(set as SnpRootSet);
    }
    if (sets.length === 0) throw new InputError(`no <generation>/ark.pem under ${opts.roots}`);
    return sets;
  }
  if (opts.ark === undefined || opts.ask === undefined)
    throw new InputError('give --roots DIR or --ark FILE and --ask FILE (the ASK, or the ASVK for a VLEK)');
  // --ask may name the ASK or the ASVK: the chain check tries it as the leaf's issuer either way.
  return [{ name: opts.ark, ark: readInput(opts.ark, 'ARK'), ask: readInput(opts.ask, 'ASK') }];
}

function parseAsOf(s: string | undefined): Date | undefined {
  if (s === undefined) return undefined;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new InputError(`--as-of ${s} is not a date (use e.g. 2025-06-01)`);
  return d;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const h64 = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

function tcbText(t: SnpVerifyResult['tcb']['current']): string {
  const parts = t.layout === 'turin' ? [`fmc ${t.fmc ?? 0}`] : [];
  parts.push(`bl ${t.bootloader}`, `tee ${t.tee}`, `snp ${t.snp}`, `ucode ${t.microcode}`);
  return `${h64(t.raw)}  (${parts.join(', ')})`;
}

/** Every report field, in offset order, as [name, value] rows. */
function reportRows(res: SnpVerifyResult): [string, string][] {
  const r = res.report;
  const rows: [string, string][] = [
    ['VERSION', String(r.version)],
    ['GUEST_SVN', String(r.guestSvn)],
    ['POLICY', `${h64(r.policy)}${(r.policy & (1n << 19n)) !== 0n ? '  (DEBUG allowed)' : ''}`],
    ['FAMILY_ID', hex(r.familyId)],
    ['IMAGE_ID', hex(r.imageId)],
    ['VMPL', String(r.vmpl)],
    ['SIGNATURE_ALGO', `${r.signatureAlgo}${r.signatureAlgo === 1 ? ' (ECDSA P-384 SHA-384)' : ''}`],
    ['CURRENT_TCB', tcbText(res.tcb.current)],
    ['PLATFORM_INFO', h64(r.platformInfo)],
    ['AUTHOR_KEY_EN', String(r.authorKeyEn)],
    ['MASK_CHIP_KEY', String(r.maskChipKey)],
    ['SIGNING_KEY', r.signingKey],
    ['REPORT_DATA', hex(r.reportData)],
    ['MEASUREMENT', hex(r.measurement)],
    ['HOST_DATA', hex(r.hostData)],
    ['ID_KEY_DIGEST', hex(r.idKeyDigest)],
    ['AUTHOR_KEY_DIGEST', hex(r.authorKeyDigest)],
    ['REPORT_ID', hex(r.reportId)],
    ['REPORT_ID_MA', hex(r.reportIdMa)],
    ['REPORTED_TCB', tcbText(res.tcb.reported)],
  ];
  if (r.cpuid !== undefined)
    rows.push([
      'CPUID_FAM/MOD/STEP',
      `0x${r.cpuid.family.toString(16)} / 0x${r.cpuid.model.toString(16)} / ${r.cpuid.stepping}`,
    ]);
  rows.push(
    ['CHIP_ID', hex(r.chipId)],
    ['COMMITTED_TCB', tcbText(res.tcb.committed)],
    ['CURRENT_VERSION', `${r.currentMajor}.${r.currentMinor}.${r.currentBuild}`],
    ['COMMITTED_VERSION', `${r.committedMajor}.${r.committedMinor}.${r.committedBuild}`],
    ['LAUNCH_TCB', tcbText(res.tcb.launch)],
  );
  if (r.version >= 5)
    rows.push(['LAUNCH_MIT_VECTOR', h64(r.launchMitVector)], ['CURRENT_MIT_VECTOR', h64(r.currentMitVector)]);
  rows.push(
    ['SIGNATURE_R', hex(r.signatureR.subarray(0, 48))],
    ['SIGNATURE_S', hex(r.signatureS.subarray(0, 48))],
  );
  return rows;
}

const jsonReplacer = (_k: string, v: unknown): unknown =>
  typeof v === 'bigint' ? `0x${v.toString(16)}` : Buffer.isBuffer(v) ? v.toString('hex') : v;

/** What --kds fetched: the VCEK (DER), the product's ASK and ARK (DER), and the URLs asked. */
interface KdsFetched {
  product: SnpProduct;
  vcek: Buffer;
  ask: Buffer;
  ark: Buffer;
  vcekUrl: string;
  chainUrl: string;
}

/** How long to wait for a KDS answer (AMD's throttles; a hung connection should not hang the owner). */
const KDS_TIMEOUT_MS = 30_000;

async function kdsGet(url: string, what: string): Promise<{ status: number; body: Buffer }> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(KDS_TIMEOUT_MS) });
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
    throw new InputError(
      `cannot fetch the ${what} from ${url} (${err instanceof Error ? err.message : String(err)}${cause})`,
    );
  }
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** The first line of an error body, printable and short (a KDS answers e.g. "404 - Not Found"). */
function firstLine(body: Buffer): string {
  const line = body.toString('utf8').split('\n')[0] ?? '';
  // eslint-disable-next-line no-control-regex
  return line.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 200);
}

/**
 * Fetches the VCEK for the report's CHIP_ID and REPORTED_TCB, and the product's cert_chain, from a KDS at
 * `base` (e.g. https://kdsintf.amd.com, or the URL `sevsim kds` prints). The product comes from
 * --product, else the report's CPUID (v3+), else it is tried: Turin if CHIP_ID holds only an 8-byte hwID,
 * else Milan then Genoa.
 */
async function fetchFromKds(
  base: string,
  reportBytes: Buffer,
  product: string | undefined,
): Promise<KdsFetched> {
  let root: URL;
  try {
    root = new URL(base);
  } catch {
    throw new InputError(
      `--kds ${base} is not a URL (e.g. https://kdsintf.amd.com or http://127.0.0.1:PORT)`,
    );
  }
  if (root.protocol !== 'https:' && root.protocol !== 'http:')
    throw new InputError(`--kds ${base}: only http and https URLs are supported`);
  const prefix = root.href.replace(/\/+$/, '');
  const report = decodeSnpReport(reportBytes);
  if (report.signingKey === 'VLEK')
    throw new InputError(
      'the report is signed by a VLEK: VLEK certificates come from the cloud provider, not the KDS (use --cert)',
    );
  if (report.signingKey !== 'VCEK')
    throw new InputError(`the report is not signed by a VCEK (SIGNING_KEY ${report.signingKey})`);
  if (report.chipId.every((b) => b === 0))
    throw new InputError(
      'the report’s CHIP_ID is zero (MASK_CHIP_ID): a KDS cannot find the chip; use --cert',
    );
  let candidates: SnpProduct[];
  if (product !== undefined) {
    try {
      candidates = [snpProduct(product).product];
    } catch (err) {
      throw new InputError(`--product: ${err instanceof Error ? err.message : String(err)}`);
    }
  } else {
    const fromCpuid = report.cpuid && productFromCpuid(report.cpuid.family, report.cpuid.model);
    if (fromCpuid !== undefined) candidates = [snpProduct(fromCpuid).product];
    else if (report.chipId.subarray(SNP_PRODUCTS.turin.hwIdBytes).every((b) => b === 0))
      candidates = ['turin'];
    else candidates = SNP_PRODUCT_NAMES.filter((p) => SNP_PRODUCTS[p].hwIdBytes === 64);
  }
  const failures: string[] = [];
  for (const p of candidates) {
    const info = SNP_PRODUCTS[p];
    let path: string;
    try {
      path = kdsVcekPath(p, report.chipId.subarray(0, info.hwIdBytes), report.reportedTcb);
    } catch (err) {
      throw new InputError(
        `REPORTED_TCB cannot be asked of a KDS: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const vcekUrl = prefix + path;
    const vcek = await kdsGet(vcekUrl, `${info.kdsName} VCEK`);
    if (vcek.status !== 200) {
      failures.push(`${vcekUrl} answered ${vcek.status} (${firstLine(vcek.body)})`);
      continue;
    }
    const chainUrl = prefix + kdsCertChainPath(p);
    const chain = await kdsGet(chainUrl, `${info.kdsName} certificate chain`);
    if (chain.status !== 200)
      throw new InputError(`${chainUrl} answered ${chain.status} (${firstLine(chain.body)})`);
    let certs: Buffer[];
    try {
      certs = certificatesFromPemOrDer(chain.body);
    } catch (err) {
      throw new InputError(
        `${chainUrl} did not answer PEM certificates (${err instanceof Error ? err.message : String(err)})`,
      );
    }
    const [ask, ark] = certs;
    if (ask === undefined || ark === undefined || certs.length !== 2)
      throw new InputError(
        `${chainUrl} answered ${certs.length} certificates; a cert_chain holds the ASK then the ARK`,
      );
    return { product: p, vcek: vcek.body, ask, ark, vcekUrl, chainUrl };
  }
  throw new InputError(`no VCEK for this report at ${prefix}: ${failures.join('; ')}`);
}

function runVerifyReport(opts: VerifyReportOptions, cmd: Command, fetched?: KdsFetched): void {
  const config = cmd.configureOutput();
  const write = (s: string): void => {
    if (config.writeOut) config.writeOut(s);
    else process.stdout.write(s);
  };
  if (opts.report === undefined) throw new InputError('--report FILE is required');
  const pinned = opts.roots !== undefined || opts.ark !== undefined || opts.ask !== undefined;
  let roots: SnpRootSet[];
  let certificate: Buffer;
  let source: string;
  if (fetched !== undefined) {
    // Pinned roots (--roots, --ark/--ask) stay the trust anchor and the KDS supplies only the VCEK; without
    // them the KDS's own chain is trusted — fine for the simulated KDS, whose root is the point; against
    // AMD's KDS, pin AMD's roots.
    roots = pinned
      ? loadRoots(opts)
      : [{ name: `KDS ${fetched.chainUrl}`, ark: fetched.ark, ask: fetched.ask }];
    certificate = fetched.vcek;
    source = `${fetched.vcekUrl}; roots ${pinned ? 'pinned' : `from ${fetched.chainUrl} (not pinned)`}`;
  } else {
    if (opts.cert === undefined)
      throw new InputError('--cert FILE (the VCEK or VLEK) or --kds URL is required');
    roots = loadRoots(opts);
    certificate = readInput(opts.cert, 'certificate');
    source = opts.cert;
  }
  const asOf = parseAsOf(opts.asOf);
  const report = readInput(opts.report, 'report');
  let res: SnpVerifyResult;
  try {
    res = verifySnpReport({
      report,
      certificate,
      roots,
      ...(asOf === undefined ? {} : { asOf }),
      policy: {
        allowDebug: opts.allowDebug === true,
        ...optionalPolicy(opts),
      },
    });
  } catch (err) {
    if (err instanceof AbiDecodeError || err instanceof SnpVerifyInputError)
      throw new InputError(err.message);
    throw err;
  }
  if (opts.json === true) {
    const { raw: _raw, ...fields } = res.report;
    write(
      `${JSON.stringify(
        {
          ok: res.ok,
          report: fields,
          product: res.product ?? null,
          tcbLayout: res.tcbLayout,
          tcb: res.tcb,
          leaf: res.leaf,
          extensions: res.extensions,
          roots: res.roots ?? null,
          ...(fetched !== undefined
            ? { kds: { vcek: fetched.vcekUrl, certChain: fetched.chainUrl, pinnedRoots: pinned } }
            : {}),
          checks: res.checks,
          failed: res.failed,
        },
        jsonReplacer,
        2,
      )}\n`,
    );
  } else {
    const rows = reportRows(res);
    const width = Math.max(...rows.map(([k]) => k.length));
    const checkWidth = Math.max(...res.checks.map((c) => c.name.length));
    const lines = [
      `SEV-SNP attestation report ${opts.report} (${res.product ?? 'unknown product'}, TCB layout ${res.tcbLayout})`,
      ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`),
      `Signed by ${res.leaf.subject} (${source}), issued by ${res.leaf.issuer}, valid ${res.leaf.validFrom} – ${res.leaf.validTo}`,
      ...res.checks.map((c) => `  ${c.ok ? 'PASS' : 'FAIL'}  ${c.name.padEnd(checkWidth)}  ${c.detail}`),
      res.ok
        ? `The report verifies: all ${res.checks.length} checks pass.`
        : `The report does NOT verify: ${res.failed.length} of ${res.checks.length} checks fail (${res.failed.join(', ')}).`,
    ];
    write(`${lines.join('\n')}\n`);
  }
  if (!res.ok) {
    const why = res.checks
      .filter((c) => !c.ok)
      .map((c) => `${c.name}: ${c.detail}`)
      .join('; ');
    process.stderr.write(`error: report does not verify: ${why}\n`);
    process.exitCode = EXIT_FAILED;
  }
}

/**
 * Adds `verify-report --report R (--cert C | --kds URL [--product P]) [--roots DIR | --ark F --ask F]
 * [--allow-debug] [--as-of DATE] [--json]` to the `owner` command. Exit status: 0 verified, 1 a check
 * failed, 2 bad input (including a KDS that cannot be reached or has no VCEK for the report).
 */
export function addVerifyReportCommand(owner: Command): void {
  owner
    .command('verify-report')
    .description(
      'Verify a real SEV-SNP attestation report (0x4A0 bytes): its ECDSA P-384 signature under the VCEK or ' +
        'VLEK, the chain ARK → ASK → VCEK (or ARK → ASVK → VLEK), the certificate’s hwID and TCB against ' +
        'the report, and the policy (debug refused unless --allow-debug). Exits 1 if a check fails, 2 if ' +
        'an input cannot be read.',
    )
    .option('--report <file>', 'the attestation report (0x4A0 bytes)')
    .option('--cert <file>', 'the VCEK or VLEK (DER or PEM; a PEM chain with VCEK first is accepted)')
    .option(
      '--kds <url>',
      'instead of --cert: fetch the VCEK for the report’s CHIP_ID and REPORTED_TCB, and the cert_chain, from ' +
        'this Key Distribution Service (https://kdsintf.amd.com, or the URL `sevsim kds` prints); without ' +
        '--roots/--ark the KDS’s own ARK is trusted',
    )
    .option(
      '--product <name>',
      'with --kds: Milan, Genoa or Turin (default: from the report’s CPUID, else tried)',
    )
    .option(
      '--roots <dir>',
      'one folder per generation (milan/, genoa/, turin/) with ark.pem, ask.pem, ask_ark_asvk.pem',
    )
    .option('--ark <file>', 'AMD root key (ARK), X.509 PEM or DER')
    .option('--ask <file>', 'AMD signing key (ASK, or ASVK for a VLEK), X.509 PEM or DER')
    .option('--allow-debug', 'accept a report whose guest policy allows debugging')
    .option('--as-of <date>', 'check certificate validity as of this date (ISO 8601) instead of now')
    .option('--measurement <hex>', 'require this MEASUREMENT (48 bytes, hex)')
    .option('--report-data <hex>', 'require this REPORT_DATA (64 bytes, hex)')
    .option('--host-data <hex>', 'require this HOST_DATA (32 bytes, hex)')
    .option(
      '--min-tcb <hex>',
      'require REPORTED_TCB at least this TCB_VERSION (u64, hex), component by component',
    )
    .option(
      '--json',
      'print one JSON object: ok, report, tcb, leaf, extensions, checks [{name, ok, detail}], failed',
    )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  sevsim owner verify-report --report report.bin --cert vcek.der --roots amd-roots/\n' +
        '  sevsim owner verify-report --report r.bin --cert vlek.der --roots amd-roots/ --as-of 2025-06-01\n' +
        '  sevsim owner verify-report --report report.bin --kds https://kdsintf.amd.com --roots amd-roots/\n' +
        '  sevsim owner verify-report --report report.bin --kds http://127.0.0.1:8080    (a `sevsim kds`)',
    )
    .action((opts: VerifyReportOptions, cmd: Command) => {
      const fail = (err: unknown): never => {
        if (err instanceof InputError || err instanceof AbiDecodeError || err instanceof SnpVerifyInputError)
          cmd.error(`error: ${err.message}`, { exitCode: EXIT_INPUT, code: 'sevsim.input' });
        throw err;
      };
      // Only --kds needs the network, hence a promise; the file-based check stays synchronous, so callers
      // that parse with Command.parse() keep working.
      if (opts.kds !== undefined) return verifyWithKds(opts, cmd).catch(fail);
      try {
        runVerifyReport(opts, cmd);
      } catch (err) {
        fail(err);
      }
      return undefined;
    });
}

async function verifyWithKds(opts: VerifyReportOptions, cmd: Command): Promise<void> {
  if (opts.kds === undefined) return;
  if (opts.cert !== undefined) throw new InputError('give either --cert FILE or --kds URL, not both');
  if (opts.report === undefined) throw new InputError('--report FILE is required');
  const fetched = await fetchFromKds(opts.kds, readInput(opts.report, 'report'), opts.product);
  runVerifyReport(opts, cmd, fetched);
}
