/**
 * A vault directory as docs/FORMAT.md describes it. `Vault` is what anyone who can write the
 * directory can do (put, rm, list, read the audit log); `UnlockedVault` is what needs the private
 * key (slots, grants, opening secrets for `vault exec`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tier } from '../sandbox/tiers.js';
import {
  AUDIT_FILE, type AuditEvent, type AuditHead, type AuditReading, fitsAuditLine, readAudit, setLogAside,
} from './audit.js';
import {
  AUDIT_DIR, appendEntry, dagHeads, type DagReading, dirStamp, problemMessage, readDag, setBrokenAside,
} from './audit-dag.js';
import { recordRun } from './run-log.js';
import { auditIndex } from './audit-index.js';
import { mergePolicies, parseConflict } from './policy-merge.js';
import { grantTarget, type ProgramTarget, readShebang, scriptTarget } from './binary.js';
import { resolveCommand } from './command-path.js';
import {
  fingerprint, fromBase64, generateKeyPair, type KeyPair, openSecretAndKind, randomBytes, SEAL_OVERHEAD, sealSecret, sha256OfFd, toBase64, wipe,
} from './crypto.js';
import { expectRekey, followRekey, isPendingKey } from './pins.js';
import { VaultError } from './errors.js';
import {
  type AuditEntry, FORMAT_VERSION, type Grant, jsonOrUndefined, parseVaultFile, policyFileSchema, type Revocation,
  secretFileSchema, serialize, type SlotFile, type VaultFile, vaultFileSchema,
} from './format.js';
import { printable } from './printable.js';
import { native } from './native.js';
import { SIZE_CAPS, VaultDir } from './vault-dir.js';

/** unlinkat(2)'s flag for a directory (fcntl.h). */
const AT_REMOVEDIR = 0x200;
import { keychainDelete } from './keychain.js';
import {
  checkSlotId, createSlot, type NewSlot, orderSlots, overKdfCap, readSlots, type SlotReading, type SlotRequest,
  slotVouched, withinUnlockBudget,
} from './keyslots.js';
import { checkSecretName } from './names.js';
import {
  auditWitness, checkPin, lastOpenedSlot, pinVault, policySeen, recordAuditWitness, recordOpenedSlot, recordPolicyRevision,
  recordRevocations, replaceAuditWitness, revocationsSeen,
} from './pins.js';
import {
  checkFileDeliveries, grantRevocation, isInterpreter, type Policy, readsOptionsAfterScript, revocationKey,
  sameGrantTarget, sealPolicy, verifyPolicy,
} from './policy.js';
import { type Network, networkText, toField } from '../sandbox/network.js';
import { isWithin } from '../sandbox/lockdown-root.js';
import { LOCKDOWN_SYSTEM_PATHS } from '../sandbox/tiers.js';
import { type UnlockOptions, unlockPrivateKey } from './unlock.js';
import {
  applyRekey, journalFinished, pendingRekeyKey, planSlots, REKEY_COMMITTED, REKEY_STAGING, type RekeyStep, removeTree, type SlotPlan, Staging,
} from './rekey.js';

export const MAX_VALUE_BYTES = 1024 * 1024;
const SECRET_FILE = /^([A-Z_][A-Z0-9_]{0,127})\.json$/;
// .tmp without a slash: a .tmp that is a symlink (not a directory) must not be committed either
const GITIGNORE =
  '# local to this machine, never committed (docs/FORMAT.md)\n.lock\n.tmp\n.rekey.new\naudit.log.torn-*\n';

type AuditRecord = [AuditEvent, Record<string, unknown>];

/** Replacing a value loses the old one, so it must be asked for. */
export function existsError(name: string): VaultError {
  return new VaultError('refused', `${name} already exists; pass --force to replace its value (the old value is lost)`);
}

export interface SecretInfo {
  name: string;
  size: number;
  created: string;
  updated: string;
  /** Its file says it is a configuration value (a hint for people: the sealed kind is what counts). */
  config: boolean;
}

export interface OpenOptions {
  /** `vault trust` opens a vault whose pin it is about to replace; everything else checks it. */
  checkPin?: boolean;
}

export class Vault {
  private constructor(
    readonly dir: string,
    /** The vault directory, open for the life of this object: every file is reached through it. */
    readonly root: VaultDir,
    readonly file: VaultFile,
  ) {}

  /** This user had never seen the vault before this open: its key was pinned now (pins.ts checkPin). */
  firstSeen = false;

  readonly vaultId = (): Uint8Array => fromBase64(this.file.vault_id);
  readonly publicKey = (): Uint8Array => fromBase64(this.file.public_key);
  get fingerprint(): string {
    return fingerprint(this.publicKey());
  }

  private get realPath(): string {
    return fs.realpathSync(this.dir);
  }
  private at(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }
  get auditFile(): string {
    return this.at(AUDIT_FILE);
  }
  get policyFile(): string {
    return this.at('policy.json');
  }

  /** A directory of the layout, never through a symlink; `create` makes it (0700). */
  private sub(name: 'secrets' | 'slots' | '.tmp', create = false): VaultDir | undefined {
    return this.root.child(name, { create });
  }

  /** Runs `work` with a directory of the layout open, and closes it; undefined when it is missing. */
  private within<T>(name: 'secrets' | 'slots' | '.tmp', work: (dir: VaultDir) => T, create = false): T | undefined {
    const dir = this.sub(name, create);
    if (dir === undefined) return undefined;
    try {
      return work(dir);
    } finally {
      dir.close();
    }
  }

  /**
   * Creates a vault with one key slot in `dir`, which must be new or empty. The directory is locked
   * before it is found empty and stays locked until the vault is whole, so that of several inits
   * racing on one directory exactly one makes a vault and the others are refused.
   */
  static async create(dir: string, firstSlot: SlotRequest): Promise<{ vault: Vault; token?: string }> {
    const existed = fs.existsSync(dir);
    const root = VaultDir.open(dir, { create: true });
    if (root === undefined) throw new VaultError('internal', `cannot create ${dir}`);
    root.lockDirectory();
    const existing = root.names();
    if (existing.includes('vault.json')) {
      root.close();
      throw new VaultError('refused', `a vault already exists at ${dir}; use it, or choose another --vault directory`);
    }
    if (existing.length > 0) {
      root.close();
      throw new VaultError('refused', `${dir} is not empty; choose a new or empty directory for the vault`);
    }
    const keys = generateKeyPair();
    const vaultId = randomBytes(16);
    const file: VaultFile = {
      format: 'sealvault-vault', version: FORMAT_VERSION, vault_id: toBase64(vaultId), public_key: toBase64(keys.publicKey), created: new Date().toISOString(),
    };
    const vault = new Vault(dir, root, file);
    let made: NewSlot | undefined;
    try {
      // the slot first: the keychain may refuse, and then nothing is on disk yet
      made = await createSlot(firstSlot, vaultId, keys.secretKey);
      const slot = made.slot;
      for (const sub of ['slots', 'secrets', '.tmp'] as const) vault.sub(sub, true)?.close();
      vault.write((tmp) => {
        root.writeAtomic(tmp, '.gitignore', GITIGNORE, 0o644);
        vault.within('slots', (slots) => slots.writeAtomic(tmp, `${slot.id}.json`, serialize(slot)));
        root.writeAtomic(tmp, 'policy.json', serialize(sealPolicy(file.vault_id, keys.secretKey, { revision: 0, grants: [] })));
        const details = { vault_id: file.vault_id, fingerprint: vault.fingerprint, slot: slot.id, kind: slot.kind };
        appendEntry(root, tmp, 'init', details, []);
        // vault.json last: its presence is what makes the directory a vault
        root.writeAtomic(tmp, 'vault.json', serialize(file), 0o644);
      });
    } catch (error) {
      // leave the directory as it was found (absent or empty), so that init can simply be run again
      undoInit(root, made?.slot.id);
      root.close();
      if (!existed) {
        try {
          fs.rmdirSync(dir); // only when empty: what someone else put there stays
        } catch {
          // not empty, or gone
        }
      }
      if (made?.slot.kind === 'keychain') await keychainDelete(made.slot.keychain.account);
      throw error;
    } finally {
      wipe(keys.secretKey);
    }
    vault.pin();
    return { vault, token: made.token };
  }

