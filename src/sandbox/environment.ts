/**
 * The target's environment: an allow-list, never the caller's whole environment. The caller of
 * `vault exec` may be untrusted (an AI agent, a build tool), and the environment chooses code
 * (PATH, PYTHONPATH, HOME's dotfiles, GIT_SSH_COMMAND): so the target gets only
 * - TERM, LANG, LC_*, TZ, COLUMNS, LINES from the caller (they name a terminal, a locale, a size);
 * - CI and the CI platform's variables that say where a job runs (CI_VARIABLES, a list of names);
 * - USER, LOGNAME and HOME from the password database, and PATH = SAFE_PATH;
 * - what the grant says: `--env NAME=VALUE` pins a value (any name, PATH included), `--pass-env
 *   NAME` or `PREFIX_*` lets the caller's value through, for names that choose no code (names.ts);
 * - the released secrets.
 * In lockdown, LOCKDOWN_REMOVED_VARIABLES never get in, whatever the grant says. SECURITY.md ("The
 * child's environment") is the account of it; test/environment.test.ts keeps the two in step.
 */
import * as os from 'node:os';
import { VaultError } from '../vault/errors.js';
import { choosesCode, prefixReachesCode } from '../vault/names.js';
import { LOCKDOWN_REMOVED_VARIABLES, type Tier } from './tiers.js';

/** The target's PATH unless its grant pins another: the system's directories, in the usual order. */
export const SAFE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Passed from the caller as they are: a terminal, a locale, a window size. */
export const CALLER_VARIABLES: readonly string[] = ['TERM', 'LANG', 'TZ', 'COLUMNS', 'LINES'];
export const CALLER_PREFIXES: readonly string[] = ['LC_'];

/**
 * CI platforms' own variables (GitHub Actions, GitLab CI) that say where and for what a job runs,
 * passed so that a deploy knows it: names only, a list. Not their addresses (GITHUB_API_URL, where a
 * tool would send a token), paths (RUNNER_TEMP), write channels (GITHUB_ENV, GITHUB_OUTPUT) or
 * credentials (CI_JOB_TOKEN), which an earlier step may have set: a grant passes those by name.
 */
export const CI_VARIABLES: readonly string[] = [
  'CI', 'GITHUB_ACTIONS', 'GITHUB_SHA', 'GITHUB_REF', 'GITHUB_REF_NAME', 'GITHUB_REF_TYPE', 'GITHUB_REPOSITORY', 'GITHUB_RUN_ID',
  'GITHUB_RUN_NUMBER', 'GITHUB_RUN_ATTEMPT', 'GITHUB_ACTOR', 'GITHUB_EVENT_NAME', 'GITHUB_JOB', 'GITHUB_WORKFLOW', 'GITHUB_HEAD_REF',
  'GITHUB_BASE_REF', 'RUNNER_OS', 'RUNNER_ARCH', 'GITLAB_CI', 'CI_COMMIT_SHA', 'CI_COMMIT_REF_NAME', 'CI_COMMIT_BRANCH', 'CI_COMMIT_TAG',
  'CI_PIPELINE_ID', 'CI_PIPELINE_SOURCE', 'CI_JOB_ID', 'CI_JOB_NAME', 'CI_JOB_STAGE', 'CI_PROJECT_PATH', 'CI_PROJECT_NAME',
  'CI_ENVIRONMENT_NAME', 'CI_DEFAULT_BRANCH', 'CI_MERGE_REQUEST_IID',
];
/** Never passed by default although they are CI variables: the write channels of GitHub Actions, named here for the docs. */
export const CI_EXCLUDED: readonly string[] = ['GITHUB_ENV', 'GITHUB_PATH', 'GITHUB_OUTPUT', 'GITHUB_STATE', 'GITHUB_STEP_SUMMARY'];

/** The kernel refuses one environment string longer than this (MAX_ARG_STRLEN, with its NUL). */
export const MAX_ENV_STRING = 128 * 1024;

/** What a grant says of its program's environment (docs/FORMAT.md: `env`, `pass_env`). */
export interface GrantedEnvironment {
  /** Pinned values. */
  env: Record<string, string>;
  /** Names, or `PREFIX_*` patterns, whose caller's value goes through. */
  passEnv: readonly string[];
}

/** What a variable passed from the caller may be called (POSIX's portable names). */
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Whether `--pass-env` `pattern` (a name, or PREFIX_*) takes in the variable `name`. */
export const matches = (name: string, pattern: string) => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern);

/** sealvault's own variables (SECURITY.md, "Reserved names"): VAULT_KEY and the others that open a vault among them. */
const OWN_VARIABLES = /^(?:SEALVAULT|VAULT)_/;

