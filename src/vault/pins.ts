/**
 * Per-user trust state outside every vault, in the spirit of ssh's known_hosts: the public key
 * pinned on first use for each vault id, the paths the vault was seen at, and the audit witness
 * (the newest audit entry this user wrote or verified), which exposes a truncated or rewritten log,
 * the revocations this user has seen, which expose a revoked grant or slot put back, the keys a
 * rekey retired, and the slot that opened the vault last, tried first next time. docs/FORMAT.md,
 * "known_vaults.json".
 */
import * as z from 'zod/mini';
import type { AuditHead } from './audit.js';
import { VaultError } from './errors.js';
import { jsonOrUndefined, SLOT_ID_PATTERN } from './format.js';
import { stateDirectory } from './paths.js';
import { VaultDir } from './vault-dir.js';

const STATE_FILE = 'known_vaults.json';

const stateSchema = z.strictObject({
  version: z.literal(1),
  vaults: z.record(
    z.string(),
    z.strictObject({
      public_key: z.string(),
      paths: z.array(z.string()),
      audit: z.nullable(z.strictObject({ seq: z.int().check(z.gte(1)), hash: z.string(), offset: z.optional(z.int().check(z.gte(0))) })),
      policy_revision: z.int().check(z.gte(0)),
      last_slot: z.optional(z.string().check(z.regex(SLOT_ID_PATTERN))),
      /** Revocations this user saw in an authentic policy (policy.ts revocationKey): never to come back. */
      revoked: z.optional(z.array(z.string())),
      /**
       * Public keys this vault had before a rekey this user made or followed: a checkout that still
       * has one is older.
       */
      retired_keys: z.optional(z.array(z.string())),
      /** The new public key of a rekey this user has begun: accepted (and pinned) when the vault has it. */
      pending_key: z.optional(z.string()),
    }),
  ),
});
type State = z.infer<typeof stateSchema>;
export type Pin = State['vaults'][string];

/** Runs `work` with the state directory open (made 0700 when `create`); undefined when it does not exist. */
function withStateDirectory<T>(work: (dir: VaultDir | undefined) => T, create = false): T {
  const dir = VaultDir.open(stateDirectory(), { create });
  try {
    return work(dir);
  } finally {
    dir?.close();
  }
}

function parseState(dir: VaultDir | undefined): State {
  const text = dir?.read(STATE_FILE, 'state');
  if (text === undefined) return { version: 1, vaults: {} };
  const parsed = stateSchema.safeParse(jsonOrUndefined(text));
  if (!parsed.success) {
    throw new VaultError('corrupt', `${dir?.at(STATE_FILE)} is damaged; restore it from a backup, or delete it to pin every vault anew on next use`);
  }
  return parsed.data;
}

/**
 * The agent's copy of the state, read once at its start: from then on its pins, policy revision
 * and audit witness are what it saw and wrote itself, whatever a process of the same user writes
 * into known_vaults.json later (that file is only written through, for the commands run directly).
 */
let held: State | undefined;

/** Keeps the trust state in this process's memory from now on (the agent; see `held`). */
export function holdTrustStateInMemory(): void {
  held = structuredClone(withStateDirectory(parseState));
}

function readState(): State {
  return held ?? withStateDirectory(parseState);
}

function updateState(change: (state: State) => void): void {
  if (held !== undefined) change(held);
  withStateDirectory((dir) => {
    if (dir === undefined) throw new VaultError('internal', `cannot create ${stateDirectory()}`);
    dir.withLock('known_vaults.lock', () => {
      const state = parseState(dir);
      const before = JSON.stringify(state);
      change(state);
      // the temporary file beside the state: this directory is the user's, never swept
      if (JSON.stringify(state) !== before) dir.writeAtomic(dir, STATE_FILE, `${JSON.stringify(state, null, 2)}\n`);
    });
  }, true);
}

export interface PinCheck {
  vaultId: string;
  publicKey: string;
  fingerprint: string;
  realPath: string;
}

/**
 * Refuses a vault whose public key differs from the one pinned for its id, or that appears at a
 * pinned path under another id; pins it when neither is known yet. Returns true when this user had
 * never seen the vault (trust on first use: the caller may say so).
 */
export function checkPin(vault: PinCheck): boolean {
  const state = readState();
  const pin = state.vaults[vault.vaultId];
  const howToRepin =
    `check the fingerprint ${vault.fingerprint} with the vault's owner, then run \`vault trust --fingerprint ${vault.fingerprint}\` ` +
    '(or `vault trust` if you can unlock it with a token, passphrase or keychain slot)';
  if (pin !== undefined && pin.public_key !== vault.publicKey && pin.pending_key === vault.publicKey) {
    // this user's own rekey, killed after its commit and before it moved the pin
    followRekey(vault.vaultId, pin.public_key, vault.publicKey);
  } else if (pin !== undefined && pin.public_key !== vault.publicKey) {
    if (pin.retired_keys?.includes(vault.publicKey) === true) {
      throw new VaultError(
        'tampered',
        `the vault at ${vault.realPath} still has the key pair its rekey retired ` +
          `(fingerprint ${vault.fingerprint}): this is an older copy (a branch or backup from before someone ` +
          'was removed), and whoever was removed can still open it; merge or check out the branch with the rekey ' +
          '(docs/team.md)',
      );
    }
    throw new VaultError(
      'tampered',
      `the public key of the vault at ${vault.realPath} changed since you pinned it: ` +
        'a put now could be read by whoever changed it ' +
        `(if a teammate rekeyed it after removing someone, they can tell you its new fingerprint); ${howToRepin}`,
    );
  }
  const other = Object.entries(state.vaults).find(([id, p]) => id !== vault.vaultId && p.paths.includes(vault.realPath));
  if (other !== undefined) {
    throw new VaultError(
      'tampered',
      `the vault at ${vault.realPath} is not the one you pinned there (its vault id changed): it was re-created or replaced; ${howToRepin}`,
    );
  }
  if (pin === undefined || !pin.paths.includes(vault.realPath)) pinVault(vault);
  return pin === undefined;
}

