/**
 * The environment variables that open a vault (docs/FORMAT.md, "Unlock order"; VAULT_NEW_PASSPHRASE
 * for `key add`). No target gets them, whatever its grant passes, and the agent's clients never
 * send them: a program granted one secret would otherwise hold the key to all of them.
 */
export const UNLOCK_VARIABLES: ReadonlySet<string> = new Set([
  'VAULT_KEY', 'VAULT_KEY_FILE', 'VAULT_IDENTITY_FILE', 'VAULT_PASSPHRASE', 'VAULT_NEW_PASSPHRASE',
]);
