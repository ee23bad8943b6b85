/**
 * `vault doctor`: what this host gives `vault exec`, found out rather than assumed. Kernel knobs and
 * process facts are read from /proc and /sys; each tier is tried for real by running the helper on
 * /bin/true. Everything is best effort: what cannot be read is reported as unknown (null), and
 * nothing here throws.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { keychainUnavailableReason } from '../vault/keychain.js';
import { packageRoot } from '../vault/native.js';
import { sha256Hex } from '../vault/crypto.js';
import { lockdownSystemMounts } from './lockdown-root.js';
import { HELPER_NAME, runSandboxed, type SandboxRequest, type SandboxResult } from './spawn.js';
import { egressUnavailable, planEgress, systemProgram } from './egress.js';
import { NETWORK_MODES, type NetworkMode, TIER_POLICY, TIERS, type Tier } from './tiers.js';

/** One kernel knob under /proc/sys. `value` is null when the file is absent or unreadable. */
export interface SysctlKnob {
  sysctl: string;
  path: string;
  state: 'present' | 'absent' | 'unreadable';
  value: number | null;
}

/** A knob that stops this process from creating a user namespace, and how to lift it. */
export interface UsernsBlocker {
  sysctl: string;
  value: number;
  why: string;
  fix: string;
}

export interface TierReport {
  tier: Tier;
  /** True only when the helper ran /bin/true at this tier, it exited 0 and (hardened, lockdown) the target's namespaces were its own. */
  available: boolean;
  /** The helper's exit status, null when it was not run. */
  exit_code: number | null;
  /** Why the tier is unavailable (the helper's `vault: <step>: <reason>` line when it gave one), null when available. */
  reason: string | null;
  /** True when the helper used its fallback without a user namespace (info.userns false); null when unknown. */
  userns_fallback: boolean | null;
  /** Namespace inode numbers of the target, from the helper's info line; null without one. */
  namespaces: Record<string, number> | null;
  /** The Landlock ABI the helper applied (lockdown), 0 for none; null when unknown. */
  landlock_abi: number | null;
  /** The seccomp filter the target ran under; null when unknown. */
  seccomp_filter: 'terminal' | 'full' | null;
  isolates: string;
  does_not_isolate: string;
}

export interface DoctorReport {
  schema: 1;
  /** os.release(); machine as uname -m prints it; arch as Node names it. */
  kernel: { release: string; machine: string; arch: string };
  identity: {
    uid: number | null;
    euid: number | null;
    root: boolean | null;
    /** CapEff from /proc/self/status, as the kernel prints it (hex). */
    cap_eff: string | null;
    /** Bit 21 of CapEff: CAP_SYS_ADMIN in this process's user namespace. */
    cap_sys_admin: boolean | null;
    /** False when this process itself runs inside a user namespace (its root is then not the host's root). */
    initial_user_namespace: boolean | null;
  };
  user_namespaces: {
    unprivileged_userns_clone: SysctlKnob;
    max_user_namespaces: SysctlKnob;
    apparmor_restrict_unprivileged_userns: SysctlKnob;
    /** Whether the knobs let this process create a user namespace; null when max_user_namespaces is unknown. */
    allowed: boolean | null;
    blocked_by: UsernsBlocker[];
  };
  seccomp: {
    /** The Seccomp field of /proc/self/status: 0 none, 1 strict, 2 filter (this process is already filtered). */
    mode: number | null;
    mode_name: 'disabled' | 'strict' | 'filter' | null;
    /** Whether /proc/sys/kernel/seccomp/actions_avail exists. */
    actions_avail: boolean;
    actions: string[] | null;
  };
  landlock: {
    enabled: boolean | null;
    /** Where the answer came from, or why there is none. */
    source: string;
    /** The ABI version the kernel offers (landlock_create_ruleset), 0 when none; null when unknown. */
    abi: number | null;
  };
  keychain: { reachable: boolean; reason: string | null };
  /** Yama's kernel.yama.ptrace_scope, and what it means for processes of the same user. */
  yama: { ptrace_scope: SysctlKnob; meaning: string };
  helper: {
    path: string | null;
    exists: boolean;
    sha256: string | null;
    setuid: boolean | null;
    setgid: boolean | null;
    owner_uid: number | null;
    /** Permission bits in octal, e.g. "0755". */
    mode: string | null;
  };
  tiers: Record<Tier, TierReport>;
  /** lockdown's network modes (a grant's --net): the stack found, and whether each mode ran /bin/true here. */
  network: {
    slirp4netns: string | null;
    nft: string | null;
    /** Why an egress allow-list cannot be had here (no stack, no nft, /dev/net/tun closed), null when it can. */
    egress_blocked_by: string | null;
    modes: Record<NetworkMode, { available: boolean; reason: string | null; gives: string; does_not_isolate: string; needs: string }>;
  };
  /** Things a person should act on, one sentence each. */
  warnings: string[];
}

