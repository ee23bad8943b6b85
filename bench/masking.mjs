#!/usr/bin/env node
// Output masking throughput: `node bench/masking.mjs [--runs N] [--mb N] [--pty-mb N] [--keep]`.
//
// Writes N MB (default 200; 1 MB = 10^6 bytes) of log-like text lines, with 50 random printable
// secrets of 20–64 bytes sprinkled in, raw and encoded, to a temporary file once. Then times, in the
// same run and interleaved round-robin: `cat FILE > /dev/null`; a Node process piping the file to
// /dev/null through a PassThrough (Node's own stream cost); and a Node process piping it through
// maskingTransform (src/sandbox/masking.ts, bundled with esbuild into the workspace), as `vault exec`
// pipes a child's output. Each row is a whole process, start-up and building the automaton
// included.
//
// On a terminal: the first --pty-mb MB (default 50) printed by `cat` on a pty that a reader drains
// as fast as it can (bench/pty-reader.py): `cat` alone (the kernel's pty, the peer), and `vault exec
// --tier lockdown -- cat` with the 50 secrets granted, masked and not, where the target writes to its
// own pty and vault relays (and masks) to the outer one.
//
// Prints a table of medians and whether masking reaches the 100 MB/s target; exits 0 (a report)
// unless the benchmark itself could not run.
import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { fmt, renderTable, summarize } from './stats.mjs';
import { countOption, isolatedEnv } from './workspace.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const option = (name, fallback) => countOption('bench-masking', name, fallback);
const RUNS = option('--runs', 5);
const MEGABYTES = option('--mb', 200);
const PTY_MEGABYTES = option('--pty-mb', 50);
const KEEP = process.argv.includes('--keep');
const SECRETS = 50;
const TARGET_MB_S = 100;

