/**
 * `vault exec`'s action, without commander: main.ts's exec command calls it, and so does entry.ts for
 * a plain `vault exec` that no agent answered, so that a direct exec loads neither commander nor the
 * other commands (docs/performance.md). Exit codes: the target's own; 125 for vault's failures, 126
 * when the command cannot be run, 127 when it is not found; 2 for bad flags (thrown as usage).
 */
import { agentState, execThroughAgent } from '../agent/client.js';
import { agentSocketPath } from '../agent/protocol.js';
import { execGranted, netOutsideLockdown } from '../sandbox/exec.js';
import { type Network, parseNetwork } from '../sandbox/network.js';
import type { Tier } from '../sandbox/tiers.js';
import { resolveCommand } from '../vault/command-path.js';
import { noteIdentityFile } from '../vault/identity-source.js';
import { VaultError } from '../vault/errors.js';
import { checkSecretName } from '../vault/names.js';
import { type ExecFlags, maskStyle, parseDuration } from './exec-args.js';
import { fail, say } from './messages.js';
import { withUnlockedVault } from './unlock-prompt.js';

/**
 * Runs `command args` as the vault at `vaultDirectory` grants it, through the agent when one answers
 * (unless `agentAsked`: entry.ts asked it already), else unlocking here (`identityFile`: from
 * --identity); resolves with the exit code.
 * Bad flags throw a usage VaultError (exit 2) before anything is opened.
 */
export async function runExec(
  vaultDirectory: string, command: string, args: string[], flags: ExecFlags, options: { agentAsked?: boolean; identityFile?: string } = {},
): Promise<number> {
  const mask = maskStyle(flags.mask);
  const timeoutMs = flags.timeout === undefined ? undefined : parseDuration('--timeout', flags.timeout);
  const killAfterMs = parseDuration('--kill-after', flags.killAfter);
  const net: Network | undefined = flags.net !== undefined ? parseNetwork('--net', flags.net) : undefined;
  if (net !== undefined && flags.tier !== undefined && flags.tier !== 'lockdown') throw netOutsideLockdown(flags.tier);
  try {
    (flags.only ?? []).forEach(checkSecretName);
    (flags.file ?? []).forEach(checkSecretName);
    resolveCommand(command); // before any prompt: a missing or unrunnable command needs no unlock
  } catch (error) {
    fail(error);
    return error instanceof VaultError && error.kind === 'notFound' ? 127 : error instanceof VaultError && error.kind === 'usage' ? 126 : 125;
  }
  if (options.agentAsked !== true && !agentState.tried) {
    const answer = await execThroughAgent(agentSocketPath(), {
      vault: vaultDirectory, argv: [command, ...args], ...(flags.tier !== undefined ? { tier: flags.tier } : {}),
      ...(flags.net !== undefined ? { net: flags.net } : {}), ...(flags.only !== undefined ? { only: flags.only } : {}), files: flags.file ?? [],
      ...(flags.mask === false ? { noMask: true } : {}),
      mask: mask ?? null, ...(timeoutMs !== undefined ? { timeoutMs } : {}), killAfterMs, ...(flags.info === true ? { info: true } : {}),
    });
    if (answer.answered) return answer.code;
  }
  try {
    if (options.identityFile !== undefined) noteIdentityFile(options.identityFile); // hidden even if a token unlocks
    const identity = options.identityFile !== undefined ? { identityFile: options.identityFile } : {};
    const result = await withUnlockedVault(vaultDirectory, (vault) =>
      execGranted(vault, {
        tier: flags.tier as Tier | undefined, net, argv: [command, ...args], only: flags.only, files: flags.file ?? [], mask, noMask: flags.mask === false,
        timeoutMs, killAfterMs,
        warn: (message) => say(`vault: warning: ${message}`),
      }),
      identity,
    );
    if (flags.info && result.info !== undefined) say(`vault: info ${JSON.stringify(result.info)}`);
    return result.exitCode;
  } catch (error) {
    fail(error);
    // Ctrl-C at the passphrase prompt: 130, as at every prompt, not a failure of vault's
    return error instanceof VaultError && error.kind === 'interrupted' ? 130 : 125;
  }
}
