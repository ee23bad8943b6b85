// Preload for bench/breakdown.mjs (`node --import bench/put-timeline.mjs dist/vault.mjs put NAME`):
// timestamps the phases of one `vault put` from the outside, without changing the product. It wraps
// the node:fs functions the bundle calls through its `import * as fs` namespaces (and re-syncs the
// ESM namespace with module.syncBuiltinESMExports), process.dlopen and WebAssembly.instantiate,
// and on exit writes the marks (ms since performance.timeOrigin) as JSON to $BENCH_TIMELINE_OUT.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { fdPaths, first, markNativeLoads, timeFsyncs, writeTimelineOnExit } from './timeline.mjs';

const original = {
  openSync: fs.openSync,
  closeSync: fs.closeSync,
  readSync: fs.readSync,
  readFileSync: fs.readFileSync,
};

fs.openSync = function openSync(file, ...rest) {
  const name = String(file);
  if (name.endsWith('/.lock')) first('vaultLock');
  if (name.endsWith('/known_vaults.lock')) first('witnessLock');
  const fd = original.openSync.call(this, file, ...rest);
  fdPaths.set(fd, name);
  return fd;
};
fs.closeSync = function closeSync(fd) {
  const name = fdPaths.get(fd);
  fdPaths.delete(fd);
  const result = original.closeSync.call(this, fd);
  if (name?.endsWith('/.lock')) first('vaultUnlock');
  if (name?.endsWith('/known_vaults.lock')) first('witnessUnlock');
  return result;
};
timeFsyncs();
fs.readSync = function readSync(fd, ...rest) {
  if (fd !== 0) return original.readSync.call(this, fd, ...rest);
  first('stdinStart');
  let read = 0;
  try {
    read = original.readSync.call(this, fd, ...rest);
    return read;
  } finally {
    if (read === 0) first('stdinEnd');
  }
};
fs.readFileSync = function readFileSync(file, ...rest) {
  if (String(file).endsWith('/vault.json')) first('openVault');
  return original.readFileSync.call(this, file, ...rest);
};
syncBuiltinESMExports();

markNativeLoads();
writeTimelineOnExit(() => ({ bootstrapComplete: performance.nodeTiming.bootstrapComplete }));
