/**
 * The vault directory, reached only through directory fds. Anyone who can write the directory is
 * in the threat model (a teammate through git, a CI job), so below the vault's own path nothing is
 * followed or trusted: every file is opened with O_NOFOLLOW | O_NONBLOCK relative to its directory's
 * fd (openat(2)), checked with fstat as a regular file of at most its kind's size (docs/FORMAT.md,
 * "Sizes"), and read with one bounded read. Temporary files, the lock and the sweep of leftovers go
 * through the same fds (openat, unlinkat, renameat). A symlink, FIFO, device or oversized file
 * anywhere in the layout stops a command with one line naming it (exit 13), instead of making it
 * follow the link, hang on the FIFO or run out of memory.
 *
 * Files that root writes into a vault owned by another user take that user's owner and group.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VaultError } from './errors.js';
import { native } from './native.js';
import { randomBytes } from './crypto.js';

/** The largest file of each kind a reader accepts, in bytes (docs/FORMAT.md, "Sizes"). */
export const SIZE_CAPS = {
  vault: 4 * 1024,
  slot: 16 * 1024,
  /** A 1 MiB value sealed and in base64, with its JSON around it. */
  secret: 2 * 1024 * 1024,
  policy: 16 * 1024 * 1024,
  gitignore: 4 * 1024,
  state: 4 * 1024 * 1024,
  /** One line of the audit log, its newline included; the log itself is read line by line. */
  auditLine: 1024 * 1024,
  /** One entry file of the audit DAG (audit/HASH.json). */
  auditEntry: 1024 * 1024,
} as const;
export type FileKind = Exclude<keyof typeof SIZE_CAPS, 'auditLine'>;

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY, O_APPEND } = fs.constants;
const LOCK_WAIT_MS = 30_000;

/** What a non-regular file is, in words. */
function kindOf(stat: fs.Stats): string {
  if (stat.isSymbolicLink()) return 'a symbolic link';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  if (stat.isSocket()) return 'a socket';
  if (stat.isDirectory()) return 'a directory';
  return 'not a regular file';
}

/** The one-line refusal for a path of the layout that is not what it must be. Exit 13. */
export function unsafeFile(file: string, what: string, expected: 'a regular file' | 'a directory' = 'a regular file'): VaultError {
  return new VaultError(
    'unsafeFile',
    `${file} is ${what}, where the vault keeps ${expected}: someone who can write the vault directory put it there; ` +
      'remove it (or restore it from version control) and try again; nothing was changed',
  );
}

/** The one-line refusal for a file of the layout over its kind's size cap. Exit 13. */
/** What each kind of file is called in messages. */
const KIND_NAMES: Record<FileKind, string> = {
  vault: 'vault.json', slot: 'a slot file', secret: 'a secret file', policy: 'policy.json', gitignore: '.gitignore',
  state: 'known_vaults.json', auditEntry: 'an audit entry',
};

function oversized(file: string, size: string, cap: number, kind: FileKind): VaultError {
  return new VaultError(
    'unsafeFile',
    `${file} is ${size}, over the limit of ${cap} bytes for ${KIND_NAMES[kind]} (docs/FORMAT.md, "Sizes"): ` +
      'no sealvault writes one that large; remove it (or restore it from version control) and try again; ' +
      'nothing was changed',
  );
}

function systemCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

/** The owner new files take: the vault directory's, when root writes into someone else's vault. */
interface Owner {
  uid: number;
  gid: number;
}

export interface OpenedFile {
  fd: number;
  stat: fs.Stats;
  /** This call made the file (O_CREAT | O_EXCL succeeded). */
  created: boolean;
}

export class VaultDir {
  private constructor(
    readonly fd: number,
    readonly path: string,
    private readonly owner: Owner | undefined,
  ) {}

