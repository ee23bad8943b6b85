// Preload for bench/breakdown.mjs (loaded before dist/vault.mjs through tools.mjs's preloadedEntry):
// timestamps the phases of one `vault put` from the outside, without changing the product. It wraps
// the node:fs functions the bundle calls through its `import * as fs` namespaces (and re-syncs the
// ESM namespace with module.syncBuiltinESMExports), process.dlopen and the addon's openAt and
// crypto_box_seal, and on exit writes the marks (ms since performance.timeOrigin) as JSON to
// $BENCH_TIMELINE_OUT.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { first, markLocks, markNativeLoads, timeFsyncs, writeTimelineOnExit } from './timeline.mjs';

const original = { readSync: fs.readSync };

const opened = markLocks();
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
syncBuiltinESMExports();

markNativeLoads((addon, file) => {
  if (!file.endsWith('sealvault_native.node')) return;
  const { openAt } = addon;
  addon.openAt = function markedOpenAt(dirfd, name, ...rest) {
    if (name === 'vault.json') first('openVault');
    const fd = openAt.call(this, dirfd, name, ...rest);
    opened(`fd${dirfd}/${name}`, fd); // the locks: .lock, known_vaults.lock
    return fd;
  };
  const { boxSeal } = addon.sodium;
  addon.sodium.boxSeal = function markedBoxSeal(...args) {
    try {
      return boxSeal.apply(this, args);
    } finally {
      first('sealed');
    }
  };
});
writeTimelineOnExit(() => ({ bootstrapComplete: performance.nodeTiming.bootstrapComplete }));
