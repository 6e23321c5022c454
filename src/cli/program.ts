// The `sevsim` command's definition (main.ts runs it).
import { Command, InvalidArgumentError, Option } from 'commander';
import { PRODUCT_NAMES } from '../soc/index.js';
import { runSevDemo } from '../scenarios/sev-demo.js';
import { renderDemo } from './render-demo.js';
import { addMeasureCommand } from './owner-measure.js';
import { addVerifyChainCommand } from './owner-verify-chain.js';
import { addLaunchCommand } from './launch-command.js';
import {
  addSecretCommand,
  addSessionCommand,
  addVerifyAttestationCommand,
  addVerifyMeasurementCommand,
} from './owner-session.js';

function parseSeed(v: string): string {
  if (!/^[0-9A-Za-z_-]{1,64}$/.test(v))
    throw new InvalidArgumentError('a seed is 1–64 letters, digits, "-" or "_"');
  return v;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('sevsim')
    .description(
      'AMD SEV, SEV-ES and SEV-SNP as a software model: per-VM memory encryption in the memory ' +
        'controller, ASID-tagged caches, the AMD Secure Processor and its command set, a hypervisor and ' +
        'a guest. Everything is really encrypted (AES-128 XEX or Zen 1 XE with a physical-address tweak).',
    )
    .showHelpAfterError();

  program
    .command('demo')
    .description(
      'Boot a simulated EPYC host, launch two SEV guests and show, for the same memory, what each ' +
        'guest, the hypervisor and DRAM see, checking each protection SEV promises (7a–7g). ' +
        'Exits 1 if any check fails.',
    )
    .addOption(
      new Option('--product <name>', 'CPU product profile (C-bit, ASIDs, cipher mode)')
        .choices([...PRODUCT_NAMES])
        .default('milan'),
    )
    .option('--seed <seed>', 'make every key, nonce and tweak reproducible', parseSeed, '1')
    .option('--json', 'print one JSON object with a `checks` array of {name, passed, detail}')
    .addHelpText(
      'after',
      '\nExamples:\n  sevsim demo                    Milan (Zen 3, XEX), seed 1\n  sevsim demo --product naples   Zen 1 XE cipher: block relocation becomes predictable\n  sevsim demo --json | jq .checks',
    )
    .action((opts: { product: string; seed: string; json?: boolean }) => {
      const result = runSevDemo({ product: opts.product, seed: opts.seed });
      if (opts.json === true) {
        process.stdout.write(
          `${JSON.stringify({ product: result.product, cipherMode: result.cipherMode, seed: result.seed, guests: result.guests, keySlots: result.keySlots, checks: result.checks.map((c) => ({ id: c.id, name: c.name, passed: c.passed, detail: c.detail, views: c.views })) }, null, 2)}\n`,
        );
      } else {
        process.stdout.write(`${renderDemo(result)}\n`);
      }
      if (result.checks.some((c) => !c.passed)) process.exitCode = 1;
    });
  const owner = program
    .command('owner')
    .description(
      "The guest owner's tools. They use only AMD's published formats and keys, so they work the same " +
        'on a simulated platform and on real AMD hardware output.',
    );
  addVerifyChainCommand(owner);
  addMeasureCommand(owner);
  addSessionCommand(owner);
  addVerifyMeasurementCommand(owner);
  addSecretCommand(owner);
  addVerifyAttestationCommand(owner);
  addLaunchCommand(program);
  return program;
}
