/**
 * Key slots and unlocking, end to end through the built CLI: the real Secret Service (the
 * gnome-keyring that test/run.sh starts), real argon2id passphrase slots, tokens, and the unlock
 * order of docs/FORMAT.md. Nothing here is mocked.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ptyRun } from './helpers/pty.js';
import { initWithToken, makeWorkspace, put, RELEASE_CLI, ROOT, type RunResult, TEST_CLI, type Workspace } from './helpers/cli.js';
import { openAllSecrets } from './helpers/open-vault.js';

const TOKEN_LINE = /^svt1_[A-Za-z0-9_-]{43}\n$/;
const ONE_LINE = /^vault: [^\n]+\n$/;
const SLOT_ID = /^[0-9a-f]{12}$/;
const PASSPHRASE = 'correct horse battery staple';
const KEYCHAIN_REQUIRED = process.env.SEALVAULT_TEST_KEYCHAIN === 'required';

interface SlotJson {
  id: string;
  kind: 'token' | 'keychain' | 'passphrase';
  keychain?: { service: string; account: string };
  kdf?: { alg: string; opslimit: number; memlimit: number; salt: string };
  [field: string]: unknown;
}

function slotFiles(ws: Workspace): SlotJson[] {
  const dir = path.join(ws.vaultDir, 'slots');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).sort().map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as SlotJson);
}

function onlySlot(ws: Workspace, kind: SlotJson['kind']): SlotJson {
  const slots = slotFiles(ws).filter((s) => s.kind === kind);
  expect(slots, `exactly one ${kind} slot`).toHaveLength(1);
  return slots[0]!;
}

/** Asserts success and returns the result, with stderr in the failure message. */
function ok(result: RunResult, what: string): RunResult {
  expect(result.status, `${what}: ${result.stderr}`).toBe(0);
  return result;
}

/** Asserts a failure of one `vault: ...` line with this exit code, and no stack trace. */
function fails(result: RunResult, code: number, mentions?: RegExp): RunResult {
  expect(result.status, `stderr: ${result.stderr}`).toBe(code);
  expect(result.stderr).toMatch(ONE_LINE);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  if (mentions !== undefined) expect(result.stderr).toMatch(mentions);
  return result;
}

function makeScript(ws: Workspace, name = 'deploy.sh'): string {
  const script = path.join(ws.root, name);
  fs.writeFileSync(script, '#!/bin/sh\necho deployed\n', { mode: 0o755 });
  return script;
}

// ---------------------------------------------------------------------------------------------
// The Secret Service, reached independently of the CLI: secret-tool (libsecret-tools) when it is
// installed, else keytar in a separate node process. Both are real D-Bus clients.

const HAS_SECRET_TOOL = spawnSync('sh', ['-c', 'command -v secret-tool'], { encoding: 'utf8' }).status === 0;

function keytarChild(script: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['-e', script], { cwd: ROOT, env: process.env, encoding: 'utf8', timeout: 20_000 });
  return { status: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? `${String(result.error)}` };
}

/** Why no Secret Service answers in this test process's session, or undefined when one does. */
function secretServiceProblem(): string | undefined {
  if (process.env.DBUS_SESSION_BUS_ADDRESS === undefined) return 'DBUS_SESSION_BUS_ADDRESS is not set';
  const probe = keytarChild(
    "require('keytar').getPassword('sealvault-test-probe', 'probe').then(() => process.exit(0), (e) => { process.stderr.write(String(e && e.message)); process.exit(1); })",
  );
  return probe.status === 0 ? undefined : `the Secret Service did not answer: ${probe.stderr.trim() || `exit ${probe.status}`}`;
}

