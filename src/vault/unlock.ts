/**
 * Unlocking: `VAULT_KEY` or `VAULT_KEY_FILE` (a token) → an age identity (`--identity FILE` or
 * `VAULT_IDENTITY_FILE`) for recipient slots → the OS keychain → `VAULT_PASSPHRASE` or a passphrase typed at
 * the terminal. A credential that is given but opens nothing is an error, never a reason to fall
 * through quietly. Every unlock checks that the private key belongs to the vault's public key.
 */
import { fromBase64, publicKeyMatches, wipe } from './crypto.js';
import { VaultError } from './errors.js';
import type { SlotFile } from './format.js';
import { keychainRead } from './keychain.js';
import { givenIdentities } from './identity-source.js';
import { decodeToken, openPassphraseSlot, openRecipientSlot, openSlot } from './keyslots.js';
import { givenToken } from './token-source.js';

export interface UnlockOptions {
  /** Asks for the passphrase at the terminal; absent when there is no terminal. */
  askPassphrase?: (attempt: number) => Promise<Uint8Array>;
  /**
   * Why keychain slots are not to be tried, when they are not: a change made without a terminal.
   * The keychain hands its item to any process of the user, so it proves no person is there.
   */
  keychainRefused?: string;
  /** The age identity file `--identity` named (before VAULT_IDENTITY_FILE). */
  identityFile?: string;
  /** Keep the opening slot's KEK in the unlocked vault (rekey wraps the new key under it again). */
  keepKek?: boolean;
}

export interface UnlockedKey {
  secretKey: Uint8Array;
  slot: SlotFile;
  /**
   * The KEK that opened `slot`, for rekey to wrap the new key under it again; absent for a recipient
   * slot (rekey makes it a new KEK and age file). The caller wipes it.
   */
  kek?: Uint8Array;
}

const PROMPT_ATTEMPTS = 3;

export async function unlockPrivateKey(
  vaultId: Uint8Array,
  publicKey: Uint8Array,
  slots: SlotFile[],
  options: UnlockOptions,
): Promise<UnlockedKey> {
  const unlocked = await findOpeningSlot(vaultId, publicKey, slots, options);
  if (!publicKeyMatches(unlocked.secretKey, publicKey)) {
    wipe(unlocked.secretKey, unlocked.kek);
    throw new VaultError(
      'tampered',
      `slot ${unlocked.slot.id} opened, but its private key does not belong to the public key in vault.json: someone replaced the public key; do not put secrets into this vault until you have restored vault.json`,
    );
  }
  return unlocked;
}

/**
 * Recipient slots one identity may try per unlock. Anyone can make an age file to your recipient, so
 * a writer of the vault can plant any number of slots your identity opens; each costs a few ms of
 * X25519. Past this many, the rest are not tried, with a notice (as the passphrase budget).
 */
export const RECIPIENT_SLOT_BUDGET = 8;

