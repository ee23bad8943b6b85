/**
 * `vault agent`: a real agent unlocked with a passphrase typed on a real pty, and the processes
 * around it. A process of the same user with no terminal and no passphrase can run granted programs
 * through it and get their output, and nothing else: not `vault allow`, not a new slot, not a value
 * through a crafted request. A second user it serves runs granted programs as the agent's user, and
 * cannot read the target's environment; a third user is refused. Lock, timeout and kill -9 leave
 * nothing that opens the vault.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeWorkspace, put, ROOT, type RunResult, TEST_CLI, type Workspace } from './helpers/cli.js';
import { ptyRun } from './helpers/pty.js';
import { type Account, asAccount, IS_ROOT, RUNNERS, runnerAccount, systemUser } from './helpers/users.js';

const PASSPHRASE = 'correct horse battery staple';
const SECRET = 'agent-held-secret-value-4242';
const EXEC_FAILED = 125;

/** A workspace whose vault opens with a passphrase only, a granted script, and a runtime directory for the socket. */
function passphraseVault(account: Account | undefined): { ws: Workspace; script: string; socket: string } {
  const ws = makeWorkspace({ account });
  const run = path.join(ws.root, 'run');
  fs.mkdirSync(run, { mode: 0o700 });
  if (IS_ROOT && account !== undefined) fs.chownSync(run, account.uid, account.gid);
  ws.env.XDG_RUNTIME_DIR = run;
  const made = ws.run(['init', '--passphrase', '--insecure-test-kdf'], { cli: TEST_CLI, env: { VAULT_PASSPHRASE: PASSPHRASE } });
  expect(made.status, made.stderr).toBe(0);
  put(ws, 'DB', SECRET);
  put(ws, 'OTHER', 'other-secret-value-0000');
  const script = path.join(ws.project, 'deploy.sh');
  fs.writeFileSync(script, '#!/bin/sh\necho "deploying with ${#DB} bytes; args: $*"\n', { mode: 0o755 });
  if (IS_ROOT && account !== undefined) fs.chownSync(script, account.uid, account.gid);
  const granted = ws.run(['allow', 'DB', '--to', script], { env: { VAULT_PASSPHRASE: PASSPHRASE } });
  expect(granted.status, granted.stderr).toBe(0);
  return { ws, script, socket: path.join(run, 'sealvault', 'agent.sock') };
}

/** `vault agent start`, the passphrase typed on a pty. */
function startAgent(ws: Workspace, extra: string[] = []): void {
  const started = ptyRun(ws, ws.command(['agent', 'start', ...extra]), [{ expect: 'Vault passphrase: ', send: `${PASSPHRASE}\r` }]);
  expect(started.pending, started.output).toEqual([]);
  expect(started.status, started.output).toBe(0);
  expect(started.output).toMatch(/agent started \(pid \d+\)/);
}