const PROBE_TIMEOUT_MS = 5000;
const CAP_SYS_ADMIN = 21n;

function readText(file: string): { text: string } | { missing: true } | { error: string } {
  try {
    return { text: fs.readFileSync(file, 'utf8') };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { missing: true };
    return { error: code ?? (error instanceof Error ? error.message : String(error)) };
  }
}

function readKnob(sysctl: string): SysctlKnob {
  const file = path.join('/proc/sys', ...sysctl.split('.'));
  const read = readText(file);
  if ('missing' in read) return { sysctl, path: file, state: 'absent', value: null };
  if ('error' in read) return { sysctl, path: file, state: 'unreadable', value: null };
  const value = Number.parseInt(read.text.trim(), 10);
  return { sysctl, path: file, state: Number.isNaN(value) ? 'unreadable' : 'present', value: Number.isNaN(value) ? null : value };
}

function statusField(status: string | undefined, field: string): string | undefined {
  if (status === undefined) return undefined;
  const line = status.split('\n').find((l) => l.startsWith(`${field}:`));
  return line?.slice(field.length + 1).trim();
}

function identity(status: string | undefined): DoctorReport['identity'] {
  const uid = process.getuid?.() ?? null;
  const euid = process.geteuid?.() ?? null;
  const capEff = statusField(status, 'CapEff') ?? null;
  let capSysAdmin: boolean | null = null;
  if (capEff !== null && /^[0-9a-fA-F]+$/.test(capEff)) capSysAdmin = ((BigInt(`0x${capEff}`) >> CAP_SYS_ADMIN) & 1n) === 1n;
  const uidMap = readText('/proc/self/uid_map');
  let initial: boolean | null = null;
  if ('text' in uidMap) initial = uidMap.text.trim().split(/\s+/).join(' ') === '0 0 4294967295';
  return { uid, euid, root: euid === null ? null : euid === 0, cap_eff: capEff, cap_sys_admin: capSysAdmin, initial_user_namespace: initial };
}

function userNamespaces(who: DoctorReport['identity']): DoctorReport['user_namespaces'] {
  const clone = readKnob('kernel.unprivileged_userns_clone');
  const max = readKnob('user.max_user_namespaces');
  const apparmor = readKnob('kernel.apparmor_restrict_unprivileged_userns');
  const blocked: UsernsBlocker[] = [];
  if (max.value === 0) {
    blocked.push({
      sysctl: max.sysctl,
      value: 0,
      why: 'no user namespace may be created at all (unshare fails with ENOSPC)',
      fix: 'sysctl -w user.max_user_namespaces=15000',
    });
  }
  // Debian's knob is waived for CAP_SYS_ADMIN in the initial user namespace only
  if (clone.value === 0 && !(who.cap_sys_admin === true && who.initial_user_namespace === true)) {
    blocked.push({
      sysctl: clone.sysctl,
      value: 0,
      why: 'only processes with CAP_SYS_ADMIN may create user namespaces (unshare fails with EPERM)',
      fix: 'sysctl -w kernel.unprivileged_userns_clone=1',
    });
  }
  if (apparmor.value !== null && apparmor.value !== 0 && who.cap_sys_admin !== true) {
    blocked.push({
      sysctl: apparmor.sysctl,
      value: apparmor.value,
      why: 'AppArmor lets unconfined processes create a user namespace but denies uid_map writes and mounts inside it (EPERM/EACCES)',
      fix: 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile with `userns,` for the helper)',
    });
  }
  return {
    unprivileged_userns_clone: clone,
    max_user_namespaces: max,
    apparmor_restrict_unprivileged_userns: apparmor,
    allowed: blocked.length > 0 ? false : max.value === null ? null : true,
    blocked_by: blocked,
  };
}

