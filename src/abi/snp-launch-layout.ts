// What a host SNP_LAUNCH_UPDATEs when it starts an SEV-SNP guest from OVMF, in order, as data (QEMU
// target/i386/sev.c: the firmware image queued at flash mapping, then snp_populate_metadata_pages and
// snp_launch_update_kernel_hashes; KVM issues the VMSAs at SNP_LAUNCH_FINISH; the GCE and EC2 variants
// as sev-snp-measure guest.py models them; sev-reference §7.5 "Typical QEMU/OVMF sequence").
//
//   1. the firmware image, NORMAL pages, at 4 GiB − its size
//   2. each OVMF SEV metadata section, in table order: SNP_SEC_MEM → ZERO (GCE: UNMEASURED),
//      SNP_SECRETS → SECRETS, CPUID → CPUID (EC2: after every other section), SVSM_CAA → ZERO,
//      SNP_KERNEL_HASHES → NORMAL with the kernel-hashes table at its in-page offset (ZERO without a
//      kernel)
//   3. one VMSA page per vCPU, at RMP.GPA 0xFFFFFFFFF000
//
// The guest owner folds these steps into the expected launch digest; the simulated hypervisor performs
// the same steps against the simulated PSP. So the list says what the host puts in each range, not
// only what the digest needs, and inputs no host would launch are refused here, once, for both.
import type { OvmfFooter, SevMetadataSection, SevSectionTypeName } from './ovmf-footer.js';
import { SEV_HASH_TABLE_PADDED_LENGTH } from './sev-hashes-table.js';
import { SNP_MAX_GPA, SNP_PAGE_SIZE, SnpPageType } from './snp-launch-digest.js';
import type { VmmType } from './vmsa.js';

/**
 * RMP.GPA of every VMSA page KVM launches (Linux arch/x86/kvm/svm/sev.c INITIAL_VMSA_GPA): the VMSA is
 * not guest memory, and this page-aligned all-ones address below 2^48 is what the firmware measures.
 */
export const SNP_VMSA_GPA = 0xffff_ffff_f000n;
/** QEMU maps the flash image so that it ends at 4 GiB (hw/i386/pc_sysfw.c). */
export const FIRMWARE_END_GPA = 1n << 32n;

/** What the host puts in a range before SNP_LAUNCH_UPDATE. */
export type SnpLaunchSource = SnpLaunchStep['source'];

interface StepCommon {
  /** First page's GPA (the RMP.GPA the host assigns; page aligned). */
  readonly gpa: bigint;
  /** Bytes, a whole number of 4 KiB pages: one KVM_SEV_SNP_LAUNCH_UPDATE each. */
  readonly length: number;
}

/** One SNP_LAUNCH_UPDATE of a range, as a host issues it. */
export type SnpLaunchStep =
  /** The firmware image's bytes from `imageOffset`, measured. */
  | (StepCommon & {
      readonly source: 'ovmf';
      readonly type: typeof SnpPageType.NORMAL;
      readonly imageOffset: number;
    })
  /**
   * Zero-filled pages: ZERO (the firmware zeroes them) or, for GCE's SNP_SEC_MEM, UNMEASURED pages the
   * host leaves zero. `section` is the metadata section they come from.
   */
  | (StepCommon & {
      readonly source: 'zero';
      readonly type: typeof SnpPageType.ZERO | typeof SnpPageType.UNMEASURED;
      readonly section: SevSectionTypeName;
    })
  /** A page the firmware fills with the secrets page (the host passes it zeroed). */
  | (StepCommon & {
      readonly source: 'secrets';
      readonly type: typeof SnpPageType.SECRETS;
      readonly section: 'SNP_SECRETS';
    })
  /** The host's CPUID table, which the firmware checks. */
  | (StepCommon & {
      readonly source: 'cpuid';
      readonly type: typeof SnpPageType.CPUID;
      readonly section: 'CPUID';
    })
  /**
   * The padded kernel-hashes table (176 bytes) at `tableOffset` of the first page, zeros elsewhere —
   * QEMU zeroes the whole section and copies the table in.
   */
  | (StepCommon & {
      readonly source: 'kernel-hashes';
      readonly type: typeof SnpPageType.NORMAL;
      readonly section: 'SNP_KERNEL_HASHES';
      readonly tableOffset: number;
    })
  /** vCPU `vcpuIndex`'s reset-state VMSA (0 the BSP, the others start at OVMF's SEV-ES reset address). */
  | (StepCommon & {
      readonly source: 'vmsa';
      readonly type: typeof SnpPageType.VMSA;
      readonly vcpuIndex: number;
    });

