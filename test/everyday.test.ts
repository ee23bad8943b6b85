/**
 * Issue 15, everyday use, run for real: `vault import` of .env files (every value compared by a
 * granted program), configuration values (unmasked in CI, a secret beside them masked, and what a
 * writer without the key can and cannot change), project vaults found upward, the global flags
 * after a subcommand, `--version`, a pipe's final newline, empty values. As root and as an
 * unprivileged user where the sandbox runs.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'dotenv';
import { afterEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, ROOT, type Workspace } from './helpers/cli.js';
import { ptyRun } from './helpers/pty.js';
import { IS_ROOT, RUNNERS, runnerAccount, systemUser } from './helpers/users.js';

/** Every case of dotenv's syntax the issue names, and a few that trip hand-written parsers. */
const DOTENV = [
  '# a comment line',
  'PLAIN=plain-value-1',
  'export EXPORTED=exported-value-2',
  'DOUBLE="double quoted # not a comment"',
  "SINGLE='single $NOT_EXPANDED'",
  'BACKTICK=`back ticked`',
  'TRAILING=value-with-comment # the comment',
  'EMPTY=',
  'EMPTY_QUOTED=""',
  'SPACES_AROUND =  spaced value  ',
  'MULTI="first line',
  'second line',
  'third line"',
  'ESCAPED="a\\nb"',
  'EQUALS=a=b=c',
  'URL=postgres://user:p%40ss@db.example.com:5432/app?sslmode=require',
  'UNICODE="grüße ✓"',
  'REPEATED=first',
  'REPEATED=second',
  '',
].join('\n');

/** A script that prints every variable of `names` as NAME=<hex of the value>, one per line. */
function hexPrinter(names: string[]): string {
  return `#!/bin/sh\nfor n in ${names.join(' ')}; do\n  eval "v=\\\${$n-UNSET}"\n  printf '%s=' "$n"\n` +
    "  printf '%s' \"$v\" | od -An -v -tx1 | tr -d ' \\n'\n  echo\ndone\n";
}

/** What the granted program received: name → value (decoded from its hex). */
function received(stdout: string): Map<string, string> {
  return new Map(stdout.trim().split('\n').map((line) => {
    const [name, hex] = line.split('=') as [string, string];
    return [name, Buffer.from(hex ?? '', 'hex').toString('utf8')];
  }));
}

let workspaces: Workspace[] = [];
afterEach(() => {
  for (const ws of workspaces) ws.cleanup();
  workspaces = [];
});
function workspace(account = undefined as ReturnType<typeof runnerAccount>): Workspace {
  const ws = makeWorkspace(account !== undefined ? { account } : {});
  workspaces.push(ws);
  return ws;
}

/** Grants `names` to a new hex printer in the project and runs it; returns what it received. */
function runPrinter(ws: Workspace, names: string[], env: NodeJS.ProcessEnv = {}): Map<string, string> {
  const script = path.join(ws.project, 'print-env.sh');
  fs.writeFileSync(script, hexPrinter(names), { mode: 0o755 });
  if (IS_ROOT) fs.chownSync(script, fs.statSync(ws.project).uid, fs.statSync(ws.project).gid);
  const allowed = ws.run(['allow', ...names, '--to', script]);
  expect(allowed.stderr).toMatch(/granted/);
  const run = ws.run(['exec', '--no-mask', '--', script], { env });
  expect(run.stderr).not.toMatch(/error/i);
  expect(run.status).toBe(0);
  return received(run.stdout);
}

