/**
 * native/spawn_helper against the real kernel: each tier's namespaces, session, mounts, network,
 * seccomp filter, keyring, limits, secrets, exit statuses, signals, timeouts, relays and fds, seen
 * from inside by a target that reports what it finds. The helper is driven here directly (fds 3, 4
 * and 5 as docs/helper-protocol.md says), so that these tests depend on nothing but the helper and
 * the request encoder. Terminals (the pty and its relay) are tested through `vault exec` on a real
 * pty in test/terminal-sandbox.test.ts.
 *
 * Run as root (the usual case here) the tier tests run twice: as root, and as an unprivileged
 * user created by the test (setpriv). The paths without user namespaces run for real in a user
 * namespace whose user.max_user_namespaces is 0 (see /work/shared/facts.md).
 */
import { type ChildProcess, spawn, spawnSync, type StdioOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeHelperRequest, HELPER_FLAGS, type MountEntry } from '../src/sandbox/helper-protocol.js';
import { lockdownSystemMounts } from '../src/sandbox/lockdown-root.js';
import { type Namespace, SECCOMP_DENIED, TIER_POLICY, TIERS, type Tier } from '../src/sandbox/tiers.js';
import { ROOT } from './helpers/cli.js';
import { IS_ROOT, unprivilegedUser } from './helpers/users.js';

const BUILT_HELPER = path.join(ROOT, 'build', 'Release', 'spawn_helper');
const NAMESPACES = ['user', 'pid', 'ipc', 'mnt', 'net', 'uts', 'cgroup'] as const;
const PATH_ENV = 'PATH=/usr/bin:/bin';

interface HelperInfo {
  tier: Tier;
  userns: boolean;
  pty: boolean;
  seccomp: 'terminal' | 'full';
  landlock: number;
  ns: Record<Namespace, number>;
}

/** How the helper is started: directly, or through commands that end by exec'ing it (so fds 3-5 pass through). */
interface Launcher {
  label: string;
  uid: number;
  gid: number;
  command: string[];
  /** Extra fds (from 7 on) the launcher itself needs, e.g. to be told when to go on. */
  ownFds?: number;
  prepare?: (child: ChildProcess, fds: Duplex[]) => Promise<void>;
}

interface RunOptions {
  tier: Tier;
  /** Opened read-only here and passed as fd 4, as vault passes the pinned binary. */
  executable: string;
  argv: string[];
  env?: (string | Uint8Array)[];
  files?: { name: string; value: string | Uint8Array; path?: string }[];
  hide?: string[];
  /** lockdown's mounts beyond the system, the working directory and the pinned file. */
  mounts?: MountEntry[];
  flags?: number;
  timeoutMs?: number;
  killAfterMs?: number;
  /** Sent instead of the encoded request. */
  payload?: Uint8Array;
  /** Leave fd 5 closed. */
  noInfo?: boolean;
  /** Pipes the test passes at fds above 6, which the helper must not hand on. */
  strayFds?: number;
  /** Leave the helper's stdin open (a target that waits on it); by default it is closed at once. */
  keepStdin?: boolean;
}

interface HelperResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
  info: HelperInfo | undefined;
}

interface Running {
  child: ChildProcess;
  pid: number;
  /** Resolves once stdout holds a match for `pattern`. */
  output(pattern: RegExp): Promise<void>;
  done: Promise<HelperResult>;
}

let base: string;
/** Outside /tmp, which lockdown replaces: for directories the sandbox should (not) see. */
let outsideTmp: string;
/** The helper's working directory, which lockdown binds read-write; writable by the test user. */
let work: string;
let probe: string;
let rootLauncher: Launcher;
let userLauncher: Launcher;
let user: { name: string; uid: number; gid: number };
const fixtures: Record<string, string> = {};

/** What vault gives lockdown (src/sandbox/lockdown-root.ts), for the helper's working directory here. */
function lockdownMounts(options: RunOptions): MountEntry[] {
  return [
    ...lockdownSystemMounts(),
    { kind: 'readWrite', path: work },
    ...(options.mounts ?? []),
  ];
}

function encodeRequest(options: RunOptions): Uint8Array {
  const encoder = new TextEncoder();
  return encodeHelperRequest({
    tier: options.tier,
    flags: options.flags,
    timeoutMs: options.timeoutMs,
    killAfterMs: options.killAfterMs,
    argv: options.argv,
    env: (options.env ?? [PATH_ENV]).map((e) => (typeof e === 'string' ? encoder.encode(e) : e)),
    files: (options.files ?? []).map((f) => ({
      name: f.name, value: typeof f.value === 'string' ? encoder.encode(f.value) : f.value, ...(f.path !== undefined ? { path: f.path } : {}),
    })),
    hide: options.hide ?? [],
    mounts: options.tier === 'lockdown' ? lockdownMounts(options) : [],
  });
}

