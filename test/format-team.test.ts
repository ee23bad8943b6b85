/**
 * docs/FORMAT.md's constructions of sealvault 0.2 (the slot MAC, the policy's revocations under its
 * MAC, the audit DAG, the run log, the rekey's slots) checked on a vault the CLI made, with
 * libsodium and SHA-256 alone, following the document's descriptions: nothing of src/ is imported.
 * test/format-vectors.test.ts does the same for the constructions of version 1 on a golden vault.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sodium from 'libsodium-wrappers-sumo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type RunResult, type Workspace } from './helpers/cli.js';

type Json = Record<string, unknown>;
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');
const utf8 = (text: string) => new Uint8Array(Buffer.from(text, 'utf8'));
const b64 = (text: string) => new Uint8Array(Buffer.from(text, 'base64'));

function ok(result: RunResult, what: string): RunResult {
  expect(result.status, `${what}: ${result.stderr}`).toBe(0);
  return result;
}

/** FORMAT.md, "The MAC" and "Slot MAC": BLAKE2b-256 keyed with BLAKE2b-256(key = sk, message = context). */
function keyedMac(sk: Uint8Array, context: string, canonical: string): string {
  const key = sodium.crypto_generichash(32, utf8(context), sk);
  return Buffer.from(sodium.crypto_generichash(32, utf8(canonical), key)).toString('base64');
}

describe('sealvault 0.2 format, by the document', () => {
  let ws: Workspace;
  let token: string;
  let script: string;
  const json = (...parts: string[]) => JSON.parse(fs.readFileSync(path.join(ws.vaultDir, ...parts), 'utf8')) as Json;
  const slotFiles = () => fs.readdirSync(path.join(ws.vaultDir, 'slots')).map((f) => json('slots', f));

  /** FORMAT.md, "kind token" and "Slots": the token's 32 bytes unwrap the slot's `sk`. */
  function secretKey(): Uint8Array {
    const vault = json('vault.json');
    const slot = slotFiles().find((s) => s.kind === 'token' && s.label === undefined)!;
    const kek = new Uint8Array(Buffer.from(token.slice('svt1_'.length), 'base64url'));
    const aad = new Uint8Array(Buffer.concat([utf8('sealvault-slot/1'), new Uint8Array([0]), b64(vault.vault_id as string),
      utf8(`${slot.id as string}\0token`)]));
    return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, b64(slot.wrapped_key as string), aad, b64(slot.nonce as string), kek);
  }

  beforeAll(async () => {
    await sodium.ready;
    ws = makeWorkspace();
    token = initWithToken(ws);
    put(ws, 'ALPHA', 'alpha');
    script = path.join(ws.project, 'show.sh');
    fs.writeFileSync(script, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const identity = path.join(ws.root, 'id.txt');
    const recipient = ok(ws.run(['identity', 'new', identity]), 'identity').stdout.trim();
    ok(ws.run(['recipient', 'add', 'alice', recipient]), 'recipient add');
    ok(ws.run(['key', 'add', '--token', '--label', 'ci']), 'key add');
    ok(ws.run(['allow', 'ALPHA', '--to', script]), 'allow');
    ok(ws.run(['revoke', 'ALPHA', '--from', script]), 'revoke');
    ok(ws.run(['allow', 'ALPHA', '--to', script]), 'allow again');
    ok(ws.run(['rekey']), 'rekey');
    ok(ws.run(['exec', '--', script]), 'exec');
  });
  afterAll(() => ws.cleanup());

  it('every slot carries a MAC over its canonical members, as "Slot MAC" says', () => {
    const sk = secretKey();
    expect(sodium.crypto_scalarmult_base(sk)).toEqual(b64(json('vault.json').public_key as string));
    const own = { token: [], recipient: ['recipient'], keychain: ['keychain'], passphrase: ['kdf'] } as Record<string, string[]>;
    for (const slot of slotFiles()) {
      const { mac, ...rest } = slot;
      // members in the document's order, the label only when there is one, mac last
      const order = ['format', 'version', 'id', 'kind', 'created', ...(slot.label !== undefined ? ['label'] : []), 'nonce', 'wrapped_key',
        ...own[slot.kind as string]!, 'mac'];
      expect(Object.keys(slot), `slot ${slot.id as string}`).toEqual(order);
      expect(mac, `slot ${slot.id as string}`).toBe(keyedMac(sk, 'sealvault-slot-key/1', JSON.stringify(rest)));
    }
  });

  it('the policy keeps its revocations after the grants, under its MAC', () => {
    const sk = secretKey();
    const policy = json('policy.json');
    expect(Object.keys(policy)).toEqual(['format', 'version', 'revision', 'grants', 'revoked', 'mac']);
    const revoked = policy.revoked as Json[];
    expect(revoked).toHaveLength(1);
    expect(Object.keys(revoked[0]!)).toEqual(['secret', 'sha256', 'created']);
    const grants = policy.grants as Json[];
    expect(grants).toHaveLength(1);
    // the grant made again has a new identity: it is not the revoked one
    expect(grants[0]!.created).not.toBe(revoked[0]!.created);
    const canonical = JSON.stringify({
      format: 'sealvault-policy', version: 1, vault_id: json('vault.json').vault_id, revision: policy.revision, grants, revoked,
    });
    expect(policy.mac).toBe(keyedMac(sk, 'sealvault-policy-key/1', canonical));
  });

  it('each audit entry is audit/H.json, H the SHA-256 of its bytes, a DAG of sorted parents, with no run in it', () => {
    const dir = path.join(ws.vaultDir, 'audit');
    const names = fs.readdirSync(dir);
    const entries = new Map<string, Json>();
    for (const name of names) {
      const bytes = fs.readFileSync(path.join(dir, name));
      expect(name).toBe(`${sha256(bytes)}.json`);
      const entry = JSON.parse(bytes.toString('utf8')) as Json;
      expect(Object.keys(entry)).toEqual(['time', 'event', 'actor', 'details', 'parents']);
      expect(bytes.toString('utf8')).toBe(`${JSON.stringify(entry)}\n`);
      entries.set(name.slice(0, 64), entry);
    }
    const roots = [...entries.values()].filter((e) => (e.parents as string[]).length === 0);
    expect(roots.map((e) => e.event)).toEqual(['init']);
    for (const entry of entries.values()) {
      const parents = entry.parents as string[];
      expect([...parents].sort()).toEqual(parents);
      for (const parent of parents) expect(entries.has(parent)).toBe(true);
    }
    const events = [...entries.values()].map((e) => e.event).sort();
    expect(events).toEqual(['allow', 'allow', 'init', 'key-add', 'key-add', 'put', 'rekey', 'revoke'].sort());
    const rekey = [...entries.values()].find((e) => e.event === 'rekey')!.details as Json;
    expect(Object.keys(rekey)).toEqual(['run', 'fingerprint', 'from', 'slots', 'removed', 'dropped', 'reissued', 'secrets']);
  });

  it('the run is in the user\'s run log, a hash chain as audit.log, outside the vault', () => {
    const vaultId = json('vault.json').vault_id as string;
    const file = path.join(ws.env.XDG_STATE_HOME!, 'sealvault', 'runs', Buffer.from(vaultId, 'base64').toString('base64url'), 'audit.log');
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    let prev = '0'.repeat(64);
    lines.forEach((line, i) => {
      const entry = JSON.parse(line) as Json;
      expect(entry.seq).toBe(i + 1);
      expect(entry.prev).toBe(prev);
      prev = sha256(line);
    });
    expect(lines.map((l) => (JSON.parse(l) as Json).event)).toEqual(['release', 'exit']);
  });
});

