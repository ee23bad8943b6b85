/**
 * Where the value of `vault put` comes from: a file, piped stdin (binary-safe), or the terminal.
 * Reading stops one byte past the limit so that an oversized value is refused without reading it all.
 */
import * as fs from 'node:fs';
import { VaultError } from '../vault/errors.js';
import { MAX_VALUE_BYTES } from '../vault/vault.js';
import { askHiddenTwice, hasTerminal } from './terminal.js';

function readBounded(fd: number, what: string): Uint8Array {
  const buffer = Buffer.alloc(MAX_VALUE_BYTES + 1);
  let length = 0;
  for (;;) {
    let read: number;
    try {
      read = fs.readSync(fd, buffer, length, buffer.length - length, null);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        continue;
      }
      if (code === 'EOF') break;
      throw error;
    }
    if (read === 0) break;
    length += read;
    if (length > MAX_VALUE_BYTES) {
      buffer.fill(0);
      throw new VaultError('badSecret', `the value from ${what} is over the limit of ${MAX_VALUE_BYTES} bytes (1 MiB); nothing was stored`);
    }
  }
  const value = new Uint8Array(buffer.subarray(0, length));
  buffer.fill(0);
  return value;
}

function withoutTrailingNewlines(value: Uint8Array): Uint8Array {
  let end = value.length;
  while (end > 0 && (value[end - 1] === 0x0a || value[end - 1] === 0x0d)) end -= 1;
  const trimmed = value.slice(0, end);
  value.fill(0);
  return trimmed;
}

export interface ValueSource {
  name: string;
  fromFile?: string;
  trim: boolean;
}

export async function readSecretValue(source: ValueSource): Promise<Uint8Array> {
  let value: Uint8Array;
  if (source.fromFile !== undefined) {
    let fd: number;
    try {
      fd = fs.openSync(source.fromFile, 'r');
    } catch (error) {
      throw new VaultError('notFound', `cannot open ${source.fromFile} (${(error as NodeJS.ErrnoException).code}); nothing was stored`);
    }
    try {
      value = readBounded(fd, source.fromFile);
    } finally {
      fs.closeSync(fd);
    }
  } else if (!process.stdin.isTTY) {
    value = readBounded(0, 'stdin');
  } else if (hasTerminal()) {
    value = await askHiddenTwice(`Value for ${source.name} (not shown)`);
  } else {
    throw new VaultError('usage', `no value for ${source.name}: pipe it on stdin or use --from-file`);
  }
  return source.trim ? withoutTrailingNewlines(value) : value;
}
