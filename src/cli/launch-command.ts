// `sevsim launch`: the guest owner's whole flow against a simulated platform.
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { VCPU_TYPE_NAMES, type VcpuTypeName } from '../abi/index.js';
import { PRODUCT_NAMES, productProfile } from '../soc/index.js';
import { InputError } from './cli-input.js';
import { runOwnerLaunch } from '../scenarios/owner-launch.js';
import { runSnpOwnerLaunch } from '../scenarios/snp-owner-launch.js';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError('a whole number from 1 to 64');
  return n;
}

export function addLaunchCommand(program: Command): void {
  program
    .command('launch')
    .description(
      'Run the guest owner’s whole flow on a simulated platform: export the platform chain, verify it ' +
        'against the AMD root, make a launch session for the PDH, launch OVMF the way QEMU does, check ' +
        'the measurement, inject a secret with LAUNCH_SECRET, let the guest read it, and show that the ' +
        'host, DRAM and DBG_DECRYPT (under NODBG) cannot. With --mode snp: launch OVMF under SEV-SNP, let ' +
        'the guest ask the PSP for a report with the owner’s nonce, fetch the VCEK from the simulated KDS ' +
        'and verify the report (signature, chain, TCB, measurement, nonce). Exits 1 if any step fails.',
    )
    .requiredOption('--ovmf <file>', 'the firmware image (e.g. ../shared/testdata/ovmf/OVMF.fd)')
    .addOption(new Option('--mode <mode>', 'guest type').choices(['sev', 'sev-es', 'snp']).default('sev'))
    .option('--vcpus <n>', 'vCPUs (SEV-ES: one VMSA each)', positiveInt, 1)
    .addOption(
      new Option('--vcpu-type <model>', 'QEMU -cpu model of the VMSAs')
        .choices([...VCPU_TYPE_NAMES])
        .default('EPYC-Milan'),
    )
    .addOption(
      new Option('--product <name>', 'CPU product profile').choices([...PRODUCT_NAMES]).default('milan'),
    )
    .option('--seed <seed>', 'make the platform reproducible', 'launch')
    .option(
      '--out <dir>',
      'write every artifact (SEV: pdh.cert, cek.cert, godh.cert, launch_blob.bin, tmp_tk.bin, launch_measure.bin, packaged_secret*.bin, …; SNP: report.bin, vcek.der, roots/<product>/{ark,ask}.pem for owner verify-report)',
    )
    .option('--json', 'print one JSON object with the steps')
    .action(
      (opts: {
        ovmf: string;
        mode: 'sev' | 'sev-es' | 'snp';
        vcpus: number;
        vcpuType: VcpuTypeName;
        product: string;
        seed: string;
        out?: string;
        json?: boolean;
      }) => {
        let ovmf: Buffer;
        try {
          ovmf = readFileSync(opts.ovmf);
        } catch (err) {
          throw new Error(
            `cannot read --ovmf ${opts.ovmf}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
          );
        }
        const common = {
          ovmf,
          vcpus: opts.vcpus,
          vcpuType: opts.vcpuType,
          product: opts.product,
          seed: opts.seed,
          ...(opts.out !== undefined ? { outDir: opts.out } : {}),
        };
        if (opts.mode === 'snp' && !productProfile(opts.product).sevSnp)
          throw new InputError(`--mode snp needs an SNP product (milan, genoa, turin), not ${opts.product}`);
        const result =
          opts.mode === 'snp' ? runSnpOwnerLaunch(common) : runOwnerLaunch({ ...common, mode: opts.mode });
        const r = { ok: result.ok, steps: result.steps, artifacts: result.artifacts };
        if (opts.json === true) {
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        } else {
          for (const s of r.steps)
            process.stdout.write(
              `${s.skipped === true ? 'SKIP' : s.ok ? 'PASS' : 'FAIL'}  ${s.step}\n      ${s.detail}\n`,
            );
          if (r.artifacts.length > 0)
            process.stdout.write(`artifacts in ${opts.out}: ${r.artifacts.join(', ')}\n`);
          process.stdout.write(r.ok ? 'The owner-verified launch succeeded.\n' : 'The launch FAILED.\n');
        }
        if (!r.ok) process.exitCode = 1;
      },
    );
}
