/**
 * The cryptography of docs/FORMAT.md, and nothing else: libsodium, the system's, through the native
 * addon (native/sodium_binding.cc). It was libsodium's WebAssembly build (libsodium-wrappers) until
 * that alone cost a `vault exec` about 25 ms and 10 MiB of every start (docs/performance.md); the
 * constructions and bytes are the same, which test/format-vectors.test.ts checks against that build.
 */
import { VaultError } from './errors.js';
import { native, type NativeSodium } from './native.js';

/** libsodium, initialised when the addon loaded (native() loads it once). */
function sodium(): NativeSodium {
  return native().sodium;
}


export const SEAL_OVERHEAD = 48; // crypto_box_SEALBYTES
const encoder = new TextEncoder();

export function randomBytes(length: number): Uint8Array {
  return sodium().randomBytes(length);
}

/** Overwrites key material and plaintext once it is no longer needed. */
export function wipe(...buffers: (Uint8Array | undefined)[]): void {
  for (const buffer of buffers) if (buffer !== undefined) buffer.fill(0);
}

export interface KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export function generateKeyPair(): KeyPair {
  return sodium().boxKeypair();
}

export function publicKeyMatches(secretKey: Uint8Array, publicKey: Uint8Array): boolean {
  const derived = sodium().scalarmultBase(secretKey);
  return sodium().memcmp(derived, publicKey);
}

/**
 * The byte between NAME and the value of a sealed message (docs/FORMAT.md, "Secrets"): 0x00 for a
 * secret, 0x01 for a configuration value, which `vault exec` never masks. Sealed with the value, the
 * kind is chosen by whoever chose the value: a writer without the key cannot unmask a secret.
 */
const KIND_BYTE = { secret: 0x00, config: 0x01 } as const;

/** `crypto_box_seal(NAME ‖ KIND ‖ value)`: the name and the kind are bound to the ciphertext. */
export function sealSecret(publicKey: Uint8Array, name: string, value: Uint8Array, config = false): Uint8Array {
  const nameBytes = encoder.encode(name);
  const message = new Uint8Array(nameBytes.length + 1 + value.length);
  message.set(nameBytes, 0);
  message[nameBytes.length] = config ? KIND_BYTE.config : KIND_BYTE.secret;
  message.set(value, nameBytes.length + 1);
  try {
    return sodium().boxSeal(message, publicKey);
  } finally {
    wipe(message);
  }
}

/** An opened value and its sealed kind (sealSecret). */
export interface OpenedSecret {
  value: Uint8Array;
  /** Sealed as a configuration value (kind byte 0x01). */
  config: boolean;
}

/**
 * Opens a sealed value, checks its name and reads its kind. Errors: tampered (9) when the box does
 * not open, the name is another, or the kind byte is neither 0x00 nor 0x01. The caller wipes `value`.
 */
export function openSecretAndKind(keys: KeyPair, name: string, sealed: Uint8Array, file: string): OpenedSecret {
  const message = sodium().boxSealOpen(sealed, keys.publicKey, keys.secretKey);
  if (message === null) {
    throw new VaultError(
      'tampered',
      `${file} does not open with this vault's key: it was damaged or replaced, or put on a branch from before ` +
        'a rekey (sealed to the old key); restore it or put the secret again',
    );
  }
  const nameBytes = encoder.encode(name);
  const kind = message[nameBytes.length];
  const boundName = message.length > nameBytes.length && (kind === KIND_BYTE.secret || kind === KIND_BYTE.config) &&
    sodium().memcmp(message.subarray(0, nameBytes.length), nameBytes);
  if (!boundName) {
    wipe(message);
    throw new VaultError('tampered', `${file} holds a value sealed under another name: someone moved a ciphertext; put ${name} again`);
  }
  const value = message.slice(nameBytes.length + 1);
  wipe(message);
  return { value, config: kind === KIND_BYTE.config };
}

export function slotAad(vaultId: Uint8Array, slotId: string, kind: string): Uint8Array {
  const head = encoder.encode('sealvault-slot/1\0');
  const tail = encoder.encode(`${slotId}\0${kind}`);
  const aad = new Uint8Array(head.length + vaultId.length + tail.length);
  aad.set(head, 0);
  aad.set(vaultId, head.length);
  aad.set(tail, head.length + vaultId.length);
  return aad;
}

