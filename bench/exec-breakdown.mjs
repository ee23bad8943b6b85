#!/usr/bin/env node
// Where the time of one `vault exec` goes: `node bench/exec-breakdown.mjs [--runs N]` (after
// `npm run build`). Sets up a vault of 20 secrets of 32 printable bytes granted to /bin/true, as
// bench/run.mjs does, then runs `node MODULE dist/vault.mjs exec --tier T -- /bin/true`, MODULE
// loading bench/exec-timeline.mjs first (tools.mjs's preloadedEntry; VAULT_KEY token, output a pipe), at lockdown with the default masking, at lockdown
// with --no-mask and at tier none, interleaved with `node -e ''`, plain execs and `vault policy`
// (no preload), two Node scripts that do nothing but spawn the helper (the least a Node-based exec
// can cost), and the helper alone with a minimal request and with the request `vault exec` sends,
// and prints the median of each phase. Then: the cost of the masking plan and of opening 20 secrets
// alone in fresh processes, and a CPU profile of plain lockdown execs bucketed by where the time goes.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { helperRequest, loadSandboxCode, lockdownPlan } from './sandbox-request.mjs';
import { fmt, median, renderTable } from './stats.mjs';
import { preloadedEntry } from './tools.mjs';
import { countOption, isolatedEnv } from './workspace.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');
const CLI = path.join(ROOT, 'dist', 'vault.mjs');
const HELPER = path.join(ROOT, 'build', 'Release', 'spawn_helper');
const PRELOAD = pathToFileURL(path.join(BENCH_DIR, 'exec-timeline.mjs')).href;
const TRUE = '/bin/true';
const TRUE_REAL = fs.realpathSync(TRUE);
const SECRETS = 20;
const option = (name, fallback) => countOption('exec-breakdown', name, fallback);
const RUNS = option('--runs', 20);
const WARMUP = 2;
const PROFILE_RUNS = option('--profile-runs', 10);
const PROFILE_INTERVAL_US = 200;

