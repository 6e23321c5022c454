// Legacy SEV and SNP command IDs and status codes (sev-reference §2.2–2.3; Linux include/linux/psp-sev.h).

/** PSP mailbox command IDs. */
export const SevCommand = {
  INIT: 0x01,
  SHUTDOWN: 0x02,
  PLATFORM_RESET: 0x03,
  PLATFORM_STATUS: 0x04,
  PEK_GEN: 0x05,
  PEK_CSR: 0x06,
  PEK_CERT_IMPORT: 0x07,
  PDH_CERT_EXPORT: 0x08,
  PDH_GEN: 0x09,
  DF_FLUSH: 0x0a,
  DOWNLOAD_FIRMWARE: 0x0b,
  GET_ID: 0x0c,
  INIT_EX: 0x0d,
  NOP: 0x0e,
  DECOMMISSION: 0x20,
  ACTIVATE: 0x21,
  DEACTIVATE: 0x22,
  GUEST_STATUS: 0x23,
  COPY: 0x24,
  ACTIVATE_EX: 0x25,
  LAUNCH_START: 0x30,
  LAUNCH_UPDATE_DATA: 0x31,
  LAUNCH_UPDATE_VMSA: 0x32,
  LAUNCH_MEASURE: 0x33,
  LAUNCH_SECRET: 0x34,
  LAUNCH_FINISH: 0x35,
  ATTESTATION: 0x36,
  SEND_START: 0x40,
  SEND_UPDATE_DATA: 0x41,
  SEND_UPDATE_VMSA: 0x42,
  SEND_FINISH: 0x43,
  SEND_CANCEL: 0x44,
  RECEIVE_START: 0x50,
  RECEIVE_UPDATE_DATA: 0x51,
  RECEIVE_UPDATE_VMSA: 0x52,
  RECEIVE_FINISH: 0x53,
  DBG_DECRYPT: 0x60,
  DBG_ENCRYPT: 0x61,
  // SEV-SNP (sev-reference §2.2; ASPFW sev_mcmd.h SNP_MCMD_ID_*, Linux psp-sev.h SEV_CMD_SNP_*)
  SNP_INIT: 0x81,
  SNP_SHUTDOWN: 0x82,
  SNP_PLATFORM_STATUS: 0x83,
  SNP_DF_FLUSH: 0x84,
  SNP_INIT_EX: 0x85,
  SNP_SHUTDOWN_EX: 0x86,
  SNP_DECOMMISSION: 0x90,
  SNP_ACTIVATE: 0x91,
  SNP_GUEST_STATUS: 0x92,
  SNP_GCTX_CREATE: 0x93,
  SNP_GUEST_REQUEST: 0x94,
  SNP_ACTIVATE_EX: 0x95,
  SNP_LAUNCH_START: 0xa0,
  SNP_LAUNCH_UPDATE: 0xa1,
  SNP_LAUNCH_FINISH: 0xa2,
  SNP_DBG_DECRYPT: 0xb0,
  SNP_DBG_ENCRYPT: 0xb1,
  SNP_PAGE_SWAP_OUT: 0xc0,
  SNP_PAGE_SWAP_IN: 0xc1,
  SNP_PAGE_MOVE: 0xc2,
  SNP_PAGE_MD_INIT: 0xc3,
  SNP_PAGE_SET_STATE: 0xc6,
  SNP_PAGE_RECLAIM: 0xc7,
  SNP_PAGE_UNSMASH: 0xc8,
  /** SNP_SET_CONFIG in Linux's user API; the firmware and the mailbox call it SNP_CONFIG. */
  SNP_CONFIG: 0xc9,
  SNP_DOWNLOAD_FIRMWARE_EX: 0xca,
  SNP_COMMIT: 0xcb,
  // 0xCC is DLFW_CONTINUE, internal to the firmware (ASPFW: "NOT PUBLISHED")
  SNP_VLEK_LOAD: 0xcd,
  SNP_FEATURE_INFO: 0xce,
} as const;
export type SevCommandId = (typeof SevCommand)[keyof typeof SevCommand];

