/**
 * Loading the build's CommonJS bundle of a direct `vault exec` (dist/exec.cjs, see exec-bundle.ts)
 * with the V8 code cache the build made for it (dist/exec.cjs.v8cache), so that its ≈ 240 KB are
 * not parsed and compiled again on every run: ≈ 11 ms a start here (docs/performance.md). Node 20
 * has no compile cache for modules (module.enableCompileCache came in Node 22.1); this is the
 * vm.Script cachedData that such caches are made of (node:vm, "new vm.Script", cachedData).
 *
 * The cache sits beside the code it was made from, written by the same build with the same
 * permissions: whoever could replace it could replace the code. V8 checks only a source's length,
 * its own version and flags (`cachedDataRejected`), not the cached data itself: a damaged cache can
 * crash V8 or run code that is in no source. So the file is SHA-256(source) ‖ SHA-256(data) ‖ data,
 * both hashes are checked before V8 sees the data, and anything that does not fit (another source,
 * damaged data, not a regular file, over MAX_FILE_BYTES) is compiled from the source, slower and
 * otherwise the same.
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
import { VaultError } from '../vault/errors.js';
import { native } from '../vault/native.js';

/** The file of the code cache for the CommonJS file `file`. */
export const codeCacheFile = (file: string): string => `${file}.v8cache`;

const HASH_BYTES = 32;
/** The bundle and its cache are ≈ 250 and ≈ 130 KB: anything far larger is not what the build wrote. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

/**
 * The bytes of a regular file of at most MAX_FILE_BYTES, or undefined when `file` is anything else:
 * opened without blocking (a FIFO in its place must not hang vault; Node's fds are close-on-exec)
 * and checked with fstat(2).
 * Throws only when the file cannot be opened or read.
 */
function readRegularFile(file: string): Buffer | undefined {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile() || stat.size > MAX_FILE_BYTES) return undefined;
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** `source` as a CommonJS module function, as Node wraps one (modules.md, "The module wrapper"). */
function compile(file: string, source: Buffer, cachedData: Buffer | undefined): vm.Script {
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source.toString('utf8')}\n})`;
  return new vm.Script(wrapped, { filename: file, ...(cachedData !== undefined ? { cachedData } : {}) });
}

/** V8's part of the cache file when it was made from `source` and is whole, else undefined. */
function cacheFor(file: string, source: Buffer): Buffer | undefined {
  let cache: Buffer | undefined;
  try {
    cache = readRegularFile(codeCacheFile(file));
  } catch {
    return undefined; // none, or unreadable: compile the source
  }
  if (cache === undefined || cache.length <= 2 * HASH_BYTES) return undefined;
  const { memcmp, sha256 } = native().sodium;
  const data = cache.subarray(2 * HASH_BYTES);
  const fits = memcmp(cache.subarray(0, HASH_BYTES), sha256(source)) && memcmp(cache.subarray(HASH_BYTES, 2 * HASH_BYTES), sha256(data));
  return fits ? data : undefined;
}

function evaluate(script: vm.Script, file: string): unknown {
  const module = { exports: {} as unknown };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run(module.exports, createRequire(file), module, file, path.dirname(file));
  return module.exports;
}

/** The source of the bundle `file`; a VaultError naming it when it is not a regular file. */
function sourceOf(file: string): Buffer {
  const source = readRegularFile(file);
  if (source === undefined) throw new VaultError('internal', `${file} is not a regular file of at most ${MAX_FILE_BYTES} bytes; reinstall vault`);
  return source;
}

/** The exports of the CommonJS file `file` (absolute), compiled with its code cache when it fits. */
export function requireWithCodeCache(file: string): unknown {
  const source = sourceOf(file);
  return evaluate(compile(file, source, cacheFor(file, source)), file);
}

/**
 * For the build (scripts/bundle.mjs): evaluates `file` once, as a run would load it, and writes the
 * code cache of what V8 compiled to `codeCacheFile(file)`. Run it with the node that runs vault.
 */
export function writeCodeCache(file: string): void {
  const source = sourceOf(file);
  const script = compile(file, source, undefined);
  evaluate(script, file);
  const data = script.createCachedData();
  const { sha256 } = native().sodium;
  fs.writeFileSync(codeCacheFile(file), Buffer.concat([sha256(source), sha256(data), data]));
}

/** Whether the code cache of `file` is the one made from it, whole, and V8 takes it: for the tests. */
export function codeCacheFits(file: string): boolean {
  const source = sourceOf(file);
  const cachedData = cacheFor(file, source);
  return cachedData !== undefined && !compile(file, source, cachedData).cachedDataRejected;
}
