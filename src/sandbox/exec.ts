/**
 * `vault exec`: release the secrets granted to one pinned binary into a sandboxed run of it, and
 * record the run in the audit log. Plaintext lives only in buffers that are wiped after hand-over.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { PinnedBinary } from '../vault/binary.js';
import { wipe } from '../vault/crypto.js';
import { VaultError } from '../vault/errors.js';
import { stateDirectory } from '../vault/paths.js';
import { grantedPaths, secretsToRelease } from '../vault/policy.js';
import type { UnlockedVault } from '../vault/vault.js';
import { tokenFilePath } from '../vault/token-source.js';
import { targetEnvironment } from './environment.js';
import type { MountEntry } from './helper-protocol.js';
import { lockdownMounts } from './lockdown-root.js';
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
  vault: UnlockedVault,
  binary: PinnedBinary,
  request: ExecRequest,
  options: SandboxOptions = {},
): Promise<SandboxResult> {
  const policy = vault.policy();
  const release = { binary, args: request.argv.slice(1), tier: request.tier, only: request.only };
  const names = secretsToRelease(policy, release);
  let mounts: MountEntry[] | undefined;
  if (request.tier === 'lockdown') {
    const granted = grantedPaths(policy, names, release);
    mounts = lockdownMounts({ cwd: process.cwd(), home: process.env.HOME, executable: binary.path, readOnly: granted.ro, readWrite: granted.rw });
  }
  const stray = request.files.find((name) => !names.includes(name));
  if (stray !== undefined) throw new VaultError('usage', `--file ${stray}: ${stray} is not among the secrets released to this run (${names.join(', ')})`);

  const values = vault.openSecrets(names);
  let env: Uint8Array[] = [];
  let plan: MaskPlan | undefined;
  let running: Promise<SandboxResult>;
  try {
    const inEnvironment = new Map([...values].filter(([name]) => !request.files.includes(name)));
    env = targetEnvironment(process.env, inEnvironment, request.tier);
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
        tier: request.tier, argv: request.argv, env, files, hide: pathsToHide(vault.vault.dir), mounts, executablePath: binary.path,
        timeoutMs: request.timeoutMs, killAfterMs: request.killAfterMs, executableFd: binary.fd,
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
  vault.vault.change(() => undefined, () => [
    'exec',
    { path: binary.path, sha256: binary.sha256, tier: request.tier, secrets: names, files: request.files, exit: result.exitCode },
  ]);
  return result;
}
