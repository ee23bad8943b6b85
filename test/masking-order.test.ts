/**
 * Masking keeps the order of the target's stdout and stderr when both go to one place: `vault exec
 * -- prog > log 2>&1`, one CI pipe, stdin a terminal with output to a log, and through the agent
 * (the node client and the launcher's own). The target interleaves writes to its stdout and stderr
 * (whole and partial lines, some carrying the secret, one secret split across two writes); the log
 * must be exactly what `2>&1` gives without vault, with the secret masked. Into two files, each
 * file is exactly its own stream. As root and as an unprivileged user. bench/masking-order.mjs
 * counts the reorderings this prevents.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oneDestination, onePlace, type OutputFile } from '../src/sandbox/spawn.js';
import { native } from '../src/vault/native.js';
import { initWithToken, makeWorkspace, put, ROOT, type Workspace } from './helpers/cli.js';
import { ptyRun } from './helpers/pty.js';
import { asAccount, IS_ROOT, RUNNERS, runnerAccount } from './helpers/users.js';

const SECRET = 'tk_order-9e4d7c21b5a8f03';
const WRITES = 300;

/**
 * Write n goes to stdout when n is even, else stderr; every fifth carries the secret; every third
 * leaves its line open. Then the secret split across two writes of stdout, then of stderr.
 * os.write: one write(2) each, nothing buffered.
 */
const PRINTER = `#!/usr/bin/env python3
import os
t = os.environ['TOKEN']
for n in range(${WRITES}):
    text = '[%d]' % n + (' tok=' + t if n % 5 == 0 else '') + ('' if n % 3 == 2 else '\\n')
    os.write(1 if n % 2 == 0 else 2, text.encode())
half = len(t) // 2
for fd in (1, 2):
    os.write(fd, ('split%d=' % fd + t[:half]).encode())
    os.write(fd, (t[half:] + ':end\\n').encode())
`;

/** What the printer writes to `fd` (1, 2, or both in order: 'both'), with the secret as `***`. */
function expected(fd: 1 | 2 | 'both'): string {
  let text = '';
  for (let n = 0; n < WRITES; n += 1) {
    if (fd !== 'both' && fd !== (n % 2 === 0 ? 1 : 2)) continue;
    text += `[${n}]${n % 5 === 0 ? ' tok=***' : ''}${n % 3 === 2 ? '' : '\n'}`;
  }
  for (const each of [1, 2] as const) if (fd === 'both' || fd === each) text += `split${each}=***:end\n`;
  return text;
}

