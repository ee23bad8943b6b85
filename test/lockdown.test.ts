/**
 * `vault exec --tier lockdown` against a compromised target, through the real CLI: what it tries
 * on the host (dotfiles, keys, sockets under the home, the repository's hooks, the sealvault that
 * runs next) and what the grant gives it (--ro, --rw). Each attack also runs in hardened, where it
 * succeeds, so that a passing lockdown result means lockdown stopped it. As root and as an
 * unprivileged user created by the test.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';
import { installApp, IS_ROOT, RUNNERS, runnerAccount } from './helpers/users.js';

const SECRET = 'lockdown-secret-value-51c3';
/** A unix-socket service that greets every client, as an agent under the home would answer. */
const AGENT = `
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(b"agent\\n")
    c.close()
`;

/** `key=value` lines, as the scripts print them. */
function report(stdout: string): Record<string, string> {
  return Object.fromEntries(stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

for (const runner of RUNNERS) {
  describe(`lockdown against a hostile target, run by ${runner}`, () => {
    let ws: Workspace;
    const account = () => runnerAccount(runner);
    const owner = () => account() ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    /** A file or directory of the workspace's user, as they would have made it. */
    const own = (...paths: string[]) => {
      for (const p of paths) if (IS_ROOT) fs.chownSync(p, owner().uid, owner().gid);
    };
    const script = (name: string, body: string, dir = ws.project) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      own(file);
      return file;
    };

    afterEach(() => ws?.cleanup());

    it('cannot write the home\'s dotfiles, read its ssh keys, reach a socket under it or see SSH_AUTH_SOCK', async () => {
      // not under /tmp, which lockdown replaces anyway: the home must be hidden for being the home
      ws = makeWorkspace({ account: account(), parent: '/var/tmp' });
      initWithToken(ws);
      put(ws, 'DB', SECRET);
      const home = ws.env.HOME!;
      const bashrc = path.join(home, '.bashrc');
      fs.writeFileSync(bashrc, 'original\n');
      fs.mkdirSync(path.join(home, '.ssh'), { mode: 0o700 });
      fs.writeFileSync(path.join(home, '.ssh', 'id_ed25519'), 'PRIVATE KEY\n', { mode: 0o600 });
      own(bashrc, path.join(home, '.ssh'), path.join(home, '.ssh', 'id_ed25519'));
      // an agent's socket under the home, as ssh-agent, gpg-agent or a D-Bus session bus have
      // (in a process of its own: the runs below block this one)
      const socketPath = path.join(home, 'agent.sock');
      const server = spawn('python3', ['-c', AGENT, socketPath], { stdio: 'ignore' });
      const deadline = Date.now() + 10_000;
      while (!fs.existsSync(socketPath) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      fs.chmodSync(socketPath, 0o777);
      try {
        // never the real home of whoever runs the tests
        const attack = script('attack.sh', `
[ "$HOME" = "${home}" ] || { echo "wrong home $HOME"; exit 9; }
echo owned >> "$HOME/.bashrc" 2>/dev/null && echo bashrc=written || echo bashrc=refused
echo "key=$(cat "$HOME/.ssh/id_ed25519" 2>/dev/null || echo unreadable)"
echo "agent=$(python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(s.recv(16).decode().strip())' "$1" 2>/dev/null || echo unreachable)"
echo "ssh_auth_sock=\${SSH_AUTH_SOCK:-unset}"
echo "db=$DB"`);
        // the grant gives this home and the caller's agent socket: lockdown must still keep both from the target
        const allowed = ws.run(['allow', 'DB', '--to', attack, '--min-tier', 'none', '--env', `HOME=${home}`, '--pass-env', 'SSH_AUTH_SOCK']);
        expect(allowed.status, allowed.stderr).toBe(0);
        const env = { SSH_AUTH_SOCK: socketPath };
        const control = ws.run(['exec', '--no-mask', '--tier', 'hardened', '--', attack, socketPath], { env });
        expect(control.status, control.stderr).toBe(0);
        expect(report(control.stdout)).toEqual({ bashrc: 'written', key: 'PRIVATE KEY', agent: 'agent', ssh_auth_sock: socketPath, db: SECRET });
        fs.writeFileSync(bashrc, 'original\n');

        const locked = ws.run(['exec', '--no-mask', '--tier', 'lockdown', '--', attack, socketPath], { env });
        expect(locked.status, locked.stderr).toBe(0);
        // .bashrc goes to the empty private home, which is gone afterwards
        expect(report(locked.stdout)).toEqual({ bashrc: 'written', key: 'unreadable', agent: 'unreachable', ssh_auth_sock: 'unset', db: SECRET });
        expect(fs.readFileSync(bashrc, 'utf8')).toBe('original\n');
      } finally {
        server.kill('SIGKILL');
      }
    });

    it('keeps .git and the node_modules of a sealvault installed in the project read-only; the rest of the working directory is writable', () => {
      ws = makeWorkspace({ account: account() });
      // a project with a repository and a project-local install of sealvault, whose CLI runs the exec
      const project = ws.project;
      expect(spawnSync('git', ['init', '-q', project]).status).toBe(0);
      const install = path.join(project, 'node_modules', 'sealvault');
      const cli = installApp(install);
      fs.mkdirSync(path.join(project, 'node_modules', '.bin'));
      // a dependency hoisted beside it, which the CLI loads from there (keytar)
      fs.mkdirSync(path.join(project, 'node_modules', 'keytar'));
      fs.writeFileSync(path.join(project, 'node_modules', 'keytar', 'index.js'), 'module.exports = {};\n');
      fs.symlinkSync('../sealvault/dist/vault.mjs', path.join(project, 'node_modules', '.bin', 'vault'));
      spawnSync('chown', ['-R', `${owner().uid}:${owner().gid}`, project]);
      const init = ws.run(['init', '--token'], { cli });
      expect(init.status, init.stderr).toBe(0);
      ws.env.VAULT_KEY = init.stdout.trim();
      expect(ws.run(['put', 'DB'], { cli, input: SECRET }).status).toBe(0);
      const attack = script('attack.sh', `
for target in .git/hooks/pre-commit .git/planted node_modules/sealvault/dist/planted.mjs node_modules/.bin/planted node_modules/keytar/index.js built-output; do
  if echo 'echo owned' > "$target" 2>/dev/null; then echo "$target=written"; else echo "$target=refused"; fi
done
if ln -sf /tmp/evil node_modules/.bin/vault 2>/dev/null; then echo bin.vault=replaced; else echo bin.vault=refused; fi
if mv node_modules node_modules.orig 2>/dev/null; then echo rename=done; mv node_modules.orig node_modules; else echo rename=refused; fi`);
      expect(ws.run(['allow', 'DB', '--to', attack, '--min-tier', 'none'], { cli }).status).toBe(0);
      const paths = ['.git/hooks/pre-commit', '.git/planted', 'node_modules/sealvault/dist/planted.mjs', 'node_modules/.bin/planted'];
      const keytar = path.join(project, 'node_modules', 'keytar', 'index.js');

      const control = ws.run(['exec', '--tier', 'hardened', '--', attack], { cli });
      expect(control.status, control.stderr).toBe(0);
      expect(Object.values(report(control.stdout)).every((v) => ['written', 'replaced', 'done'].includes(v)), control.stdout).toBe(true);
      for (const p of [...paths, 'built-output']) fs.rmSync(path.join(project, p), { force: true });
      fs.writeFileSync(keytar, 'module.exports = {};\n');
      fs.rmSync(path.join(project, 'node_modules', '.bin', 'vault'), { force: true });
      fs.symlinkSync('../sealvault/dist/vault.mjs', path.join(project, 'node_modules', '.bin', 'vault'));

      const locked = ws.run(['exec', '--tier', 'lockdown', '--', attack], { cli });
      expect(locked.status, locked.stderr).toBe(0);
      expect(report(locked.stdout)).toEqual({
        ...Object.fromEntries(paths.map((p) => [p, 'refused'])), 'node_modules/keytar/index.js': 'refused', 'built-output': 'written',
        'bin.vault': 'refused', rename: 'refused',
      });
      expect(fs.readFileSync(keytar, 'utf8')).toBe('module.exports = {};\n');
      for (const p of paths) expect(fs.existsSync(path.join(project, p)), p).toBe(false);
      expect(fs.readlinkSync(path.join(project, 'node_modules', '.bin', 'vault'))).toBe('../sealvault/dist/vault.mjs');
    });

    it('gives exactly the grant\'s --ro and --rw paths of the rest of the host, shown by `vault policy`', () => {
      ws = makeWorkspace({ account: account() });
      initWithToken(ws);
      put(ws, 'DB', SECRET);
      const outside = path.join(ws.root, 'outside');
      const [readOnly, readWrite, notGranted] = ['data-ro', 'data-rw', 'not-granted'].map((d) => path.join(outside, d));
      for (const dir of [outside, readOnly!, readWrite!, notGranted!]) fs.mkdirSync(dir);
      fs.writeFileSync(path.join(readOnly!, 'config'), 'read-only config');
      fs.writeFileSync(path.join(notGranted!, 'private'), 'not for the target');
      spawnSync('chown', ['-R', `${owner().uid}:${owner().gid}`, outside]);
      fs.chmodSync(ws.root, 0o755);
      const probe = script('probe.sh', `
echo "ro.read=$(cat "$1/config")"
if echo x > "$1/new" 2>/dev/null; then echo ro.write=written; else echo ro.write=refused; fi
if echo x > "$2/new" 2>/dev/null; then echo rw.write=written; else echo rw.write=refused; fi
if [ -e "$3" ]; then echo other=visible; else echo other=absent; fi`);
      const allow = ws.run(['allow', 'DB', '--to', probe, '--min-tier', 'lockdown', '--ro', readOnly!, '--rw', readWrite!]);
      expect(allow.status, allow.stderr).toBe(0);
      const policy = ws.run(['policy', '--json']);
      expect(JSON.parse(policy.stdout).grants[0]).toMatchObject({ ro: [readOnly], rw: [readWrite] });
      expect(ws.run(['policy']).stdout).toContain(`ro:${readOnly} rw:${readWrite}`);

      const result = ws.run(['exec', '--tier', 'lockdown', '--', probe, readOnly!, readWrite!, notGranted!]);
      expect(result.status, result.stderr).toBe(0);
      expect(report(result.stdout)).toEqual({ 'ro.read': 'read-only config', 'ro.write': 'refused', 'rw.write': 'written', other: 'absent' });
      expect(fs.existsSync(path.join(readWrite!, 'new'))).toBe(true);
      expect(fs.existsSync(path.join(readOnly!, 'new'))).toBe(false);
    });

    it('refuses to run lockdown from the home directory or above it, naming the way out, and runs nothing', () => {
      ws = makeWorkspace({ account: account() });
      initWithToken(ws);
      put(ws, 'DB', SECRET);
      // it would write into its working directory: the home itself, or the directory that holds it
      const probe = script('probe.sh', 'touch ./ran');
      expect(ws.run(['allow', 'DB', '--to', probe, '--min-tier', 'lockdown']).status).toBe(0);
      fs.chmodSync(ws.root, 0o777);
      for (const cwd of [ws.env.HOME!, ws.root]) {
        const result = ws.run(['exec', '--tier', 'lockdown', '--', probe], { cwd });
        expect(result.status).toBe(125);
        expect(result.stderr).toMatch(/^vault: lockdown gives the program the working directory to write, and .* home directory .*cd into a project directory first/);
        expect(result.stderr.split('\n')).toHaveLength(2);
        expect(fs.existsSync(path.join(cwd, 'ran')), `the program ran in ${cwd}`).toBe(false);
      }
      // the same program from the project runs, so the refusal is what kept it from running
      expect(ws.run(['exec', '--tier', 'lockdown', '--', probe]).status).toBe(0);
      expect(fs.existsSync(path.join(ws.project, 'ran'))).toBe(true);
    });
  });
}
