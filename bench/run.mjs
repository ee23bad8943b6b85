#!/usr/bin/env node
// sealvault benchmark: `npm run bench` (builds first) or `node bench/run.mjs [--runs N] [--keep]`.
//
// Runs the bundled CLI (dist/vault.mjs) as users run it, in a temporary directory with its own HOME,
// XDG_STATE_HOME and VAULT_DIR, next to peers measured in the same run (`node -e ''`, `age`,
// `dotenvx set`). Every row runs once per round, rounds are interleaved round-robin (the starting
// row rotates) so that machine noise hits all rows alike, and ratios are taken pair by pair within a
// round. Prints one table of medians with peak RSS, writes bench/results/latest.json, exits 0 (it is
// a report, targets included) unless the benchmark itself could not run.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { fillVault } from './fixture.mjs';
import { fmt, renderTable, summarize } from './stats.mjs';
import { ensureDebianCommand, npmInstallBin, versionOf } from './tools.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');
const CLI = path.join(ROOT, 'dist', 'vault.mjs');
const RESULTS = path.join(BENCH_DIR, 'results', 'latest.json');
const DOTENVX_SPEC = process.env.BENCH_DOTENVX_SPEC ?? '@dotenvx/dotenvx@2';

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  if (at === -1) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) fatal(`${name} needs a positive integer`);
  return value;
}
const RUNS = option('--runs', 30);
const WARMUP = option('--warmup', 2);
const SECRETS = option('--secrets', 10_000);
const KEEP = process.argv.includes('--keep');
const PUT_TARGET = 1.3;

const log = (text) => process.stderr.write(`bench: ${text}\n`);
function fatal(text) {
  process.stderr.write(`bench: cannot run: ${text}\n`);
  process.exit(1);
}

class BenchError extends Error {}

// ---------------------------------------------------------------------------------------------
// Workspace: an isolated home, state and two vaults (empty, and SECRETS secrets).

if (!fs.existsSync(CLI)) fatal(`${CLI} is missing; run \`npm run build\` (or \`npm run bench\`, which builds first)`);

const started = Date.now();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-bench-'));
const home = path.join(tmp, 'home');
const baseEnv = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: home,
  XDG_STATE_HOME: path.join(home, '.local', 'state'),
  XDG_DATA_HOME: path.join(home, '.local', 'share'),
  XDG_CONFIG_HOME: path.join(home, '.config'),
  XDG_CACHE_HOME: path.join(home, '.cache'),
  LANG: 'C.UTF-8',
};
const emptyVault = path.join(tmp, 'vault-empty');
const bigVault = path.join(tmp, 'vault-10k');

function cleanup() {
  if (KEEP) log(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}

/** Runs the CLI untimed (setup and checks); throws unless it exits 0. */
function vault(args, { dir, input = '', env = {} } = {}) {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    env: { ...baseEnv, VAULT_DIR: dir, ...env },
    cwd: tmp,
    input,
    maxBuffer: 256 * 1024 * 1024,
    timeout: 120_000,
  });
  if (result.error !== undefined || result.status !== 0) {
    throw new BenchError(`vault ${args.join(' ')} failed (${result.status ?? result.error?.message}): ${result.stderr?.toString().trim()}`);
  }
  return result.stdout.toString('utf8');
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

