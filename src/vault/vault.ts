/**
 * A vault directory as docs/FORMAT.md describes it. `Vault` is what anyone who can write the
 * directory can do (put, rm, list, read the audit log); `UnlockedVault` is what needs the private
 * key (slots, grants, opening secrets for `vault exec`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tier } from '../sandbox/tiers.js';
import { type AuditEvent, type AuditReading, appendAudit, nextAuditLink, readAudit } from './audit.js';
import { grantTarget, type ProgramTarget, readShebang, resolveCommand, scriptTarget, sha256OfFd } from './binary.js';
import {
  fingerprint, fromBase64, generateKeyPair, type KeyPair, loadCrypto, openSecret, randomBytes, SEAL_OVERHEAD, sealSecret, toBase64, wipe,
} from './crypto.js';
import { VaultError } from './errors.js';
import {
  FORMAT_VERSION, type Grant, jsonOrUndefined, parseVaultFile, secretFileSchema, serialize, type SlotFile, type VaultFile, vaultFileSchema,
} from './format.js';
import { readFileIfExists, removeFileDurably, sweepTemporaryFiles, withLock, writeFileAtomic } from './files.js';
import { keychainDelete } from './keychain.js';
import { checkSlotId, createSlot, type NewSlot, readSlots, type SlotRequest } from './keyslots.js';
import { checkSecretName } from './names.js';
import { auditWitness, checkPin, pinVault, policyRevisionSeen, recordAuditWitness, recordPolicyRevision } from './pins.js';
import { isInterpreter, type Policy, readsOptionsAfterScript, sameGrantTarget, sealPolicy, verifyPolicy } from './policy.js';
import { type UnlockOptions, unlockPrivateKey } from './unlock.js';

export const MAX_VALUE_BYTES = 1024 * 1024;
const SECRET_FILE = /^([A-Z_][A-Z0-9_]{0,127})\.json$/;
const GITIGNORE = '# local to this machine, never committed (docs/FORMAT.md)\n.lock\n.tmp/\n';

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
}

export interface OpenOptions {
  /** `vault trust` opens a vault whose pin it is about to replace; everything else checks it. */
  checkPin?: boolean;
}

export class Vault {
  /** The audit entry this process appended, to become the user's witness once the lock is released. */
  private pendingWitness: { seq: number; hash: string } | undefined;

