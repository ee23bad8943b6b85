// What Node cannot do itself: advisory file locks that the kernel releases when a writer dies,
// and hardening the process before it handles plaintext or an unwrapped key.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <string>
#include <vector>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <termios.h>

namespace {

Napi::Error ErrnoError(Napi::Env env, const char *what, int err) {
  Napi::Error error = Napi::Error::New(env, std::string(what) + ": " + std::strerror(err));
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

// An Error shaped like Node's own (code, errno, syscall, path), so that callers treat both alike.
Napi::Error SystemError(Napi::Env env, const char *syscall, int err, const std::string &path) {
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + " " + path + ": " + std::strerror(err));
  const char *name = strerrorname_np(err);
  error.Set("code", Napi::String::New(env, name != nullptr ? name : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.Set("path", Napi::String::New(env, path));
  return error;
}

bool Args(const Napi::CallbackInfo &info, const char *usage, std::initializer_list<napi_valuetype> types) {
  size_t i = 0;
  bool ok = info.Length() == types.size();
  for (napi_valuetype type : types) {
    if (!ok) break;
    ok = info[i++].Type() == type;
  }
  if (!ok) Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
  return ok;
}

// openAt(dirfd, name, flags, mode) -> fd: openat(2); O_CLOEXEC is always added.
Napi::Value OpenAt(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "openAt(dirfd, name, flags, mode)", {napi_number, napi_string, napi_number, napi_number})) return env.Undefined();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  int fd;
  do fd = openat(info[0].As<Napi::Number>().Int32Value(), name.c_str(), info[2].As<Napi::Number>().Int32Value() | O_CLOEXEC,
                 static_cast<mode_t>(info[3].As<Napi::Number>().Uint32Value()));
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    SystemError(env, "openat", errno, name).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// mkdirAt(dirfd, name, mode): mkdirat(2).
Napi::Value MkdirAt(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "mkdirAt(dirfd, name, mode)", {napi_number, napi_string, napi_number})) return env.Undefined();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  if (mkdirat(info[0].As<Napi::Number>().Int32Value(), name.c_str(), static_cast<mode_t>(info[2].As<Napi::Number>().Uint32Value())) != 0)
    SystemError(env, "mkdirat", errno, name).ThrowAsJavaScriptException();
  return env.Undefined();
}

// unlinkAt(dirfd, name, flags): unlinkat(2); flags may be AT_REMOVEDIR.
Napi::Value UnlinkAt(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "unlinkAt(dirfd, name, flags)", {napi_number, napi_string, napi_number})) return env.Undefined();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  if (unlinkat(info[0].As<Napi::Number>().Int32Value(), name.c_str(), info[2].As<Napi::Number>().Int32Value()) != 0)
    SystemError(env, "unlinkat", errno, name).ThrowAsJavaScriptException();
  return env.Undefined();
}

// renameAt(olddirfd, oldname, newdirfd, newname): renameat(2).
Napi::Value RenameAt(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "renameAt(olddirfd, oldname, newdirfd, newname)", {napi_number, napi_string, napi_number, napi_string})) return env.Undefined();
  std::string from = info[1].As<Napi::String>().Utf8Value();
  std::string to = info[3].As<Napi::String>().Utf8Value();
  if (renameat(info[0].As<Napi::Number>().Int32Value(), from.c_str(), info[2].As<Napi::Number>().Int32Value(), to.c_str()) != 0)
    SystemError(env, "renameat", errno, to).ThrowAsJavaScriptException();
  return env.Undefined();
}

// listDir(dirfd) -> [name]: the entries of an open directory, without "." and ".." (fdopendir(3)
// on a duplicate, so that dirfd stays open and its offset is not consumed).
Napi::Value ListDir(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "listDir(dirfd)", {napi_number})) return env.Undefined();
  int copy = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 3);
  if (copy < 0) {
    SystemError(env, "dup", errno, "").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  DIR *dir = fdopendir(copy);
  if (dir == nullptr) {
    int err = errno;
    close(copy);
    SystemError(env, "fdopendir", err, "").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  rewinddir(dir);
  std::vector<std::string> names;
  errno = 0;
  for (struct dirent *entry; (entry = readdir(dir)) != nullptr; errno = 0) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) names.emplace_back(entry->d_name);
  }
  int err = errno;
  closedir(dir);
  if (err != 0) {
    SystemError(env, "readdir", err, "").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) out.Set(i, names[i]);
  return out;
}

