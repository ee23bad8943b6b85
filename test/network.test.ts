/**
 * The grant carries the run: lockdown's network per grant (none, the host's, or an egress
 * allow-list through slirp4netns with an nftables ruleset in the sandbox's own namespace), the tier
 * a run gets without flags, secret files at a path the grant chose, and exec flags that may only
 * narrow. Through the real CLI, the real helper and real namespaces, as root and as an
 * unprivileged user. The servers are the test's own: on the host's 127.0.0.1 and, as root, in a
 * network namespace the test creates (reached over a veth pair); never an outside address.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type RunResult, type Workspace } from './helpers/cli.js';
import { greeter, makeNetns, type TestNetns, withHostsFile } from './helpers/netns.js';
import { ptyRun } from './helpers/pty.js';
import { IS_ROOT, RUNNERS, runnerAccount } from './helpers/users.js';

const SECRET = 'network-secret-value-7d2e';

/**
 * Connects to each HOST:PORT argument and prints HOST:PORT=<greeting> or =refused. bash's
 * /dev/tcp waits out a dropped packet for minutes, so a run that ends within its timeout shows that
 * what was not allowed was refused at once.
 */
const PROBE = `#!/bin/bash
for target in "$@"; do
  if exec 3<>"/dev/tcp/\${target%:*}/\${target##*:}"; then read -r -t 10 line <&3; echo "$target=\${line:-empty}"; exec 3<&-
  else echo "$target=refused"; fi
done 2>/dev/null
`;

/** HOST:PORT=result lines. */
function outcomes(stdout: string): Record<string, string> {
  return Object.fromEntries(stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.lastIndexOf('=')), l.slice(l.lastIndexOf('=') + 1)]));
}

let netns: TestNetns | undefined;
const servers: ChildProcess[] = [];
/** Ports of the greeters: `host` and `hostOther` on the host's 127.0.0.1, `ns` and `nsOther` on every address of the namespace. */
const port = { host: 0, hostOther: 0, ns: 0, nsOther: 0 };
/** The namespace's addresses; as another user than root they are only listed, never reached. */
let NETNS = { listed: '10.231.7.2', other: '10.231.7.3' };

beforeAll(async () => {
  for (const [key, name] of [['host', 'host'], ['hostOther', 'host-other']] as const) {
    const started = await greeter('127.0.0.1', name);
    servers.push(started.child);
    port[key] = started.port;
  }
  if (IS_ROOT) {
    netns = makeNetns('n', 0);
    NETNS = { listed: netns.listed, other: netns.other };
    for (const [key, name] of [['ns', 'netns'], ['nsOther', 'netns-other']] as const) {
      const started = await greeter('0.0.0.0', name, { netns: netns.name });
      servers.push(started.child);
      port[key] = started.port;
    }
  }
}, 30_000);

afterAll(() => {
  for (const server of servers) server.kill('SIGKILL');
  netns?.remove();
});

