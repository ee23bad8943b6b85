/**
 * A whole flow as a real unprivileged user, because root reads and writes everything and so hides
 * permission bugs. Run as root (the usual case here), the test creates system users and drops to
 * them with setpriv; run as anyone else, it runs the same flow as the current user.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAllSecrets } from './helpers/open-vault.js';
import { asAccount, installApp, IS_ROOT, systemUser } from './helpers/users.js';

const TOKEN_LINE = /^svt1_[A-Za-z0-9_-]{43}\n$/;

interface Account {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

let base: string;
let cli: string;
let shared: string;
let user: Account;
let otherUser: Account | undefined;

function makeHome(name: string, ids: { uid: number; gid: number }): string {
  const home = path.join(base, `home-${name}`);
  fs.mkdirSync(home, { mode: 0o700 });
  if (IS_ROOT) fs.chownSync(home, ids.uid, ids.gid);
  return home;
}

/** Runs the copied CLI as `account` (dropping root with setpriv), with a clean environment. */
function runAs(account: Account, args: string[], options: { input?: string; env?: Record<string, string> } = {}): Result {
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: account.home, LANG: 'C.UTF-8', ...options.env };
  const command = asAccount(account, [process.execPath, cli, ...args]);
  const result = spawnSync(command[0]!, command.slice(1), { env, cwd: account.home, input: options.input ?? '', encoding: 'utf8', timeout: 60_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function ok(result: Result, what: string): Result {
  expect(result.status, `${what}: ${result.stderr}`).toBe(0);
  return result;
}

/** A refusal for lack of permission: one `vault:` line, non-zero, no stack trace. */
function deniedByPermissions(result: Result): void {
  expect(result.status, result.stderr).not.toBe(0);
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(/^vault: [^\n]+\n$/);
  expect(result.stderr).toMatch(/permission/i);
  expect(result.stderr).not.toMatch(/\n\s+at |internal error/);
}

const mode = (file: string) => fs.lstatSync(file).mode & 0o7777;

/** Every path below `dir`, `dir` included. */
function walk(dir: string): string[] {
  const found = [dir];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...walk(full));
    else found.push(full);
  }
  return found;
}

function snapshot(dir: string): Map<string, string> {
  return new Map(walk(dir).map((p) => [p, fs.lstatSync(p).isDirectory() ? `dir ${mode(p)}` : fs.readFileSync(p).toString('base64')]));
}

/** The vault's own permissions: private directories and files, all owned by `account`. */
function expectPrivateVault(vaultDir: string, account: Account): void {
  for (const p of walk(vaultDir)) {
    const stat = fs.lstatSync(p);
    expect(stat.uid, `owner of ${p}`).toBe(account.uid);
    expect(stat.gid, `group of ${p}`).toBe(account.gid);
    expect(mode(p) & 0o022, `${p} (${mode(p).toString(8)}) is writable by group or others`).toBe(0);
    expect(stat.isSymbolicLink(), `${p} is a symlink`).toBe(false);
  }
  for (const dir of ['', 'slots', 'secrets', 'audit', '.tmp']) {
    expect(mode(path.join(vaultDir, dir)).toString(8), `mode of ${dir || 'the vault directory'}`).toBe('700');
  }
  for (const sub of ['slots', 'secrets', 'audit']) {
    const files = fs.readdirSync(path.join(vaultDir, sub));
    expect(files.length, `${sub}/ is not empty`).toBeGreaterThan(0);
    for (const f of files) expect(mode(path.join(vaultDir, sub, f)).toString(8), `mode of ${sub}/${f}`).toBe('600');
  }
  for (const f of ['policy.json', '.lock']) {
    expect(mode(path.join(vaultDir, f)).toString(8), `mode of ${f}`).toBe('600');
  }
  // the audit log is audit/ now: a new vault has no audit.log
  expect(fs.existsSync(path.join(vaultDir, 'audit.log')), `${vaultDir}/audit.log`).toBe(false);
}

/** The user's run log of the vault at `vaultDir`: its directories 0700, its files 0600, all the user's. */
function expectPrivateRunLog(vaultDir: string, account: Account): string {
  const vaultJson = fs.readFileSync(path.join(vaultDir, 'vault.json'), 'utf8');
  const { vault_id: vaultId } = JSON.parse(vaultJson) as { vault_id: string };
  const runs = path.join(account.home, '.local', 'state', 'sealvault', 'runs');
  const dir = path.join(runs, Buffer.from(vaultId, 'base64').toString('base64url'));
  for (const d of [runs, dir]) {
    expect(fs.lstatSync(d).uid, `owner of ${d}`).toBe(account.uid);
    expect(mode(d).toString(8), `mode of ${d}`).toBe('700');
  }
  for (const f of ['audit.log', '.lock']) {
    const file = path.join(dir, f);
    expect(fs.lstatSync(file).isFile(), `${file} is a regular file`).toBe(true);
    expect(fs.lstatSync(file).uid, `owner of ${file}`).toBe(account.uid);
    expect(mode(file).toString(8), `mode of ${file}`).toBe('600');
  }
  return path.join(dir, 'audit.log');
}

