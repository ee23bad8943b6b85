/**
 * The golden vault of test/fixtures/golden-v1 as test vectors of docs/FORMAT.md. The built CLI opens a copy of it
 * (an earlier sealvault wrote it); then every construction of FORMAT.md is checked again here with libsodium and
 * SHA-256 alone, following the document's byte descriptions. Nothing of src/ is imported: what is tested is that
 * the document is enough to read a vault.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sodium from 'libsodium-wrappers-sumo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeWorkspace, ROOT, type Workspace } from './helpers/cli.js';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'golden-v1');
const VAULT = path.join(FIXTURE, 'vault');

interface Vectors {
  vault_id: string;
  public_key_hex: string;
  fingerprint: string;
  token: string;
  passphrase: string;
  slots: Record<'token' | 'passphrase', { id: string; kek_hex: string; aad_hex: string }>;
  secret_key_hex: string;
  secrets: Record<string, { value: string; size: number; sha256: string }>;
  policy: {
    revision: number;
    grants: number;
    policy_key_hex: string;
    mac_input_file: string;
    mac_input_sha256: string;
  };
  script: { file: string; sha256: string; granted_at: string };
  audit: { entries: number; events: string[]; line_sha256: string[] };
}

const vectors = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'VECTORS.json'), 'utf8')) as Vectors;
const NAMES = Object.keys(vectors.secrets).sort();

type Json = Record<string, unknown>;

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const utf8 = (text: string) => new Uint8Array(Buffer.from(text, 'utf8'));
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const ZERO = new Uint8Array([0]);
const fixtureText = (...parts: string[]) => fs.readFileSync(path.join(VAULT, ...parts), 'utf8');

/** FORMAT.md, Conventions: base64 as readers check it, and as writers write it (canonical). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** FORMAT.md, Conventions: time as writers write it. */
const WRITER_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const HEX64 = /^[0-9a-f]{64}$/;

function base64(text: unknown, length?: number): Uint8Array {
  expect(text).toMatch(BASE64);
  const bytes = Buffer.from(text as string, 'base64');
  expect(bytes.toString('base64'), 'canonical base64').toBe(text);
  if (length !== undefined) expect(bytes.length).toBe(length);
  return new Uint8Array(bytes);
}

/** One JSON file as FORMAT.md has writers write it: compact, members in order, one trailing newline. */
function jsonFile(text: string, members: string[]): Json {
  const data = JSON.parse(text) as Json;
  expect(Object.keys(data)).toEqual(members);
  expect(text).toBe(`${JSON.stringify(data)}\n`);
  return data;
}

/** An object of canonical JSON, its members in the order given (FORMAT.md, "Canonical JSON"). */
class Members {
  constructor(readonly list: [string, unknown][]) {}
}

const SHORT_ESCAPES: Record<number, string> = {
  0x22: '\\"', 0x5c: '\\\\', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t',
};

/** A string in canonical JSON, UTF-16 code unit by code unit, as FORMAT.md spells it out. */
function canonicalString(text: string): string {
  let out = '"';
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    const next = i + 1 < text.length ? text.charCodeAt(i + 1) : -1;
    if (SHORT_ESCAPES[unit] !== undefined) {
      out += SHORT_ESCAPES[unit];
    } else if (unit < 0x20) {
      out += `\\u${unit.toString(16).padStart(4, '0')}`;
    } else if (unit >= 0xd800 && unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      out += text.slice(i, i + 2);
      i += 1;
    } else if (unit >= 0xd800 && unit <= 0xdfff) {
      out += `\\u${unit.toString(16)}`;
    } else {
      out += text[i];
    }
  }
  return `${out}"`;
}

function canonical(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'number') {
    expect(Number.isSafeInteger(value) && value >= 0).toBe(true);
    return value.toString(10);
  }
  if (typeof value === 'string') return canonicalString(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value instanceof Members) {
    return `{${value.list.map(([key, member]) => `${canonicalString(key)}:${canonical(member)}`).join(',')}}`;
  }
  throw new Error(`no canonical JSON for ${typeof value}`);
}

const GRANT_MEMBERS = ['secret', 'sha256', 'path', 'min_tier', 'args', 'created'];
const GRANT_OPTIONAL = ['ro', 'rw', 'interpreter', 'env', 'pass_env'];

