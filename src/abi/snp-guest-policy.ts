// The 64-bit SEV-SNP guest policy (sev-reference §7.7; ASPFW sev_guest.h SNP_GUEST_POLICY_*, go-sev-guest
// abi.go ParseSnpPolicy, Linux KVM SNP_POLICY_MASK_*). SNP_LAUNCH_START answers POLICY_FAILURE for the
// first rule a policy breaks (ASPFW snp_mcmd_launch_start); `validateSnpPolicy` reports that rule.

/** A decoded SNP guest policy. */
export interface SnpGuestPolicy {
  /** Minimum firmware ABI minor version (bits 7:0). */
  abiMinor: number;
  /** Minimum firmware ABI major version (bits 15:8). */
  abiMajor: number;
  /** Bit 16: SMT allowed (if clear, LAUNCH_START fails while SMT is enabled). */
  smt: boolean;
  /**
   * Bit 17: reserved, must be one (the SNP ABI spec and KVM's SNP_POLICY_MASK_RSVD_MBO; ASPFW calls it
   * VMPL, "VMPLs must be enabled", and enforces it the same way).
   */
  reservedMbo: boolean;
  /** Bit 18: association with a migration agent allowed. */
  migrateMa: boolean;
  /** Bit 19: SNP_DBG_DECRYPT/ENCRYPT allowed. */
  debug: boolean;
  /** Bit 20: may run on a single socket only. */
  singleSocket: boolean;
  /** Bit 21: CXL memory may be used (newer ABI). */
  cxlAllow: boolean;
  /** Bit 22: AES-256-XTS memory encryption required (newer ABI). */
  memAes256Xts: boolean;
  /** Bit 23: running-average power limit must be disabled (newer ABI). */
  raplDis: boolean;
  /** Bit 24: ciphertext hiding for DRAM required (newer ABI). */
  ciphertextHiding: boolean;
  /** Bit 25: SNP_PAGE_SWAP_* forbidden (newer ABI). */
  pageSwapDisable: boolean;
  /** Bits 63:26 in place (non-zero means a reserved bit is set). */
  reserved: bigint;
}

/** Bit positions of the single-bit policy fields. */
export const SNP_POLICY_BIT = {
  smt: 16,
  reservedMbo: 17,
  migrateMa: 18,
  debug: 19,
  singleSocket: 20,
  cxlAllow: 21,
  memAes256Xts: 22,
  raplDis: 23,
  ciphertextHiding: 24,
  pageSwapDisable: 25,
} as const;
type PolicyFlag = keyof typeof SNP_POLICY_BIT;

const U64 = (1n << 64n) - 1n;
/** Bit 17, which must be one. */
export const SNP_POLICY_MBO = 1n << 17n;
/** Bits 63:26, reserved by the current ABI (sev-reference §7.7, go-sev-guest). */
export const SNP_POLICY_RESERVED_MASK = U64 & ~((1n << 26n) - 1n);
/**
 * Bits 63:21, reserved by the Genoa 1.55 firmware source (ASPFW SNP_GUEST_POLICY_RESERVED_MASK), which
 * predates CXL_ALLOW … PAGE_SWAP_DISABLE; pass it as `reservedMask` to model that firmware.
 */
export const SNP_POLICY_RESERVED_MASK_ASPFW = U64 & ~((1n << 21n) - 1n);

/** Decodes a 64-bit policy (bits above 63 are ignored). */
export function decodeSnpPolicy(policy: bigint): SnpGuestPolicy {
  const p = policy & U64;
  const bit = (name: PolicyFlag): boolean => ((p >> BigInt(SNP_POLICY_BIT[name])) & 1n) === 1n;
  return {
    abiMinor: Number(p & 0xffn),
    abiMajor: Number((p >> 8n) & 0xffn),
    smt: bit('smt'),
    reservedMbo: bit('reservedMbo'),
    migrateMa: bit('migrateMa'),
    debug: bit('debug'),
    singleSocket: bit('singleSocket'),
    cxlAllow: bit('cxlAllow'),
    memAes256Xts: bit('memAes256Xts'),
    raplDis: bit('raplDis'),
    ciphertextHiding: bit('ciphertextHiding'),
    pageSwapDisable: bit('pageSwapDisable'),
    reserved: p & SNP_POLICY_RESERVED_MASK,
  };
}

