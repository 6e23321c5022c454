#!/usr/bin/env node
// The `sevsim` command.
import { buildProgram } from './program.js';

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  process.stderr.write(`sevsim: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
}
