/** How lists look to people (`--json` prints the data itself). */
import type { AuditEntry, Grant, SlotFile } from '../vault/format.js';
import type { SecretInfo } from '../vault/vault.js';

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

export function renderSecrets(secrets: SecretInfo[]): string {
  if (secrets.length === 0) return '(no secrets; add one with `vault put NAME`)\n';
  return table(['NAME', 'BYTES', 'UPDATED'], secrets.map((s) => [s.name, String(s.size), s.updated]));
}

export function renderSlots(slots: SlotFile[]): string {
  return table(['ID', 'KIND', 'CREATED'], slots.map((s) => [s.id, s.kind, s.created]));
}

export function renderGrants(grants: Grant[], exists: (secret: string) => boolean): string {
  if (grants.length === 0) return '(no grants; add one with `vault allow NAME --to PATH`)\n';
  return table(
    ['SECRET', 'MIN-TIER', 'SHA256', 'PATH', 'ARGS', 'LOCKDOWN PATHS'],
    grants.map((g) => [
      exists(g.secret) ? g.secret : `${g.secret} (missing)`,
      g.min_tier,
      g.sha256.slice(0, 16),
      g.path,
      g.args === null ? '(any)' : JSON.stringify(g.args),
      [...(g.ro ?? []).map((p) => `ro:${p}`), ...(g.rw ?? []).map((p) => `rw:${p}`)].join(' ') || '-',
    ]),
  );
}

export function renderAudit(entries: AuditEntry[]): string {
  return entries
    .map((e) => `${String(e.seq).padStart(5)}  ${e.time}  ${e.actor.user.padEnd(10)} ${e.event.padEnd(8)} ${JSON.stringify(e.details)}\n`)
    .join('');
}
