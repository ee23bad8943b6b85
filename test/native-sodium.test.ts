/**
 * The native addon's libsodium (native/sodium_binding.cc, the system's libsodium) against libsodium's
 * WebAssembly build (libsodium-wrappers-sumo), which sealvault used before: what one seals the other
 * opens, hashes and derived keys are equal byte for byte, and bad arguments throw instead of reading
 * past a buffer. The golden vault (format-vectors.test.ts), written with the WebAssembly build, is
 * opened by the CLI with the native one.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import wasm from 'libsodium-wrappers-sumo';
import { spawn } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { findBuildArtifact, native, type NativeSodium } from '../src/vault/native.js';

let sodium: NativeSodium;
beforeAll(async () => {
  await wasm.ready;
  sodium = native().sodium;
});

const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
const key32 = bytes(32, 32);

describe('native libsodium equals libsodium-wrappers', () => {
  it('crypto_box_seal: each opens what the other sealed; the public key derives alike', () => {
    fc.assert(fc.property(bytes(0, 300), (message) => {
      const pair = sodium.boxKeypair();
      expect(sodium.scalarmultBase(pair.secretKey)).toEqual(wasm.crypto_scalarmult_base(pair.secretKey));
      const sealed = sodium.boxSeal(message, pair.publicKey);
      expect(sealed.length).toBe(message.length + 48);
      expect(wasm.crypto_box_seal_open(sealed, pair.publicKey, pair.secretKey)).toEqual(message);
      const theirs = wasm.crypto_box_seal(message, pair.publicKey);
      expect(sodium.boxSealOpen(theirs, pair.publicKey, pair.secretKey)).toEqual(message);
    }), { numRuns: 50 });
  });

  it('crypto_box_seal_open: a changed byte, a short input or another key gives null', () => {
    const pair = sodium.boxKeypair();
    const sealed = sodium.boxSeal(new Uint8Array([1, 2, 3]), pair.publicKey);
    const changed = sealed.slice();
    changed[changed.length - 1]! ^= 1;
    expect(sodium.boxSealOpen(changed, pair.publicKey, pair.secretKey)).toBeNull();
    expect(sodium.boxSealOpen(sealed.subarray(0, 47), pair.publicKey, pair.secretKey)).toBeNull();
    const other = sodium.boxKeypair();
    expect(sodium.boxSealOpen(sealed, other.publicKey, other.secretKey)).toBeNull();
  });

  it('XChaCha20-Poly1305: the same ciphertext; a wrong key, nonce or additional data gives null', () => {
    fc.assert(fc.property(bytes(0, 200), bytes(0, 64), bytes(24, 24), key32, (message, ad, nonce, key) => {
      const mine = sodium.aeadXChaCha20Poly1305Encrypt(message, ad, nonce, key);
      expect(mine).toEqual(wasm.crypto_aead_xchacha20poly1305_ietf_encrypt(message, ad, null, nonce, key));
      expect(sodium.aeadXChaCha20Poly1305Decrypt(mine, ad, nonce, key)).toEqual(message);
      const otherKey = key.slice();
      otherKey[0]! ^= 1;
      expect(sodium.aeadXChaCha20Poly1305Decrypt(mine, ad, nonce, otherKey)).toBeNull();
      expect(sodium.aeadXChaCha20Poly1305Decrypt(mine, new Uint8Array([...ad, 0]), nonce, key)).toBeNull();
    }), { numRuns: 50 });
    expect(sodium.aeadXChaCha20Poly1305Decrypt(new Uint8Array(15), new Uint8Array(0), new Uint8Array(24), new Uint8Array(32))).toBeNull();
  });

  it('BLAKE2b (crypto_generichash), keyed and not; SHA-256 as node:crypto computes it', () => {
    fc.assert(fc.property(bytes(0, 300), bytes(16, 64), fc.integer({ min: 16, max: 64 }), (message, key, length) => {
      expect(sodium.genericHash(length, message, key)).toEqual(wasm.crypto_generichash(length, message, key));
      expect(sodium.genericHash(length, message, null)).toEqual(wasm.crypto_generichash(length, message, null));
      expect(Buffer.from(sodium.sha256(message)).toString('hex')).toBe(createHash('sha256').update(message).digest('hex'));
    }), { numRuns: 50 });
  });

  it('argon2id (crypto_pwhash ALG_ARGON2ID13) derives the same key, off the main thread', async () => {
    const passphrase = new TextEncoder().encode('correct horse');
    const salt = wasm.randombytes_buf(16);
    for (const [ops, mem] of [[1, 8192], [2, 65536]] as const) {
      const pending = sodium.pwhashArgon2id(32, passphrase, salt, ops, mem);
      expect(pending).toBeInstanceOf(Promise);
      expect(await pending).toEqual(wasm.crypto_pwhash(32, passphrase, salt, ops, mem, wasm.crypto_pwhash_ALG_ARGON2ID13));
    }
  });

  it('sha256Fd hashes the whole file with pread and leaves the fd offset where it was', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sodium-fd-'));
    try {
      const file = path.join(dir, 'big');
      const content = Buffer.alloc(200_000 + 17, 7);
      content.write('start', 0);
      fs.writeFileSync(file, content);
      const fd = fs.openSync(file, 'r');
      try {
        fs.readSync(fd, Buffer.alloc(10), 0, 10, null); // the fd's offset is now 10
        expect(Buffer.from(sodium.sha256Fd(fd)).toString('hex')).toBe(createHash('sha256').update(content).digest('hex'));
        const next = Buffer.alloc(5);
        fs.readSync(fd, next, 0, 5, null);
        expect(next).toEqual(content.subarray(10, 15));
      } finally {
        fs.closeSync(fd);
      }
      const dirFd = fs.openSync(dir, 'r');
      try {
        expect(() => sodium.sha256Fd(dirFd)).toThrow(/pread: Is a directory/);
        try {
          sodium.sha256Fd(dirFd);
        } catch (error) {
          // shaped like Node's errors, so that vault reports "pread failed: EISDIR", not an internal error
          expect(error).toMatchObject({ code: 'EISDIR', syscall: 'pread', errno: -21 });
        }
      } finally {
        fs.closeSync(dirFd);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('memcmp: equal only for the same bytes and length', () => {
    expect(sodium.memcmp(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(sodium.memcmp(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(sodium.memcmp(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).toBe(false);
  });

  it('bad arguments throw TypeError or RangeError, never read past a buffer', () => {
    const pair = sodium.boxKeypair();
    expect(() => sodium.boxSeal(new Uint8Array(1), pair.publicKey.subarray(0, 31))).toThrow(RangeError);
    expect(() => sodium.boxSealOpen(new Uint8Array(60), pair.publicKey, new Uint8Array(33))).toThrow(RangeError);
    expect(() => sodium.boxSeal('text' as unknown as Uint8Array, pair.publicKey)).toThrow(TypeError);
    expect(() => sodium.scalarmultBase(new Uint16Array(16) as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => sodium.aeadXChaCha20Poly1305Encrypt(new Uint8Array(1), new Uint8Array(0), new Uint8Array(12), new Uint8Array(32))).toThrow(RangeError);
    expect(() => sodium.genericHash(65, new Uint8Array(1), null)).toThrow(RangeError);
    expect(() => sodium.genericHash(32, new Uint8Array(1), new Uint8Array(8))).toThrow(RangeError);
    expect(() => sodium.pwhashArgon2id(32, new Uint8Array(1), new Uint8Array(16), 0, 8192)).toThrow(RangeError);
    expect(() => sodium.pwhashArgon2id(32, new Uint8Array(1), new Uint8Array(15), 1, 8192)).toThrow(RangeError);
    expect(() => sodium.randomBytes(-1)).toThrow(RangeError);
    expect(sodium.randomBytes(32)).toHaveLength(32);
    expect(sodium.version).toMatch(/^1\.0\.\d+$/);
  });
});

/** How many times `needle` occurs in the writable memory of process `pid` (/proc/PID/maps and mem). */
function occurrencesIn(pid: number, needle: Buffer): number {
  let count = 0;
  const mem = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const match = /^([0-9a-f]+)-([0-9a-f]+) rw/.exec(line);
      if (match === null) continue;
      const start = Number.parseInt(match[1]!, 16);
      const length = Number.parseInt(match[2]!, 16) - start;
      if (length > 1 << 30) continue;
      const region = Buffer.alloc(length);
      try {
        fs.readSync(mem, region, 0, length, start);
      } catch {
        continue; // a guard page or a mapping gone since
      }
      for (let at = region.indexOf(needle); at !== -1; at = region.indexOf(needle, at + 1)) count += 1;
    }
  } finally {
    fs.closeSync(mem);
  }
  return count;
}

