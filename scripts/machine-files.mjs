// The files of a build that belong to one machine, and so are never packed (package.json "files"):
// dist/node-path, the absolute path of the node that build/Release/vault_launcher starts, and each
// build's exec.cjs.v8cache, a V8 code cache that only that node's V8 accepts (src/cli/code-cache.ts).
// scripts/bundle.mjs writes them after bundling; scripts/npm-install.mjs writes them when it installs
// a package whose dist/ came built (a tarball from `npm pack`), with the node that npm runs, which is
// the node that will run vault.
import { existsSync, realpathSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

/** The release build, which is packed, and the test build (SEALVAULT_TEST_BUILD), which is not. */
export const BUILDS = ['dist', 'dist/test'];

/**
 * writeCodeCache of src/cli/code-cache.ts, bundled by scripts/bundle.mjs to this file (packed) so
 * that an install without esbuild can load it. It finds the native addon from its own URL, as the
 * product does, so the addon must be built first.
 */
export const CODE_CACHE_WRITER = 'dist/code-cache.mjs';

/**
 * Writes the machine's files for every build of BUILDS that is present below `root` (the package
 * root, absolute): each `<build>/exec.cjs.v8cache`, then `dist/node-path`. Run it with the node
 * that will run vault (process.execPath is what gets recorded). Returns the builds it wrote for.
 * Throws what the file system or the code cache writer throws.
 */
export async function writeMachineFiles(root) {
  const writer = path.join(root, CODE_CACHE_WRITER);
  const builds = BUILDS.filter((build) => existsSync(path.join(root, build, 'exec.cjs')));
  if (builds.length === 0) return builds;
  const { writeCodeCache } = await import(pathToFileURL(writer).href);
  for (const build of builds) writeCodeCache(path.join(root, build, 'exec.cjs'));
  // the node that build/Release/vault_launcher starts, by its absolute path: never one found on PATH
  writeFileSync(path.join(root, 'dist', 'node-path'), `${realpathSync(process.execPath)}\n`);
  return builds;
}