  private constructor(
    readonly dir: string,
    readonly file: VaultFile,
  ) {}

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
    return this.at('audit.log');
  }
  get policyFile(): string {
    return this.at('policy.json');
  }

  /** Creates a vault with one key slot in `dir`, which must be new or empty. */
  static async create(dir: string, firstSlot: SlotRequest): Promise<{ vault: Vault; token?: string }> {
    const existing = fs.existsSync(dir) ? fs.readdirSync(dir) : undefined;
    if (existing?.includes('vault.json')) throw new VaultError('refused', `a vault already exists at ${dir}; use it, or choose another --vault directory`);
    if (existing !== undefined && existing.length > 0) throw new VaultError('refused', `${dir} is not empty; choose a new or empty directory for the vault`);
    await loadCrypto();
    const keys = generateKeyPair();
    const vaultId = randomBytes(16);
    const file: VaultFile = {
      format: 'sealvault-vault', version: FORMAT_VERSION, vault_id: toBase64(vaultId), public_key: toBase64(keys.publicKey), created: new Date().toISOString(),
    };
    const vault = new Vault(dir, file);
    let made: NewSlot | undefined;
    try {
      // the slot first: the keychain may refuse, and then nothing is on disk yet
      made = await createSlot(firstSlot, vaultId, keys.secretKey);
      const slot = made.slot;
      for (const sub of ['', 'slots', 'secrets', '.tmp']) fs.mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o700 });
      vault.write(() => {
        writeFileAtomic(vault.at('.tmp'), vault.at('.gitignore'), GITIGNORE, 0o644);
        writeFileAtomic(vault.at('.tmp'), vault.at('slots', `${slot.id}.json`), serialize(slot));
        writeFileAtomic(vault.at('.tmp'), vault.policyFile, serialize(sealPolicy(file.vault_id, keys.secretKey, { revision: 0, grants: [] })));
        const details = { vault_id: file.vault_id, fingerprint: vault.fingerprint, slot: slot.id, kind: slot.kind };
        vault.pendingWitness = appendAudit(vault.auditFile, nextAuditLink(vault.auditFile), 'init', details);
        // vault.json last: its presence is what makes the directory a vault
        writeFileAtomic(vault.at('.tmp'), vault.at('vault.json'), serialize(file), 0o644);
      });
    } catch (error) {
      // leave the directory as it was found (absent or empty), so that init can simply be run again
      if (existing === undefined) fs.rmSync(dir, { recursive: true, force: true });
      else for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir) : []) fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
      if (made?.slot.kind === 'keychain') await keychainDelete(made.slot.keychain.account);
      throw error;
    } finally {
      wipe(keys.secretKey);
    }
    vault.pin();
    vault.witnessHead();
    return { vault, token: made.token };
  }

  static open(dir: string, options: OpenOptions = {}): Vault {
    const file = path.join(dir, 'vault.json');
    const text = readFileIfExists(file);
    if (text === undefined) {
      throw new VaultError('notFound', fs.existsSync(dir)
        ? `${dir} holds no vault (no vault.json); create one with \`vault init\` or point --vault at an existing one`
        : `no vault at ${dir}; create one with \`vault init\` or point --vault (or VAULT_DIR) at an existing one`);
    }
    const vault = new Vault(dir, parseVaultFile(vaultFileSchema, 'sealvault-vault', text, file));
    if (options.checkPin !== false) checkPin(vault.pinFacts());
    return vault;
  }

  private pinFacts() {
    return { vaultId: this.file.vault_id, publicKey: this.file.public_key, fingerprint: this.fingerprint, realPath: this.realPath };
  }

  /** Pins this vault's public key for the current user (first use, or `vault trust`). */
  pin(): void {
    pinVault(this.pinFacts());
  }

  /** Runs a change under the vault's writer lock, after clearing what a dead writer left. */
  private write<T>(change: () => T): T {
    fs.mkdirSync(this.at('.tmp'), { recursive: true, mode: 0o700 });
    return withLock(this.at('.lock'), () => {
      sweepTemporaryFiles(this.at('.tmp'));
      return change();
    });
  }

  /** Records the entry this process appended as the user's audit witness. */
  private witnessHead(): void {
    if (this.pendingWitness !== undefined) recordAuditWitness(this.file.vault_id, this.pendingWitness);
    this.pendingWitness = undefined;
  }

  /** Runs a change under the lock and records its audit entry in the same critical section. */
  change<T>(work: () => T, describe: (result: T) => AuditRecord): T {
    const result = this.write(() => {
      const link = nextAuditLink(this.auditFile); // a damaged log refuses the change before it is made
      const value = work();
      const [event, details] = describe(value);
      this.pendingWitness = appendAudit(this.auditFile, link, event, details);
      return value;
    });
    this.witnessHead();
    return result;
  }

  /** Where the secret `name` lives; checks the name first. */
  secretFile(name: string): string {
    return this.at('secrets', `${checkSecretName(name)}.json`);
  }

  has(name: string): boolean {
    return fs.existsSync(this.secretFile(name));
  }

  /** Seals `value` under `name`. Needs no unlock. Replacing an existing secret must be asked for. */
  async put(name: string, value: Uint8Array, options: { replace: boolean }): Promise<'put' | 'replace'> {
    const file = this.secretFile(name);
    if (value.length === 0) throw new VaultError('badSecret', `the value for ${name} is empty; nothing was stored`);
    if (value.length > MAX_VALUE_BYTES) {
      throw new VaultError('badSecret', `the value for ${name} is ${value.length} bytes, over the limit of ${MAX_VALUE_BYTES} (1 MiB); nothing was stored`);
    }
    await loadCrypto();
    const sealed = toBase64(sealSecret(this.publicKey(), name, value));
    return this.change(() => {
      const previous = readFileIfExists(file);
      if (previous !== undefined && !options.replace) throw existsError(name);
      const now = new Date().toISOString();
      // --force also mends a damaged secret file: its old creation date is then unknown
      const created = previous === undefined ? now : (secretFileSchema.safeParse(jsonOrUndefined(previous)).data?.created ?? now);
      writeFileAtomic(this.at('.tmp'), file, serialize({ format: 'sealvault-secret', version: FORMAT_VERSION, created, updated: now, sealed }));
      return previous === undefined ? 'put' : 'replace';
    }, (event) => [event, { name }]);
  }

  remove(name: string): void {
    const file = this.secretFile(name);
    this.change(() => {
      if (!fs.existsSync(file)) throw new VaultError('notFound', `no secret named ${name}; \`vault list\` shows the names`);
      removeFileDurably(file);
    }, () => ['rm', { name }]);
  }

  /** The names of the stored secrets, from the directory listing alone. */
  names(): string[] {
    return fs
      .readdirSync(this.at('secrets'))
      .filter((entry) => SECRET_FILE.test(entry))
      .sort()
      .map((entry) => entry.slice(0, -'.json'.length));
  }

  list(): SecretInfo[] {
    return this.names().map((name) => {
      const file = this.secretFile(name);
      const secret = parseVaultFile(secretFileSchema, 'sealvault-secret', fs.readFileSync(file), file);
      const sealedBytes = Buffer.from(secret.sealed, 'base64').length;
      return { name, size: sealedBytes - SEAL_OVERHEAD - Buffer.byteLength(name) - 1, created: secret.created, updated: secret.updated };
    });
  }

  slots(): SlotFile[] {
    return readSlots(this.at('slots'));
  }

  readAudit(): AuditReading {
    return readAudit(this.auditFile, auditWitness(this.file.vault_id));
  }

  /** After a successful verification the user's witness moves to the newest entry. */
  acceptAuditHead(head: { seq: number; hash: string }): void {
    recordAuditWitness(this.file.vault_id, head);
  }

  async unlock(options: UnlockOptions = {}): Promise<UnlockedVault> {
    const slots = this.slots();
    if (slots.length === 0) throw new VaultError('noUnlock', `${this.at('slots')} holds no key slot, so nothing can unlock this vault; restore the slots from version control or a backup`);
    await loadCrypto();
    const { secretKey, slot } = await unlockPrivateKey(this.vaultId(), this.publicKey(), slots, options);
    return new UnlockedVault(this, { publicKey: this.publicKey(), secretKey }, slot);
  }

  /** Atomic write of a file below the vault; callers are inside change(). */
  writeVaultFile(relative: string, text: string): void {
    writeFileAtomic(this.at('.tmp'), this.at(relative), text);
  }
  /** Durable removal of a file below the vault; callers are inside change(). */
  removeVaultFile(relative: string): void {
    removeFileDurably(this.at(relative));
  }

  /** Re-pins the public key when `expected` is its fingerprint, checked out of band by the user. */
  trustFingerprint(expected: string): void {
    if (expected !== this.fingerprint) {
      throw new VaultError('tampered', `the vault's fingerprint is ${this.fingerprint}, not ${expected}; nothing was pinned`);
    }
    this.change(() => this.pin(), () => ['trust', { fingerprint: this.fingerprint, by: 'fingerprint' }]);
  }
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
  };
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