for (const runner of RUNNERS) {
  describe(`vault import, as ${runner}`, () => {
    it('imports every value of a .env as dotenv parses it, and a granted program receives exactly those', () => {
      const ws = workspace(runnerAccount(runner));
      initWithToken(ws);
      const file = path.join(ws.project, '.env');
      fs.writeFileSync(file, DOTENV);
      if (IS_ROOT) fs.chownSync(file, fs.statSync(ws.project).uid, fs.statSync(ws.project).gid);
      const imported = ws.run(['import', '.env']);
      expect(imported.stderr).toMatch(/imported 15 value\(s\) from \.env/);
      expect(imported.status).toBe(0);
      const expected = parse(Buffer.from(DOTENV));
      // the cases spelled out, so that a change of dotenv's own reading would show here
      expect(expected).toMatchObject({
        EXPORTED: 'exported-value-2', DOUBLE: 'double quoted # not a comment', SINGLE: 'single $NOT_EXPANDED',
        TRAILING: 'value-with-comment', EMPTY: '', EMPTY_QUOTED: '', MULTI: 'first line\nsecond line\nthird line',
        ESCAPED: 'a\nb', EQUALS: 'a=b=c', REPEATED: 'second', UNICODE: 'grüße ✓',
      });
      const names = Object.keys(expected);
      expect(names).toHaveLength(15);
      const got = runPrinter(ws, names);
      for (const name of names) expect([name, got.get(name)]).toEqual([name, expected[name]]);
      // the list shows the empty values as 0 bytes
      const listed = JSON.parse(ws.run(['list', '--json']).stdout) as { name: string; size: number }[];
      expect(listed.find((s) => s.name === 'EMPTY')?.size).toBe(0);
    });
  });
}

