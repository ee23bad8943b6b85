/**
 * Real second users for the tests that must not run as root alone (root reads and writes
 * everything, and so hides permission bugs): created with useradd when the tests run as root,
 * entered with setpriv. Run as anyone else, "the user" is the current one.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT } from './cli.js';

export const IS_ROOT = process.getuid?.() === 0;

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

function idOf(name: string): { uid: number; gid: number } | undefined {
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** An unprivileged system user named `name`, created if missing; else `fallback`, if it exists. */
export function systemUser(name: string, fallback?: string): Account | undefined {
  let ids = idOf(name);
  if (ids === undefined) {
    spawnSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name], { encoding: 'utf8' });
    ids = idOf(name); // also covers a concurrent useradd of the same name
  }
  if (ids !== undefined) return { name, ...ids };
  if (fallback === undefined) return undefined;
  const other = idOf(fallback);
  return other === undefined ? undefined : { name: fallback, ...other };
}

/** The unprivileged user of the tests: `sealvault-test` (created), else nobody; the current user when not root. */
export function unprivilegedUser(): Account {
  if (!IS_ROOT) {
    const me = os.userInfo();
    return { name: me.username, uid: me.uid, gid: me.gid };
  }
  const account = systemUser('sealvault-test', 'nobody');
  if (account === undefined) throw new Error('no unprivileged user: useradd failed and there is no "nobody"');
  return account;
}

/** Who runs a test that must hold for a second user too: root and an unprivileged user when we are root. */
export const RUNNERS = IS_ROOT ? (['root', 'an unprivileged user'] as const) : (['the current user'] as const);

/** The account a runner of RUNNERS stands for; undefined for ourselves. */
export function runnerAccount(runner: (typeof RUNNERS)[number]): Account | undefined {
  return runner === 'an unprivileged user' ? unprivilegedUser() : undefined;
}

/** argv that runs `command` as `account` (through setpriv when we are root; as is without an account, or when we are it). */
export function asAccount(account: Account | undefined, command: string[]): string[] {
  if (account === undefined || !IS_ROOT || account.uid === 0) return command;
  return ['/usr/bin/setpriv', '--reuid', String(account.uid), '--regid', String(account.gid), '--clear-groups', '--', ...command];
}

/**
 * A copy of what the CLI needs (dist/, the addon and helper at build/Release, package.json) in
 * `dir`, readable by everyone: the checkout itself may not be. Returns the CLI's path.
 */
export function installApp(dir: string): string {
  fs.mkdirSync(path.join(dir, 'build', 'Release'), { recursive: true, mode: 0o755 });
  fs.cpSync(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true });
  for (const file of ['sealvault_native.node', 'spawn_helper', 'vault_launcher']) {
    fs.copyFileSync(path.join(ROOT, 'build', 'Release', file), path.join(dir, 'build', 'Release', file));
  }
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  spawnSync('chmod', ['-R', 'a+rX', dir]);
  return path.join(dir, 'dist', 'vault.mjs');
}