/** Why a set of inputs describes no SNP launch a host would perform. */
export type SnpLaunchLayoutErrorCode =
  | 'BAD_IMAGE_PLACEMENT'
  | 'BAD_VCPUS'
  | 'NO_SEV_METADATA'
  | 'NO_SEV_ES_RESET_BLOCK'
  | 'UNKNOWN_SEV_SECTION'
  | 'BAD_SEV_SECTION'
  | 'OVERLAPPING_PAGES'
  | 'NO_KERNEL_HASHES_SECTION'
  | 'NO_KERNEL_HASHES_AREA';

/** Inconsistent launch inputs; `code` says which rule, the message what to change. */
export class SnpLaunchLayoutError extends Error {
  constructor(
    readonly code: SnpLaunchLayoutErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SnpLaunchLayoutError';
  }
}

/** Inputs of {@link snpLaunchLayout}. */
export interface SnpLaunchLayoutInput {
  /** The parsed end of the firmware image ({@link parseOvmfFooter}). */
  readonly footer: OvmfFooter;
  /** Bytes of the image the host maps (default: `footer.imageSize`). */
  readonly imageSize?: number;
  /** Where the image starts (default: so that it ends at 4 GiB, as QEMU maps it). */
  readonly imageGpa?: bigint;
  /** Which VMM (default qemu). */
  readonly vmm?: VmmType;
  /** Whether the launch carries a kernel-hashes table (QEMU -kernel with kernel-hashes=on). */
  readonly kernelHashes: boolean;
  /** vCPUs: one VMSA each. */
  readonly vcpus: number;
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;
const PAGE = BigInt(SNP_PAGE_SIZE);

function fail(code: SnpLaunchLayoutErrorCode, message: string): never {
  throw new SnpLaunchLayoutError(code, message);
}

function sectionName(s: SevMetadataSection): string {
  return `${s.typeName ?? `type ${hex(s.type)}`} section at ${hex(s.gpa)} (${hex(s.size)} bytes)`;
}

/** KVM populates whole pages; the firmware measures SECRETS and CPUID pages as single 4 KiB pages. */
function checkSection(s: SevMetadataSection): SevSectionTypeName {
  const name = s.typeName;
  if (name === undefined)
    fail(
      'UNKNOWN_SEV_SECTION',
      `the OVMF SEV metadata has a section of unknown type ${hex(s.type)} at ${hex(s.gpa)}; a host does ` +
        'not know how to launch it (known: 1 SNP_SEC_MEM, 2 SNP_SECRETS, 3 CPUID, 4 SVSM_CAA, ' +
        '0x10 SNP_KERNEL_HASHES)',
    );
  if (s.size === 0 || s.gpa % SNP_PAGE_SIZE !== 0 || s.size % SNP_PAGE_SIZE !== 0)
    fail(
      'BAD_SEV_SECTION',
      `the ${sectionName(s)} is not a non-empty run of whole 4 KiB pages, which SNP_LAUNCH_UPDATE needs`,
    );
  if (s.gpa + s.size > 2 ** 32)
    fail(
      'BAD_SEV_SECTION',
      `the ${sectionName(s)} runs past 4 GiB, which its 32-bit descriptor cannot describe`,
    );
  // QEMU would issue several SECRETS/CPUID pages for a larger section, sev-snp-measure measures one:
  // the tools disagree, and no OVMF publishes one, so such a section is refused rather than guessed.
  if ((name === 'SNP_SECRETS' || name === 'CPUID') && s.size !== SNP_PAGE_SIZE)
    fail(
      'BAD_SEV_SECTION',
      `the ${sectionName(s)} must be exactly one 4 KiB page ` +
        '(the secrets page and the CPUID table are one page each)',
    );
  return name;
}

/** QEMU sev_add_kernel_loader_hashes + snp_launch_update_kernel_hashes: the table lands in the section. */
function kernelHashesOffset(footer: OvmfFooter, sections: readonly SevMetadataSection[]): number {
  const hashSections = sections.filter((s) => s.typeName === 'SNP_KERNEL_HASHES');
  const [section] = hashSections;
  if (section === undefined)
    fail(
      'NO_KERNEL_HASHES_SECTION',
      "a kernel was given, but this OVMF's SEV metadata has no SNP_KERNEL_HASHES section, so under SNP " +
        'nothing would measure the kernel (sev-snp-measure: "Kernel specified but OVMF metadata doesn\'t ' +
        'include SNP_KERNEL_HASHES section"); use a firmware built for measured direct boot ' +
        '(OvmfPkg/AmdSev/AmdSevX64.dsc)',
    );
  if (hashSections.length > 1)
    fail(
      'BAD_SEV_SECTION',
      `the OVMF SEV metadata has ${hashSections.length} SNP_KERNEL_HASHES sections; ` +
        'the firmware reads one table',
    );
  const area = footer.sevHashTableArea;
  if (area === undefined || area.base === 0 || area.size < SEV_HASH_TABLE_PADDED_LENGTH)
    fail(
      'NO_KERNEL_HASHES_AREA',
      'a kernel was given, but this OVMF publishes no usable kernel-hashes area in its footer ' +
        (area === undefined ? '(no entry)' : `(base ${hex(area.base)}, size ${hex(area.size)})`) +
        ', so QEMU refuses the kernel ("guest firmware hashes table area is invalid"); use a firmware ' +
        'built for measured direct boot (OvmfPkg/AmdSev/AmdSevX64.dsc)',
    );
  const offset = area.base % SNP_PAGE_SIZE;
  // QEMU copies the table to the section's first page at the area's in-page offset; the firmware reads
  // it at the area's GPA. The two agree only if the area lies in that page.
  if (area.base - offset !== section.gpa || offset + SEV_HASH_TABLE_PADDED_LENGTH > section.size)
    fail(
      'NO_KERNEL_HASHES_AREA',
      `the kernel-hashes area at ${hex(area.base)} is not inside the first page of the ` +
        `${sectionName(section)}, so the table QEMU measures there is not where the firmware reads it`,
    );
  return offset;
}

/** Every range a host populates is populated once: KVM refuses a page twice (kvm_gmem_populate). */
function checkOverlaps(ranges: readonly { gpa: bigint; length: number; what: string }[]): void {
  const sorted = [...ranges].sort((a, b) => (a.gpa < b.gpa ? -1 : a.gpa > b.gpa ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const [prev, cur] = [sorted[i - 1], sorted[i]];
    if (prev !== undefined && cur !== undefined && prev.gpa + BigInt(prev.length) > cur.gpa)
      fail(
        'OVERLAPPING_PAGES',
        `the ${prev.what} and the ${cur.what} share pages; a host launches each page once`,
      );
  }
}

/**
 * The SNP_LAUNCH_UPDATEs a host performs to start this OVMF, in order. Throws
 * {@link SnpLaunchLayoutError} for inputs no host would launch: no SEV metadata, no SEV-ES reset block,
 * unknown or misaligned sections, overlapping ranges, a kernel without an SNP_KERNEL_HASHES section or a
 * usable kernel-hashes area, a bad vCPU count or image placement.
 */
export function snpLaunchLayout(input: SnpLaunchLayoutInput): SnpLaunchStep[] {
  const { footer, kernelHashes, vcpus } = input;
  const vmm = input.vmm ?? 'qemu';
  const size = input.imageSize ?? footer.imageSize;
  if (!Number.isInteger(size) || size <= 0 || size % SNP_PAGE_SIZE !== 0)
    fail('BAD_IMAGE_PLACEMENT', `the firmware image is ${size} bytes, not a non-zero number of 4 KiB pages`);
  const imageGpa = input.imageGpa ?? FIRMWARE_END_GPA - BigInt(size);
  if (imageGpa < 0n || imageGpa % PAGE !== 0n || imageGpa + BigInt(size) > SNP_MAX_GPA + PAGE)
    fail(
      'BAD_IMAGE_PLACEMENT',
      `the firmware image cannot start at ${hex(imageGpa)} (page aligned, below 2^52)`,
    );
  if (!Number.isInteger(vcpus) || vcpus < 1)
    fail('BAD_VCPUS', `vCPU count ${vcpus} is not a positive integer: an SNP guest needs a VMSA per vCPU`);
  const metadata = footer.sevMetadata;
  if (metadata === undefined)
    fail(
      'NO_SEV_METADATA',
      'this OVMF has no SEV metadata in its footer, so it cannot start as an SEV-SNP guest (QEMU: "Failed ' +
        'to locate SEV metadata header"); use a firmware built with SNP support',
    );
  const eip = footer.sevEsResetEip;
  if (eip === undefined || eip === 0)
    fail(
      'NO_SEV_ES_RESET_BLOCK',
      "an SNP launch needs the SEV-ES reset block in the OVMF footer (the APs' start address); " +
        (eip === undefined ? 'this image has none' : 'it gives address 0'),
    );
  const sections = metadata.sections;
  const names = sections.map(checkSection);
  const tableOffset = kernelHashes ? kernelHashesOffset(footer, sections) : undefined;
  checkOverlaps([
    { gpa: imageGpa, length: size, what: `firmware image at ${hex(imageGpa)}` },
    ...sections.map((s) => ({ gpa: BigInt(s.gpa), length: s.size, what: sectionName(s) })),
  ]);

  const steps: SnpLaunchStep[] = [
    { source: 'ovmf', type: SnpPageType.NORMAL, gpa: imageGpa, length: size, imageOffset: 0 },
  ];
  const deferred: SnpLaunchStep[] = [];
  sections.forEach((s, i) => {
    const name = names[i] as SevSectionTypeName;
    const at = { gpa: BigInt(s.gpa), length: s.size };
    switch (name) {
      case 'SNP_SEC_MEM':
        // GCE's VMM hands the pre-validated memory over unmeasured instead of zeroed.
        steps.push({
          ...at,
          source: 'zero',
          type: vmm === 'gce' ? SnpPageType.UNMEASURED : SnpPageType.ZERO,
          section: name,
        });
        break;
      case 'SNP_SECRETS':
        steps.push({ ...at, source: 'secrets', type: SnpPageType.SECRETS, section: name });
        break;
      case 'CPUID':
        // EC2's VMM populates the CPUID page after every other section.
        (vmm === 'ec2' ? deferred : steps).push({
          ...at,
          source: 'cpuid',
          type: SnpPageType.CPUID,
          section: name,
        });
        break;
      case 'SVSM_CAA':
        steps.push({ ...at, source: 'zero', type: SnpPageType.ZERO, section: name });
        break;
      case 'SNP_KERNEL_HASHES':
        steps.push(
          tableOffset === undefined
            ? { ...at, source: 'zero', type: SnpPageType.ZERO, section: name }
            : { ...at, source: 'kernel-hashes', type: SnpPageType.NORMAL, section: name, tableOffset },
        );
        break;
    }
  });
  steps.push(...deferred);
  for (let vcpuIndex = 0; vcpuIndex < vcpus; vcpuIndex++)
    steps.push({
      source: 'vmsa',
      type: SnpPageType.VMSA,
      gpa: SNP_VMSA_GPA,
      length: SNP_PAGE_SIZE,
      vcpuIndex,
    });
  return steps;
}
