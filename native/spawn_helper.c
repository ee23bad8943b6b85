/*
 * spawn_helper: runs one pinned program inside the sandbox tier `vault exec` asked for, and hands
 * it the secrets that arrived on a pipe. docs/helper-protocol.md is the contract; main() follows
 * its steps from top to bottom.
 *
 * Processes, for the hardened and lockdown tiers (tier none has no PID 1):
 *
 *   vault ─ spawn_helper ─ PID 1 of the new PID namespace (reaper) ─ target (PID 2)
 *
 * The helper is single-threaded and never returns to a caller on error: each failure prints one
 * line "vault: <step>: <reason>" on stderr and exits 125, so that vault can tell a sandbox that
 * could not be set up (125) from a target that ran and failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { EXIT_SETUP_FAILED = 125, EXIT_CANNOT_EXECUTE = 126, EXIT_NOT_FOUND = 127 };
enum { FD_REQUEST = 3, FD_EXECUTABLE = 4, FD_INFO = 5 };
enum tier { TIER_NONE, TIER_HARDENED, TIER_LOCKDOWN };

/* The limits of docs/helper-protocol.md. */
#define MAX_REQUEST_BYTES (64u << 20)
#define MAX_ARGS 4096u
#define MAX_ENV 4096u
#define MAX_FILES 256u
#define MAX_HIDE 16u
#define MAX_FILE_VALUE_BYTES (1u << 20)
#define MAX_FILE_NAME_BYTES 128u

#define SECRETS_DIR "/tmp/.vault-secrets"

static const char *const tier_names[] = { "none", "hardened", "lockdown" };

struct secret_file {
  char *name;
  unsigned char *value;
  size_t length;
};

struct request {
  enum tier tier;
  char **argv;  /* NULL-terminated */
  char **envp;  /* NULL-terminated, with room for one NAME_FILE=PATH per file */
  size_t envc;
  struct secret_file files[MAX_FILES];
  size_t filec;
  char *hide[MAX_HIDE];
  size_t hidec;
  int memfds[MAX_FILES];  /* kept open across exec: the target reads them as /dev/fd/N */
  size_t memfdc;
};

static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
#define FORWARDED_SIGNAL_COUNT (sizeof forwarded_signals / sizeof forwarded_signals[0])

/* The mask the helper started with, which the target gets back. */
static sigset_t original_signal_mask;
/* The one child signals are passed on to; set before any handler can run. */
static volatile sig_atomic_t forward_to;
/* -1 when vault did not open an info pipe. */
static int info_fd = -1;

/* ---- errors ------------------------------------------------------------------------------- */

static noreturn void fail(int status, const char *step, int err, const char *fmt, va_list args)
{
  char reason[768];
  char line[1024];
  vsnprintf(reason, sizeof reason, fmt, args);
  int length = snprintf(line, sizeof line, "vault: %s: %s%s%s\n", step, reason,
                        err != 0 ? ": " : "", err != 0 ? strerror(err) : "");
  if (length < 0)
    _exit(status);
  if ((size_t)length >= sizeof line) {
    length = sizeof line - 1;
    line[length - 1] = '\n';
  }
  /* One write, so that the line is not interleaved with the target's output. Nothing useful
   * is left to do if stderr is gone. */
  (void)!write(STDERR_FILENO, line, (size_t)length);
  _exit(status);
}

static noreturn void die(const char *step, const char *fmt, ...)
{
  va_list args;
  va_start(args, fmt);
  fail(EXIT_SETUP_FAILED, step, 0, fmt, args);
}

static noreturn void die_with_error(const char *step, const char *fmt, ...)
{
  int err = errno;
  va_list args;
  va_start(args, fmt);
  fail(EXIT_SETUP_FAILED, step, err, fmt, args);
}

static noreturn void die_exec(int status, const char *fmt, ...)
{
  int err = errno;
  va_list args;
  va_start(args, fmt);
  fail(status, "exec_pinned", err, fmt, args);
}

/* ---- small utilities ---------------------------------------------------------------------- */

static void *allocate(size_t size)
{
  void *memory = calloc(1, size);
  if (memory == NULL)
    die("read_request", "out of memory");
  return memory;
}