function seccomp(status: string | undefined): DoctorReport['seccomp'] {
  const field = statusField(status, 'Seccomp');
  const mode = field === undefined || !/^\d+$/.test(field) ? null : Number(field);
  const names = ['disabled', 'strict', 'filter'] as const;
  const actions = readText('/proc/sys/kernel/seccomp/actions_avail');
  return {
    mode,
    mode_name: mode === null ? null : (names[mode] ?? null),
    actions_avail: !('missing' in actions),
    actions: 'text' in actions ? actions.text.trim().split(/\s+/).filter((a) => a !== '') : null,
  };
}

/**
 * The active LSM list is in securityfs. Where securityfs is not mounted, the kernel's own
 * configuration (CONFIG_SECURITY_LANDLOCK, CONFIG_LSM) and the boot command line (lsm=) say the same.
 */
function landlock(): Omit<DoctorReport['landlock'], 'abi'> {
  const lsm = readText('/sys/kernel/security/lsm');
  if ('text' in lsm) return { enabled: lsm.text.trim().split(',').includes('landlock'), source: '/sys/kernel/security/lsm' };
  const unreadable = `/sys/kernel/security/lsm is ${'missing' in lsm ? 'absent (securityfs not mounted)' : `unreadable (${lsm.error})`}`;
  let config: string;
  try {
    config = gunzipSync(fs.readFileSync('/proc/config.gz')).toString('utf8');
  } catch {
    return { enabled: null, source: `${unreadable} and /proc/config.gz is not readable` };
  }
  const from = `${unreadable}; from /proc/config.gz and /proc/cmdline`;
  if (!/^CONFIG_SECURITY_LANDLOCK=y$/m.test(config)) return { enabled: false, source: from };
  const cmdline = readText('/proc/cmdline');
  if (!('text' in cmdline)) return { enabled: null, source: `${unreadable}; built in (/proc/config.gz) but /proc/cmdline is not readable` };
  // the last lsm= on the command line wins; without one, CONFIG_LSM is the list
  const fromCmdline = [...cmdline.text.matchAll(/(?:^|\s)lsm=(\S*)/g)].at(-1)?.[1];
  const list = fromCmdline ?? /^CONFIG_LSM="([^"]*)"$/m.exec(config)?.[1];
  if (list === undefined) return { enabled: null, source: `${from}: no CONFIG_LSM and no lsm=` };
  return { enabled: list.split(',').includes('landlock'), source: from };
}

/** Where the helper is, or would be once built (build/Release below the package root). */
function expectedHelperPath(): string | null {
  const root = packageRoot();
  return root === undefined ? null : path.join(root, 'build', 'Release', HELPER_NAME);
}

function helperFacts(): DoctorReport['helper'] {
  const file = expectedHelperPath();
  const facts: DoctorReport['helper'] = { path: file, exists: false, sha256: null, setuid: null, setgid: null, owner_uid: null, mode: null };
  if (file === null) return facts;
  try {
    const stat = fs.statSync(file);
    facts.exists = stat.isFile();
    facts.setuid = (stat.mode & 0o4000) !== 0;
    facts.setgid = (stat.mode & 0o2000) !== 0;
    facts.owner_uid = stat.uid;
    facts.mode = `0${(stat.mode & 0o7777).toString(8).padStart(3, '0')}`;
    if (facts.exists) facts.sha256 = sha256Hex(fs.readFileSync(file));
  } catch {
    // absent or unreadable: what was learnt so far stands
  }
  return facts;
}

