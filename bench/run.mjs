#!/usr/bin/env node
// sealvault benchmark: `npm run bench` (builds first) or `node bench/run.mjs [--runs N] [--keep]`.
//
// Runs the bundled CLI (dist/vault.mjs) as users run it, in a temporary directory with its own HOME,
// XDG_STATE_HOME and VAULT_DIR, next to peers measured in the same run (`node -e ''`, `age`,
// `dotenvx set`, `dotenvx run`, `bwrap`), and `vault exec` through a `vault agent` that it starts in
// that directory and stops at the end, whatever happens. Every row runs once per round (a slow row
// only every few rounds), rounds are interleaved round-robin (the starting row rotates) so that
// machine noise hits all rows alike, and ratios are taken pair by pair within a round. Prints one
// table of medians with peak RSS, writes bench/results/latest.json, exits 0 (it is a report, targets
// included) unless the benchmark itself could not run.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { fillVault } from './fixture.mjs';
import { bwrapArgs, helperRequest, loadSandboxCode, lockdownPlan } from './sandbox-request.mjs';
import { fmt, quantile, renderTable, summarize, wrapLine } from './stats.mjs';
import { countOption, isolatedEnv } from './workspace.mjs';
import { ensureDebianCommand, npmInstallBin, preloadedEntry, versionOf } from './tools.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');
const CLI = path.join(ROOT, 'dist', 'vault.mjs');
// what `vault` is (bin/vault links to it): the static launcher, which runs a plain `vault exec`
// through the agent itself (native/agent_client.c) and starts node for everything else
const LAUNCHER = path.join(ROOT, 'build', 'Release', 'vault_launcher');
const HELPER = path.join(ROOT, 'build', 'Release', 'spawn_helper');
const TRUE = '/bin/true';
const RESULTS = path.join(BENCH_DIR, 'results', 'latest.json');
const DOTENVX_SPEC = process.env.BENCH_DOTENVX_SPEC ?? '@dotenvx/dotenvx@2';

const option = (name, fallback) => countOption('bench', name, fallback);
const RUNS = option('--runs', 30);
const WARMUP = option('--warmup', 2);
const SECRETS = option('--secrets', 10_000);
const KEEP = process.argv.includes('--keep');
const PUT_TARGET = 1.3;
// `vault exec` rows (the issue's targets): EXEC_SECRETS secrets granted to /bin/true and released per run
const EXEC_SECRETS = 20;
const PASSPHRASE_EVERY = option('--passphrase-every', 5); // the argon2id row runs in 1 round of every 5 only
const REKEY_EVERY = option('--rekey-every', 10); // so does the rekey of the 10k vault, which takes seconds
// lockdown: a direct exec (no agent), restated by the agent's issue from 1.6 to 3.5; agent: an exec
// through the agent, the same 20 secrets (to a script); agentDotenvx: dotenvx run / that exec
const EXEC_TARGETS = {
  lockdown: 3.5, agent: 1.6, other: 1.5, dotenvx: 6, agentDotenvx: 20, helper: 1.0, big: 1.1, rssMiB: 60,
  // an egress allow-list (slirp4netns attached, nftables loaded) against lockdown's loopback-only run
  egress: 1.3,
};
// clients that run one `vault exec` each at the same time through the one agent, once per round
const AGENT_CLIENTS = 16;
// what the client side of an exec through the agent must not load (src/cli/entry.ts): a file's path,
// or for JavaScript its code, gives the module away; libsodium's own library (a .so) counts too
const HEAVY_MODULES = [
  { name: 'libsodium', path: /sodium/i, code: /_sodium_init/ },
  { name: 'zod', path: /(^|[/._-])zod([/._-]|$)/i, code: /\$ZodType/ },
  { name: 'commander', path: /commander/i, code: /CommanderError/ },
];
const execName = (i) => `EXEC_${String(i + 1).padStart(2, '0')}`;
if (SECRETS < EXEC_SECRETS) fatal(`--secrets must be at least ${EXEC_SECRETS}: the big vault holds the exec rows' secrets too`);

const log = (text) => process.stderr.write(`bench: ${text}\n`);
function fatal(text) {
  process.stderr.write(`bench: cannot run: ${text}\n`);
  process.exit(1);
}

class BenchError extends Error {}

// ---------------------------------------------------------------------------------------------
// Workspace: an isolated home, state and four vaults: empty; SECRETS secrets; EXEC_SECRETS secrets
// granted to /bin/true; the same with a passphrase slot.

if (!fs.existsSync(CLI)) fatal(`${CLI} is missing; run \`npm run build\` (or \`npm run bench\`, which builds first)`);

const started = Date.now();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-bench-'));
const home = path.join(tmp, 'home');
// the working directory of every run: lockdown binds it read-write, and refuses one that holds the home
const work = path.join(tmp, 'work');
fs.mkdirSync(work);
const baseEnv = isolatedEnv(home);
const emptyVault = path.join(tmp, 'vault-empty');
const bigVault = path.join(tmp, 'vault-10k');
const execVault = path.join(tmp, 'vault-exec'); // EXEC_SECRETS secrets, granted to /bin/true and BIG_PROGRAM
// the same secrets granted to /bin/true with an egress allow-list (one destination, never contacted)
const egressVault = path.join(tmp, 'vault-egress');
const EGRESS_LIST = '127.0.0.1:9,10.231.99.2:443';
const BIG_PROGRAM = path.join(tmp, 'true-100mib');
const passVault = path.join(tmp, 'vault-passphrase'); // the same, plus a passphrase slot
// the agent rows: EXEC_SECRETS secrets granted to AGENT_SCRIPT (min tier lockdown) in a vault of
// their own, held by an agent that listens in the workspace
const agentVault = path.join(tmp, 'vault-agent');
const AGENT_SCRIPT = path.join(tmp, 'tools', 'agent-target.sh');
const agentSocket = path.join(tmp, 'agent', 'agent.sock');
// every other row looks for an agent here, where none listens: not at the default socket
// (/tmp/sealvault-UID/agent.sock), where an agent of the machine's user could answer them
baseEnv.VAULT_AGENT_SOCK = path.join(tmp, 'no-agent', 'agent.sock');
let agentPid; // the agent this bench started, until stopAgent()

/** Whether `pid` still runs (a zombie has ended: its parent is not the bench, which cannot reap it). */
function running(pid) {
  try {
    return !/^\d+ \(.*\) Z /s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Stops the bench's agent: `vault agent stop`, then SIGKILL if it still runs 10 s later. */
function stopAgent() {
  const pid = agentPid;
  if (pid === undefined) return;
  agentPid = undefined;
  const stop = spawnSync(process.execPath, [CLI, 'agent', 'stop', '--socket', agentSocket], {
    env: { ...baseEnv, VAULT_DIR: agentVault }, cwd: work, encoding: 'utf8', timeout: 30_000,
  });
  if (stop.status !== 0) {
    log(`vault agent stop failed (${stop.status ?? stop.error?.message}): ${(stop.stderr ?? '').trim()}`);
  }
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (const deadline = Date.now() + 10_000; running(pid) && Date.now() < deadline;) Atomics.wait(wait, 0, 0, 50);
  if (!running(pid)) {
    log(`stopped the agent (pid ${pid})`);
    return;
  }
  // only if that pid is still our agent: its command line names the workspace's socket
  let ours = false;
  try {
    ours = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(agentSocket);
  } catch {
    // gone meanwhile
  }
  if (ours) {
    log(`the agent (pid ${pid}) still runs 10 s after vault agent stop: SIGKILL`);
    process.kill(pid, 'SIGKILL');
  }
}

function cleanup() {
  stopAgent();
  if (KEEP) log(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}
// interrupted: the agent is in a session of its own, so the terminal's signal does not reach it
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    log(`${signal}: stopping`);
    cleanup();
    process.exit(128 + os.constants.signals[signal]);
  });
}

