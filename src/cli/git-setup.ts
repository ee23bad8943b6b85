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
import { SIZE_CAPS } from '../vault/vault-dir.js';

const DRIVER = 'sealvault-policy';
const ATTRIBUTE = `policy.json merge=${DRIVER}`;

function git(dir: string, args: string[]): string {
  try {
    return execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (error) {
    const failed = error as { code?: string; stderr?: string };
    if (failed.code === 'ENOENT') {
      throw new VaultError('usage', 'git is not installed (or not on PATH): install it, then run `vault git setup`');
    }
    const reason = (failed.stderr ?? '').split('\n')[0]?.replace(/^fatal: /, '') ?? '';
    const why = reason === '' ? '' : `: ${reason}`;
    throw new VaultError('usage', `git ${args[0]} in ${dir} failed${why}; is the vault inside a git repository?`);
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
    const separator = before === '' || before.endsWith('\n') ? '' : '\n';
    fs.writeFileSync(attributes, `${before}${separator}${ATTRIBUTE}\n`, { mode: 0o644 });
    done.push(`wrote "${ATTRIBUTE}" to ${attributes} (commit it)`);
  }
  const root = packageRoot();
  if (root === undefined) {
    throw new VaultError('internal', 'cannot tell where this sealvault is installed: the merge driver cannot name it');
  }
  const vault = path.join(root, 'bin', 'vault');
  git(top, ['config', `merge.${DRIVER}.name`, 'sealvault: the union of two policies, authenticated']);
  // the driver merges this vault's policy.json only: a .gitattributes elsewhere in the tree may name it for any file
  const policy = path.relative(top, path.join(fs.realpathSync(vaultDir), 'policy.json'));
  const command = `${shellQuote(vault)} git merge-driver --expect ${shellQuote(policy)} %A %B %P`;
  git(top, ['config', `merge.${DRIVER}.driver`, command]);
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

/** The bytes of a side git gives the driver (%A, %B): at most policy.json's cap, never a stream that does not end. */
export function readSide(file: string): Buffer {
  const stat = fs.statSync(file);
  if (!stat.isFile() || stat.size > SIZE_CAPS.policy) {
    const what = `not a file, or over ${SIZE_CAPS.policy} bytes`;
    throw new VaultError('unsafeFile', `${file} is not a policy git could merge (${what})`);
  }
  return fs.readFileSync(file);
}

/** What the driver leaves in %A when it cannot merge: git's own conflict markers around both sides. */
export function conflictText(ours: Buffer, theirs: Buffer): string {
  const line = (bytes: Buffer) => {
    const text = bytes.toString('utf8');
    return text.endsWith('\n') ? text : `${text}\n`;
  };
  return `<<<<<<< ours\n${line(ours)}=======\n${line(theirs)}>>>>>>> theirs\n`;
}
