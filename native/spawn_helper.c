/*
 * spawn_helper: runs one pinned program inside the sandbox tier `vault exec` asked for, and hands
 * it the secrets that arrived on a pipe. docs/helper-protocol.md is the contract; main() follows
 * its steps from top to bottom, one function per step.
 *
 * Processes, for the hardened and lockdown tiers (tier none has no PID 1):
 *
 *   vault ─ spawn_helper ─ PID 1 of the new PID namespace (reaper) ─ target (PID 2, own session)
 *
 * The helper stays in the caller's session and relays the target's terminal and, when vault masks
 * output, its stdout and stderr; PID 1 builds lockdown's root and reaps; the target runs in a
 * session of its own, so it can never reach the caller's terminal.
 *
 * The helper is single-threaded and never returns to a caller on error: each failure prints one
 * line "vault: <step>: <reason>[: <strerror of the call that failed>]" on stderr and exits 125,
 * so that vault can tell a sandbox that could not be set up (125) from a target that ran and
 * failed. The caller's terminal is put back as it was first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <linux/landlock.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_TIMED_OUT = 124, EXIT_SETUP_FAILED = 125, EXIT_CANNOT_EXECUTE = 126, EXIT_NOT_FOUND = 127 };
enum { FD_REQUEST = 3, FD_EXECUTABLE = 4, FD_INFO = 5, FD_SCRIPT = 6, FD_SYNC = 7 };
enum tier { TIER_NONE, TIER_HARDENED, TIER_LOCKDOWN };

/* The header flags of docs/helper-protocol.md. */
#define FLAG_PTY 1u            /* fd 0 is the caller's terminal: the target gets a pty of its own */
#define FLAG_PTY_STDOUT 2u     /* the target's stdout is that pty */
#define FLAG_PTY_STDERR 4u     /* the target's stderr is that pty */
#define FLAG_RELAY_STDOUT 8u   /* the target's stdout is a pipe the helper copies to its own fd 1 */
#define FLAG_RELAY_STDERR 16u  /* the same for stderr and fd 2 */
#define FLAG_CALLER_RESTORES_TERMINAL 32u  /* vault still writes masked output: it restores the modes */
#define FLAG_NET_HOST 64u      /* lockdown keeps the host's network namespace */
#define FLAG_NET_EGRESS 128u   /* lockdown's own network, with the request's nftables ruleset and a user-mode stack */
#define FLAG_RELAY_ONE 256u    /* stdout and stderr are one relayed pipe, copied to fd 1 (the caller's 1 and 2 are one place) */
#define KNOWN_FLAGS 511u

/* The kinds of a lockdown mount entry. */
enum mount_kind {
  MOUNT_READ_ONLY = 1,   /* the host path, bound read-only */
  MOUNT_READ_WRITE = 2,  /* the host path, bound read-write (and writable under Landlock) */
  MOUNT_EMPTY_DIR = 3,   /* an empty private directory (a tmpfs, 0700) */
  MOUNT_SYMLINK = 4,     /* a symbolic link to `target` */
  MOUNT_SCRIPT_COPY = 5, /* the script's path: a read-only copy of fd 6 (hardened and lockdown) */
  MOUNT_CONTENT = 6,     /* a read-only file holding `target` (the sandbox's /etc/hosts) */
  MOUNT_HIDDEN = 100,    /* internal: a path of the hide list (empty tmpfs or /dev/null) */
};

/* The limits of docs/helper-protocol.md. */
#define HEADER_BYTES 20u
#define MAX_REQUEST_BYTES (64u << 20)
#define MAX_ARGS 4096u
#define MAX_ENV 4096u
#define MAX_FILES 256u
#define MAX_HIDE 16u
#define MAX_MOUNTS 64u
#define MAX_FILE_VALUE_BYTES (1u << 20)
#define MAX_FILE_NAME_BYTES 128u
#define MAX_CONTENT_BYTES (64u << 10)
#define MAX_RULESET_BYTES (64u << 10)

#define SECRETS_DIR "/tmp/.vault-secrets"
/* Where lockdown's new root is assembled before pivot_root: a tmpfs over /tmp of the sandbox's own
 * mount namespace. Every host path it needs is opened before that tmpfs hides the host's /tmp. */
#define STAGING "/tmp"
#define SANDBOX_HOSTNAME "sealvault"
/* Output a target wrote before it exited is still copied after the exit, up to this much more
 * than was waiting then: a background child in tier none that keeps writing cannot hold vault. */
#define DRAIN_SLACK_BYTES (64u << 10)
#define RELAY_BUFFER_BYTES (64u << 10)

static const char *const tier_names[] = { "none", "hardened", "lockdown" };

struct secret_file {
  char *name;
  char *path;  /* lockdown: where the grant put it; "" for SECRETS_DIR/name */
  unsigned char *value;
  size_t length;
};

struct mount_entry {
  enum mount_kind kind;
  char *path;
  char *target;  /* MOUNT_SYMLINK: the link's target; MOUNT_CONTENT: the file's bytes */
  int tree;      /* a detached clone of the source (open_tree), or -1 */
};

struct request {
  enum tier tier;
  uint32_t flags;
  uint32_t timeout_ms;     /* 0: none */
  uint32_t kill_after_ms;  /* SIGKILL this long after the timeout's SIGTERM */
  char *ruleset;   /* FLAG_NET_EGRESS: nft -f input */
  char *nft_path;  /* FLAG_NET_EGRESS: the nft(8) that loads it */
  char **argv;  /* NULL-terminated */
  char **envp;  /* NULL-terminated, with room for one NAME_FILE=PATH per file */
  size_t envc;
  struct secret_file files[MAX_FILES];
  size_t filec;
  char *hide[MAX_HIDE];
  size_t hidec;
  struct mount_entry mounts[MAX_MOUNTS + MAX_HIDE];
  size_t mountc;
  int memfds[MAX_FILES];  /* kept open across exec: the target reads them as /dev/fd/N */
  size_t memfdc;
};

/* The target's fds 0, 1 and 2 as the helper holds them, and the helper's ends of the relays. */
struct sandbox_io {
  int target[3];   /* what becomes the target's 0, 1, 2 */
  int master;      /* the pty's master, or -1 */
  char slave_path[64];
  int relay[3];    /* read ends of the stdout/stderr pipes (index 1, 2), or -1 */
};

static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
#define FORWARDED_SIGNAL_COUNT (sizeof forwarded_signals / sizeof forwarded_signals[0])

/* The mask the helper started with, which the target gets back. */
static sigset_t original_signal_mask;
/* The one child signals are passed on to; set before any handler can run. */
static volatile sig_atomic_t forward_to;
/* -1 when vault did not open an info pipe. */
static int info_fd = -1;
/* The sealed copy of a script that the interpreter (fd 4) runs; -1 when fd 6 is not open. */
static int script_fd = -1;
/* The caller's terminal settings while the helper holds it in raw mode; not put back by the
 * helper when vault, which still writes masked output to it, does that itself. */
static struct termios saved_terminal;
static bool terminal_is_raw;
static bool caller_restores_terminal;

/* ---- errors ------------------------------------------------------------------------------- */

static void restore_terminal(void)
{
  if (!terminal_is_raw || caller_restores_terminal)
    return;
  terminal_is_raw = false;
  /* Best effort: this also runs on the way out of a failure. */
  (void)tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_terminal);
}

