// What Node cannot do itself: advisory file locks that the kernel releases when a writer dies,
// hardening the process before it handles plaintext or an unwrapped key, the *at() calls, sealed
// copies, terminal modes, and the agent's socket: peer credentials and fd passing (unix(7)); and
// libsodium (sodium_binding.cc).
#include <napi.h>

#include "sodium_binding.h"

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <string>
#include <vector>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/kcmp.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <poll.h>
#include <termios.h>
#include <chrono>

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


// peerCredentials(fd) -> {pid, uid, gid}: getsockopt(SO_PEERCRED) of a connected unix socket, as the
// kernel recorded them at connect(2) (unix(7)); the agent decides whom it serves from these alone.
Napi::Value PeerCredentials(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "peerCredentials(fd)", {napi_number})) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred = {};
  socklen_t length = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    SystemError(env, "getsockopt", errno, "SO_PEERCRED").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

// Waits until `fd` is ready for `events` or `deadline` passes; false with errno ETIMEDOUT then.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    struct pollfd p = {fd, events, 0};
    int ready = poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return false;
    if (ready > 0) return true;
  }
}

const size_t MAX_PASSED_FDS = 16;

// sendWithFds(fd, data, fds, timeoutMs): the whole of `data` on a stream unix socket, with `fds`
// attached to its first byte (SCM_RIGHTS, unix(7)). Waits (poll) while the socket is full.
Napi::Value SendWithFds(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 4 || !info[0].IsNumber() || !info[1].IsBuffer() || !info[2].IsArray() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "sendWithFds(fd, data, fds, timeoutMs)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> data = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Array list = info[2].As<Napi::Array>();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(info[3].As<Napi::Number>().Int64Value());
  std::vector<int> fds;
  for (uint32_t i = 0; i < list.Length(); i++) fds.push_back(list.Get(i).As<Napi::Number>().Int32Value());
  if (fds.size() > MAX_PASSED_FDS || data.Length() == 0) {
    Napi::RangeError::New(env, "sendWithFds: at most 16 fds, and at least one byte").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  size_t sent = 0;
  while (sent < data.Length()) {
    struct iovec iov = {data.Data() + sent, data.Length() - sent};
    struct msghdr message = {};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    std::vector<char> control;
    if (sent == 0 && !fds.empty()) {
      control.assign(CMSG_SPACE(sizeof(int) * fds.size()), 0);
      message.msg_control = control.data();
      message.msg_controllen = control.size();
      struct cmsghdr *header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(fd, POLLOUT, deadline)) {
        SystemError(env, "sendmsg", errno, "the agent's socket").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      continue;
    }
    if (n < 0) {
      SystemError(env, "sendmsg", errno, "the agent's socket").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    sent += static_cast<size_t>(n);
  }
  return env.Undefined();
}

// recvRequest(fd, maxBytes, maxFds, timeoutMs) -> Promise<{data, fds}>: one frame, a 4-byte
// big-endian length and that many bytes, with the fds that came with it (SCM_RIGHTS, close-on-exec).
// Runs on a worker thread so that a slow or silent client never blocks the agent; a frame longer
// than maxBytes, more fds than maxFds, fds after the first byte or the deadline fail it, and every
// fd received is closed then.
class RecvRequestWorker : public Napi::AsyncWorker {
 public:
  RecvRequestWorker(Napi::Env env, int fd, size_t maxBytes, size_t maxFds, int64_t timeoutMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), maxBytes_(maxBytes),
        maxFds_(maxFds), deadline_(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    uint8_t head[4];
    if (!Read(head, sizeof head)) return;
    size_t length = (size_t{head[0]} << 24) | (size_t{head[1]} << 16) | (size_t{head[2]} << 8) | size_t{head[3]};
    if (length == 0 || length > maxBytes_) {
      Fail("a frame of " + std::to_string(length) + " bytes is not a request");
      return;
    }
    data_.resize(length);
    Read(data_.data(), length);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (!error_.empty()) {
      for (int fd : fds_) close(fd);
      Napi::Error error = Napi::Error::New(env, error_);
      error.Set("code", Napi::String::New(env, code_));
      deferred_.Reject(error.Value());
      return;
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("data", Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()));
    Napi::Array fds = Napi::Array::New(env, fds_.size());
    for (size_t i = 0; i < fds_.size(); i++) fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds_[i]));
    result.Set("fds", fds);
    std::fill(data_.begin(), data_.end(), 0);
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error &error) override { deferred_.Reject(error.Value()); }

 private:
  bool Fail(const std::string &why, const char *code = "EPROTO") {
    if (error_.empty()) {
      error_ = why;
      code_ = code;
    }
    return false;
  }

  bool Read(uint8_t *into, size_t want) {
    size_t got = 0;
    while (got < want) {
      if (!WaitFor(fd_, POLLIN, deadline_)) {
        return errno == ETIMEDOUT ? Fail("no whole request in time", "ETIMEDOUT") : Fail(std::string("poll: ") + std::strerror(errno), "EIO");
      }
      struct iovec iov = {into + got, want - got};
      char control[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
      struct msghdr message = {};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof control;
      ssize_t n = recvmsg(fd_, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (n < 0) return Fail(std::string("recvmsg: ") + std::strerror(errno), "EIO");
      for (struct cmsghdr *h = CMSG_FIRSTHDR(&message); h != nullptr; h = CMSG_NXTHDR(&message, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *passed = reinterpret_cast<int *>(CMSG_DATA(h));
        for (size_t i = 0; i < count; i++) fds_.push_back(passed[i]);
        if (got > 0 || want != 4) Fail("fds after the start of a request");
      }
      if ((message.msg_flags & MSG_CTRUNC) != 0) Fail("more fds than a request may carry");
      if (fds_.size() > maxFds_) Fail("more fds than a request may carry");
      if (n == 0) return Fail("the client closed the connection mid-request", "ECONNRESET");
      got += static_cast<size_t>(n);
      if (!error_.empty()) return false;
    }
    return true;
  }

  Napi::Promise::Deferred deferred_;
  int fd_;
  size_t maxBytes_;
  size_t maxFds_;
  std::chrono::steady_clock::time_point deadline_;
  std::vector<uint8_t> data_;
  std::vector<int> fds_;
  std::string error_;
  std::string code_;
};

Napi::Value RecvRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "recvRequest(fd, maxBytes, maxFds, timeoutMs)", {napi_number, napi_number, napi_number, napi_number})) {
    return env.Undefined();
  }
  auto *worker = new RecvRequestWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Uint32Value(),
                                       info[2].As<Napi::Number>().Uint32Value(), info[3].As<Napi::Number>().Int64Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// closeFd(fd): close(2), for fds received from a client that Node never wrapped.
Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "closeFd(fd)", {napi_number})) return env.Undefined();
  close(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

// dupAbove(fd, lowest): a close-on-exec copy of fd numbered `lowest` or more (fcntl(2), F_DUPFD_CLOEXEC).
// The agent names a client's directory to a child as /proc/self/fd/N: N must stay clear of the fds
// the child's stdio is dup2(2)-ed onto before it changes directory.
Napi::Value DupAbove(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "dupAbove(fd, lowest)", {napi_number, napi_number})) return env.Undefined();
  int copy = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, info[1].As<Napi::Number>().Int32Value());
  if (copy < 0) {
    SystemError(env, "fcntl", errno, "F_DUPFD_CLOEXEC").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, copy);
}

