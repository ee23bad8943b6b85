/**
 * Merging two authentic policies that two branches changed (docs/FORMAT.md, "Merging policies"):
 * the union of their grants and of their revocations, less every grant either side revoked (or the
 * user saw revoked), at the higher revision + 1. policy.json is one line, so git cannot merge two
 * changes to it; it leaves conflict markers, which parseConflict reads back into the two sides.
 */
import type { Grant, Revocation } from './format.js';
import { grantRevocation, type Policy, revocationKey } from './policy.js';

/** The two sides of a file git left with conflict markers (`<<<<<<<`, optionally `|||||||`, `=======`, `>>>>>>>`). */
export interface ConflictSides {
  ours: string;
  theirs: string;
}

const MARKER = { ours: '<<<<<<< ', base: '||||||| ', split: '=======', theirs: '>>>>>>> ' } as const;

/**
 * The sides of one conflict over the whole file (git's "merge" and "diff3" styles, gitattributes(5)
 * conflict-marker-size 7), or undefined when `text` holds no conflict markers. A file with text
 * outside the one conflict, or with several, is not a policy git could have left: undefined.
 */
export function parseConflict(text: string): ConflictSides | undefined {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const start = lines.findIndex((l) => l === '<<<<<<<' || l.startsWith(MARKER.ours));
  if (start !== 0) return undefined;
  const base = lines.findIndex((l) => l === '|||||||' || l.startsWith(MARKER.base));
  const split = lines.indexOf(MARKER.split);
  const end = lines.findIndex((l) => l === '>>>>>>>' || l.startsWith(MARKER.theirs));
  if (split < 1 || end !== lines.length - 1 || end < split) return undefined;
  const oursEnd = base > 0 && base < split ? base : split;
  return { ours: lines.slice(1, oursEnd).join('\n'), theirs: lines.slice(split + 1, end).join('\n') };
}

/**
 * The union of `ours` and `theirs`: every revocation of either; every grant of either (ours first,
 * each once, by its identity) that neither side, nor `alsoRevoked` (what the user saw revoked),
 * revokes; revision max + 1. Of two grants for the same target (secret, program, arguments), the
 * newer is kept and the older revoked, as `vault allow` made again does.
 */
export function mergePolicies(ours: Policy, theirs: Policy, alsoRevoked: Set<string> = new Set()): Policy {
  const revoked: Revocation[] = [];
  const seen = new Set<string>();
  for (const r of [...(ours.revoked ?? []), ...(theirs.revoked ?? [])]) {
    const key = revocationKey(r);
    if (!seen.has(key)) revoked.push(r);
    seen.add(key);
  }
  const grants: Grant[] = [];
  const granted = new Set<string>();
  for (const g of [...ours.grants, ...theirs.grants]) {
    const key = revocationKey(grantRevocation(g));
    if (granted.has(key) || seen.has(key) || alsoRevoked.has(key)) continue;
    granted.add(key);
    grants.push(g);
  }
  // two grants for one target (secret, program, arguments) made on two branches: the newer one
  // stands, as `vault allow` made again replaces the older one; the older is revoked
  const target = (g: Grant) => JSON.stringify([g.secret, g.sha256, g.args]);
  const newest = new Map<string, Grant>();
  for (const g of grants) {
    const other = newest.get(target(g));
    if (other === undefined || other.created < g.created) newest.set(target(g), g);
  }
  const superseded = grants.filter((g) => newest.get(target(g)) !== g);
  for (const g of superseded) {
    const key = revocationKey(grantRevocation(g));
    if (!seen.has(key)) revoked.push(grantRevocation(g));
    seen.add(key);
  }
  const kept = grants.filter((g) => !superseded.includes(g));
  const revision = Math.max(ours.revision, theirs.revision) + 1;
  return { revision, grants: kept, ...(revoked.length > 0 ? { revoked } : {}) };
}
