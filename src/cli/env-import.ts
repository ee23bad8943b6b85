/**
 * `vault import FILE|-`: every variable of a `.env` file, sealed. The syntax is dotenv's and the
 * `dotenv` package parses it (quotes, `export`, `#` comments, multi-line values in double quotes,
 * empty values; a name given twice keeps its last value), so that a file dotenv or dotenvx reads
 * imports the same values. Everything is checked before the first value is stored: a name that
 * cannot be a secret, a value over the limit, a name already in the vault without `--force`, each
 * refuse the whole import, naming every name concerned.
 */
import { SingleBar } from 'cli-progress';
import { parse } from 'dotenv';
import * as fs from 'node:fs';
import { wipe } from '../vault/crypto.js';
import { VaultError } from '../vault/errors.js';
import { secretNameProblem } from '../vault/names.js';
import { MAX_VALUE_BYTES, type Vault } from '../vault/vault.js';
import { say } from './messages.js';

/** The largest input read: a .env of 10,000 values of a few hundred bytes is far below it. */
const MAX_INPUT_BYTES = 64 * 1024 * 1024;
/**
 * What `dotenvx decrypt --stdout` prints besides the values: the public key of an encrypted .env
 * (DOTENV_PUBLIC_KEY, or DOTENV_PUBLIC_KEY_<ENVIRONMENT>). It only encrypts, for dotenvx; skipped.
 */
const DOTENVX_OWN = /^DOTENV_PUBLIC_KEY(?:_[A-Z0-9_]+)?$/;
/** Imports below this many values are done before a progress bar would be seen. */
const PROGRESS_FROM = 200;
/** Above this many, the report is a count, not a line per name. */
const LINES_UP_TO = 100;

export interface ImportFlags {
  force?: boolean;
  /** `--config-names A,B`: these are configuration values (docs/FORMAT.md, "Configuration values"). */
  configNames?: string[];
}

/** The bytes of FILE, or of stdin for `-`, up to MAX_INPUT_BYTES (a FIFO such as `<(dotenvx …)` is read too). */
function readInput(source: string): Buffer {
  let fd: number;
  try {
    fd = source === '-' ? 0 : fs.openSync(source, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new VaultError('notFound', `cannot open ${source} (${code}); nothing was stored`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    const chunk = Buffer.alloc(1024 * 1024);
    for (;;) {
      let read: number;
      try {
        read = fs.readSync(fd, chunk, 0, chunk.length, null);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); // a non-blocking stdin: wait for more
          continue;
        }
        if (code === 'EOF') break;
        if (code === 'EISDIR') {
          throw new VaultError('usage', `${source} is a directory; give a .env file or - for stdin`);
        }
        throw error;
      }
      if (read === 0) break;
      total += read;
      if (total > MAX_INPUT_BYTES) {
        throw new VaultError('usage', `${source} is over ${MAX_INPUT_BYTES >> 20} MiB; nothing was stored`);
      }
      chunks.push(Buffer.from(chunk.subarray(0, read)));
    }
    chunk.fill(0);
  } catch (error) {
    for (const c of chunks) c.fill(0);
    throw error;
  } finally {
    if (fd !== 0) fs.closeSync(fd);
  }
  const all = Buffer.concat(chunks);
  for (const c of chunks) c.fill(0);
  return all;
}

const listed = (names: string[]) => names.join(', ');

/**
 * The number (from 1) of the first line of `input` that sets `name` as dotenv reads one (optional
 * `export `, the name, then `=` or `:`), or `?` when none does: to point at a name without printing it.
 */
function lineOf(input: Buffer, name: string): string {
  const lines = input.toString('utf8').split(/\r?\n|\r/);
  const at = lines.findIndex((line) => {
    const rest = line.trimStart().replace(/^export\s+/, '');
    return rest.startsWith(name) && /^\s*[=:]/.test(rest.slice(name.length));
  });
  return at === -1 ? '?' : String(at + 1);
}

