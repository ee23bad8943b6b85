/**
 * What `vault exec -- CMD ARGS` runs, decided by the grants and not by the caller: a program (its
 * sealed copy), or a script (its sealed copy) run by the interpreter its grant pinned, whatever
 * `#!/usr/bin/env` or the caller's PATH would have picked. The caller's PATH only finds CMD, whose
 * bytes must then match a grant.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  closePinned, openRegularFile, type PinnedFile, pinCopy, pinInPlace, readShebang, writableByOthers,
} from '../vault/binary.js';
import { resolveCommand } from '../vault/command-path.js';
import { VaultError } from '../vault/errors.js';
import type { Grant } from '../vault/format.js';
import { changedSince, isInterpreter, type Policy, type RunTarget, shellQuote } from '../vault/policy.js';
import type { Tier } from './tiers.js';

export interface ProgramRun {
  target: RunTarget;
  /** What the helper executes (fd 4): the program's sealed copy, or the interpreter itself. */
  executable: PinnedFile;
  /** A script's sealed copy (fd 6), which the interpreter reads. */
  script?: PinnedFile;
  /** The target's argv: for a script, the interpreter, its #! argument, the script's path, the script's arguments. */
  argv: string[];
  /** The arguments grants are matched against (after the program, or after the script). */
  args: string[];
  /** The `vault allow` that would grant this run (NAME for the secret). */
  allowHint: string;
}

/** Where the interpreter finds the script: its own path where the helper binds the copy there, else the fd. */
export function scriptPathFor(tier: Tier, script: PinnedFile): string {
  return tier === 'none' ? '/dev/fd/6' : script.path;
}

