/**
 * `npm install -g` of the package gives a working `vault` (docs/install.md): the tarball of `npm pack`
 * holds what a user needs and nothing of the tests, of this machine or of a vault; installed from it
 * into a fresh prefix by an unprivileged user, its install script builds the native parts and writes
 * the machine's files, and `vault` runs; a missing library fails the install with one line naming
 * its Debian package. npm runs here with --ignore-scripts where it packs: "prepare" would bundle
 * dist/ again under the test files that run at the same time (the suite's pretest built it).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';
import { type Account, asAccount, IS_ROOT, systemUser } from './helpers/users.js';

interface PackageJson {
  name: string;
  version: string;
  bin: Record<string, string>;
}
const PACKAGE = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as PackageJson;

/** Files packed as they are in the checkout, beside what is listed by directory below. */
const PACKED_FILES = [
  'README.md',
  'SECURITY.md',
  'package.json',
  'binding.gyp',
  'scripts/npm-install.mjs',
  'scripts/machine-files.mjs',
];

/** Every file below `dir` (relative to ROOT), as npm names them. */
function filesBelow(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)));
}

interface NpmOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  account?: Account;
  timeout?: number;
}

/** npm `args` in `cwd`, as `account` when given (setpriv), with `env` or ours. */
function npm(args: string[], options: NpmOptions) {
  const command = asAccount(options.account, ['npm', ...args]);
  const result = spawnSync(command[0]!, command.slice(1), {
    cwd: options.cwd,
    env: options.env ?? process.env,
    encoding: 'utf8',
    timeout: options.timeout ?? 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error !== undefined) throw result.error;
  return result;
}

/**
 * `--nodedir` for an install without nodejs.org (CI reaches the npm registry alone): keytar builds
 * from source there, and node-gyp would download the headers that this node has beside it (as
 * scripts/npm-install.mjs finds them for sealvault's own build). Undefined when there are none.
 */
function localNodedir(): string | undefined {
  const prefix = path.dirname(path.dirname(fs.realpathSync(process.execPath)));
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_version.h')) ? prefix : undefined;
}

/**
 * How this machine reaches the npm registry, for the clean environment of the unprivileged user: the
 * proxy and CA variables of ours, and npm's settings of those as root's npm has them (from its
 * config files: `--prefix` moves the global one, <prefix>/etc/npmrc, so the user's npm would miss it).
 */
function registryAccess(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|(https?|no|all)_proxy)$/i.test(name)) env[name] = value;
  }
  const names = ['cafile', 'registry', 'proxy', 'https-proxy', 'strict-ssl'];
  const settings = npm(['config', 'get', ...names], { cwd: os.tmpdir() });
  for (const line of settings.stdout.split('\n')) {
    const match = /^([a-z-]+)=(.+)$/.exec(line);
    if (match === null || match[2] === 'null' || match[2] === 'undefined') continue;
    env[`npm_config_${match[1]!.replace(/-/g, '_')}`] = match[2];
  }
  return env;
}

