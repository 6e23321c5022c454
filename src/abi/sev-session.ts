// The launch session buffer and the transport packet header of legacy SEV
// (sev-reference §4.3, §5.3; ASPFW sev_channel.h sev_session_t, sev-tool sevapi.h).
import { StructLayout } from './layout.js';

// Session buffer: sev-tool sevapi.h sev_session_buf / ASPFW sev_session_t (0x80 bytes)
export const SessionBuffer = new StructLayout('SEV launch session buffer', 0x80, {
  nonce: { offset: 0x00, type: 'bytes', length: 16 },
  wrapTk: { offset: 0x10, type: 'bytes', length: 32 },
  wrapIv: { offset: 0x30, type: 'bytes', length: 16 },
  wrapMac: { offset: 0x40, type: 'bytes', length: 32 },
  policyMac: { offset: 0x60, type: 'bytes', length: 32 },
});

// Packet header of LAUNCH_SECRET / SEND_UPDATE_* / RECEIVE_UPDATE_*: sev-tool sevapi.h sev_hdr_buf (0x34 bytes)
export const PacketHeader = new StructLayout('SEV transport packet header', 0x34, {
  flags: { offset: 0x00, type: 'u32' },
  iv: { offset: 0x04, type: 'bytes', length: 16 },
  mac: { offset: 0x14, type: 'bytes', length: 32 },
});
/** Packet header flags bit 0: compressed payload (the firmware answers UNSUPPORTED). */
export const PACKET_FLAG_COMPRESSED = 0x1;
