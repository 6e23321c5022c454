// `sevsim owner verify-chain`: the guest owner's check of a platform's SEV certificate chain (CEK, OCA, PEK,
// PDH as PDH_CERT_EXPORT gives them) against AMD's ARK and ASK — real files from an EPYC host or simulated.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Command } from 'commander';
import {
  type AmdRootCandidate,
  type ChainRole,
  type SevChainResult,
  findCekSigner,
  verifySevChain,
} from '../owner/index.js';
import { EXIT_CHECK_FAILED as EXIT_BROKEN, EXIT_INPUT, InputError, readInput } from './cli-input.js';

interface VerifyChainOptions {
  roots?: string;
  product?: string;
  ark?: string;
  ask?: string;
  json?: boolean;
}

type Tried = { name: string; ok: boolean; reason: string }[];

/** The ARK and ASK to check against, and how they were chosen; or why none could be. */
type RootChoice =
  | {
      found: true;
      ark: Uint8Array;
      ask: Uint8Array;
      arkLabel: string;
      askLabel: string;
      /** The generation's folder name under --roots. */
      product?: string;
      how: string;
      tried: Tried;
    }
  | { found: false; reason: string; tried: Tried };

/** Generation folders under `dir` that hold both ark.cert and ask.cert, sorted by name. */
function rootFolders(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    throw new InputError(`cannot read roots directory ${dir}`);
  }
  const isFile = (p: string): boolean => statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
  return names.filter((n) => isFile(join(dir, n, 'ark.cert')) && isFile(join(dir, n, 'ask.cert'))).sort();
}

function loadCandidate(dir: string, name: string): AmdRootCandidate {
  return {
    name,
    ark: readInput(join(dir, name, 'ark.cert'), 'ARK'),
    ask: readInput(join(dir, name, 'ask.cert'), 'ASK'),
  };
}

function fromFolder(c: AmdRootCandidate, how: string, tried: Tried): RootChoice {
  const { name, ark, ask } = c;
  return {
    found: true,
    ark,
    ask,
    arkLabel: `${name}/ark.cert`,
    askLabel: `${name}/ask.cert`,
    product: name,
    how,
    tried,
  };
}

/** Picks the ARK and ASK the options name, or the generation under --roots whose ASK signs the CEK. */
function chooseRoots(opts: VerifyChainOptions, cek: Uint8Array): RootChoice {
  if (opts.roots === undefined) {
    if (opts.ark === undefined || opts.ask === undefined) throw new InputError('--ark and --ask go together');
    return {
      found: true,
      ark: readInput(opts.ark, 'ARK'),
      ask: readInput(opts.ask, 'ASK'),
      arkLabel: opts.ark,
      askLabel: opts.ask,
      how: 'given with --ark and --ask',
      tried: [],
    };
  }
  const dir = opts.roots;
  const folders = rootFolders(dir);
  if (folders.length === 0) throw new InputError(`no <generation>/ark.cert and ask.cert under ${dir}`);
  if (opts.product !== undefined) {
    if (!folders.includes(opts.product))
      throw new InputError(
        `no ${opts.product}/ark.cert and ask.cert under ${dir} (found: ${folders.join(', ')})`,
      );
    return fromFolder(loadCandidate(dir, opts.product), 'chosen with --product', []);
  }
  const found = findCekSigner(
    folders.map((name) => loadCandidate(dir, name)),
    cek,
  );
  if (found.match === undefined) {
    const names = found.tried.map((t) => t.name).join(', ');
    return {
      found: false,
      reason: `no ASK under ${dir} signs this CEK (tried ${names})`,
      tried: found.tried,
    };
  }
  return fromFolder(
    found.match,
    `found by trying each generation's ASK under ${dir} against the CEK`,
    found.tried,
  );
}

const CHAIN_FILES: Record<Exclude<ChainRole, 'ARK' | 'ASK'>, string> = {
  CEK: 'cek.cert',
  OCA: 'oca.cert',
  PEK: 'pek.cert',
  PDH: 'pdh.cert',
};

/** Key IDs of sevsim's simulated root begin with this (bytes 0x04.. of an AMD root-key certificate). */
const SIMULATED = Buffer.from('SIMULATED', 'ascii');

