import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VaultError } from './errors.js';

/** The *at() system calls (openat(2), mkdirat(2), unlinkat(2), renameat(2)); errors carry code, syscall and path like Node's. */
export interface NativeAddon {
  openAt(dirfd: number, name: string, flags: number, mode: number): number;
  mkdirAt(dirfd: number, name: string, mode: number): void;
  unlinkAt(dirfd: number, name: string, flags: number): void;
  renameAt(oldDirfd: number, oldName: string, newDirfd: number, newName: string): void;
  /** Entry names of an open directory, without . and .. */
  listDir(dirfd: number): string[];
  tryLockExclusive(fd: number): boolean;
  hardenProcess(): void;
  isDumpable(): boolean;
  /** A sealed memfd (close-on-exec, at offset 0) with the bytes of the regular file `fd`. */
  sealedCopy(fd: number, name: string): number;
  /** tcgetattr(fd), as opaque bytes for setTerminalModes. */
  terminalModes(fd: number): Buffer;
  /** tcsetattr(fd, TCSADRAIN, modes). */
  setTerminalModes(fd: number, modes: Buffer): void;
  /** getsockopt(SO_PEERCRED) of a connected unix socket (unix(7)). */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /** A close-on-exec copy of `fd` numbered `lowest` or more (fcntl(2) F_DUPFD_CLOEXEC). */
  dupAbove(fd: number, lowest: number): number;
  /** Whether fds a and b are one open file description (kcmp(2) KCMP_FILE); null where the kernel will not say. */
  sameOpenFile(a: number, b: number): boolean | null;
  /** fcntl(2) F_GETFL of fd, and its offset (lseek(2) SEEK_CUR), -1 where it has none (a pipe, a terminal). */
  openFileState(fd: number): { flags: number; offset: number };
  /** sendmsg(2): all of `data` with `fds` attached to its first byte (SCM_RIGHTS); waits up to timeoutMs while the socket is full. */
  sendWithFds(fd: number, data: Buffer, fds: number[], timeoutMs: number): void;
  /** One frame (4-byte big-endian length, then that many bytes) and the fds that came with it, on a worker thread. */
  recvRequest(fd: number, maxBytes: number, maxFds: number, timeoutMs: number): Promise<{ data: Buffer; fds: number[] }>;
  closeFd(fd: number): void;
  /** setsid(2), and /dev/null over fds 0-2, terminals and inherited fds but `keep`: the agent leaves whoever started it. */
  detach(keep: number[]): void;
  /** libsodium (the system's, native/sodium_binding.cc); a function of libsodium's name for each. */
  sodium: NativeSodium;
}

/**
 * The libsodium calls of docs/FORMAT.md, initialised (sodium_init) when the addon loads. Keys are 32
 * bytes, nonces 24; a wrong size or type throws a TypeError or RangeError. What does not open or
 * verify returns null, never a partial result.
 */
export interface NativeSodium {
  randomBytes(length: number): Uint8Array;
  boxKeypair(): { publicKey: Uint8Array; secretKey: Uint8Array };
  scalarmultBase(secretKey: Uint8Array): Uint8Array;
  /** crypto_box_seal: the message length plus 48 bytes. */
  boxSeal(message: Uint8Array, publicKey: Uint8Array): Uint8Array;
  boxSealOpen(sealed: Uint8Array, publicKey: Uint8Array, secretKey: Uint8Array): Uint8Array | null;
  /** crypto_aead_xchacha20poly1305_ietf_encrypt: the message length plus a 16-byte tag. */
  aeadXChaCha20Poly1305Encrypt(message: Uint8Array, additionalData: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array;
  aeadXChaCha20Poly1305Decrypt(ciphertext: Uint8Array, additionalData: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array | null;
  /** crypto_generichash (BLAKE2b), `length` 16–64 bytes, keyed when `key` (16–64 bytes) is given. */
  genericHash(length: number, message: Uint8Array, key: Uint8Array | null): Uint8Array;
  /**
   * crypto_pwhash with ALG_ARGON2ID13; opslimit passes, memlimit bytes (libsodium's bounds). Slow by
   * design, so it runs on libuv's thread pool; bad arguments throw at once, libsodium's refusal rejects.
   */
  pwhashArgon2id(length: number, passphrase: Uint8Array, salt: Uint8Array, opslimit: number, memlimit: number): Promise<Uint8Array>;
  /** sodium_memcmp: equal, in time independent of where they differ; different lengths are unequal. */
  memcmp(a: Uint8Array, b: Uint8Array): boolean;
  /** crypto_hash_sha256: 32 bytes. */
  sha256(message: Uint8Array): Uint8Array;
  /** SHA-256 of the file open at `fd`, read with pread(2) from offset 0 to its end; a failed read throws (errno, syscall). */
  sha256Fd(fd: number): Uint8Array;
  /** sodium_version_string(), e.g. "1.0.18". */
  version: string;
}

let addon: NativeAddon | undefined;

const ADDON = 'sealvault_native.node';

/** The package root (the directory with package.json): from src/ in tests, dist/ or dist/test/ once bundled. */
export function packageRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let level = 0; level < 4; level += 1) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return undefined;
}

/** A file `npm install` built (binding.gyp) into build/Release, or undefined when it is not there. */
export function findBuildArtifact(name: string): string | undefined {
  const root = packageRoot();
  const candidate = root === undefined ? undefined : path.join(root, 'build', 'Release', name);
  return candidate !== undefined && fs.existsSync(candidate) ? candidate : undefined;
}

export function native(): NativeAddon {
  if (addon === undefined) {
    const file = findBuildArtifact(ADDON);
    if (file === undefined) throw new VaultError('internal', `the native addon (build/Release/${ADDON}) is not built: run \`npm run build\``);
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  }
  return addon;
}
