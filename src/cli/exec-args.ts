/**
 * `vault exec`'s flags, shared by the full CLI (commander, main.ts) and the lean path of entry.ts,
 * which runs an exec through the agent without loading commander, zod or libsodium. The lean
 * parser knows only the plain forms; anything else (help, a typo, `--mask` without `=`) returns
 * undefined and the full CLI parses it, errors included, so both always agree.
 */
import type { MaskStyle } from '../sandbox/masking.js';
import { VaultError } from '../vault/errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** The helper counts in u32 milliseconds (docs/helper-protocol.md): about 49 days. */
const MAX_DURATION_MS = 0xffff_ffff;
const TIER_NAMES = ['none', 'hardened', 'lockdown'];

/** "90s", "5m", "1.5h", "250ms", or a plain number of seconds as timeout(1) takes it; in ms, at least 1. */
export function parseDuration(flag: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  const ms = match === null ? Number.NaN : Math.round(Number(match[1]) * (DURATION_UNITS[match[2] ?? 's'] ?? Number.NaN));
  if (!Number.isFinite(ms) || ms < 1 || ms > MAX_DURATION_MS) {
    throw new VaultError('usage', `${flag} takes a duration such as 30s, 5m or 1h (a plain number is seconds), up to 49 days, not "${text}"`);
  }
  return ms;
}

/**
 * Masking is on where output may end up in a log (not a terminal, or CI is set) and off on a
 * terminal, where the child keeps its tty, colours and job control; --mask and --no-mask decide.
 */
export function maskStyle(flag: boolean | string | undefined): MaskStyle | undefined {
  if (flag === false) return undefined;
  if (typeof flag === 'string') {
    if (flag === 'stars' || flag === 'name') return flag;
    throw new VaultError('usage', `--mask takes =stars or =name, not "${flag}"; to mask with *** before the command, write \`--mask --\``);
  }
  if (flag === true) return 'stars';
  const ci = process.env.CI;
  const inCi = ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
  return inCi || !process.stdout.isTTY || !process.stderr.isTTY ? 'stars' : undefined;
}

export interface ExecFlags {
  tier?: string;
  net?: string;
  only?: string[];
  file?: string[];
  info?: boolean;
  mask?: boolean | string;
  timeout?: string;
  killAfter: string;
}

export interface LeanExec {
  /** `--vault DIR` given before `exec`, if any. */
  vault?: string;
  command: string;
  args: string[];
  flags: ExecFlags;
}

/** `vault [--vault DIR] exec [flags] [--] COMMAND [ARGS...]` in its plain forms, else undefined. */
export function parseLeanExec(argv: string[]): LeanExec | undefined {
  let i = 0;
  let vault: string | undefined;
  if (argv[i] === '--vault' && argv[i + 1] !== undefined) {
    vault = argv[i + 1];
    i += 2;
  } else if (argv[i]?.startsWith('--vault=') === true) {
    vault = argv[i]!.slice('--vault='.length);
    i += 1;
  }
  if (argv[i] !== 'exec') return undefined;
  i += 1;
  const flags: ExecFlags = { killAfter: '10s' };
  const valued = new Set(['--tier', '--net', '--only', '--file', '--timeout', '--kill-after']);
  while (i < argv.length) {
    const word = argv[i]!;
    if (word === '--') {
      i += 1;
      break;
    }
    if (!word.startsWith('-')) break;
    const at = word.indexOf('=');
    const name = at === -1 ? word : word.slice(0, at);
    let value: string | undefined = at === -1 ? undefined : word.slice(at + 1);
    if (valued.has(name) && value === undefined) {
      value = argv[i + 1];
      if (value === undefined) return undefined;
      i += 1;
    }
    i += 1;
    if (name === '--tier' && value !== undefined && TIER_NAMES.includes(value)) flags.tier = value;
    else if (name === '--net' && value !== undefined) flags.net = value;
    else if (name === '--only' && value !== undefined) flags.only = value.split(',').filter((n) => n !== '');
    else if (name === '--file' && value !== undefined) flags.file = [...(flags.file ?? []), value];
    else if (name === '--timeout' && value !== undefined) flags.timeout = value;
    else if (name === '--kill-after' && value !== undefined) flags.killAfter = value;
    else if (word === '--info') flags.info = true;
    else if (word === '--no-mask') flags.mask = false;
    else if (name === '--mask' && value !== undefined) flags.mask = value;
    else return undefined;
  }
  const command = argv[i];
  if (command === undefined) return undefined;
  // the full CLI says what is wrong with it (exit 2)
  if (flags.net !== undefined && flags.tier !== undefined && flags.tier !== 'lockdown') return undefined;
  return { ...(vault !== undefined ? { vault } : {}), command, args: argv.slice(i + 1), flags };
}
