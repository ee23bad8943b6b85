/**
 * Reliability: concurrent writers, writers killed at any point, damaged vault files, wrong keys and
 * bad input. Every case runs the built CLI against a real vault in a temporary directory.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, RELEASE_CLI, type RunResult, TEST_CLI, type Workspace } from './helpers/cli.js';
import { openAllSecrets } from './helpers/open-vault.js';

const MIB = 1024 * 1024;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Waits for `child` to end; kills it and reports a timeout after `timeoutMs`. */
function waitExit(child: ChildProcess, timeoutMs = 120_000): Promise<Exit & { timedOut: boolean }> {
  const started = Date.now();
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  // a child killed before it read its stdin makes our writes fail with EPIPE; that is expected
  child.stdin?.on('error', () => undefined);
  return new Promise((resolve) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut });
    });
  });
}

/**
 * The failure contract: exit `code`, one line on stderr that starts with `vault: `, no stack trace,
 * no JavaScript error name, nothing on stdout.
 */
function expectFailure(result: { status?: number | null; code?: number | null; stderr: string; stdout: string }, code: number, text?: RegExp): void {
  const status = result.status !== undefined ? result.status : result.code;
  const context = `exit ${status}, stderr: ${JSON.stringify(result.stderr)}`;
  expect(status, context).toBe(code);
  expect(result.stderr.startsWith('vault: '), context).toBe(true);
  expect(result.stderr.split('\n').length - 1, `exactly one line on stderr; ${context}`).toBe(1);
  expect(result.stderr.endsWith('\n'), context).toBe(true);
  expect(result.stderr, context).not.toMatch(/^\s+at /m);
  expect(result.stderr, context).not.toMatch(/Error:/);
  expect(result.stdout, context).toBe('');
  if (text !== undefined) expect(result.stderr, context).toMatch(text);
}

function snapshot(ws: Workspace): Record<string, string> {
  return Object.fromEntries([...ws.vaultFiles()].map(([name, bytes]) => [name, bytes.toString('base64')]));
}

function listNames(ws: Workspace): string[] {
  const result = ws.run(['list', '--json']);
  expect(result.status, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { name: string }[]).map((s) => s.name);
}

function tmpEntries(ws: Workspace): string[] {
  return fs.readdirSync(path.join(ws.vaultDir, '.tmp'));
}

function onlySlotFile(ws: Workspace): string {
  const slots = fs.readdirSync(path.join(ws.vaultDir, 'slots')).filter((f) => f.endsWith('.json'));
  expect(slots).toHaveLength(1);
  return path.join(ws.vaultDir, 'slots', slots[0]!);
}

/** Rewrites one JSON vault file with `edit` applied to its parsed object. */
function editJson(file: string, edit: (data: Record<string, unknown>) => void): void {
  const data = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(data);
  fs.writeFileSync(file, `${JSON.stringify(data)}\n`);
}

