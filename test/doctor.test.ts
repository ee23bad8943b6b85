/**
 * `vault doctor` against the real host: every fact it reports is checked against /proc read here
 * independently, each tier is found by running the real helper, and a real restricted host (a user
 * namespace whose max_user_namespaces is 0) is built to see it say so.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DoctorReport, doctorReport, renderDoctor } from '../src/sandbox/doctor.js';
import { RELEASE_CLI, ROOT } from './helpers/cli.js';

const HELPER = path.join(ROOT, 'build', 'Release', 'spawn_helper');
const IS_ROOT = process.getuid?.() === 0;

function requireHelper(): void {
  if (!fs.existsSync(HELPER)) {
    throw new Error(`${HELPER} does not exist: native/spawn_helper.c has not landed or was not built; run \`npm run build\` first`);
  }
}

/** Runs `vault doctor --json` of `cli`; fails clearly while the command is not wired into main.ts. */
function parseDoctorOutput(result: { status: number | null; stdout: string; stderr: string }, what: string): DoctorReport {
  if (result.status !== 0 && /unknown command|doctor/i.test(result.stderr) && !result.stdout.trim().startsWith('{')) {
    throw new Error(`${what}: \`vault doctor\` is not wired into src/cli/main.ts yet (exit ${result.status}): ${result.stderr.trim()}`);
  }
  expect(result.status, `${what}: ${result.stderr}`).toBe(0);
  return JSON.parse(result.stdout) as DoctorReport;
}

function ownUserNamespace(): string {
  return fs.readlinkSync('/proc/self/ns/user');
}

/**
 * Runs `command` in a new user namespace mapping uids and gids 0–65535 to themselves, where
 * max_user_namespaces is set to 0 before `command` starts (facts.md): the namespace's root writes
 * the knob, after the parent has written the maps and the shell has re-executed to gain its
 * capabilities there.
 */