/** The value the Secret Service holds for sealvault's item `account`, or undefined. */
function keychainItem(account: string): string | undefined {
  if (HAS_SECRET_TOOL) {
    // "--": an account (base64url) may start with "-", which secret-tool would read as an option
    const result = spawnSync('secret-tool', ['lookup', '--', 'service', 'sealvault', 'account', account], { env: process.env, encoding: 'utf8', timeout: 20_000 });
    if (result.status === 0 && result.stdout !== '') return result.stdout.replace(/\n$/, '');
    // secret-tool says "not found" with exit 1 and nothing on stderr; anything else is a failed look-up
    if (result.status === 1 && result.stderr === '') return undefined;
    throw new Error(`secret-tool lookup failed (status ${result.status}, signal ${result.signal}, ${String(result.error ?? '')}): ${result.stderr}`);
  }
  const result = keytarChild(
    `require('keytar').getPassword('sealvault', ${JSON.stringify(account)}).then((v) => { if (v !== null) process.stdout.write(v); process.exit(v === null ? 3 : 0); }, (e) => { process.stderr.write(String(e)); process.exit(1); })`,
  );
  if (result.status === 1) throw new Error(`cannot read the keychain: ${result.stderr}`);
  return result.status === 0 ? result.stdout : undefined;
}

/** Replaces the value of sealvault's item `account`, as any process of the user can. */
function setKeychainItem(account: string, value: string): void {
  const result = keytarChild(`require('keytar').setPassword('sealvault', ${JSON.stringify(account)}, ${JSON.stringify(value)}).then(() => process.exit(0), (e) => { process.stderr.write(String(e)); process.exit(1); })`);
  if (result.status !== 0) throw new Error(`cannot write the keychain: ${result.stderr}`);
}

function deleteKeychainItem(account: string): void {
  keytarChild(`require('keytar').deletePassword('sealvault', ${JSON.stringify(account)}).then(() => process.exit(0), () => process.exit(1))`);
}

const SECRET_SERVICE_PROBLEM = secretServiceProblem();

/**
 * Runs the test build's `vault ARGS` with a pty as its terminal (stdin, stderr) and its stdout to a
 * file: a change unlocked by the keychain needs a terminal, and a token must come out alone.
 */
function onTerminal(ws: Workspace, args: string[]): { status: number; stdout: string; output: string } {
  const out = path.join(ws.root, `stdout-${process.hrtime.bigint()}`);
  const run = ptyRun(ws, ['/bin/sh', '-c', 'exec "$@" > "$OUT"', 'sh', ...ws.command(args)], [], { OUT: out });
  return { status: run.status, output: run.output, stdout: fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '' };
}

describe('the Secret Service for the keychain tests', () => {
  it.runIf(KEYCHAIN_REQUIRED)('answers, since SEALVAULT_TEST_KEYCHAIN=required', () => {
    expect(SECRET_SERVICE_PROBLEM, 'test/run.sh starts gnome-keyring; without it the keychain tests cannot run').toBeUndefined();
  });
});