describe('concurrent writers', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
  });
  afterEach(() => ws.cleanup());

  it('8 processes putting 50 secrets each lose nothing and keep one audit history', { timeout: 180_000 }, async () => {
    const token = initWithToken(ws);
    const WORKERS = 8;
    const PER_WORKER = 50;
    const valueOf = (k: number, i: number) => `value of P${k}_${i}`;
    const started = Date.now();
    const workers = Array.from({ length: WORKERS }, (_, k) => {
      const script =
        `for i in $(seq 0 ${PER_WORKER - 1}); do ` +
        `printf 'value of P${k}_%s' "$i" ` +
        `| "$NODE" "$CLI" put "P${k}_$i" || { echo "worker ${k}: put P${k}_$i failed" >&2; exit 1; }; done`;
      const child = spawn('bash', ['-c', script], {
        env: { ...ws.env, NODE: process.execPath, CLI: RELEASE_CLI },
        cwd: ws.root,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      return waitExit(child, 170_000);
    });
    const results = await Promise.all(workers);
    const elapsed = Date.now() - started;
    console.log(`concurrency: ${WORKERS}x${PER_WORKER} puts took ${elapsed} ms`);
    for (const [k, r] of results.entries()) {
      expect(r.timedOut, `worker ${k} timed out`).toBe(false);
      expect(r.code, `worker ${k}: ${r.stderr}`).toBe(0);
      expect(r.stderr.split('\n').filter((l) => l !== '' && !/^stored P\d_\d+ \(\d+ bytes\)$/.test(l)), `worker ${k}`).toEqual([]);
    }

    const expected = Array.from({ length: WORKERS }, (_, k) => Array.from({ length: PER_WORKER }, (_, i) => `P${k}_${i}`)).flat();
    expect(listNames(ws).sort()).toEqual([...expected].sort());

    const verify = ws.run(['verify']);
    expect(verify.status, verify.stderr).toBe(0);
    const audit = ws.run(['audit', '--verify']);
    expect(audit.status, audit.stderr).toBe(0);
    expect(audit.stderr).toContain(`${1 + WORKERS * PER_WORKER} entries`);

    // one history: every put recorded exactly once after the init, every parent an entry is chained
    // on present, and one head, so no writer chained on heads another writer had already moved past
    type Entry = { hash: string; parents: string[]; event: string; details: { name?: string } };
    const entries = ws.run(['audit', '--json']).stdout.trim().split('\n').map((l) => JSON.parse(l) as Entry);
    expect(entries).toHaveLength(1 + WORKERS * PER_WORKER);
    expect(entries.map((e) => e.event).filter((e) => e !== 'put')).toEqual(['init']);
    expect(entries.filter((e) => e.event === 'put').map((e) => e.details.name).sort()).toEqual([...expected].sort());
    const hashes = new Set(entries.map((e) => e.hash));
    expect(hashes.size).toBe(entries.length);
    for (const entry of entries) {
      for (const parent of entry.parents) expect(hashes, `${entry.hash} names ${parent}`).toContain(parent);
    }
    const named = new Set(entries.flatMap((e) => e.parents));
    expect(entries.filter((e) => !named.has(e.hash)), 'heads').toHaveLength(1);
    expect(entries.filter((e) => e.parents.length === 0).map((e) => e.event), 'roots').toEqual(['init']);

    const values = await openAllSecrets(ws.vaultDir, token);
    expect(values.size).toBe(WORKERS * PER_WORKER);
    for (let k = 0; k < WORKERS; k += 1) {
      for (let i = 0; i < PER_WORKER; i += 1) expect(values.get(`P${k}_${i}`)?.toString('utf8'), `P${k}_${i}`).toBe(valueOf(k, i));
    }
    expect(tmpEntries(ws)).toEqual([]);
  });
});

describe('a writer killed at any point', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
  });
  afterEach(() => ws.cleanup());

  it('never leaves the vault unreadable, locked, or holding anything but the old or the new value', { timeout: 180_000 }, async () => {
    const token = initWithToken(ws);
    put(ws, 'NAME', 'old');
    let current = 'old';

    // how long one `put --force` lives, start to exit
    const durations: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      current = `timed-${i}`;
      const child = ws.start(['put', 'NAME', '--force']);
      child.stdin?.end(current);
      const r = await waitExit(child, 30_000);
      expect(r.code, r.stderr).toBe(0);
      durations.push(r.ms);
    }
    const life = Math.max(...durations);

    // even rounds: anywhere in the whole life; odd rounds: its second half, where it holds the lock
    const ROUNDS = 40;
    const outcomes = { killed: 0, exited: 0, sawOld: 0, sawNew: 0, killedAfterWrite: 0, leftTmp: 0 };
    const others = new Map<string, string>();
    for (let round = 0; round < ROUNDS; round += 1) {
      const candidate = `new-${round}-${'v'.repeat(round)}`;
      const delay = round % 2 === 0 ? Math.random() * 1.2 * life : (0.5 + Math.random() * 0.7) * life;
      const child = ws.start(['put', 'NAME', '--force']);
      child.stdin?.end(candidate);
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      const r = await waitExit(child, 30_000);
      clearTimeout(timer);
      const what = `round ${round}, kill after ${delay.toFixed(0)} ms: exit ${r.code} ${r.signal}, stderr ${JSON.stringify(r.stderr)}`;
      if (r.signal === 'SIGKILL') outcomes.killed += 1;
      else {
        outcomes.exited += 1;
        expect(r.code, what).toBe(0);
      }

      const list = ws.run(['list']);
      expect(list.status, `${what}; list: ${list.stderr}`).toBe(0);
      const values = await openAllSecrets(ws.vaultDir, token);
      const value = values.get('NAME')?.toString('utf8');
      if (r.code === 0) expect(value, what).toBe(candidate);
      else expect([current, candidate], what).toContain(value);
      if (value === candidate) outcomes.sawNew += 1;
      else outcomes.sawOld += 1;
      if (value === candidate && r.signal === 'SIGKILL') outcomes.killedAfterWrite += 1;
      current = value!;
      for (const [name, v] of others) expect(values.get(name)?.toString('utf8'), `${what}; ${name}`).toBe(v);

      const audit = ws.run(['audit', '--verify']);
      expect(audit.status, `${what}; audit: ${audit.stderr}`).toBe(0);
      const verify = ws.run(['verify']);
      expect(verify.status, `${what}; verify: ${verify.stderr}`).toBe(0);

      if (tmpEntries(ws).length > 0) outcomes.leftTmp += 1;
      // the lock was released: a normal put goes through, and sweeps what the dead writer left
      const other = `OTHER_${round}`;
      const next = ws.run(['put', other], { input: `other ${round}` });
      expect(next.status, `${what}; next put: ${next.stderr}`).toBe(0);
      others.set(other, `other ${round}`);
      expect(tmpEntries(ws), what).toEqual([]);
    }
    console.log(`sigkill: one put lives ${durations.join('/')} ms; ${ROUNDS} rounds: ${JSON.stringify(outcomes)}`);
    expect(listNames(ws)).toHaveLength(1 + ROUNDS);
  });

  it('the next writer removes files a dead writer left in .tmp/', () => {
    initWithToken(ws);
    put(ws, 'A', 'a');
    const tmp = path.join(ws.vaultDir, '.tmp');
    fs.writeFileSync(path.join(tmp, 'A.json.99999.0123456789ab'), 'half a sealed secret');
    fs.writeFileSync(path.join(tmp, 'policy.json.99998.ba9876543210'), '');
    // readers take no lock and leave them alone
    expect(ws.run(['list']).status).toBe(0);
    expect(tmpEntries(ws)).toHaveLength(2);
    put(ws, 'B', 'b');
    expect(tmpEntries(ws)).toEqual([]);
  });
});