async function inRestrictedUserns(command: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const script = `until grep -q . /proc/self/uid_map; do sleep 0.01; done
exec sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"' sh "$@"`;
  const child = spawn('unshare', ['-U', '--', 'sh', '-c', script, 'sh', ...command], { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: os.tmpdir() });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const pid = child.pid;
  if (pid === undefined) throw new Error('cannot start unshare');
  const mine = ownUserNamespace();
  const deadline = Date.now() + 10_000;
  for (;;) {
    let theirs: string | undefined;
    try {
      theirs = fs.readlinkSync(`/proc/${pid}/ns/user`);
    } catch {
      theirs = undefined;
    }
    if (theirs !== undefined && theirs !== mine) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`unshare -U did not create a user namespace: ${Buffer.concat(err).toString('utf8')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  fs.writeFileSync(`/proc/${pid}/uid_map`, '0 0 65536\n');
  fs.writeFileSync(`/proc/${pid}/gid_map`, '0 0 65536\n');
  const status = await done;
  return { status, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

describe('vault doctor on this host', () => {
  let report: DoctorReport;
  let elapsedMs: number;

  beforeAll(async () => {
    const started = performance.now();
    report = await doctorReport();
    elapsedMs = performance.now() - started;
  });

  it('reports the kernel and the user namespace knobs exactly as /proc has them', () => {
    expect(report.kernel.release).toBe(os.release());
    expect(report.kernel.arch).toBe(os.arch());
    expect(report.kernel.machine).toBe(spawnSync('uname', ['-m'], { encoding: 'utf8' }).stdout.trim());
    const max = Number(fs.readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim());
    expect(report.user_namespaces.max_user_namespaces.state).toBe('present');
    expect(report.user_namespaces.max_user_namespaces.value).toBe(max);
    for (const [knob, file] of [
      ['unprivileged_userns_clone', '/proc/sys/kernel/unprivileged_userns_clone'],
      ['apparmor_restrict_unprivileged_userns', '/proc/sys/kernel/apparmor_restrict_unprivileged_userns'],
    ] as const) {
      const reported = report.user_namespaces[knob];
      if (fs.existsSync(file)) expect(reported.value).toBe(Number(fs.readFileSync(file, 'utf8').trim()));
      else expect(reported).toMatchObject({ state: 'absent', value: null });
    }
    if (max > 0 && report.user_namespaces.blocked_by.length === 0) expect(report.user_namespaces.allowed).toBe(true);
  });

  it('reports CAP_SYS_ADMIN, root and seccomp as /proc/self/status has them', () => {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    expect(capEff).toBeDefined();
    expect(report.identity.cap_eff).toBe(capEff);
    expect(report.identity.cap_sys_admin).toBe(((BigInt(`0x${capEff}`) >> 21n) & 1n) === 1n);
    expect(report.identity.root).toBe(process.geteuid?.() === 0);
    expect(report.seccomp.mode).toBe(Number(/^Seccomp:\s*(\d+)$/m.exec(status)?.[1]));
    expect(report.seccomp.actions_avail).toBe(fs.existsSync('/proc/sys/kernel/seccomp/actions_avail'));
  });

  it('reports the helper by path with the SHA-256 of its bytes, and not setuid', () => {
    requireHelper();
    expect(report.helper.path).toBe(HELPER);
    expect(report.helper.exists).toBe(true);
    expect(report.helper.sha256).toBe(createHash('sha256').update(fs.readFileSync(HELPER)).digest('hex'));
    expect(report.helper.setuid).toBe(false);
    expect(report.helper.setgid).toBe(false);
  });

  it('finds every tier available here (root, user namespaces on) by running the helper, with no fallback', () => {
    requireHelper();
    for (const tier of ['none', 'hardened', 'lockdown'] as const) {
      const t = report.tiers[tier];
      expect(t.available, `tier ${tier}: ${t.reason}`).toBe(true);
      expect(t.exit_code).toBe(0);
      expect(t.reason).toBeNull();
      expect(t.userns_fallback).toBe(false);
    }
    // the target's namespaces are its own, by the inode numbers the helper reported
    const own = (kind: string) => Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/self/ns/${kind}`))?.[1]);
    for (const kind of ['user', 'pid', 'ipc', 'mnt']) expect(report.tiers.hardened.namespaces?.[kind]).not.toBe(own(kind));
    for (const kind of ['net', 'uts']) expect(report.tiers.hardened.namespaces?.[kind]).toBe(own(kind));
    for (const kind of ['user', 'pid', 'ipc', 'mnt', 'net', 'uts', 'cgroup']) expect(report.tiers.lockdown.namespaces?.[kind]).not.toBe(own(kind));
  });

  it('reports the Landlock ABI lockdown applies, as the kernel gives it, and each tier\'s seccomp filter', () => {
    requireHelper();
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) is system call 444 on x86-64 and arm64
    const asked = spawnSync('python3', ['-c', 'import ctypes; print(ctypes.CDLL(None, use_errno=True).syscall(444, None, 0, 1))'], { encoding: 'utf8' });
    const kernelAbi = Math.max(0, Number(asked.stdout.trim()));
    expect(report.tiers.lockdown.landlock_abi).toBe(kernelAbi);
    expect(report.landlock.abi).toBe(kernelAbi);
    expect([report.tiers.none.seccomp_filter, report.tiers.hardened.seccomp_filter, report.tiers.lockdown.seccomp_filter]).toEqual(['terminal', 'full', 'full']);
    const text = renderDoctor(report);
    expect(text).toContain(`landlock ABI in use by lockdown: ${kernelAbi === 0 ? 'none' : kernelAbi}`);
    expect(text).toContain('tier lockdown seccomp filter: full deny list');
  });

  it('is plain JSON data and renders one fact per line, saying what each tier leaves in view', () => {
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    const text = renderDoctor(report);
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trimEnd().split('\n');
    expect(lines.every((line) => line.trim() !== '')).toBe(true);
    expect(lines.find((l) => l.startsWith('tier hardened does not isolate:'))).toContain('host filesystem');
    expect(lines.find((l) => l.startsWith('tier lockdown isolates:'))).toContain('loopback only');
    expect(lines).toContain(`kernel: ${os.release()} (${os.machine()})`);
    expect(text).toContain(`user.max_user_namespaces: ${report.user_namespaces.max_user_namespaces.value}`);
  });

  it('reports lockdown\'s network modes by running each: the stack found, loopback only, the host\'s, an egress allow-list', () => {
    expect(report.network.slirp4netns).toBe(fs.realpathSync('/usr/bin/slirp4netns'));
    expect(report.network.nft).toBe(fs.realpathSync('/usr/sbin/nft'));
    expect(report.network.egress_blocked_by).toBeNull();
    for (const mode of ['none', 'host', 'egress'] as const) expect(report.network.modes[mode], mode).toMatchObject({ available: true, reason: null });
    const text = renderDoctor(report);
    expect(text).toContain('network stack: slirp4netns /usr/bin/slirp4netns, nft /usr/sbin/nft\n');
    expect(text).toMatch(/^lockdown network --net HOST:PORT\S*: available\n  gives: a network namespace of its own behind a user-mode stack/m);
  });

  it('reports Yama\'s ptrace_scope as /proc says, and what it means for processes of the same user', () => {
    const file = '/proc/sys/kernel/yama/ptrace_scope';
    if (fs.existsSync(file)) {
      expect(report.yama.ptrace_scope).toMatchObject({ state: 'present', value: Number(fs.readFileSync(file, 'utf8').trim()) });
    } else {
      expect(report.yama.ptrace_scope.state).toBe('absent');
      expect(report.yama.meaning).toMatch(/^Yama is not present: any process of your uid can ptrace a running target/);
    }
    expect(renderDoctor(report)).toContain(`kernel.yama.ptrace_scope: `);
  });

  it('reports the keychain as the Secret Service answers', () => {
    if (process.env.SEALVAULT_TEST_KEYCHAIN === 'required') expect(report.keychain, String(report.keychain.reason)).toEqual({ reachable: true, reason: null });
    else expect(report.keychain.reachable || typeof report.keychain.reason === 'string').toBe(true);
  });

  it('takes less than a second', () => {
    expect(elapsedMs).toBeLessThan(1000);
  });
});

