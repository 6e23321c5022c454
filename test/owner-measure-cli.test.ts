// `owner measure` on a fresh commander Command: sev-snp-measure's interface and results for
// --mode sev|seves|snp|snp:ovmf-hash (published vectors), and clear refusals.
import { join, resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { addMeasureCommand } from '../src/cli/owner-measure.js';
import { InputError } from '../src/cli/cli-input.js';
import { LaunchDigestError } from '../src/owner/index.js';

const measureDir = resolve(import.meta.dirname, '../../shared/testdata/measure');
const AMD_SEV = join(measureDir, 'ovmf_AmdSev_suffix.bin');
const OVMF_X64 = join(measureDir, 'ovmf_OvmfX64_suffix.bin');
// sev-snp-measure's tests pass /dev/null as kernel and initrd: an empty file.
const EMPTY = '/dev/null';

interface Run {
  stdout: string;
  stderr: string;
}

async function measure(...args: string[]): Promise<Run> {
  const run: Run = { stdout: '', stderr: '' };
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    run.stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    run.stderr += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  const owner = new Command('owner');
  addMeasureCommand(owner);
  for (const cmd of [owner, ...owner.commands])
    cmd
      .exitOverride()
      .configureOutput({ writeOut: (s) => (run.stdout += s), writeErr: (s) => (run.stderr += s) });
  await owner.parseAsync(['measure', ...args], { from: 'user' });
  return run;
}

async function failure(...args: string[]): Promise<unknown> {
  try {
    await measure(...args);
  } catch (err) {
    return err;
  }
  throw new Error('expected the command to fail');
}

describe('owner measure', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('--mode sev with a kernel: the published SEV digest', async () => {
    const r = await measure(
      ...['--mode', 'sev', '--ovmf', AMD_SEV, '--kernel', EMPTY, '--initrd', EMPTY],
      ...['--append', 'console=ttyS0 loglevel=7'],
    );
    expect(r.stdout).toBe('82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff\n');
  });

  it('--mode seves (the calculator spelling) and sev-es agree, in hex or base64', async () => {
    const args = ['--ovmf', AMD_SEV, '--kernel', EMPTY, '--initrd', EMPTY, '--append', '', '--vcpus', '1'];
    const hex = '13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c';
    expect((await measure('--mode', 'seves', ...args, '--vcpu-type', 'EPYC-v4')).stdout).toBe(`${hex}\n`);
    expect((await measure('--mode', 'sev-es', ...args, '--vcpu-sig', '0x800f12')).stdout).toBe(`${hex}\n`);
    const fms = ['--vcpu-family', '23', '--vcpu-model', '1', '--vcpu-stepping', '2'];
    const b64 = await measure('--mode', 'sev-es', ...args, ...fms, '--output-format', 'base64');
    expect(b64.stdout).toBe(`${Buffer.from(hex, 'hex').toString('base64')}\n`);
  });

  it('--json tells what was measured', async () => {
    const r = await measure(
      '--mode',
      'sev-es',
      '--ovmf',
      AMD_SEV,
      '--vcpus',
      '2',
      '--vcpu-type',
      'EPYC-Milan',
      '--json',
    );
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({
      mode: 'sev-es',
      outputFormat: 'hex',
      ovmf: { path: AMD_SEV, size: 4096 },
      kernelHashes: null,
      vcpus: 2,
      vcpuType: 'EPYC-Milan',
      vcpuSignature: '0xa00f11',
      vmm: 'qemu',
      vmsaSevFeatures: '0x0',
    });
    expect(out.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(out.measured).toHaveLength(3);
  });

  it('notes that --guest-features does not reach SEV-ES VMSAs', async () => {
    const r = await measure(
      ...['--mode', 'sev-es', '--ovmf', AMD_SEV, '--vcpus', '1', '--vcpu-type', 'EPYC-v4'],
      ...['--guest-features', '0x21'],
    );
    expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    expect(r.stderr).toMatch(/SNP input/);
  });

  it('--mode snp: the published SNP digest (sev-snp-measure test_snp_default)', async () => {
    const r = await measure(
      ...['--mode', 'snp', '--ovmf', AMD_SEV, '--kernel', EMPTY, '--initrd', EMPTY],
      ...['--append', 'console=ttyS0 loglevel=7', '--vcpus', '1', '--vcpu-type', 'EPYC-v4'],
      ...['--guest-features', '0x21'],
    );
    expect(r.stdout).toBe(
      '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977\n',
    );
    expect(r.stderr).toBe('');
  });

  it('--mode snp:ovmf-hash, then --snp-ovmf-hash: the published two-step digest', async () => {
    const hash = (await measure('--mode', 'snp:ovmf-hash', '--ovmf', AMD_SEV)).stdout.trim();
    expect(hash).toBe(
      '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74',
    );
    const args = ['--ovmf', AMD_SEV, '--kernel', EMPTY, '--initrd', EMPTY, '--append', '', '--vcpus', '1'];
    const r = await measure(
      '--mode',
      'snp',
      ...args,
      '--vcpu-type',
      'EPYC-v4',
      '--guest-features',
      '0x21',
      '--snp-ovmf-hash',
      hash,
    );
    expect(r.stdout).toBe(
      '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198\n',
    );
  });

  it('--vmm-type gce needs no vCPU type and defaults the guest features to 0x1 (test_snp_gce_default)', async () => {
    const r = await measure(
      ...['--mode', 'snp', '--vmm-type', 'gce', '--ovmf', AMD_SEV, '--kernel', EMPTY, '--initrd', EMPTY],
      ...['--append', '', '--vcpus', '1'],
    );
    expect(r.stdout).toBe(
      '5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e\n',
    );
  });

  it('--mode snp --json lists what the host SNP_LAUNCH_UPDATEs', async () => {
    const r = await measure(
      ...['--mode', 'snp', '--ovmf', AMD_SEV, '--vcpus', '2', '--vcpu-type', 'EPYC-Milan'],
      ...['--vmm-type', 'ec2', '--guest-features', '0x21', '--json'],
    );
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({
      mode: 'snp',
      vcpus: 2,
      vcpuType: 'EPYC-Milan',
      vcpuSignature: null, // EC2's RDX is fixed
      vmm: 'ec2',
      vmsaSevFeatures: '0x21',
      snpOvmfHash:
        '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74',
    });
    expect(out.digest).toMatch(/^[0-9a-f]{96}$/);
    const updates = out.launchUpdates as { gpa: string; pageType: string; source: string }[];
    expect(updates[0]).toEqual({ gpa: '0xfffff000', length: '0x1000', pageType: 'NORMAL', source: 'ovmf' });
    expect(updates.map((u) => u.pageType)).toEqual([
      'NORMAL',
      'ZERO',
      'ZERO',
      'SECRETS',
      'ZERO',
      'ZERO',
      'ZERO',
      'CPUID',
      'VMSA',
      'VMSA',
    ]);
    expect(updates.at(-1)).toMatchObject({ gpa: '0xfffffffff000', source: 'vmsa' });
    expect(out.measured).toHaveLength(updates.length);
  });

  it('refuses a kernel with an OVMF that has no kernel-hashes area', async () => {
    const err = await failure('--mode', 'sev', '--ovmf', OVMF_X64, '--kernel', EMPTY, '--initrd', EMPTY);
    expect((err as LaunchDigestError).code).toBe('NO_KERNEL_HASHES_AREA');
    expect((err as Error).message).toMatch(/AmdSevX64/);
  });

  it.each([
    [['--mode', 'sev-es', '--ovmf', AMD_SEV, '--vcpu-type', 'EPYC-v4'], 'MISSING_VCPUS'],
    [['--mode', 'sev-es', '--ovmf', AMD_SEV, '--vcpus', '1'], 'MISSING_VCPU_TYPE'],
    [
      ['--mode', 'sev-es', '--ovmf', AMD_SEV, '--vcpus', '1', '--vcpu-type', 'EPYC', '--vmm-type', 'gce'],
      'UNSUPPORTED_VMM',
    ],
    [['--mode', 'sev', '--ovmf', AMD_SEV, '--initrd', EMPTY], 'INITRD_WITHOUT_KERNEL'],
    [['--mode', 'sev', '--ovmf', AMD_SEV, '--snp-ovmf-hash', 'ab'.repeat(48)], 'OVMF_HASH_SNP_ONLY'],
    [['--mode', 'snp', '--ovmf', AMD_SEV, '--vcpu-type', 'EPYC-v4'], 'MISSING_VCPUS'],
    [['--mode', 'snp', '--ovmf', AMD_SEV, '--vcpus', '1'], 'MISSING_VCPU_TYPE'],
    [
      ['--mode', 'snp', '--ovmf', OVMF_X64, '--vcpus', '1', '--vcpu-type', 'EPYC', '--kernel', EMPTY],
      'NO_KERNEL_HASHES_SECTION',
    ],
    [
      ['--mode', 'snp', '--ovmf', AMD_SEV, '--vcpus', '1', '--vcpu-type', 'EPYC', '--guest-features', '0x20'],
      'BAD_GUEST_FEATURES',
    ],
    [['--mode', 'sev-es', '--ovmf', AMD_SEV, '--vcpus', '1', '--vcpu-family', '25'], 'BAD_VCPU_SIGNATURE'],
    [
      ['--mode', 'sev-es', '--ovmf', AMD_SEV, '--vcpus', '1', '--vcpu-sig', '1', '--vcpu-type', 'EPYC'],
      'CONFLICTING_VCPU_TYPE',
    ],
  ])('%j → %s', async (args, code) => {
    const err = await failure(...args);
    expect(err).toBeInstanceOf(LaunchDigestError);
    expect((err as LaunchDigestError).code).toBe(code);
  });

  it.each([
    [['--ovmf', AMD_SEV], 'commander.missingMandatoryOptionValue'],
    [['--mode', 'sev'], 'commander.missingMandatoryOptionValue'],
    [['--mode', 'csv', '--ovmf', AMD_SEV], 'commander.invalidArgument'],
    [['--mode', 'sev-es', '--ovmf', AMD_SEV, '--vcpu-type', 'EPYC-Zen9'], 'commander.invalidArgument'],
    [['--mode', 'sev', '--ovmf', AMD_SEV, '--guest-features', '21'], 'commander.invalidArgument'],
    [['--mode', 'sev', '--ovmf', AMD_SEV, '--vcpus', 'four'], 'commander.invalidArgument'],
    [['--mode', 'sev', '--ovmf', AMD_SEV, '--vmm-type', 'xen'], 'commander.invalidArgument'],
    [['--mode', 'snp', '--ovmf', AMD_SEV, '--snp-ovmf-hash', 'ab'], 'commander.invalidArgument'],
    [['--mode', 'snp:svsm', '--ovmf', AMD_SEV], 'commander.invalidArgument'],
  ])('%j is a usage error (%s)', async (args, code) => {
    const err = await failure(...args);
    expect(err).toBeInstanceOf(CommanderError);
    expect((err as CommanderError).code).toBe(code);
  });

  it('--mode snp:ovmf-hash refuses launch options it would ignore', async () => {
    const err = await failure('--mode', 'snp:ovmf-hash', '--ovmf', AMD_SEV, '--vcpus', '2');
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/--vcpus is unused/);
  });

  it('a missing file names the option and the path', async () => {
    const err = await failure('--mode', 'sev', '--ovmf', '/nonexistent/OVMF.fd');
    expect((err as Error).message).toMatch(/cannot read --ovmf \/nonexistent\/OVMF.fd/);
  });

  it('has help with examples', async () => {
    const err = await failure('--help');
    expect((err as CommanderError).code).toBe('commander.helpDisplayed');
    const owner = new Command('owner');
    addMeasureCommand(owner);
    const help = owner.commands[0]?.helpInformation() ?? '';
    expect(help).toMatch(/--mode <mode>/);
    expect(help).toMatch(/--vcpu-type <type>/);
    expect(help).toMatch(/snp:ovmf-hash/);
    expect(help).toMatch(/--snp-ovmf-hash <hex>/);
    expect(help).toMatch(/--vmm-type <type>.*qemu, gce, ec2/);
    expect(help).toMatch(/SNP_LAUNCH_UPDATE/);
  });
});
