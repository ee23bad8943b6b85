/**
 * The side effects of an egress allow-list (network.ts is its policy): the listed names resolved
 * once, at start, by vault; the system's nft(8) and slirp4netns(1) found at fixed paths; and the
 * user-mode stack attached to a sandbox's network namespace while its helper waits (fd 7,
 * docs/helper-protocol.md, "Network").
 *
 * slirp4netns, not pasta: Debian 12's pasta (2023-03) cannot attach as root to a namespace it did
 * not make, and slirp4netns 1.2 works as root and unprivileged here (SECURITY.md, "Network").
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { isIPv4 } from 'node:net';
import type { Duplex } from 'node:stream';
import { VaultError } from '../vault/errors.js';
import {
  destinationText, type Destination, egressHosts, egressRuleset, isLoopback, type ResolvedDestination, STACK,
} from './network.js';

/** Where the system keeps them; never looked up in the caller's PATH, which would choose the stack. */
const SYSTEM_PROGRAMS = {
  slirp4netns: ['/usr/bin/slirp4netns', '/usr/sbin/slirp4netns'],
  nft: ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'],
} as const;

/**
 * The first of a program's system paths that is a regular file owned by root and writable by no
 * one else (what it runs decides what the sandbox can reach); undefined when there is none.
 */
export function systemProgram(name: keyof typeof SYSTEM_PROGRAMS): string | undefined {
  for (const candidate of SYSTEM_PROGRAMS[name]) {
    try {
      const real = fs.realpathSync(candidate);
      const stat = fs.statSync(real);
      if (stat.isFile() && stat.uid === 0 && (stat.mode & 0o022) === 0 && (stat.mode & 0o111) !== 0) return real;
    } catch {
      // not installed at this path
    }
  }
  return undefined;
}

/** Whether this user can open /dev/net/tun, which slirp4netns needs to make the sandbox's tap0. */
export function tunAccess(): string | undefined {
  try {
    fs.closeSync(fs.openSync('/dev/net/tun', fs.constants.O_RDWR));
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return `cannot open /dev/net/tun (${code}); it must be mode 0666 (as udev makes it)`;
  }
}

/** The stack's programs, found once, or why this host cannot give an egress allow-list. */
function egressStack(): { slirp4netnsPath: string; nftPath: string } | { missing: string } {
  const slirp4netnsPath = systemProgram('slirp4netns');
  if (slirp4netnsPath === undefined) return { missing: 'slirp4netns is not installed (apt-get install slirp4netns)' };
  const nftPath = systemProgram('nft');
  if (nftPath === undefined) return { missing: 'nft is not installed (apt-get install nftables)' };
  const closed = tunAccess();
  return closed !== undefined ? { missing: closed } : { slirp4netnsPath, nftPath };
}

/** Why this host cannot give an egress allow-list, or undefined when it can. */
export function egressUnavailable(): string | undefined {
  const stack = egressStack();
  return 'missing' in stack ? stack.missing : undefined;
}

/**
 * glibc's resolver reads these from the environment (resolv.conf(5), hostname(7)): a caller could
 * make a listed name resolve to a host of its choosing. vault has no other use for them.
 */
const RESOLVER_VARIABLES = ['HOSTALIASES', 'LOCALDOMAIN', 'RES_OPTIONS'];

