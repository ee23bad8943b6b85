// agent_client: `vault exec` through the agent without starting node, for the plain forms of the
// command (docs/agent-protocol.md). It does what src/agent/client.ts does, step by step, and hands
// the run back to node (returns AGENT_NOT_USED) wherever that would do something else: any other
// flag, a command not found, no agent at the socket, an agent holding another vault. It never sees
// a value or the key, and sends no variable that opens the vault.
//   1. parse `vault [--vault DIR] exec [--tier T] [--only A,B] [--mask[=S] | --no-mask] [--] CMD ARGS`
//      (without --vault, not under a project vault: node finds it and says which it is);
//   2. find CMD as node would (a path, or a name on PATH) and decide the masking;
//   3. connect to the agent's socket and trust it only as client.ts does (SO_PEERCRED);
//   4. send one frame (4-byte big-endian length, JSON) with cwd, stdin, stdout and stderr attached;
//   5. pass on the signals it gets as JSON lines, print the agent's warnings and errors, and
//      return the target's exit code.
#define _GNU_SOURCE
#include "agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { EXEC_FAILED = 125, KILL_AFTER_MS = 10000, SEND_TIMEOUT_MS = 5000, MAX_LINE_BYTES = 1 << 20 };

// What opens a vault (src/vault/unlock-variables.ts): never sent to the agent.
static const char *const UNLOCK_VARIABLES[] = { "VAULT_KEY", "VAULT_KEY_FILE", "VAULT_IDENTITY_FILE", "VAULT_PASSPHRASE",
                                                "VAULT_NEW_PASSPHRASE" };
// What client.ts passes on (SIGWINCH: the window changed).
static const int PASSED_ON[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
static const char *const PASSED_ON_NAMES[] = { "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH" };
#define PASSED_ON_COUNT (sizeof PASSED_ON / sizeof PASSED_ON[0])

struct exec_request {
  const char *vault;  // --vault, or NULL
  const char *tier;   // NULL: what the grants ask for
  const char *only;   // comma-separated, or NULL
  const char *mask;   // "stars", "name", or NULL for none
  bool no_mask;
  char **argv;  // the command and its arguments
  int argc;
};

// ---- a growing buffer, for the JSON frame --------------------------------------------------

struct buffer {
  char *data;
  size_t length, capacity;
  bool failed;
};

static void put(struct buffer *b, const char *bytes, size_t n) {
  if (b->failed) return;
  if (b->length + n + 1 > b->capacity) {
    size_t capacity = b->capacity == 0 ? 4096 : b->capacity;
    while (b->length + n + 1 > capacity) capacity *= 2;
    char *grown = realloc(b->data, capacity);
    if (grown == NULL) {
      b->failed = true;
      return;
    }
    b->data = grown;
    b->capacity = capacity;
  }
  memcpy(b->data + b->length, bytes, n);
  b->length += n;
}

static void puts_(struct buffer *b, const char *text) { put(b, text, strlen(text)); }

// A JSON string (RFC 8259, section 7): quotes, backslashes and control characters escaped; other
// bytes as they are (the agent decodes the frame as UTF-8, as it does node's).
static void put_json_string(struct buffer *b, const char *text, size_t n) {
  put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '"' || c == '\\') {
      char escaped[2] = { '\\', (char)c };
      put(b, escaped, 2);
    } else if (c < 0x20 || c == 0x7f) {
      char escaped[8];
      snprintf(escaped, sizeof escaped, "\\u%04x", c);
      put(b, escaped, 6);
    } else {
      put(b, (const char *)&c, 1);
    }
  }
  put(b, "\"", 1);
}

// ---- step 1: the plain forms ----------------------------------------------------------------

static bool is_tier(const char *t) { return strcmp(t, "none") == 0 || strcmp(t, "hardened") == 0 || strcmp(t, "lockdown") == 0; }

