#!/usr/bin/env node
// Where the time of one `vault put` goes: `node bench/breakdown.mjs [--runs N] [--secrets N]`
// (after `npm run build`). Runs `node MODULE dist/vault.mjs put NAME`, MODULE loading
// bench/put-timeline.mjs first (tools.mjs's preloadedEntry),
// into an empty vault and into a vault of N secrets, interleaved with `node -e ''` and with plain
// puts (to show what the preload itself costs), and prints the median of each phase.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { fillVault } from './fixture.mjs';
import { fmt, median, renderTable } from './stats.mjs';
import { preloadedEntry } from './tools.mjs';
import { countOption, isolatedEnv } from './workspace.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(BENCH_DIR, '..', 'dist', 'vault.mjs');
const PRELOAD = pathToFileURL(path.join(BENCH_DIR, 'put-timeline.mjs')).href;
const option = (name, fallback) => countOption('breakdown', name, fallback);
const RUNS = option('--runs', 20);
const SECRETS = option('--secrets', 10_000);

if (!fs.existsSync(CLI)) {
  process.stderr.write(`breakdown: ${CLI} is missing; run \`npm run build\`\n`);
  process.exit(1);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-breakdown-'));
const home = path.join(tmp, 'home');
const env = isolatedEnv(home);
const timeline = path.join(tmp, 'timeline.json');
const value = randomBytes(24).toString('base64url');

function run(args, extraEnv = {}, input = '') {
  const t0 = process.hrtime.bigint();
  const result = spawnSync(process.execPath, args, { env: { ...env, ...extraEnv }, cwd: tmp, input, timeout: 60_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (result.status !== 0) throw new Error(`${args.join(' ')} failed: ${result.stderr}`);
  return { ms, stdout: result.stdout.toString() };
}

// Phases, each from one mark to the next (ms since the child's performance.timeOrigin).
const PHASES = [
  ['node start-up (to the preload)', 'zero', 'preload'],
  ['load + evaluate dist/vault.mjs', 'preload', 'dlopenStart'],
  ['native addon dlopen', 'dlopenStart', 'dlopenEnd'],
  ['harden, parse argv', 'dlopenEnd', 'openVault'],
  ['open vault + check pin', 'openVault', 'stdinStart'],
  ['read value from stdin', 'stdinStart', 'stdinEnd'],
  ['seal (native libsodium)', 'stdinEnd', 'sealed'],
  ['to the vault lock', 'sealed', 'vaultLock'],
  ['write under vault lock', 'vaultLock', 'vaultUnlock'],
  ['audit witness (known_vaults.json)', 'vaultUnlock', 'witnessUnlock'],
  ['print, exit handlers', 'witnessUnlock', 'exit'],
];

try {
  const vaults = { empty: path.join(tmp, 'vault-empty'), big: path.join(tmp, 'vault-big') };
  for (const dir of Object.values(vaults)) run([CLI, 'init', '--token'], { VAULT_DIR: dir });
  await fillVault(vaults.big, SECRETS);

  const series = { floor: [], putPlain: [], empty: [], big: [] };
  let n = 0;
  const timedEntry = preloadedEntry(tmp, PRELOAD, CLI);
  const timedPut = (dir) => {
    n += 1;
    fs.rmSync(timeline, { force: true });
    const { ms } = run([timedEntry, 'put', `BD_${n}`], { VAULT_DIR: dir, BENCH_TIMELINE_OUT: timeline }, value);
    fs.rmSync(path.join(dir, 'secrets', `BD_${n}.json`));
    const data = JSON.parse(fs.readFileSync(timeline, 'utf8'));
    return { wall: ms, ...data };
  };
  for (let r = 0; r < RUNS + 2; r += 1) {
    const floor = run(['-e', '']).ms;
    n += 1;
    const plain = run([CLI, 'put', `BD_${n}`], { VAULT_DIR: vaults.empty }, value).ms;
    fs.rmSync(path.join(vaults.empty, 'secrets', `BD_${n}.json`));
    const empty = timedPut(vaults.empty);
    const big = timedPut(vaults.big);
    if (r < 2) continue; // warm-up
    series.floor.push(floor);
    series.putPlain.push(plain);
    series.empty.push(empty);
    series.big.push(big);
  }

  const phaseOf = (sample, from, to) => (to === 'zero' ? 0 : sample.marks[to]) - (from === 'zero' ? 0 : sample.marks[from]);
  const rows = PHASES.map(([label, from, to]) => {
    const e = median(series.empty.map((s) => phaseOf(s, from, to)));
    const b = median(series.big.map((s) => phaseOf(s, from, to)));
    return [label, fmt(e), fmt(b)];
  });
  const outside = (s) => s.wall - s.marks.exit;
  rows.push(['spawn + exec before timeOrigin, teardown after exit', fmt(median(series.empty.map(outside))), fmt(median(series.big.map(outside)))]);
  rows.push(['= wall time of the put (with preload)', fmt(median(series.empty.map((s) => s.wall))), fmt(median(series.big.map((s) => s.wall)))]);
  rows.push(['  plain put, no preload (for comparison)', fmt(median(series.putPlain)), '']);
  rows.push(["  node -e '' (floor)", fmt(median(series.floor)), '']);

  const fsyncTotal = (s) => s.fsyncs.reduce((sum, f) => sum + f.ms, 0);
  const fsyncOf = (s, pattern) => s.fsyncs.filter((f) => pattern.test(f.target)).reduce((sum, f) => sum + f.ms, 0);
  const fsyncRows = [
    ['fsync total', fsyncTotal],
    ['  temporary secret file', (s) => fsyncOf(s, /\/\.tmp\//)],
    ['  secrets/ directory', (s) => fsyncOf(s, /\/secrets$/)],
    ['  audit.log', (s) => fsyncOf(s, /audit\.log$/)],
    ['  known_vaults.json + its directory', (s) => fsyncOf(s, /sealvault(\/known_vaults\.json\.[^/]*)?$/)],
  ].map(([label, f]) => [label, fmt(median(series.empty.map(f))), fmt(median(series.big.map(f)))]);
  const fsyncCount = median(series.empty.map((s) => s.fsyncs.length));

  // the product's own libsodium: the addon's
  const sodium = createRequire(import.meta.url)(path.join(BENCH_DIR, '..', 'build', 'Release', 'sealvault_native.node')).sodium;
  const pk = sodium.boxKeypair().publicKey;
  const message = new Uint8Array(40);
  const sealTimes = [];
  for (let i = 0; i < 2000; i += 1) {
    const t0 = process.hrtime.bigint();
    sodium.boxSeal(message, pk);
    sealTimes.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }

  const fsType = spawnSync('stat', ['-f', '-c', '%T', tmp], { encoding: 'utf8' }).stdout.trim();
  process.stdout.write(
    `where the time of \`vault put\` goes: medians of ${RUNS} runs each, ms since the child's performance.timeOrigin; ` +
      `${os.cpus().length} CPUs, Node ${process.versions.node}, ${fsType} at ${os.tmpdir()}\n\n`,
  );
  process.stdout.write(`${renderTable(['phase', 'put-empty ms', `put-${SECRETS} ms`], [...rows, ['', '', ''], ...fsyncRows], new Set([1, 2]))}\n\n`);
  process.stdout.write(`fsync calls per put: ${fsyncCount}; crypto_box_seal of 40 bytes in process: median ${fmt(median(sealTimes), 0)} µs\n`);
  process.stdout.write(`peak RSS of the put (getrusage): ${fmt(median(series.empty.map((s) => s.maxRSS)) / 1024)} MiB\n`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
