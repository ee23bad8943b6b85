/**
 * Key slots, like LUKS: the vault's private key wrapped once per way of unlocking it.
 */
import {
  constantTimeEqual, fromBase64, keyFromPassphrase, KDF_RELEASE, randomBytes, slotAad, slotMac, toBase64, unwrapKey,
  wipe, wrapKey,
} from './crypto.js';
import { VaultError } from './errors.js';
import { FORMAT_VERSION, jsonOrUndefined, parseVaultFile, SLOT_ID_PATTERN, SLOT_KINDS, SLOT_LABEL_PATTERN, type SlotFile, slotFileSchema } from './format.js';
import type { VaultDir } from './vault-dir.js';
import { keychainWrite } from './keychain.js';

const TOKEN_PREFIX = 'svt1_';
const TOKEN_PATTERN = /^svt1_[A-Za-z0-9_-]{43}$/;

export interface KdfParameters {
  opslimit: number;
  memlimit: number;
}

export type SlotRequest = (
  | { kind: 'token' }
  | { kind: 'keychain' }
  | { kind: 'recipient'; recipient: string }
  | { kind: 'passphrase'; passphrase: Uint8Array; kdf?: KdfParameters }
) & { label?: string };

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
  return fromBase64(trimmed.slice(TOKEN_PREFIX.length), 'base64url'); // the slot's KEK: off V8's heap
}

export function keychainAccount(vaultId: Uint8Array, slotId: string): string {
  return `${Buffer.from(vaultId).toString('base64url')}/${slotId}`;
}

export async function createSlot(request: SlotRequest, vaultId: Uint8Array, secretKey: Uint8Array): Promise<NewSlot> {
  const id = Buffer.from(randomBytes(6)).toString('hex');
  const aad = slotAad(vaultId, id, request.kind);
  // the members every kind has, in docs/FORMAT.md's order (the label only when there is one)
  const created = new Date().toISOString();
  const head = <K extends SlotFile['kind']>(kind: K) => ({
    format: 'sealvault-slot', version: 1, id, kind, created, ...(request.label !== undefined ? { label: request.label } : {}),
  } as const);
  const kek = randomBytes(32);
  try {
    switch (request.kind) {
      case 'token': {
        const { nonce, wrapped } = wrapKey(kek, secretKey, aad);
        const slot: SlotFile = { ...head('token'), nonce: toBase64(nonce), wrapped_key: toBase64(wrapped) };
        return { slot: withMac(slot, secretKey), token: encodeToken(kek) };
      }
      case 'keychain': {
        const account = keychainAccount(vaultId, id);
        await keychainWrite(account, toBase64(kek));
        const { nonce, wrapped } = wrapKey(kek, secretKey, aad);
        const slot: SlotFile = {
          ...head('keychain'), nonce: toBase64(nonce), wrapped_key: toBase64(wrapped), keychain: { service: 'sealvault', account },
        };
        return { slot: withMac(slot, secretKey) };
      }
      case 'recipient': {
        const ageFile = await encryptToRecipient(kek, request.recipient);
        const { nonce, wrapped } = wrapKey(kek, secretKey, aad);
        const slot: SlotFile = {
          ...head('recipient'), nonce: toBase64(nonce), wrapped_key: toBase64(wrapped),
          recipient: { age_recipient: request.recipient, age_file: toBase64(ageFile) },
        };
        return { slot: withMac(slot, secretKey) };
      }
      case 'passphrase': {
        const kdf = request.kdf ?? KDF_RELEASE;
        const salt = randomBytes(16);
        const passphraseKey = await keyFromPassphrase(request.passphrase, salt, kdf.opslimit, kdf.memlimit);
        try {
          const { nonce, wrapped } = wrapKey(passphraseKey, secretKey, aad);
          const slot: SlotFile = {
            ...head('passphrase'), nonce: toBase64(nonce), wrapped_key: toBase64(wrapped),
            kdf: { alg: 'argon2id13', opslimit: kdf.opslimit, memlimit: kdf.memlimit, salt: toBase64(salt) },
          };
          return { slot: withMac(slot, secretKey) };
        } finally {
          wipe(passphraseKey, request.passphrase);
        }
      }
    }
  } finally {
    wipe(kek);
  }
}

