// Bundles the CLI into one ESM file per build (heavy modules stay in lazily loaded chunks):
// dist/vault.mjs, the release, and dist/test/vault.mjs, the same code with the test-only flag set.
import { build } from 'esbuild';

const common = {
  entryPoints: { vault: 'src/cli/main.ts' },
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
await build({ ...common, outdir: 'dist/test', define: { SEALVAULT_TEST_BUILD: 'true' } });
