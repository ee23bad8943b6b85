// The libsodium functions of docs/FORMAT.md, from the system's libsodium (Debian libsodium-dev),
// linked into the addon that every command loads anyway: no WebAssembly to compile and instantiate
// on each start (≈ 25 ms and 10 MiB of a `vault exec`, docs/performance.md). Each function is one
// libsodium call with its arguments checked; names follow libsodium's. Outputs are written straight
// into the JavaScript Uint8Array they are returned in, so no plaintext is left in a second buffer.
#include "sodium_binding.h"

#include <sodium.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>
#include <unistd.h>

namespace {

// The bytes of a Uint8Array argument; a TypeError naming `what` when it is anything else.
// The largest input any call takes: far above what a vault holds (a secret is at most 1 MiB), and
// small enough that an output of input + overhead always fits a Uint8Array.
constexpr size_t MAX_INPUT_BYTES = size_t{1} << 30;

bool Bytes(const Napi::CallbackInfo &info, size_t index, const char *what, Napi::Uint8Array *out) {
  if (index < info.Length() && info[index].IsTypedArray() &&
      info[index].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    *out = info[index].As<Napi::Uint8Array>();
    if (out->ByteLength() <= MAX_INPUT_BYTES) return true;
    Napi::RangeError::New(info.Env(), std::string(what) + " must be at most 1 GiB").ThrowAsJavaScriptException();
    return false;
  }
  Napi::TypeError::New(info.Env(), std::string(what) + " must be a Uint8Array").ThrowAsJavaScriptException();
  return false;
}

// A Uint8Array argument of exactly `length` bytes (keys, nonces).
bool BytesOf(const Napi::CallbackInfo &info, size_t index, const char *what, size_t length, Napi::Uint8Array *out) {
  if (!Bytes(info, index, what, out)) return false;
  if (out->ByteLength() == length) return true;
  Napi::RangeError::New(info.Env(), std::string(what) + " must be " + std::to_string(length) + " bytes")
      .ThrowAsJavaScriptException();
  return false;
}

bool Count(const Napi::CallbackInfo &info, size_t index, const char *what, double min, double max, double *out) {
  if (index < info.Length() && info[index].IsNumber()) {
    *out = info[index].As<Napi::Number>().DoubleValue();
    if (*out >= min && *out <= max && *out == static_cast<double>(static_cast<unsigned long long>(*out))) return true;
  }
  Napi::RangeError::New(info.Env(), std::string(what) + " must be a whole number from " +
                                        std::to_string(static_cast<unsigned long long>(min)) + " to " +
                                        std::to_string(static_cast<unsigned long long>(max)))
      .ThrowAsJavaScriptException();
  return false;
}

// randombytes_buf(length) -> Uint8Array.
Napi::Value RandomBytes(const Napi::CallbackInfo &info) {
  double length = 0;
  if (!Count(info, 0, "length", 0, 1 << 20, &length)) return info.Env().Undefined();
  Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), static_cast<size_t>(length));
  randombytes_buf(out.Data(), out.ByteLength());
  return out;
}

