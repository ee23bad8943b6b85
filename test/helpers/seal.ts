/**
 * Many secrets at once for tests of large vaults (rekey of 10,000): sealed with sealvault's own
 * crypto to the vault's public key and written as docs/FORMAT.md's secret files, without one
 * `vault put` (and one audit entry) each.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromBase64, sealSecret, toBase64 } from '../../src/vault/crypto.js';

export function sealSecretFiles(vaultDir: string, values: Map<string, string>): void {
  const { public_key: publicKey } = JSON.parse(fs.readFileSync(path.join(vaultDir, 'vault.json'), 'utf8')) as { public_key: string };
  const key = fromBase64(publicKey);
  const now = new Date().toISOString();
  for (const [name, value] of values) {
    const sealed = toBase64(sealSecret(key, name, new TextEncoder().encode(value)));
    const file = { format: 'sealvault-secret', version: 1, created: now, updated: now, sealed };
    fs.writeFileSync(path.join(vaultDir, 'secrets', `${name}.json`), `${JSON.stringify(file)}\n`, { mode: 0o600 });
  }
}
