/**
 * Red-team review of the everyday features (issue 15, commit db54e5a): what a writer of the vault
 * without the key, a caller, or another local user could do with configuration values, project
 * vault discovery and `vault import`. Each case is an attack that worked before its fix; the last
 * configuration cases hold since the kind is sealed with the value. As root and as an unprivileged user where
 * the sandbox runs; cases that need a second user's files run as root.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, ROOT, type Workspace } from './helpers/cli.js';
import { IS_ROOT, RUNNERS, runnerAccount, systemUser } from './helpers/users.js';

let workspaces: Workspace[] = [];
afterEach(() => {
  for (const ws of workspaces) ws.cleanup();
  workspaces = [];
});
function workspace(account = undefined as ReturnType<typeof runnerAccount>): Workspace {
  const ws = makeWorkspace(account !== undefined ? { account } : {});
  workspaces.push(ws);
  return ws;
}

/** A script in the project, owned by the project's owner, that echoes `$NAME` for each name. */
function echoScript(ws: Workspace, file: string, names: string[]): string {
  const script = path.join(ws.project, file);
  fs.writeFileSync(script, `#!/bin/sh\necho "${names.map((n) => `$${n}`).join(' ')}"\n`, { mode: 0o755 });
  if (IS_ROOT) fs.chownSync(script, fs.statSync(ws.project).uid, fs.statSync(ws.project).gid);
  return script;
}

/** What a writer without the key does to a secret file: adds `"config": true` (unauthenticated). */
function markConfig(ws: Workspace, name: string): void {
  const file = path.join(ws.vaultDir, 'secrets', `${name}.json`);
  const stat = fs.statSync(file);
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), config: true }));
  if (IS_ROOT) fs.chownSync(file, stat.uid, stat.gid);
}

for (const runner of RUNNERS) {
  describe(`configuration marks a writer set, as ${runner}`, () => {
    // before the kind was sealed with the value, a grant took the file's mark: CI printed the secret
    it('a secret a writer marked before the grant stays masked', () => {
      const ws = workspace(runnerAccount(runner));
      initWithToken(ws);
      put(ws, 'STRIPE_KEY', 'sk-live-0a1b2c3d4e5f');
      markConfig(ws, 'STRIPE_KEY'); // a teammate's commit, a CI job: no key needed
      const script = echoScript(ws, 'deploy.sh', ['STRIPE_KEY']);
      expect(ws.run(['allow', 'STRIPE_KEY', '--to', script]).status).toBe(0);
      expect(ws.run(['exec', '--', script], { env: { CI: 'true' } }).stdout).toBe('***\n');
    });

    it('a granted secret a writer marked while the program changed stays masked after allow --renew', () => {
      const ws = workspace(runnerAccount(runner));
      initWithToken(ws);
      put(ws, 'STRIPE_KEY', 'sk-live-0a1b2c3d4e5f');
      const script = echoScript(ws, 'deploy.sh', ['STRIPE_KEY']);
      expect(ws.run(['allow', 'STRIPE_KEY', '--to', script]).status).toBe(0);
      expect(ws.run(['exec', '--', script], { env: { CI: 'true' } }).stdout).toBe('***\n');
      markConfig(ws, 'STRIPE_KEY');
      fs.appendFileSync(script, '# version 2\n');
      expect(ws.run(['allow', '--renew', script]).status).toBe(0);
      expect(ws.run(['exec', '--', script], { env: { CI: 'true' } }).stdout).toBe('***\n');
    });
  });
}

describe('configuration marks and a name that changes kind', () => {
  // was open: a grant's `config` outlived the value it was made for; the kind now lives in the value
  it('a secret put under a name once granted as configuration stays masked when a writer marks its file', () => {
    const ws = workspace();
    initWithToken(ws);
    put(ws, 'API_URL', 'https://api.example.com', ['--config']);
    const script = echoScript(ws, 'show.sh', ['API_URL']);
    expect(ws.run(['allow', 'API_URL', '--to', script]).status).toBe(0);
    expect(ws.run(['exec', '--', script], { env: { CI: 'true' } }).stdout).toBe('https://api.example.com\n');
    expect(ws.run(['rm', 'API_URL']).status).toBe(0);
    put(ws, 'API_URL', 'now-a-real-secret-4242');
    expect(ws.run(['exec', '--', script], { env: { CI: 'true' } }).stdout).toBe('***\n');
    markConfig(ws, 'API_URL');
    expect(ws.run(['exec', '--', script], { env: { CI: 'true' } }).stdout).toBe('***\n');
  });
});

