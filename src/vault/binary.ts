/**
 * Which file a command names, and its SHA-256. Grants match by hash; `vault exec` hashes the very
 * fd it will execute, so this module works from an open fd.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VaultError } from './errors.js';

/** Resolves `command` as a shell would (PATH for bare names, only absolute PATH entries), then symlinks. */
export function resolveCommand(command: string): string {
  if (command === '') throw new VaultError('usage', 'the command is empty');
  let candidate: string | undefined;
  if (command.includes('/')) {
    candidate = path.resolve(command);
  } else {
    for (const dir of (process.env.PATH ?? '').split(':')) {
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
  if (!fs.statSync(real).isFile()) throw new VaultError('usage', `${real} is not a regular file`);
  if (!isExecutableFile(real)) throw new VaultError('usage', `${real} is not executable; \`chmod +x\` it first`);
  return real;
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
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

export function sha256OfFd(fd: number): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1 << 20);
  let position = 0;
  for (;;) {
    const read = fs.readSync(fd, chunk, 0, chunk.length, position);
    if (read === 0) break;
    hash.update(chunk.subarray(0, read));
    position += read;
  }
  return hash.digest('hex');
}

export interface HashedBinary {
  path: string;
  sha256: string;
}

export interface PinnedBinary extends HashedBinary {
  /** Open read-only; the caller executes this very fd and closes it. */
  fd: number;
}

/**
 * Opens the binary once and hashes that open file: a file renamed over the path later changes
 * neither the hash nor what runs.
 */
export function openPinned(command: string): PinnedBinary {
  const resolved = resolveCommand(command);
  const fd = fs.openSync(resolved, fs.constants.O_RDONLY);
  try {
    return { path: resolved, sha256: sha256OfFd(fd), fd };
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

export function hashCommand(command: string): HashedBinary {
  const { fd, path: resolved, sha256 } = openPinned(command);
  fs.closeSync(fd);
  return { path: resolved, sha256 };
}
