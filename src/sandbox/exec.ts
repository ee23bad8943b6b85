/**
 * `vault exec`: release the secrets granted to one pinned program (or script and interpreter) into
 * a sandboxed run of it. The audit log records the release before any value is decrypted (a
 * `release` entry, fsynced; if it cannot be written nothing is released and nothing runs) and the
 * exit code after (`exit`). What runs, its environment and the host paths lockdown adds come from
 * the grants (program.ts, environment.ts); plaintext lives only in buffers wiped after hand-over.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { wipe } from '../vault/crypto.js';
import { VaultError } from '../vault/errors.js';
import { stateDirectory } from '../vault/paths.js';
import { grantedEnvironment, grantedPaths, type Policy, secretsToRelease } from '../vault/policy.js';
import type { UnlockedVault } from '../vault/vault.js';
import { tokenFilePath } from '../vault/token-source.js';
import { targetEnvironment } from './environment.js';
import type { MountEntry } from './helper-protocol.js';
import { lockdownMounts } from './lockdown-root.js';
import { type Caller, closeRun, ownCaller, planRun, type ProgramRun } from './program.js';
import { disposePlan, MIN_MASKED_LENGTH, type MaskPlan, type MaskStyle, planMasking } from './masking.js';
import { runSandboxed, type SandboxOptions, type SandboxResult } from './spawn.js';
import type { Tier } from './tiers.js';

export interface ExecRequest {
  tier: Tier;
  /** argv of the target: argv[0] as the user typed the command, then its arguments. */
  argv: string[];
  /** --only: release exactly these. */
  only?: string[];
  /** --file: deliver these as files instead of environment variables. */
  files: string[];
  /** How to mask released values in the target's stdout and stderr; undefined passes them through untouched. */
  mask?: MaskStyle;
  /** Told once which released secrets are too short to mask. */
  warn?: (message: string) => void;
  /** --timeout: SIGTERM after this many ms, SIGKILL killAfterMs later; the run then exits 124. */
  timeoutMs?: number;
  killAfterMs?: number;
}

/**
 * Who asked for the run: vault's own process (`vault exec` unlocking by itself) or a client of the
 * agent, whose working directory, environment and streams it passed (docs/agent-protocol.md).
 */
export interface ExecCaller extends Caller {
  /** The caller's environment: what its grant may pass on to the target (environment.ts). */
  env: NodeJS.ProcessEnv;
  /** Who the agent ran it for, recorded with the release (`client` in the audit entry). */
  client?: { uid: number; pid: number; user: string };
  /**
   * Wipe the private key once the values are opened, before the target starts: `vault exec` has no
   * use for it after that. The agent keeps it for its next client.
   */
  wipeKeyBeforeRun: boolean;
  /**
   * Where the helper starts, when not at `cwd`: the agent gives `/proc/self/fd/N` of the directory
   * its client sent, so that the helper starts in that very directory whatever its path names by
   * then (the helper then checks that lockdown's working directory is the same one).
   */
  startIn?: string;
}

/** `vault exec` run directly: vault's own working directory, PATH and environment. */
export function ownExecCaller(): ExecCaller {
  return { ...ownCaller(), env: process.env, wipeKeyBeforeRun: true };
}

/** What the target must not see in lockdown: the vault, the user's keychain and session sockets, our state, the token file. */
function pathsToHide(vaultDir: string): string[] {
  const runtime = process.env.XDG_RUNTIME_DIR ?? `/run/user/${process.getuid?.() ?? 0}`;
  const directories = [vaultDir, runtime, stateDirectory(), path.join(os.homedir(), '.local', 'share', 'keyrings')]
    .filter((dir) => path.isAbsolute(dir) && fs.existsSync(dir))
    .map((dir) => fs.realpathSync(dir));
  const tokenFile = tokenFilePath();
  return tokenFile === undefined ? directories : [...directories, tokenFile];
}

