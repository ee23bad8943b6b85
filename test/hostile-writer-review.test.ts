/**
 * The hostile writer of the vault directory, after the review of the first round
 * (test/hostile-writer.test.ts): what the fixes of that review promise, each against the real CLI,
 * as root and as an unprivileged owner of the vault.
 *
 * - A failed `vault init` removes only what it made (undoInit): planted links are at most unlinked,
 *   never followed; a stranger's file stays; through the CLI, an init that runs out of inodes leaves
 *   the directory as it was found.
 * - Slots at the KDF cap: one unlock spends at most KDF_BUDGET on passphrase slots; the rest are
 *   named in one warning, and the token (or the real passphrase) still opens at once.
 * - Audit `details` nested deeper than MAX_DETAILS_DEPTH: not a valid entry (9, one line, no stack
 *   trace), even when its hash and parents hold; a member named `__proto__` is an ordinary member.
 * - `vault audit --accept` after an entry was removed or rewritten: the broken entries (and those
 *   after them) kept aside in audit.broken-TIME/, an `accept` entry naming them, and the vault usable
 *   again; a planted audit.log of sealvault 0.1 that does not verify, kept aside byte for byte.
 * - An audit entry and .lock hard-linked to a file outside: 13, the file's bytes and owner unchanged
 *   (root writing into another user's vault included, whose files root chowns).
 * - A torn last line of the run log after a damaged line: refused (125) before anything is set aside.
 * - A torn last line of the run log of exactly the line cap: tampering, not a torn line to set aside.
 * - `__proto__` as a secret name, `--env` and `--pass-env` name; U+202E in planted file names and
 *   slot kinds printed escaped; `put --force` over a directory: 13.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_DETAILS_DEPTH } from '../src/vault/format.js';
import { KDF_BUDGET, KDF_CAP } from '../src/vault/keyslots.js';
import { SIZE_CAPS, VaultDir } from '../src/vault/vault-dir.js';
import { undoInit } from '../src/vault/vault.js';
import {
  initWithToken, makeWorkspace, put, RELEASE_CLI, type RunResult, TEST_CLI, type Workspace,
} from './helpers/cli.js';
import { BOUND, expectBounded, giveTo, grantedVault, HOSTILE_SECRET } from './helpers/hostile.js';
import { expectOneLine, runUnchanged, snapshot } from './helpers/disk.js';
import { IS_ROOT, RUNNERS, runnerAccount } from './helpers/users.js';

const USAGE = 2;
const CORRUPT = 4;
const WRONG_KEY = 7;
const NO_UNLOCK = 8;
const TAMPERED = 9;
const BAD_SECRET = 12;
const UNSAFE = 13;
const EXEC_FAILED = 125;
const SECRET = HOSTILE_SECRET;
const NEW_VALUE = 'new-value-0123456789';
/** One audit line with its newline (docs/FORMAT.md, "audit.log"). */
const LINE_CAP = SIZE_CAPS.auditLine;
const RLO = '\u202e';

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');


/** `levels` objects nested in each other, as JSON text: `{"a":{"a":…1…}}`. */
const nested = (levels: number) => `${'{"a":'.repeat(levels - 1)}{"a":1}${'}'.repeat(levels - 1)}`;

