// EPYC product profiles: what CPUID Fn8000_001F and the firmware report (sev-reference §1.1).
// C-bit, reduction, ASID count and signatures are from real CPUID dumps (libvirt cputestdata for
// EPYC 7601/7502/7713/9334); Turin's reduction is unconfirmed. minSevAsid is a BIOS setting ("SEV-ES
// ASID space limit"): stock firmware reports 1 (no ES ASIDs); the model configures AMD's documented
// split of 99 ES/SNP ASIDs (minSevAsid 100) on every part that has SEV-ES.
import type { CipherMode } from '../crypto/index.js';

export type ProductName = 'naples' | 'rome' | 'milan' | 'genoa' | 'turin';
export const PRODUCT_NAMES: readonly ProductName[] = ['naples', 'rome', 'milan', 'genoa', 'turin'];

export interface ProductProfile {
  readonly name: ProductName;
  /** Marketing name, for display. */
  readonly title: string;
  readonly microarchitecture: string;
  /** CPUID Fn0000_0001 family/model/stepping of a representative part. */
  readonly family: number;
  readonly model: number;
  readonly stepping: number;
  /** CPUID Fn8000_001F EBX[5:0]. */
  readonly cBitPosition: number;
  /** CPUID Fn8000_001F EBX[11:6]: physical address bits lost when memory encryption is on. */
  readonly reducedPhysBits: number;
  /** CPUID Fn8000_0008 EAX[7:0]. */
  readonly physAddrBits: number;
  /** CPUID Fn8000_001F ECX: highest SEV ASID (number of encrypted guests). */
  readonly maxSevAsid: number;
  /** CPUID Fn8000_001F EDX: lowest ASID for plain SEV guests; ES/SNP guests use 1..min-1. */
  readonly minSevAsid: number;
  readonly sevEs: boolean;
  readonly sevSnp: boolean;
  /** Memory cipher construction (sev-reference §1.3). */
  readonly cipherMode: CipherMode;
  /** SEV firmware API version and build reported by PLATFORM_STATUS. */
  readonly firmware: { readonly major: number; readonly minor: number; readonly build: number };
}

const PROFILES: Readonly<Record<ProductName, ProductProfile>> = {
  naples: {
    name: 'naples',
    title: 'AMD EPYC 7001 (Naples)',
    microarchitecture: 'Zen 1',
    family: 0x17,
    model: 0x01,
    stepping: 0x2,
    cBitPosition: 47,
    reducedPhysBits: 5,
    physAddrBits: 48,
    maxSevAsid: 15,
    minSevAsid: 1,
    sevEs: false,
    sevSnp: false,
    cipherMode: 'zen1-xe',
    firmware: { major: 0, minor: 17, build: 48 },
  },
  rome: {
    name: 'rome',
    title: 'AMD EPYC 7002 (Rome)',
    microarchitecture: 'Zen 2',
    family: 0x17,
    model: 0x31,
    stepping: 0x0,
    cBitPosition: 47,
    reducedPhysBits: 5,
    physAddrBits: 48,
    maxSevAsid: 509,
    minSevAsid: 100,
    sevEs: true,
    sevSnp: false,
    cipherMode: 'xex',
    firmware: { major: 0, minor: 24, build: 15 },
  },
  milan: {
    name: 'milan',
    title: 'AMD EPYC 7003 (Milan)',
    microarchitecture: 'Zen 3',
    family: 0x19,
    model: 0x01,
    stepping: 0x1,
    cBitPosition: 51,
    reducedPhysBits: 5,
    physAddrBits: 48,
    maxSevAsid: 509,
    minSevAsid: 100,
    sevEs: true,
    sevSnp: true,
    cipherMode: 'xex',
    firmware: { major: 1, minor: 55, build: 21 },
  },
  genoa: {
    name: 'genoa',
    title: 'AMD EPYC 9004 (Genoa)',
    microarchitecture: 'Zen 4',
    family: 0x19,
    model: 0x11,
    stepping: 0x1,
    cBitPosition: 51,
    reducedPhysBits: 6,
    physAddrBits: 52,
    maxSevAsid: 1006,
    minSevAsid: 100,
    sevEs: true,
    sevSnp: true,
    cipherMode: 'xex',
    firmware: { major: 1, minor: 55, build: 40 },
  },
  turin: {
    name: 'turin',
    title: 'AMD EPYC 9005 (Turin)',
    microarchitecture: 'Zen 5',
    family: 0x1a,
    model: 0x02,
    stepping: 0x1,
    cBitPosition: 51,
    reducedPhysBits: 6,
    physAddrBits: 52,
    maxSevAsid: 1006,
    minSevAsid: 100,
    sevEs: true,
    sevSnp: true,
    cipherMode: 'xex',
    firmware: { major: 1, minor: 55, build: 58 },
  },
};

/** The profile for a product name (case-insensitive); throws with the list of known names. */
export function productProfile(name: string): ProductProfile {
  const key = name.toLowerCase();
  const p = Object.hasOwn(PROFILES, key) ? PROFILES[key as ProductName] : undefined;
  if (p === undefined) throw new RangeError(`unknown product "${name}" (known: ${PRODUCT_NAMES.join(', ')})`);
  return p;
}

/** CPUID Fn8000_001F as the hardware reports it. */
export function cpuidMemoryEncryptionLeaf(p: ProductProfile): {
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
} {
  // EAX: bit0 SME, bit1 SEV, bit3 SEV-ES, bit4 SNP, bit5 VMPL (sev-reference §1.1).
  const eax = (1 | 2 | (p.sevEs ? 8 : 0) | (p.sevSnp ? 16 | 32 : 0)) >>> 0;
  const vmpls = p.sevSnp ? 4 : 0;
  const ebx = (p.cBitPosition & 0x3f) | ((p.reducedPhysBits & 0x3f) << 6) | ((vmpls & 0xf) << 12);
  return { eax, ebx, ecx: p.maxSevAsid, edx: p.minSevAsid };
}

/** Decodes Fn8000_001F back into the fields software uses. */
export function decodeCpuidMemoryEncryptionLeaf(leaf: {
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}): {
  sme: boolean;
  sev: boolean;
  sevEs: boolean;
  sevSnp: boolean;
  cBitPosition: number;
  reducedPhysBits: number;
  maxSevAsid: number;
  minSevAsid: number;
} {
  return {
    sme: (leaf.eax & 1) !== 0,
    sev: (leaf.eax & 2) !== 0,
    sevEs: (leaf.eax & 8) !== 0,
    sevSnp: (leaf.eax & 16) !== 0,
    cBitPosition: leaf.ebx & 0x3f,
    reducedPhysBits: (leaf.ebx >>> 6) & 0x3f,
    maxSevAsid: leaf.ecx >>> 0,
    minSevAsid: leaf.edx >>> 0,
  };
}
