/**
 * Property tests of every reader of a vault file (fast-check): random bytes, truncations at every
 * offset, wrong JSON types in every field, sizes over the caps, a symlink and a FIFO, for each file
 * kind (vault.json, a slot, a secret, policy.json, an entry of audit/, the user's run log and
 * known_vaults.json). Every case must end with success or one VaultError: one line, a kind of
 * errors.ts (so a documented exit code), nothing else thrown (which the CLI would print as
 * "internal error"), no hang (a FIFO is opened non-blocking), and no change on disk when it refuses.
 * The readers run in-process, as the commands call them, for speed; a sample per kind also runs
 * through the real CLI.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wipe } from '../src/vault/crypto.js';
import { EXIT_CODES, VaultError } from '../src/vault/errors.js';
import { readRunLog } from '../src/vault/run-log.js';
import { SIZE_CAPS } from '../src/vault/vault-dir.js';
import { Vault } from '../src/vault/vault.js';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';
import { snapshot } from './helpers/disk.js';

let ws: Workspace;
let stateFile: string;
const KINDS = [
  'vault.json', 'a slot', 'a secret', 'policy.json', 'an audit entry', 'the run log', 'known_vaults.json',
] as const;
/** Each file kind: where it is, and the size cap its reader applies. */
let kinds: { kind: (typeof KINDS)[number]; file: string; cap: number }[];

/** Reads the vault the way `list`, `key list`, `audit --verify`, `policy` and `exec` do, all in one. */
async function readEverything(): Promise<void> {
  const vault = Vault.open(ws.vaultDir);
  try {
    vault.list();
    vault.slots();
    const audit = vault.checkAudit(() => undefined);
    if (audit.problems[0] !== undefined) throw audit.problems[0];
    // as `audit --verify` reports a broken run log
    const runs = readRunLog(vault.file.vault_id, () => undefined);
    if (runs.broken !== undefined) throw new VaultError('tampered', `line ${runs.broken.line}: ${runs.broken.reason}`);
    const unlocked = await vault.unlock();
    try {
      unlocked.policy();
      unlocked.openSecrets(vault.names()).forEach((value) => wipe(value));
    } finally {
      unlocked.close();
    }
  } finally {
    vault.close();
  }
}

type Outcome = { ok: true } | { ok: false; kind: string; message: string };

/** The outcome of reading everything with `file` holding `bytes` (or made by `make`); the file is put back after. */
async function withFile(file: string, make: (file: string) => void): Promise<Outcome> {
  const original = fs.readFileSync(file);
  const mode = fs.statSync(file).mode;
  fs.rmSync(file);
  make(file);
  const before = snapshot(ws.root);
  let outcome: Outcome;
  try {
    await readEverything();
    outcome = { ok: true };
  } catch (error) {
    if (!(error instanceof VaultError)) throw new Error(`not a VaultError: ${String(error)}`, { cause: error });
    outcome = { ok: false, kind: error.kind, message: error.message };
    expect(snapshot(ws.root), `a refusal changed files on disk: ${error.message}`).toEqual(before);
  } finally {
    fs.rmSync(file, { force: true });
    fs.writeFileSync(file, original, { mode });
  }
  if (!outcome.ok) {
    expect(Object.keys(EXIT_CODES)).toContain(outcome.kind);
    expect(outcome.message).not.toMatch(/\n/);
    expect(outcome.message.length).toBeLessThan(1000);
  }
  return outcome;
}

const writeBytes = (bytes: Uint8Array) => (file: string) => fs.writeFileSync(file, bytes, { mode: 0o600 });

