// The launch digest a guest owner should expect for a guest that a VMM starts from OVMF (GCTX.LD):
//   SEV, SEV-ES (sev-reference §5.1): SHA-256 over every plaintext LAUNCH_UPDATE_DATA and
//   LAUNCH_UPDATE_VMSA measured, in order —
//     SEV:    OVMF image || [padded kernel-hashes table]
//     SEV-ES: OVMF image || [padded kernel-hashes table] || VMSA(vCPU 0) || … || VMSA(vCPU n-1)
//   SEV-SNP (§7.5, §11 fact 6): the chained SHA-384 of one PAGE_INFO per 4 KiB page SNP_LAUNCH_UPDATE
//   measures — the steps abi/snp-launch-layout.ts lists (image, metadata sections, VMSAs at
//   0xFFFFFFFFF000) folded with abi/snp-launch-digest.ts, for the qemu, gce and ec2 VMMs.
// The inputs mirror sev-snp-measure's `--mode sev|seves|snp` (and its `--snp-ovmf-hash`), and its
// results are reproduced exactly (../shared/testdata/measure/vectors.json).
import { createHash, type Hash } from 'node:crypto';
import {
  FIRMWARE_END_GPA,
  type OvmfFooter,
  SEV_HASH_TABLE_PADDED_LENGTH,
  SNP_LAUNCH_DIGEST_SIZE,
  SNP_PAGE_SIZE,
  SevFeature,
  type SevKernelHashes,
  SnpLaunchLayoutError,
  type SnpLaunchLayoutErrorCode,
  type SnpLaunchStep,
  SnpPageType,
  VCPU_TYPES,
  VMM_RESET_PROFILES,
  VMM_TYPES,
  type VmmType,
  buildResetVmsa,
  cpuidSignature,
  encodeSevHashTable,
  extendSnpLaunchDigest,
  extendSnpLaunchDigestNormal,
  isVcpuTypeName,
  parseOvmfFooter,
  sevHashTablePage,
  snpInitialLaunchDigest,
  snpLaunchLayout,
  snpPageContents,
  snpPageTypeName,
} from '../abi/index.js';

/** Guest generations a launch digest can be asked for. */
export const LAUNCH_MODES = ['sev', 'sev-es', 'snp'] as const;
export type LaunchMode = (typeof LAUNCH_MODES)[number];
/** The modes this module computes (all of them; kept for callers that narrow a mode first). */
export const SUPPORTED_LAUNCH_MODES = ['sev', 'sev-es', 'snp'] as const;
export type SupportedLaunchMode = (typeof SUPPORTED_LAUNCH_MODES)[number];

/** Why a set of inputs cannot describe a launch QEMU/KVM would perform. */
export type LaunchDigestErrorCode =
  | 'UNSUPPORTED_MODE'
  | 'UNSUPPORTED_VMM'
  | 'OVMF_SIZE'
  | 'NO_KERNEL_HASHES_AREA'
  | 'NO_SEV_ES_RESET_BLOCK'
  | 'MISSING_VCPUS'
  | 'BAD_VCPUS'
  | 'MISSING_VCPU_TYPE'
  | 'UNKNOWN_VCPU_TYPE'
  | 'CONFLICTING_VCPU_TYPE'
  | 'BAD_VCPU_SIGNATURE'
  | 'INITRD_WITHOUT_KERNEL'
  | 'APPEND_WITHOUT_KERNEL'
  | 'BAD_COMMAND_LINE'
  | 'BAD_GUEST_FEATURES'
  | 'OVMF_HASH_SNP_ONLY'
  | 'BAD_OVMF_HASH'
  // SNP inputs no host would launch (abi/snp-launch-layout.ts), passed through with their code
  | SnpLaunchLayoutErrorCode;

/** Inconsistent or unsupported launch inputs; `code` says which rule, the message says how to fix it. */
export class LaunchDigestError extends Error {
  constructor(
    readonly code: LaunchDigestErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LaunchDigestError';
  }
}

