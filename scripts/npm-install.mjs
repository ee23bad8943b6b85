// What npm runs when it installs sealvault (package.json "preinstall"), in a clone (`npm ci`), from a
// tarball of `npm pack` (`npm install -g ./sealvault-*.tgz`) and from a folder (`npm install -g .`):
//   1. checks that what the native build needs is there, else fails with one line naming the Debian
//      packages that are missing (the same as scripts/install.sh installs);
//   2. builds native/ (binding.gyp: the addon, the sandbox helper, the static launcher) with node-gyp,
//      with the running node's own headers when they are beside it (no download: installs offline);
//   3. makes bin/vault, the link to build/Release/vault_launcher, where it is missing: npm pack
//      leaves symbolic links out of the tarball;
//   4. when dist/ came built (a tarball), writes the files that belong to this machine
//      (scripts/machine-files.mjs): a clone has no dist/ yet, and "prepare" (scripts/bundle.mjs)
//      writes them after bundling.
// It is "preinstall", not "install", because npm links package.json "bin" between the two, and the
// link's target must then exist (bin-links chmods it; a missing one fails the install).
// docs/install.md says the same for users.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeMachineFiles } from './machine-files.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LAUNCHER_LINK = 'bin/vault';
const LAUNCHER_TARGET = '../build/Release/vault_launcher';

/** Ends the install with one line on stderr, as npm shows it under the failed script. */
function fail(line) {
  process.stderr.write(`sealvault: ${line}\n`);
  process.exit(1);
}

/** Whether `command` (argv) runs and exits 0, `input` on its stdin; its output is dropped. */
function succeeds(command, input = '') {
  const options = { input, stdio: ['pipe', 'ignore', 'ignore'], cwd: os.tmpdir() };
  const result = spawnSync(command[0], command.slice(1), options);
  return result.error === undefined && result.status === 0;
}

/** Whether the C compiler finds `header` (preprocessing only). */
const hasHeader = (header) => succeeds(['cc', '-E', '-x', 'c', '-o', '/dev/null', '-'], `#include <${header}>\n`);

/**
 * The Debian packages whose absence would fail the build, each found by trying what the build does
 * rather than asking dpkg, so that a library installed another way counts. libsecret-1-dev is
 * keytar's (a dependency that builds from source when it cannot download a prebuilt binary, as
 * offline); its install runs after this script, which names it here rather than leave it to gyp.
 */
function missingPackages() {
  const missing = new Set();
  const compiler = succeeds(['cc', '--version']) && succeeds(['c++', '--version']);
  if (!compiler || !succeeds(['make', '--version'])) missing.add('build-essential');
  if (!succeeds(['python3', '--version'])) missing.add('python3');
  if (compiler) {
    if (!hasHeader('sodium.h')) missing.add('libsodium-dev');
    if (!hasHeader('seccomp.h')) missing.add('libseccomp-dev');
    // the launcher is linked with -static: it needs the C library's archive (libc6-dev)
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-probe-'));
    try {
      const program = path.join(scratch, 'static');
      const linked = succeeds(['cc', '-static', '-x', 'c', '-o', program, '-'], 'int main(void) { return 0; }\n');
      if (!linked) missing.add('libc6-dev');
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  } else {
    // without a compiler the headers cannot be tried; name what the build would need next as well
    for (const [header, pkg] of [['sodium.h', 'libsodium-dev'], ['seccomp.h', 'libseccomp-dev']]) {
      if (!fs.existsSync(path.join('/usr/include', header))) missing.add(pkg);
    }
  }
  if (!succeeds(['pkg-config', '--exists', 'libsecret-1'])) missing.add('libsecret-1-dev');
  return [...missing];
}

/**
 * `--nodedir=PREFIX` when the running node's own headers are at PREFIX/include/node and of its very
 * version (as node-gyp does by itself for a node built with use_prefix_to_find_headers), so that
 * node-gyp does not download them; nothing when npm was told a nodedir or there are none.
 */
function nodedirArguments() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.dirname(path.dirname(fs.realpathSync(process.execPath)));
  let header;
  try {
    header = fs.readFileSync(path.join(prefix, 'include', 'node', 'node_version.h'), 'utf8');
  } catch {
    return [];
  }
  const part = (name) => header.match(new RegExp(`#define NODE_${name}_VERSION (\\d+)`))?.[1];
  return `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}` === process.version ? [`--nodedir=${prefix}`] : [];
}

const missing = missingPackages();
if (missing.length > 0) {
  const names = missing.join(' ');
  fail(`cannot build the native parts: missing ${names}; install them (sudo apt-get install ${names}) and install sealvault again`);
}

// npm installs a folder given to `npm install -g` as a link to it, without its dependencies;
// binding.gyp needs node-addon-api, and "prepare" the devDependencies (esbuild)
try {
  createRequire(path.join(root, 'package.json')).resolve('node-addon-api');
} catch {
  fail(`the npm dependencies are not installed in ${root}: run \`npm ci\` there first, then install it again`);
}

const gyp = spawnSync('node-gyp', ['rebuild', '-j', '2', ...nodedirArguments()], { cwd: root, stdio: 'inherit' });
if (gyp.error !== undefined) fail(`cannot run node-gyp (${gyp.error.message}): install sealvault with npm, which brings it`);
if (gyp.status !== 0) fail('the native build failed (node-gyp rebuild, its output above): fix what it names, then install again');

const link = path.join(root, LAUNCHER_LINK);
if (!fs.existsSync(link)) {
  fs.rmSync(link, { force: true }); // a link left pointing nowhere
  fs.mkdirSync(path.dirname(link), { recursive: true });
  fs.symlinkSync(LAUNCHER_TARGET, link);
}

await writeMachineFiles(root);
