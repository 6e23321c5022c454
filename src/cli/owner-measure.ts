// `sevsim owner measure`: the launch digest a guest owner should expect, with the options and output of
// sev-snp-measure's `--mode sev|seves|snp|snp:ovmf-hash` (virtee/sev-snp-measure cli.py), so the two
// can be swapped.
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  SNP_LAUNCH_DIGEST_SIZE,
  VCPU_TYPE_NAMES,
  VMM_TYPES,
  type VmmType,
  cpuidSignature,
  snpPageTypeName,
} from '../abi/index.js';
import {
  LaunchDigestError,
  checkLaunchMode,
  computeLaunchDigest,
  computeSnpOvmfHash,
} from '../owner/index.js';
import { InputError, readInput } from './cli-input.js';

interface MeasureOptions {
  mode: string;
  ovmf: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  vcpus?: number;
  vcpuType?: string;
  vcpuSig?: number;
  vcpuFamily?: number;
  vcpuModel?: number;
  vcpuStepping?: number;
  vmmType: VmmType;
  guestFeatures?: bigint;
  snpOvmfHash?: Buffer;
  outputFormat: 'hex' | 'base64';
  json?: boolean;
}

function parseCount(v: string): number {
  if (!/^[0-9]{1,6}$/.test(v)) throw new InvalidArgumentError('expected a whole number');
  return Number(v);
}

/** sev-snp-measure reads signatures with Python's int(x, 0): 0x… hex, or decimal. */
function parseU32(v: string): number {
  const n = /^0x[0-9a-f]{1,8}$/i.test(v)
    ? Number.parseInt(v.slice(2), 16)
    : /^[0-9]{1,10}$/.test(v)
      ? Number(v)
      : NaN;
  if (!Number.isInteger(n) || n > 0xffff_ffff)
    throw new InvalidArgumentError('expected a u32, e.g. 0x00a00f11');
  return n;
}

/**
 * Only the 0x-prefixed form: sev-snp-measure would read a bare "21" as decimal, a reader of "HEX" as
 * 0x21, and the two give different digests.
 */
function parseFeatures(v: string): bigint {
  if (!/^0x[0-9a-f]{1,16}$/i.test(v)) throw new InvalidArgumentError('expected 0x-prefixed hex, e.g. 0x21');
  return BigInt(v);
}

/** The 48-byte SHA-384 `--mode snp:ovmf-hash` prints (hex, as sev-snp-measure takes it). */
function parseOvmfHash(v: string): Buffer {
  const hexDigits = SNP_LAUNCH_DIGEST_SIZE * 2;
  if (!new RegExp(`^[0-9a-f]{${hexDigits}}$`, 'i').test(v))
    throw new InvalidArgumentError(`expected ${hexDigits} hex digits (the output of --mode snp:ovmf-hash)`);
  return Buffer.from(v, 'hex');
}

function parseVmm(v: string): VmmType {
  const vmm = VMM_TYPES.find((t) => t === v.toLowerCase());
  if (vmm === undefined) throw new InvalidArgumentError(`expected one of ${VMM_TYPES.join(', ')}`);
  return vmm;
}

/** --vcpu-family/--vcpu-model/--vcpu-stepping go together and make a signature, as in the calculator. */
function signatureFromFms(o: MeasureOptions): number | undefined {
  const parts = [o.vcpuFamily, o.vcpuModel, o.vcpuStepping];
  if (parts.every((p) => p === undefined)) return undefined;
  const [family, model, stepping] = parts;
  if (family === undefined || model === undefined || stepping === undefined)
    throw new LaunchDigestError(
      'BAD_VCPU_SIGNATURE',
      '--vcpu-family, --vcpu-model and --vcpu-stepping must be given together',
    );
  try {
    return cpuidSignature({ family, model, stepping });
  } catch (err) {
    throw new LaunchDigestError('BAD_VCPU_SIGNATURE', err instanceof Error ? err.message : String(err));
  }
}

