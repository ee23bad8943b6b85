/**
 * The CLI on a real pseudo-terminal (python3's pty module): hidden prompts for values and
 * passphrases, confirmation, Ctrl-C, and the choice `vault init` makes when a person runs it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, RELEASE_CLI, TEST_CLI, type Workspace } from './helpers/cli.js';
import { openAllSecrets } from './helpers/open-vault.js';
import { ptyRun, type PtyResult, type Step } from './helpers/pty.js';

/** Runs `vault ARGS` on a pty. */
function runOnPty(ws: Workspace, args: string[], steps: Step[], options: { cli?: string; env?: NodeJS.ProcessEnv } = {}): PtyResult {
  return ptyRun(ws, [process.execPath, options.cli ?? RELEASE_CLI, ...args], steps, options.env);
}

/** Lines of the output that start with `vault:` (the CLI's errors). */
const errorLines = (output: string) => output.split('\n').filter((l) => l.startsWith('vault:'));

function secretNames(ws: Workspace): string[] {
  const dir = path.join(ws.vaultDir, 'secrets');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

/** The events of the vault's audit log: one file per entry in audit/ (docs/FORMAT.md, "audit/"). */
function auditEvents(ws: Workspace): string[] {
  const dir = path.join(ws.vaultDir, 'audit');
  const read = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as { event: string };
  return fs.readdirSync(dir).map((name) => read(name).event).sort();
}

const PASSPHRASE = 'tty passphrase 42';

describe('vault on a terminal', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
    // no keychain here: no D-Bus, no display
    expect(ws.env.DBUS_SESSION_BUS_ADDRESS).toBeUndefined();
    expect(ws.env.DISPLAY).toBeUndefined();
  });
  afterEach(() => ws.cleanup());

  it('put NAME prompts twice without echo and stores what was typed', async () => {
    const token = initWithToken(ws);
    const value = 'typed-Secret-VALUE-9f3a';
    const result = runOnPty(ws, ['put', 'TYPED'], [
      { expect: 'Value for TYPED (not shown): ', send: `${value}\r` },
      { expect: 'Again, to confirm: ', send: `${value}\r` },
    ]);
    expect(result.pending).toEqual([]);
    expect(result.timedOut).toBe(false);
    expect(result.status, result.output).toBe(0);
    expect(result.output).not.toContain(value);
    expect(result.output).not.toContain('typed-');
    expect(result.output).toMatch(/stored TYPED \(23 bytes\)/);
    expect((await openAllSecrets(ws.vaultDir, token)).get('TYPED')?.toString('utf8')).toBe(value);
  });

  it('put NAME: backspace edits the hidden entry', async () => {
    const token = initWithToken(ws);
    const result = runOnPty(ws, ['put', 'EDITED'], [
      { expect: 'Value for EDITED (not shown): ', send: 'secreX\x7ft-1\r' },
      { expect: 'Again, to confirm: ', send: 'secret-1\r' },
    ]);
    expect(result.status, result.output).toBe(0);
    expect((await openAllSecrets(ws.vaultDir, token)).get('EDITED')?.toString('utf8')).toBe('secret-1');
  });

  it('put NAME: two different entries are refused and nothing is stored', () => {
    initWithToken(ws);
    const result = runOnPty(ws, ['put', 'MISMATCH'], [
      { expect: 'Value for MISMATCH (not shown): ', send: 'first-entry-aaa\r' },
      { expect: 'Again, to confirm: ', send: 'second-entry-bbb\r' },
    ]);
    expect(result.pending).toEqual([]);
    expect(result.status).toBe(2);
    expect(errorLines(result.output)).toEqual(['vault: the two entries differ; nothing was changed, try again']);
    expect(result.output).not.toMatch(/first-entry|second-entry/);
    expect(result.output).not.toMatch(/\n\s+at /);
    expect(secretNames(ws)).toEqual([]);
    expect(auditEvents(ws)).toEqual(['init']);
  });

  it('put NAME: Ctrl-C at the first prompt cancels cleanly, nothing stored', () => {
    initWithToken(ws);
    const result = runOnPty(ws, ['put', 'CANCELLED'], [{ expect: 'Value for CANCELLED (not shown): ', send: 'half-typ\x03' }]);
    expect(result.pending).toEqual([]);
    expect(result.timedOut).toBe(false);
    expect(result.status).toBeGreaterThan(0); // an exit code, not death by signal
    expect(errorLines(result.output)).toEqual(['vault: interrupted at the prompt (Ctrl-C); nothing was changed']);
    expect(result.status).toBe(130); // 128 + SIGINT, as a shell reports it (issue 15)
    expect(result.output).not.toContain('half-typ');
    expect(result.output).not.toMatch(/\n\s+at |Error:/);
    expect(secretNames(ws)).toEqual([]);
    expect(auditEvents(ws)).toEqual(['init']);
  });

  it('put NAME: Ctrl-C at the confirmation prompt cancels too', () => {
    initWithToken(ws);
    const result = runOnPty(ws, ['put', 'CANCELLED'], [
      { expect: 'Value for CANCELLED (not shown): ', send: 'full-value-1\r' },
      { expect: 'Again, to confirm: ', send: '\x03' },
    ]);
    expect(result.pending).toEqual([]);
    expect(result.status).toBeGreaterThan(0);
    expect(errorLines(result.output)).toEqual(['vault: interrupted at the prompt (Ctrl-C); nothing was changed']);
    expect(result.status).toBe(130); // 128 + SIGINT, as a shell reports it (issue 15)
    expect(secretNames(ws)).toEqual([]);
  });

  it('put NAME still reads piped stdin, not the terminal, when stdin is not a tty', async () => {
    // the prompt reads /dev/tty; with a pipe on stdin no prompt may appear
    const token = initWithToken(ws);
    // through sh, so that stdin is a pipe while stdout and stderr stay the pty
    const viaShell = ptyRun(ws, ['/bin/sh', '-c', `printf piped-value | "${process.execPath}" "${RELEASE_CLI}" put PIPED`], []);
    expect(viaShell.status, viaShell.output).toBe(0);
    expect(viaShell.output).not.toMatch(/not shown|confirm/);
    expect((await openAllSecrets(ws.vaultDir, token)).get('PIPED')?.toString()).toBe('piped-value');
  });

  describe('passphrase unlock at the terminal (test build, weak argon2id)', () => {
    beforeEach(() => {
      const init = ws.run(['init', '--passphrase', '--insecure-test-kdf'], { cli: TEST_CLI, env: { VAULT_PASSPHRASE: PASSPHRASE } });
      expect(init.status, init.stderr).toBe(0);
      const put = ws.run(['put', 'P'], { input: 'p-value' });
      expect(put.status, put.stderr).toBe(0);
    });

    it('asks for the passphrase when VAULT_PASSPHRASE is unset; the right one unlocks', () => {
      const result = runOnPty(ws, ['verify'], [{ expect: 'Vault passphrase: ', send: `${PASSPHRASE}\r` }], { cli: TEST_CLI });
      expect(result.pending).toEqual([]);
      expect(result.status, result.output).toBe(0);
      expect(result.output).toMatch(/ok: 1 secret\(s\)/);
      expect(result.output).not.toContain(PASSPHRASE);
    });

    it('a wrong passphrase asks again; the right one on the second try unlocks', () => {
      const result = runOnPty(ws, ['verify'], [
        { expect: 'Vault passphrase: ', send: 'not the passphrase\r' },
        { expect: 'Wrong passphrase, try again: ', send: `${PASSPHRASE}\r` },
      ], { cli: TEST_CLI });
      expect(result.pending).toEqual([]);
      expect(result.status, result.output).toBe(0);
    });

    it('three wrong passphrases end with exit 7', () => {
      const result = runOnPty(ws, ['verify'], [
        { expect: 'Vault passphrase: ', send: 'wrong one 1\r' },
        { expect: 'Wrong passphrase, try again: ', send: 'wrong one 2\r' },
        { expect: 'Wrong passphrase, try again: ', send: 'wrong one 3\r' },
      ], { cli: TEST_CLI });
      expect(result.pending).toEqual([]);
      expect(result.status).toBe(7);
      expect(errorLines(result.output)).toEqual(['vault: wrong passphrase, 3 times']);
      expect(result.output).not.toContain('wrong one');
      // exactly three prompts
      expect(result.output.match(/passphrase/gi)?.length).toBe(4); // 1 + 2 prompts + the error line
    });

    it('a wrong VAULT_PASSPHRASE is an error at once, with no prompt', () => {
      const result = runOnPty(ws, ['verify'], [], { cli: TEST_CLI, env: { VAULT_PASSPHRASE: 'wrong passphrase' } });
      expect(result.status).toBe(7);
      expect(result.output).not.toContain('Vault passphrase:');
      expect(errorLines(result.output)).toHaveLength(1);
    });

    it("Ctrl-C at vault exec's passphrase prompt exits 130 too, not 125 (helper-32)", () => {
      const result = runOnPty(ws, ['exec', '--', '/bin/true'], [{ expect: 'Vault passphrase: ', send: '\x03' }], { cli: TEST_CLI });
      expect(result.pending).toEqual([]);
      expect(errorLines(result.output)).toEqual(['vault: interrupted at the prompt (Ctrl-C); nothing was changed']);
      expect(result.status).toBe(130);
    });

    it('Ctrl-C at the passphrase prompt cancels with one line', () => {
      const result = runOnPty(ws, ['policy'], [{ expect: 'Vault passphrase: ', send: '\x03' }], { cli: TEST_CLI });
      expect(result.pending).toEqual([]);
      expect(result.status).toBeGreaterThan(0);
      expect(errorLines(result.output)).toEqual(['vault: interrupted at the prompt (Ctrl-C); nothing was changed']);
      expect(result.status).toBe(130); // 128 + SIGINT, as a shell reports it (issue 15)
    });
  });

  it('init without flags and without D-Bus picks a passphrase and asks for it twice', () => {
    const result = runOnPty(ws, ['init', '--insecure-test-kdf'], [
      { expect: 'New vault passphrase: ', send: `${PASSPHRASE}\r` },
      { expect: 'Again, to confirm: ', send: `${PASSPHRASE}\r` },
    ], { cli: TEST_CLI });
    expect(result.pending).toEqual([]);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toMatch(/no OS keychain here \(no D-Bus session[^\n]*\); using a passphrase/);
    expect(result.output).toMatch(/first key slot: passphrase/);
    expect(result.output).not.toContain(PASSPHRASE);
    const slots = fs.readdirSync(path.join(ws.vaultDir, 'slots'));
    expect(slots).toHaveLength(1);
    const slot = JSON.parse(fs.readFileSync(path.join(ws.vaultDir, 'slots', slots[0]!), 'utf8')) as { kind: string };
    expect(slot.kind).toBe('passphrase');
    // the typed passphrase is the one that unlocks
    expect(ws.run(['verify'], { cli: TEST_CLI, env: { VAULT_PASSPHRASE: PASSPHRASE } }).status).toBe(0);
    expect(ws.run(['verify'], { cli: TEST_CLI, env: { VAULT_PASSPHRASE: `${PASSPHRASE}x` } }).status).toBe(7);
  });

  it('init at the terminal: different entries, or a short passphrase, create no vault', () => {
    const differ = runOnPty(ws, ['init', '--insecure-test-kdf'], [
      { expect: 'New vault passphrase: ', send: `${PASSPHRASE}\r` },
      { expect: 'Again, to confirm: ', send: `${PASSPHRASE}!\r` },
    ], { cli: TEST_CLI });
    expect(differ.status).toBe(2);
    expect(errorLines(differ.output)).toEqual(['vault: the two entries differ; nothing was changed, try again']);
    expect(fs.existsSync(ws.vaultDir)).toBe(false);

    const short = runOnPty(ws, ['init', '--insecure-test-kdf'], [
      { expect: 'New vault passphrase: ', send: 'short\r' },
      { expect: 'Again, to confirm: ', send: 'short\r' },
    ], { cli: TEST_CLI });
    expect(short.status).toBe(2);
    expect(errorLines(short.output)).toEqual([expect.stringMatching(/^vault: the passphrase is shorter than 8 bytes/)]);
    expect(fs.existsSync(ws.vaultDir)).toBe(false);
  });
});
