/**
 * Red-team review of the everyday features (issue 15, commit db54e5a): what a writer of the vault
 * without the key, a caller, or another local user could do with configuration values, project
 * vault discovery and `vault import`. Each case is an attack that worked before its fix; the last
 * configuration cases hold since the kind is sealed with the value. As root and as an unprivileged user where
 * the sandbox runs; cases that need a second user's files run as root. Round 2 (after f4f3402, red15b): the
 * attacks on the sealed kind byte and on the empty-journal rule of rekey.ts that held, kept so that they keep holding.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sodium from 'libsodium-wrappers-sumo';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, ROOT, TEST_CLI, type Workspace } from './helpers/cli.js';
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

const SECRET_FOR_REKEY = 'rk-live-9f8e7d6c5b4a';

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

/**
 * What a writer without the key can do to a value: seal `NAME ‖ kind ‖ value` with the vault's public
 * key (docs/FORMAT.md, "Secrets"), a kind of `undefined` leaving the byte out, and put it in NAME's file.
 */
function sealAsWriter(ws: Workspace, name: string, kind: number | undefined, value: string): void {
  const vaultFile = JSON.parse(fs.readFileSync(path.join(ws.vaultDir, 'vault.json'), 'utf8')) as { public_key: string };
  const publicKey = sodium.from_base64(vaultFile.public_key, sodium.base64_variants.ORIGINAL);
  const message = Buffer.concat([Buffer.from(name), Buffer.from(kind === undefined ? [] : [kind]), Buffer.from(value)]);
  const file = path.join(ws.vaultDir, 'secrets', `${name}.json`);
  const stat = fs.statSync(file);
  const sealed = sodium.to_base64(sodium.crypto_box_seal(message, publicKey), sodium.base64_variants.ORIGINAL);
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), sealed }));
  if (IS_ROOT) fs.chownSync(file, stat.uid, stat.gid);
}

beforeAll(async () => {
  await sodium.ready;
});