describe('vault doctor as a command', () => {
  let app: string;

  beforeAll(() => {
    app = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-doctor-'));
    fs.chmodSync(app, 0o755);
  });
  afterAll(() => fs.rmSync(app, { recursive: true, force: true }));

  it('prints the same report as JSON', () => {
    const result = spawnSync(process.execPath, [RELEASE_CLI, 'doctor', '--json'], { env: { PATH: process.env.PATH, LANG: 'C.UTF-8' }, encoding: 'utf8', timeout: 30_000 });
    const report = parseDoctorOutput(result, 'vault doctor --json');
    expect(report.user_namespaces.max_user_namespaces.value).toBe(Number(fs.readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim()));
    expect(report.keychain.reachable).toBe(false); // no D-Bus session passed on
    const text = spawnSync(process.execPath, [RELEASE_CLI, 'doctor'], { env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 30_000 });
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toContain('tier hardened does not isolate: the host filesystem');
  });

  it('says per tier that the helper is not built, and does not fail, where it is missing', () => {
    // a copy of the release without build/Release/spawn_helper
    fs.cpSync(path.join(ROOT, 'dist'), path.join(app, 'dist'), { recursive: true });
    fs.mkdirSync(path.join(app, 'build', 'Release'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'build', 'Release', 'sealvault_native.node'), path.join(app, 'build', 'Release', 'sealvault_native.node'));
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
    const result = spawnSync(process.execPath, [path.join(app, 'dist', 'vault.mjs'), 'doctor', '--json'], { env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 30_000 });
    const report = parseDoctorOutput(result, 'vault doctor --json without the helper');
    expect(report.helper).toMatchObject({ path: path.join(fs.realpathSync(app), 'build', 'Release', 'spawn_helper'), exists: false, sha256: null });
    for (const tier of ['none', 'hardened', 'lockdown'] as const) {
      expect(report.tiers[tier]).toMatchObject({ available: false, exit_code: null });
      expect(report.tiers[tier].reason).toMatch(/not built/);
    }
  });
});

