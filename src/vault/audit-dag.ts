/**
 * The vault's change log as a hash DAG (docs/FORMAT.md, "audit/"): one file per entry, named by the
 * SHA-256 of its bytes, naming the hashes of its parents, like git's own objects. Two branches that
 * each changed the vault add different files, so git merges them as a union without a conflict;
 * the next write names every head as a parent and so joins them. An entry edited, or removed while
 * a later entry names it, breaks the DAG; removing the newest entries is what checking out an older
 * branch does, and is not a break (SECURITY.md says so). Callers of appendEntry hold the vault lock.
 */
import * as fs from 'node:fs';
import * as z from 'zod/mini';
import { actor } from './audit.js';
import { sha256Hex } from './crypto.js';
import { VaultError } from './errors.js';
import { type AuditDetails, auditDetailsSchema, jsonOrUndefined } from './format.js';
import { native } from './native.js';
import { SIZE_CAPS, type VaultDir } from './vault-dir.js';

export const AUDIT_DIR = 'audit';
const ENTRY_FILE = /^([0-9a-f]{64})\.json$/;

const hex64 = z.string().check(z.regex(/^[0-9a-f]{64}$/));
export const dagEntrySchema = z.strictObject({
  time: z.iso.datetime(),
  event: z.string().check(z.regex(/^[a-z-]{1,32}$/)),
  actor: z.strictObject({ uid: z.int(), user: z.string() }),
  details: auditDetailsSchema,
  parents: z.array(hex64).check(
    z.refine((p) => p.every((h, i) => i === 0 || p[i - 1]! < h), 'sorted, without duplicates'),
  ),
});
export type DagEntry = z.infer<typeof dagEntrySchema> & { hash: string };

/** An entry file that is not a valid entry, or names a parent that is not there. */
export interface DagProblem {
  hash: string;
  reason: string;
  /** 'unsafeFile' for a file that is not a regular file or is over its cap (exit 13); else tampering (9). */
  kind: 'tampered' | 'unsafeFile';
  /** The reason is a whole message that names the file already (the reader's own refusal). */
  whole?: boolean;
}

/** The one line that says what is wrong with an entry of `audit/` in `root`. */
export function problemMessage(root: VaultDir, problem: DagProblem): string {
  return problem.whole === true ? problem.reason : `${root.at(`${AUDIT_DIR}/${problem.hash}.json`)}: ${problem.reason}`;
}

export interface DagReading {
  entries: Map<string, DagEntry>;
  /** Entries no other entry names as a parent: where the next entry joins. Sorted. */
  heads: string[];
  problems: DagProblem[];
}

/** One entry file, checked (a regular file within its cap, hashing to its name, valid), or what is wrong with it. */
function readEntry(dir: VaultDir, name: string, hash: string): DagEntry | DagProblem | undefined {
  let bytes: Buffer | undefined;
  try {
    bytes = dir.read(name, 'auditEntry');
  } catch (error) {
    if (!(error instanceof VaultError)) throw error;
    return { hash, reason: error.message, kind: error.kind === 'unsafeFile' ? 'unsafeFile' : 'tampered', whole: true };
  }
  if (bytes === undefined) return undefined; // removed meanwhile
  if (sha256Hex(bytes) !== hash) {
    return { hash, reason: 'its bytes do not hash to its name: it was edited', kind: 'tampered' };
  }
  const parsed = dagEntrySchema.safeParse(jsonOrUndefined(bytes));
  if (!parsed.success || !bytes.subarray(-1).equals(Buffer.from('\n'))) {
    return { hash, reason: 'not a valid audit entry (docs/FORMAT.md, "audit/")', kind: 'tampered' };
  }
  // details as the file has them: the schema's copy would turn a member named __proto__ into a prototype
  const raw = jsonOrUndefined(bytes) as { details: AuditDetails };
  return { ...parsed.data, details: raw.details, hash };
}

/** The entry names of `audit/` as hashes (names that are not `HASH.json` are not entries, and are left alone). */
function entryHashes(dir: VaultDir): string[] {
  return dir.names().flatMap((name) => ENTRY_FILE.exec(name)?.[1] ?? []).sort();
}

/**
 * The heads of a log whose entries' parents are `parents`, and a problem for each entry that names
 * a parent which is not there. `broken` are entries present but not valid: their children are fine.
 */
function joinParents(parents: Map<string, string[]>, broken: Set<string>): { heads: string[]; missing: DagProblem[] } {
  const named = new Set<string>();
  const missing: DagProblem[] = [];
  for (const [hash, list] of parents) {
    for (const parent of list) {
      named.add(parent);
      if (!parents.has(parent) && !broken.has(parent)) {
        const reason = `it names a parent ${parent.slice(0, 12)}… that is not there: an entry was removed`;
        missing.push({ hash, reason, kind: 'tampered' });
      }
    }
  }
  return { heads: [...parents.keys()].filter((hash) => !named.has(hash)).sort(), missing };
}

/**
 * Reads every entry of `audit/` and checks each: a regular file within its cap, its bytes hashing
 * to its name, valid, with every parent present. An absent `audit/` is an empty log.
 */