for (const runner of RUNNERS) {
  describe(`masking keeps the order of stdout and stderr that go to one place, run by ${runner}`, () => {
    let ws: Workspace;
    let script: string;
    const account = () => runnerAccount(runner);
    const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`;
    /** The shell words of `vault exec FLAGS -- printer` as the workspace's user runs it: from node, or the launcher. */
    const vaultExec = (flags: string, launcher = false) => {
      const [node, cli] = ws.cliCommand([]);
      const launcherPath = path.join(path.dirname(cli!), '..', 'build', 'Release', 'vault_launcher');
      const program = launcher ? [launcherPath] : [node!, cli!];
      return `${program.map(quote).join(' ')} exec ${flags} -- ${quote(script)}`;
    };
    /** Runs `command` in bash (through `wrapper`) as the workspace's user, in its project directory (`read`'s). */
    const shell = (command: string, env: NodeJS.ProcessEnv = ws.env, wrapper: string[] = []) => {
      const [program, ...rest] = asAccount(account(), [...wrapper, '/bin/bash', '-c', command]);
      const result = spawnSync(program!, rest, { env, cwd: ws.project, encoding: 'utf8', timeout: 60_000 });
      expect(result.status, `${command}: ${result.stderr}`).toBe(0);
      expect(result.stderr, command).toBe('');
    };
    const read = (file: string) => fs.readFileSync(path.join(ws.project, file), 'utf8');

    beforeAll(() => {
      ws = makeWorkspace({ account: account() });
      initWithToken(ws);
      put(ws, 'TOKEN', SECRET);
      script = path.join(ws.project, 'printer.py');
      fs.writeFileSync(script, PRINTER, { mode: 0o755 });
      const who = account();
      if (IS_ROOT && who !== undefined) fs.chownSync(script, who.uid, who.gid);
      const allowed = ws.run(['allow', 'TOKEN', '--to', script, '--min-tier', 'none']);
      expect(allowed.status, allowed.stderr).toBe(0);
    });
    afterAll(() => ws?.cleanup());

    it.each(['none', 'hardened', 'lockdown'])('`> log 2>&1` in tier %s: every write in order, masked', (tier) => {
      shell(`${vaultExec(`--tier ${tier}`)} > log 2>&1`, { ...ws.env, CI: 'true' });
      expect(read('log')).toBe(expected('both'));
    });

    it('one pipe (`2>&1 | cat`), and one file both descriptions append to (`>> log 2>> log`): in order, masked', () => {
      shell(`${vaultExec('')} 2>&1 | cat > piped`);
      expect(read('piped')).toBe(expected('both'));
      shell(`${vaultExec('')} >> appended 2>> appended`);
      expect(read('appended')).toBe(expected('both'));
    });

    it('where kcmp(2) is refused (a container\'s seccomp profile): `> log 2>&1` in order all the same', () => {
      const noKcmp = path.join(ws.root, 'no-kcmp');
      const source = path.join(ROOT, 'test', 'fixtures', 'no-kcmp.c');
      const cc = spawnSync('cc', ['-O1', '-o', noKcmp, source, '-lseccomp'], { encoding: 'utf8' });
      expect(cc.status, cc.stderr).toBe(0);
      fs.chmodSync(noKcmp, 0o755);
      // the control: under it the addon cannot compare fds 1 and 2 (null), which `2>&1` made one description
      const addon = path.join(path.dirname(ws.cliCommand([])[1]!), '..', 'build', 'Release', 'sealvault_native.node');
      const probe = `require(${JSON.stringify(addon)}).sameOpenFile(1, 2)`;
      shell(`${quote(process.execPath)} -p ${quote(probe)} > probe 2>&1`, ws.env, [noKcmp]);
      expect(read('probe')).toBe('null\n');
      shell(`${vaultExec('')} > log-no-kcmp 2>&1`, ws.env, [noKcmp]);
      expect(read('log-no-kcmp')).toBe(expected('both'));
    });

    it('two files (`> out 2> err`): each is its own stream, in order, masked', () => {
      shell(`${vaultExec('')} > out 2> err`);
      expect(read('out')).toBe(expected(1));
      expect(read('err')).toBe(expected(2));
    });

    it('stdin a terminal, stdout and stderr one file: the target keeps its pty as stdin, the log its order', () => {
      const command = `[ -t 0 ] || exit 99; ${vaultExec('--mask')} > log-pty 2>&1; echo "status=$?"`;
      const result = ptyRun(ws, asAccount(account(), ['/bin/bash', '-c', command]), []);
      expect(result.output).toBe('status=0\n');
      expect(read('log-pty')).toBe(expected('both'));
    });

    it('through the agent, from node and from the launcher: the client\'s one file keeps the order', () => {
      ws.env.VAULT_AGENT_SOCK = path.join(ws.env.HOME!, 'agent', 'agent.sock');
      const started = ws.run(['agent', 'start']);
      expect(started.status, started.stderr).toBe(0);
      try {
        const env: NodeJS.ProcessEnv = { ...ws.env, CI: 'true' };
        delete env.VAULT_KEY; // so that the run goes through the agent
        shell(`${vaultExec('')} > agent-node 2>&1`, env);
        expect(read('agent-node')).toBe(expected('both'));
        shell(`${vaultExec('', true)} > agent-launcher 2>&1`, env);
        expect(read('agent-launcher')).toBe(expected('both'));
        shell(`${vaultExec('', true)} > agent-out 2> agent-err`, env);
        expect([read('agent-out'), read('agent-err')]).toEqual([expected(1), expected(2)]);
        // the runs were the agent's: three releases recorded with the client that asked
        const runs = ws.run(['audit', '--runs', '--json']).stdout.trim().split('\n');
        const releases = runs.map((l) => JSON.parse(l) as { event: string; details: { client?: unknown } })
          .filter((e) => e.event === 'release');
        expect(releases.filter((e) => e.details.client !== undefined)).toHaveLength(3);
      } finally {
        ws.run(['agent', 'stop']);
        delete ws.env.VAULT_AGENT_SOCK;
      }
    });
  });
}

describe('oneDestination: when stdout and stderr count as one place', () => {
  let dir: string;
  const opened: number[] = [];
  const open = (file: string, flags: string) => {
    const fd = fs.openSync(path.join(dir, file), flags);
    opened.push(fd);
    return fd;
  };
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'sealvault-one-destination-'));
  });
  afterAll(() => {
    for (const fd of opened) fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('one open file description (dup(2), as `2>&1` makes): one place; the file opened again: not by itself', () => {
    const fd = open('log', 'w');
    const copy = native().dupAbove(fd, 10);
    opened.push(copy);
    expect(oneDestination(fd, copy)).toBe(true);
    expect(oneDestination(fd, fd)).toBe(true);
    // kcmp tells the two descriptions apart (where it may; else equal offsets and flags count as one)
    const again = open('log', 'w');
    expect(oneDestination(fd, again)).toBe(native().sameOpenFile(fd, again) === null);
  });

  it('two descriptions of one regular file writing at their own offsets: two places; both appending: one', () => {
    expect(oneDestination(open('two', 'w'), open('two', 'r+'))).toBe(false);
    expect(oneDestination(open('appending', 'a'), open('appending', 'a'))).toBe(true);
    expect(oneDestination(open('half', 'a'), open('half', 'r+'))).toBe(false);
  });

  it('two different files: two places; one FIFO opened twice: one place (one stream of bytes)', () => {
    expect(oneDestination(open('x', 'w'), open('y', 'w'))).toBe(false);
    spawnSync('mkfifo', [path.join(dir, 'fifo')]);
    const reader = open('fifo', 'r+'); // O_RDWR: opening does not wait for a writer
    expect(oneDestination(reader, open('fifo', 'w'))).toBe(true);
  });

  it('where kcmp cannot answer: one regular file with equal flags and offsets counts as one description', () => {
    const file = (flags: number, offset: number, ino = 7n): OutputFile => ({
      dev: 1n, ino, regular: true, flags, offset,
    });
    const { O_WRONLY, O_APPEND } = fs.constants;
    expect(onePlace(file(O_WRONLY, 120), file(O_WRONLY, 120), null)).toBe(true);
    expect(onePlace(file(O_WRONLY, 120), file(O_WRONLY, 0), null)).toBe(false);
    expect(onePlace(file(O_WRONLY, 0), file(O_WRONLY | O_APPEND, 0), null)).toBe(false);
    expect(onePlace(file(O_WRONLY, 0), file(O_WRONLY, 0, 8n), null)).toBe(false);
    // kcmp's "two descriptions" wins over equal offsets; its "one" over anything
    expect(onePlace(file(O_WRONLY, 120), file(O_WRONLY, 120), false)).toBe(false);
    expect(onePlace(file(O_WRONLY, 120), file(O_WRONLY, 0), true)).toBe(true);
  });
});