export class UnlockedVault {
  constructor(
    readonly vault: Vault,
    private readonly keys: KeyPair,
    /** The slot that opened the vault. */
    readonly openedWith: SlotFile,
  ) {}

  /** Wipes the private key; the object is useless afterwards. */
  close(): void {
    wipe(this.keys.secretKey);
  }

  async addSlot(request: SlotRequest): Promise<NewSlot> {
    const made = await createSlot(request, this.vault.vaultId(), this.keys.secretKey);
    this.vault.change(
      () => this.vault.writeVaultFile(path.join('slots', `${made.slot.id}.json`), serialize(made.slot)),
      () => ['key-add', { slot: made.slot.id, kind: made.slot.kind }],
    );
    return made;
  }

  async removeSlot(id: string): Promise<SlotFile> {
    checkSlotId(id);
    const removed = this.vault.change(() => {
      const slots = this.vault.slots();
      const slot = slots.find((s) => s.id === id);
      if (slot === undefined) throw new VaultError('notFound', `no key slot ${id}; \`vault key list\` shows the slots`);
      if (slots.length === 1) throw new VaultError('refused', `slot ${id} is the vault's last key slot; removing it would lock the vault for good. Add another slot first`);
      this.vault.removeVaultFile(path.join('slots', `${id}.json`));
      return slot;
    }, () => ['key-rm', { slot: id }]);
    if (removed.kind === 'keychain') {
      const failed = await keychainDelete(removed.keychain.account);
      if (failed !== undefined) process.emitWarning(`the keychain item of slot ${id} could not be deleted (${failed}); remove it with your keychain manager (service "sealvault", account ${removed.keychain.account})`);
    }
    return removed;
  }