export function readDag(root: VaultDir): DagReading {
  const entries = new Map<string, DagEntry>();
  const problems: DagProblem[] = [];
  const dir = root.child(AUDIT_DIR);
  if (dir === undefined) return { entries, heads: [], problems };
  try {
    for (const hash of entryHashes(dir)) {
      const read = readEntry(dir, `${hash}.json`, hash);
      if (read === undefined) continue;
      if ('reason' in read) problems.push(read);
      else entries.set(hash, read);
    }
  } finally {
    dir.close();
  }
  const parents = new Map([...entries.values()].map((e) => [e.hash, e.parents]));
  const { heads, missing } = joinParents(parents, new Set(problems.map((p) => p.hash)));
  return { entries, heads, problems: [...problems, ...missing] };
}

/**
 * Each user's index of the entries they have read, per vault (`hash parent,parent` lines in their
 * state directory, outside the vault): entries are named by their hash, so one read and checked
 * once need not be read again, and a write in a vault of 10,000 entries reads only the new ones.
 * `audit --verify` reads them all. A line that does not parse is ignored (the entry is read again).
 */
export interface DagIndex {
  /** The index's lines as they are (empty when there is none). */
  load(): string;
  /** Appends lines. */
  append(lines: string): void;
  /**
   * The heads this user's last write left, and the stamp of `audit/` (dirStamp) right after it:
   * while the directory has that stamp and the heads are there, no entry was added or removed by
   * anyone, and a write need not list the directory (10,000 names) again.
   */
  snapshot(): { stamp: string; heads: string[] } | undefined;
  remember(stamp: string, heads: string[]): void;
}

/**
 * The identity and change times of the directory `audit/` (fstat(2): inode, ctime and mtime in ns):
 * any entry added, removed or renamed changes them. ctime cannot be set by anyone; where the file
 * system keeps whole seconds, an entry added in the same second goes unseen by the next write and
 * stays a head for a later one to join, which changes nothing else.
 */
export function dirStamp(root: VaultDir): string | undefined {
  const dir = root.child(AUDIT_DIR);
  if (dir === undefined) return undefined;
  try {
    const stat = fs.fstatSync(dir.fd, { bigint: true });
    return `${stat.ino}:${stat.ctimeNs}:${stat.mtimeNs}`;
  } finally {
    dir.close();
  }
}

const INDEX_LINE = /^([0-9a-f]{64}) ((?:[0-9a-f]{64}(?:,[0-9a-f]{64})*)?)$/;

function broken(root: VaultDir, problem: DagProblem): VaultError {
  const advice = problem.whole === true
    ? ''
    : '; nothing was changed. Restore it from version control (`git checkout -- audit/`), or set the broken entries ' +
      'aside with `vault audit --accept`';
  return new VaultError(problem.kind, `${problemMessage(root, problem)}${advice}`);
}

/**
 * Every head of the log (appendEntry joins the first MAX_PARENTS), after checking it (a broken one
 * refuses the change: 9): the entries `index` does not know are read and checked, and added to it;
 * every parent must be there. When `audit/` is as this user's last write left it (DagIndex.snapshot),
 * its heads are those that write left, once each is seen to be there.
 */
export function dagHeads(root: VaultDir, index?: DagIndex): string[] {
  const dir = root.child(AUDIT_DIR);
  if (dir === undefined) return [];
  const snapshot = index?.snapshot();
  if (snapshot !== undefined && snapshot.stamp === dirStamp(root)) {
    let there = false;
    try {
      there = snapshot.heads.every((hash) => dir.has(`${hash}.json`));
    } catch {
      // a head that is no longer a regular file: the full reading below says what is wrong
    }
    if (there) {
      dir.close();
      return snapshot.heads;
    }
  }
  const known = new Map<string, string[]>();
  for (const line of (index?.load() ?? '').split('\n')) {
    const match = INDEX_LINE.exec(line);
    if (match !== null) known.set(match[1]!, match[2] === '' ? [] : match[2]!.split(','));
  }
  const parents = new Map<string, string[]>();
  const added: string[] = [];
  try {
    for (const hash of entryHashes(dir)) {
      const cached = known.get(hash);
      if (cached !== undefined) {
        parents.set(hash, cached);
        continue;
      }
      const read = readEntry(dir, `${hash}.json`, hash);
      if (read === undefined) continue;
      if ('reason' in read) throw broken(root, read);
      parents.set(hash, read.parents);
      added.push(`${hash} ${read.parents.join(',')}\n`);
    }
  } finally {
    dir.close();
  }
  const { heads, missing } = joinParents(parents, new Set());
  if (missing[0] !== undefined) throw broken(root, missing[0]);
  if (added.length > 0) index?.append(added.join(''));
  return heads;
}

/**
 * At most this many parents per entry: a writer of the vault can make thousands of heads, and an
 * entry naming them all would be over its cap. The rest stay heads, for later entries to join.
 */
export const MAX_PARENTS = 64;

/** The heads an entry joins: all of them, or the first MAX_PARENTS in byte order. */
export function joinable(heads: string[]): string[] {
  return heads.slice(0, MAX_PARENTS);
}