static void write_all(const char *step, int fd, const void *data, size_t length, const char *what)
{
  const unsigned char *at = data;
  while (length > 0) {
    ssize_t written = write(fd, at, length);
    if (written < 0 && errno == EINTR)
      continue;
    if (written < 0)
      die_with_error(step, "writing %s", what);
    at += written;
    length -= (size_t)written;
  }
}

/* A number from /proc/sys, or -1 where the file is missing or unreadable: the callers use it
 * only to explain a failure or to pick a default. */
static long read_sysctl(const char *path)
{
  char text[32];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, text, sizeof text - 1);
  (void)close(fd);
  if (n <= 0)
    return -1;
  text[n] = '\0';
  char *end;
  long value = strtol(text, &end, 10);
  return end == text ? -1 : value;
}

/* Writes a whole /proc file in one write(2), as the kernel wants for uid_map and gid_map.
 * Returns 0, or -1 with errno set. */
static int write_proc_file(const char *path, const char *text)
{
  size_t length = strlen(text);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t written = write(fd, text, length);
  int write_errno = errno;
  if (close(fd) != 0 && written == (ssize_t)length)
    return -1;
  if (written != (ssize_t)length) {
    errno = written < 0 ? write_errno : EIO;
    return -1;
  }
  return 0;
}

static bool has_capability(const char *step, int capability)
{
  struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  if (syscall(SYS_capget, &header, data) != 0)
    die_with_error(step, "capget");
  return (data[capability / 32].effective & (1u << (capability % 32))) != 0;
}

/* ---- fds ---------------------------------------------------------------------------------- */

static void close_fd_range(unsigned int first, unsigned int last)
{
  if (first > last)
    return;
  if (close_range(first, last, 0) == 0)
    return;
  if (errno != ENOSYS)
    die_with_error("close_extra_fds", "close_range");
  /* Kernels before 5.9: close one by one, up to the highest fd this process may have (or a
   * million, when that is unlimited). */
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
    die_with_error("close_extra_fds", "getrlimit");
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max - 1 < last)
    last = (unsigned int)(limit.rlim_max - 1);
  for (unsigned int fd = first; fd <= last && fd < (1u << 20); fd++)
    if (close((int)fd) != 0 && errno != EBADF && errno != EINTR)
      die_with_error("close_extra_fds", "close(%u)", fd);
}

/* Closes every fd above 2 except `keep`, which must be sorted and above 2. */
static void close_extra_fds(const int *keep, size_t count)
{
  unsigned int next = 3;
  for (size_t i = 0; i < count; i++) {
    if (keep[i] > (int)next)
      close_fd_range(next, (unsigned int)keep[i] - 1);
    next = (unsigned int)keep[i] + 1;
  }
  close_fd_range(next, ~0u);
}

/* A closed 0, 1 or 2 would be handed out by the next open(): a secret memfd could become the
 * target's stdout. Put /dev/null there instead. */
static void fill_std_fds(void)
{
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) >= 0)
      continue;
    if (errno != EBADF)
      die_with_error("close_extra_fds", "fcntl(%d)", fd);
    if (open("/dev/null", O_RDWR) != fd)
      die_with_error("close_extra_fds", "opening /dev/null as fd %d", fd);
  }
}

static void check_protocol_fds(void)
{
  struct stat executable;
  if (fstat(FD_EXECUTABLE, &executable) != 0)
    die_with_error("read_request", "the executable (fd %d)", FD_EXECUTABLE);
  if (!S_ISREG(executable.st_mode))
    die("read_request", "the executable (fd %d) is not a regular file", FD_EXECUTABLE);
  if (fcntl(FD_INFO, F_GETFD) >= 0)
    info_fd = FD_INFO;
  else if (errno != EBADF)
    die_with_error("read_request", "the info pipe (fd %d)", FD_INFO);
}

/* ---- step 1: the request ------------------------------------------------------------------ */

/* Secrets are about to enter this process's memory: no core dumps, and no ptrace or
 * /proc/PID/mem reads by other processes of the same user. PID 1 and the target inherit this
 * until the target executes.
 * Not earlier: the /proc files of a non-dumpable process belong to root, and an unprivileged
 * helper could no longer write its own uid_map. */
