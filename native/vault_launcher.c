// vault_launcher: what `vault` starts as. A static program (no dynamic loader, so LD_PRELOAD,
// LD_AUDIT and LD_LIBRARY_PATH load nothing into it) that starts node by the absolute path the
// build recorded, never through PATH, with the variables that would load code into node or its
// loader removed (NODE_OPTIONS --require, NODE_PATH, LD_*, GCONV_PATH, GLIBC_TUNABLES, ...):
// the process that unlocks the vault runs only code sealvault shipped. Steps, each failing with one
// line that names the call and its errno:
//   1. find the package from /proc/self/exe (build/Release/vault_launcher, two levels down);
//   2. read the node path that scripts/bundle.mjs recorded in dist/node-path;
//   3. build the environment without the removed variables;
//   4. `vault exec` in a plain form with an agent answering: run it through the agent, no node
//      (agent_client.c; the agent's issue wants that exec to cost little more than starting node);
//   5. execve node with dist/vault.mjs and our arguments.
// SECURITY.md ("Code in the vault process") says what this covers and what it does not.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent_client.h"

extern char **environ;

// Names, or prefixes ending in '*', that make node or the C library load code or files chosen by
// the caller (node(1) "Environment", ld.so(8), glibc's gconv and tunables).
static const char *const REMOVED[] = {
    "NODE_*", "LD_*", "GCONV_PATH", "GLIBC_TUNABLES", "MALLOC_*", "LOCPATH", "HOSTALIASES", "RES_OPTIONS",
    "LOCALDOMAIN", "NLSPATH", "OPENSSL_*", "SSL_CERT_*", "UV_*", "TZDIR",
};

// `vault exec` keeps its own failures at 125, apart from the target's codes; every other command's is 1.
static int failure_code = 1;

static void die(const char *what, const char *detail, int err) {
  fprintf(stderr, "vault: cannot start: %s%s%s%s%s\n", what, detail != NULL ? " " : "", detail != NULL ? detail : "",
          err != 0 ? ": " : "", err != 0 ? strerror(err) : "");
  exit(failure_code);
}

static int removed(const char *entry) {
  const char *equals = strchr(entry, '=');
  size_t name_length = equals != NULL ? (size_t)(equals - entry) : strlen(entry);
  for (size_t i = 0; i < sizeof REMOVED / sizeof REMOVED[0]; i++) {
    const char *pattern = REMOVED[i];
    size_t length = strlen(pattern);
    if (pattern[length - 1] == '*') {
      if (name_length >= length - 1 && strncmp(entry, pattern, length - 1) == 0) return 1;
    } else if (name_length == length && strncmp(entry, pattern, length) == 0) {
      return 1;
    }
  }
  return 0;
}

// Step 1: the package root, from the real path of this very program.
static void package_root(char *root, size_t size) {
  ssize_t n = readlink("/proc/self/exe", root, size - 1);
  if (n < 0) die("readlink", "/proc/self/exe", errno);
  root[n] = '\0';
  for (int level = 0; level < 3; level++) {
    char *slash = strrchr(root, '/');
    if (slash == NULL || slash == root) die("the launcher is not at build/Release/ of a sealvault package:", root, 0);
    *slash = '\0';
  }
}

// Step 2: the absolute node path the build recorded (one line).
static void node_path(const char *root, char *node, size_t size) {
  char file[PATH_MAX];
  if (snprintf(file, sizeof file, "%s/dist/node-path", root) >= (int)sizeof file) die("path too long:", root, 0);
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) die("open", file, errno);
  ssize_t n = read(fd, node, size - 1);
  int err = errno;
  close(fd);
  if (n <= 0) die("read", file, n < 0 ? err : EIO);
  node[n] = '\0';
  char *newline = strchr(node, '\n');
  if (newline != NULL) *newline = '\0';
  if (node[0] != '/') die("dist/node-path does not hold an absolute path; run `npm run build`", NULL, 0);
}

int main(int argc, char **argv) {
  // `vault exec` and `vault --vault DIR exec` (src/cli/exec-args.ts parseLeanExec reads the same)
  if ((argc > 1 && strcmp(argv[1], "exec") == 0) || (argc > 3 && strcmp(argv[1], "--vault") == 0 && strcmp(argv[3], "exec") == 0) ||
      (argc > 2 && strncmp(argv[1], "--vault=", 8) == 0 && strcmp(argv[2], "exec") == 0))
    failure_code = 125;
  char root[PATH_MAX];
  package_root(root, sizeof root);
  char node[PATH_MAX];
  node_path(root, node, sizeof node);
  char script[PATH_MAX];
  if (snprintf(script, sizeof script, "%s/dist/vault.mjs", root) >= (int)sizeof script) die("path too long:", root, 0);

  // Step 3: the environment without what loads code.
  size_t count = 0;
  while (environ[count] != NULL) count++;
  char **env = calloc(count + 1, sizeof *env);
  if (env == NULL) die("calloc", NULL, errno);
  size_t kept = 0;
  for (size_t i = 0; i < count; i++) {
    if (!removed(environ[i])) env[kept++] = environ[i];
  }
  env[kept] = NULL;

  // Step 4: through the agent, where it can. As dist/vault.mjs does first (hardenProcess): no core
  // dump, and no ptrace or /proc/PID/mem by other processes of the user.
  if (failure_code == 125) {
    struct rlimit none = { 0, 0 };
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || setrlimit(RLIMIT_CORE, &none) != 0) die("hardening", NULL, errno);
    int code = agent_exec(argc, argv, env);
    if (code != AGENT_NOT_USED) return code;
  }

  // Step 5: node, our script, our arguments.
  char **args = calloc((size_t)argc + 3, sizeof *args);
  if (args == NULL) die("calloc", NULL, errno);
  args[0] = node;
  args[1] = script;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  args[argc + 1] = NULL;
  execve(node, args, env);
  die("execve", node, errno);
  return failure_code;
}