// Secret names as src/vault/names.ts allows them, comma-separated; anything else is node's to refuse.
static bool is_name_list(const char *list) {
  if (*list == '\0') return false;
  for (const char *c = list; *c != '\0'; c++) {
    bool first = c == list || c[-1] == ',';
    if (*c == ',') {
      if (first || c[1] == '\0') return false;
    } else if (!((*c >= 'A' && *c <= 'Z') || *c == '_' || (!first && *c >= '0' && *c <= '9'))) {
      return false;
    }
  }
  return true;
}

// The value of `--flag VALUE` or `--flag=VALUE` at argv[*i], advancing *i; NULL when it is not that flag.
static const char *flag_value(int argc, char **argv, int *i, const char *flag) {
  size_t n = strlen(flag);
  if (strncmp(argv[*i], flag, n) != 0) return NULL;
  if (argv[*i][n] == '=') return argv[*i] + n + 1;
  if (argv[*i][n] != '\0' || *i + 1 >= argc) return NULL;
  *i += 1;
  return argv[*i];
}

static bool parse_exec(int argc, char **argv, struct exec_request *req) {
  memset(req, 0, sizeof *req);
  int i = 1;
  if (i < argc && strcmp(argv[i], "--vault") == 0 && i + 1 < argc) {
    req->vault = argv[i + 1];
    i += 2;
  } else if (i < argc && strncmp(argv[i], "--vault=", 8) == 0) {
    req->vault = argv[i] + 8;
    i += 1;
  }
  if (i >= argc || strcmp(argv[i], "exec") != 0) return false;
  for (i += 1; i < argc; i++) {
    const char *word = argv[i];
    const char *value;
    if (strcmp(word, "--") == 0) {
      i += 1;
      break;
    }
    if (word[0] != '-') break;
    if ((value = flag_value(argc, argv, &i, "--tier")) != NULL) {
      if (!is_tier(value)) return false;
      req->tier = value;
    } else if ((value = flag_value(argc, argv, &i, "--only")) != NULL) {
      if (!is_name_list(value)) return false;
      req->only = value;
    } else if (strcmp(word, "--mask=stars") == 0 || strcmp(word, "--mask=name") == 0) {
      req->mask = word + strlen("--mask=");
      req->no_mask = false;  // the last of --mask and --no-mask wins, as commander has it
    } else if (strcmp(word, "--no-mask") == 0) {
      req->no_mask = true;
      req->mask = NULL;
    } else {
      return false;  // --net, --file, --info, --timeout, help, a typo: node's
    }
  }
  if (i >= argc || argv[i][0] == '\0') return false;
  if (req->vault != NULL && (req->vault[0] != '/')) return false;  // node resolves a relative one
  req->argv = argv + i;
  req->argc = argc - i;
  return true;
}

// ---- step 2: the command, and the masking --------------------------------------------------

static const char *lookup(char **env, const char *name) {
  size_t n = strlen(name);
  for (char **e = env; *e != NULL; e++)
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
  return NULL;
}

static bool runnable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

// Whether CMD is a program node would find (src/vault/command-path.ts): a path that names one, or a
// name on PATH; if not, node says which (127 or 126).
static bool command_found(const char *command, char **env) {
  if (strchr(command, '/') != NULL) return runnable(command);
  const char *path = lookup(env, "PATH");
  if (path == NULL) return false;
  for (const char *dir = path; dir != NULL && *dir != '\0';) {
    const char *colon = strchr(dir, ':');
    size_t n = colon == NULL ? strlen(dir) : (size_t)(colon - dir);
    char candidate[PATH_MAX];
    if (n > 0 && dir[0] == '/' && snprintf(candidate, sizeof candidate, "%.*s/%s", (int)n, dir, command) < (int)sizeof candidate &&
        runnable(candidate))
      return true;
    dir = colon == NULL ? NULL : colon + 1;
  }
  return false;
}