const log = (text) => process.stderr.write(`bench-masking: ${text}\n`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-bench-masking-'));
const dataFile = path.join(tmp, 'output.txt');
const secretsFile = path.join(tmp, 'secrets.json');
const bundle = path.join(tmp, 'masking.mjs');
const worker = path.join(tmp, 'worker.mjs');
const PTY_READER = path.join(ROOT, 'bench', 'pty-reader.py');
const CLI = path.join(ROOT, 'dist', 'vault.mjs');
// the vault of the pty rows: its home, its working directory (lockdown binds it; the file the
// target prints is there, as lockdown shows nothing else of the host), its vault
const vaultHome = path.join(tmp, 'home');
const vaultWork = path.join(tmp, 'work');
const ptyFile = path.join(vaultWork, 'pty-output.txt');
const vaultEnv = { ...isolatedEnv(vaultHome), VAULT_DIR: path.join(tmp, 'vault') };

// ---------------------------------------------------------------------------------------------
// The data: secrets, and the output a chatty CI job might print.

function printable(length) {
  return Array.from(randomBytes(length), (byte) => String.fromCharCode(0x21 + (byte % 94))).join('');
}

/** How the data prints a secret, besides inside a JSON object. */
const FORMS = [
  (s) => s,
  (s) => Buffer.from(s).toString('base64'),
  (s) => Buffer.from(s).toString('base64url'),
  (s) => Buffer.from(s).toString('hex'),
  (s) => encodeURIComponent(s),
];

function writeData(secrets) {
  const words = ['request', 'worker', 'cache', 'deploy', 'upload', 'retry', 'connected', 'done', 'GET', 'POST', '/api/v1/items', 'status=200', 'ok', 'warning:', 'elapsed'];
  const levels = ['INFO', 'DEBUG', 'WARN', 'INFO', 'INFO'];
  const fd = fs.openSync(dataFile, 'w');
  let written = 0;
  let sprinkled = 0;
  const total = MEGABYTES * 1e6;
  while (written < total) {
    const lines = [];
    for (let i = 0; i < 4000; i += 1) {
      const n = 3 + randomInt(10);
      const text = Array.from({ length: n }, () => words[randomInt(words.length)]).join(' ');
      let line = `2025-01-0${1 + (i % 9)}T12:${String(i % 60).padStart(2, '0')}:07.${randomInt(1000)}Z ${levels[i % levels.length]} [job-${randomInt(64)}] ${text} id=${randomInt(1e9).toString(16)}`;
      if (randomInt(400) === 0) {
        const value = secrets[randomInt(secrets.length)];
        line += ` secret=${randomInt(FORMS.length + 1) === 0 ? JSON.stringify({ token: value }) : FORMS[randomInt(FORMS.length)](value)}`;
        sprinkled += 1;
      }
      lines.push(line);
    }
    const block = Buffer.from(`${lines.join('\n')}\n`);
    const part = block.subarray(0, Math.min(block.length, total - written));
    fs.writeSync(fd, part);
    written += part.length;
  }
  fs.closeSync(fd);
  return sprinkled;
}

// The Node rows: one process each, reporting its own phases and peak RSS on stdout as JSON.
const WORKER = `
import * as fs from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
const [mode, dataFile, secretsFile, bundle] = process.argv.slice(2);
const t0 = performance.now();
let transform = new PassThrough();
let patternCount = 0;
if (mode !== 'passthrough') {
  const { planMasking, maskingTransform } = await import(bundle);
  const secrets = JSON.parse(fs.readFileSync(secretsFile, 'utf8')).map((s) => ({ name: s.name, value: Buffer.from(s.value, 'base64') }));
  const plan = planMasking(secrets, 'stars');
  patternCount = plan.patternCount;
  transform = maskingTransform(plan);
}
const t1 = performance.now();
let outBytes = 0;
let sink;
if (mode === 'verify') {
  // untimed: keep the output, to check it afterwards
  const parts = [];
  sink = new Writable({ write(chunk, _e, done) { parts.push(chunk); outBytes += chunk.length; done(); } });
  await pipeline(fs.createReadStream(dataFile, { end: 32e6 - 1 }), transform, sink);
  fs.writeFileSync(dataFile + '.masked', Buffer.concat(parts));
} else {
  sink = fs.createWriteStream('/dev/null');
  await pipeline(fs.createReadStream(dataFile), transform, sink);
  outBytes = sink.bytesWritten;
}
const t2 = performance.now();
process.stdout.write(JSON.stringify({ setupMs: t1 - t0, pipeMs: t2 - t1, outBytes, patternCount, maxRssKiB: process.resourceUsage().maxRSS }));
`;

function runWorker(mode) {
  const t0 = process.hrtime.bigint();
  const result = spawnSync(process.execPath, [worker, mode, dataFile, secretsFile, bundle], { encoding: 'utf8', timeout: 600_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (result.status !== 0) throw new Error(`${mode} worker failed (${result.status ?? result.error?.message}): ${result.stderr.trim().slice(0, 500)}`);
  return { ms, ...JSON.parse(result.stdout) };
}

function runCat() {
  const devNull = fs.openSync('/dev/null', 'w');
  try {
    const t0 = process.hrtime.bigint();
    const result = spawnSync('cat', [dataFile], { stdio: ['ignore', devNull, 'pipe'] });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (result.status !== 0) throw new Error(`cat failed: ${result.stderr?.toString().trim()}`);
    return { ms };
  } finally {
    fs.closeSync(devNull);
  }
}

/** One vault holding the 50 secrets, granted to `cat` (not an interpreter: no pinned arguments). */
function makeVault(secrets) {
  fs.mkdirSync(vaultWork, { recursive: true });
  const cli = (args, input = '') => {
    const result = spawnSync(process.execPath, [CLI, ...args], { env: vaultEnv, cwd: vaultWork, input, encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`vault ${args[0]} failed: ${result.stderr.trim()}`);
    return result.stdout;
  };
  vaultEnv.VAULT_KEY = cli(['init', '--token']).trim();
  secrets.forEach((value, i) => cli(['put', `SECRET_${i}`], value));
  cli(['allow', ...secrets.map((_, i) => `SECRET_${i}`), '--to', 'cat', '--min-tier', 'none']);
}

/** `argv` on a pty whose output a reader drains; the time from start to the end of the output. */
function runOnPty(argv, keep) {
  const t0 = process.hrtime.bigint();
  const result = spawnSync('python3', [PTY_READER, keep ?? '-', ...argv], { env: vaultEnv, cwd: vaultWork, encoding: 'utf8', timeout: 600_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (result.status !== 0) throw new Error(`${argv.join(' ')} on a pty failed (${result.status ?? result.error?.message}): ${result.stderr.trim().slice(0, 500)}`);
  const report = JSON.parse(result.stdout);
  if (report.status !== 0) throw new Error(`${argv.join(' ')} on a pty exited ${report.status}`);
  return { ms, bytes: report.bytes };
}

const ptyRow = (mask) => () => runOnPty([process.execPath, CLI, 'exec', mask, '--tier', 'lockdown', '--', 'cat', ptyFile]);

/** Untimed: what reaches the terminal through the masked relay holds no secret, and some were masked. */
function verifyPty(secrets) {
  const kept = path.join(tmp, 'pty-masked.txt');
  runOnPty([process.execPath, CLI, 'exec', '--mask', '--tier', 'lockdown', '--', 'cat', ptyFile], kept);
  const masked = fs.readFileSync(kept);
  if (secrets.some((s) => masked.includes(s))) throw new Error('a secret reached the terminal through the masked pty relay');
  if (!masked.includes('secret=***')) throw new Error('nothing was masked on the pty');
  fs.rmSync(kept);
}

/** Untimed: the masked output holds none of the sprinkled forms, and masking did replace some. */
function verify(secrets) {
  const result = runWorker('verify');
  const masked = fs.readFileSync(`${dataFile}.masked`);
  const printed = (s) => FORMS.map((form) => form(s).replace(/=+$/, '')).concat(JSON.stringify(s).slice(1, -1));
  const leaks = secrets.filter((s) => printed(s).some((form) => masked.includes(form)));
  if (leaks.length > 0) throw new Error(`${leaks.length} secrets still appear in the masked output`);
  let replaced = 0;
  for (let at = masked.indexOf('secret=***'); at !== -1; at = masked.indexOf('secret=***', at + 1)) replaced += 1;
  if (replaced === 0) throw new Error('nothing was masked');
  fs.rmSync(`${dataFile}.masked`);
  return { replaced, patternCount: result.patternCount };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  log(`workspace ${tmp}`);
  await build({ entryPoints: [path.join(ROOT, 'src', 'sandbox', 'masking.ts')], bundle: true, format: 'esm', platform: 'node', target: 'node20', outfile: bundle, logLevel: 'warning' });
  fs.writeFileSync(worker, WORKER);

  const secrets = Array.from({ length: SECRETS }, () => printable(20 + randomInt(45)));
  fs.writeFileSync(secretsFile, JSON.stringify(secrets.map((value, i) => ({ name: `SECRET_${i}`, value: Buffer.from(value).toString('base64') }))));
  let t = Date.now();
  const sprinkled = writeData(secrets);
  const size = fs.statSync(dataFile).size;
  log(`wrote ${fmt(size / 1e6, 0)} MB of output with ${sprinkled} secrets in it in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  const check = verify(secrets);
  log(`checked: ${check.patternCount} patterns; the first 32 MB come out with ${check.replaced} secrets masked and none left`);
  makeVault(secrets);
  fs.copyFileSync(dataFile, ptyFile);
  fs.truncateSync(ptyFile, Math.min(size, PTY_MEGABYTES * 1e6));
  verifyPty(secrets);
  log(`checked: the masked pty relay shows no secret`);

  const rows = [
    { name: 'cat', what: 'cat FILE > /dev/null', run: runCat },
    { name: 'node-pipe', what: 'node: pipeline(file, PassThrough, /dev/null)', run: () => runWorker('passthrough') },
    { name: 'node-mask', what: `node: pipeline(file, maskingTransform(${SECRETS} secrets), /dev/null)`, run: () => runWorker('mask') },
    { name: 'pty-cat', what: `peer: cat FILE (first ${PTY_MEGABYTES} MB) on a pty, drained by a reader`, run: () => runOnPty(['cat', ptyFile]), pty: true },
    { name: 'pty-vault', what: 'vault exec --no-mask --tier lockdown -- cat FILE on a pty: the target\'s own pty relayed to the outer one', run: ptyRow('--no-mask'), pty: true },
    { name: 'pty-mask', what: `vault exec --mask --tier lockdown -- cat FILE on a pty, ${SECRETS} secrets masked on the way`, run: ptyRow('--mask'), pty: true },
  ];
  const samples = Object.fromEntries(rows.map((row) => [row.name, []]));
  t = Date.now();
  log(`measuring ${rows.length} rows × ${RUNS} runs (+1 warm-up round), interleaved`);
  for (let r = 0; r < RUNS + 1; r += 1) {
    for (let k = 0; k < rows.length; k += 1) {
      const row = rows[(r + k) % rows.length];
      const sample = row.run();
      if (r > 0) samples[row.name].push(sample);
    }
  }
  log(`measured in ${((Date.now() - t) / 1000).toFixed(1)} s`);

  const ptySize = fs.statSync(ptyFile).size;
  const mbps = (ms, row = {}) => (row.pty ? ptySize : size) / 1e6 / (ms / 1000);
  const tableRows = [];
  for (const row of rows) {
    // each row against its peer of the same round: cat for the pipes, cat on a pty for the pty rows
    const peer = samples[row.pty ? 'pty-cat' : 'cat'].map((s) => s.ms);
    const ms = summarize(samples[row.name].map((s) => s.ms));
    const ratio = summarize(samples[row.name].map((s, i) => mbps(s.ms, row) / mbps(peer[i], row)));
    const rss = summarize(samples[row.name].map((s) => s.maxRssKiB ?? Number.NaN));
    const isMask = row.name === 'node-mask' || row.name === 'pty-mask';
    const rate = mbps(ms.median, row);
    tableRows.push([row.name, fmt(ms.median), fmt(rate), `${fmt(ratio.median, 3)}×`, fmt(rss.median / 1024), isMask ? `≥ ${TARGET_MB_S}` : '', isMask ? (rate >= TARGET_MB_S ? 'PASS' : 'FAIL') : '']);
    if (row.name === 'node-mask') {
      const pipe = summarize(samples[row.name].map((s) => s.pipeMs));
      const setup = summarize(samples[row.name].map((s) => s.setupMs));
      tableRows.push(['  pipeline only', fmt(pipe.median), fmt(mbps(pipe.median)), '', '', '', '']);
      tableRows.push(['  plan (automaton)', fmt(setup.median), '', '', '', '', '']);
    }
  }
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown cpu';
  process.stdout.write(
    `sealvault masking bench ${new Date().toISOString()}: ${os.cpus().length} × ${cpu}, Node ${process.versions.node}, ${os.type()} ${os.release()}\n` +
      `${fmt(size / 1e6, 0)} MB (10^6 B) of log lines, ${sprinkled} of them with a secret; ${SECRETS} secrets of 20–64 printable bytes, ${check.patternCount} patterns; ` +
      `medians of ${RUNS} runs per row, interleaved; each row is a whole process; ratio is MB/s over the MB/s of cat (pty rows: cat on a pty) in the same round\n\n`,
  );
  process.stdout.write(`${renderTable(['row', 'median ms', 'MB/s', 'vs peer', 'peak RSS MiB', 'target MB/s', 'result'], tableRows, new Set([1, 2, 3, 4]))}\n\n`);
  for (const row of rows) process.stdout.write(`  ${row.name.padEnd(10)} ${row.what}\n`);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`bench-masking: cannot run: ${error.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  if (KEEP) log(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}