function expectPrivateState(account: Account): void {
  const state = path.join(account.home, '.local', 'state', 'sealvault');
  expect(fs.existsSync(path.join(state, 'known_vaults.json')), `${state}/known_vaults.json`).toBe(true);
  for (const p of walk(state)) {
    expect(fs.lstatSync(p).uid, `owner of ${p}`).toBe(account.uid);
    expect(mode(p) & 0o077, `${p} (${mode(p).toString(8)}) is open to group or others`).toBe(0);
  }
}

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-unpriv-'));
  fs.chmodSync(base, 0o755);
  // what the CLI needs, where the user can read it: the checkout itself may not be
  cli = installApp(path.join(base, 'app'));
  // a directory anyone may create in, like /tmp: the vault directory's own mode is all that protects it
  shared = path.join(base, 'shared');
  fs.mkdirSync(shared);
  fs.chmodSync(shared, 0o1777);

  if (IS_ROOT) {
    const first = systemUser('sealvault-test', 'nobody');
    if (first === undefined) throw new Error('no unprivileged user: useradd failed and there is no "nobody"');
    user = { ...first, home: makeHome(first.name, first) };
    const second = systemUser('sealvault-test2');
    if (second !== undefined && second.uid !== first.uid) otherUser = { ...second, home: makeHome(second.name, second) };
  } else {
    const me = os.userInfo();
    user = { name: me.username, uid: me.uid, gid: me.gid, home: makeHome('self', me) };
  }
  expect(user.uid).not.toBe(0);
});

afterAll(() => {
  if (base !== undefined) fs.rmSync(base, { recursive: true, force: true });
});

