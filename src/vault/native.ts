import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VaultError } from './errors.js';

export interface NativeAddon {
  tryLockExclusive(fd: number): boolean;
  hardenProcess(): void;
  isDumpable(): boolean;
}

let addon: NativeAddon | undefined;

const ADDON = path.join('build', 'Release', 'sealvault_native.node');

/**
 * `npm install` builds the addon (binding.gyp) into build/Release at the package root. This module
 * runs from src/vault/ in tests and from dist/ or dist/test/ once bundled, so look upwards for it.
 */
function findAddon(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let level = 0; level < 4; level += 1) {
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      const candidate = path.join(dir, ADDON);
      return fs.existsSync(candidate) ? candidate : undefined;
    }
    dir = path.dirname(dir);
  }
  return undefined;
}

export function native(): NativeAddon {
  if (addon === undefined) {
    const file = findAddon();
    if (file === undefined) throw new VaultError('internal', `the native addon (${ADDON}) is not built: run \`npm run build\``);
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  }
  return addon;
}
