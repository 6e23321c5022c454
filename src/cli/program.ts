// The `sevsim` command's definition (main.ts runs it).
import { Command, InvalidArgumentError, Option } from 'commander';
import { PRODUCT_NAMES } from '../soc/index.js';
import { existsSync, readFileSync } from 'node:fs';
import { runSevDemo } from '../scenarios/sev-demo.js';
import { type OwnerLaunchResult, runOwnerLaunch } from '../scenarios/owner-launch.js';
import { renderDemo, renderSnpDemo } from './render-demo.js';
import { runSnpDemo, type SnpDemoResult } from '../scenarios/snp-demo.js';
import { productProfile } from '../soc/index.js';
import { addMeasureCommand } from './owner-measure.js';
import { addVerifyChainCommand } from './owner-verify-chain.js';
import { addVerifyReportCommand } from './owner-verify-report.js';
import { addLaunchCommand } from './launch-command.js';
import { addKdsCommand } from './kds-command.js';
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
        'guest, the hypervisor and DRAM see, checking each protection SEV promises (7a–7g); then the ' +
        'owner-verified launch of OVMF; then, on SNP products, SEV-SNP (8a–8f): OVMF attested with a ' +
        'VCEK-signed report, four integrity attacks against SEV and SNP side by side, and an application ' +
        'at VMPL0 that its own kernel (VMPL1) cannot read. Exits 1 if any check fails.',
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
    .option(
      '--ovmf <file>',
      'after the memory checks, run the owner-verified launch of this firmware (sevsim launch); "none" to skip',
      '../shared/testdata/ovmf/OVMF.fd',
    )
    .action((opts: { product: string; seed: string; json?: boolean; ovmf: string }) => {
      const result = runSevDemo({ product: opts.product, seed: opts.seed });
      // The guest owner's flow needs a firmware image; without one it is skipped, and says so.
      let launch: OwnerLaunchResult | { skipped: string } = { skipped: 'no firmware image (--ovmf none)' };
      if (opts.ovmf !== 'none') {
        if (!existsSync(opts.ovmf)) launch = { skipped: `no firmware image at ${opts.ovmf}` };
        else
          launch = runOwnerLaunch({
            ovmf: readFileSync(opts.ovmf),
            mode: 'sev',
            product: opts.product,
            seed: opts.seed,
          });
      }
      // SEV-SNP (8a–8f) on products that have it, with the same firmware image.
      let snp: SnpDemoResult | { skipped: string } = { skipped: 'no firmware image (--ovmf none)' };
      if (!productProfile(opts.product).sevSnp) snp = { skipped: `${opts.product} has no SEV-SNP` };
      else if (opts.ovmf !== 'none') {
        if (!existsSync(opts.ovmf)) snp = { skipped: `no firmware image at ${opts.ovmf}` };
        else snp = runSnpDemo({ ovmf: readFileSync(opts.ovmf), product: opts.product, seed: opts.seed });
      }
      if (opts.json === true) {
        const checks = result.checks.map((c) => ({
          id: c.id,
          name: c.name,
          passed: c.passed,
          detail: c.detail,
          views: c.views,
        }));
        process.stdout.write(
          `${JSON.stringify({ product: result.product, cipherMode: result.cipherMode, seed: result.seed, guests: result.guests, keySlots: result.keySlots, checks, launch, snp }, null, 2)}\n`,
        );
      } else {
        process.stdout.write(`${renderDemo(result)}\n`);
        process.stdout.write(
          '\nThe guest owner’s flow (sevsim launch): chain → session → measured OVMF launch → secret\n',
        );
        if ('skipped' in launch) process.stdout.write(`    skipped: ${launch.skipped}\n`);
        else
          for (const s of launch.steps)
            process.stdout.write(
              `    ${s.skipped === true ? 'SKIP' : s.ok ? 'PASS' : 'FAIL'}  ${s.step}: ${s.detail}\n`,
            );
        process.stdout.write('\n');
        if ('skipped' in snp) process.stdout.write(`SEV-SNP: skipped: ${snp.skipped}\n`);
        else process.stdout.write(`${renderSnpDemo(snp)}\n`);
      }
      const snpFailed = 'checks' in snp && snp.checks.some((c) => !c.passed);
      if (result.checks.some((c) => !c.passed) || ('ok' in launch && !launch.ok) || snpFailed)
        process.exitCode = 1;
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
  addVerifyReportCommand(owner);
  addLaunchCommand(program);
  addKdsCommand(program);
  return program;
}
