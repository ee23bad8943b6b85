import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VaultError } from './errors.js';

/** XDG base directories must be absolute; a relative value is ignored, as the spec says. */
function xdgDirectory(variable: string, fallback: string): string {
  const value = process.env[variable];
  if (value !== undefined && path.isAbsolute(value)) return value;
  return path.join(os.homedir(), fallback);
}

/** How the vault of a command was chosen (README, "Where the vault is"). */
export type VaultSource = 'flag' | 'project' | 'environment' | 'default';

export interface VaultLocation {
  /** The vault directory, absolute. */
  dir: string;
  source: VaultSource;
  /** For 'project': the `.vault` directory or the `.sealvault` file that was found. */
  foundAt?: string;
}

/** The largest `.sealvault` file read: one path and a comment or two. */
const POINTER_CAP = 4096;

/**
 * `--vault DIR`; else, as git finds `.git`, the nearest `.vault/` directory or `.sealvault` file
 * (one line: a vault directory, relative to the file's directory) in the working directory or
 * above it; else `$VAULT_DIR`; else `$XDG_DATA_HOME/sealvault`. Errors: usage (2) for an empty flag
 * or variable, a `.sealvault` that names nothing, or both kinds in one directory; refused (11) for a
 * `.vault` or `.sealvault` that is not the user's own (another user may have planted it in /tmp, the
 * reason git checks ownership, CVE-2022-24765); unsafeFile (13) for a `.sealvault` that is not a
 * regular file of at most 4 KiB.
 */
export function locateVault(flag: string | undefined, cwd: string = process.cwd()): VaultLocation {
  if (flag !== undefined) {
    if (flag === '') throw new VaultError('usage', '--vault needs a directory');
    return { dir: path.resolve(flag), source: 'flag' };
  }
  const project = findProjectVault(cwd);
  if (project !== undefined) return project;
  const fromEnv = process.env.VAULT_DIR;
  if (fromEnv !== undefined) {
    if (fromEnv === '') {
      throw new VaultError('usage', 'VAULT_DIR is set but empty: set it to the vault directory or unset it');
    }
    return { dir: path.resolve(fromEnv), source: 'environment' };
  }
  return { dir: path.join(xdgDirectory('XDG_DATA_HOME', '.local/share'), 'sealvault'), source: 'default' };
}

/** locateVault's directory alone. */
export function resolveVaultDirectory(flag: string | undefined): string {
  return locateVault(flag).dir;
}

/**
 * The line that says which vault a command used, for stderr, or undefined: for a project vault,
 * which nobody named. --vault and $VAULT_DIR are the user's own words (a CI job sets VAULT_DIR once
 * for every step), and the default is the default.
 */
export function locationNote(location: VaultLocation): string | undefined {
  if (location.source !== 'project') return undefined;
  const how = path.basename(location.foundAt ?? '') === '.sealvault' ? `named by ${location.foundAt}` : 'found upward';
  return `using the project vault ${location.dir} (${how}; --vault DIR chooses another)`;
}

function findProjectVault(cwd: string): VaultLocation | undefined {
  const uid = process.getuid?.();
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const marker = path.join(dir, '.vault');
    const pointer = path.join(dir, '.sealvault');
    const markerStat = statOrUndefined(marker, true);
    const pointerStat = statOrUndefined(pointer, false);
    const found = markerStat?.isDirectory() === true ? marker : pointerStat !== undefined ? pointer : undefined;
    if (found !== undefined) {
      if (markerStat?.isDirectory() === true && pointerStat !== undefined) {
        throw new VaultError(
          'usage', `${dir} has both a .vault directory and a .sealvault file; remove one, or give --vault DIR`,
        );
      }
      checkOwner(found, found === marker ? markerStat! : pointerStat!, uid);
      const named = found === marker ? marker : readPointer(pointer, dir);
      return { dir: ownVaultDirectory(named, found, uid), source: 'project', foundAt: found };
    }
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** Refuses (11) what another user owns: a vault found by looking upward must be the user's own. */
function checkOwner(what: string, stat: fs.Stats, uid: number | undefined): void {
  if (uid === undefined || stat.uid === uid) return;
  throw new VaultError(
    'refused',
    `${what} belongs to uid ${stat.uid}, not to you (uid ${uid}): a vault found by looking upward must be your own; ` +
      'give --vault DIR to use it anyway, or remove it',
  );
}

/**
 * The real path of the vault directory a `.vault` link or a `.sealvault` line leads to, checked to
 * be the user's own. The real path, not the link: another user who planted a `.vault` link in /tmp
 * could point it elsewhere between this check and the command's use of the path. A vault directory
 * not there yet (`vault init` makes it) is returned as named, for the command to say so.
 */
function ownVaultDirectory(named: string, found: string, uid: number | undefined): string {
  let real: string;
  try {
    real = fs.realpathSync(named);
  } catch {
    return named;
  }
  const stat = statOrUndefined(real, true);
  if (stat !== undefined) checkOwner(named === found ? real : `${real} (named by ${found})`, stat, uid);
  return real;
}

/** lstat (stat when `follow`: a `.vault` may be a link to the vault), or undefined when there is nothing. */
function statOrUndefined(file: string, follow: boolean): fs.Stats | undefined {
  try {
    return follow ? fs.statSync(file) : fs.lstatSync(file);
  } catch {
    return undefined; // absent, or a directory we may not search: as git, go on upward
  }
}

/** The vault a `.sealvault` file names: its first line that is not blank or a # comment. */
function readPointer(file: string, dir: string): string {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted as .sealvault must not hang the command (refused below as not regular)
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ELOOP' ? 'a symbolic link' : code;
    throw new VaultError('unsafeFile', `${file} cannot be read (${why}); make it a file naming the vault directory`);
  }
  let text: string;
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile() || stat.size > POINTER_CAP) {
      throw new VaultError(
        'unsafeFile', `${file} must be a regular file of at most ${POINTER_CAP} bytes naming the vault directory`,
      );
    }
    const buffer = Buffer.alloc(POINTER_CAP + 1);
    const length = fs.readSync(fd, buffer, 0, buffer.length, 0);
    text = buffer.subarray(0, Math.min(length, POINTER_CAP)).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
  const line = text.split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) {
    throw new VaultError('usage', `${file} names no vault: write the vault directory on its first line`);
  }
  return path.resolve(dir, line);
}

/** Per-user state outside any vault: pins of public keys and audit witnesses. */
export function stateDirectory(): string {
  return path.join(xdgDirectory('XDG_STATE_HOME', '.local/state'), 'sealvault');
}
