/**
 * `vault exec` through the agent from the launcher itself (native/agent_client.c), without node: the
 * plain forms run there; every other form, and an agent that holds another vault, go to node. The
 * app copies here record a node that does not exist, so a run that succeeds cannot have used node,
 * and one that needed node fails saying so. A fake agent of the test's own shows what the client
 * sends. As root and as an unprivileged user.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';
import { asAccount, IS_ROOT, installApp, RUNNERS, runnerAccount, unprivilegedUser } from './helpers/users.js';

const SECRET = 'launcher-agent-secret-4f1a';

/** A fake agent: accepts one client, records its frame and the number of fds attached, answers `answer`. */
const FAKE_AGENT = String.raw`
import array, json, os, socket, struct, sys
path, record, answer = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
fds = array.array("i")
data, ancillary, _, _ = c.recvmsg(1 << 20, socket.CMSG_SPACE(16 * fds.itemsize))
for level, kind, payload in ancillary:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
    more = c.recv(1 << 20)
    if not more:
        break
    data += more
if len(data) < 4:
    sys.exit(0)  # the client sent nothing
request = json.loads(data[4:].decode())
with open(record, "w") as f:
    json.dump({"fds": len(fds), "request": request}, f)
c.sendall(answer.encode())
c.close()
`;

for (const runner of RUNNERS) {
  describe(`vault exec through the agent from the launcher, run by ${runner}`, () => {
    let ws: Workspace;
    const account = () => runnerAccount(runner);
    afterEach(() => {
      ws?.run(['agent', 'stop']);
      ws?.cleanup();
    });

    /** A copy of the app whose recorded node does not exist: the launcher alone can run. */
    function nodelessLauncher(): string {
      const app = path.join(ws.root, 'nodeless');
      installApp(app);
      fs.writeFileSync(path.join(app, 'dist', 'node-path'), '/nonexistent/node\n');
      return path.join(app, 'build', 'Release', 'vault_launcher');
    }

    function setUp(): { script: string; launcher: string; env: NodeJS.ProcessEnv } {
      ws = makeWorkspace({ account: account(), parent: '/var/tmp' });
      initWithToken(ws);
      put(ws, 'DB', SECRET);
      const script = path.join(ws.project, 'deploy.sh');
      fs.writeFileSync(script, [
        '#!/bin/sh', 'trap \'echo "got TERM"; exit 7\' TERM', 'echo "db=$DB args=$*"', '[ "$1" = wait ] && { sleep 30 & wait; }',
        '[ "$1" = read ] && { read -r line; echo "read=$line"; }', 'exit 3', '',
      ].join('\n'), { mode: 0o755 });
      const who = account();
      if (IS_ROOT && who !== undefined) fs.chownSync(script, who.uid, who.gid);
      expect(ws.run(['allow', 'DB', '--to', script, '--min-tier', 'lockdown']).status).toBe(0);
      ws.env.VAULT_AGENT_SOCK = path.join(ws.env.HOME!, 'agent', 'agent.sock');
      const started = ws.run(['agent', 'start']);
      expect(started.status, started.stderr).toBe(0);
      const env = { ...ws.env };
      delete env.VAULT_KEY;
      return { script, launcher: nodelessLauncher(), env };
    }
    const run = (launcher: string, args: string[], env: NodeJS.ProcessEnv) => {
      const [program, ...rest] = asAccount(account(), [launcher, ...args]);
      return spawnSync(program!, rest, { env, cwd: ws.project, encoding: 'utf8', timeout: 30_000, input: '' });
    };

    it('runs a granted program in its grant\'s tier with its secret, masked, and exits with its code, without node', () => {
      const { script, launcher, env } = setUp();
      const result = run(launcher, ['exec', '--', script, 'a', 'b c'], env);
      expect(result.stderr).toBe('');
      expect(result.status).toBe(3);
      expect(result.stdout).toBe('db=*** args=a b c\n');
      const unmasked = run(launcher, ['exec', '--no-mask', '--', script], env);
      expect(unmasked.stdout).toBe(`db=${SECRET} args=\n`);
      // the last of --no-mask and --mask wins, as in node
      expect(run(launcher, ['exec', '--no-mask', '--mask=name', '--', script], env).stdout).toBe('db=<DB> args=\n');
      // a closed stdin is /dev/null for the target, never the connection to the agent
      const [program, ...rest] = asAccount(account(), [launcher, 'exec', '--', script, 'read']);
      const closed = spawnSync('sh', ['-c', 'exec "$@" <&-', 'sh', program!, ...rest], { env, cwd: ws.project, encoding: 'utf8', timeout: 20_000 });
      expect(closed.signal).toBeNull();
      expect(closed.stdout).toBe('db=*** args=read\nread=\n');
      // the control: anything that needs node fails in this copy
      const needsNode = run(launcher, ['exec', '--info', '--', script], env);
      expect(needsNode.status).toBe(125);
      expect(needsNode.stderr).toMatch(/^vault: cannot start: execve \/nonexistent\/node: No such file or directory\n$/);
      // the run is the agent's: audited with the client that asked, in the run log of the agent's user (the same here)
      const runs = ws.run(['audit', '--runs', '--json']).stdout.trim().split('\n')
        .map((l) => JSON.parse(l) as { event: string; details: Record<string, unknown> });
      const releases = runs.filter((e) => e.event === 'release');
      expect(releases).toHaveLength(4);
      for (const r of releases) expect(r.details).toMatchObject({ tier: 'lockdown', secrets: ['DB'], client: expect.objectContaining({ uid: account()?.uid ?? 0 }) });
    });

    it('refusals are the agent\'s one line; forms, commands and vaults it does not know go to node', () => {
      const { script, launcher, env } = setUp();
      const lower = run(launcher, ['exec', '--tier', 'hardened', '--', script], env);
      expect(lower.status).toBe(125);
      expect(lower.stderr).toMatch(/^vault: DB is not granted to \S+deploy\.sh \(sha256 [0-9a-f]{64}\): its grant needs tier lockdown or stronger; run with --tier lockdown\n$/);
      for (const args of [
        ['exec', '--net', 'none', '--', script], ['exec', '--', path.join(ws.project, 'missing')], ['exec', '--tier', 'bogus', '--', script],
        ['--vault', path.join(ws.root, 'another-vault'), 'exec', '--', script], ['exec', '--only', 'lower_case', '--', script],
      ]) {
        const toNode = run(launcher, args, env);
        expect(toNode.status, args.join(' ')).toBe(125);
        expect(toNode.stderr, args.join(' ')).toMatch(/^vault: cannot start: execve \/nonexistent\/node/);
      }
    });

    it('passes on a SIGTERM it gets to the program', async () => {
      const { script, launcher, env } = setUp();
      const [program, ...rest] = asAccount(account(), [launcher, 'exec', '--no-mask', '--', script, 'wait']);
      const child = spawn(program!, rest, { env, cwd: ws.project, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
      });
      const deadline = Date.now() + 20_000;
      while (!out.includes('db=') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // the launcher itself is the process: setpriv execs it
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      expect(out).toBe(`db=${SECRET} args=wait\ngot TERM\n`);
      expect(code).toBe(7);
    });

    it('sends argv, its environment without what opens a vault, the four fds, and trusts only its own user', async () => {
      ws = makeWorkspace({ account: account(), parent: '/var/tmp' });
      const launcher = nodelessLauncher();
      const script = path.join(ws.project, 'tool.sh');
      fs.writeFileSync(script, '#!/bin/sh\n', { mode: 0o755 });
      const socketDir = path.join(ws.env.HOME!, 'fake');
      fs.mkdirSync(socketDir, { mode: 0o700 });
      const who = account();
      if (IS_ROOT && who !== undefined) fs.chownSync(socketDir, who.uid, who.gid);
      const socketPath = path.join(socketDir, 'agent.sock');
      const record = path.join(socketDir, 'record.json');
      const fake = (as: typeof who) => {
        const [program, ...rest] = asAccount(as, ['/usr/bin/python3', '-c', FAKE_AGENT, socketPath, record, '{"event":"warning","message":"w\\u00e9"}\n{"event":"exit","code":42}\n']);
        return spawn(program!, rest, { stdio: ['ignore', 'pipe', 'inherit'] });
      };
      const ready = (child: ReturnType<typeof spawn>) => new Promise((resolve, reject) => {
        child.stdout!.once('data', resolve);
        child.once('exit', (code) => reject(new Error(`the fake agent exited (${code})`)));
      });
      const server = fake(who);
      await ready(server);
      const env = { ...ws.env, VAULT_AGENT_SOCK: socketPath, VAULT_KEY: 'svt1_never-sent', VAULT_PASSPHRASE: 'never sent', LANG: 'C.UTF-8', ODD: 'a"b\\c\nd' };
      const result = run(launcher, ['exec', '--mask=name', '--', script, 'x y', '"q"'], env);
      expect(result.stderr).toBe('vault: warning: wé\n');
      expect(result.status).toBe(42);
      const seen = JSON.parse(fs.readFileSync(record, 'utf8')) as { fds: number; request: Record<string, unknown> & { env: Record<string, string> } };
      expect(seen.fds).toBe(4);
      expect(seen.request).toMatchObject({ v: 1, op: 'exec', vault: ws.vaultDir, argv: [script, 'x y', '"q"'], files: [], mask: 'name', killAfterMs: 10000 });
      expect(seen.request.env).toMatchObject({ ODD: 'a"b\\c\nd', LANG: 'C.UTF-8', VAULT_DIR: ws.vaultDir });
      for (const name of ['VAULT_KEY', 'VAULT_PASSPHRASE']) expect(seen.request.env[name], name).toBeUndefined();
      server.kill();

      if (!IS_ROOT) return;
      if (runner !== 'root') return;
      // another user's socket in a directory that user does not own (anyone may write it): refused
      // before anything is sent
      const shared = fs.mkdtempSync('/var/tmp/sealvault-fake-');
      fs.chmodSync(shared, 0o777);
      try {
        const strangerSocket = path.join(shared, 'agent.sock');
        const strangerRecord = path.join(shared, 'record.json');
        const [program, ...rest] = asAccount(unprivilegedUser(), ['/usr/bin/python3', '-c', FAKE_AGENT, strangerSocket, strangerRecord, '{"event":"exit","code":0}\n']);
        const other = spawn(program!, rest, { stdio: ['ignore', 'pipe', 'inherit'] });
        await ready(other);
        const refused = run(launcher, ['exec', '--', script], { ...env, VAULT_AGENT_SOCK: strangerSocket, VAULT_KEY: undefined, VAULT_PASSPHRASE: undefined });
        other.kill();
        expect(refused.status).toBe(125);
        expect(refused.stderr).toMatch(/^vault: the process answering at \S+ runs as uid \d+, not as you nor as the owner of the socket and its directory; nothing was sent to it/);
        expect(fs.existsSync(strangerRecord)).toBe(false);
      } finally {
        fs.rmSync(shared, { recursive: true, force: true });
      }
    });
  });
}
