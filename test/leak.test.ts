/**
 * Known secret values go through every command. None of them, in any common encoding, may come out
 * on stdout or stderr, or land in the audit log (audit/), the run log or any file of the vault or state
 * directories.
 * Values only ever travel on stdin or in files, never in argv, and `vault` hardens itself (no core
 * dumps, not dumpable) before it reads one.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, RELEASE_CLI, type RunOptions, type RunResult, type Workspace } from './helpers/cli.js';
import { openAllSecrets } from './helpers/open-vault.js';

const MAX_VALUE_BYTES = 1024 * 1024;

const word = (label: string) => `${label}-${randomBytes(18).toString('base64url')}`;

/** The secret values of this file: each distinctive, at least 16 bytes. */
const VALUES = {
  plain: word('plain'),
  multiLine: `${word('first-line')}\n${word('second-line')}\r\n\t${word('third-line')}\n`,
  binary: Buffer.concat([randomBytes(24), Buffer.from([0x00, 0xff, 0x0a, 0x0d, 0x00]), Buffer.from(word('bin-marker')), randomBytes(24), Buffer.from([0xfe, 0x00])]),
  fromFile: word('from-file'),
  replacement: word('replacement'),
  refusedOverwrite: word('refused-overwrite'),
  tooLarge: word('inside-too-large'),
  bigFile: word('inside-big-file'),
  keyAddValue: word('put-after-key-add'),
};

interface Needle {
  label: string;
  bytes: Buffer;
}

/** The middle of base64(value) as it appears at each of the three byte alignments in a longer text. */
function base64Cores(value: Buffer, encoding: 'base64' | 'base64url'): string[] {
  const cores: string[] = [];
  for (let shift = 0; shift < 3; shift += 1) {
    const text = Buffer.concat([Buffer.alloc(shift), value]).toString(encoding).replace(/=+$/, '');
    cores.push(text.slice(shift === 0 ? 0 : 4, text.length - 4));
  }
  return cores;
}

function needlesOf(label: string, value: Buffer): Needle[] {
  const needles: Needle[] = [
    { label: `${label} (raw)`, bytes: value },
    { label: `${label} (hex)`, bytes: Buffer.from(value.toString('hex')) },
    { label: `${label} (HEX)`, bytes: Buffer.from(value.toString('hex').toUpperCase()) },
    { label: `${label} (base64)`, bytes: Buffer.from(value.toString('base64')) },
    { label: `${label} (base64url)`, bytes: Buffer.from(value.toString('base64url')) },
    ...base64Cores(value, 'base64').map((core, i) => ({ label: `${label} (base64, shift ${i})`, bytes: Buffer.from(core) })),
    ...base64Cores(value, 'base64url').map((core, i) => ({ label: `${label} (base64url, shift ${i})`, bytes: Buffer.from(core) })),
  ];
  // JSON-escaped and line by line, for values with control characters
  const text = value.toString('utf8');
  if (!text.includes('\ufffd')) needles.push({ label: `${label} (JSON string)`, bytes: Buffer.from(JSON.stringify(text).slice(1, -1)) });
  // each run of printable ASCII, so that a leak that re-encodes the other bytes (latin1 read back as
  // UTF-8, say) is still found: a random byte pair after the marker can be valid UTF-8, and then a
  // part cut at control characters only would hold a character that such a leak spells differently
  for (const part of text.split(/[^\x20-\x7e]+/)) {
    if (part.length >= 16) needles.push({ label: `${label} (part ${JSON.stringify(part.slice(0, 12))}…)`, bytes: Buffer.from(part) });
  }
  return needles;
}

const SECRET_NEEDLES: Needle[] = Object.entries(VALUES).flatMap(([label, value]) => needlesOf(label, Buffer.isBuffer(value) ? value : Buffer.from(value)));

function findNeedle(haystack: Buffer, needles: Needle[]): string | undefined {
  return needles.find((n) => haystack.includes(n.bytes))?.label;
}

/** Every file below `dir`, recursively. */
function filesBelow(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesBelow(full) : [full];
  });
}

interface Recorded {
  args: string[];
  input?: string | Buffer;
  result: RunResult;
}

