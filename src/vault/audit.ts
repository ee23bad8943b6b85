/**
 * The audit log: append-only JSON lines, each carrying the SHA-256 of the line before it, so that
 * an edited or deleted entry breaks the chain (docs/FORMAT.md, "audit.log"). Reading is bounded:
 * the tail in time proportional to the last line (at most SIZE_CAPS.auditLine), the whole log line
 * by line. An append writes the whole line or leaves the log as it was. Callers of appendAudit and
 * prepareAppend hold the vault lock.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { sha256Hex, sha256OfFd } from './crypto.js';
import { VaultError } from './errors.js';
import { type AuditEntry, auditEntrySchema, jsonOrUndefined } from './format.js';
import { native } from './native.js';
import { O_APPEND, O_CREAT, O_RDONLY, O_WRONLY, SIZE_CAPS, unsafeFile, type VaultDir } from './vault-dir.js';

export const GENESIS_HASH = '0'.repeat(64);
export const AUDIT_FILE = 'audit.log';
const LINE_CAP = SIZE_CAPS.auditLine;

export type AuditEvent =
  | 'init' | 'put' | 'replace' | 'rm' | 'key-add' | 'key-rm' | 'allow' | 'revoke' | 'trust' | 'release' | 'exit' | 'torn'
  | 'agent-start' | 'agent-refused' | 'accept' | 'rekey' | 'policy-merge';

/** An entry as the user last saw it: its number, the SHA-256 of its line, and where the line starts. */
export interface AuditHead {
  seq: number;
  hash: string;
  /** Byte offset of the entry's line (absent in witnesses of older versions). */
  offset?: number;
}

export interface AuditLink {
  seq: number;
  prev: string;
}

/** Who writes an entry: the uid and its user name (the uid in decimal when it has no passwd entry). */
export function actor(): AuditEntry['actor'] {
  const uid = process.getuid?.() ?? -1;
  let user = String(uid);
  try {
    user = os.userInfo().username;
  } catch {
    // a uid without a passwd entry (containers) is still recorded by number
  }
  return { uid, user };
}

interface Tail {
  /** The last line, without its newline; undefined for an empty log. */
  line: Buffer | undefined;
  /** Where that line starts. */
  start: number;
  size: number;
  /** Whether the log ends with a newline (a line without one was torn by a crash or a full disk). */
  terminated: boolean;
}

