/**
 * The client side of `vault exec` through the agent (docs/agent-protocol.md). It loads no crypto,
 * no schema library and no argument parser: it sends argv, its working directory, its environment
 * and its stdin, stdout and stderr (as fds) in one request, passes on the signals it gets, prints
 * the agent's warnings and errors, and exits with the target's code. It never sees a value or the key.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { native } from '../vault/native.js';
import { UNLOCK_VARIABLES } from '../vault/unlock-variables.js';
import {
  type AgentMessage, agentSocketPath, type AgentStatus, encodeFrame, type ExecRequestMessage, PROTOCOL_VERSION, type RequestMessage,
} from './protocol.js';

/** Signals a person or a supervisor sends to `vault exec`, passed on to the target (SIGWINCH: the window changed). */
const PASSED_ON: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];
const SEND_TIMEOUT_MS = 5_000;

/** Whether this process already asked the agent (entry.ts's lean path), so that the full CLI does not ask again. */
export const agentState = { tried: false };

/** What happened: the agent answered (with an exit code), or there is no agent to answer. */
export type AgentAnswer = { answered: true; code: number } | { answered: false; why: string };

/**
 * Why the process at the other end of `connection` is not an agent to trust, or undefined when it
 * is: one running as this user (SO_PEERCRED), or, at a socket named by VAULT_AGENT_SOCK or
 * --socket, the user who owns the socket and its directory (another user's agent that serves us).
 * A default path in a shared directory (/tmp when XDG_RUNTIME_DIR is unset) can be taken first by
 * anyone, and its taker must not get our stdio and environment.
 */
function distrust(connection: net.Socket, socketPath: string): string | undefined {
  const peer = native().peerCredentials(socketFd(connection));
  const own = process.getuid?.() ?? -1;
  if (peer.uid === own) return undefined;
  const named = socketPath !== agentSocketPath(undefined, { ...process.env, VAULT_AGENT_SOCK: undefined });
  if (named) {
    const socket = fs.lstatSync(socketPath);
    const dir = fs.lstatSync(path.dirname(socketPath));
    if (socket.uid === peer.uid && dir.uid === peer.uid && (dir.mode & 0o022) === 0) return undefined;
  }
  return `the process answering at ${socketPath} runs as uid ${peer.uid}, not as you${named ? ' nor as the owner of the socket and its directory' : ''}; ` +
    'nothing was sent to it. If it is not your agent, someone else made that socket: remove it, or name yours with VAULT_AGENT_SOCK';
}

type Connection = { socket: net.Socket } | { refused: string } | undefined;

/** Connects to `socketPath`; undefined when nothing listens there (no file, or a dead agent's file). */
function connect(socketPath: string): Promise<Connection> {
  return new Promise((resolve) => {
    if (!fs.existsSync(socketPath)) {
      resolve(undefined);
      return;
    }
    const connection = net.createConnection(socketPath);
    connection.once('connect', () => {
      let refused: string | undefined;
      try {
        refused = distrust(connection, socketPath);
      } catch (error) {
        refused = `cannot check who answers at ${socketPath}: ${error instanceof Error ? error.message : String(error)}`;
      }
      if (refused === undefined) {
        resolve({ socket: connection });
        return;
      }
      connection.destroy();
      resolve({ refused });
    });
    connection.once('error', () => resolve(undefined));
  });
}

/** The raw fd of a connected socket, for sendmsg(2): Node keeps it on the handle (Unix only). */
function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the agent socket has no fd');
  return fd;
}

/**
 * Sends `request` with `fds` attached and calls `onMessage` for every line of the answer. A send
 * the agent cut short (EPIPE, ECONNRESET: it refused us and closed) still reads what it said first.
 */