describe('no secret value leaks through any command', () => {
  let ws: Workspace;
  let inputs: string; // value files live outside the workspace, which is searched whole
  let token: string;
  let secondToken = '';
  const wrongToken = `svt1_${randomBytes(32).toString('base64url')}`;
  const recorded: Recorded[] = [];
  let binaryStored: Buffer | undefined;
  let fromFileStat: { before: fs.Stats; bytesBefore: Buffer; after: fs.Stats; bytesAfter: Buffer } | undefined;

  function run(args: string[], options: RunOptions = {}, expected = 0): RunResult {
    const result = ws.run(args, options);
    recorded.push({ args, ...(options.input === undefined ? {} : { input: options.input }), result });
    expect(result.status, `vault ${args.join(' ')}: ${result.stderr}`).toBe(expected);
    return result;
  }

  beforeAll(async () => {
    ws = makeWorkspace();
    inputs = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-leak-inputs-'));
    const init = ws.run(['init', '--token']);
    recorded.push({ args: ['init', '--token'], result: init });
    expect(init.status, init.stderr).toBe(0);
    token = init.stdout.trim();
    ws.env.VAULT_KEY = token;
    let fingerprint = /fingerprint (svfp1_[0-9a-f]{40})/.exec(init.stderr)?.[1] ?? '';

    // put: stdin, multi-line, binary, --from-file --trim, refused overwrite, --force replace
    run(['put', 'PLAIN'], { input: VALUES.plain });
    run(['put', 'MULTI_LINE'], { input: VALUES.multiLine });
    run(['put', 'BINARY'], { input: VALUES.binary });
    const valueFile = path.join(inputs, 'value.txt');
    fs.writeFileSync(valueFile, `${VALUES.fromFile}\n\r\n`, { mode: 0o600 });
    const before = fs.statSync(valueFile);
    const bytesBefore = fs.readFileSync(valueFile);
    run(['put', 'FROM_FILE', '--from-file', valueFile, '--trim']);
    fromFileStat = { before, bytesBefore, after: fs.statSync(valueFile), bytesAfter: fs.readFileSync(valueFile) };
    run(['put', 'PLAIN'], { input: VALUES.refusedOverwrite }, 11);
    run(['put', 'PLAIN', '--force'], { input: VALUES.replacement });

    // too large, with a secret inside: on stdin and from a file
    const filler = (n: number) => Buffer.alloc(n, 0x61);
    const big = Buffer.concat([filler(1000), Buffer.from(VALUES.tooLarge), filler(MAX_VALUE_BYTES)]);
    run(['put', 'TOO_LARGE'], { input: big }, 12);
    const bigFile = path.join(inputs, 'big.bin');
    fs.writeFileSync(bigFile, Buffer.concat([filler(MAX_VALUE_BYTES - 10), Buffer.from(VALUES.bigFile)]));
    run(['put', 'BIG_FILE', '--from-file', bigFile], {}, 12);

    run(['list']);
    run(['list', '--json']);

    // key slots
    const added = run(['key', 'add', '--token']);
    secondToken = added.stdout.trim();
    const slotId = /token slot ([0-9a-f]{12})/.exec(added.stderr)?.[1] ?? '';
    run(['put', 'KEY_ADD_VALUE'], { input: VALUES.keyAddValue, env: { VAULT_KEY: secondToken } });
    run(['key', 'list']);
    run(['key', 'list', '--json']);
    run(['verify'], { env: { VAULT_KEY: secondToken } });
    run(['key', 'rm', slotId, '--no-rekey']);
    // a rekey reseals every value: none may show on its way
    const rekeyed = run(['rekey']);
    fingerprint = /fingerprint (svfp1_[0-9a-f]{40})/.exec(rekeyed.stderr)?.[1] ?? '';
    run(['list', '--stale']);

    // grants
    const tool = path.join(inputs, 'bin', 'deploy-tool');
    fs.mkdirSync(path.dirname(tool));
    fs.copyFileSync('/usr/bin/true', tool);
    fs.chmodSync(tool, 0o755);
    run(['allow', 'PLAIN', 'MULTI_LINE', 'BINARY', '--to', tool]);
    run(['allow', 'FROM_FILE', '--to', tool, '--min-tier', 'lockdown', '--arg', 'deploy']);
    run(['policy']);
    run(['policy', '--json']);
    run(['revoke', 'MULTI_LINE', '--from', tool]);
    run(['policy', '--json']);
    // a run: its release and exit go to the run log, which must name the secrets and hold no value
    run(['exec', '--only', 'PLAIN,BINARY', '--file', 'BINARY', '--', tool]);

    // reading the log and checking everything (verify opens every value)
    run(['audit']);
    run(['audit', '--json']);
    run(['audit', '--verify']);
    run(['audit', '--runs']);
    run(['audit', '--runs', '--json']);
    run(['verify']);
    run(['trust']);
    run(['trust', '--fingerprint', fingerprint]);
    binaryStored = (await openAllSecrets(ws.vaultDir, token)).get('BINARY');
    run(['rm', 'BINARY']);
    run(['list', '--json']);

    // failing unlocks: a token of the right shape that opens nothing, and a value used by mistake as VAULT_KEY
    run(['verify'], { env: { VAULT_KEY: wrongToken } }, 7);
    run(['policy'], { env: { VAULT_KEY: VALUES.plain } }, 2);
    run(['policy', '--json'], { env: { VAULT_KEY: VALUES.replacement } }, 2);
    run(['audit'], {});

    // the values really are in there (else the search below would prove nothing)
    const opened = await openAllSecrets(ws.vaultDir, token);
    expect(opened.get('PLAIN')?.toString()).toBe(VALUES.replacement);
    expect(opened.get('MULTI_LINE')?.toString()).toBe(VALUES.multiLine);
    expect(opened.get('FROM_FILE')?.toString()).toBe(VALUES.fromFile);
    expect(opened.get('KEY_ADD_VALUE')?.toString()).toBe(VALUES.keyAddValue);
    expect(opened.has('BINARY')).toBe(false);
    expect(opened.has('TOO_LARGE')).toBe(false);
    expect(opened.has('BIG_FILE')).toBe(false);
  }, 120_000);

  afterAll(() => {
    ws?.cleanup();
    if (inputs !== undefined) fs.rmSync(inputs, { recursive: true, force: true });
  });

  it('the binary value was stored byte for byte before it was removed', () => {
    expect(binaryStored).toEqual(VALUES.binary);
  });

  it('the search finds what it looks for (self-check)', () => {
    const value = Buffer.from(VALUES.plain);
    for (const shift of [0, 1, 2]) {
      const padded = Buffer.concat([Buffer.from('xyz'.slice(0, shift)), value, Buffer.from('tail')]);
      for (const encoding of ['base64', 'base64url', 'hex'] as const) {
        const haystack = Buffer.from(`{"field":"${padded.toString(encoding)}"}`);
        expect(findNeedle(haystack, SECRET_NEEDLES), `${encoding}, shift ${shift}`).toBeDefined();
      }
    }
    expect(findNeedle(Buffer.from(JSON.stringify({ v: VALUES.multiLine })), SECRET_NEEDLES)).toBeDefined();
    expect(findNeedle(Buffer.from(VALUES.binary.toString('latin1'), 'utf8'), SECRET_NEEDLES)).toBeDefined();
    expect(findNeedle(fs.readFileSync(path.join(inputs, 'value.txt')), SECRET_NEEDLES)).toBe('fromFile (raw)');
  });

  it('no stdout or stderr of any command holds a value or an encoding of one', () => {
    expect(recorded.length).toBeGreaterThan(30);
    for (const { args, result } of recorded) {
      const where = `vault ${args.join(' ')}`;
      expect(findNeedle(result.stdoutBytes, SECRET_NEEDLES), `${where}: stdout`).toBeUndefined();
      expect(findNeedle(Buffer.from(result.stderr), SECRET_NEEDLES), `${where}: stderr`).toBeUndefined();
    }
  });

  it('tokens appear only on the stdout of the command that made them, and a wrong VAULT_KEY is never echoed', () => {
    const tokens = [...needlesOf('token', Buffer.from(token)), ...needlesOf('second token', Buffer.from(secondToken)), ...needlesOf('wrong token', Buffer.from(wrongToken))];
    for (const { args, result } of recorded) {
      const where = `vault ${args.join(' ')}`;
      const madeOne = args.join(' ') === 'init --token' || args.join(' ') === 'key add --token';
      if (!madeOne) expect(findNeedle(result.stdoutBytes, tokens), `${where}: stdout`).toBeUndefined();
      expect(findNeedle(Buffer.from(result.stderr), tokens), `${where}: stderr`).toBeUndefined();
    }
    for (const file of filesBelow(ws.root)) expect(findNeedle(fs.readFileSync(file), tokens), file).toBeUndefined();
  });

  it('no entry of audit/ and no line of the run log holds a value', () => {
    const entries = filesBelow(path.join(ws.vaultDir, 'audit'));
    expect(entries.length).toBeGreaterThan(10);
    for (const file of entries) expect(findNeedle(fs.readFileSync(file), SECRET_NEEDLES), file).toBeUndefined();
    const vaultJson = fs.readFileSync(path.join(ws.vaultDir, 'vault.json'), 'utf8');
    const { vault_id: vaultId } = JSON.parse(vaultJson) as { vault_id: string };
    const runs = path.join(ws.env.XDG_STATE_HOME ?? '', 'sealvault', 'runs');
    const runLog = path.join(runs, Buffer.from(vaultId, 'base64').toString('base64url'), 'audit.log');
    const lines = fs.readFileSync(runLog).toString('utf8').trimEnd().split('\n');
    // the run's release names the secrets it gave (so the search is over a line about them), then its exit
    expect(lines.map((line) => (JSON.parse(line) as { event: string }).event)).toEqual(['release', 'exit']);
    const release = JSON.parse(lines[0]!) as { details: { secrets: string[] } };
    expect(release.details.secrets.sort()).toEqual(['BINARY', 'PLAIN']);
    for (const line of lines) expect(findNeedle(Buffer.from(line), SECRET_NEEDLES), line).toBeUndefined();
    // no audit.log in the vault any more: nothing is appended to it
    expect(fs.existsSync(path.join(ws.vaultDir, 'audit.log'))).toBe(false);
  });

  it('no file of the vault, the state directory or anywhere in the home holds a value', () => {
    const files = filesBelow(ws.root);
    const state = path.join(ws.env.XDG_STATE_HOME ?? '', 'sealvault', 'known_vaults.json');
    expect(files).toContain(state);
    expect(files).toContain(path.join(ws.vaultDir, 'secrets', 'PLAIN.json'));
    for (const file of files) expect(findNeedle(fs.readFileSync(file), SECRET_NEEDLES), file).toBeUndefined();
    expect(filesBelow(path.join(ws.vaultDir, '.tmp'))).toEqual([]);
  });

  it('no value was ever passed in argv: the CLI takes them only on stdin or from a file', () => {
    for (const { args } of recorded) {
      for (const arg of args) expect(findNeedle(Buffer.from(arg), SECRET_NEEDLES), `argument ${arg}`).toBeUndefined();
    }
    const fromStdin = recorded.filter((r) => r.args[0] === 'put' && r.input !== undefined);
    expect(fromStdin.length).toBeGreaterThanOrEqual(6);
  });

  it('put --from-file leaves the value file untouched', () => {
    const stat = fromFileStat;
    if (stat === undefined) throw new Error('put --from-file did not run');
    expect(stat.bytesAfter).toEqual(stat.bytesBefore);
    expect(stat.after.mtimeMs).toBe(stat.before.mtimeMs);
    expect(stat.after.ctimeMs).toBe(stat.before.ctimeMs);
    expect(stat.after.mode).toBe(stat.before.mode);
    expect(stat.after.ino).toBe(stat.before.ino);
    expect(stat.after.nlink).toBe(1);
  });
});