for (const file of [CLI, HELPER]) {
  if (!fs.existsSync(file)) {
    process.stderr.write(`exec-breakdown: ${file} is missing; run \`npm run build\`\n`);
    process.exit(1);
  }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-exec-breakdown-'));
const home = path.join(tmp, 'home');
// the working directory of every run: lockdown binds it read-write, and refuses one that holds the home
const work = path.join(tmp, 'work');
fs.mkdirSync(work);
const env = isolatedEnv(home);
const vaultDir = path.join(tmp, 'vault');
const timeline = path.join(tmp, 'timeline.json');

function run(command, args, { extraEnv = {}, input = '', stdio } = {}) {
  const t0 = process.hrtime.bigint();
  const result = spawnSync(command, args, { env: { ...env, ...extraEnv }, cwd: work, timeout: 60_000, ...(stdio === undefined ? { input } : { stdio }) });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr}`);
  return { ms, stdout: result.stdout?.toString() ?? '' };
}
const cli = (args, options) => run(process.execPath, [CLI, ...args], options);

// Phases, each from one mark to the next (ms since the child's performance.timeOrigin), in the order
// `vault exec` reaches them.
const PHASES = [
  ['node start-up (to the preload)', 'zero', 'preload'],
  ['load + evaluate dist/vault.mjs (the entry)', 'preload', 'dlopenStart'],
  ['native addon dlopen (links libsodium)', 'dlopenStart', 'dlopenEnd'],
  ['harden, parse argv, ask the agent (none answers)', 'dlopenEnd', 'bundleStart'],
  ['compile dist/exec.cjs (V8 code cache)', 'bundleStart', 'bundleCompiled'],
  ['evaluate dist/exec.cjs', 'bundleCompiled', 'bundleEvaluated'],
  ['check flags, resolve the command', 'bundleEvaluated', 'openVault'],
  ['open vault + check pin, read slots', 'openVault', 'slotsRead'],
  ['unwrap the key (token slot)', 'slotsRead', 'keyUnwrapped'],
  ['check the key, read the policy', 'keyUnwrapped', 'policyRead'],
  ['verify policy MAC, open the program', 'policyRead', 'binaryOpen'],
  ['hash the program (SHA-256 from its fd)', 'binaryOpen', 'binaryHashed'],
  ['select grants', 'binaryHashed', 'secretsStart'],
  ['read + open the 20 secrets', 'secretsStart', 'secretsEnd'],
  ['child environment, masking plan', 'secretsEnd', 'vaultLock'],
  ['release entry under the vault lock', 'vaultLock', 'vaultUnlock'],
  ['audit witness (known_vaults.json)', 'vaultUnlock', 'witnessUnlock'],
  ['hidden paths, encode request, find helper', 'witnessUnlock', 'spawnStart'],
  ['spawn() of the helper (fork + exec)', 'spawnStart', 'spawnReturned'],
  ['helper: sandbox + /bin/true, until exit', 'spawnReturned', 'helperExit'],
  ["helper exit to 'close' (pipes, masker)", 'helperExit', 'helperClose'],
  ['exit entry, its witness, exit handlers', 'helperClose', 'exit'],
];


/** The request `vault exec --tier lockdown` sends for this vault: our environment plus the 20 secrets, the paths it hides, its mounts. */
function execLikeRequest(code, values) {
  const runtime = `/run/user/${process.getuid()}`;
  const hide = [vaultDir, runtime, path.join(env.XDG_STATE_HOME, 'sealvault'), path.join(home, '.local', 'share', 'keyrings')]
    .filter((dir) => fs.existsSync(dir))
    .map((dir) => fs.realpathSync(dir));
  const kept = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const childEnv = [...kept, ...values.map((v, i) => `EXEC_${String(i + 1).padStart(2, '0')}=${v}`)];
  return helperRequest(code, { tier: 'lockdown', argv: [TRUE], env: childEnv, hide, mounts: lockdownPlan(code, { cwd: work }) });
}

function helperRun(requestFile) {
  const request = fs.openSync(requestFile, 'r');
  const executable = fs.openSync(TRUE, 'r');
  try {
    const t0 = process.hrtime.bigint();
    const result = spawnSync(HELPER, [], { env: {}, cwd: work, stdio: ['ignore', 'ignore', 'pipe', request, executable] });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (result.status !== 0) throw new Error(`helper failed (${result.status}): ${result.stderr}`);
    return ms;
  } finally {
    fs.closeSync(request);
    fs.closeSync(executable);
  }
}

/**
 * The least any Node-based `vault exec` can cost: a script that only spawns the helper as
 * src/sandbox/spawn.ts does (request on a pipe, executable fd, info pipe, output pipes) and waits.
 */
function writeNodeFloorScript(requestFile) {
  const script = path.join(tmp, 'node-helper.mjs');
  fs.writeFileSync(
    script,
    "import { spawn } from 'node:child_process'; import * as fs from 'node:fs';\n" +
      `const request = fs.readFileSync(${JSON.stringify(requestFile)}); const exe = fs.openSync(${JSON.stringify(TRUE)}, 'r');\n` +
      `const child = spawn(${JSON.stringify(HELPER)}, [], { env: {}, stdio: ['inherit', 'pipe', 'pipe', 'pipe', exe, 'pipe'] });\n` +
      'child.stdio[3].end(request); child.stdout.resume(); child.stderr.resume(); child.stdio[5].resume();\n' +
      'child.on("close", (code) => { process.exitCode = code; });\n',
  );
  return script;
}

/** The same with spawnSync and inherited output, from a CommonJS script: no ESM loader, streams or pipes. */
function writeNodeSyncFloorScript(requestFile) {
  const script = path.join(tmp, 'node-helper-sync.cjs');
  fs.writeFileSync(
    script,
    "const { spawnSync } = require('node:child_process'); const fs = require('node:fs');\n" +
      `const request = fs.openSync(${JSON.stringify(requestFile)}, 'r'); const exe = fs.openSync(${JSON.stringify(TRUE)}, 'r');\n` +
      `process.exitCode = spawnSync(${JSON.stringify(HELPER)}, [], { env: {}, stdio: ['inherit', 'inherit', 'inherit', request, exe] }).status;\n`,
  );
  return script;
}

/** Fresh processes that import the masking chunk and build one plan for 20 values of 32 bytes (cold, as in `vault exec`). */
function maskingPlanCost(values, runs = 9) {
  const chunk = fs
    .readdirSync(path.join(ROOT, 'dist', 'chunks'))
    .map((f) => path.join(ROOT, 'dist', 'chunks', f))
    .filter((f) => fs.readFileSync(f, 'utf8').includes('function planMasking('))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  const script = path.join(tmp, 'plan.mjs');
  fs.writeFileSync(
    script,
    `const { planMasking, disposePlan } = await import(${JSON.stringify(pathToFileURL(chunk).href)});\n` +
      `const values = ${JSON.stringify(values)}.map((v, i) => ({ name: 'S' + i, value: new TextEncoder().encode(v) }));\n` +
      // reading patternCount builds the automaton, which a plan otherwise defers to the first output byte
      'const t0 = performance.now(); const plan = planMasking(values, "stars"); const patterns = plan.patternCount; const t1 = performance.now();\n' +
      'const t2 = performance.now(); const again = planMasking(values, "stars").patternCount; const t3 = performance.now();\n' +
      'process.stdout.write(JSON.stringify({ cold: t1 - t0, warm: t3 - t2, patterns }));\n',
  );
  const samples = [];
  for (let i = 0; i < runs; i += 1) samples.push(JSON.parse(spawnSync(process.execPath, [script], { encoding: 'utf8' }).stdout));
  return { chunk: path.relative(ROOT, chunk), cold: median(samples.map((s) => s.cold)), warm: median(samples.map((s) => s.warm)), patterns: samples[0].patterns };
}

/** Fresh processes that load the addon (its libsodium) and open 20 sealed 40-byte messages, as `vault exec` opens 20 secrets. */
function openCost(runs = 9) {
  const addon = path.join(ROOT, 'build', 'Release', 'sealvault_native.node');
  const script = path.join(tmp, 'open.cjs');
  fs.writeFileSync(
    script,
    `const sodium = require(${JSON.stringify(addon)}).sodium;\n` +
      'const kp = sodium.boxKeypair(); const sealed = Array.from({ length: 20 }, () => sodium.boxSeal(new Uint8Array(40), kp.publicKey));\n' +
      'const t0 = performance.now(); sodium.boxSealOpen(sealed[0], kp.publicKey, kp.secretKey); const t1 = performance.now();\n' +
      'for (const s of sealed.slice(1)) sodium.boxSealOpen(s, kp.publicKey, kp.secretKey); const t2 = performance.now();\n' +
      'process.stdout.write(JSON.stringify({ first: t1 - t0, all: t2 - t0 }));\n',
  );
  const samples = [];
  for (let i = 0; i < runs; i += 1) samples.push(JSON.parse(spawnSync(process.execPath, [script], { encoding: 'utf8' }).stdout));
  return { first: median(samples.map((s) => s.first)), all: median(samples.map((s) => s.all)) };
}

/** CPU profiles of plain lockdown execs; self time per bucket, mean per run. */
function profileExec(token) {
  const profiles = path.join(tmp, 'profiles');
  const buckets = {};
  const functions = {};
  const chunkOf = (url) => {
    const file = url.startsWith('file://') ? fileURLToPath(url) : '';
    if (file === '') return '';
    try {
      return fs.readFileSync(file, 'utf8').includes('function planMasking(') ? 'masking' : 'cli';
    } catch {
      return '';
    }
  };
  const kinds = new Map();
  for (let i = 0; i < PROFILE_RUNS; i += 1) {
    fs.rmSync(profiles, { recursive: true, force: true });
    run(process.execPath, ['--cpu-prof', '--cpu-prof-interval', String(PROFILE_INTERVAL_US), '--cpu-prof-dir', profiles, CLI, 'exec', '--tier', 'lockdown', '--', TRUE], { extraEnv: { VAULT_DIR: vaultDir, VAULT_KEY: token } });
    const profile = JSON.parse(fs.readFileSync(path.join(profiles, fs.readdirSync(profiles)[0]), 'utf8'));
    const nodes = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
    profile.samples.forEach((id, k) => {
      const frame = nodes.get(id);
      if (!kinds.has(frame.url)) kinds.set(frame.url, chunkOf(frame.url));
      const kind = kinds.get(frame.url);
      let bucket;
      if (frame.functionName === '(idle)') bucket = 'idle (waiting: helper, I/O)';
      else if (frame.functionName === '(garbage collector)') bucket = 'garbage collector';
      else if (frame.functionName === '(program)') bucket = '(program): V8/native, not attributed';
      else if (['compileSourceTextModule', 'compileFunction', 'Script'].includes(frame.functionName)) bucket = 'compiling source (entry, exec.cjs)';
      else if (kind === 'masking' && /^(step|code|buildAutomaton|planMasking|patternsOf|encodedForms|percentForm|base64Form|hexForm|jsonForm|ascii|isUtf8|zeroFill)$/.test(frame.functionName)) bucket = 'masking plan (patterns + automaton)';
      else if (kind === 'cli' || kind === 'masking') bucket = 'CLI JS (zod, src; evaluation and work)';
      else if (frame.functionName === 'compileForInternalLoader') bucket = 'Node: compiling built-in modules on first use';
      else bucket = 'Node internals (ESM loader, fs, child_process, streams)';
      const ms = profile.timeDeltas[k] / 1000 / PROFILE_RUNS;
      buckets[bucket] = (buckets[bucket] ?? 0) + ms;
      const key = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*\//, '')}:${frame.lineNumber + 1}`;
      functions[key] = (functions[key] ?? 0) + ms;
    });
  }
  const total = Object.values(buckets).reduce((a, b) => a + b, 0);
  return {
    total,
    rows: Object.entries(buckets).sort((a, b) => b[1] - a[1]),
    top: Object.entries(functions).sort((a, b) => b[1] - a[1]).slice(0, 15),
  };
}

