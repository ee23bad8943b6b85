/**
 * Grants: which binary (by SHA-256) may receive which secret, at which minimum tier and, for
 * interpreters, with which exact arguments. The policy file is authenticated with a key derived
 * from the private key, so writing the vault files is not enough to add a grant.
 */
import * as path from 'node:path';
import { constantTimeEqual, fromBase64, policyMac, toBase64 } from './crypto.js';
import { VaultError } from './errors.js';
import { type Tier, tierAtLeast, TIERS } from '../sandbox/tiers.js';
import { matches } from '../sandbox/environment.js';
import type { MaskStyle } from '../sandbox/masking.js';
import { fromField, intersect, type Network, networkText, within } from '../sandbox/network.js';
import {
  FORMAT_VERSION, type Grant, parseVaultFile, type PolicyFile, policyFileSchema, type Revocation,
} from './format.js';

/**
 * Programs that run whatever code or command they are given: interpreters, and launchers whose
 * arguments name another program or a command (`find -exec`, `make --eval`, `git -c`, `npm run`).
 * A grant to one of them is a grant to anything, so it needs its arguments pinned (`--arg`), a
 * script pinned with it (`--run`), or an explicit `--any-args`. It remains a list (SECURITY.md says
 * why): no test can tell from a binary whether it runs what its arguments say.
 */
const INTERPRETER = new RegExp(
  '^(?:' +
    [
      // shells and interpreters
      'sh', 'ash', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'yash', 'fish', 'csh', 'tcsh', 'busybox', 'toybox', 'expect',
      'python[0-9.]*', 'pypy[0-9.]*', 'node(?:js)?', 'deno', 'bun', 'bunx', 'perl[0-9.]*', 'ruby[0-9.]*', 'irb',
      'php[0-9.]*', 'lua[0-9.]*', 'luajit', 'tclsh[0-9.]*', 'wish[0-9.]*', '[gmn]?awk', 'sed', 'R', 'Rscript', 'java',
      'jshell', 'julia', 'pwsh', 'osascript', 'guile[0-9.]*', 'racket', 'sbcl', 'ghci', 'runghc', 'erl', 'escript',
      'elixir', 'iex', 'swift', 'ld-linux.*\\.so.*',
      // launchers: they run the program or command their arguments name
      'env', 'xargs', 'nice', 'nohup', 'timeout', 'stdbuf', 'setsid', 'sudo', 'doas', 'su', 'runuser', 'chroot',
      'strace', 'ltrace', 'gdb', 'valgrind', 'taskset', 'flock', 'setpriv', 'script', 'find', 'git', 'make', 'gmake',
      'npm', 'npx', 'pnpm', 'yarn', 'ssh', 'ssh-agent', 'dbus-run-session', 'ionice', 'chrt', 'unshare', 'nsenter',
      'prlimit', 'watch', 'systemd-run', 'firejail', 'bwrap', 'sg', 'newgrp', 'time', 'parallel', 'pkexec', 'runcon',
      'docker', 'podman', 'kubectl', 'tar', 'vi', 'vim', 'nvim', 'view', 'ex', 'emacs', 'nano', 'less', 'more', 'man',
      'sqlite3', 'cmake', 'ctest', 'gcc', 'g\\+\\+', 'cc', 'c\\+\\+', 'clang', 'clang\\+\\+', 'ld', 'wget', 'curl', 'scp', 'sftp',
      'rsync', 'socat', 'ksh93', 'ld-musl.*', 'pip[0-9.]*', 'pipx', 'uv', 'uvx', 'poetry', 'cargo', 'rustup', 'go', 'gem',
      'bundle', 'rake', 'composer', 'mvn', 'gradle', 'ant', 'dotnet', 'zip', 'unzip', 'openssl', 'ssh-keygen', 'busctl',
      'systemctl', 'journalctl', 'crontab', 'at', 'batch', 'm4', 'bc', 'dc', 'ed', 'tclsh', 'ipython[0-9.]*', 'jupyter',
    ].join('|') +
    ')$',
);

