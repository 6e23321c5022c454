// The chip's secret, fused at manufacturing: the root of the CEK, the chip ID and the sealing key of
// the PSP's flash. Seeded runs derive it from the seed (so a seeded platform protects nothing: its
// keys follow from a known string — use seeds for reproducible tests and demos only). Otherwise a
// state directory keeps it in `fuses.bin`, which stands for the chip itself: whoever can read the
// state directory holds the chip, so protect it like the machine. In-memory platforms draw it fresh.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Drbg } from '../crypto/index.js';

/** Bytes of the chip secret. */
export const CHIP_SECRET_BYTES = 32;

/** The fuses file of a state directory. */
const FUSES_FILE = 'fuses.bin';

/**
 * The chip secret: from the seed if given; else the state directory's `fuses.bin`, fused (created) on
 * first use; else fresh random bytes for an in-memory platform.
 */
export function chipSecret(
  seed: string | number | bigint | undefined,
  stateDirectory: string | undefined,
): Buffer {
  if (seed !== undefined) return Drbg.fromSeed(seed, 'chip-secret').generate(CHIP_SECRET_BYTES);
  if (stateDirectory === undefined) return randomBytes(CHIP_SECRET_BYTES);
  const file = join(stateDirectory, FUSES_FILE);
  try {
    const fused = readFileSync(file);
    if (fused.length === CHIP_SECRET_BYTES) return fused;
  } catch {
    /* a new chip */
  }
  mkdirSync(stateDirectory, { recursive: true, mode: 0o700 });
  const fresh = randomBytes(CHIP_SECRET_BYTES);
  writeFileSync(file, fresh, { mode: 0o600, flag: 'wx' });
  return fresh;
}

/**
 * The chip secret already fused into a state directory, or undefined if it holds no chip — read only,
 * for AMD's side (the simulated KDS registering a chip it "manufactured"), which must never fuse one.
 */
export function fusedChipSecret(stateDirectory: string): Buffer | undefined {
  try {
    const fused = readFileSync(join(stateDirectory, FUSES_FILE));
    return fused.length === CHIP_SECRET_BYTES ? fused : undefined;
  } catch {
    return undefined;
  }
}