/** The canonical bytes of an entry (docs/FORMAT.md, "audit/"), and their hash, its file's name. */
export function encodeEntry(
  event: string, details: AuditDetails, parents: string[], time = new Date().toISOString(),
): { bytes: Buffer; hash: string } {
  const entry = { time, event, actor: actor(), details, parents: [...parents].sort() };
  const bytes = Buffer.from(`${JSON.stringify(entry)}\n`);
  if (bytes.length > SIZE_CAPS.auditEntry) {
    const limit = SIZE_CAPS.auditEntry;
    throw new VaultError('internal', `an audit entry of ${bytes.length} bytes is over the limit of ${limit}`);
  }
  return { bytes, hash: sha256Hex(bytes) };
}

/**
 * Writes one entry, atomically, joining the first MAX_PARENTS of `heads` (dagHeads's, under the same
 * lock); returns its hash and the heads after it.
 */
export function appendEntry(
  root: VaultDir, tmp: VaultDir, event: string, details: AuditDetails, heads: string[],
): { hash: string; heads: string[] } {
  const { bytes, hash } = encodeEntry(event, details, joinable(heads));
  const dir = root.child(AUDIT_DIR, { create: true })!;
  try {
    dir.writeAtomic(tmp, `${hash}.json`, bytes);
  } finally {
    dir.close();
  }
  return { hash, heads: [hash, ...heads.slice(MAX_PARENTS)].sort() };
}

/** The entries parents first (Kahn's algorithm), ties by time and then hash: the order `vault audit` shows. */
export function topological(entries: Map<string, DagEntry>): DagEntry[] {
  const children = new Map<string, string[]>();
  const waiting = new Map<string, number>();
  for (const entry of entries.values()) {
    const present = entry.parents.filter((p) => entries.has(p));
    waiting.set(entry.hash, present.length);
    for (const parent of present) {
      const list = children.get(parent);
      if (list === undefined) children.set(parent, [entry.hash]);
      else list.push(entry.hash);
    }
  }
  const before = (a: DagEntry, b: DagEntry) => a.time < b.time || (a.time === b.time && a.hash < b.hash);
  // a binary heap of the entries whose parents are all out: O(n log n) for any shape of DAG
  const heap: DagEntry[] = [];
  const push = (entry: DagEntry) => {
    heap.push(entry);
    for (let i = heap.length - 1; i > 0;) {
      const up = (i - 1) >> 1;
      if (!before(heap[i]!, heap[up]!)) break;
      [heap[i], heap[up]] = [heap[up]!, heap[i]!];
      i = up;
    }
  };
  const pop = (): DagEntry => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ;) {
        const [l, r] = [2 * i + 1, 2 * i + 2];
        let least = i;
        if (l < heap.length && before(heap[l]!, heap[least]!)) least = l;
        if (r < heap.length && before(heap[r]!, heap[least]!)) least = r;
        if (least === i) break;
        [heap[i], heap[least]] = [heap[least]!, heap[i]!];
        i = least;
      }
    }
    return top;
  };
  for (const entry of entries.values()) if (waiting.get(entry.hash) === 0) push(entry);
  const order: DagEntry[] = [];
  while (heap.length > 0) {
    const next = pop();
    order.push(next);
    for (const child of children.get(next.hash) ?? []) {
      const left = waiting.get(child)! - 1;
      waiting.set(child, left);
      if (left === 0) push(entries.get(child)!);
    }
  }
  return order;
}

/**
 * `vault audit --accept` for the DAG: moves every broken entry, and every entry that names one as
 * an ancestor, out of `audit/` into `audit.broken-TIME/` (kept for people to read), and returns the
 * moved hashes and that directory's name; undefined when nothing is broken. Callers hold the lock.
 */
export function setBrokenAside(root: VaultDir): { set_aside: string; entries: string[] } | undefined {
  const reading = readDag(root);
  if (reading.problems.length === 0) return undefined;
  const bad = new Set(reading.problems.map((p) => p.hash));
  // descendants of a broken entry: their history cannot be checked (a walk down from each)
  const children = new Map<string, string[]>();
  for (const entry of reading.entries.values()) {
    for (const parent of entry.parents) children.set(parent, [...(children.get(parent) ?? []), entry.hash]);
  }
  const walk = [...bad];
  while (walk.length > 0) {
    for (const child of children.get(walk.pop()!) ?? []) {
      if (!bad.has(child)) {
        bad.add(child);
        walk.push(child);
      }
    }
  }
  // a problem about a missing parent names the entry itself, which is in `bad` already
  const name = `audit.broken-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  const from = root.child(AUDIT_DIR)!;
  const to = root.child(name, { create: true })!;
  try {
    for (const hash of bad) {
      try {
        native().renameAt(from.fd, `${hash}.json`, to.fd, `${hash}.json`);
      } catch (error) {
        // a directory where an entry belongs: moved by its own name all the same
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
  } finally {
    from.close();
    to.close();
  }
  return { set_aside: name, entries: [...bad].sort() };
}

