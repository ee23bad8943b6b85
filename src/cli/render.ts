/**
 * How lists look to people (`--json` prints the data itself). Every cell is escaped (printable.ts):
 * paths, names and labels come from files anyone who can write the vault may have written.
 */
import type { DagEntry } from '../vault/audit-dag.js';
import type { AuditEntry, Grant } from '../vault/format.js';
import { printable, printableJson } from '../vault/printable.js';
import type { SecretInfo } from '../vault/vault.js';

function table(header: string[], cells: string[][]): string {
  const rows = cells.map((row) => row.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

export function renderSecrets(secrets: SecretInfo[]): string {
  if (secrets.length === 0) return '(no secrets; add one with `vault put NAME`)\n';
  // KIND config: delivered unmasked where a grant says so too (docs/FORMAT.md, "Configuration values")
  return table(
    ['NAME', 'KIND', 'BYTES', 'UPDATED'],
    secrets.map((s) => [s.name, s.config ? 'config' : 'secret', String(s.size), s.updated]),
  );
}

/** A slot as `vault key list` shows it; `known` is false for a kind from a newer sealvault, which unlock skips. */
export interface SlotRow {
  id: string;
  kind: string;
  created?: string;
  /** Who or what it is for; a writer of the vault can change it (docs/FORMAT.md): it names, it proves nothing. */
  label?: string;
  /** A recipient slot's age recipient (age1…). */
  recipient?: string;
  known: boolean;
}

export function renderSlots(slots: SlotRow[]): string {
  return table(
    ['ID', 'KIND', 'LABEL', 'CREATED', 'RECIPIENT'],
    slots.map((s) => [s.id, s.known ? s.kind : `${s.kind} (unknown: skipped)`, s.label ?? '-', s.created ?? '-', s.recipient ?? '-']),
  );
}

/** The recipient slots: whose, the age recipient, the slot. */
export function renderRecipients(rows: { label: string | null; recipient: string; id: string; created: string }[]): string {
  if (rows.length === 0) return '(no recipients; add one with `vault recipient add LABEL age1…`)\n';
  return table(['LABEL', 'RECIPIENT', 'SLOT', 'CREATED'], rows.map((r) => [r.label ?? '-', r.recipient, r.id, r.created]));
}

/** The grants, one row each; `stale[i]` says why grant i no longer matches its file (vault allow --renew). */
export function renderGrants(grants: Grant[], exists: (secret: string) => boolean, stale: (string | undefined)[]): string {
  if (grants.length === 0) return '(no grants; add one with `vault allow NAME --to PATH`)\n';
  const rows = table(
    ['SECRET', 'MIN-TIER', 'NET', 'AS', 'MASK', 'SHA256', 'PATH', 'RUN BY', 'ARGS', 'ENVIRONMENT', 'LOCKDOWN PATHS', 'STATE'],
    grants.map((g, i) => [
      exists(g.secret) ? g.secret : `${g.secret} (missing)`,
      g.min_tier,
      // what lockdown gives it: a grant without --net gets loopback only there
      g.net === undefined ? (g.min_tier === 'lockdown' ? 'none' : '-') : typeof g.net === 'string' ? g.net : g.net.join(','),
      g.file === undefined ? 'env' : `file${g.file.path !== undefined ? `:${g.file.path}` : ''}`,
      g.mask ?? '-',
      g.sha256.slice(0, 16),
      g.path,
      g.interpreter === undefined ? '-' : `${g.interpreter.path}${g.interpreter.arg !== undefined ? ` ${g.interpreter.arg}` : ''}`,
      g.args === null ? '(any)' : JSON.stringify(g.args),
      [...Object.entries(g.env ?? {}).sort().map(([n, v]) => `${n}=${v}`), ...(g.pass_env ?? []).map((n) => `pass:${n}`)].join(' ') || '-',
      [...(g.ro ?? []).map((p) => `ro:${p}`), ...(g.rw ?? []).map((p) => `rw:${p}`)].join(' ') || '-',
      stale[i] === undefined ? 'ok' : `STALE: ${stale[i]}`,
    ]),
  );
  const renew = [...new Set(grants.filter((_, i) => stale[i] !== undefined).map((g) => g.path))];
  const how = renew.map((p) => `\`vault allow --renew ${printable(p)}\``).join(', ');
  return renew.length === 0 ? rows : `${rows}stale grants: renew them with ${how}\n`;
}

/** One line of `vault audit`; the details as JSON with every control character escaped. */
/** One entry per line: the run log's and audit.log's by number, audit/'s by the first 12 characters of its hash. */
export function renderAuditEntry(e: AuditEntry | DagEntry): string {
  const id = 'seq' in e ? String(e.seq).padStart(12) : e.hash.slice(0, 12);
  return `${id}  ${e.time}  ${printable(e.actor.user).padEnd(10)} ${e.event.padEnd(8)} ${printableJson(e.details)}\n`;
}
