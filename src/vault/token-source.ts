/**
 * Where a CI token comes from: `VAULT_KEY`, or the file `VAULT_KEY_FILE` names. The file exists so
 * that the token need not sit in any process's environment, where same-user processes (and, in tier
 * none, the target) could read it through /proc/PID/environ.
 */
import * as fs from 'node:fs';
import { VaultError } from './errors.js';
import { readPrivateFile } from './private-file.js';

export interface GivenToken {
  text: string;
  /** How messages name it: `VAULT_KEY` or `VAULT_KEY_FILE (/path)`. */
  source: string;
}

/** A token file holds one line of about 50 bytes; anything much larger is not a token file. */
const MAX_TOKEN_FILE_BYTES = 4096;

/** The token the caller gave, read once, or undefined when neither variable is set. */
export function givenToken(env: NodeJS.ProcessEnv = process.env): GivenToken | undefined {
  const inline = env.VAULT_KEY;
  const file = env.VAULT_KEY_FILE;
  const hasInline = inline !== undefined && inline !== '';
  const hasFile = file !== undefined && file !== '';
  if (hasInline && hasFile) throw new VaultError('usage', 'both VAULT_KEY and VAULT_KEY_FILE are set; unset one of them');
  if (hasInline) return { text: inline, source: 'VAULT_KEY' };
  if (hasFile) return { text: readTokenFile(file), source: `VAULT_KEY_FILE (${file})` };
  return undefined;
}

/** The token file's real path, for `vault exec` to hide from the target; undefined when none is set. */
export function tokenFilePath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = env.VAULT_KEY_FILE;
  if (file === undefined || file === '') return undefined;
  try {
    return fs.realpathSync(file);
  } catch {
    return undefined;
  }
}

function readTokenFile(file: string): string {
  return readPrivateFile(file, 'VAULT_KEY_FILE', MAX_TOKEN_FILE_BYTES, 'the token');
}
