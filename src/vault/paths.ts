import * as os from 'node:os';
import * as path from 'node:path';
import { VaultError } from './errors.js';

/** XDG base directories must be absolute; a relative value is ignored, as the spec says. */
function xdgDirectory(variable: string, fallback: string): string {
  const value = process.env[variable];
  if (value !== undefined && path.isAbsolute(value)) return value;
  return path.join(os.homedir(), fallback);
}

/** `--vault DIR`, else `$VAULT_DIR`, else `$XDG_DATA_HOME/sealvault`. */
export function resolveVaultDirectory(flag: string | undefined): string {
  if (flag !== undefined) {
    if (flag === '') throw new VaultError('usage', '--vault needs a directory');
    return path.resolve(flag);
  }
  const fromEnv = process.env.VAULT_DIR;
  if (fromEnv !== undefined) {
    if (fromEnv === '') throw new VaultError('usage', 'VAULT_DIR is set but empty: set it to the vault directory or unset it');
    return path.resolve(fromEnv);
  }
  return path.join(xdgDirectory('XDG_DATA_HOME', '.local/share'), 'sealvault');
}

/** Per-user state outside any vault: pins of public keys and audit witnesses. */
export function stateDirectory(): string {
  return path.join(xdgDirectory('XDG_STATE_HOME', '.local/state'), 'sealvault');
}
