/**
 * The vault file format of docs/FORMAT.md, as zod schemas, and the one function that turns the
 * bytes of a vault file into validated data or a classified error (corrupt, foreign, future).
 */
import * as z from 'zod/mini';
import { TIERS } from '../sandbox/tiers.js';
import { VaultError } from './errors.js';

export const FORMAT_VERSION = 1;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Canonical base64 only (RFC 4648 section 3.5): unused pad bits must be zero, so that the same bytes
 * have one text. vault_id is compared and MACed as text.
 */
const canonical = z.refine<string>((s) => Buffer.from(s, 'base64').toString('base64') === s, 'must be canonical base64');

/** A base64 string that decodes to exactly `bytes` bytes. */
function base64Of(bytes: number) {
  return z.string().check(
    z.regex(BASE64),
    canonical,
    z.refine((s) => Buffer.from(s, 'base64').length === bytes, `must decode to ${bytes} bytes`),
  );
}

const base64Any = z.string().check(z.regex(BASE64), z.minLength(4), canonical);
const time = z.iso.datetime();
const hex64 = z.string().check(z.regex(/^[0-9a-f]{64}$/));
export const SLOT_ID_PATTERN = /^[0-9a-f]{12}$/;

export const vaultFileSchema = z.strictObject({
  format: z.literal('sealvault-vault'),
  version: z.literal(FORMAT_VERSION),
  vault_id: base64Of(16),
  public_key: base64Of(32),
  created: time,
});
export type VaultFile = z.infer<typeof vaultFileSchema>;

/** A slot's label: who or what it is for, for people; 1–64 printable characters, no control characters. */
export const SLOT_LABEL_PATTERN = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]{1,64}$/u;
/** An age X25519 recipient (age-encryption.org/v1, "X25519 recipient type"): Bech32, HRP "age". */
export const AGE_RECIPIENT_PATTERN = /^age1[02-9ac-hj-np-z]{58}$/;

const slotCommon = {
  format: z.literal('sealvault-slot'),
  version: z.literal(FORMAT_VERSION),
  id: z.string().check(z.regex(SLOT_ID_PATTERN)),
  created: time,
  label: z.optional(z.string().check(z.regex(SLOT_LABEL_PATTERN))),
  nonce: base64Of(24),
  wrapped_key: base64Of(48),
  /** BLAKE2b-256 under a key from the private key over the rest of the slot (docs/FORMAT.md, "Slot MAC"). */
  mac: z.optional(base64Of(32)),
};

/**
 * argon2id parameters a slot file may hold (libsodium's crypto_pwhash bounds: opslimit 1..2^32-1,
 * memlimit from 8 KiB). A slot within these is well-formed; whether unlock spends that much on it is
 * KDF_CAP's business (keyslots.ts), so a slot over the cap is skipped, not a damaged file.
 */
export const PASSPHRASE_LIMITS = { opsMin: 1, opsMax: 0xffffffff, memMin: 8192, memMax: 2 ** 42 } as const;

export const slotFileSchema = z.discriminatedUnion('kind', [
  z.strictObject({ ...slotCommon, kind: z.literal('token') }),
  z.strictObject({
    ...slotCommon,
    kind: z.literal('keychain'),
    keychain: z.strictObject({ service: z.literal('sealvault'), account: z.string().check(z.regex(/^[A-Za-z0-9_-]{22}\/[0-9a-f]{12}$/)) }),
  }),
  z.strictObject({
    ...slotCommon,
    kind: z.literal('recipient'),
    /** The KEK as an age file (binary, age-encryption.org/v1) to this one X25519 recipient. */
    recipient: z.strictObject({ age_recipient: z.string().check(z.regex(AGE_RECIPIENT_PATTERN)), age_file: z.string().check(z.regex(BASE64), z.minLength(4), z.maxLength(4096), canonical) }),
  }),
  z.strictObject({
    ...slotCommon,
    kind: z.literal('passphrase'),
    kdf: z.strictObject({
      alg: z.literal('argon2id13'),
      opslimit: z.int().check(z.gte(PASSPHRASE_LIMITS.opsMin), z.lte(PASSPHRASE_LIMITS.opsMax)),
      memlimit: z.int().check(z.gte(PASSPHRASE_LIMITS.memMin), z.lte(PASSPHRASE_LIMITS.memMax)),
      salt: base64Of(16),
    }),
  }),
]);
export type SlotFile = z.infer<typeof slotFileSchema>;
/** The slot kinds this version knows; a slot of another kind is skipped (keyslots.ts). */
export const SLOT_KINDS = ['token', 'keychain', 'recipient', 'passphrase'] as const;
export type SlotKind = SlotFile['kind'];

export const secretFileSchema = z.strictObject({
  format: z.literal('sealvault-secret'),
  version: z.literal(FORMAT_VERSION),
  created: time,
  updated: time,
  sealed: base64Any,
  /**
   * A configuration value, for `vault list` (which has no key): a hint only. What unmasks is the kind
   * sealed with the value (crypto.ts sealSecret; docs/FORMAT.md, "Configuration values").
   */
  config: z.optional(z.literal(true)),
});
export type SecretFile = z.infer<typeof secretFileSchema>;