describe('damaged vault files', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
    initWithToken(ws);
    put(ws, 'NAME', 'value');
  });
  afterEach(() => ws.cleanup());

  /** Runs each command against the damaged vault: each must fail with `code`, changing nothing. */
  function expectRefused(commands: string[][], code: number, text: RegExp, env: NodeJS.ProcessEnv = {}): void {
    const before = snapshot(ws);
    for (const args of commands) {
      const result = ws.run(args, { input: 'new value', env });
      expectFailure(result, code, text);
      expect(snapshot(ws), `vault files after \`vault ${args.join(' ')}\``).toEqual(before);
    }
  }

  const vaultJson = () => path.join(ws.vaultDir, 'vault.json');
  const everyReader = [['list'], ['put', 'OTHER'], ['put', 'NAME', '--force'], ['key', 'list'], ['verify'], ['policy'], ['audit', '--verify'], ['rm', 'NAME']];

  it('truncated vault.json: corrupt (4)', () => {
    const text = fs.readFileSync(vaultJson());
    fs.writeFileSync(vaultJson(), text.subarray(0, Math.floor(text.length / 2)));
    expectRefused(everyReader, 4, /vault\.json is not valid JSON/);
  });

  it('vault.json of another program: foreign (5)', () => {
    fs.writeFileSync(vaultJson(), '{"hello":1}\n');
    expectRefused(everyReader, 5, /vault\.json is not a sealvault vault file/);
  });

  it('vault.json of a future version: future version (6)', () => {
    editJson(vaultJson(), (d) => (d.version = 2));
    expectRefused(everyReader, 6, /version 2 vault file.*upgrade sealvault/);
  });

  it('a truncated secret file: corrupt (4)', () => {
    const file = path.join(ws.vaultDir, 'secrets', 'NAME.json');
    const text = fs.readFileSync(file);
    fs.writeFileSync(file, text.subarray(0, Math.floor(text.length / 2)));
    expectRefused([['list'], ['verify']], 4, /NAME\.json is not valid JSON/);
  });

  it('a slot file of a future version: future version (6) for every command that reads slots', () => {
    editJson(onlySlotFile(ws), (d) => (d.version = 2));
    expectRefused([['verify'], ['policy'], ['key', 'list'], ['key', 'add', '--token'], ['trust']], 6, /version 2 key slot/);
  });

  it('a passphrase slot asking for 2^43 bytes of memory, beyond argon2id itself: corrupt (4), without running argon2id', () => {
    const added = ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], { cli: TEST_CLI, env: { VAULT_NEW_PASSPHRASE: 'correct horse battery' } });
    expect(added.status, added.stderr).toBe(0);
    const slots = fs.readdirSync(path.join(ws.vaultDir, 'slots'));
    expect(slots).toHaveLength(2);
    const passphraseSlot = slots
      .map((f) => path.join(ws.vaultDir, 'slots', f))
      .find((f) => (JSON.parse(fs.readFileSync(f, 'utf8')) as { kind: string }).kind === 'passphrase')!;
    editJson(passphraseSlot, (d) => ((d.kdf as { memlimit: number }).memlimit = 2 ** 43));
    const started = Date.now();
    expectRefused([['key', 'list'], ['verify'], ['policy']], 4, /damaged key slot: field kdf\.memlimit/);
    delete ws.env.VAULT_KEY;
    expectRefused([['verify'], ['policy']], 4, /damaged key slot/, { VAULT_PASSPHRASE: 'correct horse battery' });
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('non-canonical base64 (unused pad bits set) in vault.json: corrupt (4), so the same bytes have one text', () => {
    const file = path.join(ws.vaultDir, 'vault.json');
    const id = (JSON.parse(fs.readFileSync(file, 'utf8')) as { vault_id: string }).vault_id;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    // 16 bytes: the last character before == carries 2 bits of data and 4 pad bits
    const last = alphabet.indexOf(id[21]!);
    const twin = `${id.slice(0, 21)}${alphabet[last ^ 1]}==`;
    expect(Buffer.from(twin, 'base64').equals(Buffer.from(id, 'base64'))).toBe(true);
    editJson(file, (d) => (d.vault_id = twin));
    expectRefused([['list'], ['policy']], 4, /field vault_id does not follow docs\/FORMAT.md/);
  });

  it('binary garbage in policy.json: corrupt (4)', () => {
    const garbage = Buffer.from(Array.from({ length: 200 }, (_, i) => (i * 151 + 7) % 256));
    fs.writeFileSync(path.join(ws.vaultDir, 'policy.json'), garbage);
    expectRefused([['policy'], ['verify']], 4, /policy\.json is not valid JSON/);
  });

  it('a slot file renamed to another id: corrupt (4)', () => {
    const file = onlySlotFile(ws);
    const id = path.basename(file, '.json');
    const other = id === 'aaaaaaaaaaaa' ? 'bbbbbbbbbbbb' : 'aaaaaaaaaaaa';
    fs.renameSync(file, path.join(ws.vaultDir, 'slots', `${other}.json`));
    expectRefused([['key', 'list'], ['verify'], ['policy']], 4, new RegExp(`${other}\\.json holds slot ${id} under another file name`));
    // the same slot under its own name opens again: nothing was lost
    fs.renameSync(path.join(ws.vaultDir, 'slots', `${other}.json`), file);
    expect(ws.run(['verify']).status).toBe(0);
  });
});

