/**
 * Starts native/spawn_helper with a request (docs/helper-protocol.md) and waits for it. Secrets
 * reach the helper only through the request pipe; its argv and environment are empty.
 *
 * Streams: when vault's stdin is a terminal the helper gives the target a pty of its own and
 * relays between it and the caller's terminal (raw mode, window size); otherwise the target gets
 * vault's stdin, stdout and stderr as they are. With masking, the target writes into real pipes
 * that the helper copies to vault, which masks them on the way out; the helper returns when the
 * target exits, whatever its background children still hold open. When the caller's stdout and
 * stderr are one place (`> log 2>&1`, one CI pipe), the target gets one pipe as both, as `2>&1`
 * would give it, so that the masked log keeps the order of its writes (oneDestination).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import * as tty from 'node:tty';
import { VaultError } from '../vault/errors.js';
import { findBuildArtifact, native } from '../vault/native.js';
import { attachStack, type EgressPlan, type Stack } from './egress.js';
import { encodeHelperRequest, HELPER_FLAGS, type HelperRequest } from './helper-protocol.js';
import { type MaskPlan, maskingTransform } from './masking.js';
import type { Tier } from './tiers.js';

export interface HelperInfo {
  tier: Tier;
  userns: boolean;
  /** The target got a pty of its own. */
  pty: boolean;
  /** 'terminal' (TIOCSTI and TIOCLINUX only) or 'full'. */
  seccomp: 'terminal' | 'full';
  /** The Landlock ABI lockdown applied, 0 for none. */
  landlock: number;
  ns: Record<string, number>;
  /** lockdown's network, added by vault: its mode and, for an egress allow-list, each destination's addresses. */
  network?: Record<string, unknown>;
}

export interface SandboxRequest extends Omit<HelperRequest, 'flags' | 'network'> {
  /** lockdown's network: its own loopback only (absent), the host's, or an egress allow-list through a user-mode stack. */
  network?: { mode: 'host' } | { mode: 'egress'; plan: EgressPlan };
  /** What runs (fd 4): a program's sealed copy, or a script's interpreter, hashed from this very fd. */
  executableFd: number;
  /** A script's sealed copy (fd 6), which the interpreter reads. */
  scriptFd?: number;
}

export interface SandboxResult {
  exitCode: number;
  info: HelperInfo | undefined;
  stdout?: Buffer;
  stderr?: Buffer;
}

export interface SandboxOptions {
  /**
   * 'inherit' hands the target the caller's streams (through a pty when stdin is a terminal; the
   * default); 'pipe' captures stdout and stderr and gives no pty; 'mask' passes the output on
   * through a masker that hides the released secrets (`mask` says how).
   */
  stdio?: 'inherit' | 'pipe' | 'mask';
  mask?: MaskPlan;
  /** The helper's working directory (lockdown binds it read-write); default: vault's own. */
  cwd?: string;
  /**
   * The caller's stdin, stdout and stderr as fds: vault's own (0, 1, 2) by default; the agent's are
   * those its client passed (docs/agent-protocol.md).
   */
  streams?: Streams;
  /** Whether signals vault gets go on to the target (the CLI); the agent forwards its clients' instead. */
  forwardSignals?: boolean;
  onSpawn?: (child: ChildProcess) => void;
}

export interface Streams {
  stdin: number;
  stdout: number;
  stderr: number;
}

const OWN_STREAMS: Streams = { stdin: 0, stdout: 1, stderr: 2 };

/** A Writable for the fd `fd`: vault's own stdout and stderr as Node has them, or a stream over a client's fd. */
function writableFor(fd: number): Writable {
  if (fd === 1) return process.stdout;
  if (fd === 2) return process.stderr;
  return fs.createWriteStream('', { fd, autoClose: false });
}

/** Copies the target's output to ours through a masker; resolves once the last masked byte is written. */
function passMasked(from: Readable, to: Writable, plan: MaskPlan): Promise<void> {
  const masker = maskingTransform(plan);
  // When our reader goes away (`vault exec … | head`), close the pipe from the helper too: the
  // helper then closes the target's pipe, whose next write gets SIGPIPE as it would have without
  // vault in between; vault itself lives on to report the exit status.
  const stop = () => {
    from.destroy();
    masker.destroy();
  };
  to.on('error', stop);
  from.pipe(masker).pipe(to, { end: false });
  return new Promise((resolve) => {
    masker.on('close', () => {
      to.off('error', stop);
      if (to === process.stdout || to === process.stderr) {
        resolve();
        return;
      }
      // a client's fd (the agent): its writes run on libuv's thread pool, and the fd may be closed
      // only after the last one ended, or a write lands on a closed (or reused) fd number
      to.on('error', () => resolve());
      to.end(() => resolve());
    });
  });
}

export const HELPER_NAME = 'spawn_helper';