  /** The verified policy; refuses one older than the newest this user has seen (a rollback). */
  policy(): Policy {
    const { policyFile, file } = this.vault;
    const policy = verifyPolicy(readFileIfExists(policyFile), policyFile, file.vault_id, this.keys.secretKey);
    const seen = policyRevisionSeen(file.vault_id);
    if (policy.revision < seen) {
      throw new VaultError(
        'tampered',
        `${policyFile} is at revision ${policy.revision}, but you have seen revision ${seen}: an older policy was put back, which can restore revoked grants; restore the newer policy.json from version control`,
      );
    }
    if (policy.revision > seen) recordPolicyRevision(file.vault_id, policy.revision);
    return policy;
  }

  private writePolicy(event: 'allow' | 'revoke', details: Record<string, unknown>, change: (grants: Grant[]) => Grant[]): Policy {
    return this.vault.change(() => {
      const current = this.policy();
      const next = { revision: current.revision + 1, grants: change(current.grants) };
      this.vault.writeVaultFile('policy.json', serialize(sealPolicy(this.vault.file.vault_id, this.keys.secretKey, next)));
      recordPolicyRevision(this.vault.file.vault_id, next.revision);
      return next;
    }, () => [event, details]);
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
    for (const name of names) if (!this.vault.has(name)) throw new VaultError('notFound', `no secret named ${name}; put it first, or check \`vault list\``);
    const created = new Date().toISOString();
    const fields = grantFields(request);
    const details = { secrets: names, path: binary.path, sha256: binary.sha256, min_tier: request.minTier, args, any_args: request.anyArgs, ...fields };
    return this.writePolicy('allow', details, (grants) => {
      const kept = grants.filter((g) => !names.some((secret) => sameGrantTarget(g, { secret, sha256: binary.sha256, args })));
      return [...kept, ...names.map((secret) => ({ secret, sha256: binary.sha256, path: binary.path, min_tier: request.minTier, args, created, ...fields }))];
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
    this.writePolicy('allow', { renewed: renewal.secrets, path: real, from: renewal.from, sha256: now.sha256 }, (grants) => [
      ...grants.filter((g) => g.path !== real),
      ...renewed.values(),
    ]);
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
    const before = this.policy().grants.filter(matches).length;
    if (before === 0) throw new VaultError('notFound', `no grant of ${names.join(', ')} to ${targetPath}; \`vault policy\` lists the grants`);
    const policy = this.writePolicy('revoke', { secrets: names, path: targetPath }, (grants) => grants.filter((g) => !matches(g)));
    return { policy, removed: before };
  }

  /** Opens the named secrets for `vault exec`; the caller wipes every value after hand-over. */
  openSecrets(names: string[]): Map<string, Uint8Array> {
    const values = new Map<string, Uint8Array>();
    try {
      for (const name of names) {
        const file = this.vault.secretFile(name);
        const text = readFileIfExists(file);
        if (text === undefined) throw new VaultError('notFound', `no secret named ${name}; \`vault list\` shows the names`);
        const secret = parseVaultFile(secretFileSchema, 'sealvault-secret', text, file);
        values.set(name, openSecret(this.keys, name, fromBase64(secret.sealed), file));
      }
      return values;
    } catch (error) {
      for (const value of values.values()) wipe(value);
      throw error;
    }
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
    for (const name of names) attempt(() => this.openSecrets([name]).forEach((value) => wipe(value)));
    const policy = attempt(() => this.policy());
    const audit = this.vault.readAudit();
    if (audit.broken !== undefined) {
      problems.push(new VaultError('tampered', `${this.vault.auditFile} line ${audit.broken.line}: ${audit.broken.reason}`));
    } else if (audit.head !== undefined) {
      this.vault.acceptAuditHead(audit.head);
    }
    const summary =
      `${names.length} secret(s) open under their own names, ` +
      `policy revision ${policy?.revision ?? '?'} with ${policy?.grants.length ?? '?'} grant(s) verified, ` +
      `audit chain of ${audit.entries.length} entries intact, ${this.vault.slots().length} key slot(s)`;
    return { problems, summary };
  }

  /** Re-pins this vault's public key; the unlock has just proved it belongs to the private key. */
  trust(): void {
    this.vault.change(() => this.vault.pin(), () => ['trust', { fingerprint: this.vault.fingerprint, by: 'unlock' }]);
  }
}