/** sev-snp-measure's `--mode snp:ovmf-hash`: only the image's part of the SNP digest. */
function printOvmfHash(o: MeasureOptions, cmd: Command): void {
  const launchOnly = [
    'kernel',
    'initrd',
    'append',
    'vcpus',
    'vcpuType',
    'vcpuSig',
    'guestFeatures',
    'snpOvmfHash',
  ];
  const stray = launchOnly.find((k) => cmd.getOptionValueSource(k) === 'cli');
  if (stray !== undefined) {
    const flag = `--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new InputError(`--mode snp:ovmf-hash hashes the firmware image alone; ${flag} is unused`);
  }
  const hash = computeSnpOvmfHash(readInput(o.ovmf, '--ovmf')).toString(o.outputFormat);
  if (o.json !== true) {
    process.stdout.write(`${hash}\n`);
    return;
  }
  const json = {
    mode: 'snp:ovmf-hash',
    snpOvmfHash: hash,
    outputFormat: o.outputFormat,
    ovmf: { path: o.ovmf },
  };
  process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
}

function measure(o: MeasureOptions, cmd: Command): void {
  if (o.mode === 'snp:ovmf-hash') {
    printOvmfHash(o, cmd);
    return;
  }
  // sev-snp-measure spells SEV-ES "seves"; both are accepted.
  const mode = checkLaunchMode(o.mode === 'seves' ? 'sev-es' : o.mode);
  if (o.snpOvmfHash !== undefined && mode !== 'snp')
    throw new LaunchDigestError('OVMF_HASH_SNP_ONLY', '--snp-ovmf-hash only works with --mode snp');
  const fmsSignature = signatureFromFms(o);
  if (fmsSignature !== undefined && o.vcpuSig !== undefined)
    throw new LaunchDigestError(
      'CONFLICTING_VCPU_TYPE',
      'give --vcpu-sig or --vcpu-family/model/stepping, not both',
    );
  const vcpuSignature = fmsSignature ?? o.vcpuSig;
  if (mode !== 'snp' && o.guestFeatures !== undefined && cmd.getOptionValueSource('guestFeatures') === 'cli')
    process.stderr.write(
      mode === 'sev'
        ? 'note: --guest-features is an SNP input; plain SEV measures no VMSA\n'
        : 'note: --guest-features is an SNP input; SEV-ES VMSAs are measured with SEV_FEATURES 0, as ' +
            'sev-snp-measure does\n',
    );
  const result = computeLaunchDigest({
    mode,
    ovmf: readInput(o.ovmf, '--ovmf'),
    kernel: o.kernel === undefined ? undefined : readInput(o.kernel, '--kernel'),
    initrd: o.initrd === undefined ? undefined : readInput(o.initrd, '--initrd'),
    append: o.append,
    vcpus: o.vcpus,
    vcpuType: o.vcpuType,
    vcpuSignature,
    vmm: o.vmmType,
    guestFeatures: o.guestFeatures,
    snpOvmfHash: o.snpOvmfHash,
  });
  const digest = result.digest.toString(o.outputFormat);
  if (o.json !== true) {
    process.stdout.write(`${digest}\n`);
    return;
  }
  const h = (n: number | bigint | undefined): string | null =>
    n === undefined ? null : `0x${n.toString(16)}`;
  const json = {
    mode: result.mode,
    digest,
    outputFormat: o.outputFormat,
    ovmf: { path: o.ovmf, size: result.ovmf.size, sha256: result.ovmf.sha256.toString('hex') },
    kernelHashes:
      result.kernelHashes === undefined
        ? null
        : {
            cmdline: result.kernelHashes.cmdline.toString('hex'),
            initrd: result.kernelHashes.initrd.toString('hex'),
            kernel: result.kernelHashes.kernel.toString('hex'),
          },
    vcpus: result.vcpus ?? null,
    vcpuType: mode === 'sev' ? null : (o.vcpuType ?? null),
    vcpuSignature: h(result.vcpuSignature),
    vmm: mode === 'sev' ? null : o.vmmType,
    vmsaSevFeatures: h(result.vmsaSevFeatures),
    measured: result.measured,
    ...(mode === 'snp'
      ? {
          snpOvmfHash: result.snpOvmfHash?.toString('hex') ?? null,
          // What the host SNP_LAUNCH_UPDATEs, in order (one KVM_SEV_SNP_LAUNCH_UPDATE per range).
          launchUpdates: (result.snpLaunchSteps ?? []).map((s) => ({
            gpa: h(s.gpa),
            length: h(s.length),
            pageType: snpPageTypeName(s.type) ?? null,
            source: s.source,
          })),
        }
      : {}),
  };
  process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
}

/**
 * Adds `measure` to the `owner` command. Inconsistent inputs (a kernel with an OVMF that has no
 * kernel-hashes area or SNP_KERNEL_HASHES section, SEV-ES or SNP without a vCPU count or type, …) throw
 * LaunchDigestError; a corrupted OVMF footer throws AbiDecodeError — both with a message that says what
 * to change.
 */
export function addMeasureCommand(owner: Command): void {
  owner
    .command('measure')
    .description(
      'Compute the launch digest (GCTX.LD) a guest started from this OVMF will have. sev: SHA-256 over ' +
        'the firmware image and the kernel-hashes table (with --kernel); sev-es: also one VMSA per vCPU; ' +
        'snp: the chained SHA-384 over every page SNP_LAUNCH_UPDATE measures (image, SEV metadata ' +
        'sections, VMSAs), for QEMU/KVM, GCE or EC2. Same inputs and results as sev-snp-measure ' +
        '--mode sev|seves|snp|snp:ovmf-hash.',
    )
    .addOption(
      new Option(
        '--mode <mode>',
        'guest mode (snp:ovmf-hash prints the image part of the SNP digest, for --snp-ovmf-hash)',
      )
        .choices(['sev', 'sev-es', 'seves', 'snp', 'snp:ovmf-hash'])
        .makeOptionMandatory(),
    )
    .requiredOption('--ovmf <path>', 'OVMF firmware image (the whole -bios / pflash file)')
    .option('--kernel <path>', 'kernel for measured direct boot (QEMU -kernel, kernel-hashes=on)')
    .option('--initrd <path>', 'initrd (with --kernel)')
    .option('--append <cmdline>', 'kernel command line (with --kernel)')
    .option('--vcpus <n>', 'number of vCPUs (sev-es, snp)', parseCount)
    .addOption(
      new Option('--vcpu-type <type>', 'QEMU vCPU model (sev-es, snp; gce and ec2 do not need it)').choices([
        ...VCPU_TYPE_NAMES,
      ]),
    )
    .option('--vcpu-sig <value>', 'vCPU CPUID(1).EAX signature, instead of --vcpu-type', parseU32)
    .option('--vcpu-family <n>', 'vCPU family (with --vcpu-model and --vcpu-stepping)', parseCount)
    .option('--vcpu-model <n>', 'vCPU model', parseCount)
    .option('--vcpu-stepping <n>', 'vCPU stepping', parseCount)
    .option(
      '--vmm-type <type>',
      `VMM that launches the guest (${VMM_TYPES.join(', ')}; gce and ec2 with --mode snp only)`,
      parseVmm,
      'qemu',
    )
    .option(
      '--guest-features <hex>',
      "SEV_FEATURES of SNP's VMSAs, 0x-prefixed (snp default 0x1; ignored by sev, sev-es)",
      parseFeatures,
    )
    .option(
      '--snp-ovmf-hash <hex>',
      'the image part of the SNP digest, from --mode snp:ovmf-hash (snp only; --ovmf is still read ' +
        'for its metadata)',
      parseOvmfHash,
    )
    .addOption(
      new Option('--output-format <format>', 'digest encoding').choices(['hex', 'base64']).default('hex'),
    )
    .option('--json', 'print one JSON object: digest, inputs, kernel hashes and what was measured')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  sevsim owner measure --mode sev --ovmf OVMF.fd\n' +
        '  sevsim owner measure --mode sev-es --ovmf OVMF.fd --vcpus 4 --vcpu-type EPYC-Milan\n' +
        '  sevsim owner measure --mode snp --ovmf OVMF.fd --vcpus 4 --vcpu-type EPYC-Milan \\\n' +
        '      --guest-features 0x21\n' +
        '  sevsim owner measure --mode snp --vmm-type gce --ovmf OVMF.fd --vcpus 2\n' +
        '  sevsim owner measure --mode snp:ovmf-hash --ovmf OVMF.fd      # then --snp-ovmf-hash <hex>\n' +
        '  sevsim owner measure --mode sev --ovmf OVMF-AmdSev.fd --kernel vmlinuz --initrd initrd.img \\\n' +
        "      --append 'console=ttyS0' --output-format base64",
    )
    .action((opts: MeasureOptions, cmd: Command) => measure(opts, cmd));
}