beforeAll(() => {
  ws = makeWorkspace();
  const token = initWithToken(ws);
  put(ws, 'ALPHA', 'alpha-value-0123456789');
  put(ws, 'BRAVO', 'bravo\nvalue with a newline');
  const script = path.join(ws.project, 'tool.sh');
  fs.writeFileSync(script, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  expect(ws.run(['allow', 'ALPHA', '--to', script]).status).toBe(0);
  expect(ws.run(['exec', '--', script]).status).toBe(0);
  expect(ws.run(['audit', '--verify']).status).toBe(0);
  process.env.VAULT_KEY = token;
  process.env.XDG_STATE_HOME = ws.env.XDG_STATE_HOME;
  stateFile = path.join(ws.env.XDG_STATE_HOME!, 'sealvault', 'known_vaults.json');
  const slot = fs.readdirSync(path.join(ws.vaultDir, 'slots'))[0]!;
  // the init entry: the root of the DAG, which every later entry descends from
  const entry = fs.readdirSync(path.join(ws.vaultDir, 'audit')).find((name) =>
    fs.readFileSync(path.join(ws.vaultDir, 'audit', name), 'utf8').includes('"event":"init"'))!;
  const vaultJson = fs.readFileSync(path.join(ws.vaultDir, 'vault.json'), 'utf8');
  const { vault_id: vaultId } = JSON.parse(vaultJson) as { vault_id: string };
  const runs = path.join(ws.env.XDG_STATE_HOME!, 'sealvault', 'runs');
  const runLog = path.join(runs, Buffer.from(vaultId, 'base64').toString('base64url'), 'audit.log');
  kinds = [
    { kind: 'vault.json', file: path.join(ws.vaultDir, 'vault.json'), cap: SIZE_CAPS.vault },
    { kind: 'a slot', file: path.join(ws.vaultDir, 'slots', slot), cap: SIZE_CAPS.slot },
    { kind: 'a secret', file: path.join(ws.vaultDir, 'secrets', 'ALPHA.json'), cap: SIZE_CAPS.secret },
    { kind: 'policy.json', file: path.join(ws.vaultDir, 'policy.json'), cap: SIZE_CAPS.policy },
    { kind: 'an audit entry', file: path.join(ws.vaultDir, 'audit', entry), cap: SIZE_CAPS.auditEntry },
    // the run log is JSON lines (the format of audit.log): its cap is per line
    { kind: 'the run log', file: runLog, cap: SIZE_CAPS.auditLine },
    { kind: 'known_vaults.json', file: stateFile, cap: SIZE_CAPS.state },
  ];
});
afterAll(() => {
  delete process.env.VAULT_KEY;
  ws.cleanup();
});

describe('every reader of a vault file', () => {
  it('the pristine vault reads whole', async () => {
    await readEverything();
  });

  for (const name of KINDS) {
    describe(name, () => {
      const kind = () => kinds.find((k) => k.kind === name)!;

      it('random bytes: success or one VaultError, never anything else', async () => {
        await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
          await withFile(kind().file, writeBytes(bytes));
        }), { numRuns: 200 });
      }, 120_000);

      it('truncated at every offset', async () => {
        const original = fs.readFileSync(kind().file);
        // every offset of the small files; for the longer ones, every offset of the first and last 512 bytes
        const offsets = original.length <= 2048
          ? Array.from({ length: original.length }, (_, i) => i)
          : [...Array.from({ length: 512 }, (_, i) => i), ...Array.from({ length: 512 }, (_, i) => original.length - 512 + i)];
        for (const offset of offsets) await withFile(kind().file, writeBytes(original.subarray(0, offset)));
      }, 120_000);

      it('any JSON in place of the file, and of each of its fields', async () => {
        const original = fs.readFileSync(kind().file, 'utf8');
        // the run log is JSON lines: its last entry is the one varied; every other file is one JSON object
        const lines = name === 'the run log' ? original.split('\n').filter((l) => l !== '') : [original];
        const last = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
        const fields = Object.keys(last);
        await fc.assert(fc.asyncProperty(fc.jsonValue(), fc.constantFrom(...fields), fc.boolean(), async (value, field, whole) => {
          const replaced = whole ? value : { ...last, [field]: value };
          const text = [...lines.slice(0, -1), JSON.stringify(replaced)].join('\n');
          await withFile(kind().file, writeBytes(Buffer.from(`${text}\n`)));
        }), { numRuns: 300 });
      }, 120_000);

      it.runIf(name === 'a secret')('a sealed field of random bytes, canonical base64 of any length', async () => {
        const original = JSON.parse(fs.readFileSync(kind().file, 'utf8')) as Record<string, unknown>;
        await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
          const sealed = Buffer.from(bytes).toString('base64');
          const outcome = await withFile(kind().file, writeBytes(Buffer.from(`${JSON.stringify({ ...original, sealed })}\n`)));
          // a box that does not open under this vault's key and this name: never read as a value
          expect(outcome).toMatchObject({ ok: false });
        }), { numRuns: 100 });
      }, 120_000);

      it('over its size cap, and far over: refused as unsafe (13) from its size alone', async () => {
        for (const size of [kind().cap + 1, 2 ** 33]) {
          const outcome = await withFile(kind().file, (file) => {
            fs.writeFileSync(file, '');
            fs.truncateSync(file, size);
          });
          // the run log's cap is per line: a log of zeros has a first line over it
          const expected = kind().kind === 'the run log' ? 'tampered' : 'unsafeFile';
          expect(outcome, `${size} bytes`).toMatchObject({ ok: false, kind: expected });
        }
      }, 120_000);

      it('a symlink or a FIFO: refused as unsafe (13), at once', async () => {
        const elsewhere = path.join(ws.root, 'elsewhere');
        fs.writeFileSync(elsewhere, fs.readFileSync(kind().file));
        const link = await withFile(kind().file, (file) => fs.symlinkSync(elsewhere, file));
        expect(link).toMatchObject({ ok: false, kind: 'unsafeFile' });
        const fifo = await withFile(kind().file, (file) => expect(spawnSync('mkfifo', [file]).status).toBe(0));
        expect(fifo).toMatchObject({ ok: false, kind: 'unsafeFile' });
        // a hard link: the file's bytes are right, but a write through it would reach `elsewhere`
        if (kind().kind !== 'known_vaults.json') {
          const hard = await withFile(kind().file, (file) => fs.linkSync(elsewhere, file));
          expect(hard).toMatchObject({ ok: false, kind: 'unsafeFile' });
        }
        fs.rmSync(elsewhere);
      }, 120_000);
    });
  }
});