try {
  const token = cli(['init', '--token'], { extraEnv: { VAULT_DIR: vaultDir } }).stdout.trim();
  const values = Array.from({ length: SECRETS }, () => randomBytes(24).toString('base64url'));
  const names = values.map((_, i) => `EXEC_${String(i + 1).padStart(2, '0')}`);
  values.forEach((v, i) => cli(['put', names[i]], { extraEnv: { VAULT_DIR: vaultDir }, input: v }));
  cli(['allow', ...names, '--to', TRUE, '--min-tier', 'none'], { extraEnv: { VAULT_DIR: vaultDir, VAULT_KEY: token } });
  const minimalRequest = path.join(tmp, 'request-minimal.bin');
  const code = await loadSandboxCode(tmp);
  fs.writeFileSync(minimalRequest, helperRequest(code, { tier: 'lockdown', argv: ['true'], mounts: lockdownPlan(code, { cwd: work }) }));
  const fullRequest = path.join(tmp, 'request-exec.bin');
  fs.writeFileSync(fullRequest, execLikeRequest(code, values));

  const nodeFloor = writeNodeFloorScript(minimalRequest);
  const nodeSyncFloor = writeNodeSyncFloorScript(minimalRequest);
  const vaultEnv = { VAULT_DIR: vaultDir, VAULT_KEY: token };
  const timedEntry = preloadedEntry(tmp, PRELOAD, CLI);
  const timed = (tier, extra = []) => {
    fs.rmSync(timeline, { force: true });
    const { ms } = run(process.execPath, [timedEntry, 'exec', '--tier', tier, ...extra, '--', TRUE], { extraEnv: { ...vaultEnv, BENCH_TIMELINE_OUT: timeline, BENCH_TIMELINE_BINARY: TRUE_REAL } });
    return { wall: ms, ...JSON.parse(fs.readFileSync(timeline, 'utf8')) };
  };
  const series = { floor: [], nodeHelper: [], nodeHelperSync: [], unlock: [], plain: [], plainNoMask: [], helperMin: [], helperExec: [], lockdown: [], noMask: [], none: [] };
  for (let r = 0; r < RUNS + WARMUP; r += 1) {
    const round = {
      floor: run(process.execPath, ['-e', '']).ms,
      nodeHelper: run(process.execPath, [nodeFloor]).ms,
      nodeHelperSync: run(process.execPath, [nodeSyncFloor]).ms,
      unlock: cli(['policy'], { extraEnv: vaultEnv }).ms,
      plain: cli(['exec', '--tier', 'lockdown', '--', TRUE], { extraEnv: vaultEnv }).ms,
      plainNoMask: cli(['exec', '--tier', 'lockdown', '--no-mask', '--', TRUE], { extraEnv: vaultEnv }).ms,
      helperMin: helperRun(minimalRequest),
      helperExec: helperRun(fullRequest),
      lockdown: timed('lockdown'),
      noMask: timed('lockdown', ['--no-mask']),
      none: timed('none'),
    };
    if (r < WARMUP) continue;
    for (const [k, v] of Object.entries(round)) series[k].push(v);
  }

  const phaseOf = (sample, from, to) => (to === 'zero' ? 0 : sample.marks[to]) - (from === 'zero' ? 0 : sample.marks[from]);
  const columns = ['lockdown', 'noMask', 'none'];
  const rows = PHASES.map(([label, from, to]) => [label, ...columns.map((c) => fmt(median(series[c].map((s) => phaseOf(s, from, to)))))]);
  rows.push(['spawn + exec before timeOrigin, teardown after exit', ...columns.map((c) => fmt(median(series[c].map((s) => s.wall - s.marks.exit))))]);
  rows.push(['= wall time of the exec (with preload)', ...columns.map((c) => fmt(median(series[c].map((s) => s.wall))))]);
  rows.push(['  plain exec, no preload (for comparison)', fmt(median(series.plain)), fmt(median(series.plainNoMask)), '']);
  rows.push(['  vault policy, token unlock (no preload)', fmt(median(series.unlock)), '', '']);
  rows.push(["  node -e '' (floor)", fmt(median(series.floor)), '', '']);
  rows.push(['  node script that only spawns the helper and waits', fmt(median(series.nodeHelper)), '', '']);
  rows.push(['  the same, CommonJS, spawnSync, output inherited', fmt(median(series.nodeHelperSync)), '', '']);
  rows.push(['', '', '', '']);
  rows.push(['helper alone, minimal lockdown request', fmt(median(series.helperMin)), '', '']);
  rows.push(['helper alone, the request exec sends', fmt(median(series.helperExec)), '', '']);
  rows.push(['fsync total', ...columns.map((c) => fmt(median(series[c].map((s) => s.fsyncs.reduce((sum, f) => sum + f.ms, 0)))))]);
  rows.push(['peak RSS MiB (getrusage of vault)', ...columns.map((c) => fmt(median(series[c].map((s) => s.maxRSS / 1024))))]);

  const plan = maskingPlanCost(values);
  const opening = openCost();
  const profile = profileExec(token);

  process.stdout.write(
    `where the time of \`vault exec -- ${TRUE}\` goes (${SECRETS} secrets released, VAULT_KEY token, output a pipe): medians of ${RUNS} runs each, ` +
      `ms since the child's performance.timeOrigin; ${os.cpus().length} CPUs, Node ${process.versions.node}\n\n`,
  );
  process.stdout.write(`${renderTable(['phase', 'lockdown ms', 'lockdown --no-mask ms', 'none ms'], rows, new Set([1, 2, 3]))}\n\n`);
  process.stdout.write(
    `masking plan alone, automaton built (${plan.chunk}, ${plan.patterns} patterns for ${SECRETS} values of 32 bytes), fresh processes: ` +
      `first call ${fmt(plan.cold)} ms, second call ${fmt(plan.warm)} ms\n\n`,
  );
  process.stdout.write(`crypto_box_seal_open of 20 secrets in a fresh process (the addon's libsodium): ${fmt(opening.all)} ms (the first one ${fmt(opening.first)} ms)\n\n`);
  process.stdout.write(`CPU profile of ${PROFILE_RUNS} plain lockdown execs (${PROFILE_INTERVAL_US} µs sampling), self time, mean per run (${fmt(profile.total)} ms sampled):\n`);
  process.stdout.write(`${renderTable(['where', 'ms'], profile.rows.map(([k, v]) => [k, fmt(v)]), new Set([1]))}\n\n`);
  process.stdout.write(`top functions by self time:\n${renderTable(['function', 'ms'], profile.top.map(([k, v]) => [k, fmt(v)]), new Set([1]))}\n`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
