#!/usr/bin/env node
// Order of stdout and stderr under masking: `node bench/masking-order.mjs [--runs N] [--writes N]`.
//
// A target (python3, unbuffered) makes --writes writes (default 400), alternating between stdout
// and stderr; each write is a tag `[N]`, every third one a partial line (no newline), every fifth
// carrying the released secret. `vault exec` runs it with masking on (CI=true) --runs times
// (default 20) per row, its stdout and stderr going: into one file (`> f 2>&1`); the same with a
// pause of 1 ms before each write; into one pipe (`2>&1 | cat > f`); from a terminal into one file
// (stdin a pty: the target gets a pty of its own as stdin, pipes as stdout and stderr); and, for
// reference, into one file unmasked and into two files. For each row it counts the writes out of
// order: a tag that comes after a greater one (in the two-file row, within each file); and the
// runs that leaked the secret or lost a tag.
//
// Prints a table; exits 0 (a report) unless the benchmark itself could not run.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { countOption, isolatedEnv } from './workspace.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = countOption('bench-masking-order', '--runs', 20);
const WRITES = countOption('bench-masking-order', '--writes', 400);
const CLI = path.join(ROOT, 'dist', 'vault.mjs');
const SECRET = 'tk_order-7f3a9c1e5b2d';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-bench-order-'));
const work = path.join(tmp, 'work');
fs.mkdirSync(work);
const env = { ...isolatedEnv(path.join(tmp, 'home')), VAULT_DIR: path.join(tmp, 'vault'), CI: 'true' };
const printer = path.join(tmp, 'printer.py');
fs.writeFileSync(
  printer,
  `#!/usr/bin/env python3
import os, sys, time
t = os.environ['TOKEN']
pause = float(sys.argv[2]) / 1000
for n in range(int(sys.argv[1])):
    if pause > 0:
        time.sleep(pause)
    fd = 1 if n % 2 == 0 else 2
    text = '[%d]' % n + (' tok=' + t if n % 5 == 0 else '') + ('' if n % 3 == 2 else '\\n')
    os.write(fd, text.encode())
`,
  { mode: 0o755 },
);

function vault(args, input) {
  const result = spawnSync(process.execPath, [CLI, ...args], { env, cwd: work, input, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`vault ${args[0]} failed: ${result.stderr.trim()}`);
  return result.stdout;
}
env.VAULT_KEY = vault(['init', '--token']).trim();
vault(['put', 'TOKEN'], SECRET);
vault(['allow', 'TOKEN', '--to', printer]);

const quote = (word) => `'${word.replaceAll("'", "'\\''")}'`;
const exec = (flags, pauseMs = 0) =>
  `${quote(process.execPath)} ${quote(CLI)} exec ${flags} -- ${quote(printer)} ${WRITES} ${pauseMs}`;
const out = path.join(work, 'out');
const err = path.join(work, 'err');

/** Runs `shell` with bash; on a pty (python3's pty module) when `onPty`, so that stdin is a terminal. */
function run(shell, onPty) {
  const onTerminal = 'import pty, sys; sys.exit(pty.spawn(["bash", "-c", sys.argv[1]]) >> 8)';
  const argv = onPty ? ['python3', '-c', onTerminal, shell] : ['bash', '-c', shell];
  const result = spawnSync(argv[0], argv.slice(1), { env, cwd: work, encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0) throw new Error(`${shell}: exit ${result.status}: ${result.stderr}`);
}

/** Tags that come after a greater one, and whether every tag is there once. */
function outOfOrder(text) {
  const tags = [...text.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]));
  let most = -1;
  let late = 0;
  for (const tag of tags) {
    if (tag < most) late += 1;
    most = Math.max(most, tag);
  }
  return { late, count: tags.length };
}

const ROWS = [
  { name: 'one file, masked', shell: `${exec('')} > out 2>&1`, files: [out] },
  { name: 'one pipe, masked', shell: `${exec('')} 2>&1 | cat > out`, files: [out] },
  { name: 'one file, masked, 1 ms between writes', shell: `${exec('', 1)} > out 2>&1`, files: [out] },
  { name: 'one file, masked, stdin a pty', shell: `${exec('')} > out 2>&1`, files: [out], pty: true },
  { name: 'one file, --no-mask', shell: `${exec('--no-mask')} > out 2>&1`, files: [out] },
  { name: 'two files, masked', shell: `${exec('')} > out 2> err`, files: [out, err] },
];

const lines = [];
for (const row of ROWS) {
  let runsReordered = 0;
  let lateTotal = 0;
  let lateMost = 0;
  let leaked = 0;
  let lost = 0;
  for (let i = 0; i < RUNS; i += 1) {
    for (const file of [out, err]) fs.rmSync(file, { force: true });
    run(row.shell, row.pty === true);
    let late = 0;
    let count = 0;
    for (const file of row.files) {
      const text = fs.readFileSync(file, 'utf8');
      if (text.includes(SECRET)) leaked += 1;
      const found = outOfOrder(text);
      late += found.late;
      count += found.count;
    }
    if (count !== WRITES) lost += 1;
    if (late > 0) runsReordered += 1;
    lateTotal += late;
    lateMost = Math.max(lateMost, late);
  }
  const mean = (lateTotal / RUNS).toFixed(1);
  lines.push([row.name, `${runsReordered}/${RUNS}`, mean, String(lateMost), String(leaked), String(lost)]);
}

const header = ['row', 'runs reordered', 'writes late (mean)', 'writes late (max)', 'runs leaking', 'runs losing tags'];
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
const format = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
process.stdout.write(
  `sealvault masking-order bench ${new Date().toISOString()}: ${RUNS} runs of ${WRITES} writes per row, ` +
    `${os.cpus().length} CPUs, ${os.type()} ${os.release()}\n${format(header)}\n${lines.map(format).join('\n')}\n`,
);
fs.rmSync(tmp, { recursive: true, force: true });
