/**
 * Unlocking for a command: the passphrase asked at the terminal when there is one, and the rule that
 * a change is not made through the keychain without a terminal (issue 12). Shared by main.ts and
 * the lean `vault exec` (exec-command.ts).
 */
import { type UnlockedVault, Vault } from '../vault/vault.js';
import { say } from './messages.js';
import { askHidden, hasTerminal } from './terminal.js';

/**
 * Unlocks for a command; for one that changes the vault (`changes`), the keychain counts only with a
 * terminal: without one, nothing shows that a person asked, and any process of the user can read
 * the keychain item. With a terminal it is used, with a warning saying the same.
 */
export async function unlocked(vault: Vault, changes = false, identityFile?: string, keepKek = false): Promise<UnlockedVault> {
  const terminal = hasTerminal();
  return vault.unlock({
    ...(keepKek ? { keepKek } : {}),
    ...(identityFile !== undefined ? { identityFile } : {}),
    ...(terminal ? { askPassphrase: (attempt: number) => askHidden(attempt === 1 ? 'Vault passphrase: ' : 'Wrong passphrase, try again: ') } : {}),
    ...(changes && !terminal
      ? { keychainRefused: 'a change is not made with the keychain without a terminal (any process of yours can use the keychain)' }
      : {}),
  });
}

/** Runs `work` with the vault at `directory` unlocked (`identityFile`: from --identity), and wipes the private key however it ends. */
export async function withUnlockedVault<T>(
  directory: string, work: (vault: UnlockedVault) => T | Promise<T>,
  options: { checkPin?: boolean; changes?: boolean; identityFile?: string; keepKek?: boolean } = {},
): Promise<T> {
  const open = await unlocked(Vault.open(directory, options), options.changes === true, options.identityFile, options.keepKek === true);
  if (options.changes === true && open.openedWith.kind === 'keychain') {
    say(
      'vault: warning: unlocked through the keychain, which any process of yours can use to change this vault as ' +
        'you just did; for a vault only you can change, give it a passphrase slot, remove the keychain slot and ' +
        'run `vault agent` (docs/agents.md)',
    );
  }
  try {
    return await work(open);
  } finally {
    open.close();
  }
}
