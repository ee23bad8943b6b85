/**
 * The audit log: append-only JSON lines, each carrying the SHA-256 of the line before it, so that
 * an edited or deleted entry breaks the chain. Callers of appendAudit hold the vault lock.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { sha256Hex } from './crypto.js';
import { VaultError } from './errors.js';
import { type AuditEntry, auditEntrySchema, jsonOrUndefined } from './format.js';
import { readFileIfExists } from './files.js';
import type { AuditHead } from './pins.js';

export const GENESIS_HASH = '0'.repeat(64);
const TAIL_CHUNK = 64 * 1024;

export type AuditEvent = 'init' | 'put' | 'replace' | 'rm' | 'key-add' | 'key-rm' | 'allow' | 'revoke' | 'trust' | 'exec';

function actor(): AuditEntry['actor'] {
  const uid = process.getuid?.() ?? -1;
  let user = String(uid);
  try {
    user = os.userInfo().username;
  } catch {
    // a uid without a passwd entry (containers) is still recorded by number
  }
  return { uid, user };
}

/** The last line of the log, read from its end so that appending costs the same at any size. */
function lastLine(file: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const size = fs.fstatSync(fd).size;
    let start = size;
    let tail = Buffer.alloc(0);
    while (start > 0) {
      const length = Math.min(TAIL_CHUNK, start);
      start -= length;
      const chunk = Buffer.alloc(length);
      fs.readSync(fd, chunk, 0, length, start);
      tail = Buffer.concat([chunk, tail]);
      // a line that lacks its final newline (a torn write) is returned as it is, and fails to parse
      const body = tail.at(-1) === 0x0a ? tail.subarray(0, -1) : tail;
      const newline = body.lastIndexOf(0x0a);
      if (newline >= 0) return body.subarray(newline + 1).toString('utf8');
      if (start === 0) return body.length === 0 ? undefined : body.toString('utf8');
    }
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

export interface AuditLink {
  seq: number;
  prev: string;
}

/**
 * Where the next entry chains on. Writers call it before they change anything, so that a log
 * whose last line is damaged refuses the change instead of recording it unaudited.
 */
export function nextAuditLink(file: string): AuditLink {
  const last = lastLine(file);
  if (last === undefined) return { seq: 1, prev: GENESIS_HASH };
  const parsed = auditEntrySchema.safeParse(jsonOrUndefined(last));
  if (!parsed.success) {
    throw new VaultError('tampered', `the last line of ${file} is damaged, so nothing more can be chained to it; run \`vault audit --verify\``);
  }
  return { seq: parsed.data.seq + 1, prev: sha256Hex(last) };
}

/** Appends one entry at `link` (from nextAuditLink, under the same lock). */
export function appendAudit(file: string, link: AuditLink, event: AuditEvent, details: Record<string, unknown>): AuditHead {
  const { seq, prev } = link;
  const entry: AuditEntry = { seq, time: new Date().toISOString(), event, actor: actor(), details, prev };
  const line = JSON.stringify(entry);
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
  try {
    // one write(2) of the whole line: a writer killed by a signal never leaves half a line
    fs.writeSync(fd, `${line}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { seq, hash: sha256Hex(line) };
}

export interface AuditReading {
  entries: AuditEntry[];
  /** The first problem found, with its 1-based line number; undefined when the chain holds. */
  broken?: { line: number; reason: string };
  head?: AuditHead;
}

/** Reads and checks the whole chain, and that it still holds the user's witness entry. */
export function readAudit(file: string, witness: AuditHead | undefined): AuditReading {
  const text = readFileIfExists(file)?.toString('utf8') ?? '';
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const entries: AuditEntry[] = [];
  let prev = GENESIS_HASH;
  let head: AuditHead | undefined;
  for (const [index, raw] of lines.entries()) {
    const lineNo = index + 1;
    const parsed = auditEntrySchema.safeParse(jsonOrUndefined(raw));
    if (!parsed.success) return { entries, head, broken: { line: lineNo, reason: 'not a valid audit entry' } };
    const entry = parsed.data;
    if (entry.seq !== lineNo) {
      return { entries, head, broken: { line: lineNo, reason: `sequence number ${entry.seq} where ${lineNo} was expected (an entry was removed or inserted)` } };
    }
    if (entry.prev !== prev) {
      return { entries, head, broken: { line: lineNo, reason: 'its hash of the previous entry does not match (an entry before it was changed or removed)' } };
    }
    prev = sha256Hex(raw);
    head = { seq: entry.seq, hash: prev };
    if (witness !== undefined && entry.seq === witness.seq && prev !== witness.hash) {
      return { entries, head, broken: { line: lineNo, reason: 'it differs from the entry you last saw with this number (the log was rewritten)' } };
    }
    entries.push(entry);
  }
  if (witness !== undefined && (head?.seq ?? 0) < witness.seq) {
    return {
      entries,
      head,
      broken: { line: lines.length + 1, reason: `the log ends at entry ${head?.seq ?? 0} but you saw entry ${witness.seq} (entries at the end were removed)` },
    };
  }
  return { entries, head };
}