describe('through the real CLI, a sample per file kind', () => {
  it('random bytes: one line `vault: …`, a documented exit code, no stack trace, within a bound', async () => {
    const documented = new Set([...Object.values(EXIT_CODES), 0]);
    for (const { file } of kinds) {
      const original = fs.readFileSync(file);
      // random bytes, and the shapes that broke readers elsewhere: deep nesting, __proto__, huge
      // numbers, a byte order mark, a long string
      const hostile = fc.constantFrom(
        '['.repeat(100_000) + ']'.repeat(100_000),
        '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000),
        '{"__proto__":{"format":"sealvault-vault"},"format":"x"}',
        '{"format":"sealvault-secret","version":1e400}',
        '\ufeff{"format":"sealvault-policy","version":1}',
        JSON.stringify({ format: 'sealvault-secret', version: 1, sealed: 'A'.repeat(400_000) }),
      ).map((text) => new Uint8Array(Buffer.from(text)));
      await fc.assert(fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 512 }), hostile), async (bytes) => {
        fs.writeFileSync(file, bytes);
        try {
          for (const args of [['list'], ['policy'], ['audit', '--verify']]) {
            const result = ws.run(args, { timeout: 20_000 });
            expect(result.signal).toBeNull();
            expect(documented).toContain(result.status);
            if (result.status !== 0) expect(result.stderr).toMatch(/^(vault: warning: [^\n]*\n)*vault: [^\n]+\n$/);
            expect(result.stderr).not.toMatch(/^\s+at /m);
          }
        } finally {
          fs.writeFileSync(file, original);
        }
      }), { numRuns: 6 });
    }
  }, 300_000);
});