function converse(
  socket: net.Socket, request: RequestMessage, fds: number[], onMessage: (message: AgentMessage) => boolean,
): Promise<boolean> {
  try {
    native().sendWithFds(socketFd(socket), encodeFrame(request), fds, SEND_TIMEOUT_MS);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EPIPE' && code !== 'ECONNRESET') throw error;
  }
  return new Promise((resolve) => {
    let pending = '';
    let finished = false;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      pending += chunk;
      for (let newline = pending.indexOf('\n'); newline !== -1 && !finished; newline = pending.indexOf('\n')) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        let message: AgentMessage;
        try {
          message = JSON.parse(line) as AgentMessage;
        } catch {
          continue;
        }
        if (onMessage(message)) {
          finished = true;
          socket.end();
          resolve(true);
        }
      }
    });
    socket.on('close', () => {
      if (!finished) resolve(false);
    });
    socket.on('error', () => undefined);
  });
}

/**
 * Runs `request` through the agent at `socketPath`. Resolves with the target's exit code (or a
 * failure code the agent sent, after printing its line), or `answered: false` when no agent
 * listens there, so that the caller unlocks by itself.
 */
export async function execThroughAgent(
  socketPath: string, request: Omit<ExecRequestMessage, 'v' | 'op' | 'env'>,
): Promise<AgentAnswer> {
  agentState.tried = true;
  const connection = await connect(socketPath);
  if (connection === undefined) return { answered: false, why: `no agent answers at ${socketPath}` };
  if ('refused' in connection) {
    process.stderr.write(`vault: ${connection.refused}\n`);
    return { answered: true, code: 125 };
  }
  const { socket } = connection;
  const cwd = fs.openSync('.', fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  // the grant decides what the target gets of it (environment.ts); what opens the vault never leaves
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    // a name the agent would refuse (empty, or with "="; environ(7)) is no variable a grant could pass
    if (value !== undefined && !UNLOCK_VARIABLES.has(name) && name !== '' && !name.includes('=')) env[name] = value;
  }
  let code = 125;
  let sawAnswer = false;
  let otherVault = false;
  const passOn = (signal: NodeJS.Signals) => {
    if (!socket.destroyed) socket.write(`${JSON.stringify({ signal })}\n`);
  };
  for (const signal of PASSED_ON) process.on(signal, passOn);
  try {
    const ended = await converse(socket, { v: PROTOCOL_VERSION, op: 'exec', env, ...request }, [cwd, 0, 1, 2], (message) => {
      sawAnswer = true;
      if (message.event === 'other-vault') {
        otherVault = true;
        return true;
      }
      if (message.event === 'warning') process.stderr.write(`vault: warning: ${message.message}\n`);
      if (message.event === 'error') {
        process.stderr.write(`vault: ${message.message}\n`);
        code = message.code;
        return true;
      }
      if (message.event === 'exit') {
        if (request.info === true && message.info !== undefined) process.stderr.write(`vault: info ${JSON.stringify(message.info)}\n`);
        code = message.code;
        return true;
      }
      return false;
    });
    if (!ended) {
      process.stderr.write(`vault: the agent at ${socketPath} closed the connection ${sawAnswer ? 'before the run ended' : 'without an answer'}\n`);
      code = 125;
    }
  } finally {
    for (const signal of PASSED_ON) process.off(signal, passOn);
    fs.closeSync(cwd);
  }
  if (otherVault) return { answered: false, why: `the agent at ${socketPath} holds another vault` };
  return { answered: true, code };
}

/** A control request (status, lock, stop): the agent's status, or undefined when no agent answers. */
export async function controlAgent(socketPath: string, op: 'status' | 'lock' | 'stop'): Promise<{ status?: AgentStatus; error?: { message: string; code: number } } | undefined> {
  const connection = await connect(socketPath);
  if (connection === undefined) return undefined;
  if ('refused' in connection) return { error: { message: connection.refused, code: 125 } };
  const { socket } = connection;
  let status: AgentStatus | undefined;
  let error: { message: string; code: number } | undefined;
  await converse(socket, { v: PROTOCOL_VERSION, op }, [], (message) => {
    if (message.event === 'status') status = message.status;
    if (message.event === 'error') error = { message: message.message, code: message.code };
    return message.event === 'status' || message.event === 'error' || message.event === 'done';
  });
  return { ...(status !== undefined ? { status } : {}), ...(error !== undefined ? { error } : {}) };
}