static void protect_memory(void)
{
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    die_with_error("read_request", "prctl(PR_SET_DUMPABLE)");
}

struct cursor {
  const unsigned char *at;
  size_t left;
};

static uint32_t take_u32(struct cursor *cursor)
{
  if (cursor->left < 4)
    die("read_request", "the request ends early");
  const unsigned char *b = cursor->at;
  cursor->at += 4;
  cursor->left -= 4;
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint32_t take_count(struct cursor *cursor, uint32_t limit, const char *what)
{
  uint32_t count = take_u32(cursor);
  if (count > limit)
    die("read_request", "%u %s is more than the %u allowed", count, what, limit);
  return count;
}

/* A length-prefixed byte string, copied with a terminating NUL added. */
static char *take_bytes(struct cursor *cursor, size_t *length, uint32_t limit, const char *what)
{
  uint32_t n = take_u32(cursor);
  if (n > limit)
    die("read_request", "%s is longer than %u bytes", what, limit);
  if (n > cursor->left)
    die("read_request", "the request ends early");
  char *copy = allocate((size_t)n + 1);
  memcpy(copy, cursor->at, n);
  cursor->at += n;
  cursor->left -= n;
  *length = n;
  return copy;
}

static char *take_string(struct cursor *cursor, uint32_t limit, const char *what)
{
  size_t length;
  char *string = take_bytes(cursor, &length, limit, what);
  if (memchr(string, '\0', length) != NULL)
    die("read_request", "%s contains a NUL byte", what);
  return string;
}

/* Fills `buffer` from the request pipe; returns how much arrived before end of file. */
static size_t read_up_to(unsigned char *buffer, size_t size)
{
  size_t length = 0;
  while (length < size) {
    ssize_t n = read(FD_REQUEST, buffer + length, size - length);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      die_with_error("read_request", "reading the request (fd %d)", FD_REQUEST);
    if (n == 0)
      break;
    length += (size_t)n;
  }
  return length;
}

/* The magic and the tier: all that setting up namespaces needs, and no secret. */
static enum tier read_request_header(void)
{
  unsigned char header[8];
  size_t length = read_up_to(header, sizeof header);
  if (length < 4 || memcmp(header, "SVH1", 4) != 0)
    die("read_request", "the request does not start with SVH1");
  struct cursor cursor = { header + 4, length - 4 };
  uint32_t tier = take_u32(&cursor);
  if (tier > TIER_LOCKDOWN)
    die("read_request", "unknown tier %u", tier);
  return (enum tier)tier;
}

/* Everything after the header. */
static void parse_request(struct cursor *in, struct request *req)
{
  uint32_t argc = take_count(in, MAX_ARGS, "arguments");
  if (argc == 0)
    die("read_request", "argv is empty: the target needs at least argv[0]");
  req->argv = allocate(((size_t)argc + 1) * sizeof(char *));
  for (uint32_t i = 0; i < argc; i++)
    req->argv[i] = take_string(in, MAX_REQUEST_BYTES, "an argument");

  req->envc = take_count(in, MAX_ENV, "environment strings");
  req->envp = allocate((req->envc + MAX_FILES + 1) * sizeof(char *));
  for (size_t i = 0; i < req->envc; i++)
    req->envp[i] = take_string(in, MAX_REQUEST_BYTES, "an environment string");

  req->filec = take_count(in, MAX_FILES, "files");
  for (size_t i = 0; i < req->filec; i++) {
    struct secret_file *file = &req->files[i];
    file->name = take_string(in, MAX_FILE_NAME_BYTES, "a file name");
    /* The name becomes a path below SECRETS_DIR. */
    if (file->name[0] == '\0' || strchr(file->name, '/') != NULL || strcmp(file->name, ".") == 0
        || strcmp(file->name, "..") == 0)
      die("read_request", "file name \"%s\" is empty, \".\", \"..\" or contains '/'", file->name);
    file->value = (unsigned char *)take_bytes(in, &file->length, MAX_FILE_VALUE_BYTES, "a file value");
  }

  req->hidec = take_count(in, MAX_HIDE, "hidden paths");
  for (size_t i = 0; i < req->hidec; i++) {
    req->hide[i] = take_string(in, PATH_MAX, "a hidden path");
    if (req->hide[i][0] != '/')
      die("read_request", "hidden path \"%s\" is not an absolute path", req->hide[i]);
  }

  if (in->left != 0)
    die("read_request", "%zu unexpected bytes after the end of the request", in->left);
}

static void read_request(struct request *req, enum tier tier)
{
  /* Reserved, not committed: only the pages the request fills are used, and there is no
   * realloc to leave stale copies of secrets behind. One byte more than allowed tells a request
   * that is too large. */
  size_t capacity = (size_t)MAX_REQUEST_BYTES - 8 + 1;
  unsigned char *raw = mmap(NULL, capacity, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED)
    die_with_error("read_request", "mmap");
  size_t length = read_up_to(raw, capacity);
  if (length == capacity)
    die("read_request", "the request is larger than %u bytes", MAX_REQUEST_BYTES);
  if (close(FD_REQUEST) != 0)
    die_with_error("read_request", "closing the request pipe");

  struct cursor cursor = { raw, length };
  req->tier = tier;
  parse_request(&cursor, req);

  explicit_bzero(raw, length);
  if (munmap(raw, capacity) != 0)
    die_with_error("read_request", "munmap");
}

/* Wipes this process's copy of the request once it has no more use for it. */
static void forget_request(struct request *req)
{
  for (size_t i = 0; req->envp[i] != NULL; i++)
    explicit_bzero(req->envp[i], strlen(req->envp[i]));
  for (size_t i = 0; i < req->filec; i++)
    explicit_bzero(req->files[i].value, req->files[i].length);
}

/* ---- step 2: namespaces ------------------------------------------------------------------- */

static bool apparmor_restricts_userns(void)
{
  return read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1;
}

/* Why the kernel refused a user namespace, told in terms of the setting that fixes it. */
static noreturn void explain_missing_userns(int err)
{
  long max_userns = read_sysctl("/proc/sys/user/max_user_namespaces");
  long unprivileged_clone = read_sysctl("/proc/sys/kernel/unprivileged_userns_clone");

  if (max_userns == 0)
    die("setup_namespaces", "user namespaces are disabled here (user.max_user_namespaces is 0); "
        "as root run `sysctl -w user.max_user_namespaces=15000`, or use tier none");
  if (unprivileged_clone == 0)
    die("setup_namespaces", "unprivileged user namespaces are disabled here "
        "(kernel.unprivileged_userns_clone is 0); as root run "
        "`sysctl -w kernel.unprivileged_userns_clone=1`, or use tier none");
  if (apparmor_restricts_userns())
    die("setup_namespaces", "AppArmor restricts unprivileged user namespaces "
        "(kernel.apparmor_restrict_unprivileged_userns is 1); allow spawn_helper `userns` in an "
        "AppArmor profile, or as root run `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`");
  if (err == ENOSPC || err == EUSERS)
    die("setup_namespaces", "the limit on user namespaces is reached (user.max_user_namespaces is "
        "%ld, counted per user and in every ancestor namespace; at most 32 nested): %s",
        max_userns, strerror(err));
  if (err == EINVAL)
    die("setup_namespaces", "this kernel has no user namespaces (CONFIG_USER_NS): %s", strerror(err));
  die("setup_namespaces", "creating a user namespace is not permitted here (a seccomp filter, a "
      "chroot or a security module forbids it): %s", strerror(err));
}

/* unshare(CLONE_NEWUSER) can succeed and the next step still be refused: Ubuntu 24.04's AppArmor
 * restriction allows the namespace but not what it is for. */
static noreturn void explain_restricted_userns(const char *step, const char *what, int err)
{
  if (apparmor_restricts_userns())
    die(step, "%s: %s: AppArmor restricts unprivileged user namespaces "
        "(kernel.apparmor_restrict_unprivileged_userns is 1); allow spawn_helper `userns` in an "
        "AppArmor profile, or as root run `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`",
        what, strerror(err));
  die(step, "%s: %s: a security module (AppArmor, SELinux) restricts user namespaces here",
      what, strerror(err));
}

/* Maps the caller's uid and gid to themselves, so that files keep their owners. */
static void setup_userns(uid_t uid, gid_t gid)
{
  char map[64];
  /* An unprivileged process may only write gid_map once setgroups is denied. The file is missing
   * on kernels older than 3.19, which did not ask. */
  if (write_proc_file("/proc/self/setgroups", "deny") != 0 && errno != ENOENT) {
    if (errno == EPERM || errno == EACCES)
      explain_restricted_userns("setup_userns", "writing /proc/self/setgroups", errno);
    die_with_error("setup_userns", "writing /proc/self/setgroups");
  }
  snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
  if (write_proc_file("/proc/self/uid_map", map) != 0) {
    if (errno == EPERM || errno == EACCES)
      explain_restricted_userns("setup_userns", "writing /proc/self/uid_map", errno);
    die_with_error("setup_userns", "writing /proc/self/uid_map");
  }
  snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
  if (write_proc_file("/proc/self/gid_map", map) != 0) {
    if (errno == EPERM || errno == EACCES)
      explain_restricted_userns("setup_userns", "writing /proc/self/gid_map", errno);
    die_with_error("setup_userns", "writing /proc/self/gid_map");
  }
}

/* Returns whether the sandbox has its own user namespace. Without one (user namespaces disabled,
 * but the helper holds CAP_SYS_ADMIN, e.g. run by root) the other namespaces are made all the
 * same, and the target loses its capabilities before it runs. */
static bool setup_namespaces(enum tier tier)
{
  int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWIPC;
  if (tier == TIER_LOCKDOWN)
    flags |= CLONE_NEWNS | CLONE_NEWNET;
  /* Read before unshare: afterwards, until the maps are written, they read as the overflow ids. */
  uid_t uid = geteuid();
  gid_t gid = getegid();

  if (unshare(flags) == 0) {
    setup_userns(uid, gid);
    return true;
  }
  int err = errno;
  if (err != EPERM && err != EINVAL && err != ENOSPC && err != EUSERS)
    die_with_error("setup_namespaces", "unshare");
  if (!has_capability("setup_namespaces", CAP_SYS_ADMIN))
    explain_missing_userns(err);
  if (unshare(flags & ~CLONE_NEWUSER) != 0)
    die_with_error("setup_namespaces", "unshare without a user namespace (after: %s)", strerror(err));
  return false;
}

/* ---- steps 3 and 4: PID 1 ----------------------------------------------------------------- */

static void die_with_parent(const char *step)
{
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    die_with_error(step, "prctl(PR_SET_PDEATHSIG)");
}

static void mount_or_die(const char *source, const char *target, const char *type,
                         unsigned long flags, const char *options, bool userns)
{
  if (mount(source, target, type, flags, options) == 0)
    return;
  if (userns && (errno == EPERM || errno == EACCES) && apparmor_restricts_userns()) {
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "mounting %s", target);
    explain_restricted_userns("setup_mounts", what, errno);
  }
  if (type == NULL)
    die_with_error("setup_mounts", "making %s private", target);
  die_with_error("setup_mounts", "mounting %s on %s", type, target);
}

