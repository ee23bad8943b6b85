// What every benchmark script sets up the same way: its numeric flags, and an environment with a
// home of its own, so that nothing of the developer's vaults, keychain or settings is measured.
import * as path from 'node:path';

/** `--name N` from argv, a whole number of at least 1, else `fallback`; a bad value ends the script. */
export function countOption(program, name, fallback) {
  const at = process.argv.indexOf(name);
  if (at === -1) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) {
    process.stderr.write(`${program}: cannot run: ${name} needs a positive integer\n`);
    process.exit(1);
  }
  return value;
}

/** PATH and LANG of the caller, everything else under `home`. */
export function isolatedEnv(home) {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    XDG_STATE_HOME: path.join(home, '.local', 'state'),
    XDG_DATA_HOME: path.join(home, '.local', 'share'),
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    LANG: 'C.UTF-8',
  };
}
