/**
 * "Nothing changed on disk" for the tests of refusals: a snapshot of every file below a directory,
 * taken without following a link or opening a FIFO that a test planted there.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import type { RunResult, Workspace } from './cli.js';

/** Files larger than this are fingerprinted by size and mtime: hashing a planted 600 MB file twice per test is slow. */
const HASHED_UP_TO = 16 * 1024 * 1024;

/** Every entry below `root` as relative path → what it is (a file's SHA-256, 'dir', a link's target, 'fifo'). */
export function snapshot(root: string): Record<string, string> {
  const entries: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      const at = path.relative(root, full);
      if (entry.isDirectory()) {
        entries[`${at}/`] = 'dir';
        walk(full);
      } else if (entry.isSymbolicLink()) {
        entries[at] = `symlink to ${fs.readlinkSync(full)}`;
      } else if (!entry.isFile()) {
        entries[at] = 'not a regular file';
      } else {
        const stat = fs.statSync(full);
        entries[at] = stat.size > HASHED_UP_TO
          ? `${stat.size} bytes, modified ${stat.mtimeMs}`
          : createHash('sha256').update(fs.readFileSync(full)).digest('hex');
      }
    }
  };
  walk(root);
  return entries;
}

/** Runs `args` and checks that it changed nothing below the workspace root (vault, home, state). */
export function runUnchanged(ws: Workspace, args: string[], options: Parameters<Workspace['run']>[1] = {}): RunResult {
  const before = snapshot(ws.root);
  const result = ws.run(args, options);
  expect(snapshot(ws.root), `\`vault ${args.join(' ')}\` changed files on disk`).toEqual(before);
  return result;
}

/** Exactly one stderr line, `vault: …`, matching every pattern. */
export function expectOneLine(result: RunResult, ...patterns: (RegExp | string)[]): void {
  expect(result.stderr, result.stderr).toMatch(/^vault: [^\n]+\n$/);
  for (const pattern of patterns) expect(result.stderr).toMatch(pattern);
}