// src/cli/exec-args.ts maskStyle: on where output may end up in a log (not a terminal, or CI set).
static const char *mask_style(const struct exec_request *req, char **env) {
  if (req->no_mask) return NULL;
  if (req->mask != NULL) return req->mask;
  const char *ci = lookup(env, "CI");
  bool in_ci = ci != NULL && ci[0] != '\0' && strcmp(ci, "false") != 0 && strcmp(ci, "0") != 0;
  return in_ci || !isatty(STDOUT_FILENO) || !isatty(STDERR_FILENO) ? "stars" : NULL;
}

// ---- step 3: the agent, trusted as client.ts trusts it -------------------------------------

// XDG_<kind> when absolute, else HOME/<fallback> (src/vault/paths.ts); false when neither is there.
static bool xdg(char **env, const char *variable, const char *fallback, const char *leaf, char *out, size_t size) {
  const char *base = lookup(env, variable);
  if (base != NULL && base[0] == '/') return snprintf(out, size, "%s/%s", base, leaf) < (int)size;
  const char *home = lookup(env, "HOME");
  if (home == NULL || home[0] != '/') return false;
  return snprintf(out, size, "%s/%s/%s", home, fallback, leaf) < (int)size;
}

// Whether `path` (absolute) is as path.resolve would give it: no empty, "." or ".." component, no
// trailing slash.
static bool normal_path(const char *path) {
  if (strcmp(path, "/") == 0) return true;
  for (const char *c = path + 1;;) {
    const char *slash = strchr(c, '/');
    size_t n = slash == NULL ? strlen(c) : (size_t)(slash - c);
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return false;
    if (slash == NULL) return true;
    c = slash + 1;
  }
}

// src/agent/protocol.ts agentSocketPath, and whether the path was named: VAULT_AGENT_SOCK set to
// another path than the default one (client.ts distrust compares the two the same way).
static bool socket_path(char **env, char *out, size_t size, bool *named) {
  const char *runtime = lookup(env, "XDG_RUNTIME_DIR");
  char fallback[PATH_MAX];
  int n;
  if (runtime != NULL && runtime[0] == '/') {
    n = snprintf(fallback, sizeof fallback, "%s/sealvault/agent.sock", runtime);
  } else {
    // os.tmpdir() (node's lib/os.js): TMPDIR, TMP or TEMP, else /tmp, without a trailing slash
    const char *tmp = lookup(env, "TMPDIR");
    if (tmp == NULL || tmp[0] == '\0') tmp = lookup(env, "TMP");
    if (tmp == NULL || tmp[0] == '\0') tmp = lookup(env, "TEMP");
    if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
    size_t length = strlen(tmp);
    while (length > 1 && tmp[length - 1] == '/') length--;
    if (tmp[0] != '/') return false;
    n = snprintf(fallback, sizeof fallback, "%.*s/sealvault-%u/agent.sock", (int)length, tmp, (unsigned)getuid());
  }
  if (n < 0 || n >= (int)sizeof fallback) return false;
  const char *given = lookup(env, "VAULT_AGENT_SOCK");
  if (given == NULL || given[0] == '\0') given = fallback;
  // relative, or not in path.resolve's normal form: node resolves it
  if (given[0] != '/' || !normal_path(given)) return false;
  *named = strcmp(given, fallback) != 0;
  return snprintf(out, size, "%s", given) < (int)size;
}

static int connect_agent(const char *path) {
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof address.sun_path) return -1;
  strcpy(address.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Who may answer: this user, or at a named socket the owner of the socket and of its directory
// (which no one else may write). Returns 0, or prints why not and returns -1.
static int trust(int fd, const char *path, bool named) {
  struct ucred peer;
  socklen_t length = sizeof peer;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0) {
    fprintf(stderr, "vault: cannot check who answers at %s: SO_PEERCRED: %s\n", path, strerror(errno));
    return -1;
  }
  if (peer.uid == getuid()) return 0;
  if (named) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
    struct stat socket_stat, dir_stat;
    if (lstat(path, &socket_stat) == 0 && lstat(dir, &dir_stat) == 0 && socket_stat.st_uid == peer.uid && dir_stat.st_uid == peer.uid &&
        (dir_stat.st_mode & 022) == 0)
      return 0;
  }
  fprintf(stderr,
          "vault: the process answering at %s runs as uid %u, not as you%s; nothing was sent to it. If it is not your agent, "
          "someone else made that socket: remove it, or name yours with VAULT_AGENT_SOCK\n",
          path, (unsigned)peer.uid, named ? " nor as the owner of the socket and its directory" : "");
  return -1;
}