static noreturn void fail(int status, const char *step, int err, const char *fmt, va_list args)
{
  char reason[768];
  char line[1024];
  restore_terminal();
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

/* `err` is the errno of the call that failed, taken by the caller before anything else could
 * overwrite it. */
static noreturn void die_errno(const char *step, int err, const char *fmt, ...)
{
  va_list args;
  va_start(args, fmt);
  fail(EXIT_SETUP_FAILED, step, err, fmt, args);
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

/* Waits until `fd` can take more (it may be non-blocking: vault's own stdio often is). */
static int wait_writable(int fd)
{
  struct pollfd p = { .fd = fd, .events = POLLOUT };
  while (poll(&p, 1, -1) < 0)
    if (errno != EINTR)
      return -1;
  return 0;
}

/* Writes all of `data`. Returns 0, or -1 with errno set (EPIPE and the like: the reader left). */
static int write_fully(int fd, const void *data, size_t length)
{
  const unsigned char *at = data;
  while (length > 0) {
    ssize_t written = write(fd, at, length);
    if (written < 0 && errno == EINTR)
      continue;
    if (written < 0 && errno == EAGAIN) {
      if (wait_writable(fd) != 0)
        return -1;
      continue;
    }
    if (written < 0)
      return -1;
    at += written;
    length -= (size_t)written;
  }
  return 0;
}

static void write_all(const char *step, int fd, const void *data, size_t length, const char *what)
{
  if (write_fully(fd, data, length) != 0)
    die_with_error(step, "writing %s", what);
}

/* A number from /proc/sys, or -1 where the file is missing or unreadable: the callers use it
 * only to explain a failure or to pick a default. Leaves errno as it found it, so that it can be
 * called while explaining another call's errno. */
static long read_sysctl(const char *path)
{
  int saved_errno = errno;
  char text[32];
  long value = -1;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, text, sizeof text - 1);
    (void)close(fd);
    if (n > 0) {
      text[n] = '\0';
      char *end;
      long parsed = strtol(text, &end, 10);
      if (end != text)
        value = parsed;
    }
  }
  errno = saved_errno;
  return value;
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

static long monotonic_ms(void)
{
  struct timespec now;
  if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
    die_with_error("relay", "clock_gettime");
  return (long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void set_nonblocking(const char *step, int fd)
{
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    die_with_error(step, "making fd %d non-blocking", fd);
}

static void close_or_die(const char *step, int fd)
{
  if (fd >= 0 && close(fd) != 0)
    die_with_error(step, "close(%d)", fd);
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

static void sort_fds(int *fds, size_t count)
{
  for (size_t i = 1; i < count; i++)
    for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
      int swap = fds[j];
      fds[j] = fds[j - 1];
      fds[j - 1] = swap;
    }
}

/* Closes every fd above 2 except those in `keep` (any order; negative entries are ignored). */
static void close_extra_fds(const int *keep, size_t count)
{
  int sorted[MAX_FILES + 8];
  size_t n = 0;
  for (size_t i = 0; i < count && n < sizeof sorted / sizeof sorted[0]; i++)
    if (keep[i] > 2)
      sorted[n++] = keep[i];
  sort_fds(sorted, n);
  unsigned int next = 3;
  for (size_t i = 0; i < n; i++) {
    if (sorted[i] > (int)next)
      close_fd_range(next, (unsigned int)sorted[i] - 1);
    if (sorted[i] >= (int)next)
      next = (unsigned int)sorted[i] + 1;
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
  struct stat script;
  if (fstat(FD_SCRIPT, &script) == 0) {
    if (!S_ISREG(script.st_mode))
      die("read_request", "the script (fd %d) is not a regular file", FD_SCRIPT);
    script_fd = FD_SCRIPT;
  } else if (errno != EBADF) {
    die_with_error("read_request", "the script (fd %d)", FD_SCRIPT);
  }
}

/* ---- step 0: who runs the helper ------------------------------------------------------------ */

/* Installed set-user-ID (say, root's), the helper would run every target with the owner's
 * privileges: bubblewrap's set-uid install did exactly that. It refuses instead. */
static void refuse_set_id(void)
{
  if (getauxval(AT_SECURE) != 0 || getuid() != geteuid() || getgid() != getegid())
    die("refuse_set_id", "spawn_helper is running set-user-ID or set-group-ID, which would run targets "
        "with its owner's privileges; remove the bits with `chmod u-s,g-s` on it");
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

/* An absolute path without empty, "." or ".." components and without a trailing slash: the
 * helper builds mount points from it component by component. */
static void check_path(const char *path, const char *what)
{
  if (path[0] != '/')
    die("read_request", "%s \"%s\" is not an absolute path", what, path);
  if (strcmp(path, "/") == 0)
    return;
  for (const char *c = path + 1;; ) {
    const char *slash = strchr(c, '/');
    size_t n = slash == NULL ? strlen(c) : (size_t)(slash - c);
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
      die("read_request", "%s \"%s\" has an empty, \".\" or \"..\" component", what, path);
    if (slash == NULL)
      break;
    c = slash + 1;
  }
}

static char *take_path(struct cursor *cursor, const char *what)
{
  char *path = take_string(cursor, PATH_MAX, what);
  check_path(path, what);
  return path;
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

/* Magic, tier, flags and timeout: all that setting up namespaces needs, and no secret. */
static void read_request_header(struct request *req)
{
  unsigned char header[HEADER_BYTES];
  size_t length = read_up_to(header, sizeof header);
  if (length < 4 || memcmp(header, "SVH3", 4) != 0)
    die("read_request", "the request does not start with SVH3 (a vault and a helper of different versions?)");
  struct cursor cursor = { header + 4, length - 4 };
  uint32_t tier = take_u32(&cursor);
  if (tier > TIER_LOCKDOWN)
    die("read_request", "unknown tier %u", tier);
  req->tier = (enum tier)tier;
  req->flags = take_u32(&cursor);
  if ((req->flags & ~KNOWN_FLAGS) != 0)
    die("read_request", "unknown flags 0x%x", req->flags & ~KNOWN_FLAGS);
  if ((req->flags & (FLAG_PTY_STDOUT | FLAG_PTY_STDERR)) != 0 && (req->flags & FLAG_PTY) == 0)
    die("read_request", "a stream on the pty was asked for without a pty");
  if ((req->flags & FLAG_PTY_STDOUT) && (req->flags & FLAG_RELAY_STDOUT))
    die("read_request", "stdout cannot be both the pty and a relayed pipe");
  if ((req->flags & FLAG_PTY_STDERR) && (req->flags & FLAG_RELAY_STDERR))
    die("read_request", "stderr cannot be both the pty and a relayed pipe");
  if ((req->flags & FLAG_RELAY_ONE) &&
      ((req->flags & FLAG_RELAY_STDOUT) == 0 || (req->flags & (FLAG_RELAY_STDERR | FLAG_PTY_STDERR)) != 0))
    die("read_request", "one relayed pipe for stdout and stderr needs stdout relayed, and stderr neither relayed "
        "nor the pty");
  if ((req->flags & (FLAG_NET_HOST | FLAG_NET_EGRESS)) != 0 && req->tier != TIER_LOCKDOWN)
    die("read_request", "a network mode was asked for in tier %s: only lockdown has a network of its own", tier_names[req->tier]);
  if ((req->flags & FLAG_NET_HOST) && (req->flags & FLAG_NET_EGRESS))
    die("read_request", "the network cannot be both the host's and an egress allow-list");
  req->timeout_ms = take_u32(&cursor);
  req->kill_after_ms = take_u32(&cursor);
}

static void parse_mounts(struct cursor *in, struct request *req)
{
  uint32_t count = take_count(in, MAX_MOUNTS, "mount entries");
  for (uint32_t i = 0; i < count; i++) {
    struct mount_entry *entry = &req->mounts[req->mountc++];
    uint32_t kind = take_u32(in);
    if (kind < MOUNT_READ_ONLY || kind > MOUNT_CONTENT)
      die("read_request", "unknown mount kind %u", kind);
    if (req->tier == TIER_NONE || (req->tier == TIER_HARDENED && kind != MOUNT_SCRIPT_COPY))
      die("read_request", "tier %s takes no mount entry of kind %u", tier_names[req->tier], kind);
    if (kind == MOUNT_SCRIPT_COPY && script_fd < 0)
      die("read_request", "a script copy was asked for, but fd %d (the script) is not open", FD_SCRIPT);
    entry->kind = (enum mount_kind)kind;
    entry->path = take_path(in, "a mount path");
    entry->target = take_string(in, kind == MOUNT_CONTENT ? MAX_CONTENT_BYTES : PATH_MAX, "a symlink target or a content");
    entry->tree = -1;
    if (strcmp(entry->path, "/") == 0)
      die("read_request", "a mount entry cannot replace /");
    if (entry->kind != MOUNT_CONTENT && (entry->kind == MOUNT_SYMLINK) != (entry->target[0] != '\0'))
      die("read_request", "%s: only a symlink entry has a target", entry->path);
  }
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
    file->path = take_string(in, PATH_MAX, "a file path");
    if (file->path[0] != '\0')
      check_path(file->path, "a file path");
    if (file->path[0] != '\0' && req->tier != TIER_LOCKDOWN)
      die("read_request", "%s: a file at a path of its own needs lockdown's own root", file->path);
    file->value = (unsigned char *)take_bytes(in, &file->length, MAX_FILE_VALUE_BYTES, "a file value");
  }

  req->hidec = take_count(in, MAX_HIDE, "hidden paths");
  for (size_t i = 0; i < req->hidec; i++)
    req->hide[i] = take_path(in, "hidden path");

  parse_mounts(in, req);

  if (in->left != 0)
    die("read_request", "%zu unexpected bytes after the end of the request", in->left);
}

static void read_request(struct request *req)
{
  /* Reserved, not committed: only the pages the request fills are used, and there is no
   * realloc to leave stale copies of secrets behind. One byte more than allowed tells a request
   * that is too large. */
  size_t capacity = (size_t)MAX_REQUEST_BYTES - HEADER_BYTES + 1;
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
static bool setup_namespaces(enum tier tier, uint32_t request_flags)
{
  /* hardened has a mount namespace only to show the script's sealed copy at its own path. The PID
   * namespace comes later (enter_pid_namespace): nft, run before it, must not become its PID 1. */
  int flags = CLONE_NEWUSER | CLONE_NEWIPC | CLONE_NEWNS;
  if (tier == TIER_LOCKDOWN)
    flags |= CLONE_NEWUTS | CLONE_NEWCGROUP | ((request_flags & FLAG_NET_HOST) ? 0 : CLONE_NEWNET);
  /* Read before unshare: afterwards, until the maps are written, they read as the overflow ids. */
  uid_t uid = geteuid();
  gid_t gid = getegid();

  if (unshare(flags) == 0) {
    setup_userns(uid, gid);
    return true;
  }
  int err = errno;
  if (err != EPERM && err != EINVAL && err != ENOSPC && err != EUSERS)
    die_errno("setup_namespaces", err, "unshare");
  if (!has_capability("setup_namespaces", CAP_SYS_ADMIN))
    explain_missing_userns(err);
  if (unshare(flags & ~CLONE_NEWUSER) != 0)
    die_with_error("setup_namespaces", "unshare without a user namespace (after: %s)", strerror(err));
  return false;
}

/* ---- step 2b (lockdown with an egress allow-list): the network's rules, then its stack ------- */

/* A length-prefixed string of the network section, which follows the header (docs/helper-protocol.md). */
static char *read_network_string(uint32_t limit, const char *what)
{
  unsigned char prefix[4];
  struct cursor length = { prefix, read_up_to(prefix, sizeof prefix) };
  uint32_t n = take_u32(&length);  /* dies when the request ends early */
  if (n > limit)
    die("read_request", "%s is longer than %u bytes", what, limit);
  char *text = allocate((size_t)n + 1);
  if (read_up_to((unsigned char *)text, n) != n)
    die("read_request", "the request ends early");
  text[n] = '\0';
  if (memchr(text, '\0', n) != NULL)
    die("read_request", "%s contains a NUL byte", what);
  return text;
}

static void read_network(struct request *req)
{
  req->ruleset = read_network_string(MAX_RULESET_BYTES, "the ruleset");
  req->nft_path = read_network_string(PATH_MAX, "nft's path");
  if (req->nft_path[0] != '/')
    die("read_request", "nft's path \"%s\" is not absolute", req->nft_path);
}

/* The ruleset sends a listed 127.0.0.1:PORT to the stack's gateway; such a packet may leave lo only
 * with route_localnet (Documentation/networking/ip-sysctl.rst). /proc/sys/net is the writer's own
 * network namespace, the sandbox's since unshare. */
static void allow_route_localnet(void)
{
  if (write_proc_file("/proc/sys/net/ipv4/conf/all/route_localnet", "1\n") != 0)
    die_with_error("setup_network", "writing /proc/sys/net/ipv4/conf/all/route_localnet");
}

/* In the child that runs nft: CAP_NET_ADMIN alone, raised as an ambient capability so that it
 * survives execve for a uid other than 0 (capabilities(7), "Ambient capability set"). */
static void keep_only_net_admin(void)
{
  struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  memset(data, 0, sizeof data);
  data[CAP_TO_INDEX(CAP_NET_ADMIN)].permitted = CAP_TO_MASK(CAP_NET_ADMIN);
  data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective = CAP_TO_MASK(CAP_NET_ADMIN);
  data[CAP_TO_INDEX(CAP_NET_ADMIN)].inheritable = CAP_TO_MASK(CAP_NET_ADMIN);
  if (syscall(SYS_capset, &header, data) != 0)
    die_with_error("setup_network", "capset CAP_NET_ADMIN");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN, 0, 0) != 0)
    die_with_error("setup_network", "prctl(PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN)");
}

/* nft(8) loads the ruleset into the sandbox's network namespace, reading it on its stdin, before
 * there is any route out: the rules hold from the first packet. */
static void load_ruleset(const struct request *req)
{
  int in[2];
  if (pipe2(in, O_CLOEXEC) != 0)
    die_with_error("setup_network", "pipe");
  pid_t pid = fork();
  if (pid < 0)
    die_with_error("setup_network", "fork");
  if (pid == 0) {
    if (dup2(in[0], STDIN_FILENO) != STDIN_FILENO)
      die_with_error("setup_network", "dup2 of the ruleset pipe");
    /* nft gets the ruleset and the caller's stdout and stderr for its messages, nothing else: not
     * the request pipe, whose body (the secrets) is still unread */
    close_extra_fds(NULL, 0);
    keep_only_net_admin();
    char *const argv[] = { "nft", "-f", "/dev/stdin", NULL };
    char *const envp[] = { NULL };
    execve(req->nft_path, argv, envp);
    die_with_error("setup_network", "executing %s", req->nft_path);
  }
  close_or_die("setup_network", in[0]);
  write_all("setup_network", in[1], req->ruleset, strlen(req->ruleset), "the ruleset");
  close_or_die("setup_network", in[1]);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      die_with_error("setup_network", "waitpid for nft");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("setup_network", "%s could not load the egress ruleset (status %d); nothing ran", req->nft_path, status);
}

/* vault attaches the user-mode stack (slirp4netns) to this namespace from outside, while the
 * helper is still dumpable and its /proc/PID/ns files can be opened: "R" on fd 7 says the
 * namespace and its rules are ready, "G" comes back once the stack is up. Anything else, or vault
 * going away, ends the run before a secret is read. */
static void wait_for_stack(void)
{
  write_all("setup_network", FD_SYNC, "R", 1, "the sync socket");
  char answer = 0;
  ssize_t n;
  do
    n = read(FD_SYNC, &answer, 1);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    die_with_error("setup_network", "reading the sync socket (fd %d)", FD_SYNC);
  if (n == 0 || answer != 'G')
    die("setup_network", "the user-mode network stack did not start, so nothing ran");
  close_or_die("setup_network", FD_SYNC);
}

/* The first child forked after this is PID 1 of a new PID namespace: PID 1 of start_pid1. */
static void enter_pid_namespace(void)
{
  if (unshare(CLONE_NEWPID) != 0)
    die_with_error("setup_namespaces", "unshare(CLONE_NEWPID)");
}

static void setup_network(struct request *req)
{
  if ((req->flags & FLAG_NET_EGRESS) == 0) {
    if (fcntl(FD_SYNC, F_GETFD) >= 0)
      close_or_die("setup_network", FD_SYNC);
    return;
  }
  read_network(req);
  allow_route_localnet();
  load_ruleset(req);
  wait_for_stack();
}

/* ---- step 3: what every process of the sandbox inherits ------------------------------------ */

/* A target's core dump would hold the secrets in its environment. Hard limit too: the target
 * cannot raise it again without CAP_SYS_RESOURCE. */
static void forbid_core_dumps(void)
{
  struct rlimit none = { 0, 0 };
  if (setrlimit(RLIMIT_CORE, &none) != 0)
    die_with_error("limit_core_dumps", "setrlimit(RLIMIT_CORE)");
}

/* The caller's session keyring (keyctl(1) @s) may hold their keys: the sandbox gets a new, empty
 * anonymous one instead (keyrings(7), KEYCTL_JOIN_SESSION_KEYRING with a NULL name). */
static void join_fresh_session_keyring(void)
{
  if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) >= 0)
    return;
  if (errno == ENOSYS)
    return;  /* a kernel without keys has no keyring to protect */
  if (errno == EDQUOT)
    die_with_error("join_session_keyring", "the kernel's key quota of this user is used up "
                   "(kernel.keys.maxkeys); the sandbox cannot get a keyring of its own");
  die_with_error("join_session_keyring", "keyctl(KEYCTL_JOIN_SESSION_KEYRING)");
}

/* ---- step 4: the target's stdin, stdout and stderr ---------------------------------------- */

/* A pty whose slave will be the target's controlling terminal, set up like the caller's terminal
 * (fd 0): same modes, same window size, as sudo's use_pty and ssh -t do. */
static void open_pty(struct sandbox_io *io)
{
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    die_with_error("open_pty", "posix_openpt");
  if (grantpt(master) != 0 || unlockpt(master) != 0)
    die_with_error("open_pty", "unlocking the pty");
  if (ptsname_r(master, io->slave_path, sizeof io->slave_path) != 0)
    die_with_error("open_pty", "ptsname");
  int slave = open(io->slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0)
    die_with_error("open_pty", "opening %s", io->slave_path);
  struct termios modes;
  struct winsize size;
  if (tcgetattr(STDIN_FILENO, &modes) != 0)
    die_with_error("open_pty", "reading the terminal's modes (fd 0)");
  if (tcsetattr(slave, TCSANOW, &modes) != 0)
    die_with_error("open_pty", "setting the pty's modes");
  if (ioctl(STDIN_FILENO, TIOCGWINSZ, &size) == 0 && ioctl(slave, TIOCSWINSZ, &size) != 0)
    die_with_error("open_pty", "setting the pty's window size");
  set_nonblocking("open_pty", master);
  io->master = master;
  io->target[0] = slave;
}

/* A real pipe (never a socketpair: `echo x > /dev/stderr` must be able to reopen it) whose read
 * end the helper copies to its own fd `stream`. */
static void open_relay(struct sandbox_io *io, int stream)
{
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0)
    die_with_error("open_relay", "pipe2");
  set_nonblocking("open_relay", ends[0]);
  io->relay[stream] = ends[0];
  io->target[stream] = ends[1];
}

/* An open directory is a way out of any root: fchdir(0) and "..". Not as a stream of lockdown. */
static void refuse_directory_streams(const struct request *req)
{
  if (req->tier != TIER_LOCKDOWN)
    return;
  for (int fd = 0; fd <= 2; fd++) {
    struct stat st;
    if (fstat(fd, &st) != 0)
      die_with_error("setup_stdio", "fstat(%d)", fd);
    if (S_ISDIR(st.st_mode))
      die("setup_stdio", "%s is a directory, which would let the program out of lockdown's root; "
          "give it a file, a pipe or a terminal", fd == 0 ? "stdin" : fd == 1 ? "stdout" : "stderr");
  }
}

static void setup_stdio(const struct request *req, struct sandbox_io *io)
{
  refuse_directory_streams(req);
  for (int fd = 0; fd <= 2; fd++) {
    io->target[fd] = fd;
    io->relay[fd] = -1;
  }
  io->master = -1;
  io->slave_path[0] = '\0';
  if (req->flags & FLAG_PTY)
    open_pty(io);
  if (req->flags & FLAG_PTY_STDOUT)
    io->target[1] = io->target[0];
  if (req->flags & FLAG_PTY_STDERR)
    io->target[2] = io->target[0];
  if (req->flags & FLAG_RELAY_STDOUT)
    open_relay(io, 1);
  if (req->flags & FLAG_RELAY_STDERR)
    open_relay(io, 2);
  /* as `2>&1` would: one pipe, so what the target wrote reaches fd 1 in the order it wrote it */
  if (req->flags & FLAG_RELAY_ONE)
    io->target[2] = io->target[1];
}

/* In a child: the target's streams become its 0, 1 and 2, and nothing of the relays stays open
 * (a read end kept here would keep a target from getting SIGPIPE). */
static void attach_target_stdio(const struct sandbox_io *io)
{
  int copies[3];
  /* Duplicated above 2 first, so that moving one into place cannot close another. */
  for (int fd = 0; fd <= 2; fd++) {
    copies[fd] = fcntl(io->target[fd], F_DUPFD_CLOEXEC, 3);
    if (copies[fd] < 0)
      die_with_error("attach_stdio", "dup(%d)", io->target[fd]);
  }
  for (int fd = 0; fd <= 2; fd++) {
    if (dup2(copies[fd], fd) != fd)
      die_with_error("attach_stdio", "dup2(%d, %d)", copies[fd], fd);
    close_or_die("attach_stdio", copies[fd]);
  }
  for (int fd = 0; fd <= 2; fd++) {
    if (io->target[fd] > 2)
      (void)close(io->target[fd]);  /* the slave, or the one relayed pipe, may be listed twice */
    if (io->relay[fd] >= 0)
      close_or_die("attach_stdio", io->relay[fd]);
  }
  close_or_die("attach_stdio", io->master);
}

/* In the helper, once the child holds them: only the child keeps the target's ends. */
static void release_target_stdio(struct sandbox_io *io)
{
  int closed[3];
  size_t count = 0;
  for (int fd = 0; fd <= 2; fd++) {
    bool again = false;
    for (size_t i = 0; i < count; i++)
      again = again || closed[i] == io->target[fd];
    if (io->target[fd] > 2 && !again) {
      close_or_die("attach_stdio", io->target[fd]);
      closed[count++] = io->target[fd];
    }
    io->target[fd] = fd;
  }
}

/* ---- step 5 (lockdown, in PID 1): a new root of read-only system binds ---------------------- */

static void mount_or_die(const char *source, const char *target, const char *type,
                         unsigned long flags, const char *options, bool userns)
{
  if (mount(source, target, type, flags, options) == 0)
    return;
  int err = errno;
  if (userns && (err == EPERM || err == EACCES) && apparmor_restricts_userns()) {
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "mounting %s", target);
    explain_restricted_userns("setup_mounts", what, err);
  }
  if (type == NULL)
    die_errno("setup_mounts", err, "making %s private", target);
  die_errno("setup_mounts", err, "mounting %s on %s", type, target);
}