function start(launcher: Launcher, options: RunOptions): Running {
  const executableFd = fs.openSync(options.executable, 'r');
  const ownFds = launcher.ownFds ?? 0;
  // fd 6 is the helper's script fd (not used here): launchers' own fds and stray ones start at 7
  const stdio: StdioOptions = ['pipe', 'pipe', 'pipe', 'pipe', executableFd, options.noInfo === true ? 'ignore' : 'pipe', 'ignore'];
  for (let i = 0; i < ownFds + (options.strayFds ?? 0); i += 1) stdio.push('pipe');
  const child = spawn(launcher.command[0]!, launcher.command.slice(1), { env: {}, stdio, cwd: work });
  fs.closeSync(executableFd);
  const pipes = child.stdio as unknown as (Duplex | null)[];

  const payload = options.payload ?? encodeRequest(options);
  pipes[3]!.on('error', () => undefined); // a helper that refused the request early is reported by its status
  pipes[3]!.end(payload);
  if (options.keepStdin !== true) child.stdin!.end();
  child.stdin!.on('error', () => undefined);

  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let info = '';
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const text = () => Buffer.concat(stdout).toString('utf8');
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout.push(chunk);
    for (const waiter of waiters.splice(0)) {
      if (waiter.pattern.test(text())) waiter.resolve();
      else waiters.push(waiter);
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
  pipes[5]?.on('data', (chunk: Buffer) => {
    info += chunk.toString('utf8');
  });

  const done = new Promise<HelperResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      let parsed: HelperInfo | undefined;
      if (info !== '') {
        if (!/^\{[^\n]*\}\n$/.test(info)) {
          reject(new Error(`the info pipe carries more or less than one JSON line: ${JSON.stringify(info)}`));
          return;
        }
        parsed = JSON.parse(info) as HelperInfo;
      }
      const stdoutBytes = Buffer.concat(stdout);
      resolve({ code, signal, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr: Buffer.concat(stderr).toString('utf8'), info: parsed });
    });
  });
  if (launcher.prepare !== undefined) {
    const own = pipes.slice(7, 7 + ownFds).filter((p): p is Duplex => p !== null);
    launcher.prepare(child, own).catch((error: unknown) => child.emit('error', error));
  }
  return {
    child,
    pid: child.pid!,
    output(pattern) {
      if (pattern.test(text())) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${pattern} on stdout within 10 s: ${text()}`)), 10_000);
        waiters.push({ pattern, resolve: () => { clearTimeout(timer); resolve(); } });
        done.then((r) => reject(new Error(`helper ended (${r.code}) before ${pattern}: ${r.stdout} ${r.stderr}`)), reject);
      });
    },
    done,
  };
}

function run(launcher: Launcher, options: RunOptions): Promise<HelperResult> {
  return start(launcher, options).done;
}

/** `key=value` lines, as the fixture scripts print them. */
function report(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

function ownNamespaces(): Record<Namespace, number> {
  return Object.fromEntries(NAMESPACES.map((ns) => [ns, fs.statSync(`/proc/self/ns/${ns}`).ino])) as Record<Namespace, number>;
}

/** Field `n` (1-based, as in proc(5)) of /proc/PID/stat. */
function statField(pid: number | 'self', n: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[n - 3]!;
}

function childrenOf(pid: number): number[] {
  return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

function isGone(pid: number): boolean {
  try {
    return ['Z', 'X'].includes(statField(pid, 3));
  } catch {
    return true;
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every readable mapping of `pid`'s memory, for searching it. */
function memoryOf(pid: number): Buffer[] {
  const regions: Buffer[] = [];
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n')) {
      const [range, perms] = line.split(' ');
      if (range === undefined || perms === undefined || !perms.startsWith('r') || /\[(vvar|vsyscall|vvar_vclock)\]/.test(line)) continue;
      const [from, to] = range.split('-').map((h) => parseInt(h, 16)) as [number, number];
      const buffer = Buffer.alloc(to - from);
      try {
        fs.readSync(fd, buffer, 0, buffer.length, from);
        regions.push(buffer);
      } catch {
        // a mapping that vanished or cannot be read (e.g. guard pages)
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return regions;
}

/** One line `vault: <step>: <reason>` and nothing else. */
function expectOneLineError(result: HelperResult, status: number, step: string): void {
  expect(result.code, result.stderr).toBe(status);
  expect(result.stderr).toMatch(new RegExp(`^vault: ${step}: [^\\n]+\\n$`));
  expect(result.stdout).toBe('');
}

/**
 * A process outside the sandbox, of the same user as the target and like it without capabilities
 * (a capless process may not read one that has some, even of its own uid).
 */
function startOutsider(launcher: Launcher): ChildProcess {
  const sleep = ['/bin/sleep', '60'];
  const command = IS_ROOT
    ? ['/usr/bin/setpriv', '--reuid', String(launcher.uid), '--regid', String(launcher.gid), '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--', ...sleep]
    : sleep;
  return spawn(command[0]!, command.slice(1), { env: { SEALVAULT_PROBE: 'outside-environ' }, stdio: 'ignore' });
}

const SCRIPTS: Record<string, string> = {
  // what the target finds itself in
  'report.sh': `#!/bin/sh
echo "pid=$$"
echo "ppid=$PPID"
echo "uid=$(id -u)"
read -r statpid comm state ppid pgrp sid rest < /proc/self/stat
echo "statpid=$statpid"
echo "pgrp=$pgrp"
echo "sid=$sid"
echo "hostname=$(cat /proc/sys/kernel/hostname)"
echo "core.soft=$(ulimit -c)"
echo "core.hard=$(ulimit -Hc)"
for ns in user pid ipc mnt net uts cgroup; do echo "ns.$ns=$(stat -L -c %i /proc/self/ns/$ns)"; done
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status | tr -d ' \\t' | sed 's/:/=/'
echo "procpids=$(ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' ')"
echo "API_KEY=$API_KEY"
`,
  // each file secret named in "$@": where it is, its mode, its bytes, whether it can be changed
  'files.sh': `#!/bin/sh
for name in "$@"; do
  eval "file=\\\${\${name}_FILE}"
  echo "$name.path=$file"
  echo "$name.mode=$(stat -L -c %a "$file")"
  echo "$name.sha256=$(sha256sum < "$file" | cut -d' ' -f1)"
  if echo x | tee -a "$file" >/dev/null 2>&1; then echo "$name.write=allowed"; else echo "$name.write=refused"; fi
  echo "$name.after=$(sha256sum < "$file" | cut -d' ' -f1)"
done
`,
  'exit42.sh': '#!/bin/sh\nexit 42\n',
  'selfterm.sh': '#!/bin/sh\nkill -TERM $$\nsleep 5\n',
  // acknowledges each forwarded signal; TERM ends it
  'signals.sh': `#!/bin/sh
for sig in INT HUP QUIT USR1 USR2; do trap "echo got-$sig" $sig; done
trap 'echo got-TERM; kill $sleeper; exit 7' TERM
sleep 30 & sleeper=$!
echo ready
while :; do wait $sleeper; done
`,
  'wait.sh': '#!/bin/sh\necho ready\nread line\necho "API_KEY=$API_KEY"\n',
  // $1: a process outside the sandbox, of the same user
  'probe.sh': `#!/bin/sh
if cat /proc/$1/environ >/dev/null 2>&1; then echo outside=readable
elif [ -e /proc/$1 ]; then echo outside=denied
else echo outside=invisible; fi
if (exec 3</proc/$PPID/mem) 2>/dev/null; then echo parentmem=open; else echo parentmem=denied; fi
`,
  // $1: port of a listener on the host's 127.0.0.1; $2: node
  'net.sh': `#!/bin/sh
if bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; then echo host=connected; else echo host=refused; fi
"$2" -e 'const net = require("net");
const server = net.createServer((c) => c.end("pong")).listen(0, "127.0.0.1", () => {
  let got = "";
  const c = net.connect(server.address().port, "127.0.0.1");
  c.on("data", (d) => { got += d; });
  c.on("end", () => { console.log("inside=" + got); server.close(); });
  c.on("error", (e) => { console.log("inside=" + e.code); server.close(); });
});'
`,
  // $1: a unique name; $2: a hidden directory; $3: a directory that is not hidden; $4: a hidden file;
  // $5: a read-only bind; $6: a read-write bind; $7: a host directory not given; $8: the home
  'mounts.sh': `#!/bin/sh
echo "root=$(ls -A / | tr '\\n' ' ')"
echo "dev=$(ls -A /dev | tr '\\n' ' ')"
echo "tmp.before=$(ls -A /tmp | tr '\\n' ' ')"
echo x > "/tmp/$1" && echo x > "/dev/shm/$1" && echo "wrote=yes"
echo "tmp.after=$(ls -A /tmp | tr '\\n' ' ')"
echo "hidden=$(ls -A "$2" | tr '\\n' ' ')"
echo "visible=$(ls -A "$3" | tr '\\n' ' ')"
echo "hidden.file=$(cat "$4" 2>&1 | wc -c)"
echo "ro.read=$(cat "$5/shown")"
if echo x > "$5/new" 2>/dev/null; then echo ro.write=allowed; else echo ro.write=refused; fi
if echo x > "$6/new" 2>/dev/null; then echo rw.write=allowed; else echo rw.write=refused; fi
if [ -e "$7" ]; then echo other=visible; else echo other=absent; fi
echo "home=$(ls -A "$8" | tr '\\n' ' ')"
if echo x > "$8/.bashrc"; then echo home.write=private; fi
if echo x > /etc/sealvault-probe 2>/dev/null; then echo etc.write=allowed; else echo etc.write=refused; fi
if echo x > /usr/sealvault-probe 2>/dev/null; then echo usr.write=allowed; else echo usr.write=refused; fi
if echo 1 > /proc/sys/kernel/domainname 2>/dev/null; then echo sysctl.write=allowed; else echo sysctl.write=refused; fi
`,
  'no-interpreter.sh': '#!/nonexistent/sealvault-interpreter\n',
  // $1: a key description in the caller's session keyring
  'keyring.sh': `#!/bin/sh
if keyctl search @s user "$1" >/dev/null 2>&1; then echo key=found; else echo "key=$(keyctl search @s user "$1" 2>&1 | sed 's/.*: //')"; fi
`,
  'sleeper.sh': '#!/bin/sh\necho ready\nexec sleep 30\n',
  'stubborn.sh': "#!/bin/sh\ntrap 'echo ignored-TERM' TERM\necho ready\nwhile :; do sleep 0.05; done\n",
  // writes to its stderr by reopening it, as `set -e` scripts do
  'reopen.sh': '#!/bin/sh\nset -e\necho to-stderr > /dev/stderr\necho x | tee /dev/stderr > /dev/null\necho done\n',
  'endless.sh': '#!/bin/sh\nwhile :; do echo line; done\n',
  'background.sh': '#!/bin/sh\nsleep 20 &\necho started\nexit 3\n',
  // Started by `unshare -U` before its maps exist: waits for the test to write them from outside,
  // then runs itself again, which as root of the namespace gives it the capabilities that the
  // sysctl needs; then becomes the user $1:$2 and runs the helper $3.
  'no-userns.sh': `#!/bin/sh
if [ "$1" = wait ]; then read go <&7; exec 7<&-; shift; exec "$0" "$@"; fi
echo 0 > /proc/sys/user/max_user_namespaces || exit 99
exec /usr/bin/setpriv --reuid "$1" --regid "$2" --clear-groups -- "$3"
`,
};

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-helper-'));
  fs.chmodSync(base, 0o755);
  outsideTmp = fs.mkdtempSync('/var/tmp/sealvault-helper-');
  fs.chmodSync(outsideTmp, 0o755);
  work = path.join(base, 'work');
  fs.mkdirSync(work);
  fs.chmodSync(work, 0o1777);
  probe = path.join(base, 'syscall-probe');
  const cc = spawnSync('cc', ['-O1', '-o', probe, path.join(ROOT, 'test', 'fixtures', 'syscall-probe.c')], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cannot compile the syscall probe: ${cc.stderr}`);
  for (const [name, text] of Object.entries(SCRIPTS)) {
    fixtures[name] = path.join(base, name);
    fs.writeFileSync(fixtures[name]!, text, { mode: 0o755 });
  }
  fixtures['not-a-program'] = path.join(base, 'not-a-program');
  fs.writeFileSync(fixtures['not-a-program']!, 'plain text, no #! line\n', { mode: 0o755 });
  // the helper where the unprivileged user can run it
  const helper = path.join(base, 'spawn_helper');
  fs.copyFileSync(BUILT_HELPER, helper);
  fs.chmodSync(helper, 0o755);

  const me = os.userInfo();
  rootLauncher = { label: IS_ROOT ? 'root' : me.username, uid: me.uid, gid: me.gid, command: [BUILT_HELPER] };
  user = IS_ROOT ? unprivilegedUser() : { name: me.username, uid: me.uid, gid: me.gid };
  userLauncher = IS_ROOT
    ? { label: user.name, uid: user.uid, gid: user.gid, command: ['/usr/bin/setpriv', '--reuid', String(user.uid), '--regid', String(user.gid), '--clear-groups', '--', helper] }
    : rootLauncher;
});

