/**
 * The isolation tiers a grant can require and `vault exec` will give, and what each one gives: one
 * table (TIER_POLICY and the lists below it) that the helper request, `vault doctor`, SECURITY.md
 * and the tests read. native/spawn_helper.c carries the side effects; test/sandbox.test.ts checks
 * that the two agree by running the helper.
 *
 * A grant names the weakest tier its binary may run in; a run at a weaker tier than a grant asks
 * for does not get the secret.
 */
export const TIERS = ['none', 'hardened', 'lockdown'] as const;
export type Tier = (typeof TIERS)[number];

export function tierAtLeast(tier: Tier, minimum: Tier): boolean {
  return TIERS.indexOf(tier) >= TIERS.indexOf(minimum);
}

export type Namespace = 'user' | 'pid' | 'ipc' | 'mnt' | 'net' | 'uts' | 'cgroup';

export interface TierPolicy {
  /** The namespaces the target gets of its own (the user namespace where the kernel allows one). */
  namespaces: readonly Namespace[];
  /** Which seccomp filter the target runs under: terminal injection only, or the full deny list. */
  seccomp: 'terminal' | 'full';
  /** A new root of read-only system binds (LOCKDOWN_ROOT) instead of the host's filesystem. */
  newRoot: boolean;
  /** Landlock as a second wall on writes, where the kernel has it. */
  landlock: boolean;
  isolates: string;
  does_not_isolate: string;
}

/** In every tier: its own session (no controlling terminal but its own pty), no core dumps, an empty session keyring. */
export const EVERY_TIER =
  'own session (a pty of its own on a terminal, never the caller\'s terminal), no capabilities, no_new_privs, ' +
  'no core dumps (RLIMIT_CORE 0), a new empty session keyring, TIOCSTI and TIOCLINUX refused';

export const TIER_POLICY: Record<Tier, TierPolicy> = {
  none: {
    namespaces: [],
    seccomp: 'terminal',
    newRoot: false,
    landlock: false,
    isolates: `no namespaces; ${EVERY_TIER}`,
    does_not_isolate: 'everything else: the target sees the host filesystem, processes, IPC and network as the caller does',
  },
  hardened: {
    // the mount namespace only shows a script's sealed copy at the script's own path; it hides nothing
    namespaces: ['user', 'pid', 'ipc', 'mnt'],
    seccomp: 'full',
    newRoot: false,
    landlock: false,
    isolates:
      `own user, PID and IPC namespaces (host processes cannot be signalled or traced); the seccomp filter; ${EVERY_TIER}`,
    does_not_isolate:
      "the host filesystem (everything the caller can read and write; for a root caller, every root-owned file), the host's /proc mounts (host processes are listed there) and the network",
  },
  lockdown: {
    namespaces: ['user', 'pid', 'ipc', 'mnt', 'net', 'uts', 'cgroup'],
    seccomp: 'full',
    newRoot: true,
    landlock: true,
    isolates:
      'also own mount, network, UTS (hostname "sealvault") and cgroup namespaces: a new root with the system directories read-only, ' +
      'the working directory read-write, an empty home, private /tmp, /dev/shm and /proc, a minimal /dev; the network its grant gives ' +
      '(loopback only unless the grant says --net); ' +
      'Landlock limits writes to the working directory, /tmp, /dev and the grant\'s --rw paths; unix, IP and netlink sockets only',
    does_not_isolate:
      'the working directory (read-write, but for .git and the node_modules of a sealvault installed there), the system directories (read-only) and the grant\'s --ro/--rw paths; no resource limits',
  },
};

/** lockdown's network, as a grant's --net chooses it (src/sandbox/network.ts): what each mode gives and needs. */
export type NetworkMode = 'none' | 'host' | 'egress';

export const NETWORK_MODES: Record<NetworkMode, { flag: string; gives: string; does_not_isolate: string; needs: string }> = {
  none: {
    flag: '--net none (the default of a lockdown grant)',
    gives: 'a network namespace of its own with loopback only',
    does_not_isolate: 'nothing of the network: no route out at all',
    needs: 'lockdown',
  },
  host: {
    flag: '--net host',
    gives: "the host's network namespace, with lockdown's mount, PID, IPC and filesystem isolation",
    does_not_isolate:
      "the network: every address the host reaches, the host's loopback services (databases, agents on 127.0.0.1) included; " +
      "abstract unix sockets outside the sandbox stay refused where Landlock's ABI is 6 or newer (its scope), reachable on older kernels",
    needs: 'lockdown',
  },
  egress: {
    flag: '--net HOST:PORT[,HOST:PORT…]',
    gives:
      'a network namespace of its own behind a user-mode stack (slirp4netns), with an nftables allow-list loaded before the target starts: ' +
      'only the listed TCP destinations; names resolved once by vault at start and given to the target in /etc/hosts, with no DNS; ' +
      "a listed 127.0.0.1:PORT (or localhost) reaches the host's at that same address; everything else is refused at once (TCP reset, ICMP)",
    does_not_isolate: 'the listed destinations, and whatever they reach or forward to',
    needs: 'lockdown, slirp4netns and nft (apt-get install slirp4netns nftables), and a /dev/net/tun this user can open (mode 0666)',
  },
};