/** Runs the CLI untimed (setup and checks); throws unless it exits 0. */
function vault(args, { dir, input = '', env = {} } = {}) {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    env: { ...baseEnv, VAULT_DIR: dir, ...env },
    cwd: work,
    input,
    maxBuffer: 256 * 1024 * 1024,
    timeout: 120_000,
  });
  if (result.error !== undefined || result.status !== 0) {
    throw new BenchError(`vault ${args.join(' ')} failed (${result.status ?? result.error?.message}): ${result.stderr?.toString().trim()}`);
  }
  return result.stdout.toString('utf8');
}

/** The same, without blocking, so that setup of several vaults can overlap (2 cores). */
function vaultAsync(args, { dir, input = '', env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...baseEnv, VAULT_DIR: dir, ...env }, cwd: work, stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (chunk) => out.push(chunk));
    child.stderr.on('data', (chunk) => err.push(chunk));
    child.on('error', (error) => reject(new BenchError(`vault ${args.join(' ')} failed: ${error.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new BenchError(`vault ${args.join(' ')} failed (${code}): ${Buffer.concat(err).toString().trim()}`));
    });
    child.stdin.end(input);
  });
}

/**
 * The runs a user's run log records, to check what the exec rows really released: every `release`
 * entry with the `exit` entry of the same run (undefined when there is none), in order.
 */
function auditedRuns(dir) {
  // the user's run log of that vault, outside it (docs/FORMAT.md, "Run log")
  const vaultId = JSON.parse(fs.readFileSync(path.join(dir, 'vault.json'), 'utf8')).vault_id;
  const runLog = path.join(baseEnv.XDG_STATE_HOME, 'sealvault', 'runs', Buffer.from(vaultId, 'base64').toString('base64url'), 'audit.log');
  const lines = fs.readFileSync(runLog, 'utf8').trim().split('\n');
  const entries = lines.map((line) => JSON.parse(line));
  const exits = new Map(entries.filter((e) => e.event === 'exit').map((e) => [e.details.run, e.details.exit]));
  return entries.filter((e) => e.event === 'release').map((e) => ({ ...e.details, exit: exits.get(e.details.run) }));
}

/**
 * Throws unless every run in `runs` released all EXEC_SECRETS and exited 0, through the agent (a
 * release with a `client`) or not, as `viaAgent` says.
 */
function checkRuns(dir, runs, viaAgent) {
  const wrong = runs.find((run) =>
    run.secrets.length !== EXEC_SECRETS || run.exit !== 0 || (run.client !== undefined) !== viaAgent);
  if (wrong === undefined) return;
  const how = `${wrong.client === undefined ? 'no' : 'an'} agent client`;
  throw new BenchError(`${dir}: a run released ${wrong.secrets.length} secrets (exit ${wrong.exit}, ${how}), `
    + `expected ${EXEC_SECRETS} (exit 0${viaAgent ? ', through the agent' : ''})`);
}

// ---------------------------------------------------------------------------------------------
// Measuring one run: wall time around the whole child (in the parent, hrtime) and peak RSS.

let timeBin;
const rssFile = path.join(tmp, 'rss.txt');
const probe = pathToFileURL(path.join(BENCH_DIR, 'rss-probe.mjs')).href;

function readRss() {
  const lines = fs.readFileSync(rssFile, 'utf8').trim().split('\n');
  return Number(lines.at(-1)); // GNU time prints "Command exited with ..." first on failure
}

/**
 * Spawns an invocation (under GNU time when `timed` and it is available) and returns the result and
 * the wall time in ms. `stdio` (with `fds` to close afterwards) serves the helper row, which gets its
 * request and the executable as fds 3 and 4; `bareEnv` runs the command with `env` alone, as vault
 * runs the helper.
 */
function spawnInvocation({ command, args, env = {}, input = '', cwd = work, stdio, fds = [], bareEnv = false }, timed) {
  const wrapped = timed && timeBin !== undefined ? [timeBin, ['-f', '%M', '-o', rssFile, command, ...args]] : [command, args];
  const options = { env: bareEnv ? env : { ...baseEnv, ...env }, cwd, maxBuffer: 256 * 1024 * 1024, timeout: 120_000, ...(stdio !== undefined ? { stdio } : { input }) };
  try {
    const t0 = process.hrtime.bigint();
    const result = spawnSync(wrapped[0], wrapped[1], options);
    return { result, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
}

const runOnceUntimed = (invocation) => spawnInvocation(invocation, false).result;

/** One timed run of `row` (round `r`); returns { ms, rssKiB }. */
function runOnce(row, r) {
  const invocation = row.invocation(r);
  const { result, ms } = spawnInvocation(invocation, true);
  if (result.error !== undefined || result.status !== 0) {
    throw new BenchError(`${row.name}: \`${[invocation.command, ...invocation.args].join(' ')}\` failed (${result.status ?? result.error?.message}): ${result.stderr?.toString().trim().slice(0, 500)}`);
  }
  row.check?.(result, r);
  row.after?.(r);
  return { ms, rssKiB: timeBin !== undefined ? readRss() : Number.NaN };
}

/** Without GNU time: peak RSS of node children from a preloaded probe, in separate untimed runs. */
function probeRss(row, r) {
  const { command, args, env = {}, input = '', cwd = work, fds = [] } = row.invocation(r);
  for (const fd of fds) fs.closeSync(fd);
  if (command !== process.execPath) return Number.NaN;
  fs.rmSync(rssFile, { force: true });
  // vault refuses --import (see preloadedEntry); `node -e ''` takes it
  const probed = args[0].startsWith('-') ? ['--import', probe, ...args] : [preloadedEntry(tmp, probe, args[0]), ...args.slice(1)];
  const result = spawnSync(command, probed, { env: { ...baseEnv, ...env, BENCH_RSS_OUT: rssFile }, cwd, input, maxBuffer: 256 * 1024 * 1024 });
  if (result.status === 0) row.after?.(r);
  return result.status === 0 && fs.existsSync(rssFile) ? readRss() : Number.NaN;
}

/**
 * One burst of `row.clients` runs of `row.invocation(r, client)` started at once (round `r`);
 * resolves with the wall time of each run in ms (from its spawn to the end of its output), and of
 * the whole burst. Every run gets pipes, as the timed rows do, and no GNU time.
 */
