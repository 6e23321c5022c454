// The PSP's non-volatile storage (the SPI-flash region where real firmware keeps OCA/PEK/PDH and
// the committed TCB), modelled as a state directory. Records are sealed with AES-256-GCM under a key
// derived from the chip secret, so the files reveal no key, and every write is atomic (temp file,
// fsync, rename, fsync of the directory): a crash mid-write leaves the previous record intact.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { GCM_TAG_BYTES, aesGcmOpen, aesGcmSeal, sevKdf } from '../crypto/index.js';

const MAGIC = Buffer.from('SEVSIMNV', 'ascii');
const FORMAT_VERSION = 1;
const NONCE_BYTES = 12;
const HEADER_BYTES = MAGIC.length + 4 + NONCE_BYTES;

/** A sealed record could not be read back: tampered, from another chip, or not a record at all. */
export class NvStorageError extends Error {
  constructor(
    readonly record: string,
    reason: string,
  ) {
    super(`PSP non-volatile record "${record}": ${reason}`);
    this.name = 'NvStorageError';
  }
}

/** Where a test can make a write die, to show that the previous record survives. */
export type CrashPoint = 'after-temp-write' | 'before-rename';

export class NvStorage {
  readonly #sealKey: Buffer;
  /** For tests: the next save throws at this point, as if the machine lost power. */
  crashNextSaveAt: CrashPoint | undefined;

  constructor(
    readonly directory: string,
    chipSecret: Uint8Array,
  ) {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    // Recovery after a crash: half-written temp files are garbage; the committed records stand.
    for (const name of readdirSync(directory))
      if (/\.nv\.tmp-\d+$/.test(name)) rmSync(join(directory, name), { force: true });
    this.#sealKey = sevKdf(chipSecret, 32, 'sevsim-nv-storage-seal');
  }

  #path(record: string): string {
    if (!/^[a-z0-9-]{1,40}$/.test(record)) throw new RangeError(`bad record name "${record}"`);
    return join(this.directory, `${record}.nv`);
  }

  /** The record's plaintext, or undefined if it was never written. */
  load(record: string): Buffer | undefined {
    let file: Buffer;
    try {
      file = readFileSync(this.#path(record));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (file.length < HEADER_BYTES + GCM_TAG_BYTES || !file.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new NvStorageError(record, 'not a sealed record');
    }
    if (file.readUInt32LE(MAGIC.length) !== FORMAT_VERSION)
      throw new NvStorageError(record, 'unknown format version');
    const nonce = file.subarray(MAGIC.length + 4, HEADER_BYTES);
    const aad = Buffer.concat([file.subarray(0, HEADER_BYTES), Buffer.from(record, 'utf8')]);
    const plain = aesGcmOpen(this.#sealKey, nonce, aad, file.subarray(HEADER_BYTES));
    if (plain === undefined)
      throw new NvStorageError(record, 'seal check failed (tampered, or sealed by another chip)');
    return plain;
  }

  /** Seals and writes atomically. */
  save(record: string, plaintext: Uint8Array): void {
    const path = this.#path(record);
    const header = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(header);
    header.writeUInt32LE(FORMAT_VERSION, MAGIC.length);
    randomBytes(NONCE_BYTES).copy(header, MAGIC.length + 4);
    const aad = Buffer.concat([header, Buffer.from(record, 'utf8')]);
    const sealed = Buffer.concat([
      header,
      aesGcmSeal(this.#sealKey, header.subarray(MAGIC.length + 4), aad, plaintext),
    ]);
    const temp = `${path}.tmp-${process.pid}`;
    const crash = this.crashNextSaveAt;
    this.crashNextSaveAt = undefined;
    const fd = openSync(temp, 'w', 0o600);
    try {
      if (crash === 'after-temp-write') {
        writeSync(fd, sealed, 0, Math.floor(sealed.length / 2));
        throw new Error('simulated power loss while writing');
      }
      writeSync(fd, sealed);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (crash === 'before-rename') throw new Error('simulated power loss before rename');
    renameSync(temp, path);
    const dir = openSync(this.directory, 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }

  /** PLATFORM_RESET: erase a record. */
  erase(record: string): void {
    rmSync(this.#path(record), { force: true });
  }

  toJSON(): string {
    return `[NvStorage ${this.directory}]`;
  }
}
