/**
 * The vault's change log as a hash DAG (docs/FORMAT.md, "audit/"): one file per entry, named by the
 * SHA-256 of its bytes, naming the hashes of its parents, like git's own objects. Two branches that
 * each changed the vault add different files, so git merges them as a union without a conflict;
 * the next write names every head as a parent and so joins them. An entry edited, or removed while
 * a later entry names it, breaks the DAG; removing the newest entries is what checking out an older
 * branch does, and is not a break (SECURITY.md says so). Callers of appendEntry hold the vault lock.
 */
import * as os from 'node:os';
import * as z from 'zod/mini';
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
  parents: z.array(hex64).check(z.refine((p) => p.every((h, i) => i === 0 || p[i - 1]! < h), 'sorted, without duplicates')),
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

function actor(): DagEntry['actor'] {
  const uid = process.getuid?.() ?? -1;
  let user = String(uid);
  try {
    user = os.userInfo().username;
  } catch {
    // a uid without a passwd entry (containers) is still recorded by number
  }
  return { uid, user };
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
  if (sha256Hex(bytes) !== hash) return { hash, reason: 'its bytes do not hash to its name: it was edited', kind: 'tampered' };
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
        missing.push({ hash, reason: `it names a parent ${parent.slice(0, 12)}… that is not there: an entry was removed`, kind: 'tampered' });
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
}

const INDEX_LINE = /^([0-9a-f]{64}) ((?:[0-9a-f]{64}(?:,[0-9a-f]{64})*)?)$/;

function broken(root: VaultDir, problem: DagProblem): VaultError {
  const advice = problem.whole === true
    ? ''
    : '; nothing was changed. Restore it from version control (`git checkout -- audit/`), or set the broken entries aside with `vault audit --accept`';
  return new VaultError(problem.kind, `${problemMessage(root, problem)}${advice}`);
}

/**
 * The heads the next entry joins, after checking the log (a broken one refuses the change: 9): the
 * entries `index` does not know are read and checked, and added to it; every parent must be there.
 */
export function dagHeads(root: VaultDir, index?: DagIndex): string[] {
  const dir = root.child(AUDIT_DIR);
  if (dir === undefined) return [];
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

/** The canonical bytes of an entry (docs/FORMAT.md, "audit/"), and their hash, its file's name. */
export function encodeEntry(event: string, details: AuditDetails, parents: string[], time = new Date().toISOString()): { bytes: Buffer; hash: string } {
  const bytes = Buffer.from(`${JSON.stringify({ time, event, actor: actor(), details, parents: [...parents].sort() })}\n`);
  if (bytes.length > SIZE_CAPS.auditEntry) throw new VaultError('internal', `an audit entry of ${bytes.length} bytes is over the limit of ${SIZE_CAPS.auditEntry}`);
  return { bytes, hash: sha256Hex(bytes) };
}

/** Writes one entry whose parents are `parents` (the heads dagHeads gave under the same lock), atomically. */
export function appendEntry(root: VaultDir, tmp: VaultDir, event: string, details: AuditDetails, parents: string[]): string {
  const { bytes, hash } = encodeEntry(event, details, parents);
  const dir = root.child(AUDIT_DIR, { create: true })!;
  try {
    dir.writeAtomic(tmp, `${hash}.json`, bytes);
  } finally {
    dir.close();
  }
  return hash;
}

/** The entries parents first (Kahn's algorithm), ties by time and then hash: the order `vault audit` shows. */
export function topological(entries: Map<string, DagEntry>): DagEntry[] {
  const children = new Map<string, string[]>();
  const waiting = new Map<string, number>();
  for (const entry of entries.values()) {
    const present = entry.parents.filter((p) => entries.has(p));
    waiting.set(entry.hash, present.length);
    for (const parent of present) children.set(parent, [...(children.get(parent) ?? []), entry.hash]);
  }
  const byTime = (a: DagEntry, b: DagEntry) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.hash < b.hash ? -1 : 1);
  const ready = [...entries.values()].filter((e) => waiting.get(e.hash) === 0);
  const order: DagEntry[] = [];
  while (ready.length > 0) {
    ready.sort(byTime);
    const next = ready.shift()!;
    order.push(next);
    for (const child of children.get(next.hash) ?? []) {
      const left = waiting.get(child)! - 1;
      waiting.set(child, left);
      if (left === 0) ready.push(entries.get(child)!);
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
  // descendants of a broken entry: their history cannot be checked
  for (let grew = true; grew;) {
    grew = false;
    for (const entry of reading.entries.values()) {
      if (!bad.has(entry.hash) && entry.parents.some((p) => bad.has(p))) {
        bad.add(entry.hash);
        grew = true;
      }
    }
  }
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