for (const runner of RUNNERS) {
  describe(`configuration beside a secret, as ${runner} (red team, round 2: held)`, () => {
    const SECRET = 'sk-live-0a1b2c3d4e5f';

    // configuration is never a pattern of the masker, so no configuration value, however it overlaps
    // a secret, can take a secret's occurrence out of the masked output
    it('a configuration value that is a prefix, a suffix or a superstring of a secret leaves it masked', () => {
      const ws = workspace(runnerAccount(runner));
      initWithToken(ws);
      put(ws, 'STRIPE_KEY', SECRET);
      put(ws, 'PREFIX', SECRET.slice(0, 14), ['--config']);
      put(ws, 'SUFFIX', `${SECRET.slice(-6)}-tail`, ['--config']);
      put(ws, 'AROUND', `XX${SECRET}YY`, ['--config']);
      const script = path.join(ws.project, 'show.sh');
      fs.writeFileSync(script, [
        '#!/bin/sh',
        'echo "1:$PREFIX$STRIPE_KEY"',
        'echo "2:$AROUND"',
        'echo "3:$STRIPE_KEY$SUFFIX"',
        // the secret pieced together from a configuration value and the rest of it
        `printf '4:%s%s\n' "$PREFIX" '${SECRET.slice(14)}'`,
        '',
      ].join('\n'), { mode: 0o755 });
      if (IS_ROOT) fs.chownSync(script, fs.statSync(ws.project).uid, fs.statSync(ws.project).gid);
      expect(ws.run(['allow', 'STRIPE_KEY', 'PREFIX', 'SUFFIX', 'AROUND', '--to', script]).status).toBe(0);
      const run = ws.run(['exec', '--', script], { env: { CI: 'true' } });
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toBe(`1:${SECRET.slice(0, 14)}***\n2:XX***YY\n3:***${SECRET.slice(-6)}-tail\n4:***\n`);
    });

    it('a writer\'s own seal under a granted name: a kind byte other than 0x00 and 0x01, or none, is refused', () => {
      const ws = workspace(runnerAccount(runner));
      initWithToken(ws);
      put(ws, 'STRIPE_KEY', SECRET);
      put(ws, 'REGION', 'eu-west-1', ['--config']);
      const script = echoScript(ws, 'show.sh', ['STRIPE_KEY', 'REGION']);
      expect(ws.run(['allow', 'STRIPE_KEY', 'REGION', '--to', script]).status).toBe(0);
      for (const kind of [0x02, 0xff, undefined]) {
        sealAsWriter(ws, 'REGION', kind, `${kind ?? 'none'}-${SECRET}`);
        const run = ws.run(['exec', '--', script], { env: { CI: 'true' } });
        expect(run.status, `kind ${kind}`).toBe(125);
        expect(run.stdout, `kind ${kind}`).toBe('');
        expect(run.stderr.trim().split('\n'), `kind ${kind}`).toHaveLength(1);
        expect(ws.run(['verify']).status, `kind ${kind}`).toBe(9);
      }
      // sealed as configuration by the writer: the program gets the writer's value (a writer may
      // replace values), unmasked, and the secret beside it stays masked
      sealAsWriter(ws, 'REGION', 0x01, 'writer-chosen');
      expect(ws.run(['exec', '--', script], { env: { CI: 'true' } }).stdout).toBe('*** writer-chosen\n');
      // the same value moved into the secret's file: sealed under another name
      const fileOf = (name: string) => path.join(ws.vaultDir, 'secrets', `${name}.json`);
      const readFile = (name: string) => JSON.parse(fs.readFileSync(fileOf(name), 'utf8')) as Record<string, unknown>;
      const stat = fs.statSync(fileOf('STRIPE_KEY'));
      const swappedFile = { ...readFile('STRIPE_KEY'), sealed: readFile('REGION').sealed, config: true };
      fs.writeFileSync(fileOf('STRIPE_KEY'), JSON.stringify(swappedFile));
      if (IS_ROOT) fs.chownSync(fileOf('STRIPE_KEY'), stat.uid, stat.gid);
      const swapped = ws.run(['exec', '--', script], { env: { CI: 'true' } });
      expect(swapped.status).toBe(125);
      expect(swapped.stdout).toBe('');
    });
  });

  describe(`a rekey journal a writer emptied or filled with links and FIFOs, as ${runner} (round 2: held)`, () => {
    // only the user whose rekey it is finishes a journal, so the planted entries are tried where the
    // empty-journal rule applies: after their own rekey was killed with vault.json moved into place
    const plants: [string, (journal: string, outside: string) => void, number][] = [
      ['secrets/ a FIFO', (j) => {
        fs.rmdirSync(path.join(j, 'secrets'));
        spawnSync('mkfifo', [path.join(j, 'secrets')]);
      }, 13],
      ['slots/ a link to a directory outside', (j, outside) => {
        fs.rmdirSync(path.join(j, 'slots'));
        fs.symlinkSync(outside, path.join(j, 'slots'));
      }, 13],
      ['manifest.json a FIFO', (j) => void spawnSync('mkfifo', [path.join(j, 'manifest.json')]), 13],
      ['a link beside empty secrets/ and slots/', (j, outside) => {
        fs.symlinkSync(path.join(outside, 'keep.json'), path.join(j, 'x'));
      }, 4],
      ['an empty directory in secrets/', (j) => fs.mkdirSync(path.join(j, 'secrets', 'sub')), 4],
    ];
    // a journal holding more than empty secrets/ and slots/ is not taken as finished
    it('no command hangs and nothing outside the vault is removed', { timeout: 180_000 }, () => {
      const account = runnerAccount(runner);
      const ws = workspace(account);
      initWithToken(ws);
      put(ws, 'STRIPE_KEY', SECRET_FOR_REKEY);
      const testCli = account !== undefined ? path.join(ws.root, 'app', 'dist', 'test', 'vault.mjs') : TEST_CLI;
      const outside = path.join(ws.root, 'outside');
      fs.mkdirSync(outside);
      fs.writeFileSync(path.join(outside, 'keep.json'), 'keep');
      for (const [what, plant, code] of plants) {
        const killed = ws.run(['rekey'], { cli: testCli, env: { SEALVAULT_TEST_REKEY_CRASH: 'moved' } });
        expect(killed.signal, `${what}: ${killed.stderr}`).toBe('SIGKILL');
        const journal = path.join(ws.vaultDir, '.rekey');
        fs.rmSync(path.join(journal, 'manifest.json'));
        plant(journal, outside);
        const run = ws.run(['list'], { timeout: 20_000 });
        expect(run.signal, what).toBeNull();
        expect(run.status, `${what}: ${run.stderr}`).toBe(code);
        expect(run.stderr.trim().split('\n'), what).toHaveLength(1);
        expect(fs.readdirSync(outside), what).toEqual(['keep.json']);
        // the user clears it, as the refusal says; the vault opens, under the new key
        fs.rmSync(journal, { recursive: true });
        const verified = ws.run(['verify']);
        expect(verified.status, `${what}: ${verified.stderr}`).toBe(0);
      }
      // the journal as it is left by a kill while it is removed (no manifest, empty secrets/ and slots/) is cleared
      ws.run(['rekey'], { cli: testCli, env: { SEALVAULT_TEST_REKEY_CRASH: 'moved' } });
      fs.rmSync(path.join(ws.vaultDir, '.rekey', 'manifest.json'));
      expect(ws.run(['list']).status).toBe(0);
      expect(fs.existsSync(path.join(ws.vaultDir, '.rekey'))).toBe(false);
    });

    it('an empty journal (a rekey applied, killed while its journal was removed) is cleared by anyone', () => {
      // it applies nothing, so a teammate is not refused until the one who rekeyed runs a command
      const ws = workspace(runnerAccount(runner));
      initWithToken(ws);
      put(ws, 'STRIPE_KEY', SECRET_FOR_REKEY);
      for (const sub of ['secrets', 'slots']) fs.mkdirSync(path.join(ws.vaultDir, '.rekey', sub), { recursive: true });
      if (IS_ROOT) spawnSync('chown', ['-R', `${fs.statSync(ws.vaultDir).uid}:${fs.statSync(ws.vaultDir).gid}`, ws.vaultDir]);
      const run = ws.run(['list'], { timeout: 20_000 });
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/STRIPE_KEY/);
      expect(fs.existsSync(path.join(ws.vaultDir, '.rekey'))).toBe(false);
      // one with anything else in it is a journal: refused, left as it is
      fs.mkdirSync(path.join(ws.vaultDir, '.rekey', 'secrets'), { recursive: true });
      fs.writeFileSync(path.join(ws.vaultDir, '.rekey', 'vault.json'), '{}');
      if (IS_ROOT) spawnSync('chown', ['-R', `${fs.statSync(ws.vaultDir).uid}:${fs.statSync(ws.vaultDir).gid}`, ws.vaultDir]);
      const refused = ws.run(['list'], { timeout: 20_000 });
      expect(refused.status).toBe(9);
      expect(refused.stderr).toMatch(/\.rekey holds a rekey this user did not begin/);
      expect(fs.readdirSync(path.join(ws.vaultDir, '.rekey')).sort()).toEqual(['secrets', 'vault.json']);
    });
  });

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