/** A grant as the MAC covers it (FORMAT.md, "The MAC"). */
function canonicalGrant(grant: Json): Members {
  for (const key of Object.keys(grant)) expect([...GRANT_MEMBERS, ...GRANT_OPTIONAL]).toContain(key);
  const list: [string, unknown][] = GRANT_MEMBERS.map((key) => [key, grant[key]]);
  for (const key of ['ro', 'rw']) if (grant[key] !== undefined) list.push([key, grant[key]]);
  const interpreter = grant.interpreter as Json | undefined;
  if (interpreter !== undefined) {
    const inner: [string, unknown][] = [['path', interpreter.path], ['sha256', interpreter.sha256]];
    if (interpreter.arg !== undefined) inner.push(['arg', interpreter.arg]);
    list.push(['interpreter', new Members(inner)]);
  }
  const env = grant.env as Record<string, string> | undefined;
  if (env !== undefined) list.push(['env', new Members(Object.keys(env).sort().map((name) => [name, env[name]]))]);
  if (grant.pass_env !== undefined) list.push(['pass_env', grant.pass_env]);
  return new Members(list);
}

/** Audit `details` members per event, in the order of FORMAT.md, "Events" (as the fixture's entries have them). */
const DETAILS: Record<string, string[]> = {
  init: ['vault_id', 'fingerprint', 'slot', 'kind'],
  put: ['name'],
  replace: ['name'],
  rm: ['name'],
  'key-add': ['slot', 'kind'],
  allow: ['secrets', 'path', 'sha256', 'min_tier', 'args', 'any_args', 'interpreter'],
  release: ['run', 'path', 'sha256', 'interpreter', 'tier', 'secrets', 'files'],
  exit: ['run', 'exit'],
};

