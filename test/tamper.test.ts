/**
 * Someone edits the vault files by hand. Every edit must be detected: exit code 9 ('tampered', or
 * the documented code for the case), a one-line `vault: ` message that names the problem, and the
 * detecting command changes nothing on disk (neither the vault nor the user's state directory).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type RunResult, type Workspace } from './helpers/cli.js';
import { expectOneLine, runUnchanged } from './helpers/disk.js';
import { openAllSecrets } from './helpers/open-vault.js';

const TAMPERED = 9;
const CORRUPT = 4;
const WRONG_KEY = 7;

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
}
function writeJson(file: string, data: unknown): void {
  fs.writeFileSync(file, `${JSON.stringify(data)}\n`);
}

/** The fingerprint `vault init` printed on stderr. */
function fingerprintFrom(stderr: string): string {
  const match = /fingerprint (svfp1_[0-9a-f]{40})/.exec(stderr);
  if (match?.[1] === undefined) throw new Error(`no fingerprint in: ${stderr}`);
  return match[1];
}

/** A second, unrelated vault with its own home and state (its maker is someone else). */
function otherVault(): { ws: Workspace; token: string; fingerprint: string } {
  const ws = makeWorkspace();
  const init = ws.run(['init', '--token']);
  if (init.status !== 0) throw new Error(init.stderr);
  const token = init.stdout.trim();
  ws.env.VAULT_KEY = token;
  return { ws, token, fingerprint: fingerprintFrom(init.stderr) };
}

