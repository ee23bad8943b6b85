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

/** The grants, one row each; `stale[i]` says why grant i no longer matches its file (vault allow --renew). */
export function renderGrants(grants: Grant[], exists: (secret: string) => boolean, stale: (string | undefined)[]): string {
  if (grants.length === 0) return '(no grants; add one with `vault allow NAME --to PATH`)\n';
  const rows = table(
    ['SECRET', 'MIN-TIER', 'SHA256', 'PATH', 'RUN BY', 'ARGS', 'ENVIRONMENT', 'LOCKDOWN PATHS', 'STATE'],
    grants.map((g, i) => [
      exists(g.secret) ? g.secret : `${g.secret} (missing)`,
      g.min_tier,
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
  return renew.length === 0 ? rows : `${rows}stale grants: renew them with ${renew.map((p) => `\`vault allow --renew ${p}\``).join(', ')}\n`;
}

export function renderAudit(entries: AuditEntry[]): string {
  return entries
    .map((e) => `${String(e.seq).padStart(5)}  ${e.time}  ${e.actor.user.padEnd(10)} ${e.event.padEnd(8)} ${JSON.stringify(e.details)}\n`)
    .join('');
}
