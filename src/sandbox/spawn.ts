/**
 * Starts native/spawn_helper with a request (docs/helper-protocol.md) and waits for the target.
 * Secrets reach the helper only through the request pipe; its argv and environment are empty.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { VaultError } from '../vault/errors.js';
import { findBuildArtifact } from '../vault/native.js';
import { encodeHelperRequest, type HelperRequest } from './helper-protocol.js';
import { type MaskPlan, maskingTransform } from './masking.js';
import type { Tier } from './tiers.js';

export interface HelperInfo {
  tier: Tier;
  userns: boolean;
  ns: Record<string, number>;
}

export interface SandboxRequest extends HelperRequest {
  /** The pinned executable, opened once by the caller and hashed from this very fd. */
  executableFd: number;
}

export interface SandboxResult {
  exitCode: number;
  info: HelperInfo | undefined;
  stdout?: Buffer;
  stderr?: Buffer;
}

export interface SandboxOptions {
  /**
   * 'inherit' hands the target the caller's stdout and stderr (the default); 'pipe' captures them;
   * 'mask' passes them on through a masker that hides the released secrets (`mask` says how).
   */
  stdio?: 'inherit' | 'pipe' | 'mask';
  mask?: MaskPlan;
  onSpawn?: (child: ChildProcess) => void;
}

/** Copies the target's output to ours through a masker; resolves once the last masked byte is written. */
function passMasked(from: Readable, to: Writable, plan: MaskPlan): Promise<void> {
  const masker = maskingTransform(plan);
  // When our reader goes away (`vault exec … | head`), close the target's pipe too, so that its
  // next write fails (SIGPIPE) as it would have without the masker in between, instead of the
  // target blocking on a full pipe forever; vault itself lives on to report the exit status.
  const stop = () => {
    from.destroy();
    masker.destroy();
  };
  to.on('error', stop);
  from.pipe(masker).pipe(to, { end: false });
  return new Promise((resolve) => {
    masker.on('close', () => {
      to.off('error', stop);
      resolve();
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
 * Signals a person or a supervisor sends to `vault` go on to the target. A terminal already sends
 * SIGINT, SIGQUIT and SIGWINCH to the whole foreground process group, the target included, so on a
 * terminal those are not forwarded again.
 */
function forwardedSignals(): NodeJS.Signals[] {
  const always: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];
  return process.stdin.isTTY ? always : [...always, 'SIGINT', 'SIGQUIT', 'SIGWINCH'];
}

export function runSandboxed(request: SandboxRequest, options: SandboxOptions = {}): Promise<SandboxResult> {
  const stdio = options.stdio ?? 'inherit';
  const plan = options.mask;
  if (stdio === 'mask' && plan === undefined) throw new VaultError('internal', "stdio 'mask' needs a mask plan");
  const output = stdio === 'inherit' ? 'inherit' : 'pipe';
  const payload = encodeHelperRequest(request);
  return new Promise<SandboxResult>((resolve, reject) => {
    const child = spawn(helperPath(), [], {
      env: {},
      stdio: [stdio === 'pipe' ? 'pipe' : 'inherit', output, output, 'pipe', request.executableFd, 'pipe'],
    });
    const masked =
      stdio === 'mask' && plan !== undefined && child.stdout !== null && child.stderr !== null
        ? Promise.all([passMasked(child.stdout, process.stdout, plan), passMasked(child.stderr, process.stderr, plan)])
        : Promise.resolve();
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    const signals = forwardedSignals();
    for (const signal of signals) process.on(signal, forward);
    const stopForwarding = () => {
      for (const signal of signals) process.off(signal, forward);
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
      payload.fill(0);
      reject(new VaultError('internal', `cannot start the sandbox helper: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      stopForwarding();
      payload.fill(0);
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
      void masked.then(() => resolve(result));
    });
  });
}
