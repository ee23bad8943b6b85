/**
 * How long the private key lives in the process that runs a target. `vault exec` on its own wipes it
 * once the released values are open, before the target starts (it has no use for it afterwards); the
 * agent keeps it for its next client. In-process, with the real helper, so that the key's own bytes
 * can be looked at while the target runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execGranted, ownExecCaller } from '../src/sandbox/exec.js';
import { Vault } from '../src/vault/vault.js';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';

describe('the private key while a target runs', () => {
  let ws: Workspace;
  let script: string;
  beforeEach(() => {
    ws = makeWorkspace();
    process.env.VAULT_KEY = initWithToken(ws);
    process.env.XDG_STATE_HOME = ws.env.XDG_STATE_HOME;
    put(ws, 'DB', 'key-lifetime-secret-00');
    script = path.join(ws.project, 'job.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho "${#DB}"\n', { mode: 0o755 });
    expect(ws.run(['allow', 'DB', '--to', script, '--min-tier', 'none']).status).toBe(0);
  });
  afterEach(() => {
    delete process.env.VAULT_KEY;
    ws.cleanup();
  });

  /** Runs the script in-process and reports whether the key was all zero bytes when the helper started. */
  async function keyWipedAtSpawn(wipeKeyBeforeRun: boolean): Promise<{ wiped: boolean; stdout: string }> {
    const vault = Vault.open(ws.vaultDir);
    const unlocked = await vault.unlock();
    const key = (unlocked as unknown as { keys: { secretKey: Uint8Array } }).keys.secretKey;
    let wiped: boolean | undefined;
    try {
      const result = await execGranted(
        unlocked,
        { tier: 'none', argv: [script], files: [] },
        { stdio: 'pipe', onSpawn: () => (wiped = key.every((b) => b === 0)) },
        { ...ownExecCaller(), cwd: ws.project, wipeKeyBeforeRun },
      );
      return { wiped: wiped!, stdout: result.stdout?.toString() ?? '' };
    } finally {
      unlocked.close();
      vault.close();
    }
  }

  it('vault exec on its own: wiped before the target starts', async () => {
    expect(await keyWipedAtSpawn(true)).toEqual({ wiped: true, stdout: '22\n' });
  });

  it('the agent: kept, for its next client', async () => {
    expect(await keyWipedAtSpawn(false)).toEqual({ wiped: false, stdout: '22\n' });
  });
});
