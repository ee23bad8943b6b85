/**
 * The attacks of the red-team review of the team vault (issue 14), each run against the real CLI:
 * a removed slot brought back with an older policy, thousands of planted audit heads, a planted
 * rekey journal, a tightened grant rolled back through an older policy or a merge, the merge driver
 * named for another file, and what a removal rekey shows of the slots it keeps.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type RunResult, type Workspace } from './helpers/cli.js';

function ok(result: RunResult, what: string): RunResult {
  expect(result.status, `${what}: ${result.stderr}`).toBe(0);
  return result;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('the team vault after its red-team review', () => {
  let ws: Workspace;
  let show: string;
  const at = (...parts: string[]) => path.join(ws.vaultDir, ...parts);
  const slotIds = () => fs.readdirSync(at('slots')).map((f) => f.replace('.json', '')).sort();

  beforeEach(() => {
    ws = makeWorkspace();
    initWithToken(ws);
    put(ws, 'DB', 'hunter2');
    show = path.join(ws.project, 'show.sh');
    fs.writeFileSync(show, '#!/bin/sh\nprintf "value=%s\\n" "$DB"\n', { mode: 0o755 });
  });
  afterEach(() => ws.cleanup());

  function identity(name: string): { file: string; recipient: string } {
    const file = path.join(ws.root, `${name}.txt`);
    return { file, recipient: ok(ws.run(['identity', 'new', file]), 'identity').stdout.trim() };
  }

  it('a slot removed with --no-rekey, put back with the policy from before, is not carried by the next rekey', () => {
    const bob = identity('bob');
    ok(ws.run(['recipient', 'add', 'bob', bob.recipient]), 'add bob');
    const bobId = slotIds().find((id) => JSON.parse(fs.readFileSync(at('slots', `${id}.json`), 'utf8')).label === 'bob')!;
    const slotBefore = fs.readFileSync(at('slots', `${bobId}.json`));
    const policyBefore = fs.readFileSync(at('policy.json'));
    ok(ws.run(['recipient', 'rm', 'bob', '--no-rekey']), 'rm --no-rekey');
    // bob, a writer now, puts back his slot and the policy that does not record its removal
    fs.writeFileSync(at('slots', `${bobId}.json`), slotBefore);
    fs.writeFileSync(at('policy.json'), policyBefore);
    const rekey = ok(ws.run(['rekey']), 'rekey');
    expect(rekey.stderr).toMatch(new RegExp(`removed recipient slot ${bobId}`));
    expect(slotIds()).not.toContain(bobId);
    expect(ws.run(['verify'], { env: { VAULT_KEY: undefined, VAULT_IDENTITY_FILE: bob.file } }).status).not.toBe(0);
  });

  it('thousands of planted heads: a put still works, its entry joins at most 64, and `vault audit` ends', () => {
    const dir = at('audit');
    const [init] = fs.readdirSync(dir);
    for (let i = 0; i < 5_000; i += 1) {
      const text = `${JSON.stringify({ time: '2026-01-01T00:00:00.000Z', event: 'put', actor: { uid: 0, user: 'x' },
        details: { name: `P${i}` }, parents: [init!.slice(0, 64)] })}\n`;
      fs.writeFileSync(path.join(dir, `${sha256(text)}.json`), text);
    }
    ok(ws.run(['put', 'AFTER'], { input: 'after' }), 'put');
    const newest = fs.readdirSync(dir).map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')))
      .find((e: { details: { name?: string } }) => e.details.name === 'AFTER') as { parents: string[] };
    expect(newest.parents).toHaveLength(64);
    const started = Date.now();
    ok(ws.run(['audit'], { timeout: 60_000 }), 'audit');
    ok(ws.run(['audit', '--verify']), 'audit --verify');
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  it('a planted .rekey/ journal is not applied: commands refuse, naming it, and no slot is removed', () => {
    ok(ws.run(['allow', 'DB', '--to', show]), 'allow');
    const slots = slotIds();
    fs.mkdirSync(at('.rekey'));
    fs.writeFileSync(at('.rekey', 'manifest.json'),
      '{"format":"sealvault-rekey","version":1,"run":"0123456789abcdef","slots":[],"details":{}}\n');
    for (const args of [['exec', '--no-mask', '--', show], ['list'], ['verify']]) {
      const result = ws.run(args);
      expect(result.status, args[0]).not.toBe(0);
      expect(result.stderr).toMatch(/\.rekey holds a rekey this user did not begin/);
    }
    expect(slotIds()).toEqual(slots);
  });

  it('vault.json stays 0644 through a rekey, as the layout says', () => {
    ok(ws.run(['rekey']), 'rekey');
    expect(fs.statSync(at('vault.json')).mode & 0o777).toBe(0o644);
  });

  it('a tightened grant cannot be loosened by putting back the older policy, nor by a merge of the two', () => {
    ok(ws.run(['allow', 'DB', '--to', show, '--min-tier', 'none']), 'allow loose');
    const loose = fs.readFileSync(at('policy.json'), 'utf8');
    ok(ws.run(['allow', 'DB', '--to', show, '--min-tier', 'hardened', '--mask']), 'allow tight');
    const tight = fs.readFileSync(at('policy.json'), 'utf8');
    expect(ws.run(['exec', '--no-mask', '--', show]).status).toBe(125);

    fs.writeFileSync(at('policy.json'), loose);
    const back = ws.run(['exec', '--no-mask', '--tier', 'none', '--', show]);
    expect(back.status).toBe(125);
    expect(back.stderr).toMatch(/you saw revoked: DB to /);
    expect(back.stdout).not.toMatch(/hunter2/);

    // the two as git's conflict markers: the merge keeps the newer grant only
    fs.writeFileSync(at('policy.json'), `<<<<<<< HEAD\n${loose}=======\n${tight}>>>>>>> other\n`);
    ok(ws.run(['policy', 'merge']), 'policy merge');
    type Grants = { grants: { min_tier: string; mask?: string }[] };
    const merged = JSON.parse(ok(ws.run(['policy', '--json']), 'policy').stdout) as Grants;
    expect(merged.grants).toHaveLength(1);
    expect(merged.grants[0]).toMatchObject({ min_tier: 'hardened', mask: 'stars' });
    expect(ws.run(['exec', '--no-mask', '--', show]).status).toBe(125);
  });

  it('the merge driver merges its vault\'s policy.json only, whatever a .gitattributes names it for', () => {
    const repo = path.join(ws.root, 'repo');
    const env = {
      ...process.env, ...ws.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.invalid', GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@example.invalid', VAULT_DIR: path.join(repo, '.vault'),
    };
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, env, encoding: 'utf8' });
    fs.mkdirSync(repo);
    git('init', '-q', '-b', 'main');
    ok(ws.run(['init', '--token'], { env: { VAULT_DIR: path.join(repo, '.vault') } }), 'init');
    ok(ws.run(['git', 'setup'], { env: { VAULT_DIR: path.join(repo, '.vault') } }), 'git setup');
    // a committed .gitattributes at the top names the driver for every file
    fs.writeFileSync(path.join(repo, '.gitattributes'), '* merge=sealvault-policy\n');
    fs.writeFileSync(path.join(repo, 'README'), 'base\n');
    git('add', '-A');
    git('commit', '-qm', 'base');
    git('checkout', '-qb', 'other');
    fs.writeFileSync(path.join(repo, 'README'), 'other\n');
    git('commit', '-qam', 'other');
    git('checkout', '-q', 'main');
    fs.writeFileSync(path.join(repo, 'README'), 'main\n');
    git('commit', '-qam', 'main');
    const merged = spawnSync('git', ['merge', '--no-edit', 'other'], { cwd: repo, env, encoding: 'utf8' });
    expect(merged.status).not.toBe(0);
    expect(`${merged.stdout}${merged.stderr}`).toMatch(/merges \.vault\/policy\.json only, not README/);
    expect(fs.readFileSync(path.join(repo, 'README'), 'utf8')).toBe('main\n');
  });

  it('a removal rekey shows every slot it keeps, and flags one that no audit entry added', () => {
    const bob = identity('bob');
    const mallory = identity('mallory');
    ok(ws.run(['recipient', 'add', 'bob', bob.recipient]), 'add bob');
    // bob, still a member, makes a slot in a copy of the vault and brings back only its file
    const copy = path.join(ws.root, 'copy');
    fs.cpSync(ws.vaultDir, copy, { recursive: true });
    const bobState = { XDG_STATE_HOME: path.join(ws.root, 'bob-state') };
    ok(ws.run(['--vault', copy, 'recipient', 'add', 'ci-cache', mallory.recipient], { env: bobState }), 'plant');
    const planted = fs.readdirSync(path.join(copy, 'slots')).find((f) => !fs.existsSync(at('slots', f)))!;
    fs.copyFileSync(path.join(copy, 'slots', planted), at('slots', planted));
    const removed = ok(ws.run(['recipient', 'rm', 'bob']), 'rm bob');
    const kept = `kept recipient slot ${planted.slice(0, 12)} \\(ci-cache\\) ${mallory.recipient} \\(no audit entry added it`;
    expect(removed.stderr).toMatch(new RegExp(kept));
  });
});