// ---- step 4: the request --------------------------------------------------------------------

static bool fill_std_fds(void) {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    if (open("/dev/null", O_RDWR) != fd) return false;
  }
  return true;
}

static bool unlock_variable(const char *entry, size_t name_length) {
  for (size_t i = 0; i < sizeof UNLOCK_VARIABLES / sizeof UNLOCK_VARIABLES[0]; i++)
    if (strlen(UNLOCK_VARIABLES[i]) == name_length && strncmp(entry, UNLOCK_VARIABLES[i], name_length) == 0) return true;
  return false;
}

// The environment as node has it (the first of two entries of one name), without what opens the vault.
static void put_environment(struct buffer *b, char **env) {
  puts_(b, "{");
  bool first = true;
  for (char **e = env; *e != NULL; e++) {
    const char *equals = strchr(*e, '=');
    if (equals == NULL || equals == *e) continue;
    size_t n = (size_t)(equals - *e);
    if (unlock_variable(*e, n)) continue;
    bool seen = false;
    for (char **before = env; before != e && !seen; before++) seen = strncmp(*before, *e, n + 1) == 0;
    if (seen) continue;
    if (!first) puts_(b, ",");
    first = false;
    put_json_string(b, *e, n);
    puts_(b, ":");
    put_json_string(b, equals + 1, strlen(equals + 1));
  }
  puts_(b, "}");
}

static bool build_frame(struct buffer *b, const struct exec_request *req, const char *vault, const char *mask, char **env) {
  put(b, "\0\0\0\0", 4);  // the length, filled in below
  puts_(b, "{\"v\":1,\"op\":\"exec\",\"vault\":");
  put_json_string(b, vault, strlen(vault));
  puts_(b, ",\"argv\":[");
  for (int i = 0; i < req->argc; i++) {
    if (i > 0) puts_(b, ",");
    put_json_string(b, req->argv[i], strlen(req->argv[i]));
  }
  puts_(b, "],\"env\":");
  put_environment(b, env);
  if (req->tier != NULL) {
    puts_(b, ",\"tier\":");
    put_json_string(b, req->tier, strlen(req->tier));
  }
  if (req->only != NULL) {
    puts_(b, ",\"only\":[");
    for (const char *name = req->only; name != NULL;) {
      const char *comma = strchr(name, ',');
      size_t n = comma == NULL ? strlen(name) : (size_t)(comma - name);
      if (name != req->only) puts_(b, ",");
      put_json_string(b, name, n);
      name = comma == NULL ? NULL : comma + 1;
    }
    puts_(b, "]");
  }
  puts_(b, ",\"files\":[],\"mask\":");
  if (mask == NULL) puts_(b, "null");
  else put_json_string(b, mask, strlen(mask));
  if (req->no_mask) puts_(b, ",\"noMask\":true");
  char tail[32];
  snprintf(tail, sizeof tail, ",\"killAfterMs\":%d}", KILL_AFTER_MS);
  puts_(b, tail);
  if (b->failed) return false;
  uint32_t body = (uint32_t)(b->length - 4);
  unsigned char prefix[4] = { (unsigned char)(body >> 24), (unsigned char)(body >> 16), (unsigned char)(body >> 8), (unsigned char)body };
  memcpy(b->data, prefix, 4);
  return true;
}

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