function hasShebang(file: string): boolean {
  const fd = openRegularFile(file);
  try {
    return readShebang(fd) !== undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** A script run by the interpreter its grant pinned, or undefined when no grant pins one for these bytes. */
function interpretedRun(policy: Policy, script: PinnedFile, tier: Tier, rest: string[], allowHint: string): ProgramRun | undefined {
  const grant = policy.grants.find((g) => g.sha256 === script.sha256 && g.interpreter !== undefined);
  if (grant?.interpreter === undefined) return undefined;
  const open = writableByOthers(grant.interpreter.path);
  if (open !== undefined) {
    throw new VaultError('refused', `${script.path}: its interpreter ${grant.interpreter.path} can now be changed by others than root (${open}); nothing was released`);
  }
  let interpreter: PinnedFile;
  try {
    interpreter = pinInPlace(grant.interpreter.path);
  } catch {
    throw new VaultError('notFound', `${script.path}: its interpreter ${grant.interpreter.path} is gone; install it again, or renew the grant with \`vault allow --renew ${shellQuote(script.path)}\``);
  }
  const arg = grant.interpreter.arg === undefined ? [] : [grant.interpreter.arg];
  return {
    target: { path: script.path, sha256: script.sha256, interpreter: { path: interpreter.path, sha256: interpreter.sha256 } },
    executable: interpreter,
    script,
    // argv[0] is the grant's interpreter path, never a name the caller typed: Python finds its
    // prefix (a pyvenv.cfg and its site-packages) from it, and scripts re-run sys.executable or $BASH
    argv: [interpreter.path, ...arg, scriptPathFor(tier, script), ...rest],
    args: rest,
    allowHint,
  };
}

/**
 * Pins what `argv` would run. The caller closes the fds (closeRun). Throws 127-kind errors
 * (notFound) for a command that does not exist, 'refused' for a script whose grant predates pinned
 * interpreters.
 */
export function planRun(policy: Policy, argv: string[], tier: Tier, caller: Caller = ownCaller()): ProgramRun {
  const run = planAnyRun(policy, argv, tier, caller);
  if (caller.grantedPathOnly !== true) return run;
  const elsewhere = policy.grants.filter((g) => g.sha256 === run.target.sha256 && g.path !== run.target.path);
  if (elsewhere.length > 0 && !policy.grants.some((g) => g.sha256 === run.target.sha256 && g.path === run.target.path)) {
    closeRun(run);
    throw new VaultError(
      'refused',
      `${run.target.path} holds the bytes granted at ${elsewhere[0]!.path}, but for a client of another user a program runs only at ` +
        'the path it was granted at: a copy elsewhere would load the files beside it',
    );
  }
  return run;
}

function planAnyRun(policy: Policy, argv: string[], tier: Tier, caller: Caller): ProgramRun {
  const command = argv[0] ?? '';
  const scriptArg = argv[1];
  const given = scriptArg === undefined ? undefined : path.resolve(caller.cwd, scriptArg);
  const scriptGiven = isInterpreter(command) && given !== undefined && !scriptArg!.startsWith('-') && isFile(given);
  // `python3 app.py`: the script's grant names the interpreter, whatever python3 the caller's PATH finds
  if (scriptGiven) {
    const run = scriptByName(policy, command, given!, argv.slice(2), tier);
    if (run !== undefined) return run;
  }
  const first = resolveCommand(command, caller.pathList, caller.cwd);
  const quoted = shellQuote(first);
  if (hasShebang(first)) {
    const script = pinCopy(first);
    try {
      const run = interpretedRun(policy, script, tier, argv.slice(1), `vault allow NAME --to ${quoted}`);
      if (run !== undefined) return run;
      if (policy.grants.some((g) => g.sha256 === script.sha256)) {
        throw new VaultError('refused', `${first} was granted before sealvault pinned a script's interpreter with it; run \`vault allow --renew ${quoted}\` to pin both`);
      }
      // no grant: the refusal names the right `vault allow`
      return { target: { path: script.path, sha256: script.sha256 }, executable: script, argv, args: argv.slice(1), allowHint: `vault allow NAME --to ${quoted}` };
    } catch (error) {
      closePinned(script);
      throw error;
    }
  }
  const program = pinCopy(first);
  if (scriptGiven) {
    const hint = `vault allow NAME --run ${shellQuote(command)} ${shellQuote(fs.realpathSync(given!))}`;
    return { target: { path: program.path, sha256: program.sha256 }, executable: program, argv, args: argv.slice(1), allowHint: hint };
  }
  const pinned = isInterpreter(first) ? argv.slice(1).map((a) => ` --arg ${shellQuote(a)}`).join('') : '';
  // argv[0] is the program's own path, not a name the caller chose: a multi-call program (git,
  // busybox) picks what it does by that name, which would get round pinned arguments
  return {
    target: { path: program.path, sha256: program.sha256 }, executable: program, argv: [program.path, ...argv.slice(1)], args: argv.slice(1),
    allowHint: `vault allow NAME --to ${quoted}${pinned}`,
  };
}

/** Whether `typed` (python3) names the grant's interpreter (/usr/bin/python3.11). */
function namesInterpreter(typed: string, interpreter: string): boolean {
  return path.basename(interpreter).startsWith(path.basename(typed));
}

/**
 * `INTERPRETER SCRIPT ARGS`: the run the script's grant describes, or undefined when no grant is for
 * this script with an interpreter of that name. A script changed since its grant is refused here,
 * naming the renewal, rather than taken for a run of the interpreter alone.
 */
function scriptByName(policy: Policy, typed: string, given: string, rest: string[], tier: Tier): ProgramRun | undefined {
  const script = pinCopy(fs.realpathSync(given));
  const hint = `vault allow NAME --run ${shellQuote(typed)} ${shellQuote(script.path)}`;
  const named = (g: Grant) => g.interpreter !== undefined && namesInterpreter(typed, g.interpreter.path);
  try {
    const ours = { ...policy, grants: policy.grants.filter(named) };
    const run = interpretedRun(ours, script, tier, rest, hint);
    if (run !== undefined) return run;
    const earlier = ours.grants.filter((g) => g.path === script.path);
    if (earlier.length > 0) throw changedSince({ path: script.path, sha256: script.sha256 }, earlier);
  } catch (error) {
    closePinned(script);
    throw error;
  }
  closePinned(script);
  return undefined;
}

/** Where the caller of `vault exec` is: its working directory and PATH, against which names resolve. */
export interface Caller {
  cwd: string;
  pathList: string;
  /**
   * Grants match only at their own path, not wherever their bytes are: the agent's clients of another
   * uid, who may place a copy of a granted script beside a `lib.sh` of theirs. Otherwise bytes match
   * anywhere, so that a vault cloned to another path (CI) still runs; a process of the same uid can
   * read a running target's environment anyway (SECURITY.md).
   */
  grantedPathOnly?: boolean;
}

/** vault's own working directory and PATH: `vault exec` run directly. */
export function ownCaller(): Caller {
  return { cwd: process.cwd(), pathList: process.env.PATH ?? '' };
}

function isFile(given: string): boolean {
  try {
    return fs.statSync(given).isFile();
  } catch {
    return false;
  }
}

export function closeRun(run: ProgramRun): void {
  closePinned(run.executable, run.script);
}
