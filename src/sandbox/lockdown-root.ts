/**
 * lockdown's root as mount entries for the helper (docs/helper-protocol.md, "Mount entries"): the
 * system read-only (LOCKDOWN_SYSTEM_PATHS), the working directory read-write, an empty home, the
 * grant's --ro and --rw paths, and beneath the working directory
 * read-only again what runs code later outside the sandbox (.git, a sealvault installed there).
 * The helper adds the fixed parts (/proc, /dev, /tmp) and hides the `hide` list on top.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VaultError } from '../vault/errors.js';
import { packageRoot } from '../vault/native.js';
import type { MountEntry } from './helper-protocol.js';
import { LOCKDOWN_SYSTEM_PATHS } from './tiers.js';

export interface LockdownRootRequest {
  /** The working directory, real path. */
  cwd: string;
  /** HOME as the target will see it; an empty private directory there. */
  home: string | undefined;
  /** From the grants of this run: real paths. */
  readOnly: readonly string[];
  readWrite: readonly string[];
}

/** Whether `inner` is `outer` or lies beneath it (both absolute, normal). */
export const isWithin = (inner: string, outer: string) => inner === outer || inner.startsWith(outer === '/' ? '/' : `${outer}/`);

/**
 * lockdown gives the target the working directory to write; from `/`, a home directory or one that
 * holds a home directory, that would be the user's dotfiles and keys. Refused with the way out.
 */
export function checkLockdownWorkingDirectory(cwd: string, targetHome?: string): void {
  const homes = new Set([os.homedir(), process.env.HOME, targetHome].filter((h): h is string => h !== undefined && path.isAbsolute(h)).map((h) => {
    try {
      return fs.realpathSync(h);
    } catch {
      return path.resolve(h);
    }
  }));
  for (const home of homes) {
    if (isWithin(home, cwd)) {
      throw new VaultError(
        'refused',
        `lockdown gives the program the working directory to write, and ${cwd} ${cwd === home ? 'is' : 'holds'} the home directory ${home}, ` +
          'which lockdown keeps from it: cd into a project directory first (or grant a path with `vault allow … --rw PATH`)',
      );
    }
  }
  if (['/proc', '/sys', '/dev'].some((system) => isWithin(cwd, system))) {
    throw new VaultError('refused', `lockdown cannot run in ${cwd}: cd into a project directory first`);
  }
}

/** The system directories of LOCKDOWN_SYSTEM_PATHS that exist here, as mount entries. */
export function lockdownSystemMounts(): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const system of LOCKDOWN_SYSTEM_PATHS) {
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(system);
    } catch {
      continue; // /lib32, /opt and the like are not on every system
    }
    if (stat.isSymbolicLink()) entries.push({ kind: 'symlink', path: system, target: fs.readlinkSync(system) });
    else if (stat.isDirectory()) entries.push({ kind: 'readOnly', path: system });
  }
  return entries;
}

/** What lies beneath the working directory and runs code outside the sandbox later: kept read-only. */
function codeThatRunsLater(cwd: string): string[] {
  const found: string[] = [];
  const git = path.join(cwd, '.git');
  try {
    const real = fs.realpathSync(git);
    if (isWithin(real, cwd)) found.push(real);
  } catch {
    // no repository here
  }
  const root = packageRoot();
  if (root !== undefined) {
    const real = fs.realpathSync(root);
    if (isWithin(real, cwd) && real !== cwd) {
      // A project-local install: the whole node_modules that holds it, not only the package. Inside a
      // writable node_modules the target could rename the directory around it, or patch a module it
      // loads (keytar), or the node_modules/.bin/vault it is started through (npm, pnpm's .pnpm/).
      const parts = path.relative(cwd, real).split(path.sep);
      const top = parts.indexOf('node_modules');
      found.push(top === -1 ? real : path.join(cwd, ...parts.slice(0, top + 1)));
    }
  }
  return found;
}

export function lockdownMounts(request: LockdownRootRequest): MountEntry[] {
  checkLockdownWorkingDirectory(request.cwd, request.home);
  const entries = lockdownSystemMounts();
  const home = request.home;
  if (home !== undefined && path.isAbsolute(home) && path.resolve(home) !== '/') entries.push({ kind: 'emptyDir', path: path.resolve(home) });
  entries.push({ kind: 'readWrite', path: request.cwd });
  for (const p of request.readOnly) entries.push({ kind: 'readOnly', path: p });
  for (const p of request.readWrite) entries.push({ kind: 'readWrite', path: p });
  for (const p of codeThatRunsLater(request.cwd)) {
    if (!request.readWrite.some((granted) => isWithin(p, granted) && granted !== request.cwd)) entries.push({ kind: 'readOnly', path: p });
  }
  return entries;
}
