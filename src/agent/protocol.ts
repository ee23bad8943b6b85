/**
 * The agent's wire protocol, docs/agent-protocol.md: what both ends share. Kept free of zod,
 * libsodium and commander, since the client side of `vault exec` loads it on every run.
 *
 * A connection carries one request. The client's first frame is a 4-byte big-endian length and
 * that many bytes of UTF-8 JSON (a Request), sent in one sendmsg(2) with the fds it names attached
 * (SCM_RIGHTS). After it, each side writes JSON lines: the client signals it got and window size
 * changes (ClientMessage), the agent warnings, errors and the exit code (AgentMessage).
 */
import * as os from 'node:os';
import * as path from 'node:path';

export const PROTOCOL_VERSION = 1;
/** The largest first frame the agent reads, in bytes: argv and environment are bounded by the kernel's own 2 MiB. */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
/** The most fds a request carries: cwd, stdin, stdout, stderr. */
export const MAX_REQUEST_FDS = 4;
/** How long the agent waits for a whole first frame, in ms: a client that stalls is dropped. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** `vault exec` through the agent. fds: [cwd (a directory), stdin, stdout, stderr]. */
export interface ExecRequestMessage {
  v: typeof PROTOCOL_VERSION;
  op: 'exec';
  /** The vault the client means (its --vault, VAULT_DIR or default): an agent holding another says so. */
  vault: string;
  argv: string[];
  /** The client's environment: PATH to find the command by name, and what its grant may pass on. */
  env: Record<string, string>;
  /** Absent: what the grants ask for (exec.ts). */
  tier?: string;
  /** `--net` as the client wrote it; the agent parses it (network.ts). */
  net?: string;
  only?: string[];
  files: string[];
  /** 'stars', 'name', or null for no masking. */
  mask: string | null;
  /** The client said --no-mask (refused where a grant masks). */
  noMask?: boolean;
  timeoutMs?: number;
  killAfterMs?: number;
  info?: boolean;
}

export interface ControlRequestMessage {
  v: typeof PROTOCOL_VERSION;
  op: 'status' | 'lock' | 'stop';
}

export type RequestMessage = ExecRequestMessage | ControlRequestMessage;

/** From the client after its request: a signal it got, to pass on to the target. */
export interface ClientMessage {
  signal: string;
}

/** From the agent. */
export type AgentMessage =
  | { event: 'warning'; message: string }
  | { event: 'error'; message: string; code: number }
  | { event: 'exit'; code: number; info?: unknown }
  | { event: 'status'; status: AgentStatus }
  | { event: 'done' }
  /** The agent holds another vault than the request names: the client unlocks by itself. */
  | { event: 'other-vault'; vault: string };

export interface AgentStatus {
  pid: number;
  uid: number;
  vault: string;
  socket: string;
  locked: boolean;
  /** When the key is wiped (ISO 8601), or null without --timeout. */
  expires: string | null;
  /** Requests served since start. */
  served: number;
  started: string;
}

/** The first frame: length and JSON. */
export function encodeFrame(message: RequestMessage): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const frame = Buffer.alloc(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/**
 * Where the agent listens: `--socket`, else VAULT_AGENT_SOCK, else $XDG_RUNTIME_DIR/sealvault/
 * agent.sock (the XDG base directory spec's place for sockets), else /tmp/sealvault-UID/agent.sock.
 */
export function agentSocketPath(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return path.resolve(flag);
  const named = env.VAULT_AGENT_SOCK;
  if (named !== undefined && named !== '') return path.resolve(named);
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && path.isAbsolute(runtime)) return path.join(runtime, 'sealvault', 'agent.sock');
  return path.join(os.tmpdir(), `sealvault-${process.getuid?.() ?? 'user'}`, 'agent.sock');
}
