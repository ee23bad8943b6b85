import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';

interface PolicyJson {
  revision: number;
  grants: { secret: string; sha256: string; path: string; min_tier: string; args: string[] | null }[];
}

describe('grants', () => {
  let ws: Workspace;
  let script: string;
  beforeEach(() => {
    ws = makeWorkspace();
    initWithToken(ws);
    put(ws, 'DB_PASSWORD', 'value-one-1234');
    put(ws, 'API_KEY', 'value-two-5678');
    script = path.join(ws.root, 'deploy.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho deploying\n', { mode: 0o755 });
  });
  afterEach(() => ws.cleanup());

  const policy = (): PolicyJson => {
    const result = ws.run(['policy', '--json']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    return JSON.parse(result.stdout) as PolicyJson;
  };
  const sha256Of = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

  it('records path, hash and minimum tier per secret, and revokes them', () => {
    const allow = ws.run(['allow', 'DB_PASSWORD', 'API_KEY', '--to', script, '--min-tier', 'lockdown']);
    expect(allow.status, allow.stderr).toBe(0);
    const granted = policy();
    expect(granted.revision).toBe(1);
    expect(granted.grants.map((g) => [g.secret, g.path, g.sha256, g.min_tier, g.args])).toEqual([
      ['DB_PASSWORD', script, sha256Of(script), 'lockdown', null],
      ['API_KEY', script, sha256Of(script), 'lockdown', null],
    ]);
    const revoke = ws.run(['revoke', 'API_KEY', '--from', script]);
    expect(revoke.status, revoke.stderr).toBe(0);
    expect(policy().grants.map((g) => g.secret)).toEqual(['DB_PASSWORD']);
    expect(policy().revision).toBe(2);
  });

  it('defaults to tier hardened, and a repeated grant replaces the earlier one', () => {
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script, '--min-tier', 'none']).status).toBe(0);
    expect(policy().grants.map((g) => g.min_tier)).toEqual(['none']);
  });

  it('resolves bare names through PATH and records the real path behind symlinks', () => {
    const bin = path.join(ws.root, 'bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(script, path.join(bin, 'deploy'));
    const result = ws.run(['allow', 'DB_PASSWORD', '--to', 'deploy'], { env: { PATH: `${bin}:/usr/bin:/bin` } });
    expect(result.status, result.stderr).toBe(0);
    expect(policy().grants[0]?.path).toBe(script);
  });

  it('refuses interpreters unless the arguments are pinned or --any-args is given', () => {
    for (const interpreter of ['/bin/sh', 'bash', 'env', process.execPath, 'python3', 'perl']) {
      const result = ws.run(['allow', 'DB_PASSWORD', '--to', interpreter]);
      if (result.stderr.includes('not found in PATH')) continue; // python3/perl may be absent
      expect(result.status, interpreter).toBe(11);
      expect(result.stderr).toMatch(/^vault: .*runs whatever code or command its arguments name.*--run.*--arg.*--any-args.*\n$/);
    }
    expect(policy().grants).toEqual([]);
    const pinned = ws.run(['allow', 'DB_PASSWORD', '--to', '/bin/sh', '--arg', script, '--arg', '--prod']);
    expect(pinned.status, pinned.stderr).toBe(0);
    expect(policy().grants[0]?.args).toEqual([script, '--prod']);
    const any = ws.run(['allow', 'API_KEY', '--to', '/bin/sh', '--any-args']);
    expect(any.status, any.stderr).toBe(0);
    expect(policy().grants[1]?.args).toBeNull();
    expect(ws.run(['allow', 'API_KEY', '--to', '/bin/sh', '--any-args', '--arg', 'x']).status).toBe(2);
  });

  it('refuses grants of secrets that do not exist and to files that are not executables', () => {
    const missing = ws.run(['allow', 'NOPE', '--to', script]);
    expect(missing.status).toBe(3);
    expect(missing.stderr).toMatch(/no secret named NOPE/);
    const data = path.join(ws.root, 'data.txt');
    fs.writeFileSync(data, 'x', { mode: 0o644 });
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', data]).stderr).toMatch(/not executable/);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', ws.root]).status).not.toBe(0);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', path.join(ws.root, 'absent')]).status).toBe(3);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script, '--min-tier', 'max']).status).toBe(2);
    expect(policy().grants).toEqual([]);
  });

  it('needs an unlock to change or list the policy', () => {
    delete ws.env.VAULT_KEY;
    for (const args of [['allow', 'DB_PASSWORD', '--to', script], ['revoke', 'DB_PASSWORD', '--from', script], ['policy']]) {
      const result = ws.run(args);
      expect(result.status, args.join(' ')).toBe(8);
      expect(result.stderr).toMatch(/^vault: cannot unlock the vault: .*\n$/);
    }
  });

  it('revokes grants to a binary that changed or disappeared, by the recorded path', () => {
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    fs.appendFileSync(script, 'echo changed\n');
    expect(ws.run(['revoke', 'DB_PASSWORD', '--from', script]).status).toBe(0);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    fs.rmSync(script);
    expect(ws.run(['revoke', 'DB_PASSWORD', '--from', script]).status).toBe(0);
    expect(policy().grants).toEqual([]);
    const none = ws.run(['revoke', 'DB_PASSWORD', '--from', script]);
    expect(none.status).toBe(3);
  });

  it('keeps matching by hash when the vault is used from another checkout path', () => {
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    const moved = path.join(ws.root, 'elsewhere');
    fs.cpSync(ws.vaultDir, moved, { recursive: true });
    const result = ws.run(['policy', '--json'], { env: { VAULT_DIR: moved } });
    expect(result.status, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as PolicyJson).grants[0]?.sha256).toBe(sha256Of(script));
    expect(ws.run(['verify'], { env: { VAULT_DIR: moved } }).status).toBe(0);
  });

  it('writes one audit entry per change, naming binary and hash but no value', () => {
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    expect(ws.run(['revoke', 'DB_PASSWORD', '--from', script]).status).toBe(0);
    const audit = ws.run(['audit', '--json']);
    const events = audit.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; details: Record<string, unknown> });
    expect(events.map((e) => e.event)).toEqual(['init', 'put', 'put', 'allow', 'revoke']);
    expect(events[3]?.details).toMatchObject({ secrets: ['DB_PASSWORD'], path: script, sha256: sha256Of(script) });
  });
});

describe('vault demo', () => {
  it('runs the tour on a throwaway vault and leaves nothing behind', () => {
    const ws = makeWorkspace();
    try {
      const before = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('sealvault-demo-'));
      const result = ws.run(['demo']);
      expect(result.status, result.stderr + result.stdout).toBe(0);
      expect(result.stdout).toMatch(/\$ vault put DEMO_API_KEY/);
      expect(result.stdout).toMatch(/unknown command 'get'/);
      expect(result.stdout).toMatch(/ok: 1 secret/);
      expect(result.stdout).toMatch(/the demo value is in none of them/);
      expect(result.stdout + result.stderr).not.toContain('demo-value-that-never-comes-back');
      expect(result.stdout).not.toMatch(/svt1_[A-Za-z0-9_-]{43}/);
      const after = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('sealvault-demo-'));
      expect(after).toEqual(before);
      expect(fs.existsSync(path.join(ws.env.XDG_STATE_HOME ?? '', 'sealvault'))).toBe(false);
    } finally {
      ws.cleanup();
    }
  });
});