describe('the npm package', () => {
  it('npm pack lists the built CLI, native sources, install script; nothing of tests, this machine or a vault', () => {
    const result = npm(['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    expect(result.status, result.stderr).toBe(0);
    const [packed] = JSON.parse(result.stdout) as [{ files: { path: string; mode: number }[] }];
    const files = packed.files.map((file) => file.path).sort();

    const perMachine = (file: string) =>
      file.startsWith('dist/test/') || file === 'dist/node-path' || file.endsWith('.v8cache');
    const dist = filesBelow('dist').filter((file) => !perMachine(file));
    const expected = [...PACKED_FILES, ...filesBelow('native'), ...filesBelow('docs'), ...dist];
    expect(files).toEqual([...new Set(expected)].sort());

    const needed = ['dist/vault.mjs', 'dist/exec.cjs', 'dist/age.cjs', 'dist/code-cache.mjs', 'native/spawn_helper.c'];
    for (const file of needed) expect(files).toContain(file);
    expect(files.some((file) => file.startsWith('dist/chunks/'))).toBe(true);
    const refused = [
      /^(test|bench|build|src|node_modules|\.ci)\//, // tests, benchmarks, a build, sources, dependencies
      /^dist\/test\/|node-path$|\.v8cache$/, // the test build, this machine's files
      /\.tgz$|(^|\/)(\.npmrc|\.env)$/, // an earlier tarball, settings with credentials
      /(^|\/)(vault|policy|known_vaults)\.json$|(^|\/)(slots|secrets|audit)\//, // a vault
    ];
    expect(files.filter((file) => refused.some((pattern) => pattern.test(file)))).toEqual([]);
    // npm leaves symbolic links out of a tarball: bin/vault (a link to the launcher) is made by the
    // install script, before npm links package.json "bin" to it (the test below runs it)
    expect(files).not.toContain('bin/vault');
    expect(PACKAGE.bin).toEqual({ vault: 'bin/vault' });
  });

  it('a missing compiler or library fails the install script with one line naming the Debian packages', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'install-script-'));
    try {
      // a package of its own, so that a build that went on could not touch the checkout's build/
      fs.mkdirSync(path.join(dir, 'package', 'scripts'), { recursive: true });
      for (const file of ['scripts/npm-install.mjs', 'scripts/machine-files.mjs', 'package.json']) {
        fs.copyFileSync(path.join(ROOT, file), path.join(dir, 'package', file));
      }
      const run = (pathDir: string) =>
        spawnSync(process.execPath, [path.join(dir, 'package', 'scripts', 'npm-install.mjs')], {
          cwd: path.join(dir, 'package'),
          env: { PATH: pathDir, HOME: dir, LANG: 'C.UTF-8' },
          encoding: 'utf8',
          timeout: 60_000,
        });

      // nothing on PATH: no compiler, make, python3 or pkg-config (the headers are in /usr/include here)
      const empty = path.join(dir, 'empty');
      fs.mkdirSync(empty);
      const bare = run(empty);
      expect(bare.status, bare.stderr).toBe(1);
      expect(bare.stderr).toBe(
        'sealvault: cannot build the native parts: missing build-essential python3 libsecret-1-dev; install them ' +
          '(sudo apt-get install build-essential python3 libsecret-1-dev) and install sealvault again\n',
      );

      // the real tools, but first on PATH a C compiler that cannot find sodium.h, as without libsodium-dev
      const tools = path.join(dir, 'tools');
      fs.mkdirSync(tools);
      fs.writeFileSync(
        path.join(tools, 'cc'),
        [
          '#!/bin/sh',
          'input=$(cat)',
          'case "$input" in *sodium.h*) echo "fatal error: sodium.h: No such file or directory" >&2; exit 1;; esac',
          'printf "%s\\n" "$input" | exec /usr/bin/cc "$@"',
          '',
        ].join('\n'),
        { mode: 0o755 },
      );
      const noSodium = run(`${tools}:/usr/bin:/bin`);
      expect(noSodium.status, noSodium.stderr).toBe(1);
      expect(noSodium.stderr).toBe(
        'sealvault: cannot build the native parts: missing libsodium-dev; install them ' +
          '(sudo apt-get install libsodium-dev) and install sealvault again\n',
      );
      expect(fs.existsSync(path.join(dir, 'package', 'build'))).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('installed with npm install -g from the tarball, by an unprivileged user into a fresh prefix', () => {
    let base: string;
    let account: Account | undefined;
    let home: string;
    let prefix: string;
    let tarball: string;
    let env: NodeJS.ProcessEnv;

    beforeAll(() => {
      base = fs.mkdtempSync(path.join(os.tmpdir(), 'install-'));
      fs.chmodSync(base, 0o755);
      const packed = npm(['pack', '--json', '--ignore-scripts', '--pack-destination', base], { cwd: ROOT });
      expect(packed.status, packed.stderr).toBe(0);
      tarball = path.join(base, (JSON.parse(packed.stdout) as [{ filename: string }])[0].filename);
      fs.chmodSync(tarball, 0o644);

      account = IS_ROOT ? systemUser('sealvault-pack') : undefined;
      if (IS_ROOT && account === undefined) throw new Error('useradd sealvault-pack failed');
      home = path.join(base, 'home');
      prefix = path.join(home, '.local');
      // <prefix>/lib made beforehand: npm 11.19's --strict-allow-scripts check fails (ENOENT, lstat) on
      // a prefix without it, where the same install without that flag makes it
      for (const dir of [home, prefix, path.join(prefix, 'lib')]) {
        fs.mkdirSync(dir, { mode: 0o700 });
        if (account !== undefined) fs.chownSync(dir, account.uid, account.gid);
      }
      const nodedir = localNodedir();
      env = {
        PATH: `${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
        HOME: home,
        LANG: 'C.UTF-8',
        npm_config_update_notifier: 'false',
        npm_config_fund: 'false',
        npm_config_audit: 'false',
        ...registryAccess(),
        ...(nodedir !== undefined ? { npm_config_nodedir: nodedir } : {}),
      };
    });

    afterAll(() => {
      if (base !== undefined) fs.rmSync(base, { recursive: true, force: true });
    });

    const vault = (args: string[]) => {
      const command = asAccount(account, [path.join(prefix, 'bin', 'vault'), ...args]);
      return spawnSync(command[0]!, command.slice(1), { cwd: home, env, encoding: 'utf8', timeout: 120_000 });
    };

    it("installs: its own scripts and keytar's run, as --allow-scripts allows them", { timeout: 300_000 }, () => {
      // --strict-allow-scripts: a script npm would only warn about fails the install, so that a
      // wrong --allow-scripts (docs/install.md) cannot pass unnoticed; the tarball is matched by path
      const install = npm(
        ['install', '-g', '--prefix', prefix, '--prefer-offline'].concat(
          ['--strict-allow-scripts', `--allow-scripts=keytar,${tarball}`, tarball],
        ),
        { cwd: home, env, account, timeout: 300_000 },
      );
      expect(install.status, install.stderr + install.stdout).toBe(0);
      const installed = path.join(prefix, 'lib', 'node_modules', PACKAGE.name);
      // the link npm made, through bin/vault, ends at the static launcher that the install built
      const release = path.join(installed, 'build', 'Release');
      expect(fs.realpathSync(path.join(prefix, 'bin', 'vault'))).toBe(path.join(release, 'vault_launcher'));
      for (const built of ['sealvault_native.node', 'spawn_helper']) {
        expect(fs.existsSync(path.join(release, built))).toBe(true);
      }
      // this machine's files, written by the install script from the packed dist/
      const nodePath = fs.readFileSync(path.join(installed, 'dist', 'node-path'), 'utf8');
      expect(nodePath).toBe(`${fs.realpathSync(process.execPath)}\n`);
      expect(fs.statSync(path.join(installed, 'dist', 'exec.cjs.v8cache')).size).toBeGreaterThan(10_000);
      expect(fs.existsSync(path.join(installed, 'dist', 'test'))).toBe(false);
      if (account !== undefined) expect(fs.statSync(path.join(installed, 'dist', 'vault.mjs')).uid).toBe(account.uid);
    });

    it('vault --version names the package version', () => {
      const result = vault(['--version']);
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe(`vault ${PACKAGE.version}\n`);
      expect(result.status).toBe(0);
    });

    it('vault demo runs its tour on a throwaway vault, sandbox included', { timeout: 120_000 }, () => {
      const result = vault(['demo']);
      expect(result.status, result.stderr + result.stdout).toBe(0);
      expect(result.stdout).toContain('DEMO_API_KEY arrived');
      expect(result.stdout).toMatch(/the demo value is in none of them/);
    });
  });
});
