/**
 * The direct `vault exec` bundle and its V8 code cache (src/cli/code-cache.ts): the build's cache fits
 * the node the launcher starts (else every exec silently compiles again, ≈ 17 ms), and a cache that
 * does not fit, or none, changes nothing but the speed.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { codeCacheFile, codeCacheFits, requireWithCodeCache, writeCodeCache } from '../src/cli/code-cache.js';
import { ROOT } from './helpers/cli.js';
import { installApp } from './helpers/users.js';

describe('code cache', () => {
  it('the build wrote dist/exec.cjs.v8cache, made from exec.cjs, and the node of dist/node-path accepts it', () => {
    // this process is the node the launcher starts (dist/node-path), so its V8 decides as vault's would
    expect(fs.realpathSync(process.execPath)).toBe(fs.readFileSync(path.join(ROOT, 'dist', 'node-path'), 'utf8').trim());
    for (const dir of ['dist', 'dist/test']) {
      const bundle = path.join(ROOT, dir, 'exec.cjs');
      expect(fs.statSync(codeCacheFile(bundle)).size).toBeGreaterThan(10_000);
      expect(codeCacheFits(bundle)).toBe(true);
    }
  });

  it('the bundle has no import(): a code-cached vm.Script cannot load through it', () => {
    for (const dir of ['dist', 'dist/test']) {
      const source = fs.readFileSync(path.join(ROOT, dir, 'exec.cjs'), 'utf8');
      expect(source.match(/\bimport\s*\(/g) ?? []).toEqual([]);
    }
  });

  it('a damaged cache, or none, is compiled from the source with the same exports', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'code-cache-'));
    try {
      const file = path.join(dir, 'm.cjs');
      fs.writeFileSync(file, 'exports.twice = (n) => 2 * n; exports.where = __filename; exports.req = typeof require("node:path").join;');
      expect(requireWithCodeCache(file)).toMatchObject({ where: file, req: 'function' });
      writeCodeCache(file);
      expect(codeCacheFits(file)).toBe(true);
      expect(fs.readFileSync(codeCacheFile(file)).subarray(0, 32)).toEqual(createHash('sha256').update(fs.readFileSync(file)).digest());
      expect((requireWithCodeCache(file) as { twice(n: number): number }).twice(21)).toBe(42);
      fs.writeFileSync(codeCacheFile(file), Buffer.from('not a V8 code cache'));
      expect(codeCacheFits(file)).toBe(false);
      expect((requireWithCodeCache(file) as { twice(n: number): number }).twice(4)).toBe(8);
      fs.writeFileSync(file, 'exports.twice = (n) => 3 * n;'); // the source changed under an old cache
      writeCodeCache(file);
      // the same length: V8 alone would take the old cache and run 3 * n
      fs.writeFileSync(file, 'exports.twice = (n) => 4 * n;');
      expect(codeCacheFits(file)).toBe(false);
      expect((requireWithCodeCache(file) as { twice(n: number): number }).twice(1)).toBe(4);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the code cache of an installed copy, damaged', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'code-cache-app-'));
  const cli = installApp(path.join(dir, 'app'));
  const bundle = path.join(dir, 'app', 'dist', 'exec.cjs');
  const pristine = fs.readFileSync(codeCacheFile(bundle));
  const work = path.join(dir, 'work');
  fs.mkdirSync(work);
  const env = {
    PATH: '/usr/bin:/bin', HOME: path.join(dir, 'home'), XDG_STATE_HOME: path.join(dir, 'state'),
    XDG_RUNTIME_DIR: path.join(dir, 'run'), VAULT_DIR: path.join(dir, 'vault'), VAULT_AGENT_SOCK: path.join(dir, 'no-agent.sock'),
  };
  const vault = (args: string[], extra: Record<string, string> = {}, input = '') =>
    spawnSync(process.execPath, [cli, ...args], { env: { ...env, ...extra }, cwd: work, input, encoding: 'utf8', timeout: 30_000 });
  const token = vault(['init', '--token']).stdout.trim();
  vault(['put', 'CACHE_TEST'], {}, 'cached-value');
  vault(['allow', 'CACHE_TEST', '--to', '/usr/bin/printenv', '--arg', 'CACHE_TEST'], { VAULT_KEY: token });
  const exec = () => vault(['exec', '--no-mask', '--', 'printenv', 'CACHE_TEST'], { VAULT_KEY: token });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs as it should with the build\'s cache', () => {
    const result = exec();
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('cached-value\n');
  });

  it('a bit flipped in V8\'s data (same length, same source) is not used: the run is the same', () => {
    for (const at of [2 * 32 + 100, Math.floor(pristine.length / 2), pristine.length - 10]) {
      const damaged = Buffer.from(pristine);
      damaged[at]! ^= 1;
      fs.writeFileSync(codeCacheFile(bundle), damaged);
      expect(codeCacheFits(bundle)).toBe(false);
      const result = exec();
      expect(result.stderr).toBe('');
      expect([result.status, result.stdout]).toEqual([0, 'cached-value\n']);
    }
    fs.writeFileSync(codeCacheFile(bundle), pristine);
  });

  it('a FIFO in the cache\'s place does not hang the run', () => {
    fs.rmSync(codeCacheFile(bundle));
    expect(spawnSync('mkfifo', [codeCacheFile(bundle)]).status).toBe(0);
    try {
      const result = exec();
      expect(result.error).toBeUndefined(); // no timeout
      expect([result.status, result.stdout]).toEqual([0, 'cached-value\n']);
    } finally {
      fs.rmSync(codeCacheFile(bundle));
      fs.writeFileSync(codeCacheFile(bundle), pristine);
    }
  });

  it('a bundle that is not a regular file: one line and 125, never a stack trace', () => {
    const source = fs.readFileSync(bundle);
    fs.rmSync(bundle);
    fs.mkdirSync(bundle);
    try {
      const result = exec();
      expect(result.status).toBe(125);
      expect(result.stderr).toMatch(/^vault: .*exec\.cjs is not a regular file[^\n]*; reinstall vault\n$/);
    } finally {
      fs.rmdirSync(bundle);
      fs.writeFileSync(bundle, source);
    }
  });
});
