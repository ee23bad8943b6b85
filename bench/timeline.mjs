// What the preloads bench/put-timeline.mjs and bench/exec-timeline.mjs share: phase marks (ms since
// performance.timeOrigin, the first time each is reached), fsync timings, the loading of native code
// (process.dlopen: the addon, which links libsodium), and writing it all as JSON on exit to
// $BENCH_TIMELINE_OUT.
import fs from 'node:fs';

export const now = () => performance.now();
export const marks = { preload: now() };
/** Paths of the fds the product opened, for naming fsync targets. */
export const fdPaths = new Map();
/** { target, ms, at } per fsync. */
export const fsyncs = [];

export function first(name) {
  if (marks[name] === undefined) marks[name] = now();
}

/**
 * Wraps fs.openSync and fs.closeSync to remember each fd's path and mark when the vault's lock
 * (`.lock`) and the witness's lock (`known_vaults.lock`) are taken and released. With
 * `witnessAfterVault`, a witness lock taken before the vault lock is released is not the one
 * marked. `onOpen` sees every path opened. The caller re-syncs the ESM namespace. Returns
 * `opened(name, fd)` for files opened another way (the addon's openAt: pass `DIR/NAME`).
 */
export function markLocks({ witnessAfterVault = false, onOpen = () => {} } = {}) {
  const { openSync, closeSync } = fs;
  const isWitness = (name) => name?.endsWith('/known_vaults.lock') && (!witnessAfterVault || marks.vaultUnlock !== undefined);
  const opening = (name) => {
    onOpen(name);
    if (name.endsWith('/.lock')) first('vaultLock');
    if (isWitness(name)) first('witnessLock');
  };
  fs.openSync = function markedOpenSync(file, ...rest) {
    const name = String(file);
    opening(name);
    const fd = openSync.call(this, file, ...rest);
    fdPaths.set(fd, name);
    return fd;
  };
  fs.closeSync = function markedCloseSync(fd) {
    const name = fdPaths.get(fd);
    fdPaths.delete(fd);
    const result = closeSync.call(this, fd);
    if (name?.endsWith('/.lock')) first('vaultUnlock');
    if (isWitness(name)) first('witnessUnlock');
    return result;
  };
  return (name, fd) => {
    opening(name);
    fdPaths.set(fd, name);
  };
}

/** Wraps fs.fsyncSync to time each call; the caller re-syncs the ESM namespace. */
export function timeFsyncs() {
  const fsyncSync = fs.fsyncSync;
  fs.fsyncSync = function timedFsyncSync(fd) {
    const start = now();
    try {
      return fsyncSync.call(this, fd);
    } finally {
      fsyncs.push({ target: fdPaths.get(fd) ?? `fd ${fd}`, ms: now() - start, at: start });
    }
  };
}

/**
 * Marks the start and end of loading native code (process.dlopen: the addon, with libsodium) and
 * passes each loaded module's exports to `onLoad(exports, file)`, which may wrap its functions: vault
 * gets the same object through require's cache.
 */
export function markNativeLoads(onLoad = () => {}) {
  const dlopen = process.dlopen;
  process.dlopen = function markedDlopen(module, file, ...rest) {
    first('dlopenStart');
    try {
      return dlopen.call(this, module, file, ...rest);
    } finally {
      first('dlopenEnd');
      onLoad(module.exports, file);
    }
  };
}

/** On exit, writes the marks, the fsyncs, peak RSS and `extra()` to $BENCH_TIMELINE_OUT. */
export function writeTimelineOnExit(extra = () => ({})) {
  const out = process.env.BENCH_TIMELINE_OUT;
  if (out === undefined || out === '') return;
  process.on('exit', () => {
    marks.exit = now();
    fs.writeFileSync(out, JSON.stringify({ marks, fsyncs, maxRSS: process.resourceUsage().maxRSS, ...extra() }));
  });
}