static int open_tree_clone(const char *step, int dirfd, const char *path, unsigned int extra)
{
  int tree = open_tree(dirfd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | extra);
  if (tree < 0)
    die_with_error(step, "open_tree(%s)", path[0] == '\0' ? "fd" : path);
  return tree;
}

static void set_mount_attributes(const char *step, int tree, uint64_t attributes, const char *what)
{
  struct mount_attr attr = { .attr_set = attributes };
  if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    if (errno == ENOSYS)
      die_with_error(step, "making %s read-only needs mount_setattr (Linux 5.12 or newer); "
                     "lockdown cannot be given on this kernel", what);
    die_with_error(step, "mount_setattr(%s)", what);
  }
}

static noreturn void explain_proc_refused(const char *step, int err)
{
  die_errno(step, err, "a new /proc is refused: an outer sandbox or container masks parts of the host's /proc "
            "(a mount over /proc/kcore or /proc/sys), and the kernel will not mount a /proc that would show "
            "them; run vault outside that sandbox, or use tier hardened");
}

/* A fresh instance of `type` (tmpfs, proc, devpts) as a detached mount. `options` holds
 * key/value pairs for fsconfig(2), NULL-terminated. */
static int new_filesystem(const char *step, const char *type, const char *const *options, uint64_t attributes)
{
  int context = fsopen(type, FSOPEN_CLOEXEC);
  if (context < 0)
    die_with_error(step, "fsopen(%s)", type);
  for (size_t i = 0; options != NULL && options[i] != NULL; i += 2)
    if (fsconfig(context, FSCONFIG_SET_STRING, options[i], options[i + 1], 0) != 0)
      die_with_error(step, "fsconfig(%s, %s=%s)", type, options[i], options[i + 1]);
  if (fsconfig(context, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
    int err = errno;
    if (strcmp(type, "proc") == 0 && err == EPERM)
      explain_proc_refused(step, err);
    die_errno(step, err, "creating a %s instance", type);
  }
  int mounted = fsmount(context, FSMOUNT_CLOEXEC, (unsigned int)attributes);
  if (mounted < 0) {
    int err = errno;
    if (strcmp(type, "proc") == 0 && err == EPERM)
      explain_proc_refused(step, err);
    die_errno(step, err, "fsmount(%s)", type);
  }
  close_or_die(step, context);
  return mounted;
}

static int new_tmpfs(const char *step, const char *mode, uint64_t attributes)
{
  const char *const options[] = { "mode", mode, NULL };
  return new_filesystem(step, "tmpfs", options, attributes);
}

static void attach(const char *step, int tree, int target, const char *what)
{
  if (move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
    die_with_error(step, "attaching %s", what);
  close_or_die(step, tree);
}

/* The filesystems lockdown mounts itself (the staging root, /tmp, /dev, empty directories):
 * directories on them may be created; inside a bind of a host path nothing is created. */
static dev_t own_filesystems[MAX_MOUNTS + 8];
static size_t own_filesystem_count;

static void remember_own_filesystem(const char *step, int fd)
{
  struct stat st;
  if (fstat(fd, &st) != 0)
    die_with_error(step, "fstat");
  if (own_filesystem_count < sizeof own_filesystems / sizeof own_filesystems[0])
    own_filesystems[own_filesystem_count++] = st.st_dev;
}

static bool on_own_filesystem(int fd)
{
  struct stat st;
  if (fstat(fd, &st) != 0)
    return false;
  for (size_t i = 0; i < own_filesystem_count; i++)
    if (own_filesystems[i] == st.st_dev)
      return true;
  return false;
}

/* openat2 without following any symlink and without leaving `dirfd`: neither the caller nor the
 * target can redirect a mount with a symlink planted in a path. */
static int open_beneath(int dirfd, const char *path, int flags)
{
  struct open_how how = { .flags = (uint64_t)(flags | O_CLOEXEC),
                          .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH };
  return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* What mount_point makes when the path is missing from the sandbox's own directories. */
enum point_kind { MAKE_DIRECTORY, MAKE_FILE, EXISTING_ONLY };

/* Where `path` (absolute, as the target will see it) lies inside the new root: an O_PATH fd of
 * the mount point, made where the new root is the sandbox's own, or -1 when it does not exist and
 * cannot be made (it lies inside a bind of a host path, or `kind` is EXISTING_ONLY). */
static int mount_point(int root, const char *path, enum point_kind kind)
{
  bool directory = kind == MAKE_DIRECTORY;
  char part[PATH_MAX];
  int at = fcntl(root, F_DUPFD_CLOEXEC, 3);
  if (at < 0)
    die_with_error("setup_mounts", "dup");
  for (const char *c = path + 1; *c != '\0'; ) {
    const char *slash = strchr(c, '/');
    size_t n = slash == NULL ? strlen(c) : (size_t)(slash - c);
    bool last = slash == NULL;
    memcpy(part, c, n);
    part[n] = '\0';
    int next = open_beneath(at, part, O_PATH | (last && !directory ? 0 : O_DIRECTORY));
    if (next < 0 && errno == ENOENT && on_own_filesystem(at) && kind != EXISTING_ONLY) {
      int made = last && !directory ? openat(at, part, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644)
                                    : mkdirat(at, part, 0755);
      if (made < 0)
        die_with_error("setup_mounts", "creating %s in the new root", path);
      if (last && !directory)
        close_or_die("setup_mounts", made);
      next = open_beneath(at, part, O_PATH | (last && !directory ? 0 : O_DIRECTORY));
    }
    close_or_die("setup_mounts", at);
    if (next < 0) {
      if (errno == ENOENT)
        return -1;
      die_with_error("setup_mounts", "%s in the new root (a symlink where a directory was expected?)", path);
    }
    at = next;
    c = last ? c + n : slash + 1;
  }
  return at;
}

static bool sorts_before(const char *a, const char *b)
{
  /* Component order: "/a" < "/a/b" < "/a-b", so that every parent is mounted before its children. */
  for (; *a != '\0' && *a == *b; a++, b++)
    ;
  unsigned char x = *a == '/' ? 1 : (unsigned char)*a;
  unsigned char y = *b == '/' ? 1 : (unsigned char)*b;
  return x < y;
}

/* The plan's entries and the hidden paths, parents first; at one path, the plan's order. */
static void order_mounts(struct request *req)
{
  for (size_t i = 0; i < req->hidec; i++)
    req->mounts[req->mountc++] = (struct mount_entry){ MOUNT_HIDDEN, req->hide[i], "", -1 };
  for (size_t i = 1; i < req->mountc; i++)
    for (size_t j = i; j > 0 && sorts_before(req->mounts[j].path, req->mounts[j - 1].path); j--) {
      struct mount_entry swap = req->mounts[j];
      req->mounts[j] = req->mounts[j - 1];
      req->mounts[j - 1] = swap;
    }
}

/* Every host path is cloned while / is still the host's, before the staging tmpfs covers /tmp. */
static void clone_sources(struct request *req)
{
  int host_root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (host_root < 0)
    die_with_error("setup_mounts", "open /");
  for (size_t i = 0; i < req->mountc; i++) {
    struct mount_entry *entry = &req->mounts[i];
    if (entry->kind != MOUNT_READ_ONLY && entry->kind != MOUNT_READ_WRITE)
      continue;
    int source = open_beneath(host_root, entry->path + 1, O_PATH);
    if (source < 0 && errno == ENOENT)
      continue;  /* a granted path that does not exist gives nothing */
    if (source < 0)
      die_with_error("setup_mounts", "%s (a symlink in the path is refused)", entry->path);
    entry->tree = open_tree_clone("setup_mounts", source, "", AT_EMPTY_PATH | AT_RECURSIVE);
    close_or_die("setup_mounts", source);
    uint64_t attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (entry->kind != MOUNT_READ_WRITE)
      attributes |= MOUNT_ATTR_RDONLY;
    set_mount_attributes("setup_mounts", entry->tree, attributes, entry->path);
  }
  close_or_die("setup_mounts", host_root);
}

static void make_symlink(int root, const char *path, const char *target)
{
  char parent[PATH_MAX];
  const char *slash = strrchr(path, '/');
  size_t n = (size_t)(slash - path);
  memcpy(parent, path, n);
  parent[n] = '\0';
  int at = n == 0 ? fcntl(root, F_DUPFD_CLOEXEC, 3) : mount_point(root, parent, MAKE_DIRECTORY);
  if (at < 0)
    die("setup_mounts", "%s: its directory is not in the new root", path);
  /* A symlink is made on the sandbox's own tmpfs only, never inside a host directory. */
  if (!on_own_filesystem(at))
    die("setup_mounts", "%s: a symlink can only be made in the sandbox's own directories", path);
  int dir = open_beneath(at, ".", O_DIRECTORY | O_RDONLY);
  if (dir < 0 || symlinkat(target, dir, slash + 1) != 0)
    die_with_error("setup_mounts", "symlink %s -> %s", path, target);
  close_or_die("setup_mounts", dir);
  close_or_die("setup_mounts", at);
}

/* An empty tmpfs over a directory, /dev/null over a file; a path that is not there is skipped. */
static void hide_path(int root, const char *path)
{
  int at = mount_point(root, path, EXISTING_ONLY);
  if (at < 0)
    return;
  struct stat st;
  if (fstat(at, &st) != 0)
    die_with_error("setup_mounts", "fstat %s", path);
  if (S_ISDIR(st.st_mode))
    attach("setup_mounts", new_tmpfs("setup_mounts", "0755", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC), at, path);
  else if (S_ISREG(st.st_mode))
    attach("setup_mounts", open_tree_clone("setup_mounts", AT_FDCWD, "/dev/null", 0), at, path);
  else
    die("setup_mounts", "%s is neither a directory nor a regular file: it cannot be hidden", path);
  close_or_die("setup_mounts", at);
}

/* Copies the sealed script (fd 6) into `out`. */
static void copy_script(int out)
{
  unsigned char buffer[1 << 16];
  for (off_t at = 0;;) {
    ssize_t n = pread(FD_SCRIPT, buffer, sizeof buffer, at);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      die_with_error("bind_script", "reading the script (fd %d)", FD_SCRIPT);
    if (n == 0)
      return;
    write_all("bind_script", out, buffer, (size_t)n, "the script's copy");
    at += n;
  }
}

/* The script the interpreter runs is the sealed copy (fd 6) that was hashed, seen at the script's
 * own path, so that $0, __FILE__ and its siblings are what the program expects: a copy made in
 * `dir` (a directory of a tmpfs of the sandbox's own), bound read-only over `target`, and its name
 * in `dir` removed again. A bind cannot take a memfd itself (it is not in this mount namespace). */
static const char copy_name[] = ".sealvault-copy";

static int create_copy(const char *step, int dir, const char *path, mode_t mode)
{
  int out = openat(dir, copy_name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
  if (out < 0)
    die_with_error(step, "creating the copy of %s", path);
  return out;
}

/* Binds what create_copy made in `dir` read-only over `target`, and removes its name again. */
static void bind_copy(const char *step, int dir, int target, const char *path)
{
  int tree = open_tree_clone(step, dir, copy_name, 0);
  set_mount_attributes(step, tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, path);
  attach(step, tree, target, path);
  if (unlinkat(dir, copy_name, 0) != 0)
    die_with_error(step, "removing the name of the copy of %s", path);
}

static void bind_script_copy(int dir, int target, const char *path)
{
  int out = create_copy("bind_script", dir, path, 0555);
  copy_script(out);
  close_or_die("bind_script", out);
  bind_copy("bind_script", dir, target, path);
}

/* A file of the request's own making (the sandbox's /etc/hosts), read-only over `target`. */
static void bind_content(int dir, int target, const char *path, const char *content)
{
  int out = create_copy("setup_mounts", dir, path, 0444);
  write_all("setup_mounts", out, content, strlen(content), path);
  close_or_die("setup_mounts", out);
  bind_copy("setup_mounts", dir, target, path);
}

/* hardened: the host's files as they are, but for the script's path. A tmpfs over the script's
 * directory for a moment holds the copy; once the copy is bound, the tmpfs goes and the directory
 * shows again, with the copy over the script. */
static void bind_script_over_host(const struct request *req, bool userns)
{
  const char *path = NULL;
  for (size_t i = 0; i < req->mountc; i++)
    if (req->mounts[i].kind == MOUNT_SCRIPT_COPY)
      path = req->mounts[i].path;
  if (path == NULL)
    return;
  /* a shared / would carry the bind back to the host */
  mount_or_die(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, userns);
  char parent[PATH_MAX];
  snprintf(parent, sizeof parent, "%s", path);
  *strrchr(parent, '/') = '\0';
  if (parent[0] == '\0')
    die("bind_script", "%s lies directly in /, which cannot be covered for a moment: move the script", path);
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0)
    die_with_error("bind_script", "open /");
  /* both opened before the tmpfs covers the directory */
  int target = open_beneath(root, path + 1, O_PATH);
  int directory = open_beneath(root, parent + 1, O_PATH | O_DIRECTORY);
  if (target < 0 || directory < 0)
    die_with_error("bind_script", "%s (a symlink in the path is refused)", path);
  attach("bind_script", new_tmpfs("bind_script", "0700", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV), directory, "a scratch tmpfs");
  int scratch = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (scratch < 0)
    die_with_error("bind_script", "the scratch tmpfs");
  bind_script_copy(scratch, target, path);
  close_or_die("bind_script", scratch);
  if (umount2(parent, MNT_DETACH) != 0)
    die_with_error("bind_script", "removing the scratch tmpfs");
  close_or_die("bind_script", directory);
  close_or_die("bind_script", target);
  close_or_die("bind_script", root);
}

static void mount_entry(int root, struct mount_entry *entry)
{
  switch (entry->kind) {
  case MOUNT_SYMLINK:
    make_symlink(root, entry->path, entry->target);
    return;
  case MOUNT_HIDDEN:
    hide_path(root, entry->path);
    return;
  case MOUNT_EMPTY_DIR: {
    int at = mount_point(root, entry->path, MAKE_DIRECTORY);
    if (at < 0)
      return;
    int fs = new_tmpfs("setup_mounts", "0700", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    remember_own_filesystem("setup_mounts", fs);
    attach("setup_mounts", fs, at, entry->path);
    close_or_die("setup_mounts", at);
    return;
  }
  case MOUNT_CONTENT: {
    int at = mount_point(root, entry->path, MAKE_FILE);
    if (at < 0)
      die("setup_mounts", "%s: its directory is not in the new root", entry->path);
    bind_content(root, at, entry->path, entry->target);
    close_or_die("setup_mounts", at);
    return;
  }
  case MOUNT_SCRIPT_COPY: {
    int at = mount_point(root, entry->path, MAKE_FILE);
    if (at < 0)
      die("setup_mounts", "%s: the script's directory is not in the new root", entry->path);
    bind_script_copy(root, at, entry->path);
    close_or_die("setup_mounts", at);
    return;
  }
  case MOUNT_READ_ONLY:
  case MOUNT_READ_WRITE: {
    if (entry->tree < 0)
      return;
    struct stat st;
    if (fstat(entry->tree, &st) != 0)
      die_with_error("setup_mounts", "fstat %s", entry->path);
    int at = mount_point(root, entry->path, S_ISDIR(st.st_mode) ? MAKE_DIRECTORY : MAKE_FILE);
    if (at < 0) {
      close_or_die("setup_mounts", entry->tree);
      entry->tree = -1;
      return;
    }
    attach("setup_mounts", entry->tree, at, entry->path);
    entry->tree = -1;
    close_or_die("setup_mounts", at);
    return;
  }
  }
}

/* A minimal /dev: the harmless devices bound from the host, a devpts instance of the sandbox's
 * own (no other terminal of the host is reachable), private /dev/shm, and the caller's pty as
 * /dev/console so that ttyname() finds it (bubblewrap does the same). */
static void build_dev(int root, const struct sandbox_io *io)
{
  static const char *const devices[] = { "null", "zero", "full", "random", "urandom", "tty" };
  int dev = mount_point(root, "/dev", MAKE_DIRECTORY);
  int fs = new_tmpfs("setup_dev", "0755", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  remember_own_filesystem("setup_dev", fs);
  attach("setup_dev", fs, dev, "/dev");
  close_or_die("setup_dev", dev);

  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
    char host[32], inside[32];
    snprintf(host, sizeof host, "/dev/%s", devices[i]);
    snprintf(inside, sizeof inside, "/dev/%s", devices[i]);
    int tree = open_tree_clone("setup_dev", AT_FDCWD, host, 0);
    set_mount_attributes("setup_dev", tree, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, host);
    int at = mount_point(root, inside, MAKE_FILE);
    attach("setup_dev", tree, at, inside);
    close_or_die("setup_dev", at);
  }
  if (io->master >= 0) {
    struct stat slave, bound;
    int tree = open_tree_clone("setup_dev", AT_FDCWD, io->slave_path, 0);
    if (fstat(STDIN_FILENO, &slave) != 0 || fstat(tree, &bound) != 0)
      die_with_error("setup_dev", "fstat of the pty");
    if (bound.st_rdev != slave.st_rdev)
      die("setup_dev", "%s is not the sandbox's pty", io->slave_path);
    int at = mount_point(root, "/dev/console", MAKE_FILE);
    attach("setup_dev", tree, at, "/dev/console");
    close_or_die("setup_dev", at);
  }

  static const char *const pts_options[] = { "ptmxmode", "0666", "mode", "620", NULL };
  int pts = mount_point(root, "/dev/pts", MAKE_DIRECTORY);
  attach("setup_dev", new_filesystem("setup_dev", "devpts", pts_options, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC), pts,
         "/dev/pts");
  close_or_die("setup_dev", pts);
  int shm = mount_point(root, "/dev/shm", MAKE_DIRECTORY);
  attach("setup_dev", new_tmpfs("setup_dev", "1777", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV), shm,
         "/dev/shm");
  close_or_die("setup_dev", shm);

  static const char *const links[][2] = {
    { "/dev/ptmx", "pts/ptmx" }, { "/dev/fd", "/proc/self/fd" }, { "/dev/stdin", "/proc/self/fd/0" },
    { "/dev/stdout", "/proc/self/fd/1" }, { "/dev/stderr", "/proc/self/fd/2" },
  };
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    make_symlink(root, links[i][0], links[i][1]);
}

/* A fresh /proc shows only the sandbox's processes. Its kernel-wide knobs stay read-only: a target
 * of a root caller runs as uid 0 (without capabilities), and the owner bits of /proc/sys or
 * /proc/sysrq-trigger would otherwise let it write them. */
static void build_proc(int root)
{
  static const char *const read_only[] = { "sys", "sysrq-trigger", "irq", "bus" };
  int at = mount_point(root, "/proc", MAKE_DIRECTORY);
  int proc = new_filesystem("setup_proc", "proc", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  attach("setup_proc", proc, at, "/proc");
  close_or_die("setup_proc", at);
  /* Opened again: the fd of the mount point still shows what lies beneath the new mount. */
  at = open_beneath(root, "proc", O_PATH | O_DIRECTORY);
  if (at < 0)
    die_with_error("setup_proc", "the new /proc");
  for (size_t i = 0; i < sizeof read_only / sizeof read_only[0]; i++) {
    int part = open_beneath(at, read_only[i], O_PATH);
    if (part < 0 && errno == ENOENT)
      continue;
    if (part < 0)
      die_with_error("setup_proc", "/proc/%s", read_only[i]);
    int tree = open_tree_clone("setup_proc", part, "", AT_EMPTY_PATH | AT_RECURSIVE);
    set_mount_attributes("setup_proc", tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, read_only[i]);
    attach("setup_proc", tree, part, read_only[i]);
    close_or_die("setup_proc", part);
  }
  close_or_die("setup_proc", at);
}

/* Makes the staged tree the root: pivot_root(".", ".") stacks the old root on top of the new one,
 * and detaching it leaves the new root alone (pivot_root(2), NOTES). */
static void enter_new_root(int root, const char *cwd)
{
  int old_root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (old_root < 0)
    die_with_error("pivot_root", "open /");
  if (fchdir(root) != 0)
    die_with_error("pivot_root", "chdir to the new root");
  if (syscall(SYS_pivot_root, ".", ".") != 0)
    die_with_error("pivot_root", "pivot_root");
  if (fchdir(old_root) != 0)
    die_with_error("pivot_root", "chdir to the old root");
  if (umount2(".", MNT_DETACH) != 0)
    die_with_error("pivot_root", "detaching the old root");
  close_or_die("pivot_root", old_root);
  if (chdir(cwd) != 0)
    die_with_error("pivot_root", "the working directory %s is not in the sandbox", cwd);
}

/* The working directory inside the new root must be the one the helper was started in, not what its
 * path names by the time it is bound: a caller of the agent could swap the path for a link. */
static void check_same_directory(const struct stat *before, const char *cwd)
{
  struct stat after;
  if (stat(".", &after) != 0)
    die_with_error("setup_mounts", "stat of the working directory %s", cwd);
  if (after.st_dev != before->st_dev || after.st_ino != before->st_ino)
    die("setup_mounts", "the working directory %s was replaced while the sandbox was built", cwd);
}

/* Whether a bind of the host (read-only or read-write) puts `cwd` in the new root: only then is it
 * the host's directory that the target works in (doctor's probe runs in /, which is the new root's). */
static bool cwd_is_bound(const struct request *req, const char *cwd)
{
  for (size_t i = 0; i < req->mountc; i++) {
    const struct mount_entry *entry = &req->mounts[i];
    if ((entry->kind == MOUNT_READ_ONLY || entry->kind == MOUNT_READ_WRITE) && strcmp(entry->path, cwd) == 0)
      return true;
  }
  return false;
}

static void build_root(struct request *req, const struct sandbox_io *io, bool userns)
{
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == NULL)
    die_with_error("setup_mounts", "getcwd");
  struct stat started_in;
  if (stat(".", &started_in) != 0)
    die_with_error("setup_mounts", "stat of the working directory %s", cwd);
  /* Before anything is mounted: a shared / would carry our mounts back to the host (and on the
   * path without a user namespace, nothing else stops that). */
  mount_or_die(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, userns);
  order_mounts(req);
  clone_sources(req);

  int staging_fs = new_tmpfs("setup_mounts", "0755", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  remember_own_filesystem("setup_mounts", staging_fs);
  if (move_mount(staging_fs, "", AT_FDCWD, STAGING, MOVE_MOUNT_F_EMPTY_PATH) != 0)
    die_with_error("setup_mounts", "mounting the new root on %s", STAGING);
  close_or_die("setup_mounts", staging_fs);
  int root = open(STAGING, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0)
    die_with_error("setup_mounts", "open %s", STAGING);

  build_proc(root);
  build_dev(root, io);
  int tmp = mount_point(root, "/tmp", MAKE_DIRECTORY);
  int tmp_fs = new_tmpfs("setup_mounts", "1777", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  remember_own_filesystem("setup_mounts", tmp_fs);
  attach("setup_mounts", tmp_fs, tmp, "/tmp");
  close_or_die("setup_mounts", tmp);
  for (size_t i = 0; i < req->mountc; i++)
    mount_entry(root, &req->mounts[i]);
  enter_new_root(root, cwd);
  if (cwd_is_bound(req, cwd))
    check_same_directory(&started_in, cwd);
  close_or_die("setup_mounts", root);
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

/* Lockdown's own UTS namespace: the host's name is not the target's business. */
static void set_hostname(void)
{
  if (sethostname(SANDBOX_HOSTNAME, strlen(SANDBOX_HOSTNAME)) != 0)
    die_with_error("set_hostname", "sethostname");
}

/* ---- step 6: secrets as files, and the info line --------------------------------------------- */

/* NAME_FILE=PATH in the target's environment, in place of any NAME_FILE the request already holds:
 * a runtime that reads the first of two entries must not find another file. */
static void announce_file(struct request *req, const char *name, const char *path)
{
  size_t size = strlen(name) + strlen("_FILE=") + strlen(path) + 1;
  char *entry = allocate(size);
  snprintf(entry, size, "%s_FILE=%s", name, path);
  size_t prefix = strlen(name) + strlen("_FILE=");
  for (size_t i = 0; i < req->envc; i++)
    if (strncmp(req->envp[i], entry, prefix) == 0) {
      req->envp[i] = entry;
      return;
    }
  req->envp[req->envc++] = entry;
}

/* A new file, 0400, holding the value: `dir` must be one of the sandbox's own filesystems, never a
 * directory of the host, where the plaintext would reach a disk. */
static void write_secret_file(struct request *req, const struct secret_file *file, int dir, const char *name,
                              const char *path)
{
  if (!on_own_filesystem(dir))
    die("deliver_files", "%s: a secret file can only be made in the sandbox's own directories, not in one of the "
        "host's", path);
  int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
  if (fd < 0)
    die_with_error("deliver_files", "creating %s", path);
  /* The caller's umask must not make the file unreadable to the target. */
  if (fchmod(fd, 0400) != 0)
    die_with_error("deliver_files", "chmod %s", path);
  write_all("deliver_files", fd, file->value, file->length, path);
  if (close(fd) != 0)
    die_with_error("deliver_files", "closing %s", path);
  announce_file(req, file->name, path);
}

/* A file at the path its grant chose: its missing directories made, on the sandbox's own root. */
static void deliver_file_at(struct request *req, const struct secret_file *file)
{
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0)
    die_with_error("deliver_files", "open /");
  char parent[PATH_MAX];
  const char *slash = strrchr(file->path, '/');
  size_t n = (size_t)(slash - file->path);
  memcpy(parent, file->path, n);
  parent[n] = '\0';
  int dir = n == 0 ? fcntl(root, F_DUPFD_CLOEXEC, 3) : mount_point(root, parent, MAKE_DIRECTORY);
  if (dir < 0)
    die("deliver_files", "%s: its directory cannot be made in the sandbox (it lies in a directory of the host)",
        file->path);
  write_secret_file(req, file, dir, slash + 1, file->path);
  close_or_die("deliver_files", dir);
  close_or_die("deliver_files", root);
}

/* lockdown: plain files on the sandbox's own /tmp, or where the grant put them, which no one
 * outside the sandbox can see. */
static void deliver_files_to_tmp(struct request *req)
{
  /* /tmp is the sandbox's own unless the working directory is the host's /tmp, bound over it:
   * then nothing is made there, not even the directory. */
  int tmp = open("/tmp", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (tmp < 0)
    die_with_error("deliver_files", "open /tmp");
  if (!on_own_filesystem(tmp))
    die("deliver_files", "/tmp is the host's (the working directory?): a secret file can only be made in the sandbox's own "
        "directories; run from a project directory");
  const char *name = SECRETS_DIR + strlen("/tmp/");
  if (mkdirat(tmp, name, 0700) != 0)
    die_with_error("deliver_files", "mkdir %s", SECRETS_DIR);
  int dir = open_beneath(tmp, name, O_PATH | O_DIRECTORY);
  if (dir < 0)
    die_with_error("deliver_files", "open %s", SECRETS_DIR);
  /* The caller's umask must not make the directory or the files unreadable to the target. */
  if (fchmodat(tmp, name, 0700, 0) != 0)
    die_with_error("deliver_files", "chmod %s", SECRETS_DIR);
  close_or_die("deliver_files", tmp);
  for (size_t i = 0; i < req->filec; i++) {
    const struct secret_file *file = &req->files[i];
    if (file->path[0] != '\0') {
      deliver_file_at(req, file);
      continue;
    }
    char path[sizeof SECRETS_DIR + MAX_FILE_NAME_BYTES + 1];
    snprintf(path, sizeof path, "%s/%s", SECRETS_DIR, file->name);
    write_secret_file(req, file, dir, file->name, path);
  }
  close_or_die("deliver_files", dir);
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

/* The Landlock ABI this kernel offers (landlock(7)), 0 where it has none or it is disabled. */
static long landlock_abi(void)
{
  long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi >= 0)
    return abi;
  if (errno == ENOSYS || errno == EOPNOTSUPP)
    return 0;
  die_with_error("restrict_filesystem", "landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION)");
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
static void write_info(const struct request *req, bool userns)
{
  static const char *const names[] = { "user", "pid", "ipc", "mnt", "net", "uts", "cgroup" };
  char line[640];
  if (info_fd < 0)
    return;
  int used = snprintf(line, sizeof line, "{\"tier\":\"%s\",\"userns\":%s,\"pty\":%s,\"seccomp\":\"%s\",\"landlock\":%ld,\"ns\":{",
                      tier_names[req->tier], userns ? "true" : "false", req->flags & FLAG_PTY ? "true" : "false",
                      req->tier == TIER_NONE ? "terminal" : "full",
                      req->tier == TIER_LOCKDOWN ? landlock_abi() : 0L);
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

/* ---- step 7: the target ------------------------------------------------------------------- */

/* A session of its own: the caller's terminal is not its controlling terminal, so TIOCSTI into
 * the caller's shell is refused (tty_ioctl(4)), and kill(0, ...) reaches only its own group. With
 * a pty, the pty becomes its controlling terminal, and its process group the pty's foreground. */
static void enter_own_session(bool pty)
{
  if (setsid() < 0)
    die_with_error("new_session", "setsid");
  if (pty && ioctl(STDIN_FILENO, TIOCSCTTY, 0) != 0)
    die_with_error("new_session", "making the pty the controlling terminal");
}

static void drop_capabilities(const char *step)
{
  /* Also in a user namespace: there a root caller is root, and could undo the sandbox's mounts. */
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    die_with_error(step, "prctl(PR_SET_NO_NEW_PRIVS)");
  /* The bounding set is what a root target would get back at execve. Dropping from it needs
   * CAP_SETPCAP; a process without it has no capabilities to lose, and no_new_privs keeps
   * set-user-ID and file capabilities from granting any. */
  if (has_capability(step, CAP_SETPCAP)) {
    long last = read_sysctl("/proc/sys/kernel/cap_last_cap");
    if (last < 0)
      last = CAP_LAST_CAP;
    for (long cap = 0; cap <= last; cap++)
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
        die_with_error(step, "prctl(PR_CAPBSET_DROP, %ld)", cap);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    die_with_error(step, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3];
  memset(none, 0, sizeof none);
  if (syscall(SYS_capset, &header, none) != 0)
    die_with_error(step, "capset");
}

/* Landlock access rights beyond the oldest ABI, as landlock(7) numbers them. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define LANDLOCK_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL_ONLY (1ULL << 1)

/* struct landlock_ruleset_attr as of ABI 6; older kernels are given the prefix they know. */
struct ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

static void allow_writes_beneath(int ruleset, int fd, uint64_t access, const char *what)
{
  struct landlock_path_beneath_attr rule = { .allowed_access = access, .parent_fd = fd };
  if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0)
    die_with_error("restrict_filesystem", "landlock_add_rule(%s)", what);
}

/* Landlock, the second wall of lockdown: whatever the mounts let through, writes land only below
 * /tmp, /dev, the private empty directories (the home) and the read-write binds (the working
 * directory, --rw paths), or in the target's own stdin/stdout/stderr. From ABI 6 on, abstract unix sockets and signals outside the sandbox
 * are out of reach too. A kernel without Landlock leaves the mounts as the only wall. */
static void restrict_filesystem(const struct request *req)
{
  long abi = landlock_abi();
  if (abi == 0)
    return;
  uint64_t handled = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE
                     | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG
                     | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK
                     | LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2)
    handled |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3)
    handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
  struct ruleset_attr attr = { .handled_access_fs = handled };
  size_t size = sizeof attr.handled_access_fs;
  if (abi >= 6) {
    attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX | LANDLOCK_SCOPE_SIGNAL_ONLY;
    size = sizeof attr;
  }
  int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (ruleset < 0)
    die_with_error("restrict_filesystem", "landlock_create_ruleset");

  static const char *const writable[] = { "/tmp", "/dev" };
  for (size_t i = 0; i < sizeof writable / sizeof writable[0]; i++) {
    int fd = open(writable[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      die_with_error("restrict_filesystem", "open %s", writable[i]);
    allow_writes_beneath(ruleset, fd, handled, writable[i]);
    close_or_die("restrict_filesystem", fd);
  }
  for (size_t i = 0; i < req->mountc; i++) {
    if (req->mounts[i].kind != MOUNT_READ_WRITE && req->mounts[i].kind != MOUNT_EMPTY_DIR)
      continue;
    int fd = open(req->mounts[i].path, O_PATH | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
      continue;
    if (fd < 0)
      die_with_error("restrict_filesystem", "open %s", req->mounts[i].path);
    struct stat st;
    if (fstat(fd, &st) != 0)
      die_with_error("restrict_filesystem", "fstat %s", req->mounts[i].path);
    uint64_t file_rights = LANDLOCK_ACCESS_FS_WRITE_FILE | (abi >= 3 ? LANDLOCK_ACCESS_FS_TRUNCATE : 0);
    allow_writes_beneath(ruleset, fd, S_ISDIR(st.st_mode) ? handled : file_rights, req->mounts[i].path);
    close_or_die("restrict_filesystem", fd);
  }
  /* `echo x > /dev/stderr` reopens the target's own output: a file or a terminal outside the new
   * root. Only stdout and stderr, and only when open for writing: a file given as stdin is the
   * caller's to read, not the target's to write. Pipes and sockets need no rule (Landlock does not
   * restrict them). */
  for (int std = 1; std <= 2; std++) {
    struct stat st;
    int mode = fcntl(std, F_GETFL);
    if (fstat(std, &st) != 0 || mode < 0)
      die_with_error("restrict_filesystem", "fd %d", std);
    bool writable = (mode & O_ACCMODE) == O_WRONLY || (mode & O_ACCMODE) == O_RDWR;
    if (writable && (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)))
      allow_writes_beneath(ruleset, std, LANDLOCK_ACCESS_FS_WRITE_FILE | (abi >= 3 ? LANDLOCK_ACCESS_FS_TRUNCATE : 0),
                           std == 1 ? "stdout" : "stderr");
  }
  if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0)
    die_with_error("restrict_filesystem", "landlock_restrict_self");
  close_or_die("restrict_filesystem", ruleset);
}

/* The system calls the seccomp filter refuses in hardened and lockdown, with the errno returned.
 * SECURITY.md ("System calls") says why for each; src/sandbox/tiers.ts lists the same names. */
struct denied_syscall {
  int number;
  int err;
};

static const struct denied_syscall denied_syscalls[] = {
  /* new namespaces, and joining others' */
  { SCMP_SYS(unshare), EPERM }, { SCMP_SYS(setns), EPERM },
  /* clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back to clone */
  { SCMP_SYS(clone3), ENOSYS },
  /* the mount family */
  { SCMP_SYS(mount), EPERM }, { SCMP_SYS(umount2), EPERM }, { SCMP_SYS(pivot_root), EPERM },
  { SCMP_SYS(chroot), EPERM }, { SCMP_SYS(open_tree), EPERM }, { SCMP_SYS(move_mount), EPERM },
  { SCMP_SYS(fsopen), EPERM }, { SCMP_SYS(fsmount), EPERM }, { SCMP_SYS(fspick), EPERM },
  { SCMP_SYS(mount_setattr), EPERM },
  /* kernel keyrings */
  { SCMP_SYS(keyctl), EPERM }, { SCMP_SYS(add_key), EPERM }, { SCMP_SYS(request_key), EPERM },
  /* kernel attack surface */
  { SCMP_SYS(bpf), EPERM }, { SCMP_SYS(perf_event_open), EPERM }, { SCMP_SYS(userfaultfd), EPERM },
  { SCMP_SYS(io_uring_setup), EPERM }, { SCMP_SYS(io_uring_enter), EPERM }, { SCMP_SYS(io_uring_register), EPERM },
  /* reading or writing other processes */
  { SCMP_SYS(ptrace), EPERM }, { SCMP_SYS(process_vm_readv), EPERM }, { SCMP_SYS(process_vm_writev), EPERM },
  /* the machine itself */
  { SCMP_SYS(kexec_load), EPERM }, { SCMP_SYS(kexec_file_load), EPERM }, { SCMP_SYS(init_module), EPERM },
  { SCMP_SYS(finit_module), EPERM }, { SCMP_SYS(delete_module), EPERM }, { SCMP_SYS(acct), EPERM },
  { SCMP_SYS(swapon), EPERM }, { SCMP_SYS(swapoff), EPERM }, { SCMP_SYS(reboot), EPERM },
};

static void add_rule(scmp_filter_ctx filter, uint32_t action, int number, unsigned int count, struct scmp_arg_cmp *cmp)
{
  int rc = seccomp_rule_add_array(filter, action, number, count, cmp);
  if (rc != 0) {
    char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);
    die_errno("install_seccomp", -rc, "adding the rule for %s", name != NULL ? name : "a system call");
  }
}

/* The ioctls that reach beyond the target's own terminal, in every tier: TIOCSTI pushes input into
 * a terminal, TIOCLINUX (on a virtual console) does too. The kernel reads the request as 32 bits,
 * so the filter masks the argument to its low 32 bits: TIOCSTI with high bits set is still TIOCSTI
 * (CVE-2019-10063). libseccomp's 32-bit comparisons would not do: they also want the high bits
 * clear. */
static void deny_terminal_injection(scmp_filter_ctx filter)
{
  static const unsigned long requests[] = { TIOCSTI, TIOCLINUX };
  for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
    struct scmp_arg_cmp request = SCMP_A1_64(SCMP_CMP_MASKED_EQ, 0xffffffffu, requests[i]);
    add_rule(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1, &request);
  }
}

/* clone with a CLONE_NEW* flag: one rule per flag, since a filter can test a masked value for
 * equality but not "any of these bits". CLONE_NEWTIME is 0x80, which clone() reads as part of the
 * exit signal; only unshare and clone3 can ask for it, and both are refused whole. */
static void deny_namespace_clones(scmp_filter_ctx filter)
{
  static const uint32_t flags[] = { CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                    CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET };
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    struct scmp_arg_cmp flag = SCMP_A0_64(SCMP_CMP_MASKED_EQ, flags[i], flags[i]);
    add_rule(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, &flag);
  }
}

/* lockdown's network is its own namespace, but some socket families are not namespaced (AF_VSOCK
 * reaches the hypervisor's side of a VM on many kernels): only AF_UNIX, AF_INET, AF_INET6 and
 * AF_NETLINK may be created, others fail with EAFNOSUPPORT. The kernel reads the family as an int,
 * so equality looks at 32 bits; every family from AF_PACKET (17) up is one rule. */
static void deny_other_socket_families(scmp_filter_ctx filter)
{
  static const int calls[] = { SCMP_SYS(socket), SCMP_SYS(socketpair) };
  for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
    struct scmp_arg_cmp high = SCMP_A0_64(SCMP_CMP_GE, AF_PACKET);
    add_rule(filter, SCMP_ACT_ERRNO(EAFNOSUPPORT), calls[c], 1, &high);
    for (uint32_t family = 0; family < AF_PACKET; family++) {
      if (family == AF_UNIX || family == AF_INET || family == AF_INET6 || family == AF_NETLINK)
        continue;
      struct scmp_arg_cmp other = SCMP_A0_64(SCMP_CMP_MASKED_EQ, 0xffffffffu, family);
      add_rule(filter, SCMP_ACT_ERRNO(EAFNOSUPPORT), calls[c], 1, &other);
    }
  }
}

/* personality(ADDR_NO_RANDOMIZE) turns off ASLR for what the target executes next. The query
 * personality(0xffffffff) has that bit set too and must keep working. libseccomp refuses two tests
 * of one argument in a rule, so "bit 18 set and not all 32 bits set" is written as 31 rules: bit 18
 * set and bit i clear, for each other bit i. */
static void deny_aslr_off(scmp_filter_ctx filter)
{
  for (uint32_t bit = 0; bit < 32; bit++) {
    if ((1u << bit) == ADDR_NO_RANDOMIZE)
      continue;
    struct scmp_arg_cmp persona = SCMP_A0_64(SCMP_CMP_MASKED_EQ, ADDR_NO_RANDOMIZE | (1u << bit), ADDR_NO_RANDOMIZE);
    add_rule(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1, &persona);
  }
}

/* The seccomp filter (libseccomp; seccomp(2)), loaded last before execveat. Everything not named
 * is allowed; a call of another architecture (i386 through int 0x80, x32) kills the process,
 * libseccomp's default for a foreign architecture. */
static void install_seccomp(enum tier tier)
{
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
  if (filter == NULL)
    die("install_seccomp", "seccomp_init failed");
  deny_terminal_injection(filter);
  if (tier != TIER_NONE) {
    for (size_t i = 0; i < sizeof denied_syscalls / sizeof denied_syscalls[0]; i++)
      add_rule(filter, SCMP_ACT_ERRNO((uint32_t)denied_syscalls[i].err), denied_syscalls[i].number, 0, NULL);
    deny_namespace_clones(filter);
    deny_aslr_off(filter);
  }
  if (tier == TIER_LOCKDOWN)
    deny_other_socket_families(filter);
  int rc = seccomp_load(filter);
  if (rc != 0)
    die_errno("install_seccomp", -rc, "seccomp_load");
  seccomp_release(filter);
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

  int keep[MAX_FILES + 2];
  size_t kept = 0;
  for (size_t i = 0; i < req->memfdc; i++)
    keep[kept++] = req->memfds[i];
  keep[kept++] = FD_EXECUTABLE;
  /* without a mount namespace the interpreter reads the script as /dev/fd/6 */
  if (req->tier == TIER_NONE && script_fd >= 0) {
    keep[kept++] = FD_SCRIPT;
    if (fcntl(FD_SCRIPT, F_SETFD, 0) != 0)
      die_with_error("close_extra_fds", "fcntl(%d, F_SETFD)", FD_SCRIPT);
  }
  close_extra_fds(keep, kept);
  /* execveat needs fd 4 open either way: close-on-exec closes it right after, for a program. */
  if (fcntl(FD_EXECUTABLE, F_SETFD, script ? 0 : FD_CLOEXEC) != 0)
    die_with_error("close_extra_fds", "fcntl(%d, F_SETFD)", FD_EXECUTABLE);

  install_seccomp(req->tier);
  execveat(FD_EXECUTABLE, "", req->argv, req->envp, AT_EMPTY_PATH);
  if (errno == ENOENT)
    die_exec(EXIT_NOT_FOUND, "%s: its interpreter or loader was not found%s", req->argv[0],
             req->tier == TIER_LOCKDOWN ? " (lockdown shows only the system directories, the working "
                                          "directory and the grant's --ro/--rw paths)" : "");
  die_exec(EXIT_CANNOT_EXECUTE, "%s", req->argv[0]);
}

/* The signal dispositions and mask the target starts with: the caller's, but SIGPIPE at its
 * default (the helper ignores it, and an ignored signal stays ignored across exec). */
static void reset_signals(const char *step)
{
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = SIG_DFL;
  if (sigaction(SIGPIPE, &action, NULL) != 0 || sigaction(SIGCHLD, &action, NULL) != 0)
    die_with_error(step, "sigaction");
  if (sigprocmask(SIG_SETMASK, &original_signal_mask, NULL) != 0)
    die_with_error(step, "sigprocmask");
}

static void die_with_parent(const char *step)
{
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    die_with_error(step, "prctl(PR_SET_PDEATHSIG)");
}

static pid_t start_target(struct request *req, const struct sandbox_io *io)
{
  pid_t pid = fork();
  if (pid < 0)
    die_with_error("start_target", "fork");
  if (pid > 0)
    return pid;
  die_with_parent("start_target");
  if (req->tier == TIER_NONE)
    attach_target_stdio(io);
  enter_own_session((req->flags & FLAG_PTY) != 0);
  reset_signals("start_target");
  drop_capabilities("drop_capabilities");
  if (req->tier == TIER_LOCKDOWN)
    restrict_filesystem(req);
  exec_pinned(req);
}

/* ---- step 8: signals ---------------------------------------------------------------------- */

static void forward_signal(int signal, siginfo_t *info, void *context)
{
  int saved_errno = errno;
  (void)context;
  /* Only signals a process sent are passed on: one from a terminal (vault's process group when
   * stdin is not a terminal) reaches vault too, which forwards it once. The target may be gone
   * already (ESRCH): waiting for it reports that. */
  if (info->si_code == SI_USER || info->si_code == SI_QUEUE)
    (void)kill((pid_t)forward_to, signal);
  errno = saved_errno;
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
  /* Only these: the relay's SIGCHLD and SIGWINCH stay blocked for its signalfd. */
  sigset_t unblock;
  if (sigemptyset(&unblock) != 0)
    die_with_error("forward_signals", "sigemptyset");
  for (size_t i = 0; i < FORWARDED_SIGNAL_COUNT; i++)
    if (sigismember(&original_signal_mask, forwarded_signals[i]) == 0 && sigaddset(&unblock, forwarded_signals[i]) != 0)
      die_with_error("forward_signals", "sigaddset");
  if (sigprocmask(SIG_UNBLOCK, &unblock, NULL) != 0)
    die_with_error("forward_signals", "sigprocmask");
}

/* SIGCHLD and SIGWINCH arrive through a signalfd the relay polls; SIGPIPE is ignored, so that a
 * reader that went away is an EPIPE the relay acts on. Children undo both (reset_signals). */
static int relay_signals(void)
{
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = SIG_IGN;
  if (sigaction(SIGPIPE, &action, NULL) != 0)
    die_with_error("relay", "sigaction(SIGPIPE)");
  /* An inherited SIG_IGN for SIGCHLD would have the kernel reap our children before we could
   * read their status. */
  action.sa_handler = SIG_DFL;
  if (sigaction(SIGCHLD, &action, NULL) != 0)
    die_with_error("relay", "sigaction(SIGCHLD)");
  sigset_t set;
  if (sigemptyset(&set) != 0 || sigaddset(&set, SIGCHLD) != 0 || sigaddset(&set, SIGWINCH) != 0)
    die_with_error("relay", "sigaddset");
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
    die_with_error("relay", "sigprocmask");
  int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0)
    die_with_error("relay", "signalfd");
  return fd;
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

/* ---- step 9: PID 1 ------------------------------------------------------------------------ */

static noreturn void run_pid1(struct request *req, const struct sandbox_io *io, int signals, bool userns)
{
  die_with_parent("run_pid1");
  close_or_die("run_pid1", signals);
  attach_target_stdio(io);
  if (req->tier == TIER_LOCKDOWN) {
    set_hostname();
    build_root(req, io, userns);
    if ((req->flags & FLAG_NET_HOST) == 0)
      bring_up_loopback();
  } else {
    bind_script_over_host(req, userns);
  }
  deliver_files(req);
  write_info(req, userns);
  pid_t target = start_target(req, io);
  forget_request(req);
  /* The handlers before the mask is lifted: PID 1 of a PID namespace never gets a signal it has no
   * handler for (pid_namespaces(7)), so one held while the sandbox was built would be dropped. */
  forward_signals(target);
  reset_signals("run_pid1");
  /* PID 1 only waits from here on: it keeps no capability it could lose to a bug. */
  drop_capabilities("run_pid1");
  /* When the target ends, so does the sandbox: PID 1 exiting kills whatever it left running. */
  _exit(wait_for_child(target));
}

static pid_t start_pid1(struct request *req, const struct sandbox_io *io, int signals, bool userns)
{
  pid_t pid = fork();
  if (pid < 0)
    die_with_error("run_pid1", "fork");
  if (pid == 0)
    run_pid1(req, io, signals, userns);
  return pid;
}

/* ---- step 10: the relay ------------------------------------------------------------------- */

/* One direction of copying: `from` → buffer → `to`. */
struct pump {
  int from;
  int to;
  bool output;     /* the target's output (copied after it exits too) */
  bool done;
  size_t length;
  size_t offset;
  unsigned char buffer[RELAY_BUFFER_BYTES];
};

static struct pump pumps[4];
static size_t pump_count;

static void close_pump(struct pump *pump)
{
  /* The source is ours (a pipe's read end or the pty master, which the helper alone holds):
   * closing it is what gives the target SIGPIPE, or a hangup on its terminal, when the reader
   * has gone away. fd 0 (the caller's terminal) is only left alone. */
  if (pump->from > 2) {
    (void)close(pump->from);
    /* The pty master is also where typed input goes: that pump ends with it. */
    for (size_t i = 0; i < pump_count; i++)
      if (pumps[i].to == pump->from) {
        pumps[i].done = true;
        pumps[i].length = 0;
      }
  }
  pump->done = true;
  pump->length = 0;
}

static void pump_read(struct pump *pump)
{
  /* A pty hands out its output a line discipline buffer at a time (a few KiB): from the target's
   * side (non-blocking, ours) read on while more is waiting, so that what is passed on (and masked
   * by vault) comes in fewer, larger pieces. The caller's terminal is read once: it blocks. */
  pump->length = 0;
  pump->offset = 0;
  while (pump->length < sizeof pump->buffer) {
    ssize_t n = read(pump->from, pump->buffer + pump->length, sizeof pump->buffer - pump->length);
    if (n > 0) {
      pump->length += (size_t)n;
      if (!pump->output)
        return;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    /* EOF, or EIO from a pty master once no process holds the slave: what was read goes out first */
    if (pump->length == 0)
      close_pump(pump);
    return;
  }
}

static void pump_write(struct pump *pump)
{
  ssize_t n = write(pump->to, pump->buffer + pump->offset, pump->length - pump->offset);
  if (n > 0) {
    pump->offset += (size_t)n;
    if (pump->offset == pump->length)
      pump->length = 0;
  } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
    close_pump(pump);  /* EPIPE and the like: the reader went away */
  }
}

/* What the target wrote before it exited, copied after the exit: until the source is empty or
 * closed, and never more than was waiting then plus DRAIN_SLACK_BYTES. */
static void drain(struct pump *pump)
{
  int waiting = 0;
  if (pump->done || ioctl(pump->from, FIONREAD, &waiting) != 0)
    waiting = 0;
  size_t budget = (size_t)waiting + DRAIN_SLACK_BYTES;
  while (!pump->done) {
    if (pump->length > pump->offset) {
      if (write_fully(pump->to, pump->buffer + pump->offset, pump->length - pump->offset) != 0) {
        close_pump(pump);
        return;
      }
      budget = pump->length - pump->offset > budget ? 0 : budget - (pump->length - pump->offset);
      pump->length = 0;
    }
    if (budget == 0)
      return;
    pump_read(pump);
    if (pump->length == 0)
      return;  /* nothing more waiting (EAGAIN), or the source is closed */
  }
}

static void resize_pty(int master)
{
  struct winsize size;
  /* The kernel signals SIGWINCH to the pty's foreground process group itself. */
  if (ioctl(STDIN_FILENO, TIOCGWINSZ, &size) == 0)
    (void)ioctl(master, TIOCSWINSZ, &size);
}

/* The caller's terminal in raw mode: every key, Ctrl-C included, goes to the pty, whose line
 * discipline turns it into a signal for the target's foreground group, exactly once. */
static void make_terminal_raw(void)
{
  struct termios raw;
  if (tcgetattr(STDIN_FILENO, &saved_terminal) != 0)
    die_with_error("relay", "reading the terminal's modes");
  raw = saved_terminal;
  cfmakeraw(&raw);
  terminal_is_raw = true;
  if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) != 0)
    die_with_error("relay", "setting the terminal to raw mode");
}

struct child_state {
  pid_t pid;
  bool exited;
  int status;
};

static void reap(struct child_state *child)
{
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid != child->pid)
      continue;
    child->exited = true;
    child->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

/* Copies between the caller's side and the target's until the child (PID 1, or the target in
 * tier none) exits, sends the timeout's SIGTERM and SIGKILL, then copies what the target left
 * and returns its status. */
static int relay_until_exit(const struct request *req, const struct sandbox_io *io, pid_t pid, int signals)
{
  size_t count = 0;
  if (io->master >= 0) {
    pumps[count++] = (struct pump){ .from = STDIN_FILENO, .to = io->master };
    int pty_out = (req->flags & FLAG_PTY_STDOUT) ? STDOUT_FILENO : STDERR_FILENO;
    pumps[count++] = (struct pump){ .from = io->master, .to = pty_out, .output = true };
  }
  for (int stream = 1; stream <= 2; stream++)
    if (io->relay[stream] >= 0)
      pumps[count++] = (struct pump){ .from = io->relay[stream], .to = stream, .output = true };
  pump_count = count;
  caller_restores_terminal = (req->flags & FLAG_CALLER_RESTORES_TERMINAL) != 0;
  if (io->master >= 0)
    make_terminal_raw();

  struct child_state child = { .pid = pid };
  long deadline = req->timeout_ms == 0 ? -1 : monotonic_ms() + (long)req->timeout_ms;
  bool timed_out = false;
  bool killed = false;
  while (!child.exited) {
    struct pollfd fds[1 + 4];
    struct pump *owner[1 + 4];
    nfds_t n = 0;
    fds[n++] = (struct pollfd){ .fd = signals, .events = POLLIN };
    for (size_t i = 0; i < count; i++) {
      if (pumps[i].done)
        continue;
      owner[n] = &pumps[i];
      fds[n++] = pumps[i].length == 0 ? (struct pollfd){ .fd = pumps[i].from, .events = POLLIN }
                                      : (struct pollfd){ .fd = pumps[i].to, .events = POLLOUT };
    }
    int wait_ms = -1;
    if (deadline >= 0) {
      long left = deadline - monotonic_ms();
      wait_ms = left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
    }
    int ready = poll(fds, n, wait_ms);
    if (ready < 0 && errno == EINTR)
      continue;
    if (ready < 0)
      die_with_error("relay", "poll");
    if (deadline >= 0 && monotonic_ms() >= deadline) {
      /* timeout(1): SIGTERM first, SIGKILL after the grace; the status is 124 either way */
      if (!timed_out) {
        timed_out = true;
        (void)kill(pid, SIGTERM);
        deadline = monotonic_ms() + (long)req->kill_after_ms;
      } else if (!killed) {
        killed = true;
        (void)kill(pid, SIGKILL);
        deadline = -1;
      }
    }
    if (fds[0].revents & POLLIN) {
      struct signalfd_siginfo info;
      while (read(signals, &info, sizeof info) == (ssize_t)sizeof info)
        if (info.ssi_signo == SIGWINCH && io->master >= 0)
          resize_pty(io->master);
      reap(&child);
    }
    for (nfds_t i = 1; i < n; i++) {
      if (fds[i].revents == 0)
        continue;
      struct pump *pump = owner[i];
      if (pump->done)
        continue;  /* ended by another pump's close in this round */
      if (pump->length == 0)
        pump_read(pump);
      else
        pump_write(pump);
    }
  }
  for (size_t i = 0; i < count; i++)
    if (pumps[i].output)
      drain(&pumps[i]);
  restore_terminal();
  return timed_out ? EXIT_TIMED_OUT : child.status;
}

/* ---- main --------------------------------------------------------------------------------- */

int main(void)
{
  static const int protocol_fds[] = { FD_REQUEST, FD_EXECUTABLE, FD_INFO, FD_SCRIPT, FD_SYNC };
  static struct request req;
  static struct sandbox_io io;
  bool userns = false;
  pid_t child;

  refuse_set_id();
  fill_std_fds();
  close_extra_fds(protocol_fds, sizeof protocol_fds / sizeof protocol_fds[0]);
  check_protocol_fds();
  die_with_parent("read_request");
  /* Namespaces before any secret is read: writing uid_map needs a dumpable process. */
  read_request_header(&req);
  if (req.tier != TIER_NONE)
    userns = setup_namespaces(req.tier, req.flags);
  setup_network(&req);
  if (req.tier != TIER_NONE)
    enter_pid_namespace();
  protect_memory();
  read_request(&req);
  forbid_core_dumps();
  join_fresh_session_keyring();
  setup_stdio(&req, &io);
  block_forwarded_signals();
  int signals = relay_signals();

  if (req.tier == TIER_NONE) {
    deliver_files(&req);
    write_info(&req, userns);
    child = start_target(&req, &io);
  } else {
    child = start_pid1(&req, &io, signals, userns);
  }
  forget_request(&req);
  close_info_fd();
  release_target_stdio(&io);
  forward_signals(child);
  return relay_until_exit(&req, &io, child, signals);
}
