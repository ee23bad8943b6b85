/**
 * Rekey (docs/FORMAT.md, "Rekey"): removing a person or a slot replaces the key pair, so that their
 * slot, and any copy of it from version control, opens nothing put afterwards; a rekey killed at any
 * point leaves a vault that opens with the old key or the new, never a mix.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type RunResult, TEST_CLI, type Workspace } from './helpers/cli.js';
import { openAllSecrets } from './helpers/open-vault.js';
import { ptyRun } from './helpers/pty.js';
import { sealSecretFiles } from './helpers/seal.js';

function ok(result: RunResult, what: string): RunResult {
  expect(result.status, `${what}: ${result.stderr}`).toBe(0);
  return result;
}

function fails(result: RunResult, code: number, message: RegExp): void {
  expect(result.status, result.stderr).toBe(code);
  expect(result.stderr).toMatch(message);
}

interface Slot {
  id: string;
  kind: string;
  label?: string;
  mac?: string;
}

const slotsDir = (ws: Workspace) => path.join(ws.vaultDir, 'slots');
const slotFiles = (ws: Workspace) => fs.readdirSync(slotsDir(ws)).sort();
const readSlot = (ws: Workspace, file: string) => JSON.parse(fs.readFileSync(path.join(slotsDir(ws), file), 'utf8')) as Slot;
const publicKey = (ws: Workspace) => (JSON.parse(fs.readFileSync(path.join(ws.vaultDir, 'vault.json'), 'utf8')) as { public_key: string }).public_key;

describe('rekey', () => {
  let ws: Workspace;
  let token: string;
  let show: string;

  beforeEach(() => {
    ws = makeWorkspace();
    token = initWithToken(ws);
    put(ws, 'ALPHA', 'alpha-1');
    put(ws, 'BRAVO', 'bravo-1');
    show = path.join(ws.project, 'show.sh');
    fs.writeFileSync(show, '#!/bin/sh\nprintf "%s %s\\n" "$ALPHA" "$BRAVO"\n', { mode: 0o755 });
    ok(ws.run(['allow', 'ALPHA', 'BRAVO', '--to', show]), 'allow');
  });
  afterEach(() => ws.cleanup());

  function identity(name: string): { file: string; recipient: string } {
    const file = path.join(ws.root, `${name}.txt`);
    const made = ok(ws.run(['identity', 'new', file]), 'identity new');
    return { file, recipient: made.stdout.trim() };
  }

  const asIdentity = (file: string) => ({ env: { VAULT_KEY: undefined, VAULT_IDENTITY_FILE: file } });

  it('recipient rm rekeys: the removed slot, restored from history, opens nothing put after; the others still open', () => {
    const alice = identity('alice');
    const bob = identity('bob');
    ok(ws.run(['recipient', 'add', 'alice', alice.recipient]), 'add alice');
    ok(ws.run(['recipient', 'add', 'bob', bob.recipient]), 'add bob');
    const bobSlot = slotFiles(ws).find((f) => readSlot(ws, f).label === 'bob')!;
    const history = fs.readFileSync(path.join(slotsDir(ws), bobSlot));
    const before = publicKey(ws);

    const removed = ok(ws.run(['recipient', 'rm', 'bob']), 'recipient rm');
    expect(removed.stderr).toMatch(/removed recipient slot .* \(bob\)/);
    expect(removed.stderr).toMatch(/rekeyed: a new key pair \(fingerprint svfp1_[0-9a-f]{40}\), 2 secret\(s\) resealed/);
    expect(publicKey(ws)).not.toBe(before);
    expect(slotFiles(ws)).not.toContain(bobSlot);
    put(ws, 'CHARLIE', 'after-bob-left');

    // alice and the token still open; every secret opens under the new key
    expect(ok(ws.run(['exec', '--no-mask', '--', show], asIdentity(alice.file)), 'alice').stdout).toBe('alpha-1 bravo-1\n');
    expect(ok(ws.run(['exec', '--no-mask', '--', show]), 'token').stdout).toBe('alpha-1 bravo-1\n');
    ok(ws.run(['verify']), 'verify');

    // bob restores his slot file from git history: it holds the old key, which is not this vault's
    fs.writeFileSync(path.join(slotsDir(ws), bobSlot), history);
    fails(ws.run(['verify'], asIdentity(bob.file)), 9, /not this vault's/);
    // and the old key opens none of the values sealed since the rekey (checked with libsodium alone)
    const list = ok(ws.run(['list', '--stale']), 'list --stale');
    expect(list.stdout).toMatch(/ALPHA/);
    expect(list.stdout).toMatch(/BRAVO/);
    expect(list.stdout).not.toMatch(/CHARLIE/);
    expect(list.stderr).toMatch(/put before the last slot removal/);
  });

  it('a slot put back after key rm --no-rekey is not carried by a later rekey (the policy remembers the removal)', () => {
    const bob = identity('bob');
    ok(ws.run(['recipient', 'add', 'bob', bob.recipient]), 'add bob');
    const bobSlot = slotFiles(ws).find((f) => readSlot(ws, f).label === 'bob')!;
    const copy = fs.readFileSync(path.join(slotsDir(ws), bobSlot));
    const removed = ok(ws.run(['recipient', 'rm', 'bob', '--no-rekey']), 'rm --no-rekey');
    expect(removed.stderr).toMatch(/not rekeyed.*still opens every secret/);
    // without a rekey the copy still opens: that is what the warning says
    fs.writeFileSync(path.join(slotsDir(ws), bobSlot), copy);
    ok(ws.run(['exec', '--no-mask', '--', show], asIdentity(bob.file)), 'bob before rekey');

    const rekey = ok(ws.run(['rekey']), 'rekey');
    expect(rekey.stderr).toMatch(new RegExp(`removed recipient slot ${bobSlot.slice(0, 12)}`));
    expect(slotFiles(ws)).not.toContain(bobSlot);
    fs.writeFileSync(path.join(slotsDir(ws), bobSlot), copy);
    fails(ws.run(['verify'], asIdentity(bob.file)), 9, /not this vault's/);
  });

  it('a slot a writer planted (no MAC, or a changed one) is not carried: the rekey refuses, or drops it when asked', () => {
    const mallory = identity('mallory');
    const alice = identity('alice');
    ok(ws.run(['recipient', 'add', 'alice', alice.recipient]), 'add alice');
    // the writer copies alice's slot and points it at their own recipient (a label and recipient are not secret)
    const aliceFile = slotFiles(ws).find((f) => readSlot(ws, f).label === 'alice')!;
    const planted = JSON.parse(fs.readFileSync(path.join(slotsDir(ws), aliceFile), 'utf8')) as Slot & { recipient: { age_recipient: string } };
    planted.id = 'aaaaaaaaaaaa';
    planted.label = 'ci';
    planted.recipient.age_recipient = mallory.recipient;
    fs.writeFileSync(path.join(slotsDir(ws), 'aaaaaaaaaaaa.json'), `${JSON.stringify(planted)}\n`);
    const noMac = { ...planted, id: 'bbbbbbbbbbbb', label: 'ops' };
    delete noMac.mac;
    fs.writeFileSync(path.join(slotsDir(ws), 'bbbbbbbbbbbb.json'), `${JSON.stringify(noMac)}\n`);
    const files = slotFiles(ws);
    const key = publicKey(ws);

    const refused = ws.run(['rekey']);
    fails(refused, 11, /cannot be wrapped for 2 slot\(s\): aaaaaaaaaaaa .*no valid slot MAC.*bbbbbbbbbbbb.*--drop-unreachable/);
    expect(slotFiles(ws)).toEqual(files);
    expect(publicKey(ws)).toBe(key);

    const dropped = ok(ws.run(['rekey', '--drop-unreachable']), 'rekey --drop-unreachable');
    expect(dropped.stderr).toMatch(/dropped recipient slot aaaaaaaaaaaa \(ci\)/);
    expect(slotFiles(ws)).not.toContain('aaaaaaaaaaaa.json');
    fails(ws.run(['verify'], asIdentity(mallory.file)), 7, /opens none/);
    expect(ok(ws.run(['exec', '--no-mask', '--', show], asIdentity(alice.file)), 'alice').stdout).toBe('alpha-1 bravo-1\n');
  });

  it('a token slot gets a new token (the old one opens nothing); another passphrase slot cannot be carried', () => {
    const added = ok(ws.run(['key', 'add', '--token', '--label', 'ci']), 'key add');
    const ciToken = added.stdout.trim();
    ok(ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], { cli: TEST_CLI, env: { VAULT_NEW_PASSPHRASE: 'correct horse battery' } }), 'passphrase');
    fails(ws.run(['rekey']), 11, /passphrase slot|only its passphrase/);

    const rekey = ok(ws.run(['rekey', '--drop-unreachable']), 'rekey');
    const lines = rekey.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const [id, newToken] = lines[0]!.split(' ');
    expect(readSlot(ws, `${id}.json`).label).toBe('ci');
    expect(newToken).toMatch(/^svt1_[A-Za-z0-9_-]{43}$/);
    expect(rekey.stderr).toMatch(/shown only once/);
    fails(ws.run(['verify'], { env: { VAULT_KEY: ciToken } }), 7, /opens none/);
    expect(ok(ws.run(['exec', '--no-mask', '--', show], { env: { VAULT_KEY: newToken } }), 'new token').stdout).toBe('alpha-1 bravo-1\n');
    // the token that unlocked keeps working
    expect(ok(ws.run(['exec', '--no-mask', '--', show]), 'own token').stdout).toBe('alpha-1 bravo-1\n');
  });

  it('the last slot stays, and the slot that unlocked is not removed by its own rekey', () => {
    const own = slotFiles(ws)[0]!.replace('.json', '');
    fails(ws.run(['key', 'rm', own]), 11, /last key slot/);
    ok(ws.run(['key', 'add', '--token']), 'key add');
    fails(ws.run(['key', 'rm', own]), 11, /the one that unlocked the vault; unlock with another slot/);
    expect(slotFiles(ws)).toContain(`${own}.json`);
    expect(slotFiles(ws)).toHaveLength(2);
  });

  it('a checkout from before the rekey (an older branch) is named as one, not taken as a new key', () => {
    const copy = path.join(ws.root, 'before');
    fs.cpSync(ws.vaultDir, copy, { recursive: true });
    ok(ws.run(['rekey']), 'rekey');
    fs.rmSync(ws.vaultDir, { recursive: true });
    fs.cpSync(copy, ws.vaultDir, { recursive: true });
    fails(ws.run(['list']), 9, /still has the key pair its rekey retired/);
  });

  it('rekeys a vault of 10,000 secrets, with a progress bar on a terminal', { timeout: 600_000 }, async () => {
    const values = new Map(Array.from({ length: 10_000 }, (_, i) => [`MANY_${i}`, `value of ${i}`] as const));
    sealSecretFiles(ws.vaultDir, values);
    const result = ptyRun(ws, ws.command(['rekey']), [], {}, 480);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toMatch(/resealing .* 10002\/10002 secrets/);
    expect(result.output).toMatch(/10002 secret\(s\) resealed/);
    const opened = await openAllSecrets(ws.vaultDir, token);
    expect(opened.size).toBe(10_002);
    for (const [name, value] of values) if (opened.get(name)?.toString() !== value) expect.fail(`${name} after the rekey`);
  });
});

describe('rekey killed', () => {
  let ws: Workspace;
  let token: string;
  let alice: string;
  const values = new Map<string, string>();
  afterEach(() => ws.cleanup());

  /** A vault of 120 secrets, a token slot and alice's recipient slot. */
  function setUp(): void {
    ws = makeWorkspace();
    token = initWithToken(ws);
    for (let i = 0; i < 120; i += 1) values.set(`SECRET_${i}`, `value-${i}-${'x'.repeat(i)}`);
    for (const [name, value] of values) put(ws, name, value);
    alice = path.join(ws.root, 'alice.txt');
    const recipient = ok(ws.run(['identity', 'new', alice]), 'identity').stdout.trim();
    ok(ws.run(['recipient', 'add', 'alice', recipient]), 'add alice');
  }

  /** The vault opens, every value intact under whichever key it has, for the token and for alice. */
  async function intact(what: string): Promise<void> {
    ok(ws.run(['verify']), what);
    const opened = await openAllSecrets(ws.vaultDir, token);
    for (const [name, value] of values) expect(opened.get(name)?.toString(), `${what}: ${name}`).toBe(value);
    ok(ws.run(['verify'], { env: { VAULT_KEY: undefined, VAULT_IDENTITY_FILE: alice } }), `${what}: alice`);
    expect(fs.existsSync(path.join(ws.vaultDir, '.rekey')), what).toBe(false);
    ok(ws.run(['audit', '--verify']), `${what}: audit`);
  }

  it('at each step of its journal: before the commit the old key, after it the new one', { timeout: 300_000 }, async () => {
    setUp();
    const steps = [
      ['staged-half', 'old'], ['staged', 'old'], ['committed', 'new'], ['moved-secrets', 'new'], ['moved', 'new'], ['recorded', 'new'],
    ] as const;
    for (const [step, expected] of steps) {
      const before = publicKey(ws);
      const killed = ws.run(['rekey'], { cli: TEST_CLI, env: { SEALVAULT_TEST_REKEY_CRASH: step } });
      expect(killed.signal, `${step}: ${killed.stderr}`).toBe('SIGKILL');
      await intact(`killed at ${step}`);
      expect(publicKey(ws) === before ? 'old' : 'new', step).toBe(expected);
      if (expected === 'new') {
        const audit = ok(ws.run(['audit', '--json']), 'audit');
        expect(audit.stdout.match(/"event":\s*"rekey"/g)?.length ?? 0, `${step}: one rekey entry per rekey`).toBeGreaterThan(0);
      }
    }
    put(ws, 'LAST', 'last'); // the next write removes what a rekey killed before its commit left
    expect(fs.existsSync(path.join(ws.vaultDir, '.rekey.new'))).toBe(false);
  });

  it('at random moments: the old key or the new, every value intact, never a mix', { timeout: 300_000 }, async () => {
    setUp();
    const timed = Date.now();
    ok(ws.run(['rekey']), 'timed rekey');
    const life = Date.now() - timed;
    const keys = new Set([publicKey(ws)]);
    const outcomes = { killed: 0, exited: 0, old: 0, new: 0 };
    for (let round = 0; round < 16; round += 1) {
      const before = publicKey(ws);
      const child = ws.start(['rekey']);
      // even rounds anywhere in its life, odd rounds in its second half, where it holds the lock
      const delay = round % 2 === 0 ? Math.random() * 1.2 * life : (0.5 + Math.random() * 0.7) * life;
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      clearTimeout(timer);
      if (code === null) outcomes.killed += 1;
      else outcomes.exited += 1;
      const what = `round ${round}, killed after ${delay.toFixed(0)} ms (exit ${code})`;
      await intact(what);
      const after = publicKey(ws);
      if (after === before) outcomes.old += 1;
      else outcomes.new += 1;
      expect(after !== before && keys.has(after), `${what}: a key seen before came back`).toBe(false);
      keys.add(after);
    }
    console.log(`rekey sigkill: one rekey lives ${life} ms; ${JSON.stringify(outcomes)}`);
    expect(outcomes.killed).toBeGreaterThan(0);
  });
});