  static open(dir: string, options: OpenOptions = {}): Vault {
    const root = VaultDir.open(dir);
    if (root === undefined) throw new VaultError('notFound', `no vault at ${dir}; create one with \`vault init\` or point --vault (or VAULT_DIR) at an existing one`);
    let pending = pendingRekeyKey(root);
    if (pending !== undefined && clearFinishedJournal(root)) pending = undefined;
    if (pending !== undefined) {
      if (pending === null || !isPendingKey(pending)) {
        root.close();
        throw new VaultError(
          'tampered',
          `${path.join(dir, '.rekey')} holds a rekey this user did not begin, so it is not applied ` +
            '(anyone who can write the vault can make one); if a teammate\'s rekey was cut short, they finish it ' +
            'by running any vault command; else remove .rekey/ and restore the vault from version control',
        );
      }
      finishRekey(root);
    }
    const text = root.read('vault.json', 'vault');
    if (text === undefined) {
      root.close();
      throw new VaultError('notFound', `${dir} holds no vault (no vault.json); create one with \`vault init\` or point --vault at an existing one`);
    }
    const vault = new Vault(dir, root, parseVaultFile(vaultFileSchema, 'sealvault-vault', text, path.join(dir, 'vault.json')));
    if (options.checkPin !== false) vault.firstSeen = checkPin(vault.pinFacts());
    return vault;
  }

  private pinFacts() {
    return { vaultId: this.file.vault_id, publicKey: this.file.public_key, fingerprint: this.fingerprint, realPath: this.realPath };
  }

  /** Closes the vault directory's fd; the object is useless afterwards. The CLI leaves it to process exit. */
  close(): void {
    this.root.close();
  }

  /** Pins this vault's public key for the current user (first use, or `vault trust`). */
  pin(): void {
    pinVault(this.pinFacts());
  }

  /** Runs a change under the vault's writer lock, after clearing what a dead writer left in .tmp. */
  private write<T>(change: (tmp: VaultDir) => T): T {
    return underLock(this.root, change);
  }

  /**
   * Runs a change under the lock and records its audit entry (audit-dag.ts) in the same critical
   * section, joining every head. The DAG is checked first: a broken one refuses the change before
   * it is made (exit 9).
   */
  change<T>(work: (tmp: VaultDir) => T, describe: (result: T) => AuditRecord): T {
    return this.write((tmp) => {
      const index = auditIndex(this.file.vault_id);
      const heads = dagHeads(this.root, index);
      const value = work(tmp);
      const [event, details] = describe(value);
      const written = appendEntry(this.root, tmp, event, details, heads);
      const stamp = dirStamp(this.root);
      if (stamp !== undefined) index.remember(stamp, written.heads);
      index.save();
      return value;
    });
  }

  /**
   * Runs a rekey's staging, commit and apply under the lock (UnlockedVault.rekey); its audit entry is
   * written by the apply, after the files are in place and before the journal goes.
   */
  rekeyLocked(stage: (tmp: VaultDir, root: VaultDir) => void, onStep?: (step: RekeyStep) => void): void {
    this.write((tmp) => {
      dagHeads(this.root); // a broken log refuses before anything
      stage(tmp, this.root);
      applyRekey(this.root, (details) => recordRekey(this.root, tmp, details), onStep);
    });
  }

  /**
   * An entry of this user's run log (run-log.ts): exec's release and exit, the agent's start and
   * refusals. Outside the vault: a run never changes the vault directory.
   */
  record(event: AuditEvent, details: Record<string, unknown>): void {
    recordRun(this.file.vault_id, event, details);
  }

  has(name: string): boolean {
    return this.within('secrets', (dir) => dir.has(`${checkSecretName(name)}.json`)) ?? false;
  }

  /** The bytes of the secret file of `name`, or undefined when there is none. */
  readSecretFile(name: string): Buffer | undefined {
    return this.within('secrets', (dir) => dir.read(`${checkSecretName(name)}.json`, 'secret'));
  }

  /** Where the secret `name` lives, for messages. */
  secretFile(name: string): string {
    return this.at('secrets', `${checkSecretName(name)}.json`);
  }

  /**
   * Seals `value` (0 to MAX_VALUE_BYTES bytes) under `name`. Needs no unlock. Replacing an existing
   * secret must be asked for; `config` marks it as configuration (docs/FORMAT.md, "Configuration values").
   */
  async put(
    name: string, value: Uint8Array, options: { replace: boolean; config?: boolean },
  ): Promise<'put' | 'replace'> {
    const fileName = `${checkSecretName(name)}.json`;
    if (value.length > MAX_VALUE_BYTES) {
      throw new VaultError('badSecret', `the value for ${name} is ${value.length} bytes, over the limit of ${MAX_VALUE_BYTES} (1 MiB); nothing was stored`);
    }
    const sealed = toBase64(sealSecret(this.publicKey(), name, value, options.config === true));
    return this.change((tmp) => this.within('secrets', (secrets) => {
      let previous: Buffer | undefined;
      try {
        previous = secrets.read(fileName, 'secret');
      } catch (error) {
        // --force mends a damaged secret file, whatever is in the way of a regular one
        if (!(options.replace && error instanceof VaultError && error.kind === 'unsafeFile')) throw error;
        try {
          secrets.remove(fileName);
        } catch (removal) {
          // a directory there is not mended by unlinking; someone must remove it
          if ((removal as NodeJS.ErrnoException).code === 'EISDIR') throw error;
          throw removal;
        }
        previous = Buffer.alloc(0);
      }
      if (previous !== undefined && !options.replace) throw existsError(name);
      const now = new Date().toISOString();
      // --force also mends a damaged secret file: its old creation date is then unknown
      const created = previous === undefined ? now : (secretFileSchema.safeParse(jsonOrUndefined(previous)).data?.created ?? now);
      secrets.writeAtomic(tmp, fileName, serialize({
        format: 'sealvault-secret', version: FORMAT_VERSION, created, updated: now, sealed,
        ...(options.config === true ? { config: true } : {}),
      }));
      return previous === undefined ? ('put' as const) : ('replace' as const);
    }, true)!, (event) => [event, { name }]);
  }

  remove(name: string): void {
    const fileName = `${checkSecretName(name)}.json`;
    this.change(() => this.within('secrets', (secrets) => {
      if (!secrets.has(fileName)) throw new VaultError('notFound', `no secret named ${name}; \`vault list\` shows the names`);
      secrets.remove(fileName);
    }), () => ['rm', { name }]);
  }