// sameOpenFile(a, b): whether fds a and b of this process are one open file description (kcmp(2),
// KCMP_FILE), as `2>&1` or dup(2) makes them; null where the kernel will not say: kcmp is built
// only with CONFIG_KCMP, and container seccomp profiles (Docker's default) refuse it with EPERM.
// Comparing one's own fds needs no ptrace permission (kcmp(2): same thread group).
Napi::Value SameOpenFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "sameOpenFile(a, b)", {napi_number, napi_number})) return env.Undefined();
  long self = getpid();
  long a = info[0].As<Napi::Number>().Int32Value();
  long b = info[1].As<Napi::Number>().Int32Value();
  long order = syscall(SYS_kcmp, self, self, KCMP_FILE, a, b);
  if (order >= 0) return Napi::Boolean::New(env, order == 0);
  if (errno == ENOSYS || errno == EPERM || errno == EACCES) return env.Null();
  SystemError(env, "kcmp", errno, "KCMP_FILE").ThrowAsJavaScriptException();
  return env.Undefined();
}

// openFileState(fd): the file status flags (fcntl(2) F_GETFL: O_APPEND, the access mode, ...) and
// the offset (lseek(2) SEEK_CUR; -1 where the file has none, as a pipe) of fd's open file
// description: what two descriptions of one file differ in when kcmp cannot tell them apart.
Napi::Value OpenFileState(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!Args(info, "openFileState(fd)", {napi_number})) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) {
    SystemError(env, "fcntl", errno, "F_GETFL").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  off_t offset = lseek(fd, 0, SEEK_CUR);
  Napi::Object result = Napi::Object::New(env);
  result.Set("flags", Napi::Number::New(env, flags));
  result.Set("offset", Napi::Number::New(env, offset < 0 ? -1 : static_cast<double>(offset)));
  return result;
}

// detach(keep): a session of its own (setsid(2): the terminal's hangup no longer reaches it) and
// /dev/null over fds 0, 1 and 2 (dup2(2)), for the agent once it no longer needs the terminal that
// started it: a daemon must not hold a terminal open, nor write into a closed pipe.
Napi::Value Detach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (setsid() < 0) {
    SystemError(env, "setsid", errno, "").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) {
    SystemError(env, "open", errno, "/dev/null").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // fds 0-2, every other fd on a terminal (Node reopens its stdio terminals as fds of its own), and
  // every fd inherited from whoever started us (not close-on-exec: Node's own all are), but `keep`
  std::vector<int> keep;
  if (info.Length() == 1 && info[0].IsArray()) {
    Napi::Array list = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) keep.push_back(list.Get(i).As<Napi::Number>().Int32Value());
  }
  std::vector<int> targets = {0, 1, 2};
  DIR *fds = opendir("/proc/self/fd");
  if (fds != nullptr) {
    for (struct dirent *entry = readdir(fds); entry != nullptr; entry = readdir(fds)) {
      int fd = std::atoi(entry->d_name);
      if (fd <= 2 || fd == null || fd == dirfd(fds) || std::find(keep.begin(), keep.end(), fd) != keep.end()) continue;
      int flags = fcntl(fd, F_GETFD);
      if (isatty(fd) || (flags >= 0 && (flags & FD_CLOEXEC) == 0)) targets.push_back(fd);
    }
    closedir(fds);
  }
  for (int target : targets) {
    while (dup2(null, target) < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(null);
      SystemError(env, "dup2", err, "/dev/null").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  close(null);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials));
  exports.Set("sendWithFds", Napi::Function::New(env, SendWithFds));
  exports.Set("recvRequest", Napi::Function::New(env, RecvRequest));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("dupAbove", Napi::Function::New(env, DupAbove));
  exports.Set("sameOpenFile", Napi::Function::New(env, SameOpenFile));
  exports.Set("openFileState", Napi::Function::New(env, OpenFileState));
  exports.Set("detach", Napi::Function::New(env, Detach));
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
  InitSodium(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(sealvault_native, Init)
