// Preload for bench/breakdown.mjs (`node --import bench/put-timeline.mjs dist/vault.mjs put NAME`):
// timestamps the phases of one `vault put` from the outside, without changing the product. It wraps
// the node:fs functions the bundle calls through its `import * as fs` namespaces (and re-syncs the
// ESM namespace with module.syncBuiltinESMExports), process.dlopen and WebAssembly.instantiate,
// and on exit writes the marks (ms since performance.timeOrigin) as JSON to $BENCH_TIMELINE_OUT.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { first, markLocks, markNativeLoads, timeFsyncs, writeTimelineOnExit } from './timeline.mjs';

const original = {
  readSync: fs.readSync,
  readFileSync: fs.readFileSync,
};

markLocks();
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