describe('argon2id leaves no copy of the key it derived', () => {
  it.each([[1, 8192], [2, 1 << 20], [3, 32 << 20]])('in the process that ran it (opslimit %i, memlimit %i), once the caller wiped the key it got (the pool thread\'s stack included)', async (ops, mem) => {
    const addon = findBuildArtifact('sealvault_native.node');
    const passphrase = 'a passphrase for the stack scrub';
    const salt = Buffer.alloc(16, 7);
    // a separate node: this process must not hold the bytes it looks for in that one's memory
    const child = spawn(process.execPath, ['-e', `
      const sodium = require(${JSON.stringify(addon)}).sodium;
      sodium.pwhashArgon2id(32, new TextEncoder().encode(${JSON.stringify(passphrase)}), new Uint8Array(16).fill(7), ${ops}, ${mem})
        .then((key) => {
          process.stdout.write('derived\\n');
          process.stdin.once('data', () => { key.fill(0); process.stdout.write('wiped\\n'); });
        });`], { stdio: ['pipe', 'pipe', 'inherit'] });
    const next = () => new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    try {
      await next();
      await wasm.ready;
      const key = Buffer.from(wasm.crypto_pwhash(32, new TextEncoder().encode(passphrase), salt, ops, mem, wasm.crypto_pwhash_ALG_ARGON2ID13));
      // the method sees the key where it is: in the array handed over
      expect(occurrencesIn(child.pid!, key)).toBeGreaterThanOrEqual(1);
      child.stdin!.write('wipe\n');
      await next();
      expect(occurrencesIn(child.pid!, key)).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
