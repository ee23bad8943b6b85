/**
 * `vault agent`: one process holds the vault's private key and runs granted programs for the
 * clients it serves; no request returns a value or the key, and none changes the vault (grants,
 * slots and pins need a person: `vault allow` and the like never talk to the agent). The steps:
 *   1. the socket's directory and file, refused when they are not ours, or taken by a live agent;
 *   2. listen with SO_PEERCRED checks on every connection: the agent's own uid, or a uid or group
 *      it was told to serve; anything else is refused and audited (at most REFUSALS_AUDITED a minute);
 *   3. per connection, one request (docs/agent-protocol.md): exec, status, lock or stop;
 *   4. after --timeout, or `vault agent lock`, the key is wiped and every exec is refused.
 * The process was made non-dumpable with no core dumps (entry.ts) before the key was read.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as z from 'zod/mini';
import { execGranted } from '../sandbox/exec.js';
import { TIERS, type Tier } from '../sandbox/tiers.js';
import { VaultError } from '../vault/errors.js';
import { checkSecretName } from '../vault/names.js';
import { native } from '../vault/native.js';
import { parseNetwork } from '../sandbox/network.js';
import type { UnlockedVault } from '../vault/vault.js';
import { type AgentMessage, type AgentStatus, MAX_REQUEST_BYTES, MAX_REQUEST_FDS, PROTOCOL_VERSION, REQUEST_TIMEOUT_MS } from './protocol.js';

/** Refused connections audited per minute at most: a refused peer must not be able to fill the vault's log. */
const REFUSALS_AUDITED = 10;
const SIGNALS_PASSED_ON = new Set(['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH']);

export interface AgentOptions {
  socket: string;
  /** Wipe the key this many ms after start; undefined keeps it until lock or stop. */
  timeoutMs?: number;
  /** Other uids served besides the agent's own. */
  allowUids: number[];
  /** Groups (names) whose members are served. */
  allowGroups: string[];
  /** Told "ready" once the socket answers (`vault agent start` waits for it), then closed. */
  onReady: () => void;
}

const execSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('exec'),
  vault: z.string(),
  argv: z.array(z.string().check(z.refine((s) => !s.includes('\0')))).check(z.minLength(1)),
  // a name holds no "=" or NUL: the entry NAME=VALUE must split where it was meant to (environ(7))
  env: z.record(z.string().check(z.refine((n) => n !== '' && !n.includes('=') && !n.includes('\0'))), z.string()),
  tier: z.optional(z.enum(TIERS)),
  net: z.optional(z.string().check(z.maxLength(20_000))),
  only: z.optional(z.array(z.string())),
  files: z.array(z.string()),
  mask: z.nullable(z.enum(['stars', 'name'])),
  noMask: z.optional(z.literal(true)),
  timeoutMs: z.optional(z.int().check(z.gte(1), z.lte(0xffff_ffff))),
  killAfterMs: z.optional(z.int().check(z.gte(1), z.lte(0xffff_ffff))),
  info: z.optional(z.boolean()),
});
const controlSchema = z.strictObject({ v: z.literal(PROTOCOL_VERSION), op: z.enum(['status', 'lock', 'stop']) });

interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

/** Members of `group` (uids) and its gid, from the group database (getent(1), so NSS sources count). */
function groupMembers(group: string): { gid: number; uids: number[] } {
  const entry = lookUp('/usr/bin/getent', ['group', group]);
  const fields = entry.status === 0 ? entry.stdout.trim().split(':') : [];
  if (fields.length < 4) throw new VaultError('usage', `--allow-group ${group}: no such group`);
  const uids = (fields[3] ?? '').split(',').filter((n) => n !== '').flatMap((name) => {
    const id = lookUp('/usr/bin/id', ['-u', name]);
    return id.status === 0 ? [Number(id.stdout.trim())] : [];
  });
  return { gid: Number(fields[2]), uids };
}

/**
 * The path of the directory a client sent as `fd`: names resolve against it, and it must still be
 * that directory (same device and inode), not a link or a directory swapped in since.
 */