describe('the golden-v1 vault (test/fixtures/golden-v1)', () => {
  let ws: Workspace;

  beforeAll(async () => {
    await sodium.ready;
    ws = makeWorkspace();
    // never opened in place: the CLI writes .lock, .tmp/ and audit entries
    fs.cpSync(VAULT, ws.vaultDir, { recursive: true });
    for (const entry of fs.readdirSync(ws.vaultDir, { recursive: true, withFileTypes: true })) {
      const full = path.join(entry.parentPath, entry.name);
      const shared = ['vault.json', '.gitignore'].includes(entry.name);
      fs.chmodSync(full, entry.isDirectory() ? 0o700 : shared ? 0o644 : 0o600);
    }
    fs.chmodSync(ws.vaultDir, 0o700);
    ws.env.VAULT_KEY = vectors.token;
  });
  afterAll(() => ws?.cleanup());

  it('is regular files and directories only, without the local entries', () => {
    const entries = fs.readdirSync(FIXTURE, { recursive: true, withFileTypes: true });
    for (const entry of entries) {
      const full = path.join(entry.parentPath, entry.name);
      const stat = fs.lstatSync(full);
      expect(stat.isFile() || stat.isDirectory(), full).toBe(true);
      expect(entry.name).not.toMatch(/^(?:\.lock|\.tmp|audit\.log\.torn-.*)$/);
    }
    expect(fs.readFileSync(path.join(VAULT, '.gitignore'), 'utf8'))
      .toBe('# local to this machine, never committed (docs/FORMAT.md)\n.lock\n.tmp\naudit.log.torn-*\n');
  });

  describe('opened by the CLI', () => {
    it('lists the secrets with their sizes, and the two slots', () => {
      const list = ws.run(['list', '--json']);
      expect(list.status, list.stderr).toBe(0);
      const secrets = JSON.parse(list.stdout) as { name: string; size: number }[];
      expect(secrets.map((s) => [s.name, s.size])).toEqual(NAMES.map((name) => [name, vectors.secrets[name]?.size]));
      const slots = JSON.parse(ws.run(['key', 'list', '--json']).stdout) as { id: string; kind: string }[];
      expect(slots.map((s) => [s.kind, s.id]).sort()).toEqual([
        ['passphrase', vectors.slots.passphrase.id],
        ['token', vectors.slots.token.id],
      ]);
    });

    it('verifies it with the token, and with the passphrase', () => {
      const summary = 'ok: 3 secret(s) open under their own names, policy revision 1 with 3 grant(s) verified, ' +
        `audit log of 11 entries intact, 2 key slot(s); fingerprint ${vectors.fingerprint}\n`;
      const withToken = ws.run(['verify']);
      expect(withToken.status, withToken.stderr).toBe(0);
      expect(withToken.stderr).toBe(summary);
      const withPassphrase = ws.run(['verify'], { env: { VAULT_KEY: '', VAULT_PASSPHRASE: vectors.passphrase } });
      expect(withPassphrase.status, withPassphrase.stderr).toBe(0);
      expect(withPassphrase.stderr).toBe(summary);
      const wrong = ws.run(['verify'], { env: { VAULT_KEY: '', VAULT_PASSPHRASE: `${vectors.passphrase}!` } });
      expect(wrong.status).toBe(7);
    });

    it('shows the authenticated grants and an intact audit log', () => {
      const policy = ws.run(['policy', '--json']);
      expect(policy.status, policy.stderr).toBe(0);
      const shown = JSON.parse(policy.stdout) as { revision: number; grants: Json[] };
      expect(shown.revision).toBe(vectors.policy.revision);
      expect(shown.grants.map((g) => g.secret)).toEqual(NAMES);
      for (const grant of shown.grants) {
        expect(grant).toMatchObject({ sha256: vectors.script.sha256, path: vectors.script.granted_at, args: null });
      }
      const audit = ws.run(['audit', '--verify']);
      expect(audit.status, audit.stderr).toBe(0);
      // the 0.1 log is read as it is; this user has no run of this vault yet
      expect(audit.stderr).toBe(`audit log intact: ${vectors.audit.entries} entries; run log intact: 0 entries\n`);
      const entries = ws.run(['audit', '--json']).stdout.trim().split('\n').map((l) => JSON.parse(l) as Json);
      expect(entries.map((e) => e.event)).toEqual(vectors.audit.events);
    });

    it('releases the known values to the granted script, which prints their SHA-256', () => {
      // the fixture's grants pin the interpreter of the machine that made it: grant the copy here again
      const script = path.join(ws.root, vectors.script.file);
      fs.copyFileSync(path.join(FIXTURE, vectors.script.file), script);
      fs.chmodSync(script, 0o755);
      const allow = ws.run(['allow', ...NAMES, '--to', script]);
      expect(allow.status, allow.stderr).toBe(0);
      // a run writes nothing into the vault: release and exit go to the user's run log
      const before = ws.vaultFiles();
      const run = ws.run(['exec', '--', script]);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toBe(NAMES.map((name) => `${name} ${vectors.secrets[name]?.sha256}\n`).join(''));
      expect(ws.vaultFiles()).toEqual(before);
      // the 0.1 log is never appended to: the allow is one entry of audit/
      const legacy = fs.readFileSync(path.join(VAULT, 'audit.log'));
      expect(fs.readFileSync(path.join(ws.vaultDir, 'audit.log'))).toEqual(legacy);
      expect(fs.readdirSync(path.join(ws.vaultDir, 'audit'))).toHaveLength(1);
      const audit = ws.run(['audit', '--verify']);
      expect(audit.status, audit.stderr).toBe(0);
      expect(audit.stderr).toBe(`audit log intact: ${vectors.audit.entries + 1} entries; run log intact: 2 entries\n`);
      const runs = ws.run(['audit', '--runs', '--json']).stdout.trim().split('\n').map((l) => JSON.parse(l) as Json);
      expect(runs.map((e) => e.event)).toEqual(['release', 'exit']);
    });
  });

  describe('read with FORMAT.md and libsodium alone', () => {
    const vault = () => jsonFile(fixtureText('vault.json'), ['format', 'version', 'vault_id', 'public_key', 'created']);
    const publicKey = () => base64(vault().public_key, 32);
    const slotAad = (id: string, kind: string) =>
      concat(utf8('sealvault-slot/1'), ZERO, base64(vault().vault_id, 16), utf8(id), ZERO, utf8(kind));
    const unwrap = (file: Json, kek: Uint8Array, kind = file.kind as string) =>
      sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        null, base64(file.wrapped_key, 48), slotAad(file.id as string, kind), base64(file.nonce, 24), kek,
      );
    const secretKey = () => new Uint8Array(Buffer.from(vectors.secret_key_hex, 'hex'));

    it('canonical JSON as FORMAT.md spells it out is what JSON.stringify writes', () => {
      const samples = ['plain', 'a"b\\c/d', '\b\f\n\r\t', '\u0000\u001b\u001f', '\u007f\u0080\u009b', '\u2028\u2029',
        'pässwörd 秘密 🔑', 'lone \ud800 high', 'lone \udc00 low', 'swapped \udc00\ud800'];
      for (const text of samples) expect(canonicalString(text)).toBe(JSON.stringify(text));
    });

    it('vault.json: its members and the fingerprint', () => {
      const file = vault();
      expect(file).toMatchObject({ format: 'sealvault-vault', version: 1, vault_id: vectors.vault_id });
      expect(file.created).toMatch(WRITER_TIME);
      expect(hex(publicKey())).toBe(vectors.public_key_hex);
      expect(`svfp1_${sha256(publicKey()).slice(0, 40)}`).toBe(vectors.fingerprint);
    });

    it('the token slot unwraps the private key with the token bytes', () => {
      const file = jsonFile(fixtureText('slots', `${vectors.slots.token.id}.json`),
        ['format', 'version', 'id', 'kind', 'created', 'nonce', 'wrapped_key']);
      expect(file).toMatchObject({ format: 'sealvault-slot', version: 1, kind: 'token' });
      expect(vectors.token).toMatch(/^svt1_[A-Za-z0-9_-]{43}$/);
      const kek = new Uint8Array(Buffer.from(vectors.token.slice('svt1_'.length), 'base64url'));
      expect(kek.length).toBe(32);
      expect(hex(kek)).toBe(vectors.slots.token.kek_hex);
      const aad = slotAad(file.id as string, 'token');
      expect(aad.length).toBe(16 + 1 + 16 + 12 + 1 + 5);
      expect(hex(aad)).toBe(vectors.slots.token.aad_hex);
      const sk = unwrap(file, kek);
      expect(hex(sk)).toBe(vectors.secret_key_hex);
      expect(hex(sodium.crypto_scalarmult_base(sk))).toBe(hex(publicKey()));
      // the AAD binds the kind and the id
      expect(() => unwrap(file, kek, 'keychain')).toThrow();
      expect(() => unwrap({ ...file, id: vectors.slots.passphrase.id }, kek)).toThrow();
    });

    it('the passphrase slot unwraps the same key with argon2id of the UTF-8 passphrase', () => {
      const file = jsonFile(fixtureText('slots', `${vectors.slots.passphrase.id}.json`),
        ['format', 'version', 'id', 'kind', 'created', 'nonce', 'wrapped_key', 'kdf']);
      const kdf = file.kdf as { alg: string; opslimit: number; memlimit: number; salt: string };
      expect(Object.keys(kdf)).toEqual(['alg', 'opslimit', 'memlimit', 'salt']);
      expect(kdf).toMatchObject({ alg: 'argon2id13', opslimit: 1, memlimit: 8192 });
      const kek = sodium.crypto_pwhash(
        32, utf8(vectors.passphrase), base64(kdf.salt, 16), kdf.opslimit, kdf.memlimit,
        sodium.crypto_pwhash_ALG_ARGON2ID13,
      );
      expect(hex(kek)).toBe(vectors.slots.passphrase.kek_hex);
      expect(hex(slotAad(file.id as string, 'passphrase'))).toBe(vectors.slots.passphrase.aad_hex);
      expect(hex(unwrap(file, kek))).toBe(vectors.secret_key_hex);
      // the passphrase is its UTF-8 bytes: Latin-1 bytes of the same text do not open the slot
      const latin1 = sodium.crypto_pwhash(32, new Uint8Array(Buffer.from(vectors.passphrase, 'latin1')),
        base64(kdf.salt, 16), kdf.opslimit, kdf.memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13);
      expect(() => unwrap(file, latin1)).toThrow();
      // libsodium's argon2id has one lane (p=1) and counts memory in KiB
      expect(sodium.crypto_pwhash_str('x', kdf.opslimit, kdf.memlimit)).toMatch(/^\$argon2id\$v=19\$m=8,t=1,p=1\$/);
    });

    it('every secret opens to NAME ‖ 0x00 ‖ value, as a libsodium sealed box and by its construction', () => {
      const pk = publicKey();
      const sk = secretKey();
      expect(fs.readdirSync(path.join(VAULT, 'secrets')).sort()).toEqual(NAMES.map((name) => `${name}.json`));
      for (const name of NAMES) {
        const vector = vectors.secrets[name]!;
        const file = jsonFile(fixtureText('secrets', `${name}.json`),
          ['format', 'version', 'created', 'updated', 'sealed']);
        expect(file).toMatchObject({ format: 'sealvault-secret', version: 1 });
        expect(file.created).toMatch(WRITER_TIME);
        expect(file.updated).toMatch(WRITER_TIME);
        const sealed = base64(file.sealed);
        const message = sodium.crypto_box_seal_open(sealed, pk, sk);
        expect(hex(message)).toBe(hex(concat(utf8(name), ZERO, utf8(vector.value))));
        // epk ‖ crypto_box_easy(m, nonce = BLAKE2b-192(epk ‖ pk), pk, esk)
        const epk = sealed.subarray(0, 32);
        const nonce = sodium.crypto_generichash(24, concat(epk, pk), null);
        expect(hex(sodium.crypto_box_open_easy(sealed.subarray(32), nonce, epk, sk))).toBe(hex(message));
        const value = message.subarray(Buffer.byteLength(name) + 1);
        expect(sealed.length - 48 - Buffer.byteLength(name) - 1).toBe(vector.size);
        expect(sha256(value)).toBe(vector.sha256);
      }
    });

    it('the policy MAC is BLAKE2b over the canonical bytes, keyed from the private key', () => {
      const policy = jsonFile(fixtureText('policy.json'), ['format', 'version', 'revision', 'grants', 'mac']);
      expect(policy).toMatchObject({ format: 'sealvault-policy', version: 1, revision: vectors.policy.revision });
      const grants = policy.grants as Json[];
      expect(grants.length).toBe(vectors.policy.grants);
      expect(sha256(fs.readFileSync(path.join(FIXTURE, vectors.script.file)))).toBe(vectors.script.sha256);
      for (const grant of grants) {
        const { sha256: hash, granted_at: at } = vectors.script;
        expect(grant).toMatchObject({ sha256: hash, path: at, min_tier: 'hardened', args: null });
        expect(grant.created).toMatch(WRITER_TIME);
        expect((grant.interpreter as Json).sha256).toMatch(HEX64);
      }
      const bytes = (revision: number) => utf8(canonical(new Members([
        ['format', 'sealvault-policy'],
        ['version', 1],
        ['vault_id', vault().vault_id],
        ['revision', revision],
        ['grants', grants.map(canonicalGrant)],
      ])));
      const mine = bytes(policy.revision as number);
      expect(Buffer.from(mine)).toEqual(fs.readFileSync(path.join(FIXTURE, vectors.policy.mac_input_file)));
      expect(sha256(mine)).toBe(vectors.policy.mac_input_sha256);
      const policyKey = sodium.crypto_generichash(32, utf8('sealvault-policy-key/1'), secretKey());
      expect(hex(policyKey)).toBe(vectors.policy.policy_key_hex);
      const mac = base64(policy.mac, 32);
      expect(hex(sodium.crypto_generichash(32, mine, policyKey))).toBe(hex(mac));
      expect(hex(sodium.crypto_generichash(32, bytes((policy.revision as number) + 1), policyKey))).not.toBe(hex(mac));
    });

    it('the audit log is a SHA-256 chain of its lines from 64 zeros', () => {
      const log = fs.readFileSync(path.join(VAULT, 'audit.log'));
      expect(log.at(-1)).toBe(0x0a);
      const lines: Buffer[] = [];
      for (let start = 0; start < log.length;) {
        const end = log.indexOf(0x0a, start);
        lines.push(log.subarray(start, end));
        start = end + 1;
      }
      expect(lines.length).toBe(vectors.audit.entries);
      let prev = '0'.repeat(64);
      const runs = new Map<string, Json>();
      lines.forEach((line, index) => {
        expect(line.length).toBeLessThanOrEqual(1024 * 1024);
        const entry = JSON.parse(line.toString('utf8')) as Json;
        expect(Object.keys(entry)).toEqual(['seq', 'time', 'event', 'actor', 'details', 'prev']);
        expect(line.toString('utf8')).toBe(JSON.stringify(entry));
        expect(entry.seq).toBe(index + 1);
        expect(entry.prev).toBe(prev);
        expect(entry.time).toMatch(WRITER_TIME);
        expect(entry.event).toBe(vectors.audit.events[index]);
        expect(Object.keys(entry.actor as Json)).toEqual(['uid', 'user']);
        const details = entry.details as Json;
        expect(Object.keys(details)).toEqual(DETAILS[entry.event as string]);
        if (entry.event === 'init') {
          expect(details).toMatchObject({ vault_id: vectors.vault_id, fingerprint: vectors.fingerprint });
        }
        if (entry.event === 'release') {
          expect(details.run).toMatch(/^[0-9a-f]{16}$/);
          expect(details).toMatchObject({ sha256: vectors.script.sha256, secrets: NAMES, files: [], tier: 'hardened' });
          runs.set(details.run as string, details);
        }
        if (entry.event === 'exit') expect(runs.has(details.run as string)).toBe(true);
        prev = sha256(line);
        expect(prev).toBe(vectors.audit.line_sha256[index]);
      });
    });
  });
});