describe('wrong keys', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
    initWithToken(ws);
    put(ws, 'NAME', 'value');
  });
  afterEach(() => ws.cleanup());

  function expectUnlockRefused(env: NodeJS.ProcessEnv, code: number, text: RegExp): void {
    const before = snapshot(ws);
    for (const args of [['verify'], ['policy'], ['key', 'add', '--token'], ['trust']]) {
      expectFailure(ws.run(args, { env }), code, text);
      expect(snapshot(ws), `vault files after \`vault ${args.join(' ')}\``).toEqual(before);
    }
  }

  it("a well-formed token of another vault: wrong key (7)", () => {
    const other = makeWorkspace();
    try {
      const otherToken = initWithToken(other);
      expectUnlockRefused({ VAULT_KEY: otherToken }, 7, /VAULT_KEY opens none of this vault's 1 token slot/);
    } finally {
      other.cleanup();
    }
  });

  it('a malformed VAULT_KEY: usage (2), saying what a token looks like', () => {
    expectUnlockRefused({ VAULT_KEY: 'abc' }, 2, /svt1_/);
  });

  it('no VAULT_KEY, no other slot, no terminal: no unlock (8), naming what was tried', () => {
    delete ws.env.VAULT_KEY;
    expectUnlockRefused({}, 8, /neither VAULT_KEY nor VAULT_KEY_FILE is set.*no keychain slot.*no passphrase slot/);
    expectUnlockRefused({ VAULT_KEY: '' }, 8, /neither VAULT_KEY nor VAULT_KEY_FILE is set/);
  });
});

