// What Node cannot do itself: advisory file locks that the kernel releases when a writer dies,
// and hardening the process before it handles plaintext or an unwrapped key.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <termios.h>

namespace {

Napi::Error ErrnoError(Napi::Env env, const char *what, int err) {
  Napi::Error error = Napi::Error::New(env, std::string(what) + ": " + std::strerror(err));
  error.Set("errno", Napi::Number::New(env, err));
  return error;
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("terminalModes", Napi::Function::New(env, TerminalModes));
  exports.Set("setTerminalModes", Napi::Function::New(env, SetTerminalModes));
  exports.Set("tryLockExclusive", Napi::Function::New(env, TryLockExclusive));
  exports.Set("hardenProcess", Napi::Function::New(env, HardenProcess));
  exports.Set("isDumpable", Napi::Function::New(env, IsDumpable));
  return exports;
}

}  // namespace

NODE_API_MODULE(sealvault_native, Init)