function runVerifyChain(chainDir: string, opts: VerifyChainOptions, cmd: Command): void {
  const config = cmd.configureOutput();
  const write = (s: string): void => {
    if (config.writeOut) config.writeOut(s);
    else process.stdout.write(s);
  };
  if (opts.roots !== undefined && (opts.ark !== undefined || opts.ask !== undefined))
    throw new InputError('give either --roots DIR or --ark FILE and --ask FILE, not both');
  if (opts.roots === undefined && opts.ark === undefined && opts.ask === undefined)
    throw new InputError(
      'give --roots DIR or --ark FILE and --ask FILE: the AMD keys the chain must lead to',
    );
  if (opts.product !== undefined && opts.roots === undefined) throw new InputError('--product needs --roots');

  const chain = {
    cek: readInput(join(chainDir, CHAIN_FILES.CEK), 'CEK certificate'),
    oca: readInput(join(chainDir, CHAIN_FILES.OCA), 'OCA certificate'),
    pek: readInput(join(chainDir, CHAIN_FILES.PEK), 'PEK certificate'),
    pdh: readInput(join(chainDir, CHAIN_FILES.PDH), 'PDH certificate'),
  };
  const roots = chooseRoots(opts, chain.cek);
  const labels: Partial<Record<ChainRole, string>> = { ...CHAIN_FILES };
  let result: SevChainResult;
  let rootsLine: string;
  if (roots.found) {
    labels.ARK = roots.arkLabel;
    labels.ASK = roots.askLabel;
    result = verifySevChain({ ...chain, ark: roots.ark, ask: roots.ask }, labels);
    rootsLine = `${roots.product ?? 'ARK and ASK'} (${roots.how})`;
    // Evidence from a simulated platform says so (its key IDs start "SIMULATED"): never AMD's.
    if (Buffer.from(roots.ark.subarray(4, 4 + SIMULATED.length)).equals(SIMULATED)) {
      rootsLine += ' — a SIMULATED AMD root (sevsim), not AMD’s';
    }
  } else {
    // No generation's ASK signs this CEK: check the owner's half anyway, and say why the AMD half fails.
    result = verifySevChain(chain, labels);
    result.links = result.links.map((l) =>
      l.signer === 'ARK' || l.signer === 'ASK' ? { ...l, reason: roots.reason } : l,
    );
    rootsLine = `none: ${roots.reason}`;
  }
  const { links, broken } = result;
  // Malformed files are named, with the field and offset of the problem, in the final error too.
  const malformed = result.problems.filter((p) => roots.found || (p.role !== 'ARK' && p.role !== 'ASK'));

  if (opts.json === true) {
    write(
      `${JSON.stringify(
        {
          ok: broken.length === 0,
          chainDir,
          roots: {
            product: roots.found ? (roots.product ?? null) : null,
            ark: labels.ARK ?? null,
            ask: labels.ASK ?? null,
            how: rootsLine,
            tried: roots.tried,
          },
          links: links.map((l) => ({
            name: l.name,
            signer: l.signer,
            subject: l.subject,
            ok: l.ok,
            reason: l.reason,
            ...(l.slot === undefined ? {} : { slot: l.slot }),
          })),
          broken,
          malformed: malformed.map((p) => p.problem),
        },
        null,
        2,
      )}\n`,
    );
  } else {
    const width = Math.max(...links.map((l) => l.name.length));
    const lines = [
      `SEV certificate chain in ${chainDir}`,
      `AMD roots: ${rootsLine}`,
      ...links.map((l) => `  ${l.ok ? 'PASS' : 'FAIL'}  ${l.name.padEnd(width)}  ${l.reason}`),
      broken.length === 0
        ? `The chain verifies: all ${links.length} links hold.`
        : `The chain does NOT verify: ${broken.length} of ${links.length} links fail (${broken.join(', ')}).`,
    ];
    write(`${lines.join('\n')}\n`);
  }
  if (broken.length > 0) {
    // A failed check is a verdict, not a usage error: say why on stderr, no help text, exit 1.
    const detail = malformed.map((p) => `; ${p.problem}`).join('');
    process.stderr.write(`error: chain broken at ${broken.join(', ')}${detail}\n`);
    process.exitCode = EXIT_BROKEN;
  }
}

/**
 * Adds `verify-chain [--roots DIR [--product NAME] | --ark FILE --ask FILE] [--json] CHAIN_DIR` to the
 * `owner` command. Exit status: 0 when every link holds, 1 when any fails (malformed certificates
 * included), 2 when the inputs cannot be read.
 */
export function addVerifyChainCommand(owner: Command): void {
  owner
    .command('verify-chain')
    .description(
      "Verify a platform's SEV certificate chain as a guest owner does: ARK (self-signed) → ASK → CEK → PEK " +
        '← OCA (self-signed), PEK → PDH, matching signature slots by usage and algorithm like the firmware. ' +
        'CHAIN_DIR holds cek.cert, oca.cert, pek.cert and pdh.cert (0x824-byte SEV certificates). ' +
        'Exits 1 if any link fails, 2 if an input cannot be read.',
    )
    .argument('<chain-dir>', 'directory with cek.cert, oca.cert, pek.cert, pdh.cert')
    .option('--roots <dir>', 'one folder per generation (naples/, rome/, …), each with ark.cert and ask.cert')
    .option(
      '--product <name>',
      'with --roots: use this generation instead of finding the one whose ASK signs the CEK',
    )
    .option('--ark <file>', "AMD root key (ARK) in AMD's root-key format")
    .option('--ask <file>', "AMD signing key (ASK) in AMD's root-key format")
    .option('--json', 'print one JSON object: ok, roots, links [{name, signer, subject, ok, reason}], broken')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  sevsim owner verify-chain --roots amd-roots/ platform-certs/\n' +
        '  sevsim owner verify-chain --ark rome/ark.cert --ask rome/ask.cert --json platform-certs/',
    )
    .action((chainDir: string, opts: VerifyChainOptions, cmd: Command) => {
      try {
        runVerifyChain(chainDir, opts, cmd);
      } catch (err) {
        if (err instanceof InputError)
          cmd.error(`error: ${err.message}`, { exitCode: EXIT_INPUT, code: 'sevsim.input' });
        throw err;
      }
    });
}