describe('sealvault 0.3 values, by the document', () => {
  it('configuration is NAME ‖ 0x01 ‖ value, a secret NAME ‖ 0x00 ‖ value, empty is a value; a rekey keeps K', async () => {
    await sodium.ready;
    const ws = makeWorkspace();
    try {
      const token = initWithToken(ws);
      put(ws, 'REGION', 'eu-west-1', ['--config']);
      put(ws, 'SECRET', 'not-configuration');
      put(ws, 'NOTHING', '');
      ok(ws.run(['rekey']), 'rekey');
      const read = (...parts: string[]) => JSON.parse(fs.readFileSync(path.join(ws.vaultDir, ...parts), 'utf8')) as Json;
      // "kind token": the slot that unlocked the rekey keeps its KEK, so the token still unwraps the new sk
      const vault = read('vault.json');
      const slots = fs.readdirSync(path.join(ws.vaultDir, 'slots')).map((f) => read('slots', f));
      const slot = slots.find((s) => s.kind === 'token')!;
      const kek = new Uint8Array(Buffer.from(token.slice('svt1_'.length), 'base64url'));
      const aad = new Uint8Array(Buffer.concat([utf8('sealvault-slot/1'), new Uint8Array([0]), b64(vault.vault_id as string),
        utf8(`${slot.id as string}\0token`)]));
      const sk = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        null, b64(slot.wrapped_key as string), aad, b64(slot.nonce as string), kek,
      );
      const pk = b64(vault.public_key as string);
      const open = (name: string) =>
        Buffer.from(sodium.crypto_box_seal_open(b64(read('secrets', `${name}.json`).sealed as string), pk, sk));
      expect(open('REGION')).toEqual(Buffer.concat([Buffer.from('REGION'), Buffer.from([1]), Buffer.from('eu-west-1')]));
      expect(open('SECRET')).toEqual(Buffer.concat([Buffer.from('SECRET'), Buffer.from([0]), Buffer.from('not-configuration')]));
      expect(open('NOTHING')).toEqual(Buffer.concat([Buffer.from('NOTHING'), Buffer.from([0])]));
      expect(read('secrets', 'REGION.json').config).toBe(true);
      expect(read('secrets', 'SECRET.json').config).toBeUndefined();
    } finally {
      ws.cleanup();
    }
  });
});