/** A plan of what to store, every value as bytes (the caller wipes them), checked as the module says. */
function planImport(vault: Vault, input: Buffer, source: string, flags: ImportFlags): Map<string, Uint8Array> {
  const parsed = parse(input);
  const skipped = Object.keys(parsed).filter((n) => DOTENVX_OWN.test(n));
  if (skipped.length > 0) say(`skipped ${listed(skipped)}: dotenvx's public key, not a value of the application`);
  const names = Object.keys(parsed).filter((n) => !DOTENVX_OWN.test(n));
  if (names.length === 0) throw new VaultError('usage', `${source} holds no NAME=VALUE line; nothing was stored`);
  // every bad name in one line, so that one edit of the file is enough
  const problems: string[] = [];
  const invalid = names.filter((n) => secretNameProblem(n) === 'invalid');
  if (invalid.length > 0) {
    // by line, not by name: what dotenv took for a name may be a line of a value (an unquoted
    // multi-line PEM key's last line, `MIIE…Q==`, reads as NAME=VALUE), and errors show no value
    problems.push(
      `${invalid.length} name(s) cannot be secret names (A-Z, 0-9 and _, not starting with a digit), on line(s) ` +
        `${invalid.map((n) => lineOf(input, n)).join(', ')} of ${source === '-' ? 'stdin' : source}: rename them ` +
        '(or quote a multi-line value)',
    );
  }
  const reserved = names.filter((n) => typeof secretNameProblem(n) === 'object');
  if (reserved.length > 0) {
    problems.push(
      `${reserved.length} name(s) are reserved, as they change how a program runs (SECURITY.md, "Reserved names"): ` +
        `${listed(reserved)}: leave them out of the input (a grant sets such a variable: \`vault allow … --env ` +
        'NAME=VALUE`)',
    );
  }
  if (problems.length > 0) throw new VaultError('badSecret', `${problems.join('; ')}; nothing was stored`);
  const unknown = (flags.configNames ?? []).filter((n) => !names.includes(n));
  if (unknown.length > 0) {
    throw new VaultError(
      'usage', `--config-names names what ${source} does not hold: ${listed(unknown)}; nothing was stored`,
    );
  }
  if (flags.force !== true) {
    const existing = names.filter((n) => vault.has(n));
    if (existing.length > 0) {
      throw new VaultError(
        'refused',
        `${existing.length} name(s) are in the vault already: ${listed(existing)}; --force replaces them (the old ` +
          'values are lost); nothing was stored',
      );
    }
  }
  const values = new Map(names.map((n) => [n, new TextEncoder().encode(parsed[n])]));
  const big = [...values].filter(([, v]) => v.length > MAX_VALUE_BYTES).map(([n]) => n);
  if (big.length > 0) {
    for (const value of values.values()) wipe(value);
    throw new VaultError(
      'badSecret', `over the limit of ${MAX_VALUE_BYTES} bytes (1 MiB): ${listed(big)}; nothing was stored`,
    );
  }
  return values;
}

/**
 * Imports `source` (a path, or `-` for stdin) into `vault` and says on stderr what it stored; a
 * progress bar on a terminal from PROGRESS_FROM values. Errors: VaultError as planImport and
 * Vault.put throw them; a failure part-way says how many were stored before it.
 */
export async function importEnvFile(vault: Vault, source: string, flags: ImportFlags): Promise<void> {
  const input = readInput(source);
  let values: Map<string, Uint8Array>;
  try {
    values = planImport(vault, input, source, flags);
  } finally {
    input.fill(0);
  }
  const config = new Set(flags.configNames ?? []);
  const bar = process.stderr.isTTY && values.size >= PROGRESS_FROM
    ? new SingleBar({
      format: 'vault: importing {bar} {value}/{total} values', stream: process.stderr, hideCursor: true,
    })
    : undefined;
  bar?.start(values.size, 0);
  const done: { name: string; replaced: boolean; size: number }[] = [];
  try {
    for (const [name, value] of values) {
      const result = await vault.put(name, value, { replace: flags.force === true, config: config.has(name) });
      done.push({ name, replaced: result === 'replace', size: value.length });
      bar?.update(done.length);
    }
  } catch (error) {
    bar?.stop();
    if (done.length === 0) throw error;
    const cause = error instanceof Error ? error.message : String(error);
    throw new VaultError(
      error instanceof VaultError ? error.kind : 'internal',
      `stored ${done.length} of ${values.size} values (${listed(done.map((d) => d.name))}), then: ${cause}`,
      { cause: error },
    );
  } finally {
    for (const value of values.values()) wipe(value);
  }
  bar?.stop();
  if (done.length <= LINES_UP_TO) {
    for (const d of done) {
      const kind = config.has(d.name) ? 'configuration value ' : '';
      say(`${d.replaced ? 'replaced' : 'stored'} ${kind}${d.name} (${d.size} bytes)`);
    }
  }
  const replaced = done.filter((d) => d.replaced).length;
  say(
    `imported ${done.length} value(s) from ${source === '-' ? 'stdin' : source}` +
      `${replaced > 0 ? `, ${replaced} replaced` : ''}${config.size > 0 ? `, ${config.size} as configuration` : ''}` +
      '; grant them with `vault allow NAME... --to PROGRAM`',
  );
}