/**
 * Encodes a policy. Omitted flags are clear, except `reservedMbo`, which defaults to set because every
 * valid policy has it; pass `reservedMbo: false` to build an invalid one. Throws RangeError if an ABI
 * version is not a byte or `reserved` has bits outside 63:26.
 */
export function encodeSnpPolicy(p: Partial<SnpGuestPolicy>): bigint {
  const abiMinor = p.abiMinor ?? 0;
  const abiMajor = p.abiMajor ?? 0;
  for (const [name, v] of [
    ['abiMinor', abiMinor],
    ['abiMajor', abiMajor],
  ] as const)
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${name} ${v} is not a byte`);
  const reserved = p.reserved ?? 0n;
  if ((reserved & ~SNP_POLICY_RESERVED_MASK) !== 0n)
    throw new RangeError(`reserved 0x${reserved.toString(16)} has bits outside 63:26`);
  let v = BigInt(abiMinor) | (BigInt(abiMajor) << 8n) | reserved;
  for (const [name, b] of Object.entries(SNP_POLICY_BIT) as [PolicyFlag, number][]) {
    const set = name === 'reservedMbo' ? p.reservedMbo !== false : p[name] === true;
    if (set) v |= 1n << BigInt(b);
  }
  return v;
}

/** The rules SNP_LAUNCH_START checks on a policy, in the firmware's order. */
export type SnpPolicyRule = 'MIGRATE_MA' | 'RESERVED_MBO' | 'SMT' | 'ABI_VERSION' | 'RESERVED_BITS';

/** The outcome of validateSnpPolicy: the first rule broken, which the PSP answers with POLICY_FAILURE. */
export type SnpPolicyCheck =
  { ok: true } | { ok: false; status: 'POLICY_FAILURE'; rule: SnpPolicyRule; detail: string };

/** What the platform contributes to the policy check. */
export interface SnpPolicyContext {
  /** The firmware's ABI (API) version; the policy may not ask for a newer one. */
  apiMajor: number;
  apiMinor: number;
  /**
   * Bits the firmware reserves: default SNP_POLICY_RESERVED_MASK; SNP_POLICY_RESERVED_MASK_ASPFW models
   * the Genoa 1.55 firmware.
   */
  reservedMask?: bigint;
  /** Whether SMT is enabled on the platform (checked only when given). */
  smtEnabled?: boolean;
  /** Whether SNP_LAUNCH_START set MA_EN (checked only when given): then MIGRATE_MA must be allowed. */
  maEnabled?: boolean;
}

/**
 * Checks a policy as SNP_LAUNCH_START does (ASPFW snp_mcmd_launch_start order: MA_EN needs MIGRATE_MA,
 * bit 17 set, SMT, ABI major then minor, reserved bits) and returns the first rule broken. A value that
 * is not a 64-bit unsigned integer breaks RESERVED_BITS. The migration-agent rules that need the agent's
 * own context are left to the caller.
 */
export function validateSnpPolicy(policy: bigint, ctx: SnpPolicyContext): SnpPolicyCheck {
  const fail = (rule: SnpPolicyRule, detail: string): SnpPolicyCheck => ({
    ok: false,
    status: 'POLICY_FAILURE',
    rule,
    detail,
  });
  if (policy < 0n || policy > U64)
    return fail('RESERVED_BITS', `policy ${policy} is not a 64-bit unsigned value`);
  const p = decodeSnpPolicy(policy);
  if (ctx.maEnabled === true && !p.migrateMa)
    return fail('MIGRATE_MA', 'MA_EN is set but the policy does not allow a migration agent (bit 18)');
  if (!p.reservedMbo) return fail('RESERVED_MBO', 'bit 17 must be one');
  if (ctx.smtEnabled === true && !p.smt)
    return fail('SMT', 'SMT is enabled on the platform but the policy forbids it (bit 16)');
  if (p.abiMajor > ctx.apiMajor || (p.abiMajor === ctx.apiMajor && p.abiMinor > ctx.apiMinor))
    return fail(
      'ABI_VERSION',
      `policy needs ABI ${p.abiMajor}.${p.abiMinor}, firmware has ${ctx.apiMajor}.${ctx.apiMinor}`,
    );
  const reserved = policy & (ctx.reservedMask ?? SNP_POLICY_RESERVED_MASK);
  if (reserved !== 0n) return fail('RESERVED_BITS', `reserved bits set: 0x${reserved.toString(16)}`);
  return { ok: true };
}
