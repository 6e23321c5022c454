// The launch digest a guest owner should expect for an SEV or SEV-ES guest that QEMU/KVM start from
// OVMF (GCTX.LD, sev-reference §5.1): SHA-256 over every plaintext LAUNCH_UPDATE_DATA and
// LAUNCH_UPDATE_VMSA measured, in order —
//   SEV:    OVMF image || [padded kernel-hashes table]
//   SEV-ES: OVMF image || [padded kernel-hashes table] || VMSA(vCPU 0) || … || VMSA(vCPU n-1)
// The inputs mirror sev-snp-measure's `--mode sev|seves`, and its results are reproduced exactly
// (../shared/testdata/measure/vectors.json). SEV-SNP's chained SHA-384 digest is a later issue: it
// slots in as another mode here, reusing the footer, the hashes table and the VMSA builder.
import { createHash, type Hash } from 'node:crypto';
import {
  type OvmfFooter,
  type SevKernelHashes,
  SEV_HASH_TABLE_PADDED_LENGTH,
  VCPU_TYPES,
  VMM_RESET_PROFILES,
  VMM_TYPES,
  type VmmType,
  buildResetVmsa,
  cpuidSignature,
  encodeSevHashTable,
  isVcpuTypeName,
  parseOvmfFooter,
} from '../abi/index.js';

/** Guest generations a launch digest can be asked for. */
export const LAUNCH_MODES = ['sev', 'sev-es', 'snp'] as const;
export type LaunchMode = (typeof LAUNCH_MODES)[number];
/** The modes this module computes today. */
export const SUPPORTED_LAUNCH_MODES = ['sev', 'sev-es'] as const;
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
  | 'OVMF_HASH_SNP_ONLY';

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

/**
 * The OVMF part of a launch digest, computed once: the parsed footer and the SHA-256 state after the
 * image. SEV's digest is a single SHA-256 over the concatenation, so — unlike SNP's chained digest,
 * which sev-snp-measure can seed from a hex "OVMF hash" — it cannot be resumed from a digest value;
 * this object keeps the running state instead and continues it for each launch asked of it.
 */
export class PrecomputedOvmf {
  readonly footer: OvmfFooter;
  readonly size: number;
  /** SHA-256 of the image alone (what `sha256sum` prints; informative, not a resumable state). */
  readonly sha256: Buffer;
  readonly #state: Hash;

  constructor(image: Uint8Array) {
    if (image.length === 0 || image.length % OVMF_SIZE_UNIT !== 0)
      throw new LaunchDigestError(
        'OVMF_SIZE',
        `the firmware image is ${image.length} bytes; QEMU only maps a non-zero multiple of 4 KiB`,
      );
    this.footer = parseOvmfFooter(image);
    this.size = image.length;
    this.#state = createHash('sha256').update(image);
    this.sha256 = this.#state.copy().digest();
  }

