import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VaultError } from './errors.js';
import { native } from './native.js';

const LOCK_WAIT_MS = 30_000;

/**
 * Runs `work` holding an exclusive flock on `lockPath`. The kernel drops the lock when the
 * process dies, so a writer killed at any point never leaves the vault locked.
 */
export function withLock<T>(lockPath: string, work: () => T): T {
  const fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  try {
    const deadline = Date.now() + LOCK_WAIT_MS;
    let pause = 2;
    while (!native().tryLockExclusive(fd)) {
      if (Date.now() > deadline) {
        throw new VaultError(
          'busy',
          `another vault process has held ${lockPath} for ${LOCK_WAIT_MS / 1000}s; wait for it to finish and try again`,
        );
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, pause);
      pause = Math.min(pause * 2, 50);
    }
    return work();
  } finally {
    fs.closeSync(fd); // closing the only fd releases the flock
  }
}

function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replaces `target` with `data` so that a reader sees the old or the new file, never a mix:
 * write a temporary file in `tmpDir` (same file system), fsync it, rename it over the target,
 * fsync the target's directory. Callers hold the vault lock.
 */
export function writeFileAtomic(tmpDir: string, target: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = path.join(tmpDir, `${path.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, target);
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    throw error;
  }
  fsyncDirectory(path.dirname(target));
}

/** Removes `target` durably. Callers hold the vault lock. */
export function removeFileDurably(target: string): void {
  fs.unlinkSync(target);
  fsyncDirectory(path.dirname(target));
}

/** Temporary files of writers that died; safe to remove only while holding the lock. */
export function sweepTemporaryFiles(tmpDir: string): void {
  for (const entry of fs.readdirSync(tmpDir)) fs.rmSync(path.join(tmpDir, entry), { force: true });
}

/** Reads a file, or returns undefined when it does not exist. */
export function readFileIfExists(file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
