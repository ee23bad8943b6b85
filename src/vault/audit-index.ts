/**
 * Each user's index of the audit entries they have read, per vault (audit-dag.ts DagIndex), in
 * their state directory: `audit-index/ID` (`ID` the vault id in base64url), lines of
 * `HASH PARENT,PARENT`. Only this user writes it; a damaged line is read as absent.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DagIndex } from './audit-dag.js';
import { stateDirectory } from './paths.js';
import { O_APPEND, O_CREAT, O_RDONLY, O_WRONLY, VaultDir } from './vault-dir.js';

/** An index past this many bytes (about 400,000 entries) is not read: every entry is read instead. */
const INDEX_CAP = 64 * 1024 * 1024;

/**
 * The index of `vaultId` for one change: lines learned are kept in memory until `save()`, which the
 * change calls once its entry is written, so that a refused change leaves the state as it was.
 */
export function auditIndex(vaultId: string): DagIndex & { save(): void } {
  const name = Buffer.from(vaultId, 'base64').toString('base64url');
  const where = path.join(stateDirectory(), 'audit-index');
  let learned = '';
  let remembered: { stamp: string; heads: string[] } | undefined;
  const read = (file: string): string => {
    const dir = VaultDir.open(where);
    if (dir === undefined) return '';
    try {
      const opened = dir.openFile(file, O_RDONLY);
      if (opened === undefined) return '';
      try {
        return opened.stat.size > INDEX_CAP ? '' : fs.readFileSync(opened.fd, 'utf8');
      } finally {
        fs.closeSync(opened.fd);
      }
    } finally {
      dir.close();
    }
  };
  return {
    load: () => read(name),
    append: (lines) => {
      learned += lines;
    },
    snapshot: () => {
      // `STAMP\nHEAD\nHEAD…\n`, written whole by save(); anything else is no snapshot
      const [stamp, ...heads] = read(`${name}.heads`).split('\n').filter((line) => line !== '');
      const valid = stamp !== undefined && heads.length > 0 && heads.every((h) => /^[0-9a-f]{64}$/.test(h));
      return valid ? { stamp, heads } : undefined;
    },
    remember: (stamp, heads) => {
      remembered = { stamp, heads };
    },
    save: () => {
      if (learned === '' && remembered === undefined) return;
      const dir = VaultDir.open(where, { create: true })!;
      try {
        if (learned !== '') {
          const opened = dir.openFile(name, O_WRONLY | O_APPEND | O_CREAT);
          if (opened !== undefined) {
            try {
              fs.writeSync(opened.fd, learned);
              learned = '';
            } finally {
              fs.closeSync(opened.fd);
            }
          }
        }
        if (remembered !== undefined) {
          dir.writeAtomic(dir, `${name}.heads`, `${[remembered.stamp, ...remembered.heads].join('\n')}\n`);
        }
      } finally {
        dir.close();
      }
    },
  };
}
