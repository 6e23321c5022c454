// Runs the `sevsim` command and maps every outcome to one exit code:
// 0 success, 1 a check failed, 2 bad input or a usage error.
import { type Command, CommanderError } from 'commander';
import { buildProgram } from './program.js';

/** Parses `args` (without node and script) and runs the command; returns the exit code. */
export async function runCli(args: readonly string[], program: Command = buildProgram()): Promise<number> {
  const everyCommand = (c: Command): Command[] => [c, ...c.commands.flatMap(everyCommand)];
  for (const c of everyCommand(program)) c.exitOverride();
  const before = process.exitCode;
  process.exitCode = undefined;
  try {
    await program.parseAsync([...args], { from: 'user' });
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander reports its own usage errors with 1, which here means "a check failed".
      return err.exitCode !== 0 && err.code.startsWith('commander.') ? 2 : err.exitCode;
    }
    process.stderr.write(`sevsim: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  } finally {
    process.exitCode = before;
  }
}
