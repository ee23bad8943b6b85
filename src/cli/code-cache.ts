/**
 * Loading the build's CommonJS bundle of a direct `vault exec` (dist/exec.cjs, see exec-bundle.ts)
 * with the V8 code cache the build made for it (dist/exec.cjs.v8cache), so that its ≈ 240 KB are
 * not parsed and compiled again on every run: ≈ 17 ms a start here (docs/performance.md). Node 20
 * has no compile cache for modules (module.enableCompileCache came in Node 22.1); this is the
 * vm.Script cachedData that such caches are made of (node:vm, "new vm.Script", cachedData).
 *
 * The cache sits beside the code it was made from, written by the same build with the same
 * permissions: whoever could replace it could replace the code. Its file is the SHA-256 of the
 * source it was made from (32 bytes) and then V8's data. V8 itself checks only the source's length,
 * its own version and flags (`cachedDataRejected`), so a source edited to the same length would run
 * the cached code: the hash is checked first. Anything that does not fit is compiled from the
 * source, slower and otherwise the same.
 *
 * The bundle must not use import(): a vm.Script has no module loader for it, and the one Node 20
 * offers (vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER) is experimental, warns on every run, and is
 * lost on functions that come from a code cache (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING). Its code
 * loads on demand with require(); test/code-cache.test.ts checks the built file.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { native } from '../vault/native.js';

/** The file of the code cache for the CommonJS file `file`. */
export const codeCacheFile = (file: string): string => `${file}.v8cache`;

const HASH_BYTES = 32;

/** `source` as a CommonJS module function, as Node wraps one (modules.md, "The module wrapper"). */
function compile(file: string, source: Buffer, cachedData: Buffer | undefined): vm.Script {
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source.toString('utf8')}\n})`;
  return new vm.Script(wrapped, { filename: file, ...(cachedData !== undefined ? { cachedData } : {}) });
}

/** V8's part of the cache file when it was made from `source`, else undefined. */
function cacheFor(file: string, source: Buffer): Buffer | undefined {
  let cache: Buffer;
  try {
    cache = fs.readFileSync(codeCacheFile(file));
  } catch {
    return undefined; // none: compile the source
  }
  const made = cache.subarray(0, HASH_BYTES);
  return cache.length > HASH_BYTES && native().sodium.memcmp(made, native().sodium.sha256(source)) ? cache.subarray(HASH_BYTES) : undefined;
}

function evaluate(script: vm.Script, file: string): unknown {
  const module = { exports: {} as unknown };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run(module.exports, createRequire(file), module, file, path.dirname(file));
  return module.exports;
}

/** The exports of the CommonJS file `file` (absolute), compiled with its code cache when it fits. */
export function requireWithCodeCache(file: string): unknown {
  const source = fs.readFileSync(file);
  return evaluate(compile(file, source, cacheFor(file, source)), file);
}

/**
 * For the build (scripts/bundle.mjs): evaluates `file` once, as a run would load it, and writes the
 * code cache of what V8 compiled to `codeCacheFile(file)`. Run it with the node that runs vault.
 */
export function writeCodeCache(file: string): void {
  const source = fs.readFileSync(file);
  const script = compile(file, source, undefined);
  evaluate(script, file);
  fs.writeFileSync(codeCacheFile(file), Buffer.concat([native().sodium.sha256(source), script.createCachedData()]));
}

/** Whether the code cache of `file` is the one made from it and V8 takes it: for tests and `vault doctor`. */
export function codeCacheFits(file: string): boolean {
  const source = fs.readFileSync(file);
  const cachedData = cacheFor(file, source);
  return cachedData !== undefined && !compile(file, source, cachedData).cachedDataRejected;
}