for (const runner of RUNNERS) {
  describe(`the hostile writer after the review, the vault owned by ${runner}`, () => {
    let ws: Workspace;
    let script: string;
    let marker: string;
    const account = () => runnerAccount(runner);
    /** Gives what the test made to the vault's owner, as a writer of the vault would have it. */
    const own = (file: string) => giveTo(account(), file);
    const at = (...parts: string[]) => path.join(ws.vaultDir, ...parts);
    const slotFiles = () => fs.readdirSync(at('slots')).map((f) => at('slots', f));
    const exec = () => ws.run(['exec', '--', script], BOUND);
    type Entry = { event: string; details: Record<string, unknown>; parents: string[] };
    /** The entries of audit/, by hash, as their files hold them. */
    const dagEntries = () => new Map(fs.readdirSync(at('audit')).filter((f) => /^[0-9a-f]{64}\.json$/.test(f))
      .map((f) => [f.slice(0, 64), JSON.parse(fs.readFileSync(at('audit', f), 'utf8')) as Entry]));
    /** The vault's history as `vault audit --json` shows it, parents first. */
    const events = () => ws.run(['audit', '--json']).stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Entry);
    /** The entries no entry names as a parent: what the next entry joins. */
    const heads = () => {
      const entries = dagEntries();
      const named = new Set([...entries.values()].flatMap((e) => e.parents));
      return [...entries.keys()].filter((h) => !named.has(h)).sort();
    };
    /**
     * The text of an entry joining the heads, and its file name (the hash of its bytes): only its `details`
     * (JSON text, kept as written) can be wrong.
     */
    const joiningEntry = (detailsJson: string) => {
      const text = `{"time":"${new Date().toISOString()}","event":"put","actor":{"uid":0,"user":"root"},` +
        `"details":${detailsJson},"parents":${JSON.stringify(heads())}}\n`;
      return { text, name: `${sha256(text)}.json` };
    };
    /** Adds an entry as a writer of the vault directory can. */
    const plantEntry = (detailsJson: string) => {
      const { text, name } = joiningEntry(detailsJson);
      fs.writeFileSync(at('audit', name), text);
      own(at('audit', name));
      return name;
    };
    /** This user's run log of the vault: `runs/<vault id in base64url>/audit.log` in their state directory. */
    const runLog = () => {
      const { vault_id: id } = JSON.parse(fs.readFileSync(at('vault.json'), 'utf8')) as { vault_id: string };
      const runs = path.join(ws.env.XDG_STATE_HOME!, 'sealvault', 'runs');
      return path.join(runs, Buffer.from(id, 'base64').toString('base64url'), 'audit.log');
    };
    const runLines = () => fs.readFileSync(runLog(), 'utf8').split('\n').filter((l) => l !== '');
    const tornSaved = () => fs.readdirSync(path.dirname(runLog())).filter((f) => f.startsWith('audit.log.torn-'));

    beforeEach(() => {
      ({ ws, script, marker } = grantedVault(account()));
    });
    afterEach(() => ws.cleanup());

    describe('a failed init removes only what it made (undoInit, through the directory fd)', () => {
      const SLOT_ID = 'a1b2c3d4e5f6';
      /** A directory outside the vault with a file in it, owned by the vault's owner (their ~/.ssh, say). */
      const outsideDir = (name: string, files: string[]) => {
        const dir = path.join(ws.root, 'home', name);
        fs.mkdirSync(dir, { recursive: true });
        own(dir);
        for (const file of files) {
          fs.writeFileSync(path.join(dir, file), `${name}/${file}\n`);
          own(path.join(dir, file));
        }
        return dir;
      };
      /** What init would have left: the vault directory, with `plant` run in it. */
      const halfMade = (plant: (dir: string) => void) => {
        const dir = path.join(ws.root, 'half-made');
        fs.mkdirSync(dir, { mode: 0o700 });
        own(dir);
        plant(dir);
        for (const entry of fs.readdirSync(dir, { recursive: true }) as string[]) own(path.join(dir, entry));
        return dir;
      };
      /**
       * undoInit as Vault.create calls it when init fails: on the directory's fd, with the slot it made. It
       * runs in this process, as root for either owner: root, who may remove anything, is the harsher case.
       */
      const undo = (dir: string) => {
        const root = VaultDir.open(dir);
        expect(root).toBeDefined();
        try {
          undoInit(root!, SLOT_ID);
        } finally {
          root!.close();
        }
      };
      /** `name` in `dir` is gone, or still the same link: never followed. */
      const expectAtMostUnlinked = (dir: string, name: string, target: string) => {
        const full = path.join(dir, name);
        if (!fs.existsSync(full) && !isLink(full)) return;
        expect(isLink(full), `${name} is no longer a link`).toBe(true);
        expect(fs.readlinkSync(full)).toBe(target);
      };
      const isLink = (full: string) => {
        try {
          return fs.lstatSync(full).isSymbolicLink();
        } catch {
          return false;
        }
      };

      it('every entry of the layout a link to outside: nothing outside is removed or changed', () => {
        const outside = path.join(ws.root, 'home');
        const links: Record<string, string> = {
          '.tmp': outsideDir('tmp-target', ['id_ed25519', 'known_hosts']),
          slots: outsideDir('slots-target', [`${SLOT_ID}.json`, 'other.json']),
          secrets: outsideDir('secrets-target', ['DB.json']),
          audit: outsideDir('audit-target', [`${'a'.repeat(64)}.json`]),
        };
        for (const name of ['vault.json', 'policy.json', 'audit.log', '.gitignore', '.lock']) {
          links[name] = path.join(outsideDir('files', [name]), name);
        }
        const dir = halfMade((d) => {
          for (const [name, target] of Object.entries(links)) fs.symlinkSync(target, path.join(d, name));
        });
        const before = snapshot(outside);
        undo(dir);
        expect(snapshot(outside), 'files outside the vault changed').toEqual(before);
        for (const [name, target] of Object.entries(links)) expectAtMostUnlinked(dir, name, target);
      });

      it('real directories holding links: the links are removed, not followed; a stranger\'s files stay', () => {
        const outside = path.join(ws.root, 'home');
        const secretFile = path.join(outsideDir('keys', ['id_ed25519']), 'id_ed25519');
        const secretDir = outsideDir('ssh', ['authorized_keys']);
        const dir = halfMade((d) => {
          fs.mkdirSync(path.join(d, 'slots'));
          fs.symlinkSync(secretFile, path.join(d, 'slots', `${SLOT_ID}.json`));
          fs.writeFileSync(path.join(d, 'slots', 'bbbbbbbbbbbb.json'), '{}\n'); // not init's
          fs.mkdirSync(path.join(d, '.tmp'));
          fs.symlinkSync(secretFile, path.join(d, '.tmp', 'policy.json.123.abcdef'));
          fs.symlinkSync(secretDir, path.join(d, '.tmp', 'a-dir'));
          fs.mkdirSync(path.join(d, '.tmp', 'a-real-dir'));
          fs.writeFileSync(path.join(d, '.tmp', 'a-real-dir', 'kept'), 'kept\n');
          fs.mkdirSync(path.join(d, 'secrets'));
          fs.mkdirSync(path.join(d, 'audit'));
          fs.symlinkSync(secretFile, path.join(d, 'audit', `${'a'.repeat(64)}.json`));
          fs.writeFileSync(path.join(d, 'vault.json'), '{}\n');
          // init makes no audit.log (sealvault 0.1's log): a link by that name is a stranger's
          fs.symlinkSync(secretFile, path.join(d, 'audit.log'));
          fs.writeFileSync(path.join(d, 'README'), 'a stranger\'s file\n');
        });
        const before = snapshot(outside);
        undo(dir);
        expect(snapshot(outside), 'files outside the vault changed').toEqual(before);
        const left = (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
        // init's own files and links are gone; a directory holding what init did not make stays
        expect(left).toEqual([
          '.tmp', '.tmp/a-real-dir', '.tmp/a-real-dir/kept', 'README', 'audit.log', 'slots', 'slots/bbbbbbbbbbbb.json',
        ]);
        expectAtMostUnlinked(dir, 'audit.log', secretFile);
      });

      it.skipIf(!IS_ROOT)('through the CLI: an init that runs out of inodes leaves the directory as found', () => {
        const small = path.join(ws.root, 'small');
        fs.mkdirSync(small);
        // inodes for the tmpfs root, the vault, slots, secrets, .tmp, .lock, .gitignore and the slot:
        // the temporary file of policy.json finds none (ENOSPC), after init made all of those
        expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=8', 'tmpfs', small]).status).toBe(0);
        try {
          const dir = path.join(small, 'vault');
          fs.mkdirSync(dir, { mode: 0o700 });
          own(dir);
          const env = { VAULT_DIR: dir, VAULT_KEY: undefined };
          const failed = ws.run(['init', '--token'], { env, ...BOUND });
          expect(failed.status, failed.stderr).toBe(1);
          // failed late: everything above was made, and is what undoInit had to remove
          expectOneLine(failed, /openat policy\.json\.[0-9a-f.]+ failed: ENOSPC/);
          expect(fs.readdirSync(dir), 'what the failed init made').toEqual([]);
          // as found: init can simply be run again
          expect(spawnSync('mount', ['-o', 'remount,nr_inodes=1000', small]).status).toBe(0);
          const again = ws.run(['init', '--token'], { env, ...BOUND });
          expect(again.status, again.stderr).toBe(0);
        } finally {
          spawnSync('umount', ['-l', small]);
        }
      });
    });

    describe('passphrase slots at the KDF cap: one unlock spends at most KDF_BUDGET', () => {
      const PLANTED = ['aaaaaaaaaaa1', 'aaaaaaaaaaa2', 'aaaaaaaaaaa3'];
      /** The planted slots past the budget: after the token (cost 0) and the real slot, in file-name order. */
      let pastBudget: string[];

      beforeEach(() => {
        const before = new Set(slotFiles());
        const added = ws.run(['key', 'add', '--passphrase', '--insecure-test-kdf'], {
          cli: TEST_CLI, env: { VAULT_NEW_PASSPHRASE: 'correct horse battery' },
        });
        expect(added.status, added.stderr).toBe(0);
        const real = slotFiles().find((f) => !before.has(f))!;
        const shape = JSON.parse(fs.readFileSync(real, 'utf8')) as { kdf: { opslimit: number; memlimit: number } };
        for (const id of PLANTED) {
          const file = at('slots', `${id}.json`);
          const atCap = { ...shape, id, kdf: { ...shape.kdf, opslimit: KDF_CAP.opslimit, memlimit: KDF_CAP.memlimit } };
          fs.writeFileSync(file, `${JSON.stringify(atCap)}\n`);
          own(file);
        }
        const capCost = KDF_CAP.opslimit * KDF_CAP.memlimit;
        const fit = Math.floor((KDF_BUDGET - shape.kdf.opslimit * shape.kdf.memlimit) / capCost);
        expect(fit, 'the budget is twice the cap: the real slot and one at the cap').toBe(1);
        pastBudget = PLANTED.slice(fit);
      });

      /** The one warning of an unlock, naming exactly the slots past the budget. */
      const budgetWarning = () =>
        `vault: warning: passphrase slot(s) ${pastBudget.join(', ')} are not tried: together with the slots before ` +
        'them they cost more than one unlock may spend (docs/FORMAT.md, "Unlock order"); remove slots you do not ' +
        'know (`vault key list`)';
      const expectBudgetWarning = (result: RunResult) => expect(result.stderr).toBe(`${budgetWarning()}\n`);

      it('the token still opens at once, with one warning naming the slots past the budget', () => {
        const started = Date.now();
        const opened = ws.run(['policy'], BOUND);
        expectBounded(opened);
        expect(opened.status, opened.stderr).toBe(0);
        expect(Date.now() - started).toBeLessThan(BOUND.timeout);
        expectBudgetWarning(opened);
        expect(exec().stdout).toBe(`db=${SECRET.length}\n`);
      });

      it('the real passphrase opens at once: the cheap slot is tried before those at the cap', () => {
        const env = { VAULT_KEY: undefined, VAULT_PASSPHRASE: 'correct horse battery' };
        const opened = ws.run(['policy'], { env, ...BOUND });
        expectBounded(opened);
        expect(opened.status, opened.stderr).toBe(0);
        expectBudgetWarning(opened);
      });

      it('a wrong passphrase runs argon2id only for the slots within the budget, not for every planted one', () => {
        const env = { VAULT_KEY: undefined, VAULT_PASSPHRASE: 'wrong passphrase!' };
        // one argon2id at the cap takes seconds (more beside another test worker): a generous bound, and the
        // count of slots tried, from the refusal itself, as the exact check
        const refused = ws.run(['policy'], { env, timeout: 45_000 });
        expectBounded(refused);
        expect(refused.status).toBe(WRONG_KEY);
        const lines = refused.stderr.trimEnd().split('\n');
        expect(lines).toHaveLength(2);
        expect(lines[0]).toBe(budgetWarning());
        // the real slot and the one at the cap within the budget
        expect(lines[1]).toBe('vault: VAULT_PASSPHRASE opens none of this vault\'s 2 passphrase slot(s): wrong ' +
          'passphrase');
      });
    });

    describe(`audit details nested deeper than ${MAX_DETAILS_DEPTH}`, () => {
      it(`${MAX_DETAILS_DEPTH} levels (details itself the first) is an entry like any other`, () => {
        plantEntry(nested(MAX_DETAILS_DEPTH));
        const verify = ws.run(['audit', '--verify'], BOUND);
        expect(verify.status, verify.stderr).toBe(0);
        // init, the put of DB, its grant and this one; the exec of grantedVault went to the run log
        expect(verify.stderr).toBe('audit log intact: 4 entries; run log intact: 2 entries\n');
        const shown = ws.run(['audit', '--json'], BOUND);
        expect(shown.status, shown.stderr).toBe(0);
        expect(shown.stdout.trimEnd().split('\n').at(-1)).toContain(`"details":${nested(MAX_DETAILS_DEPTH)}`);
      });

      for (const levels of [MAX_DETAILS_DEPTH + 1, 100_000]) {
        it(`${levels} levels, its hash and parents intact: not a valid entry (9), one line, no stack trace`, () => {
          const { text } = joiningEntry(nested(levels));
          expect(Buffer.byteLength(text)).toBeLessThanOrEqual(SIZE_CAPS.auditEntry);
          const name = plantEntry(nested(levels));
          for (const args of [['audit', '--verify'], ['audit'], ['audit', '--json']]) {
            const result = runUnchanged(ws, args, BOUND);
            expectBounded(result);
            expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(TAMPERED);
            expectOneLine(result, `${name}: not a valid audit entry`);
            expect(result.stderr).not.toMatch(/RangeError|call stack|internal error|\n\s+at /);
          }
          const refused = runUnchanged(ws, ['put', 'NEW'], { input: NEW_VALUE, ...BOUND });
          expect(refused.status).toBe(TAMPERED);
          expectOneLine(refused, `${name}: not a valid audit entry`, /nothing was changed/);
        });
      }
    });

    describe('vault audit --accept: the way out of a history that cannot be restored', () => {
      /** The audit.broken-TIME/ directories of the vault. */
      const brokenDirs = () => fs.readdirSync(ws.vaultDir).filter((f) => f.startsWith('audit.broken-'));
      /** accept, then a put and a verification on the history left; returns the accept entry's details. */
      const acceptAndGoOn = (entriesLeft: number) => {
        const accepted = ws.run(['audit', '--accept'], BOUND);
        expect(accepted.status, accepted.stderr).toBe(0);
        const accept = events().at(-1)!;
        expect(accept.event).toBe('accept');
        put(ws, 'NEW', NEW_VALUE);
        const verify = ws.run(['audit', '--verify']);
        expect(verify.status, verify.stderr).toBe(0);
        expect(verify.stderr).toBe(`audit log intact: ${entriesLeft + 2} entries; run log intact: 2 entries\n`);
        expect(events().map((e) => e.event).slice(-2)).toEqual(['accept', 'put']);
        expect(exec().stdout).toBe(`db=${SECRET.length}\n`);
        return accept.details;
      };
      const hashOf = (event: string) => [...dagEntries()].find(([, e]) => e.event === event)![0];

      it('a middle entry removed: verify and put refuse (9); accept (with an unlock) sets aside what named it', () => {
        const [removed, allow] = [hashOf('put'), hashOf('allow')];
        const allowBytes = fs.readFileSync(at('audit', `${allow}.json`));
        fs.rmSync(at('audit', `${removed}.json`));
        const verify = runUnchanged(ws, ['audit', '--verify']);
        expect(verify.status).toBe(TAMPERED);
        expectOneLine(verify, `${allow}.json: it names a parent ${removed.slice(0, 12)}… that is not there`);
        const refused = runUnchanged(ws, ['put', 'NEW'], { input: NEW_VALUE });
        expect(refused.status).toBe(TAMPERED);
        expectOneLine(refused, /an entry was removed; nothing was changed/, /vault audit --accept/);
        // a change like any other: a writer of the directory without a key cannot accept
        const locked = runUnchanged(ws, ['audit', '--accept'], { env: { VAULT_KEY: undefined }, ...BOUND });
        expect(locked.status).toBe(NO_UNLOCK);
        const details = acceptAndGoOn(1);
        expect(details).toEqual({ set_aside: null, entries: [allow], witness_was: null });
        const [aside] = brokenDirs();
        expect(fs.readdirSync(at(aside!))).toEqual([`${allow}.json`]);
        expect(fs.readFileSync(at(aside!, `${allow}.json`)).equals(allowBytes), 'kept byte for byte').toBe(true);
      });

      it('an entry rewritten in place: it and the entries after it are kept aside, byte for byte, and named', () => {
        const [put, allow] = [hashOf('put'), hashOf('allow')];
        const entry = dagEntries().get(put)!;
        const rewritten = `${JSON.stringify({ ...entry, details: { name: 'OTHER' } })}\n`;
        fs.writeFileSync(at('audit', `${put}.json`), rewritten);
        const verify = runUnchanged(ws, ['audit', '--verify']);
        expect(verify.status).toBe(TAMPERED);
        expectOneLine(verify, `${put}.json: its bytes do not hash to its name: it was edited`);
        // a writer that has not read that entry before refuses (one that has goes on: docs/FORMAT.md, "audit/")
        const fresh = { XDG_STATE_HOME: path.join(ws.env.HOME!, 'fresh-state') };
        const before = fs.readdirSync(at('audit')).sort();
        const refused = ws.run(['put', 'NEW'], { input: NEW_VALUE, env: fresh });
        expect(refused.status).toBe(TAMPERED);
        expect(fs.readdirSync(at('audit')).sort(), 'no entry added').toEqual(before);
        expectOneLine(refused, /it was edited; nothing was changed/, /`vault audit --accept`/);
        const details = acceptAndGoOn(1);
        expect(details).toEqual({ set_aside: null, entries: [put, allow].sort(), witness_was: null });
        const [aside] = brokenDirs();
        expect(fs.readFileSync(at(aside!, `${put}.json`), 'utf8')).toBe(rewritten);
      });

      it('a planted audit.log of sealvault 0.1 that does not verify: kept aside byte for byte, named, hashed', () => {
        // the run log's two lines, the first rewritten: a chain that breaks at line 2
        const [first, second] = runLines();
        const planted = `${JSON.stringify({ ...JSON.parse(first!), details: {} })}\n${second}\n`;
        fs.writeFileSync(at('audit.log'), planted);
        own(at('audit.log'));
        const verify = runUnchanged(ws, ['audit', '--verify']);
        expect(verify.status).toBe(TAMPERED);
        expectOneLine(verify, /audit\.log line 2: /);
        const details = acceptAndGoOn(3);
        const kept = fs.readdirSync(ws.vaultDir).filter((f) => f.startsWith('audit.log.before-'));
        expect(kept).toHaveLength(1);
        expect(fs.readFileSync(at(kept[0]!), 'utf8')).toBe(planted);
        const aside = { set_aside: kept[0], bytes: Buffer.byteLength(planted), sha256: sha256(planted) };
        expect(details).toEqual({ ...aside, entries: [], witness_was: null });
        expect(brokenDirs()).toEqual([]);
      });
    });

    describe('hard links to a file outside the vault', () => {
      // the owner's own file elsewhere: for an entry a valid one joining the heads, which a put would join in turn;
      // for the audit.log of sealvault 0.1 a valid chain, which audit --verify reads
      const cases: [string, () => { rel: string; text: string }, string[][]][] = [
        ['an audit entry', () => {
          const { text, name } = joiningEntry('{"name":"PLANTED"}');
          return { rel: path.join('audit', name), text };
        }, [['put', 'NEW'], ['audit', '--verify']]],
        ['.lock', () => ({ rel: '.lock', text: '' }), [['put', 'NEW']]],
        ['audit.log', () => ({ rel: 'audit.log', text: fs.readFileSync(runLog(), 'utf8') }), [['audit', '--verify']]],
      ];
      for (const [label, make, commands] of cases) {
        const refusing = commands.map((c) => c.join(' ')).join(', ');
        it(`${label}: ${refusing} refuse (13) with one line; the outside file's bytes and owner are unchanged`, () => {
          const { rel, text } = make();
          const outside = path.join(ws.root, 'home', `outside-${path.basename(rel)}`);
          fs.writeFileSync(outside, text, { mode: 0o600 });
          own(outside);
          fs.rmSync(at(rel), { force: true });
          fs.linkSync(outside, at(rel));
          const before = fs.statSync(outside);
          const bytes = fs.readFileSync(outside);
          for (const args of commands) {
            const result = runUnchanged(ws, args, { input: NEW_VALUE, ...BOUND });
            expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(UNSAFE);
            expectOneLine(result, `${at(rel)} is a hard link (2 names for one file), where the vault keeps a regular`);
          }
          // exec opens none of these (its release goes to the user's run log): it runs, and leaves the file alone
          const ran = exec();
          expect(ran.status, ran.stderr).toBe(0);
          const after = fs.statSync(outside);
          expect(fs.readFileSync(outside).equals(bytes), 'the outside file changed').toBe(true);
          expect([after.uid, after.gid, after.mode, after.nlink]).toEqual([before.uid, before.gid, before.mode, 2]);
        });
      }
    });

    describe('a torn last line of the run log after a damaged line', () => {
      const torn = '{"seq":99,"time":"2026-';
      const cases: [string, (line: string) => string][] = [
        ['rewritten as no entry', () => '{"seq": "damaged"}'],
        ['cut short', (line) => line.slice(0, 40)],
      ];
      for (const [label, change] of cases) {
        it(`the line before it ${label}: exec refuses (125), and nothing is set aside or cut`, () => {
          const lines = runLines();
          fs.writeFileSync(runLog(), `${[...lines.slice(0, -1), change(lines.at(-1)!)].join('\n')}\n${torn}`);
          const ran = runUnchanged(ws, ['exec', '--', script], BOUND);
          expect(ran.status, ran.stderr).toBe(EXEC_FAILED);
          expectOneLine(ran, /nothing was released and nothing ran: .*the line before its torn last line is damaged/);
          expect(fs.existsSync(marker), 'the target ran').toBe(false);
          expect(tornSaved()).toEqual([]);
          expect(runUnchanged(ws, ['audit', '--runs', '--verify'], BOUND).status).toBe(TAMPERED);
        });
      }
    });

    describe('a torn last line of the run log at the line cap', () => {
      const tear = (bytes: number) => fs.appendFileSync(runLog(), Buffer.alloc(bytes, 0x61));

      it(`exactly ${LINE_CAP} bytes with no newline: tampering, exec refuses (125), not set aside`, () => {
        tear(LINE_CAP);
        const result = runUnchanged(ws, ['exec', '--', script], BOUND);
        expectBounded(result);
        expect(result.status, result.stderr).toBe(EXEC_FAILED);
        expectOneLine(result, /audit\.log: its last line is damaged, so nothing more can be chained to it/);
        expect(fs.existsSync(marker), 'the target ran').toBe(false);
        const verify = runUnchanged(ws, ['audit', '--runs', '--verify'], BOUND);
        expect(verify.status).toBe(TAMPERED);
        expectOneLine(verify, /audit\.log line 3: longer than/);
      });

      it(`one byte less (${LINE_CAP - 1}): a torn line like any other, set aside; exec goes on`, () => {
        tear(LINE_CAP - 1);
        const result = ws.run(['exec', '--', script], BOUND);
        expect(result.status, result.stderr).toBe(0);
        const saved = tornSaved();
        expect(saved).toHaveLength(1);
        expect(fs.statSync(path.join(path.dirname(runLog()), saved[0]!)).size).toBe(LINE_CAP - 1);
        const events = runLines().map((l) => (JSON.parse(l) as { event: string }).event);
        expect(events.slice(-3)).toEqual(['torn', 'release', 'exit']);
        expect(ws.run(['audit', '--runs', '--verify']).status).toBe(0);
      });
    });

    describe('__proto__', () => {
      it('as a secret name: put refuses (12); a planted __proto__.json is ignored; __PROTO__ is a plain name', () => {
        const refused = runUnchanged(ws, ['put', '__proto__'], { input: NEW_VALUE });
        expect(refused.status).toBe(BAD_SECRET);
        expectOneLine(refused, /secret name "__proto__" is not valid/);
        const planted = at('secrets', '__proto__.json');
        fs.copyFileSync(at('secrets', 'DB.json'), planted);
        own(planted);
        put(ws, '__PROTO__', NEW_VALUE);
        const listed = runUnchanged(ws, ['list'], BOUND);
        expect(listed.status, listed.stderr).toBe(0);
        expect(listed.stderr).toBe('');
        expect(listed.stdout.split('\n').map((l) => l.split(/\s+/)[0])).toEqual(['NAME', 'DB', '__PROTO__', '']);
        const json = runUnchanged(ws, ['list', '--json'], BOUND);
        expect(json.status, json.stderr).toBe(0);
        const rows = JSON.parse(json.stdout) as { name: string; size: number }[];
        expect(rows.map((r) => [r.name, r.size])).toEqual([['DB', SECRET.length], ['__PROTO__', NEW_VALUE.length]]);
      });

      for (const flag of [['--env', '__proto__=x'], ['--pass-env', '__proto__']]) {
        it(`allow ${flag.join(' ')}: refused (2) with one line, the policy unchanged`, () => {
          const result = runUnchanged(ws, ['allow', 'DB', '--to', script, ...flag], BOUND);
          expect(result.status).toBe(USAGE);
          const says = flag[0] === '--env' ? '--env takes NAME=VALUE, not "__proto__=x"' : '--pass-env "__proto__":';
          expectOneLine(result, says);
          expect(exec().stdout).toBe(`db=${SECRET.length}\n`);
        });
      }

      it('exec has no --env: `exec --env __proto__=x` is a usage error (2), nothing runs', () => {
        const result = runUnchanged(ws, ['exec', '--env', '__proto__=x', '--', script], BOUND);
        expect(result.status).toBe(USAGE);
        expectOneLine(result, /unknown option '--env'/);
        expect(fs.existsSync(marker)).toBe(false);
      });

      it('as a member of audit details: an ordinary member, verified and shown as written', () => {
        const details = '{"name":"DB","__proto__":{"polluted":true}}';
        plantEntry(details);
        const verify = ws.run(['audit', '--verify']);
        expect(verify.status, verify.stderr).toBe(0);
        const shown = ws.run(['audit', '--json']);
        expect(shown.status, shown.stderr).toBe(0);
        expect(shown.stdout.trimEnd().split('\n').at(-1)).toContain(`"details":${details}`);
        expect(ws.run(['audit']).stdout.trimEnd().split('\n').at(-1)).toContain(details);
        put(ws, 'NEW', NEW_VALUE);
        expect(ws.run(['audit', '--verify']).status).toBe(0);
      });
    });

    describe(`U+202E (right-to-left override) in planted names`, () => {
      const expectNoRawBidi = (result: RunResult, what: string) => {
        expect(result.stdout + result.stderr, what).not.toContain(RLO);
      };

      it('a secret file named with it: list goes on, and never prints the raw character', () => {
        const planted = at('secrets', `${RLO}DB.json`);
        fs.copyFileSync(at('secrets', 'DB.json'), planted);
        own(planted);
        for (const args of [['list'], ['list', '--json']]) {
          const result = runUnchanged(ws, args, BOUND);
          expect(result.status, result.stderr).toBe(0);
          expectNoRawBidi(result, args.join(' '));
          expect(result.stdout).toMatch(/DB/);
        }
      });

      it('a slot file named with it: the refusal (4) prints it escaped', () => {
        const planted = at('slots', `${RLO}aaaaaaaaaaa1.json`);
        const slot = JSON.parse(fs.readFileSync(slotFiles()[0]!, 'utf8')) as Record<string, unknown>;
        fs.writeFileSync(planted, `${JSON.stringify({ ...slot, id: 'aaaaaaaaaaa1' })}\n`);
        own(planted);
        for (const args of [['key', 'list'], ['policy']]) {
          const result = runUnchanged(ws, args, BOUND);
          expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(CORRUPT);
          expectNoRawBidi(result, args.join(' '));
          expectOneLine(result, `slots/\\u{202e}aaaaaaaaaaa1.json holds slot aaaaaaaaaaa1 under another file name`);
        }
      });

      it('a slot kind holding it: key list, its JSON and the unlock warning print it escaped', () => {
        const planted = at('slots', 'bbbbbbbbbbb1.json');
        const slot = JSON.parse(fs.readFileSync(slotFiles()[0]!, 'utf8')) as Record<string, unknown>;
        fs.writeFileSync(planted, `${JSON.stringify({ ...slot, id: 'bbbbbbbbbbb1', kind: `fido2${RLO}hmac` })}\n`);
        own(planted);
        const listed = runUnchanged(ws, ['key', 'list'], BOUND);
        expect(listed.status, listed.stderr).toBe(0);
        expectNoRawBidi(listed, 'key list');
        expect(listed.stdout).toContain('fido2\\u{202e}hmac (unknown: skipped)');
        const json = runUnchanged(ws, ['key', 'list', '--json'], BOUND);
        expectNoRawBidi(json, 'key list --json');
        expect(json.stdout).toContain('fido2\\u202ehmac');
        expect((JSON.parse(json.stdout) as { kind: string }[]).map((s) => s.kind)).toContain(`fido2${RLO}hmac`);
        const policy = ws.run(['policy'], BOUND);
        expect(policy.status, policy.stderr).toBe(0);
        expectNoRawBidi(policy, 'policy');
        expect(policy.stderr).toContain('bbbbbbbbbbb1 (fido2\\u{202e}hmac)');
      });
    });

    it('put --force NAME where secrets/NAME.json is a directory: refused (13), the directory left as it is', () => {
      const dir = at('secrets', 'DIR_SECRET.json');
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'inside'), 'someone else\'s\n');
      own(dir);
      own(path.join(dir, 'inside'));
      for (const args of [['put', '--force', 'DIR_SECRET'], ['put', 'DIR_SECRET']]) {
        const result = runUnchanged(ws, args, { input: NEW_VALUE, ...BOUND });
        expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(UNSAFE);
        expectOneLine(result, `${dir} is a directory, where the vault keeps a regular file`, /nothing was changed/);
      }
    });
  });
}