// The frame in sendmsg(2) calls, cwd, stdin, stdout and stderr attached to the first (SCM_RIGHTS),
// within SEND_TIMEOUT_MS as client.ts (an agent whose workers are all busy may not read it). Fails
// with errno ETIMEDOUT then.
static bool send_frame(int fd, const struct buffer *b, int cwd) {
  long deadline = now_ms() + SEND_TIMEOUT_MS;
  int fds[4] = { cwd, STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO };
  char control[CMSG_SPACE(sizeof fds)];
  memset(control, 0, sizeof control);
  size_t sent = 0;
  while (sent < b->length) {
    struct iovec part = { .iov_base = b->data + sent, .iov_len = b->length - sent };
    struct msghdr message = { .msg_iov = &part, .msg_iovlen = 1 };
    if (sent == 0) {
      message.msg_control = control;
      message.msg_controllen = sizeof control;
      struct cmsghdr *header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof fds);
      memcpy(CMSG_DATA(header), fds, sizeof fds);
    }
    long left = deadline - now_ms();
    struct pollfd writable = { .fd = fd, .events = POLLOUT };
    if (left <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    if (poll(&writable, 1, (int)left) <= 0) continue;  // a signal, or the time is up: checked above
    ssize_t n = sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return errno == EPIPE || errno == ECONNRESET;  // refused and closed: read what it said
    sent += (size_t)n;
  }
  return true;
}

// ---- step 5: the conversation -----------------------------------------------------------------

static int signal_pipe[2] = { -1, -1 };

static void on_signal(int signal) {
  int saved = errno;
  unsigned char byte = (unsigned char)signal;
  (void)!write(signal_pipe[1], &byte, 1);
  errno = saved;
}

static bool catch_signals(void) {
  if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return false;
  for (size_t i = 0; i < PASSED_ON_COUNT; i++) {
    struct sigaction action = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
    sigemptyset(&action.sa_mask);
    if (sigaction(PASSED_ON[i], &action, NULL) != 0) return false;
  }
  return true;
}

// The value of "key" in one line of the agent's JSON: a string (decoded into `out`) or a number.
// The agent writes these lines itself (JSON.stringify), and we trust it by now.
static const char *json_member(const char *line, const char *key) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\":", key);
  const char *at = strstr(line, quoted);
  return at == NULL ? NULL : at + strlen(quoted);
}

static void put_utf8(struct buffer *out, unsigned code) {
  char bytes[4];
  size_t n;
  if (code < 0x80) { bytes[0] = (char)code; n = 1; }
  else if (code < 0x800) { bytes[0] = (char)(0xc0 | code >> 6); bytes[1] = (char)(0x80 | (code & 0x3f)); n = 2; }
  else if (code < 0x10000) { bytes[0] = (char)(0xe0 | code >> 12); bytes[1] = (char)(0x80 | ((code >> 6) & 0x3f)); bytes[2] = (char)(0x80 | (code & 0x3f)); n = 3; }
  else { bytes[0] = (char)(0xf0 | code >> 18); bytes[1] = (char)(0x80 | ((code >> 12) & 0x3f)); bytes[2] = (char)(0x80 | ((code >> 6) & 0x3f)); bytes[3] = (char)(0x80 | (code & 0x3f)); n = 4; }
  put(out, bytes, n);
}

