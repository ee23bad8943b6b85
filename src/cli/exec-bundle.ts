/**
 * What a direct `vault exec` needs after entry.ts, as one CommonJS bundle (dist/exec.cjs) that loads
 * with a V8 code cache (code-cache.ts): the exec action and how a run ends.
 */
export { runExec } from './exec-command.js';
export { exitWhenWritten, fail, installFailureHandlers } from './messages.js';
