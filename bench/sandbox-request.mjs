// The spawn helper's request for the benchmark rows that run build/Release/spawn_helper without
// `vault`, made by the product's own code (src/sandbox/helper-protocol.ts and lockdown-root.ts,
// bundled with esbuild into the workspace), and the bubblewrap command line that gives the same
// isolation, read off the same mount plan.
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** { encodeHelperRequest, lockdownSystemMounts } from src/, bundled into `dir`. */
export async function loadSandboxCode(dir) {
  const outfile = path.join(dir, 'sandbox-code.mjs');
  await build({
    stdin: {
      contents: "export { encodeHelperRequest } from './src/sandbox/helper-protocol.ts';\nexport { lockdownSystemMounts } from './src/sandbox/lockdown-root.ts';\n",
      resolveDir: ROOT,
      loader: 'ts',
    },
    bundle: true, format: 'esm', platform: 'node', target: 'node20', outfile, logLevel: 'warning',
  });
  return import(pathToFileURL(outfile).href);
}

/**
 * What `vault exec --tier lockdown` mounts for a program run from `cwd` (the system, the working
 * directory): the same plan as src/sandbox/lockdown-root.ts, without a home.
 */
export function lockdownPlan(code, { cwd }) {
  return [...code.lockdownSystemMounts(), { kind: 'readWrite', path: cwd }];
}

/** The request as one Buffer; `env` holds "NAME=VALUE" strings. */
export function helperRequest(code, { tier, argv, env = [], hide = [], mounts = [] }) {
  return Buffer.from(code.encodeHelperRequest({ tier, argv, env: env.map((e) => Buffer.from(e)), files: [], hide, mounts }));
}

/**
 * bwrap with the isolation of that plan: all namespaces, a new session, the same binds and
 * symlinks, /proc, a /dev with its own devpts, a private /tmp, the hostname. What bwrap does not
 * do here: the seccomp filter (bwrap takes one only as compiled BPF), Landlock, a fresh keyring.
 */
export function bwrapArgs(plan, { cwd, argv }) {
  const args = ['--unshare-all', '--die-with-parent', '--new-session', '--hostname', 'sealvault', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp'];
  const byPath = [...plan].sort((a, b) => a.path.localeCompare(b.path));
  for (const entry of byPath) {
    if (entry.kind === 'symlink') args.push('--symlink', entry.target, entry.path);
    else if (entry.kind === 'readWrite') args.push('--bind', entry.path, entry.path);
    else if (entry.kind === 'emptyDir') args.push('--tmpfs', entry.path);
    else args.push('--ro-bind', entry.path, entry.path);
  }
  return [...args, '--chdir', cwd, ...argv];
}
