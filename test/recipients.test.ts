/**
 * Recipient slots (docs/FORMAT.md, "kind recipient"): a person unlocks with their own age identity.
 * The slot is age's own format: Debian's `age` CLI opens it, and `age-keygen` identities work.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as age from 'age-encryption';
import sodium from 'libsodium-wrappers-sumo';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type RunResult, type Workspace } from './helpers/cli.js';

const AGE = ['/usr/bin/age', '/usr/bin/age-keygen'].every((file) => fs.existsSync(file));

interface Slot {
  id: string;
  kind: string;
  label?: string;
  nonce: string;
  wrapped_key: string;
  recipient?: { age_recipient: string; age_file: string };
}

function ok(result: RunResult, what: string): RunResult {
  expect(result.status, `${what}: ${result.stderr}`).toBe(0);
  return result;
}

function fails(result: RunResult, code: number, message: RegExp): void {
  expect(result.status, result.stderr).toBe(code);
  expect(result.stderr).toMatch(message);
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
}

describe('recipient slots', () => {
  let ws: Workspace;
  let token: string;
  let script: string;
  const identityFile = () => path.join(ws.root, 'identity.txt');

  beforeAll(async () => {
    await sodium.ready;
  });

  beforeEach(() => {
    ws = makeWorkspace();
    token = initWithToken(ws);
    put(ws, 'DB_PASSWORD', 'recipient-secret-1');
    script = path.join(ws.project, 'show.sh');
    fs.writeFileSync(script, '#!/bin/sh\nprintf "%s\\n" "$DB_PASSWORD"\n', { mode: 0o755 });
    ok(ws.run(['allow', 'DB_PASSWORD', '--to', script]), 'allow');
  });
  afterEach(() => ws.cleanup());

  /** `vault identity new` into identity.txt; its recipient. */
  function newIdentity(file = identityFile()): string {
    const made = ok(ws.run(['identity', 'new', file]), 'identity new');
    expect(made.stdout).toMatch(/^age1[02-9ac-hj-np-z]{58}\n$/);
    return made.stdout.trim();
  }

  /** A run with no token: only the identity can open the vault. */
  const withoutToken = (extra: NodeJS.ProcessEnv = {}) => ({ env: { VAULT_KEY: undefined, ...extra } });
  const slots = (): Slot[] =>
    fs.readdirSync(path.join(ws.vaultDir, 'slots')).map((f) => JSON.parse(fs.readFileSync(path.join(ws.vaultDir, 'slots', f), 'utf8')) as Slot);

  it('identity new writes a private identity file and prints its recipient; it never writes over a file', () => {
    const recipient = newIdentity();
    const file = identityFile();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    expect(lines[1]).toBe(`# public key: ${recipient}`);
    expect(lines[2]).toMatch(/^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$/);
    if (AGE) expect(spawnSync('/usr/bin/age-keygen', ['-y', file], { encoding: 'utf8' }).stdout).toBe(`${recipient}\n`);
    const before = fs.readFileSync(file);
    fails(ws.run(['identity', 'new', file]), 11, /never written over/);
    expect(fs.readFileSync(file)).toEqual(before);
  });

  it('recipient add, then the identity alone unlocks: exec, by VAULT_IDENTITY_FILE and by --identity', () => {
    const recipient = newIdentity();
    ok(ws.run(['recipient', 'add', 'alice', recipient]), 'recipient add');
    const listed = JSON.parse(ok(ws.run(['recipient', 'list', '--json']), 'recipient list').stdout);
    expect(listed).toEqual([{ label: 'alice', recipient, id: expect.stringMatching(/^[0-9a-f]{12}$/), created: expect.any(String) }]);
    expect(ok(ws.run(['key', 'list']), 'key list').stdout).toMatch(new RegExp(`recipient +alice +\\S+ +${recipient}`));

    const byVariable = ok(ws.run(['exec', '--no-mask', '--', script], withoutToken({ VAULT_IDENTITY_FILE: identityFile() })), 'exec by variable');
    expect(byVariable.stdout).toBe('recipient-secret-1\n');
    const byFlag = ok(ws.run(['--identity', identityFile(), 'exec', '--no-mask', '--', script], withoutToken()), 'exec by flag');
    expect(byFlag.stdout).toBe('recipient-secret-1\n');
    ok(ws.run(['verify'], withoutToken({ VAULT_IDENTITY_FILE: identityFile() })), 'verify by identity');
  });

  it('in lockdown the target sees neither the identity file (even in its working directory) nor VAULT_IDENTITY_FILE', () => {
    const file = path.join(ws.project, 'identity.txt'); // where lockdown shows the working directory
    ok(ws.run(['recipient', 'add', 'alice', newIdentity(file)]), 'recipient add');
    const probe = path.join(ws.project, 'probe.sh');
    fs.writeFileSync(probe, `#!/bin/sh\n[ -s ${file} ] && echo "identity visible" || echo "identity hidden"\necho "variable:\${VAULT_IDENTITY_FILE:-unset}"\n`, { mode: 0o755 });
    ok(ws.run(['allow', 'DB_PASSWORD', '--to', probe, '--min-tier', 'lockdown']), 'allow');
    const run = ok(ws.run(['exec', '--no-mask', '--', probe], withoutToken({ VAULT_IDENTITY_FILE: file })), 'exec');
    expect(run.stdout).toBe('identity hidden\nvariable:unset\n');
  });

  /**
   * What a writer of the vault (no key) can do with Alice's public recipient: a slot her identity opens,
   * holding a key pair of the writer's. Returns that pair's public key (base64).
   */
  async function plantSlot(recipient: string, id = '000000000000'): Promise<string> {
    const pair = sodium.crypto_box_keypair();
    const kek = sodium.randombytes_buf(32);
    const encrypter = new age.Encrypter();
    encrypter.addRecipient(recipient);
    const ageFile = await encrypter.encrypt(kek);
    const vault = JSON.parse(fs.readFileSync(path.join(ws.vaultDir, 'vault.json'), 'utf8')) as { vault_id: string };
    const aad = Buffer.concat([Buffer.from('sealvault-slot/1\0'), Buffer.from(vault.vault_id, 'base64'), Buffer.from(`${id}\0recipient`)]);
    const nonce = sodium.randombytes_buf(24);
    const wrapped = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(pair.privateKey, aad, null, nonce, kek);
    const slot = {
      format: 'sealvault-slot', version: 1, id, kind: 'recipient', created: new Date().toISOString(), label: 'alice',
      nonce: Buffer.from(nonce).toString('base64'), wrapped_key: Buffer.from(wrapped).toString('base64'),
      recipient: { age_recipient: recipient, age_file: Buffer.from(ageFile).toString('base64') },
    };
    fs.writeFileSync(path.join(ws.vaultDir, 'slots', `${id}.json`), `${JSON.stringify(slot, null, 2)}\n`);
    return Buffer.from(pair.publicKey).toString('base64');
  }

  it('a slot a writer planted for your identity, holding its own key, is passed over; it never gets pinned by `vault trust`', async () => {
    const recipient = newIdentity();
    ok(ws.run(['recipient', 'add', 'alice', recipient]), 'recipient add');
    const env = withoutToken({ VAULT_IDENTITY_FILE: identityFile() });
    const planted = await plantSlot(recipient); // sorts before the real slot
    expect(ok(ws.run(['exec', '--no-mask', '--', script], env), 'exec past a planted slot').stdout).toBe('recipient-secret-1\n');
    // without Alice's real slot: the planted one is named, nothing opens
    const real = slots().find((s) => s.kind === 'recipient' && s.id !== '000000000000')!;
    const realFile = path.join(ws.vaultDir, 'slots', `${real.id}.json`);
    const realText = fs.readFileSync(realFile);
    fs.rmSync(realFile);
    fails(ws.run(['policy'], env), 9, /recipient slot\(s\) 000000000000 open with .* but hold a key that is not this vault's/);
    // and with vault.json's public key replaced to match: refused by the pin, and `vault trust` does not re-pin it
    const vaultJson = path.join(ws.vaultDir, 'vault.json');
    const original = JSON.parse(fs.readFileSync(vaultJson, 'utf8'));
    fs.writeFileSync(vaultJson, `${JSON.stringify({ ...original, public_key: planted }, null, 2)}\n`);
    fails(ws.run(['policy'], env), 9, /public key/);
    fails(ws.run(['trust'], env), 11, /does not prove the public key; check the fingerprint .* `vault trust --fingerprint/);
    fails(ws.run(['put', 'LATER'], { input: 'x', env: { VAULT_KEY: undefined } }), 9, /public key/);
    // the owner restores both, and everything is as before
    fs.writeFileSync(vaultJson, `${JSON.stringify(original, null, 2)}\n`);
    fs.writeFileSync(realFile, realText);
    expect(ok(ws.run(['exec', '--no-mask', '--', script], env), 'exec restored').stdout).toBe('recipient-secret-1\n');
  });

  it('planted slots for your identity cost at most 8 tries, with a notice naming the rest', async () => {
    const recipient = newIdentity();
    ok(ws.run(['recipient', 'add', 'alice', recipient]), 'recipient add');
    for (let i = 0; i < 10; i += 1) await plantSlot(recipient, `00000000000${i.toString(16)}`);
    const result = ws.run(['policy'], withoutToken({ VAULT_IDENTITY_FILE: identityFile() }));
    expect(result.status).toBe(9); // the 8 tried are planted; the real one is past the budget
    expect(result.stderr).toMatch(/vault: warning: recipient slot\(s\) 000000000008, 000000000009, \w{12} for your identity are not tried: only 8 are/);
  });

  it('a mistyped identity is named by its line, and its text is never printed', () => {
    newIdentity();
    const lines = fs.readFileSync(identityFile(), 'utf8').split('\n');
    const key = lines[2]!;
    const last = key.at(-1) === 'Q' ? 'P' : 'Q'; // a valid Bech32 character: only the checksum fails
    const typo = path.join(ws.root, 'typo.txt');
    fs.writeFileSync(typo, [lines[0], lines[1], `${key.slice(0, -1)}${last}`, ''].join('\n'), { mode: 0o600 });
    const result = ws.run(['policy'], withoutToken({ VAULT_IDENTITY_FILE: typo }));
    fails(result, 2, /line 3 is not an age X25519 identity/);
    expect(result.stderr).not.toContain(key.slice(16, 60));
  });

  it('an identity file given beside a token is hidden from a lockdown target too', () => {
    const file = path.join(ws.project, 'identity.txt');
    newIdentity(file);
    const probe = path.join(ws.project, 'probe.sh');
    fs.writeFileSync(probe, `#!/bin/sh\n[ -s ${file} ] && echo "identity visible" || echo "identity hidden"\n`, { mode: 0o755 });
    ok(ws.run(['allow', 'DB_PASSWORD', '--to', probe, '--min-tier', 'lockdown']), 'allow');
    expect(ok(ws.run(['exec', '--', probe], { env: { VAULT_IDENTITY_FILE: file } }), 'by variable').stdout).toBe('identity hidden\n');
    expect(ok(ws.run(['--identity', file, 'exec', '--', probe]), 'by flag').stdout).toBe('identity hidden\n');
  });

  it('an identity that is not a recipient of the vault is an error (7), never a reason to try the next way', () => {
    newIdentity();
    const other = path.join(ws.root, 'other.txt');
    ok(ws.run(['recipient', 'add', 'alice', newIdentity(other)]), 'recipient add');
    fs.rmSync(other);
    // a passphrase slot would open; the identity given is still the answer
    fails(ws.run(['policy'], withoutToken({ VAULT_IDENTITY_FILE: identityFile(), VAULT_PASSPHRASE: 'x' })), 7, /opens none of this vault's 1 recipient slot/);
    // vault exec keeps its own failures at 125, apart from its target's codes
    fails(ws.run(['exec', '--', script], withoutToken({ VAULT_IDENTITY_FILE: identityFile() })), 125, /opens none of this vault's 1 recipient slot/);
  });

  it('an identity file others can read (11), that is not a file or holds something else (2), is refused', () => {
    const recipient = newIdentity();
    ok(ws.run(['recipient', 'add', 'alice', recipient]), 'recipient add');
    fs.chmodSync(identityFile(), 0o644);
    fails(ws.run(['policy'], withoutToken({ VAULT_IDENTITY_FILE: identityFile() })), 11, /readable or writable by group or others/);
    fails(ws.run(['policy'], withoutToken({ VAULT_IDENTITY_FILE: ws.root })), 2, /is not a regular file/);
    const bad = path.join(ws.root, 'bad.txt');
    fs.writeFileSync(bad, '# a comment\nnot an identity\n', { mode: 0o600 });
    fails(ws.run(['policy'], withoutToken({ VAULT_IDENTITY_FILE: bad })), 2, /line 2 is not an age X25519 identity/);
  });

  it('labels: recipient add and key add --label name a slot; a label is unique, and a bad recipient is refused before any unlock', () => {
    const recipient = newIdentity();
    ok(ws.run(['recipient', 'add', 'alice', recipient]), 'recipient add');
    fails(ws.run(['recipient', 'add', 'alice', newIdentity(path.join(ws.root, 'b.txt'))]), 2, /already labelled "alice"/);
    fails(ws.run(['recipient', 'add', 'bob', 'age1nope'], withoutToken()), 2, /not an age X25519 recipient/);
    fails(ws.run(['key', 'add', '--token', '--label', 'bad\u0007label']), 2, /slot label/);
    ok(ws.run(['key', 'add', '--token', '--label', 'ci runner']), 'key add --label');
    expect(slots().map((s) => s.label ?? null).sort()).toEqual(['alice', 'ci runner', null]);
    // members in docs/FORMAT.md's order, the kind's own last
    const order = (kind: string) => Object.keys(slots().find((s) => s.kind === kind && s.label !== undefined)!);
    expect(order('token')).toEqual(['format', 'version', 'id', 'kind', 'created', 'label', 'nonce', 'wrapped_key', 'mac']);
    expect(order('recipient')).toEqual(['format', 'version', 'id', 'kind', 'created', 'label', 'nonce', 'wrapped_key', 'recipient', 'mac']);
  });

  it.skipIf(!AGE)('the slot is age\'s format: `age -d` with the identity gives the KEK, which unwraps the key as FORMAT.md says', () => {
    // an identity made by age-keygen, as a person brings their own
    const file = identityFile();
    expect(spawnSync('/usr/bin/age-keygen', ['-o', file], { encoding: 'utf8' }).status).toBe(0);
    const recipient = spawnSync('/usr/bin/age-keygen', ['-y', file], { encoding: 'utf8' }).stdout.trim();
    ok(ws.run(['recipient', 'add', 'carol', recipient]), 'recipient add');
    const slot = slots().find((s) => s.kind === 'recipient')!;
    expect(slot.recipient!.age_recipient).toBe(recipient);
    const ageFile = path.join(ws.root, 'slot.age');
    fs.writeFileSync(ageFile, Buffer.from(slot.recipient!.age_file, 'base64'));
    const opened = spawnSync('/usr/bin/age', ['-d', '-i', file, ageFile]);
    expect(opened.status, opened.stderr.toString()).toBe(0);
    const kek = new Uint8Array(opened.stdout);
    expect(kek).toHaveLength(32);
    const vault = JSON.parse(fs.readFileSync(path.join(ws.vaultDir, 'vault.json'), 'utf8')) as { vault_id: string; public_key: string };
    const aad = Buffer.concat([
      Buffer.from('sealvault-slot/1\0'), Buffer.from(vault.vault_id, 'base64'), Buffer.from(`${slot.id}\0recipient`),
    ]);
    const secretKey = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
      null, Buffer.from(slot.wrapped_key, 'base64'), aad, Buffer.from(slot.nonce, 'base64'), kek,
    );
    expect(Buffer.from(sodium.crypto_scalarmult_base(secretKey)).toString('base64')).toBe(vault.public_key);
    // and the CLI opens it with that identity
    expect(ok(ws.run(['exec', '--no-mask', '--', script], withoutToken({ VAULT_IDENTITY_FILE: file })), 'exec').stdout).toBe('recipient-secret-1\n');
    expect(token).toMatch(/^svt1_/);
  });
});