/** One timed run of `row` (round `r`); returns { ms, rssKiB }. */
function runOnce(row, r) {
  const { command, args, env = {}, input = '', cwd = tmp } = row.invocation(r);
  const wrapped = timeBin !== undefined ? [timeBin, ['-f', '%M', '-o', rssFile, command, ...args]] : [command, args];
  const t0 = process.hrtime.bigint();
  const result = spawnSync(wrapped[0], wrapped[1], { env: { ...baseEnv, ...env }, cwd, input, maxBuffer: 256 * 1024 * 1024, timeout: 120_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (result.error !== undefined || result.status !== 0) {
    throw new BenchError(`${row.name}: \`${[command, ...args].join(' ')}\` failed (${result.status ?? result.error?.message}): ${result.stderr?.toString().trim().slice(0, 500)}`);
  }
  row.check?.(result, r);
  row.after?.(r);
  return { ms, rssKiB: timeBin !== undefined ? readRss() : Number.NaN };
}

/** Without GNU time: peak RSS of node children from a preloaded probe, in separate untimed runs. */
function probeRss(row, r) {
  const { command, args, env = {}, input = '', cwd = tmp } = row.invocation(r);
  if (command !== process.execPath) return Number.NaN;
  fs.rmSync(rssFile, { force: true });
  const result = spawnSync(command, ['--import', probe, ...args], { env: { ...baseEnv, ...env, BENCH_RSS_OUT: rssFile }, cwd, input, maxBuffer: 256 * 1024 * 1024 });
  if (result.status === 0) row.after?.(r);
  return result.status === 0 && fs.existsSync(rssFile) ? readRss() : Number.NaN;
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
  let t = Date.now();
  await fillVault(bigVault, SECRETS);
  log(`generated ${SECRETS} secrets on disk in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  t = Date.now();
  const listed = JSON.parse(vault(['list', '--json'], { dir: bigVault }));
  if (listed.length !== SECRETS || listed.some((s) => s.size !== 32)) throw new BenchError(`vault list shows ${listed.length} secrets, expected ${SECRETS} of 32 bytes`);
  vault(['audit', '--verify'], { dir: bigVault });
  vault(['verify'], { dir: bigVault, env: { VAULT_KEY: tokenBig } }); // every generated secret opens under its name
  log(`checked the generated vault with vault list, audit --verify and verify in ${((Date.now() - t) / 1000).toFixed(1)} s`);

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
  ];
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

  // measure: WARMUP + RUNS rounds, each row once per round, starting row rotating
  const samples = Object.fromEntries(rows.map((row) => [row.name, []]));
  const rss = Object.fromEntries(rows.map((row) => [row.name, []]));
  t = Date.now();
  log(`measuring ${rows.length} rows × ${RUNS} runs (+${WARMUP} warm-up rounds), interleaved`);
  for (let r = 0; r < WARMUP + RUNS; r += 1) {
    for (let k = 0; k < rows.length; k += 1) {
      const row = rows[(r + k) % rows.length];
      const sample = runOnce(row, r);
      if (r >= WARMUP) {
        samples[row.name].push(sample.ms);
        rss[row.name].push(sample.rssKiB);
      }
    }
  }
  if (timeBin === undefined) {
    for (let i = 0; i < 3; i += 1) for (const row of rows) rss[row.name].push(probeRss(row, 10_000 + i));
  }
  log(`measured in ${((Date.now() - t) / 1000).toFixed(1)} s`);

  // ratios, pair by pair within a round
  const paired = (num, den) => {
    if (samples[num] === undefined || samples[den] === undefined) return undefined;
    return summarize(samples[num].map((v, i) => v / samples[den][i]));
  };
  const ratioSpecs = [
    { row: 'floor', num: 'put-empty', den: 'floor' },
    { row: 'put-10k', num: 'put-10k', den: 'put-empty', target: PUT_TARGET },
    { row: 'list-10k', num: 'list-10k', den: 'put-empty' },
    { row: 'unlock', num: 'unlock', den: 'floor' },
    { row: 'unlock-10k', num: 'unlock-10k', den: 'unlock' },
    { row: 'age', num: 'put-empty', den: 'age' },
    { row: 'dotenvx-set', num: 'put-empty', den: 'dotenvx-set' },
  ];
  const ratios = ratioSpecs.map((spec) => {
    const stats = paired(spec.num, spec.den);
    const verdict = spec.target === undefined ? undefined : stats === undefined ? 'n/a' : stats.median <= spec.target ? 'PASS' : 'FAIL';
    return { ...spec, name: `${spec.num} / ${spec.den}`, stats, verdict };
  });

  // the table
  const stats = Object.fromEntries(rows.map((row) => [row.name, summarize(samples[row.name])]));
  const rssStats = Object.fromEntries(rows.map((row) => [row.name, summarize(rss[row.name].filter(Number.isFinite))]));
  const tableRows = rows.map((row) => {
    const s = stats[row.name];
    const ratio = ratios.find((x) => x.row === row.name);
    const ratioText = ratio?.stats === undefined ? '' : `${ratio.name} = ${fmt(ratio.stats.median, 2)}× (${fmt(ratio.stats.p25, 2)}–${fmt(ratio.stats.p75, 2)})`;
    return [
      row.name,
      fmt(s.median),
      `${fmt(s.p25)}–${fmt(s.p75)}`,
      fmt(rssStats[row.name].median / 1024),
      ratioText,
      ratio?.target !== undefined ? `≤ ${ratio.target.toFixed(2)}` : '',
      ratio?.verdict ?? (ratio?.stats !== undefined ? 'info' : ''),
    ];
  });
  for (const [name, reason] of [['age', peers.age === undefined ? age.reason ?? ageKeygen.reason : undefined], ['dotenvx-set', peers.dotenvx === undefined ? dotenvx.reason : undefined]]) {
    if (reason !== undefined) tableRows.push([name, 'n/a', '', '', `peer unavailable: ${reason}`.slice(0, 80), '', '']);
  }
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown cpu';
  const fsType = versionOf('stat', ['-f', '-c', '%T', tmp]);
  const commit = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
  const dirty = (spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'native', 'scripts', 'package.json'], { encoding: 'utf8' }).stdout ?? '').trim() !== '';
  const source = `${commit}${dirty ? ' + uncommitted changes' : ''}`;
  const header =
    `sealvault bench ${new Date().toISOString()}, source ${source}: ${os.cpus().length} × ${cpu}, Node ${process.versions.node}, ${os.type()} ${os.release()}, ${fsType} at ${os.tmpdir()}\n` +
    `medians of ${RUNS} runs per row (+${WARMUP} warm-up), rows interleaved round-robin; ratios are medians of per-round pairs; ` +
    `peak RSS ${timeBin !== undefined ? 'from /usr/bin/time %M' : 'from a preloaded process.resourceUsage() probe'}\n` +
    `peers: age ${peers.age ?? 'unavailable'}, dotenvx ${peers.dotenvx ?? 'unavailable'}\n`;
  const table = renderTable(['row', 'median ms', 'p25–p75 ms', 'peak RSS MiB', 'ratio: paired median (p25–p75)', 'target', 'result'], tableRows, new Set([1, 2, 3]));
  process.stdout.write(`${header}\n${table}\n\n`);
  for (const row of rows) process.stdout.write(`  ${row.name.padEnd(12)} ${row.what}\n`);

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
    peers: { age: peers.age ?? null, dotenvx: peers.dotenvx ?? null },
    unavailable: { age: peers.age === undefined ? age.reason ?? ageKeygen.reason : null, dotenvx: peers.dotenvx === undefined ? dotenvx.reason : null },
    rows: Object.fromEntries(rows.map((row) => [row.name, { what: row.what, ms: stats[row.name], peak_rss_kib: rssStats[row.name], samples_ms: samples[row.name], samples_rss_kib: rss[row.name] }])),
    ratios: ratios.filter((x) => x.stats !== undefined).map((x) => ({ name: x.name, median: x.stats.median, p25: x.stats.p25, p75: x.stats.p75, target: x.target ?? null, verdict: x.verdict ?? null })),
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