describe('bad input', () => {
  let ws: Workspace;
  let token: string;
  beforeEach(() => {
    ws = makeWorkspace();
    token = initWithToken(ws);
  });
  afterEach(() => ws.cleanup());

  it('a value of exactly 1 MiB is stored', async () => {
    const value = Buffer.alloc(MIB, 0x61);
    value[0] = 0x00;
    value[MIB - 1] = 0xff;
    put(ws, 'BIG', value);
    const listed = JSON.parse(ws.run(['list', '--json']).stdout) as { name: string; size: number }[];
    expect(listed).toEqual([expect.objectContaining({ name: 'BIG', size: MIB })]);
    expect((await openAllSecrets(ws.vaultDir, token)).get('BIG')?.equals(value)).toBe(true);
  });

  it('a value of 1 MiB + 1 is refused (12) and nothing is written, from stdin or a file', () => {
    const before = snapshot(ws);
    const value = Buffer.alloc(MIB + 1, 0x62);
    expectFailure(ws.run(['put', 'BIG'], { input: value }), 12, /over the limit.*nothing was stored/);
    expect(snapshot(ws)).toEqual(before);
    const file = path.join(ws.root, 'big.bin');
    fs.writeFileSync(file, value);
    expectFailure(ws.run(['put', 'BIG', '--from-file', file]), 12, /over the limit.*nothing was stored/);
    expect(snapshot(ws)).toEqual(before);
    expect(fs.existsSync(path.join(ws.vaultDir, 'secrets', 'BIG.json'))).toBe(false);
  });

  it('an empty value is a value (issue 15): stored from a pipe, a file, or what --trim leaves, listed as 0 bytes', () => {
    expect(ws.run(['put', 'EMPTY'], { input: '' }).status).toBe(0);
    expect(ws.run(['put', 'EMPTY_TRIM', '--trim'], { input: '\n\r\n\n' }).status).toBe(0);
    const file = path.join(ws.root, 'empty.txt');
    fs.writeFileSync(file, '');
    expect(ws.run(['put', 'EMPTY_FILE', '--from-file', file]).status).toBe(0);
    const sizes = (JSON.parse(ws.run(['list', '--json']).stdout) as { name: string; size: number }[]).map((s) => s.size);
    expect(sizes).toEqual([0, 0, 0]);
  });

  it('invalid and reserved names are refused (12) before stdin is read', async () => {
    const before = snapshot(ws);
    const names = ['lower', 'Mixed', '1LEADING_DIGIT', 'A'.repeat(129), 'WITH-DASH', 'WITH SPACE', 'LD_PRELOAD', 'VAULT_X', 'PATH', 'BASH_ENV', 'NODE_OPTIONS', '../ESCAPE'];
    for (const name of names) {
      // stdin stays open and empty: a CLI that read it first would hang here
      const child = ws.start(['put', name]);
      const r = await waitExit(child, 15_000);
      child.stdin?.destroy();
      expect(r.timedOut, `put ${name} waited for stdin`).toBe(false);
      expectFailure(r, 12, /secret name .* is (not valid|refused)/);
    }
    // the longest valid name is accepted: its secret file and its audit entry are all that is new
    put(ws, 'A'.repeat(128), 'v');
    expect(listNames(ws)).toEqual(['A'.repeat(128)]);
    const added = Object.keys(snapshot(ws)).filter((name) => !(name in before)).sort();
    expect(added).toHaveLength(2);
    expect(added[0]).toMatch(/^audit\/[0-9a-f]{64}\.json$/);
    expect(added[1]).toBe(`secrets/${'A'.repeat(128)}.json`);
  });

  it('put over an existing name is refused (11) without --force and keeps the old value; --force replaces it', async () => {
    put(ws, 'NAME', 'first');
    const before = snapshot(ws);
    expectFailure(ws.run(['put', 'NAME'], { input: 'second' }), 11, /NAME already exists.*--force/);
    expect(snapshot(ws)).toEqual(before);
    expect((await openAllSecrets(ws.vaultDir, token)).get('NAME')?.toString()).toBe('first');
    const replaced = ws.run(['put', 'NAME', '--force'], { input: 'second' });
    expect(replaced.status, replaced.stderr).toBe(0);
    expect(replaced.stderr).toBe('replaced NAME (6 bytes)\n');
    expect((await openAllSecrets(ws.vaultDir, token)).get('NAME')?.toString()).toBe('second');
  });

  it('--from-file of a missing file: not found (3)', () => {
    const before = snapshot(ws);
    expectFailure(ws.run(['put', 'NAME', '--from-file', path.join(ws.root, 'missing.txt')]), 3, /missing\.txt.*ENOENT/);
    expect(snapshot(ws)).toEqual(before);
  });

  it('an unknown command or flag, or a missing argument: usage (2), one line', () => {
    expectFailure(ws.run(['frobnicate']), 2, /unknown command/);
    expectFailure(ws.run(['list', '--bogus-flag']), 2, /unknown option/);
    expectFailure(ws.run(['put']), 2, /missing required argument/);
  });

  // BUG: commander appends "\n(Did you mean list?)" to the message, so the error takes two lines
  it('an unknown command or flag close to a real one: usage (2), still one line', () => {
    expectFailure(ws.run(['lst']), 2, /unknown command 'lst'/);
    expectFailure(ws.run(['list', '--jsn']), 2, /unknown option '--jsn'/);
  });

  it("--vault '' and an empty VAULT_DIR: usage (2); VAULT_DIR at a missing directory: not found (3)", () => {
    expectFailure(ws.run(['--vault', '', 'list']), 2, /--vault needs a directory/);
    expectFailure(ws.run(['list'], { env: { VAULT_DIR: '' } }), 2, /VAULT_DIR is set but empty/);
    const missing = path.join(ws.root, 'no', 'such', 'vault');
    expectFailure(ws.run(['list'], { env: { VAULT_DIR: missing } }), 3, /no vault at/);
    expectFailure(ws.run(['put', 'NAME'], { env: { VAULT_DIR: missing }, input: 'v' }), 3, /no vault at/);
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('init into a non-empty directory or over a vault is refused (11), creating nothing', () => {
    const dir = path.join(ws.root, 'busy');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    for (const kind of ['--token', '--passphrase']) {
      expectFailure(ws.run(['init', kind], { env: { VAULT_DIR: dir, VAULT_KEY: undefined, VAULT_PASSPHRASE: 'a long passphrase' } }), 11, /is not empty/);
      expect(fs.readdirSync(dir)).toEqual(['notes.txt']);
    }
    const before = snapshot(ws);
    expectFailure(ws.run(['init', '--token']), 11, /a vault already exists/);
    expect(snapshot(ws)).toEqual(before);
    expect(ws.run(['verify']).status).toBe(0);
  });

  it('--trim drops trailing newlines only', async () => {
    put(ws, 'TRIMMED', '  lead and\ninner\n\nlines \t \n\n', ['--trim']);
    put(ws, 'CRLF', 'windows\r\n', ['--trim']);
    put(ws, 'KEPT', 'kept\n');
    const values = await openAllSecrets(ws.vaultDir, token);
    expect(values.get('TRIMMED')?.toString()).toBe('  lead and\ninner\n\nlines \t ');
    expect(values.get('CRLF')?.toString()).toBe('windows');
    expect(values.get('KEPT')?.toString()).toBe('kept\n');
  });
});

describe('long output', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
    initWithToken(ws);
  });
  afterEach(() => ws.cleanup());

  it('audit --json of a log far over a pipe\'s 64 KiB reaches a slow reader whole', () => {
    // entries chained on the log as it is (audit/, one file per entry named by its hash): valid, with no key needed
    const dir = path.join(ws.vaultDir, 'audit');
    const existing = fs.readdirSync(dir).filter((name) => name.endsWith('.json'));
    expect(existing).toHaveLength(1);
    let parent = existing[0]!.slice(0, -'.json'.length);
    for (let i = 0; i < 3000; i += 1) {
      const entry = {
        time: '2026-11-30T09:00:00.000Z', event: 'put', actor: { uid: 0, user: 'root' },
        details: { name: `N${i}` }, parents: [parent],
      };
      const bytes = `${JSON.stringify(entry)}\n`;
      parent = createHash('sha256').update(bytes).digest('hex');
      fs.writeFileSync(path.join(dir, `${parent}.json`), bytes, { mode: 0o600 });
    }
    const verify = ws.run(['audit', '--verify']);
    expect(verify.status, verify.stderr).toBe(0);
    expect(verify.stderr).toContain('audit log intact: 3001 entries');
    // the reader sleeps first, so the pipe fills and vault must wait for it
    const [program, ...rest] = ws.command(['audit', '--json']);
    const quoted = [program!, ...rest].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const run = spawnSync('sh', ['-c', `${quoted} | (sleep 1; wc -l)`], { env: ws.env, encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(Number(run.stdout.trim())).toBe(1 + 3000);
  });
});
