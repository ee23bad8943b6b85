import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRemoved, REMOVED_NAMES, REMOVED_PREFIXES, targetEnvironment } from '../src/sandbox/environment.js';
import { LOCKDOWN_REMOVED_VARIABLES } from '../src/sandbox/tiers.js';
import { ROOT } from './helpers/cli.js';

const text = (entries: Uint8Array[]) => entries.map((e) => Buffer.from(e).toString('utf8'));

describe("the child's environment", () => {
  it('SECURITY.md lists exactly the variables that are removed', () => {
    const security = fs.readFileSync(path.join(ROOT, 'SECURITY.md'), 'utf8');
    const section = security.slice(security.indexOf("## The child's environment"), security.indexOf('## Reserved names'));
    const listed = [...section.slice(0, section.indexOf('A value with')).matchAll(/`([A-Z_0-9]+)`/g)].map((m) => m[1]);
    expect(listed.sort()).toEqual([...REMOVED_NAMES, ...REMOVED_PREFIXES].sort());
  });

  it('drops sealvault and hijack variables, keeps the rest, adds the secrets last', () => {
    const env = targetEnvironment(
      { PATH: '/usr/bin', HOME: '/h', VAULT_KEY: 'svt1_x', VAULT_DIR: '/v', LD_PRELOAD: '/evil.so', BASH_ENV: '/x', KEEP: 'yes', DB: 'shadowed' },
      new Map([['DB', new TextEncoder().encode('s3cret')]]),
      'hardened',
    );
    expect(text(env)).toEqual(['PATH=/usr/bin', 'HOME=/h', 'KEEP=yes', 'DB=s3cret']);
    expect(isRemoved('LD_LIBRARY_PATH')).toBe(true);
    expect(isRemoved('PATH')).toBe(false);
  });

  it('keeps host-service variables (ssh-agent, display, D-Bus) out of lockdown only', () => {
    const caller = { SSH_AUTH_SOCK: '/tmp/ssh-x/agent.1', DISPLAY: ':0', WAYLAND_DISPLAY: 'wayland-0', GPG_AGENT_INFO: '/run/g', KEEP: 'yes' };
    for (const name of LOCKDOWN_REMOVED_VARIABLES) expect(text(targetEnvironment({ [name]: 'x' }, new Map(), 'lockdown'))).toEqual([]);
    expect(text(targetEnvironment(caller, new Map(), 'lockdown'))).toEqual(['KEEP=yes']);
    expect(text(targetEnvironment(caller, new Map(), 'hardened'))).toHaveLength(5);
  });

  it('refuses values an environment variable cannot carry, pointing at --file', () => {
    expect(() => targetEnvironment({}, new Map([['NUL', Uint8Array.of(0x61, 0, 0x62)]]), 'none')).toThrow(/zero byte.*--file NUL/);
    expect(() => targetEnvironment({}, new Map([['BIG', new Uint8Array(128 * 1024).fill(0x61)]]), 'none')).toThrow(/128 KiB.*--file BIG/);
    expect(text(targetEnvironment({}, new Map([['FITS', new Uint8Array(128 * 1024 - 6).fill(0x61)]]), 'none'))[0]).toHaveLength(128 * 1024 - 1);
  });
});