/* Whether `path` is a directory to mount over; false when it does not exist. */
static bool existing_directory(const char *path)
{
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT)
      return false;
    die_with_error("setup_mounts", "%s", path);
  }
  if (!S_ISDIR(st.st_mode))
    die("setup_mounts", "%s is not a directory", path);
  return true;
}

/* A directory gets an empty tmpfs over it; a file (a CI token file) gets /dev/null bound over
 * it, so that it reads as empty. A path that does not exist has nothing to hide. */
static void hide_path(const char *path, bool userns)
{
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT)
      return;
    die_with_error("setup_mounts", "%s", path);
  }
  if (S_ISDIR(st.st_mode))
    mount_or_die("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16k", userns);
  else if (S_ISREG(st.st_mode))
    mount_or_die("/dev/null", path, "bind", MS_BIND, NULL, userns);
  else
    die("setup_mounts", "%s is neither a directory nor a regular file: it cannot be hidden", path);
}

static void setup_mounts(const struct request *req, bool userns)
{
  /* Before anything is mounted: a shared / would carry our mounts back to the host (and on the
   * path without a user namespace, nothing else stops that). */
  mount_or_die(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, userns);
  /* The host's /proc would show every host process to the target. */
  mount_or_die("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, userns);
  mount_or_die("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", userns);
  if (existing_directory("/dev/shm"))
    mount_or_die("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", userns);
  for (size_t i = 0; i < req->hidec; i++)
    hide_path(req->hide[i], userns);
}

/* A new network namespace starts with lo down: 127.0.0.1 would not even reach itself. */
static void bring_up_loopback(void)
{
  struct ifreq ifr;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0)
    die_with_error("bring_up_loopback", "socket");
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) != 0)
    die_with_error("bring_up_loopback", "SIOCGIFFLAGS lo");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(sock, SIOCSIFFLAGS, &ifr) != 0)
    die_with_error("bring_up_loopback", "SIOCSIFFLAGS lo");
  if (close(sock) != 0)
    die_with_error("bring_up_loopback", "close");
}

