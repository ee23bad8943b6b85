/**
 * `vault exec`: release the secrets granted to one pinned program (or script and interpreter) into
 * a sandboxed run of it. The audit log records the release before any value is decrypted (a
 * `release` entry, fsynced; if it cannot be written nothing is released and nothing runs) and the
 * exit code after (`exit`). What runs, its environment and the host paths lockdown adds come from
 * the grants (program.ts, environment.ts); plaintext lives only in buffers wiped after hand-over.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes, wipe } from '../vault/crypto.js';
import { VaultError } from '../vault/errors.js';
import { stateDirectory } from '../vault/paths.js';
import {
  grantedEnvironment, grantedPaths, grantedTier, type Policy, runFiles, runMask, runNetwork, secretsToRelease,
} from '../vault/policy.js';
import type { UnlockedVault } from '../vault/vault.js';
import { identityFilePaths } from '../vault/identity-source.js';
import { tokenFilePath } from '../vault/token-source.js';
import { type EgressPlan, planEgress } from './egress.js';
import { targetEnvironment } from './environment.js';
import { type Network, networkText } from './network.js';
import type { MountEntry } from './helper-protocol.js';
import { isWithin, lockdownMounts } from './lockdown-root.js';
import { type Caller, closeRun, ownCaller, planRun, type ProgramRun } from './program.js';
import { disposePlan, MIN_MASKED_LENGTH, type MaskPlan, type MaskStyle, planMasking } from './masking.js';
import { runSandboxed, type SandboxOptions, type SandboxResult } from './spawn.js';
import type { Tier } from './tiers.js';

export interface ExecRequest {
  /** --tier: absent, the strongest its grants ask for (at least hardened); never below a grant's. */
  tier?: Tier;
  /** --net: lockdown's network, within what every grant of the run allows; absent, what they give. */
  net?: Network;
  /** argv of the target: argv[0] as the user typed the command, then its arguments. */
  argv: string[];
  /** --only: release exactly these. */
  only?: string[];
  /** --file: deliver these as files instead of environment variables (besides those the grants deliver so). */
  files: string[];
  /** How to mask released values in the target's stdout and stderr; undefined passes them through untouched. */
  mask?: MaskStyle;
  /** The caller said --no-mask: refused when a grant of the run masks (policy.ts runMask). */
  noMask?: boolean;
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

/** `--net` with a `--tier` below lockdown: a usage error, said the same by the CLI and the agent. */
export function netOutsideLockdown(tier: string): VaultError {
  return new VaultError('usage', `--net describes lockdown's network, and --tier ${tier} shares the host's: drop --tier, or use --tier lockdown`);
}

/** `vault exec` run directly: vault's own working directory, PATH and environment. */
export function ownExecCaller(): ExecCaller {
  return { ...ownCaller(), env: { ...process.env }, wipeKeyBeforeRun: true };
}

/**
 * What the target must not see in lockdown: the vault, the user's keychain and session sockets, our
 * state, the token file, the age identity files read to unlock.
 */
function pathsToHide(vaultDir: string): string[] {
  const runtime = process.env.XDG_RUNTIME_DIR ?? `/run/user/${process.getuid?.() ?? 0}`;
  const directories = [vaultDir, runtime, stateDirectory(), path.join(os.homedir(), '.local', 'share', 'keyrings')]
    .filter((dir) => path.isAbsolute(dir) && fs.existsSync(dir))
    .map((dir) => fs.realpathSync(dir));
  const tokenFile = tokenFilePath();
  return [...directories, ...(tokenFile === undefined ? [] : [tokenFile]), ...identityFilePaths()];
}

export async function execGranted(
  vault: UnlockedVault, request: ExecRequest, options: SandboxOptions = {}, caller: ExecCaller = ownExecCaller(),
): Promise<SandboxResult> {
  const policy = vault.policy();
  if (request.net !== undefined && request.tier !== undefined && request.tier !== 'lockdown') throw netOutsideLockdown(request.tier);
  // the default tier is never none, so planning as hardened gives the same argv (program.ts scriptPathFor)
  const run = planRun(policy, request.argv, request.tier ?? 'hardened', caller);
  const tier = request.tier ?? (request.net !== undefined ? 'lockdown' : grantedTier(policy, run.target, run.args, request.only));
  try {
    return await releaseInto(vault, policy, run, { ...request, tier }, { ...options, cwd: caller.startIn ?? caller.cwd }, caller);
  } finally {
    closeRun(run);
  }
}

/** What --info and the audit say of lockdown's network. */
function describeNetwork(network: Network, egress: EgressPlan | undefined): Record<string, unknown> {
  if (egress === undefined) return { mode: network.mode };
  return { mode: 'egress', allow: egress.destinations.map((d) => ({ to: `${d.host}:${d.port}`, addresses: d.addresses })) };
}

