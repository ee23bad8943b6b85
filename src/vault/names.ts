import { VaultError } from './errors.js';

export const NAME_PATTERN = /^[A-Z_][A-Z0-9_]{0,127}$/;

/**
 * Variables that choose which code a program, its loader, its runtime, its shell or a tool it
 * starts will run, or where that code comes from. One list for two rules: a secret may not be named
 * like one (a value could then redirect the target), and the caller's value of one never reaches a
 * target (src/sandbox/environment.ts): a grant may pin a value (`vault allow … --env NAME=VALUE`),
 * never pass the caller's through. SECURITY.md lists them; a test keeps the two in step.
 */
export const CODE_VARIABLES: readonly string[] = [
  // the shell and the loader
  'PATH', 'HOME', 'SHELL', 'ENV', 'BASH_ENV', 'SHELLOPTS', 'BASHOPTS', 'PS4', 'PROMPT_COMMAND', 'IFS', 'CDPATH',
  'GLOBIGNORE', 'GCONV_PATH', 'GETCONF_DIR', 'GLIBC_TUNABLES', 'LOCPATH', 'NLSPATH', 'MALLOC_CHECK_', 'MALLOC_TRACE',
  'HOSTALIASES', 'LOCALDOMAIN', 'RES_OPTIONS', 'RESOLV_HOST_CONF', 'TERMINFO', 'TERMINFO_DIRS', 'TERMCAP',
  'XDG_CONFIG_HOME', 'XDG_CONFIG_DIRS', 'XDG_DATA_HOME', 'XDG_DATA_DIRS', 'XDG_RUNTIME_DIR', 'DBUS_SESSION_BUS_ADDRESS',
  'TMPDIR',
  // runtimes
  'NODE_OPTIONS', 'NODE_PATH', 'NODE_EXTRA_CA_CERTS', 'NODE_TLS_REJECT_UNAUTHORIZED', 'NODE_REPL_EXTERNAL_MODULE',
  'PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'PYTHONINSPECT', 'PYTHONUSERBASE', 'PYTHONBREAKPOINT', 'PYTHONEXECUTABLE',
  'PERL5LIB', 'PERLLIB', 'PERL5OPT', 'PERL5DB', 'PERL_MB_OPT', 'PERL_MM_OPT',
  'RUBYOPT', 'RUBYLIB', 'GEM_PATH', 'GEM_HOME', 'BUNDLE_GEMFILE',
  'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS', 'CLASSPATH', 'JAVA_HOME',
  'TCLLIBPATH', 'PHPRC', 'PHP_INI_SCAN_DIR', 'R_PROFILE', 'R_PROFILE_USER',
  'GOFLAGS', 'GOPATH', 'GOROOT', 'GOPROXY', 'CARGO_HOME', 'RUSTC_WRAPPER', 'RUSTFLAGS', 'RUSTUP_HOME',
  'VIRTUAL_ENV', 'CONDA_PREFIX',
  // tools that start other programs
  'GIT_SSH', 'GIT_SSH_COMMAND', 'GIT_EXEC_PATH', 'GIT_DIR', 'GIT_WORK_TREE', 'GIT_ASKPASS', 'GIT_EDITOR', 'GIT_PAGER',
  'GIT_EXTERNAL_DIFF', 'GIT_TEMPLATE_DIR', 'GIT_CONFIG', 'GIT_CONFIG_GLOBAL', 'GIT_CONFIG_SYSTEM', 'GIT_CONFIG_COUNT',
  'GIT_CONFIG_PARAMETERS', 'GIT_PROXY_COMMAND', 'SSH_ASKPASS', 'EDITOR', 'VISUAL', 'PAGER', 'BROWSER', 'LESSOPEN',
  'LESSCLOSE', 'MANPAGER', 'MAKEFLAGS', 'MAKE', 'CC', 'CXX', 'LD', 'AR', 'SSL_CERT_FILE', 'SSL_CERT_DIR',
  'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE', 'GIT_COMMON_DIR', 'GIT_SEQUENCE_EDITOR', 'SUDO_ASKPASS',
  // tools whose configuration file runs commands (credential helpers, exec plugins, engines, hooks)
  'OPENSSL_CONF', 'OPENSSL_ENGINES', 'OPENSSL_MODULES', 'KUBECONFIG', 'DOCKER_CONFIG', 'GNUPGHOME', 'AWS_CONFIG_FILE',
  'AWS_SHARED_CREDENTIALS_FILE', 'CLOUDSDK_CONFIG', 'CLOUDSDK_PYTHON', 'AZURE_CONFIG_DIR', 'TF_CLI_CONFIG_FILE',
  'TF_PLUGIN_CACHE_DIR', 'DOTNET_STARTUP_HOOKS', 'DOTNET_ROOT', 'GOENV', 'GOTOOLCHAIN', 'GOBIN', 'JULIA_LOAD_PATH',
  'JULIA_DEPOT_PATH', 'HELM_PLUGINS', 'ANSIBLE_CONFIG', 'BOTO_CONFIG', 'PGSERVICEFILE', 'PSQLRC', 'MYSQL_HOME',
];