function directoryOf(fd: number, peer: Peer): string {
  const opened = fs.fstatSync(fd);
  if (!opened.isDirectory()) throw new VaultError('usage', 'the working directory passed is not a directory');
  // the target runs as the agent's user, and in lockdown may write its working directory: a client
  // of another user must not point it at a directory of ours that it could open but not write
  const own = process.getuid?.() ?? -1;
  if (peer.uid !== own && opened.uid !== peer.uid) {
    throw new VaultError('refused', `a client of another user runs programs in a directory of its own; this one belongs to uid ${opened.uid}`);
  }
  let cwd: string;
  let named: fs.Stats;
  try {
    cwd = fs.realpathSync(`/proc/self/fd/${fd}`);
    named = fs.statSync(cwd);
  } catch (error) {
    throw new VaultError('usage', 'the working directory passed has no path any more (removed?)', { cause: error });
  }
  if (named.dev !== opened.dev || named.ino !== opened.ino) {
    throw new VaultError('usage', `the working directory passed is no longer at ${cwd}`);
  }
  return cwd;
}

/** getent(1) and id(1) by absolute path, with no environment: the agent's own may hold VAULT_KEY. */
function lookUp(command: '/usr/bin/getent' | '/usr/bin/id', args: string[]) {
  return spawnSync(command, args, { encoding: 'utf8', env: {} });
}

/** User names by uid, looked up once per uid for the agent's life (a getent(1) per request costs ~5 ms). */
const userNames = new Map<number, string>();

/** The user name of `uid`, for the audit log; the number when it has none. */
function userName(uid: number): string {
  let name = userNames.get(uid);
  if (name === undefined) {
    const entry = lookUp('/usr/bin/getent', ['passwd', String(uid)]);
    name = entry.status === 0 ? (entry.stdout.split(':')[0] ?? String(uid)) : String(uid);
    userNames.set(uid, name);
  }
  return name;
}

/** Step 1: the socket's directory is ours and closed to others, and no live agent holds the socket. */
async function claimSocket(socket: string, sharing: boolean): Promise<void> {
  const dir = path.dirname(socket);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = fs.lstatSync(dir);
  const uid = process.getuid?.() ?? -1;
  if (!stat.isDirectory() || stat.uid !== uid || (stat.mode & 0o022) !== 0) {
    throw new VaultError('refused', `${dir} must be a directory of yours that only you can write, to hold the agent's socket; choose another with --socket`);
  }
  // others must be able to reach a socket they are allowed to use; SO_PEERCRED decides who may
  if (sharing) fs.chmodSync(dir, 0o711);
  let existing: fs.Stats | undefined;
  try {
    existing = fs.lstatSync(socket);
  } catch {
    return;
  }
  if (!existing.isSocket()) throw new VaultError('refused', `${socket} exists and is not a socket; remove it or choose another --socket`);
  const answers = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection(socket);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (answers) throw new VaultError('refused', `an agent already answers at ${socket}; stop it with \`vault agent stop\` first`);
  fs.unlinkSync(socket); // a dead agent's socket
}