describe('put refuses a value given as an argument', () => {
  let ws: Workspace;
  afterEach(() => ws.cleanup());

  it('`vault put NAME VALUE` is a usage error that stores nothing and does not echo the value', () => {
    ws = makeWorkspace();
    initWithToken(ws);
    const decoy = word('decoy-in-argv');
    const result = ws.run(['put', 'DECOY', decoy], { input: 'x'.repeat(20) });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/^vault: [^\n]+\n$/);
    expect(result.stdout + result.stderr).not.toContain(decoy);
    expect(fs.existsSync(path.join(ws.vaultDir, 'secrets', 'DECOY.json'))).toBe(false);
  });
});

describe('a running `vault` is hardened before it reads a value', () => {
  let ws: Workspace;
  afterEach(() => ws.cleanup());

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(20);
    }
  }

  const coreLimit = (pid: number): string | undefined => {
    try {
      return /^Max core file size\s+(\S+)\s+(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'))?.slice(1, 3).join(' ');
    } catch {
      return undefined;
    }
  };

  /** Waits until the child has hardened itself and sits blocked on stdin. */
  async function hardenedAndWaiting(child: ReturnType<typeof spawn>): Promise<number> {
    const pid = child.pid;
    if (pid === undefined) throw new Error('vault did not start');
    await waitFor('RLIMIT_CORE 0', () => (coreLimit(pid) === '0 0' ? true : undefined));
    await sleep(300); // it is now past hardening; give it time to reach the read of stdin
    expect(child.exitCode).toBeNull();
    return pid;
  }

  async function finish(child: ReturnType<typeof spawn>, value: string): Promise<{ code: number | null; stderr: string }> {
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.stdin?.end(value);
    return { code: await done, stderr };
  }

  it('vault put: RLIMIT_CORE is 0 while it waits on stdin; as non-root its /proc files belong to root (not dumpable)', async () => {
    ws = makeWorkspace();
    const token = initWithToken(ws);
    const child = ws.start(['put', 'WAITING']);
    const pid = await hardenedAndWaiting(child);
    expect(coreLimit(pid)).toBe('0 0');
    if (process.getuid?.() !== 0) {
      // the kernel gives the /proc files of a non-dumpable process to root
      const stat = fs.statSync(`/proc/${pid}/status`);
      expect([stat.uid, stat.gid]).toEqual([0, 0]);
    }
    const value = word('waiting-value');
    const { code, stderr } = await finish(child, value);
    expect(code, stderr).toBe(0);
    expect(stderr).not.toContain(value);
    expect((await openAllSecrets(ws.vaultDir, token)).get('WAITING')?.toString()).toBe(value);
  });

  it.runIf(process.getuid?.() === 0)('as root: the same `vault put`, run as an unprivileged uid, is not dumpable (its /proc files belong to root)', async () => {
    ws = makeWorkspace();
    initWithToken(ws);
    const nobody = 65534;
    for (const file of [ws.root, ...filesAndDirsBelow(ws.root)]) fs.chownSync(file, nobody, nobody);
    const spawnAs = (args: string[]) =>
      spawn(process.execPath, args, { env: { ...ws.env, VAULT_KEY: '' }, cwd: ws.root, uid: nobody, gid: nobody, stdio: ['pipe', 'pipe', 'pipe'] });

    // control: an ordinary node process of that uid owns its /proc files
    const control = spawnAs(['-e', 'setTimeout(() => {}, 10000)']);
    try {
      const controlPid = control.pid ?? -1;
      const owner = await waitFor('control process', () => {
        try {
          return fs.statSync(`/proc/${controlPid}/status`).uid;
        } catch {
          return undefined;
        }
      });
      expect(owner).toBe(nobody);
    } finally {
      control.kill('SIGKILL');
    }

    const child = spawnAs([RELEASE_CLI, 'put', 'WAITING']);
    const pid = await hardenedAndWaiting(child);
    const stat = fs.statSync(`/proc/${pid}/status`);
    expect([stat.uid, stat.gid]).toEqual([0, 0]);
    expect(coreLimit(pid)).toBe('0 0');
    const { code, stderr } = await finish(child, word('waiting-value'));
    expect(code, stderr).toBe(0);
  });
});

function filesAndDirsBelow(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? [full, ...filesAndDirsBelow(full)] : [full];
  });
}