/** Whether the caller's value of `name` reaches the target without a grant saying so. */
export function passedByDefault(name: string): boolean {
  return CALLER_VARIABLES.includes(name) || CALLER_PREFIXES.some((p) => name.startsWith(p)) || CI_VARIABLES.includes(name);
}

/**
 * Checks a `--pass-env` pattern at `vault allow`: a name, or a prefix ending in `*`, that cannot
 * let a variable that chooses code through. Throws 'refused' (exit 11) naming the way to pin one.
 */
export function checkPassEnv(pattern: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*\*?$/.test(pattern) || pattern === '*' || pattern === '__proto__') {
    throw new VaultError('usage', `--pass-env ${JSON.stringify(pattern)}: give a variable name, or a prefix ending in * such as DEPLOY_*`);
  }
  const prefix = pattern.endsWith('*') ? pattern.slice(0, -1) : undefined;
  if (OWN_VARIABLES.test(pattern)) {
    throw new VaultError(
      'refused',
      `--pass-env ${pattern}: sealvault's own variables (VAULT_*, SEALVAULT_*) never reach a target; VAULT_KEY and its like open the vault`,
    );
  }
  if (prefix === undefined ? choosesCode(pattern) : prefixReachesCode(prefix)) {
    throw new VaultError(
      'refused',
      `--pass-env ${pattern}: ${prefix === undefined ? 'this variable chooses' : 'this pattern takes in variables that choose'} which code runs, so the caller's value may not pass; pin the value instead with --env NAME=VALUE`,
    );
  }
  return pattern;
}

/** Checks `--env NAME=VALUE`; returns [name, value]. */
export function parsePinnedEnv(assignment: string): [string, string] {
  const at = assignment.indexOf('=');
  const name = at > 0 ? assignment.slice(0, at) : '';
  // __proto__ would become an object's prototype, not a member, and the grant's MAC would then fail
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || name === '__proto__') {
    throw new VaultError('usage', `--env takes NAME=VALUE, not ${JSON.stringify(assignment)}`);
  }
  const value = assignment.slice(at + 1);
  if (value.includes('\0')) throw new VaultError('usage', `--env ${name}: the value holds a zero byte`);
  return [name, value];
}

const encoder = new TextEncoder();

function entry(name: string, value: Uint8Array): Uint8Array {
  const head = encoder.encode(`${name}=`);
  const bytes = new Uint8Array(head.length + value.length);
  bytes.set(head, 0);
  bytes.set(value, head.length);
  return bytes;
}

/** USER, LOGNAME and HOME of the account that runs vault, from the password database. */
function identity(): Record<string, string> {
  const me = os.userInfo();
  return { USER: me.username, LOGNAME: me.username, HOME: me.homedir };
}

/**
 * `NAME=VALUE` entries for the target, in the order above; the caller wipes them after hand-over.
 * `asFiles`: secrets the helper delivers as files; their `NAME_FILE` is the helper's to set, never
 * the caller's (a runtime that reads the first of two entries would open the caller's file).
 */
export function targetEnvironment(
  callerEnv: NodeJS.ProcessEnv, secrets: Map<string, Uint8Array>, tier: Tier, granted: GrantedEnvironment, asFiles: readonly string[] = [],
): Uint8Array[] {
  const chosen = new Map<string, string>();
  for (const [name, value] of Object.entries(callerEnv)) {
    // sealvault's own never pass, whatever a grant's pattern takes in (`--pass-env V*`); nor a name
    // that is not a plain name: "A=x" from an agent's client would be the entry "A=x=…", read
    // before a pinned A by a runtime that takes the first entry (and BASH_FUNC_f%% is code)
    if (value === undefined || OWN_VARIABLES.test(name) || !PLAIN_NAME.test(name)) continue;
    const passed = passedByDefault(name) || (granted.passEnv.some((p) => matches(name, p)) && !choosesCode(name));
    if (passed) chosen.set(name, value);
  }
  for (const [name, value] of Object.entries({ ...identity(), PATH: SAFE_PATH, ...granted.env })) chosen.set(name, value);
  if (tier === 'lockdown') for (const name of LOCKDOWN_REMOVED_VARIABLES) chosen.delete(name);
  for (const name of secrets.keys()) chosen.delete(name);
  // a secret that goes as a file: neither its NAME_FILE nor its NAME come from the caller
  for (const name of asFiles) {
    chosen.delete(`${name}_FILE`);
    chosen.delete(name);
  }
  const kept = [...chosen].map(([name, value]) => entry(name, encoder.encode(value)));
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