async function addressesOf(d: Destination): Promise<string[]> {
  if (isLoopback(d.host)) return ['127.0.0.1'];
  if (isIPv4(d.host)) return [d.host];
  let found: { address: string }[];
  try {
    // loaded here: only a run with an egress allow-list resolves names (every exec loads this module);
    // by require, since the code-cached bundle of a direct exec has no import() (src/cli/code-cache.ts)
    const dns = createRequire(import.meta.url)('node:dns/promises') as typeof import('node:dns/promises');
    found = await dns.lookup(d.host, { family: 4, all: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    const why = `the grant's network lists ${destinationText(d)}, and ${d.host} does not resolve here (${code}), ` +
      'so nothing ran';
    throw new VaultError('refused', why, { cause: error });
  }
  const addresses = [...new Set(found.map((a) => a.address))].sort();
  const inside = addresses.find((a) => a.startsWith('127.') || a.startsWith('10.0.2.') || a === '0.0.0.0');
  if (inside !== undefined) {
    throw new VaultError(
      'refused',
      `the grant's network lists ${destinationText(d)}, and ${d.host} resolves to ${inside}, which inside the sandbox ` +
        `is not that host; list 127.0.0.1:${d.port} for the host's loopback`,
    );
  }
  return addresses;
}

/** How long all the listed names together may take to resolve. */
const RESOLVE_TIMEOUT_MS = 15_000;

/** What a sandbox with an egress allow-list gets, decided before it starts. */
export interface EgressPlan {
  destinations: ResolvedDestination[];
  /** The nftables ruleset the helper loads in the sandbox's network namespace. */
  ruleset: string;
  /** The sandbox's /etc/hosts: the listed names at the addresses allowed (the target has no DNS). */
  hosts: string;
  nftPath: string;
  slirp4netnsPath: string;
}

/** Resolves the listed names and finds the stack; refuses (fails closed) when the host cannot give it. */
export async function planEgress(allow: readonly Destination[]): Promise<EgressPlan> {
  const stack = egressStack();
  if ('missing' in stack) {
    const listed = allow.map(destinationText).join(', ');
    throw new VaultError(
      'refused',
      `the grant allows the network only to ${listed}, and this host cannot give that: ${stack.missing}; \`vault doctor\` says more`,
    );
  }
  for (const name of RESOLVER_VARIABLES) delete process.env[name];
  // all at once, under one deadline (a resolver that never answers must not hold the run, or an
  // agent's thread pool); the refusal names the first listed destination that failed
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new VaultError(
      'refused', `the grant's network names could not all be resolved within ${RESOLVE_TIMEOUT_MS / 1000} s, so nothing ran`,
    )), RESOLVE_TIMEOUT_MS);
  });
  const lookups = allow.map(async (d) => ({ ...d, addresses: await addressesOf(d) }));
  let settled: PromiseSettledResult<ResolvedDestination>[];
  try {
    settled = await Promise.race([Promise.allSettled(lookups), deadline]);
  } finally {
    clearTimeout(timer);
  }
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  const destinations = settled.map((r) => (r as PromiseFulfilledResult<ResolvedDestination>).value);
  return { destinations, ruleset: egressRuleset(destinations), hosts: egressHosts(destinations), ...stack };
}

/** How long slirp4netns may take to configure tap0 (it takes milliseconds). */
const READY_TIMEOUT_MS = 10_000;

/** A user-mode stack serving one sandbox; stop() ends it (it also ends when vault does). */
export interface Stack {
  stop(): void;
}

function sameNamespace(a: string, b: string): boolean {
  const x = fs.statSync(a);
  const y = fs.statSync(b);
  return x.ino === y.ino && x.dev === y.dev;
}

/**
 * slirp4netns' own confinement: its seccomp filter always; as root also --enable-sandbox, which
 * drops its capabilities and hides the filesystem. Unprivileged it holds no capability to drop, and
 * 1.2.0's sandbox fails there ("setegid(0)"), so it is not asked for.
 */
function sandboxFlags(): string[] {
  return process.getuid?.() === 0 ? ['--enable-sandbox', '--enable-seccomp'] : ['--enable-seccomp'];
}

/**
 * Attaches slirp4netns to the network namespace of process `pid` (the helper, which waits) and
 * resolves once it has configured tap0 (--ready-fd). The stack runs under its own seccomp filter
 * (sandboxFlags), without DNS (the target resolves only the listed names, from /etc/hosts),
 * and exits when its --exit-fd closes: at stop(), or when vault goes away.
 */
export async function attachStack(plan: EgressPlan, pid: number): Promise<Stack> {
  const own = sameNamespace(`/proc/${pid}/ns/user`, '/proc/self/ns/user');
  const userns = own ? [] : [`--userns-path=/proc/${pid}/ns/user`];
  const child: ChildProcess = spawn(
    plan.slirp4netnsPath,
    [
      '--configure', `--mtu=${STACK.mtu}`, '--disable-dns', ...sandboxFlags(), '--ready-fd=3', '--exit-fd=4',
      ...userns, '--netns-type=path', `/proc/${pid}/ns/net`, STACK.device,
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], env: {} },
  );
  const pipes = child.stdio as unknown as Duplex[];
  const exitPipe = pipes[4]!;
  const stop = () => {
    exitPipe.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-2000);
  });
  return new Promise<Stack>((resolve, reject) => {
    const failed = (why: string) => {
      clearTimeout(timer);
      stop();
      const last = stderr.trim().split('\n').pop() ?? '';
      const said = last !== '' ? `: ${last}` : '';
      const message = `the user-mode network stack (slirp4netns) could not start: ${why}${said}; nothing ran`;
      reject(new VaultError('refused', message));
    };
    // a stack that never says it is ready must not hold the run (and the helper waiting on it) forever
    const timer = setTimeout(() => failed(`it was not ready within ${READY_TIMEOUT_MS / 1000} s`), READY_TIMEOUT_MS);
    child.on('error', (error) => failed(error.message));
    child.on('exit', (code, signal) => failed(`it exited (${signal ?? code})`));
    const ready = pipes[3]!;
    ready.on('error', () => undefined);
    ready.once('data', () => {
      clearTimeout(timer);
      child.removeAllListeners('exit');
      child.on('exit', () => undefined);
      resolve({ stop });
    });
  });
}
