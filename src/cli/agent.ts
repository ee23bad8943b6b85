/**
 * `vault agent start|status|lock|stop`: the CLI side of src/agent/. `start` without --foreground
 * runs the agent as a child (so that it can ask for the passphrase on this terminal), waits until
 * it answers on its socket, and returns; the child then leaves the terminal (setsid, /dev/null).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { controlAgent } from '../agent/client.js';
import { agentSocketPath } from '../agent/protocol.js';
import { serveAgent } from '../agent/server.js';
import { VaultError } from '../vault/errors.js';
import { native } from '../vault/native.js';
import { holdTrustStateInMemory } from '../vault/pins.js';
import { UNLOCK_VARIABLES } from '../vault/unlock-variables.js';
import type { UnlockedVault, Vault } from '../vault/vault.js';
import { parseDuration } from './exec-args.js';

export interface AgentStartFlags {
  timeout?: string;
  allowUid?: string[];
  allowGroup?: string[];
  socket?: string;
  foreground?: boolean;
  notifyFd?: string;
}

export interface AgentCli {
  say: (line: string) => void;
  print: (text: string) => void;
  openVault: () => Vault;
  unlock: (vault: Vault) => Promise<UnlockedVault>;
}

/** 24 days: under 2^31-1 ms, the longest delay of a Node timer (setTimeout). */
const MAX_TIMEOUT_MS = 24 * 24 * 60 * 60 * 1000;

function uids(values: string[]): number[] {
  return values.map((value) => {
    if (!/^\d+$/.test(value)) throw new VaultError('usage', `--allow-uid takes a numeric uid, not "${value}"`);
    return Number(value);
  });
}

/** `vault agent start`: in the foreground (systemd, or the child of a plain start), or as a daemon. */
export async function startAgent(flags: AgentStartFlags, cli: AgentCli): Promise<void> {
  const socket = agentSocketPath(flags.socket);
  const timeoutMs = flags.timeout === undefined ? undefined : parseDuration('--timeout', flags.timeout);
  // Node's timers hold at most 2^31-1 ms; a longer one would fire at once
  if (timeoutMs !== undefined && timeoutMs > MAX_TIMEOUT_MS) {
    throw new VaultError('usage', `--timeout ${flags.timeout} is longer than the agent can wait: at most 24d`);
  }
  const allowUids = uids(flags.allowUid ?? []);
  if (flags.foreground !== true) {
    await startDaemon(socket, cli);
    return;
  }
  // from here on the pins, revision and witness are the ones read now (pins.ts)
  holdTrustStateInMemory();
  const unlocked = await cli.unlock(cli.openVault());
  unlocked.policy(); // verified as an unlock does: a damaged or rolled-back policy stops the start
  // the key is held now: nothing the agent starts later needs what opened it
  for (const name of UNLOCK_VARIABLES) delete process.env[name];
  const notify = flags.notifyFd === undefined ? undefined : Number(flags.notifyFd);
  await serveAgent(unlocked, {
    socket, allowUids, allowGroups: flags.allowGroup ?? [], ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    onReady: () => {
      if (notify === undefined) {
        cli.say(`vault: agent ready at ${socket} (pid ${process.pid}); \`vault agent stop\` ends it`);
        return;
      }
      // out of the terminal's session first: its hangup, once `vault agent start` returns, must not reach us
      native().detach([notify]);
      fs.writeSync(notify, 'ready\n');
      fs.closeSync(notify);
    },
  });
}

/** Starts `vault agent start --foreground` as a child on this terminal and waits until its socket answers. */
async function startDaemon(socket: string, cli: AgentCli): Promise<void> {
  const script = process.argv[1];
  if (script === undefined) throw new VaultError('internal', 'cannot tell which vault script runs');
  const child = spawn(process.execPath, [script, ...process.argv.slice(2), '--foreground', '--notify-fd', '3'], {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
  });
  const ready = await new Promise<boolean>((resolve) => {
    let said = '';
    const notify = child.stdio[3] as NodeJS.ReadableStream;
    notify.setEncoding('utf8');
    notify.on('data', (chunk: string) => {
      said += chunk;
      if (said.includes('ready\n')) resolve(true);
    });
    child.on('exit', () => resolve(false));
  });
  if (!ready) {
    // the child said why on our stderr; its code is ours
    process.exitCode = child.exitCode ?? 1;
    return;
  }
  child.unref();
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  cli.say(`vault: agent started (pid ${child.pid}) at ${socket}; \`vault agent stop\` ends it`);
  if (socket !== agentSocketPath(undefined, { ...process.env, VAULT_AGENT_SOCK: undefined })) {
    cli.print(`VAULT_AGENT_SOCK=${socket}; export VAULT_AGENT_SOCK;\n`);
  }
}

/** `vault agent status|lock|stop`. */
export async function controlCommand(op: 'status' | 'lock' | 'stop', flags: { socket?: string; json?: boolean }, cli: AgentCli): Promise<void> {
  const socket = agentSocketPath(flags.socket);
  const answer = await controlAgent(socket, op);
  if (answer === undefined) throw new VaultError('notFound', `no agent answers at ${socket}; start one with \`vault agent start\``);
  if (answer.error !== undefined) throw new VaultError(answer.error.code === 11 ? 'refused' : 'internal', answer.error.message);
  const status = answer.status;
  if (status === undefined) throw new VaultError('internal', `the agent at ${socket} gave no status`);
  if (flags.json === true) {
    cli.print(`${JSON.stringify(status, null, 2)}\n`);
    return;
  }
  const state = status.locked ? 'locked' : `unlocked${status.expires !== null ? ` until ${status.expires}` : ''}`;
  const verb = op === 'status' ? '' : op === 'lock' ? 'locked; ' : 'stopping; ';
  cli.print(`${verb}agent pid ${status.pid} at ${status.socket}: ${state}, vault ${status.vault}, ${status.served} request(s) served since ${status.started}\n`);
}
