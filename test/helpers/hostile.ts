/**
 * The vault that test/hostile-writer*.test.ts attack: owned by the runner's account, holding DB,
 * granted to a script that leaves a marker when it runs. Both files start every test from it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { initWithToken, makeWorkspace, put, type RunResult, type Workspace } from './cli.js';
import { type Account, IS_ROOT } from './users.js';

/** The value of DB. */
export const HOSTILE_SECRET = 'hostile-writer-secret-0099';
/** Long enough for a run that hangs or goes quadratic to show as killed, short enough for the suite. */
export const BOUND = { timeout: 20_000 };

/** A run killed at BOUND hung. */
export function expectBounded(result: RunResult): void {
  expect(result.signal, 'the run was killed at the time bound: it hung').toBeNull();
}

/** Gives `file` to the vault's owner (when root runs the test), as a writer of the vault would have it. */
export function giveTo(account: Account | undefined, file: string): void {
  if (IS_ROOT && account !== undefined) fs.lchownSync(file, account.uid, account.gid);
}

/**
 * A vault of `account` with DB granted to `script` (project/deploy.sh, printing `db=LENGTH` and
 * touching `marker`), checked to run once; the marker is removed again.
 */
export function grantedVault(account: Account | undefined): { ws: Workspace; script: string; marker: string } {
  const ws = makeWorkspace({ account });
  initWithToken(ws);
  put(ws, 'DB', HOSTILE_SECRET);
  const marker = path.join(ws.project, 'target-ran');
  const script = path.join(ws.project, 'deploy.sh');
  fs.writeFileSync(script, `#!/bin/sh\ntouch ${marker}\necho "db=\${#DB}"\n`, { mode: 0o755 });
  giveTo(account, script);
  expect(ws.run(['allow', 'DB', '--to', script]).status).toBe(0);
  expect(ws.run(['exec', '--', script], BOUND).stdout).toBe(`db=${HOSTILE_SECRET.length}\n`);
  fs.rmSync(marker);
  return { ws, script, marker };
}