// The four hex digits of a \\u escape at `at`, or -1.
static long hex4(const char *at) {
  long value = 0;
  for (int k = 0; k < 4; k++) {
    char h = at[k];
    int digit = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

static bool json_string(const char *at, struct buffer *out) {
  if (at == NULL || *at != '"') return false;
  for (const char *c = at + 1; *c != '\0'; c++) {
    if (*c == '"') {
      put(out, "", 1);
      return !out->failed;
    }
    if (*c != '\\') {
      put(out, c, 1);
      continue;
    }
    c++;
    const char *simple = strchr("\"\\/bfnrt", *c);
    if (*c == '\0') return false;
    if (simple != NULL) {
      static const char decoded[] = "\"\\/\b\f\n\r\t";
      put(out, &decoded[simple - "\"\\/bfnrt"], 1);
    } else if (*c == 'u') {
      long code = hex4(c + 1);
      if (code < 0) return false;
      c += 4;
      // a surrogate pair (RFC 8259, section 7)
      long low = code >= 0xd800 && code < 0xdc00 && c[1] == '\\' && c[2] == 'u' ? hex4(c + 3) : -1;
      if (low >= 0xdc00 && low < 0xe000) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        c += 6;
      }
      put_utf8(out, (unsigned)code);
    } else {
      return false;
    }
  }
  return false;
}

enum outcome { GO_ON, FINISHED, OTHER_VAULT };

// One line of the agent (src/agent/protocol.ts AgentMessage): what client.ts does with it.
static enum outcome handle_line(const char *line, int *code) {
  struct buffer event = { 0 }, message = { 0 };
  enum outcome outcome = GO_ON;
  size_t length = strlen(line);
  // the agent writes one JSON object per line (JSON.stringify): anything else is ignored, as client.ts does
  if (length < 2 || line[0] != '{' || line[length - 1] != '}') goto done;
  if (!json_string(json_member(line, "event"), &event)) goto done;
  if (strcmp(event.data, "other-vault") == 0) {
    outcome = OTHER_VAULT;
  } else if (strcmp(event.data, "warning") == 0 && json_string(json_member(line, "message"), &message)) {
    fprintf(stderr, "vault: warning: %s\n", message.data);
  } else if (strcmp(event.data, "error") == 0 || strcmp(event.data, "exit") == 0) {
    if (strcmp(event.data, "error") == 0 && json_string(json_member(line, "message"), &message))
      fprintf(stderr, "vault: %s\n", message.data);
    const char *number = json_member(line, "code");
    char *end = NULL;
    long value = number != NULL ? strtol(number, &end, 10) : -1;
    // an exit status is 0 to 255; anything else from the agent is a failure of vault exec's own
    *code = number != NULL && end != number && (*end == ',' || *end == '}') && value >= 0 && value <= 255 ? (int)value : EXEC_FAILED;
    outcome = FINISHED;
  }
done:
  free(event.data);
  free(message.data);
  return outcome;
}

static int converse(int fd, const char *path) {
  struct buffer pending = { 0 };
  int code = EXEC_FAILED;
  bool answered = false;
  for (;;) {
    struct pollfd polled[2] = { { .fd = fd, .events = POLLIN }, { .fd = signal_pipe[0], .events = POLLIN } };
    if (poll(polled, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (polled[1].revents & POLLIN) {
      unsigned char signal;
      while (read(signal_pipe[0], &signal, 1) == 1)
        for (size_t i = 0; i < PASSED_ON_COUNT; i++)
          if (PASSED_ON[i] == signal) {
            char line[48];
            int n = snprintf(line, sizeof line, "{\"signal\":\"%s\"}\n", PASSED_ON_NAMES[i]);
            (void)!send(fd, line, (size_t)n, MSG_NOSIGNAL);
          }
    }
    if ((polled[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    put(&pending, chunk, (size_t)n);
    if (pending.failed || pending.length > MAX_LINE_BYTES) break;
    char *start = pending.data;
    for (char *newline; (newline = memchr(start, '\n', pending.length - (size_t)(start - pending.data))) != NULL;) {
      *newline = '\0';
      answered = true;
      enum outcome outcome = handle_line(start, &code);
      start = newline + 1;
      if (outcome == OTHER_VAULT) {
        free(pending.data);
        return AGENT_NOT_USED;
      }
      if (outcome == FINISHED) {
        free(pending.data);
        return code;
      }
    }
    size_t left = pending.length - (size_t)(start - pending.data);
    memmove(pending.data, start, left);
    pending.length = left;
  }
  free(pending.data);
  fprintf(stderr, "vault: the agent at %s closed the connection %s\n", path, answered ? "before the run ended" : "without an answer");
  return EXEC_FAILED;
}

// Whether the working directory or a directory above it has a `.vault` directory or a `.sealvault`
// file, which choose the vault before VAULT_DIR does (src/vault/paths.ts locateVault). Reading and
// checking them (their owner, the file's line) is node's: with one there, node asks the agent.
static bool project_vault_above(void) {
  char dir[PATH_MAX];
  if (getcwd(dir, sizeof dir) == NULL) return true;  // not known here: node finds out and says why
  for (;;) {
    const char *base = strcmp(dir, "/") == 0 ? "" : dir;
    char candidate[PATH_MAX];
    struct stat st;
    if (snprintf(candidate, sizeof candidate, "%s/.vault", base) >= (int)sizeof candidate) return true;
    if (stat(candidate, &st) == 0 && S_ISDIR(st.st_mode)) return true;
    if (snprintf(candidate, sizeof candidate, "%s/.sealvault", base) >= (int)sizeof candidate) return true;
    if (lstat(candidate, &st) == 0) return true;
    if (base[0] == '\0') return false;
    char *slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
  }
}

int agent_exec(int argc, char **argv, char **env) {
  struct exec_request req;
  if (!parse_exec(argc, argv, &req) || !command_found(req.argv[0], env)) return AGENT_NOT_USED;
  if (req.vault == NULL && project_vault_above()) return AGENT_NOT_USED;
  char vault[PATH_MAX], path[PATH_MAX];
  bool named;
  const char *given = req.vault != NULL ? req.vault : lookup(env, "VAULT_DIR");
  if (given != NULL) {
    if (given[0] != '/' || !normal_path(given) || snprintf(vault, sizeof vault, "%s", given) >= (int)sizeof vault) return AGENT_NOT_USED;
  } else if (!xdg(env, "XDG_DATA_HOME", ".local/share", "sealvault", vault, sizeof vault)) {
    return AGENT_NOT_USED;
  }
  if (!socket_path(env, path, sizeof path, &named)) return AGENT_NOT_USED;
  // a closed 0, 1 or 2 would be the next fd opened (the connection itself, sent as the target's
  // stdio): /dev/null there, as node has it
  if (!fill_std_fds()) return AGENT_NOT_USED;
  struct buffer frame = { 0 };
  if (!build_frame(&frame, &req, vault, mask_style(&req, env), env)) {
    free(frame.data);
    return AGENT_NOT_USED;
  }
  int fd = connect_agent(path);
  int cwd = fd < 0 ? -1 : open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || cwd < 0 || !catch_signals()) {
    // nothing sent: node can still do it (no agent, or a removed working directory: node says so)
    if (cwd >= 0) close(cwd);
    if (fd >= 0) close(fd);
    free(frame.data);
    return AGENT_NOT_USED;
  }
  if (trust(fd, path, named) != 0) {
    close(cwd);
    close(fd);
    free(frame.data);
    return EXEC_FAILED;
  }
  bool sent = send_frame(fd, &frame, cwd);
  free(frame.data);
  close(cwd);
  if (!sent) {
    fprintf(stderr, "vault: cannot send the request to the agent at %s: %s\n", path,
            errno == ETIMEDOUT ? "it did not take it within 5 s" : strerror(errno));
    close(fd);
    return EXEC_FAILED;
  }
  // a reader of our stderr that went away is no reason to hang up the run (node ignores SIGPIPE too)
  signal(SIGPIPE, SIG_IGN);
  int code = converse(fd, path);
  close(fd);
  if (code == AGENT_NOT_USED) {
    // node inherits what is ignored: put it back, and the signal handlers with it
    signal(SIGPIPE, SIG_DFL);
    for (size_t i = 0; i < PASSED_ON_COUNT; i++) signal(PASSED_ON[i], SIG_DFL);
  }
  return code;
}
