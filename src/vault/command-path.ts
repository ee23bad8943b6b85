/**
 * Where a command or a path the user named is, as the kernel will find it: symlinks resolved. Kept
 * apart from binary.ts (hashing, pinning) so that the agent's lean client path, which checks the
 * command before it connects, loads no node:crypto.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VaultError } from './errors.js';

/** Resolves `command` as a shell would (`pathList` for bare names, only absolute entries), then symlinks. */
export function resolveCommand(command: string, pathList = process.env.PATH ?? '', cwd = process.cwd()): string {
  if (command === '') throw new VaultError('usage', 'the command is empty');
  let candidate: string | undefined;
  if (command.includes('/')) {
    candidate = path.resolve(cwd, command);
  } else {
    for (const dir of pathList.split(':')) {
      if (!path.isAbsolute(dir)) continue;
      const full = path.join(dir, command);
      if (isExecutableFile(full)) {
        candidate = full;
        break;
      }
    }
    if (candidate === undefined) throw new VaultError('notFound', `${command}: not found in PATH; give its path`);
  }
  let real: string;
  try {
    real = fs.realpathSync(candidate);
  } catch {
    throw new VaultError('notFound', `${candidate}: no such file`);
  }
  let regular: boolean;
  try {
    regular = fs.statSync(real).isFile();
  } catch {
    // realpath gave a name that does not stat, e.g. /proc/self/fd/0 of a pipe ("pipe:[…]")
    throw new VaultError('notFound', `${candidate}: no such file`);
  }
  if (!regular) throw new VaultError('usage', `${real} is not a regular file`);
  if (!isExecutableFile(real)) throw new VaultError('usage', `${real} is not executable; \`chmod +x\` it first`);
  return real;
}

/** The real path of an existing file or directory named by the user for `flag`; symlinks resolved. */
export function realPathOf(given: string, flag: string): string {
  if (given === '') throw new VaultError('usage', `${flag} needs a path`);
  try {
    return fs.realpathSync(path.resolve(given));
  } catch {
    throw new VaultError('notFound', `${flag} ${given}: no such file or directory`);
  }
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
