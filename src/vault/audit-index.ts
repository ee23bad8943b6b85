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

export function auditIndex(vaultId: string): DagIndex {
  const name = Buffer.from(vaultId, 'base64').toString('base64url');
  const where = path.join(stateDirectory(), 'audit-index');
  return {
    load: () => {
      const dir = VaultDir.open(where);
      if (dir === undefined) return '';
      try {
        const opened = dir.openFile(name, O_RDONLY);
        if (opened === undefined) return '';
        try {
          return opened.stat.size > INDEX_CAP ? '' : fs.readFileSync(opened.fd, 'utf8');
        } finally {
          fs.closeSync(opened.fd);
        }
      } finally {
        dir.close();
      }
    },
    append: (lines) => {
      const dir = VaultDir.open(where, { create: true })!;
      try {
        const opened = dir.openFile(name, O_WRONLY | O_APPEND | O_CREAT);
        if (opened === undefined) return;
        try {
          fs.writeSync(opened.fd, lines);
        } finally {
          fs.closeSync(opened.fd);
        }
      } finally {
        dir.close();
      }
    },
  };
}