const absolutePath = z.string().check(z.refine((p) => p.startsWith('/'), 'must be absolute'));
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const grantSchema = z.strictObject({
  secret: z.string().check(z.regex(/^[A-Z_][A-Z0-9_]{0,127}$/)),
  sha256: hex64,
  path: absolutePath,
  min_tier: z.enum(TIERS),
  args: z.nullable(z.array(z.string())),
  created: time,
  /** lockdown: more of the host, read-only and read-write (absent: none). */
  ro: z.optional(z.array(absolutePath)),
  rw: z.optional(z.array(absolutePath)),
  /** A script's interpreter, pinned with it (absent: `path` is a program run as it is). */
  interpreter: z.optional(z.strictObject({ path: absolutePath, sha256: hex64, arg: z.optional(z.string()) })),
  /** Environment values pinned by the grant, and the caller's variables it lets through. */
  env: z.optional(z.record(z.string().check(z.regex(ENV_NAME)), z.string())),
  pass_env: z.optional(z.array(z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/)))),
  /** lockdown's network (src/sandbox/network.ts): "none" (absent), "host", or HOST:PORT destinations. */
  net: z.optional(z.union([z.enum(['none', 'host']), z.array(z.string().check(z.regex(/^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}$/))).check(z.minLength(1), z.maxLength(64))])),
  /** Deliver the secret as a file, not a variable; `path` (lockdown only) where the sandbox shows it. */
  file: z.optional(z.strictObject({ path: z.optional(absolutePath) })),
  /** Mask the released values in the program's output whatever the caller says (`vault exec --no-mask` is refused). */
  mask: z.optional(z.enum(['stars', 'name'])),
});
export type Grant = z.infer<typeof grantSchema>;

/**
 * What a policy remembers was revoked (docs/FORMAT.md, "Revocations"): a grant, by the identity
 * (secret, sha256, created) no other grant has, or a key slot, by its id, with when it was removed.
 */
export const revocationSchema = z.union([
  z.strictObject({ secret: z.string().check(z.regex(/^[A-Z_][A-Z0-9_]{0,127}$/)), sha256: hex64, created: time }),
  z.strictObject({ slot: z.string().check(z.regex(SLOT_ID_PATTERN)), removed: time }),
]);
export type Revocation = z.infer<typeof revocationSchema>;

export const policyFileSchema = z.strictObject({
  format: z.literal('sealvault-policy'),
  version: z.literal(FORMAT_VERSION),
  revision: z.int().check(z.gte(0)),
  grants: z.array(grantSchema),
  revoked: z.optional(z.array(revocationSchema).check(z.minLength(1))),
  mac: base64Of(32),
});
export type PolicyFile = z.infer<typeof policyFileSchema>;

/** How deep an audit entry's details may nest (docs/FORMAT.md, "audit.log"): deeper would overflow the stack of who prints it. */
export const MAX_DETAILS_DEPTH = 16;

/** Whether `value` nests arrays and objects no deeper than `limit`; iterative, so any input is safe. */
function nestsAtMost(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (typeof item !== 'object' || item === null) continue;
    if (depth >= limit) return false;
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return true;
}

/** An audit entry's `details`: an object of any members, nesting at most MAX_DETAILS_DEPTH deep. */
export const auditDetailsSchema = z.record(z.string(), z.unknown()).check(
  z.refine((d) => nestsAtMost(d, MAX_DETAILS_DEPTH), `must nest at most ${MAX_DETAILS_DEPTH} deep`),
);
export type AuditDetails = z.infer<typeof auditDetailsSchema>;

export const auditEntrySchema = z.strictObject({
  seq: z.int().check(z.gte(1)),
  time,
  event: z.string().check(z.regex(/^[a-z-]{1,32}$/)),
  actor: z.strictObject({ uid: z.int(), user: z.string() }),
  details: auditDetailsSchema,
  prev: hex64,
});
export type AuditEntry = z.infer<typeof auditEntrySchema>;

/** What a file of each kind is called in messages, and its `format` string. */
const FORMAT_NAMES = {
  'sealvault-vault': 'vault file',
  'sealvault-slot': 'key slot',
  'sealvault-secret': 'secret file',
  'sealvault-policy': 'policy file',
} as const;
type FormatName = keyof typeof FORMAT_NAMES;

/**
 * Parses one vault file following "Classifying a bad file" in docs/FORMAT.md. The message names
 * the file and says what to do: restore it from version control or a backup.
 */
export function parseVaultFile<S extends z.ZodMiniType>(
  schema: S,
  format: FormatName,
  text: Buffer | string,
  file: string,
): z.infer<S> {
  const what = FORMAT_NAMES[format];
  let data: unknown;
  try {
    data = JSON.parse(typeof text === 'string' ? text : new TextDecoder('utf-8', { fatal: true }).decode(text));
  } catch {
    throw new VaultError('corrupt', `${file} is not valid JSON (truncated or damaged ${what}); restore it from version control or a backup`);
  }
  const fields = typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>) : {};
  if (fields.format !== format) {
    throw new VaultError('foreign', `${file} is not a sealvault ${what} (no "format":"${format}"); is --vault pointing at the right directory?`);
  }
  if (typeof fields.version === 'number' && fields.version > FORMAT_VERSION) {
    throw new VaultError(
      'futureVersion',
      `${file} is a version ${fields.version} ${what}, newer than this sealvault understands (version ${FORMAT_VERSION}); upgrade sealvault`,
    );
  }
  const result = schema.safeParse(data);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? 'its fields' : `field ${issue.path.join('.')}`;
    throw new VaultError('corrupt', `${file} is a damaged ${what}: ${where} does not follow docs/FORMAT.md; restore it from version control or a backup`);
  }
  return result.data as z.infer<S>;
}

/** The JSON value of `text`, or undefined when it is not JSON; for callers that classify it themselves. */
export function jsonOrUndefined(text: string | Buffer): unknown {
  try {
    return JSON.parse(typeof text === 'string' ? text : text.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** JSON as written to vault files: one object, one trailing newline. */
export function serialize(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}
