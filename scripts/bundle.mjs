// Bundles the CLI into one ESM file per build (heavy modules stay in lazily loaded chunks):
// dist/vault.mjs, the release, and dist/test/vault.mjs, the same code with the test-only flag set.
// Beside each, exec.cjs: a direct `vault exec` as one CommonJS file, and exec.cjs.v8cache, its V8
// code cache (src/cli/code-cache.ts), made here with the node that will run it; and age.cjs, the
// age library that exec.cjs requires only to open a recipient slot. dist/code-cache.mjs is the
// cache's writer, for scripts/machine-files.mjs, which writes the cache and dist/node-path here and
// again on an install from a tarball (docs/install.md).
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { BUILDS, CODE_CACHE_WRITER, writeMachineFiles } from './machine-files.mjs';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['keytar'],
  legalComments: 'none',
  logLevel: 'warning',
  // the shell code of `vault completion` (src/cli/completion/), imported as strings
  loader: { '.bash': 'text', '.zsh': 'text', '.fish': 'text', '.sh': 'text' },
};

const esm = {
  ...common,
  entryPoints: { vault: 'src/cli/entry.ts' },
  splitting: true,
  format: 'esm',
  // commander is CommonJS: give its bundled require() a real one
  banner: { js: "import { createRequire as __sealvaultRequire } from 'node:module'; const require = __sealvaultRequire(import.meta.url);" },
  chunkNames: 'chunks/[name]-[hash]',
  outExtension: { '.js': '.mjs' },
};

/**
 * In exec.cjs, `age-encryption` (needed only to unlock a recipient slot) is not inlined: it would
 * double the file every exec reads and hashes (≈ 15 ms a run). It is required on first use from
 * age.cjs beside it, a CommonJS build of the package made below.
 */
const ageBeside = {
  name: 'age-beside',
  setup(build) {
    build.onResolve({ filter: /^age-encryption$/ }, () => ({ path: 'age-encryption', namespace: 'age-beside' }));
    build.onLoad({ filter: /.*/, namespace: 'age-beside' }, () => ({
      contents: "module.exports = require(require('node:path').join(__dirname, 'age.cjs'));",
      loader: 'js',
    }));
  },
};

const cjs = {
  ...common,
  plugins: [ageBeside],
  entryPoints: { exec: 'src/cli/exec-bundle.ts' },
  format: 'cjs',
  // the sources find the addon and keytar from their own URL
  banner: { js: "const __sealvaultImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': '__sealvaultImportMetaUrl' },
  outExtension: { '.js': '.cjs' },
};

// writeCodeCache from the sources, inside the package (dist/) so that it finds the native addon as the
// product does
await build({ ...common, entryPoints: ['src/cli/code-cache.ts'], format: 'esm', outfile: CODE_CACHE_WRITER });

for (const outdir of BUILDS) {
  // chunks are named by their hash: those of an earlier build would stay, and be packed
  rmSync(path.join(outdir, 'chunks'), { recursive: true, force: true });
  const define = { SEALVAULT_TEST_BUILD: String(outdir !== 'dist') };
  await build({ ...esm, outdir, define });
  await build({ ...cjs, outdir, define: { ...cjs.define, ...define } });
  await build({ ...common, entryPoints: { age: 'age-encryption' }, format: 'cjs', outdir, outExtension: { '.js': '.cjs' } });
}
await writeMachineFiles(path.resolve('.'));
