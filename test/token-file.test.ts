/**
 * `VAULT_KEY_FILE`: the CI token read from a private file instead of the environment, through the
 * built CLI. The file must be private, is read once, and is hidden from a lockdown target.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';

const ONE_LINE = /^vault: [^\n]+\n$/;

describe('VAULT_KEY_FILE', () => {
  let ws: Workspace;
  let tokenFile: string;
  let script: string;

  beforeEach(() => {
    ws = makeWorkspace();
    const token = initWithToken(ws);
    delete ws.env.VAULT_KEY;
    put(ws, 'API_KEY', 'api-key-value-7d1c');
    tokenFile = path.join(ws.root, 'vault-token');
    fs.writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    script = path.join(ws.root, 'deploy.sh');
    fs.writeFileSync(
      script,
      '#!/bin/sh\necho "api=${#API_KEY}"; echo "key_file=${VAULT_KEY_FILE:-unset}"; echo "token_bytes=$(cat "$1" 2>/dev/null | wc -c)"\n',
      { mode: 0o755 },
    );
  });
  afterEach(() => ws.cleanup());

  it('unlocks from a 0600 file; a lockdown target gets neither the variable nor the file', () => {
    const env = { VAULT_KEY_FILE: tokenFile };
    const allowed = ws.run(['allow', 'API_KEY', '--to', script], { env });
    expect(allowed.status, allowed.stderr).toBe(0);
    const result = ws.run(['exec', '--tier', 'lockdown', '--', script, tokenFile], { env });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toBe('api=18\nkey_file=unset\ntoken_bytes=0\n');
    // the file itself is untouched outside
    expect(fs.readFileSync(tokenFile, 'utf8')).toMatch(/^svt1_/);
  });

  it('in hardened the target can still read the file (no mount namespace); SECURITY.md says so', () => {
    const env = { VAULT_KEY_FILE: tokenFile };
    expect(ws.run(['allow', 'API_KEY', '--to', script], { env }).status).toBe(0);
    const result = ws.run(['exec', '--tier', 'hardened', '--', script, tokenFile], { env });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^api=18\nkey_file=unset\ntoken_bytes=[1-9]\d*\n$/);
  });

  it.each([0o640, 0o604, 0o660])('refuses a file with mode %s: exit 11, one line with the fix', (mode) => {
    fs.chmodSync(tokenFile, mode);
    const result = ws.run(['policy'], { env: { VAULT_KEY_FILE: tokenFile } });
    expect(result.status).toBe(11);
    expect(result.stderr).toMatch(ONE_LINE);
    expect(result.stderr).toContain(`chmod 600 ${tokenFile}`);
    expect(result.stderr).not.toMatch(/svt1_/);
  });

  it('refuses a missing file (3), a directory (2), garbage (2), and both variables at once (2)', () => {
    const missing = ws.run(['policy'], { env: { VAULT_KEY_FILE: path.join(ws.root, 'absent') } });
    expect([missing.status, ONE_LINE.test(missing.stderr)]).toEqual([3, true]);
    const dir = path.join(ws.root, 'a-dir');
    fs.mkdirSync(dir, { mode: 0o700 });
    const directory = ws.run(['policy'], { env: { VAULT_KEY_FILE: dir } });
    expect(directory.status).toBe(2);
    expect(directory.stderr).toMatch(/not a regular file/);
    const garbage = path.join(ws.root, 'garbage');
    fs.writeFileSync(garbage, 'not a token\n', { mode: 0o600 });
    const notToken = ws.run(['policy'], { env: { VAULT_KEY_FILE: garbage } });
    expect(notToken.status).toBe(2);
    expect(notToken.stderr).toMatch(/^vault: VAULT_KEY_FILE \(.*garbage\) is not a sealvault token/);
    const token = fs.readFileSync(tokenFile, 'utf8').trim();
    const both = ws.run(['policy'], { env: { VAULT_KEY_FILE: tokenFile, VAULT_KEY: token } });
    expect(both.status).toBe(2);
    expect(both.stderr).toBe('vault: both VAULT_KEY and VAULT_KEY_FILE are set; unset one of them\n');
  });
});