  /**
   * The names of the stored secrets, from the directory listing alone. A file that is not named like
   * a secret (a reserved name such as PATH.json, say from a newer version or a writer of the vault)
   * is skipped with a warning, not an error: the rest of the vault stays usable.
   */
  names(): string[] {
    const entries = this.within('secrets', (dir) => dir.names()) ?? [];
    const names: string[] = [];
    for (const entry of entries.sort()) {
      const match = SECRET_FILE.exec(entry);
      if (match?.[1] === undefined) continue;
      try {
        names.push(checkSecretName(match[1]));
      } catch {
        process.emitWarning(`${printable(this.at('secrets', entry))}: ${printable(match[1])} is not a name a secret may have; the file is ignored`);
      }
    }
    return names;
  }

  list(): SecretInfo[] {
    return this.names().map((name) => {
      const file = this.secretFile(name);
      const text = this.readSecretFile(name);
      if (text === undefined) throw new VaultError('notFound', `${file} vanished while it was being read; try again`);
      const secret = parseVaultFile(secretFileSchema, 'sealvault-secret', text, file);
      return {
        name, size: sealedValueSize(secret.sealed, name, file), created: secret.created, updated: secret.updated,
        config: secret.config === true,
      };
    });
  }

  /**
   * When a slot was last removed, from the policy's revocations (docs/FORMAT.md, "Revocations"), for
   * `vault list --stale`. Read without the key, so not authenticated: it is advice, not a check.
   */
  lastSlotRemoval(): string | undefined {
    const parsed = policyFileSchema.safeParse(jsonOrUndefined(this.readPolicyFile() ?? ''));
    const times = (parsed.data?.revoked ?? []).flatMap((r) => ('slot' in r ? [r.removed] : []));
    return times.length === 0 ? undefined : times.sort().at(-1);
  }

  slots(): SlotReading {
    return this.within('slots', (dir) => readSlots(dir)) ?? { slots: [], unknown: [] };
  }

  /**
   * The audit log of sealvault 0.1 (audit.log, read-only since entries went to audit/), checked
   * against the user's witness; empty when the vault has none.
   */
  readLegacyAudit(onEntry?: (entry: AuditEntry) => void): AuditReading {
    return readAudit(this.root, auditWitness(this.file.vault_id), onEntry);
  }

  /** After a successful verification the user's witness moves to the newest entry of audit.log. */
  acceptAuditHead(head: AuditHead): void {
    recordAuditWitness(this.file.vault_id, head);
  }

  /** The change log (audit-dag.ts), every entry checked. */
  readAudit(): DagReading {
    return readDag(this.root);
  }

  /**
   * Checks the change log and the audit.log of sealvault 0.1 if there is one (against the user's
   * witness, which then moves to its last entry): one error per problem, and how many entries.
   */
  checkAudit(onLegacyEntry?: (entry: AuditEntry) => void): { problems: VaultError[]; count: number; dag: DagReading } {
    const problems: VaultError[] = [];
    const legacy = this.readLegacyAudit(onLegacyEntry);
    if (legacy.broken !== undefined) {
      problems.push(
        new VaultError('tampered', `${this.auditFile} line ${legacy.broken.line}: ${legacy.broken.reason}`),
      );
    } else if (legacy.head !== undefined) {
      this.acceptAuditHead(legacy.head);
    }
    const dag = this.readAudit();
    for (const problem of dag.problems) {
      problems.push(new VaultError(problem.kind, problemMessage(this.root, problem)));
    }
    if (dag.entries.size + dag.problems.length === 0 && legacy.count === 0) {
      problems.push(new VaultError(
        'tampered',
        `${this.at(AUDIT_DIR)} holds no entry, and every vault has at least its init entry: ` +
          'the log was removed; restore it from version control',
      ));
    }
    return { problems, count: legacy.count + dag.entries.size, dag };
  }

  /**
   * `vault audit --accept`: a broken audit.log of sealvault 0.1 is set aside whole
   * (audit.log.before-TIME), broken entries of audit/ and those after them are moved to
   * audit.broken-TIME/, and an `accept` entry names what was set aside. The way out of a log that was
   * damaged and cannot be restored. The CLI asks for an unlock first, as for any change a person makes.
   */
  acceptAudit(): { set_aside: string[] } {
    const witness = auditWitness(this.file.vault_id);
    const legacy = this.readLegacyAudit();
    const names: string[] = [];
    this.write((tmp) => {
      const log = legacy.broken !== undefined ? setLogAside(this.root) : undefined;
      const entries = setBrokenAside(this.root);
      if (log !== undefined) names.push(log.set_aside);
      if (entries !== undefined) names.push(entries.set_aside);
      const details = {
        set_aside: log?.set_aside ?? null, ...(log !== undefined ? { bytes: log.bytes, sha256: log.sha256 } : {}),
        entries: entries?.entries ?? [], witness_was: witness ?? null,
      };
      appendEntry(this.root, tmp, 'accept', details, dagHeads(this.root));
    });
    if (legacy.broken !== undefined) replaceAuditWitness(this.file.vault_id, null);
    return { set_aside: names };
  }

  async unlock(options: UnlockOptions = {}): Promise<UnlockedVault> {
    const { slots: all, unknown } = this.slots();
    if (unknown.length > 0) {
      const listed = unknown.slice(0, 5).map((slot) => `${slot.id} (${slot.kind})`).join(', ') + (unknown.length > 5 ? `, and ${unknown.length - 5} more` : '');
      process.emitWarning(`${unknown.length} slot(s) of a kind this sealvault does not know, from a newer version, are skipped: ${listed}`);
    }
    const capped = all.filter((slot) => {
      const over = overKdfCap(slot);
      if (over !== undefined) process.emitWarning(`passphrase slot ${slot.id} is skipped: ${over}`);
      return over === undefined;
    });
    const { tried: slots, skipped } = withinUnlockBudget(orderSlots(capped, lastOpenedSlot(this.file.vault_id)));
    if (skipped.length > 0) {
      process.emitWarning(
        `passphrase slot(s) ${skipped.map((s) => s.id).join(', ')} are not tried: together with the slots before them they cost more than one unlock may spend (docs/FORMAT.md, "Unlock order"); remove slots you do not know (\`vault key list\`)`,
      );
    }
    if (slots.length === 0) {
      throw new VaultError('noUnlock', `${this.at('slots')} holds no key slot this sealvault can use, so nothing can unlock this vault; restore the slots from version control or a backup`);
    }
    const { secretKey, slot, kek } = await unlockPrivateKey(this.vaultId(), this.publicKey(), slots, options);
    // remembered only when another was tried first: a routine unlock changes no file
    if (slot.id !== slots[0]?.id) recordOpenedSlot(this.file.vault_id, slot.id);
    if (options.keepKek !== true) wipe(kek);
    return new UnlockedVault(
      this, { publicKey: this.publicKey(), secretKey }, slot, options.keepKek === true ? kek : undefined,
    );
  }

  /** Atomic write of a file of the layout ('policy.json' or 'slots/ID.json'); callers are inside change(). */
  writeVaultFile(tmp: VaultDir, relative: 'policy.json' | `slots/${string}`, text: string): void {
    if (relative === 'policy.json') this.root.writeAtomic(tmp, relative, text);
    else this.within('slots', (dir) => dir.writeAtomic(tmp, relative.slice('slots/'.length), text), true);
  }

