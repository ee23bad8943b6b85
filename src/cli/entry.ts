/**
 * What dist/vault.mjs runs first. Before anything else: no core dumps and no same-uid ptrace or
 * /proc/PID/mem (hardenProcess), and a refusal when the environment loaded code into this process
 * (the launcher, native/vault_launcher.c, removes those variables; this catches a start without it).
 * Then a plain `vault exec` goes to the agent when one answers, loading only what that needs
 * (agent/client.ts), and otherwise unlocks here through exec-command.ts (the bundle dist/exec.cjs,
 * with its code cache), still without commander or the other commands; everything else loads the
 * full CLI (main.ts).
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execThroughAgent } from '../agent/client.js';
import { agentSocketPath } from '../agent/protocol.js';
import { resolveCommand } from '../vault/command-path.js';
import { VaultError } from '../vault/errors.js';
import { parseNetwork } from '../sandbox/network.js';
import { native } from '../vault/native.js';
import { locateVault, locationNote } from '../vault/paths.js';
import { printable } from '../vault/printable.js';
import { requireWithCodeCache } from './code-cache.js';
import { maskStyle, parseDuration, parseLeanExec } from './exec-args.js';

/** Variables that make node or its loader run code they name (node(1), ld.so(8)). */
const CODE_LOADING = ['NODE_OPTIONS', 'NODE_PATH', 'NODE_REPL_EXTERNAL_MODULE', 'LD_PRELOAD', 'LD_AUDIT', 'LD_LIBRARY_PATH'];
const CODE_LOADING_FLAGS = /^(?:-r|--require|--import|--loader|--experimental-loader)(?:=|$)/;

/** One line naming what would load code into vault, or undefined. */
function injectedCode(): string | undefined {
  const variable = CODE_LOADING.find((name) => (process.env[name] ?? '') !== '');
  if (variable !== undefined) {
    return `${variable} is set, which loads code into the process that unlocks the vault; unset it, or start vault as \`vault\` (bin/vault), whose launcher removes it`;
  }
  const flag = process.execArgv.find((arg) => CODE_LOADING_FLAGS.test(arg));
  if (flag !== undefined) return `node was started with ${flag}, which loads code into the process that unlocks the vault; start vault as \`vault\``;
  return undefined;
}

/**
 * The exit code of a plain `vault exec` (through the agent, else unlocking here), or undefined to go
 * on with the full CLI, which also says what is wrong with flags this path does not take.
 */
async function leanExec(): Promise<number | undefined> {
  const lean = parseLeanExec(process.argv.slice(2));
  if (lean === undefined) return undefined;
  let request;
  let note: string | undefined;
  try {
    resolveCommand(lean.command); // not found (127) or not executable (126): the full CLI says which
    const mask = maskStyle(lean.flags.mask);
    const timeoutMs = lean.flags.timeout === undefined ? undefined : parseDuration('--timeout', lean.flags.timeout);
    if (lean.flags.net !== undefined) parseNetwork('--net', lean.flags.net);
    const location = locateVault(lean.vault);
    note = locationNote(location);
    request = {
      vault: location.dir, argv: [lean.command, ...lean.args], ...(lean.flags.tier !== undefined ? { tier: lean.flags.tier } : {}),
      ...(lean.flags.net !== undefined ? { net: lean.flags.net } : {}), ...(lean.flags.mask === false ? { noMask: true } : {}),
      ...(lean.flags.only !== undefined ? { only: lean.flags.only } : {}), files: lean.flags.file ?? [], mask: mask ?? null,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}), killAfterMs: parseDuration('--kill-after', lean.flags.killAfter),
      ...(lean.flags.info === true ? { info: true } : {}),
    };
  } catch (error) {
    if (error instanceof VaultError) return undefined; // the full CLI says it, with its exit code
    throw error;
  }
  if (note !== undefined) process.stderr.write(`${printable(note)}\n`);
  const answer = await execThroughAgent(agentSocketPath(), request);
  if (answer.answered) return answer.code;
  const { runExec, exitWhenWritten, fail, installFailureHandlers } = await loadExecBundle();
  installFailureHandlers();
  try {
    process.exitCode = await runExec(request.vault, lean.command, lean.args, lean.flags, { agentAsked: true });
  } catch (error) {
    fail(error);
  }
  // as main.ts ends: a keychain library's thread must not keep a finished exec alive
  return exitWhenWritten();
}

/**
 * leanExec, and for what it did not foresee (the exec's bundle unreadable, a failure in the agent's
 * client) one line and exit 125, `vault exec`'s own failure: never a stack trace.
 */
async function leanExecOrFail(): Promise<number | undefined> {
  try {
    return await leanExec();
  } catch (error) {
    const { describeFailure } = await import('./messages.js');
    process.stderr.write(`vault: ${printable(describeFailure(error).message)}\n`);
    return 125;
  }
}

/**
 * The direct exec's code: the build's CommonJS bundle with its code cache (code-cache.ts) beside this
 * file, or, from the sources (tests of src/), the same modules through import().
 */
async function loadExecBundle(): Promise<typeof import('./exec-bundle.js')> {
  const bundle = fileURLToPath(new URL('./exec.cjs', import.meta.url));
  if (!fs.existsSync(bundle)) return import('./exec-bundle.js');
  return requireWithCodeCache(bundle) as typeof import('./exec-bundle.js');
}

/**
 * One line when the working directory cannot be known (getcwd(3)): removed (ENOENT), or deeper than
 * PATH_MAX (ENAMETOOLONG, or ERANGE from libuv); every relative name would fail later, with a trace.
 */
function lostDirectory(): string | undefined {
  try {
    process.cwd();
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENAMETOOLONG' || code === 'ERANGE') {
      return 'the working directory\'s path is longer than PATH_MAX (4096 bytes); ' +
        'cd into a shallower directory and run it again';
    }
    if (code !== 'ENOENT') {
      return `the working directory cannot be read (getcwd: ${code}); cd into another one and run it again`;
    }
    return 'the working directory no longer exists (removed?); cd into a directory that does and run it again';
  }
}

native().hardenProcess();
const injected = injectedCode();
const lost = injected === undefined ? lostDirectory() : undefined;
if (injected !== undefined) {
  process.stderr.write(`vault: ${injected}\n`);
  process.exitCode = 2;
} else if (lost !== undefined) {
  process.stderr.write(`vault: ${lost}\n`);
  // `vault exec` keeps its own failures at 125, apart from the target's codes
  process.exitCode = parseLeanExec(process.argv.slice(2)) !== undefined ? 125 : 2;
} else {
  const code = await leanExecOrFail();
  if (code !== undefined) process.exitCode = code;
  else await import('./main.js');
}