/** The system, bound read-only at the same paths in lockdown (a symlink, as merged-usr has, stays a symlink). */
export const LOCKDOWN_SYSTEM_PATHS: readonly string[] = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/opt'];

/** lockdown's /dev: these host devices, a devpts instance of its own (with ptmx), a private shm, /dev/fd links. */
export const LOCKDOWN_DEVICES: readonly string[] = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/** Where host services are reached by path or address: never passed into lockdown, whatever the caller has. */
export const LOCKDOWN_REMOVED_VARIABLES: readonly string[] = [
  'SSH_AUTH_SOCK', 'SSH_AGENT_PID', 'GPG_AGENT_INFO', 'DISPLAY', 'WAYLAND_DISPLAY', 'WAYLAND_SOCKET', 'XAUTHORITY',
  'DBUS_SYSTEM_BUS_ADDRESS', 'XDG_RUNTIME_DIR', 'PULSE_SERVER', 'DOCKER_HOST', 'CONTAINER_HOST', 'KRB5CCNAME',
];

export interface DeniedSyscall {
  name: string;
  errno: 'EPERM' | 'ENOSYS';
  why: string;
}

/** The seccomp filter of hardened and lockdown (native/spawn_helper.c, denied_syscalls): refused whole. */
export const SECCOMP_DENIED: readonly DeniedSyscall[] = [
  { name: 'unshare', errno: 'EPERM', why: 'new namespaces: a nested user namespace would give the target every capability in it' },
  { name: 'setns', errno: 'EPERM', why: 'joining another namespace' },
  { name: 'clone3', errno: 'ENOSYS', why: 'its flags are in memory a filter cannot read; ENOSYS makes libc fall back to clone, whose namespace flags are refused' },
  ...['mount', 'umount2', 'pivot_root', 'chroot', 'open_tree', 'move_mount', 'fsopen', 'fsmount', 'fspick', 'mount_setattr'].map((name) => ({
    name, errno: 'EPERM' as const, why: 'the mount family: the sandbox\'s mounts are what hides the host',
  })),
  ...['keyctl', 'add_key', 'request_key'].map((name) => ({ name, errno: 'EPERM' as const, why: 'kernel keyrings: the caller\'s keys' })),
  { name: 'bpf', errno: 'EPERM', why: 'kernel attack surface' },
  { name: 'perf_event_open', errno: 'EPERM', why: 'kernel attack surface and side channels' },
  { name: 'userfaultfd', errno: 'EPERM', why: 'kernel attack surface: stalls the kernel at a chosen point (race exploits)' },
  ...['io_uring_setup', 'io_uring_enter', 'io_uring_register'].map((name) => ({
    name, errno: 'EPERM' as const, why: 'kernel attack surface, and system calls a filter cannot see',
  })),
  ...['ptrace', 'process_vm_readv', 'process_vm_writev'].map((name) => ({ name, errno: 'EPERM' as const, why: 'reading or writing another process\'s memory' })),
  ...['kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'acct', 'swapon', 'swapoff', 'reboot'].map((name) => ({
    name, errno: 'EPERM' as const, why: 'the machine itself (these need capabilities the target does not have; refused all the same)',
  })),
];

/** Refused in hardened and lockdown with particular arguments only. */
export const SECCOMP_DENIED_ARGUMENTS: readonly { call: string; why: string }[] = [
  { call: 'clone with any CLONE_NEW* flag', why: 'new namespaces' },
  { call: 'personality with ADDR_NO_RANDOMIZE (the query 0xffffffff still works)', why: 'turns off ASLR for what the target runs next' },
];

/** Refused in lockdown only: socket families a network namespace does not cover. */
export const SECCOMP_LOCKDOWN_SOCKETS = {
  allowed: ['AF_UNIX', 'AF_INET', 'AF_INET6', 'AF_NETLINK'],
  errno: 'EAFNOSUPPORT',
  why: 'some families are not namespaced (AF_VSOCK reaches the hypervisor side of a VM): socket and socketpair of any other family fail',
} as const;

/** Refused in every tier. */
export const SECCOMP_EVERY_TIER: readonly { call: string; why: string }[] = [
  { call: 'ioctl TIOCSTI (compared on 32 bits, as the kernel reads it)', why: 'types into a terminal (CVE-2017-5226)' },
  { call: 'ioctl TIOCLINUX', why: 'types into a virtual console' },
];