export function helperPath(): string {
  const found = findBuildArtifact(HELPER_NAME);
  if (found === undefined) throw new VaultError('internal', `the sandbox helper (build/Release/${HELPER_NAME}) is not built: run \`npm run build\``);
  return found;
}

/**
 * Signals a person or a supervisor sends to `vault` go on to the target, which is in a session of
 * its own and so never gets the terminal's signals itself. On a terminal the helper keeps the
 * terminal raw, so Ctrl-C reaches the target through its pty instead; window size changes reach
 * the helper directly.
 */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

const O_APPEND = fs.constants.O_APPEND;

/** What decides whether two output fds are one place: fstat(2), fcntl(2) F_GETFL, lseek(2) SEEK_CUR. */
export interface OutputFile {
  dev: bigint;
  ino: bigint;
  regular: boolean;
  flags: number;
  /** -1 where the file has no offset (a pipe, a terminal). */
  offset: number;
}

/**
 * Whether output written to `a` and to `b` lands in one sequence of bytes, so that one pipe for
 * both loses nothing but the order that two would scramble. `sameDescription`: kcmp(2) KCMP_FILE's
 * answer, null where the kernel will not give one. One place: one open file description (`2>&1`,
 * dup(2)); or one file (st_dev and st_ino) that is not a regular file (a pipe, FIFO, socket or
 * device has no offset of a description's own: every description writes into the same stream); or
 * one regular file both descriptions append to (O_APPEND: each write goes at its end). Two
 * descriptions of a regular file that write at their own offsets (`> f 2> f`) are two places, kept
 * apart as the caller made them. Without kcmp (container seccomp profiles refuse it), the same
 * regular file with equal status flags and equal offsets is taken for one description: `> f 2>&1`
 * must keep its order there too, and `> f 2> f`, which it cannot tell from that, then gets the
 * whole output in order instead of two streams overwriting each other.
 */
export function onePlace(a: OutputFile, b: OutputFile, sameDescription: boolean | null): boolean {
  if (a.dev !== b.dev || a.ino !== b.ino) return false;
  if (sameDescription === true || !a.regular) return true;
  if ((a.flags & b.flags & O_APPEND) !== 0) return true;
  return sameDescription === null && a.flags === b.flags && a.offset === b.offset;
}

/**
 * onePlace for the caller's fds `a` and `b`, as the kernel describes them now. False when either
 * cannot be examined (closed, fstat fails): the two streams of before.
 */
export function oneDestination(a: number, b: number): boolean {
  if (a === b) return true;
  const describe = (fd: number): OutputFile => {
    const stat = fs.fstatSync(fd, { bigint: true });
    return { dev: stat.dev, ino: stat.ino, regular: stat.isFile(), ...native().openFileState(fd) };
  };
  try {
    return onePlace(describe(a), describe(b), native().sameOpenFile(a, b));
  } catch {
    return false;
  }
}

/** Which of the helper's streams are what, for the header flags. */
function streamFlags(stdio: 'inherit' | 'pipe' | 'mask', streams: Streams): number {
  const pty = stdio !== 'pipe' && tty.isatty(streams.stdin);
  let flags = 0;
  if (pty) {
    flags |= HELPER_FLAGS.pty;
    if (tty.isatty(streams.stdout)) flags |= HELPER_FLAGS.ptyStdout;
    if (tty.isatty(streams.stderr)) flags |= HELPER_FLAGS.ptyStderr;
  }
  if (stdio === 'mask') {
    const neitherOnPty = (flags & (HELPER_FLAGS.ptyStdout | HELPER_FLAGS.ptyStderr)) === 0;
    // with one pipe for both, the helper's own fd 2 still goes to a masker, carrying only its messages
    if (neitherOnPty && oneDestination(streams.stdout, streams.stderr)) {
      return flags | HELPER_FLAGS.relayStdout | HELPER_FLAGS.relayOne;
    }
    if ((flags & HELPER_FLAGS.ptyStdout) === 0) flags |= HELPER_FLAGS.relayStdout;
    if ((flags & HELPER_FLAGS.ptyStderr) === 0) flags |= HELPER_FLAGS.relayStderr;
  }
  return flags;
}

/**
 * With a pty and masking, vault writes the target's masked output to the terminal itself, after
 * the helper is gone: so the helper leaves the terminal raw (callerRestoresTerminal) and vault puts
 * the modes back once the last byte is out (a "\n" of a full-screen program must not become
 * "\r\n" on the way). Node resets its stdio at exit too, should vault die on the way.
 */
function terminalKeeper(fd: number): () => void {
  const modes = native().terminalModes(fd);
  return () => native().setTerminalModes(fd, modes);
}

