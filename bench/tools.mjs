// Finding, and when allowed installing, the programs the benchmark needs: GNU time for peak RSS,
// and the peers `age` (Debian) and `dotenvx` (npm), measured side by side with `vault`; and the
// entry module through which a probe runs inside `vault`.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Writes `dir/NAME` (NAME from the probe's file name), a module that imports the probe `preloadUrl`
 * (a file: URL) and then the CLI `entry` (a path), and returns its path: run it as `node MODULE ARGS`.
 * vault refuses `node --import` (src/cli/entry.ts: code loaded into the process that unlocks the
 * vault), so a probe of the bench's own runs first this way; process.argv.slice(2) stays ARGS.
 */
export function preloadedEntry(dir, preloadUrl, entry) {
  const module = path.join(dir, `with-${path.basename(new URL(preloadUrl).pathname)}`);
  fs.writeFileSync(module, `import ${JSON.stringify(preloadUrl)};\nawait import(${JSON.stringify(pathToFileURL(entry).href)});\n`);
  return module;
}

/** The absolute path of `command` on PATH, or undefined. */
export function which(command) {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, command);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function quietly(command, args, env = {}) {
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 240_000,
  });
  return { ok: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}${result.error?.message ?? ''}` };
}

/**
 * Returns the path of `command` from Debian package `pkg`: already installed, or installed now with
 * apt-get when running as root (apt-get update only if the first attempt fails). Otherwise
 * `{ reason }` says why it is unavailable.
 */
export function ensureDebianCommand(command, pkg, log) {
  const found = command.startsWith('/') ? (fs.existsSync(command) ? command : undefined) : which(command);
  if (found !== undefined) return { path: found };
  const apt = which('apt-get');
  if (apt === undefined) return { reason: `${command} is not installed and there is no apt-get` };
  if (process.getuid?.() !== 0) return { reason: `${command} is not installed (install Debian package ${pkg}; the bench installs it only as root)` };
  log(`installing Debian package ${pkg} (apt-get install -y ${pkg})`);
  let attempt = quietly(apt, ['install', '-y', '--no-install-recommends', pkg]);
  if (!attempt.ok) {
    log('apt-get install failed; running apt-get update and retrying');
    quietly(apt, ['update']);
    attempt = quietly(apt, ['install', '-y', '--no-install-recommends', pkg]);
  }
  const now = command.startsWith('/') ? (fs.existsSync(command) ? command : undefined) : which(command);
  if (!attempt.ok || now === undefined) return { reason: `apt-get install ${pkg} failed: ${attempt.output.trim().split('\n').slice(-2).join(' / ')}` };
  return { path: now };
}

/**
 * Installs `spec` (an npm package spec) into `prefix` with the ordinary npm client and returns the
 * JavaScript file of its `bin` entry `binName`, to be run as `node FILE` like `node dist/vault.mjs`.
 */
export function npmInstallBin(spec, packageName, binName, prefix, log) {
  const npm = which('npm');
  if (npm === undefined) return { reason: 'npm is not on PATH' };
  fs.mkdirSync(prefix, { recursive: true });
  log(`installing ${spec} into ${prefix} (npm install --prefix)`);
  const result = quietly(npm, ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--loglevel=error', spec]);
  if (!result.ok) return { reason: `npm install ${spec} failed: ${result.output.trim().split('\n').slice(-3).join(' / ')}` };
  try {
    const dir = path.join(prefix, 'node_modules', ...packageName.split('/'));
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const bin = typeof manifest.bin === 'string' ? manifest.bin : manifest.bin?.[binName];
    if (bin === undefined) return { reason: `${packageName} has no bin ${binName}` };
    return { path: path.join(dir, bin), version: manifest.version };
  } catch (error) {
    return { reason: `${packageName} installed but unreadable: ${error.message}` };
  }
}

/** First line of `command args` output, for recording versions. */
export function versionOf(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  return `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n')[0] || 'unknown';
}
