/**
 * Someone edits the vault files by hand. Every edit must be detected: exit code 9 ('tampered', or
 * the documented code for the case), a one-line `vault: ` message that names the problem, and the
 * detecting command changes nothing on disk (neither the vault nor the user's state directory).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, ROOT, type RunResult, type Workspace } from './helpers/cli.js';
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
        expectOneLine(result, policyFile(), /holds 1 grant\(s\) you saw revoked: ALPHA to .*deploy\.sh.*vault revoke ALPHA --from/);
      }
      // another user, who never saw the revocation, has no way to tell: SECURITY.md says so
      const fresh = ws.run(['policy', '--json'], { env: { XDG_STATE_HOME: path.join(ws.root, 'other-state') } });
      expect(fresh.status, fresh.stderr).toBe(0);
      // the revoke that the message names revokes it again, and the vault is usable
      expect(ws.run(['revoke', 'ALPHA', '--from', script]).status).toBe(0);
      expect(ws.run(['policy']).status).toBe(0);
    });

    it('an older authentic policy.json with fewer grants (an older branch) is used as it is', () => {
      const script = path.join(ws.root, 'deploy.sh');
      fs.writeFileSync(script, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      const older = fs.readFileSync(policyFile());
      expect(ws.run(['allow', 'ALPHA', '--to', script]).status).toBe(0);
      fs.writeFileSync(policyFile(), older);
      const result = ws.run(['policy', '--json']);
      expect(result.status, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout).grants).toEqual([]);
    });

    it('policy.json deleted: policy exits 9 and says it is missing', () => {
      fs.rmSync(policyFile());
      const result = runUnchanged(ws, ['policy']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, policyFile(), /missing/);
    });
  });

  describe('audit/ (the change log: one file per entry, a hash DAG)', () => {
    /** The entries of a log written by one user in turn, each naming the one before: root first. */
    interface Link {
      hash: string;
      file: string;
      text: string;
    }
    let chain: Link[];
    const auditDir = () => path.join(ws.vaultDir, 'audit');
    const readChain = (): Link[] => {
      const links = fs.readdirSync(auditDir()).map((name) => {
        const file = path.join(auditDir(), name);
        const text = fs.readFileSync(file, 'utf8');
        const { parents } = JSON.parse(text) as { parents: string[] };
        return { hash: path.basename(name, '.json'), file, text, parents };
      });
      const ordered: Link[] = [];
      for (let parents: string[] = []; ordered.length < links.length;) {
        const next = links.find((l) => JSON.stringify(l.parents) === JSON.stringify(parents));
        if (next === undefined) throw new Error(`no entry names ${parents.join()} as its only parent`);
        ordered.push({ hash: next.hash, file: next.file, text: next.text });
        parents = [next.hash];
      }
      return ordered;
    };
    const event = (link: Link) => (JSON.parse(link.text) as { event: string }).event;
    const edit = (link: Link, from: string, to: string) => {
      expect(link.text).toContain(from);
      const edited = link.text.replace(from, to);
      fs.writeFileSync(link.file, edited);
      return edited;
    };
    const sha256 = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');
    const auditVerify = () => runUnchanged(ws, ['audit', '--verify']);

    // init, put ALPHA, put BRAVO, put CHARLIE, rm CHARLIE: five entries, each the parent of the next
    beforeEach(() => {
      put(ws, 'CHARLIE', 'charlie-value-5555555555');
      expect(ws.run(['rm', 'CHARLIE']).status).toBe(0);
      chain = readChain();
      expect(chain.map(event)).toEqual(['init', 'put', 'put', 'put', 'rm']);
    });

    it('is intact before anyone touches it: each file is named by the SHA-256 of its bytes', () => {
      for (const link of chain) expect(sha256(link.text), link.file).toBe(link.hash);
      const result = ws.run(['audit', '--verify']);
      expect(result.status).toBe(0);
      expect(result.stderr).toBe('audit log intact: 5 entries; run log intact: 0 entries\n');
    });

    it('a middle entry deleted (a later entry names it): audit --verify and verify exit 9, naming its child', () => {
      fs.rmSync(chain[2]!.file);
      const result = auditVerify();
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, chain[3]!.file, `a parent ${chain[2]!.hash.slice(0, 12)}`, /an entry was removed/);
      const verified = runUnchanged(ws, ['verify']);
      expect(verified.status).toBe(TAMPERED);
      expectOneLine(verified, chain[3]!.file, /an entry was removed/);
    });

    it('the newest entry deleted (as checking out an older branch does): accepted, a known gap of SECURITY.md', () => {
      const security = fs.readFileSync(path.join(ROOT, 'SECURITY.md'), 'utf8');
      expect(security).toContain('The newest audit entries can be removed unnoticed');
      fs.rmSync(chain[4]!.file);
      const result = ws.run(['audit', '--verify']);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stderr).toBe('audit log intact: 4 entries; run log intact: 0 entries\n');
      expect(ws.run(['verify']).status).toBe(0);
      // the next change joins what is left
      put(ws, 'DELTA', 'delta-value-0000000000');
      const after = readChain();
      expect(after.slice(0, 4)).toEqual(chain.slice(0, 4));
      expect(JSON.parse(after[4]!.text)).toMatchObject({
        event: 'put',
        details: { name: 'DELTA' },
        parents: [chain[3]!.hash],
      });
    });

    it('a detail edited in a middle entry: exit 9 and names it (its bytes no longer hash to its name)', () => {
      edit(chain[1]!, '"name":"ALPHA"', '"name":"ALPHB"');
      const result = auditVerify();
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, chain[1]!.file, /it was edited/);
    });

    it('a detail edited in a middle entry, saved under its new hash: exit 9 at the entry naming the old one', () => {
      const edited = edit(chain[1]!, '"name":"ALPHA"', '"name":"ALPHB"');
      fs.renameSync(chain[1]!.file, path.join(auditDir(), `${sha256(edited)}.json`));
      const result = auditVerify();
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, chain[2]!.file, `a parent ${chain[1]!.hash.slice(0, 12)}`, /an entry was removed/);
    });

    it('a detail edited in the newest entry: exit 9 and names it', () => {
      edit(chain[4]!, '"name":"CHARLIE"', '"name":"CHARLIF"');
      const result = auditVerify();
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, chain[4]!.file, /it was edited/);
    });

    it('an entry that is not JSON any more: exit 9 and names it, also under the name of its own hash', () => {
      fs.writeFileSync(chain[3]!.file, chain[3]!.text.slice(0, 20));
      const cut = auditVerify();
      expect(cut.status).toBe(TAMPERED);
      expectOneLine(cut, chain[3]!.file, /it was edited/);
      fs.writeFileSync(chain[3]!.file, chain[3]!.text);

      // planted with a name that matches: it hashes right, and is still no entry
      const planted = path.join(auditDir(), `${sha256('not an entry\n')}.json`);
      fs.writeFileSync(planted, 'not an entry\n', { mode: 0o600 });
      const result = auditVerify();
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, planted, /not a valid audit entry/);
    });

    it('several broken entries: one line that names the first and counts the others', () => {
      fs.rmSync(chain[1]!.file);
      edit(chain[4]!, '"name":"CHARLIE"', '"name":"CHARLIF"');
      const result = auditVerify();
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, chain[4]!.file, /it was edited/, /\(and 1 more broken entry\)$/m);
    });

    // The writer that meets a broken log must refuse before it writes anything, not after: the
    // change must not land on disk without its audit entry while the command reports a failure.
    // (an entry edited in place after this user's own write is the verifier's to find: the test after these)
    const planted = '{"not":"an audit entry"}\n';
    const damages: [string, () => void, RegExp][] = [
      ['an entry planted that is not one',
        () => fs.writeFileSync(path.join(auditDir(), `${sha256(planted)}.json`), planted), /not a valid audit entry/],
      ['a middle entry deleted', () => fs.rmSync(chain[2]!.file), /an entry was removed/],
    ];
    for (const [damage, make, reason] of damages) {
      describe(`${damage}: every writer refuses and changes nothing`, () => {
        beforeEach(() => make());
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
          ['rekey', () => [['rekey']]],
        ];
        for (const [label, command] of writers) {
          it(label, () => {
            const [args, input] = command();
            const result = runUnchanged(ws, args, input === undefined ? {} : { input });
            expect(result.status).toBe(TAMPERED);
            expectOneLine(result, `${auditDir()}/`, reason);
            expect(result.stdout).toBe('');
          });
        }
      });
    }

    // FORMAT.md, "audit/": a writer reads every entry, so an entry edited after this user read it is caught too
    it('an older entry edited after this user read it: a write goes on (it reads new entries), the edit stays found', () => {
      edit(chain[1]!, '"name":"ALPHA"', '"name":"ALPHB"');
      // the user's index (docs/FORMAT.md, "audit/") knows the entry by its hash: a write does not read it again
      const put = ws.run(['put', 'DELTA'], { input: 'delta-value-0000000000' });
      expect(put.status, put.stderr).toBe(0);
      // and does not hide it: the verifier reads every entry
      for (const args of [['audit', '--verify'], ['verify']]) {
        const result = ws.run(args);
        expect(result.status, args.join(' ')).toBe(TAMPERED);
        expect(result.stderr).toMatch(/it was edited/);
      }
      // a user who never read it (no index) is refused at the write
      const elsewhere = { XDG_STATE_HOME: path.join(ws.root, 'other-state') };
      const entries = fs.readdirSync(path.join(ws.vaultDir, 'audit')).sort();
      const other = ws.run(['put', 'ECHO'], { input: 'echo-value-00000000000', env: elsewhere });
      expect(other.status).toBe(TAMPERED);
      expect(fs.readdirSync(path.join(ws.vaultDir, 'audit')).sort(), 'no entry added').toEqual(entries);
      expect(fs.existsSync(path.join(ws.vaultDir, 'secrets', 'ECHO.json'))).toBe(false);
    });

    it('`vault audit` without --verify prints the intact entries, parents first, then exits 9 naming the break', () => {
      fs.rmSync(chain[2]!.file);
      const result = runUnchanged(ws, ['audit']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, chain[3]!.file, /an entry was removed/);
      const shown = result.stdout.trimEnd().split('\n');
      expect(shown.map((line) => line.slice(0, 12))).toEqual([0, 1, 3, 4].map((i) => chain[i]!.hash.slice(0, 12)));
      expect(shown[0]).toMatch(/\binit\b/);
      expect(shown[1]).toMatch(/\bput\b.*ALPHA/);
      expect(shown[2]).toMatch(/\bput\b.*CHARLIE/);
      expect(shown[3]).toMatch(/\brm\b.*CHARLIE/);

      const json = runUnchanged(ws, ['audit', '--json']);
      expect(json.status).toBe(TAMPERED);
      type Shown = { hash: string; parents: string[]; seq?: number };
      const entries = json.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Shown);
      expect(entries.map((e) => e.hash)).toEqual([0, 1, 3, 4].map((i) => chain[i]!.hash));
      expect(entries[2]!.parents).toEqual([chain[2]!.hash]);
      expect(entries.every((e) => e.seq === undefined)).toBe(true);

      // an edited entry is not shown: its bytes are no longer what was written
      fs.writeFileSync(chain[2]!.file, chain[2]!.text);
      edit(chain[1]!, '"name":"ALPHA"', '"name":"ALPHB"');
      const edited = runUnchanged(ws, ['audit']);
      expect(edited.status).toBe(TAMPERED);
      expect(edited.stdout).not.toMatch(/ALPH[AB]/);
      expect(edited.stdout.trimEnd().split('\n')).toHaveLength(4);
    });
  });

  describe('audit.log of sealvault 0.1 (read-only, checked against the witness)', () => {
    const golden = () => path.join(ws.root, 'golden');
    const legacyLog = () => path.join(golden(), 'audit.log');
    const legacyLines = () => fs.readFileSync(legacyLog(), 'utf8').trimEnd().split('\n');
    const writeLegacy = (lines: string[]) => fs.writeFileSync(legacyLog(), `${lines.join('\n')}\n`);

    // a copy of test/fixtures/golden-v1 (eleven entries), verified once (an unlock: the first one
    // also records the policy it saw): the witness saw entry 11
    beforeEach(() => {
      const fixture = path.join(ROOT, 'test', 'fixtures', 'golden-v1');
      fs.cpSync(path.join(fixture, 'vault'), golden(), { recursive: true });
      for (const entry of fs.readdirSync(golden(), { recursive: true, withFileTypes: true })) {
        const full = path.join(entry.parentPath, entry.name);
        const shared = ['vault.json', '.gitignore'].includes(entry.name);
        fs.chmodSync(full, entry.isDirectory() ? 0o700 : shared ? 0o644 : 0o600);
      }
      fs.chmodSync(golden(), 0o700);
      ws.env.VAULT_DIR = golden();
      ws.env.VAULT_KEY = (readJson(path.join(fixture, 'VECTORS.json')) as { token: string }).token;
      const result = ws.run(['verify']);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stderr).toContain('audit log of 11 entries intact');
      expect(legacyLines()).toHaveLength(11);
    });

    it('a middle line deleted: audit --verify exits 9 and names that line', () => {
      writeLegacy(legacyLines().filter((_, i) => i !== 2));
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, legacyLog(), /line 3\b/);
    });

    it('the last line deleted: detected through the audit witness in the state directory', () => {
      writeLegacy(legacyLines().slice(0, 10));
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 11\b/, /removed/);
      const verified = runUnchanged(ws, ['verify']);
      expect(verified.status).toBe(TAMPERED);
      expectOneLine(verified, legacyLog(), /line 11\b/);
    });

    it('a detail edited in a middle line: exit 9, the break is reported at the next line', () => {
      const lines = legacyLines();
      expect(lines[2]).toContain('"event":"put"');
      lines[2] = lines[2]!.replace('"event":"put"', '"event":"pub"');
      writeLegacy(lines);
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 4\b/, /previous entry/);
    });

    it('audit.log deleted: audit --verify exits 9 (the witness saw 11 entries)', () => {
      fs.rmSync(legacyLog());
      const result = runUnchanged(ws, ['audit', '--verify']);
      expect(result.status).toBe(TAMPERED);
      expectOneLine(result, /line 1\b/, /removed/);
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