export function runSandboxed(request: SandboxRequest, options: SandboxOptions = {}): Promise<SandboxResult> {
  const stdio = options.stdio ?? 'inherit';
  const plan = options.mask;
  if (stdio === 'mask' && plan === undefined) throw new VaultError('internal', "stdio 'mask' needs a mask plan");
  const streams = options.streams ?? OWN_STREAMS;
  const own = streams === OWN_STREAMS;
  let flags = streamFlags(stdio, streams);
  let releaseTerminal = () => undefined as void;
  if (stdio === 'mask' && (flags & HELPER_FLAGS.pty) !== 0) {
    releaseTerminal = terminalKeeper(streams.stdin);
    flags |= HELPER_FLAGS.callerRestoresTerminal;
  }
  type Stdio = 'pipe' | 'inherit' | 'ignore' | number;
  const input: Stdio = stdio === 'pipe' ? 'pipe' : own ? 'inherit' : streams.stdin;
  const [output, errors]: Stdio[] = stdio === 'inherit' ? (own ? ['inherit', 'inherit'] : [streams.stdout, streams.stderr]) : ['pipe', 'pipe'];
  const egress = request.network?.mode === 'egress' ? request.network.plan : undefined;
  if (request.network?.mode === 'host') flags |= HELPER_FLAGS.netHost;
  if (egress !== undefined) flags |= HELPER_FLAGS.netEgress;
  const { network: _network, ...helperRequest } = request;
  const payload = encodeHelperRequest({
    ...helperRequest, flags, ...(egress !== undefined ? { network: { ruleset: egress.ruleset, nftPath: egress.nftPath } } : {}),
  });
  return new Promise<SandboxResult>((resolve, reject) => {
    // fd 6 is the script, if any; fd 7 the sync socket of an egress allow-list
    const script: Stdio[] = request.scriptFd !== undefined ? [request.scriptFd] : egress !== undefined ? ['ignore'] : [];
    const child = spawn(helperPath(), [], {
      env: {},
      cwd: options.cwd,
      stdio: [input, output, errors, 'pipe', request.executableFd, 'pipe', ...script, ...(egress !== undefined ? ['pipe' as const] : [])],
    });
    let stack: Stack | undefined;
    let stackFailed: unknown;
    let closed = false;
    if (egress !== undefined) {
      const sync = (child.stdio as unknown as NodeJS.ReadWriteStream[])[7]!;
      sync.on('error', () => undefined); // a helper that died early is reported by its exit status
      sync.once('data', () => {
        attachStack(egress, child.pid!).then(
          (attached) => {
            // the helper may be gone already (killed, its client hung up): the stack must not outlive it
            if (closed) attached.stop();
            else {
              stack = attached;
              sync.write('G');
            }
          },
          (error: unknown) => {
            // silently: vault's own message says why, not the helper's "did not start" too
            stackFailed = error;
            child.kill('SIGKILL');
          },
        );
      });
    }
    const masked =
      stdio === 'mask' && plan !== undefined && child.stdout !== null && child.stderr !== null
        ? Promise.all([passMasked(child.stdout, writableFor(streams.stdout), plan), passMasked(child.stderr, writableFor(streams.stderr), plan)])
        : Promise.resolve();
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    const forwarding = options.forwardSignals ?? true;
    if (forwarding) for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const stopForwarding = () => {
      if (forwarding) for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
    };
    options.onSpawn?.(child);

    const pipes = child.stdio as unknown as (NodeJS.ReadableStream & NodeJS.WritableStream)[];
    const requestPipe = pipes[3] as NodeJS.WritableStream;
    requestPipe.on('error', () => undefined); // a helper that died early is reported by its exit status
    requestPipe.end(payload, () => payload.fill(0));

    let infoText = '';
    const infoPipe = pipes[5] as NodeJS.ReadableStream;
    infoPipe.setEncoding('utf8');
    infoPipe.on('data', (chunk: string) => {
      infoText += chunk;
    });
    const captured = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    if (stdio === 'pipe') {
      child.stdout?.on('data', (chunk: Buffer) => captured.stdout.push(chunk));
      child.stderr?.on('data', (chunk: Buffer) => captured.stderr.push(chunk));
    }

    child.on('error', (error) => {
      stopForwarding();
      releaseTerminal();
      payload.fill(0);
      reject(new VaultError('internal', `cannot start the sandbox helper: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      stopForwarding();
      payload.fill(0);
      closed = true;
      stack?.stop();
      if (stackFailed !== undefined) {
        releaseTerminal();
        reject(stackFailed);
        return;
      }
      const exitCode = code ?? 128 + (signal === null ? 0 : (os.constants.signals[signal] ?? 0));
      let info: HelperInfo | undefined;
      try {
        info = infoText.trim() === '' ? undefined : (JSON.parse(infoText) as HelperInfo);
      } catch {
        info = undefined;
      }
      const result: SandboxResult = { exitCode, info };
      if (stdio === 'pipe') {
        result.stdout = Buffer.concat(captured.stdout);
        result.stderr = Buffer.concat(captured.stderr);
      }
      void masked.then(() => {
        releaseTerminal();
        resolve(result);
      });
    });
  });
}