/**
 * QEMU maps system firmware as pflash, whose size must be a non-zero multiple of its 4 KiB sector
 * (hw/i386/pc_sysfw.c pc_system_flash_map) — which also keeps LAUNCH_UPDATE_DATA's 16-byte rule.
 */
export const OVMF_SIZE_UNIT = 0x1000;
/** KVM_MAX_VCPUS on x86-64: an upper bound that keeps a mistyped count from hashing gigabytes. */
export const MAX_VCPUS = 4096;

function checkOvmfSize(size: number): void {
  if (size === 0 || size % OVMF_SIZE_UNIT !== 0)
    throw new LaunchDigestError(
      'OVMF_SIZE',
      `the firmware image is ${size} bytes; QEMU only maps a non-zero multiple of 4 KiB`,
    );
}

/** GPA of an image QEMU maps as flash: it ends at 4 GiB. */
const imageGpaOf = (size: number): bigint => FIRMWARE_END_GPA - BigInt(size);

/**
 * sev-snp-measure's "OVMF hash" (`--mode snp:ovmf-hash`, `calc_snp_ovmf_hash`): the SNP launch digest
 * after the image's NORMAL pages at 4 GiB − its size, from the zero digest. Passing it back as
 * `snpOvmfHash` gives the same digest as the image itself.
 */
export function computeSnpOvmfHash(image: Uint8Array): Buffer {
  checkOvmfSize(image.length);
  return extendSnpLaunchDigestNormal(snpInitialLaunchDigest(), imageGpaOf(image.length), image);
}

/**
 * The OVMF part of a launch digest, computed once: the parsed footer, the SHA-256 state after the image
 * and (on first use) SNP's digest after it. SEV's digest is a single SHA-256 over the concatenation, so
 * — unlike SNP's chained digest, which sev-snp-measure can seed from a hex "OVMF hash" — it cannot be
 * resumed from a digest value; this object keeps the running state instead and continues it for each
 * launch asked of it. The image is not copied: it must not change while this object is in use.
 */
export class PrecomputedOvmf {
  readonly footer: OvmfFooter;
  readonly size: number;
  /** SHA-256 of the image alone (what `sha256sum` prints; informative, not a resumable state). */
  readonly sha256: Buffer;
  readonly #state: Hash;
  readonly #image: Uint8Array;
  #snpOvmfHash: Buffer | undefined;

  constructor(image: Uint8Array) {
    checkOvmfSize(image.length);
    this.footer = parseOvmfFooter(image);
    this.size = image.length;
    this.#image = image;
    this.#state = createHash('sha256').update(image);
    this.sha256 = this.#state.copy().digest();
  }

  /** A SHA-256 context that has absorbed the image, as the PSP's is after LAUNCH_UPDATE_DATA of it. */
  resume(): Hash {
    return this.#state.copy();
  }