function ownNamespaces(): Record<string, number> {
  const own: Record<string, number> = {};
  for (const kind of ['user', 'pid', 'ipc', 'mnt', 'net', 'uts', 'cgroup']) {
    try {
      const match = /\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/ns/${kind}`));
      if (match?.[1] !== undefined) own[kind] = Number(match[1]);
    } catch {
      // unknown: that namespace is not compared
    }
  }
  return own;
}

function helperReason(result: SandboxResult): string {
  const lines = (result.stderr?.toString('utf8') ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const own = lines.filter((l) => l.startsWith('vault:')).at(-1) ?? lines[0];
  return own ?? `the helper exited with status ${result.exitCode} and printed no reason`;
}


async function probeTier(
  tier: Tier, helper: DoctorReport['helper'], own: Record<string, number>, userns: DoctorReport['user_namespaces'],
  network?: SandboxRequest['network'],
): Promise<TierReport> {
  const { isolates, does_not_isolate } = TIER_POLICY[tier];
  const report: TierReport = {
    tier, available: false, exit_code: null, reason: null, userns_fallback: null, namespaces: null, landlock_abi: null, seccomp_filter: null,
    isolates, does_not_isolate,
  };
  if (!helper.exists) {
    report.reason = `the sandbox helper (${helper.path ?? `build/Release/${HELPER_NAME}`}) is not built: run \`npm run build\``;
    return report;
  }
  let fd: number;
  try {
    fd = fs.openSync('/bin/true', fs.constants.O_RDONLY);
  } catch (error) {
    report.reason = `cannot open /bin/true to try the tier: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
    return report;
  }
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  let result: SandboxResult;
  try {
    result = await runSandboxed(
      // from /, with the system alone: the probe needs no working directory of the caller's
      {
        tier, argv: ['true'], env: [], files: [], hide: [], mounts: tier === 'lockdown' ? lockdownSystemMounts() : [], executableFd: fd,
        ...(network !== undefined ? { network } : {}),
      },
      {
        stdio: 'pipe',
        cwd: '/',
        onSpawn: (child) => {
          child.stdin?.end();
          timer = setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, PROBE_TIMEOUT_MS);
        },
      },
    );
  } catch (error) {
    report.reason = error instanceof Error ? error.message : String(error);
    return report;
  } finally {
    clearTimeout(timer);
    fs.closeSync(fd);
  }
  report.exit_code = result.exitCode;
  report.namespaces = result.info?.ns ?? null;
  report.landlock_abi = result.info?.landlock ?? null;
  report.seccomp_filter = result.info?.seccomp ?? null;
  // tier none asks for no namespaces, so running without a user namespace is no fallback there
  report.userns_fallback = tier === 'none' ? false : result.info === undefined ? null : result.info.userns === false;
  if (timedOut) {
    report.reason = `the helper did not finish /bin/true within ${PROBE_TIMEOUT_MS / 1000} s`;
  } else if (result.exitCode !== 0) {
    report.reason = helperReason(result);
    // no info line: the helper stopped before its namespaces were set up, where a knob may be why
    const knobs = userns.blocked_by.filter((b) => !report.reason?.includes(b.sysctl));
    if (tier !== 'none' && result.info === undefined && knobs.length > 0) {
      report.reason += ` (user namespaces are blocked by ${knobs.map((b) => `${b.sysctl}=${b.value}; fix: ${b.fix}`).join('; ')})`;
    }
  } else if (tier !== 'none' && result.info === undefined) {
    report.reason = 'the helper exited 0 but wrote no info line, so its namespaces could not be checked';
  } else if (result.info !== undefined && result.info.tier !== tier) {
    report.reason = `the helper reported tier ${String(result.info.tier)} instead of ${tier}`;
  } else {
    const shared = TIER_POLICY[tier].namespaces.filter((kind) => {
      if (kind === 'user' && result.info?.userns === false) return false; // the fallback keeps ours, by design
      if (kind === 'net' && network?.mode === 'host') return false; // what --net host asks for
      const theirs = result.info?.ns[kind];
      return own[kind] !== undefined && (theirs === undefined || theirs === own[kind]);
    });
    if (shared.length > 0) report.reason = `the target did not get its own ${shared.join(', ')} namespace${shared.length > 1 ? 's' : ''}`;
    else report.available = true;
  }
  return report;
}

type Probe = TierReport | { available: false; reason: string };

/** lockdown with the host's network, and with an allow-list of nothing (its stack and ruleset real), each running /bin/true. */
async function probeNetworkModes(
  helper: DoctorReport['helper'], own: Record<string, number>, userns: DoctorReport['user_namespaces'],
): Promise<{ host: Probe; egress: Probe; blocked: string | undefined }> {
  const blocked = egressUnavailable();
  const egress = (async (): Promise<Probe> => {
    if (blocked !== undefined) return { available: false, reason: blocked };
    try {
      return await probeTier('lockdown', helper, own, userns, { mode: 'egress', plan: await planEgress([]) });
    } catch (error) {
      return { available: false, reason: error instanceof Error ? error.message : String(error) };
    }
  })();
  const [host, egressProbe] = await Promise.all([probeTier('lockdown', helper, own, userns, { mode: 'host' }), egress]);
  return { host, egress: egressProbe, blocked };
}

/** Each network mode as the probes found it; `none` is lockdown's own probe. */
function networkReport(lockdown: TierReport, probes: { host: Probe; egress: Probe; blocked: string | undefined }): DoctorReport['network'] {
  const mode = (name: NetworkMode, probe: Probe) => ({ available: probe.available, reason: probe.available ? null : probe.reason, ...NETWORK_MODES[name] });
  return {
    slirp4netns: systemProgram('slirp4netns') ?? null, nft: systemProgram('nft') ?? null, egress_blocked_by: probes.blocked ?? null,
    modes: { none: mode('none', lockdown), host: mode('host', probes.host), egress: mode('egress', probes.egress) },
  };
}

function warningsFor(report: Omit<DoctorReport, 'warnings'>): string[] {
  const warnings: string[] = [];
  if (report.helper.setuid === true || report.helper.setgid === true) {
    warnings.push(`${report.helper.path}: the helper is set-${report.helper.setuid ? 'uid' : 'gid'}; it must not be: chmod u-s,g-s it`);
  }
  if (!report.helper.exists) warnings.push('the sandbox helper is not built: run `npm run build`');
  for (const blocker of report.user_namespaces.blocked_by) warnings.push(`${blocker.sysctl}=${blocker.value} blocks user namespaces; fix: ${blocker.fix}`);
  for (const tier of TIERS) {
    if (report.tiers[tier].userns_fallback === true) {
      warnings.push(`tier ${tier} ran without a user namespace (CAP_SYS_ADMIN fallback): the target shares the caller's user namespace and uid, and rests on dropped capabilities alone`);
    }
  }
  const egress = report.network.modes.egress;
  if (!egress.available) warnings.push(`grants with --net HOST:PORT refuse to run here (fail closed): ${egress.reason ?? 'unknown reason'}`);
  if (report.seccomp.mode === 2) warnings.push('this process already runs under a seccomp filter (a container?): the helper may be refused system calls');
  return warnings;
}