/** The last line of the log (or of its first `end` bytes), read from its end: never more than LINE_CAP bytes of it. */
function readTail(dir: VaultDir, end?: number): Tail {
  const opened = dir.openFile(AUDIT_FILE, O_RDONLY);
  if (opened === undefined) return { line: undefined, start: 0, size: 0, terminated: true };
  const { fd } = opened;
  try {
    const size = end === undefined ? opened.stat.size : Math.min(end, opened.stat.size);
    if (size === 0) return { line: undefined, start: 0, size, terminated: true };
    // the longest line with its newline, and the newline before it
    const window = Math.min(size, LINE_CAP + 1);
    const tail = Buffer.alloc(window);
    fs.readSync(fd, tail, 0, window, size - window);
    const terminated = tail[window - 1] === 0x0a;
    const body = terminated ? tail.subarray(0, window - 1) : tail;
    const newline = body.lastIndexOf(0x0a);
    if (newline === -1 && window < size) {
      throw tampered(dir, `its last line is longer than ${LINE_CAP} bytes, which no entry is`);
    }
    const line = body.subarray(newline + 1);
    return { line: Buffer.from(line), start: size - window + newline + 1, size, terminated };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * An entry as its line says it. `details` is the parsed object itself, not the schema's copy, which
 * would turn a member named __proto__ into a prototype and show a line other than the one hashed.
 */
function parseEntry(line: Buffer): AuditEntry | undefined {
  const raw = jsonOrUndefined(line);
  const parsed = auditEntrySchema.safeParse(raw);
  return parsed.success ? { ...parsed.data, details: (raw as { details: AuditEntry['details'] }).details } : undefined;
}

/**
 * Reads the log from `offset` line by line and checks the chain, calling `onEntry` for each entry;
 * memory stays bounded by the line cap, whatever the log's size. Entries before `offset` are taken
 * on trust from `start` (the entry at `offset` must be `start.seq`, its line hashing to `start.hash`).
 */
function walk(
  dir: VaultDir, witness: AuditHead | undefined, onEntry: ((entry: AuditEntry) => void) | undefined, start?: AuditHead & { offset: number }, end?: number,
): AuditReading {
  const opened = dir.openFile(AUDIT_FILE, O_RDONLY);
  let count = 0;
  let head: AuditHead | undefined;
  if (opened === undefined) {
    if (witness !== undefined) return { count, broken: { line: 1, reason: `the log was removed, but you saw entry ${witness.seq}` } };
    return { count };
  }
  const { fd } = opened;
  try {
    let lineNo = start === undefined ? 0 : start.seq - 1;
    let prev = start === undefined ? GENESIS_HASH : undefined;
    let position = start?.offset ?? 0;
    let pending = Buffer.alloc(0);
    const chunk = Buffer.alloc(1 << 20);
    const check = (raw: Buffer, lineStart: number): { line: number; reason: string } | undefined => {
      lineNo += 1;
      // the cap counts the newline, as appendAudit does
      if (raw.length + 1 > LINE_CAP) return { line: lineNo, reason: `longer than ${LINE_CAP} bytes, which no entry is` };
      const entry = parseEntry(raw);
      if (entry === undefined) return { line: lineNo, reason: 'not a valid audit entry' };
      if (entry.seq !== lineNo) return { line: lineNo, reason: `sequence number ${entry.seq} where ${lineNo} was expected (an entry was removed or inserted)` };
      const hash = sha256Hex(raw);
      if (prev === undefined) {
        // the first line read is the trusted starting point itself
        if (start !== undefined && hash !== start.hash) return { line: lineNo, reason: 'it differs from the entry you last saw with this number (the log was rewritten)' };
      } else if (entry.prev !== prev) {
        return { line: lineNo, reason: 'its hash of the previous entry does not match (an entry before it was changed or removed)' };
      }
      prev = hash;
      head = { seq: entry.seq, hash, offset: lineStart };
      if (witness !== undefined && entry.seq === witness.seq && hash !== witness.hash) {
        return { line: lineNo, reason: 'it differs from the entry you last saw with this number (the log was rewritten)' };
      }
      count += 1;
      onEntry?.(entry);
      return undefined;
    };
    let pendingStart = position;
    for (;;) {
      const want = end === undefined ? chunk.length : Math.min(chunk.length, end - position);
      const n = want <= 0 ? 0 : fs.readSync(fd, chunk, 0, want, position);
      if (n === 0) break;
      position += n;
      let data = Buffer.concat([pending, chunk.subarray(0, n)]);
      let at = 0;
      for (let newline = data.indexOf(0x0a); newline !== -1; newline = data.indexOf(0x0a, at)) {
        const broken = check(data.subarray(at, newline), pendingStart);
        if (broken !== undefined) return { count, head, broken };
        pendingStart += newline + 1 - at;
        at = newline + 1;
      }
      data = data.subarray(at);
      if (data.length + 1 > LINE_CAP) return { count, head, broken: { line: lineNo + 1, reason: `longer than ${LINE_CAP} bytes, which no entry is` } };
      pending = Buffer.from(data);
    }
    if (pending.length > 0) return { count, head, broken: { line: lineNo + 1, reason: 'a line without its newline (a write was cut short: a crash or a full disk)' } };
    if (witness !== undefined && (head?.seq ?? 0) < witness.seq) {
      return { count, head, broken: { line: lineNo + 1, reason: `the log ends at entry ${head?.seq ?? 0} but you saw entry ${witness.seq} (entries at the end were removed)` } };
    }
    return { count, head };
  } finally {
    fs.closeSync(fd);
  }
}

export interface AuditReading {
  count: number;
  /** The first problem found, with its 1-based line number; undefined when the chain holds. */
  broken?: { line: number; reason: string };
  head?: AuditHead;
}

/** Reads and checks the whole chain, and that it still holds the user's witness entry. */
export function readAudit(dir: VaultDir, witness: AuditHead | undefined, onEntry?: (entry: AuditEntry) => void): AuditReading {
  return walk(dir, witness, onEntry);
}

function tampered(dir: VaultDir, reason: string): VaultError {
  return new VaultError(
    'tampered',
    `${dir.at(AUDIT_FILE)}: ${reason}; nothing was changed. Run \`vault audit --verify\`, and restore the log from version control or a backup; ` +
      'if it cannot be restored, `vault audit --accept` keeps it aside and starts a new one',
  );
}

/** Checks the log (up to `end`) against the user's witness, reading only what was added since it was seen. */
function checkWitness(dir: VaultDir, witness: AuditHead | undefined, last: AuditEntry, lastLine: Buffer, end?: number): void {
  if (witness === undefined) return;
  if (witness.seq > last.seq) throw tampered(dir, `it ends at entry ${last.seq} but you saw entry ${witness.seq} (entries at the end were removed)`);
  if (witness.seq === last.seq) {
    if (sha256Hex(lastLine) !== witness.hash) throw tampered(dir, `entry ${witness.seq} differs from the one you saw (the log was rewritten)`);
    return;
  }
  const from = witness.offset === undefined ? undefined : { ...witness, offset: witness.offset };
  const reading = walk(dir, witness, undefined, from, end);
  if (reading.broken !== undefined) throw tampered(dir, `line ${reading.broken.line}: ${reading.broken.reason}`);
}

/**
 * Where the next entry chains on, before anything is changed: the tail is checked against the
 * user's witness (a rewritten or shortened log refuses with 9, as `audit --verify` would). A last
 * line torn by a crash or a full disk, which no one witnessed, is set aside (its bytes saved beside
 * the log, the log cut back before it, a `torn` entry recording both) so that a full disk never
 * bricks the vault; a damaged complete line, or a torn one the user saw, is tampering.
 */
export function prepareAppend(dir: VaultDir, tmp: VaultDir, witness: AuditHead | undefined): AuditLink {
  const tail = readTail(dir);
  if (tail.line === undefined) {
    if (witness !== undefined) throw tampered(dir, `it is empty but you saw entry ${witness.seq}`);
    return { seq: 1, prev: GENESIS_HASH };
  }
  const last = parseEntry(tail.line);
  if (last !== undefined && tail.terminated) {
    checkWitness(dir, witness, last, tail.line);
    return { seq: last.seq + 1, prev: sha256Hex(tail.line) };
  }
  // a torn line is a prefix of a line and its newline, so shorter than the cap
  if (tail.terminated || tail.line.length >= LINE_CAP || (witness?.offset !== undefined && witness.offset === tail.start)) {
    throw tampered(dir, 'its last line is damaged, so nothing more can be chained to it');
  }
  // torn: the lines before it must pass the witness check first, or the set-aside would change a
  // log that is then refused
  const before = readTail(dir, tail.start);
  if (before.line === undefined) {
    if (witness !== undefined) throw tampered(dir, `it holds no whole entry but you saw entry ${witness.seq}`);
  } else {
    const previous = parseEntry(before.line);
    if (previous === undefined) throw tampered(dir, 'the line before its torn last line is damaged');
    checkWitness(dir, witness, previous, before.line, tail.start);
  }
  // then set it aside, and chain on the line before it
  const saved = `${AUDIT_FILE}.torn-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  dir.writeAtomic(tmp, saved, tail.line);
  const opened = dir.openFile(AUDIT_FILE, O_WRONLY);
  if (opened === undefined) throw new VaultError('internal', `${dir.at(AUDIT_FILE)} vanished`);
  try {
    fs.ftruncateSync(opened.fd, tail.start);
    fs.fsyncSync(opened.fd);
  } finally {
    fs.closeSync(opened.fd);
  }
  const link = prepareAppend(dir, tmp, witness);
  const head = appendAudit(dir, link, 'torn', { bytes: tail.line.length, sha256: sha256Hex(tail.line), saved_as: saved });
  return { seq: head.seq + 1, prev: head.hash };
}

/** Whether an entry with these details fits in one audit line (SIZE_CAPS.auditLine), with room for the rest of the entry. */
export function fitsAuditLine(details: Record<string, unknown>): boolean {
  return Buffer.byteLength(JSON.stringify(details)) + 1024 <= LINE_CAP;
}

/**
 * Sets the log aside as `audit.log.before-TIME` (kept, for people to read) and returns what a new
 * chain's first entry records of it: its name, size and SHA-256. For `vault audit --accept`, after a
 * person has looked at a log that no longer holds what they saw. Callers hold the vault lock.
 */
export function setLogAside(dir: VaultDir): { set_aside: string; bytes: number; sha256: string } | undefined {
  const opened = dir.openFile(AUDIT_FILE, O_RDONLY);
  if (opened === undefined) return undefined;
  let sha256: string;
  try {
    sha256 = sha256OfFd(opened.fd);
  } finally {
    fs.closeSync(opened.fd);
  }
  const name = `${AUDIT_FILE}.before-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  native().renameAt(dir.fd, AUDIT_FILE, dir.fd, name);
  fs.fsyncSync(dir.fd);
  return { set_aside: name, bytes: opened.stat.size, sha256 };
}

/**
 * Appends one entry at `link` (from prepareAppend, under the same lock): the whole line, fsynced,
 * or nothing: a short write is completed, and a write that fails (ENOSPC, EIO, a read-only file
 * system) cuts the log back to where it was and throws.
 */
export function appendAudit(dir: VaultDir, link: AuditLink, event: AuditEvent, details: Record<string, unknown>): AuditHead {
  const { seq, prev } = link;
  const entry: AuditEntry = { seq, time: new Date().toISOString(), event, actor: actor(), details, prev };
  const line = JSON.stringify(entry);
  const bytes = Buffer.from(`${line}\n`);
  if (bytes.length > LINE_CAP) throw new VaultError('internal', `an audit entry of ${bytes.length} bytes is over the line limit of ${LINE_CAP}`);
  const opened = dir.openFile(AUDIT_FILE, O_WRONLY | O_APPEND | O_CREAT);
  if (opened === undefined) throw new VaultError('internal', `cannot open ${dir.at(AUDIT_FILE)}`);
  const { fd } = opened;
  const before = opened.stat.size;
  try {
    if (opened.created) dir.adopt(fd);
    let written = 0;
    try {
      while (written < bytes.length) written += fs.writeSync(fd, bytes, written, bytes.length - written);
      fs.fsyncSync(fd);
    } catch (error) {
      try {
        fs.ftruncateSync(fd, before);
        fs.fsyncSync(fd);
      } catch {
        // the log may now end in a torn line: the next writer sets it aside
      }
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw Object.assign(new VaultError('internal', `cannot write the audit entry to ${dir.at(AUDIT_FILE)} (${code}); the log is as it was and nothing was changed`), { cause: error });
    }
  } finally {
    fs.closeSync(fd);
  }
  return { seq, hash: sha256Hex(line), offset: before };
}

export { unsafeFile };
