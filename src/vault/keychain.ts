/**
 * The OS keychain (the freedesktop Secret Service, through keytar). keytar is loaded only when a
 * keychain slot is used. No D-Bus session, or a Secret Service that does not answer, means
 * "no keychain here", never a crash.
 */
import { createRequire } from 'node:module';
import { VaultError } from './errors.js';

export const KEYCHAIN_SERVICE = 'sealvault';
const ANSWER_WITHIN_MS = 5000;

interface Keytar {
  getPassword(service: string, account: string): Promise<string | null>;
  setPassword(service: string, account: string, password: string): Promise<void>;
  deletePassword(service: string, account: string): Promise<boolean>;
}

let keytar: Keytar | undefined;

function loadKeytar(): Keytar {
  if (keytar === undefined) keytar = createRequire(import.meta.url)('keytar') as Keytar;
  return keytar;
}

function withDeadline<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the Secret Service did not answer within ${ANSWER_WITHIN_MS / 1000}s`)), ANSWER_WITHIN_MS);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? 'unknown error';
}

/** Why there is no keychain here, or undefined when the Secret Service answers. */
export async function keychainUnavailableReason(): Promise<string | undefined> {
  if (process.env.DBUS_SESSION_BUS_ADDRESS === undefined && process.env.DISPLAY === undefined) {
    return 'no D-Bus session (DBUS_SESSION_BUS_ADDRESS is not set)';
  }
  try {
    await withDeadline(loadKeytar().getPassword(KEYCHAIN_SERVICE, 'probe'));
    return undefined;
  } catch (error) {
    return firstLine(error);
  }
}

export type KeychainRead = { found: true; value: string } | { found: false; reason: string };

export async function keychainRead(account: string): Promise<KeychainRead> {
  const unavailable = await keychainUnavailableReason();
  if (unavailable !== undefined) return { found: false, reason: unavailable };
  try {
    const value = await withDeadline(loadKeytar().getPassword(KEYCHAIN_SERVICE, account));
    return value === null ? { found: false, reason: 'no item for this vault in the keychain of this user' } : { found: true, value };
  } catch (error) {
    return { found: false, reason: firstLine(error) };
  }
}

export async function keychainWrite(account: string, value: string): Promise<void> {
  const unavailable = await keychainUnavailableReason();
  if (unavailable !== undefined) {
    throw new VaultError('refused', `cannot use the OS keychain: ${unavailable}; use --passphrase or --token instead`);
  }
  try {
    await withDeadline(loadKeytar().setPassword(KEYCHAIN_SERVICE, account, value));
  } catch (error) {
    throw new VaultError('refused', `the OS keychain refused to store the key: ${firstLine(error)}; use --passphrase or --token instead`);
  }
}

/** Returns a reason when the item could not be deleted; deleting is best effort. */
export async function keychainDelete(account: string): Promise<string | undefined> {
  const unavailable = await keychainUnavailableReason();
  if (unavailable !== undefined) return unavailable;
  try {
    await withDeadline(loadKeytar().deletePassword(KEYCHAIN_SERVICE, account));
    return undefined;
  } catch (error) {
    return firstLine(error);
  }
}
