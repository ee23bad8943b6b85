/**
 * The journal that makes a rekey one crash-safe step (docs/FORMAT.md, "Rekey"). Everything a rekey
 * writes (vault.json, policy.json, every secret, every slot) is staged in `.rekey.new/`, made
 * durable, and committed by renaming that directory to `.rekey/`: before the rename the vault is the
 * old one, after it the new one. Applying renames each staged file into place and removes the slots
 * the manifest does not name; whoever finds `.rekey/` (a rekey killed after its commit) applies the
 * rest before reading anything, so a reader sees the old vault or the new, never a mix of keys.
 * planSlots decides which slots go to the new key; UnlockedVault.rekey (vault.ts) puts it together.
 * Callers of the journal hold the vault's writer lock.
 */
import * as fs from 'node:fs';
import * as z from 'zod/mini';
import { constantTimeEqual, fromBase64, randomBytes, wipe } from './crypto.js';
import type { SlotFile } from './format.js';
import { keychainRead } from './keychain.js';
import { encodeToken, openSlot, rewrapRecipient, rewrapSlot, slotVouched, type UnknownSlot } from './keyslots.js';
import { VaultError } from './errors.js';
import { jsonOrUndefined, serialize, SLOT_ID_PATTERN } from './format.js';
import { native } from './native.js';
import { O_CREAT, O_WRONLY, type VaultDir } from './vault-dir.js';

/** Where a rekey stages its files; a rekey that died before its commit leaves it, and the next one removes it. */
export const REKEY_STAGING = '.rekey.new';
/** The committed rekey, applied by whoever finds it. */
export const REKEY_COMMITTED = '.rekey';
const MANIFEST = 'manifest.json';
/** unlinkat(2)'s flag for a directory (fcntl.h). */
const AT_REMOVEDIR = 0x200;
const SECRET_FILE = /^[A-Z_][A-Z0-9_]{0,127}\.json$/;
const SLOT_FILE = /^[0-9a-f]{12}\.json$/;

const manifestSchema = z.strictObject({
  format: z.literal('sealvault-rekey'),
  version: z.literal(1),
  /** Random per rekey, also in its audit entry: an apply that finds the entry written does not write it again. */
  run: z.string().check(z.regex(/^[0-9a-f]{16}$/)),
  /** The slots of the new vault: every other slot file is removed. */
  slots: z.array(z.string().check(z.regex(SLOT_ID_PATTERN))),
  /** The audit entry the rekey records once applied (its `details`). */
  details: z.record(z.string(), z.unknown()),
});
export type RekeyManifest = z.infer<typeof manifestSchema>;

/** What a rekey stages: vault.json and policy.json as text, secrets and slots by file name. */
export interface RekeyStage {
  manifest: RekeyManifest;
  vaultFile: string;
  policyFile: string;
}

/** A staging directory being filled: files are written with O_EXCL and fsynced one by one. */
export class Staging {
  private constructor(
    private readonly root: VaultDir,
    readonly dir: VaultDir,
    readonly secrets: VaultDir,
    readonly slots: VaultDir,
  ) {}

  /** A new, empty `.rekey.new/` (what a dead rekey left there is removed first). */
  static begin(root: VaultDir): Staging {
    removeTree(root, REKEY_STAGING);
    const dir = root.child(REKEY_STAGING, { create: true })!;
    const secrets = dir.child('secrets', { create: true })!;
    const slots = dir.child('slots', { create: true })!;
    return new Staging(root, dir, secrets, slots);
  }

  /** Writes `name` in `where` (the staging's dir, secrets or slots), durable before it returns, with `mode`. */
  put(where: VaultDir, name: string, text: string, mode = 0o600): void {
    const opened = where.openFile(name, O_WRONLY | O_CREAT, mode);
    if (opened === undefined || !opened.created) throw new VaultError('internal', `cannot create ${where.at(name)}`);
    try {
      where.adopt(opened.fd);
      fs.fchmodSync(opened.fd, mode);
      fs.writeFileSync(opened.fd, text);
      fs.fsyncSync(opened.fd);
    } finally {
      fs.closeSync(opened.fd);
    }
  }

  /** The commit: vault.json, policy.json and the manifest written, every directory synced, then the rename. */
  commit(stage: RekeyStage): void {
    this.put(this.dir, 'vault.json', stage.vaultFile, 0o644);
    this.put(this.dir, 'policy.json', stage.policyFile);
    this.put(this.dir, MANIFEST, serialize(stage.manifest));
    for (const dir of [this.secrets, this.slots, this.dir]) fs.fsyncSync(dir.fd);
    this.close();
    native().renameAt(this.root.fd, REKEY_STAGING, this.root.fd, REKEY_COMMITTED);
    fs.fsyncSync(this.root.fd);
  }

  close(): void {
    for (const dir of [this.secrets, this.slots, this.dir]) dir.close();
  }
}