/**
 * The slot's members that its MAC covers, in docs/FORMAT.md's order, without `mac` ("Slot MAC"):
 * canonical JSON, whatever order the file had them in.
 */
function canonicalSlot(slot: SlotFile): string {
  const own = slot.kind === 'keychain'
    ? { keychain: { service: slot.keychain.service, account: slot.keychain.account } }
    : slot.kind === 'recipient'
      ? { recipient: { age_recipient: slot.recipient.age_recipient, age_file: slot.recipient.age_file } }
      : slot.kind === 'passphrase'
        ? { kdf: { alg: slot.kdf.alg, opslimit: slot.kdf.opslimit, memlimit: slot.kdf.memlimit, salt: slot.kdf.salt } }
        : {};
  return JSON.stringify({
    format: slot.format, version: slot.version, id: slot.id, kind: slot.kind, created: slot.created,
    ...(slot.label !== undefined ? { label: slot.label } : {}),
    nonce: slot.nonce, wrapped_key: slot.wrapped_key, ...own,
  });
}

/**
 * `slot` with its MAC under `secretKey` as the last member, its members in docs/FORMAT.md's order
 * (a slot read back through the schema has them in another).
 */
export function withMac(slot: SlotFile, secretKey: Uint8Array): SlotFile {
  const canonical = canonicalSlot(slot);
  return { ...(JSON.parse(canonical) as SlotFile), mac: toBase64(slotMac(secretKey, canonical)) };
}

/**
 * Whether the holder of `secretKey` made `slot` as it is (its label, recipient and wrapped key):
 * false for a slot without a MAC (made before sealvault 0.2) or one a writer of the vault made or
 * changed. Rekey carries only such slots to the new key.
 */
export function slotVouched(slot: SlotFile, secretKey: Uint8Array): boolean {
  return slot.mac !== undefined && constantTimeEqual(fromBase64(slot.mac), slotMac(secretKey, canonicalSlot(slot)));
}

/**
 * The slot wrapping `secretKey` (a new key pair's) under `kek`, with a new nonce and MAC: same id,
 * kind, label and kind member. For rekey, with a KEK it holds (the slot that unlocked, a keychain
 * item, a new token's); a recipient slot takes a new KEK and age file (rewrapRecipient).
 */
export function rewrapSlot(slot: SlotFile, vaultId: Uint8Array, kek: Uint8Array, secretKey: Uint8Array): SlotFile {
  const { nonce, wrapped } = wrapKey(kek, secretKey, slotAad(vaultId, slot.id, slot.kind));
  return withMac({ ...slot, nonce: toBase64(nonce), wrapped_key: toBase64(wrapped) }, secretKey);
}

/** A recipient slot moved to `secretKey`: a new KEK, as a new age file to the same recipient. */
export async function rewrapRecipient(
  slot: SlotFile & { kind: 'recipient' }, vaultId: Uint8Array, secretKey: Uint8Array,
): Promise<SlotFile> {
  const kek = randomBytes(32);
  try {
    const ageFile = await encryptToRecipient(kek, slot.recipient.age_recipient);
    return rewrapSlot(
      { ...slot, recipient: { ...slot.recipient, age_file: toBase64(ageFile) } }, vaultId, kek, secretKey,
    );
  } finally {
    wipe(kek);
  }
}

/** The age library (age-encryption, by age's author), loaded only by the commands that use a recipient. */
async function ageLibrary(): Promise<typeof import('age-encryption')> {
  return import('age-encryption');
}

/** `kek` as an age file (binary) to the one X25519 recipient `recipient` (age1…). */
async function encryptToRecipient(kek: Uint8Array, recipient: string): Promise<Uint8Array> {
  const age = await ageLibrary();
  const encrypter = new age.Encrypter();
  try {
    encrypter.addRecipient(recipient);
  } catch (error) {
    throw new VaultError('usage', `${recipient} is not an age recipient (age1…, from \`age-keygen\` or \`vault identity new\`): ${(error as Error).message}`);
  }
  return encrypter.encrypt(kek);
}

