/**
 * `vault exec` end to end, as users run it: the built CLI, a real vault, the real helper and real
 * namespaces. The helper's own behaviour per tier is tested in detail in spawn-helper.test.ts.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';

const SECRET = 'exec-secret-value-4f1e9c';
const BIG = 'B'.repeat(200 * 1024);

describe('vault exec', () => {
  let ws: Workspace;
  let script: string;
  const writeScript = (file: string, body: string) => fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });

  beforeEach(() => {
    ws = makeWorkspace();
    initWithToken(ws);
    put(ws, 'DB_PASSWORD', SECRET);
    put(ws, 'OTHER', 'other-value-123456');
    script = path.join(ws.root, 'deploy.sh');
    writeScript(script, 'printf "len=%s\\n" "${#DB_PASSWORD}"; [ "$DB_PASSWORD" = "' + SECRET + '" ] && echo match; echo "other=${OTHER:-unset}"; exit 0');
  });
  afterEach(() => ws.cleanup());

  // runs are recorded in this user's run log, outside the vault (docs/FORMAT.md, "Run log")
  const runs = () => ws.run(['audit', '--runs', '--json']).stdout.trim().split('\n')
    .map((l) => JSON.parse(l) as { event: string; details: Record<string, unknown> });

  it('releases exactly the granted secret into a #! script and records the run', () => {
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    const vaultBefore = ws.vaultFiles();
    const result = ws.run(['exec', '--', script]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`len=${SECRET.length}\nmatch\nother=unset\n`);
    // the run is recorded outside the vault: a committed vault does not change by being used
    expect(ws.vaultFiles()).toEqual(vaultBefore);
    // a release entry before anything was decrypted, then the exit code, tied by the run's id
    const [release, exit] = runs().slice(-2);
    expect(release?.event).toBe('release');
    expect(release?.details).toMatchObject({ path: script, tier: 'hardened', secrets: ['DB_PASSWORD'], files: [] });
    expect(release?.details.sha256).toBe(createHash('sha256').update(fs.readFileSync(script)).digest('hex'));
    expect(exit?.event).toBe('exit');
    expect(exit?.details).toEqual({ run: release?.details.run, exit: 0 });
    expect(String(release?.details.run)).toMatch(/^[0-9a-f]{16}$/);
  });

  it('refuses a secret without a grant, naming it, the binary, its hash and the fix; runs nothing', () => {
    const marker = path.join(ws.root, 'ran');
    writeScript(script, `touch ${marker}`);
    const hash = createHash('sha256').update(fs.readFileSync(script)).digest('hex');
    const none = ws.run(['exec', '--', script]);
    expect(none.status).toBe(125);
    expect(none.stderr).toMatch(/^vault: no secret is granted to .*deploy\.sh/);
    // for an interpreter, the fix it names pins the arguments, since a bare grant would be refused
    const shell = ws.run(['exec', '--', 'sh', '-c', 'echo "$DB_PASSWORD"']);
    expect(shell.status).toBe(125);
    expect(shell.stderr).toMatch(/grant one with `vault allow NAME --to \S+ --arg -c --arg 'echo "\$DB_PASSWORD"'`\n$/);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    const other = ws.run(['exec', '--only', 'OTHER', '--', script]);
    expect(other.status).toBe(125);
    expect(other.stderr).toBe(`vault: OTHER is not granted to ${script} (sha256 ${hash}): run \`vault allow OTHER --to ${script}\` to grant it\n`);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('refuses a binary changed after `vault allow`, and a tier weaker than the grant asks', () => {
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script, '--min-tier', 'lockdown']).status).toBe(0);
    const weak = ws.run(['exec', '--tier', 'hardened', '--', script]);
    expect(weak.status).toBe(125);
    expect(weak.stderr).toMatch(/needs tier lockdown or stronger; run with --tier lockdown/);
    const swapped = path.join(ws.root, 'swapped.sh');
    writeScript(swapped, 'echo "stolen=$DB_PASSWORD"');
    fs.renameSync(swapped, script);
    const changed = ws.run(['exec', '--tier', 'lockdown', '--', script]);
    expect(changed.status).toBe(125);
    expect(changed.stderr).toMatch(/changed since DB_PASSWORD was granted to it/);
    expect(changed.stdout).not.toContain(SECRET);
  });

  it('for a changed interpreter granted with pinned arguments, the refusal names the renewal', () => {
    const shell = path.join(ws.root, 'sh');
    fs.copyFileSync('/bin/dash', shell);
    fs.chmodSync(shell, 0o755);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', shell, '--arg', '-c', '--arg', 'true']).status).toBe(0);
    fs.copyFileSync('/bin/bash', shell);
    const changed = ws.run(['exec', '--', shell, '-c', 'true']);
    expect(changed.status).toBe(125);
    expect(changed.stderr).toMatch(/\/sh changed since DB_PASSWORD was granted to it .*run `vault allow --renew \S+\/sh`, which grants it again to the new version\n$/);
    const named = ws.run(['exec', '--only', 'DB_PASSWORD', '--', shell, '-c', 'true']);
    expect(named.status).toBe(125);
    expect(named.stderr).toMatch(/\/sh changed since DB_PASSWORD was granted to it .*`vault allow --renew \S+\/sh`/);
  });

  it('passes exit codes and signals through, and says 127 for a missing command', () => {
    writeScript(script, 'exit 42');
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    expect(ws.run(['exec', '--', script]).status).toBe(42);
    writeScript(script, 'kill -TERM $$');
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    expect(ws.run(['exec', '--', script]).status).toBe(143);
    const missing = ws.run(['exec', '--', path.join(ws.root, 'absent')]);
    expect(missing.status).toBe(127);
    expect(missing.stderr).toMatch(/^vault: .*no such file\n$/);
  });

  it('gives the child an allow-list of the caller\'s environment: no VAULT_*, loader or other variables; a fixed PATH', () => {
    writeScript(script, 'env | sort');
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    const env = { LD_LIBRARY_PATH: '/nonexistent', BASH_ENV: '/x', NODE_OPTIONS: '--no-warnings', KEEP_ME: 'yes', TERM: 'xterm' };
    const result = ws.run(['exec', '--', script], { env, launcher: true });
    expect(result.status, result.stderr).toBe(0);
    const names = result.stdout.split('\n').map((l) => l.split('=')[0]);
    expect(names).toContain('TERM');
    expect(names).toContain('DB_PASSWORD');
    expect(result.stdout).toContain('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
    for (const removed of ['VAULT_KEY', 'VAULT_DIR', 'LD_LIBRARY_PATH', 'BASH_ENV', 'NODE_OPTIONS', 'KEEP_ME']) expect(names).not.toContain(removed);
  });

  it('delivers --file secrets as 0400 files in lockdown and as sealed memfds otherwise; refuses big env values', () => {
    put(ws, 'BIG', BIG);
    writeScript(script, 'ls -lL "$BIG_FILE" | cut -c1-10; wc -c < "$BIG_FILE"; [ -z "${BIG:-}" ] && echo not-in-env; echo "$BIG_FILE"');
    expect(ws.run(['allow', 'BIG', '--to', script, '--min-tier', 'none']).status).toBe(0);
    const inEnv = ws.run(['exec', '--', script]);
    expect(inEnv.status).toBe(125);
    expect(inEnv.stderr).toMatch(/over the kernel's limit of 128 KiB .* --file BIG/);
    for (const tier of ['lockdown', 'hardened', 'none']) {
      const result = ws.run(['exec', '--tier', tier, '--file', 'BIG', '--', script]);
      expect(result.status, `${tier}: ${result.stderr}`).toBe(0);
      const [mode, size, marker, where] = result.stdout.trim().split('\n');
      expect(size?.trim()).toBe(String(BIG.length));
      expect(marker).toBe('not-in-env');
      if (tier === 'lockdown') {
        expect(mode).toBe('-r--------');
        expect(where).toBe('/tmp/.vault-secrets/BIG');
      } else {
        expect(where).toMatch(/^\/dev\/fd\/\d+$/);
      }
    }
  });

  it('in lockdown the child sees an empty vault directory and a private /tmp', () => {
    const hostTmpMarker = fs.mkdtempSync('/tmp/sealvault-host-');
    writeScript(script, `ls -A "${ws.vaultDir}" | wc -l; ls -d ${hostTmpMarker} 2>/dev/null || echo no-host-tmp; echo inside > /tmp/written-inside; cat /proc/1/comm`);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script, '--min-tier', 'lockdown']).status).toBe(0);
    try {
      const result = ws.run(['exec', '--tier', 'lockdown', '--', script]);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.trim().split('\n').slice(0, 2)).toEqual(['0', 'no-host-tmp']);
      expect(fs.existsSync('/tmp/written-inside')).toBe(false);
    } finally {
      fs.rmSync(hostTmpMarker, { recursive: true, force: true });
    }
  });

  it('--info reports namespace inodes that differ from the caller\'s', () => {
    writeScript(script, 'true');
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script, '--min-tier', 'lockdown']).status).toBe(0);
    const result = ws.run(['exec', '--tier', 'lockdown', '--info', '--', script]);
    expect(result.status, result.stderr).toBe(0);
    const line = result.stderr.split('\n').find((l) => l.startsWith('vault: info '));
    const info = JSON.parse(line?.slice('vault: info '.length) ?? '{}') as { ns: Record<string, number> };
    for (const ns of ['pid', 'net', 'mnt', 'ipc', 'user']) {
      expect(info.ns[ns], ns).not.toBe(fs.statSync(`/proc/self/ns/${ns}`).ino);
    }
  });

  it('SIGTERM sent to vault reaches the child; no secret in the helper\'s cmdline or environ', async () => {
    const marker = path.join(ws.root, 'got-term');
    writeScript(script, `trap 'echo term > ${marker}; exit 7' TERM; echo ready; while :; do sleep 0.05; done`);
    expect(ws.run(['allow', 'DB_PASSWORD', '--to', script]).status).toBe(0);
    const child = ws.start(['exec', '--', script]);
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    const helpers = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`).includes('spawn_helper');
      } catch {
        return false;
      }
    });
    expect(helpers.length).toBeGreaterThan(0);
    for (const pid of helpers) {
      expect(fs.readFileSync(`/proc/${pid}/cmdline`).includes(SECRET)).toBe(false);
      let environ: Buffer | undefined;
      try {
        environ = fs.readFileSync(`/proc/${pid}/environ`);
      } catch (error) {
        // not root: a non-dumpable helper's /proc files belong to root, so not even its own user
        // can read its environment, which is the stronger result
        expect((error as NodeJS.ErrnoException).code).toBe('EACCES');
        expect(process.getuid?.()).not.toBe(0);
        expect(fs.statSync(`/proc/${pid}/environ`).uid, 'the helper is not dumpable').toBe(0);
      }
      if (environ !== undefined) expect(environ.includes(SECRET)).toBe(false);
    }
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(7);
    expect(fs.readFileSync(marker, 'utf8')).toBe('term\n');
  });
});
