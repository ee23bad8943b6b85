/**
 * What every command prints for people and how a run ends, shared by main.ts (commander) and the
 * lean path of `vault exec` (exec-command.ts), which loads no commander. People's lines go to stderr
 * with control characters escaped (paths and names in them may come from a file, printable.ts).
 */
import { VaultError } from '../vault/errors.js';
import { printable } from '../vault/printable.js';

/** One line for people on stderr. */
export const say = (text: string): void => {
  process.stderr.write(`${printable(text)}\n`);
};

/** The one line and exit code of a failure: a VaultError's own, a system call's (code 1), else an internal error. */
export function describeFailure(error: unknown): { message: string; code: number } {
  if (error instanceof VaultError) return { message: error.message, code: error.exitCode };
  const system = error as NodeJS.ErrnoException;
  if (typeof system?.code === 'string' && typeof system.syscall === 'string') {
    const where = system.path !== undefined ? ` ${system.path}` : '';
    const hint = system.code === 'EACCES' || system.code === 'EPERM' ? '; check the permissions of the vault directory' : '';
    return { message: `${system.syscall}${where} failed: ${system.code}${hint}`, code: 1 };
  }
  const first = (error instanceof Error ? error.message : String(error)).split('\n')[0];
  return { message: `internal error: ${first}; please report it`, code: 1 };
}

/** Prints the failure's line and sets its exit code. */
export function fail(error: unknown): void {
  const { message, code } = describeFailure(error);
  process.stderr.write(`vault: ${printable(message)}\n`);
  process.exitCode = code;
}

/** An uncaught error or rejection ends the run with its one line, never a stack trace; Node's warnings get one line too. */
export function installFailureHandlers(): void {
  process.on('uncaughtException', (error) => {
    fail(error);
    process.exit();
  });
  process.on('unhandledRejection', (error) => {
    fail(error);
    process.exit();
  });
  process.removeAllListeners('warning');
  process.on('warning', (warning) => process.stderr.write(`vault: warning: ${printable(warning.message)}\n`));
}

/**
 * Exits once stdout and stderr are written out: a library's thread still waiting (keytar on a D-Bus
 * that never answers) must not keep vault alive. Warnings are emitted on the next tick, and a pipe
 * that was full holds the rest of stdout in Node's queue: let both out first (a write's callback
 * runs once all before it went).
 */
export async function exitWhenWritten(): Promise<never> {
  await new Promise((resolve) => setImmediate(resolve));
  for (const stream of [process.stdout, process.stderr]) await new Promise((resolve) => stream.write('', resolve));
  return process.exit();
}