static void announce_file(struct request *req, const char *name, const char *path)
{
  size_t size = strlen(name) + strlen("_FILE=") + strlen(path) + 1;
  char *entry = allocate(size);
  snprintf(entry, size, "%s_FILE=%s", name, path);
  req->envp[req->envc++] = entry;
}

/* lockdown: plain files on the sandbox's own /tmp, which no one outside it can see. */
static void deliver_files_to_tmp(struct request *req)
{
  if (mkdir(SECRETS_DIR, 0700) != 0)
    die_with_error("deliver_files", "mkdir %s", SECRETS_DIR);
  /* The caller's umask must not make the directory or the files unreadable to the target. */
  if (chmod(SECRETS_DIR, 0700) != 0)
    die_with_error("deliver_files", "chmod %s", SECRETS_DIR);
  for (size_t i = 0; i < req->filec; i++) {
    const struct secret_file *file = &req->files[i];
    char path[sizeof SECRETS_DIR + MAX_FILE_NAME_BYTES + 1];
    snprintf(path, sizeof path, "%s/%s", SECRETS_DIR, file->name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
    if (fd < 0)
      die_with_error("deliver_files", "creating %s", path);
    if (fchmod(fd, 0400) != 0)
      die_with_error("deliver_files", "chmod %s", path);
    write_all("deliver_files", fd, file->value, file->length, path);
    if (close(fd) != 0)
      die_with_error("deliver_files", "closing %s", path);
    announce_file(req, file->name, path);
  }
}

/* Other tiers share the host's /tmp, so a file there would be visible to others: a sealed memfd
 * exists only as an fd, which the target inherits. */
static void deliver_files_as_memfds(struct request *req)
{
  for (size_t i = 0; i < req->filec; i++) {
    const struct secret_file *file = &req->files[i];
    int fd = memfd_create(file->name, MFD_ALLOW_SEALING);
    if (fd < 0)
      die_with_error("deliver_files", "memfd_create %s", file->name);
    write_all("deliver_files", fd, file->value, file->length, file->name);
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
      die_with_error("deliver_files", "sealing %s", file->name);
    if (lseek(fd, 0, SEEK_SET) != 0)
      die_with_error("deliver_files", "lseek %s", file->name);
    req->memfds[req->memfdc++] = fd;
    char path[32];
    snprintf(path, sizeof path, "/dev/fd/%d", fd);
    announce_file(req, file->name, path);
  }
}

static void deliver_files(struct request *req)
{
  if (req->filec == 0)
    return;
  if (req->tier == TIER_LOCKDOWN)
    deliver_files_to_tmp(req);
  else
    deliver_files_as_memfds(req);
}

static void close_info_fd(void)
{
  if (info_fd < 0)
    return;
  if (close(info_fd) != 0)
    die_with_error("write_info", "closing the info pipe");
  info_fd = -1;
}

/* Written from the target's namespaces (PID 1 shares them all), so that vault and tests can
 * compare them with their own. */
static void write_info(enum tier tier, bool userns)
{
  static const char *const names[] = { "user", "pid", "ipc", "mnt", "net", "uts", "cgroup" };
  char line[512];
  if (info_fd < 0)
    return;
  int used = snprintf(line, sizeof line, "{\"tier\":\"%s\",\"userns\":%s,\"ns\":{",
                      tier_names[tier], userns ? "true" : "false");
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/self/ns/%s", names[i]);
    if (stat(path, &st) != 0)
      die_with_error("write_info", "stat %s", path);
    used += snprintf(line + used, sizeof line - (size_t)used, "%s\"%s\":%llu", i == 0 ? "" : ",",
                     names[i], (unsigned long long)st.st_ino);
  }
  used += snprintf(line + used, sizeof line - (size_t)used, "}}\n");
  write_all("write_info", info_fd, line, (size_t)used, "the info pipe");
  close_info_fd();
}

