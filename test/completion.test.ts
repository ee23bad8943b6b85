/**
 * `vault completion bash|zsh|fish`: the script the real CLI prints is loaded by the shell itself,
 * which computes the completions. bash: its registered function (found through `complete -p vault`)
 * with COMP_WORDS, COMP_CWORD, COMP_LINE and COMP_POINT set as readline sets them; zsh: an
 * interactive zsh on a pty, with compinit, typing TAB; fish: `complete -C`. Secret names come from
 * the real `vault` (bin/, the launcher) on PATH.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, RELEASE_CLI, ROOT, type Workspace } from './helpers/cli.js';
import { ptyRun } from './helpers/pty.js';

let ws: Workspace;
const scripts = new Map<string, string>();

/** The shell's path, or a clear failure: scripts/install.sh installs zsh and fish for these tests. */
function shell(name: string): string {
  const found = ['/usr/bin', '/bin'].map((dir) => path.join(dir, name)).find((file) => fs.existsSync(file));
  if (found === undefined) throw new Error(`${name} is not installed: run scripts/install.sh (it installs ${name})`);
  return found;
}

/** The environment of a shell that completes: the workspace's, with this checkout's `vault` first on PATH. */
const shellEnv = () => ({ ...ws.env, PATH: `${path.join(ROOT, 'bin')}:${ws.env.PATH ?? '/usr/bin:/bin'}` });

/** Splits `line` as readline does for COMP_WORDS with bash's default COMP_WORDBREAKS: blanks, and `=`, `:` as words. */
function compWords(line: string): string[] {
  const words = line.split(/\s+/).filter((w) => w !== '').flatMap((w) => w.split(/([=:])/).filter((p) => p !== ''));
  if (/\s$/.test(line) || line === '') words.push('');
  return words;
}

/**
 * Loads the bash script and calls the function `complete -p vault` names, as readline would with the
 * cursor at the end of `line`; returns COMPREPLY, and what bash wrote on stderr.
 */
function bashComplete(line: string): { replies: string[]; stderr: string } {
  const driver = [
    'source "$1" || exit 97',
    'COMP_LINE=$2 COMP_POINT=${#2}',
    'shift 2',
    'COMP_WORDS=("$@") COMP_CWORD=$(($# - 1))',
    'spec=$(complete -p vault) || exit 98',
    '[[ $spec =~ -F\\ ([^ ]+) ]] || exit 99',
    '"${BASH_REMATCH[1]}" vault "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"',
    // NUL after each reply: one reply holding a newline must not pass for two
    'printf \'%s\\0\' "${COMPREPLY[@]}"',
  ].join('\n');
  const argv = ['--norc', '--noprofile', '-c', driver, 'bash', scripts.get('bash')!, line, ...compWords(line)];
  const run = spawnSync(shell('bash'), argv, {
    env: shellEnv(), cwd: ws.project, encoding: 'utf8', timeout: 30_000,
  });
  expect(run.status, `bash, completing "${line}": ${run.stderr}`).toBe(0);
  return { replies: run.stdout.split('\0').filter((l) => l !== ''), stderr: run.stderr };
}

const complete = (line: string) => bashComplete(line).replies.sort();

/** The commands `vault --help` lists, each with its subcommands' help: the tree as commander shows it. */
function helpCommands(args: string[]): string[] {
  const help = ws.run([...args, '--help']);
  expect(help.status).toBe(0);
  const section = help.stdout.split(/^Commands:$/m)[1] ?? '';
  return [...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).sort();
}

beforeAll(() => {
  ws = makeWorkspace();
  initWithToken(ws);
  put(ws, 'DB_PASSWORD', 'one');
  put(ws, 'API_KEY', 'two');
  fs.writeFileSync(path.join(ws.project, 'value.txt'), 'v');
  fs.mkdirSync(path.join(ws.project, 'vdir'));
  for (const name of ['bash', 'zsh', 'fish']) {
    const made = ws.run(['completion', name]);
    expect(made.status, made.stderr).toBe(0);
    // not a terminal: the script alone, no advice
    expect(made.stderr).toBe('');
    const file = path.join(ws.root, `vault.${name}`);
    fs.writeFileSync(file, made.stdout);
    scripts.set(name, file);
  }
});
afterAll(() => ws?.cleanup());

