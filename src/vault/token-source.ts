/**
 * Where a CI token comes from: `VAULT_KEY`, or the file `VAULT_KEY_FILE` names. The file exists so
 * that the token need not sit in any process's environment, where same-user processes (and, in tier
 * none, the target) could read it through /proc/PID/environ.
 */
import * as fs from 'node:fs';
import { VaultError } from './errors.js';

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
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOCTTY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new VaultError(code === 'ENOENT' ? 'notFound' : 'usage', `VAULT_KEY_FILE ${file} cannot be opened (${code}); point it at the file holding the token`);
  }
  const bytes = Buffer.alloc(MAX_TOKEN_FILE_BYTES + 1);
  try {
    // checked on the open file, so that the file checked is the file read
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new VaultError('usage', `VAULT_KEY_FILE ${file} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new VaultError('refused', `VAULT_KEY_FILE ${file} is readable or writable by group or others (mode ${mode}); \`chmod 600 ${file}\` and keep it private`);
    }
    let length = 0;
    for (;;) {
      const read = fs.readSync(fd, bytes, length, bytes.length - length, null);
      if (read === 0) break;
      length += read;
      if (length > MAX_TOKEN_FILE_BYTES) throw new VaultError('usage', `VAULT_KEY_FILE ${file} is larger than ${MAX_TOKEN_FILE_BYTES} bytes: it does not hold a token`);
    }
    return bytes.subarray(0, length).toString('utf8');
  } finally {
    bytes.fill(0);
    fs.closeSync(fd);
  }
}