/**
 * A new age X25519 identity as age-keygen(1) writes it (two comment lines, then AGE-SECRET-KEY-1…)
 * and its recipient (age1…).
 */
export async function newAgeIdentity(): Promise<{ file: string; recipient: string }> {
  const age = await ageLibrary();
  const identity = await age.generateX25519Identity();
  const recipient = await age.identityToRecipient(identity);
  return { file: `# created: ${new Date().toISOString()}\n# public key: ${recipient}\n${identity}\n`, recipient };
}

/**
 * The private key if one of `identities` (AGE-SECRET-KEY-1… strings) opens the recipient slot
 * `slot`, else undefined: the age file gives the KEK, which unwraps the key as for every kind.
 */
export async function openRecipientSlot(
  slot: SlotFile & { kind: 'recipient' }, vaultId: Uint8Array, identities: string[],
): Promise<Uint8Array | undefined> {
  const age = await ageLibrary();
  const decrypter = new age.Decrypter();
  for (const identity of identities) decrypter.addIdentity(identity);
  let kek: Uint8Array;
  try {
    kek = await decrypter.decrypt(fromBase64(slot.recipient.age_file));
  } catch {
    return undefined; // none of these identities is this slot's, or its age file was damaged
  }
  try {
    return openSlot(slot, vaultId, kek);
  } finally {
    wipe(kek);
  }
}

/** The private key if `kek` opens `slot`, else undefined. */
export function openSlot(slot: SlotFile, vaultId: Uint8Array, kek: Uint8Array): Uint8Array | undefined {
  return unwrapKey(kek, fromBase64(slot.nonce), fromBase64(slot.wrapped_key), slotAad(vaultId, slot.id, slot.kind));
}

/** The private key and the slot's KEK (the caller wipes both) if `passphrase` opens `slot`, else undefined. */
export async function openPassphraseSlot(
  slot: SlotFile & { kind: 'passphrase' }, vaultId: Uint8Array, passphrase: Uint8Array,
): Promise<{ secretKey: Uint8Array; kek: Uint8Array } | undefined> {
  const kek = await keyFromPassphrase(passphrase, fromBase64(slot.kdf.salt), slot.kdf.opslimit, slot.kdf.memlimit);
  const secretKey = openSlot(slot, vaultId, kek);
  if (secretKey === undefined) wipe(kek);
  return secretKey === undefined ? undefined : { secretKey, kek };
}

/**
 * The most a passphrase slot may make unlock spend: argon2id passes and memory (bytes). A writer of
 * the vault can plant slots; one at libsodium's maximum costs minutes and gigabytes per unlock, so a
 * slot above either is skipped with a notice. Twice the memory and one pass more than KDF_RELEASE
 * (libsodium's MODERATE), so that a stronger default in a later version still opens here.
 * docs/FORMAT.md, "Slots".
 */
export const KDF_CAP = { opslimit: 4, memlimit: 512 * 1024 * 1024 } as const;

/** Why unlock will not spend the KDF of `slot`, or undefined when it is within KDF_CAP. */
export function overKdfCap(slot: SlotFile): string | undefined {
  if (slot.kind !== 'passphrase') return undefined;
  const { opslimit, memlimit } = slot.kdf;
  if (opslimit <= KDF_CAP.opslimit && memlimit <= KDF_CAP.memlimit) return undefined;
  return `its argon2id parameters (opslimit ${opslimit}, memlimit ${memlimit} bytes) are over this sealvault's cap ` +
    `(opslimit ${KDF_CAP.opslimit}, memlimit ${KDF_CAP.memlimit})`;
}

/**
 * The order unlock tries slots in: the one that opened last time for this user first (remembered in
 * known_vaults.json), then the cheaper passphrase slots before the costlier ones, so that slots a
 * writer planted cost a routine unlock nothing.
 */
