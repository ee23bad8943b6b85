/**
 * The target's environment: the caller's, minus sealvault's own variables and those that make a
 * loader, runtime or shell run code of someone else's choosing, plus the released secrets.
 * SECURITY.md ("The child's environment") lists these; a test keeps the two in step.
 */
import { VaultError } from '../vault/errors.js';
import { LOCKDOWN_REMOVED_VARIABLES, type Tier } from './tiers.js';

export const REMOVED_PREFIXES: readonly string[] = ['VAULT_', 'SEALVAULT_', 'LD_', 'DYLD_', 'BASH_FUNC_'];
export const REMOVED_NAMES: readonly string[] = [
  'BASH_ENV', 'ENV', 'SHELLOPTS', 'BASHOPTS', 'PS4', 'PROMPT_COMMAND',
  'NODE_OPTIONS', 'PYTHONSTARTUP', 'PYTHONINSPECT', 'PERL5OPT', 'PERL5DB', 'RUBYOPT',
  'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS',
  'GCONV_PATH', 'GETCONF_DIR', 'GLIBC_TUNABLES', 'HOSTALIASES', 'LOCPATH', 'NLSPATH', 'MALLOC_TRACE',
  // the user's keychain and session bus are no business of the target's
  'DBUS_SESSION_BUS_ADDRESS',
];

/** The kernel refuses one environment string longer than this (MAX_ARG_STRLEN, with its NUL). */
export const MAX_ENV_STRING = 128 * 1024;

export function isRemoved(name: string): boolean {
  return REMOVED_NAMES.includes(name) || REMOVED_PREFIXES.some((prefix) => name.startsWith(prefix));
}

const encoder = new TextEncoder();

function entry(name: string, value: Uint8Array): Uint8Array {
  const head = encoder.encode(`${name}=`);
  const bytes = new Uint8Array(head.length + value.length);
  bytes.set(head, 0);
  bytes.set(value, head.length);
  return bytes;
}

/**
 * `NAME=VALUE` entries for the target; the caller wipes them after hand-over. In lockdown the
 * variables that lead to host services (LOCKDOWN_REMOVED_VARIABLES) go too: the sockets they name
 * are not in its root, and must not be reached some other way.
 */
export function targetEnvironment(callerEnv: NodeJS.ProcessEnv, secrets: Map<string, Uint8Array>, tier: Tier): Uint8Array[] {
  const dropped = (name: string) => isRemoved(name) || secrets.has(name) || (tier === 'lockdown' && LOCKDOWN_REMOVED_VARIABLES.includes(name));
  const kept = Object.entries(callerEnv)
    .filter((pair): pair is [string, string] => pair[1] !== undefined && !dropped(pair[0]))
    .map(([name, value]) => entry(name, encoder.encode(value)));
  for (const [name, value] of secrets) {
    if (value.includes(0)) {
      throw new VaultError('refused', `${name} contains a zero byte, which an environment variable cannot hold; deliver it with --file ${name}`);
    }
    if (name.length + 1 + value.length + 1 > MAX_ENV_STRING) {
      throw new VaultError('refused', `${name} is ${value.length} bytes, over the kernel's limit of 128 KiB for one environment variable; deliver it with --file ${name}`);
    }
    kept.push(entry(name, value));
  }
  return kept;
}