describe.skipIf(!IS_ROOT)('vault doctor on a host without user namespaces (a user namespace with max_user_namespaces=0)', () => {
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: '/nonexistent' };

  it('as an unprivileged user: hardened and lockdown unavailable, naming max_user_namespaces and its fix', async () => {
    requireHelper();
    const result = await inRestrictedUserns(['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups', '--', process.execPath, RELEASE_CLI, 'doctor', '--json'], env);
    const report = parseDoctorOutput(result, 'vault doctor --json as uid 65534 with max_user_namespaces=0');
    expect(report.identity).toMatchObject({ euid: 65534, root: false, cap_sys_admin: false, initial_user_namespace: false });
    expect(report.user_namespaces.max_user_namespaces.value).toBe(0);
    expect(report.user_namespaces.allowed).toBe(false);
    expect(report.user_namespaces.blocked_by.map((b) => b.sysctl)).toContain('user.max_user_namespaces');
    expect(report.user_namespaces.blocked_by.find((b) => b.sysctl === 'user.max_user_namespaces')?.fix).toMatch(/^sysctl -w user\.max_user_namespaces=\d+/);
    for (const tier of ['hardened', 'lockdown'] as const) {
      const t = report.tiers[tier];
      expect(t.available).toBe(false);
      expect(t.exit_code).toBe(125);
      expect(t.reason).toMatch(/max_user_namespaces/);
    }
    expect(report.tiers.none.available, String(report.tiers.none.reason)).toBe(true);
  });

  it('as that namespace\'s root (CAP_SYS_ADMIN there): the tiers run on the fallback without a user namespace, and it says so', async () => {
    requireHelper();
    const result = await inRestrictedUserns([process.execPath, RELEASE_CLI, 'doctor', '--json'], env);
    const report = parseDoctorOutput(result, 'vault doctor --json as the root of a user namespace with max_user_namespaces=0');
    expect(report.identity).toMatchObject({ root: true, cap_sys_admin: true, initial_user_namespace: false });
    for (const tier of ['hardened', 'lockdown'] as const) {
      const t = report.tiers[tier];
      expect(t.available, `tier ${tier}: ${t.reason}`).toBe(true);
      expect(t.userns_fallback).toBe(true);
    }
    expect(report.warnings.some((w) => w.includes('CAP_SYS_ADMIN fallback'))).toBe(true);
  });
});

describe('vault doctor inside a sandbox that masks /proc (a mount over /proc/sys, as containers and bwrap leave it)', () => {
  it('finds lockdown unavailable with the helper\'s EPERM and why; none and hardened still run', () => {
    requireHelper();
    // as root, a mount namespace of its own; as anyone else, a user namespace of its own too
    const outer = IS_ROOT ? ['unshare', '-m', '--propagation', 'private'] : ['unshare', '-Urm'];
    const result = spawnSync(outer[0]!, [...outer.slice(1), '--', '/bin/sh', '-c', 'mount -t tmpfs none /proc/sys && exec "$@"', 'sh', process.execPath, RELEASE_CLI, 'doctor', '--json'], {
      env: { PATH: process.env.PATH, LANG: 'C.UTF-8', HOME: '/nonexistent' }, encoding: 'utf8', timeout: 30_000,
    });
    const report = parseDoctorOutput(result, 'vault doctor --json with /proc/sys masked');
    expect(report.tiers.lockdown.available).toBe(false);
    expect(report.tiers.lockdown.exit_code).toBe(125);
    expect(report.tiers.lockdown.reason).toMatch(/^vault: setup_proc: a new \/proc is refused: an outer sandbox or container masks parts of the host's \/proc.*: Operation not permitted$/);
    expect(report.tiers.none.available).toBe(true);
    expect(report.tiers.hardened.available).toBe(true);
  });
});
