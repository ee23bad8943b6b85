/**
 * The direct `vault exec` bundle and its V8 code cache (src/cli/code-cache.ts): the build's cache fits
 * the node the launcher starts (else every exec silently compiles again, ≈ 17 ms), and a cache that
 * does not fit, or none, changes nothing but the speed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { codeCacheFile, codeCacheFits, requireWithCodeCache, writeCodeCache } from '../src/cli/code-cache.js';
import { ROOT } from './helpers/cli.js';

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