describe('tampering with the vault files', () => {
  let ws: Workspace;
  let token: string;
  const others: Workspace[] = [];
  const secrets = (...parts: string[]) => path.join(ws.vaultDir, 'secrets', ...parts);
  const policyFile = () => path.join(ws.vaultDir, 'policy.json');
  const auditFile = () => path.join(ws.vaultDir, 'audit.log');
  const vaultFile = () => path.join(ws.vaultDir, 'vault.json');

  beforeEach(() => {
    ws = makeWorkspace();
    token = initWithToken(ws);
    put(ws, 'ALPHA', 'alpha-value-0123456789');
    put(ws, 'BRAVO', 'bravo-value-9876543210');
  });
  afterEach(() => {
    ws.cleanup();
    for (const other of others.splice(0)) other.cleanup();
  });

  describe('secrets', () => {
    it('sealed ciphertexts swapped between two files: verify exits 9 and names both files', () => {
      const a = readJson(secrets('ALPHA.json'));
      const b = readJson(secrets('BRAVO.json'));
      writeJson(secrets('ALPHA.json'), { ...a, sealed: b.sealed });
      writeJson(secrets('BRAVO.json'), { ...b, sealed: a.sealed });

      const result = runUnchanged(ws, ['verify']);
      expect(result.status).toBe(TAMPERED);
      const lines = result.stderr.trimEnd().split('\n');
      expect(lines).toHaveLength(2);
      for (const line of lines) expect(line).toMatch(/^vault: .*sealed under another name/);
      expect(result.stderr).toContain(secrets('ALPHA.json'));
      expect(result.stderr).toContain(secrets('BRAVO.json'));
      expect(result.stdout).toBe('');
    });

    it("a copy of A's file under a new name C: verify exits 9 and names C", async () => {
      fs.copyFileSync(secrets('ALPHA.json'), secrets('CHARLIE.json'));
      const result = runUnchanged(ws, ['verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, secrets('CHARLIE.json'), /sealed under another name/);
      // the genuine secrets still open
      fs.rmSync(secrets('CHARLIE.json'));
      const values = await openAllSecrets(ws.vaultDir, token);
      expect(values.get('ALPHA')?.toString()).toBe('alpha-value-0123456789');
    });

    it('a sealed value replaced by garbage of valid base64: verify exits 9 and names the file', () => {
      const a = readJson(secrets('ALPHA.json'));
      writeJson(secrets('ALPHA.json'), { ...a, sealed: Buffer.alloc(80, 7).toString('base64') });
      const result = runUnchanged(ws, ['verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, secrets('ALPHA.json'), /does not open/);
    });
  });

  describe('policy.json', () => {
    it('a grant added by hand (valid JSON and fields, old mac): policy and verify exit 9', () => {
      const policy = readJson(policyFile());
      const grant = {
        secret: 'ALPHA',
        sha256: createHash('sha256').update('evil').digest('hex'),
        path: '/usr/bin/true',
        min_tier: 'none',
        args: null,
        created: new Date().toISOString(),
      };
      writeJson(policyFile(), { ...policy, grants: [grant] });

      const shown = runUnchanged(ws, ['policy']);
      expect(shown.status).toBe(TAMPERED);
      expectOneLine(shown, policyFile(), /authentication/);
      expect(shown.stdout).toBe('');

      const json = runUnchanged(ws, ['policy', '--json']);
      expect(json.status).toBe(TAMPERED);
      expect(json.stdout).toBe('');

      const verified = runUnchanged(ws, ['verify']);
      expect(verified.status).toBe(TAMPERED);
      expectOneLine(verified, policyFile(), /authentication/);
    });

    it('one byte of the mac flipped (still valid base64): exit 9', () => {
      const policy = readJson(policyFile());
      const mac = String(policy.mac);
      const flipped = (mac[0] === 'A' ? 'B' : 'A') + mac.slice(1);
      writeJson(policyFile(), { ...policy, mac: flipped });
      expect(Buffer.from(flipped, 'base64')).toHaveLength(32);

      const result = runUnchanged(ws, ['policy']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, policyFile(), /authentication/);
    });

    it('a byte flipped elsewhere so that it is no longer JSON: exit 4 (corrupt)', () => {
      const bytes = fs.readFileSync(policyFile());
      const close = bytes.lastIndexOf('}');
      bytes[close] = (bytes[close] ?? 0) ^ 0x01; // '}' → '|'
      fs.writeFileSync(policyFile(), bytes);

      const result = runUnchanged(ws, ['policy']);
      expect(result.status).toBe(CORRUPT);
      expectOneLine(result, policyFile(), /not valid JSON/);
    });

    it('the revision number changed: exit 9', () => {
      const policy = readJson(policyFile());
      writeJson(policyFile(), { ...policy, revision: Number(policy.revision) + 5 });
      const result = runUnchanged(ws, ['policy']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, policyFile(), /authentication/);
    });

    it('an older authentic policy.json put back (rollback): policy and verify exit 9', () => {
      const script = path.join(ws.root, 'deploy.sh');
      fs.writeFileSync(script, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      expect(ws.run(['allow', 'ALPHA', '--to', script]).status).toBe(0);
      const withGrant = fs.readFileSync(policyFile());
      expect(ws.run(['revoke', 'ALPHA', '--from', script]).status).toBe(0);
      fs.writeFileSync(policyFile(), withGrant);

      for (const args of [['policy'], ['verify']]) {
        const result = runUnchanged(ws, args);
        expect(result.status, args[0]).toBe(TAMPERED);
        expectOneLine(result, policyFile(), /revision 1, but you have seen revision 2/);
      }
      // another user, who never saw revision 2, has no way to tell: SECURITY.md says so
      const fresh = ws.run(['policy', '--json'], { env: { XDG_STATE_HOME: path.join(ws.root, 'other-state') } });
      expect(fresh.status, fresh.stderr).toBe(0);
    });

    it('policy.json deleted: policy exits 9 and says it is missing', () => {
      fs.rmSync(policyFile());
      const result = runUnchanged(ws, ['policy']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, policyFile(), /missing/);
    });
  });

  describe('audit.log', () => {
    // init, put ALPHA, put BRAVO, put CHARLIE, rm CHARLIE: five entries
    beforeEach(() => {
      put(ws, 'CHARLIE', 'charlie-value-5555555555');
      expect(ws.run(['rm', 'CHARLIE']).status).toBe(0);
      expect(fs.readFileSync(auditFile(), 'utf8').trimEnd().split('\n')).toHaveLength(5);
    });
    const auditLines = () => fs.readFileSync(auditFile(), 'utf8').trimEnd().split('\n');
    const writeLines = (lines: string[]) => fs.writeFileSync(auditFile(), `${lines.join('\n')}\n`);

    it('is intact before anyone touches it', () => {
      const result = ws.run(['audit', '--verify']);
      expect(result.status).toBe(0);
      expect(result.stderr).toMatch(/intact: 5 entries/);
    });

    it('a middle line deleted: audit --verify exits 9 and names that line', () => {
      writeLines(auditLines().filter((_, i) => i !== 2));
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 3\b/);
    });

    it('the last line deleted: detected through the audit witness in the state directory', () => {
      const state = JSON.parse(fs.readFileSync(path.join(ws.env.XDG_STATE_HOME ?? '', 'sealvault', 'known_vaults.json'), 'utf8')) as {
        vaults: Record<string, { audit: { seq: number } | null }>;
      };
      expect(Object.values(state.vaults)[0]?.audit?.seq).toBe(5);

      writeLines(auditLines().slice(0, 4));
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 5\b/, /removed/);

      const verified = runUnchanged(ws, ['verify']);
      expect(verified.status).toBe(TAMPERED);
      expectOneLine(verified, auditFile(), /line 5\b/);
    });

    it('a detail edited in a middle entry: exit 9, the break is reported at the next line', () => {
      const lines = auditLines();
      expect(lines[1]).toContain('"name":"ALPHA"');
      lines[1] = (lines[1] ?? '').replace('"name":"ALPHA"', '"name":"ALPHB"');
      writeLines(lines);
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 3\b/, /previous entry/);
    });

    it('a detail edited in the last entry: exit 9 (it differs from the witnessed entry)', () => {
      const lines = auditLines();
      expect(lines[4]).toContain('"name":"CHARLIE"');
      lines[4] = (lines[4] ?? '').replace('"name":"CHARLIE"', '"name":"CHARLIF"');
      writeLines(lines);
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 5\b/);
    });

    it('a line that is not JSON any more: exit 9 and names it', () => {
      const lines = auditLines();
      lines[3] = (lines[3] ?? '').slice(0, 20);
      writeLines(lines);
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 4\b/);
    });

    it('audit.log deleted: audit --verify exits 9 (the witness saw 5 entries)', () => {
      fs.rmSync(auditFile());
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 1\b/, /removed/);
    });

    // The writer that meets a damaged log must refuse before it writes anything, not after: the
    // change must not land on disk without its audit entry while the command reports a failure.
    describe('a damaged last line: every writer refuses and changes nothing', () => {
      beforeEach(() => {
        const lines = auditLines();
        lines[4] = (lines[4] ?? '').slice(0, 25);
        writeLines(lines);
      });
      const tool = () => {
        const file = path.join(ws.root, 'bin', 'granted-tool');
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.copyFileSync('/usr/bin/true', file);
        fs.chmodSync(file, 0o755);
        return file;
      };
      const writers: [string, () => [string[], string?]][] = [
        ['put', () => [['put', 'DELTA'], 'delta-value-0000000000']],
        ['put --force', () => [['put', '--force', 'ALPHA'], 'alpha-new-value-11111111']],
        ['rm', () => [['rm', 'BRAVO']]],
        ['key add --token', () => [['key', 'add', '--token']]],
        ['allow', () => [['allow', 'ALPHA', '--to', tool()]]],
        ['trust', () => [['trust']]],
      ];
      for (const [label, command] of writers) {
        it(label, () => {
          const [args, input] = command();
          const result = runUnchanged(ws, args, input === undefined ? {} : { input });
          expect(result.status).toBe(TAMPERED);
          expectOneLine(result, /audit/);
          expect(result.stdout).toBe('');
        });
      }
    });

    it('`vault audit` without --verify prints the entries up to the break, then exits 9', () => {
      writeLines(auditLines().filter((_, i) => i !== 2));
      const result = runUnchanged(ws, ['audit']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 3\b/);
      const shown = result.stdout.trimEnd().split('\n');
      expect(shown).toHaveLength(2);
      expect(shown[0]).toMatch(/^\s*1\s.*init/);
      expect(shown[1]).toMatch(/^\s*2\s.*put.*ALPHA/);

      const json = runUnchanged(ws, ['audit', '--json']);
      expect(json.status).toBe(TAMPERED);
      const entries = json.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { seq: number });
      expect(entries.map((e) => e.seq)).toEqual([1, 2]);
    });
  });

  describe('vault.json public key', () => {
    it('replaced by another valid key: put refused (9, points at `vault trust --fingerprint`); trust cannot unlock; restoring it heals', () => {
      const other = otherVault();
      others.push(other.ws);
      const original = fs.readFileSync(vaultFile());
      const swapped = { ...readJson(vaultFile()), public_key: readJson(path.join(other.ws.vaultDir, 'vault.json')).public_key };
      writeJson(vaultFile(), swapped);

      const putResult = runUnchanged(ws, ['put', 'DELTA'], { input: 'delta-value-which-must-not-be-sealed' });
      expect(putResult.status).toBe(TAMPERED);
      expectOneLine(putResult, /public key/, /vault trust --fingerprint/, other.fingerprint);
      expect(fs.existsSync(secrets('DELTA.json'))).toBe(false);

      // `vault trust` with the real token: the private key does not belong to the swapped key
      const trust = runUnchanged(ws, ['trust']);
      expect(trust.status).toBe(TAMPERED);
      expectOneLine(trust, /does not belong to the public key/);

      // still refused afterwards: trust pinned nothing
      expect(runUnchanged(ws, ['put', 'DELTA'], { input: 'delta-value-which-must-not-be-sealed' }).status).toBe(TAMPERED);

      fs.writeFileSync(vaultFile(), original);
      put(ws, 'DELTA', 'delta-value-now-fine-1234');
      expect(ws.run(['verify']).status).toBe(0);
    });

    it('the whole vault directory replaced by a fresh vault at the same path: put refused until `vault trust --fingerprint`', async () => {
      const other = otherVault();
      others.push(other.ws);
      fs.rmSync(ws.vaultDir, { recursive: true });
      fs.cpSync(other.ws.vaultDir, ws.vaultDir, { recursive: true });

      const refused = runUnchanged(ws, ['put', 'DELTA'], { input: 'delta-value-for-the-impostor' });
      expect(refused.status).toBe(TAMPERED);
      expectOneLine(refused, /vault id changed/, /vault trust --fingerprint/);

      // a wrong fingerprint: refused, nothing pinned
      const wrongFp = `svfp1_${'0'.repeat(40)}`;
      const wrong = runUnchanged(ws, ['trust', '--fingerprint', wrongFp]);
      expect(wrong.status).toBe(TAMPERED);
      expectOneLine(wrong, wrongFp, /nothing was pinned/);
      expect(runUnchanged(ws, ['put', 'DELTA'], { input: 'delta-value-for-the-impostor' }).status).toBe(TAMPERED);

      // the fingerprint its maker published: re-pinned, and put works
      const trusted = ws.run(['trust', '--fingerprint', other.fingerprint]);
      expect(trusted.status, trusted.stderr).toBe(0);
      put(ws, 'DELTA', 'delta-value-for-the-new-vault');
      expect((await openAllSecrets(ws.vaultDir, other.token)).get('DELTA')?.toString()).toBe('delta-value-for-the-new-vault');
    });
  });

  describe('key slots', () => {
    const slotFiles = () => fs.readdirSync(path.join(ws.vaultDir, 'slots')).map((f) => path.join(ws.vaultDir, 'slots', f));

    it("a slot's wrapped_key moved into a slot file with another id: the unlock fails (AAD binds the id)", () => {
      const added = ws.run(['key', 'add', '--token']);
      expect(added.status, added.stderr).toBe(0);
      const secondToken = added.stdout.trim();
      const addedId = /token slot ([0-9a-f]{12})/.exec(added.stderr)?.[1];
      const first = slotFiles().find((f) => readJson(f).id !== addedId);
      const second = slotFiles().find((f) => readJson(f).id === addedId);
      if (first === undefined || second === undefined) throw new Error('expected two slots');

      // first slot's wrapped key (and nonce) now sit in the second slot's file; the first file is gone
      const moved = readJson(first);
      writeJson(second, { ...readJson(second), nonce: moved.nonce, wrapped_key: moved.wrapped_key });
      fs.rmSync(first);

      for (const key of [token, secondToken]) {
        const result = runUnchanged(ws, ['policy'], { env: { VAULT_KEY: key } });
        expect(result.status).toBe(WRONG_KEY);
        expectOneLine(result, /VAULT_KEY opens none/);
      }
    });

    it('the only slot renamed to another id (file and id field): the unlock fails', () => {
      const [only] = slotFiles();
      if (only === undefined) throw new Error('no slot');
      const slot = readJson(only);
      const newId = String(slot.id) === 'aaaaaaaaaaaa' ? 'bbbbbbbbbbbb' : 'aaaaaaaaaaaa';
      fs.rmSync(only);
      writeJson(path.join(ws.vaultDir, 'slots', `${newId}.json`), { ...slot, id: newId });

      const result = runUnchanged(ws, ['verify']);
      expect(result.status).toBe(WRONG_KEY);
      expectOneLine(result, /VAULT_KEY opens none/);
    });

    it("another vault's slot copied in, with that vault's token: the unlock fails (AAD binds the vault id)", () => {
      const other = otherVault();
      others.push(other.ws);
      const [theirs] = fs.readdirSync(path.join(other.ws.vaultDir, 'slots'));
      if (theirs === undefined) throw new Error('no slot');
      fs.copyFileSync(path.join(other.ws.vaultDir, 'slots', theirs), path.join(ws.vaultDir, 'slots', theirs));

      const result = runUnchanged(ws, ['policy'], { env: { VAULT_KEY: other.token } });
      expect(result.status).toBe(WRONG_KEY);
      expectOneLine(result, /VAULT_KEY opens none/);
    });
  });
});