/** Every name starting with one of these chooses code too (loader, shell functions, tool options). */
export const CODE_VARIABLE_PREFIXES: readonly string[] = [
  'LD_', 'DYLD_', 'BASH_FUNC_', 'GIT_CONFIG_KEY_', 'GIT_CONFIG_VALUE_', 'NPM_CONFIG_', 'npm_config_', 'YARN_', 'PIP_',
  'PYTHON', 'PERL5', 'PERL_', 'RUBY', 'NODE_', 'DENO_', 'BUN_', 'UV_', 'LUA_', 'CARGO_', 'RUSTUP_', 'CONDA_',
  'POETRY_', 'PNPM_', 'COREPACK_',
];

/** Reserved as secret names besides: what the target's environment is made of, and sealvault's own. */
const ENVIRONMENT_NAMES: readonly string[] = ['USER', 'LOGNAME', 'PWD', 'TZ', 'LANG', 'LANGUAGE', 'HISTFILE', 'TERM', 'CI'];
const OWN_PREFIXES: readonly string[] = ['VAULT_', 'SEALVAULT_'];

export const RESERVED_NAMES: readonly string[] = [...CODE_VARIABLES, ...ENVIRONMENT_NAMES];
export const RESERVED_PREFIXES: readonly string[] = [...CODE_VARIABLE_PREFIXES, ...OWN_PREFIXES];

/**
 * Whether `name` chooses code (CODE_VARIABLES, CODE_VARIABLE_PREFIXES). Without regard to case: some
 * tools read their variables so (npm takes npm_Config_x as NPM_CONFIG_X).
 */
export function choosesCode(name: string): boolean {
  const upper = name.toUpperCase();
  return CODE_VARIABLES.some((n) => n.toUpperCase() === upper) || CODE_VARIABLE_PREFIXES.some((prefix) => upper.startsWith(prefix.toUpperCase()));
}

/** Whether some name starting with `prefix` chooses code: `--pass-env PREFIX*` would let it through. */
export function prefixReachesCode(prefix: string): boolean {
  const upper = prefix.toUpperCase();
  return (
    CODE_VARIABLES.some((name) => name.toUpperCase().startsWith(upper)) ||
    CODE_VARIABLE_PREFIXES.some((p) => p.toUpperCase().startsWith(upper) || upper.startsWith(p.toUpperCase()))
  );
}

/**
 * Why `name` cannot be a secret's: 'invalid' (not NAME_PATTERN), or the reserved prefix or name that
 * refuses it (SECURITY.md, "Reserved names"); undefined when it can. checkSecretName throws on it.
 */
export function secretNameProblem(name: string): 'invalid' | { reservedBy: string } | undefined {
  if (!NAME_PATTERN.test(name)) return 'invalid';
  const prefix = RESERVED_PREFIXES.find((p) => name.startsWith(p));
  if (prefix !== undefined) return { reservedBy: `${prefix}*` };
  return RESERVED_NAMES.includes(name) ? { reservedBy: name } : undefined;
}

export function checkSecretName(name: string): string {
  const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
  const problem = secretNameProblem(name);
  if (problem === 'invalid') {
    throw new VaultError(
      'badSecret',
      `secret name ${shown} is not valid: use 1-128 characters A-Z, 0-9 and _, not starting with a digit`,
    );
  }
  if (problem !== undefined) {
    const { reservedBy } = problem;
    const why = reservedBy.endsWith('*')
      ? `names starting with ${reservedBy.slice(0, -1)} are reserved`
      : 'the name is reserved';
    throw new VaultError(
      'badSecret',
      `secret name ${shown} is refused: ${why}, as such a variable could change how the child program runs ` +
        '(SECURITY.md, "Reserved names"); pick another name, or let a grant set it ' +
        '(`vault allow … --env NAME=VALUE`)',
    );
  }
  return name;
}
