// What every sevsim command shares about its inputs: the exit statuses and readable errors for files
// that cannot be read (no stack traces for a user's mistake).
import { readFileSync } from 'node:fs';

/** Exit status when the inputs were read and a check failed. */
export const EXIT_CHECK_FAILED = 1;
/** Exit status when an input is missing, unreadable or malformed, or the options conflict. */
export const EXIT_INPUT = 2;

/** Bad input, reported as `error: …` with exit status 2. */
export class InputError extends Error {}

/** A short reason for a failed file read. */
export function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'is a directory';
  if (code === 'EACCES') return 'permission denied';
  return err instanceof Error ? err.message : String(err);
}

/** The file's bytes, or an InputError naming what it is and why it cannot be read. */
export function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new InputError(`cannot read ${what} ${path}: ${readFailure(err)}`);
  }
}