  /** A SHA-256 context that has absorbed the image, as the PSP's is after LAUNCH_UPDATE_DATA of it. */
  resume(): Hash {
    return this.#state.copy();
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
  /** vCPU count (SEV-ES: one VMSA each); ignored for SEV. */
  readonly vcpus?: number;
  /** QEMU `-cpu` model ({@link VCPU_TYPES}); SEV-ES needs this or `vcpuSignature`. */
  readonly vcpuType?: string;
  /** CPUID(1).EAX to put in RDX, instead of a named model. */
  readonly vcpuSignature?: number;
  /** Which VMM builds the VMSAs (default qemu). */
  readonly vmm?: VmmType;
  /**
   * SEV_FEATURES as sev-snp-measure's `--guest-features` (default 0x1 there): an SNP input. SEV-ES
   * VMSAs are measured with SEV_FEATURES 0 whatever this says, as sev-snp-measure does (guest.py
   * passes 0x0 in SEV-ES mode) and as KVM's legacy SEV-ES launch sets it.
   */
  readonly guestFeatures?: bigint;
  /** sev-snp-measure's `--snp-ovmf-hash`: only meaningful for SNP's resumable digest. */
  readonly snpOvmfHash?: Uint8Array;
}

/** One item the PSP measured, in order. */
export interface MeasuredItem {
  readonly what: string;
  readonly bytes: number;
}

/** The expected digest and how it was composed. */
export interface LaunchDigestResult {
  readonly mode: SupportedLaunchMode;
  /** GCTX.LD: the SHA-256 LAUNCH_MEASURE's HMAC covers and ATTESTATION reports. */
  readonly digest: Buffer;
  readonly measured: readonly MeasuredItem[];
  readonly ovmf: { readonly size: number; readonly sha256: Buffer };
  readonly kernelHashes: SevKernelHashes | undefined;
  /** The padded table as measured (176 bytes), when a kernel was given. */
  readonly hashTable: Buffer | undefined;
  /** SEV-ES only. */
  readonly vcpus: number | undefined;
  readonly vcpuSignature: number | undefined;
  readonly vmsaSevFeatures: bigint | undefined;
  /** The BSP's VMSA and (with more than one vCPU) the one every AP shares. */
  readonly bspVmsa: Buffer | undefined;
  readonly apVmsa: Buffer | undefined;
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

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Narrows a mode to one this module computes; SNP and unknown modes throw UNSUPPORTED_MODE. */
export function checkLaunchMode(mode: string): SupportedLaunchMode {
  if (mode === 'sev' || mode === 'sev-es') return mode;
  if (mode === 'snp')
    throw new LaunchDigestError(
      'UNSUPPORTED_MODE',
      'SEV-SNP launch digests are not yet supported (only sev and sev-es)',
    );
  throw new LaunchDigestError('UNSUPPORTED_MODE', `unknown mode "${mode}" (expected sev or sev-es)`);
}

function checkVmm(vmm: string, needsVmsa: boolean): VmmType {
  const known = VMM_TYPES.find((v) => v === vmm);
  if (known === undefined)
    throw new LaunchDigestError('UNSUPPORTED_VMM', `unknown VMM "${vmm}" (expected ${VMM_TYPES.join(', ')})`);
  if (needsVmsa && VMM_RESET_PROFILES[known] === undefined)
    throw new LaunchDigestError(
      'UNSUPPORTED_VMM',
      `the ${known} VMM's reset state is not yet supported (only qemu)`,
    );
  return known;
}

function checkVcpus(vcpus: number | undefined): number {
  if (vcpus === undefined)
    throw new LaunchDigestError('MISSING_VCPUS', 'SEV-ES measures one VMSA per vCPU: give the vCPU count');
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS)
    throw new LaunchDigestError('BAD_VCPUS', `vCPU count ${vcpus} is not an integer from 1 to ${MAX_VCPUS}`);
  return vcpus;
}

function checkSignature(input: LaunchDigestInput): number {
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
  if (vcpuSignature === undefined)
    throw new LaunchDigestError(
      'MISSING_VCPU_TYPE',
      "SEV-ES VMSAs carry the vCPU's CPUID signature in RDX: give the vCPU type (e.g. EPYC-v4)",
    );
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

/**
 * The launch digest QEMU/KVM and the PSP would produce for these inputs. Inputs that describe no
 * launch QEMU would perform throw {@link LaunchDigestError}; a corrupted OVMF footer throws the
 * parser's AbiDecodeError (field and offset).
 */
export function computeLaunchDigest(input: LaunchDigestInput): LaunchDigestResult {
  const mode = checkLaunchMode(input.mode);
  if (input.snpOvmfHash !== undefined)
    throw new LaunchDigestError(
      'OVMF_HASH_SNP_ONLY',
      'a precomputed OVMF hash only works with SNP, whose digest is chained; SEV and SEV-ES hash the ' +
        'image itself (precompute it with precomputeOvmf instead)',
    );
  const es = mode === 'sev-es';
  const vmm = checkVmm(input.vmm ?? 'qemu', es);
  if (input.kernel === undefined && input.initrd !== undefined)
    throw new LaunchDigestError('INITRD_WITHOUT_KERNEL', 'an initrd is only measured with a kernel');
  if (input.kernel === undefined && input.append !== undefined)
    throw new LaunchDigestError('APPEND_WITHOUT_KERNEL', 'a command line is only measured with a kernel');
  const features = input.guestFeatures ?? 0n;
  if (features < 0n || features >= 1n << 64n)
    throw new LaunchDigestError('BAD_GUEST_FEATURES', `guest features ${features} are not a u64`);
  // Everything cheap is checked before a large image is hashed.
  const vcpus = es ? checkVcpus(input.vcpus) : undefined;
  const vcpuSignature = es ? checkSignature(input) : undefined;
  const kernelHashes =
    input.kernel === undefined ? undefined : measuredKernelHashes(input.kernel, input.initrd, input.append);

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
  };
}
