// Fills a vault made by `vault init` with many secrets directly on disk, following docs/FORMAT.md,
// instead of running one `vault put` process per secret (10,000 of them would take minutes).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import sodium from 'libsodium-wrappers';

const sha256Hex = (text) => createHash('sha256').update(text).digest('hex');

/** Secret names of the fixture: BENCH_00000, BENCH_00001, ... (valid, not reserved). */
export const fixtureName = (i) => `BENCH_${String(i).padStart(5, '0')}`;

function actor() {
  const uid = process.getuid?.() ?? -1;
  let user = String(uid);
  try {
    user = os.userInfo().username;
  } catch {
    // no passwd entry: the product records the uid as the name too
  }
  return { uid, user };
}

/**
 * Writes `count` secrets of `valueBytes` random bytes each into `vaultDir`
 * (secrets/NAME.json = crypto_box_seal(NAME ‖ 0x00 ‖ value, public_key)), and one `put` entry per
 * secret in audit/ (docs/FORMAT.md, "audit/"), each the child of the one before, as `count` real
 * puts would have left behind.
 */
export async function fillVault(vaultDir, count, valueBytes = 32) {
  await sodium.ready;
  const vaultFile = JSON.parse(fs.readFileSync(path.join(vaultDir, 'vault.json'), 'utf8'));
  const publicKey = new Uint8Array(Buffer.from(vaultFile.public_key, 'base64'));
  if (publicKey.length !== 32) throw new Error(`${vaultDir}/vault.json: public_key is not 32 bytes`);

  const auditDir = path.join(vaultDir, 'audit');
  const entryHashes = fs.readdirSync(auditDir).filter((f) => /^[0-9a-f]{64}\.json$/.test(f)).map((f) => f.slice(0, 64));
  if (entryHashes.length !== 1) throw new Error(`${auditDir} holds ${entryHashes.length} entries; fill a vault fresh from \`vault init\``);
  let parent = entryHashes[0];
  const who = actor();
  const encoder = new TextEncoder();

  for (let i = 0; i < count; i += 1) {
    const name = fixtureName(i);
    const nameBytes = encoder.encode(name);
    const message = new Uint8Array(nameBytes.length + 1 + valueBytes);
    message.set(nameBytes, 0);
    message.set(sodium.randombytes_buf(valueBytes), nameBytes.length + 1);
    const sealed = Buffer.from(sodium.crypto_box_seal(message, publicKey)).toString('base64');
    const time = new Date().toISOString();
    const secret = { format: 'sealvault-secret', version: 1, created: time, updated: time, sealed };
    fs.writeFileSync(path.join(vaultDir, 'secrets', `${name}.json`), `${JSON.stringify(secret)}\n`, { mode: 0o600 });

    const entry = `${JSON.stringify({ time, event: 'put', actor: who, details: { name }, parents: [parent] })}\n`;
    parent = sha256Hex(entry);
    fs.writeFileSync(path.join(auditDir, `${parent}.json`), entry, { mode: 0o600 });
  }
}
