// The chip's secret, fused at manufacturing: the root of the CEK, the chip ID and the sealing key of
// the PSP's flash. Seeded runs derive it from the seed (so a seeded platform protects nothing: its
// keys follow from a known string — use seeds for reproducible tests and demos only). Otherwise a
// state directory keeps it in `fuses.bin`, which stands for the chip itself: whoever can read the
// state directory holds the chip, so protect it like the machine. In-memory platforms draw it fresh.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Drbg } from '../crypto/index.js';

const SECRET_BYTES = 32;

export function chipSecret(
  seed: string | number | bigint | undefined,
  stateDirectory: string | undefined,
): Buffer {
  if (seed !== undefined) return Drbg.fromSeed(seed, 'chip-secret').generate(SECRET_BYTES);
  if (stateDirectory === undefined) return randomBytes(SECRET_BYTES);
  const file = join(stateDirectory, 'fuses.bin');
  try {
    const fused = readFileSync(file);
    if (fused.length === SECRET_BYTES) return fused;
  } catch {
    /* a new chip */
  }
  mkdirSync(stateDirectory, { recursive: true, mode: 0o700 });
  const fresh = randomBytes(SECRET_BYTES);
  writeFileSync(file, fresh, { mode: 0o600, flag: 'wx' });
  return fresh;
}
