// Byte-exact wire formats: encode/decode/validate only, no behaviour.
export * from './layout.js';
export * from './sev-commands.js';
export * from './guest-policy.js';
export * from './sev-command-buffers.js';
export * from './vmcb.js';
export * from './hypercalls.js';
