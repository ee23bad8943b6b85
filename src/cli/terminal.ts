/**
 * Asking a person for a secret at the terminal, without echo. Reads /dev/tty, not stdin, so that a
 * prompt works while stdin is a pipe and never consumes piped input.
 */
import * as fs from 'node:fs';
import * as tty from 'node:tty';
import { VaultError } from '../vault/errors.js';

export function hasTerminal(): boolean {
  if (!process.stdin.isTTY && !process.stderr.isTTY) return false;
  try {
    fs.closeSync(fs.openSync('/dev/tty', 'r+'));
    return true;
  } catch {
    return false;
  }
}

/** Reads one line without echo. The bytes are the caller's to wipe. */
export function askHidden(question: string): Promise<Uint8Array> {
  const fd = fs.openSync('/dev/tty', 'r+');
  const input = new tty.ReadStream(fd);
  input.setRawMode(true);
  fs.writeSync(fd, question);
  let typed = Buffer.alloc(0);
  return new Promise<Uint8Array>((resolve, reject) => {
    const finish = (error?: VaultError) => {
      input.setRawMode(false);
      input.removeAllListeners('data');
      input.destroy(); // closes fd
      if (error !== undefined) {
        typed.fill(0);
        reject(error);
      } else {
        resolve(new Uint8Array(typed));
        typed.fill(0);
      }
    };
    input.on('data', (chunk: Buffer) => {
      for (const byte of chunk) {
        if (byte === 0x0d || byte === 0x0a) {
          fs.writeSync(fd, '\n');
          finish();
          return;
        }
        // raw mode turns off the terminal's signals (termios(3), ISIG): Ctrl-C arrives as a byte
        if (byte === 0x03 || byte === 0x04) {
          fs.writeSync(fd, '\n');
          finish(byte === 0x03
            ? new VaultError('interrupted', 'interrupted at the prompt (Ctrl-C); nothing was changed')
            : new VaultError('usage', 'no input at the prompt (Ctrl-D); nothing was changed'));
          return;
        }
        if (byte === 0x7f || byte === 0x08) {
          // one character, not one byte: its UTF-8 continuation bytes (10xxxxxx) go with it; zeroed, not just cut off
          let end = typed.length - 1;
          while (end > 0 && ((typed[end] ?? 0) & 0xc0) === 0x80) end -= 1;
          end = Math.max(0, end);
          typed.fill(0, end);
          typed = typed.subarray(0, end);
          continue;
        }
        const grown = Buffer.alloc(typed.length + 1);
        typed.copy(grown);
        grown[typed.length] = byte;
        typed.fill(0);
        typed = grown;
      }
      chunk.fill(0);
    });
  });
}

/** Asks twice and insists that both answers match. */
export async function askHiddenTwice(question: string): Promise<Uint8Array> {
  const first = await askHidden(`${question}: `);
  const second = await askHidden('Again, to confirm: ');
  const same = first.length === second.length && first.every((b, i) => b === second[i]);
  second.fill(0);
  if (!same) {
    first.fill(0);
    throw new VaultError('usage', 'the two entries differ; nothing was changed, try again');
  }
  return first;
}

/** Asks one question at the terminal, with echo, and returns the line typed (without its newline). */
export function askLine(question: string): string {
  const fd = fs.openSync('/dev/tty', 'r+');
  try {
    fs.writeSync(fd, question);
    const bytes: number[] = [];
    const one = Buffer.alloc(1);
    // the terminal's own line editing (canonical mode) hands over a whole line
    while (fs.readSync(fd, one, 0, 1, null) === 1 && one[0] !== 0x0a) bytes.push(one[0]!);
    return Buffer.from(bytes).toString('utf8').trim();
  } finally {
    fs.closeSync(fd);
  }
}