async function findOpeningSlot(vaultId: Uint8Array, publicKey: Uint8Array, slots: SlotFile[], options: UnlockOptions): Promise<UnlockedKey> {
  const tried: string[] = [];
  const ofKind = <K extends SlotFile['kind']>(kind: K) => slots.filter((s): s is SlotFile & { kind: K } => s.kind === kind);

  const token = givenToken();
  if (token !== undefined) {
    const kek = decodeToken(token.text, token.source);
    try {
      for (const slot of ofKind('token')) {
        const secretKey = openSlot(slot, vaultId, kek);
        if (secretKey !== undefined) return { secretKey, slot, kek: kek.slice() };
      }
    } finally {
      wipe(kek);
    }
    const count = ofKind('token').length;
    throw new VaultError(
      'wrongKey',
      count === 0
        ? `${token.source} is set but this vault has no token slot; unset it, or add one with \`vault key add --token\``
        : `${token.source} opens none of this vault's ${count} token slot(s): it belongs to another vault or its slot was removed; check the token`,
    );
  }
  tried.push('neither VAULT_KEY nor VAULT_KEY_FILE is set');

  // an identity given is, like a token, never a reason to fall through to the next way
  const identity = await givenIdentities(options.identityFile);
  if (identity !== undefined) {
    // only the slots made for one of these identities; a planted slot may claim that too (it names, it
    // proves nothing), so the number tried is bounded, and one that opens to another key is passed over
    const mine = ofKind('recipient').filter((slot) => identity.recipients.includes(slot.recipient.age_recipient));
    if (mine.length > RECIPIENT_SLOT_BUDGET) {
      process.emitWarning(
        `recipient slot(s) ${mine.slice(RECIPIENT_SLOT_BUDGET).map((s) => s.id).join(', ')} for your identity are not tried: ` +
          `only ${RECIPIENT_SLOT_BUDGET} are, since anyone who can write the vault can add such slots; remove those you did not make (\`vault key list\`)`,
      );
    }
    const planted: string[] = [];
    for (const slot of mine.slice(0, RECIPIENT_SLOT_BUDGET)) {
      const secretKey = await openRecipientSlot(slot, vaultId, identity.identities);
      if (secretKey === undefined) continue;
      if (publicKeyMatches(secretKey, publicKey)) return { secretKey, slot };
      wipe(secretKey);
      planted.push(slot.id);
    }
    if (planted.length > 0) {
      throw new VaultError(
        'tampered',
        `recipient slot(s) ${planted.join(', ')} open with ${identity.source} but hold a key that is not this vault's: someone who ` +
          'can write the vault planted them, and no slot of yours is left; remove them with `vault key rm ID`, and restore your slot from version control',
      );
    }
    const count = ofKind('recipient').length;
    throw new VaultError(
      'wrongKey',
      count === 0
        ? `${identity.source} is given but this vault has no recipient slot; add yours with \`vault recipient add LABEL age1…\``
        : `${identity.source} opens none of this vault's ${count} recipient slot(s): give the right identity, ` +
          'or ask someone who can unlock to add its recipient (`vault recipient add`); if your slot was removed, ' +
          '`vault key list` no longer shows it',
    );
  }
  if (ofKind('recipient').length > 0) tried.push('no age identity given (--identity FILE or VAULT_IDENTITY_FILE)');

  const keychainSlots = options.keychainRefused === undefined ? ofKind('keychain') : [];
  if (options.keychainRefused !== undefined && ofKind('keychain').length > 0) tried.push(options.keychainRefused);
  for (const slot of keychainSlots) {
    const read = await keychainRead(slot.keychain.account);
    if (!read.found) {
      tried.push(`keychain slot ${slot.id}: ${read.reason}`);
      continue;
    }
    // any process of the user can write the item: it may not even be base64 of 32 bytes
    const kek = fromBase64(read.value);
    let secretKey: Uint8Array | undefined;
    try {
      secretKey = openSlot(slot, vaultId, kek);
      if (secretKey !== undefined) return { secretKey, slot, kek: kek.slice() };
    } finally {
      wipe(kek);
    }
    tried.push(`keychain slot ${slot.id}: the keychain's key does not open it`);
  }
  if (ofKind('keychain').length === 0) tried.push('no keychain slot');

  const passphraseSlots = ofKind('passphrase');
  const fromEnv = process.env.VAULT_PASSPHRASE;
  if (passphraseSlots.length > 0 && fromEnv !== undefined && fromEnv !== '') {
    const opened = await openWithPassphrase(passphraseSlots, vaultId, new TextEncoder().encode(fromEnv));
    if (opened !== undefined) return opened;
    throw new VaultError('wrongKey', `VAULT_PASSPHRASE opens none of this vault's ${passphraseSlots.length} passphrase slot(s): wrong passphrase`);
  }
  if (passphraseSlots.length > 0 && options.askPassphrase !== undefined) {
    for (let attempt = 1; attempt <= PROMPT_ATTEMPTS; attempt += 1) {
      const opened = await openWithPassphrase(passphraseSlots, vaultId, await options.askPassphrase(attempt));
      if (opened !== undefined) return opened;
    }
    throw new VaultError('wrongKey', `wrong passphrase, ${PROMPT_ATTEMPTS} times`);
  }
  tried.push(
    passphraseSlots.length === 0
      ? 'no passphrase slot'
      : 'VAULT_PASSPHRASE is not set and there is no terminal to ask for the passphrase',
  );
  throw new VaultError(
    'noUnlock',
    `cannot unlock the vault: ${tried.join('; ')}. Set VAULT_KEY (or VAULT_KEY_FILE) to a token, VAULT_IDENTITY_FILE to your age identity ` +
      '(or give --identity FILE), or VAULT_PASSPHRASE; or run in a terminal',
  );
}

async function openWithPassphrase(
  slots: (SlotFile & { kind: 'passphrase' })[],
  vaultId: Uint8Array,
  passphrase: Uint8Array,
): Promise<UnlockedKey | undefined> {
  try {
    for (const slot of slots) {
      const opened = await openPassphraseSlot(slot, vaultId, passphrase);
      if (opened !== undefined) return { ...opened, slot };
    }
    return undefined;
  } finally {
    wipe(passphrase);
  }
}