async function releaseInto(
  vault: UnlockedVault, policy: Policy, run: ProgramRun, request: ExecRequest & { tier: Tier }, options: SandboxOptions, caller: ExecCaller,
): Promise<SandboxResult> {
  const release = { target: run.target, args: run.args, tier: request.tier, only: request.only, allowHint: run.allowHint };
  const names = secretsToRelease(policy, release);
  const stray = request.files.find((name) => !names.includes(name));
  if (stray !== undefined) throw new VaultError('usage', `--file ${stray}: ${stray} is not among the secrets released to this run (${names.join(', ')})`);
  const files = runFiles(policy, names, release, request.files);
  const inWorkingDirectory = files.find((f) => f.path !== undefined && isWithin(f.path, caller.cwd));
  if (request.tier === 'lockdown' && inWorkingDirectory !== undefined) {
    throw new VaultError(
      'refused',
      `the grant puts ${inWorkingDirectory.name} at ${inWorkingDirectory.path}, inside the working directory ${caller.cwd}, which is ` +
        "the host's own (the plaintext would reach its disk); run from another directory, or grant a path such as /run/secrets/NAME",
    );
  }
  const mask = runMask(policy, names, release, request.mask, request.noMask === true);
  const network = request.tier === 'lockdown' ? runNetwork(policy, names, release, request.net) : undefined;
  // names resolve once, here, before anything is released: a name that does not resolve refuses the run
  const egress = network?.mode === 'egress' ? await planEgress(network.allow) : undefined;
  const environment = grantedEnvironment(policy, names, release);
  const mounts: MountEntry[] = [];
  if (request.tier === 'lockdown') {
    const granted = grantedPaths(policy, names, release);
    // the home the target will see (its grant may pin one) is the empty one
    const home = environment.env.HOME ?? os.userInfo().homedir;
    mounts.push(...lockdownMounts({ cwd: caller.cwd, home, readOnly: granted.ro, readWrite: granted.rw }));
    if (egress !== undefined) mounts.push({ kind: 'content', path: '/etc/hosts', target: egress.hosts });
  }
  if (run.script !== undefined && request.tier !== 'none') mounts.push({ kind: 'scriptCopy', path: run.script.path });

  const { target } = run;
  const sealed = vault.readSealed(names);
  const runId = Buffer.from(randomBytes(8)).toString('hex');
  try {
    vault.vault.record('release', {
      run: runId, path: target.path, sha256: target.sha256, ...(target.interpreter !== undefined ? { interpreter: target.interpreter } : {}),
      tier: request.tier, secrets: names, files: files.map((f) => (f.path !== undefined ? `${f.name}=${f.path}` : f.name)),
      ...(network !== undefined ? { net: networkText(network) } : {}), ...(caller.client !== undefined ? { client: caller.client } : {}),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw Object.assign(new VaultError(error instanceof VaultError ? error.kind : 'internal', `the release could not be audited, so nothing was released and nothing ran: ${reason}`), { cause: error });
  }

  const { values, config } = vault.openSealed(sealed);
  if (caller.wipeKeyBeforeRun) vault.close();
  let env: Uint8Array[] = [];
  let plan: MaskPlan | undefined;
  let running: Promise<SandboxResult>;
  try {
    const inEnvironment = new Map([...values].filter(([name]) => !files.some((f) => f.name === name)));
    env = targetEnvironment(caller.env, inEnvironment, request.tier, environment, files.map((f) => f.name));
    const delivered = files.map((f) => ({ ...f, value: values.get(f.name) ?? new Uint8Array() }));
    if (mask !== undefined) {
      // an empty value has nothing to mask: no warning that it is too short either
      const masked = [...values].filter(([name, value]) => !config.has(name) && value.length > 0);
      plan = planMasking(masked.map(([name, value]) => ({ name, value })), mask);
      if (plan.tooShort.length > 0) {
        request.warn?.(`not masking ${plan.tooShort.join(', ')} in the output: shorter than ${MIN_MASKED_LENGTH} bytes, too short to tell from ordinary text`);
      }
    }
    // runSandboxed encodes its request before it returns, so the plaintext can go now
    running = runSandboxed(
      {
        tier: request.tier, argv: run.argv, env, files: delivered, hide: pathsToHide(vault.vault.dir), mounts,
        ...(network?.mode === 'host' ? { network: { mode: 'host' as const } } : {}),
        ...(egress !== undefined ? { network: { mode: 'egress' as const, plan: egress } } : {}),
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
  if (result.info !== undefined && network !== undefined) result.info.network = describeNetwork(network, egress);
  try {
    vault.vault.record('exit', { run: runId, exit: result.exitCode });
  } catch (error) {
    // the target ran and its code is what the caller needs; the release entry already stands
    request.warn?.(`the run's exit code could not be added to the audit log (${error instanceof Error ? error.message : String(error)})`);
  }
  return result;
}