  /**
   * The directory at `dir` (its own path is followed: it is the user's choice); undefined when it
   * does not exist, unless `create`, which makes it (0700). Throws unsafeFile for a non-directory.
   */
  static open(dir: string, options: { create?: boolean } = {}): VaultDir | undefined {
    if (options.create === true) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    let fd: number;
    try {
      fd = fs.openSync(dir, O_RDONLY | O_DIRECTORY);
    } catch (error) {
      if (systemCode(error) === 'ENOENT') return undefined;
      if (systemCode(error) === 'ENOTDIR') throw unsafeFile(dir, 'not a directory');
      throw error;
    }
    const stat = fs.fstatSync(fd);
    const euid = process.geteuid?.() ?? -1;
    return new VaultDir(fd, dir, euid === 0 && stat.uid !== 0 ? { uid: stat.uid, gid: stat.gid } : undefined);
  }

  at(name: string): string {
    return path.join(this.path, name);
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** A subdirectory, never through a symlink; undefined when missing, unless `create`. */
  child(name: string, options: { create?: boolean } = {}): VaultDir | undefined {
    const open = () => native().openAt(this.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    let fd: number;
    try {
      fd = open();
    } catch (error) {
      const code = systemCode(error);
      if (code === 'ENOENT' && options.create === true) {
        native().mkdirAt(this.fd, name, 0o700);
        fd = open();
        if (this.owner !== undefined) fs.fchownSync(fd, this.owner.uid, this.owner.gid);
      } else if (code === 'ENOENT') {
        return undefined;
      } else if (code === 'ELOOP' || code === 'ENOTDIR') {
        // O_NOFOLLOW | O_DIRECTORY on a symlink fails with ENOTDIR on Linux, not ELOOP
        throw unsafeFile(this.at(name), kindOf(fs.lstatSync(this.at(name))), 'a directory');
      } else {
        throw error;
      }
    }
    return new VaultDir(fd, this.at(name), this.owner);
  }

  /**
   * Opens `name` with O_NOFOLLOW | O_NONBLOCK and `flags`; fstat must show a regular file. Returns
   * undefined when it does not exist (and `flags` does not create it).
   */
  openFile(name: string, flags: number, mode = 0o600): OpenedFile | undefined {
    let fd: number;
    // with O_CREAT, first as a new file (O_EXCL): only a file this process made may take the vault owner's ids
    let created = (flags & O_CREAT) !== 0;
    try {
      try {
        fd = native().openAt(this.fd, name, flags | (created ? O_EXCL : 0) | O_NOFOLLOW | O_NONBLOCK, mode);
      } catch (error) {
        if (!created || (flags & O_EXCL) !== 0 || systemCode(error) !== 'EEXIST') throw error;
        created = false;
        fd = native().openAt(this.fd, name, (flags & ~O_CREAT) | O_NOFOLLOW | O_NONBLOCK, mode);
      }
    } catch (error) {
      const code = systemCode(error);
      if (code === 'ENOENT') return undefined;
      if (code === 'ELOOP') throw unsafeFile(this.at(name), 'a symbolic link');
      if (code === 'EISDIR') throw unsafeFile(this.at(name), 'a directory');
      if (code === 'ENXIO') throw unsafeFile(this.at(name), 'a FIFO or socket');
      throw error;
    }
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      fs.closeSync(fd);
      throw unsafeFile(this.at(name), kindOf(stat));
    }
    // a hard link would make a write, a truncation or root's chown land on a file outside the vault;
    // 0 is a file a concurrent writer just renamed a new one over (atomic replace): this fd's old copy
    if (stat.nlink > 1) {
      fs.closeSync(fd);
      throw unsafeFile(this.at(name), `a hard link (${stat.nlink} names for one file)`);
    }
    return { fd, stat, created };
  }

  /** The bytes of `name` (at most its kind's cap), or undefined when it does not exist. */
  read(name: string, kind: FileKind): Buffer | undefined {
    const opened = this.openFile(name, O_RDONLY);
    if (opened === undefined) return undefined;
    const cap = SIZE_CAPS[kind];
    try {
      if (opened.stat.size > cap) throw oversized(this.at(name), `${opened.stat.size} bytes`, cap, kind);
      // one byte more than the cap tells a file that grew past it since fstat
      const buffer = Buffer.alloc(opened.stat.size + 1);
      let length = 0;
      for (;;) {
        const n = fs.readSync(opened.fd, buffer, length, buffer.length - length, length);
        if (n === 0) break;
        length += n;
        if (length === buffer.length) {
          if (length > cap) throw oversized(this.at(name), 'growing while it is read', cap, kind);
          break;
        }
      }
      return buffer.subarray(0, length);
    } finally {
      fs.closeSync(opened.fd);
    }
  }

  /** Whether a regular file `name` exists (a symlink or FIFO there is refused, not reported). */
  has(name: string): boolean {
    const opened = this.openFile(name, O_RDONLY);
    if (opened !== undefined) fs.closeSync(opened.fd);
    return opened !== undefined;
  }

  names(): string[] {
    return native().listDir(this.fd);
  }

  /** Gives a file this process just created the vault owner's uid and gid, when root writes for another user. */
  adopt(fd: number): void {
    if (this.owner !== undefined) fs.fchownSync(fd, this.owner.uid, this.owner.gid);
  }

  /**
   * Replaces `name` with `data` so that a reader sees the old or the new file, never a mix: a
   * temporary file in `tmp` (the same file system), fsync, renameat over `name`, fsync of this
   * directory. Callers hold the vault lock.
   */
  writeAtomic(tmp: VaultDir, name: string, data: string | Uint8Array, mode = 0o600): void {
    const tmpName = `${name}.${process.pid}.${Buffer.from(randomBytes(6)).toString('hex')}`;
    const opened = tmp.openFile(tmpName, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (opened === undefined) throw new VaultError('internal', `cannot create ${tmp.at(tmpName)}`);
    try {
      try {
        this.adopt(opened.fd);
        fs.fchmodSync(opened.fd, mode);
        fs.writeFileSync(opened.fd, data);
        fs.fsyncSync(opened.fd);
      } finally {
        fs.closeSync(opened.fd);
      }
      native().renameAt(tmp.fd, tmpName, this.fd, name);
    } catch (error) {
      try {
        native().unlinkAt(tmp.fd, tmpName, 0);
      } catch {
        // already renamed, or never made
      }
      throw error;
    }
    fs.fsyncSync(this.fd);
  }

  /** Removes `name` durably. Callers hold the vault lock. */
  remove(name: string): void {
    native().unlinkAt(this.fd, name, 0);
    fs.fsyncSync(this.fd);
  }

  /** Removes every entry of this (temporary) directory: writers that died leave files here. Never follows one. */
  sweep(): void {
    for (const name of this.names()) {
      try {
        native().unlinkAt(this.fd, name, 0);
      } catch (error) {
        if (systemCode(error) !== 'EISDIR' && systemCode(error) !== 'ENOENT') throw error;
      }
    }
  }

  /**
   * Runs `work` holding an exclusive flock on the file `name` (created 0600). The kernel drops the
   * lock when the process dies, so a writer killed at any point never leaves the vault locked.
   */
  withLock<T>(name: string, work: () => T): T {
    const opened = this.openFile(name, O_RDWR | O_CREAT);
    if (opened === undefined) throw new VaultError('internal', `cannot open ${this.at(name)}`);
    try {
      if (opened.created) this.adopt(opened.fd);
      acquire(opened.fd, this.at(name));
      return work();
    } finally {
      fs.closeSync(opened.fd); // closing the only fd releases the flock
    }
  }

  /**
   * The same lock on the directory itself, held until this handle is closed: for `vault init`,
   * before any file of the vault exists, so that two inits cannot both find it empty.
   */
  lockDirectory(): void {
    acquire(this.fd, this.path);
  }
}

/** Waits (at most LOCK_WAIT_MS) for an exclusive flock on `fd`. */
function acquire(fd: number, what: string): void {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let pause = 2;
  while (!native().tryLockExclusive(fd)) {
    if (Date.now() > deadline) {
      throw new VaultError('busy', `another vault process has held ${what} for ${LOCK_WAIT_MS / 1000}s; wait for it to finish and try again`);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, pause);
    pause = Math.min(pause * 2, 50);
  }
}

export { O_APPEND, O_CREAT, O_RDONLY, O_WRONLY };
