/**
 * Where age identities come from for unlocking recipient slots: the file `--identity FILE` names, else
 * the one `VAULT_IDENTITY_FILE` names. The file is in age's identity format (age-keygen(1): lines of
 * `AGE-SECRET-KEY-1…`, `#` comments and blank lines), kept private like a token file.
 */
import * as fs from 'node:fs';
import { VaultError } from './errors.js';
import { readPrivateFile } from './private-file.js';

/** An age X25519 identity (age-encryption.org/v1): Bech32, HRP "age-secret-key-", upper case. */
const IDENTITY_PATTERN = /^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$/;
/** An identity file of a person holds a few lines; anything much larger is not one. */
const MAX_IDENTITY_FILE_BYTES = 64 * 1024;

/** Identity files given to this process (by --identity), for `vault exec` to hide from its target. */
const given = new Set<string>();

/**
 * Every identity file given to this process, read or not (real paths), and VAULT_IDENTITY_FILE's:
 * lockdown keeps them out of the target's view, as the token file.
 */
export function identityFilePaths(env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = env.VAULT_IDENTITY_FILE;
  const files = [...given, ...(fromEnv !== undefined && fromEnv !== '' ? [fromEnv] : [])];
  return [...new Set(files.flatMap((file) => {
    try {
      return [fs.realpathSync(file)];
    } catch {
      return []; // gone: nothing to hide
    }
  }))];
}

/** Records the identity file `--identity` named, so that it is hidden from targets even when a token unlocks. */
export function noteIdentityFile(file: string): void {
  given.add(file);
}

export interface GivenIdentities {
  identities: string[];
  /** Their recipients (age1…), in the same order: which recipient slots to try. */
  recipients: string[];
  /** How messages name it: `--identity /path` or `VAULT_IDENTITY_FILE (/path)`. */
  source: string;
}

/**
 * The identities of the file given by `flagFile` (from --identity) or VAULT_IDENTITY_FILE, with their
 * recipients, or undefined when neither is given. Errors as readPrivateFile's; a line that is neither
 * an X25519 identity (checksum included), a comment nor blank is a usage error (2) naming its number
 * and never its text, and so is a file without one.
 */
export async function givenIdentities(flagFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<GivenIdentities | undefined> {
  if (flagFile !== undefined) noteIdentityFile(flagFile);
  const fromEnv = env.VAULT_IDENTITY_FILE;
  const file = flagFile ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined);
  if (file === undefined) return undefined;
  const variable = flagFile !== undefined ? '--identity' : 'VAULT_IDENTITY_FILE';
  const source = flagFile !== undefined ? `--identity ${file}` : `VAULT_IDENTITY_FILE (${file})`;
  const identities: string[] = [];
  const recipients: string[] = [];
  const lines = readPrivateFile(file, variable, MAX_IDENTITY_FILE_BYTES, 'an age identity').split('\n');
  const { identityToRecipient } = await import('age-encryption');
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    // the message never quotes the line: a typo'd identity is still almost all of a private key
    const bad = new VaultError('usage', `${source}: line ${index + 1} is not an age X25519 identity (AGE-SECRET-KEY-1…, with a valid checksum); give the file \`age-keygen\` or \`vault identity new\` wrote`);
    if (!IDENTITY_PATTERN.test(line)) throw bad;
    try {
      recipients.push(await identityToRecipient(line));
    } catch {
      throw bad;
    }
    identities.push(line);
  }
  if (identities.length === 0) throw new VaultError('usage', `${source} holds no age identity (AGE-SECRET-KEY-1…)`);
  return { identities, recipients, source };
}