describe.skipIf(SECRET_SERVICE_PROBLEM !== undefined && !KEYCHAIN_REQUIRED)('keychain slots (real Secret Service)', () => {
  let ws: Workspace;
  beforeAll(() => {
    // fail, never skip, when the keychain is required and absent
    if (SECRET_SERVICE_PROBLEM !== undefined) throw new Error(`SEALVAULT_TEST_KEYCHAIN=required, but ${SECRET_SERVICE_PROBLEM}`);
  });
  beforeEach(() => {
    ws = makeWorkspace({ keychain: true });
    expect(ws.env.DBUS_SESSION_BUS_ADDRESS).toBeDefined();
  });
  afterEach(() => {
    // the keychain outlives the workspace: remove what these tests left in it
    for (const slot of slotFiles(ws)) if (slot.keychain !== undefined) deleteKeychainItem(slot.keychain.account);
    ws.cleanup();
  });

  it('init --keychain, then put, allow, policy and verify work with no VAULT_KEY; the keychain holds the key', async () => {
    const init = ok(ws.run(['init', '--keychain']), 'init --keychain');
    expect(init.stdout).toBe('');
    expect(init.stderr).toMatch(/first key slot: keychain/);
    const slot = onlySlot(ws, 'keychain');
    expect(SLOT_ID.test(slot.id)).toBe(true);
    const vaultId = JSON.parse(fs.readFileSync(path.join(ws.vaultDir, 'vault.json'), 'utf8')).vault_id as string;
    expect(slot.keychain).toEqual({ service: 'sealvault', account: `${Buffer.from(vaultId, 'base64').toString('base64url')}/${slot.id}` });

    // the item really is in the Secret Service: 32 random bytes, base64
    const item = keychainItem(slot.keychain!.account);
    expect(item, `keychain item ${slot.keychain!.account} (checked with ${HAS_SECRET_TOOL ? 'secret-tool' : 'keytar'})`).toBeDefined();
    expect(item).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(item!, 'base64')).toHaveLength(32);

    expect(ws.env.VAULT_KEY).toBeUndefined();
    expect(ws.env.VAULT_PASSPHRASE).toBeUndefined();
    put(ws, 'API_KEY', 'kc-value-1');
    const script = makeScript(ws);
    // without a terminal a change is not made with the keychain: any process of the user could ask for it
    const policyBefore = fs.readFileSync(path.join(ws.vaultDir, 'policy.json'));
    fails(ws.run(['allow', 'API_KEY', '--to', script]), 8, /a change is not made with the keychain without a terminal/);
    expect(fs.readFileSync(path.join(ws.vaultDir, 'policy.json')), 'the refused allow changed no grant').toEqual(policyBefore);
    // on a terminal it is, and says so
    const allowed = onTerminal(ws, ['allow', 'API_KEY', '--to', script]);
    expect(allowed.status, allowed.output).toBe(0);
    expect(allowed.output).toMatch(/vault: warning: unlocked through the keychain, which any process of yours can use to change/);
    const policy = JSON.parse(ok(ws.run(['policy', '--json']), 'policy').stdout) as { revision: number; grants: { secret: string; path: string }[] };
    expect(policy.revision).toBe(1);
    expect(policy.grants.map((g) => [g.secret, g.path])).toEqual([['API_KEY', script]]);
    expect(ok(ws.run(['verify']), 'verify').stderr).toMatch(/^ok: 1 secret\(s\)/);
    ok(ws.run(['audit', '--verify']), 'audit --verify');

    // without the D-Bus session the same vault cannot be unlocked, and the error names the keychain
    const noBus = { ...ws.env };
    delete noBus.DBUS_SESSION_BUS_ADDRESS;
    const saved = ws.env;
    ws.env = noBus;
    try {
      fails(ws.run(['verify']), 8, new RegExp(`keychain slot ${slot.id}: no D-Bus session`));
    } finally {
      ws.env = saved;
    }
  });

  it('init on a terminal asks passphrase or keychain, saying what each means; Enter picks the passphrase', () => {
    const steps = (answer: string) => [
      { expect: '[passphrase] ', send: `${answer}\r` },
      ...(answer === 'k' ? [] : [{ expect: 'New vault passphrase: ', send: 'a long passphrase\r' }, { expect: 'Again, to confirm: ', send: 'a long passphrase\r' }]),
    ];
    const asked = ptyRun(ws, [process.execPath, RELEASE_CLI, 'init'], steps(''));
    expect(asked.pending, asked.output).toEqual([]);
    expect(asked.status, asked.output).toBe(0);
    expect(asked.output).toMatch(/passphrase: you type it; with `vault agent`, programs of yours .* can run/);
    expect(asked.output).toMatch(/keychain: +nothing to type; but any process of yours can use it/);
    expect(slotFiles(ws).map((s) => s.kind)).toEqual(['passphrase']);
    fs.rmSync(ws.vaultDir, { recursive: true });
    const keychain = ptyRun(ws, [process.execPath, RELEASE_CLI, 'init'], steps('k'));
    expect(keychain.status, keychain.output).toBe(0);
    expect(slotFiles(ws).map((s) => s.kind)).toEqual(['keychain']);
  });

  it('key rm of the keychain slot, after adding a token slot, deletes the keychain item', async () => {
    ok(ws.run(['init', '--keychain']), 'init --keychain');
    const keychainSlot = onlySlot(ws, 'keychain');
    put(ws, 'DB_URL', 'postgres://x');
    const added = onTerminal(ws, ['key', 'add', '--token']);
    expect(added.status, added.output).toBe(0);
    expect(added.stdout).toMatch(TOKEN_LINE);
    const token = added.stdout.trim();
    expect(keychainItem(keychainSlot.keychain!.account)).toBeDefined();

    const removed = ok(ws.run(['key', 'rm', keychainSlot.id], { env: { VAULT_KEY: token } }), 'key rm');
    // removed with a rekey: the token that unlocked is carried under its own key
    expect(removed.stderr).toMatch(new RegExp(`^removed keychain slot ${keychainSlot.id}\nkept token slot [0-9a-f]{12}\nrekeyed: a new key pair `));
    expect(keychainItem(keychainSlot.keychain!.account), 'the keychain item is gone').toBeUndefined();
    expect(slotFiles(ws).map((s) => s.kind)).toEqual(['token']);

    // the keychain no longer unlocks; the token does
    fails(ws.run(['verify']), 8, /no keychain slot/);
    ok(ws.run(['verify'], { env: { VAULT_KEY: token } }), 'verify with the token');
    expect((await openAllSecrets(ws.vaultDir, token)).get('DB_URL')?.toString()).toBe('postgres://x');
  });

  it('a vault with a keychain slot and a token slot still unlocks by token without a D-Bus session', async () => {
    ok(ws.run(['init', '--keychain']), 'init --keychain');
    const token = onTerminal(ws, ['key', 'add', '--token']).stdout.trim();
    put(ws, 'A', 'a-value');
    delete ws.env.DBUS_SESSION_BUS_ADDRESS;
    expect(ws.env.DISPLAY).toBeUndefined();
    fails(ws.run(['verify']), 8, /no D-Bus session/);
    ok(ws.run(['verify'], { env: { VAULT_KEY: token } }), 'verify by token without D-Bus');
    const script = makeScript(ws);
    ok(ws.run(['allow', 'A', '--to', script], { env: { VAULT_KEY: token } }), 'allow by token without D-Bus');
    expect((await openAllSecrets(ws.vaultDir, token)).get('A')?.toString()).toBe('a-value');
  });

  it('unlock order: VAULT_KEY first, then the keychain, then VAULT_PASSPHRASE; a given credential that fails is an error', () => {
    const cli = TEST_CLI;
    ok(ws.run(['init', '--keychain'], { cli }), 'init --keychain');
    const token = onTerminal(ws, ['key', 'add', '--token']).stdout.trim();
    ok(
      ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], { cli, env: { VAULT_NEW_PASSPHRASE: PASSPHRASE, VAULT_KEY: token } }),
      'key add --passphrase',
    );
    expect(slotFiles(ws).map((s) => s.kind).sort()).toEqual(['keychain', 'passphrase', 'token']);
    const otherToken = `svt1_${Buffer.alloc(32, 7).toString('base64url')}`;

    // VAULT_KEY wins over a wrong VAULT_PASSPHRASE (which alone is an error, below)
    ok(ws.run(['verify'], { cli, env: { VAULT_KEY: token, VAULT_PASSPHRASE: 'wrong passphrase!' } }), 'token + wrong passphrase');
    // a wrong VAULT_KEY is an error even though the keychain (and the passphrase) would open
    fails(ws.run(['verify'], { cli, env: { VAULT_KEY: otherToken, VAULT_PASSPHRASE: PASSPHRASE } }), 7, /VAULT_KEY opens none/);
    // so is a VAULT_KEY that is no token at all
    fails(ws.run(['verify'], { cli, env: { VAULT_KEY: 'not-a-token' } }), 2, /VAULT_KEY is not a sealvault token/);
    // the keychain comes before VAULT_PASSPHRASE: a wrong passphrase is never looked at
    ok(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: 'wrong passphrase!' } }), 'keychain + wrong passphrase');
    // an item any process of the user rewrote, even to a key of the wrong length, only fails to open its slot
    const account = slotFiles(ws).find((slot) => slot.kind === 'keychain')!.keychain!.account;
    const kek = keychainItem(account)!;
    setKeychainItem(account, Buffer.alloc(31, 9).toString('base64'));
    try {
      ok(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'a 31-byte keychain item, then the passphrase');
      fails(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: 'wrong passphrase!' } }), 7, /VAULT_PASSPHRASE opens none/);
    } finally {
      setKeychainItem(account, kek);
    }
    // without the keychain, VAULT_PASSPHRASE decides
    const noBus = { ...ws.env };
    delete noBus.DBUS_SESSION_BUS_ADDRESS;
    ws.env = noBus;
    fails(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: 'wrong passphrase!' } }), 7, /VAULT_PASSPHRASE opens none/);
    ok(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'passphrase without the keychain');
  });
});