/** A process of the same user with no terminal (a session of its own) and no passphrase or token in its environment. */
function withoutPerson(ws: Workspace, args: string[]): RunResult {
  const env = { ...ws.env };
  for (const name of Object.keys(env)) if (name.startsWith('VAULT_') && name !== 'VAULT_DIR') delete env[name];
  // setsid(1): a session without a controlling terminal, so no /dev/tty to ask on
  const [program, ...rest] = ['setsid', '-w', ...ws.command(args)];
  const result = spawnSync(program!, rest, { env, cwd: ws.project, input: '', encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr, stdoutBytes: Buffer.from(result.stdout) };
}

function agentPid(ws: Workspace): number | undefined {
  const status = ws.run(['agent', 'status', '--json']);
  return status.status === 0 ? (JSON.parse(status.stdout) as { pid: number }).pid : undefined;
}

/**
 * A client written by hand, run as the agent's own user: for each case (body as base64, a length to
 * claim, whether to pass cwd and stdio fds) one connection, and the agent's answer lines.
 */
const CRAFTED_CLIENT = String.raw`
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as net from 'node:net';
const [addonPath, socket, casesFile, cwd] = process.argv.slice(2);
const addon = createRequire(import.meta.url)(addonPath);
const answers = [];
for (const c of JSON.parse(fs.readFileSync(casesFile, 'utf8'))) {
  const data = Buffer.from(c.body, 'base64');
  const frame = Buffer.alloc(4 + data.length);
  frame.writeUInt32BE(c.length ?? data.length, 0);
  data.copy(frame, 4);
  const connection = net.createConnection(socket);
  await new Promise((resolve, reject) => connection.once('connect', resolve).once('error', reject));
  addon.sendWithFds(connection._handle.fd, frame, c.fds ? [fs.openSync(cwd, 'r'), 0, 1, 2] : [], 5000);
  let answer = '';
  connection.setEncoding('utf8');
  connection.on('data', (chunk) => (answer += chunk));
  await new Promise((resolve) => connection.once('close', resolve));
  answers.push(answer);
}
process.stdout.write(JSON.stringify(answers));
`;

interface CraftedCase {
  body: object | string;
  length?: number;
  fds?: boolean;
}

function crafted(ws: Workspace, account: Account | undefined, socket: string, cases: CraftedCase[]): string[] {
  const client = path.join(ws.root, 'crafted-client.mjs');
  const casesFile = path.join(ws.root, 'crafted-cases.json');
  fs.writeFileSync(client, CRAFTED_CLIENT, { mode: 0o644 });
  const encoded = cases.map((c) => ({ ...c, body: Buffer.from(typeof c.body === 'string' ? c.body : JSON.stringify(c.body)).toString('base64') }));
  fs.writeFileSync(casesFile, JSON.stringify(encoded), { mode: 0o644 });
  const addon = path.join(fs.existsSync(path.join(ws.root, 'app')) ? path.join(ws.root, 'app') : ROOT, 'build', 'Release', 'sealvault_native.node');
  const [program, ...rest] = asAccount(account, [process.execPath, client, addon, socket, casesFile, ws.project]);
  const run = spawnSync(program!, rest, { encoding: 'utf8', timeout: 60_000 });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as string[];
}

for (const runner of RUNNERS) {
  describe(`vault agent, run by ${runner}`, () => {
    let ws: Workspace;
    let script: string;
    let socket: string;
    let reference: string;
    beforeEach(() => {
      ({ ws, script, socket } = passphraseVault(runnerAccount(runner)));
      reference = path.join(ws.root, 'before-the-agent');
      fs.writeFileSync(reference, '');
      spawnSync('sleep', ['0.01']);
      startAgent(ws);
    });
    afterEach(() => {
      if (ws === undefined) return;
      const pid = agentPid(ws);
      ws.run(['agent', 'stop']);
      if (pid !== undefined) spawnSync('kill', ['-9', String(pid)]);
      ws.cleanup();
    });

    it('a process with no terminal and no passphrase runs the granted program through it, and gets only its output', () => {
      const result = withoutPerson(ws, ['exec', '--', script, 'one', 'two']);
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(result.stdout).toBe(`deploying with ${SECRET.length} bytes; args: one two\n`);
      // without the agent the same process cannot unlock at all
      const pid = agentPid(ws);
      expect(ws.run(['agent', 'stop']).status).toBe(0);
      for (let i = 0; i < 50 && pid !== undefined && fs.existsSync(`/proc/${pid}`); i += 1) spawnSync('sleep', ['0.1']);
      const alone = withoutPerson(ws, ['exec', '--', script]);
      expect(alone.status).toBe(EXEC_FAILED);
      expect(alone.stderr).toMatch(/^vault: cannot unlock the vault: /);
    });

    it('it cannot change the vault: allow and key add --token fail, for want of a person', () => {
      const mine = path.join(ws.project, 'mine.sh');
      fs.writeFileSync(mine, '#!/bin/sh\necho "$DB"\n', { mode: 0o755 });
      const before = fs.readFileSync(path.join(ws.vaultDir, 'policy.json'));
      for (const args of [['allow', 'DB', '--to', mine], ['key', 'add', '--token'], ['revoke', 'DB', '--from', script], ['trust']]) {
        const result = withoutPerson(ws, args);
        expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(8);
        expect(result.stdout).toBe('');
      }
      expect(fs.readFileSync(path.join(ws.vaultDir, 'policy.json')).equals(before)).toBe(true);
      const leak = withoutPerson(ws, ['exec', '--', mine]);
      expect(leak.status).toBe(EXEC_FAILED);
      expect(leak.stdout).not.toContain(SECRET);
      expect(leak.stderr).toMatch(/granted to .*mine\.sh/);
    });

    it('crafted requests get one error line and a closed connection, never a value', () => {
      const exec = { v: 1, op: 'exec', vault: ws.vaultDir, env: {}, tier: 'hardened', files: [], mask: null };
      const answers = crafted(ws, runnerAccount(runner), socket, [
        { body: { v: 1, op: 'reveal', name: 'DB' } },
        { body: { ...exec, argv: [script] } },
        { body: '{not json' },
        { body: '{}', length: 0xfffffff },
        { body: { ...exec, argv: ['/bin/sh', '-c', 'echo $DB'] }, fds: true },
        { body: { ...exec, argv: [script], tier: 'none' }, fds: true },
        // a name with "=" would become an entry that shadows a pin for a runtime that reads the first one
        { body: { ...exec, argv: [script], env: { 'DB=attacker': '' } }, fds: true },
      ]);
      for (const [i, answer] of answers.entries()) {
        expect(answer, `request ${i}`).not.toContain(SECRET);
        const lines = answer.trim().split('\n').map((l) => JSON.parse(l) as { event: string; message: string });
        expect(lines, `request ${i}: ${answer}`).toHaveLength(1);
        expect(lines[0]?.event, `request ${i}`).toBe('error');
      }
      expect(answers[4]).toMatch(/granted to \/usr\/bin\/dash/);
      expect(answers[5]).toMatch(/tier hardened or stronger/);
      expect(answers[6]).toMatch(/a malformed request/);
      // the agent still serves
      expect(withoutPerson(ws, ['exec', '--', script]).status).toBe(0);
    });

    it('after `vault agent lock`, and after --timeout, exec through it fails with one line saying how to unlock', () => {
      expect(ws.run(['agent', 'lock']).status).toBe(0);
      const locked = withoutPerson(ws, ['exec', '--', script]);
      expect(locked.status).toBe(EXEC_FAILED);
      expect(locked.stderr).toMatch(/^vault: the agent at .* is locked .* start it again with `vault agent stop` then `vault agent start`[^\n]*\n$/);
      expect(ws.run(['agent', 'stop']).status).toBe(0);
      startAgent(ws, ['--timeout', '1s']);
      expect(withoutPerson(ws, ['exec', '--', script]).status).toBe(0);
      spawnSync('sleep', ['1.5']);
      const expired = withoutPerson(ws, ['exec', '--', script]);
      expect(expired.status).toBe(EXEC_FAILED);
      expect(expired.stderr).toMatch(/is locked/);
    });

    // through the agent, and by vault exec on its own (no agent at the socket it is given). Runs are
    // recorded in the run log of the user who runs them, outside the vault (docs/FORMAT.md, "Run log"):
    // a writer of the vault, who could cut back its 0.1 audit.log, has no release there to take out.
    for (const how of ['agent', 'direct'] as const) {
      it(`${how}: the run log has a run's release before its program starts; the vault stays as it was`, async () => {
        const text = fs.readFileSync(path.join(ws.vaultDir, 'vault.json'), 'utf8');
        const id = Buffer.from((JSON.parse(text) as { vault_id: string }).vault_id, 'base64').toString('base64url');
        const log = path.join(ws.env.XDG_STATE_HOME!, 'sealvault', 'runs', id, 'audit.log');
        const seen = path.join(ws.project, 'seen');
        const slow = path.join(ws.project, 'slow.sh');
        // the program looks at the run log as it starts (tier hardened hides no path)
        fs.writeFileSync(slow, `#!/bin/sh\ncat '${log}' > '${seen}'\nsleep 2\n`, { mode: 0o755 });
        const owner = runnerAccount(runner);
        if (IS_ROOT && owner !== undefined) fs.chownSync(slow, owner.uid, owner.gid);
        expect(ws.run(['allow', 'DB', '--to', slow], { env: { VAULT_PASSPHRASE: PASSPHRASE } }).status).toBe(0);
        const vaultBefore = ws.vaultFiles();
        const before = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
        const [program, ...rest] = ['setsid', '-w', ...ws.command(['exec', '--', slow])];
        const env: NodeJS.ProcessEnv = { ...ws.env };
        if (how === 'agent') delete env.VAULT_PASSPHRASE;
        else Object.assign(env, { VAULT_PASSPHRASE: PASSPHRASE, VAULT_AGENT_SOCK: '/nonexistent/agent.sock' });
        const running = spawn(program!, rest, { env, cwd: ws.project, stdio: 'ignore' });
        const code = await new Promise<number | null>((resolve) => running.once('close', (c) => resolve(c)));
        expect(code).toBe(0);
        type Entry = { event: string; details: { run?: string; path?: string; exit?: number } };
        const entries = (text: string) => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Entry);
        // what the program saw: the log as it was, and the release of its own run last, with no exit yet
        const atStart = fs.readFileSync(seen, 'utf8');
        expect(atStart.startsWith(before), 'the run log as the program started').toBe(true);
        const release = entries(atStart.slice(before.length));
        expect(release).toHaveLength(1);
        expect(release[0]).toMatchObject({ event: 'release', details: { path: slow } });
        expect(entries(fs.readFileSync(log, 'utf8').slice(atStart.length))).toEqual([
          expect.objectContaining({ event: 'exit', details: { run: release[0]!.details.run, exit: 0 } }),
        ]);
        expect(ws.vaultFiles()).toEqual(vaultBefore);
      });
    }

    it('kill -9 leaves no key on disk and no socket that answers; exec then unlocks by itself', async () => {
      const pid = agentPid(ws);
      expect(pid).toBeDefined();
      spawnSync('kill', ['-9', String(pid)]);
      for (let i = 0; i < 50 && fs.existsSync(`/proc/${pid}`); i += 1) spawnSync('sleep', ['0.1']);
      const answers = await new Promise<boolean>((resolve) => {
        const probe = net.createConnection(socket);
        probe.once('connect', () => resolve(true)).once('error', () => resolve(false));
      });
      expect(answers).toBe(false);
      const result = withoutPerson(ws, ['exec', '--', script]);
      expect(result.status).toBe(EXEC_FAILED);
      expect(result.stderr).toMatch(/cannot unlock the vault/);
      // nothing the agent wrote holds the private key: only the socket, the pins, the run log (its agent-start),
      // the index of audit entries read, and the vault's own files
      const written = spawnSync('find', [ws.root, '-newer', reference, '-type', 'f'], { encoding: 'utf8' });
      const allowed = [
        /\/vault\/(\.lock|policy\.json|audit\/[0-9a-f]{64}\.json)$/,
        /\/sealvault\/(known_vaults\.(json|lock)|runs\/[\w-]{22}\/(audit\.log|\.lock)|audit-index\/[\w-]{22})$/,
        /\/(pty-.*\.json|pty-driver\.py)$/,
      ];
      for (const file of written.stdout.trim().split('\n').filter((f) => f !== '')) {
        expect(allowed.some((pattern) => pattern.test(file)), file).toBe(true);
      }
    });

    it.runIf(IS_ROOT)('a socket at the default path answered by another user gets nothing: exec refuses (125)', async () => {
      // without XDG_RUNTIME_DIR the default is in the temporary directory, where anyone can be first
      const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-shared-tmp-'));
      fs.chmodSync(shared, 0o1777);
      const me = runnerAccount(runner);
      const squatter = me === undefined ? systemUser('sealvault-other')! : undefined;
      const uid = me?.uid ?? 0;
      const taken = path.join(shared, `sealvault-${uid}`);
      const got = path.join(shared, 'received');
      const fake = `import os, socket, sys
os.makedirs(sys.argv[1], mode=0o700)
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(sys.argv[1], 'agent.sock'))
os.chmod(os.path.join(sys.argv[1], 'agent.sock'), 0o666)
os.chmod(sys.argv[1], 0o711)
s.listen()
print('ready', flush=True)
c, _ = s.accept()
data = b''
while chunk := c.recv(65536):
    data += chunk
open(sys.argv[2], 'w').write(str(len(data)))
`;
      const command = ['/usr/bin/python3', '-c', fake, taken, got];
      const [program, ...rest] = squatter === undefined ? command : asAccount(squatter, command);
      const listener = spawn(program!, rest, { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((resolve) => {
        listener.stdout!.once('data', resolve);
        listener.once('close', resolve);
      });
      expect(listener.exitCode, 'the stranger could not listen').toBeNull();
      const env = { ...ws.env, XDG_RUNTIME_DIR: undefined, TMPDIR: shared };
      const result = ws.run(['exec', '--', script], { env: { ...env, VAULT_KEY: 'svt1_not-for-a-stranger' } });
      await new Promise((resolve) => listener.once('close', resolve));
      expect(result.status, result.stderr).toBe(EXEC_FAILED);
      expect(result.stderr).toMatch(/^vault: the process answering at .*agent\.sock runs as uid \d+, not as you[^\n]*nothing was sent to it[^\n]*\n$/);
      expect(fs.readFileSync(got, 'utf8'), 'bytes the stranger received').toBe('0');
      fs.rmSync(shared, { recursive: true, force: true });
    });

    it('the variables that open the vault never reach a target, whatever its grant passes; nor the agent', () => {
      const refused = ws.run(['allow', 'DB', '--to', script, '--pass-env', 'VAULT_KEY'], { env: { VAULT_PASSPHRASE: PASSPHRASE } });
      expect(refused.status).toBe(11);
      expect(refused.stderr).toMatch(/^vault: --pass-env VAULT_KEY: sealvault's own variables \(VAULT_\*, SEALVAULT_\*\) never reach a target/);
      const shows = path.join(ws.project, 'shows.sh');
      fs.writeFileSync(shows, '#!/bin/sh\necho "${VAULT_KEY:-none} ${VAULT_PASSPHRASE:-none} ${VAULT_MARK:-none} ${VAULTMARK:-none}"\n', { mode: 0o755 });
      const owner = runnerAccount(runner);
      if (IS_ROOT && owner !== undefined) fs.chownSync(shows, owner.uid, owner.gid);
      const granted = ws.run(['allow', 'DB', '--to', shows, '--pass-env', 'VAULT*'], { env: { VAULT_PASSPHRASE: PASSPHRASE } });
      expect(granted.status, granted.stderr).toBe(0);
      // VAULT* takes in VAULTMARK; sealvault's own VAULT_* never pass
      const leaked = { VAULT_KEY: 'svt1_leak-me', VAULT_PASSPHRASE: 'leak-me-too', VAULT_MARK: 'mine', VAULTMARK: 'passed' };
      // through the agent, and on its own (no agent at that socket)
      const through = ws.run(['exec', '--', shows], { env: leaked });
      expect(through.stdout, through.stderr).toBe('none none none passed\n');
      const direct = ws.run(['exec', '--', shows], { env: { ...leaked, VAULT_KEY: undefined, VAULT_AGENT_SOCK: '/nonexistent/agent.sock' } });
      expect(direct.stdout + direct.stderr).not.toContain('leak-me');
    });

    it('a working directory removed before vault starts: one line, exit 125, nothing runs', () => {
      const gone = path.join(ws.project, 'gone');
      const [program, ...rest] = ['sh', '-c', 'mkdir "$0" && cd "$0" && rmdir "$0" && exec "$@"', gone, ...ws.command(['exec', '--', script])];
      const env = { ...ws.env };
      delete env.VAULT_PASSPHRASE;
      const result = spawnSync(program!, rest, { env, cwd: ws.project, encoding: 'utf8', timeout: 30_000 });
      expect(result.status, result.stderr).toBe(EXEC_FAILED);
      expect(result.stderr).toMatch(/^vault: the working directory no longer exists \(removed\?\); cd into a directory that does[^\n]*\n$/);
      expect(result.stdout).toBe('');
    });

    it('--timeout longer than a timer can wait is refused (2), not taken as "now"', () => {
      const result = ws.run(['agent', 'start', '--foreground', '--timeout', '30d', '--socket', path.join(ws.root, 'run', 'other.sock')]);
      expect(result.status).toBe(2);
      expect(result.stderr).toMatch(/^vault: --timeout 30d is longer than the agent can wait: at most 24d\n$/);
    });

    it('argv[0] of a granted program is its own path, whatever name the caller ran it by', () => {
      const source = path.join(ws.root, 'argv0.c');
      const program = path.join(ws.project, 'argv0');
      fs.writeFileSync(source, '#include <stdio.h>\nint main(int c, char **v) { (void)c; printf("argv0=%s\\n", v[0]); return 0; }\n');
      expect(spawnSync('cc', ['-o', program, source]).status).toBe(0);
      const owner = runnerAccount(runner);
      if (IS_ROOT && owner !== undefined) fs.chownSync(program, owner.uid, owner.gid);
      const granted = ws.run(['allow', 'DB', '--to', program], { env: { VAULT_PASSPHRASE: PASSPHRASE } });
      expect(granted.status, granted.stderr).toBe(0);
      fs.symlinkSync(program, path.join(ws.project, 'other-name'));
      const result = withoutPerson(ws, ['exec', '--tier', 'hardened', '--', path.join(ws.project, 'other-name')]);
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe(`argv0=${program}\n`);
    });

    it('idle connections do not make a masked run lose its output or end the agent', async () => {
      const idle = Array.from({ length: 4 }, () => net.createConnection(socket));
      try {
        await Promise.all(idle.map((c) => new Promise((resolve) => c.once('connect', resolve))));
        const masked = withoutPerson(ws, ['exec', '--mask', '--', script, 'masked']);
        expect(masked.status, masked.stderr).toBe(0);
        expect(masked.stdout).toBe(`deploying with ${SECRET.length} bytes; args: masked\n`);
      } finally {
        for (const c of idle) c.destroy();
      }
      expect(agentPid(ws), 'the agent still answers').toBeDefined();
    });

    it('the agent is not dumpable and its environment is not readable by processes of its own user', () => {
      const pid = agentPid(ws)!;
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(status).toMatch(/^Uid:/m);
      const [program, ...rest] = asAccount(runnerAccount(runner), ['cat', `/proc/${pid}/environ`]);
      const read = spawnSync(program!, rest, { encoding: 'utf8' });
      if (!IS_ROOT || runnerAccount(runner) !== undefined) expect(read.status, read.stdout).not.toBe(0);
      const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
      expect(limits).toMatch(/^Max core file size\s+0\s+0/m);
    });
  });
}

describe('opening a program', () => {
  it('a FIFO swapped in where a program was is refused at once, never waited on', async () => {
    const { openRegularFile } = await import('../src/vault/binary.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-fifo-'));
    const fifo = path.join(dir, 'program');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    expect(() => openRegularFile(fifo)).toThrow(/is not a regular file/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe.skipIf(!IS_ROOT)('an agent that serves another user (--allow-uid)', () => {
  const owner = () => runnerAccount('an unprivileged user' as (typeof RUNNERS)[number])!;
  let ws: Workspace;
  let served: Account;
  let refused: Account;
  let shared: string;
  beforeEach(() => {
    served = systemUser('sealvault-ai')!;
    refused = systemUser('sealvault-other')!;
    ({ ws } = passphraseVault(owner()));
    shared = path.join(ws.root, 'shared');
    fs.mkdirSync(shared, { mode: 0o755 });
    fs.chownSync(shared, owner().uid, owner().gid);
    startAgent(ws, ['--allow-uid', String(served.uid), '--socket', path.join(shared, 'agent.sock')]);
  });
  afterEach(() => {
    ws.run(['agent', 'stop', '--socket', path.join(shared, 'agent.sock')]);
    ws.cleanup();
  });

  /** `vault exec` as `who`, in a project of theirs, through the shared socket. */
  function execAs(who: Account, project: string, argv: string[]): Promise<RunResult> {
    const env = { PATH: ws.env.PATH, HOME: project, VAULT_DIR: ws.vaultDir, VAULT_AGENT_SOCK: path.join(shared, 'agent.sock'), LANG: 'C.UTF-8' };
    const [program, ...rest] = asAccount(who, [process.execPath, path.join(ws.root, 'app', 'dist', 'vault.mjs'), 'exec', '--', ...argv]);
    return new Promise((resolve) => {
      const child = spawn(program!, rest, { env, cwd: project, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const bound = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.on('close', (status, signal) => {
        clearTimeout(bound);
        resolve({ status, signal, stdout, stderr, stdoutBytes: Buffer.from(stdout) });
      });
    });
  }

  it('the served user runs a granted program as the agent\'s user and cannot read its environment; a third user is refused', async () => {
    const project = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-ai-'));
    fs.chmodSync(project, 0o755);
    // the target runs as the agent's user: it writes its pid where both users may
    const drop = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-drop-'));
    fs.chmodSync(drop, 0o777);
    const pidFile = path.join(drop, 'target.pid');
    const job = path.join(project, 'job.sh');
    fs.writeFileSync(job, `#!/bin/sh\necho $$ > ${pidFile}\nsleep 3\necho "job done with \${#DB} bytes as $(id -un)"\n`, { mode: 0o755 });
    fs.chownSync(project, served.uid, served.gid);
    fs.chownSync(job, served.uid, served.gid);
    const granted = ws.run(['allow', 'DB', '--to', job], { env: { VAULT_PASSPHRASE: PASSPHRASE } });
    expect(granted.status, granted.stderr).toBe(0);

    const running = execAs(served, project, [job]);
    for (let i = 0; i < 50 && !fs.existsSync(pidFile); i += 1) await new Promise((r) => setTimeout(r, 100));
    if (!fs.existsSync(pidFile)) expect((await running).stderr, 'the job never started').toBe('');
    // the pid the job wrote is its pid inside the sandbox's PID namespace: find it on the host
    const found = spawnSync('pgrep', ['-n', '-u', String(owner().uid), '-f', job], { encoding: 'utf8' });
    const pid = found.stdout.trim();
    expect(pid, 'the job is not running as the agent\'s user').toMatch(/^\d+$/);
    const [program, ...rest] = asAccount(served, ['cat', `/proc/${pid}/environ`]);
    const peek = spawnSync(program!, rest, { encoding: 'utf8', timeout: 10_000 });
    expect(peek.status, 'the served user read the target\'s environment').not.toBe(0);
    expect(peek.stdout).not.toContain(SECRET);
    const result = await running;
    expect(result.signal, result.stdout + result.stderr).toBeNull();
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`job done with ${SECRET.length} bytes as ${owner().name}\n`);

    // a copy of the granted job beside a lib.sh of the served user's is not the granted program
    const copies = path.join(project, 'copies');
    fs.mkdirSync(copies);
    fs.copyFileSync(job, path.join(copies, 'job.sh'));
    fs.chmodSync(path.join(copies, 'job.sh'), 0o755);
    fs.writeFileSync(path.join(copies, 'lib.sh'), 'echo "STOLEN $DB"\n');
    fs.chownSync(copies, served.uid, served.gid);
    const copied = await execAs(served, copies, [path.join(copies, 'job.sh')]);
    expect(copied.status).toBe(EXEC_FAILED);
    expect(copied.stderr).toMatch(/^vault: \S+ holds the bytes granted at \S+, but for a client of another user a program runs only at/);
    expect(copied.stdout).toBe('');

    // a directory of the agent's user that the served user can open is not one to run in
    fs.chmodSync(ws.project, 0o755);
    const elsewhere = await execAs(served, ws.project, [job]);
    expect(elsewhere.status).toBe(EXEC_FAILED);
    expect(elsewhere.stderr).toMatch(/^vault: a client of another user runs programs in a directory of its own; this one belongs to uid \d+\n$/);

    const other = await execAs(refused, project, [job]);
    expect(other.status).toBe(EXEC_FAILED);
    expect(other.stderr).toMatch(new RegExp(`^vault: this agent does not serve uid ${refused.uid}\\n$`));
    // both in the run log of the agent's user (docs/FORMAT.md, "Run log")
    const runs = ws.run(['audit', '--runs', '--json']).stdout.trim().split('\n')
      .map((l) => JSON.parse(l) as { event: string; details: Record<string, unknown> });
    expect(runs.some((e) => e.event === 'agent-refused' && e.details.uid === refused.uid)).toBe(true);
    const release = runs.filter((e) => e.event === 'release').at(-1);
    expect(release?.details.client).toMatchObject({ uid: served.uid, user: served.name });
    fs.rmSync(project, { recursive: true, force: true });
    fs.rmSync(drop, { recursive: true, force: true });
  });
});
