/**
 * Reads secret values back for assertions. No `vault` command can do that (by design), so tests use
 * the same library call that `vault exec` will use, in-process, with the vault's token.
 */
import { Vault } from '../../src/vault/vault.js';

export async function openAllSecrets(vaultDir: string, token: string): Promise<Map<string, Buffer>> {
  const saved = process.env.VAULT_KEY;
  process.env.VAULT_KEY = token;
  try {
    const vault = Vault.open(vaultDir, { checkPin: false });
    try {
      const unlocked = await vault.unlock();
      try {
        const names = vault.list().map((s) => s.name);
        const values = unlocked.openSecrets(names);
        return new Map([...values].map(([name, value]) => [name, Buffer.from(value)]));
      } finally {
        unlocked.close();
      }
    } finally {
      vault.close();
    }
  } finally {
    if (saved === undefined) delete process.env.VAULT_KEY;
    else process.env.VAULT_KEY = saved;
  }
}