export function orderSlots(slots: SlotFile[], lastOpened: string | undefined): SlotFile[] {
  const cost = (s: SlotFile) => (s.kind === 'passphrase' ? s.kdf.opslimit * s.kdf.memlimit : 0);
  return [...slots].sort((a, b) => Number(b.id === lastOpened) - Number(a.id === lastOpened) || cost(a) - cost(b));
}

/**
 * What one unlock may spend on passphrase slots together, in argon2id passes × bytes: twice the cap.
 * Each slot is capped (KDF_CAP), but a writer of the vault can plant many; past the budget the rest
 * are not tried, with a notice, so that no number of planted slots makes an unlock take minutes.
 */
export const KDF_BUDGET = 2 * KDF_CAP.opslimit * KDF_CAP.memlimit;

/** The slots, in order, that one unlock tries: every non-passphrase slot, passphrase slots while the budget lasts. */
export function withinUnlockBudget(ordered: SlotFile[]): { tried: SlotFile[]; skipped: SlotFile[] } {
  let spent = 0;
  const tried: SlotFile[] = [];
  const skipped: SlotFile[] = [];
  for (const slot of ordered) {
    const cost = slot.kind === 'passphrase' ? slot.kdf.opslimit * slot.kdf.memlimit : 0;
    if (spent + cost > KDF_BUDGET) {
      skipped.push(slot);
      continue;
    }
    spent += cost;
    tried.push(slot);
  }
  return { tried, skipped };
}

/** A slot of a kind this version does not know (from a newer one): kept, skipped, shown as unknown. */
export interface UnknownSlot {
  id: string;
  kind: string;
  created?: string;
  label?: string;
}

export interface SlotReading {
  slots: SlotFile[];
  unknown: UnknownSlot[];
}

/**
 * The slots of `slotsDir`, each read bounded and without following a symlink. A slot of a kind this
 * version does not know is set apart (as age skips a stanza it does not know), so that one newer
 * teammate's slot does not lock every older sealvault out; any other damage is an error.
 */
export function readSlots(slotsDir: VaultDir): SlotReading {
  const reading: SlotReading = { slots: [], unknown: [] };
  for (const entry of slotsDir.names().sort()) {
    if (!entry.endsWith('.json')) continue;
    const file = slotsDir.at(entry);
    const text = slotsDir.read(entry, 'slot');
    if (text === undefined) continue;
    const fields = jsonOrUndefined(text);
    const unknown = unknownKind(fields);
    if (unknown !== undefined) {
      if (`${unknown.id}.json` !== entry) {
        throw new VaultError('corrupt', `${file} holds slot ${unknown.id} under another file name; restore it from version control or a backup`);
      }
      reading.unknown.push(unknown);
      continue;
    }
    const slot = parseVaultFile(slotFileSchema, 'sealvault-slot', text, file);
    if (`${slot.id}.json` !== entry) {
      throw new VaultError('corrupt', `${file} holds slot ${slot.id} under another file name; restore it from version control or a backup`);
    }
    reading.slots.push(slot);
  }
  return reading;
}

/** A slot file of this format and version whose kind is not one of ours. */
function unknownKind(fields: unknown): UnknownSlot | undefined {
  if (typeof fields !== 'object' || fields === null) return undefined;
  const f = fields as Record<string, unknown>;
  if (f.format !== 'sealvault-slot' || f.version !== FORMAT_VERSION || typeof f.kind !== 'string' || (SLOT_KINDS as readonly string[]).includes(f.kind)) return undefined;
  if (typeof f.id !== 'string' || !SLOT_ID_PATTERN.test(f.id)) return undefined;
  return {
    id: f.id, kind: f.kind, ...(typeof f.created === 'string' ? { created: f.created } : {}),
    ...(typeof f.label === 'string' && SLOT_LABEL_PATTERN.test(f.label) ? { label: f.label } : {}),
  };
}

export function checkSlotId(id: string): string {
  if (!SLOT_ID_PATTERN.test(id)) throw new VaultError('usage', `"${id}" is not a slot id (12 hex characters); \`vault key list\` shows them`);
  return id;
}