describe('project vaults another user prepared', () => {
  const asRoot = it.skipIf(!IS_ROOT);
  asRoot('a .sealvault (a checkout\'s: the user\'s own file) naming another user\'s vault is refused', () => {
    const ws = workspace();
    const other = systemUser('sealvault-test', 'nobody')!;
    // another local user's vault, left open for writing
    const foreign = path.join(ws.root, 'foreign-vault');
    expect(ws.run(['init', '--token', '--vault', foreign]).status).toBe(0);
    spawnSync('chown', ['-R', `${other.uid}:${other.gid}`, foreign]);
    spawnSync('chmod', ['-R', 'a+rwX', foreign]);
    fs.writeFileSync(path.join(ws.project, '.sealvault'), `${foreign}\n`);
    const stored = ws.run(['put', 'DB_PASSWORD'], { input: 'victim-value-31337' });
    expect(stored.status).toBe(11);
    const refusal = `${foreign} \\(named by .*\\.sealvault\\) belongs to uid ${other.uid}, not to you`;
    expect(stored.stderr).toMatch(new RegExp(refusal));
    expect(stored.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.readdirSync(path.join(foreign, 'secrets'))).toEqual([]);
  });

  asRoot('a .vault link another user planted above the working directory: its real directory is used', () => {
    const ws = workspace();
    const other = systemUser('sealvault-test', 'nobody')!;
    const mine = path.join(ws.root, 'my-vault');
    const init = ws.run(['init', '--token', '--vault', mine]);
    ws.env.VAULT_KEY = init.stdout.trim();
    const shared = path.join(ws.root, 'shared-tmp');
    fs.mkdirSync(path.join(shared, 'work'), { recursive: true });
    fs.chmodSync(shared, 0o1777);
    // the link is theirs; it leads to the user's own vault, so it is taken, but by its real path:
    // a link kept by someone else could be pointed at their vault between the check and the writes
    fs.symlinkSync(mine, path.join(shared, '.vault'));
    fs.lchownSync(path.join(shared, '.vault'), other.uid, other.gid);
    const stored = ws.run(['put', 'VIA_LINK'], { input: 'v-1', cwd: path.join(shared, 'work') });
    expect(stored.status).toBe(0);
    expect(stored.stderr).toMatch(`using the project vault ${mine} (found upward;`);
    // pointed at their own vault, it is refused
    const theirs = path.join(ws.root, 'their-vault');
    fs.mkdirSync(theirs, { mode: 0o777 });
    fs.chownSync(theirs, other.uid, other.gid);
    fs.rmSync(path.join(shared, '.vault'));
    fs.symlinkSync(theirs, path.join(shared, '.vault'));
    const refused = ws.run(['put', 'VIA_LINK_2'], { input: 'v-2', cwd: path.join(shared, 'work') });
    expect(refused.status).toBe(11);
    expect(refused.stderr).toMatch(/belongs to uid \d+, not to you/);
  });

  it('a working directory deeper than PATH_MAX: one line saying so, through node and the launcher', () => {
    const ws = workspace();
    initWithToken(ws);
    const part = 'd'.repeat(200);
    for (const words of [ws.cliCommand(['list']), [path.join(ROOT, 'build', 'Release', 'vault_launcher'), 'list']]) {
      const deep = path.join(ws.root, 'deep');
      fs.mkdirSync(deep);
      // 25 levels of 200 bytes: 5,000 bytes of path, which getcwd(3) cannot return
      const shell = `cd '${deep}' && for i in $(seq 1 25); do mkdir ${part} && cd ${part}; done && exec "$@"`;
      const run = spawnSync('bash', ['-c', shell, 'bash', ...words], {
        env: ws.env, encoding: 'utf8', timeout: 30_000,
      });
      expect(run.status).toBe(2);
      spawnSync('rm', ['-rf', deep]); // rm walks below PATH_MAX; fs.rmSync does not
      expect(run.stderr).toMatch(/^vault: the working directory's path is longer than PATH_MAX [^\n]*\n$/);
    }
  });
});

describe('vault import of hostile input', () => {
  it('an unquoted multi-line key: the refusal names lines, never a piece of the value', () => {
    const ws = workspace();
    initWithToken(ws);
    const body = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj';
    const tail = 'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t';
    const input = `GOOD=1\nPRIVATE_KEY=-----BEGIN PRIVATE KEY-----\n${body}\n${tail}==\n-----END PRIVATE KEY-----\n`;
    const before = ws.vaultFiles();
    const result = ws.run(['import', '-'], { input });
    expect(result.status).toBe(12);
    expect(result.stderr).toMatch(/cannot be secret names .*on line\(s\) 4 of stdin/);
    expect(result.stderr).not.toContain(tail.slice(0, 12));
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(ws.vaultFiles()).toEqual(before);
  });

  it('/dev/zero and a directory: one line, a documented code, in bounded time, nothing stored', () => {
    const ws = workspace();
    initWithToken(ws);
    const before = ws.vaultFiles();
    const cases = [['/dev/zero', /is over 64 MiB; nothing was stored/], [ws.root, /is a directory/]] as const;
    for (const [source, pattern] of cases) {
      const result = ws.run(['import', source], { timeout: 60_000 });
      expect(result.signal).toBeNull();
      expect(result.status).toBe(2);
      expect(result.stderr).toMatch(pattern);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(ws.vaultFiles()).toEqual(before);
  });
});