afterAll(() => {
  if (base !== undefined) fs.rmSync(base, { recursive: true, force: true });
  if (outsideTmp !== undefined) fs.rmSync(outsideTmp, { recursive: true, force: true });
});

const launchers = IS_ROOT ? (['root', 'unprivileged user'] as const) : (['current user'] as const);
const launcherFor = (who: string): Launcher => (who === 'unprivileged user' ? userLauncher : rootLauncher);

for (const who of launchers) {
  describe(`every tier, run by ${who}`, () => {
    for (const tier of TIERS) {
      describe(tier, () => {
        it('gives the namespaces the tier promises, PID 2 under our reaper, a session of its own, no capabilities, no core dumps', async () => {
          const launcher = launcherFor(who);
          const own = ownNamespaces();
          const result = await run(launcher, { tier, executable: fixtures['report.sh']!, argv: ['report'], env: [PATH_ENV, 'API_KEY=k'] });
          expect(result.code, result.stderr).toBe(0);
          expect(result.stderr).toBe('');
          const seen = report(result.stdout);
          const mine = TIER_POLICY[tier].namespaces as readonly string[];
          for (const ns of NAMESPACES) {
            expect(Number(seen[`ns.${ns}`]) !== own[ns], `${ns} namespace is ${mine.includes(ns) ? 'own' : 'shared'}`).toBe(mine.includes(ns));
          }
          expect(result.info).toEqual({
            tier, userns: tier !== 'none', pty: false, seccomp: TIER_POLICY[tier].seccomp, landlock: tier === 'lockdown' ? expect.any(Number) : 0,
            ns: Object.fromEntries(NAMESPACES.map((ns) => [ns, Number(seen[`ns.${ns}`])])),
          });
          expect(seen.uid).toBe(String(launcher.uid));
          if (tier === 'none') {
            expect(seen.pid).not.toBe('2');
          } else {
            expect(seen.pid).toBe('2');
            expect(seen.ppid).toBe('1');
          }
          // its own session and process group: not the caller's terminal, and kill(0) reaches only itself
          expect(seen.sid).toBe(seen.statpid);
          expect(seen.pgrp).toBe(seen.statpid);
          expect(seen.hostname).toBe(tier === 'lockdown' ? 'sealvault' : os.hostname());
          expect([seen['core.soft'], seen['core.hard']]).toEqual(['0', '0']);
          const pids = (seen.procpids ?? '').trim().split(' ').map(Number);
          if (tier === 'lockdown') {
            expect(pids).toContain(1);
            expect(pids).toContain(2);
            expect(pids.every((p) => p < 50), `only the sandbox's processes in /proc: ${seen.procpids}`).toBe(true);
          } else {
            expect(pids).toContain(process.pid);
          }
          for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) expect(seen[set], set).toBe('0000000000000000');
          // an unprivileged helper in tier none cannot shrink the bounding set; no_new_privs makes it moot
          if (!(tier === 'none' && launcher.uid !== 0)) expect(seen.CapBnd).toBe('0000000000000000');
          expect(seen.NoNewPrivs).toBe('1');
          expect(seen.API_KEY).toBe('k');
        });

        it('delivers environment and file secrets byte for byte, files read-only', async () => {
          const launcher = launcherFor(who);
          const token = Buffer.from([0, 1, 2, 0xff, 0x0a, 0x3d, 0x00, 0x7f]);
          const big = Buffer.alloc(1 << 20, 'x');
          big.write('start', 0);
          big.write('end', big.length - 3);
          const files = [{ name: 'TOKEN', value: token }, { name: 'BIG', value: big }, { name: 'EMPTY', value: new Uint8Array() }];
          const result = await run(launcher, { tier, executable: fixtures['files.sh']!, argv: ['files', 'TOKEN', 'BIG', 'EMPTY'], files });
          expect(result.code, result.stderr).toBe(0);
          const seen = report(result.stdout);
          for (const file of files) {
            const sha = createHash('sha256').update(file.value).digest('hex');
            expect(seen[`${file.name}.sha256`], file.name).toBe(sha);
            expect(seen[`${file.name}.write`], `${file.name} can be written`).toBe('refused');
            expect(seen[`${file.name}.after`]).toBe(sha);
            if (tier === 'lockdown') {
              expect(seen[`${file.name}.path`]).toBe(`/tmp/.vault-secrets/${file.name}`);
              expect(seen[`${file.name}.mode`]).toBe('400');
            } else {
              expect(seen[`${file.name}.path`]).toMatch(/^\/dev\/fd\/\d+$/);
            }
          }

          // an ELF target gets exactly the requested environment plus NAME_FILE for each file
          const binaryEnv = Buffer.concat([Buffer.from('BINARY='), Buffer.from([0xff, 0xfe, 0x0a, 0x01])]);
          const env = [PATH_ENV, 'API_KEY=env-secret', 'WITH_EQUALS=a=b\nc', binaryEnv];
          const elf = await run(launcher, { tier, executable: '/usr/bin/env', argv: ['env', '-0'], env, files: [{ name: 'TOKEN', value: token }] });
          expect(elf.code, elf.stderr).toBe(0);
          const entries = elf.stdoutBytes.toString('latin1').split('\0').filter(Boolean);
          const fileEntry = entries.find((e) => e.startsWith('TOKEN_FILE='));
          expect(fileEntry).toMatch(tier === 'lockdown' ? /^TOKEN_FILE=\/tmp\/\.vault-secrets\/TOKEN$/ : /^TOKEN_FILE=\/dev\/fd\/\d+$/);
          expect(entries.filter((e) => e !== fileEntry)).toEqual(env.map((e) => Buffer.from(e).toString('latin1')));
        });

        it('passes exit codes and death by signal through (42, 143), and argv[0] to the program', async () => {
          const launcher = launcherFor(who);
          expect((await run(launcher, { tier, executable: fixtures['exit42.sh']!, argv: ['x'] })).code).toBe(42);
          const killed = await run(launcher, { tier, executable: fixtures['selfterm.sh']!, argv: ['x'] });
          expect(killed.code).toBe(143);
          expect(killed.signal).toBeNull();
          expect((await run(launcher, { tier, executable: '/bin/false', argv: ['false'] })).code).toBe(1);
          const cat = await run(launcher, { tier, executable: '/bin/cat', argv: ['my-name', '/proc/self/cmdline'] });
          expect(cat.stdout).toBe('my-name\0/proc/self/cmdline\0');
        });

        it('forwards INT, HUP, QUIT, USR1, USR2 and TERM sent to the helper to the target', async () => {
          const running = start(launcherFor(who), { tier, executable: fixtures['signals.sh']!, argv: ['signals'] });
          await running.output(/^ready$/m);
          for (const signal of ['SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGTERM'] as const) {
            process.kill(running.pid, signal);
            await running.output(new RegExp(`^got-${signal.slice(3)}$`, 'm'));
          }
          const result = await running.done;
          expect(result.code, result.stderr).toBe(7);
        });

        it('hands an ELF target only fds 0, 1 and 2: not fd 4, not the caller\'s other fds', async () => {
          const result = await run(launcherFor(who), { tier, executable: '/bin/ls', argv: ['ls', '-l', '/proc/self/fd'], strayFds: 2 });
          expect(result.code, result.stderr).toBe(0);
          const fds = [...result.stdout.matchAll(/ (\d+) -> (.*)$/gm)].map((m) => [Number(m[1]), m[2]!] as const);
          expect(fds.map(([fd]) => fd).filter((fd) => fd <= 2)).toEqual([0, 1, 2]);
          // above 2 only the directory ls itself opened to list
          expect(fds.filter(([fd]) => fd > 2).map(([, target]) => target)).toEqual([expect.stringMatching(/^\/proc\/\d+\/fd$/)]);
        });

        it('keeps secrets out of the helper\'s and PID 1\'s argv, environment and memory; killing the helper kills the sandbox', async () => {
          const secret = `s3cret-${tier}-${Math.random().toString(36).slice(2)}`;
          const fileSecret = `f1le-${tier}-${Math.random().toString(36).slice(2)}`;
          const running = start(launcherFor(who), {
            tier, executable: fixtures['wait.sh']!, argv: ['wait'], env: [PATH_ENV, `API_KEY=${secret}`], files: [{ name: 'TOKEN', value: fileSecret }], keepStdin: true,
          });
          await running.output(/^ready$/m);
          const helperPid = running.pid;
          const [first] = childrenOf(helperPid);
          expect(first).toBeDefined();
          const sandbox = tier === 'none' ? [helperPid] : [helperPid, first!];
          const target = tier === 'none' ? first! : childrenOf(first!)[0]!;
          if (tier !== 'none') {
            // PID 1 only waits once the target runs: it keeps no capability. The target can print
            // "ready" before PID 1 is scheduled again to drop them (seen once in CI): wait, bounded
            const capless = () => ['CapPrm', 'CapEff', 'CapBnd'].every((set) =>
              new RegExp(`^${set}:\\s+0+$`, 'm').test(fs.readFileSync(`/proc/${first}/status`, 'utf8')));
            await until(capless, 'PID 1 to drop its capabilities', 2000);
          }
          for (const pid of sandbox) {
            // non-dumpable: its /proc entries belong to root whoever runs it, so only root can read
            // its environment (and finds it empty); the test's own user is refused
            expect(fs.statSync(`/proc/${pid}/environ`).uid, `owner of /proc/${pid}/environ`).toBe(0);
            if (IS_ROOT) expect(fs.readFileSync(`/proc/${pid}/environ`, 'utf8'), `environ of ${pid}`).toBe('');
            else expect(() => fs.readFileSync(`/proc/${pid}/environ`), `environ of ${pid}`).toThrow(/EACCES/);
            const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
            expect(cmdline).not.toContain(secret);
            expect(cmdline).not.toContain(fileSecret);
            if (IS_ROOT) {
              // the target can print "ready" before PID 1 is scheduled again to wipe its copy after
              // the fork, so wait (bounded) for the wiped state rather than sampling it once
              const holds = (needle: string) => memoryOf(pid).some((region) => region.includes(needle));
              await until(() => !holds(secret), `the environment secret to leave the memory of ${pid}`, 2000);
              await until(() => !holds(fileSecret), `the file secret to leave the memory of ${pid}`, 2000);
            }
          }
          expect(fs.readFileSync(`/proc/${target}/environ`, 'utf8')).toContain(`API_KEY=${secret}`);

          process.kill(helperPid, 'SIGKILL');
          await until(() => isGone(target) && sandbox.every(isGone), 'PID 1 and the target to die with the helper');
          expect((await running.done).signal).toBe('SIGKILL');
        });

        it('lets the target read a same-user process outside only in tier none, and never the helper\'s memory', async () => {
          const launcher = launcherFor(who);
          const outsider = startOutsider(launcher);
          try {
            await until(() => fs.existsSync(`/proc/${outsider.pid}`) && fs.readFileSync(`/proc/${outsider.pid}/cmdline`, 'utf8').startsWith('/bin/sleep'), 'the outsider');
            const result = await run(launcher, { tier, executable: fixtures['probe.sh']!, argv: ['probe', String(outsider.pid)] });
            expect(result.code, result.stderr).toBe(0);
            const seen = report(result.stdout);
            expect(seen.outside).toBe({ none: 'readable', hardened: 'denied', lockdown: 'invisible' }[tier]);
            expect(seen.parentmem, 'the helper (none) or PID 1 holds secrets: its memory is closed').toBe('denied');
          } finally {
            outsider.kill('SIGKILL');
          }
        });
      });
    }

    describe('network and mounts', () => {
      let server: net.Server;
      let port: number;
      beforeAll(async () => {
        server = net.createServer((socket) => {
          socket.on('error', () => undefined); // the probe closes without reading
          socket.end('host');
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        port = (server.address() as net.AddressInfo).port;
      });
      afterAll(() => {
        server.close();
      });

      for (const tier of ['hardened', 'lockdown'] as const) {
        it(`${tier}: ${tier === 'lockdown' ? 'cannot' : 'can'} reach the host's 127.0.0.1; its own 127.0.0.1 works`, async () => {
          const result = await run(launcherFor(who), { tier, executable: fixtures['net.sh']!, argv: ['net', String(port), process.execPath] });
          expect(result.code, result.stderr).toBe(0);
          expect(report(result.stdout)).toEqual({ host: tier === 'lockdown' ? 'refused' : 'connected', inside: 'pong' });
        });
      }

      it('lockdown: a new root of the system read-only, private /tmp, /dev/shm and home, binds and hidden paths as asked', async () => {
        const launcher = launcherFor(who);
        const tree = fs.mkdtempSync(path.join(outsideTmp, 'tree-'));
        const [hidden, visible, readOnly, readWrite, other, home] = ['hidden', 'visible', 'ro', 'rw', 'other', 'home'].map((d) => path.join(tree, d));
        for (const dir of [hidden, visible, readOnly, readWrite, other, home]) fs.mkdirSync(dir!);
        fs.writeFileSync(path.join(hidden!, 'vault-file'), 'do not show');
        fs.writeFileSync(path.join(visible!, 'shown'), '');
        fs.writeFileSync(path.join(readOnly!, 'shown'), 'read-only content');
        fs.writeFileSync(path.join(home!, '.bashrc'), 'the real one');
        const hiddenFile = path.join(visible!, 'token-file');
        fs.writeFileSync(hiddenFile, 'svt1_a-token-that-must-not-show');
        spawnSync('chmod', ['-R', 'a+rwX', tree]);
        const unique = `sealvault-probe-${process.pid}-${Date.now()}`;
        const result = await run(launcher, {
          tier: 'lockdown', executable: fixtures['mounts.sh']!,
          argv: ['mounts', unique, hidden!, visible!, hiddenFile, readOnly!, readWrite!, other!, home!],
          mounts: [
            { kind: 'readWrite', path: visible! }, { kind: 'readWrite', path: hidden! }, { kind: 'readOnly', path: readOnly! },
            { kind: 'readWrite', path: readWrite! }, { kind: 'emptyDir', path: home! }, { kind: 'readOnly', path: path.join(tree, 'missing') },
          ],
          hide: [hidden!, hiddenFile, '/nonexistent/sealvault-hidden'],
        });
        expect(result.code, result.stderr).toBe(0);
        const seen = report(result.stdout);
        const top = new Set(seen.root!.trim().split(' '));
        // the system, the fixed parts, and the first component of the binds: nothing else of the host
        for (const name of ['usr', 'etc', 'proc', 'dev', 'tmp', 'var']) expect(top.has(name), `/${name}`).toBe(true);
        for (const name of ['root', 'home', 'run', 'srv', 'mnt', 'media', 'boot', 'sys', 'work']) expect(top.has(name), `/${name}`).toBe(false);
        expect(seen.dev!.trim().split(' ').sort()).toEqual(['fd', 'full', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']);
        // /tmp is private: only the directories leading to the helper's working directory are there
        const workTop = work.split('/')[2];
        expect(seen).toMatchObject({
          'tmp.before': `${workTop} `, wrote: 'yes', 'tmp.after': `${[workTop, unique].sort().join(' ')} `, hidden: '', visible: 'shown token-file ', 'hidden.file': '0',
          'ro.read': 'read-only content', 'ro.write': 'refused', 'rw.write': 'allowed', other: 'absent', home: '', 'home.write': 'private',
          'etc.write': 'refused', 'usr.write': 'refused', 'sysctl.write': 'refused',
        });
        expect(fs.readFileSync(hiddenFile, 'utf8'), 'the file outside is untouched').toBe('svt1_a-token-that-must-not-show');
        expect(fs.readFileSync(path.join(home!, '.bashrc'), 'utf8'), 'the real home is untouched').toBe('the real one');
        expect(fs.existsSync(path.join(readOnly!, 'new'))).toBe(false);
        expect(fs.existsSync(path.join(readWrite!, 'new')), 'a read-write bind writes through').toBe(true);
        expect(fs.existsSync(path.join('/tmp', unique)), 'a file written to /tmp inside is on the host').toBe(false);
        expect(fs.existsSync(path.join('/dev/shm', unique)), 'a file written to /dev/shm inside is on the host').toBe(false);
        expect(fs.readdirSync(hidden!)).toEqual(['vault-file']);
      });

      it('lockdown: a file given as stdin stays read-only; a file as stdout can be reopened; a directory as a stream is refused', async () => {
        const launcher = launcherFor(who);
        const dir = fs.mkdtempSync(path.join(outsideTmp, 'streams-'));
        const input = path.join(dir, 'input');
        const output = path.join(dir, 'output');
        fs.writeFileSync(input, 'the caller\'s file\n');
        fs.writeFileSync(output, '');
        spawnSync('chmod', ['-R', 'a+rwX', dir]);
        const inFd = fs.openSync(input, 'r');
        const outFd = fs.openSync(output, 'w');
        const script = path.join(dir, 'streams.sh');
        fs.writeFileSync(script, '#!/bin/sh\nif echo appended >> /proc/self/fd/0; then echo stdin=written; else echo stdin=refused; fi\necho reopened >> /dev/stdout\n', { mode: 0o755 });
        const stdio: StdioOptions = [inFd, outFd, 'pipe', 'pipe', fs.openSync(script, 'r'), 'pipe'];
        const child = spawn(launcher.command[0]!, launcher.command.slice(1), { env: {}, stdio, cwd: work });
        (child.stdio[3] as Duplex).end(encodeRequest({ tier: 'lockdown', executable: script, argv: ['streams'] }));
        let stderr = '';
        child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
        fs.closeSync(inFd);
        fs.closeSync(outFd);
        expect(code, stderr).toBe(0);
        expect(fs.readFileSync(input, 'utf8'), 'stdin was written through /proc/self/fd/0').toBe('the caller\'s file\n');
        expect(fs.readFileSync(output, 'utf8')).toBe('stdin=refused\nreopened\n');

        const dirFd = fs.openSync(dir, 'r');
        const escape = spawn(launcher.command[0]!, launcher.command.slice(1), { env: {}, stdio: [dirFd, 'pipe', 'pipe', 'pipe', fs.openSync('/bin/true', 'r'), 'pipe'], cwd: work });
        (escape.stdio[3] as Duplex).end(encodeRequest({ tier: 'lockdown', executable: '/bin/true', argv: ['true'] }));
        let refused = '';
        escape.stderr!.on('data', (d: Buffer) => (refused += d.toString()));
        expect(await new Promise<number | null>((resolve) => escape.on('close', resolve))).toBe(125);
        fs.closeSync(dirFd);
        expect(refused).toMatch(/^vault: setup_stdio: stdin is a directory, which would let the program out of lockdown's root/);
      });

      it('lockdown: a symlink planted in a bound path is refused, not followed', async () => {
        const tree = fs.mkdtempSync(path.join(outsideTmp, 'link-'));
        fs.symlinkSync('/etc', path.join(tree, 'link'));
        spawnSync('chmod', ['-R', 'a+rwX', tree]);
        const result = await run(launcherFor(who), {
          tier: 'lockdown', executable: '/bin/true', argv: ['true'], mounts: [{ kind: 'readWrite', path: path.join(tree, 'link') }],
        });
        expectOneLineError(result, 125, 'setup_mounts');
        expect(result.stderr).toMatch(/symlink in the path is refused/);
      });
    });

    for (const tier of TIERS) {
      describe(`${tier}: the kernel's surface`, () => {
        it(`refuses ${tier === 'none' ? 'TIOCSTI and TIOCLINUX' : 'every system call of the deny list'} with the seccomp filter`, async () => {
          const launcher = launcherFor(who);
          // clone first: once unshare went through (tier none), the probe is in a user namespace
          // without a uid mapping, where clone(CLONE_NEWUSER) fails on its own
          const names = [
            'clone-newuser', ...SECCOMP_DENIED.map((d) => d.name), 'personality-query', 'personality-aslr-off', 'personality-aslr-off-high-bits',
            'tiocsti', 'tiocsti-high-bits', 'tioclinux', 'socket-inet', 'socket-vsock', 'socket-packet', 'socketpair-vsock',
          ];
          // stdin a pipe: without a filter TIOCSTI fails with ENOTTY, so EPERM is the filter's
          const result = await run(launcher, { tier, executable: probe, argv: ['probe', ...names] });
          expect(result.code, result.stderr).toBe(0);
          const seen = report(result.stdout);
          for (const name of ['tiocsti', 'tiocsti-high-bits', 'tioclinux']) expect(seen[name], name).toBe('EPERM');
          expect(seen['personality-query']).toBe('OK');
          if (tier === 'none') {
            // the control: without the full filter these calls go through to the kernel
            for (const name of ['unshare', 'keyctl', 'clone-newuser', 'personality-aslr-off']) expect(seen[name], name).toBe('OK');
            for (const name of ['io_uring_setup', 'bpf', 'ptrace', 'setns', 'clone3']) expect(seen[name], name).not.toMatch(/^(EPERM|ENOSYS)$/);
            return;
          }
          for (const denied of SECCOMP_DENIED) expect(seen[denied.name], denied.name).toBe(denied.errno);
          for (const name of ['clone-newuser', 'personality-aslr-off', 'personality-aslr-off-high-bits']) expect(seen[name], name).toBe('EPERM');
          expect(seen['socket-inet']).toBe('OK');
          if (tier === 'lockdown') {
            // only unix, inet, inet6 and netlink sockets: vsock and the rest are not namespaced
            for (const name of ['socket-vsock', 'socket-packet', 'socketpair-vsock']) expect(seen[name], name).toBe('EAFNOSUPPORT');
          } else {
            // the control: without lockdown's rule a packet socket fails for want of CAP_NET_RAW, not its family
            expect(seen['socket-packet']).toBe('EPERM');
          }
        });

        it('gives a new, empty session keyring: a key of the caller\'s session keyring is out of reach', async () => {
          const launcher = launcherFor(who);
          const description = `sealvault-probe-${process.pid}-${Date.now()}`;
          // the caller: a session keyring of its own holding the key, then the helper
          const inSession: Launcher = {
            ...launcher,
            command: [...launcher.command.slice(0, -1), '/usr/bin/keyctl', 'session', '-', '/bin/sh', '-c',
              `keyctl add user ${description} s3cret @s >/dev/null && keyctl search @s user ${description} >/dev/null && exec "$0"`,
              launcher.command.at(-1)!],
          };
          const result = await run(inSession, { tier, executable: fixtures['keyring.sh']!, argv: ['keyring', description] });
          expect(result.code, result.stderr).toBe(0);
          expect(report(result.stdout).key).toMatch(tier === 'none' ? /not available|not found/i : /not permitted/i);
        });

        it('ends a target at the timeout with SIGTERM, one that ignores it with SIGKILL after the grace: 124', async () => {
          const launcher = launcherFor(who);
          const quick = await run(launcher, { tier, executable: fixtures['sleeper.sh']!, argv: ['sleeper'], timeoutMs: 300, killAfterMs: 5000 });
          expect(quick.code, quick.stderr).toBe(124);
          expect(quick.stdout).toBe('ready\n');
          const stubborn = start(launcher, { tier, executable: fixtures['stubborn.sh']!, argv: ['stubborn'], timeoutMs: 300, killAfterMs: 300 });
          const result = await stubborn.done;
          expect(result.code, result.stderr).toBe(124);
          expect(result.stdout).toBe('ready\nignored-TERM\n');
        });

        it('relays output through real pipes: /dev/stderr reopens, a reader that leaves gives SIGPIPE (141)', async () => {
          const launcher = launcherFor(who);
          const relay = HELPER_FLAGS.relayStdout | HELPER_FLAGS.relayStderr;
          const reopened = await run(launcher, { tier, executable: fixtures['reopen.sh']!, argv: ['reopen'], flags: relay });
          expect(reopened.code, reopened.stderr).toBe(0);
          expect(reopened.stdout).toBe('done\n');
          expect(reopened.stderr).toBe('to-stderr\nx\n');
          // one pipe for both (relayOne): stderr's lines come out on fd 1, in the order written
          const one = HELPER_FLAGS.relayStdout | HELPER_FLAGS.relayOne;
          const joined = await run(launcher, { tier, executable: fixtures['reopen.sh']!, argv: ['reopen'], flags: one });
          expect(joined.code, joined.stderr).toBe(0);
          expect([joined.stdout, joined.stderr]).toEqual(['to-stderr\nx\ndone\n', '']);

          const endless = start(launcher, { tier, executable: fixtures['endless.sh']!, argv: ['endless'], flags: relay });
          await endless.output(/^line$/m);
          endless.child.stdout!.destroy();
          expect((await endless.done).code).toBe(141);
        });
      });
    }

    it('none: returns when the target exits, whatever a background child still holds open', async () => {
      const launcher = launcherFor(who);
      const started = Date.now();
      const running = start(launcher, { tier: 'none', executable: fixtures['background.sh']!, argv: ['background'], flags: HELPER_FLAGS.relayStdout | HELPER_FLAGS.relayStderr });
      const result = await running.done;
      expect(result.code).toBe(3);
      expect(result.stdout).toBe('started\n');
      expect(Date.now() - started, 'waited for the background sleep 20').toBeLessThan(15_000);
    });
  });
}

describe('requests the helper refuses, and programs it cannot run', () => {
  const valid = (): RunOptions => ({ tier: 'hardened', executable: '/bin/true', argv: ['true'] });
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const str = (s: string | Buffer) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
  /** "SVH3", tier, flags, timeout, kill-after */
  const header = (tier: number, flags = 0) => Buffer.concat([Buffer.from('SVH3'), u32(tier), u32(flags), u32(0), u32(0)]);
  /** argv ["true"], no env or files; `rest` goes on with the hidden paths */
  const body = (...rest: Buffer[]) => Buffer.concat([u32(1), str('true'), u32(0), u32(0), ...rest]);
  const ONE_PIPE = HELPER_FLAGS.relayOne | HELPER_FLAGS.relayStdout;

  it.each([
    ['a wrong magic', Buffer.from('SVH2\0\0\0\0'), /SVH3/],
    ['an empty request', Buffer.alloc(0), /SVH3/],
    ['an unknown tier', header(3), /unknown tier 3/],
    ['unknown flags', header(0, 512), /unknown flags 0x200/],
    ['a network mode outside lockdown', header(1, HELPER_FLAGS.netHost), /a network mode was asked for in tier hardened/],
    ['both network modes', header(2, HELPER_FLAGS.netHost | HELPER_FLAGS.netEgress), /both the host's and an egress allow-list/],
    ['an egress request without its network section', header(2, HELPER_FLAGS.netEgress), /ends early/],
    ['a ruleset over 64 KiB', Buffer.concat([header(2, HELPER_FLAGS.netEgress), u32(64 * 1024 + 1)]), /the ruleset is longer than 65536/],
    ['a relative nft path', Buffer.concat([header(2, HELPER_FLAGS.netEgress), str('table inet x {}'), str('nft')]), /nft's path "nft" is not absolute/],
    ['a file at a path outside lockdown', Buffer.concat([header(1), u32(1), str('true'), u32(0), u32(1), str('DB'), str('/run/db'), str('v')]), /needs lockdown's own root/],
    ['a file path with ".."', Buffer.concat([header(2), u32(1), str('true'), u32(0), u32(1), str('DB'), str('/run/../db'), str('v')]), /"\.\." component/],
    ['a stream on a pty without a pty', header(0, HELPER_FLAGS.ptyStdout), /without a pty/],
    ['stdout both the pty and a relay', header(0, HELPER_FLAGS.pty | HELPER_FLAGS.ptyStdout | HELPER_FLAGS.relayStdout), /both the pty and a relayed pipe/],
    ['one relayed pipe without stdout relayed', header(0, HELPER_FLAGS.relayOne), /one relayed pipe for stdout and stderr needs/],
    ['one relayed pipe and stderr relayed too', header(0, ONE_PIPE | HELPER_FLAGS.relayStderr), /one relayed pipe/],
    ['one relayed pipe and stderr on the pty', header(0, ONE_PIPE | HELPER_FLAGS.pty | HELPER_FLAGS.ptyStderr), /one relayed pipe/],
    ['a header that ends early', Buffer.concat([Buffer.from('SVH3'), u32(1), u32(0)]), /ends early/],
    ['a request that ends early', Buffer.concat([header(1), u32(2), str('a')]), /ends early/],
    ['a NUL in an argument', Buffer.concat([header(0), u32(1), str('tr\0ue'), u32(0), u32(0), u32(0), u32(0), str('')]), /NUL/],
    ['a NUL in an environment string', Buffer.concat([header(0), u32(1), str('true'), u32(1), str('A=\0'), u32(0), u32(0), u32(0), str('')]), /NUL/],
    ['an empty argv', Buffer.concat([header(0), u32(0), u32(0), u32(0), u32(0), u32(0), str('')]), /argv/],
    ['4097 arguments', Buffer.concat([header(0), u32(4097)]), /4097 arguments/],
    ['257 files', Buffer.concat([header(0), u32(1), str('true'), u32(0), u32(257)]), /257 files/],
    ['a file name with a slash', Buffer.concat([header(2), u32(1), str('true'), u32(0), u32(1), str('../x'), str(''), str('v'), u32(0)]), /'\/'/],
    ['a file value over 1 MiB', Buffer.concat([header(0), u32(1), str('true'), u32(0), u32(1), str('BIG'), str(''), u32((1 << 20) + 1)]), /longer than 1048576/],
    ['17 hidden directories', Buffer.concat([header(2), u32(1), str('true'), u32(0), u32(0), u32(17)]), /17 hidden/],
    ['a relative hidden directory', Buffer.concat([header(2), body(u32(1), str('tmp'))]), /absolute/],
    ['a hidden path with ".."', Buffer.concat([header(2), body(u32(1), str('/tmp/../etc'))]), /"\.\." component/],
    ['65 mount entries', Buffer.concat([header(2), body(u32(0), u32(65))]), /65 mount entries/],
    ['an unknown mount kind', Buffer.concat([header(2), body(u32(0), u32(1), u32(9), str('/x'), str(''))]), /unknown mount kind 9/],
    ['a relative mount path', Buffer.concat([header(2), body(u32(0), u32(1), u32(1), str('usr'), str(''))]), /not an absolute path/],
    ['a mount over /', Buffer.concat([header(2), body(u32(0), u32(1), u32(2), str('/'), str(''))]), /cannot replace \//],
    ['a symlink without a target', Buffer.concat([header(2), body(u32(0), u32(1), u32(4), str('/bin'), str(''))]), /only a symlink entry has a target/],
    ['bytes after the end', Buffer.concat([header(0), body(u32(0), u32(0), str(''), Buffer.from('x'))]), /after the end/],
  ])('refuses %s: 125 and one line', async (_what, payload, reason) => {
    const result = await run(rootLauncher, { ...valid(), payload });
    expectOneLineError(result, 125, 'read_request');
    expect(result.stderr).toMatch(reason);
    expect(result.info).toBeUndefined();
  });

  it('refuses a request over 64 MiB', async () => {
    const payload = Buffer.alloc(64 * 1024 * 1024 + 1);
    Buffer.from('SVH3').copy(payload);
    const result = await run(rootLauncher, { ...valid(), payload });
    expectOneLineError(result, 125, 'read_request');
    expect(result.stderr).toMatch(/larger than 67108864/);
  });

  it('lockdown puts a file at the path asked for on its own root, and refuses one in a directory of the host: 125', async () => {
    const placed = await run(rootLauncher, {
      tier: 'lockdown', executable: fixtures['files.sh']!, argv: ['files', 'TOKEN'], files: [{ name: 'TOKEN', value: 'v', path: '/run/secrets/token' }],
    });
    expect(placed.code, placed.stderr).toBe(0);
    expect(report(placed.stdout)).toMatchObject({ 'TOKEN.path': '/run/secrets/token', 'TOKEN.mode': '400', 'TOKEN.write': 'refused' });
    // the working directory is bound from the host (read-write): the plaintext would reach its disk
    const leak = path.join(work, `leak-${process.pid}`);
    const refused = await run(rootLauncher, {
      tier: 'lockdown', executable: fixtures['files.sh']!, argv: ['files', 'TOKEN'], files: [{ name: 'TOKEN', value: 'v', path: leak }],
    });
    expectOneLineError(refused, 125, 'deliver_files');
    expect(refused.stderr).toMatch(/a secret file can only be made in the sandbox's own directories, not in one of the host's/);
    expect(fs.existsSync(leak)).toBe(false);
  });

  it('lockdown refuses to hide a path that is neither a directory nor a regular file: 125 at setup_mounts', async () => {
    const fifo = path.join(outsideTmp, `a-fifo-${process.pid}`);
    fs.rmSync(fifo, { force: true });
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const result = await run(rootLauncher, {
      tier: 'lockdown', executable: '/bin/true', argv: ['true'], hide: [fifo], mounts: [{ kind: 'readWrite', path: outsideTmp }],
    });
    fs.rmSync(fifo, { force: true });
    expectOneLineError(result, 125, 'setup_mounts');
    expect(result.stderr).toMatch(/neither a directory nor a regular file/);
  });

  it('126 for a file that is not a program, 127 for a missing interpreter, each with one line', async () => {
    for (const tier of TIERS) {
      expectOneLineError(await run(rootLauncher, { tier, executable: fixtures['not-a-program']!, argv: ['prog'] }), 126, 'exec_pinned');
      const missing = await run(rootLauncher, { tier, executable: fixtures['no-interpreter.sh']!, argv: ['script'] });
      expectOneLineError(missing, 127, 'exec_pinned');
      expect(missing.stderr).toMatch(/interpreter/);
    }
  });

  it('runs without an info pipe (fd 5 closed)', async () => {
    for (const tier of TIERS) {
      const result = await run(rootLauncher, { tier, executable: fixtures['exit42.sh']!, argv: ['x'], noInfo: true });
      expect(result.code, result.stderr).toBe(42);
      expect(result.info).toBeUndefined();
    }
  });
});

describe.runIf(IS_ROOT)('without user namespaces (user.max_user_namespaces = 0 in a user namespace of the test)', () => {
  it('root falls back to namespaces without a user namespace, and the target still has no capabilities', async () => {
    // root of a fresh user namespace, where creating another one fails with ENOSPC
    const launcher: Launcher = {
      label: 'root without userns', uid: 0, gid: 0,
      command: ['/usr/bin/unshare', '-Ur', '--', '/bin/sh', '-c', 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0"', BUILT_HELPER],
    };
    const own = ownNamespaces();
    for (const tier of ['hardened', 'lockdown'] as const) {
      const result = await run(launcher, { tier, executable: fixtures['report.sh']!, argv: ['report'], env: [PATH_ENV, 'API_KEY=fallback'] });
      expect(result.code, result.stderr).toBe(0);
      const seen = report(result.stdout);
      expect(result.info?.userns).toBe(false);
      expect(result.info?.tier).toBe(tier);
      // the user namespace is the one unshare -Ur made, not one of the helper's
      expect(result.info?.ns.user).toBe(Number(seen['ns.user']));
      for (const ns of ['pid', 'ipc', 'mnt', 'net', 'uts', 'cgroup'] as const) {
        expect(Number(seen[`ns.${ns}`]) !== own[ns], ns).toBe((TIER_POLICY[tier].namespaces as readonly string[]).includes(ns));
        expect(result.info?.ns[ns]).toBe(Number(seen[`ns.${ns}`]));
      }
      expect(seen.pid).toBe('2');
      expect(seen.uid).toBe('0');
      for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(seen[set], set).toBe('0000000000000000');
      expect(seen.NoNewPrivs).toBe('1');
      expect(seen.API_KEY).toBe('fallback');

      const files = await run(launcher, { tier, executable: fixtures['files.sh']!, argv: ['files', 'TOKEN'], files: [{ name: 'TOKEN', value: 'v' }] });
      expect(files.code, files.stderr).toBe(0);
      expect(report(files.stdout)['TOKEN.write']).toBe('refused');
      if (tier === 'lockdown') expect(report(files.stdout)['TOKEN.mode']).toBe('400');
    }
    const lockdownProcs = report((await run(launcher, { tier: 'lockdown', executable: fixtures['report.sh']!, argv: ['report'] })).stdout).procpids!;
    expect(lockdownProcs.trim().split(' ').map(Number).every((p) => p < 50), lockdownProcs).toBe(true);
  });

  it('a non-root user gets 125 and one line naming user.max_user_namespaces; tier none still runs', async () => {
    // As facts.md describes: a user namespace mapping 0-65535 (written by us, root, from outside),
    // max_user_namespaces set to 0 by its root, then the helper as the unprivileged user.
    const helper = userLauncher.command[userLauncher.command.length - 1]!;
    const ownUserns = fs.readlinkSync('/proc/self/ns/user');
    const launcher: Launcher = {
      label: 'user without userns', uid: user.uid, gid: user.gid,
      command: ['/usr/bin/unshare', '-U', '--', fixtures['no-userns.sh']!, 'wait', String(user.uid), String(user.gid), helper],
      ownFds: 1,
      async prepare(child, [go]) {
        const pid = child.pid!;
        await until(() => {
          try {
            return fs.readlinkSync(`/proc/${pid}/ns/user`) !== ownUserns;
          } catch {
            return false;
          }
        }, 'unshare -U');
        fs.writeFileSync(`/proc/${pid}/uid_map`, '0 0 65536\n');
        fs.writeFileSync(`/proc/${pid}/gid_map`, '0 0 65536\n');
        go!.write('\n');
      },
    };
    for (const tier of ['hardened', 'lockdown'] as const) {
      const result = await run(launcher, { tier, executable: fixtures['report.sh']!, argv: ['report'] });
      expectOneLineError(result, 125, 'setup_namespaces');
      expect(result.stderr).toMatch(/user\.max_user_namespaces is 0/);
      expect(result.stderr).toMatch(/sysctl -w user\.max_user_namespaces=/);
      expect(result.info).toBeUndefined();
    }
    const none = await run(launcher, { tier: 'none', executable: fixtures['report.sh']!, argv: ['report'] });
    expect(none.code, none.stderr).toBe(0);
    expect(report(none.stdout).uid).toBe(String(user.uid));
    expect(none.info?.userns).toBe(false);
  });
});

describe('privilege and outer sandboxes', () => {
  it.runIf(IS_ROOT)('refuses to run set-user-ID (it would run targets as its owner): 125 and one line', async () => {
    // not under /tmp, which may be mounted nosuid, and then the bit would not take effect
    const installed = path.join(outsideTmp, 'spawn_helper-setuid');
    fs.copyFileSync(BUILT_HELPER, installed);
    fs.chmodSync(installed, 0o4755);
    const launcher: Launcher = { ...userLauncher, command: [...userLauncher.command.slice(0, -1), installed] };
    const result = await run(launcher, { tier: 'none', executable: fixtures['report.sh']!, argv: ['report'] });
    fs.rmSync(installed, { force: true });
    expectOneLineError(result, 125, 'refuse_set_id');
    expect(result.stderr).toMatch(/chmod u-s,g-s/);
  });

  for (const who of launchers) {
    it(`lockdown inside a sandbox that masks /proc (run by ${who}): EPERM and why, not a misleading errno`, async () => {
      const launcher = launcherFor(who);
      // an outer sandbox: a mount namespace whose /proc has a mount over /proc/sys, as container
      // runtimes and bwrap leave it; for the unprivileged user, in a user namespace of its own
      const helper = launcher.command.at(-1)!;
      const outer = IS_ROOT && launcher.uid === 0
        ? ['/usr/bin/unshare', '-m', '--propagation', 'private', '--', '/bin/sh', '-c', 'mount -t tmpfs none /proc/sys && exec "$0"', helper]
        : [...launcher.command.slice(0, -1), '/usr/bin/unshare', '-Urm', '--', '/bin/sh', '-c', 'mount -t tmpfs none /proc/sys && exec "$0"', helper];
      const result = await run({ ...launcher, command: outer }, { tier: 'lockdown', executable: '/bin/true', argv: ['true'] });
      expectOneLineError(result, 125, 'setup_proc');
      expect(result.stderr).toMatch(/masks parts of the host's \/proc.*: Operation not permitted\n$/);
      // hardened needs no new /proc, and still runs there
      expect((await run({ ...launcher, command: outer }, { tier: 'hardened', executable: '/bin/true', argv: ['true'] })).code).toBe(0);
    });
  }
});
