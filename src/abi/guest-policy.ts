// Legacy SEV guest policy, 32 bits (sev-reference §2.6; ASPFW sev_guest.h).

export interface SevGuestPolicy {
  /** Debugging (DBG_DECRYPT/DBG_ENCRYPT) forbidden. */
  noDebug: boolean;
  /** Sharing the VEK with another guest forbidden. */
  noKeySharing: boolean;
  /** SEV-ES guest. */
  encryptedState: boolean;
  /** Migration (SEND_START) forbidden. */
  noSend: boolean;
  /** Send only to a platform in the same domain (same OCA). */
  domain: boolean;
  /** Send only to an AMD platform. */
  sevOnly: boolean;
  /** Minimum firmware API version. */
  apiMajor: number;
  apiMinor: number;
}

const BIT = { noDebug: 0, noKeySharing: 1, encryptedState: 2, noSend: 3, domain: 4, sevOnly: 5 } as const;
/** Bits 15:6 are reserved and must be zero. */
export const POLICY_RESERVED_MASK = 0x0000ffc0;

export function decodeSevPolicy(policy: number): SevGuestPolicy {
  const bit = (b: number): boolean => ((policy >>> b) & 1) === 1;
  return {
    noDebug: bit(BIT.noDebug),
    noKeySharing: bit(BIT.noKeySharing),
    encryptedState: bit(BIT.encryptedState),
    noSend: bit(BIT.noSend),
    domain: bit(BIT.domain),
    sevOnly: bit(BIT.sevOnly),
    apiMajor: (policy >>> 16) & 0xff,
    apiMinor: (policy >>> 24) & 0xff,
  };
}

export function encodeSevPolicy(p: Partial<SevGuestPolicy>): number {
  let v = 0;
  for (const [name, b] of Object.entries(BIT) as [keyof typeof BIT, number][])
    if (p[name] === true) v |= 1 << b;
  v |= ((p.apiMajor ?? 0) & 0xff) << 16;
  v |= ((p.apiMinor ?? 0) & 0xff) << 24;
  return v >>> 0;
}
