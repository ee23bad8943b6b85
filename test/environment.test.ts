import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CALLER_VARIABLES, CI_EXCLUDED, CI_VARIABLES, checkPassEnv, passedByDefault, SAFE_PATH, targetEnvironment } from '../src/sandbox/environment.js';
import { LOCKDOWN_REMOVED_VARIABLES } from '../src/sandbox/tiers.js';
import { CODE_VARIABLE_PREFIXES, CODE_VARIABLES } from '../src/vault/names.js';
import { ROOT } from './helpers/cli.js';

const text = (entries: Uint8Array[]) => entries.map((e) => Buffer.from(e).toString('utf8'));
const none = { env: {}, passEnv: [] };
const me = os.userInfo();

describe("the child's environment", () => {
  it('SECURITY.md lists the variables that pass by default and the ones that choose code', () => {
    const security = fs.readFileSync(path.join(ROOT, 'SECURITY.md'), 'utf8');
    const section = security.slice(security.indexOf("## The child's environment"), security.indexOf('## Reserved names'));
    for (const name of [...CALLER_VARIABLES, ...CI_EXCLUDED, 'LC_', 'GITHUB_', 'CI_']) expect(section, name).toContain(`\`${name}`);
    expect(section).toContain(SAFE_PATH);
  });

  it('is an allow-list: a terminal and locale from the caller, identity from the password database, a fixed PATH, the secrets last', () => {
    const caller = {
      PATH: './evil:/usr/bin', HOME: '/attacker', USER: 'someone', TERM: 'xterm', LANG: 'C.UTF-8', LC_ALL: 'C', TZ: 'UTC',
      PYTHONPATH: '/evil', PERL5LIB: '/evil', NODE_PATH: '/evil', GIT_SSH_COMMAND: 'evil', GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'core.fsmonitor',
      LD_PRELOAD: '/evil.so', BASH_ENV: '/x', VAULT_KEY: 'svt1_x', SSH_AUTH_SOCK: '/s', RANDOM_THING: 'x', DB: 'shadowed',
    };
    const env = targetEnvironment(caller, new Map([['DB', new TextEncoder().encode('s3cret')]]), 'hardened', none);
    expect(text(env).sort()).toEqual(
      [`HOME=${me.homedir}`, `USER=${me.username}`, `LOGNAME=${me.username}`, `PATH=${SAFE_PATH}`, 'TERM=xterm', 'LANG=C.UTF-8', 'LC_ALL=C', 'TZ=UTC', 'DB=s3cret'].sort(),
    );
    expect(text(env).at(-1)).toBe('DB=s3cret');
  });

  it('passes the CI platforms\' variables of its list, not their addresses, paths, write channels or credentials', () => {
    const caller = {
      CI: 'true', GITHUB_SHA: 'abc', GITHUB_REF: 'refs/heads/main', RUNNER_OS: 'Linux', CI_COMMIT_SHA: 'abc', GITLAB_CI: 'true',
      GITHUB_ENV: '/tmp/env', GITHUB_OUTPUT: '/tmp/out', GITHUB_PATH: '/tmp/path', GITHUB_TOKEN: 't', CI_JOB_TOKEN: 't', CI_REGISTRY_PASSWORD: 'p',
      GITHUB_API_URL: 'http://127.0.0.1:1', CI_API_V4_URL: 'http://127.0.0.1:1', RUNNER_TEMP: '/tmp/planted', CI_DEPLOY_USER: 'u',
      GITHUB_SOMETHING_NEW: 'x',
    };
    const names = text(targetEnvironment(caller, new Map(), 'none', none)).map((e) => e.split('=')[0]);
    for (const name of ['CI', 'GITHUB_SHA', 'GITHUB_REF', 'RUNNER_OS', 'CI_COMMIT_SHA', 'GITLAB_CI']) expect(names, name).toContain(name);
    const kept = Object.keys(caller).filter((n) => !['CI', 'GITHUB_SHA', 'GITHUB_REF', 'RUNNER_OS', 'CI_COMMIT_SHA', 'GITLAB_CI'].includes(n));
    for (const name of kept) expect(names, name).not.toContain(name);
    for (const name of CI_VARIABLES) expect(passedByDefault(name), name).toBe(true);
  });

  it('takes what the grant says: pinned values (PATH too) and the caller\'s values of names it lets through, never one that chooses code', () => {
    const granted = { env: { PATH: '/opt/tool/bin:/usr/bin', DEPLOY_ENV: 'prod' }, passEnv: ['DEPLOY_*', 'AWS_REGION', 'REGION'] };
    const caller = { DEPLOY_TARGET: 'eu', DEPLOY_USER: 'x', AWS_REGION: 'eu', AWS_CONFIG_FILE: '/evil', REGION: 'west', OTHER: 'no', PATH: '/evil' };
    const env = text(targetEnvironment(caller, new Map(), 'hardened', granted));
    for (const e of ['PATH=/opt/tool/bin:/usr/bin', 'DEPLOY_ENV=prod', 'DEPLOY_TARGET=eu', 'DEPLOY_USER=x', 'AWS_REGION=eu', 'REGION=west']) expect(env).toContain(e);
    expect(env.some((e) => e.startsWith('AWS_CONFIG_FILE='))).toBe(false);
    expect(env.some((e) => e.startsWith('OTHER='))).toBe(false);
    // a pattern never lets a variable that chooses code through, whatever it matches
    expect(text(targetEnvironment({ NODE_OPTIONS: '--require x' }, new Map(), 'hardened', { env: {}, passEnv: ['NODE_*'] }))).not.toContain('NODE_OPTIONS=--require x');
  });

  it('passes no caller name that is not a plain name: "NAME=x" (an agent client\'s) would shadow a pin for a runtime that reads the first entry', () => {
    const granted = { env: { DEPLOY_URL: 'https://prod.example/api' }, passEnv: ['DEPLOY_*', 'BASH_FUNC_*'] };
    const caller = { 'DEPLOY_URL=https://evil.example/?x': '', 'DEPLOY_KEY=attacker': '', 'BASH_FUNC_f%%': '() { id; }', DEPLOY_ENV: 'eu' };
    const env = text(targetEnvironment(caller, new Map([['DEPLOY_KEY', new TextEncoder().encode('the-real-key')]]), 'hardened', granted));
    expect(env.filter((e) => e.startsWith('DEPLOY_URL='))).toEqual(['DEPLOY_URL=https://prod.example/api']);
    expect(env.filter((e) => e.startsWith('DEPLOY_KEY='))).toEqual(['DEPLOY_KEY=the-real-key']);
    expect(env.some((e) => e.startsWith('BASH_FUNC_'))).toBe(false);
    expect(env).toContain('DEPLOY_ENV=eu');
  });

  it('refuses --pass-env for a variable or a pattern that could choose code (exit 11), and pins are the way', () => {
    for (const name of [...CODE_VARIABLES, ...CODE_VARIABLE_PREFIXES.map((p) => `${p}X`)]) expect(() => checkPassEnv(name), name).toThrow(/choose[s]? which code runs/);
    // patterns that take in a variable choosing code (AWS_* has AWS_CONFIG_FILE, whose credential_process runs),
    // and names in another case, which some tools read alike (npm takes npm_Config_x as NPM_CONFIG_X)
    for (const pattern of ['P*', 'GIT_*', 'LD_*', 'NODE_*', 'PY*', 'AWS_*', 'KUBE*', 'Npm_Config_*', 'node_options']) {
      expect(() => checkPassEnv(pattern), pattern).toThrow(/--env NAME=VALUE/);
    }
    for (const fine of ['AWS_REGION', 'DEPLOY_*', 'DEPLOY_ENV', 'KUBECONFIG_CONTEXT']) expect(checkPassEnv(fine)).toBe(fine);
    expect(() => checkPassEnv('*')).toThrow(/prefix ending in \*/);
    expect(passedByDefault('TERM') && !passedByDefault('PATH')).toBe(true);
  });

  it('keeps host-service variables (ssh-agent, display, D-Bus) out of lockdown, even when a grant passes them', () => {
    const caller = { SSH_AUTH_SOCK: '/tmp/ssh-x/agent.1', DISPLAY: ':0', WAYLAND_DISPLAY: 'wayland-0' };
    const passing = { env: {}, passEnv: ['SSH_AUTH_SOCK', 'DISPLAY', 'WAYLAND_DISPLAY'] };
    for (const name of LOCKDOWN_REMOVED_VARIABLES) {
      expect(text(targetEnvironment({ [name]: 'x' }, new Map(), 'lockdown', { env: {}, passEnv: [name] })).some((e) => e.startsWith(`${name}=`)), name).toBe(false);
    }
    expect(text(targetEnvironment(caller, new Map(), 'hardened', passing)).filter((e) => /^(SSH|DISPLAY|WAYLAND)/.test(e))).toHaveLength(3);
  });

  it('refuses values an environment variable cannot carry, pointing at --file', () => {
    expect(() => targetEnvironment({}, new Map([['NUL', Uint8Array.of(0x61, 0, 0x62)]]), 'none', none)).toThrow(/zero byte.*--file NUL/);
    expect(() => targetEnvironment({}, new Map([['BIG', new Uint8Array(128 * 1024).fill(0x61)]]), 'none', none)).toThrow(/128 KiB.*--file BIG/);
    const fits = text(targetEnvironment({}, new Map([['FITS', new Uint8Array(128 * 1024 - 6).fill(0x61)]]), 'none', none)).find((e) => e.startsWith('FITS='));
    expect(fits).toHaveLength(128 * 1024 - 1);
  });
});
