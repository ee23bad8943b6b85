/**
 * A grant pins what runs: the bytes, the interpreter, the environment, the script's own path. Each
 * attack an untrusted caller of `vault exec` could try runs here for real, through the CLI, as root
 * and as an unprivileged user; each has a control that runs the same program without vault and
 * shows the attack working, so that a pass means vault stopped it.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';
import { asAccount, IS_ROOT, RUNNERS, runnerAccount } from './helpers/users.js';

const SECRET = 'pinned-secret-value-77aa';

for (const runner of RUNNERS) {
  describe(`a grant pins what runs, run by ${runner}`, () => {
    let ws: Workspace;
    const account = () => runnerAccount(runner);
    const own = (file: string) => {
      const owner = account();
      if (IS_ROOT && owner !== undefined) spawnSync('chown', ['-R', `${owner.uid}:${owner.gid}`, file]);
    };
    /** A file of the workspace's user, in the project unless `dir` says otherwise. */
    const file = (name: string, text: string, mode = 0o755, dir = ws.project) => {
      const at = path.join(dir, name);
      fs.mkdirSync(path.dirname(at), { recursive: true });
      fs.writeFileSync(at, text, { mode });
      own(at);
      return at;
    };
    const allow = (...args: string[]) => ws.run(['allow', ...args]);
    /** The program run without vault, as the workspace's user, with `env` on top of the workspace's. */
    const direct = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
      const [program, ...rest] = asAccount(account(), argv);
      return spawnSync(program!, rest, { env: { ...ws.env, ...env }, cwd: ws.project, encoding: 'utf8', timeout: 30_000 });
    };

    beforeEach(() => {
      ws = makeWorkspace({ account: account() });
      initWithToken(ws);
      put(ws, 'DB', SECRET);
      put(ws, 'API', 'api-value-123456');
      put(ws, 'TOKEN', 'token-value-123456');
    });
    afterEach(() => ws.cleanup());

    it('the caller\'s environment chooses none of the code: eight vectors', () => {
      const marker = path.join(ws.project, 'evil-ran');
      const evil = path.join(ws.project, 'evil');
      const plant = (name: string, text: string) => file(path.join('evil', name), text);
      plant('bash', `#!/bin/sh\ntouch ${marker}\nexec /bin/bash "$@"\n`);
      plant('curl', `#!/bin/sh\ntouch ${marker}\n`);
      plant('json.py', `open(${JSON.stringify(marker)}, "w").close()\n`);
      plant('strict.pm', `open(my $f, '>', ${JSON.stringify(marker)}); close($f); 1;\n`);
      plant('helper.js', `require('fs').writeFileSync(${JSON.stringify(marker)}, '');\n`);
      plant('home/.gitconfig', `[core]\n\tfsmonitor = "touch ${marker}; false"\n`);
      const repo = path.join(ws.project, 'repo');
      expect(spawnSync('git', ['init', '-q', repo]).status).toBe(0);
      own(repo);
      const vectors: [string, string, NodeJS.ProcessEnv, string[]][] = [
        ['PATH for #!/usr/bin/env bash', '#!/usr/bin/env bash\necho "ran $0"\n', { PATH: `${evil}:/usr/bin:/bin` }, []],
        ['PATH for a command called by name', '#!/bin/sh\ncurl --version >/dev/null 2>&1; echo done\n', { PATH: `${evil}:/usr/bin:/bin` }, []],
        ['PYTHONPATH', '#!/usr/bin/python3\nimport json\nprint("done")\n', { PYTHONPATH: evil }, []],
        ['PERL5LIB', '#!/usr/bin/perl\nuse strict;\nprint "done\\n";\n', { PERL5LIB: evil }, []],
        ['NODE_PATH', "#!/usr/bin/node\ntry { require('helper'); } catch { console.log('no helper'); }\n", { NODE_PATH: evil }, []],
        ['HOME with a planted ~/.gitconfig', '#!/bin/sh\ncd "$1" && git status >/dev/null 2>&1; echo done\n', { HOME: path.join(evil, 'home') }, [repo]],
        ['GIT_CONFIG_COUNT/KEY/VALUE', '#!/bin/sh\ncd "$1" && git status >/dev/null 2>&1; echo done\n',
          { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'core.fsmonitor', GIT_CONFIG_VALUE_0: `touch ${marker}; false` }, [repo]],
        ['GIT_SSH_COMMAND', '#!/bin/sh\ngit ls-remote ssh://example.invalid/x >/dev/null 2>&1; echo done\n', { GIT_SSH_COMMAND: `touch ${marker}; false` }, []],
      ];
      for (const [i, [what, text, env, args]] of vectors.entries()) {
        const script = file(`vector-${i}.sh`, text);
        const control = direct([script, ...args], env);
        expect(fs.existsSync(marker), `${what}: the control did not run the planted code: ${control.stderr}`).toBe(true);
        fs.rmSync(marker);
        const granted = allow('DB', '--to', script, '--min-tier', 'none');
        expect(granted.status, `${what}: ${granted.stderr}`).toBe(0);
        const result = ws.run(['exec', '--', script, ...args], { env, launcher: true });
        expect(result.status, `${what}: ${result.stderr}`).toBe(0);
        expect(fs.existsSync(marker), `${what}: vault ran the caller's code`).toBe(false);
      }
    });

    it('runs the bytes that were hashed: a script rewritten in place during the run goes on as it was', async () => {
      const text = '#!/bin/bash\necho first\nsleep 1\necho "second: same"\n';
      const rewritten = '#!/bin/bash\necho first\nsleep 1\necho "stolen: $DB"\n';
      const script = file('slow.sh', text);
      const runWhileRewriting = async (argv: string[]): Promise<string> => {
        const [program, ...rest] = argv;
        const child = spawn(program!, rest, { env: { ...ws.env, DB: 'control-value' }, cwd: ws.project, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          // in place, the same inode: what an editor that does not rename, or `cat >`, does
          if (out.includes('first') && !child.killed) fs.writeFileSync(script, rewritten, { flag: 'r+' });
        });
        await new Promise((resolve) => child.on('close', resolve));
        return out;
      };
      expect(await runWhileRewriting(asAccount(account(), [script])), 'bash reads the new line without vault').toMatch(/stolen/);
      fs.writeFileSync(script, text);
      expect(allow('DB', '--to', script, '--min-tier', 'none').status).toBe(0);
      for (const tier of ['none', 'hardened', 'lockdown']) {
        fs.writeFileSync(script, text);
        const out = await runWhileRewriting(ws.command(['exec', '--no-mask', '--tier', tier, '--', script]));
        expect(out, tier).toBe('first\nsecond: same\n');
      }
    });

    it('refuses an interpreter or a RUNPATH that others than root can change, and a file that is not a program (exit 11)', () => {
      const loose = path.join(ws.project, 'loose');
      fs.mkdirSync(loose);
      fs.chmodSync(loose, 0o777);
      fs.copyFileSync('/bin/sh', path.join(loose, 'sh'));
      fs.chmodSync(path.join(loose, 'sh'), 0o755);
      const script = file('uses-loose.sh', `#!${path.join(loose, 'sh')}\necho hi\n`);
      const refused = allow('DB', '--to', script);
      expect(refused.status).toBe(11);
      expect(refused.stderr).toMatch(/^vault: .*uses-loose\.sh: its interpreter .*loose\/sh can be changed by others than root .*\n$/);

      const source = path.join(ws.root, 'hello.c');
      fs.writeFileSync(source, 'int main(void) { return 0; }\n');
      for (const [name, flags] of [['runpath', ['-Wl,--enable-new-dtags']], ['rpath', ['-Wl,--disable-new-dtags']]] as const) {
        const binary = path.join(loose, name);
        expect(spawnSync('cc', ['-o', binary, source, '-Wl,-rpath,$ORIGIN/lib', ...flags]).status).toBe(0);
        const result = allow('DB', '--to', binary);
        expect(result.status, name).toBe(11);
        expect(result.stderr).toMatch(/loads libraries through its RUNPATH\/RPATH from \$ORIGIN\/lib .* which others than root can change/);
      }
      // an empty or relative RUNPATH entry is the caller's working directory, wherever the program lives
      for (const [name, rpath] of [['relative', 'lib'], ['empty', ':/usr/lib']] as const) {
        const binary = path.join(ws.project, name);
        expect(spawnSync('cc', ['-o', binary, source, `-Wl,-rpath,${rpath}`]).status).toBe(0);
        own(binary);
        const result = allow('DB', '--to', binary);
        expect(result.status, name).toBe(11);
        expect(result.stderr).toMatch(/looked up relative to the working directory its caller chooses/);
      }
      const plain = path.join(ws.project, 'plain');
      expect(spawnSync('cc', ['-o', plain, source]).status).toBe(0);
      own(plain);
      expect(allow('DB', '--to', plain).status, 'the same program without a RUNPATH').toBe(0);

      const text = file('notes.txt', 'not a program\n');
      const notProgram = allow('DB', '--to', text);
      expect(notProgram.status).toBe(11);
      expect(notProgram.stderr).toMatch(/neither a program \(ELF\) nor a script with a #! line/);
      expect(JSON.parse(ws.run(['policy', '--json']).stdout).grants).toHaveLength(1);
    });

    it('refuses launchers without pinned arguments: make --eval, npm run, find -exec', () => {
      const npm = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
      for (const launcher of ['make', 'find', ...(npm === '' ? [] : ['npm'])]) {
        const result = allow('DB', '--to', launcher);
        expect(result.status, `${launcher}: ${result.stderr}`).toBe(11);
        expect(result.stderr).toMatch(/runs whatever code or command its arguments name/);
      }
      // pinned, the arguments are all it runs: an --eval is not among them
      file('Makefile', 'build:\n\t@echo built\n', 0o644);
      expect(allow('DB', '--to', 'make', '--arg', 'build').status).toBe(0);
      expect(ws.run(['exec', '--', 'make', 'build']).stdout).toBe('built\n');
      const evil = ws.run(['exec', '--', 'make', '--eval=x:; @echo $$DB', 'x']);
      expect(evil.status).toBe(125);
      expect(evil.stdout).not.toContain(SECRET);
    });

    it('a script of an interpreter that reads options after it (#!/usr/bin/make -f) needs its arguments pinned', () => {
      const makefile = file('deploy.mk', '#!/usr/bin/make -f\ndeploy:\n\t@echo deployed\n');
      const bare = allow('DB', '--to', makefile);
      expect(bare.status, bare.stderr).toBe(11);
      expect(bare.stderr).toMatch(/runs whatever code or command its arguments name/);
      // the attack it stops: make reads --eval after the script's -f and runs the caller's recipe
      expect(direct([makefile, '--eval=x:; @echo leaked $$DB', 'x'], { DB: 'control' }).stdout).toBe('leaked control\n');
      expect(allow('DB', '--to', makefile, '--arg', 'deploy').status).toBe(0);
      expect(ws.run(['exec', '--', makefile, 'deploy']).stdout).toBe('deployed\n');
      const evil = ws.run(['exec', '--', makefile, '--eval=x:; @echo leaked $$DB', 'x']);
      expect(evil.status).toBe(125);
      expect(evil.stdout).not.toContain(SECRET);
    });

    it('argv[0] is the granted interpreter, never the name the caller typed: a planted venv beside a link is not read', () => {
      const marker = path.join(ws.project, 'venv-ran');
      const venv = path.join(ws.project, 'venv');
      const version = spawnSync('python3', ['-c', 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")'], { encoding: 'utf8' }).stdout.trim();
      file(path.join('venv', 'pyvenv.cfg'), 'home = /usr/bin\ninclude-system-site-packages = false\n', 0o644);
      file(path.join('venv', 'lib', version, 'site-packages', 'evil.pth'), `import os; open(${JSON.stringify(marker)}, "w").close()\n`, 0o644);
      fs.mkdirSync(path.join(venv, 'bin'), { recursive: true });
      fs.symlinkSync('/usr/bin/python3', path.join(venv, 'bin', 'python3'));
      own(venv);
      const app = file('app.py', 'import os\nprint("app", len(os.environ["DB"]))\n', 0o644);
      // control: run through the link, Python takes the venv and runs its .pth
      expect(direct([path.join(venv, 'bin', 'python3'), app], { DB: 'x' }).stdout).toBe('app 1\n');
      expect(fs.existsSync(marker), 'the planted venv works without vault').toBe(true);
      fs.rmSync(marker);
      expect(allow('DB', '--run', 'python3', app, '--min-tier', 'none').status).toBe(0);
      for (const tier of ['none', 'hardened', 'lockdown']) {
        const result = ws.run(['exec', '--no-mask', '--tier', tier, '--', path.join(venv, 'bin', 'python3'), app]);
        expect(result.stdout, `${tier}: ${result.stderr}`).toBe(`app ${SECRET.length}\n`);
        expect(fs.existsSync(marker), tier).toBe(false);
      }
    });

    it('--run pins a script and its interpreter: an edit of the script is refused, naming the renewal, and shown as stale', () => {
      const app = file('app.py', 'import os\nprint("app", len(os.environ["DB"]))\n', 0o644);
      const granted = allow('DB', '--run', 'python3', app);
      expect(granted.status, granted.stderr).toBe(0);
      expect(granted.stderr).toMatch(/run by \/usr\/bin\/python3/);
      expect(ws.run(['exec', '--', 'python3', app]).stdout).toBe(`app ${SECRET.length}\n`);
      fs.appendFileSync(app, 'print(os.environ["DB"])\n');
      const edited = ws.run(['exec', '--', 'python3', app]);
      expect(edited.status).toBe(125);
      expect(edited.stdout).not.toContain(SECRET);
      expect(edited.stderr).toMatch(/app\.py changed since DB was granted to it .*run `vault allow --renew \S+app\.py`/);
      const policy = ws.run(['policy']);
      expect(policy.stdout).toMatch(/STALE: the file changed/);
      expect(policy.stdout).toContain(`vault allow --renew ${app}`);
    });

    it('a script sees its own path as $0 in hardened and lockdown: a sibling lib.sh is found', () => {
      file('lib.sh', 'greeting=from-lib\n', 0o644);
      const script = file('main.sh', '#!/bin/sh\n. "$(dirname "$0")/lib.sh"\necho "$greeting $0"\n');
      expect(allow('DB', '--to', script, '--min-tier', 'none').status).toBe(0);
      for (const tier of ['hardened', 'lockdown']) {
        const result = ws.run(['exec', '--tier', tier, '--', script]);
        expect(result.status, `${tier}: ${result.stderr}`).toBe(0);
        expect(result.stdout).toBe(`from-lib ${script}\n`);
      }
    });

    it('--renew grants every secret of the old grants again to the new version, with the same settings, and drops the old ones', () => {
      const script = file('deploy.sh', '#!/bin/sh\necho "v1 $X ${#DB} ${#API} ${#TOKEN}"\n');
      expect(allow('DB', 'API', 'TOKEN', '--to', script, '--min-tier', 'lockdown', '--env', 'X=pinned').status).toBe(0);
      const v1 = fs.readFileSync(script);
      fs.writeFileSync(script, '#!/bin/sh\necho "v2 $X ${#DB} ${#API} ${#TOKEN}"\n');
      const refused = ws.run(['exec', '--tier', 'lockdown', '--', script]);
      expect(refused.status).toBe(125);
      expect(refused.stderr).toMatch(/changed since API, DB, TOKEN were granted to it .*`vault allow --renew \S+deploy\.sh`, which grants them all again/);
      const renewed = ws.run(['allow', '--renew', script]);
      expect(renewed.status, renewed.stderr).toBe(0);
      expect(renewed.stderr).toMatch(/deploy\.sh: granted sha256 [0-9a-f]{16}…; now [0-9a-f]{16}…, run by \/usr\/bin\/dash/);
      expect(renewed.stderr).toMatch(/renewed API, DB, TOKEN/);
      const run = ws.run(['exec', '--tier', 'lockdown', '--', script]);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toBe(`v2 pinned ${SECRET.length} 16 18\n`);
      const grants = JSON.parse(ws.run(['policy', '--json']).stdout).grants as { min_tier: string; env: unknown; stale: unknown }[];
      expect(grants).toHaveLength(3);
      for (const g of grants) expect(g).toMatchObject({ min_tier: 'lockdown', env: { X: 'pinned' }, stale: null });
      // the grants of the old version are gone: putting it back does not bring them back
      fs.writeFileSync(script, v1);
      expect(ws.run(['exec', '--tier', 'lockdown', '--', script]).status).toBe(125);
    });
  });
}