describe('vault import refuses before it stores anything', () => {
  it('reserved names, invalid names, names already there (without --force), unknown --config-names', () => {
    const ws = workspace();
    initWithToken(ws);
    put(ws, 'KEPT', 'old-value-123');
    const before = ws.vaultFiles();
    const reserved = ws.run(['import', '-'], { input: 'GOOD=1\nPATH=/evil\nLD_PRELOAD=/x.so\nNODE_ENV=production\n' });
    expect(reserved.status).toBe(12);
    expect(reserved.stderr).toMatch(/3 name\(s\) are reserved.*PATH, LD_PRELOAD, NODE_ENV.*--env NAME=VALUE.*nothing was stored/);
    const invalid = ws.run(['import', '-'], { input: 'GOOD=1\nlower_case=2\nWITH-DASH=3\n' });
    expect(invalid.status).toBe(12);
    expect(invalid.stderr).toMatch(/cannot be secret names .*on line\(s\) 2, 3 of stdin/);
    // both kinds in one line: one edit of the file is enough (helper-32 had to run it twice)
    const both = ws.run(['import', '-'], { input: 'db_user=u\nPATH=/x\n' });
    expect(both.status).toBe(12);
    expect(both.stderr).toMatch(/cannot be secret names .*line\(s\) 1 of stdin.*; 1 name\(s\) are reserved.*PATH/);
    expect(both.stderr.trim().split('\n')).toHaveLength(1);
    const existing = ws.run(['import', '-'], { input: 'GOOD=1\nKEPT=new\n' });
    expect(existing.status).toBe(11);
    expect(existing.stderr).toMatch(/in the vault already: KEPT; --force replaces them/);
    const config = ws.run(['import', '-', '--config-names', 'NOPE'], { input: 'GOOD=1\n' });
    expect(config.status).toBe(2);
    expect(config.stderr).toMatch(/--config-names names what - does not hold: NOPE/);
    const none = ws.run(['import', '-'], { input: '# only a comment\n\n' });
    expect(none.status).toBe(2);
    const missing = ws.run(['import', 'no-such.env']);
    expect(missing.status).toBe(3);
    for (const result of [reserved, invalid, existing, config, none, missing]) {
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(ws.vaultFiles()).toEqual(before);
    // --force replaces, and says so
    const forced = ws.run(['import', '-', '--force'], { input: 'KEPT=new-value-456\n' });
    expect(forced.status).toBe(0);
    expect(forced.stderr).toMatch(/replaced KEPT \(13 bytes\)/);
    expect(runPrinter(ws, ['KEPT']).get('KEPT')).toBe('new-value-456');
  });

  it('reads a .env from a pipe made by process substitution (a FIFO) and from stdin', () => {
    const ws = workspace();
    initWithToken(ws);
    const shell = spawnSync('bash', ['-c', `${ws.cliCommand(['import']).map((w) => `'${w}'`).join(' ')} <(printf 'A_ONE=1\\n')`], {
      env: ws.env, cwd: ws.project, encoding: 'utf8',
    });
    expect(shell.stderr).toMatch(/imported 1 value/);
    expect(ws.run(['import', '-'], { input: 'B_TWO=2' }).status).toBe(0);
    expect(runPrinter(ws, ['A_ONE', 'B_TWO'])).toEqual(new Map([['A_ONE', '1'], ['B_TWO', '2']]));
  });
});

describe('a large import on a terminal', () => {
  it('draws a progress bar on stderr (and none into a pipe)', () => {
    const ws = workspace();
    initWithToken(ws);
    const lines = Array.from({ length: 250 }, (_, i) => `BULK_${String(i).padStart(4, '0')}=value-${i}-abcdefgh`);
    fs.writeFileSync(path.join(ws.project, 'bulk.env'), `${lines.join('\n')}\n`);
    const onPty = ptyRun(ws, ws.command(['import', 'bulk.env']), [], {}, 120);
    expect(onPty.status, onPty.output).toBe(0);
    expect(onPty.output).toMatch(/importing .*\d+\/250 values/);
    expect(onPty.output).toMatch(/imported 250 value\(s\) from bulk\.env/);
    // past a hundred values the report is a count, not a line each
    expect(onPty.output).not.toMatch(/stored BULK_0001/);
    fs.writeFileSync(path.join(ws.project, 'more.env'), 'MORE_1=a\n'.repeat(1) + lines.map((l) => `X${l}`).join('\n'));
    const piped = ws.run(['import', 'more.env']);
    expect(piped.stderr).not.toMatch(/importing/);
  });
});

describe('a multi-line value on a terminal (helper-32)', () => {
  it('is masked whole on a pty with CI set, where LF becomes CR LF: no short middle line shows', () => {
    const ws = workspace();
    initWithToken(ws);
    put(ws, 'PRIVATE_KEY', '-----BEGIN KEY-----\nline2\n-----END KEY-----');
    const script = path.join(ws.project, 'key.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho "PRIVATE_KEY=[$PRIVATE_KEY]"\n', { mode: 0o755 });
    expect(ws.run(['allow', 'PRIVATE_KEY', '--to', script]).status).toBe(0);
    const piped = ws.run(['exec', '--', script], { env: { CI: 'true' } });
    expect(piped.stdout).toBe('PRIVATE_KEY=[***]\n');
    const onPty = ptyRun(ws, ws.command(['exec', '--', script]), [], { CI: 'true' });
    expect(onPty.status, onPty.output).toBe(0);
    expect(onPty.output).toContain('PRIVATE_KEY=[***]');
    expect(onPty.output).not.toContain('line2');
  });
});

describe('dotenvx to vault in one pipeline (README)', () => {
  const dotenvx = path.join(ROOT, 'node_modules', '.bin', 'dotenvx');
  it('`dotenvx decrypt --stdout | vault import -` moves an encrypted .env, every value intact', () => {
    const ws = workspace();
    initWithToken(ws);
    const env = { ...ws.env, PATH: `${path.dirname(process.execPath)}:${ws.env.PATH}` };
    fs.writeFileSync(path.join(ws.project, '.env'), 'API_TOKEN="tok-9a8b7c6d5e"\nDB_PASSWORD=\'p@ss w0rd!\'\nEMPTY_ONE=\n');
    const encrypt = spawnSync(dotenvx, ['encrypt', '-f', '.env'], { cwd: ws.project, env, encoding: 'utf8' });
    expect(encrypt.status, encrypt.stderr).toBe(0);
    const encrypted = fs.readFileSync(path.join(ws.project, '.env'), 'utf8');
    expect(encrypted).toMatch(/API_TOKEN="encrypted:/);
    expect(encrypted).not.toContain('tok-9a8b7c6d5e');
    const vault = ws.cliCommand(['import', '-']).map((w) => `'${w}'`).join(' ');
    const pipeline = spawnSync('bash', ['-o', 'pipefail', '-c', `'${dotenvx}' decrypt --stdout | ${vault}`], {
      cwd: ws.project, env, encoding: 'utf8',
    });
    // dotenvx prints its public key among the values: not one of the application's
    expect(pipeline.stderr).toMatch(/skipped DOTENV_PUBLIC_KEY: dotenvx's public key/);
    expect(pipeline.stderr).toMatch(/imported 3 value\(s\) from stdin/);
    expect(pipeline.status).toBe(0);
    expect(runPrinter(ws, ['API_TOKEN', 'DB_PASSWORD', 'EMPTY_ONE'])).toEqual(new Map([
      ['API_TOKEN', 'tok-9a8b7c6d5e'], ['DB_PASSWORD', 'p@ss w0rd!'], ['EMPTY_ONE', ''],
    ]));
  });
});

for (const runner of RUNNERS) {
  describe(`configuration values, as ${runner}`, () => {
    it('in CI a configuration value is delivered unmasked while a secret in the same output is masked', () => {
      const ws = workspace(runnerAccount(runner));
      initWithToken(ws);
      put(ws, 'APP_MODE', 'production', ['--config']);
      ws.run(['import', '-', '--config-names', 'REGION'], { input: 'REGION=eu-central-1\nAPI_KEY=sk-live-5f4e3d2c1b\n' });
      const script = path.join(ws.project, 'deploy.sh');
      fs.writeFileSync(script, '#!/bin/sh\necho "mode=$APP_MODE region=$REGION key=$API_KEY"\necho "$API_KEY" >&2\n', { mode: 0o755 });
      if (IS_ROOT) fs.chownSync(script, fs.statSync(ws.project).uid, fs.statSync(ws.project).gid);
      expect(ws.run(['allow', 'APP_MODE', 'REGION', 'API_KEY', '--to', script]).status).toBe(0);
      const run = ws.run(['exec', '--', script], { env: { CI: 'true' } });
      expect(run.status).toBe(0);
      expect(run.stdout).toBe('mode=production region=eu-central-1 key=***\n');
      expect(run.stderr).toContain('***');
      expect(run.stderr).not.toContain('sk-live');
      expect(ws.run(['list']).stdout).toMatch(/APP_MODE\s+config/);
    });
  });
}

describe('configuration values against a writer without the key', () => {
  /** A vault with SECRET_TOKEN and APP_MODE (config) granted to a printer; returns the CI output. */
  function setUp(): { ws: Workspace; run: () => string } {
    const ws = workspace();
    initWithToken(ws);
    put(ws, 'SECRET_TOKEN', 'sk-secret-778899');
    put(ws, 'APP_MODE', 'production', ['--config']);
    const script = path.join(ws.project, 'show.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho "$SECRET_TOKEN $APP_MODE"\n', { mode: 0o755 });
    expect(ws.run(['allow', 'SECRET_TOKEN', 'APP_MODE', '--to', script]).status).toBe(0);
    return { ws, run: () => ws.run(['exec', '--', script], { env: { CI: 'true' } }).stdout };
  }
  const secretFile = (ws: Workspace, name: string) => path.join(ws.vaultDir, 'secrets', `${name}.json`);
  const editFile = (ws: Workspace, name: string, change: (json: Record<string, unknown>) => void) => {
    const json = JSON.parse(fs.readFileSync(secretFile(ws, name), 'utf8')) as Record<string, unknown>;
    change(json);
    fs.writeFileSync(secretFile(ws, name), JSON.stringify(json));
  };

  it("marking a secret's file as configuration unmasks nothing, and verify names the lie", () => {
    const { ws, run } = setUp();
    expect(run()).toBe('*** production\n');
    editFile(ws, 'SECRET_TOKEN', (json) => (json.config = true));
    expect(ws.run(['list']).stdout).toMatch(/SECRET_TOKEN\s+config/); // the file says so, the sealed kind does not
    expect(run()).toBe('*** production\n');
    // before a grant too: `allow` made after the mark grants a secret, masked
    fs.writeFileSync(path.join(ws.project, 'other.sh'), '#!/bin/sh\necho "$SECRET_TOKEN"\n', { mode: 0o755 });
    expect(ws.run(['allow', 'SECRET_TOKEN', '--to', path.join(ws.project, 'other.sh')]).status).toBe(0);
    expect(ws.run(['exec', '--', path.join(ws.project, 'other.sh')], { env: { CI: 'true' } }).stdout).toBe('***\n');
    const verify = ws.run(['verify']);
    expect(verify.status).toBe(9);
    expect(verify.stderr).toMatch(/SECRET_TOKEN\.json says it is a configuration value but its value was sealed as a secret/);
  });

  it("taking the mark off a configuration value's file leaves it unmasked: the kind is sealed with the value", () => {
    const { ws, run } = setUp();
    editFile(ws, 'APP_MODE', (json) => delete json.config);
    expect(run()).toBe('*** production\n');
  });

  it('a configuration value replaced by a secret is masked at once; put --config takes effect at once', () => {
    const { ws, run } = setUp();
    put(ws, 'APP_MODE', 'now-a-secret-value', ['--force']);
    expect(run()).toBe('*** ***\n');
    // a name once configuration and now a secret stays masked whatever a writer writes in its file
    editFile(ws, 'APP_MODE', (json) => (json.config = true));
    expect(run()).toBe('*** ***\n');
    put(ws, 'SECRET_TOKEN', 'sk-public-now', ['--force', '--config']);
    expect(run()).toBe('sk-public-now ***\n');
  });

  it("a writer cannot move a configuration value's sealed kind onto a secret (the name is sealed with it)", () => {
    const { ws, run } = setUp();
    const config = JSON.parse(fs.readFileSync(secretFile(ws, 'APP_MODE'), 'utf8')) as { sealed: string };
    editFile(ws, 'SECRET_TOKEN', (json) => {
      json.sealed = config.sealed;
      json.config = true;
    });
    const result = ws.run(['exec', '--', path.join(ws.project, 'show.sh')], { env: { CI: 'true' } });
    expect(result.status).toBe(125);
    expect(result.stderr).toMatch(/sealed under another name/);
    expect(run()).not.toContain('sk-secret');
  });
});

describe('put and the value it was given', () => {
  it('says on stderr when it kept the final newline of a pipe, and --trim drops it', () => {
    const ws = workspace();
    initWithToken(ws);
    const kept = ws.run(['put', 'WITH_NEWLINE'], { input: 'value-1\n' });
    expect(kept.stderr).toMatch(/stored WITH_NEWLINE \(8 bytes\)\nkept the value's final newline .*`--trim` drops/);
    const trimmed = ws.run(['put', 'TRIMMED', '--trim'], { input: 'value-2\n' });
    expect(trimmed.stderr).toBe('stored TRIMMED (7 bytes)\n');
    const none = ws.run(['put', 'NO_NEWLINE'], { input: 'value-3' });
    expect(none.stderr).toBe('stored NO_NEWLINE (7 bytes)\n');
    expect(runPrinter(ws, ['WITH_NEWLINE', 'TRIMMED'])).toEqual(new Map([['WITH_NEWLINE', 'value-1\n'], ['TRIMMED', 'value-2']]));
  });

  it('stores an empty value, from a pipe, a file, and what --trim leaves; the program gets it set and empty', () => {
    const ws = workspace();
    initWithToken(ws);
    expect(ws.run(['put', 'EMPTY_PIPE'], { input: '' }).stderr).toMatch(/stored EMPTY_PIPE \(0 bytes: an empty value\)/);
    expect(ws.run(['put', 'EMPTY_TRIM', '--trim'], { input: '\n\r\n' }).status).toBe(0);
    const file = path.join(ws.root, 'empty.txt');
    fs.writeFileSync(file, '');
    expect(ws.run(['put', 'EMPTY_FILE', '--from-file', file]).status).toBe(0);
    const got = runPrinter(ws, ['EMPTY_PIPE', 'EMPTY_TRIM', 'EMPTY_FILE']);
    expect([...got.values()]).toEqual(['', '', '']); // set (not UNSET) and empty
    expect(ws.run(['verify']).status).toBe(0);
  });
});

describe('project vaults', () => {
  /** A workspace whose project holds a vault in .vault/ and a subdirectory two levels down. */
  function project(): { ws: Workspace; deep: string; projectVault: string } {
    const ws = workspace();
    const projectVault = path.join(ws.project, '.vault');
    const init = ws.run(['init', '--token', '--vault', projectVault]);
    expect(init.status).toBe(0);
    ws.env.VAULT_KEY = init.stdout.trim();
    const deep = path.join(ws.project, 'src', 'deep');
    fs.mkdirSync(deep, { recursive: true });
    return { ws, deep, projectVault };
  }

  it('a command in a subdirectory uses the project vault before VAULT_DIR, and says so on stderr', () => {
    const { ws, deep, projectVault } = project();
    // VAULT_DIR names another vault (the workspace's): the project's is found first
    fs.mkdirSync(ws.vaultDir, { recursive: true });
    const stored = ws.run(['put', 'PROJECT_ONLY'], { input: 'project-value-1', cwd: deep });
    expect(stored.status).toBe(0);
    expect(stored.stderr).toBe(
      `using the project vault ${projectVault} (found upward; --vault DIR chooses another)\nstored PROJECT_ONLY (15 bytes)\n`,
    );
    expect(fs.existsSync(path.join(projectVault, 'secrets', 'PROJECT_ONLY.json'))).toBe(true);
    // outside the project, VAULT_DIR's vault, silently (no terminal)
    const outside = ws.run(['list'], { cwd: ws.root });
    expect(outside.stderr).toMatch(/\/vault holds no vault/);
    // a program in the subdirectory gets the project's secret, through exec's lean path and the launcher
    const script = path.join(deep, 'show.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho "got $PROJECT_ONLY"\n', { mode: 0o755 });
    expect(ws.run(['allow', 'PROJECT_ONLY', '--to', script], { cwd: deep }).status).toBe(0);
    for (const launcher of [false, true]) {
      const run = ws.run(['exec', '--no-mask', '--', './show.sh'], { cwd: deep, launcher });
      expect(run.stdout).toBe('got project-value-1\n');
      expect(run.stderr).toMatch(/^using the project vault /);
    }
  });

  it("a project vault this user never saw (a checkout's) gets its fingerprint said on first use, once", () => {
    const { ws, deep } = project();
    const newcomer = { XDG_STATE_HOME: path.join(ws.root, 'newcomer-state') };
    const first = ws.run(['put', 'FROM_NEWCOMER'], { input: 'v', cwd: deep, env: newcomer });
    expect(first.status).toBe(0);
    expect(first.stderr).toMatch(/first use of this vault: its key has fingerprint svfp1_[0-9a-f]+; a value put in it/);
    const second = ws.run(['put', 'AGAIN'], { input: 'v', cwd: deep, env: newcomer });
    expect(second.stderr).not.toMatch(/first use/);
  });

  it('a .sealvault file names the vault, relative to its own directory', () => {
    const ws = workspace();
    const shared = path.join(ws.root, 'shared-vault');
    const init = ws.run(['init', '--token', '--vault', shared]);
    ws.env.VAULT_KEY = init.stdout.trim();
    fs.writeFileSync(path.join(ws.project, '.sealvault'), '# the team vault\n../shared-vault\n');
    const sub = path.join(ws.project, 'sub');
    fs.mkdirSync(sub);
    const stored = ws.run(['put', 'VIA_POINTER'], { input: 'x', cwd: sub });
    expect(stored.stderr).toMatch(`using the project vault ${shared} (named by ${path.join(ws.project, '.sealvault')};`);
    expect(fs.existsSync(path.join(shared, 'secrets', 'VIA_POINTER.json'))).toBe(true);
  });

  it('refuses a .vault or .sealvault that is not the user\'s own, one that is a FIFO, and both in one place', () => {
    const { ws, deep, projectVault } = project();
    fs.writeFileSync(path.join(ws.project, '.sealvault'), 'elsewhere\n');
    const both = ws.run(['list'], { cwd: deep });
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/has both a \.vault directory and a \.sealvault file/);
    fs.rmSync(path.join(ws.project, '.sealvault'));
    const fifo = path.join(deep, '.sealvault');
    spawnSync('mkfifo', [fifo]);
    const hang = ws.run(['list'], { cwd: deep, timeout: 10_000 });
    expect(hang.signal).toBeNull();
    expect(hang.status).toBe(13);
    expect(hang.stderr).toMatch(/must be a regular file/);
    fs.rmSync(fifo);
    if (IS_ROOT) {
      // as git since CVE-2022-24765: a .vault another user made (in /tmp, say) is not taken up silently
      const other = systemUser('sealvault-test', 'nobody')!;
      fs.chownSync(projectVault, other.uid, other.gid);
      const foreign = ws.run(['list'], { cwd: deep });
      expect(foreign.status).toBe(11);
      expect(foreign.stderr).toMatch(new RegExp(`${projectVault} belongs to uid ${other.uid}, not to you`));
      // named with --vault, it is the user's choice
      expect(ws.run(['list', '--vault', projectVault], { cwd: deep }).stderr).not.toMatch(/belongs to/);
    }
  });

  it('takes --vault after the subcommand, and refuses two different ones', () => {
    const { ws, deep, projectVault } = project();
    const other = path.join(ws.root, 'other');
    expect(ws.run(['init', '--token', '--vault', other]).status).toBe(0);
    const after = ws.run(['put', 'AFTER', '--vault', other], { input: 'v', cwd: deep, env: { VAULT_KEY: undefined } });
    expect(after.status).toBe(0);
    expect(after.stderr).not.toMatch(/project vault/);
    expect(fs.existsSync(path.join(other, 'secrets', 'AFTER.json'))).toBe(true);
    expect(fs.existsSync(path.join(projectVault, 'secrets', 'AFTER.json'))).toBe(false);
    const twice = ws.run(['--vault', projectVault, 'list', '--vault', other]);
    expect(twice.status).toBe(2);
    expect(twice.stderr).toMatch(/--vault is given twice/);
    expect(ws.run(['--vault', other, 'list', '--vault', other]).status).toBe(0);
  });
});

describe('vault --version', () => {
  it('prints the version of package.json; --json the versions and kernel features in use', () => {
    const ws = workspace();
    const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-V']) {
      const run = ws.run([flag]);
      expect(run.status).toBe(0);
      expect(run.stdout).toBe(`vault ${version}\n`);
    }
    const json = JSON.parse(ws.run(['--version', '--json']).stdout) as Record<string, any>;
    expect(json.vault).toBe(version);
    expect(json.node).toBe(process.versions.node);
    expect(json.libsodium).toMatch(/^\d+\.\d+\.\d+$/);
    expect(json.helper.protocol).toBe('SVH3');
    expect(json.helper.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(json.kernel.landlock_abi).toBeTypeOf('number');
    expect(json.kernel.tiers).toHaveProperty('lockdown');
    // `vault` alone still shows the help as a usage error, and an unknown command is named
    expect(ws.run([]).status).toBe(2);
    expect(ws.run(['bogus']).stderr).toBe("vault: unknown command 'bogus' (see `vault --help`)\n");
    // the program's own action must not take away commander's `help` command
    expect(ws.run(['help', 'put']).stdout).toMatch(/^Usage: vault put \[options\] <NAME>/);
  });
});