/* ---- step 5: the target ------------------------------------------------------------------- */

static void drop_capabilities(void)
{
  /* Also in a user namespace: there a root caller is root, and could undo the sandbox's mounts. */
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    die_with_error("drop_capabilities", "prctl(PR_SET_NO_NEW_PRIVS)");
  /* The bounding set is what a root target would get back at execve. Dropping from it needs
   * CAP_SETPCAP; a process without it has no capabilities to lose, and no_new_privs keeps
   * set-user-ID and file capabilities from granting any. */
  if (has_capability("drop_capabilities", CAP_SETPCAP)) {
    long last = read_sysctl("/proc/sys/kernel/cap_last_cap");
    if (last < 0)
      last = CAP_LAST_CAP;
    for (long cap = 0; cap <= last; cap++)
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
        die_with_error("drop_capabilities", "prctl(PR_CAPBSET_DROP, %ld)", cap);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    die_with_error("drop_capabilities", "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3];
  memset(none, 0, sizeof none);
  if (syscall(SYS_capset, &header, none) != 0)
    die_with_error("drop_capabilities", "capset");
}

static void sort_fds(int *fds, size_t count)
{
  for (size_t i = 1; i < count; i++)
    for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
      int swap = fds[j];
      fds[j] = fds[j - 1];
      fds[j - 1] = swap;
    }
}

static noreturn void exec_pinned(struct request *req)
{
  /* A script is run by its interpreter as /dev/fd/4, so fd 4 must stay open across exec; any
   * other program must not inherit it. */
  unsigned char magic[2];
  ssize_t n = pread(FD_EXECUTABLE, magic, sizeof magic, 0);
  if (n < 0)
    die_exec(EXIT_CANNOT_EXECUTE, "%s: reading fd %d", req->argv[0], FD_EXECUTABLE);
  bool script = n == 2 && magic[0] == '#' && magic[1] == '!';

  int keep[MAX_FILES + 1];
  size_t kept = 0;
  for (size_t i = 0; i < req->memfdc; i++)
    keep[kept++] = req->memfds[i];
  keep[kept++] = FD_EXECUTABLE;
  sort_fds(keep, kept);
  close_extra_fds(keep, kept);
  /* execveat needs fd 4 open either way: close-on-exec closes it right after, for a program. */
  if (fcntl(FD_EXECUTABLE, F_SETFD, script ? 0 : FD_CLOEXEC) != 0)
    die_with_error("close_extra_fds", "fcntl(%d, F_SETFD)", FD_EXECUTABLE);

  execveat(FD_EXECUTABLE, "", req->argv, req->envp, AT_EMPTY_PATH);
  if (errno == ENOENT)
    die_exec(EXIT_NOT_FOUND, "%s: its interpreter or loader was not found", req->argv[0]);
  die_exec(EXIT_CANNOT_EXECUTE, "%s", req->argv[0]);
}

static pid_t start_target(struct request *req)
{
  pid_t pid = fork();
  if (pid < 0)
    die_with_error("start_target", "fork");
  if (pid > 0)
    return pid;
  die_with_parent("start_target");
  drop_capabilities();
  if (sigprocmask(SIG_SETMASK, &original_signal_mask, NULL) != 0)
    die_with_error("start_target", "sigprocmask");
  exec_pinned(req);
}

/* ---- step 6: signals and reaping ---------------------------------------------------------- */

static void forward_signal(int signal, siginfo_t *info, void *context)
{
  int saved_errno = errno;
  (void)context;
  /* A terminal signals the whole foreground process group, the target included; forwarding that
   * too would deliver it twice. Only signals a process sent are passed on. The target may be
   * gone already (ESRCH): waiting for it reports that. */
  if (info->si_code == SI_USER || info->si_code == SI_QUEUE)
    (void)kill((pid_t)forward_to, signal);
  errno = saved_errno;
}

/* An inherited SIG_IGN for SIGCHLD would have the kernel reap our children before we could read
 * their status. */
static void allow_waiting(void)
{
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = SIG_DFL;
  if (sigaction(SIGCHLD, &action, NULL) != 0)
    die_with_error("forward_signals", "sigaction(SIGCHLD)");
}

/* Blocked from here until forward_signals has its handlers in place, so that a signal sent in
 * between is held rather than lost: it reaches the handler once the original mask is back. In
 * PID 1 and the target the block is inherited across fork, and lifted the same way. */
static void block_forwarded_signals(void)
{
  sigset_t set;
  if (sigemptyset(&set) != 0)
    die_with_error("forward_signals", "sigemptyset");
  for (size_t i = 0; i < FORWARDED_SIGNAL_COUNT; i++)
    if (sigaddset(&set, forwarded_signals[i]) != 0)
      die_with_error("forward_signals", "sigaddset");
  if (sigprocmask(SIG_BLOCK, &set, &original_signal_mask) != 0)
    die_with_error("forward_signals", "sigprocmask");
}

static void forward_signals(pid_t child)
{
  forward_to = child;
  for (size_t i = 0; i < FORWARDED_SIGNAL_COUNT; i++) {
    struct sigaction action;
    /* A signal the caller ignores stays ignored, down to the target, which inherits that. */
    if (sigaction(forwarded_signals[i], NULL, &action) != 0)
      die_with_error("forward_signals", "sigaction");
    if (action.sa_handler == SIG_IGN)
      continue;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = forward_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    if (sigfillset(&action.sa_mask) != 0)
      die_with_error("forward_signals", "sigfillset");
    if (sigaction(forwarded_signals[i], &action, NULL) != 0)
      die_with_error("forward_signals", "sigaction");
  }
  if (sigprocmask(SIG_SETMASK, &original_signal_mask, NULL) != 0)
    die_with_error("forward_signals", "sigprocmask");
}

/* Reaps every child (as PID 1 that includes orphans of the sandbox) until `child` ends, and
 * returns its status the way a shell reports it. */
static int wait_for_child(pid_t child)
{
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0 && errno == EINTR)
      continue;
    if (pid < 0)
      die_with_error("wait_for_child", "waitpid");
    if (pid != child)
      continue;
    if (WIFEXITED(status))
      return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
  }
}