export function wrapKey(kek: Uint8Array, secretKey: Uint8Array, aad: Uint8Array): { nonce: Uint8Array; wrapped: Uint8Array } {
  const nonce = randomBytes(24);
  const wrapped = sodium().aeadXChaCha20Poly1305Encrypt(secretKey, aad, nonce, kek);
  return { nonce, wrapped };
}

/**
 * Returns the private key, or undefined when `kek` is not this slot's key, of whatever length: a
 * keychain item is written by any process of the user, and a wrong one must let the next slot try.
 */
export function unwrapKey(kek: Uint8Array, nonce: Uint8Array, wrapped: Uint8Array, aad: Uint8Array): Uint8Array | undefined {
  if (kek.length !== 32 || nonce.length !== 24) return undefined;
  return sodium().aeadXChaCha20Poly1305Decrypt(wrapped, aad, nonce, kek) ?? undefined;
}

/**
 * BLAKE2b-256 keyed with a key derived from `sk` for one purpose (`context`, e.g.
 * "sealvault-policy-key/1"), over `canonical`: docs/FORMAT.md, "The MAC" and "Slot MAC".
 */
function keyedMac(secretKey: Uint8Array, context: string, canonical: string): Uint8Array {
  const key = sodium().genericHash(32, encoder.encode(context), secretKey);
  try {
    return sodium().genericHash(32, encoder.encode(canonical), key);
  } finally {
    wipe(key);
  }
}

/** The policy's MAC over its canonical bytes (docs/FORMAT.md, "The MAC"). */
export function policyMac(secretKey: Uint8Array, canonical: string): Uint8Array {
  return keyedMac(secretKey, 'sealvault-policy-key/1', canonical);
}

/** A slot's MAC over its canonical bytes without `mac` (docs/FORMAT.md, "Slot MAC"). */
export function slotMac(secretKey: Uint8Array, canonical: string): Uint8Array {
  return keyedMac(secretKey, 'sealvault-slot-key/1', canonical);
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return sodium().memcmp(a, b);
}

export const KDF_RELEASE = { opslimit: 3, memlimit: 268435456 } as const;
export const KDF_TEST_ONLY = { opslimit: 1, memlimit: 8192 } as const;

/** argon2id (crypto_pwhash, ALG_ARGON2ID13): 32 bytes; opslimit passes, memlimit bytes; off the main thread. */
export function keyFromPassphrase(passphrase: Uint8Array, salt: Uint8Array, opslimit: number, memlimit: number): Promise<Uint8Array> {
  return sodium().pwhashArgon2id(32, passphrase, salt, opslimit, memlimit);
}

/** What people compare out of band: `svfp1_` and 20 bytes of SHA-256(public key), hex. */
export function fingerprint(publicKey: Uint8Array): string {
  return `svfp1_${sha256Hex(publicKey).slice(0, 40)}`;
}

/** SHA-256, hex; a string is hashed as UTF-8. */
export function sha256Hex(data: Uint8Array | string): string {
  return toHex(sodium().sha256(typeof data === 'string' ? encoder.encode(data) : data));
}

/** SHA-256 of the file open at `fd`, hex, from offset 0 to its end (pread(2): the fd's offset stays). */
export function sha256OfFd(fd: number): string {
  return toHex(sodium().sha256Fd(fd));
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Bytes in memory of their own, for keys: V8 keeps a typed array of up to 64 bytes inside its heap
 * and moves it out when native code first uses it, leaving the old bytes behind where wipe() cannot
 * reach them (the review of 2026-11-30 found a token's KEK twice in a process). An ArrayBuffer's
 * memory is outside the heap from the start.
 */
function offHeapCopy(bytes: Uint8Array): Uint8Array {
  const copy = new Uint8Array(new ArrayBuffer(bytes.length));
  copy.set(bytes);
  return copy;
}

/**
 * The decoded bytes, off V8's heap (offHeapCopy), with Buffer's decoding buffer wiped. Callers pass
 * only strings a schema or pattern has already checked to be base64 (or base64url) of the right length.
 */
export function fromBase64(text: string, encoding: 'base64' | 'base64url' = 'base64'): Uint8Array {
  const decoded = Buffer.from(text, encoding);
  try {
    return offHeapCopy(decoded);
  } finally {
    decoded.fill(0);
  }
}