export async function execGranted(
  vault: UnlockedVault, request: ExecRequest, options: SandboxOptions = {}, caller: ExecCaller = ownExecCaller(),
): Promise<SandboxResult> {
  const policy = vault.policy();
  const run = planRun(policy, request.argv, request.tier, caller);
  try {
    return await releaseInto(vault, policy, run, request, { ...options, cwd: caller.startIn ?? caller.cwd }, caller);
  } finally {
    closeRun(run);
  }
}

async function releaseInto(
  vault: UnlockedVault, policy: Policy, run: ProgramRun, request: ExecRequest, options: SandboxOptions, caller: ExecCaller,
): Promise<SandboxResult> {
  const release = { target: run.target, args: run.args, tier: request.tier, only: request.only, allowHint: run.allowHint };
  const names = secretsToRelease(policy, release);
  const stray = request.files.find((name) => !names.includes(name));
  if (stray !== undefined) throw new VaultError('usage', `--file ${stray}: ${stray} is not among the secrets released to this run (${names.join(', ')})`);
  const environment = grantedEnvironment(policy, names, release);
  const mounts: MountEntry[] = [];
  if (request.tier === 'lockdown') {
    const granted = grantedPaths(policy, names, release);
    // the home the target will see (its grant may pin one) is the empty one
    const home = environment.env.HOME ?? os.userInfo().homedir;
    mounts.push(...lockdownMounts({ cwd: caller.cwd, home, readOnly: granted.ro, readWrite: granted.rw }));
  }
  if (run.script !== undefined && request.tier !== 'none') mounts.push({ kind: 'scriptCopy', path: run.script.path });

  const { target } = run;
  const sealed = vault.readSealed(names);
  const runId = randomBytes(8).toString('hex');
  try {
    vault.vault.record('release', {
      run: runId, path: target.path, sha256: target.sha256, ...(target.interpreter !== undefined ? { interpreter: target.interpreter } : {}),
      tier: request.tier, secrets: names, files: request.files, ...(caller.client !== undefined ? { client: caller.client } : {}),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw Object.assign(new VaultError(error instanceof VaultError ? error.kind : 'internal', `the release could not be audited, so nothing was released and nothing ran: ${reason}`), { cause: error });
  }

  const values = vault.openSealed(sealed);
  if (caller.wipeKeyBeforeRun) vault.close();
  let env: Uint8Array[] = [];
  let plan: MaskPlan | undefined;
  let running: Promise<SandboxResult>;
  try {
    const inEnvironment = new Map([...values].filter(([name]) => !request.files.includes(name)));
    env = targetEnvironment(caller.env, inEnvironment, request.tier, environment);
    const files = request.files.map((name) => ({ name, value: values.get(name) ?? new Uint8Array() }));
    if (request.mask !== undefined) {
      plan = planMasking([...values].map(([name, value]) => ({ name, value })), request.mask);
      if (plan.tooShort.length > 0) {
        request.warn?.(`not masking ${plan.tooShort.join(', ')} in the output: shorter than ${MIN_MASKED_LENGTH} bytes, too short to tell from ordinary text`);
      }
    }
    // runSandboxed encodes its request before it returns, so the plaintext can go now
    running = runSandboxed(
      {
        tier: request.tier, argv: run.argv, env, files, hide: pathsToHide(vault.vault.dir), mounts,
        timeoutMs: request.timeoutMs, killAfterMs: request.killAfterMs, executableFd: run.executable.fd, scriptFd: run.script?.fd,
      },
      plan === undefined ? options : { ...options, stdio: 'mask', mask: plan },
    );
  } catch (error) {
    if (plan !== undefined) disposePlan(plan);
    throw error;
  } finally {
    wipe(...values.values(), ...env);
  }
  const result = await running.finally(() => {
    if (plan !== undefined) disposePlan(plan);
  });
  try {
    vault.vault.record('exit', { run: runId, exit: result.exitCode });
  } catch (error) {
    // the target ran and its code is what the caller needs; the release entry already stands
    request.warn?.(`the run's exit code could not be added to the audit log (${error instanceof Error ? error.message : String(error)})`);
  }
  return result;
}
