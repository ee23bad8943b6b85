/**
 * The request `vault exec` sends to native/spawn_helper on fd 3, as docs/helper-protocol.md
 * specifies it. Secrets travel only in this byte string, never in argv or the helper's environment.
 */
import { TIERS, type Tier } from './tiers.js';

export interface HelperRequest {
  tier: Tier;
  argv: string[];
  /** "NAME=VALUE" strings; values may be bytes, so each entry is bytes. */
  env: Uint8Array[];
  files: { name: string; value: Uint8Array }[];
  hide: string[];
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

/** The request as one buffer; the caller wipes it once written, as it holds the secrets. */
export function encodeHelperRequest(request: HelperRequest): Uint8Array {
  const parts: Uint8Array[] = [encoder.encode('SVH1'), u32(TIERS.indexOf(request.tier))];
  parts.push(u32(request.argv.length), ...request.argv.flatMap((a) => lengthPrefixed(encoder.encode(a))));
  parts.push(u32(request.env.length), ...request.env.flatMap(lengthPrefixed));
  parts.push(u32(request.files.length), ...request.files.flatMap((f) => [...lengthPrefixed(encoder.encode(f.name)), ...lengthPrefixed(f.value)]));
  parts.push(u32(request.hide.length), ...request.hide.flatMap((h) => lengthPrefixed(encoder.encode(h))));
  const total = parts.reduce((sum, p) => sum + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
