/**
 * Each user's log of the runs of one vault (docs/FORMAT.md, "Run log"): `release` before a program
 * gets its secrets, `exit` after, and the agent's `agent-start` and `agent-refused`, in the hash-
 * chained format of audit.log, kept in the user's state directory, outside the vault. Running a
 * program thus never changes the vault directory, or the repository it is committed to.
 */
import {
  type AuditEvent, type AuditHead, type AuditReading, appendAudit, AUDIT_FILE, prepareAppend, readAudit,
} from './audit.js';
import type { AuditEntry } from './format.js';
import { stateDirectory } from './paths.js';
import { VaultDir } from './vault-dir.js';
import * as path from 'node:path';

/** The directory of the run log of `vaultId` (the vault id of vault.json, base64): runs/ID in base64url. */
export function runLogDirectory(vaultId: string): string {
  return path.join(stateDirectory(), 'runs', Buffer.from(vaultId, 'base64').toString('base64url'));
}

/** The run log's file, for messages and tests. */
export function runLogFile(vaultId: string): string {
  return path.join(runLogDirectory(vaultId), AUDIT_FILE);
}

/**
 * Appends one entry, fsynced, under an flock on `.lock` beside the log; a torn last line is set
 * aside as in the vault's old audit.log ("Torn last line"). Throws when it cannot be written:
 * `vault exec` then releases nothing.
 */
export function recordRun(vaultId: string, event: AuditEvent, details: Record<string, unknown>): AuditHead {
  const dir = VaultDir.open(runLogDirectory(vaultId), { create: true })!;
  try {
    return dir.withLock('.lock', () => appendAudit(dir, prepareAppend(dir, dir, undefined), event, details));
  } finally {
    dir.close();
  }
}

/** Reads and checks this user's run log of `vaultId` (empty when there is none). */
export function readRunLog(vaultId: string, onEntry?: (entry: AuditEntry) => void): AuditReading {
  const dir = VaultDir.open(runLogDirectory(vaultId));
  if (dir === undefined) return { count: 0 };
  try {
    return readAudit(dir, undefined, onEntry);
  } finally {
    dir.close();
  }
}
