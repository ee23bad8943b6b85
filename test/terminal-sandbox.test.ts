/**
 * `vault exec` on a real terminal (a pty driven by test/helpers/pty.ts), against a target that
 * tries to type into the user's shell, and for what a person expects of a program on a terminal:
 * Ctrl-C reaches it once and its INT trap finishes, the window size follows, colours and a tty
 * stay while output is masked, and the terminal's modes are back afterwards. As root and as an
 * unprivileged user created by the test.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TIERS } from '../src/sandbox/tiers.js';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';
import { ptyRun } from './helpers/pty.js';
import { asAccount, IS_ROOT, RUNNERS, runnerAccount } from './helpers/users.js';

const SECRET = 'terminal-secret-value-9d2e';
/** Types `touch MARKER` into its terminal with TIOCSTI: on stdin, or on /dev/tty when stdin is not one. */
const INJECT = `#!/usr/bin/python3
import fcntl, os, sys, termios
line = ("touch " + sys.argv[1] + "\\n").encode()
for name in ("stdin", "/dev/tty"):
    try:
        fd = 0 if name == "stdin" else os.open("/dev/tty", os.O_RDWR)
        for c in line:
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
        print(name, "injected", flush=True)
    except OSError as e:
        print(name, "refused:", e.strerror, flush=True)
`;
const legacyTiocsti = (() => {
  try {
    return fs.readFileSync('/proc/sys/dev/tty/legacy_tiocsti', 'utf8').trim() !== '0';
  } catch {
    return true; // kernels before 6.2 have no switch: TIOCSTI always works there
  }
})();

