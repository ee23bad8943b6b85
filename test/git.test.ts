/**
 * A vault directory is meant to be committed and shared: its files hold nothing secret, local
 * files stay out of git, a put changes only the files of that secret and adds one audit entry, and
 * a clone at another path works as the original.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';
import { openAllSecrets } from './helpers/open-vault.js';

describe('a vault in a git repository', () => {
  let ws: Workspace;
  let repo: string;
  const git = (cwd: string, ...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.invalid', ...args], { cwd, encoding: 'utf8' });

  beforeEach(() => {
    ws = makeWorkspace();
    repo = path.join(ws.root, 'repo');
    fs.mkdirSync(repo);
    git(repo, 'init', '-q');
    ws.env.VAULT_DIR = path.join(repo, '.vault');
  });
  afterEach(() => ws.cleanup());

  it('commits without local files, diffs only what a put changed, and works from a clone elsewhere', async () => {
    const token = initWithToken(ws);
    for (const name of ['ALPHA', 'BRAVO', 'CHARLIE']) put(ws, name, `${name.toLowerCase()}-value-123456`);
    git(repo, 'add', '.vault');
    git(repo, 'commit', '-qm', 'vault');
    const tracked = git(repo, 'ls-files').trim().split('\n');
    expect(tracked.some((f) => f.includes('.lock') || f.includes('.tmp/'))).toBe(false);
    expect(tracked).toContain('.vault/vault.json');

    // a change adds one new file to audit/ (named by the hash of its bytes) and modifies no tracked audit file
    const status = () => git(repo, 'status', '--porcelain', '--untracked-files=all').trimEnd().split('\n').sort();
    const newEntry = (lines: string[]) => {
      const added = lines.filter((l) => l.startsWith('?? .vault/audit/'));
      expect(added).toHaveLength(1);
      const file = added[0]!.slice(3);
      const name = path.basename(file, '.json');
      expect(createHash('sha256').update(fs.readFileSync(path.join(repo, file))).digest('hex')).toBe(name);
      return `?? .vault/audit/${name}.json`;
    };
    put(ws, 'DELTA', 'delta-value-123456');
    const afterDelta = status();
    expect(afterDelta).toEqual([newEntry(afterDelta), '?? .vault/secrets/DELTA.json']);
    git(repo, 'add', '.vault');
    git(repo, 'commit', '-qm', 'delta');
    put(ws, 'BRAVO', 'bravo-value-changed', ['--force']);
    const afterBravo = status();
    expect(afterBravo).toEqual([' M .vault/secrets/BRAVO.json', newEntry(afterBravo)]);
    git(repo, 'add', '.vault');
    git(repo, 'commit', '-qm', 'bravo');

    const clone = path.join(ws.root, 'elsewhere', 'checkout');
    git(ws.root, 'clone', '-q', repo, clone);
    const cloned = path.join(clone, '.vault');
    const verify = ws.run(['verify'], { env: { VAULT_DIR: cloned, XDG_STATE_HOME: path.join(ws.root, 'ci-state') } });
    expect(verify.status, verify.stderr).toBe(0);
    const values = await openAllSecrets(cloned, token);
    expect(values.get('BRAVO')?.toString()).toBe('bravo-value-changed');
    expect([...values.keys()]).toEqual(['ALPHA', 'BRAVO', 'CHARLIE', 'DELTA']);
  });
});
