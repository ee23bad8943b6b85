/**
 * Runs the built `vault` as users run it: a subprocess of the bundled CLI, against real files in a
 * temporary directory, with an environment that holds nothing of the developer's own.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Account, asAccount, IS_ROOT, installApp } from './users.js';

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
  /** Kill the run after this many ms (default 60 s): a run that was killed has `signal` set. */
  timeout?: number;
  /**
   * Start vault as a user does, through its launcher (build/Release/vault_launcher), which removes
   * the variables that load code into node: for tests that put NODE_OPTIONS, NODE_PATH or LD_* in
   * the caller's environment. Started as `node dist/vault.mjs`, vault refuses those (entry.ts).
   */
  launcher?: boolean;
}

export interface Workspace {
  root: string;
  /** The working directory of every run: a project directory beside (not holding) the home, as lockdown wants. */
  project: string;
  vaultDir: string;
  /** The environment every `run` starts from; tests may add to it (VAULT_KEY, …). */
  env: NodeJS.ProcessEnv;
  run(args: string[], options?: RunOptions): RunResult;
  /** Starts `vault` without waiting, for tests that kill it or race several. */
  start(args: string[], options?: RunOptions): ReturnType<typeof spawn>;
  /** argv that runs `vault ARGS` as the workspace's user (for a pty). */
  command(args: string[]): string[];
  /** argv of `vault ARGS` alone, for a shell that already runs as the workspace's user. */
  cliCommand(args: string[]): string[];
  /** Every file below the vault directory, with its bytes (a symlink or FIFO as a note of what it is). */
  vaultFiles(): Map<string, Buffer>;
  cleanup(): void;
}

/**
 * A fresh home, state and vault directory (in `parent`, default the system's temporary directory).
 * With `keychain`, the test's D-Bus session (and so the real gnome-keyring that test/run.sh
 * started) is passed on. With `account`, everything belongs to that user and every run is theirs
 * (through setpriv), with a copy of the CLI they can read.
 */
export function makeWorkspace(options: { keychain?: boolean; account?: Account; parent?: string } = {}): Workspace {
  const root = fs.mkdtempSync(path.join(options.parent ?? os.tmpdir(), 'sealvault-test-'));
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const project = path.join(root, 'project');
  fs.mkdirSync(project);
  const account = options.account !== undefined && options.account.uid !== process.getuid?.() ? options.account : undefined;
  let defaultCli = RELEASE_CLI;
  if (account !== undefined) {
    fs.chmodSync(root, 0o755);
    defaultCli = installApp(path.join(root, 'app'));
    // the vault directory too: the user cannot create entries in the workspace's root
    fs.mkdirSync(path.join(root, 'vault'));
    if (IS_ROOT) for (const dir of [home, project, path.join(root, 'vault')]) fs.chownSync(dir, account.uid, account.gid);
  }
  /** argv of one `vault` run, as the workspace's user. */
  const command = (cli: string | undefined, args: string[], launcher = false) =>
    asAccount(account, launcher ? [path.join(path.dirname(defaultCli), '..', 'build', 'Release', 'vault_launcher'), ...args] : [process.execPath, cli ?? defaultCli, ...args]);
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
    project,
    vaultDir: path.join(root, 'vault'),
    env,
    run(args, runOptions = {}) {
      const [program, ...rest] = command(runOptions.cli, args, runOptions.launcher === true);
      const result = spawnSync(program!, rest, {
        env: { ...workspace.env, ...runOptions.env },
        input: runOptions.input ?? '',
        cwd: runOptions.cwd ?? project,
        timeout: runOptions.timeout ?? 60_000,
      });
      // a run killed at its timeout is a result (signal set), for the tests of hangs; any other error is not
      if (result.error !== undefined && (result.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw result.error;
      return {
        status: result.status,
        signal: result.signal,
        stdout: result.stdout.toString('utf8'),
        stderr: result.stderr.toString('utf8'),
        stdoutBytes: result.stdout,
      };
    },
    command: (args) => command(undefined, args),
    cliCommand: (args) => [process.execPath, defaultCli, ...args],
    start(args, runOptions = {}) {
      const [program, ...rest] = command(runOptions.cli, args);
      return spawn(program!, rest, {
        env: { ...workspace.env, ...runOptions.env },
        cwd: runOptions.cwd ?? project,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    },
    vaultFiles() {
      const files = new Map<string, Buffer>();
      const walk = (dir: string) => {
        if (!fs.existsSync(dir)) return;
        for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
          const full = path.join(dir, entry.name);
          const at = path.relative(workspace.vaultDir, full);
          // a planted FIFO or link is recorded as what it is: reading a FIFO would hang the test
          if (entry.isDirectory()) walk(full);
          else if (entry.isSymbolicLink()) files.set(at, Buffer.from(`<symlink to ${fs.readlinkSync(full)}>`));
          else if (!entry.isFile()) files.set(at, Buffer.from('<not a regular file>'));
          else files.set(at, fs.readFileSync(full));
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