/** Whether two paths name one directory (its device and inode), wherever links lead. */
function sameDirectory(a: string, b: string): boolean {
  try {
    const [x, y] = [fs.statSync(a), fs.statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new VaultError('internal', 'an agent connection has no fd');
  return fd;
}

/** Above every fd a spawned helper's stdio takes (0 to 9): libuv dup2s those before it changes directory. */
const FIRST_FREE_FD = 64;

/** What a request's exec failure exits with at the client: vault exec's own code (125). */
const EXEC_FAILED = 125;

/**
 * Runs the agent until `vault agent stop` or a SIGTERM; resolves when it has stopped. `unlocked`
 * is the vault it unlocked at start (CLI: `vault agent start`).
 */
export async function serveAgent(unlocked: UnlockedVault, options: AgentOptions): Promise<void> {
  const uid = process.getuid?.() ?? -1;
  const groups = options.allowGroups.map(groupMembers);
  const sharing = options.allowUids.length > 0 || groups.length > 0;
  await claimSocket(options.socket, sharing);
  const started = new Date();
  let key: UnlockedVault | undefined = unlocked;
  let served = 0;
  let expires: Date | null = null;
  let timer: NodeJS.Timeout | undefined;
  const running = new Set<Promise<void>>();
  let refusalsThisMinute = 0;
  const minuteTimer = setInterval(() => (refusalsThisMinute = 0), 60_000);
  minuteTimer.unref();

  const lock = () => {
    key?.close();
    key = undefined;
    if (timer !== undefined) clearTimeout(timer);
    expires = null;
  };
  if (options.timeoutMs !== undefined) {
    expires = new Date(started.getTime() + options.timeoutMs);
    timer = setTimeout(lock, options.timeoutMs);
  }
  const status = (): AgentStatus => ({
    pid: process.pid, uid, vault: unlocked.vault.dir, socket: options.socket, locked: key === undefined,
    expires: expires === null ? null : expires.toISOString(), served, started: started.toISOString(),
  });

  const allowed = (peer: Peer) =>
    peer.uid === uid || options.allowUids.includes(peer.uid) || groups.some((g) => g.gid === peer.gid || g.uids.includes(peer.uid));

  const server = net.createServer({ pauseOnConnect: true });
  let stopping: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => (stopping = resolve));
  const stop = () => {
    lock();
    server.close();
    try {
      fs.unlinkSync(options.socket);
    } catch {
      // already gone
    }
    void Promise.all([...running]).then(() => stopping?.());
  };

  /**
   * Ends a connection once its last message is written, closing it whole: a request the agent did
   * not read still holds the client's fds in the socket's queue (SCM_RIGHTS), and a paused socket
   * never notices the client's end on its own.
   */
  const finish = (socket: net.Socket) => socket.end(() => socket.destroy());

  const send = (socket: net.Socket, message: AgentMessage) => {
    if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
  };

  async function handle(socket: net.Socket): Promise<void> {
    socket.on('error', () => undefined);
    const fd = socketFd(socket);
    const peer = native().peerCredentials(fd);
    if (!allowed(peer)) {
      send(socket, { event: 'error', message: `this agent does not serve uid ${peer.uid}`, code: EXEC_FAILED });
      finish(socket);
      if (refusalsThisMinute < REFUSALS_AUDITED) {
        refusalsThisMinute += 1;
        try {
          unlocked.vault.record('agent-refused', { uid: peer.uid, gid: peer.gid, pid: peer.pid });
        } catch {
          // the refusal stands whether or not it could be written down
        }
      }
      return;
    }
    let frame: { data: Buffer; fds: number[] };
    try {
      frame = await native().recvRequest(fd, MAX_REQUEST_BYTES, MAX_REQUEST_FDS, REQUEST_TIMEOUT_MS);
    } catch (error) {
      send(socket, { event: 'error', message: `not a request: ${error instanceof Error ? error.message : String(error)}`, code: EXEC_FAILED });
      finish(socket);
      return;
    }
    try {
      await answer(socket, peer, frame);
    } finally {
      for (const passed of frame.fds) native().closeFd(passed);
    }
  }

  async function answer(socket: net.Socket, peer: Peer, frame: { data: Buffer; fds: number[] }): Promise<void> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(frame.data.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    const control = controlSchema.safeParse(parsed);
    if (control.success) {
      if (control.data.op !== 'status' && peer.uid !== uid) {
        send(socket, { event: 'error', message: `only uid ${uid}, the agent's own, may ${control.data.op} it`, code: 11 });
      } else {
        if (control.data.op === 'lock') lock();
        send(socket, { event: 'status', status: status() });
        if (control.data.op === 'stop') setImmediate(stop);
      }
      finish(socket);
      return;
    }
    const request = execSchema.safeParse(parsed);
    if (!request.success || frame.fds.length !== 4) {
      send(socket, { event: 'error', message: 'a malformed request (docs/agent-protocol.md); the connection is closed', code: EXEC_FAILED });
      finish(socket);
      return;
    }
    served += 1;
    const run = execFor(socket, peer, request.data, frame.fds as [number, number, number, number]);
    running.add(run);
    await run.finally(() => running.delete(run));
  }

  async function execFor(socket: net.Socket, peer: Peer, request: z.infer<typeof execSchema>, fds: [number, number, number, number]): Promise<void> {
    const holder = key;
    if (holder === undefined) {
      send(socket, {
        event: 'error',
        code: EXEC_FAILED,
        message: `the agent at ${options.socket} is locked (\`vault agent lock\` or its --timeout): start it again with \`vault agent stop\` then \`vault agent start\`, which asks for the passphrase`,
      });
      finish(socket);
      return;
    }
    if (!sameDirectory(request.vault, unlocked.vault.dir)) {
      send(socket, { event: 'other-vault', vault: unlocked.vault.dir });
      finish(socket);
      return;
    }
    const [cwdFd, stdin, stdout, stderr] = fds;
    let child: { kill(signal: NodeJS.Signals): boolean } | undefined;
    let pending = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      pending += chunk;
      for (let newline = pending.indexOf('\n'); newline !== -1; newline = pending.indexOf('\n')) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        try {
          const { signal } = JSON.parse(line) as { signal?: unknown };
          if (typeof signal === 'string' && SIGNALS_PASSED_ON.has(signal)) child?.kill(signal as NodeJS.Signals);
        } catch {
          // not a message: ignored
        }
      }
      if (pending.length > 4096) socket.destroy();
    });
    // a client that goes away hangs up its run, as a closed terminal would; also one that went away
    // before the helper started (while names resolved): the run is hung up as soon as it spawns
    let hungUp = false;
    socket.on('close', () => {
      hungUp = true;
      child?.kill('SIGHUP');
    });
    socket.resume();
    // the helper starts in /proc/self/fd/N: an N above the fds its stdio is dup2-ed onto first
    let startFd: number | undefined;
    try {
      const cwd = directoryOf(cwdFd, peer);
      startFd = native().dupAbove(cwdFd, FIRST_FREE_FD);
      request.only?.forEach(checkSecretName);
      request.files.forEach(checkSecretName);
      const result = await execGranted(
        holder,
        {
          tier: request.tier as Tier | undefined, net: request.net !== undefined ? parseNetwork('--net', request.net) : undefined, argv: request.argv, only: request.only, files: request.files, mask: request.mask ?? undefined, noMask: request.noMask === true,
          timeoutMs: request.timeoutMs, killAfterMs: request.killAfterMs, warn: (message) => send(socket, { event: 'warning', message }),
        },
        {
          stdio: request.mask === null ? 'inherit' : 'mask', streams: { stdin, stdout, stderr }, forwardSignals: false,
          onSpawn: (spawned) => {
            child = spawned;
            if (hungUp) spawned.kill('SIGHUP');
          },
        },
        {
          cwd, startIn: `/proc/self/fd/${startFd}`, grantedPathOnly: peer.uid !== (process.getuid?.() ?? -1),
          pathList: request.env.PATH ?? '', env: request.env, wipeKeyBeforeRun: false,
          client: { uid: peer.uid, pid: peer.pid, user: userName(peer.uid) },
        },
      );
      send(socket, { event: 'exit', code: result.exitCode, ...(request.info === true ? { info: result.info } : {}) });
    } catch (error) {
      const message = error instanceof VaultError ? error.message : `internal error: ${error instanceof Error ? error.message : String(error)}`;
      send(socket, { event: 'error', message, code: EXEC_FAILED });
    } finally {
      if (startFd !== undefined) native().closeFd(startFd);
      finish(socket);
    }
  }

  server.on('connection', (socket) => {
    handle(socket).catch(() => socket.destroy());
  });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, stop);
  const previous = process.umask(sharing ? 0o111 : 0o177);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.socket, () => resolve());
  });
  process.umask(previous);
  fs.chmodSync(options.socket, sharing ? 0o666 : 0o600);
  try {
    unlocked.vault.record('agent-start', {
      socket: options.socket, pid: process.pid, timeout_ms: options.timeoutMs ?? null, allow_uids: options.allowUids, allow_groups: options.allowGroups,
    });
  } catch (error) {
    stop();
    throw error;
  }
  options.onReady();
  await stopped;
  clearInterval(minuteTimer);
}
