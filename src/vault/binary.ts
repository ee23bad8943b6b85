/**
 * What a grant pins and what `vault exec` runs: a program, or a script together with its
 * interpreter. Grants match by SHA-256, and what runs is the very bytes that were hashed: a program
 * or a script is copied into a sealed memfd (no write, grow or shrink), hashed from that copy, and
 * the copy is what is executed or what the interpreter reads. An interpreter is a system file only
 * root can write (checked at grant and at exec); it is hashed and executed from one open fd, and not
 * copied, so that it keeps its own path (/proc/self/exe), which runtimes rely on.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isElf, type LoaderFacts, loaderFacts } from './elf.js';
import { VaultError } from './errors.js';
import { native } from './native.js';
import { sha256OfFd } from './crypto.js';
import { realPathOf, resolveCommand } from './command-path.js';


export interface HashedFile {
  /** Real path: where the file was, for people and for finding it again. */
  path: string;
  sha256: string;
}

export interface PinnedFile extends HashedFile {
  /** Open read-only: a sealed copy (pinCopy) or the file itself (pinInPlace). The caller closes it. */
  fd: number;
}

/**
 * Opens `realPath` for reading without following a last symlink or waiting on a FIFO (O_NONBLOCK),
 * and checks on the fd that it is a regular file: a caller can swap a FIFO in after the name was
 * resolved, and a blocking open would stall the process (the agent: every client) for ever.
 */
export function openRegularFile(realPath: string): number {
  const fd = fs.openSync(realPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    throw new VaultError('refused', `${realPath} is not a regular file (it changed while it was being opened?)`);
  }
  return fd;
}

/** A sealed memfd copy of the file at `realPath` and the SHA-256 of that copy. */
export function pinCopy(realPath: string): PinnedFile {
  const source = openRegularFile(realPath);
  let copy: number;
  try {
    copy = native().sealedCopy(source, `sealvault:${path.basename(realPath)}`);
  } finally {
    fs.closeSync(source);
  }
  try {
    return { path: realPath, sha256: sha256OfFd(copy), fd: copy };
  } catch (error) {
    fs.closeSync(copy);
    throw error;
  }
}

