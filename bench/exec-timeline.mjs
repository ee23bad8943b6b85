// Preload for bench/exec-breakdown.mjs (`node --import bench/exec-timeline.mjs dist/vault.mjs exec
// ...`): timestamps the phases of one `vault exec` from the outside, without changing the product,
// as bench/put-timeline.mjs does for a put. It wraps the node:fs functions the bundle calls through
// its `import * as fs` namespaces, child_process.spawn (the bundle's named import is a live binding,
// re-synced with module.syncBuiltinESMExports), process.dlopen and WebAssembly.instantiate, and on
// exit writes the marks (ms since performance.timeOrigin) as JSON to $BENCH_TIMELINE_OUT.
// $BENCH_TIMELINE_BINARY names the resolved target (e.g. /usr/bin/true), whose hashing is marked.
import childProcess from 'node:child_process';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { fdPaths, first, markLocks, marks, markNativeLoads, now, timeFsyncs, writeTimelineOnExit } from './timeline.mjs';

const binary = process.env.BENCH_TIMELINE_BINARY;
let secretsRead = 0;

const original = {
  readSync: fs.readSync,
  readFileSync: fs.readFileSync,
  readdirSync: fs.readdirSync,
  existsSync: fs.existsSync,
};

// known_vaults.lock is also taken before the run (pins, the policy revision seen): the audit
// witness is the one taken after the vault lock is released
markLocks({ witnessAfterVault: true, onOpen: (name) => name === binary && first('binaryOpen') });
timeFsyncs();
fs.readSync = function readSync(fd, ...rest) {
  const read = original.readSync.call(this, fd, ...rest);
  if (read === 0 && fdPaths.get(fd) === binary) first('binaryHashed');
  return read;
};
fs.readFileSync = function readFileSync(file, ...rest) {
  const name = String(file);
  if (name.endsWith('/vault.json')) first('openVault');
  if (name.endsWith('/policy.json')) first('policyRead');
  const isSecret = /\/secrets\/[^/]+\.json$/.test(name);
  if (isSecret) first('secretsStart');
  try {
    return original.readFileSync.call(this, file, ...rest);
  } finally {
    if (isSecret) {
      secretsRead += 1;
      marks.secretsEnd = now();
    }
  }
};
fs.readdirSync = function readdirSync(dir, ...rest) {
  if (String(dir).endsWith('/slots')) first('slotsRead');
  return original.readdirSync.call(this, dir, ...rest);
};
fs.existsSync = function existsSync(file) {
  // the first existence check after the secrets are open is pathsToHide(), just before the spawn
  if (marks.secretsEnd !== undefined) first('hideStart');
  return original.existsSync.call(this, file);
};
syncBuiltinESMExports();

const spawn = childProcess.spawn;
childProcess.spawn = function (...args) {
  first('spawnStart');
  const child = spawn.apply(this, args);
  first('spawnReturned');
  child.on('exit', () => first('helperExit'));
  child.on('close', () => first('helperClose'));
  return child;
};
syncBuiltinESMExports();

markNativeLoads();
writeTimelineOnExit(() => ({ secretsRead }));
