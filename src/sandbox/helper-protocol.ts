/**
 * The request `vault exec` sends to native/spawn_helper on fd 3, as docs/helper-protocol.md
 * specifies it. Secrets travel only in this byte string, never in argv or the helper's environment.
 */
import { TIERS, type Tier } from './tiers.js';

/** The header flags (docs/helper-protocol.md, "The request"). */
/** The magic a request starts with; native/spawn_helper.c refuses any other (docs/helper-protocol.md). */
export const HELPER_PROTOCOL = 'SVH3';

export const HELPER_FLAGS = {
  /** fd 0 is the caller's terminal: the target gets a pty of its own as controlling terminal and stdin. */
  pty: 1,
  ptyStdout: 2,
  ptyStderr: 4,
  /** The target's stdout is a pipe that the helper copies to its own fd 1 (masking reads that). */
  relayStdout: 8,
  relayStderr: 16,
  /** The caller puts the terminal's modes back itself (it still writes masked output): the helper leaves it raw. */
  callerRestoresTerminal: 32,
  /** lockdown keeps the host's network namespace (`--net host`). */
  netHost: 64,
  /** lockdown's own network namespace with the request's nftables ruleset, and a user-mode stack vault attaches (fd 7). */
  netEgress: 128,
  /** The target's stdout and stderr are one relayed pipe, copied to fd 1: with relayStdout, without relayStderr or ptyStderr. */
  relayOne: 256,
} as const;

/** What a lockdown mount entry does (docs/helper-protocol.md, "Mount entries"). */
export const MOUNT_KINDS = { readOnly: 1, readWrite: 2, emptyDir: 3, symlink: 4, scriptCopy: 5, content: 6 } as const;
export type MountKind = keyof typeof MOUNT_KINDS;

export interface MountEntry {
  kind: MountKind;
  /** Absolute, without symlinks, "." or ".." components: where the target sees it. */
  path: string;
  /** symlink: what the link points to; content: the file's text. */
  target?: string;
}

export interface HelperRequest {
  tier: Tier;
  /** HELPER_FLAGS, or-ed. */
  flags?: number;
  /** SIGTERM after this many ms (0 or absent: never), SIGKILL killAfterMs later. */
  timeoutMs?: number;
  killAfterMs?: number;
  argv: string[];
  /** "NAME=VALUE" strings; values may be bytes, so each entry is bytes. */
  env: Uint8Array[];
  /** `path`: lockdown only, where the grant puts it in the sandbox's own root (default /tmp/.vault-secrets/NAME). */
  files: { name: string; value: Uint8Array; path?: string }[];
  /** With the netEgress flag: the nftables ruleset and the nft(8) that loads it. */
  network?: { ruleset: string; nftPath: string };
  hide: string[];
  /** lockdown's root, beyond its fixed /proc, /dev and /tmp. */
  mounts?: MountEntry[];
}

const encoder = new TextEncoder();

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  return bytes;
}

function lengthPrefixed(bytes: Uint8Array): Uint8Array[] {
  return [u32(bytes.length), bytes];
}

const text = (s: string) => lengthPrefixed(encoder.encode(s));

/** The request as one buffer; the caller wipes it once written, as it holds the secrets. */
export function encodeHelperRequest(request: HelperRequest): Uint8Array {
  const parts: Uint8Array[] = [encoder.encode(HELPER_PROTOCOL), u32(TIERS.indexOf(request.tier)), u32(request.flags ?? 0)];
  parts.push(u32(request.timeoutMs ?? 0), u32(request.killAfterMs ?? 0));
  if (((request.flags ?? 0) & HELPER_FLAGS.netEgress) !== 0) {
    if (request.network === undefined) throw new Error('the netEgress flag needs a network section');
    parts.push(...text(request.network.ruleset), ...text(request.network.nftPath));
  }
  parts.push(u32(request.argv.length), ...request.argv.flatMap(text));
  parts.push(u32(request.env.length), ...request.env.flatMap(lengthPrefixed));
  parts.push(u32(request.files.length), ...request.files.flatMap((f) => [...text(f.name), ...text(f.path ?? ''), ...lengthPrefixed(f.value)]));
  parts.push(u32(request.hide.length), ...request.hide.flatMap(text));
  const mounts = request.mounts ?? [];
  parts.push(u32(mounts.length), ...mounts.flatMap((m) => [u32(MOUNT_KINDS[m.kind]), ...text(m.path), ...text(m.target ?? '')]));
  const total = parts.reduce((sum, p) => sum + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