export async function doctorReport(): Promise<DoctorReport> {
  const statusRead = readText('/proc/self/status');
  const status = 'text' in statusRead ? statusRead.text : undefined;
  const who = identity(status);
  const userns = userNamespaces(who);
  const helper = helperFacts();
  const own = ownNamespaces();
  const keychain = keychainUnavailableReason().then(
    (reason) => reason,
    (error: unknown) => (error instanceof Error ? error.message : String(error)),
  );
  const networkProbes = probeNetworkModes(helper, own, userns);
  const probes = await Promise.all(TIERS.map((tier) => probeTier(tier, helper, own, userns)));
  const network = networkReport(probes[2]!, await networkProbes);
  const keychainReason = await keychain;
  const partial: Omit<DoctorReport, 'warnings'> = {
    schema: 1,
    kernel: { release: os.release(), machine: os.machine(), arch: os.arch() },
    identity: who,
    user_namespaces: userns,
    seccomp: seccomp(status),
    // the ABI is what the helper found when it ran lockdown for real
    landlock: { ...landlock(), abi: probes[2]!.landlock_abi },
    keychain: { reachable: keychainReason === undefined, reason: keychainReason ?? null },
    yama: yama(),
    helper,
    tiers: { none: probes[0]!, hardened: probes[1]!, lockdown: probes[2]! },
    network,
  };
  return { ...partial, warnings: warningsFor(partial) };
}

/**
 * What ptrace_scope means for a process of the same user (Documentation/admin-guide/LSM/Yama.rst).
 * vault itself is non-dumpable whatever it says; a running target is not, and is what this is about.
 */
function yama(): DoctorReport['yama'] {
  const knob = readKnob('kernel.yama.ptrace_scope');
  const sameUid = 'any process of your uid can ptrace a running target and read its memory and /proc/PID/environ';
  const meanings: Record<number, string> = {
    0: `classic ptrace: ${sameUid}`,
    1: 'restricted: only a parent (or a process it allowed) can ptrace, but /proc/PID/environ of a running target stays readable by your uid',
    2: 'admin-only ptrace (CAP_SYS_PTRACE); /proc/PID/environ of a running target stays readable by your uid',
    3: 'no ptrace at all; /proc/PID/environ of a running target stays readable by your uid',
  };
  const meaning = knob.value === null
    ? `Yama is not present: ${sameUid}; vault and its agent are non-dumpable, a target is not (docs/agents.md: run untrusted code as another user)`
    : (meanings[knob.value] ?? `ptrace_scope ${knob.value}`);
  return { ptrace_scope: knob, meaning };
}

function yesNo(value: boolean | null): string {
  return value === null ? 'unknown' : value ? 'yes' : 'no';
}