for (const runner of RUNNERS) {
  describe(`a grant carries its run, run by ${runner}`, () => {
    let ws: Workspace;
    const account = () => runnerAccount(runner);
    const script = (name: string, body: string) => {
      const file = path.join(ws.project, name);
      fs.writeFileSync(file, body, { mode: 0o755 });
      const who = account();
      if (IS_ROOT && who !== undefined) fs.chownSync(file, who.uid, who.gid);
      return file;
    };
    const allow = (...args: string[]) => {
      const granted = ws.run(['allow', ...args]);
      expect(granted.status, granted.stderr).toBe(0);
    };
    const exec = (args: string[], env: NodeJS.ProcessEnv = {}): RunResult => ws.run(['exec', '--no-mask', ...args], { timeout: 30_000, env });

    const fresh = () => {
      ws = makeWorkspace({ account: account(), parent: '/var/tmp' });
      initWithToken(ws);
      put(ws, 'DB', SECRET);
    };
    afterEach(() => ws?.cleanup());

    it.skipIf(!IS_ROOT)('an egress grant reaches what it lists, at the address it was configured with, and nothing else, refused at once', () => {
      fresh();
      const probe = script('probe.sh', PROBE);
      allow('DB', '--to', probe, '--net', `${NETNS.listed}:${port.ns},127.0.0.1:${port.host}`);
      const targets = [
        `${NETNS.listed}:${port.ns}`, `${NETNS.other}:${port.ns}`, `${NETNS.listed}:${port.nsOther}`, `127.0.0.1:${port.host}`,
        `localhost:${port.host}`, `127.0.0.1:${port.hostOther}`, `10.0.2.2:${port.hostOther}`, '10.0.2.3:53',
      ];
      // the control: from the host, every server is there
      const control = spawnSync('bash', [probe, ...targets.slice(0, 7)], { encoding: 'utf8', timeout: 30_000 });
      expect(outcomes(control.stdout)).toMatchObject({
        [`${NETNS.other}:${port.ns}`]: 'netns', [`${NETNS.listed}:${port.nsOther}`]: 'netns-other', [`127.0.0.1:${port.hostOther}`]: 'host-other',
      });

      const run = exec(['--info', '--', probe, ...targets]);
      expect(run.status, run.stderr).toBe(0);
      expect(run.signal).toBeNull();
      expect(outcomes(run.stdout)).toEqual({
        [`${NETNS.listed}:${port.ns}`]: 'netns',
        [`${NETNS.other}:${port.ns}`]: 'refused',
        [`${NETNS.listed}:${port.nsOther}`]: 'refused',
        [`127.0.0.1:${port.host}`]: 'host',
        [`localhost:${port.host}`]: 'host',
        [`127.0.0.1:${port.hostOther}`]: 'refused',
        [`10.0.2.2:${port.hostOther}`]: 'refused',
        '10.0.2.3:53': 'refused',
      });
      // the run went as the grant says, without a flag, and --info says what the network was
      const info = JSON.parse(/vault: info (.*)/.exec(run.stderr)![1]!) as { tier: string; network: unknown };
      expect(info.tier).toBe('lockdown');
      expect(info.network).toEqual({
        mode: 'egress',
        allow: [
          { to: `${NETNS.listed}:${port.ns}`, addresses: [NETNS.listed] },
          { to: `127.0.0.1:${port.host}`, addresses: ['127.0.0.1'] },
        ],
      });
      const audit = ws.run(['audit', '--runs']);
      expect(audit.stdout).toContain(`"net":"${NETNS.listed}:${port.ns},127.0.0.1:${port.host}"`);
    });

    it.skipIf(!IS_ROOT)('a listed name resolves inside the sandbox to the address vault resolved at start; a name that does not resolve refuses the run', () => {
      fresh();
      const probe = script('probe.sh', PROBE);
      // a name only this mount namespace's /etc/hosts knows, as a company's DNS would
      const hosts = path.join(ws.root, 'hosts');
      fs.writeFileSync(hosts, `${fs.readFileSync('/etc/hosts', 'utf8')}\n${NETNS.listed} db.sealvault.test\n`, { mode: 0o644 });
      const inMountNamespace = (args: string[]) => {
        const [program, ...rest] = withHostsFile(hosts, ws.command(args));
        const result = spawnSync(program!, rest, { env: ws.env, cwd: ws.project, encoding: 'utf8', timeout: 30_000, input: '' });
        return { status: result.status, stdout: result.stdout, stderr: result.stderr };
      };
      const granted = inMountNamespace(['allow', 'DB', '--to', probe, '--net', `db.sealvault.test:${port.ns},nowhere.sealvault.test:${port.ns}`]);
      expect(granted.status, granted.stderr).toBe(0);
      fs.appendFileSync(hosts, `${NETNS.other} nowhere.sealvault.test\n`);
      const run = inMountNamespace(['exec', '--no-mask', '--info', '--', probe, `db.sealvault.test:${port.ns}`, `nowhere.sealvault.test:${port.nsOther}`]);
      expect(run.status, run.stderr).toBe(0);
      expect(outcomes(run.stdout)).toEqual({ [`db.sealvault.test:${port.ns}`]: 'netns', [`nowhere.sealvault.test:${port.nsOther}`]: 'refused' });
      expect(run.stderr).toContain(`{"to":"db.sealvault.test:${port.ns}","addresses":["${NETNS.listed}"]}`);

      // outside that namespace the names do not resolve: refused before anything is released
      const before = ws.run(['audit', '--runs']).stdout;
      const unresolved = exec(['--', probe, `db.sealvault.test:${port.ns}`]);
      expect(unresolved.status).toBe(125);
      expect(unresolved.stdout).toBe('');
      expect(unresolved.stderr).toMatch(/^vault: the grant's network lists db\.sealvault\.test:\d+, and db\.sealvault\.test does not resolve here \(\w+\), so nothing ran\n$/);
      expect(ws.run(['audit', '--runs']).stdout).toBe(before);
    });

    it('without a listing, the host\'s loopback is unreachable: neither at 127.0.0.1 nor through the stack\'s gateway', () => {
      fresh();
      const probe = script('probe.sh', PROBE);
      // listed: only an address of the test's namespace, never contacted here
      allow('DB', '--to', probe, '--net', `${NETNS.listed}:9`);
      const egress = exec(['--', probe, `127.0.0.1:${port.host}`, `10.0.2.2:${port.host}`, `localhost:${port.host}`]);
      expect(egress.status, egress.stderr).toBe(0);
      expect(outcomes(egress.stdout)).toEqual({ [`127.0.0.1:${port.host}`]: 'refused', [`10.0.2.2:${port.host}`]: 'refused', [`localhost:${port.host}`]: 'refused' });

      // a lockdown grant without --net: loopback only, as before grants carried a network
      const quiet = script('quiet.sh', PROBE);
      allow('DB', '--to', quiet, '--min-tier', 'lockdown');
      const none = exec(['--info', '--', quiet, `127.0.0.1:${port.host}`]);
      expect(none.status, none.stderr).toBe(0);
      expect(outcomes(none.stdout)).toEqual({ [`127.0.0.1:${port.host}`]: 'refused' });
      expect(none.stderr).toContain('"network":{"mode":"none"}');
    });

    it('--net host reaches the host\'s listener, in lockdown\'s filesystem, in the host\'s network namespace', () => {
      fresh();
      const probe = script('probe.sh', `${PROBE}echo "home=$(ls -A "$HOME" | wc -l)"\n`);
      fs.writeFileSync(path.join(ws.env.HOME!, '.profile'), 'x\n');
      allow('DB', '--to', probe, '--net', 'host');
      const run = exec(['--info', '--', probe, `127.0.0.1:${port.host}`]);
      expect(run.status, run.stderr).toBe(0);
      expect(outcomes(run.stdout)).toEqual({ [`127.0.0.1:${port.host}`]: 'host', home: '0' });
      const info = JSON.parse(/vault: info (.*)/.exec(run.stderr)![1]!) as { tier: string; ns: Record<string, number>; network: unknown };
      expect(info.tier).toBe('lockdown');
      expect(info.network).toEqual({ mode: 'host' });
      expect(info.ns.net).toBe(fs.statSync('/proc/self/ns/net').ino);
      expect(info.ns.mnt).not.toBe(fs.statSync('/proc/self/ns/mnt').ino);
    });

    it('exec flags only narrow: a wider network or a lower tier is refused, naming what the grant allows', () => {
      fresh();
      const probe = script('probe.sh', PROBE);
      allow('DB', '--to', probe, '--net', `127.0.0.1:${port.host}`);
      const wider = [
        [['--net', 'host'], /^vault: --net host is more than the grant of DB to \S+probe\.sh allows \(127\.0\.0\.1:\d+\); an exec flag may only narrow a grant: change the grant with `vault allow … --net`\n$/],
        [['--net', `127.0.0.1:${port.hostOther}`], /is more than the grant of DB to \S+ allows \(127\.0\.0\.1:\d+\)/],
        [['--tier', 'hardened'], /^vault: DB is not granted to \S+probe\.sh \(sha256 [0-9a-f]{64}\): its grant needs tier lockdown or stronger; run with --tier lockdown\n$/],
      ] as const;
      for (const [flags, message] of wider) {
        const refused = exec([...flags, '--', probe, `127.0.0.1:${port.host}`]);
        expect(refused.status, flags.join(' ')).toBe(125);
        expect(refused.stdout).toBe('');
        expect(refused.stderr).toMatch(message);
      }
      const mixed = exec(['--tier', 'hardened', '--net', 'none', '--', probe]);
      expect(mixed.status).toBe(2);
      expect(mixed.stderr).toMatch(/^vault: --net describes lockdown's network, and --tier hardened shares the host's/);
      for (const [value, why] of [
        ['example.com', /^vault: --net example\.com: each destination is HOST:PORT/],
        ['127.0.0.1:1,', /an empty destination \(a stray comma\?\)/],
        ['none,127.0.0.1:1', /none and host stand alone, not in a list/],
        ['127.0.0.1:1 ,127.0.0.1:2', /a destination holds white space/],
        ['[::1]:80', /IPv6 destinations are not supported/],
        ['127.0.0.2:80', /of the host's loopback only 127\.0\.0\.1 can be reached/],
        ['10.0.2.2:22', /10\.0\.2\.0\/24 is the sandbox's own network/],
        ['0x7f000001:80', /is neither an IPv4 address nor a DNS name/],
      ] as const) {
        const bad = exec(['--net', value, '--', probe]);
        expect(bad.status, value).toBe(2);
        expect(bad.stderr).toMatch(why);
        expect(bad.stderr.split('\n')).toHaveLength(2);
      }

      // localhost and 127.0.0.1 are one destination
      const same127 = exec(['--net', `localhost:${port.host}`, '--', probe, `localhost:${port.host}`]);
      expect(outcomes(same127.stdout)).toEqual({ [`localhost:${port.host}`]: 'host' });
      const narrower = exec(['--net', 'none', '--', probe, `127.0.0.1:${port.host}`]);
      expect(narrower.status, narrower.stderr).toBe(0);
      expect(outcomes(narrower.stdout)).toEqual({ [`127.0.0.1:${port.host}`]: 'refused' });
      const same = exec(['--net', `127.0.0.1:${port.host}`, '--', probe, `127.0.0.1:${port.host}`]);
      expect(outcomes(same.stdout)).toEqual({ [`127.0.0.1:${port.host}`]: 'host' });
    });

    it('the target cannot loosen its rules: no nft, no sysctl, no new namespace', () => {
      fresh();
      const loosen = script('loosen.sh', `#!/bin/bash
/usr/sbin/nft flush ruleset >/dev/null 2>&1 && echo nft=flushed || echo nft=refused
(echo 0 > /proc/sys/net/ipv4/conf/all/route_localnet) 2>/dev/null && echo sysctl=written || echo sysctl=refused
unshare -rn true 2>/dev/null && echo unshare=done || echo unshare=refused
${PROBE.split('\n').slice(1).join('\n')}`);
      allow('DB', '--to', loosen, '--net', `127.0.0.1:${port.host}`);
      const run = exec(['--', loosen, `127.0.0.1:${port.hostOther}`, `127.0.0.1:${port.host}`]);
      expect(run.status, run.stderr).toBe(0);
      expect(outcomes(run.stdout)).toEqual({
        nft: 'refused', sysctl: 'refused', unshare: 'refused', [`127.0.0.1:${port.hostOther}`]: 'refused', [`127.0.0.1:${port.host}`]: 'host',
      });
    });

    it('--file NAME=PATH puts the secret at that path in the sandbox\'s own root, never in a directory of the host', () => {
      fresh();
      const show = script('show.sh', '#!/bin/sh\necho "file=$DB_FILE"\necho "value=$(cat "$DB_FILE")"\necho "mode=$(stat -c %a "$DB_FILE")"\necho "env=${DB:-unset}"\n');
      allow('DB', '--to', show, '--file', 'DB=/run/secrets/db');
      const run = exec(['--', show]);
      expect(run.status, run.stderr).toBe(0);
      expect(outcomes(run.stdout)).toEqual({ file: '/run/secrets/db', value: SECRET, mode: '400', env: 'unset' });
      expect(ws.run(['policy']).stdout).toMatch(/DB\s+lockdown\s+none\s+file:\/run\/secrets\/db\s/);

      // the grant's path is checked when it is made, and again by the helper where the host shows through
      const system = ws.run(['allow', 'DB', '--to', show, '--file', 'DB=/etc/db']);
      expect(system.status).toBe(2);
      expect(system.stderr).toMatch(/^vault: --file DB=\/etc\/db: the path must be absolute and normal, and not in \/etc/);
      const lower = ws.run(['allow', 'DB', '--to', show, '--file', 'DB=/run/db', '--min-tier', 'hardened']);
      expect(lower.status).toBe(2);
      expect(lower.stderr).toMatch(/^vault: --file DB=\/run\/db describes how lockdown runs the program, and --min-tier hardened lets it run outside lockdown/);
      const inProject = path.join(ws.project, 'db.txt');
      allow('DB', '--to', show, '--file', `DB=${inProject}`);
      const refused = exec(['--', show]);
      expect(refused.status).toBe(125);
      expect(refused.stderr).toMatch(/^vault: the grant puts DB at \S+db\.txt, inside the working directory \S+, which is the host's own/);
      expect(fs.existsSync(inProject)).toBe(false);
      // nor under a path the grant shows from the host (the helper's own check: test/spawn-helper.test.ts)
      const shown = path.join(ws.root, 'shown');
      fs.mkdirSync(shown);
      const underRo = ws.run(['allow', 'DB', '--to', show, '--ro', shown, '--file', `DB=${shown}/db.txt`]);
      expect(underRo.status).toBe(2);
      expect(underRo.stderr).toMatch(/the path must be absolute and normal, and not in \S+shown:/);
    });

    it('a file\'s NAME_FILE is the helper\'s alone: a caller\'s variable of that name never reaches the target, and a grant that passes one is refused', () => {
      fresh();
      put(ws, 'LC_TOKEN', SECRET);
      // LC_* passes from the caller by default; a program that reads the first of two entries would open the caller's file
      // what the kernel handed the program: every entry, duplicates included
      const show = script('show.py', [
        '#!/usr/bin/python3',
        'import os',
        'entries = open("/proc/self/environ", "rb").read().split(b"\\0")',
        'print("count=%d" % sum(1 for e in entries if e.startswith(b"LC_TOKEN_FILE=")))',
        'print("plain=%d" % sum(1 for e in entries if e.startswith(b"LC_TOKEN=")))',
        'print("file=" + os.environ["LC_TOKEN_FILE"])',
        '',
      ].join('\n'));
      allow('LC_TOKEN', '--to', show, '--file', 'LC_TOKEN=/run/secrets/token');
      const run = exec(['--', show], { LC_TOKEN_FILE: path.join(ws.project, 'callers-own'), LC_TOKEN: 'callers-value' });
      expect(run.status, run.stderr).toBe(0);
      expect(outcomes(run.stdout)).toEqual({ count: '1', plain: '0', file: '/run/secrets/token' });
      const passing = ws.run(['allow', 'DB', '--to', show, '--pass-env', 'DB_*', '--file', 'DB=/run/secrets/db']);
      expect(passing.status).toBe(11);
      expect(passing.stderr).toBe('vault: DB goes as a file whose path would be in DB_FILE, which is already a variable its grant passes from the caller (--pass-env DB_*); deliver one of them another way\n');
    });

    it('with the host\'s /tmp as working directory, lockdown makes no secret file, nor its directory, in it', () => {
      fresh();
      // run from /tmp itself: lockdown binds it over the sandbox's own /tmp
      const show = script('show.sh', '#!/bin/sh\necho "file=$DB_FILE"\n');
      allow('DB', '--to', show, '--file', 'DB');
      const before = fs.existsSync('/tmp/.vault-secrets');
      const run = ws.run(['exec', '--tier', 'lockdown', '--', show], { cwd: '/tmp', timeout: 30_000 });
      expect(run.status).toBe(125);
      expect(run.stderr).toMatch(/^vault: deliver_files: \/tmp is the host's \(the working directory\?\): a secret file can only be made in the sandbox's own directories/);
      expect(fs.existsSync('/tmp/.vault-secrets')).toBe(before);
    });

    it('a file whose NAME_FILE variable is itself a released secret is refused, at the grant and at exec', () => {
      fresh();
      put(ws, 'DB_FILE', 'db-file-secret-value-0001');
      const show = script('show.sh', '#!/bin/sh\necho "db_file=$DB_FILE"\n');
      const atGrant = ws.run(['allow', 'DB', 'DB_FILE', '--to', show, '--file', 'DB']);
      expect(atGrant.status).toBe(11);
      expect(atGrant.stderr).toBe('vault: DB goes as a file whose path would be in DB_FILE, which is already the secret DB_FILE, released to the same run; deliver one of them another way\n');
      allow('DB', 'DB_FILE', '--to', show);
      const before = ws.run(['audit', '--runs']).stdout;
      const atExec = exec(['--file', 'DB', '--', show]);
      expect(atExec.status).toBe(125);
      expect(atExec.stdout).toBe('');
      expect(atExec.stderr).toMatch(/^vault: DB goes as a file whose path would be in DB_FILE/);
      // nothing was released, so nothing was audited
      expect(ws.run(['audit', '--runs']).stdout).toBe(before);
    });

    it.skipIf(!IS_ROOT)('fails closed: without slirp4netns an egress grant refuses to run, and vault doctor says so', () => {
      fresh();
      const probe = script('probe.sh', PROBE);
      allow('DB', '--to', probe, '--net', `127.0.0.1:${port.host}`);
      // the stack "uninstalled" in a mount namespace of the test's own: /dev/null over it
      const withoutStack = (args: string[]) => {
        const [program, ...rest] = ['unshare', '-m', 'sh', '-c', 'mount --bind /dev/null /usr/bin/slirp4netns && exec "$@"', 'sh', ...ws.command(args)];
        return spawnSync(program!, rest, { env: ws.env, cwd: ws.project, encoding: 'utf8', timeout: 30_000, input: '' });
      };
      const before = ws.run(['audit', '--runs']).stdout;
      const run = withoutStack(['exec', '--', probe, `127.0.0.1:${port.host}`]);
      expect(run.status).toBe(125);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/^vault: the grant allows the network only to 127\.0\.0\.1:\d+, and this host cannot give that: slirp4netns is not installed \(apt-get install slirp4netns\); `vault doctor` says more\n$/);
      expect(ws.run(['audit', '--runs']).stdout).toBe(before);
      const doctor = withoutStack(['doctor']);
      expect(doctor.stdout).toMatch(/^lockdown network --net HOST:PORT\S*: NOT available: slirp4netns is not installed/m);
      expect(doctor.stdout).toMatch(/^lockdown network --net host: available$/m);
      expect(doctor.stdout).toMatch(/^warning: grants with --net HOST:PORT refuse to run here \(fail closed\)/m);
    });

    it('a grant that masks masks on a terminal too, and refuses the caller\'s --no-mask', () => {
      fresh();
      const show = script('show.sh', '#!/bin/sh\necho "db=$DB"\n');
      allow('DB', '--to', show, '--mask');
      expect(ws.run(['policy']).stdout).toMatch(/DB\s+hardened\s+-\s+env\s+stars\s/);
      // a terminal, where vault exec leaves output alone unless asked: the grant asks
      const [program, ...rest] = ws.command(['exec', '--', show]);
      const onTerminal = ptyRun(ws, [program!, ...rest], []);
      expect(onTerminal.status, onTerminal.output).toBe(0);
      expect(onTerminal.output).toContain('db=***');
      expect(onTerminal.output).not.toContain(SECRET);
      const refused = ws.run(['exec', '--no-mask', '--', show]);
      expect(refused.status).toBe(125);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/^vault: --no-mask: the grant of DB to \S+show\.sh masks the program's output; an exec flag may only narrow a grant\n$/);
      const named = ws.run(['exec', '--mask=name', '--', show]);
      expect(named.stdout).toBe('db=<DB>\n');
    });

    it('the policy MAC covers a grant\'s network and files: editing them without the key is tampering', () => {
      fresh();
      const probe = script('probe.sh', PROBE);
      allow('DB', '--to', probe, '--net', `127.0.0.1:${port.host}`, '--file', 'DB=/run/secrets/db', '--mask');
      const file = path.join(ws.vaultDir, 'policy.json');
      const original = fs.readFileSync(file, 'utf8');
      const edits = [
        original.replace(/"net":\[[^\]]*\]/, '"net":"host"'), original.replace(/"file":\{[^}]*\}/, '"file":{}'), original.replace(/,"mask":"stars"/, ''),
      ];
      for (const edit of edits) {
        expect(edit).not.toBe(original);
        fs.writeFileSync(file, edit);
        const run = exec(['--', probe, `127.0.0.1:${port.host}`]);
        expect(run.status).toBe(125);
        expect(run.stderr).toMatch(/policy\.json fails its authentication check/);
      }
    });
  });
}

describe('an egress grant through the agent', () => {
  it('runs with the grant\'s network for a client that names no flag', () => {
    const ws = makeWorkspace({ parent: '/var/tmp' });
    try {
      initWithToken(ws);
      put(ws, 'DB', SECRET);
      const probe = path.join(ws.project, 'probe.sh');
      fs.writeFileSync(probe, PROBE, { mode: 0o755 });
      expect(ws.run(['allow', 'DB', '--to', probe, '--net', `127.0.0.1:${port.host}`]).status).toBe(0);
      ws.env.VAULT_AGENT_SOCK = path.join(ws.root, 'agent.sock');
      const started = ws.run(['agent', 'start']);
      expect(started.status, started.stderr).toBe(0);
      try {
        // no key of its own: only the agent can run it
        delete ws.env.VAULT_KEY;
        const run = ws.run(['exec', '--no-mask', '--', probe, `127.0.0.1:${port.host}`, `127.0.0.1:${port.hostOther}`], { timeout: 30_000 });
        expect(run.status, run.stderr).toBe(0);
        expect(outcomes(run.stdout)).toEqual({ [`127.0.0.1:${port.host}`]: 'host', [`127.0.0.1:${port.hostOther}`]: 'refused' });
        expect(ws.run(['audit', '--runs']).stdout).toMatch(/release .*"net":"127\.0\.0\.1:\d+".*"client"/);
      } finally {
        ws.run(['agent', 'stop']);
      }
    } finally {
      ws.cleanup();
    }
  });
});