describe('the keychain without a D-Bus session', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
    expect(ws.env.DBUS_SESSION_BUS_ADDRESS).toBeUndefined();
    expect(ws.env.DISPLAY).toBeUndefined();
  });
  afterEach(() => ws.cleanup());

  it('init --keychain fails with one line that mentions D-Bus, and creates nothing', () => {
    const result = fails(ws.run(['init', '--keychain']), 11, /D-Bus/);
    expect(result.stdout).toBe('');
    const leftOver = fs.existsSync(ws.vaultDir) ? fs.readdirSync(ws.vaultDir) : undefined;
    expect(leftOver, `a failed init left ${ws.vaultDir} behind, holding [${leftOver?.join(', ')}]`).toBeUndefined();
    // and the failed attempt does not stand in the way of the next one
    const retry = ws.run(['init', '--token']);
    expect(retry.status, retry.stderr).toBe(0);
    expect(retry.stdout).toMatch(TOKEN_LINE);
  });

  it('init --keychain with a D-Bus address where nothing listens fails the same way', () => {
    const result = fails(ws.run(['init', '--keychain'], { env: { DBUS_SESSION_BUS_ADDRESS: `unix:path=${path.join(ws.root, 'no-bus')}` } }), 11, /keychain/);
    expect(result.stdout).toBe('');
    expect(ws.vaultFiles().size).toBe(0);
    expect(fs.existsSync(path.join(ws.vaultDir, 'vault.json'))).toBe(false);
  });
});