/** Removes `name` (a staging or committed rekey directory) and its two subdirectories, never following a link. */
export function removeTree(root: VaultDir, name: string): void {
  const dir = root.child(name);
  if (dir === undefined) return;
  try {
    for (const sub of ['secrets', 'slots']) {
      const child = dir.child(sub);
      if (child === undefined) continue;
      try {
        child.sweep();
      } finally {
        child.close();
      }
      native().unlinkAt(dir.fd, sub, AT_REMOVEDIR);
    }
    // the manifest goes last: a journal killed while it is removed still has it, or holds nothing
    for (const entry of dir.names()) if (entry !== MANIFEST) quietlyUnlink(dir, entry);
    quietlyUnlink(dir, MANIFEST);
  } finally {
    dir.close();
  }
  native().unlinkAt(root.fd, name, AT_REMOVEDIR);
  fs.fsyncSync(root.fd);
}

/** unlinkat of a file that may already be gone (a second run of removeTree). */
function quietlyUnlink(dir: VaultDir, entry: string): void {
  try {
    native().unlinkAt(dir.fd, entry, 0);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'EISDIR') throw error;
  }
}

/**
 * The public key of the committed rekey waiting in `.rekey/` (its staged vault.json, or the one
 * already moved into place), or undefined when there is none. The journal is applied only by the
 * user whose rekey it is (their pin's `pending_key`): anyone who can write the vault can make a
 * `.rekey/`, and applying one of theirs would replace files with theirs.
 */
export function pendingRekeyKey(root: VaultDir): string | null | undefined {
  const dir = root.child(REKEY_COMMITTED);
  if (dir === undefined) return undefined;
  try {
    const text = dir.read('vault.json', 'vault') ?? root.read('vault.json', 'vault');
    const key = (jsonOrUndefined(text ?? '') as { public_key?: unknown } | undefined)?.public_key;
    return typeof key === 'string' ? key : null;
  } finally {
    dir.close();
  }
}

/**
 * Applies the committed rekey in `.rekey/` (idempotent: each step is a rename or a removal that a
 * second run finds done), records its audit entry through `record` (which skips an entry of the same
 * `run` already written), and removes `.rekey/`. Returns its manifest, or undefined when there was none.
 */
/** The points of a rekey a test can stop it at (`onStep`): each is where a crash leaves a different state. */
export type RekeyStep = 'staged-half' | 'staged' | 'committed' | 'moved-secrets' | 'moved' | 'recorded';

/**
 * Whether `.rekey/` (open as `dir`) is a journal that was applied and killed while it was removed:
 * removeTree takes the manifest last, so it has no manifest and nothing but empty `secrets/` and
 * `slots/`. Removing it applies nothing, so anyone may (Vault.open), whoever began the rekey.
 */
export function journalFinished(dir: VaultDir): boolean {
  return !dir.has(MANIFEST) && dir.names().every((entry) => {
    if (entry !== 'secrets' && entry !== 'slots') return false;
    const sub = dir.child(entry);
    try {
      return sub === undefined || sub.names().length === 0;
    } finally {
      sub?.close();
    }
  });
}

export function applyRekey(
  root: VaultDir, record: (details: Record<string, unknown>) => void, onStep?: (step: RekeyStep) => void,
): RekeyManifest | undefined {
  const dir = root.child(REKEY_COMMITTED);
  if (dir === undefined) return undefined;
  let manifest: RekeyManifest;
  if (journalFinished(dir)) {
    dir.close();
    removeTree(root, REKEY_COMMITTED);
    return undefined;
  }
  try {
    const parsed = manifestSchema.safeParse(jsonOrUndefined(dir.read(MANIFEST, 'policy') ?? ''));
    if (!parsed.success) {
      throw new VaultError(
        'corrupt',
        `${dir.at(MANIFEST)} is missing or damaged, so the rekey in ${dir.path} cannot be finished; ` +
          'restore the vault from version control or a backup',
      );
    }
    manifest = parsed.data;
    for (const sub of ['secrets', 'slots'] as const) {
      const from = dir.child(sub);
      const to = root.child(sub, { create: true })!;
      try {
        const pattern = sub === 'secrets' ? SECRET_FILE : SLOT_FILE;
        for (const name of from?.names() ?? []) if (pattern.test(name)) native().renameAt(from!.fd, name, to.fd, name);
        if (sub === 'slots') {
          const keep = new Set(manifest.slots.map((id) => `${id}.json`));
          for (const name of to.names()) if (SLOT_FILE.test(name) && !keep.has(name)) native().unlinkAt(to.fd, name, 0);
        }
        fs.fsyncSync(to.fd);
      } finally {
        from?.close();
        to.close();
      }
      if (sub === 'secrets') onStep?.('moved-secrets');
    }
    for (const name of ['policy.json', 'vault.json']) {
      if (dir.has(name)) native().renameAt(dir.fd, name, root.fd, name);
    }
    fs.fsyncSync(root.fd);
  } finally {
    dir.close();
  }
  onStep?.('moved');
  record(manifest.details);
  onStep?.('recorded');
  removeTree(root, REKEY_COMMITTED);
  return manifest;
}