function knobText(knob: SysctlKnob): string {
  if (knob.state === 'absent') return `${knob.sysctl}: not present on this kernel`;
  if (knob.state === 'unreadable') return `${knob.sysctl}: unknown (${knob.path} is not readable)`;
  return `${knob.sysctl}: ${knob.value}`;
}

export function renderDoctor(report: DoctorReport): string {
  const lines: string[] = [];
  const { identity: who, user_namespaces: userns, seccomp: sc, landlock: ll, helper } = report;
  lines.push(`kernel: ${report.kernel.release} (${report.kernel.machine})`);
  lines.push(`uid: ${who.uid ?? 'unknown'}, effective uid: ${who.euid ?? 'unknown'} (root: ${yesNo(who.root)})`);
  lines.push(`CAP_SYS_ADMIN in effect: ${yesNo(who.cap_sys_admin)}${who.cap_eff === null ? '' : ` (CapEff ${who.cap_eff})`}`);
  lines.push(`in the host's user namespace: ${yesNo(who.initial_user_namespace)}`);
  lines.push(knobText(userns.max_user_namespaces));
  lines.push(knobText(userns.unprivileged_userns_clone));
  lines.push(knobText(userns.apparmor_restrict_unprivileged_userns));
  lines.push(`user namespaces allowed by these knobs: ${yesNo(userns.allowed)}`);
  for (const blocker of userns.blocked_by) lines.push(`blocked by ${blocker.sysctl}=${blocker.value}: ${blocker.why}; fix: ${blocker.fix}`);
  lines.push(`seccomp of this process: ${sc.mode === null ? 'unknown' : `${sc.mode_name ?? 'unknown mode'} (${sc.mode})`}`);
  lines.push(`seccomp filter actions: ${sc.actions !== null ? sc.actions.join(' ') : sc.actions_avail ? 'present, unreadable' : 'not available (/proc/sys/kernel/seccomp/actions_avail absent)'}`);
  lines.push(`landlock: ${ll.enabled === null ? 'unknown' : ll.enabled ? 'enabled' : 'not enabled'} (${ll.source})`);
  lines.push(`landlock ABI in use by lockdown: ${ll.abi === null ? 'unknown (lockdown did not run)' : ll.abi === 0 ? 'none (the mounts are the only wall)' : ll.abi}`);
  lines.push(`keychain (Secret Service): ${report.keychain.reachable ? 'reachable' : `not reachable: ${report.keychain.reason ?? 'unknown reason'}`}`);
  lines.push(`${knobText(report.yama.ptrace_scope)}: ${report.yama.meaning}`);
  lines.push(`helper: ${helper.path ?? 'unknown path'}${helper.exists ? '' : ' (not built: run `npm run build`)'}`);
  if (helper.exists) {
    lines.push(`helper sha256: ${helper.sha256 ?? 'unknown (not readable)'}`);
    lines.push(`helper mode: ${helper.mode ?? 'unknown'}, owner uid ${helper.owner_uid ?? 'unknown'}, setuid: ${yesNo(helper.setuid)}, setgid: ${yesNo(helper.setgid)}`);
  }
  for (const tier of TIERS) {
    const t = report.tiers[tier];
    const how = t.available ? `available${t.userns_fallback ? ' (without a user namespace: CAP_SYS_ADMIN fallback)' : ''}` : `NOT available: ${t.reason ?? 'unknown reason'}`;
    lines.push(`tier ${tier}: ${how}${t.exit_code === null ? '' : ` [helper exit ${t.exit_code}]`}`);
    if (t.seccomp_filter !== null) lines.push(`tier ${tier} seccomp filter: ${t.seccomp_filter === 'full' ? 'full deny list' : 'terminal ioctls only'}`);
    lines.push(`tier ${tier} isolates: ${t.isolates}`);
    lines.push(`tier ${tier} does not isolate: ${t.does_not_isolate}`);
  }
  const net = report.network;
  lines.push(`network stack: slirp4netns ${net.slirp4netns ?? 'not installed'}, nft ${net.nft ?? 'not installed'}`);
  for (const [name, m] of Object.entries(net.modes)) {
    lines.push(`lockdown network ${NETWORK_MODES[name as NetworkMode].flag}: ${m.available ? 'available' : `NOT available: ${m.reason ?? 'unknown reason'}`}`);
    lines.push(`  gives: ${m.gives}`);
  }
  for (const warning of report.warnings) lines.push(`warning: ${warning}`);
  return `${lines.join('\n')}\n`;
}
