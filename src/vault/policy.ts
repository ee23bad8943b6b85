/**
 * Grants: which binary (by SHA-256) may receive which secret, at which minimum tier and, for
 * interpreters, with which exact arguments. The policy file is authenticated with a key derived
 * from the private key, so writing the vault files is not enough to add a grant.
 */
import * as path from 'node:path';
import { constantTimeEqual, fromBase64, policyMac, toBase64 } from './crypto.js';
import { VaultError } from './errors.js';
import { type Tier, tierAtLeast } from '../sandbox/tiers.js';
import { FORMAT_VERSION, type Grant, parseVaultFile, type PolicyFile, policyFileSchema } from './format.js';

/**
 * Programs that run whatever code or command they are given. A grant to one of them is a grant to
 * anything, so it needs pinned arguments or an explicit --any-args.
 */
const INTERPRETER =
  /^(?:sh|ash|bash|dash|zsh|ksh|mksh|yash|fish|csh|tcsh|busybox|toybox|env|xargs|nice|nohup|timeout|stdbuf|setsid|sudo|doas|su|runuser|chroot|strace|ltrace|gdb|valgrind|expect|python[0-9.]*|pypy[0-9.]*|node(?:js)?|deno|bun|perl[0-9.]*|ruby[0-9.]*|irb|php[0-9.]*|lua[0-9.]*|luajit|tclsh[0-9.]*|wish[0-9.]*|[gmn]?awk|sed|R|Rscript|java|jshell|julia|pwsh|osascript|guile[0-9.]*|racket|sbcl|ghci|runghc|erl|escript|elixir|iex|swift|ld-linux.*\.so.*)$/;

export function isInterpreter(...paths: string[]): boolean {
  return paths.some((p) => INTERPRETER.test(path.basename(p)));
}

export interface Policy {
  revision: number;
  grants: Grant[];
}

/** The bytes the MAC covers: fixed key order, grant fields in the order of docs/FORMAT.md. */
function canonicalPolicy(vaultId: string, policy: Policy): string {
  // ro and rw come after created, and only when a grant has them: a policy written before they
  // existed keeps its MAC
  const grants = policy.grants.map((g) => ({
    secret: g.secret, sha256: g.sha256, path: g.path, min_tier: g.min_tier, args: g.args, created: g.created,
    ...(g.ro !== undefined ? { ro: g.ro } : {}),
    ...(g.rw !== undefined ? { rw: g.rw } : {}),
  }));
  return JSON.stringify({ format: 'sealvault-policy', version: FORMAT_VERSION, vault_id: vaultId, revision: policy.revision, grants });
}

export function sealPolicy(vaultId: string, secretKey: Uint8Array, policy: Policy): PolicyFile {
  return {
    format: 'sealvault-policy',
    version: FORMAT_VERSION,
    revision: policy.revision,
    grants: policy.grants,
    mac: toBase64(policyMac(secretKey, canonicalPolicy(vaultId, policy))),
  };
}

export function verifyPolicy(text: Buffer | undefined, file: string, vaultId: string, secretKey: Uint8Array): Policy {
  if (text === undefined) {
    throw new VaultError('tampered', `${file} is missing: every vault has one from \`vault init\`; restore it from version control or a backup`);
  }
  const parsed = parseVaultFile(policyFileSchema, 'sealvault-policy', text, file);
  const policy = { revision: parsed.revision, grants: parsed.grants };
  if (!constantTimeEqual(fromBase64(parsed.mac), policyMac(secretKey, canonicalPolicy(vaultId, policy)))) {
    throw new VaultError(
      'tampered',
      `${file} fails its authentication check: it was edited without the vault's key, so none of its grants are used; restore it from version control or a backup`,
    );
  }
  return policy;
}

/** The grant that lets the binary with `sha256`, run with `args`, receive `secret` at `tier`. */
export function findGrant(policy: Policy, secret: string, sha256: string, args: readonly string[], tier: Tier): Grant | undefined {
  return policy.grants.find(
    (g) =>
      g.secret === secret &&
      g.sha256 === sha256 &&
      tierAtLeast(tier, g.min_tier) &&
      (g.args === null || (g.args.length === args.length && g.args.every((a, i) => a === args[i]))),
  );
}