describe('vault completion bash, computed by bash', () => {
  it('offers every top-level command `vault --help` lists, and nothing else', () => {
    const top = helpCommands([]);
    expect(top).toContain('completion');
    expect(complete('vault ')).toEqual(top);
    expect(complete('vault re')).toEqual(['recipient', 'rekey', 'revoke']);
  });

  it('walks into nested commands: `vault key a` gives add; each group offers what its help lists', () => {
    expect(complete('vault key a')).toEqual(['add']);
    expect(complete('vault --vault /somewhere key a')).toEqual(['add']);
    for (const group of ['key', 'recipient', 'identity', 'agent']) {
      expect(complete(`vault ${group} `)).toEqual(helpCommands([group]));
    }
    expect(complete('vault policy ')).toEqual(['merge']);
    expect(complete('vault help k')).toEqual(['key']);
    expect(complete('vault key help ')).toEqual(['add', 'list', 'rm']);
    expect(complete('vault completion ')).toEqual(['bash', 'fish', 'zsh']);
  });

  it("offers a command's long options, and its choices after one that takes them", () => {
    expect(complete('vault exec --ti')).toEqual(['--tier', '--timeout']);
    expect(complete('vault exec --tier ')).toEqual(['hardened', 'lockdown', 'none']);
    expect(complete('vault exec --tier lo')).toEqual(['lockdown']);
    // readline split `--tier=lo` at '=' and replaces only what follows it
    expect(complete('vault exec --tier=lo')).toEqual(['lockdown']);
    expect(complete('vault allow API_KEY --to ./x --min-tier h')).toEqual(['hardened']);
    // --vault and --identity: the global flags are taken after the subcommand too
    expect(complete('vault put --')).toEqual(['--config', '--force', '--from-file', '--help', '--identity', '--trim', '--vault']);
    // --net takes a value: `db:5432` is not an argument, and the options are still offered after it
    expect(complete('vault exec --net db:5432 --in')).toEqual(['--info']);
    expect(complete('vault --')).toEqual(['--help', '--identity', '--vault', '--version']);
  });

  it('offers no hidden command or option, though commander knows them', () => {
    // they exist: the hidden option is parsed (and refused outside the test build), the hidden command runs
    const other = { env: { VAULT_DIR: path.join(ws.root, 'other') } };
    const hiddenOption = ws.run(['init', '--token', '--insecure-test-kdf'], other);
    expect(hiddenOption.stderr).toMatch(/--insecure-test-kdf exists only in the test build/);
    expect(ws.run(['git', 'merge-driver', '--help']).status).toBe(0);
    expect(complete('vault git ')).toEqual(['help', 'setup']);
    expect(complete('vault key add --')).toEqual([
      '--help', '--identity', '--keychain', '--label', '--passphrase', '--token', '--vault',
    ]);
    expect(complete('vault agent start --')).not.toContain('--notify-fd');
    for (const name of ['bash', 'zsh', 'fish']) {
      const text = fs.readFileSync(scripts.get(name)!, 'utf8');
      for (const hidden of ['merge-driver', 'insecure-test-kdf', 'notify-fd']) {
        expect(text, `${name}: ${hidden}`).not.toContain(hidden);
      }
    }
  });

  it('offers paths where a value is a file or directory, and programs for exec', () => {
    expect(complete('vault put API_KEY --from-file val')).toEqual(['value.txt']);
    expect(complete('vault --vault v')).toEqual(['vdir']);
    expect(complete('vault exec -- bas')).toContain('bash');
    // exec's pass-through: after the program every word is its argument, never an option of vault's
    expect(complete('vault exec ./x --ti')).toEqual([]);
    expect(complete('vault exec -- ./x v')).toEqual(['value.txt', 'vdir']);
    // --run takes the interpreter and the script: both are paths
    expect(complete('vault allow API_KEY --run python3 val')).toEqual(['value.txt']);
  });

  it('offers secret names (never values) from the vault, with no word on the terminal when it cannot open', () => {
    expect(complete('vault rm ')).toEqual(['API_KEY', 'DB_PASSWORD']);
    expect(complete('vault allow D')).toEqual(['DB_PASSWORD']);
    expect(complete('vault allow API_KEY ')).toEqual(['API_KEY', 'DB_PASSWORD']);
    expect(complete(`vault --vault=${ws.vaultDir} rm A`)).toEqual(['API_KEY']);
    for (const line of ['vault --vault /nonexistent rm ', 'vault --vault /etc rm ']) {
      const missing = bashComplete(line);
      expect(missing).toEqual({ replies: [], stderr: '' });
    }
    // a vault that is there but damaged fails to open with its exit code: still nothing on the terminal
    const damaged = path.join(ws.root, 'damaged');
    fs.cpSync(ws.vaultDir, damaged, { recursive: true });
    fs.writeFileSync(path.join(damaged, 'vault.json'), '{');
    expect(ws.run(['--vault', damaged, 'list', '--json']).status).toBe(4);
    expect(bashComplete(`vault --vault ${damaged} rm `)).toEqual({ replies: [], stderr: '' });
  });
});

