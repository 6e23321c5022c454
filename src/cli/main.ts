#!/usr/bin/env node
// The `sevsim` command. Exit codes: 0 success, 1 a check failed, 2 bad input or a usage error.
import { runCli } from './run.js';

process.exitCode = await runCli(process.argv.slice(2));
