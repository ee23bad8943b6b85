// The spawn helper's request (docs/helper-protocol.md), encoded as src/sandbox/helper-protocol.ts
// does, for the benchmark rows that run build/Release/spawn_helper without `vault`: "SVH1", u32
// tier, then argv, env, files and hidden paths, each a u32 count of u32-length-prefixed strings
// (all little-endian).

const TIERS = ['none', 'hardened', 'lockdown'];

function u32(value) {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value, 0);
  return bytes;
}

const lengthPrefixed = (text) => {
  const bytes = Buffer.from(text);
  return [u32(bytes.length), bytes];
};

/** The request as one Buffer; `env` holds "NAME=VALUE" strings, `files` { name, value }. */
export function encodeHelperRequest({ tier, argv, env = [], files = [], hide = [] }) {
  const index = TIERS.indexOf(tier);
  if (index === -1) throw new Error(`unknown tier ${tier}`);
  return Buffer.concat([
    Buffer.from('SVH1'),
    u32(index),
    u32(argv.length),
    ...argv.flatMap(lengthPrefixed),
    u32(env.length),
    ...env.flatMap(lengthPrefixed),
    u32(files.length),
    ...files.flatMap((f) => [...lengthPrefixed(f.name), ...lengthPrefixed(f.value)]),
    u32(hide.length),
    ...hide.flatMap(lengthPrefixed),
  ]);
}