describe.skipIf(!IS_ROOT)('root writing into a vault another user owns, whose files are links to root\'s', () => {
  let ws: Workspace;
  let rootHome: string;
  beforeEach(() => {
    ws = makeWorkspace({ account: runnerAccount('an unprivileged user' as (typeof RUNNERS)[number]) });
    initWithToken(ws);
    put(ws, 'DB', SECRET);
    rootHome = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-root-home-'));
  });
  afterEach(() => {
    ws.cleanup();
    fs.rmSync(rootHome, { recursive: true, force: true });
  });

  const rootsPut = () => spawnSync(process.execPath, [RELEASE_CLI, 'put', 'FROM_ROOT'], {
    env: { ...ws.env, HOME: rootHome, XDG_STATE_HOME: path.join(rootHome, 'state') },
    input: NEW_VALUE, encoding: 'utf8', timeout: BOUND.timeout,
  });

  // an audit entry by the name of an empty file's hash: root reads every entry it has not seen before it joins them
  const links: [string, string][] = [['an audit entry', path.join('audit', `${sha256('')}.json`)], ['.lock', '.lock']];
  for (const [label, name] of links) {
    it(`${label} linked to an empty file of root's: root's put refuses (13); the file stays root's and empty`, () => {
      // empty: a writer that adopts a file it finds empty would chown it to the vault's owner (and write to it)
      const rootsFile = path.join(ws.root, `roots-${path.basename(name)}`);
      fs.writeFileSync(rootsFile, '', { mode: 0o600 });
      fs.rmSync(path.join(ws.vaultDir, name), { force: true });
      fs.linkSync(rootsFile, path.join(ws.vaultDir, name));
      const before = snapshot(ws.root);
      const asRoot = rootsPut();
      expect(asRoot.status, asRoot.stderr).toBe(UNSAFE);
      expect(asRoot.stderr).toMatch(/^vault: [^\n]+ is a hard link \(2 names for one file\)[^\n]*\n$/);
      expect(snapshot(ws.root)).toEqual(before);
      const stat = fs.statSync(rootsFile);
      expect([stat.uid, stat.gid, stat.size, stat.mode & 0o777]).toEqual([0, 0, 0, 0o600]);
    });
  }

  it('audit/ linked to a directory of root\'s: root\'s put refuses (13); nothing is written or chowned there', () => {
    // followed, root would write its entry there and give it to the vault's owner
    const rootsDir = path.join(ws.root, 'roots-dir');
    fs.cpSync(path.join(ws.vaultDir, 'audit'), rootsDir, { recursive: true });
    spawnSync('chown', ['-R', '0:0', rootsDir]);
    fs.rmSync(path.join(ws.vaultDir, 'audit'), { recursive: true });
    fs.symlinkSync(rootsDir, path.join(ws.vaultDir, 'audit'));
    const before = snapshot(ws.root);
    const asRoot = rootsPut();
    expect(asRoot.status, asRoot.stderr).toBe(UNSAFE);
    expect(asRoot.stderr).toMatch(
      /^vault: [^\n]+\/audit is a symbolic link, where the vault keeps a directory[^\n]*\n$/,
    );
    expect(snapshot(ws.root)).toEqual(before);
    for (const entry of [rootsDir, ...fs.readdirSync(rootsDir).map((f) => path.join(rootsDir, f))]) {
      expect(fs.statSync(entry).uid, entry).toBe(0);
    }
  });
});
