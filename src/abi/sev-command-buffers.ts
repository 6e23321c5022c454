// Legacy SEV command buffer layouts (sev-reference §2.7: sev-tool sevapi.h, ASPFW sev_mcmd.h).
import { StructLayout } from './layout.js';

// INIT: ASPFW sev_mcmd.h (u16 flags, u8 reserved[6] that must be zero; sev-tool reads a u32 pair)
export const InitBuffer = new StructLayout('INIT command buffer', 0x14, {
  flags: { offset: 0x00, type: 'u16' },
  reserved: { offset: 0x02, type: 'bytes', length: 6 },
  tmrPaddr: { offset: 0x08, type: 'u64' },
  tmrLength: { offset: 0x10, type: 'u32' },
});
/** INIT flags bit 0: initialise SEV-ES support (needs a TMR). */
export const INIT_FLAG_ES = 0x1;
/** The Trusted Memory Region for SEV-ES: 1 MiB, 1 MiB aligned (sev-reference §2.7). */
export const TMR_SIZE = 0x100000;

// PLATFORM_STATUS: sev-tool sevapi.h sev_platform_status_cmd_buf
export const PlatformStatusBuffer = new StructLayout('PLATFORM_STATUS command buffer', 0x0c, {
  apiMajor: { offset: 0x00, type: 'u8' },
  apiMinor: { offset: 0x01, type: 'u8' },
  state: { offset: 0x02, type: 'u8' },
  owner: { offset: 0x03, type: 'u8' },
  config: { offset: 0x04, type: 'u16' },
  buildId: { offset: 0x07, type: 'u8' },
  guestCount: { offset: 0x08, type: 'u32' },
});
/** PLATFORM_STATUS config bit 0: SEV-ES initialised. */
export const PLATFORM_CONFIG_ES = 0x1;

// DECOMMISSION / DEACTIVATE / LAUNCH_FINISH: a handle only (sev-tool sevapi.h)
export const HandleBuffer = new StructLayout('guest handle command buffer', 0x04, {
  handle: { offset: 0x00, type: 'u32' },
});

// ACTIVATE: sev-tool sevapi.h sev_activate_cmd_buf
export const ActivateBuffer = new StructLayout('ACTIVATE command buffer', 0x08, {
  handle: { offset: 0x00, type: 'u32' },
  asid: { offset: 0x04, type: 'u32' },
});

// GUEST_STATUS: sev-tool sevapi.h sev_guest_status_cmd_buf
export const GuestStatusBuffer = new StructLayout('GUEST_STATUS command buffer', 0x10, {
  handle: { offset: 0x00, type: 'u32' },
  policy: { offset: 0x04, type: 'u32' },
  asid: { offset: 0x08, type: 'u32' },
  state: { offset: 0x0c, type: 'u8' },
});

// LAUNCH_START: sev-tool sevapi.h sev_launch_start_cmd_buf
export const LaunchStartBuffer = new StructLayout('LAUNCH_START command buffer', 0x24, {
  handle: { offset: 0x00, type: 'u32' },
  policy: { offset: 0x04, type: 'u32' },
  gdhCertPaddr: { offset: 0x08, type: 'u64' },
  gdhCertLength: { offset: 0x10, type: 'u32' },
  sessionPaddr: { offset: 0x18, type: 'u64' },
  sessionLength: { offset: 0x20, type: 'u32' },
});

// LAUNCH_UPDATE_DATA and LAUNCH_UPDATE_VMSA: sev-tool sevapi.h sev_launch_update_data_cmd_buf
export const LaunchUpdateBuffer = new StructLayout('LAUNCH_UPDATE command buffer', 0x14, {
  handle: { offset: 0x00, type: 'u32' },
  paddr: { offset: 0x08, type: 'u64' },
  length: { offset: 0x10, type: 'u32' },
});

// LAUNCH_MEASURE: sev-tool sevapi.h sev_launch_measure_cmd_buf
export const LaunchMeasureBuffer = new StructLayout('LAUNCH_MEASURE command buffer', 0x14, {
  handle: { offset: 0x00, type: 'u32' },
  paddr: { offset: 0x08, type: 'u64' },
  length: { offset: 0x10, type: 'u32' },
});

// LAUNCH_MEASURE output: sev-reference §5.2 (ASPFW sev_guest.c sev_guest_measure)
export const LaunchMeasurement = new StructLayout('LAUNCH_MEASURE output', 0x30, {
  measurement: { offset: 0x00, type: 'bytes', length: 32 },
  mnonce: { offset: 0x20, type: 'bytes', length: 16 },
});

// DBG_DECRYPT / DBG_ENCRYPT: ASPFW sev_mcmd.h sev_mcmd_debug_t (0x1C bytes, 0x20 with padding)
export const DebugBuffer = new StructLayout('DBG_DECRYPT/DBG_ENCRYPT command buffer', 0x20, {
  handle: { offset: 0x00, type: 'u32' },
  srcPaddr: { offset: 0x08, type: 'u64' },
  dstPaddr: { offset: 0x10, type: 'u64' },
  length: { offset: 0x18, type: 'u32' },
});

// PEK_CSR: sev-tool sevapi.h sev_pek_csr_cmd_buf
export const PekCsrBuffer = new StructLayout('PEK_CSR command buffer', 0x0c, {
  csrPaddr: { offset: 0x00, type: 'u64' },
  csrLength: { offset: 0x08, type: 'u32' },
});

