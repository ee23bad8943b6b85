/**
 * `vault git setup` and the merge driver it installs (gitattributes(5), "Defining a custom merge
 * driver"): git cannot merge two changes to policy.json, which is one line under one MAC, so the
 * driver writes the union of both sides, authenticated, when it can unlock the vault; else it leaves
 * git's conflict markers for `vault policy merge`.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VaultError } from '../vault/errors.js';
import { packageRoot } from '../vault/native.js';

const DRIVER = 'sealvault-policy';
const ATTRIBUTE = `policy.json merge=${DRIVER}`;

function git(dir: string, args: string[]): string {
  try {
    return execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (error) {
    const failed = error as { code?: string; stderr?: string };
    if (failed.code === 'ENOENT') throw new VaultError('usage', 'git is not installed (or not on PATH); install it, then run `vault git setup` again');
    const reason = (failed.stderr ?? '').split('\n')[0]?.replace(/^fatal: /, '') ?? '';
    throw new VaultError('usage', `git ${args[0]} in ${dir} failed${reason === '' ? '' : `: ${reason}`}; is the vault inside a git repository?`);
  }
}

/**
 * Names the merge driver for policy.json in the vault's own `.gitattributes` (committed: every
 * clone gets the attribute) and defines it in the repository's local config (not committed: git
 * runs no command a repository names, so each clone runs `vault git setup` once). Returns what it did.
 */
export function gitSetup(vaultDir: string): string[] {
  const top = git(vaultDir, ['rev-parse', '--show-toplevel']);
  const done: string[] = [];
  const attributes = path.join(vaultDir, '.gitattributes');
  const before = fs.existsSync(attributes) ? fs.readFileSync(attributes, 'utf8') : '';
  if (!before.split('\n').includes(ATTRIBUTE)) {
    fs.writeFileSync(attributes, `${before}${before === '' || before.endsWith('\n') ? '' : '\n'}${ATTRIBUTE}\n`, { mode: 0o644 });
    done.push(`wrote "${ATTRIBUTE}" to ${attributes} (commit it)`);
  }
  const vault = path.join(packageRoot() ?? '', 'bin', 'vault');
  git(top, ['config', `merge.${DRIVER}.name`, 'sealvault: the union of two policies, authenticated']);
  git(top, ['config', `merge.${DRIVER}.driver`, `${shellQuote(vault)} git merge-driver %A %B %P`]);
  done.push(`defined the merge driver ${DRIVER} in ${top}/.git/config (each clone runs \`vault git setup\` once)`);
  return done;
}

/** `text` in single quotes for sh(1), which runs the driver's command line. */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The vault directory of the file git merges (%P, relative to the top of the work tree, where git runs the driver). */
export function vaultOfMergedFile(pathInTree: string): string {
  return path.resolve(path.dirname(pathInTree));
}

/** What the driver leaves in %A when it cannot merge: git's own conflict markers around both sides. */
export function conflictText(ours: Buffer, theirs: Buffer): string {
  const line = (text: Buffer) => (text.toString('utf8').endsWith('\n') ? text.toString('utf8') : `${text.toString('utf8')}\n`);
  return `<<<<<<< ours\n${line(ours)}=======\n${line(theirs)}>>>>>>> theirs\n`;
}