/**
 * Interpreters that go on reading options after their script (`make -f FILE --eval=…`, `sed -f FILE
 * -e …`, `awk -f FILE -f …`): a script of theirs is a launcher too, and needs its arguments pinned.
 */
const OPTIONS_AFTER_SCRIPT = /^(?:g?make|sed|[gmn]?awk|find|tar|m4|bc|dc|gdb|expect)$/;

export function readsOptionsAfterScript(interpreter: string): boolean {
  return OPTIONS_AFTER_SCRIPT.test(path.basename(interpreter));
}

export function isInterpreter(...paths: string[]): boolean {
  return paths.some((p) => INTERPRETER.test(path.basename(p)));
}

export interface Policy {
  revision: number;
  grants: Grant[];
  /** What was revoked (docs/FORMAT.md, "Revocations"); absent or empty in a policy that revoked nothing. */
  revoked?: Revocation[];
}

/** A revocation's identity as text, for sets: a grant's (secret, sha256, created), or a slot's id. */
export function revocationKey(r: Revocation): string {
  return 'slot' in r ? `slot ${r.slot}` : `grant ${r.secret} ${r.sha256} ${r.created}`;
}

/** The revocation that names grant `g`. */
export function grantRevocation(g: Grant): Revocation {
  return { secret: g.secret, sha256: g.sha256, created: g.created };
}

/**
 * The bytes the MAC covers: fixed key order, grant fields in the order of docs/FORMAT.md. Fields
 * added after version 1 (ro, rw, interpreter, env, pass_env) come after created and only when a
 * grant has them, so that a policy written before they existed keeps its MAC; env in name order;
 * then net, file and mask (added when grants came to carry their run), the same way.
 */