// PEK_CERT_IMPORT: sev-tool sevapi.h sev_pek_cert_import_cmd_buf
export const PekCertImportBuffer = new StructLayout('PEK_CERT_IMPORT command buffer', 0x1c, {
  pekPaddr: { offset: 0x00, type: 'u64' },
  pekLength: { offset: 0x08, type: 'u32' },
  ocaPaddr: { offset: 0x10, type: 'u64' },
  ocaLength: { offset: 0x18, type: 'u32' },
});

// PDH_CERT_EXPORT: sev-tool sevapi.h sev_pdh_cert_export_cmd_buf (chain = PEK ‖ OCA ‖ CEK)
export const PdhCertExportBuffer = new StructLayout('PDH_CERT_EXPORT command buffer', 0x1c, {
  pdhPaddr: { offset: 0x00, type: 'u64' },
  pdhLength: { offset: 0x08, type: 'u32' },
  chainPaddr: { offset: 0x10, type: 'u64' },
  chainLength: { offset: 0x18, type: 'u32' },
});

// GET_ID: sev-tool sevapi.h sev_get_id_cmd_buf (64 bytes per socket)
export const GetIdBuffer = new StructLayout('GET_ID command buffer', 0x0c, {
  idPaddr: { offset: 0x00, type: 'u64' },
  idLength: { offset: 0x08, type: 'u32' },
});
export const GET_ID_BYTES = 64;

// LAUNCH_SECRET and SEND/RECEIVE_UPDATE_*: ASPFW sev_mcmd.h sev_mcmd_transport_t
export const TransportBuffer = new StructLayout('transport command buffer', 0x34, {
  handle: { offset: 0x00, type: 'u32' },
  hdrPaddr: { offset: 0x08, type: 'u64' },
  hdrLength: { offset: 0x10, type: 'u32' },
  guestPaddr: { offset: 0x18, type: 'u64' },
  guestLength: { offset: 0x20, type: 'u32' },
  transPaddr: { offset: 0x28, type: 'u64' },
  transLength: { offset: 0x30, type: 'u32' },
});

// ATTESTATION: ASPFW sev_mcmd.h sev_mcmd_attestation_t
export const AttestationBuffer = new StructLayout('ATTESTATION command buffer', 0x24, {
  handle: { offset: 0x00, type: 'u32' },
  paddr: { offset: 0x08, type: 'u64' },
  mnonce: { offset: 0x10, type: 'bytes', length: 16 },
  length: { offset: 0x20, type: 'u32' },
});

// SEND_START: ASPFW sev_mcmd.h sev_mcmd_send_start_t (plat certs = PEK ‖ OCA ‖ CEK, AMD certs = ASK ‖ ARK)
export const SendStartBuffer = new StructLayout('SEND_START command buffer', 0x48, {
  handle: { offset: 0x00, type: 'u32' },
  policy: { offset: 0x04, type: 'u32' },
  pdhCertPaddr: { offset: 0x08, type: 'u64' },
  pdhCertLength: { offset: 0x10, type: 'u32' },
  platCertsPaddr: { offset: 0x18, type: 'u64' },
  platCertsLength: { offset: 0x20, type: 'u32' },
  amdCertsPaddr: { offset: 0x28, type: 'u64' },
  amdCertsLength: { offset: 0x30, type: 'u32' },
  sessionPaddr: { offset: 0x38, type: 'u64' },
  sessionLength: { offset: 0x40, type: 'u32' },
});

// RECEIVE_START: ASPFW sev_mcmd.h sev_mcmd_receive_start_t (pdh cert = the SENDER's PDH)
export const ReceiveStartBuffer = new StructLayout('RECEIVE_START command buffer', 0x24, {
  handle: { offset: 0x00, type: 'u32' },
  policy: { offset: 0x04, type: 'u32' },
  pdhCertPaddr: { offset: 0x08, type: 'u64' },
  pdhCertLength: { offset: 0x10, type: 'u32' },
  sessionPaddr: { offset: 0x18, type: 'u64' },
  sessionLength: { offset: 0x20, type: 'u32' },
});

/** Size of the command buffer each command reads, so the PSP knows how many bytes to fetch. */
export const COMMAND_BUFFER_SIZE: Readonly<Record<number, number>> = {
  0x01: InitBuffer.size,
  0x02: 0,
  0x04: PlatformStatusBuffer.size,
  0x0a: 0,
  0x20: HandleBuffer.size,
  0x21: ActivateBuffer.size,
  0x22: HandleBuffer.size,
  0x23: GuestStatusBuffer.size,
  0x30: LaunchStartBuffer.size,
  0x31: LaunchUpdateBuffer.size,
  0x32: LaunchUpdateBuffer.size,
  0x33: LaunchMeasureBuffer.size,
  0x35: HandleBuffer.size,
  0x03: 0,
  0x05: 0,
  0x06: PekCsrBuffer.size,
  0x07: PekCertImportBuffer.size,
  0x08: PdhCertExportBuffer.size,
  0x09: 0,
  0x0c: GetIdBuffer.size,
  0x34: TransportBuffer.size,
  0x36: AttestationBuffer.size,
  0x40: SendStartBuffer.size,
  0x41: TransportBuffer.size,
  0x42: TransportBuffer.size,
  0x43: HandleBuffer.size,
  0x44: HandleBuffer.size,
  0x50: ReceiveStartBuffer.size,
  0x51: TransportBuffer.size,
  0x52: TransportBuffer.size,
  0x53: HandleBuffer.size,
  0x60: DebugBuffer.size,
  0x61: DebugBuffer.size,
};
