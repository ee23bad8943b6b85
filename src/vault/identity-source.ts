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

/** The real paths of the identity files this process read, for `vault exec` to hide from its target. */
const read = new Set<string>();

/** Every identity file this process has read (real paths): lockdown keeps them out of the target's view. */
export function identityFilePaths(): string[] {
  return [...read];
}

export interface GivenIdentities {
  identities: string[];
  /** How messages name it: `--identity /path` or `VAULT_IDENTITY_FILE (/path)`. */
  source: string;
}

/**
 * The identities of the file given by `flagFile` (from --identity) or VAULT_IDENTITY_FILE, or
 * undefined when neither is given. Errors as readPrivateFile's; a line that is neither an X25519
 * identity, a comment nor blank is a usage error (2) naming its number, and so is a file without one.
 */
export function givenIdentities(flagFile: string | undefined, env: NodeJS.ProcessEnv = process.env): GivenIdentities | undefined {
  const fromEnv = env.VAULT_IDENTITY_FILE;
  const file = flagFile ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined);
  if (file === undefined) return undefined;
  const variable = flagFile !== undefined ? '--identity' : 'VAULT_IDENTITY_FILE';
  const source = flagFile !== undefined ? `--identity ${file}` : `VAULT_IDENTITY_FILE (${file})`;
  const identities: string[] = [];
  readPrivateFile(file, variable, MAX_IDENTITY_FILE_BYTES, 'an age identity').split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (!IDENTITY_PATTERN.test(line)) {
      throw new VaultError('usage', `${source}: line ${index + 1} is not an age X25519 identity (AGE-SECRET-KEY-1…); give the file \`age-keygen\` or \`vault identity new\` wrote`);
    }
    identities.push(line);
  });
  if (identities.length === 0) throw new VaultError('usage', `${source} holds no age identity (AGE-SECRET-KEY-1…)`);
  read.add(fs.realpathSync(file));
  return { identities, source };
}