/** The host paths lockdown adds for a run that releases `names`: the union of what their grants give. */
export function grantedPaths(policy: Policy, names: readonly string[], request: ReleaseRequest): { ro: string[]; rw: string[] } {
  const grants = names.map((name) => findGrant(policy, name, request.binary.sha256, request.args, request.tier)).filter((g) => g !== undefined);
  return {
    ro: [...new Set(grants.flatMap((g) => g.ro ?? []))],
    rw: [...new Set(grants.flatMap((g) => g.rw ?? []))],
  };
}

export function sameGrantTarget(a: Grant, b: { secret: string; sha256: string; args: string[] | null }): boolean {
  return a.secret === b.secret && a.sha256 === b.sha256 && JSON.stringify(a.args) === JSON.stringify(b.args);
}

/** The `vault allow` that would grant `name` for this run: an interpreter's arguments must be pinned. */
function allowCommand(name: string, binaryPath: string, args: readonly string[]): string {
  const pinned = isInterpreter(binaryPath) ? args.map((a) => ` --arg ${shellQuote(a)}`).join('') : '';
  return `\`vault allow ${name} --to ${binaryPath}${pinned}\``;
}

function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export interface ReleaseRequest {
  binary: { path: string; sha256: string };
  /** The arguments after argv[0]. */
  args: readonly string[];
  tier: Tier;
  /** --only: exactly these secrets; otherwise every secret granted to the binary. */
  only?: readonly string[];
}

/**
 * Which secrets `vault exec` may release for this run. Refuses, naming the secret, the binary, its
 * hash and the command that would fix it, whenever one of them lacks a matching grant.
 */
export function secretsToRelease(policy: Policy, request: ReleaseRequest): string[] {
  const { binary, args, tier } = request;
  const names = request.only ?? [...new Set(policy.grants.filter((g) => g.sha256 === binary.sha256).map((g) => g.secret))];
  if (names.length === 0) {
    const samePath = policy.grants.find((g) => g.path === binary.path);
    if (samePath !== undefined) {
      throw new VaultError(
        'refused',
        `${binary.path} changed since ${samePath.secret} was granted to it (granted sha256 ${samePath.sha256}, now ${binary.sha256}); if the change is yours, run ${allowCommand(samePath.secret, binary.path, args)} again`,
      );
    }
    throw new VaultError('refused', `no secret is granted to ${binary.path} (sha256 ${binary.sha256}); grant one with ${allowCommand('NAME', binary.path, args)}`);
  }
  for (const name of names) {
    if (findGrant(policy, name, binary.sha256, args, tier) !== undefined) continue;
    const sameBinary = policy.grants.filter((g) => g.secret === name && g.sha256 === binary.sha256);
    const samePath = policy.grants.find((g) => g.secret === name && g.path === binary.path);
    const weakest = sameBinary.find((g) => !tierAtLeast(tier, g.min_tier));
    let why: string;
    if (weakest !== undefined && sameBinary.every((g) => !tierAtLeast(tier, g.min_tier))) {
      why = `its grant needs tier ${weakest.min_tier} or stronger; run with --tier ${weakest.min_tier}`;
    } else if (sameBinary.length > 0) {
      why = `it is granted only with the arguments ${sameBinary.map((g) => JSON.stringify(g.args)).join(' or ')}`;
    } else if (samePath !== undefined) {
      why = `${binary.path} changed since the grant (granted sha256 ${samePath.sha256}); if the change is yours, run ${allowCommand(name, binary.path, args)} again`;
    } else {
      why = `run ${allowCommand(name, binary.path, args)} to grant it`;
    }
    throw new VaultError('refused', `${name} is not granted to ${binary.path} (sha256 ${binary.sha256}): ${why}`);
  }
  return [...names];
}
