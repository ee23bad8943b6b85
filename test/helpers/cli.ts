/**
 * Runs the built `vault` as users run it: a subprocess of the bundled CLI, against real files in a
 * temporary directory, with an environment that holds nothing of the developer's own.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The release build, as shipped. */
export const RELEASE_CLI = path.join(ROOT, 'dist', 'vault.mjs');
/** The same code with the test-only flag (weak argon2id allowed) set. */
export const TEST_CLI = path.join(ROOT, 'dist', 'test', 'vault.mjs');

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export interface RunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cli?: string;
  cwd?: string;
}

export interface Workspace {
  root: string;
  vaultDir: string;
  /** The environment every `run` starts from; tests may add to it (VAULT_KEY, …). */
  env: NodeJS.ProcessEnv;
  run(args: string[], options?: RunOptions): RunResult;
  /** Starts `vault` without waiting, for tests that kill it or race several. */
  start(args: string[], options?: RunOptions): ReturnType<typeof spawn>;
  /** Every file below the vault directory, with its bytes. */
  vaultFiles(): Map<string, Buffer>;
  cleanup(): void;
}

/**
 * A fresh home, state and vault directory. With `keychain`, the test's D-Bus session (and so the
 * real gnome-keyring that test/run.sh started) is passed on.
 */
export function makeWorkspace(options: { keychain?: boolean } = {}): Workspace {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-test-'));
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    XDG_STATE_HOME: path.join(home, '.local', 'state'),
    XDG_DATA_HOME: path.join(home, '.local', 'share'),
    VAULT_DIR: path.join(root, 'vault'),
    LANG: 'C.UTF-8',
  };
  if (options.keychain && process.env.DBUS_SESSION_BUS_ADDRESS !== undefined) {
    env.DBUS_SESSION_BUS_ADDRESS = process.env.DBUS_SESSION_BUS_ADDRESS;
  }
  const workspace: Workspace = {
    root,
    vaultDir: path.join(root, 'vault'),
    env,
    run(args, runOptions = {}) {
      const result = spawnSync(process.execPath, [runOptions.cli ?? RELEASE_CLI, ...args], {
        env: { ...workspace.env, ...runOptions.env },
        input: runOptions.input ?? '',
        cwd: runOptions.cwd ?? root,
        timeout: 60_000,
      });
      if (result.error !== undefined) throw result.error;
      return {
        status: result.status,
        signal: result.signal,
        stdout: result.stdout.toString('utf8'),
        stderr: result.stderr.toString('utf8'),
        stdoutBytes: result.stdout,
      };
    },
    start(args, runOptions = {}) {
      return spawn(process.execPath, [runOptions.cli ?? RELEASE_CLI, ...args], {
        env: { ...workspace.env, ...runOptions.env },
        cwd: runOptions.cwd ?? root,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    },
    vaultFiles() {
      const files = new Map<string, Buffer>();
      const walk = (dir: string) => {
        if (!fs.existsSync(dir)) return;
        for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
          const full = path.join(dir, entry.name);
          if (entry.isDirectory()) walk(full);
          else files.set(path.relative(workspace.vaultDir, full), fs.readFileSync(full));
        }
      };
      walk(workspace.vaultDir);
      return files;
    },
    cleanup() {
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  return workspace;
}

/** `vault init --token` in `workspace`, with VAULT_KEY then set for every later run. */
export function initWithToken(workspace: Workspace): string {
  const result = workspace.run(['init', '--token']);
  if (result.status !== 0) throw new Error(`vault init --token failed: ${result.stderr}`);
  const token = result.stdout.trim();
  workspace.env.VAULT_KEY = token;
  return token;
}

/** `vault put NAME` with `value` on stdin; throws unless it succeeded. */
export function put(workspace: Workspace, name: string, value: string | Buffer, extra: string[] = []): RunResult {
  const result = workspace.run(['put', name, ...extra], { input: value });
  if (result.status !== 0) throw new Error(`vault put ${name} failed (${result.status}): ${result.stderr}`);
  return result;
}