describe('passphrase slots (real argon2id)', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
  });
  afterEach(() => ws.cleanup());

  it('test build: init --passphrase --insecure-test-kdf, unlock with the right passphrase, wrong one → exit 7', async () => {
    const cli = TEST_CLI;
    const init = ok(ws.run(['init', '--passphrase', '--insecure-test-kdf'], { cli, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'init');
    expect(init.stdout).toBe('');
    const slot = onlySlot(ws, 'passphrase');
    expect(slot.kdf).toMatchObject({ alg: 'argon2id13', opslimit: 1, memlimit: 8192 });
    expect(Buffer.from(slot.kdf!.salt, 'base64')).toHaveLength(16);
    expect(JSON.stringify(slot)).not.toContain(PASSPHRASE);

    put(ws, 'S', 'value-s', []);
    const script = makeScript(ws);
    ok(ws.run(['allow', 'S', '--to', script], { cli, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'allow');
    ok(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'verify');
    // the release build opens a slot made by the test build: only the parameters differ
    ok(ws.run(['policy'], { env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'policy with the release build');

    const wrong = fails(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: 'Correct horse battery staple' } }), 7, /passphrase/);
    expect(wrong.stderr).not.toContain('orse battery');
    // no passphrase and no terminal: nothing to unlock with
    fails(ws.run(['verify'], { cli }), 8, /VAULT_PASSPHRASE is not set and there is no terminal/);
  });

  it('the release build refuses --insecure-test-kdf (exit 2) and creates nothing', () => {
    const result = fails(ws.run(['init', '--passphrase', '--insecure-test-kdf'], { cli: RELEASE_CLI, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 2, /test build/);
    expect(result.stdout).toBe('');
    expect(fs.existsSync(ws.vaultDir)).toBe(false);
    // nor does it add such a slot to an existing vault
    const token = initWithToken(ws);
    fails(ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], { cli: RELEASE_CLI, env: { VAULT_NEW_PASSPHRASE: PASSPHRASE } }), 2, /test build/);
    expect(slotFiles(ws).map((s) => s.kind)).toEqual(['token']);
    expect(token).toMatch(/^svt1_/);
    // and does not advertise it
    expect(ws.run(['init', '--help']).stdout).not.toContain('insecure');
  });

  it('the release build writes argon2id with opslimit 3 and memlimit 268435456, and unlocks with it', { timeout: 120_000 }, () => {
    const started = Date.now();
    ok(ws.run(['init', '--passphrase'], { cli: RELEASE_CLI, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'init --passphrase (release)');
    const initMs = Date.now() - started;
    const slot = onlySlot(ws, 'passphrase');
    expect(slot.kdf).toMatchObject({ alg: 'argon2id13', opslimit: 3, memlimit: 268435456 });
    put(ws, 'REAL', 'real-kdf');
    const unlockStarted = Date.now();
    ok(ws.run(['verify'], { cli: RELEASE_CLI, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'verify (release)');
    const unlockMs = Date.now() - unlockStarted;
    fails(ws.run(['verify'], { cli: RELEASE_CLI, env: { VAULT_PASSPHRASE: `${PASSPHRASE}.` } }), 7);
    // a real KDF takes real time; the insecure one would not
    expect(initMs + unlockMs).toBeGreaterThan(200);
    console.log(`release argon2id: init ${initMs} ms, unlock ${unlockMs} ms`);
  });

  it('a passphrase shorter than 8 bytes is refused; 8 is enough', () => {
    const cli = TEST_CLI;
    fails(ws.run(['init', '--passphrase', '--insecure-test-kdf'], { cli, env: { VAULT_PASSPHRASE: '1234567' } }), 2, /shorter than 8/);
    expect(fs.existsSync(ws.vaultDir)).toBe(false);
    ok(ws.run(['init', '--passphrase', '--insecure-test-kdf'], { cli, env: { VAULT_PASSPHRASE: '12345678' } }), 'init with 8 bytes');
    fails(ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], { cli, env: { VAULT_PASSPHRASE: '12345678', VAULT_NEW_PASSPHRASE: 'short' } }), 2, /shorter than 8/);
    expect(slotFiles(ws)).toHaveLength(1);
  });

  it('init --passphrase without VAULT_PASSPHRASE and without a terminal asks for the variable', () => {
    fails(ws.run(['init', '--passphrase'], { cli: TEST_CLI }), 2, /VAULT_PASSPHRASE/);
    expect(fs.existsSync(path.join(ws.vaultDir, 'vault.json'))).toBe(false);
  });
});

describe('token slots and key management', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
  });
  afterEach(() => ws.cleanup());

  it('init --token prints the token alone on stdout, people text on stderr', () => {
    const result = ok(ws.run(['init', '--token']), 'init --token');
    expect(result.stdout).toMatch(TOKEN_LINE);
    const token = result.stdout.trim();
    expect(result.stderr).toMatch(/created vault/);
    expect(result.stderr).toMatch(/fingerprint svfp1_[0-9a-f]{40}/);
    expect(result.stderr).not.toContain(token);
    expect(result.stderr).not.toContain('svt1_');
  });

  it('VAULT_KEY=$(vault init --token) works in a shell', () => {
    fs.writeFileSync(path.join(ws.root, 'value.txt'), 'from-the-shell');
    const shell = spawnSync(
      'bash',
      ['-c', 'set -e; VAULT_KEY=$(node "$CLI" init --token); export VAULT_KEY; node "$CLI" put SHELL_SECRET --from-file value.txt; node "$CLI" verify; printf "%s" "$VAULT_KEY" > token.txt'],
      { cwd: ws.root, env: { ...ws.env, CLI: RELEASE_CLI, PATH: `${path.dirname(process.execPath)}:${ws.env.PATH}` }, encoding: 'utf8', timeout: 60_000 },
    );
    expect(shell.status, shell.stderr).toBe(0);
    expect(shell.stdout).toBe('');
    expect(shell.stderr).toMatch(/created vault[\s\S]*stored SHELL_SECRET[\s\S]*ok: 1 secret/);
    const token = fs.readFileSync(path.join(ws.root, 'token.txt'), 'utf8');
    expect(`${token}\n`).toMatch(TOKEN_LINE);
  });

  it('key add --token prints the new token alone on stdout, and that token unlocks', async () => {
    const first = initWithToken(ws);
    put(ws, 'K', 'k-value');
    const added = ok(ws.run(['key', 'add', '--token']), 'key add --token');
    expect(added.stdout).toMatch(TOKEN_LINE);
    const second = added.stdout.trim();
    expect(second).not.toBe(first);
    expect(added.stderr).toMatch(/^added token slot [0-9a-f]{12}\n/);
    expect(added.stderr).not.toContain(second);
    ok(ws.run(['verify'], { env: { VAULT_KEY: second } }), 'verify with the new token');
    expect((await openAllSecrets(ws.vaultDir, second)).get('K')?.toString()).toBe('k-value');

    // removing the first token's slot leaves that token useless
    const firstSlot = slotFiles(ws).find((s) => s.id !== added.stderr.match(/slot ([0-9a-f]{12})/)![1])!;
    ok(ws.run(['key', 'rm', firstSlot.id], { env: { VAULT_KEY: second } }), 'key rm of the first token slot');
    fails(ws.run(['verify'], { env: { VAULT_KEY: first } }), 7, /VAULT_KEY opens none/);
    ok(ws.run(['verify'], { env: { VAULT_KEY: second } }), 'verify with the remaining token');
  });

  it('key add --passphrase takes VAULT_NEW_PASSPHRASE, not VAULT_PASSPHRASE', () => {
    const cli = TEST_CLI;
    initWithToken(ws);
    fails(ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], { cli, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 2, /VAULT_NEW_PASSPHRASE/);
    expect(slotFiles(ws)).toHaveLength(1);
    const added = ok(ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], { cli, env: { VAULT_NEW_PASSPHRASE: PASSPHRASE } }), 'key add --passphrase');
    expect(added.stdout).toBe('');
    expect(added.stderr).toMatch(/^added passphrase slot [0-9a-f]{12}\n$/);
    const withoutToken = { ...ws.env };
    delete withoutToken.VAULT_KEY;
    ws.env = withoutToken;
    ok(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: PASSPHRASE } }), 'verify with the new passphrase');
    fails(ws.run(['verify'], { cli, env: { VAULT_PASSPHRASE: 'another passphrase' } }), 7);
  });

  it('key add without a kind, or with two, is a usage error', () => {
    initWithToken(ws);
    fails(ws.run(['key', 'add']), 2, /--token, --passphrase or --keychain/);
    fails(ws.run(['key', 'add', '--token', '--keychain']), 2, /choose one of/);
    expect(slotFiles(ws)).toHaveLength(1);
  });

  it('key rm of the last slot is refused (11); an unknown id is 3; a malformed id is 2', () => {
    const token = initWithToken(ws);
    const [only] = slotFiles(ws);
    fails(ws.run(['key', 'rm', only!.id]), 11, /last key slot/);
    expect(slotFiles(ws)).toHaveLength(1);
    ok(ws.run(['verify'], { env: { VAULT_KEY: token } }), 'still unlocks');
    fails(ws.run(['key', 'rm', 'abcdefabcdef']), 3, /no key slot abcdefabcdef/);
    fails(ws.run(['key', 'rm', 'not-a-slot']), 2, /not a slot id/);
    expect(slotFiles(ws)).toHaveLength(1);
  });

  it('key list --json: id, kind, created and whether this version knows the kind, of every slot, nothing else', () => {
    const cli = TEST_CLI;
    initWithToken(ws);
    ok(ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], { cli, env: { VAULT_NEW_PASSPHRASE: PASSPHRASE } }), 'add passphrase');
    ok(ws.run(['key', 'add', '--token']), 'add token');
    // listing needs no unlock
    const withoutToken = { ...ws.env };
    delete withoutToken.VAULT_KEY;
    ws.env = withoutToken;
    const listed = ok(ws.run(['key', 'list', '--json']), 'key list --json');
    expect(listed.stderr).toBe('');
    const slots = JSON.parse(listed.stdout) as Record<string, unknown>[];
    expect(Array.isArray(slots)).toBe(true);
    expect(slots).toHaveLength(3);
    for (const slot of slots) {
      expect(Object.keys(slot)).toEqual(['id', 'kind', 'created', 'known']);
      expect(slot.known).toBe(true);
      expect(slot.id).toMatch(SLOT_ID);
      expect(['token', 'passphrase']).toContain(slot.kind);
      expect(new Date(slot.created as string).toISOString()).toBe(slot.created);
    }
    expect(slots.map((s) => s.kind).sort()).toEqual(['passphrase', 'token', 'token']);
    expect(slots.map((s) => s.id).sort()).toEqual(slotFiles(ws).map((s) => s.id).sort());
    expect(listed.stdout).not.toMatch(/wrapped_key|nonce|salt|svt1_/);
  });
});