for (const runner of RUNNERS) {
  describe(`vault exec on a terminal, run by ${runner}`, () => {
    let ws: Workspace;
    const account = () => runnerAccount(runner);
    const program = (name: string, text: string) => {
      const file = path.join(ws.project, name);
      fs.writeFileSync(file, text, { mode: 0o755 });
      const owner = account();
      if (IS_ROOT && owner !== undefined) fs.chownSync(file, owner.uid, owner.gid);
      expect(ws.run(['allow', 'SECRET', '--to', file, '--min-tier', 'none']).status).toBe(0);
      return file;
    };
    const shellQuote = (argv: string[]) => argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');

    beforeEach(() => {
      ws = makeWorkspace({ account: account() });
      initWithToken(ws);
      put(ws, 'SECRET', SECRET);
    });
    afterEach(() => ws.cleanup());

    it('a target cannot type into the interactive shell that started vault (TIOCSTI), with stdin a terminal or redirected', () => {
      const marker = path.join(ws.project, 'owned');
      const inject = program('inject.py', INJECT);
      const bash = asAccount(account(), ['/bin/bash', '--norc', '--noprofile', '-i']);
      const session = (line: string) =>
        ptyRun(ws, bash, [
          { expect: 'PROMPT> ', send: `${line}\n` },
          { expect: 'PROMPT> ', send: 'echo END-$((6*7))\n' },
          { expect: 'END-42', send: 'exit\n' },
        ], { PS1: 'PROMPT> ' });

      // the attack works on this host without vault: the shell runs the typed line
      const control = session(`${inject} ${marker}`);
      expect(control.pending, control.output).toEqual([]);
      if (legacyTiocsti) {
        expect(control.output).toContain('stdin injected');
        expect(fs.existsSync(marker), 'the control injection ran').toBe(true);
        fs.rmSync(marker);
      }
      for (const tier of TIERS) {
        for (const redirect of ['', ' < /dev/null']) {
          const result = session(`${shellQuote(ws.cliCommand(['exec', '--tier', tier, '--', inject, marker]))}${redirect}`);
          expect(result.pending, result.output).toEqual([]);
          expect(result.output, `${tier}${redirect}`).toMatch(/stdin refused: (Operation not permitted|Inappropriate ioctl for device)/);
          expect(result.output).toMatch(/\/dev\/tty refused: (Operation not permitted|No such device or address)/);
          expect(fs.existsSync(marker), `${tier}${redirect}: the injected line ran in the user's shell`).toBe(false);
        }
      }
    });

    it('Ctrl-C reaches the target once through its pty: its INT trap finishes and vault exits with its code', () => {
      const trap = program('trap.sh', "#!/bin/bash\ntrap 'echo got-INT; sleep 1; echo cleaned; exit 0' INT\necho ready\nsleep 30 & wait\n");
      for (const tier of TIERS) {
        const result = ptyRun(ws, ws.command(['exec', '--tier', tier, '--', trap]), [{ expect: 'ready', send: '\x03' }]);
        expect(result.timedOut, result.output).toBe(false);
        expect(result.status, `${tier}: ${result.output}`).toBe(0);
        expect(result.output.match(/got-INT/g), result.output).toHaveLength(1);
        expect(result.output).toContain('cleaned');
      }
    });

    it('passes what the user types to the target, echoed by its own pty', () => {
      const asks = program('asks.sh', '#!/bin/sh\nprintf "name? "\nread name\necho "hello $name"\n');
      for (const tier of TIERS) {
        const result = ptyRun(ws, ws.command(['exec', '--tier', tier, '--', asks]), [{ expect: 'name? ', send: 'sealvault\r' }]);
        expect(result.status, `${tier}: ${result.output}`).toBe(0);
        expect(result.output).toBe('name? sealvault\nhello sealvault\n');
      }
    });

    it('keeps the target\'s terminal and colours while masking its output; the window size follows', () => {
      const colours = program('colours.sh', `#!/bin/bash
[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo "tty=yes"
echo "size=$(stty size)"
trap 'echo "resized=$(stty size)"; exit 0' WINCH
grep --color=always SECRET <<< "SECRET=$SECRET"
echo ready
sleep 30 & wait
`);
      for (const tier of TIERS) {
        const result = ptyRun(ws, ws.command(['exec', '--mask', '--tier', tier, '--', colours]), [{ expect: 'ready', resize: [40, 100] }]);
        expect(result.status, `${tier}: ${result.output}`).toBe(0);
        expect(result.output).toContain('tty=yes');
        expect(result.output).toContain('size=24 80');
        expect(result.output).toContain('resized=40 100');
        expect(result.output).toContain('\x1b[01;31m\x1b[KSECRET\x1b[m\x1b[K=***');
        expect(result.output).not.toContain(SECRET);
      }
    });

    it('puts the terminal\'s modes back after the run: masked or not, failed, or timed out', () => {
      const quiet = program('quiet.sh', '#!/bin/sh\necho ran\n');
      const sleeper = program('sleeper.sh', '#!/bin/sh\nexec sleep 30\n');
      // a sandbox that fails while it is set up: the grant's --rw path became a symlink
      const data = path.join(ws.project, 'data');
      fs.mkdirSync(data);
      const failing = program('failing.sh', '#!/bin/sh\necho never\n');
      expect(ws.run(['allow', 'SECRET', '--to', failing, '--min-tier', 'lockdown', '--rw', data]).status).toBe(0);
      fs.rmdirSync(data);
      fs.symlinkSync('/etc', data);
      const cases: [string, string[], number][] = [
        ['plain', ['exec', '--', quiet], 0],
        ['masked', ['exec', '--mask', '--', quiet], 0],
        ['a sandbox that could not be set up', ['exec', '--tier', 'lockdown', '--', failing], 125],
        ['timed out', ['exec', '--timeout', '300ms', '--', sleeper], 124],
      ];
      for (const [what, args, code] of cases) {
        const line = `stty -g; ${shellQuote(ws.cliCommand(args))}; echo "status=$?"; stty -g`;
        const result = ptyRun(ws, asAccount(account(), ['/bin/sh', '-c', line]), []);
        expect(result.status, `${what}: ${result.output}`).toBe(0);
        const lines = result.output.trim().split('\n');
        expect(lines.find((l) => l.startsWith('status=')), `${what}: ${result.output}`).toBe(`status=${code}`);
        expect(lines.at(-1), `${what}: the modes after differ from before`).toBe(lines[0]);
      }
    });
  });
}