/** Pins `vault` at its path, replacing any earlier pin for that id or that path. */
export function pinVault(vault: PinCheck): void {
  updateState((state) => {
    for (const [id, p] of Object.entries(state.vaults)) {
      if (id !== vault.vaultId) p.paths = p.paths.filter((known) => known !== vault.realPath);
    }
    const pin = state.vaults[vault.vaultId];
    if (pin !== undefined && pin.public_key === vault.publicKey) {
      if (!pin.paths.includes(vault.realPath)) pin.paths.push(vault.realPath);
    } else {
      // a re-pin (vault trust): the old key is retired, and the revocations seen still hold
      const retired =
        pin === undefined
          ? []
          : [...new Set([...(pin.retired_keys ?? []), pin.public_key])].filter((k) => k !== vault.publicKey);
      state.vaults[vault.vaultId] = {
        public_key: vault.publicKey, paths: [vault.realPath], audit: null, policy_revision: 0,
        ...(pin?.revoked !== undefined ? { revoked: pin.revoked } : {}),
        ...(retired.length > 0 ? { retired_keys: retired } : {}),
      };
    }
  });
}

export function auditWitness(vaultId: string): AuditHead | undefined {
  return readState().vaults[vaultId]?.audit ?? undefined;
}

/** Moves the witness forward, never back: concurrent writers may report out of order. */
export function recordAuditWitness(vaultId: string, head: AuditHead): void {
  updateState((state) => {
    const pin = state.vaults[vaultId];
    if (pin !== undefined && (pin.audit === null || head.seq > pin.audit.seq)) pin.audit = head;
  });
}

/** Sets the witness to `head`, also backwards or to none: only for `vault audit --accept`, which sets the log aside. */
export function replaceAuditWitness(vaultId: string, head: AuditHead | null): void {
  updateState((state) => {
    const pin = state.vaults[vaultId];
    if (pin !== undefined) pin.audit = head;
  });
}

export function recordPolicyRevision(vaultId: string, revision: number): void {
  updateState((state) => {
    const pin = state.vaults[vaultId];
    if (pin !== undefined && revision > pin.policy_revision) pin.policy_revision = revision;
  });
}

/** What this user remembers of the policies of `vaultId`, from one read of the state: revocations and highest revision. */
export function policySeen(vaultId: string): { revoked: Set<string>; revision: number } {
  const pin = readState().vaults[vaultId];
  return { revoked: new Set(pin?.revoked ?? []), revision: pin?.policy_revision ?? 0 };
}

/** Revocations (policy.ts revocationKey) this user has seen in an authentic policy of `vaultId`. */
export function revocationsSeen(vaultId: string): Set<string> {
  return new Set(readState().vaults[vaultId]?.revoked ?? []);
}

/** Adds `keys` to the revocations remembered for `vaultId`; never forgets one. */
export function recordRevocations(vaultId: string, keys: string[]): void {
  updateState((state) => {
    const pin = state.vaults[vaultId];
    if (pin === undefined) return;
    const known = new Set(pin.revoked ?? []);
    const added = keys.filter((key) => !known.has(key));
    if (added.length > 0) pin.revoked = [...(pin.revoked ?? []), ...added];
  });
}

/**
 * After this user's rekey: the pin moves to `publicKey`, keeping the record (witness, revocations),
 * and the old key is remembered as retired, so that an older checkout is named as one.
 */
export function followRekey(vaultId: string, oldPublicKey: string, publicKey: string): void {
  updateState((state) => {
    const pin = state.vaults[vaultId];
    if (pin === undefined || pin.public_key !== oldPublicKey) return;
    pin.retired_keys = [...new Set([...(pin.retired_keys ?? []), oldPublicKey])];
    pin.public_key = publicKey;
    delete pin.pending_key;
  });
}

/** Whether `publicKey` is the new key of a rekey this user began and has not finished (a journal they may apply). */
export function isPendingKey(publicKey: string): boolean {
  return Object.values(readState().vaults).some((pin) => pin.pending_key === publicKey);
}

/** Before a rekey commits: its new key is this user's to accept, whenever the vault turns out to have it. */
export function expectRekey(vaultId: string, publicKey: string): void {
  updateState((state) => {
    const pin = state.vaults[vaultId];
    if (pin !== undefined) pin.pending_key = publicKey;
  });
}

/** The id of the slot that opened `vaultId` last for this user, if any. */
export function lastOpenedSlot(vaultId: string): string | undefined {
  return readState().vaults[vaultId]?.last_slot;
}

export function recordOpenedSlot(vaultId: string, slotId: string): void {
  updateState((state) => {
    const pin = state.vaults[vaultId];
    if (pin !== undefined) pin.last_slot = slotId;
  });
}
