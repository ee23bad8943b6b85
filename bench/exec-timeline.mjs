// Preload for bench/exec-breakdown.mjs (run as `node MODULE dist/vault.mjs exec ...` through
// tools.mjs's preloadedEntry, since vault refuses --import): timestamps the phases of one `vault exec`
// from the outside, without changing the product, as bench/put-timeline.mjs does for a put. It wraps
// what a direct exec calls: vm.Script (the code-cached bundle dist/exec.cjs), the native addon's
// openAt, listDir and libsodium (the addon object is shared through require's cache), fs.openSync
// (the program, locks), child_process.spawn (the helper) and process.dlopen, and on exit writes the
// marks (ms since performance.timeOrigin) as JSON to $BENCH_TIMELINE_OUT.
// $BENCH_TIMELINE_BINARY names the resolved target (e.g. /usr/bin/true), whose opening is marked.
import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import vm from 'node:vm';
import { first, markLocks, marks, markNativeLoads, now, timeFsyncs, writeTimelineOnExit } from './timeline.mjs';

const binary = process.env.BENCH_TIMELINE_BINARY;
let secretsRead = 0;

const opened = markLocks({ witnessAfterVault: true, onOpen: (name) => name === binary && first('binaryOpen') });
timeFsyncs();

// the bundle: compiling it (with its code cache) and evaluating it, in code-cache.ts's order
const Script = vm.Script;
vm.Script = class MarkedScript extends Script {
  constructor(source, options) {
    first('bundleStart');
    super(source, options);
    first('bundleCompiled');
  }
  runInThisContext(...args) {
    const run = super.runInThisContext(...args);
    return (...moduleArgs) => {
      try {
        return run(...moduleArgs);
      } finally {
        first('bundleEvaluated');
      }
    };
  }
};

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

// the addon, once vault loads it: its require returns this same object from then on
markNativeLoads((addon, file) => {
  if (!file.endsWith('sealvault_native.node')) return;
  const { openAt, listDir } = addon;
  let inSecrets = false;
  addon.openAt = function markedOpenAt(dirfd, name, ...rest) {
    if (name === 'vault.json') first('openVault');
    if (name === 'policy.json') first('policyRead');
    const secret = inSecrets && name.endsWith('.json');
    if (secret) {
      first('secretsStart');
      secretsRead += 1;
    }
    try {
      const fd = openAt.call(this, dirfd, name, ...rest);
      opened(`fd${dirfd}/${name}`, fd); // the locks: .lock, known_vaults.lock
      return fd;
    } finally {
      if (secret) marks.secretsEnd = now();
      inSecrets = name === 'secrets';
    }
  };
  addon.listDir = function markedListDir(...args) {
    const names = listDir.apply(this, args);
    if (marks.openVault !== undefined) first('slotsRead'); // the first listing after vault.json: slots/
    return names;
  };
  const { sha256Fd, aeadXChaCha20Poly1305Decrypt } = addon.sodium;
  addon.sodium.sha256Fd = function markedSha256Fd(...args) {
    try {
      return sha256Fd.apply(this, args);
    } finally {
      if (marks.binaryOpen !== undefined) first('binaryHashed');
    }
  };
  addon.sodium.aeadXChaCha20Poly1305Decrypt = function markedUnwrap(...args) {
    try {
      return aeadXChaCha20Poly1305Decrypt.apply(this, args);
    } finally {
      first('keyUnwrapped');
    }
  };
});

writeTimelineOnExit(() => ({ secretsRead }));