/** The file at `realPath`, opened once and hashed from that fd (for a root-owned interpreter). */
export function pinInPlace(realPath: string): PinnedFile {
  const fd = openRegularFile(realPath);
  try {
    return { path: realPath, sha256: sha256OfFd(fd), fd };
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

export function closePinned(...files: (PinnedFile | undefined)[]): void {
  for (const file of files) if (file !== undefined) fs.closeSync(file.fd);
}

/** A script's `#!` line as execve(2) reads it: the interpreter, and at most one argument. */
export interface Shebang {
  interpreter: string;
  arg: string | undefined;
}

/** The `#!` line of the open file, or undefined when it has none. */
export function readShebang(fd: number): Shebang | undefined {
  const head = Buffer.alloc(256);
  const read = fs.readSync(fd, head, 0, head.length, 0);
  if (read < 2 || head[0] !== 0x23 || head[1] !== 0x21) return undefined;
  const end = head.indexOf(0x0a);
  const line = head.subarray(2, end === -1 ? read : end).toString('utf8').trim();
  const space = line.search(/[ \t]/);
  if (space === -1) return { interpreter: line, arg: undefined };
  return { interpreter: line.slice(0, space), arg: line.slice(space).trim() || undefined };
}

/**
 * The first path (the file or a directory above it) that someone other than root could write or
 * replace, or undefined when only root can. A directory with the sticky bit (as /tmp) lets others
 * replace only their own entries, so it passes when the entry below it belongs to root.
 */
export function writableByOthers(realPath: string): string | undefined {
  let child: fs.Stats | undefined;
  for (let at = realPath; ; at = path.dirname(at)) {
    const stat = fs.statSync(at);
    const open = stat.uid !== 0 || (stat.mode & 0o022) !== 0;
    const stickyOverRootEntry = stat.isDirectory() && (stat.mode & 0o1000) !== 0 && stat.uid === 0 && child?.uid === 0;
    if (open && !stickyOverRootEntry) return at;
    if (at === '/') return undefined;
    child = stat;
  }
}

/** What a grant records of the program it is for (docs/FORMAT.md: path, sha256, interpreter). */
export interface ProgramTarget extends HashedFile {
  interpreter?: { path: string; sha256: string; arg?: string };
}

const refused = (message: string) => new VaultError('refused', message);

/**
 * An interpreter a grant may pin: a root-owned system file (its copy is not taken, so nobody else
 * may be able to change it in place), with libraries from root-owned directories only.
 */
export function checkInterpreter(realPath: string, script: string): void {
  const fd = fs.openSync(realPath, fs.constants.O_RDONLY);
  let elf: boolean;
  try {
    elf = isElf(fd);
  } finally {
    fs.closeSync(fd);
  }
  if (!elf) {
    throw refused(`${script}: its interpreter ${realPath} is not a program but a script itself (a version manager's shim?); name the program it runs, such as /usr/bin/python3`);
  }
  const open = writableByOthers(realPath);
  if (open !== undefined) {
    throw refused(
      `${script}: its interpreter ${realPath} can be changed by others than root (${open} is writable or owned by someone else): use an interpreter installed by the system (/usr/bin), or grant a program instead`,
    );
  }
  checkLoader(realPath);
}

/**
 * A program that would load code from a place others than root can change loads code outside the
 * pin (ld.so(8)): its dynamic loader (PT_INTERP), a RUNPATH or RPATH entry (an empty or relative one
 * is the caller's working directory), a library it names with a slash. Headers that do not hold
 * together are refused too: what cannot be read cannot be checked.
 */
function checkLoader(realPath: string): void {
  const fd = fs.openSync(realPath, fs.constants.O_RDONLY);
  let facts: LoaderFacts;
  try {
    facts = loaderFacts(fd);
  } catch (error) {
    throw refused(`${realPath}: its ELF headers cannot be read (${error instanceof Error ? error.message : String(error)}), so where it loads code from cannot be checked`);
  } finally {
    fs.closeSync(fd);
  }
  const origin = path.dirname(realPath);
  const where = (what: string, entry: string, dir: string | undefined) => {
    if (dir === undefined) {
      throw refused(`${realPath} loads ${what} from ${JSON.stringify(entry)}, which is looked up relative to the working directory its caller chooses: build it without that`);
    }
    let open: string | undefined;
    try {
      open = writableByOthers(fs.realpathSync(dir));
    } catch {
      open = dir; // a path that does not exist yet can be made by whoever can write its parent
    }
    if (open !== undefined) {
      throw refused(`${realPath} loads ${what} from ${entry} (${dir}), which others than root can change (${open}): install it and its libraries where only root can write`);
    }
  };
  if (facts.interpreter !== undefined) where('its dynamic loader', facts.interpreter, path.isAbsolute(facts.interpreter) ? facts.interpreter : undefined);
  for (const entry of facts.runpaths) {
    if (/\$(LIB|PLATFORM|\{LIB\}|\{PLATFORM\})/.test(entry)) throw refused(`${realPath}: its RUNPATH/RPATH ${entry} uses $LIB or $PLATFORM, which cannot be checked here`);
    const expanded = entry.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin);
    where('libraries through its RUNPATH/RPATH', entry, entry !== '' && path.isAbsolute(expanded) ? expanded : undefined);
  }
  for (const name of facts.needed.filter((n) => n.includes('/'))) where('a library', name, path.isAbsolute(name) ? name : undefined);
}

/**
 * The interpreter of a `#!` script, resolved as the grant will run it: `/usr/bin/env NAME` is NAME
 * looked up in the grant's PATH, not in whatever PATH the caller of `vault exec` has.
 */
export function resolveInterpreter(shebang: Shebang, script: string, grantPath: string): { path: string; arg?: string } {
  const base = path.basename(shebang.interpreter);
  if (base === 'env') {
    const words = (shebang.arg ?? '').split(/[ \t]+/).filter((w) => w !== '');
    if (words.length !== 1 || words[0]!.startsWith('-') || words[0]!.includes('=')) {
      throw refused(`${script}: its #! line runs env with options (${shebang.arg ?? 'nothing'}); write the interpreter's path instead, such as #!/usr/bin/python3`);
    }
    return { path: resolveCommand(words[0]!, grantPath) };
  }
  let real: string;
  try {
    real = fs.realpathSync(shebang.interpreter);
  } catch {
    throw new VaultError('notFound', `${script}: its interpreter ${shebang.interpreter} does not exist`);
  }
  return shebang.arg === undefined ? { path: real } : { path: real, arg: shebang.arg };
}

/**
 * What `vault allow --to PATH` grants: a #! script with its interpreter (both pinned), or an ELF
 * program. Anything else is refused (exit 11): the kernel could not run it.
 */
export function grantTarget(program: string, grantPath: string): ProgramTarget {
  const real = resolveCommand(program);
  const fd = fs.openSync(real, fs.constants.O_RDONLY);
  let shebang: Shebang | undefined;
  let elf: boolean;
  let sha256: string;
  try {
    shebang = readShebang(fd);
    elf = isElf(fd);
    sha256 = sha256OfFd(fd);
  } finally {
    fs.closeSync(fd);
  }
  if (shebang !== undefined) return scriptTarget({ path: real, sha256 }, resolveInterpreter(shebang, real, grantPath));
  if (!elf) {
    throw refused(`${real} is neither a program (ELF) nor a script with a #! line, so it cannot be run; add a #! line naming its interpreter`);
  }
  checkLoader(real);
  return { path: real, sha256 };
}

/** `vault allow --run INTERPRETER SCRIPT`, or a #! script: the script's hash and its interpreter's. */
export function scriptTarget(script: HashedFile, interpreter: { path: string; arg?: string }): ProgramTarget {
  checkInterpreter(interpreter.path, script.path);
  const fd = fs.openSync(interpreter.path, fs.constants.O_RDONLY);
  let sha256: string;
  try {
    sha256 = sha256OfFd(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { ...script, interpreter: { path: interpreter.path, sha256, ...(interpreter.arg !== undefined ? { arg: interpreter.arg } : {}) } };
}

/** The file at `given` (a path, not looked up in PATH) and its hash, for `--run`'s script. */
export function hashScript(given: string): HashedFile {
  const real = realPathOf(given, 'the script');
  if (!fs.statSync(real).isFile()) throw new VaultError('usage', `${real} is not a regular file`);
  const fd = fs.openSync(real, fs.constants.O_RDONLY);
  try {
    return { path: real, sha256: sha256OfFd(fd) };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Why each grant no longer matches what is at its path (undefined where it still does): the file
 * changed or is gone, or its interpreter did. `vault policy` shows it; `vault allow --renew` mends it.
 */
export function staleGrants(grants: readonly { path: string; sha256: string; interpreter?: { path: string; sha256: string } }[]): (string | undefined)[] {
  const hashes = new Map<string, string | undefined>();
  const hashOf = (file: string) => {
    if (!hashes.has(file)) {
      let sha256: string | undefined;
      try {
        const fd = fs.openSync(file, fs.constants.O_RDONLY);
        try {
          sha256 = sha256OfFd(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch {
        sha256 = undefined;
      }
      hashes.set(file, sha256);
    }
    return hashes.get(file);
  };
  return grants.map((g) => {
    const now = hashOf(g.path);
    if (now === undefined) return 'the file is gone';
    if (now !== g.sha256) return 'the file changed';
    if (g.interpreter !== undefined && hashOf(g.interpreter.path) !== g.interpreter.sha256) return 'its interpreter changed';
    return undefined;
  });
}