describe(`a whole flow as an unprivileged user (${IS_ROOT ? 'setpriv from root' : 'the current user'})`, () => {
  let vaultDir: string;
  let token: string;

  it('init, put, list, allow, exec, policy, audit --verify and verify work, with private files', async () => {
    vaultDir = path.join(shared, `vault-${user.name}`);
    const env = { VAULT_DIR: vaultDir };
    const init = ok(runAs(user, ['init', '--token'], { env }), 'init --token');
    expect(init.stdout).toMatch(TOKEN_LINE);
    token = init.stdout.trim();
    const withKey = { ...env, VAULT_KEY: token };

    ok(runAs(user, ['put', 'API_KEY'], { env, input: 'unprivileged-value' }), 'put');
    ok(runAs(user, ['put', 'OTHER'], { env, input: 'x' }), 'put OTHER');
    const list = ok(runAs(user, ['list', '--json'], { env }), 'list');
    expect((JSON.parse(list.stdout) as { name: string; size: number }[]).map((s) => [s.name, s.size])).toEqual([['API_KEY', 18], ['OTHER', 1]]);

    // a script the user owns
    const script = path.join(user.home, 'deploy.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho deployed\n', { mode: 0o755 });
    if (IS_ROOT) fs.chownSync(script, user.uid, user.gid);
    ok(runAs(user, ['allow', 'API_KEY', 'OTHER', '--to', script], { env: withKey }), 'allow');
    ok(runAs(user, ['revoke', 'OTHER', '--from', script], { env: withKey }), 'revoke');
    const policy = JSON.parse(ok(runAs(user, ['policy', '--json'], { env: withKey }), 'policy').stdout) as { revision: number; grants: { secret: string; path: string }[] };
    expect(policy.revision).toBe(2);
    expect(policy.grants.map((g) => [g.secret, g.path])).toEqual([['API_KEY', script]]);
    // a run: its release and exit go to the user's own run log, outside the (shared) vault directory
    expect(ok(runAs(user, ['exec', '--', script], { env: withKey }), 'exec').stdout).toBe('deployed\n');
    expect(ok(runAs(user, ['audit', '--verify'], { env }), 'audit --verify').stderr)
      .toBe('audit log intact: 5 entries; run log intact: 2 entries\n');
    expect(ok(runAs(user, ['verify'], { env: withKey }), 'verify').stderr).toMatch(/^ok: 2 secret\(s\)/);
    ok(runAs(user, ['key', 'list'], { env }), 'key list');

    expectPrivateVault(vaultDir, user);
    expectPrivateState(user);
    const runLog = expectPrivateRunLog(vaultDir, user);
    // every entry of audit/ and of the run log names the unprivileged user as the actor
    const auditDir = path.join(vaultDir, 'audit');
    const entries = fs.readdirSync(auditDir).map((f) => fs.readFileSync(path.join(auditDir, f), 'utf8'));
    const runs = fs.readFileSync(runLog, 'utf8').trim().split('\n');
    expect([entries.length, runs.length]).toEqual([5, 2]);
    const actors = [...entries, ...runs].map((l) => (JSON.parse(l) as { actor: { uid: number } }).actor.uid);
    expect(new Set(actors)).toEqual(new Set([user.uid]));
    expect((await openAllSecrets(vaultDir, token)).get('API_KEY')?.toString()).toBe('unprivileged-value');
  });

  it('with no VAULT_DIR and no XDG variables, vault and state go under the user\'s own HOME', () => {
    const init = ok(runAs(user, ['init', '--token']), 'init --token (default location)');
    const defaultVault = path.join(user.home, '.local', 'share', 'sealvault');
    expect(init.stderr).toContain(`created vault ${defaultVault}`);
    const key = init.stdout.trim();
    ok(runAs(user, ['put', 'DEFAULT_LOC'], { input: 'v' }), 'put');
    ok(runAs(user, ['verify'], { env: { VAULT_KEY: key } }), 'verify');
    expectPrivateVault(defaultVault, user);
    expectPrivateState(user);
    for (const dir of [path.join(user.home, '.local'), path.join(user.home, '.local', 'share'), path.join(user.home, '.local', 'state')]) {
      expect(fs.lstatSync(dir).uid, `owner of ${dir}`).toBe(user.uid);
    }
    const pins = JSON.parse(fs.readFileSync(path.join(user.home, '.local', 'state', 'sealvault', 'known_vaults.json'), 'utf8')) as { vaults: Record<string, { paths: string[] }> };
    expect(Object.values(pins.vaults).flatMap((v) => v.paths)).toContain(defaultVault);
  });

  it.runIf(IS_ROOT)('another user cannot read or write the vault: one line about permissions, nothing changed', () => {
    expect(vaultDir, 'the flow above made the vault').toBeDefined();
    if (otherUser === undefined) return; // no second user could be made; the root-owned case below still runs
    const before = snapshot(vaultDir);
    const env = { VAULT_DIR: vaultDir };
    deniedByPermissions(runAs(otherUser, ['list'], { env }));
    deniedByPermissions(runAs(otherUser, ['put', 'INTRUDER'], { env, input: 'x' }));
    deniedByPermissions(runAs(otherUser, ['verify'], { env: { ...env, VAULT_KEY: token } }));
    deniedByPermissions(runAs(otherUser, ['audit', '--verify'], { env }));
    deniedByPermissions(runAs(otherUser, ['key', 'list'], { env }));
    expect(snapshot(vaultDir)).toEqual(before);
  });

  it.runIf(IS_ROOT)('a root-owned vault cannot be read by the unprivileged user', () => {
    const rootVault = path.join(shared, 'vault-root');
    const rootHome = path.join(base, 'home-root');
    fs.mkdirSync(rootHome, { mode: 0o700 });
    const made = spawnSync(process.execPath, [cli, 'init', '--token'], {
      env: { PATH: '/usr/bin:/bin', HOME: rootHome, LANG: 'C.UTF-8', VAULT_DIR: rootVault }, cwd: rootHome, encoding: 'utf8',
    });
    expect(made.status, made.stderr).toBe(0);
    const rootToken = made.stdout.trim();
    expect(fs.statSync(rootVault).uid).toBe(0);
    expect(mode(rootVault).toString(8)).toBe('700');
    const before = snapshot(rootVault);
    const env = { VAULT_DIR: rootVault };
    deniedByPermissions(runAs(user, ['list'], { env }));
    deniedByPermissions(runAs(user, ['put', 'INTRUDER'], { env, input: 'x' }));
    deniedByPermissions(runAs(user, ['verify'], { env: { ...env, VAULT_KEY: rootToken } }));
    expect(snapshot(rootVault)).toEqual(before);
  });

  it.skipIf(IS_ROOT)('a vault directory the user may not read gives one line about permissions', () => {
    expect(vaultDir).toBeDefined();
    fs.chmodSync(vaultDir, 0o000);
    try {
      deniedByPermissions(runAs(user, ['list'], { env: { VAULT_DIR: vaultDir } }));
    } finally {
      fs.chmodSync(vaultDir, 0o700);
    }
  });
});