  /** Deletes the keychain item of a removed keychain slot, or says how to. */
  async forgetKeychainItemOf(removed: SlotFile): Promise<void> {
    if (removed.kind !== 'keychain') return;
    const failed = await keychainDelete(removed.keychain.account);
    if (failed !== undefined) {
      process.emitWarning(
        `the keychain item of slot ${removed.id} could not be deleted (${failed}); ` +
          `remove it with your keychain manager (service "sealvault", account ${removed.keychain.account})`,
      );
    }
  }

  /** Durable removal of a slot file; callers are inside change(). */
  removeSlotFile(id: string): void {
    this.within('slots', (dir) => dir.remove(`${checkSlotId(id)}.json`));
  }

  readPolicyFile(): Buffer | undefined {
    return this.root.read('policy.json', 'policy');
  }

  /** Re-pins the public key when `expected` is its fingerprint, checked out of band by the user. */
  trustFingerprint(expected: string): void {
    if (expected !== this.fingerprint) {
      throw new VaultError('tampered', `the vault's fingerprint is ${this.fingerprint}, not ${expected}; nothing was pinned`);
    }
    this.change(() => this.pin(), () => ['trust', { fingerprint: this.fingerprint, by: 'fingerprint' }]);
  }
}

/** Runs `change` under the writer lock of the vault at `root`, after clearing what a dead writer left in .tmp. */
function underLock<T>(root: VaultDir, change: (tmp: VaultDir) => T): T {
  return root.withLock('.lock', () => {
    const tmp = root.child('.tmp', { create: true });
    if (tmp === undefined) throw new VaultError('internal', `cannot open ${root.at('.tmp')}`);
    try {
      tmp.sweep();
      removeTree(root, REKEY_STAGING); // a rekey that died before its commit
      return change(tmp);
    } finally {
      tmp.close();
    }
  });
}

/**
 * Removes a `.rekey/` that a teammate's rekey left applied but not yet removed (rekey.ts
 * journalFinished), so that nobody is refused for it; a reader who may not write leaves it (and
 * reads on: it applies nothing). Returns whether `.rekey/` was such a journal.
 */
