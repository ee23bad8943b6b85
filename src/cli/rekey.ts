/**
 * `vault rekey`, and the rekey that `vault key rm` and `vault recipient rm` run by default: the
 * unlock keeps its KEK (the slot that unlocked is wrapped again under it), a progress bar on a
 * terminal while secrets are resealed, then what happened to every slot, and new tokens on stdout.
 */
import { SingleBar } from 'cli-progress';
import type { SlotFile } from '../vault/format.js';
import type { UnlockedVault } from '../vault/vault.js';
import type { RekeyStep } from '../vault/rekey.js';
import { isTestBuild } from './build-flags.js';
import { say } from './messages.js';

/** Secrets below this many reseal too fast for a progress bar to be worth drawing. */
const PROGRESS_FROM = 200;

export interface RekeyFlags {
  dropUnreachable?: boolean;
}

function named(slot: { id: string; kind: string; label?: string }): string {
  return `${slot.kind} slot ${slot.id}${slot.label !== undefined ? ` (${slot.label})` : ''}`;
}

/** Rekeys `vault`, removing the slots `remove` names; says what happened. New tokens go to stdout, one per line. */
export async function rekeyAndReport(vault: UnlockedVault, remove: SlotFile[], flags: RekeyFlags): Promise<void> {
  const bar = process.stderr.isTTY
    ? new SingleBar({ format: 'vault: resealing {bar} {value}/{total} secrets', stream: process.stderr,
      hideCursor: true })
    : undefined;
  let started = false;
  try {
    const result = await vault.rekey({
      remove: remove.map((slot) => slot.id),
      dropUnreachable: flags.dropUnreachable === true,
      // the test build dies at the step SEALVAULT_TEST_REKEY_CRASH names, as a SIGKILL there would
      ...(isTestBuild && process.env.SEALVAULT_TEST_REKEY_CRASH !== undefined
        ? { onStep: (step: RekeyStep) => crashAt(step) }
        : {}),
      onProgress: (done, total) => {
        if (bar === undefined || total < PROGRESS_FROM) return;
        if (!started) bar.start(total, 0);
        started = true;
        bar.update(done);
      },
    });
    if (started) bar?.stop();
    const { plan } = result;
    for (const slot of plan.removed) say(`removed ${named(slot)}`);
    for (const slot of plan.unreachable) say(`dropped ${named(slot)}: ${slot.why}`);
    if (remove.length > 0) {
      // a person being removed held the key, and could have made slots of their own: show what stays
      const recorded = recordedSlots(vault);
      for (const slot of plan.carried) {
        const recipient = slot.kind === 'recipient' ? ` ${slot.recipient.age_recipient}` : '';
        const unrecorded = recorded.has(slot.id) ? '' : ' (no audit entry added it: check that you know it)';
        say(`kept ${named(slot)}${recipient}${unrecorded}`);
      }
    }
    say(
      `rekeyed: a new key pair (fingerprint ${result.fingerprint}), ${result.secrets} secret(s) resealed, ` +
        `${plan.carried.length} slot(s) wrapped again; tell the people who use this vault the new fingerprint ` +
        '(they run `vault trust --fingerprint` with it after they pull)',
    );
    if (plan.removed.length > 0 || plan.unreachable.length > 0) {
      say(
        'vault: the values were not changed: what a removed slot could open before, its holder may have copied; ' +
          '`vault list --stale` names them, rotate them where they are issued',
      );
    }
    if (plan.reissued.length > 0) {
      const ids = plan.reissued.map((r) => r.slot.id).join(', ');
      say(`the token(s) below replace those of ${ids} and are shown only once: update the CI secrets that hold them`);
      for (const { slot, token } of plan.reissued) process.stdout.write(`${slot.id} ${token}\n`);
    }
  } finally {
    if (started) bar?.stop();
  }
}

/** The test build's stop: SIGKILL, as a crash there would be, at the step SEALVAULT_TEST_REKEY_CRASH names. */
function crashAt(step: RekeyStep): void {
  if (step === process.env.SEALVAULT_TEST_REKEY_CRASH) process.kill(process.pid, 'SIGKILL');
}

/** The slots the audit log says were added (`init`, `key-add`), by id. */
function recordedSlots(vault: UnlockedVault): Set<string> {
  const ids = new Set<string>();
  for (const entry of vault.vault.readAudit().entries.values()) {
    const added = entry.event === 'init' || entry.event === 'key-add';
    if (added && typeof entry.details.slot === 'string') ids.add(entry.details.slot);
  }
  return ids;
}

/** The warning of a removal without a rekey (`--no-rekey`, or `vault key rm` of sealvault 0.1). */
export const NO_REKEY_WARNING =
  'vault: warning: not rekeyed (--no-rekey): the vault keeps its key pair, so a copy of the removed slot (from ' +
  'version control or a backup) with its token, passphrase or identity still opens every secret, also those put ' +
  'later; run `vault rekey`';
