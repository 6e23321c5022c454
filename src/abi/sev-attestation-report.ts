// The legacy SEV ATTESTATION report, 0xD0 bytes (sev-reference §5.4; ASPFW sev_mcmd.h
// sev_mcmd_attestation_report_t). Signed by the PEK with ECDSA P-384 / SHA-256 over [0x00, 0x34).
import { StructLayout } from './layout.js';

// ASPFW sev_mcmd.h sev_mcmd_attestation_report_t
export const SevAttestationReport = new StructLayout('SEV attestation report', 0xd0, {
  mnonce: { offset: 0x00, type: 'bytes', length: 16 },
  launchDigest: { offset: 0x10, type: 'bytes', length: 32 },
  policy: { offset: 0x30, type: 'u32' },
  sigUsage: { offset: 0x34, type: 'u32' },
  sigAlgo: { offset: 0x38, type: 'u32' },
  sigR: { offset: 0x40, type: 'bytes', length: 72 },
  sigS: { offset: 0x88, type: 'bytes', length: 72 },
});
/** The signature covers the report up to SIG_USAGE (sev-tool validate_attestation). */
export const SEV_ATTESTATION_SIGNED_LENGTH = 0x34;
