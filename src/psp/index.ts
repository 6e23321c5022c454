// The AMD Secure Processor firmware.
export { Psp, MAX_GUESTS, type Mailbox, type MailboxRecord, type PspOptions } from './psp.js';
export { createPlatform, type Platform, type PlatformOptions } from './platform.js';
export * from './simulated-kds.js';
