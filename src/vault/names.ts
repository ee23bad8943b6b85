import { VaultError } from './errors.js';

export const NAME_PATTERN = /^[A-Z_][A-Z0-9_]{0,127}$/;

/**
 * Secret names become environment variables of the child. These would let a secret's value
 * change how the child's loader, runtime or shell behaves, so they are refused as names.
 * SECURITY.md lists them; a test keeps the two in step.
 */
export const RESERVED_NAMES: readonly string[] = [
  'PATH', 'HOME', 'SHELL', 'USER', 'LOGNAME', 'PWD', 'TMPDIR', 'TZ', 'LANG', 'LANGUAGE',
  'BASH_ENV', 'ENV', 'IFS', 'CDPATH', 'GLOBIGNORE', 'SHELLOPTS', 'BASHOPTS', 'PS4',
  'PROMPT_COMMAND', 'HISTFILE',
  'NODE_OPTIONS', 'NODE_PATH', 'NODE_EXTRA_CA_CERTS', 'NODE_TLS_REJECT_UNAUTHORIZED',
  'PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'PYTHONINSPECT', 'PYTHONUSERBASE',
  'PERL5LIB', 'PERL5OPT', 'PERLLIB', 'RUBYOPT', 'RUBYLIB', 'GEM_PATH', 'GEM_HOME',
  'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS', 'CLASSPATH',
  'GCONV_PATH', 'GETCONF_DIR', 'HOSTALIASES', 'LOCALDOMAIN', 'LOCPATH', 'NLSPATH',
  'RESOLV_HOST_CONF', 'RES_OPTIONS', 'GLIBC_TUNABLES', 'MALLOC_CHECK_', 'MALLOC_TRACE',
  'TERMINFO', 'TERMINFO_DIRS', 'TERMCAP', 'XDG_RUNTIME_DIR', 'DBUS_SESSION_BUS_ADDRESS',
  'SSL_CERT_FILE', 'SSL_CERT_DIR', 'GIT_SSH_COMMAND', 'GIT_EXEC_PATH', 'EDITOR', 'VISUAL', 'PAGER',
];

/** Every name starting with one of these is refused (the loader's and sealvault's own). */
export const RESERVED_PREFIXES: readonly string[] = ['LD_', 'DYLD_', 'VAULT_', 'SEALVAULT_', 'BASH_FUNC_'];

export function checkSecretName(name: string): string {
  const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
  if (!NAME_PATTERN.test(name)) {
    throw new VaultError(
      'badSecret',
      `secret name ${shown} is not valid: use 1-128 characters A-Z, 0-9 and _, not starting with a digit`,
    );
  }
  const prefix = RESERVED_PREFIXES.find((p) => name.startsWith(p));
  if (prefix !== undefined || RESERVED_NAMES.includes(name)) {
    const why = prefix !== undefined ? `names starting with ${prefix} are reserved` : 'the name is reserved';
    throw new VaultError(
      'badSecret',
      `secret name ${shown} is refused: ${why}, as such a variable could change how the child program runs (SECURITY.md, "Reserved names"); pick another name`,
    );
  }
  return name;
}