async function runBurst(row, r) {
  const t0 = process.hrtime.bigint();
  const runs = await Promise.all(Array.from({ length: row.clients }, (_, client) => new Promise((resolve, reject) => {
    const { command, args, env = {}, cwd = work } = row.invocation(r, client);
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { env: { ...baseEnv, ...env }, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const err = [];
    child.stdin.on('error', () => undefined); // a client that exits without reading stdin
    child.stdout.resume();
    child.stderr.on('data', (chunk) => err.push(chunk));
    child.on('error', (error) => reject(new BenchError(`${row.name}: ${command} failed: ${error.message}`)));
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const why = Buffer.concat(err).toString().trim().slice(0, 500);
      if (code !== 0) reject(new BenchError(`${row.name}: client ${client} failed (${code}): ${why}`));
      else resolve(ms);
    });
    child.stdin.end();
  })));
  row.after?.(r);
  return { runs, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

/**
 * The files one run of `invocation` opened, under strace -ff (the process, its threads and any
 * children, one trace file each, so that no call is split across lines): absolute paths, the
 * successful opens only.
 */
function openedFiles(strace, invocation, label) {
  const { command, args, env = {}, cwd = work } = invocation;
  const prefix = path.join(tmp, 'strace', label);
  fs.mkdirSync(path.dirname(prefix), { recursive: true });
  const straceArgs = ['-ff', '-qq', '-s', '4096', '-e', 'trace=open,openat,openat2', '-o', prefix];
  const traced = spawnSync(strace, [...straceArgs, command, ...args], {
    env: { ...baseEnv, ...env }, cwd, input: '', encoding: 'utf8', timeout: 120_000,
  });
  if (traced.status !== 0) {
    const why = (traced.stderr ?? '').trim().slice(0, 500);
    throw new BenchError(`strace of ${label} failed (${traced.status ?? traced.error?.message}): ${why}`);
  }
  const files = new Set();
  for (const name of fs.readdirSync(path.dirname(prefix)).filter((f) => f.startsWith(`${label}.`))) {
    for (const line of fs.readFileSync(path.join(path.dirname(prefix), name), 'utf8').split('\n')) {
      const open = /^open(?:at2?)?\((?:[^"]*?, )?"([^"]*)".* = \d+$/.exec(line);
      if (open !== null) files.add(path.resolve(cwd, open[1]));
    }
  }
  return [...files];
}

/** Which of HEAVY_MODULES `files` hold: by path, or for JavaScript by its code. */
function heavyModulesIn(files) {
  const found = new Set();
  for (const file of files) {
    const isScript = /\.[cm]?js$/.test(file) && fs.statSync(file, { throwIfNoEntry: false })?.isFile();
    const code = isScript ? fs.readFileSync(file, 'utf8') : '';
    for (const heavy of HEAVY_MODULES) if (heavy.path.test(file) || heavy.code.test(code)) found.add(heavy.name);
  }
  return HEAVY_MODULES.map((heavy) => heavy.name).filter((name) => found.has(name));
}

// ---------------------------------------------------------------------------------------------

async function main() {
  log(`workspace ${tmp} (file system ${versionOf('stat', ['-f', '-c', '%T', tmp])})`);

  // BENCH_RSS_PROBE=1 forces the fallback (to test it where GNU time is installed)
  const time = process.env.BENCH_RSS_PROBE === '1' ? { reason: 'BENCH_RSS_PROBE=1' } : ensureDebianCommand('/usr/bin/time', 'time', log);
  timeBin = time.path;
  if (timeBin === undefined) log(`peak RSS from a preloaded probe instead of /usr/bin/time (${time.reason}); age's RSS is not measured`);

  // 32-byte value, printable so that dotenvx can take it as an argument
  const value = randomBytes(24).toString('base64url');
  if (Buffer.byteLength(value) !== 32) throw new BenchError('value is not 32 bytes');

  // vaults
  const tokenEmpty = vault(['init', '--token'], { dir: emptyVault }).trim();
  const tokenBig = vault(['init', '--token'], { dir: bigVault }).trim();
  const tokenExec = vault(['init', '--token'], { dir: execVault }).trim();
  const tokenEgress = vault(['init', '--token'], { dir: egressVault }).trim();
  const tokenPass = vault(['init', '--token'], { dir: passVault }).trim();
  const tokenAgent = vault(['init', '--token'], { dir: agentVault }).trim();
  // the big vault holds SECRETS in all: generated ones, and the EXEC_SECRETS that exec-10k releases
  let t = Date.now();
  await fillVault(bigVault, SECRETS - EXEC_SECRETS);
  log(`generated ${SECRETS - EXEC_SECRETS} secrets on disk in ${((Date.now() - t) / 1000).toFixed(1)} s`);

  // the exec rows' secrets: EXEC_SECRETS values of 32 printable bytes (so that the environment and
  // dotenvx take them), put with the CLI and granted to /bin/true in the exec, 10k and passphrase
  // vaults; the passphrase vault gets a passphrase slot with the release build's argon2id parameters
  t = Date.now();
  const execValues = Array.from({ length: EXEC_SECRETS }, () => randomBytes(24).toString('base64url'));
  const execNames = execValues.map((_, i) => execName(i));
  const passphrase = randomBytes(18).toString('base64url');
  // a 100 MiB program: /bin/true with padding after it, which the kernel ignores; `vault exec`
  // copies every program into a sealed memfd, and this row shows what that costs for a large one
  fs.copyFileSync(TRUE, BIG_PROGRAM);
  fs.appendFileSync(BIG_PROGRAM, Buffer.alloc(100 * 2 ** 20));
  fs.chmodSync(BIG_PROGRAM, 0o755);
  // the agent rows' program: a shell script that exits 0 only when all EXEC_SECRETS values arrived
  const valueBytes = Buffer.byteLength(execValues[0]);
  fs.mkdirSync(path.dirname(AGENT_SCRIPT));
  fs.writeFileSync(AGENT_SCRIPT, [
    '#!/bin/sh',
    `# sealvault bench: exits 0 only when all ${EXEC_SECRETS} secrets arrived, ${valueBytes} bytes each`,
    `for v in ${execNames.map((name) => `"$${name}"`).join(' ')}; do`,
    `  [ "\${#v}" -eq ${valueBytes} ] || exit 3`,
    'done',
    '',
  ].join('\n'), { mode: 0o755 });
  const grantAll = async (dir, token, programs = [TRUE], minTier = 'none', more = []) => {
    for (const [i, name] of execNames.entries()) await vaultAsync(['put', name], { dir, input: execValues[i] });
    for (const program of programs) {
      await vaultAsync(['allow', ...execNames, '--to', program, '--min-tier', minTier, ...more], {
        dir, env: { VAULT_KEY: token },
      });
    }
  };
  await Promise.all([
    grantAll(execVault, tokenExec, [TRUE, BIG_PROGRAM]),
    grantAll(bigVault, tokenBig),
    grantAll(passVault, tokenPass).then(() =>
      vaultAsync(['key', 'add', '--passphrase'], { dir: passVault, env: { VAULT_KEY: tokenPass, VAULT_NEW_PASSPHRASE: passphrase } })),
    grantAll(agentVault, tokenAgent, [AGENT_SCRIPT], 'lockdown'),
    grantAll(egressVault, tokenEgress, [TRUE], 'lockdown', ['--net', EGRESS_LIST]),
  ]);
  const passSlot = fs.readdirSync(path.join(passVault, 'slots')).map((f) => JSON.parse(fs.readFileSync(path.join(passVault, 'slots', f), 'utf8'))).find((s) => s.kind === 'passphrase');
  if (passSlot === undefined) throw new BenchError('vault key add --passphrase left no passphrase slot');
  const kdf = passSlot.kdf;
  log(`put and granted ${EXEC_SECRETS} secrets in 4 vaults, added a passphrase slot (argon2id opslimit ${kdf.opslimit}, memlimit ${kdf.memlimit / 2 ** 20} MiB) in ${((Date.now() - t) / 1000).toFixed(1)} s`);

  t = Date.now();
  const listed = JSON.parse(vault(['list', '--json'], { dir: bigVault }));
  if (listed.length !== SECRETS || listed.some((s) => s.size !== 32)) throw new BenchError(`vault list shows ${listed.length} secrets, expected ${SECRETS} of 32 bytes`);
  vault(['audit', '--verify'], { dir: bigVault });
  vault(['verify'], { dir: bigVault, env: { VAULT_KEY: tokenBig } }); // every generated secret opens under its name
  log(`checked the generated vault with vault list, audit --verify and verify in ${((Date.now() - t) / 1000).toFixed(1)} s`);

  // one untimed exec: it runs, releases all EXEC_SECRETS, and the sandbox it got (--info)
  const infoRun = spawnSync(process.execPath, [CLI, 'exec', '--tier', 'lockdown', '--info', '--', TRUE], { env: { ...baseEnv, VAULT_DIR: execVault, VAULT_KEY: tokenExec }, cwd: work, encoding: 'utf8' });
  const infoLine = /^vault: info (.*)$/m.exec(infoRun.stderr ?? '');
  if (infoRun.status !== 0 || infoLine === null) throw new BenchError(`vault exec --tier lockdown --info -- ${TRUE} failed (${infoRun.status}): ${(infoRun.stderr ?? '').trim()}`);
  const sandboxInfo = JSON.parse(infoLine[1]);
  checkRuns(execVault, auditedRuns(execVault), false);

  // the agent: started with the token as a user starts it (`vault agent start` returns once it
  // answers, and the agent leaves the session), at a socket in the workspace; stopped by cleanup()
  t = Date.now();
  const agentEnv = { VAULT_DIR: agentVault, VAULT_AGENT_SOCK: agentSocket }; // a client's: no token
  const start = spawnSync(process.execPath, [CLI, 'agent', 'start', '--socket', agentSocket, '--timeout', '1h'], {
    env: { ...baseEnv, VAULT_DIR: agentVault, VAULT_KEY: tokenAgent },
    cwd: work, input: '', encoding: 'utf8', timeout: 60_000,
  });
  const startedPid = /agent started \(pid (\d+)\)/.exec(start.stderr ?? '');
  if (startedPid !== null) agentPid = Number(startedPid[1]);
  if (start.status !== 0 || startedPid === null) {
    const why = (start.stderr ?? '').trim();
    throw new BenchError(`vault agent start failed (${start.status ?? start.error?.message}): ${why}`);
  }
  const agentStatus = JSON.parse(vault(['agent', 'status', '--json', '--socket', agentSocket], { dir: agentVault }));
  if (agentStatus.pid !== agentPid || agentStatus.locked || agentStatus.vault !== fs.realpathSync(agentVault)) {
    throw new BenchError(`vault agent status does not show the agent just started: ${JSON.stringify(agentStatus)}`);
  }
  // one untimed exec through it, with --info: it runs, and the sandbox it got
  let agentRuns = 0; // the runs the agent's audit log must show at the end
  const agentArgs = (...flags) => [CLI, 'exec', '--tier', 'lockdown', ...flags, '--', AGENT_SCRIPT];
  const agentTrial = spawnSync(process.execPath, agentArgs('--info'), {
    env: { ...baseEnv, ...agentEnv }, cwd: work, input: '', encoding: 'utf8',
  });
  agentRuns += 1;
  const agentInfo = /^vault: info (.*)$/m.exec(agentTrial.stderr ?? '');
  if (agentTrial.status !== 0 || agentInfo === null) {
    const why = (agentTrial.stderr ?? '').trim();
    throw new BenchError(`vault exec --info through the agent failed (${agentTrial.status}): ${why}`);
  }
  const agentSandbox = JSON.parse(agentInfo[1]);
  checkRuns(agentVault, auditedRuns(agentVault), true);
  const seconds = (since) => ((Date.now() - since) / 1000).toFixed(1);
  log(`started the agent (pid ${agentPid}) at ${agentSocket} and ran one exec through it in ${seconds(t)} s`);

  // what the client of an exec through the agent loads (strace), next to a command of the full CLI
  // that unlocks (`vault policy`), which must show all of HEAVY_MODULES: otherwise the method, not the
  // client, is at fault (a direct exec no longer loads commander)
  const strace = ensureDebianCommand('strace', 'strace', log);
  let lean = { reason: strace.reason };
  if (strace.path !== undefined) {
    const client = openedFiles(strace.path, {
      command: LAUNCHER, args: agentArgs().slice(1), env: agentEnv,
    }, 'agent-client');
    agentRuns += 1;
    const direct = openedFiles(strace.path, {
      command: process.execPath, args: [CLI, 'policy'], env: { VAULT_DIR: execVault, VAULT_KEY: tokenExec },
    }, 'full-cli');
    // the project's files, by their path in it; the check itself looks at every file opened
    const ours = (files) => files.filter((file) => file.startsWith(`${ROOT}${path.sep}`))
      .map((file) => path.relative(ROOT, file)).sort();
    lean = {
      client: ours(client), clientHeavy: heavyModulesIn(client),
      direct: ours(direct), directHeavy: heavyModulesIn(direct),
    };
    if (lean.directHeavy.length !== HEAVY_MODULES.length) {
      lean.reason = `the trace of \`vault policy\` shows only ${lean.directHeavy.join(', ') || 'none'} of them`;
    }
    log(`the client of an exec through the agent opened ${lean.client.join(', ')}; `
      + `of ${HEAVY_MODULES.map((h) => h.name).join(', ')}: ${lean.clientHeavy.join(', ') || 'none'}`);
  }
  if (lean.reason !== undefined) log(`what the agent's client loads is not known: ${lean.reason}`);

  // peers
  const peers = {};
  const age = ensureDebianCommand('age', 'age', log);
  const ageKeygen = age.path !== undefined ? ensureDebianCommand('age-keygen', 'age', log) : age;
  let recipient;
  if (age.path !== undefined && ageKeygen.path !== undefined) {
    const keyFile = path.join(tmp, 'age-key.txt');
    spawnSync(ageKeygen.path, ['-o', keyFile], { stdio: 'ignore' });
    recipient = spawnSync(ageKeygen.path, ['-y', keyFile], { encoding: 'utf8' }).stdout?.trim();
    if (recipient?.startsWith('age1')) peers.age = versionOf(age.path, ['--version']);
    else age.reason = 'age-keygen did not produce a recipient';
  }
  if (peers.age === undefined) log(`peer age unavailable: ${age.reason ?? ageKeygen.reason}`);
  const ageOut = path.join(tmp, 'age-out');
  fs.mkdirSync(ageOut);

  const dotenvx = npmInstallBin(DOTENVX_SPEC, '@dotenvx/dotenvx', 'dotenvx', path.join(tmp, 'npm-dotenvx'), log);
  const dotenvxDir = path.join(tmp, 'dotenvx-project');
  const dotenvxFile = path.join(dotenvxDir, '.env');
  let dotenvxBaseline;
  if (dotenvx.path !== undefined) {
    fs.mkdirSync(dotenvxDir);
    // the first `set` creates .env and .env.keys (the key pair); every timed run starts from this state
    const first = spawnSync(process.execPath, [dotenvx.path, 'set', 'DX_SETUP', value, '-f', dotenvxFile], { env: baseEnv, cwd: dotenvxDir, encoding: 'utf8' });
    if (first.status === 0 && fs.existsSync(dotenvxFile)) {
      dotenvxBaseline = fs.readFileSync(dotenvxFile);
      peers.dotenvx = dotenvx.version;
    } else dotenvx.reason = `dotenvx set failed: ${(first.stderr ?? first.error?.message ?? '').trim().slice(0, 300)}`;
  }
  if (peers.dotenvx === undefined) log(`peer dotenvx-set unavailable: ${dotenvx.reason}`);

  // dotenvx run: the same EXEC_SECRETS values in a .env encrypted by `dotenvx encrypt` (key pair in .env.keys)
  const dotenvxRunDir = path.join(tmp, 'dotenvx-run');
  let dotenvxRunReason = dotenvx.path === undefined ? dotenvx.reason : undefined;
  if (dotenvx.path !== undefined) {
    fs.mkdirSync(dotenvxRunDir);
    const envFile = path.join(dotenvxRunDir, '.env');
    fs.writeFileSync(envFile, execNames.map((name, i) => `${name}=${execValues[i]}\n`).join(''));
    const encrypt = spawnSync(process.execPath, [dotenvx.path, 'encrypt', '-f', '.env'], { env: baseEnv, cwd: dotenvxRunDir, encoding: 'utf8' });
    const text = fs.readFileSync(envFile, 'utf8');
    const encrypted = (text.match(/^EXEC_\d+="?encrypted:/gm) ?? []).length;
    // what the child gets: every value, decrypted
    const shown = spawnSync(process.execPath, [dotenvx.path, 'run', '-q', '-f', '.env', '--', 'env'], { env: baseEnv, cwd: dotenvxRunDir, encoding: 'utf8' });
    if (encrypt.status !== 0) dotenvxRunReason = `dotenvx encrypt failed: ${(encrypt.stderr ?? '').trim().slice(0, 300)}`;
    else if (encrypted !== EXEC_SECRETS || execValues.some((v) => text.includes(v))) dotenvxRunReason = `dotenvx encrypt left ${encrypted} of ${EXEC_SECRETS} values encrypted`;
    else if (shown.status !== 0 || execNames.some((name, i) => !shown.stdout.includes(`${name}=${execValues[i]}\n`))) dotenvxRunReason = `dotenvx run did not pass the decrypted values: ${(shown.stderr ?? '').trim().slice(0, 300)}`;
  }
  if (dotenvxRunReason !== undefined) log(`peer dotenvx-run unavailable: ${dotenvxRunReason}`);

  // the helper alone: its request as a file, opened afresh for every run (the helper reads fd 3 to its end)
  if (!fs.existsSync(HELPER)) throw new BenchError(`${HELPER} is missing; run \`npm run build\``);
  const sandboxCode = await loadSandboxCode(tmp);
  const plan = lockdownPlan(sandboxCode, { cwd: work });
  const BWRAP_ARGS = bwrapArgs(plan, { cwd: work, argv: [TRUE] });
  const requestFile = path.join(tmp, 'helper-request.bin');
  fs.writeFileSync(requestFile, helperRequest(sandboxCode, { tier: 'lockdown', argv: ['true'], mounts: plan }), { mode: 0o600 });
  // fd 5 (the info pipe) on /dev/null: left closed, GNU time's -o file would land there
  const devNull = fs.openSync('/dev/null', 'w');
  const helperInvocation = () => {
    const request = fs.openSync(requestFile, 'r');
    const executable = fs.openSync(TRUE, 'r');
    return { command: HELPER, args: [], env: {}, bareEnv: true, stdio: ['ignore', 'ignore', 'pipe', request, executable, devNull], fds: [request, executable] };
  };
  const helperTrial = runOnceUntimed(helperInvocation());
  if (helperTrial.status !== 0) throw new BenchError(`${HELPER} alone on ${TRUE} failed (${helperTrial.status}): ${helperTrial.stderr?.toString().trim()}`);

  const bwrap = ensureDebianCommand('bwrap', 'bubblewrap', log);
  if (bwrap.path !== undefined) {
    const trial = spawnSync(bwrap.path, BWRAP_ARGS, { env: baseEnv, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 30_000 });
    if (trial.status === 0) peers.bwrap = versionOf(bwrap.path, ['--version']);
    else bwrap.reason = `bwrap cannot run here (${trial.status ?? trial.error?.message}): ${(trial.stderr ?? '').trim().slice(0, 200)}`;
  }
  if (peers.bwrap === undefined) log(`peer bwrap unavailable: ${bwrap.reason}`);

  // rows
  const secretFile = (dir, name) => path.join(dir, 'secrets', `${name}.json`);
  const rows = [
    {
      name: 'floor',
      what: "node -e '' (Node start-up and exit)",
      invocation: () => ({ command: process.execPath, args: ['-e', ''] }),
    },
    {
      name: 'put-empty',
      what: 'vault put, 32 B, into an empty vault',
      invocation: (r) => ({ command: process.execPath, args: [CLI, 'put', `PUT_E_${r}`], input: value, env: { VAULT_DIR: emptyVault } }),
      // keep the vault empty: remove the file directly (an untimed `vault rm` would cost a process)
      after: (r) => fs.rmSync(secretFile(emptyVault, `PUT_E_${r}`)),
    },
    {
      name: 'put-10k',
      what: `vault put, 32 B, into a vault of ${SECRETS} secrets`,
      invocation: (r) => ({ command: process.execPath, args: [CLI, 'put', `PUT_K_${r}`], input: value, env: { VAULT_DIR: bigVault } }),
      after: (r) => fs.rmSync(secretFile(bigVault, `PUT_K_${r}`)),
    },
    {
      name: 'list-10k',
      what: `vault list --json, ${SECRETS} secrets`,
      invocation: () => ({ command: process.execPath, args: [CLI, 'list', '--json'], env: { VAULT_DIR: bigVault } }),
      check: (result) => {
        if (result.stdout.length < SECRETS * 50) throw new BenchError('list-10k: output too short');
      },
    },
    {
      name: 'unlock',
      what: 'vault policy, VAULT_KEY token unlock, empty vault',
      invocation: () => ({ command: process.execPath, args: [CLI, 'policy'], env: { VAULT_DIR: emptyVault, VAULT_KEY: tokenEmpty } }),
    },
    {
      name: 'unlock-10k',
      what: `vault policy, VAULT_KEY token unlock, ${SECRETS} secrets`,
      invocation: () => ({ command: process.execPath, args: [CLI, 'policy'], env: { VAULT_DIR: bigVault, VAULT_KEY: tokenBig } }),
    },
    {
      name: 'rekey-10k',
      what: `vault rekey, ${SECRETS} secrets: a new key pair, every value opened and sealed again, every file fsynced, `
        + `committed by one rename; VAULT_KEY token; in 1 round of every ${REKEY_EVERY}`,
      invocation: () => ({ command: process.execPath, args: [CLI, 'rekey'], env: { VAULT_DIR: bigVault, VAULT_KEY: tokenBig } }),
      every: REKEY_EVERY,
    },
  ];
  const execRow = (name, tier, dir, credential, what, extra = {}, program = TRUE) => ({
    name,
    what,
    invocation: () => ({ command: process.execPath, args: [CLI, 'exec', '--tier', tier, '--', program], env: { VAULT_DIR: dir, ...credential } }),
    ...extra,
  });
  const masked = 'output masked (not a terminal)';
  rows.push(
    execRow('exec', 'lockdown', execVault, { VAULT_KEY: tokenExec }, `vault exec --tier lockdown -- ${TRUE}, ${EXEC_SECRETS} secrets released, VAULT_KEY token, ${masked}`),
    {
      name: 'exec-egress',
      what: `vault exec -- ${TRUE} granted --net ${EGRESS_LIST} (lockdown, from the grant): slirp4netns attached, nftables loaded; else as exec`,
      invocation: () => ({ command: process.execPath, args: [CLI, 'exec', '--', TRUE], env: { VAULT_DIR: egressVault, VAULT_KEY: tokenEgress } }),
    },
    execRow('exec-hardened', 'hardened', execVault, { VAULT_KEY: tokenExec }, 'the same, --tier hardened'),
    execRow('exec-none', 'none', execVault, { VAULT_KEY: tokenExec }, 'the same, --tier none'),
    execRow('exec-10k', 'lockdown', bigVault, { VAULT_KEY: tokenBig }, `the same as exec in the vault of ${SECRETS} secrets (${EXEC_SECRETS} released)`),
    execRow('exec-100mib', 'lockdown', execVault, { VAULT_KEY: tokenExec }, 'the same as exec with a 100 MiB program (/bin/true and padding): copied into a sealed memfd and hashed', {}, BIG_PROGRAM),
    execRow('exec-passphrase', 'lockdown', passVault, { VAULT_PASSPHRASE: passphrase },
      `the same as exec, unlocked by VAULT_PASSPHRASE (argon2id, opslimit ${kdf.opslimit}, memlimit ${kdf.memlimit / 2 ** 20} MiB); in 1 round of every ${PASSPHRASE_EVERY}`,
      { every: PASSPHRASE_EVERY }),
    {
      name: 'agent',
      what: 'vault exec --tier lockdown -- SCRIPT through the agent (no credential: only the agent can run it), as `vault` '
        + `(the launcher, which speaks to the agent itself); SCRIPT, granted at min tier lockdown, checks that its ${EXEC_SECRETS} `
        + `secrets arrived; ${masked}; peak RSS: the client`,
      invocation: () => ({ command: LAUNCHER, args: agentArgs().slice(1), env: agentEnv }),
      after: () => (agentRuns += 1),
    },
    {
      name: 'agent-node',
      what: 'the same as agent, with the client in node (`node dist/vault.mjs exec …`: what any other form of exec uses)',
      invocation: () => ({ command: process.execPath, args: agentArgs(), env: agentEnv }),
      after: () => (agentRuns += 1),
    },
    {
      name: `agent-${AGENT_CLIENTS}`,
      what: `${AGENT_CLIENTS} clients at once, each the same as agent, through the one agent: `
        + 'the wall time of each run (median, p25–p75 and p99 over all runs)',
      clients: AGENT_CLIENTS,
      invocation: () => ({ command: LAUNCHER, args: agentArgs().slice(1), env: agentEnv }),
      after: () => (agentRuns += AGENT_CLIENTS),
    },
    {
      name: 'helper',
      what: `${path.relative(ROOT, HELPER)} alone, lockdown, ${TRUE} (argv ["true"], no env or files; vault's mount plan: the system read-only, the working directory)`,
      invocation: helperInvocation,
    },
  );
  if (peers.bwrap !== undefined) {
    rows.push({
      name: 'bwrap',
      what: `peer: bwrap with the same mounts and namespaces (no seccomp filter, Landlock or keyring): bwrap ${BWRAP_ARGS.map((a) => a.replace(tmp, '$TMP')).join(' ')}`,
      invocation: () => ({ command: bwrap.path, args: BWRAP_ARGS, stdio: ['ignore', 'ignore', 'pipe'] }),
    });
  }
  if (peers.age !== undefined) {
    rows.push({
      name: 'age',
      what: 'peer: age -r RECIPIENT -o FILE, 32 B on stdin',
      invocation: (r) => ({ command: age.path, args: ['-r', recipient, '-o', path.join(ageOut, `${r}.age`)], input: value }),
      after: (r) => fs.rmSync(path.join(ageOut, `${r}.age`)),
    });
  }
  if (peers.dotenvx !== undefined) {
    rows.push({
      name: 'dotenvx-set',
      what: 'peer: dotenvx set KEY VALUE -f .env (encrypted)',
      invocation: (r) => ({ command: process.execPath, args: [dotenvx.path, 'set', `DX_${r}`, value, '-f', dotenvxFile], cwd: dotenvxDir }),
      after: () => fs.writeFileSync(dotenvxFile, dotenvxBaseline),
    });
  }
  if (dotenvxRunReason === undefined) {
    rows.push({
      name: 'dotenvx-run',
      what: `peer: dotenvx run -q -f .env -- ${TRUE}, the same ${EXEC_SECRETS} values encrypted`,
      invocation: () => ({ command: process.execPath, args: [dotenvx.path, 'run', '-q', '-f', '.env', '--', TRUE], cwd: dotenvxRunDir }),
    });
  }

  // measure: WARMUP + RUNS rounds, each row once per round, starting row rotating; a row with
  // `every: k` runs in the first warm-up round and in every k-th measured round only; a row with
  // `clients: n` runs a burst of n at once, whose runs all count (its sample: their median)
  const runsIn = (row, r) => row.every === undefined || (r < WARMUP ? r === 0 : (r - WARMUP) % row.every === 0);
  const samples = Object.fromEntries(rows.map((row) => [row.name, Array(RUNS).fill(Number.NaN)]));
  const rss = Object.fromEntries(rows.map((row) => [row.name, Array(RUNS).fill(Number.NaN)]));
  const bursts = Object.fromEntries(rows.filter((row) => row.clients !== undefined)
    .map((row) => [row.name, { runs: [], ms: Array(RUNS).fill(Number.NaN) }]));
  t = Date.now();
  log(`measuring ${rows.length} rows × ${RUNS} runs (+${WARMUP} warm-up rounds), interleaved; exec-passphrase in 1 round of every ${PASSPHRASE_EVERY}`);
  for (let r = 0; r < WARMUP + RUNS; r += 1) {
    for (let k = 0; k < rows.length; k += 1) {
      const row = rows[(r + k) % rows.length];
      if (!runsIn(row, r)) continue;
      if (row.clients !== undefined) {
        const burst = await runBurst(row, r);
        if (r >= WARMUP) {
          samples[row.name][r - WARMUP] = quantile(burst.runs, 0.5);
          bursts[row.name].runs.push(...burst.runs);
          bursts[row.name].ms[r - WARMUP] = burst.ms;
        }
        continue;
      }
      const sample = runOnce(row, r);
      if (r >= WARMUP) {
        samples[row.name][r - WARMUP] = sample.ms;
        rss[row.name][r - WARMUP] = sample.rssKiB;
      }
    }
  }
  if (timeBin === undefined) {
    for (let i = 0; i < 3; i += 1) {
      for (const row of rows) if (row.clients === undefined) rss[row.name].push(probeRss(row, 10_000 + i));
    }
  }
  log(`measured in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  fs.closeSync(devNull);

  // what the exec rows released: a release and an exit entry per run, each with all EXEC_SECRETS
  // and exit 0; in the agent's vault every run the bench made through it, each with its client
  for (const dir of [execVault, bigVault, passVault, egressVault]) checkRuns(dir, auditedRuns(dir), false);
  const agentAudited = auditedRuns(agentVault);
  checkRuns(agentVault, agentAudited, true);
  if (agentAudited.length !== agentRuns) {
    throw new BenchError(`${agentVault}: ${agentAudited.length} runs audited, the bench made ${agentRuns}`);
  }

  // ratios, pair by pair within a round (rounds where both rows ran); targets are ≤ or ≥ a bound
  const finite = (values) => values.filter(Number.isFinite);
  const paired = (num, den) => {
    if (samples[num] === undefined || samples[den] === undefined) return undefined;
    const pairs = finite(samples[num].map((v, i) => v / samples[den][i]));
    return pairs.length === 0 ? undefined : summarize(pairs);
  };
  const ratioSpecs = [
    { row: 'floor', num: 'put-empty', den: 'floor' },
    { row: 'put-10k', num: 'put-10k', den: 'put-empty', op: '≤', target: PUT_TARGET },
    { row: 'list-10k', num: 'list-10k', den: 'put-empty' },
    { row: 'unlock', num: 'unlock', den: 'floor' },
    { row: 'unlock-10k', num: 'unlock-10k', den: 'unlock' },
    { row: 'rekey-10k', num: 'rekey-10k', den: 'list-10k' },
    { row: 'exec', num: 'exec', den: 'floor', op: '≤', target: EXEC_TARGETS.lockdown },
    { row: 'exec', num: 'exec', den: 'unlock' },
    { row: 'exec', kind: 'rss', num: 'exec', op: '≤', target: EXEC_TARGETS.rssMiB },
    { row: 'exec-egress', num: 'exec-egress', den: 'exec', op: '≤', target: EXEC_TARGETS.egress },
    { row: 'exec-hardened', num: 'exec-hardened', den: 'floor', op: '≤', target: EXEC_TARGETS.other },
    { row: 'exec-none', num: 'exec-none', den: 'floor', op: '≤', target: EXEC_TARGETS.other },
    { row: 'exec-10k', num: 'exec-10k', den: 'exec', op: '≤', target: EXEC_TARGETS.big },
    { row: 'exec-passphrase', num: 'exec-passphrase', den: 'exec' },
    { row: 'exec-100mib', num: 'exec-100mib', den: 'exec' },
    { row: 'helper', num: 'helper', den: 'bwrap', op: '≤', target: EXEC_TARGETS.helper, peer: 'bwrap' },
    { row: 'age', num: 'put-empty', den: 'age' },
    { row: 'dotenvx-set', num: 'put-empty', den: 'dotenvx-set' },
    { row: 'dotenvx-run', num: 'dotenvx-run', den: 'exec', op: '≥', target: EXEC_TARGETS.dotenvx },
    { row: 'agent', num: 'agent', den: 'floor', op: '≤', target: EXEC_TARGETS.agent },
    { row: 'agent', num: 'dotenvx-run', den: 'agent', op: '≥', target: EXEC_TARGETS.agentDotenvx,
      peer: 'dotenvx-run' },
    { row: 'agent', num: 'exec', den: 'agent' },
    { row: 'agent-node', num: 'agent-node', den: 'agent' },
    { row: `agent-${AGENT_CLIENTS}`, kind: 'p99', num: `agent-${AGENT_CLIENTS}` },
    { row: `agent-${AGENT_CLIENTS}`, kind: 'burst', num: `agent-${AGENT_CLIENTS}` },
    { row: `agent-${AGENT_CLIENTS}`, num: `agent-${AGENT_CLIENTS}`, den: 'agent' },
  ];
  const ratios = ratioSpecs.map((spec) => {
    // a burst row's p99 over all its runs, and the wall time of a whole burst: no ratio, no target
    if (spec.kind === 'p99') {
      const all = bursts[spec.num].runs;
      const p99 = quantile(all, 0.99);
      const text = `p99 = ${fmt(p99)} ms of ${all.length} runs`;
      return { ...spec, name: `p99 of ${spec.num}`, unit: 'ms', p99, text };
    }
    if (spec.kind === 'burst') {
      const { median: m, p25, p75 } = summarize(finite(bursts[spec.num].ms));
      const rate = (AGENT_CLIENTS * 1000) / m;
      const text = `burst = ${fmt(m)} ms, ${fmt(rate)} runs/s`;
      return { ...spec, name: `burst of ${spec.num}`, unit: 'ms', stats: { median: m, p25, p75 }, rate, text };
    }
    const isRss = spec.kind === 'rss';
    const values = isRss ? finite(rss[spec.num] ?? []).map((kib) => kib / 1024) : [];
    const stats = isRss ? (values.length > 0 ? summarize(values) : undefined) : paired(spec.num, spec.den);
    const meets = (value) => (spec.op === '≥' ? value >= spec.target : value <= spec.target);
    const verdict = spec.target === undefined ? undefined : stats === undefined ? 'n/a' : meets(stats.median) ? 'PASS' : 'FAIL';
    const name = isRss ? `peak RSS of ${spec.num}` : `${spec.num} / ${spec.den}`;
    return { ...spec, name, unit: isRss ? 'MiB' : '×', stats, verdict };
  });
  const peerReasons = { age: peers.age === undefined ? age.reason ?? ageKeygen.reason : undefined, 'dotenvx-set': peers.dotenvx === undefined ? dotenvx.reason : undefined, 'dotenvx-run': dotenvxRunReason, bwrap: peers.bwrap === undefined ? bwrap.reason : undefined };
  const ratioCells = (ratio) => {
    if (ratio === undefined) return ['', '', ''];
    if (ratio.text !== undefined) return [ratio.text, '', 'info'];
    const target = ratio.target === undefined ? '' : `${ratio.op} ${ratio.unit === 'MiB' ? `${ratio.target} MiB` : ratio.target.toFixed(2)}`;
    if (ratio.stats === undefined) {
      return ratio.target === undefined ? ['', '', ''] : [`${ratio.name}: n/a${ratio.peer !== undefined ? ' (peer unavailable)' : ''}`, target, 'n/a'];
    }
    const { median: m, p25, p75 } = ratio.stats;
    const text = ratio.unit === 'MiB' ? `${ratio.name} = ${fmt(m)} MiB (${fmt(p25)}–${fmt(p75)})` : `${ratio.name} = ${fmt(m, 2)}× (${fmt(p25, 2)}–${fmt(p75, 2)})`;
    return [text, target, ratio.verdict ?? 'info'];
  };

  // the table: one line per row, a further line for each further ratio of that row
  const stats = Object.fromEntries(rows.map((row) => [row.name, summarize(finite(samples[row.name]))]));
  const rssStats = Object.fromEntries(rows.map((row) => [row.name, summarize(finite(rss[row.name]))]));
  // a burst row: over all its runs (not per-round medians), and no RSS
  for (const row of rows) if (row.clients !== undefined) stats[row.name] = summarize(bursts[row.name].runs);
  // what the agent's client loads: a line of its own after the agent rows
  const leanVerdict = lean.reason !== undefined ? 'n/a' : lean.clientHeavy.length === 0 ? 'PASS' : 'FAIL';
  const heavyNames = HEAVY_MODULES.map((h) => h.name).join(', ');
  const leanText = `loads ${heavyNames}: ${lean.reason !== undefined ? 'n/a' : lean.clientHeavy.join(', ') || 'none'}`;
  const tableRows = rows.flatMap((row) => {
    const s = stats[row.name];
    const mine = ratios.filter((x) => x.row === row.name);
    return [
      [row.name, fmt(s.median), `${fmt(s.p25)}–${fmt(s.p75)}`,
        row.clients !== undefined ? '' : fmt(rssStats[row.name].median / 1024), ...ratioCells(mine[0])],
      ...mine.slice(1).map((ratio) => ['', '', '', '', ...ratioCells(ratio)]),
      ...(row.name === `agent-${AGENT_CLIENTS}` ? [['agent-client', '', '', '', leanText, 'none', leanVerdict]] : []),
    ];
  });
  for (const [name, reason] of Object.entries(peerReasons)) {
    if (reason !== undefined) tableRows.push([name, 'n/a', '', '', `peer unavailable: ${reason}`.slice(0, 80), '', '']);
  }
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown cpu';
  const fsType = versionOf('stat', ['-f', '-c', '%T', tmp]);
  const commit = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
  const dirty = (spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'native', 'scripts', 'package.json'], { encoding: 'utf8' }).stdout ?? '').trim() !== '';
  const source = `${commit}${dirty ? ' + uncommitted changes' : ''}`;
  const header =
    `sealvault bench ${new Date().toISOString()}, source ${source}: ${os.cpus().length} × ${cpu}, Node ${process.versions.node}, ${os.type()} ${os.release()}, ${fsType} at ${os.tmpdir()}\n` +
    `medians of ${RUNS} runs per row (+${WARMUP} warm-up; exec-passphrase ${stats['exec-passphrase'].n} run${stats['exec-passphrase'].n === 1 ? '' : 's'} +1), rows interleaved round-robin; ratios are medians of per-round pairs; ` +
    `peak RSS ${timeBin !== undefined ? 'from /usr/bin/time %M' : 'from a preloaded process.resourceUsage() probe'}\n` +
    `peers: age ${peers.age ?? 'unavailable'}, dotenvx ${peers.dotenvx ?? 'unavailable'}, ${peers.bwrap ?? 'bwrap unavailable'}; ` +
    `exec: ${EXEC_SECRETS} secrets released per run, sandbox userns ${sandboxInfo.userns} (--info); passphrase slot argon2id opslimit ${kdf.opslimit}, memlimit ${kdf.memlimit / 2 ** 20} MiB\n` +
    `agent: pid ${agentStatus.pid}, started with the token, sandbox userns ${agentSandbox.userns} (--info); ` +
    `agent-${AGENT_CLIENTS}: ${bursts[`agent-${AGENT_CLIENTS}`].runs.length} runs in ${RUNS} bursts; ` +
    (lean.reason !== undefined ? `agent-client: not measured (${lean.reason})\n`
      : `agent-client (strace -ff of one client): it opened ${lean.client.join(', ')}; ` +
        `vault policy (the full CLI) also ${lean.direct.filter((file) => !lean.client.includes(file)).join(', ')}\n`);
  const table = renderTable(['row', 'median ms', 'p25–p75 ms', 'peak RSS MiB', 'ratio: paired median (p25–p75)', 'target', 'result'], tableRows, new Set([1, 2, 3]));
  // every line at most 120 columns, as docs/performance.md quotes it
  const wrapped = header.trimEnd().split('\n').map((line) => wrapLine(line, 120, '  ')).join('\n');
  process.stdout.write(`${wrapped}\n\n${table}\n\n`);
  const what = (name, text) => {
    process.stdout.write(`${wrapLine(`  ${name.padEnd(15)} ${text}`, 120, ' '.repeat(18))}\n`);
  };
  for (const row of rows) what(row.name, row.what);
  what('agent-client', 'what one client of agent opens (strace -ff -e trace=open,openat,openat2): '
    + `${heavyNames} by file name or (JavaScript) by code; checked against vault policy (the full CLI), which loads all three`);

  // JSON
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  const json = {
    date: new Date().toISOString(),
    source,
    machine: { cpus: os.cpus().length, cpu, node: process.versions.node, kernel: os.release(), tmpdir: os.tmpdir(), fs: fsType },
    runs: RUNS,
    warmup: WARMUP,
    secrets: SECRETS,
    rss_source: timeBin !== undefined ? '/usr/bin/time %M' : 'process.resourceUsage().maxRSS probe',
    peers: { age: peers.age ?? null, dotenvx: peers.dotenvx ?? null, bwrap: peers.bwrap ?? null },
    unavailable: Object.fromEntries(Object.entries(peerReasons).map(([name, reason]) => [name, reason ?? null])),
    exec: { secrets_released: EXEC_SECRETS, sandbox_info: sandboxInfo, passphrase_kdf: { opslimit: kdf.opslimit, memlimit: kdf.memlimit }, passphrase_every: PASSPHRASE_EVERY },
    rows: Object.fromEntries(rows.map((row) => [row.name, { what: row.what, every: row.every ?? 1, ms: stats[row.name], peak_rss_kib: rssStats[row.name], samples_ms: samples[row.name], samples_rss_kib: rss[row.name] }])),
    ratios: ratios.filter((x) => x.stats !== undefined).map((x) => ({ name: x.name, unit: x.unit, median: x.stats.median, p25: x.stats.p25, p75: x.stats.p75, op: x.op ?? null, target: x.target ?? null, verdict: x.verdict ?? null })),
    agent: {
      status: agentStatus,
      sandbox_info: agentSandbox,
      runs_audited: agentAudited.length,
      clients: AGENT_CLIENTS,
      concurrent_ms: { ...stats[`agent-${AGENT_CLIENTS}`], p99: quantile(bursts[`agent-${AGENT_CLIENTS}`].runs, 0.99) },
      concurrent_runs_ms: bursts[`agent-${AGENT_CLIENTS}`].runs,
      burst_ms: bursts[`agent-${AGENT_CLIENTS}`].ms,
      client_loads: lean.reason !== undefined ? { unknown: lean.reason } : {
        heavy: lean.clientHeavy, opened: lean.client, verdict: leanVerdict,
        full_cli_heavy: lean.directHeavy, full_cli_opened: lean.direct,
      },
    },
    elapsed_s: (Date.now() - started) / 1000,
  };
  fs.writeFileSync(RESULTS, `${JSON.stringify(json, null, 2)}\n`);
  log(`wrote ${path.relative(process.cwd(), RESULTS) || RESULTS}; total ${json.elapsed_s.toFixed(0)} s`);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`bench: cannot run: ${error instanceof BenchError ? error.message : error.stack}\n`);
  process.exitCode = 1;
} finally {
  cleanup();
}