// crypto_box_keypair() -> { publicKey, secretKey } (X25519, 32 bytes each).
Napi::Value BoxKeypair(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array publicKey = Napi::Uint8Array::New(env, crypto_box_PUBLICKEYBYTES);
  Napi::Uint8Array secretKey = Napi::Uint8Array::New(env, crypto_box_SECRETKEYBYTES);
  if (crypto_box_keypair(publicKey.Data(), secretKey.Data()) != 0) {
    Napi::Error::New(env, "crypto_box_keypair() failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object pair = Napi::Object::New(env);
  pair.Set("publicKey", publicKey);
  pair.Set("secretKey", secretKey);
  return pair;
}

// crypto_scalarmult_base(secretKey) -> the public key of an X25519 secret key.
Napi::Value ScalarmultBase(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array secretKey;
  if (!BytesOf(info, 0, "secretKey", crypto_scalarmult_SCALARBYTES, &secretKey)) return env.Undefined();
  Napi::Uint8Array publicKey = Napi::Uint8Array::New(env, crypto_scalarmult_BYTES);
  if (crypto_scalarmult_base(publicKey.Data(), secretKey.Data()) != 0) {
    Napi::Error::New(env, "crypto_scalarmult_base() failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return publicKey;
}

// crypto_box_seal(message, publicKey) -> ciphertext (message length + crypto_box_SEALBYTES).
Napi::Value BoxSeal(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array message, publicKey;
  if (!Bytes(info, 0, "message", &message) || !BytesOf(info, 1, "publicKey", crypto_box_PUBLICKEYBYTES, &publicKey)) {
    return env.Undefined();
  }
  Napi::Uint8Array sealed = Napi::Uint8Array::New(env, message.ByteLength() + crypto_box_SEALBYTES);
  if (crypto_box_seal(sealed.Data(), message.Data(), message.ByteLength(), publicKey.Data()) != 0) {
    Napi::Error::New(env, "crypto_box_seal() failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return sealed;
}

// crypto_box_seal_open(sealed, publicKey, secretKey) -> message, or null when it does not open.
Napi::Value BoxSealOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array sealed, publicKey, secretKey;
  if (!Bytes(info, 0, "sealed", &sealed) || !BytesOf(info, 1, "publicKey", crypto_box_PUBLICKEYBYTES, &publicKey) ||
      !BytesOf(info, 2, "secretKey", crypto_box_SECRETKEYBYTES, &secretKey)) {
    return env.Undefined();
  }
  if (sealed.ByteLength() < crypto_box_SEALBYTES) return env.Null();
  Napi::Uint8Array message = Napi::Uint8Array::New(env, sealed.ByteLength() - crypto_box_SEALBYTES);
  if (crypto_box_seal_open(message.Data(), sealed.Data(), sealed.ByteLength(), publicKey.Data(), secretKey.Data()) != 0) {
    return env.Null();
  }
  return message;
}

// The arguments of both AEAD calls: (input, additionalData, nonce, key), `input` named `what`.
bool AeadArguments(const Napi::CallbackInfo &info, const char *what, Napi::Uint8Array *input, Napi::Uint8Array *ad,
                   Napi::Uint8Array *nonce, Napi::Uint8Array *key) {
  return Bytes(info, 0, what, input) && Bytes(info, 1, "additionalData", ad) &&
         BytesOf(info, 2, "nonce", crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, nonce) &&
         BytesOf(info, 3, "key", crypto_aead_xchacha20poly1305_ietf_KEYBYTES, key);
}

// crypto_aead_xchacha20poly1305_ietf_encrypt(message, additionalData, nonce, key) -> ciphertext.
Napi::Value AeadEncrypt(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array message, ad, nonce, key;
  if (!AeadArguments(info, "message", &message, &ad, &nonce, &key)) return env.Undefined();
  Napi::Uint8Array out = Napi::Uint8Array::New(env, message.ByteLength() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.Data(), &written, message.Data(), message.ByteLength(), ad.Data(),
                                             ad.ByteLength(), nullptr, nonce.Data(), key.Data());
  return out;
}

// crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, additionalData, nonce, key) -> message, or
// null when the tag does not verify (another key, or changed bytes).
Napi::Value AeadDecrypt(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array ciphertext, ad, nonce, key;
  if (!AeadArguments(info, "ciphertext", &ciphertext, &ad, &nonce, &key)) return env.Undefined();
  if (ciphertext.ByteLength() < crypto_aead_xchacha20poly1305_ietf_ABYTES) return env.Null();
  Napi::Uint8Array out = Napi::Uint8Array::New(env, ciphertext.ByteLength() - crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long written = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(out.Data(), &written, nullptr, ciphertext.Data(),
                                                 ciphertext.ByteLength(), ad.Data(), ad.ByteLength(), nonce.Data(),
                                                 key.Data()) != 0) {
    sodium_memzero(out.Data(), out.ByteLength());
    return env.Null();
  }
  return out;
}

// crypto_generichash(length, message, key) -> BLAKE2b of `length` bytes; key may be null (unkeyed).
Napi::Value GenericHash(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  double length = 0;
  Napi::Uint8Array message, key;
  if (!Count(info, 0, "length", crypto_generichash_BYTES_MIN, crypto_generichash_BYTES_MAX, &length) ||
      !Bytes(info, 1, "message", &message)) {
    return env.Undefined();
  }
  bool keyed = info.Length() > 2 && !info[2].IsNull() && !info[2].IsUndefined();
  if (keyed && !Bytes(info, 2, "key", &key)) return env.Undefined();
  if (keyed && (key.ByteLength() < crypto_generichash_KEYBYTES_MIN || key.ByteLength() > crypto_generichash_KEYBYTES_MAX)) {
    Napi::RangeError::New(env, "key must be 16 to 64 bytes").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array out = Napi::Uint8Array::New(env, static_cast<size_t>(length));
  crypto_generichash(out.Data(), out.ByteLength(), message.Data(), message.ByteLength(), keyed ? key.Data() : nullptr,
                     keyed ? key.ByteLength() : 0);
  return out;
}

// libsodium 1.0.18's blake2b_final leaves its last output (here the derived key) on the stack of
// the thread that ran crypto_pwhash, where a pool thread keeps it until something overwrites it.
// This overwrites the stack below the caller's frame, far deeper than argon2id reaches. A plain
// volatile loop, not sodium_memzero: the first, lazily bound call of that spills vector registers
// that hold the key onto the stack again (found by the review of 2026-11-30).
__attribute__((noinline)) void ScrubStack() {
  volatile unsigned char area[64 * 1024];
  for (size_t i = 0; i < sizeof area; i++) area[i] = 0;
}

// argon2id on a thread of libuv's pool: a second of work must not stop the event loop (signals,
// warnings already emitted, the agent's other connections). The passphrase is copied into memory the
// worker owns and wiped, with the derived key, once the result is handed over.
class PwhashWorker : public Napi::AsyncWorker {
 public:
  PwhashWorker(Napi::Env env, size_t length, const Napi::Uint8Array &passphrase, const Napi::Uint8Array &salt,
               unsigned long long opslimit, size_t memlimit)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), key_(length),
        passphrase_(passphrase.Data(), passphrase.Data() + passphrase.ByteLength()),
        salt_(salt.Data(), salt.Data() + salt.ByteLength()), opslimit_(opslimit), memlimit_(memlimit) {}
  ~PwhashWorker() override {
    sodium_memzero(key_.data(), key_.size());
    sodium_memzero(passphrase_.data(), passphrase_.size());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (crypto_pwhash(key_.data(), key_.size(), reinterpret_cast<const char *>(passphrase_.data()), passphrase_.size(),
                      salt_.data(), opslimit_, memlimit_, crypto_pwhash_ALG_ARGON2ID13) != 0) {
      SetError("crypto_pwhash() failed: out of memory or limits refused");
    }
    ScrubStack();
  }
  void OnOK() override {
    Napi::Uint8Array out = Napi::Uint8Array::New(Env(), key_.size());
    std::memcpy(out.Data(), key_.data(), key_.size());
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error &error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<unsigned char> key_;
  std::vector<unsigned char> passphrase_;
  std::vector<unsigned char> salt_;
  unsigned long long opslimit_;
  size_t memlimit_;
};

// crypto_pwhash(length, passphrase, salt, opslimit, memlimit) with crypto_pwhash_ALG_ARGON2ID13
// (argon2id v1.3, one lane) -> Promise of the key, computed off the main thread. Bad arguments
// throw at once; a refusal by libsodium (out of memory) rejects.
Napi::Value PwhashArgon2id(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  double length = 0, opslimit = 0, memlimit = 0;
  Napi::Uint8Array passphrase, salt;
  if (!Count(info, 0, "length", crypto_pwhash_BYTES_MIN, 1024, &length) || !Bytes(info, 1, "passphrase", &passphrase) ||
      !BytesOf(info, 2, "salt", crypto_pwhash_SALTBYTES, &salt) ||
      !Count(info, 3, "opslimit", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_OPSLIMIT_MAX, &opslimit) ||
      !Count(info, 4, "memlimit", crypto_pwhash_MEMLIMIT_MIN, static_cast<double>(crypto_pwhash_MEMLIMIT_MAX), &memlimit)) {
    return env.Undefined();
  }
  auto *worker = new PwhashWorker(env, static_cast<size_t>(length), passphrase, salt,
                                  static_cast<unsigned long long>(opslimit), static_cast<size_t>(memlimit));
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // libuv's pool owns it from here and deletes it after OnOK or OnError
  return promise;
}

// sodium_memcmp(a, b) -> true when equal, in time independent of where they differ; arrays of
// different lengths are unequal (their lengths are not secret).
Napi::Value Memcmp(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array a, b;
  if (!Bytes(info, 0, "a", &a) || !Bytes(info, 1, "b", &b)) return env.Undefined();
  bool same = a.ByteLength() == b.ByteLength() && sodium_memcmp(a.Data(), b.Data(), a.ByteLength()) == 0;
  return Napi::Boolean::New(env, same);
}

// crypto_hash_sha256(message) -> 32 bytes.
Napi::Value Sha256(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array message;
  if (!Bytes(info, 0, "message", &message)) return env.Undefined();
  Napi::Uint8Array out = Napi::Uint8Array::New(env, crypto_hash_sha256_BYTES);
  crypto_hash_sha256(out.Data(), message.Data(), message.ByteLength());
  return out;
}

// sha256Fd(fd) -> 32 bytes: SHA-256 of the file open at `fd`, read with pread(2) from offset 0 to
// its end (the fd's own offset is left alone). A failed read throws with its errno.
Napi::Value Sha256Fd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  double fd = 0;
  if (!Count(info, 0, "fd", 0, 1 << 30, &fd)) return env.Undefined();
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  static thread_local unsigned char chunk[1 << 16];
  off_t offset = 0;
  for (;;) {
    ssize_t got = pread(static_cast<int>(fd), chunk, sizeof chunk, offset);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      int err = errno;
      const char *name = strerrorname_np(err);
      // shaped like Node's own errors (code, errno, syscall), so that callers report it as one
      Napi::Error error = Napi::Error::New(env, std::string("pread: ") + std::strerror(err));
      error.Set("code", Napi::String::New(env, name != nullptr ? name : "EUNKNOWN"));
      error.Set("syscall", Napi::String::New(env, "pread"));
      error.Set("errno", Napi::Number::New(env, -err));
      error.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (got == 0) break;
    crypto_hash_sha256_update(&state, chunk, static_cast<unsigned long long>(got));
    offset += got;
  }
  Napi::Uint8Array out = Napi::Uint8Array::New(env, crypto_hash_sha256_BYTES);
  crypto_hash_sha256_final(&state, out.Data());
  return out;
}

}  // namespace

void InitSodium(Napi::Env env, Napi::Object exports) {
  // sodium_init() before any other call (libsodium's "Usage"); repeating it is harmless
  if (sodium_init() < 0) {
    Napi::Error::New(env, "sodium_init() failed").ThrowAsJavaScriptException();
    return;
  }
  Napi::Object sodium = Napi::Object::New(env);
  sodium.Set("randomBytes", Napi::Function::New(env, RandomBytes));
  sodium.Set("boxKeypair", Napi::Function::New(env, BoxKeypair));
  sodium.Set("scalarmultBase", Napi::Function::New(env, ScalarmultBase));
  sodium.Set("boxSeal", Napi::Function::New(env, BoxSeal));
  sodium.Set("boxSealOpen", Napi::Function::New(env, BoxSealOpen));
  sodium.Set("aeadXChaCha20Poly1305Encrypt", Napi::Function::New(env, AeadEncrypt));
  sodium.Set("aeadXChaCha20Poly1305Decrypt", Napi::Function::New(env, AeadDecrypt));
  sodium.Set("genericHash", Napi::Function::New(env, GenericHash));
  sodium.Set("pwhashArgon2id", Napi::Function::New(env, PwhashArgon2id));
  sodium.Set("memcmp", Napi::Function::New(env, Memcmp));
  sodium.Set("sha256", Napi::Function::New(env, Sha256));
  sodium.Set("sha256Fd", Napi::Function::New(env, Sha256Fd));
  sodium.Set("version", Napi::String::New(env, sodium_version_string()));
  exports.Set("sodium", sodium);
}
