// The guest owner's side: checks that need only AMD's published formats and keys, so they work unchanged
// on real hardware output.
export * from './sev-chain.js';
export * from './launch-digest.js';
export * from './launch-session.js';
export * from './launch-secret.js';
export * from './sev-attestation.js';
export * from './snp-report-verify.js';
