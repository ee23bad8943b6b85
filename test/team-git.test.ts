/**
 * A team vault shared through git (issue 14, docs/team.md), with real repositories and clones:
 * runs never dirty the repository; branches that each put, remove, grant and revoke merge, rebase
 * and pull with no hand edit (the merge driver writes the union of two policies, or
 * `vault policy merge` does after a plain git merge); switching branches back and forth works;
 * removing a member rekeys, and their slot restored from history opens nothing put afterwards.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeWorkspace, type RunResult, type Workspace } from './helpers/cli.js';

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'test', GIT_AUTHOR_EMAIL: 'test@example.invalid', GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid', GIT_CONFIG_NOSYSTEM: '1',
};

/** One person: their own home and state, a clone of the team's repository, and the vault in it. */
interface Member {
  name: string;
  ws: Workspace;
  clone: string;
  vault(args: string[], extra?: NodeJS.ProcessEnv): RunResult;
  git(...args: string[]): string;
  /** git that may fail: its status and output. */
  tryGit(...args: string[]): { status: number | null; output: string };
}

function ok(result: RunResult, what: string): RunResult {
  expect(result.status, `${what}: ${result.stderr}`).toBe(0);
  return result;
}

describe('a team vault in git', () => {
  let origin: string;
  let members: Member[];
  let script: string;

  function member(name: string): Member {
    const ws = makeWorkspace();
    const clone = path.join(ws.root, 'clone');
    ws.env = { ...ws.env, ...GIT_ENV, VAULT_DIR: path.join(clone, '.vault'), HOME: ws.env.HOME };
    const env = () => {
      const merged: Record<string, string> = {};
      for (const [k, v] of Object.entries({ ...process.env, ...ws.env })) if (v !== undefined) merged[k] = v;
      return merged;
    };
    const tryGit = (...args: string[]) => {
      const r = spawnSync('git', args, { cwd: fs.existsSync(clone) ? clone : ws.root, env: env(), encoding: 'utf8' });
      return { status: r.status, output: `${r.stdout}${r.stderr}` };
    };
    const m: Member = {
      name, ws, clone,
      vault: (args, extra = {}) => ws.run(args, { env: extra, cwd: fs.existsSync(clone) ? clone : ws.root }),
      git: (...args) => execFileSync('git', args, { cwd: fs.existsSync(clone) ? clone : ws.root, env: env(), encoding: 'utf8' }),
      tryGit,
    };
    members.push(m);
    return m;
  }

  /** A member's age identity and recipient. */
  function identity(m: Member): { file: string; recipient: string } {
    const file = path.join(m.ws.root, 'identity.txt');
    const recipient = ok(m.vault(['identity', 'new', file]), 'identity new').stdout.trim();
    m.ws.env.VAULT_IDENTITY_FILE = file;
    return { file, recipient };
  }

  const commitAll = (m: Member, message: string) => {
    m.git('add', '-A');
    m.git('commit', '-qm', message);
  };

  const put = (m: Member, name: string, value: string, extra: string[] = []) =>
    ok(m.ws.run(['put', name, ...extra], { input: value, cwd: m.clone }), `${m.name} put ${name}`);

  const run = (m: Member) => ok(m.vault(['exec', '--no-mask', '--', script]), `${m.name} exec`).stdout;

  beforeEach(() => {
    members = [];
    const holder = makeWorkspace();
    members.push({ ws: holder } as Member);
    origin = path.join(holder.root, 'origin.git');
    execFileSync('git', ['init', '-q', '--bare', '-b', 'main', origin]);
    // the program the team grants: at the same path for everyone (a grant follows the bytes anyway)
    script = path.join(holder.root, 'show.sh');
    fs.writeFileSync(script, '#!/bin/sh\nprintf "%s|%s|%s\\n" "${ALPHA-}" "${BRAVO-}" "${CHARLIE-}"\n', { mode: 0o755 });
  });
  afterEach(() => {
    for (const m of members) m.ws.cleanup();
  });

  /** Alice makes the vault (a token slot of hers), adds bob's and carol's recipients, grants ALPHA, pushes main. */
  function team(): { alice: Member; bob: Member; carol: Member; token: string } {
    const alice = member('alice');
    alice.git('clone', '-q', origin, alice.clone);
    const token = ok(alice.vault(['init', '--token']), 'init').stdout.trim();
    alice.ws.env.VAULT_KEY = token;
    put(alice, 'ALPHA', 'alpha');
    const bob = member('bob');
    const carol = member('carol');
    for (const m of [bob, carol]) ok(alice.vault(['recipient', 'add', m.name, identity(m).recipient]), `add ${m.name}`);
    ok(alice.vault(['allow', 'ALPHA', '--to', script]), 'allow');
    ok(alice.vault(['git', 'setup']), 'git setup');
    commitAll(alice, 'the team vault');
    alice.git('push', '-q', 'origin', 'HEAD:main');
    for (const m of [bob, carol]) {
      m.git('clone', '-q', '-b', 'main', origin, m.clone);
      ok(m.vault(['git', 'setup']), `${m.name} git setup`);
      ok(m.vault(['verify']), `${m.name} first use`); // pins the key, as it is now
    }
    return { alice, bob, carol, token };
  }

  it('a run never changes the repository: pull after local execs is a fast-forward with nothing to stash', () => {
    const { alice, bob } = team();
    for (const m of [alice, bob]) {
      expect(run(m)).toBe('alpha||\n');
      expect(m.git('status', '--porcelain'), `${m.name}: a run left changes`).toBe('');
      expect(ok(m.vault(['audit', '--runs']), 'runs').stdout).toMatch(/release .*exit/s);
    }
    alice.git('fetch', '-q');
    const pulled = bob.tryGit('pull', '-q', '--ff-only', 'origin', 'main');
    expect(pulled.status, pulled.output).toBe(0);
  });

  it('two branches that each put, grant and revoke merge with no hand edit; verify passes on both sides', () => {
    const { alice, bob } = team();
    // alice on main: a new secret granted
    put(alice, 'BRAVO', 'bravo-from-alice');
    ok(alice.vault(['allow', 'BRAVO', '--to', script]), 'allow BRAVO');
    run(alice);
    commitAll(alice, 'bravo');
    alice.git('push', '-q', 'origin', 'HEAD:main');
    // bob on a branch from before: another secret, and ALPHA revoked
    bob.git('checkout', '-qb', 'bob-work');
    put(bob, 'CHARLIE', 'charlie-from-bob');
    ok(bob.vault(['allow', 'CHARLIE', '--to', script]), 'allow CHARLIE');
    ok(bob.vault(['revoke', 'ALPHA', '--from', script]), 'revoke ALPHA');
    run(bob);
    commitAll(bob, 'charlie, no alpha');
    // the merge: git runs the driver, which unlocks with bob's identity and writes the union
    bob.git('fetch', '-q', 'origin');
    const merged = bob.tryGit('merge', '--no-edit', 'origin/main');
    expect(merged.status, merged.output).toBe(0);
    expect(merged.output).toMatch(/merged the policies of both branches/);
    ok(bob.vault(['verify']), 'bob verify after merge');
    ok(bob.vault(['audit', '--verify']), 'audit after merge');
    const policy = JSON.parse(ok(bob.vault(['policy', '--json']), 'policy').stdout) as { grants: { secret: string }[] };
    expect(policy.grants.map((g) => g.secret).sort()).toEqual(['BRAVO', 'CHARLIE']); // ALPHA stays revoked
    expect(run(bob)).toBe('|bravo-from-alice|charlie-from-bob\n');
    // the next write joins the two heads of the audit log into one
    put(bob, 'DELTA', 'd');
    const heads = JSON.parse(ok(bob.vault(['audit', '--json']), 'audit').stdout.trim().split('\n').at(-1)!) as { parents: string[] };
    expect(heads.parents).toHaveLength(2);
    commitAll(bob, 'delta');
    bob.git('push', '-q', 'origin', 'HEAD:main');

    // alice pulls after her own runs: a fast-forward, and everything verifies
    run(alice);
    const pulled = alice.tryGit('pull', '-q', '--ff-only', 'origin', 'main');
    expect(pulled.status, pulled.output).toBe(0);
    ok(alice.vault(['verify']), 'alice verify after pull');
    expect(run(alice)).toBe('|bravo-from-alice|charlie-from-bob\n');
  });

  it('without the driver, git leaves a conflict that verify names and `vault policy merge` resolves', () => {
    const { alice, bob } = team();
    bob.git('config', '--remove-section', 'merge.sealvault-policy'); // a clone that never ran `vault git setup`
    put(alice, 'BRAVO', 'b');
    ok(alice.vault(['allow', 'BRAVO', '--to', script]), 'allow');
    commitAll(alice, 'bravo');
    alice.git('push', '-q', 'origin', 'HEAD:main');
    put(bob, 'CHARLIE', 'c');
    ok(bob.vault(['allow', 'CHARLIE', '--to', script]), 'allow');
    commitAll(bob, 'charlie');
    bob.git('fetch', '-q', 'origin');
    const merged = bob.tryGit('merge', '--no-edit', 'origin/main');
    expect(merged.status).not.toBe(0);
    expect(merged.output).toMatch(/CONFLICT .*policy\.json/);
    const refused = bob.vault(['verify']);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toMatch(/holds a git merge conflict: two branches changed the policy; run `vault policy merge`/);
    const resolved = ok(bob.vault(['policy', 'merge']), 'policy merge');
    expect(resolved.stderr).toMatch(/merged policy revisions \d+ and \d+ into revision \d+/);
    bob.git('add', '-A');
    bob.git('commit', '-qm', 'merge');
    ok(bob.vault(['verify']), 'verify after policy merge');
    expect(run(bob)).toBe('alpha|b|c\n');
  });

  it('a rebase onto the team branch after local runs needs no hand edit either', () => {
    const { alice, bob } = team();
    put(alice, 'BRAVO', 'b');
    ok(alice.vault(['allow', 'BRAVO', '--to', script]), 'allow');
    commitAll(alice, 'bravo');
    alice.git('push', '-q', 'origin', 'HEAD:main');
    put(bob, 'CHARLIE', 'c');
    ok(bob.vault(['allow', 'CHARLIE', '--to', script]), 'allow');
    run(bob);
    commitAll(bob, 'charlie');
    const rebased = bob.tryGit('pull', '--rebase', '-q', 'origin', 'main');
    expect(rebased.status, rebased.output).toBe(0);
    ok(bob.vault(['verify']), 'verify after rebase');
    expect(run(bob)).toBe('alpha|b|c\n');
  });

  it('switching branches back and forth: an older branch with fewer grants runs; a grant revoked elsewhere is refused by name', () => {
    const { alice } = team();
    put(alice, 'ALPHA', 'a', ['--force']);
    commitAll(alice, 'alpha value');
    alice.git('checkout', '-qb', 'more');
    put(alice, 'BRAVO', 'b');
    ok(alice.vault(['allow', 'BRAVO', '--to', script]), 'allow');
    commitAll(alice, 'bravo');
    for (let round = 0; round < 2; round += 1) {
      alice.git('checkout', '-q', 'main');
      expect(run(alice), 'main: fewer grants').toBe('a||\n');
      ok(alice.vault(['verify']), 'verify on main');
      alice.git('checkout', '-q', 'more');
      expect(run(alice), 'more').toBe('a|b|\n');
    }
    // a revoke on this branch: main still has the grant, and is refused until it is revoked there too
    ok(alice.vault(['revoke', 'ALPHA', '--from', script]), 'revoke');
    commitAll(alice, 'no alpha');
    alice.git('checkout', '-q', 'main');
    const refused = alice.vault(['exec', '--no-mask', '--', script]);
    expect(refused.status).toBe(125);
    expect(refused.stderr).toMatch(/you saw revoked: ALPHA to .*vault revoke ALPHA --from/);
    ok(alice.vault(['revoke', 'ALPHA', '--from', script]), 'revoke on main');
    ok(alice.vault(['verify']), 'verify on main after the revoke');
  });

  it('removing a member rekeys: their slot from history opens nothing put after; the others trust the new key', () => {
    const { alice, bob, carol } = team();
    const bobSlot = JSON.parse(ok(alice.vault(['key', 'list', '--json']), 'key list').stdout)
      .find((s: { label?: string }) => s.label === 'bob').id as string;
    const removed = ok(alice.vault(['recipient', 'rm', 'bob']), 'recipient rm');
    const fingerprint = /fingerprint (svfp1_[0-9a-f]{40})/.exec(removed.stderr)![1]!;
    put(alice, 'CHARLIE', 'after-bob');
    ok(alice.vault(['allow', 'CHARLIE', '--to', script]), 'allow');
    commitAll(alice, 'bob leaves');
    alice.git('push', '-q', 'origin', 'HEAD:main');

    // bob pulls: a new key; the fingerprint is no secret, so he pins it; his slot is gone, and restored from git
    // history it holds the retired key, which opens nothing of this vault
    bob.git('pull', '-q', 'origin', 'main');
    expect(bob.vault(['verify']).status).toBe(9);
    ok(bob.vault(['trust', '--fingerprint', fingerprint]), 'bob trust');
    const gone = bob.vault(['verify']);
    expect(gone.status, gone.stderr).toBe(7);
    const old = bob.git('show', `HEAD~1:.vault/slots/${bobSlot}.json`);
    fs.writeFileSync(path.join(bob.clone, '.vault', 'slots', `${bobSlot}.json`), old);
    const planted = bob.vault(['verify']);
    expect(planted.status, planted.stderr).toBe(9);
    expect(planted.stderr).toMatch(/not this vault's/);
    // carol: a new key, which she accepts with the fingerprint alice told her
    carol.git('pull', '-q', 'origin', 'main');
    const changed = carol.vault(['verify']);
    expect(changed.status, changed.stderr).toBe(9);
    expect(changed.stderr).toMatch(/public key .* changed .* rekeyed/);
    ok(carol.vault(['trust', '--fingerprint', fingerprint]), 'trust');
    expect(run(carol)).toBe('alpha||after-bob\n');
    // and back on a checkout from before the rekey, alice is told what it is
    alice.git('checkout', '-q', 'HEAD~1');
    const older = alice.vault(['list']);
    expect(older.status).toBe(9);
    expect(older.stderr).toMatch(/key pair its rekey retired/);
  });
});