describe('vault completion: the command', () => {
  it('refuses an unknown shell with one line and exit 2', () => {
    const result = ws.run(['completion', 'ksh']);
    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/ksh.*bash, zsh, fish/);
  });

  it('gives install advice on stderr when stdout is a terminal, never in the script', () => {
    const hint = path.join(ws.root, 'hint.txt');
    const command = `"${process.execPath}" "${RELEASE_CLI}" completion bash 2>"${hint}"`;
    const result = ptyRun(ws, ['/bin/sh', '-c', command], []);
    expect(result.status).toBe(0);
    expect(result.output).toContain('complete -F _vault vault');
    expect(result.output).not.toContain('source <(');
    const advice = fs.readFileSync(hint, 'utf8');
    expect(advice).toMatch(/^above: the bash completion script; .*source <\(vault completion bash\)/);
  });
});

describe('vault completion zsh, computed by zsh', () => {
  it('parses (zsh -n)', () => {
    const run = spawnSync(shell('zsh'), ['-n', scripts.get('zsh')!], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
  });

  it('completes on TAB in an interactive zsh: choices, a nested command, secret names', () => {
    const zdotdir = path.join(ws.root, 'zdotdir');
    fs.mkdirSync(zdotdir, { recursive: true });
    const zsh = scripts.get('zsh')!;
    const zshrc = ["PS1='READY> '", 'bindkey -e', 'autoload -U compinit && compinit -u -D', `source ${zsh}`];
    fs.writeFileSync(path.join(zdotdir, '.zshrc'), `${zshrc.join('\n')}\n`);
    const result = ptyRun(ws, [shell('zsh'), '-i'], [
      // Ctrl-U empties the line for the next one (emacs keys, bindkey -e)
      { expect: 'READY> ', send: 'vault exec --tier \t' },
      { expect: 'lockdown', send: '\x15vault key a\t' },
      { expect: 'vault key add ', send: '\x15vault rm \t' },
      { expect: 'DB_PASSWORD', send: '\x15exit\n' },
    ], { ...shellEnv(), ZDOTDIR: zdotdir });
    expect(result.pending, result.output).toEqual([]);
    expect(result.output).toMatch(/hardened +lockdown +none/);
    expect(result.output).toMatch(/API_KEY +DB_PASSWORD/);
    expect(result.output).not.toMatch(/command not found|_vault:/);
  });
});

describe('vault completion fish, computed by fish', () => {
  const fishComplete = (line: string) => {
    const argv = ['--no-config', '-c', 'source $argv[1]; and complete -C $argv[2]', scripts.get('fish')!, line];
    const run = spawnSync(shell('fish'), argv, {
      env: shellEnv(), cwd: ws.project, encoding: 'utf8', timeout: 30_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toBe('');
    return run.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t')[0]!).sort();
  };

  it('parses (fish -n)', () => {
    const run = spawnSync(shell('fish'), ['-n', scripts.get('fish')!], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
  });

  it('completes with complete -C: commands, choices, options, secret names', () => {
    expect(fishComplete('vault ')).toEqual(helpCommands([]));
    expect(fishComplete('vault key a')).toEqual(['add']);
    expect(fishComplete('vault exec --tier ')).toEqual(['hardened', 'lockdown', 'none']);
    expect(fishComplete('vault exec --tier=lo')).toEqual(['--tier=lockdown']);
    expect(fishComplete('vault exec --ti')).toEqual(['--tier', '--timeout']);
    expect(fishComplete('vault key add --')).not.toContain('--insecure-test-kdf');
    expect(fishComplete('vault rm ')).toEqual(['API_KEY', 'DB_PASSWORD']);
    expect(fishComplete('vault --vault /nonexistent rm ')).toEqual([]);
  });
});