/** Firmware status codes returned in the low 16 bits of CmdResp. */
export const SevStatus = {
  SUCCESS: 0x00,
  INVALID_PLATFORM_STATE: 0x01,
  INVALID_GUEST_STATE: 0x02,
  INVALID_CONFIG: 0x03,
  INVALID_LENGTH: 0x04,
  ALREADY_OWNED: 0x05,
  INVALID_CERTIFICATE: 0x06,
  POLICY_FAILURE: 0x07,
  INACTIVE: 0x08,
  INVALID_ADDRESS: 0x09,
  BAD_SIGNATURE: 0x0a,
  BAD_MEASUREMENT: 0x0b,
  ASID_OWNED: 0x0c,
  INVALID_ASID: 0x0d,
  WBINVD_REQUIRED: 0x0e,
  DF_FLUSH_REQUIRED: 0x0f,
  INVALID_GUEST: 0x10,
  INVALID_COMMAND: 0x11,
  ACTIVE: 0x12,
  HWERROR_PLATFORM: 0x13,
  HWERROR_UNSAFE: 0x14,
  UNSUPPORTED: 0x15,
  INVALID_PARAM: 0x16,
  RESOURCE_LIMIT: 0x17,
  SECURE_DATA_INVALID: 0x18,
  INVALID_PAGE_SIZE: 0x19,
  INVALID_PAGE_STATE: 0x1a,
  INVALID_MDATA_ENTRY: 0x1b,
  INVALID_PAGE_OWNER: 0x1c,
  AEAD_OFLOW: 0x1d,
  RING_BUFFER_EXIT: 0x1f,
  RMP_INIT_REQUIRED: 0x20,
  BAD_SVN: 0x21,
  BAD_VERSION: 0x22,
  SHUTDOWN_REQUIRED: 0x23,
  UPDATE_FAILED: 0x24,
  RESTORE_REQUIRED: 0x25,
  RMP_INITIALIZATION_FAILED: 0x26,
  INVALID_KEY: 0x27,
} as const;
export type SevStatusCode = (typeof SevStatus)[keyof typeof SevStatus];

const statusNames = new Map<number, string>(Object.entries(SevStatus).map(([k, v]) => [v, k]));
const commandNames = new Map<number, string>(Object.entries(SevCommand).map(([k, v]) => [v, k]));

/** "ASID_OWNED (0x0c)" for display. */
export function statusName(code: number): string {
  return `${statusNames.get(code) ?? 'UNKNOWN'} (0x${code.toString(16).padStart(2, '0')})`;
}

/** "ACTIVATE (0x21)" for display. */
export function commandName(id: number): string {
  return `${commandNames.get(id) ?? 'UNKNOWN'} (0x${id.toString(16).padStart(2, '0')})`;
}

/** Legacy SEV platform states (ASPFW sev_plat.c). */
export const PlatformState = { UNINIT: 0, INIT: 1, WORKING: 2 } as const;
export type PlatformStateCode = (typeof PlatformState)[keyof typeof PlatformState];

/** Legacy SEV guest states (ASPFW sev_guest.c). */
export const GuestState = {
  UNINIT: 0,
  LUPDATE: 1,
  LSECRET: 2,
  RUNNING: 3,
  SUPDATE: 4,
  RUPDATE: 5,
  SENT: 6,
} as const;
export type GuestStateCode = (typeof GuestState)[keyof typeof GuestState];

const guestStateNames = new Map<number, string>(Object.entries(GuestState).map(([k, v]) => [v, k]));
const platformStateNames = new Map<number, string>(Object.entries(PlatformState).map(([k, v]) => [v, k]));
export function guestStateName(s: number): string {
  return guestStateNames.get(s) ?? `UNKNOWN(${s})`;
}
export function platformStateName(s: number): string {
  return platformStateNames.get(s) ?? `UNKNOWN(${s})`;
}

/** SEV-SNP platform states (ASPFW sev_plat.h snp_state_t): SNP_INIT(_EX) moves UNINIT to INIT. */
export const SnpPlatformState = { UNINIT: 0, INIT: 1 } as const;
export type SnpPlatformStateCode = (typeof SnpPlatformState)[keyof typeof SnpPlatformState];

/**
 * SEV-SNP guest states (sev-reference §7.3; ASPFW sev_guest.h snp_guest_state_t): LAUNCH_START moves
 * INIT to LAUNCH, LAUNCH_FINISH moves LAUNCH to RUNNING.
 */
export const SnpGuestState = { INIT: 0, LAUNCH: 1, RUNNING: 2 } as const;
export type SnpGuestStateCode = (typeof SnpGuestState)[keyof typeof SnpGuestState];

const snpGuestStateNames = new Map<number, string>(Object.entries(SnpGuestState).map(([k, v]) => [v, k]));
const snpPlatformStateNames = new Map<number, string>(
  Object.entries(SnpPlatformState).map(([k, v]) => [v, k]),
);
/** "RUNNING" for display; unknown values as "UNKNOWN(n)". */
export function snpGuestStateName(s: number): string {
  return snpGuestStateNames.get(s) ?? `UNKNOWN(${s})`;
}
/** "INIT" for display; unknown values as "UNKNOWN(n)". */
export function snpPlatformStateName(s: number): string {
  return snpPlatformStateNames.get(s) ?? `UNKNOWN(${s})`;
}