// tryLockExclusive(fd) -> true when the lock is now held, false when another process holds it.
Napi::Value TryLockExclusive(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "tryLockExclusive(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ErrnoError(env, "flock", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// hardenProcess(): no core dumps and no ptrace/proc access by same-uid processes, so that
// plaintext and keys in this process's memory cannot be read back from outside it.
Napi::Value HardenProcess(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) {
    ErrnoError(env, "setrlimit(RLIMIT_CORE)", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    ErrnoError(env, "prctl(PR_SET_DUMPABLE)", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return env.Undefined();
}

// isDumpable() lets tests check that hardening took effect in the real process.
Napi::Value IsDumpable(const Napi::CallbackInfo &info) {
  int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  if (dumpable < 0) {
    ErrnoError(info.Env(), "prctl(PR_GET_DUMPABLE)", errno).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Boolean::New(info.Env(), dumpable != 0);
}

// terminalModes(fd) -> Buffer: the terminal's modes (tcgetattr), for setTerminalModes to put back.
Napi::Value TerminalModes(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "terminalModes(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct termios modes;
  if (tcgetattr(info[0].As<Napi::Number>().Int32Value(), &modes) != 0) {
    ErrnoError(env, "tcgetattr", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Buffer<char>::Copy(env, reinterpret_cast<const char *>(&modes), sizeof modes);
}

// setTerminalModes(fd, modes): puts back what terminalModes returned, once queued output is
// written (TCSADRAIN), as a program leaving raw mode does.
Napi::Value SetTerminalModes(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsBuffer() ||
      info[1].As<Napi::Buffer<char>>().Length() != sizeof(struct termios)) {
    Napi::TypeError::New(env, "setTerminalModes(fd, modes from terminalModes)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct termios modes;
  std::memcpy(&modes, info[1].As<Napi::Buffer<char>>().Data(), sizeof modes);
  int fd = info[0].As<Napi::Number>().Int32Value();
  while (tcsetattr(fd, TCSADRAIN, &modes) != 0) {
    if (errno == EINTR) continue;
    ErrnoError(env, "tcsetattr", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return env.Undefined();
}

// sealedCopy(fd, name) -> fd: a memfd holding the bytes of the regular file `fd`, sealed against
// writes, growth and shrinking (memfd_create(2), fcntl F_ADD_SEALS), positioned at 0. What vault
// hashes and runs is this copy: a write into the file afterwards changes neither.
Napi::Value SealedCopy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsString()) {
    Napi::TypeError::New(env, "sealedCopy(fd, name)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int source = info[0].As<Napi::Number>().Int32Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  // MFD_EXEC (Linux 6.3) keeps it executable where vm.memfd_noexec asks for no-exec by default
  const unsigned int mfd_exec = 0x0010U;
  int copy = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | mfd_exec);
  if (copy < 0 && errno == EINVAL) copy = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (copy < 0) {
    ErrnoError(env, "memfd_create", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto fail = [&](const char *what) {
    int err = errno;
    close(copy);
    ErrnoError(env, what, err).ThrowAsJavaScriptException();
    return env.Undefined();
  };
  off_t offset = 0;
  for (;;) {
    ssize_t sent = sendfile(copy, source, &offset, 1 << 30);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return fail("sendfile");
    if (sent == 0) break;
  }
  if (fcntl(copy, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) return fail("fcntl(F_ADD_SEALS)");
  if (lseek(copy, 0, SEEK_SET) != 0) return fail("lseek");
  return Napi::Number::New(env, copy);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openAt", Napi::Function::New(env, OpenAt));
  exports.Set("mkdirAt", Napi::Function::New(env, MkdirAt));
  exports.Set("unlinkAt", Napi::Function::New(env, UnlinkAt));
  exports.Set("renameAt", Napi::Function::New(env, RenameAt));
  exports.Set("listDir", Napi::Function::New(env, ListDir));
  exports.Set("sealedCopy", Napi::Function::New(env, SealedCopy));
  exports.Set("terminalModes", Napi::Function::New(env, TerminalModes));
  exports.Set("setTerminalModes", Napi::Function::New(env, SetTerminalModes));
  exports.Set("tryLockExclusive", Napi::Function::New(env, TryLockExclusive));
  exports.Set("hardenProcess", Napi::Function::New(env, HardenProcess));
  exports.Set("isDumpable", Napi::Function::New(env, IsDumpable));
  return exports;
}

}  // namespace

NODE_API_MODULE(sealvault_native, Init)
