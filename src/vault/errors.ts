/**
 * Every failure a user can cause or meet ends as one VaultError: one line that says what is wrong
 * and what to do, and an exit code that tells scripts which kind of failure it was.
 */
export const EXIT_CODES = {
  /** A system call failed (the message names it, e.g. permissions), or something sealvault did not expect. */
  internal: 1,
  /** Bad flags, names, values or environment. */
  usage: 2,
  /** No vault, secret, slot or grant where one was named. */
  notFound: 3,
  /** A vault file is not valid JSON, truncated, or does not follow docs/FORMAT.md. */
  corrupt: 4,
  /** A file that is not a sealvault file where one was expected. */
  foreign: 5,
  /** A file written by a newer version of sealvault. */
  futureVersion: 6,
  /** A token, passphrase or keychain key that opens no slot. */
  wrongKey: 7,
  /** No way to unlock was available (no token, no keychain item, no passphrase, no terminal). */
  noUnlock: 8,
  /** Authenticated data failed to verify, or the public key changed: someone edited the vault. */
  tampered: 9,
  /** Another writer held the vault's lock for too long. */
  busy: 10,
  /** The request is understood but refused on purpose (last slot, interpreter grant, overwrite). */
  refused: 11,
  /** A secret's name or value is refused. */
  badSecret: 12,
  /** A path of the vault's layout is a symlink, FIFO, device or directory, or over its size cap. */
  unsafeFile: 13,
  /** The person pressed Ctrl-C at a prompt: 128 + SIGINT, as a shell reports a command that SIGINT ended. */
  interrupted: 130,
} as const;

export type FailureKind = keyof typeof EXIT_CODES;

export class VaultError extends Error {
  readonly kind: FailureKind;

  constructor(kind: FailureKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'VaultError';
    this.kind = kind;
  }

  get exitCode(): number {
    return EXIT_CODES[this.kind];
  }
}