static noreturn void run_pid1(struct request *req, bool userns)
{
  die_with_parent("run_pid1");
  if (req->tier == TIER_LOCKDOWN) {
    setup_mounts(req, userns);
    bring_up_loopback();
  }
  deliver_files(req);
  write_info(req->tier, userns);
  pid_t target = start_target(req);
  forget_request(req);
  forward_signals(target);
  /* When the target ends, so does the sandbox: PID 1 exiting kills whatever it left running. */
  _exit(wait_for_child(target));
}

static pid_t start_pid1(struct request *req, bool userns)
{
  pid_t pid = fork();
  if (pid < 0)
    die_with_error("run_pid1", "fork");
  if (pid == 0)
    run_pid1(req, userns);
  return pid;
}

/* ---- main --------------------------------------------------------------------------------- */

int main(void)
{
  static const int protocol_fds[] = { FD_REQUEST, FD_EXECUTABLE, FD_INFO };
  static struct request req;
  bool userns = false;
  pid_t child;

  fill_std_fds();
  close_extra_fds(protocol_fds, sizeof protocol_fds / sizeof protocol_fds[0]);
  check_protocol_fds();
  die_with_parent("read_request");
  /* Namespaces before any secret is read: writing uid_map needs a dumpable process. */
  enum tier tier = read_request_header();
  if (tier != TIER_NONE)
    userns = setup_namespaces(tier);
  protect_memory();
  read_request(&req, tier);
  allow_waiting();
  block_forwarded_signals();

  if (tier == TIER_NONE) {
    deliver_files(&req);
    write_info(tier, userns);
    child = start_target(&req);
  } else {
    child = start_pid1(&req, userns);
  }
  forget_request(&req);
  close_info_fd();
  forward_signals(child);
  return wait_for_child(child);
}
