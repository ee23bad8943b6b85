/**
 * Key slots, like LUKS: the vault's private key wrapped once per way of unlocking it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromBase64, keyFromPassphrase, KDF_RELEASE, randomBytes, slotAad, toBase64, unwrapKey, wipe, wrapKey } from './crypto.js';
import { VaultError } from './errors.js';
import { parseVaultFile, SLOT_ID_PATTERN, type SlotFile, slotFileSchema } from './format.js';
import { keychainWrite } from './keychain.js';

const TOKEN_PREFIX = 'svt1_';
const TOKEN_PATTERN = /^svt1_[A-Za-z0-9_-]{43}$/;

export interface KdfParameters {
  opslimit: number;
  memlimit: number;
}

export type SlotRequest =
  | { kind: 'token' }
  | { kind: 'keychain' }
  | { kind: 'passphrase'; passphrase: Uint8Array; kdf?: KdfParameters };

export interface NewSlot {
  slot: SlotFile;
  /** The token of a token slot, shown once. */
  token?: string;
}

export function encodeToken(bytes: Uint8Array): string {
  return TOKEN_PREFIX + Buffer.from(bytes).toString('base64url');
}

/** The 32 token bytes, or a usage error that says what a token looks like; `source` names where it came from. */
export function decodeToken(text: string, source = 'VAULT_KEY'): Uint8Array {
  const trimmed = text.trim();
  if (!TOKEN_PATTERN.test(trimmed)) {
    throw new VaultError('usage', `${source} is not a sealvault token (svt1_ followed by 43 characters); set it to the token \`vault init --token\` or \`vault key add --token\` printed`);
  }
  return new Uint8Array(Buffer.from(trimmed.slice(TOKEN_PREFIX.length), 'base64url'));
}

export function keychainAccount(vaultId: Uint8Array, slotId: string): string {
  return `${Buffer.from(vaultId).toString('base64url')}/${slotId}`;
}

export async function createSlot(request: SlotRequest, vaultId: Uint8Array, secretKey: Uint8Array): Promise<NewSlot> {
  const id = Buffer.from(randomBytes(6)).toString('hex');
  const aad = slotAad(vaultId, id, request.kind);
  const created = new Date().toISOString();
  const kek = randomBytes(32);
  try {
    switch (request.kind) {
      case 'token': {
        const { nonce, wrapped } = wrapKey(kek, secretKey, aad);
        const slot: SlotFile = { format: 'sealvault-slot', version: 1, id, kind: 'token', created, nonce: toBase64(nonce), wrapped_key: toBase64(wrapped) };
        return { slot, token: encodeToken(kek) };
      }
      case 'keychain': {
        const account = keychainAccount(vaultId, id);
        await keychainWrite(account, toBase64(kek));
        const { nonce, wrapped } = wrapKey(kek, secretKey, aad);
        const slot: SlotFile = {
          format: 'sealvault-slot', version: 1, id, kind: 'keychain', created, nonce: toBase64(nonce), wrapped_key: toBase64(wrapped),
          keychain: { service: 'sealvault', account },
        };
        return { slot };
      }
      case 'passphrase': {
        const kdf = request.kdf ?? KDF_RELEASE;
        const salt = randomBytes(16);
        const passphraseKey = await keyFromPassphrase(request.passphrase, salt, kdf.opslimit, kdf.memlimit);
        try {
          const { nonce, wrapped } = wrapKey(passphraseKey, secretKey, aad);
          const slot: SlotFile = {
            format: 'sealvault-slot', version: 1, id, kind: 'passphrase', created, nonce: toBase64(nonce), wrapped_key: toBase64(wrapped),
            kdf: { alg: 'argon2id13', opslimit: kdf.opslimit, memlimit: kdf.memlimit, salt: toBase64(salt) },
          };
          return { slot };
        } finally {
          wipe(passphraseKey, request.passphrase);
        }
      }
    }
  } finally {
    wipe(kek);
  }
}

/** The private key if `kek` opens `slot`, else undefined. */
export function openSlot(slot: SlotFile, vaultId: Uint8Array, kek: Uint8Array): Uint8Array | undefined {
  return unwrapKey(kek, fromBase64(slot.nonce), fromBase64(slot.wrapped_key), slotAad(vaultId, slot.id, slot.kind));
}

export async function openPassphraseSlot(slot: SlotFile & { kind: 'passphrase' }, vaultId: Uint8Array, passphrase: Uint8Array): Promise<Uint8Array | undefined> {
  const kek = await keyFromPassphrase(passphrase, fromBase64(slot.kdf.salt), slot.kdf.opslimit, slot.kdf.memlimit);
  try {
    return openSlot(slot, vaultId, kek);
  } finally {
    wipe(kek);
  }
}

export function readSlots(slotsDir: string): SlotFile[] {
  const slots: SlotFile[] = [];
  for (const entry of fs.readdirSync(slotsDir).sort()) {
    if (!entry.endsWith('.json')) continue;
    const file = path.join(slotsDir, entry);
    const slot = parseVaultFile(slotFileSchema, 'sealvault-slot', fs.readFileSync(file), file);
    if (`${slot.id}.json` !== entry) {
      throw new VaultError('corrupt', `${file} holds slot ${slot.id} under another file name; restore it from version control or a backup`);
    }
    slots.push(slot);
  }
  return slots;
}

export function checkSlotId(id: string): string {
  if (!SLOT_ID_PATTERN.test(id)) throw new VaultError('usage', `"${id}" is not a slot id (12 hex characters); \`vault key list\` shows them`);
  return id;
}

