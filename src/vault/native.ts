import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VaultError } from './errors.js';

/** The *at() system calls (openat(2), mkdirat(2), unlinkat(2), renameat(2)); errors carry code, syscall and path like Node's. */
export interface NativeAddon {
  openAt(dirfd: number, name: string, flags: number, mode: number): number;
  mkdirAt(dirfd: number, name: string, mode: number): void;
  unlinkAt(dirfd: number, name: string, flags: number): void;
  renameAt(oldDirfd: number, oldName: string, newDirfd: number, newName: string): void;
  /** Entry names of an open directory, without . and .. */
  listDir(dirfd: number): string[];
  tryLockExclusive(fd: number): boolean;
  hardenProcess(): void;
  isDumpable(): boolean;
  /** A sealed memfd (close-on-exec, at offset 0) with the bytes of the regular file `fd`. */
  sealedCopy(fd: number, name: string): number;
  /** tcgetattr(fd), as opaque bytes for setTerminalModes. */
  terminalModes(fd: number): Buffer;
  /** tcsetattr(fd, TCSADRAIN, modes). */
  setTerminalModes(fd: number, modes: Buffer): void;
  /** getsockopt(SO_PEERCRED) of a connected unix socket (unix(7)). */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /** A close-on-exec copy of `fd` numbered `lowest` or more (fcntl(2) F_DUPFD_CLOEXEC). */
  dupAbove(fd: number, lowest: number): number;
  /** sendmsg(2): all of `data` with `fds` attached to its first byte (SCM_RIGHTS); waits up to timeoutMs while the socket is full. */
  sendWithFds(fd: number, data: Buffer, fds: number[], timeoutMs: number): void;
  /** One frame (4-byte big-endian length, then that many bytes) and the fds that came with it, on a worker thread. */
  recvRequest(fd: number, maxBytes: number, maxFds: number, timeoutMs: number): Promise<{ data: Buffer; fds: number[] }>;
  closeFd(fd: number): void;
  /** setsid(2), and /dev/null over fds 0-2, terminals and inherited fds but `keep`: the agent leaves whoever started it. */
  detach(keep: number[]): void;
}

let addon: NativeAddon | undefined;

const ADDON = 'sealvault_native.node';

/** The package root (the directory with package.json): from src/ in tests, dist/ or dist/test/ once bundled. */
export function packageRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let level = 0; level < 4; level += 1) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return undefined;
}

/** A file `npm install` built (binding.gyp) into build/Release, or undefined when it is not there. */
export function findBuildArtifact(name: string): string | undefined {
  const root = packageRoot();
  const candidate = root === undefined ? undefined : path.join(root, 'build', 'Release', name);
  return candidate !== undefined && fs.existsSync(candidate) ? candidate : undefined;
}

export function native(): NativeAddon {
  if (addon === undefined) {
    const file = findBuildArtifact(ADDON);
    if (file === undefined) throw new VaultError('internal', `the native addon (build/Release/${ADDON}) is not built: run \`npm run build\``);
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  }
  return addon;
}