function clearFinishedJournal(root: VaultDir): boolean {
  const dir = root.child(REKEY_COMMITTED);
  if (dir === undefined) return true;
  let finished: boolean;
  try {
    finished = journalFinished(dir);
  } finally {
    dir.close();
  }
  if (!finished) return false;
  try {
    underLock(root, () => {
      const again = root.child(REKEY_COMMITTED);
      const still = again !== undefined && journalFinished(again);
      again?.close();
      if (still) removeTree(root, REKEY_COMMITTED);
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
  }
  return true;
}

/**
 * Finishes a rekey that was killed after its commit (rekey.ts), before anything of the vault is
 * read, and records its audit entry as this user's witness. Needs write access to the vault.
 */
function finishRekey(root: VaultDir): void {
  underLock(root, (tmp) => applyRekey(root, (details) => recordRekey(root, tmp, details)));
}

/** The `rekey` entry of a rekey's manifest, unless an apply before this one (killed after it) wrote it. */
function recordRekey(root: VaultDir, tmp: VaultDir, details: Record<string, unknown>): void {
  try {
    const { entries, heads, problems } = readDag(root);
    if ([...entries.values()].some((e) => e.event === 'rekey' && e.details.run === details.run)) return;
    // a damaged log does not stop a committed rekey: its entry starts a new root
    appendEntry(root, tmp, 'rekey', details, problems.length > 0 ? [] : heads);
  } catch (error) {
    // the files are the new vault's already: a log that cannot take the entry must not leave the journal
    process.emitWarning(`the rekey is done, but its audit entry could not be written (${(error as Error).message})`);
  }
}

/** The entries of the layout that `vault init` makes, files of the root and its directories. */
const INIT_FILES = ['vault.json', 'policy.json', '.gitignore', '.lock'];
const INIT_DIRECTORIES = ['slots', 'secrets', AUDIT_DIR, '.tmp'] as const;

/**
 * Removes what a failed `vault init` made, and only that, through the directory's fd: unlinkat(2)
 * of the names it wrote, never a walk of what is there. A writer of the directory can swap an entry
 * for a symlink at any moment; a removal by path would then follow it out of the vault.
 */
export function undoInit(root: VaultDir, slotId: string | undefined): void {
  const quietly = (work: () => void) => {
    try {
      work();
    } catch {
      // gone already, or not ours to remove
    }
  };
  for (const name of INIT_FILES) quietly(() => native().unlinkAt(root.fd, name, 0));
  for (const name of INIT_DIRECTORIES) {
    quietly(() => {
      const dir = root.child(name);
      if (dir === undefined) return;
      try {
        if (name === 'slots' && slotId !== undefined) quietly(() => native().unlinkAt(dir.fd, `${slotId}.json`, 0));
        if (name === '.tmp' || name === AUDIT_DIR) dir.sweep();
      } finally {
        dir.close();
      }
      native().unlinkAt(root.fd, name, AT_REMOVEDIR);
    });
  }
}

/**
 * The size of the value in a sealed message (docs/FORMAT.md, "secrets"): the sealed bytes less the
 * box's overhead and the name and zero byte sealed with the value. A sealed field too short to hold
 * even an empty value, or holding more than MAX_VALUE_BYTES, is a damaged file, not a size of -57.
 */
function sealedValueSize(sealed: string, name: string, file: string): number {
  const size = Buffer.from(sealed, 'base64').length - SEAL_OVERHEAD - Buffer.byteLength(name) - 1;
  if (size < 0 || size > MAX_VALUE_BYTES) {
    const what = size < 0 ? 'too short to hold a value' : `longer than the largest value (${MAX_VALUE_BYTES} bytes)`;
    throw new VaultError('corrupt', `${file} is a damaged secret file: its sealed value is ${what}; restore it from version control or a backup`);
  }
  return size;
}

export interface GrantRequest {
  names: string[];
  /** The program, or a script with its interpreter (binary.ts grantTarget, scriptTarget). */
  binary: ProgramTarget;
  /** The name the user gave it (`npm`), which may say more than its real path (npm-cli.js). */
  calledAs?: string;
  minTier: Tier;
  /** Exact arguments after argv[0], or null for any. */
  args: string[] | null;
  /** The user said --any-args for an interpreter, knowingly. */
  anyArgs: boolean;
  /** lockdown: more host paths, real paths (absent: none). */
  ro?: string[];
  rw?: string[];
  /** Environment values the grant pins, and the caller's variables it lets through (absent: none). */
  env?: Record<string, string>;
  passEnv?: string[];
  /** lockdown's network (absent: none, loopback only). */
  net?: Network;
  /** Secrets delivered as files, and where in lockdown's root (undefined: /tmp/.vault-secrets/NAME). */
  files?: Map<string, string | undefined>;
  /** Mask the program's output whatever the caller says. */
  mask?: 'stars' | 'name';
}

/** What `vault allow --renew` did: the grants it made again, from which hashes to which. */
export interface Renewal {
  path: string;
  secrets: string[];
  from: string[];
  to: ProgramTarget;
}

/** The optional fields of a grant, present only when set (docs/FORMAT.md keeps old MACs valid). */
function grantFields(request: GrantRequest): Partial<Grant> {
  return {
    ...(request.ro !== undefined ? { ro: request.ro } : {}),
    ...(request.rw !== undefined ? { rw: request.rw } : {}),
    ...(request.binary.interpreter !== undefined ? { interpreter: request.binary.interpreter } : {}),
    ...(request.env !== undefined && Object.keys(request.env).length > 0 ? { env: request.env } : {}),
    ...(request.passEnv !== undefined && request.passEnv.length > 0 ? { pass_env: request.passEnv } : {}),
    ...(request.net !== undefined ? { net: toField(request.net) } : {}),
    ...(request.mask !== undefined ? { mask: request.mask } : {}),
  };
}

function fileField(request: GrantRequest, secret: string): Partial<Grant> {
  if (request.files?.has(secret) !== true) return {};
  const at = request.files.get(secret);
  return { file: at !== undefined ? { path: at } : {} };
}

/** Where lockdown shows the system and the kernel: a secret file's path must be in the sandbox's own directories. */
const NOT_FOR_FILES = [...LOCKDOWN_SYSTEM_PATHS, '/proc', '/dev', '/sys'];

/**
 * The run settings of a grant that only lockdown can give, checked before anything is written:
 * --net and a file at a path need --min-tier lockdown; a file goes to one of the granted secrets,
 * at a path of the sandbox's own; its NAME_FILE variable must not collide (policy.ts).
 */
function checkRunSettings(request: GrantRequest, names: string[]): void {
  const lockdownOnly = [
    ...(request.net !== undefined ? [`--net ${networkText(request.net)}`] : []),
    ...[...(request.files ?? new Map<string, string | undefined>())].filter(([, at]) => at !== undefined).map(([n, at]) => `--file ${n}=${at}`),
  ];
  if (lockdownOnly.length > 0 && request.minTier !== 'lockdown') {
    throw new VaultError('usage', `${lockdownOnly[0]} describes how lockdown runs the program, and --min-tier ${request.minTier} lets it run outside lockdown: use --min-tier lockdown (the default with it)`);
  }
  for (const [name, at] of request.files ?? []) {
    if (!names.includes(name)) throw new VaultError('usage', `--file ${name}: ${name} is not among the secrets this grant names (${names.join(', ')})`);
    if (at === undefined) continue;
    // NAME_FILE carries it to the target: one printable line
    if (/[\x00-\x1f\x7f-\x9f\u2028\u2029]/.test(at)) throw new VaultError('usage', `--file ${name}=…: the path holds a control character`);
    const inside = [...NOT_FOR_FILES, ...(request.ro ?? []), ...(request.rw ?? [])].find((p) => isWithin(at, p));
    if (!path.isAbsolute(at) || path.normalize(at) !== at || at.endsWith('/') || inside !== undefined) {
      throw new VaultError('usage', `--file ${name}=${at}: the path must be absolute and normal, and not in ${inside ?? 'a directory of the host'}: it is made in the sandbox's own root, e.g. /run/secrets/${name.toLowerCase()}`);
    }
  }
  const files = [...(request.files ?? [])].map(([name, at]) => (at !== undefined ? { name, path: at } : { name }));
  checkFileDeliveries(files, names.filter((n) => !request.files?.has(n)), Object.keys(request.env ?? {}), request.passEnv ?? []);
}

function hashFile(real: string): { path: string; sha256: string } {
  const fd = fs.openSync(real, fs.constants.O_RDONLY);
  try {
    return { path: real, sha256: sha256OfFd(fd) };
  } finally {
    fs.closeSync(fd);
  }
}

function isShebangScript(real: string): boolean {
  const fd = fs.openSync(real, fs.constants.O_RDONLY);
  try {
    return readShebang(fd) !== undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** A `--run INTERPRETER SCRIPT` grant renewed: the script as it is now, the same interpreter path. */
function renewedScript(real: string, interpreterPath: string): ProgramTarget {
  return scriptTarget(hashFile(real), { path: interpreterPath });
}

/** The details of a `policy-merge` audit entry (docs/FORMAT.md, "Events"). */
function mergeDetails(policy: Policy, from: [number, number]): Record<string, unknown> {
  return { revision: policy.revision, from, grants: policy.grants.length, revoked: policy.revoked?.length ?? 0 };
}

/** What a rekey did: the slot plan it carried out, the new fingerprint and how many secrets it resealed. */
export interface RekeyResult {
  plan: SlotPlan;
  fingerprint: string;
  secrets: number;
}

/** A secret's sealed bytes and the file they came from (for messages). */
export interface SealedValue {
  file: string;
  sealed: Uint8Array;
  /** Its file says `config`: a hint for `vault list`, checked against the sealed kind by `vault verify`. */
  marked: boolean;
}

export class UnlockedVault {
  constructor(
    readonly vault: Vault,
    private readonly keys: KeyPair,
    /** The slot that opened the vault. */
    readonly openedWith: SlotFile,
    /** Its KEK, kept for rekey when the unlock asked for it (UnlockOptions.keepKek). */
    private readonly openedKek?: Uint8Array,
  ) {}

  /** Wipes the private key; the object is useless afterwards. */
  close(): void {
    wipe(this.keys.secretKey, this.openedKek);
  }

  /** Whether the holder of this key made `slot` as it is (its slot MAC verifies): keyslots.ts slotVouched. */
  vouches(slot: SlotFile): boolean {
    return slotVouched(slot, this.keys.secretKey);
  }

  /** Adds a slot; a label another slot has already is refused (2): `vault recipient rm LABEL` names one slot. */
  async addSlot(request: SlotRequest): Promise<NewSlot> {
    const taken = (slots: SlotFile[]) => request.label !== undefined && slots.some((slot) => slot.label === request.label);
    const sameLabel = () => new VaultError('usage', `a key slot is already labelled "${request.label}" (\`vault key list\`); choose another label`);
    if (taken(this.vault.slots().slots)) throw sameLabel();
    const made = await createSlot(request, this.vault.vaultId(), this.keys.secretKey);
    this.vault.change(
      (tmp) => {
        if (taken(this.vault.slots().slots)) throw sameLabel(); // added meanwhile, under the lock
        this.vault.writeVaultFile(tmp, `slots/${made.slot.id}.json`, serialize(made.slot));
      },
      () => ['key-add', { slot: made.slot.id, kind: made.slot.kind, ...(made.slot.label !== undefined ? { label: made.slot.label } : {}) }],
    );
    return made;
  }

  /**
   * Removes slot `id` and records its removal in the policy (docs/FORMAT.md, "Revocations"), so that
   * a rekey never carries the slot again if a writer puts the file back. Nothing is rekeyed here.
   */
  async removeSlot(id: string): Promise<SlotFile> {
    checkSlotId(id);
    const removed = this.vault.change((tmp) => {
      const { slots } = this.vault.slots();
      const slot = slots.find((s) => s.id === id);
      if (slot === undefined) throw new VaultError('notFound', `no key slot ${id}; \`vault key list\` shows the slots`);
      if (slots.length === 1) throw new VaultError('refused', `slot ${id} is the vault's last key slot; removing it would lock the vault for good. Add another slot first`);
      this.writeNextPolicy(tmp, (current) => ({
        grants: current.grants, revoked: [{ slot: id, removed: new Date().toISOString() }],
      }));
      this.vault.removeSlotFile(id);
      return slot;
    }, () => ['key-rm', { slot: id }]);
    await this.vault.forgetKeychainItemOf(removed);
    return removed;
  }

  /**
   * The verified policy. Refuses (9) one that holds a grant this user saw revoked: an older policy
   * put back (a branch from before the revoke, or a writer of the vault) that would restore it. An
   * older policy that only has fewer grants is fine: switching to an older branch works. The
   * revocations it records are remembered (docs/FORMAT.md, "Revocations").
   */
  policy(): Policy {
    const { policy, seen } = this.policyAsItIs();
    const back = policy.grants.filter((g) => seen.has(revocationKey(grantRevocation(g))));
    if (back.length > 0) {
      const named = back.slice(0, 3).map((g) => `${g.secret} to ${g.path} (granted ${g.created})`).join(', ') +
        (back.length > 3 ? ` and ${back.length - 3} more` : '');
      const first = back[0]!;
      throw new VaultError(
        'tampered',
        `${this.vault.policyFile} holds ${back.length} grant(s) you saw revoked: ${named}. ` +
          'An older policy was put back (a branch from before the revoke, or a writer of the vault); ' +
          `revoke again here with \`vault revoke ${first.secret} --from ${first.path}\`, ` +
          'or merge the branch that revoked it',
      );
    }
    return policy;
  }

  /**
   * The policy as authentic, without the check for revoked grants put back; records what it revokes.
   * `seen`: the revocations this user remembers, these included.
   */
  private policyAsItIs(): { policy: Policy; seen: Set<string> } {
    const { policyFile, file } = this.vault;
    const policy = verifyPolicy(this.vault.readPolicyFile(), policyFile, file.vault_id, this.keys.secretKey);
    const { revoked: seen, revision } = policySeen(file.vault_id);
    const learned = (policy.revoked ?? []).map(revocationKey).filter((key) => !seen.has(key));
    if (learned.length > 0) recordRevocations(file.vault_id, learned);
    for (const key of learned) seen.add(key);
    if (policy.revision > revision) recordPolicyRevision(file.vault_id, policy.revision);
    return { policy, seen };
  }

  /**
   * Writes the next revision of the policy (inside a change): `change` gives the grants and what it
   * revokes, added to the revocations kept; they are remembered at once, as this user saw them.
   * A revoke may start from a policy with revoked grants put back (it is how they go again).
   */
  private writeNextPolicy(
    tmp: VaultDir, change: (current: Policy) => { grants: Grant[]; revoked?: Revocation[] }, revoking = false,
  ): Policy {
    const current = revoking ? this.policyAsItIs().policy : this.policy();
    const { grants, revoked = [] } = change(current);
    const kept = new Set((current.revoked ?? []).map(revocationKey));
    const all = [...(current.revoked ?? []), ...revoked.filter((r) => !kept.has(revocationKey(r)))];
    const next: Policy = { revision: current.revision + 1, grants, ...(all.length > 0 ? { revoked: all } : {}) };
    this.vault.writeVaultFile(
      tmp, 'policy.json', serialize(sealPolicy(this.vault.file.vault_id, this.keys.secretKey, next)),
    );
    recordPolicyRevision(this.vault.file.vault_id, next.revision);
    if (revoked.length > 0) recordRevocations(this.vault.file.vault_id, revoked.map(revocationKey));
    return next;
  }

  private writePolicy(
    event: 'allow' | 'revoke', details: Record<string, unknown>,
    change: (grants: Grant[]) => { grants: Grant[]; revoked?: Revocation[] },
  ): Policy {
    return this.vault.change(
      (tmp) => this.writeNextPolicy(tmp, (current) => change(current.grants), event === 'revoke'),
      () => [event, details],
    );
  }

  allow(request: GrantRequest): Policy {
    const { binary, args } = request;
    // by its name, also when it is a script (a pyenv shim named python3 runs what its arguments say),
    // and a script of an interpreter that reads options after it (#!/usr/bin/make -f)
    const launcher = isInterpreter(binary.path, request.calledAs ?? binary.path) ||
      (binary.interpreter !== undefined && readsOptionsAfterScript(binary.interpreter.path));
    if (args === null && !request.anyArgs && launcher) {
      throw new VaultError(
        'refused',
        `${request.calledAs ?? binary.path} runs whatever code or command its arguments name: grant the script itself (\`--to ./script\` with a #! line, or \`--run ${path.basename(binary.path)} SCRIPT\`: its contents and its interpreter are pinned), pin the exact arguments with --arg, or pass --any-args if you mean it`,
      );
    }
    const names = request.names.map(checkSecretName);
    checkRunSettings(request, names);
    for (const name of names) if (!this.vault.has(name)) throw new VaultError('notFound', `no secret named ${name}; put it first, or check \`vault list\``);
    const created = new Date().toISOString();
    const fields = grantFields(request);
    const files = [...(request.files ?? [])].map(([n, at]) => (at !== undefined ? `${n}=${at}` : n));
    const details = {
      secrets: names, path: binary.path, sha256: binary.sha256, min_tier: request.minTier, args, any_args: request.anyArgs, ...fields,
      ...(files.length > 0 ? { files } : {}),
    };
    if (!fitsAuditLine(details)) {
      throw new VaultError('usage', `this grant's arguments, environment and paths are over ${SIZE_CAPS.auditLine} bytes, more than its audit entry may hold; pin less, or pin a file that holds it`);
    }
    return this.writePolicy('allow', details, (grants) => {
      const replaced = (g: Grant) =>
        names.some((secret) => sameGrantTarget(g, { secret, sha256: binary.sha256, args }));
      const kept = grants.filter((g) => !replaced(g));
      // a replaced grant is revoked: an older policy must not bring back its weaker settings (a lower tier, no mask)
      return {
        revoked: grants.filter(replaced).map(grantRevocation),
        grants: [
          ...kept,
          ...names.map((secret) => ({
            secret, sha256: binary.sha256, path: binary.path, min_tier: request.minTier, args, created, ...fields,
            ...fileField(request, secret),
          })),
        ],
      };
    });
  }

  /**
   * Grants again, to what is at `target` now, every secret granted to that path before (with the
   * same tier, arguments, environment and paths), and drops the grants to its earlier versions.
   * A script keeps the interpreter path its grants named (re-hashed); `describe` tells what changed
   * before anything is written.
   */
  renew(target: string, grantPath: (grants: Grant[]) => string, describe: (renewal: Renewal) => void): Renewal {
    let real: string;
    try {
      real = resolveCommand(target);
    } catch {
      real = path.resolve(target);
    }
    const old = this.policy().grants.filter((g) => g.path === real);
    if (old.length === 0) throw new VaultError('notFound', `nothing is granted to ${real}; \`vault policy\` lists the grants`);
    const interpreter = old.find((g) => g.interpreter !== undefined)?.interpreter;
    const now = interpreter !== undefined && !isShebangScript(real)
      ? renewedScript(real, interpreter.path)
      : grantTarget(real, grantPath(old));
    const renewal: Renewal = { path: real, secrets: [...new Set(old.map((g) => g.secret))].sort(), from: [...new Set(old.map((g) => g.sha256))], to: now };
    describe(renewal);
    const created = new Date().toISOString();
    const renewed = new Map<string, Grant>();
    for (const g of old) {
      const again: Grant = { ...g, sha256: now.sha256, created };
      delete again.interpreter;
      if (now.interpreter !== undefined) again.interpreter = now.interpreter;
      renewed.set(JSON.stringify([g.secret, g.args]), again);
    }
    // the earlier versions' grants are revoked: their bytes must not get the secrets back
    const details = { renewed: renewal.secrets, path: real, from: renewal.from, sha256: now.sha256 };
    this.writePolicy('allow', details, (grants) => ({
      grants: [...grants.filter((g) => g.path !== real), ...renewed.values()],
      revoked: grants.filter((g) => g.path === real && g.sha256 !== now.sha256).map(grantRevocation),
    }));
    return renewal;
  }

  /** Removes the grants of `names` to the binary at `target`, by its path or its current hash. */
  revoke(names: string[], target: string): { policy: Policy; removed: number } {
    names.forEach(checkSecretName);
    let current: { path: string; sha256: string } | undefined;
    try {
      current = hashFile(resolveCommand(target));
    } catch {
      current = undefined; // the binary may be gone; its recorded path still identifies the grants
    }
    const targetPath = current?.path ?? path.resolve(target);
    const matches = (g: Grant) => names.includes(g.secret) && (g.path === targetPath || g.sha256 === current?.sha256);
    const before = this.policyAsItIs().policy.grants.filter(matches).length;
    if (before === 0) throw new VaultError('notFound', `no grant of ${names.join(', ')} to ${targetPath}; \`vault policy\` lists the grants`);
    const policy = this.writePolicy('revoke', { secrets: names, path: targetPath }, (grants) => ({
      grants: grants.filter((g) => !matches(g)),
      revoked: grants.filter(matches).map(grantRevocation),
    }));
    return { policy, removed: before };
  }

  /**
   * The sealed values of `names`, read and checked against docs/FORMAT.md but not opened: `vault
   * exec` reads them before it audits the release, so that a damaged file refuses before that.
   */
  readSealed(names: string[]): Map<string, SealedValue> {
    const sealed = new Map<string, SealedValue>();
    for (const name of names) {
      const file = this.vault.secretFile(name);
      const text = this.vault.readSecretFile(name);
      if (text === undefined) throw new VaultError('notFound', `no secret named ${name}; \`vault list\` shows the names`);
      const secret = parseVaultFile(secretFileSchema, 'sealvault-secret', text, file);
      sealedValueSize(secret.sealed, name, file);
      sealed.set(name, { file, sealed: fromBase64(secret.sealed), marked: secret.config === true });
    }
    return sealed;
  }

  /**
   * Opens what readSealed read: the values, and the names sealed as configuration (never masked).
   * The caller wipes every value after hand-over.
   */
  openSealed(sealed: Map<string, SealedValue>): { values: Map<string, Uint8Array>; config: Set<string> } {
    const values = new Map<string, Uint8Array>();
    const config = new Set<string>();
    try {
      for (const [name, { file, sealed: bytes }] of sealed) {
        const opened = openSecretAndKind(this.keys, name, bytes, file);
        values.set(name, opened.value);
        if (opened.config) config.add(name);
      }
      return { values, config };
    } catch (error) {
      for (const value of values.values()) wipe(value);
      throw error;
    }
  }

  /** Opens the named secrets; the caller wipes every value after use. */
  openSecrets(names: string[]): Map<string, Uint8Array> {
    return this.openSealed(this.readSealed(names)).values;
  }

  /** Checks every secret, the policy and the audit chain; returns one line per problem. */
  verify(): { problems: VaultError[]; summary: string } {
    const problems: VaultError[] = [];
    const attempt = <T>(work: () => T): T | undefined => {
      try {
        return work();
      } catch (error) {
        if (!(error instanceof VaultError)) throw error;
        problems.push(error);
        return undefined;
      }
    };
    const names = attempt(() => this.vault.names()) ?? [];
    for (const name of names) {
      attempt(() => {
        const sealed = this.readSealed([name]);
        const { values, config } = this.openSealed(sealed);
        values.forEach((value) => wipe(value));
        // the file's `config` is what `vault list` shows; the sealed kind is what a run does
        if (sealed.get(name)?.marked !== config.has(name)) {
          throw new VaultError(
            'tampered',
            `${this.vault.secretFile(name)} says it is ${config.has(name) ? 'a secret' : 'a configuration value'} ` +
              `but its value was sealed as ${config.has(name) ? 'configuration' : 'a secret'}: someone edited the file; ` +
              '`vault list` shows it wrongly (a run goes by the sealed kind); put it again',
          );
        }
      });
    }
    const policy = attempt(() => this.policy());
    const audit = attempt(() => this.vault.checkAudit());
    problems.push(...(audit?.problems ?? []));
    const slots = attempt(() => this.vault.slots());
    const skipped = slots === undefined ? [] : [...slots.unknown.map((s) => `${s.id} (kind ${s.kind})`), ...slots.slots.filter((s) => overKdfCap(s) !== undefined).map((s) => `${s.id} (over the KDF cap)`)];
    const summary =
      `${names.length} secret(s) open under their own names, ` +
      `policy revision ${policy?.revision ?? '?'} with ${policy?.grants.length ?? '?'} grant(s) verified, ` +
      `audit log of ${audit?.count ?? '?'} entries ${audit?.problems.length === 0 ? 'intact' : 'broken'}, ` +
      `${slots === undefined ? '?' : slots.slots.length + slots.unknown.length} key slot(s)` +
      (skipped.length > 0 ? `, of which unlock skips ${skipped.join(', ')}` : '') +
      // what a newcomer compares with the owner's (vault init printed it): a first use pins whatever it finds
      `; fingerprint ${this.vault.fingerprint}`;
    return { problems, summary };
  }

  /**
   * The union of two authentic sides of the policy (policy-merge.ts), each checked against this
   * vault's key: a side that is not authentic refuses the merge (9), naming it.
   */
  private mergeSides(
    ours: Buffer | string, theirs: Buffer | string, names: [string, string],
  ): { merged: Policy; from: [number, number] } {
    const { file } = this.vault;
    const [a, b] = ([ours, theirs] as const).map((text, i) =>
      verifyPolicy(Buffer.from(text), names[i]!, file.vault_id, this.keys.secretKey));
    const seen = revocationsSeen(file.vault_id);
    const merged = mergePolicies(a!, b!, seen);
    // slots this user saw removed stay removed, whatever the two sides say (a rekey must never carry them)
    const listed = new Set((merged.revoked ?? []).map(revocationKey));
    const now = new Date().toISOString();
    const slots = [...seen]
      .filter((key) => key.startsWith('slot ') && !listed.has(key))
      .map((key) => ({ slot: key.slice(5), removed: now }));
    if (slots.length > 0) merged.revoked = [...(merged.revoked ?? []), ...slots];
    recordRevocations(file.vault_id, (merged.revoked ?? []).map(revocationKey));
    return { merged, from: [a!.revision, b!.revision] };
  }

  /**
   * `vault policy merge`: policy.json holds git's conflict markers (two branches changed it); writes
   * the union of the two sides, authenticated, with a `policy-merge` audit entry. Exit 3 when there
   * is no conflict to merge.
   */
  mergePolicy(): { policy: Policy; from: [number, number] } {
    const { policyFile } = this.vault;
    return this.vault.change((tmp) => {
      const sides = parseConflict(this.vault.readPolicyFile()?.toString('utf8') ?? '');
      if (sides === undefined) {
        throw new VaultError('notFound', `${policyFile} holds no git merge conflict: there is nothing to merge`);
      }
      const { merged, from } = this.mergeSides(
        sides.ours, sides.theirs, [`${policyFile} (ours)`, `${policyFile} (theirs)`],
      );
      const sealed = serialize(sealPolicy(this.vault.file.vault_id, this.keys.secretKey, merged));
      this.vault.writeVaultFile(tmp, 'policy.json', sealed);
      recordPolicyRevision(this.vault.file.vault_id, merged.revision);
      return { policy: merged, from };
    }, ({ policy, from }) => ['policy-merge', mergeDetails(policy, from)]);
  }

  /**
   * The merge driver (gitattributes(5), "Defining a custom merge driver"): the policy text that
   * merges the files `ours` (git's %A) and `theirs` (%B). Writes nothing itself.
   */
  mergedPolicyText(ours: Buffer, theirs: Buffer): string {
    const { merged } = this.mergeSides(
      ours, theirs, ['the policy of this branch', 'the policy of the branch merged in'],
    );
    return serialize(sealPolicy(this.vault.file.vault_id, this.keys.secretKey, merged));
  }

  /**
   * Replaces the key pair (docs/FORMAT.md, "Rekey"): every secret resealed to the new public key,
   * every slot that can go wrapped again (rekey.ts planSlots), the policy authenticated under the
   * new key with its revision + 1 and the removed slots among its revocations, as one crash-safe
   * step. A slot that cannot go refuses the rekey (11) unless `dropUnreachable`. The unlock must
   * have kept its KEK (UnlockOptions.keepKek). `onProgress(done, total)` counts secrets resealed;
   * `onStep` is told each point of the journal reached (tests stop the rekey there).
   * The vault object is stale afterwards: open it again to use the new key.
   */
  async rekey(options: {
    remove?: string[]; dropUnreachable?: boolean;
    onProgress?: (done: number, total: number) => void; onStep?: (step: RekeyStep) => void;
  }): Promise<RekeyResult> {
    const vault = this.vault;
    const vaultId = vault.vaultId();
    const before = vault.slots();
    const policy = this.policy();
    // the policy's, and those this user saw (a policy from before a removal may have been put back)
    const remembered = [...revocationsSeen(vault.file.vault_id)]
      .flatMap((key) => (key.startsWith('slot ') ? [key.slice(5)] : []));
    const revoked = new Set([...(policy.revoked ?? []).flatMap((r) => ('slot' in r ? [r.slot] : [])), ...remembered]);
    const remove = new Set(options.remove ?? []);
    if (before.slots.length + before.unknown.length - remove.size < 1) {
      throw new VaultError(
        'refused',
        `slot ${[...remove].join(', ')} is the vault's last key slot; removing it would lock the vault for good. ` +
          'Add another slot first',
      );
    }
    if (remove.has(this.openedWith.id)) {
      throw new VaultError(
        'refused',
        `slot ${this.openedWith.id} is the one that unlocked the vault; unlock with another slot to remove it`,
      );
    }
    const keys = generateKeyPair();
    try {
      const plan = await planSlots({
        slots: before.slots, unknown: before.unknown, vaultId,
        oldSecretKey: this.keys.secretKey, newSecretKey: keys.secretKey,
        opener: this.openedWith, openerKek: this.openedKek, remove, revoked,
      });
      if (plan.unreachable.length > 0 && options.dropUnreachable !== true) {
        const listed = plan.unreachable
          .map((s) => `${s.id} (${s.kind}${s.label !== undefined ? ` "${s.label}"` : ''}: ${s.why})`)
          .join('; ');
        throw new VaultError(
          'refused',
          `the new key cannot be wrapped for ${plan.unreachable.length} slot(s): ${listed}. Nothing was changed; ` +
            'pass --drop-unreachable to remove them with the rekey (and add them again after), or remove them first',
        );
      }
      const now = new Date().toISOString();
      const removedNow = plan.removed.filter((slot) => remove.has(slot.id));
      const next: Policy = {
        revision: policy.revision + 1,
        grants: policy.grants,
        revoked: [
          ...(policy.revoked ?? []),
          ...[...removedNow, ...plan.unreachable]
            .filter((s) => !revoked.has(s.id))
            .map((s) => ({ slot: s.id, removed: now })),
        ],
      };
      const file: VaultFile = { ...vault.file, public_key: toBase64(keys.publicKey) };
      const details = {
        run: Buffer.from(randomBytes(8)).toString('hex'), fingerprint: fingerprint(keys.publicKey),
        from: vault.fingerprint,
        slots: plan.carried.map((s) => s.id), removed: plan.removed.map((s) => s.id),
        dropped: plan.unreachable.map((s) => s.id),
        reissued: plan.reissued.map((r) => r.slot.id), secrets: 0,
      };
      let names: string[] = [];
      vault.rekeyLocked(() => {
        if (JSON.stringify(vault.slots()) !== JSON.stringify(before)) {
          throw new VaultError(
            'busy',
            'the key slots changed while the rekey was being prepared; nothing was changed, run it again',
          );
        }
        names = vault.names();
        details.secrets = names.length;
        const staging = Staging.begin(vault.root);
        try {
          names.forEach((name, index) => {
            const text = vault.readSecretFile(name);
            if (text === undefined) {
              throw new VaultError(
                'notFound',
                `${vault.secretFile(name)} vanished during the rekey; nothing was changed`,
              );
            }
            const secret = parseVaultFile(secretFileSchema, 'sealvault-secret', text, vault.secretFile(name));
            const file = vault.secretFile(name);
            const { value, config } = openSecretAndKind(this.keys, name, fromBase64(secret.sealed), file);
            try {
              const sealed = toBase64(sealSecret(keys.publicKey, name, value, config));
              staging.put(staging.secrets, `${name}.json`, serialize({
                format: secret.format, version: secret.version, created: secret.created,
                updated: secret.updated, sealed, ...(secret.config === true ? { config: true } : {}),
              }));
            } finally {
              wipe(value);
            }
            options.onProgress?.(index + 1, names.length);
            if (index + 1 === Math.ceil(names.length / 2)) options.onStep?.('staged-half');
          });
          for (const slot of plan.carried) staging.put(staging.slots, `${slot.id}.json`, serialize(slot));
        } catch (error) {
          staging.close();
          throw error;
        }
        expectRekey(vault.file.vault_id, file.public_key);
        options.onStep?.('staged');
        staging.commit({
          manifest: {
            format: 'sealvault-rekey', version: 1, run: details.run,
            slots: plan.carried.map((s) => s.id), details,
          },
          vaultFile: serialize(file),
          policyFile: serialize(sealPolicy(file.vault_id, keys.secretKey, next)),
        });
        options.onStep?.('committed');
      }, options.onStep);
      followRekey(vault.file.vault_id, vault.file.public_key, file.public_key);
      for (const slot of [...plan.removed, ...plan.unreachable]) {
        const full = before.slots.find((s) => s.id === slot.id);
        if (full !== undefined) await vault.forgetKeychainItemOf(full);
      }
      return { plan, fingerprint: details.fingerprint, secrets: names.length };
    } finally {
      wipe(keys.secretKey);
    }
  }

  /**
   * Re-pins this vault's public key; the unlock has just proved it belongs to the private key. Not
   * after an unlock through a recipient slot: anyone can make an age file to your public recipient,
   * so a writer can plant a slot that your identity opens, holding a key pair of the writer's
   * (with vault.json's public key replaced to match): such an unlock proves nothing.
   */
  trust(): void {
    if (this.openedWith.kind === 'recipient') {
      throw new VaultError(
        'refused',
        `the vault opened through recipient slot ${this.openedWith.id}, which anyone who can write the vault could have planted ` +
          `for your identity: it does not prove the public key; check the fingerprint ${this.vault.fingerprint} with the vault's ` +
          `owner and run \`vault trust --fingerprint ${this.vault.fingerprint}\``,
      );
    }
    this.vault.change(() => this.vault.pin(), () => ['trust', { fingerprint: this.vault.fingerprint, by: 'unlock' }]);
  }
}
