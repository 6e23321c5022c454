// Byte-exact wire formats: encode/decode/validate only, no behaviour.
export * from './layout.js';
export * from './sev-commands.js';
export * from './guest-policy.js';
export * from './sev-command-buffers.js';
export * from './vmcb.js';
export * from './hypercalls.js';
export * from './sev-cert.js';
export * from './amd-root-cert.js';
export * from './ovmf-footer.js';
export * from './sev-hashes-table.js';
export * from './vmsa.js';
export * from './sev-session.js';
export * from './sev-attestation-report.js';
export * from './sev-cert-signature.js';
export * from './efi-secret-table.js';
