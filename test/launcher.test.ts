/**
 * `vault` runs only code it shipped: bin/vault is a link to a static launcher (no dynamic loader, so
 * LD_PRELOAD loads nothing into it) that starts the node recorded at build time, never one found on
 * PATH, without the variables that load code into node. Each vector has a control that shows it
 * working on a plain `node`, so that a pass means the launcher stopped it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RELEASE_CLI, ROOT } from './helpers/cli.js';

const VAULT = path.join(ROOT, 'bin', 'vault');

describe('the launcher', () => {
  let dir: string;
  let marker: string;
  const env = (extra: NodeJS.ProcessEnv) => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, LANG: 'C.UTF-8', ...extra });
  const vault = (extra: NodeJS.ProcessEnv) => spawnSync(VAULT, ['--help'], { env: env(extra), encoding: 'utf8', timeout: 30_000 });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-launcher-'));
    marker = path.join(dir, 'injected-code-ran');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is a static program, and bin/vault is that program: no dynamic loader to preload into', () => {
    expect(fs.realpathSync(VAULT)).toBe(fs.realpathSync(path.join(ROOT, 'build', 'Release', 'vault_launcher')));
    const file = spawnSync('file', [path.join(ROOT, 'build', 'Release', 'vault_launcher')], { encoding: 'utf8' });
    expect(file.stdout).toMatch(/statically linked/);
    expect(fs.readFileSync(path.join(ROOT, 'dist', 'node-path'), 'utf8')).toMatch(/^\/.*node\n$/);
  });

  it('NODE_OPTIONS=--require and NODE_PATH load nothing into vault', () => {
    const module = path.join(dir, 'steal.cjs');
    fs.writeFileSync(module, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran')\n`);
    const injected = { NODE_OPTIONS: `--require ${module}`, NODE_PATH: dir };
    expect(spawnSync(process.execPath, ['-e', ''], { env: env(injected) }).status).toBe(0);
    expect(fs.existsSync(marker), 'control: --require runs in a plain node').toBe(true);
    fs.rmSync(marker);
    const result = vault(injected);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Usage: vault/);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('LD_PRELOAD loads nothing into the node that runs vault', () => {
    const source = path.join(dir, 'preload.c');
    const library = path.join(dir, 'preload.so');
    // writes the marker in any process it is loaded into: bin/vault is the static launcher itself, so
    // no dynamically linked program (a shell wrapper, dirname) runs before node, and node runs without it
    fs.writeFileSync(source, `#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void steal(void) {
  close(open(${JSON.stringify(marker)}, O_CREAT | O_WRONLY, 0600));
}
`);
    expect(spawnSync('cc', ['-shared', '-fPIC', '-o', library, source]).status).toBe(0);
    expect(spawnSync(process.execPath, ['-e', ''], { env: env({ LD_PRELOAD: library }) }).status).toBe(0);
    expect(fs.existsSync(marker), 'control: LD_PRELOAD runs in a plain node').toBe(true);
    fs.rmSync(marker);
    const result = vault({ LD_PRELOAD: library, LD_LIBRARY_PATH: dir });
    expect(result.status, result.stderr).toBe(0);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('a node earlier on PATH is not the one that runs', () => {
    const evil = path.join(dir, 'bin');
    fs.mkdirSync(evil);
    fs.writeFileSync(path.join(evil, 'node'), `#!/bin/sh\ntouch ${marker}\nexec ${process.execPath} "$@"\n`, { mode: 0o755 });
    const result = vault({ PATH: `${evil}:${process.env.PATH ?? '/usr/bin:/bin'}` });
    expect(result.status, result.stderr).toBe(0);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('started without it, vault refuses when the environment loads code, in one line naming the variable (exit 2)', () => {
    for (const [name, value] of [['NODE_OPTIONS', '--max-old-space-size=100'], ['LD_PRELOAD', '/nonexistent.so'], ['NODE_PATH', dir]]) {
      const result = spawnSync(process.execPath, [RELEASE_CLI, 'list'], { env: env({ [name!]: value }), encoding: 'utf8' });
      expect(result.status, name).toBe(2);
      expect(result.stderr).toMatch(new RegExp(`^(ERROR: ld\\.so[^\\n]*\\n)*vault: ${name} is set, which loads code into the process that unlocks the vault; [^\\n]*\\n$`));
    }
  });
});
