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

const ADDON = 'sealvault_native.node';

/**
 * `npm install` builds the native parts (binding.gyp) into build/Release at the package root. The
 * code runs from src/ in tests and from dist/ or dist/test/ once bundled, so look upwards for it.
 */
export function findBuildArtifact(name: string): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let level = 0; level < 4; level += 1) {
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      const candidate = path.join(dir, 'build', 'Release', name);
      return fs.existsSync(candidate) ? candidate : undefined;
    }
    dir = path.dirname(dir);
  }
  return undefined;
}

export function native(): NativeAddon {
  if (addon === undefined) {
    const file = findBuildArtifact(ADDON);
    if (file === undefined) throw new VaultError('internal', `the native addon (build/Release/${ADDON}) is not built: run \`npm run build\``);
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  }
  return addon;
}
