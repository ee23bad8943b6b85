// Bundles the CLI into one ESM file per build (heavy modules stay in lazily loaded chunks):
// dist/vault.mjs, the release, and dist/test/vault.mjs, the same code with the test-only flag set.
import { build } from 'esbuild';
import { realpathSync, writeFileSync } from 'node:fs';

const common = {
  entryPoints: { vault: 'src/cli/entry.ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['keytar'],
  legalComments: 'none',
  // commander is CommonJS: give its bundled require() a real one
  banner: { js: "import { createRequire as __sealvaultRequire } from 'node:module'; const require = __sealvaultRequire(import.meta.url);" },
  chunkNames: 'chunks/[name]-[hash]',
  outExtension: { '.js': '.mjs' },
  logLevel: 'warning',
};

await build({ ...common, outdir: 'dist', define: { SEALVAULT_TEST_BUILD: 'false' } });
// the node that build/Release/vault_launcher starts, by its absolute path: never one found on PATH
writeFileSync('dist/node-path', `${realpathSync(process.execPath)}\n`);
await build({ ...common, outdir: 'dist/test', define: { SEALVAULT_TEST_BUILD: 'true' } });
