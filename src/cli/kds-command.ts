// `sevsim kds`: AMD's Key Distribution Service for simulated chips, over HTTP on loopback — so tools that
// fetch VCEKs from a KDS (sevsim's own `owner verify-report --kds`, or anything that takes a KDS base URL)
// can verify reports of simulated platforms. `--export DIR` instead writes the simulated roots in the
// layout of AMD's (DIR/<product>/ark.pem, ask.pem, cert_chain) for `owner verify-report --roots DIR`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { derToPem } from '../abi/der-writer.js';
import {
  type KdsChip,
  type SnpProduct,
  SNP_PRODUCTS,
  SNP_PRODUCT_NAMES,
  SimulatedKds,
  kdsCertChainPath,
  kdsSplParameters,
} from '../psp/index.js';
import { simulatedAmdRoot } from '../psp/simulated-amd-root.js';
import { EXIT_INPUT, InputError } from './cli-input.js';

/** A running KDS server. */
export interface KdsServer {
  /** Base URL, e.g. http://127.0.0.1:41234 (what `owner verify-report --kds` takes). */
  readonly url: string;
  readonly server: Server;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** Whether `host` names the loopback interface: the simulated KDS never listens elsewhere. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * Serves `kds` on loopback until closed. `log` gets one line per request (method, path, status).
 * Rejects a non-loopback host (InputError) and a port that cannot be bound.
 */
export async function startKdsServer(opts: {
  kds: SimulatedKds;
  host?: string;
  port?: number;
  log?: (line: string) => void;
}): Promise<KdsServer> {
  const host = opts.host ?? '127.0.0.1';
  if (!isLoopbackHost(host))
    throw new InputError(
      `--host ${host} is not a loopback address; the simulated KDS listens on loopback only`,
    );
  const server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    let answer: ReturnType<SimulatedKds['handle']>;
    try {
      answer = opts.kds.handle(method, url);
    } catch {
      // handle() answers every request itself; this only catches the unexpected (e.g. an unreadable root).
      const body = Buffer.from('500 - Internal Server Error\n');
      answer = { status: 500, headers: { 'content-type': 'text/plain; charset=utf-8' }, body };
    }
    opts.log?.(`${method} ${url.length > 200 ? `${url.slice(0, 200)}…` : url} → ${answer.status}`);
    // The handler's content-length wins: for HEAD it is the length a GET would send.
    res.writeHead(answer.status, { 'content-length': String(answer.body.length), ...answer.headers });
    res.end(answer.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new InputError(`cannot listen on ${host}:${opts.port ?? 0}: ${err.message}`)),
    );
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the KDS server has no TCP address');
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Writes DIR/<product>/{ark.pem, ask.pem, cert_chain} (cert_chain = ASK then ARK, as AMD serves it). */
export function exportSimulatedRoots(dir: string, products: readonly SnpProduct[]): string[] {
  const root = simulatedAmdRoot();
  const written: string[] = [];
  for (const p of products) {
    const { ark, ask } = root.snpCertificates(p);
    const sub = join(dir, p);
    mkdirSync(sub, { recursive: true });
    const files: [string, string][] = [
      ['ark.pem', derToPem(ark)],
      ['ask.pem', derToPem(ask)],
      ['cert_chain', derToPem(ask) + derToPem(ark)],
    ];
    for (const [name, text] of files) {
      writeFileSync(join(sub, name), text);
      written.push(join(sub, name));
    }
  }
  return written;
}

interface KdsOptions {
  port: number;
  host: string;
  seed: string[];
  stateDir: string[];
  product?: string;
  export?: string;
}

function parsePort(v: string): number {
  if (!/^\d{1,5}$/.test(v) || Number(v) > 65535)
    throw new InvalidArgumentError('a port is an integer 0–65535 (0: any free port)');
  return Number(v);
}

function parseSeed(v: string, previous: string[]): string[] {
  if (!/^[0-9A-Za-z_-]{1,64}$/.test(v))
    throw new InvalidArgumentError('a seed is 1–64 letters, digits, "-" or "_"');
  return [...previous, v];
}

const collect = (v: string, previous: string[]): string[] => [...previous, v];

/** Waits for Ctrl-C (SIGINT) or SIGTERM, then removes both listeners. */
function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

async function runKds(opts: KdsOptions, cmd: Command): Promise<void> {
  const config = cmd.configureOutput();
  const write = (s: string): void => {
    if (config.writeOut) config.writeOut(s);
    else process.stdout.write(s);
  };
  if (opts.export !== undefined) {
    const products = opts.product !== undefined ? [opts.product as SnpProduct] : SNP_PRODUCT_NAMES;
    const files = exportSimulatedRoots(opts.export, products);
    write(
      `Wrote the simulated AMD roots (SIMULATED: AMD's real roots reject what they sign):\n` +
        files.map((f) => `  ${f}\n`).join('') +
        `Use them with: sevsim owner verify-report --report R --cert VCEK --roots ${opts.export}\n`,
    );
    return;
  }
  const product = (opts.product ?? 'milan') as SnpProduct;
  const kds = new SimulatedKds();
  const known: { chip: KdsChip; from: string }[] = [];
  for (const seed of opts.seed)
    known.push({ chip: kds.registerSeededChip(seed, product), from: `seed ${seed}` });
  for (const dir of opts.stateDir) {
    try {
      known.push({ chip: kds.registerStateDirectory(dir, product), from: `state directory ${dir}` });
    } catch (err) {
      throw new InputError(err instanceof Error ? err.message : String(err));
    }
  }
  // Load (or create, the first time: seconds of RSA-4096 generation) the root before listening.
  simulatedAmdRoot();
  const server = await startKdsServer({
    kds,
    host: opts.host,
    port: opts.port,
    log: (line) => write(`  ${line}\n`),
  });
  const info = SNP_PRODUCTS[product];
  const lines = [
    `Simulated AMD KDS (SIMULATED root; AMD's real roots reject what it signs) on ${server.url}`,
    `  cert chain  ${server.url}${kdsCertChainPath(product)}   (${SNP_PRODUCT_NAMES.filter(
      (p) => p !== product,
    )
      .map((p) => SNP_PRODUCTS[p].kdsName)
      .join(' and ')} too)`,
    `  VCEK        ${server.url}/vcek/v1/${info.kdsName}/<hwID hex>?${kdsSplParameters(product)
      .map((k) => `${k}=N`)
      .join('&')}`,
    known.length === 0
      ? '  chips       none: give --seed S or --state-dir DIR to register a simulated chip'
      : `  chips (${known.length}):`,
    ...known.map((k) => `    ${SNP_PRODUCTS[k.chip.product].kdsName} hwID ${k.chip.hwId}  (${k.from})`),
    `  verify a report: sevsim owner verify-report --report R --kds ${server.url}`,
    'Press Ctrl-C to stop.',
  ];
  write(`${lines.join('\n')}\n`);
  await untilInterrupted();
  await server.close();
  write('KDS stopped.\n');
}

/**
 * Adds `kds [--port N] [--host ADDR] [--seed S]… [--state-dir DIR]… [--product P] [--export DIR]`. Exit
 * status 0 after Ctrl-C (or after --export), 2 for bad input (non-loopback host, busy port, no chip in a
 * state directory).
 */
export function addKdsCommand(program: Command): void {
  program
    .command('kds')
    .description(
      "Run AMD's Key Distribution Service for simulated chips on loopback: /vcek/v1/{Milan|Genoa|Turin}/" +
        'cert_chain (PEM: ASK then ARK) and /vcek/v1/{product}/{hwID}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=.. ' +
        '(+fmcSPL on Turin) → the chip’s VCEK certificate (DER) at that TCB, signed by the simulated ASK. It ' +
        'knows the chips of the given seeds and state directories, the way AMD knows every chip it made. ' +
        'Runs until Ctrl-C. With --export DIR it writes the simulated roots instead and exits.',
    )
    .option('--port <n>', 'TCP port (0: any free port)', parsePort, 0)
    .option('--host <addr>', 'listen address; loopback only (127.0.0.1, ::1, localhost)', '127.0.0.1')
    .option(
      '--seed <seed>',
      'register the chip of a platform created with this seed (repeatable)',
      parseSeed,
      [],
    )
    .option(
      '--state-dir <dir>',
      'register the chip fused into this platform state directory (fuses.bin; repeatable)',
      collect,
      [],
    )
    .addOption(
      new Option(
        '--product <name>',
        'the product of the registered chips; with --export, the only one written',
      ).choices([...SNP_PRODUCT_NAMES]),
    )
    .option(
      '--export <dir>',
      'write <dir>/<product>/{ark.pem, ask.pem, cert_chain} and exit (all products unless --product)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  sevsim kds --seed 1                        Milan chip of `--seed 1` platforms, on a free port\n' +
        '  sevsim kds --port 8080 --product turin --seed 1 --seed 2\n' +
        '  sevsim kds --state-dir ./host1             the chip of a platform kept in ./host1\n' +
        '  curl -s http://127.0.0.1:8080/vcek/v1/Milan/cert_chain\n' +
        '  sevsim owner verify-report --report report.bin --kds http://127.0.0.1:8080\n' +
        '  sevsim kds --export sim-roots && sevsim owner verify-report --report r.bin --cert vcek.der --roots sim-roots',
    )
    .action(async (opts: KdsOptions, cmd: Command) => {
      try {
        await runKds(opts, cmd);
      } catch (err) {
        if (err instanceof InputError)
          cmd.error(`error: ${err.message}`, { exitCode: EXIT_INPUT, code: 'sevsim.input' });
        throw err;
      }
    });
}
