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
  const grants = policy.grants.map((g) => ({ secret: g.secret, sha256: g.sha256, path: g.path, min_tier: g.min_tier, args: g.args, created: g.created }));
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

export function sameGrantTarget(a: Grant, b: { secret: string; sha256: string; args: string[] | null }): boolean {
  return a.secret === b.secret && a.sha256 === b.sha256 && JSON.stringify(a.args) === JSON.stringify(b.args);
}