function canonicalPolicy(vaultId: string, policy: Policy): string {
  const grants = policy.grants.map((g) => ({
    secret: g.secret, sha256: g.sha256, path: g.path, min_tier: g.min_tier, args: g.args, created: g.created,
    ...(g.ro !== undefined ? { ro: g.ro } : {}),
    ...(g.rw !== undefined ? { rw: g.rw } : {}),
    ...(g.interpreter !== undefined
      ? { interpreter: { path: g.interpreter.path, sha256: g.interpreter.sha256, ...(g.interpreter.arg !== undefined ? { arg: g.interpreter.arg } : {}) } }
      : {}),
    ...(g.env !== undefined ? { env: Object.fromEntries(Object.entries(g.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) } : {}),
    ...(g.pass_env !== undefined ? { pass_env: g.pass_env } : {}),
    ...(g.net !== undefined ? { net: g.net } : {}),
    ...(g.file !== undefined ? { file: g.file.path !== undefined ? { path: g.file.path } : {} } : {}),
    ...(g.mask !== undefined ? { mask: g.mask } : {}),
  }));
  const revoked = (policy.revoked ?? []).map((r) => (
    'slot' in r ? { slot: r.slot, removed: r.removed } : { secret: r.secret, sha256: r.sha256, created: r.created }
  ));
  return JSON.stringify({
    format: 'sealvault-policy', version: FORMAT_VERSION, vault_id: vaultId, revision: policy.revision, grants,
    ...(revoked.length > 0 ? { revoked } : {}),
  });
}

export function sealPolicy(vaultId: string, secretKey: Uint8Array, policy: Policy): PolicyFile {
  return {
    format: 'sealvault-policy',
    version: FORMAT_VERSION,
    revision: policy.revision,
    grants: policy.grants,
    ...(policy.revoked !== undefined && policy.revoked.length > 0 ? { revoked: policy.revoked } : {}),
    mac: toBase64(policyMac(secretKey, canonicalPolicy(vaultId, policy))),
  };
}

/** Whether `text` starts as a file git left with conflict markers does (policy-merge.ts reads them). */
export function hasConflictMarkers(text: Buffer): boolean {
  return text.subarray(0, 8).toString('latin1') === '<<<<<<< ';
}

export function verifyPolicy(text: Buffer | undefined, file: string, vaultId: string, secretKey: Uint8Array): Policy {
  if (text === undefined) {
    throw new VaultError('tampered', `${file} is missing: every vault has one from \`vault init\`; restore it from version control or a backup`);
  }
  if (hasConflictMarkers(text)) {
    throw new VaultError(
      'corrupt',
      `${file} holds a git merge conflict: two branches changed the policy; run \`vault policy merge\` ` +
        '(it needs an unlock) to write their union, and `vault git setup` once so that git merges it by itself',
    );
  }
  const parsed = parseVaultFile(policyFileSchema, 'sealvault-policy', text, file);
  const policy: Policy = {
    revision: parsed.revision, grants: parsed.grants,
    ...(parsed.revoked !== undefined ? { revoked: parsed.revoked } : {}),
  };
  if (!constantTimeEqual(fromBase64(parsed.mac), policyMac(secretKey, canonicalPolicy(vaultId, policy)))) {
    throw new VaultError(
      'tampered',
      `${file} fails its authentication check: it was edited without the vault's key, so none of its grants are used; restore it from version control or a backup`,
    );
  }
  return policy;
}

/** What runs: the program (or script) and, for a script, its interpreter. */
export interface RunTarget {
  path: string;
  sha256: string;
  interpreter?: { path: string; sha256: string };
}

/** Whether grant `g` is for exactly this program, or this script run by this interpreter (by their bytes). */
function sameProgram(g: Grant, target: RunTarget): boolean {
  if (g.sha256 !== target.sha256) return false;
  if (target.interpreter === undefined) return g.interpreter === undefined;
  return g.interpreter?.sha256 === target.interpreter.sha256;
}

/** The grant that lets `target`, run with `args`, receive `secret` at `tier`. */
export function findGrant(policy: Policy, secret: string, target: RunTarget, args: readonly string[], tier: Tier): Grant | undefined {
  return policy.grants.find(
    (g) =>
      g.secret === secret &&
      sameProgram(g, target) &&
      tierAtLeast(tier, g.min_tier) &&
      (g.args === null || (g.args.length === args.length && g.args.every((a, i) => a === args[i]))),
  );
}

export function sameGrantTarget(a: Grant, b: { secret: string; sha256: string; args: string[] | null }): boolean {
  return a.secret === b.secret && a.sha256 === b.sha256 && JSON.stringify(a.args) === JSON.stringify(b.args);
}

export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export interface ReleaseRequest {
  target: RunTarget;
  /** The arguments after argv[0] (for a script: after the script). */
  args: readonly string[];
  tier: Tier;
  /** --only: exactly these secrets; otherwise every secret granted to the program. */
  only?: readonly string[];
  /** The `vault allow` that would grant this run, with NAME where the secret's name goes. */
  allowHint: string;
}

/** The host paths lockdown adds for a run that releases `names`: the union of what their grants give. */
export function grantedPaths(policy: Policy, names: readonly string[], request: ReleaseRequest): { ro: string[]; rw: string[] } {
  const grants = matchedGrants(policy, names, request);
  return { ro: [...new Set(grants.flatMap((g) => g.ro ?? []))], rw: [...new Set(grants.flatMap((g) => g.rw ?? []))] };
}

/** What the grants of a run say of its environment: the union of their pins and pass-throughs. */
export function grantedEnvironment(policy: Policy, names: readonly string[], request: ReleaseRequest): { env: Record<string, string>; passEnv: string[] } {
  const grants = matchedGrants(policy, names, request);
  return { env: Object.assign({}, ...grants.map((g) => g.env ?? {})) as Record<string, string>, passEnv: [...new Set(grants.flatMap((g) => g.pass_env ?? []))] };
}

/**
 * The tier a run gets when its caller names none: the strongest its grants ask for, and at least
 * hardened (the default before grants carried their run). `args` after the program, as findGrant.
 */
export function grantedTier(policy: Policy, target: RunTarget, args: readonly string[], only?: readonly string[]): Tier {
  const tiers = policy.grants
    .filter((g) => sameProgram(g, target) && (only === undefined || only.includes(g.secret)))
    .filter((g) => g.args === null || (g.args.length === args.length && g.args.every((a, i) => a === args[i])))
    .map((g) => TIERS.indexOf(g.min_tier));
  return TIERS[Math.max(TIERS.indexOf('hardened'), ...tiers)]!;
}

/** The network grant `g` allows its program in lockdown: its --net, else none for a lockdown grant and the host's for a weaker one (which may run in hardened, on the host's network, anyway). */
function allowedNetwork(g: Grant): Network {
  if (g.net !== undefined) return fromField(g.net);
  return g.min_tier === 'lockdown' ? { mode: 'none' } : { mode: 'host' };
}

/**
 * lockdown's network for a run that releases `names`: what the caller asked for (`vault exec
 * --net`), which every grant of the run must allow, else what all of them give (a grant without
 * --net gives loopback only). Refuses a wider ask, naming the grant and what it allows.
 */
export function runNetwork(policy: Policy, names: readonly string[], request: ReleaseRequest, asked?: Network): Network {
  const grants = matchedGrants(policy, names, request);
  if (asked !== undefined) {
    const narrower = grants.find((g) => !within(asked, allowedNetwork(g)));
    if (narrower !== undefined) {
      throw new VaultError(
        'refused',
        `--net ${networkText(asked)} is more than the grant of ${narrower.secret} to ${narrower.path} allows (${networkText(allowedNetwork(narrower))}); ` +
          'an exec flag may only narrow a grant: change the grant with `vault allow … --net`',
      );
    }
    return asked;
  }
  return intersect(grants.map((g) => fromField(g.net)));
}

/**
 * How the run's output is masked: as the caller asks (`undefined`: not at all), unless a grant of
 * the run requires masking, when a caller's --no-mask is refused, naming the grant.
 */
export function runMask(
  policy: Policy, names: readonly string[], request: ReleaseRequest, asked: MaskStyle | undefined, noMask: boolean,
): MaskStyle | undefined {
  const masked = matchedGrants(policy, names, request).find((g) => g.mask !== undefined);
  if (masked === undefined) return asked;
  if (noMask) {
    throw new VaultError('refused', `--no-mask: the grant of ${masked.secret} to ${masked.path} masks the program's output; an exec flag may only narrow a grant`);
  }
  return asked ?? masked.mask;
}

/** A secret delivered as a file: where the grant puts it in lockdown (absent: /tmp/.vault-secrets/NAME). */
export interface FileDelivery {
  name: string;
  path?: string;
}

/** The released secrets that go as files: those their grants deliver so (at the grant's path), and the caller's --file names. */
export function runFiles(policy: Policy, names: readonly string[], request: ReleaseRequest, asked: readonly string[]): FileDelivery[] {
  const byGrant = new Map(matchedGrants(policy, names, request).filter((g) => g.file !== undefined).map((g) => [g.secret, g.file!.path]));
  const files = names.filter((n) => byGrant.has(n) || asked.includes(n)).map((name) => {
    const at = byGrant.get(name);
    return at !== undefined ? { name, path: at } : { name };
  });
  const environment = grantedEnvironment(policy, names, request);
  checkFileDeliveries(files, names.filter((n) => !files.some((f) => f.name === n)), Object.keys(environment.env), environment.passEnv);
  return files;
}

/**
 * A file's path reaches the target as NAME_FILE: refused when that variable is also a secret
 * released as a variable, one the grant pins, or one it passes from the caller (either would
 * silently replace the other; the caller's never reaches the target, environment.ts), and when two
 * files would share a path.
 */
export function checkFileDeliveries(
  files: readonly FileDelivery[], variables: readonly string[], pinned: readonly string[], passed: readonly string[] = [],
): void {
  for (const file of files) {
    const variable = `${file.name}_FILE`;
    const pattern = passed.find((p) => matches(variable, p));
    let what: string | undefined;
    if (variables.includes(variable)) what = `the secret ${variable}, released to the same run`;
    else if (pinned.includes(variable)) what = `a variable its grant pins (--env ${variable})`;
    else if (pattern !== undefined) what = `a variable its grant passes from the caller (--pass-env ${pattern})`;
    if (what !== undefined) {
      throw new VaultError('refused', `${file.name} goes as a file whose path would be in ${variable}, which is already ${what}; deliver one of them another way`);
    }
  }
  const paths = files.filter((f) => f.path !== undefined).map((f) => f.path!);
  const twice = paths.find((p, i) => paths.indexOf(p) !== i);
  if (twice !== undefined) throw new VaultError('usage', `two secrets would be delivered at ${twice}; give each its own --file NAME=PATH`);
}

function matchedGrants(policy: Policy, names: readonly string[], request: ReleaseRequest): Grant[] {
  return names.map((name) => findGrant(policy, name, request.target, request.args, request.tier)).filter((g) => g !== undefined);
}

/** Grants made for this path, for any content: what a changed file was granted. */
function grantsAtPath(policy: Policy, target: RunTarget): Grant[] {
  return policy.grants.filter((g) => g.path === target.path && !sameProgram(g, target));
}

/** The refusal for a file that changed since its grants: every secret they hold, and the one command that renews them. */
export function changedSince(target: RunTarget, old: Grant[]): VaultError {
  const secrets = [...new Set(old.map((g) => g.secret))].sort();
  const hashes = [...new Set(old.map((g) => g.sha256))];
  const interpreterChanged = old.some((g) => g.sha256 === target.sha256);
  const what = interpreterChanged ? `its interpreter ${target.interpreter?.path ?? ''} changed` : `${target.path} changed`;
  return new VaultError(
    'refused',
    `${what} since ${secrets.join(', ')} ${secrets.length === 1 ? 'was' : 'were'} granted to it (granted sha256 ${hashes.join(', ')}, now ${target.sha256}${target.interpreter !== undefined ? ` run by ${target.interpreter.sha256.slice(0, 16)}…` : ''}); ` +
      `if the change is yours, run \`vault allow --renew ${shellQuote(target.path)}\`, which grants ${secrets.length === 1 ? 'it' : 'them all'} again to the new version`,
  );
}

/**
 * Which secrets `vault exec` may release for this run. Refuses, naming the secret, the program, its
 * hash and the command that would fix it, whenever one of them lacks a matching grant.
 */
export function secretsToRelease(policy: Policy, request: ReleaseRequest): string[] {
  const { target, args, tier } = request;
  const hint = (name: string) => `\`${request.allowHint.replace('NAME', name)}\``;
  const names = request.only ?? [...new Set(policy.grants.filter((g) => sameProgram(g, target)).map((g) => g.secret))];
  if (names.length === 0) {
    const old = grantsAtPath(policy, target);
    if (old.length > 0) throw changedSince(target, old);
    throw new VaultError('refused', `no secret is granted to ${target.path} (sha256 ${target.sha256}); grant one with ${hint('NAME')}`);
  }
  for (const name of names) {
    if (findGrant(policy, name, target, args, tier) !== undefined) continue;
    const sameBinary = policy.grants.filter((g) => g.secret === name && sameProgram(g, target));
    const weakest = sameBinary.find((g) => !tierAtLeast(tier, g.min_tier));
    let why: string;
    if (weakest !== undefined && sameBinary.every((g) => !tierAtLeast(tier, g.min_tier))) {
      why = `its grant needs tier ${weakest.min_tier} or stronger; run with --tier ${weakest.min_tier}`;
    } else if (sameBinary.length > 0) {
      why = `it is granted only with the arguments ${sameBinary.map((g) => JSON.stringify(g.args)).join(' or ')}`;
    } else if (grantsAtPath(policy, target).some((g) => g.secret === name)) {
      throw changedSince(target, grantsAtPath(policy, target));
    } else {
      why = `run ${hint(name)} to grant it`;
    }
    throw new VaultError('refused', `${name} is not granted to ${target.path} (sha256 ${target.sha256}): ${why}`);
  }
  return [...names];
}
