/**
 * Reading a file that holds a credential (a token file, an age identity file): it must be a regular
 * file that only its owner may read or write, and small; checked on the open file, so that the file
 * checked is the file read. Like ssh refusing a private key that others can read.
 */
import * as fs from 'node:fs';
import { VaultError } from './errors.js';

/**
 * The text of `file` (UTF-8), named `variable` in messages (e.g. `VAULT_KEY_FILE`), which `holds`
 * what it says (`the token`). Errors: cannot be opened → notFound (ENOENT) or usage (2); not a
 * regular file or over `maxBytes` → usage (2); readable or writable by group or others → refused
 * (11). Opened without blocking, so that a FIFO in its place cannot hang vault.
 */
export function readPrivateFile(file: string, variable: string, maxBytes: number, holds: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new VaultError(code === 'ENOENT' ? 'notFound' : 'usage', `${variable} ${file} cannot be opened (${code}); point it at the file holding ${holds}`);
  }
  const bytes = Buffer.alloc(maxBytes + 1);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new VaultError('usage', `${variable} ${file} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new VaultError('refused', `${variable} ${file} is readable or writable by group or others (mode ${mode}); \`chmod 600 ${file}\` and keep it private`);
    }
    let length = 0;
    for (;;) {
      const read = fs.readSync(fd, bytes, length, bytes.length - length, null);
      if (read === 0) break;
      length += read;
      if (length > maxBytes) throw new VaultError('usage', `${variable} ${file} is larger than ${maxBytes} bytes: it does not hold ${holds}`);
    }
    return bytes.subarray(0, length).toString('utf8');
  } finally {
    bytes.fill(0);
    fs.closeSync(fd);
  }
}