  /** SNP: GCTX.LD after the image's pages ({@link computeSnpOvmfHash}), hashed on first use. */
  snpOvmfHash(): Buffer {
    this.#snpOvmfHash ??= computeSnpOvmfHash(this.#image);
    return Buffer.from(this.#snpOvmfHash);
  }
}

/** Parses and hashes an OVMF image once, for any number of launch digests. */
export function precomputeOvmf(image: Uint8Array): PrecomputedOvmf {
  return new PrecomputedOvmf(image);
}

/** What a guest owner knows about a launch. */
export interface LaunchDigestInput {
  readonly mode: LaunchMode;
  /** The firmware image (the whole `-bios`/pflash file) or its precomputed part. */
  readonly ovmf: Uint8Array | PrecomputedOvmf;
  /** `-kernel`: when present, QEMU measures the kernel-hashes table (kernel-hashes=on). */
  readonly kernel?: Uint8Array;
  /** `-initrd` (needs a kernel); absent means an empty initrd is hashed. */
  readonly initrd?: Uint8Array;
  /** `-append` (needs a kernel); absent or empty means a lone NUL is hashed. */
  readonly append?: string;
  /** vCPU count (SEV-ES, SNP: one VMSA each); ignored for SEV. */
  readonly vcpus?: number;
  /**
   * QEMU `-cpu` model ({@link VCPU_TYPES}); SEV-ES and SNP under qemu need this or `vcpuSignature`. The
   * gce and ec2 VMMs put a fixed value in RDX, so there it is checked but does not change the digest.
   */
  readonly vcpuType?: string;
  /** CPUID(1).EAX to put in RDX, instead of a named model. */
  readonly vcpuSignature?: number;
  /** Which VMM builds the VMSAs (default qemu); gce and ec2 are modelled for SNP only. */
  readonly vmm?: VmmType;
  /**
   * SEV_FEATURES as sev-snp-measure's `--guest-features`: SNP VMSAs carry it (default 0x1, SNPActive,
   * which every SNP guest has). SEV-ES VMSAs are measured with SEV_FEATURES 0 whatever this says, as
   * sev-snp-measure does (guest.py passes 0x0 in SEV-ES mode) and as KVM's legacy SEV-ES launch sets it.
   */
  readonly guestFeatures?: bigint;
  /**
   * sev-snp-measure's `--snp-ovmf-hash` (SNP only): the 48-byte digest after the image's pages
   * ({@link computeSnpOvmfHash}), used instead of hashing the image. The image is still read for its
   * footer (metadata sections, reset address).
   */
  readonly snpOvmfHash?: Uint8Array;
}

/** One item the PSP measured, in order. */
export interface MeasuredItem {
  readonly what: string;
  readonly bytes: number;
  /** SNP: the SNP_LAUNCH_UPDATE page type of the range. */
  readonly pageType?: string;
  /** SNP: the first page's RMP.GPA (below 2^52, so a number holds it exactly). */
  readonly gpa?: number;
}

/** The expected digest and how it was composed. */
export interface LaunchDigestResult {
  readonly mode: SupportedLaunchMode;
  /**
   * GCTX.LD: SHA-256 (SEV, SEV-ES: what LAUNCH_MEASURE's HMAC covers and ATTESTATION reports) or
   * SHA-384 (SNP: the attestation report's MEASUREMENT).
   */
  readonly digest: Buffer;
  readonly measured: readonly MeasuredItem[];
  readonly ovmf: { readonly size: number; readonly sha256: Buffer };
  readonly kernelHashes: SevKernelHashes | undefined;
  /** The padded table as measured (176 bytes), when a kernel was given. */
  readonly hashTable: Buffer | undefined;
  /** SEV-ES and SNP only. */
  readonly vcpus: number | undefined;
  /** The signature RDX carries (undefined for SEV, and for the gce and ec2 VMMs, whose RDX is fixed). */
  readonly vcpuSignature: number | undefined;
  readonly vmsaSevFeatures: bigint | undefined;
  /** The BSP's VMSA and (with more than one vCPU) the one every AP shares. */
  readonly bspVmsa: Buffer | undefined;
  readonly apVmsa: Buffer | undefined;
  /** SNP: the digest after the image (given as `snpOvmfHash`, or computed) — reusable as that input. */
  readonly snpOvmfHash: Buffer | undefined;
  /** SNP: every SNP_LAUNCH_UPDATE the host performs, in order (abi/snp-launch-layout.ts). */
  readonly snpLaunchSteps: readonly SnpLaunchStep[] | undefined;
}

/** The bytes QEMU hashes for the command line: UTF-8 plus the terminating NUL ("\0" alone if none). */
export function measuredCommandLine(append: string | undefined): Buffer {
  if (append?.includes('\0'))
    throw new LaunchDigestError('BAD_COMMAND_LINE', 'the kernel command line contains a NUL character');
  return Buffer.concat([Buffer.from(append ?? '', 'utf8'), Buffer.alloc(1)]);
}

const sha256 = (data: Uint8Array): Buffer => createHash('sha256').update(data).digest();

/** The three digests of the kernel-hashes table for a direct boot (QEMU sev_add_kernel_loader_hashes). */
export function measuredKernelHashes(
  kernel: Uint8Array,
  initrd?: Uint8Array,
  append?: string,
): SevKernelHashes {
  return {
    cmdline: sha256(measuredCommandLine(append)),
    initrd: sha256(initrd ?? new Uint8Array(0)),
    kernel: sha256(kernel),
  };
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** Narrows a mode to one this module computes; anything else throws UNSUPPORTED_MODE. */
export function checkLaunchMode(mode: string): SupportedLaunchMode {
  if (mode === 'sev' || mode === 'sev-es' || mode === 'snp') return mode;
  throw new LaunchDigestError('UNSUPPORTED_MODE', `unknown mode "${mode}" (expected sev, sev-es or snp)`);
}

function checkVmm(vmm: string, mode: SupportedLaunchMode): VmmType {
  const known = VMM_TYPES.find((v) => v === vmm);
  if (known === undefined)
    throw new LaunchDigestError('UNSUPPORTED_VMM', `unknown VMM "${vmm}" (expected ${VMM_TYPES.join(', ')})`);
  // sev-snp-measure builds GCE/EC2 VMSAs for SEV-ES too, but those are SNP VMMs: their SEV-ES launches
  // are not modelled, so a digest for one would be a guess.
  if (mode === 'sev-es' && known !== 'qemu')
    throw new LaunchDigestError(
      'UNSUPPORTED_VMM',
      `SEV-ES digests are computed for the qemu VMM only; the ${known} VMM is modelled for SNP ` +
        'launches (--mode snp)',
    );
  return known;
}

function checkVcpus(vcpus: number | undefined): number {
  if (vcpus === undefined)
    throw new LaunchDigestError(
      'MISSING_VCPUS',
      'SEV-ES and SNP measure one VMSA per vCPU: give the vCPU count',
    );
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS)
    throw new LaunchDigestError('BAD_VCPUS', `vCPU count ${vcpus} is not an integer from 1 to ${MAX_VCPUS}`);
  return vcpus;
}

/** The CPUID signature for RDX; `required` is false for VMMs whose RDX is fixed (still checked if given). */
function checkSignature(input: LaunchDigestInput, required: boolean): number | undefined {
  const { vcpuType, vcpuSignature } = input;
  if (vcpuType !== undefined && vcpuSignature !== undefined)
    throw new LaunchDigestError('CONFLICTING_VCPU_TYPE', 'give a vCPU type or a vCPU signature, not both');
  if (vcpuType !== undefined) {
    if (!isVcpuTypeName(vcpuType))
      throw new LaunchDigestError(
        'UNKNOWN_VCPU_TYPE',
        `unknown vCPU type "${vcpuType}" (known: ${Object.keys(VCPU_TYPES).join(', ')})`,
      );
    return cpuidSignature(VCPU_TYPES[vcpuType]);
  }
  if (vcpuSignature === undefined) {
    if (!required) return undefined;
    throw new LaunchDigestError(
      'MISSING_VCPU_TYPE',
      "the VMSAs carry the vCPU's CPUID signature in RDX: give the vCPU type (e.g. EPYC-v4)",
    );
  }
  if (!Number.isInteger(vcpuSignature) || vcpuSignature < 0 || vcpuSignature > 0xffff_ffff)
    throw new LaunchDigestError('BAD_VCPU_SIGNATURE', `vCPU signature ${vcpuSignature} is not a u32`);
  return vcpuSignature;
}

/** QEMU's checks before it writes the table (target/i386/sev.c sev_add_kernel_loader_hashes). */
function checkKernelHashesArea(footer: OvmfFooter): void {
  const area = footer.sevHashTableArea;
  if (area === undefined)
    throw new LaunchDigestError(
      'NO_KERNEL_HASHES_AREA',
      'a kernel was given, but this OVMF has no kernel-hashes table entry in its footer, so nothing ' +
        'would measure the kernel (QEMU: "kernel specified but guest firmware has no hashes table GUID"); ' +
        'use a firmware built for measured direct boot (OvmfPkg/AmdSev/AmdSevX64.dsc)',
    );
  if (area.base === 0 || area.size < SEV_HASH_TABLE_PADDED_LENGTH)
    throw new LaunchDigestError(
      'NO_KERNEL_HASHES_AREA',
      `a kernel was given, but this OVMF reserves no usable kernel-hashes area (base ${hex(area.base)}, ` +
        `size ${hex(area.size)}; ${SEV_HASH_TABLE_PADDED_LENGTH} bytes needed) and would not verify a kernel ` +
        '(QEMU: "guest firmware hashes table area is invalid"); use a firmware built for measured direct ' +
        'boot (OvmfPkg/AmdSev/AmdSevX64.dsc)',
    );
}

/** QEMU refuses an SEV-ES launch without the APs' start address (sev_es_save_reset_vector). */
function checkResetBlock(footer: OvmfFooter): number {
  const eip = footer.sevEsResetEip;
  if (eip === undefined || eip === 0)
    throw new LaunchDigestError(
      'NO_SEV_ES_RESET_BLOCK',
      eip === undefined
        ? "SEV-ES needs the SEV-ES reset block in the OVMF footer (the APs' start address); this image has none"
        : 'the OVMF SEV-ES reset block gives address 0 (QEMU: "SEV-ES reset address is zero")',
    );
  return eip;
}

/** Checks shared by every mode: the kernel inputs and the guest features' width. */
function checkCommonInputs(input: LaunchDigestInput): void {
  if (input.kernel === undefined && input.initrd !== undefined)
    throw new LaunchDigestError('INITRD_WITHOUT_KERNEL', 'an initrd is only measured with a kernel');
  if (input.kernel === undefined && input.append !== undefined)
    throw new LaunchDigestError('APPEND_WITHOUT_KERNEL', 'a command line is only measured with a kernel');
  const features = input.guestFeatures;
  if (features !== undefined && (features < 0n || features >= 1n << 64n))
    throw new LaunchDigestError('BAD_GUEST_FEATURES', `guest features ${features} are not a u64`);
}

const kernelHashesOf = (input: LaunchDigestInput): SevKernelHashes | undefined =>
  input.kernel === undefined ? undefined : measuredKernelHashes(input.kernel, input.initrd, input.append);

/**
 * The launch digest the VMM and the PSP would produce for these inputs. Inputs that describe no launch
 * the VMM would perform throw {@link LaunchDigestError}; a corrupted OVMF footer throws the parser's
 * AbiDecodeError (field and offset).
 */
export function computeLaunchDigest(input: LaunchDigestInput): LaunchDigestResult {
  const mode = checkLaunchMode(input.mode);
  if (mode === 'snp') return computeSnpLaunchDigest(input);
  if (input.snpOvmfHash !== undefined)
    throw new LaunchDigestError(
      'OVMF_HASH_SNP_ONLY',
      'a precomputed OVMF hash only works with SNP, whose digest is chained; SEV and SEV-ES hash the ' +
        'image itself (precompute it with precomputeOvmf instead)',
    );
  const es = mode === 'sev-es';
  const vmm = checkVmm(input.vmm ?? 'qemu', mode);
  checkCommonInputs(input);
  // Everything cheap is checked before a large image is hashed.
  const vcpus = es ? checkVcpus(input.vcpus) : undefined;
  const vcpuSignature = es ? checkSignature(input, true) : undefined;
  const kernelHashes = kernelHashesOf(input);

  const ovmf = input.ovmf instanceof PrecomputedOvmf ? input.ovmf : new PrecomputedOvmf(input.ovmf);
  if (kernelHashes !== undefined) checkKernelHashesArea(ovmf.footer);
  const apResetEip = es ? checkResetBlock(ovmf.footer) : undefined;

  const hash = ovmf.resume();
  const measured: MeasuredItem[] = [{ what: 'OVMF image', bytes: ovmf.size }];
  let hashTable: Buffer | undefined;
  if (kernelHashes !== undefined) {
    hashTable = encodeSevHashTable(kernelHashes);
    hash.update(hashTable);
    measured.push({ what: 'kernel-hashes table', bytes: hashTable.length });
  }
  let bspVmsa: Buffer | undefined;
  let apVmsa: Buffer | undefined;
  if (vcpus !== undefined && vcpuSignature !== undefined) {
    const common = { vcpuSignature, sevFeatures: 0n, vmm, apResetEip };
    bspVmsa = buildResetVmsa({ ...common, vcpuIndex: 0 });
    hash.update(bspVmsa);
    measured.push({ what: 'VMSA of vCPU 0', bytes: bspVmsa.length });
    if (vcpus > 1) {
      // Every AP starts from the same state: the VMSA holds no APIC ID.
      apVmsa = buildResetVmsa({ ...common, vcpuIndex: 1 });
      for (let i = 1; i < vcpus; i++) {
        hash.update(apVmsa);
        measured.push({ what: `VMSA of vCPU ${i}`, bytes: apVmsa.length });
      }
    }
  }
  return {
    mode,
    digest: hash.digest(),
    measured,
    ovmf: { size: ovmf.size, sha256: ovmf.sha256 },
    kernelHashes,
    hashTable,
    vcpus,
    vcpuSignature,
    vmsaSevFeatures: es ? 0n : undefined,
    bspVmsa,
    apVmsa,
    snpOvmfHash: undefined,
    snpLaunchSteps: undefined,
  };
}

/** The layout's refusals keep their code, as LaunchDigestErrors like every other refusal here. */
function layoutOrThrow(run: () => SnpLaunchStep[]): SnpLaunchStep[] {
  try {
    return run();
  } catch (err) {
    if (err instanceof SnpLaunchLayoutError) throw new LaunchDigestError(err.code, err.message);
    throw err;
  }
}

function describeStep(step: SnpLaunchStep): string {
  switch (step.source) {
    case 'ovmf':
      return 'OVMF image';
    case 'kernel-hashes':
      return 'kernel-hashes table (SNP_KERNEL_HASHES section)';
    case 'vmsa':
      return `VMSA of vCPU ${step.vcpuIndex}`;
    default:
      return `${step.section} section`;
  }
}

/** SNP (sev-reference §7.5): the chained SHA-384 over the steps a host performs. */
function computeSnpLaunchDigest(input: LaunchDigestInput): LaunchDigestResult {
  const vmm = checkVmm(input.vmm ?? 'qemu', 'snp');
  checkCommonInputs(input);
  const features = input.guestFeatures ?? SevFeature.SNP_ACTIVE;
  // KVM sets SNPActive in every SNP guest's VMSA, and VMRUN refuses an SNP guest whose VMSA lacks it.
  if ((features & SevFeature.SNP_ACTIVE) === 0n)
    throw new LaunchDigestError(
      'BAD_GUEST_FEATURES',
      `guest features ${hex(features)} lack bit 0 (SNPActive), which every SNP guest's VMSA has; ` +
        'e.g. 0x1 or 0x21',
    );
  const vcpus = checkVcpus(input.vcpus);
  const vcpuSignature = checkSignature(input, VMM_RESET_PROFILES[vmm].usesVcpuSignature);
  const seed = input.snpOvmfHash;
  if (seed !== undefined && seed.length !== SNP_LAUNCH_DIGEST_SIZE)
    throw new LaunchDigestError(
      'BAD_OVMF_HASH',
      `an SNP OVMF hash is a ${SNP_LAUNCH_DIGEST_SIZE}-byte SHA-384 (96 hex digits), ` +
        `got ${seed.length} bytes`,
    );
  const kernelHashes = kernelHashesOf(input);

  const ovmf = input.ovmf instanceof PrecomputedOvmf ? input.ovmf : new PrecomputedOvmf(input.ovmf);
  const steps = layoutOrThrow(() =>
    snpLaunchLayout({
      footer: ovmf.footer,
      imageSize: ovmf.size,
      imageGpa: imageGpaOf(ovmf.size),
      vmm,
      kernelHashes: kernelHashes !== undefined,
      vcpus,
    }),
  );
  // The layout has refused an image without a usable reset address.
  const apResetEip = ovmf.footer.sevEsResetEip;
  const common = { vcpuSignature, sevFeatures: features, vmm, apResetEip };
  const bspVmsa = buildResetVmsa({ ...common, vcpuIndex: 0 });
  // Every AP starts from the same state: the VMSA holds no APIC ID.
  const apVmsa = vcpus > 1 ? buildResetVmsa({ ...common, vcpuIndex: 1 }) : undefined;
  const hashTable = kernelHashes === undefined ? undefined : encodeSevHashTable(kernelHashes);

  // CONTENTS for each kind of page, computed once however many pages share them.
  const zeroContents = snpPageContents(SnpPageType.ZERO);
  const zeroPageHash = snpPageContents(SnpPageType.NORMAL, Buffer.alloc(SNP_PAGE_SIZE));
  const vmsaContents = [bspVmsa, apVmsa].map((v) => v && snpPageContents(SnpPageType.VMSA, v));

  const [first, ...rest] = steps;
  if (first?.source !== 'ovmf') throw new Error('internal: the SNP layout does not start with the image');
  const ovmfHash = seed === undefined ? ovmf.snpOvmfHash() : Buffer.from(seed);
  let ld: Buffer = ovmfHash;
  const measured: MeasuredItem[] = [];
  const record = (step: SnpLaunchStep, what: string): void => {
    measured.push({ what, bytes: step.length, pageType: snpPageTypeName(step.type), gpa: Number(step.gpa) });
  };
  record(first, seed === undefined ? describeStep(first) : 'OVMF image (its SNP hash given)');
  for (const step of rest) {
    for (let at = 0; at < step.length; at += SNP_PAGE_SIZE) {
      let contents: Buffer;
      switch (step.source) {
        case 'kernel-hashes':
          contents =
            at === 0 && hashTable !== undefined
              ? snpPageContents(SnpPageType.NORMAL, sevHashTablePage(hashTable, step.tableOffset))
              : zeroPageHash;
          break;
        case 'vmsa': {
          const v = vmsaContents[step.vcpuIndex === 0 ? 0 : 1];
          if (v === undefined) throw new Error(`internal: no VMSA for vCPU ${step.vcpuIndex}`);
          contents = v;
          break;
        }
        case 'ovmf':
          throw new Error('internal: the SNP layout maps the image twice');
        default:
          contents = zeroContents;
      }
      ld = extendSnpLaunchDigest(ld, { type: step.type, contents, gpa: step.gpa + BigInt(at) });
    }
    record(step, describeStep(step));
  }
  return {
    mode: 'snp',
    digest: ld,
    measured,
    ovmf: { size: ovmf.size, sha256: ovmf.sha256 },
    kernelHashes,
    hashTable,
    vcpus,
    vcpuSignature: VMM_RESET_PROFILES[vmm].usesVcpuSignature ? vcpuSignature : undefined,
    vmsaSevFeatures: features,
    bspVmsa,
    apVmsa,
    snpOvmfHash: ovmfHash,
    snpLaunchSteps: steps,
  };
}