/** Which slots a rekey carries to the new key, and how. */
export interface SlotPlan {
  /** The new vault's slots, wrapping the new key. */
  carried: SlotFile[];
  /** Token slots carried under a new token (their old token is not here): the token to show once. */
  reissued: { slot: SlotFile; token: string }[];
  /** Slots removed by this rekey, or removed before and put back since (the policy's revocations). */
  removed: SlotFile[];
  /** Slots no key here can wrap the new key for: dropped only when asked (`--drop-unreachable`). */
  unreachable: { id: string; kind: string; label?: string; why: string }[];
}

export interface SlotPlanInput {
  slots: SlotFile[];
  unknown: UnknownSlot[];
  vaultId: Uint8Array;
  oldSecretKey: Uint8Array;
  newSecretKey: Uint8Array;
  /** The slot that unlocked, and its KEK (absent for a recipient slot). */
  opener: SlotFile;
  openerKek: Uint8Array | undefined;
  /** Ids to remove, and ids the policy (or this user) saw removed. */
  remove: Set<string>;
  revoked: Set<string>;
}

/**
 * Decides slot by slot: the one that unlocked keeps its KEK; a recipient slot gets a new KEK as an
 * age file to its recipient; a keychain slot keeps its KEK when the item here opens it; a token
 * slot gets a new token. Only slots made by a key holder go (the slot MAC, or the slot opening with
 * a KEK here): a slot a writer of the vault planted would otherwise get the new key. A passphrase
 * slot other than the one that unlocked cannot go (only its passphrase makes its KEK).
 */
export async function planSlots(input: SlotPlanInput): Promise<SlotPlan> {
  const plan: SlotPlan = { carried: [], reissued: [], removed: [], unreachable: [] };
  const { vaultId, newSecretKey } = input;
  const cannot = (slot: { id: string; kind: string; label?: string }, why: string) => {
    const label = slot.label !== undefined ? { label: slot.label } : {};
    plan.unreachable.push({ id: slot.id, kind: slot.kind, ...label, why });
  };
  for (const slot of input.slots) {
    if (input.remove.has(slot.id) || input.revoked.has(slot.id)) {
      plan.removed.push(slot);
    } else if (slot.id === input.opener.id) {
      if (slot.kind === 'recipient') plan.carried.push(await rewrapRecipient(slot, vaultId, newSecretKey));
      else if (input.openerKek !== undefined) {
        plan.carried.push(rewrapSlot(slot, vaultId, input.openerKek, newSecretKey));
      }
      else throw new VaultError('internal', `the key of slot ${slot.id}, which unlocked, was not kept for the rekey`);
    } else if (slot.kind === 'keychain') {
      const kek = await keychainKek(slot, vaultId, input.oldSecretKey);
      if (kek === undefined) {
        cannot(slot, 'its keychain item is not in the keychain here');
        continue;
      }
      try {
        plan.carried.push(rewrapSlot(slot, vaultId, kek, newSecretKey));
      } finally {
        wipe(kek);
      }
    } else if (!slotVouched(slot, input.oldSecretKey)) {
      cannot(slot, 'it has no valid slot MAC: it was made before sealvault 0.2, or by someone without the key');
    } else if (slot.kind === 'recipient') {
      plan.carried.push(await rewrapRecipient(slot, vaultId, newSecretKey));
    } else if (slot.kind === 'token') {
      const kek = randomBytes(32);
      try {
        const carried = rewrapSlot(slot, vaultId, kek, newSecretKey);
        plan.carried.push(carried);
        plan.reissued.push({ slot: carried, token: encodeToken(kek) });
      } finally {
        wipe(kek);
      }
    } else {
      cannot(slot, 'only its passphrase can wrap the new key: unlock with it to carry it, or add it again after');
    }
  }
  for (const slot of input.unknown) cannot(slot, 'it is of a kind this sealvault does not know');
  return plan;
}

/** The KEK of keychain slot `slot` when the item here opens it to `secretKey`, else undefined. */
async function keychainKek(
  slot: SlotFile & { kind: 'keychain' }, vaultId: Uint8Array, secretKey: Uint8Array,
): Promise<Uint8Array | undefined> {
  const read = await keychainRead(slot.keychain.account);
  if (!read.found) return undefined;
  const kek = fromBase64(read.value);
  const opened = openSlot(slot, vaultId, kek);
  const same = opened !== undefined && constantTimeEqual(opened, secretKey);
  wipe(opened);
  if (same) return kek;
  wipe(kek);
  return undefined;
}
