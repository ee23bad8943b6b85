/**
 * Servers of the test's own for the network tests: TCP greeters on the host's 127.0.0.1 and, as
 * root, in a network namespace the test creates behind a veth pair, with names that only a mount
 * namespace's /etc/hosts knows. Never an outside address.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';

/** A TCP server that greets each client with its name and hangs up; prints its port once listening. */
const GREETER = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[3])))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[2].encode() + b"\\n")
    c.close()
`;

/** Starts a greeter on `address` (port 0: any free one), in network namespace `netns` if given; resolves with its port. */
export async function greeter(address: string, name: string, options: { netns?: string; port?: number } = {}): Promise<{ child: ChildProcess; port: number }> {
  const argv = ['python3', '-c', GREETER, address, name, String(options.port ?? 0)];
  const child = options.netns === undefined ? spawn(argv[0]!, argv.slice(1)) : spawn('ip', ['netns', 'exec', options.netns, ...argv]);
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', (code) => reject(new Error(`the ${name} server exited (${code})`)));
  });
  return { child, port };
}

export interface TestNetns {
  name: string;
  /** The host's end of the veth pair. */
  link: string;
  /** Two addresses of the namespace: one a test lists, one it does not. */
  listed: string;
  other: string;
  remove(): void;
}

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
}

/**
 * A network namespace reached from the host over a /24 of 10.231.0.0/16 of its own (root only):
 * `slot` (0 or 1) keeps a test file's apart from another file's, and the process id keeps a run's
 * apart from another run's on the same machine (two routes to one /24 would cross them).
 */
export function makeNetns(tag: string, slot: number): TestNetns {
  const id = `${tag}${process.pid % 100000}`;
  const subnet = ((process.pid % 120) * 2 + slot) % 240 + 10;
  const ns: TestNetns = {
    name: `svtest-${id}`, link: `sv${id}h`, listed: `10.231.${subnet}.2`, other: `10.231.${subnet}.3`,
    remove() {
      spawnSync('ip', ['netns', 'del', ns.name]);
      spawnSync('ip', ['link', 'del', ns.link]);
    },
  };
  const peer = `sv${id}n`;
  ip('netns', 'add', ns.name);
  ip('link', 'add', ns.link, 'type', 'veth', 'peer', 'name', peer);
  ip('link', 'set', peer, 'netns', ns.name);
  ip('addr', 'add', `10.231.${subnet}.1/24`, 'dev', ns.link);
  ip('link', 'set', ns.link, 'up');
  ip('-n', ns.name, 'addr', 'add', `${ns.listed}/24`, 'dev', peer);
  ip('-n', ns.name, 'addr', 'add', `${ns.other}/24`, 'dev', peer);
  ip('-n', ns.name, 'link', 'set', peer, 'up');
  ip('-n', ns.name, 'link', 'set', 'lo', 'up');
  return ns;
}

/**
 * argv that runs `command` in a mount namespace of its own whose /etc/hosts is `hosts` (root only):
 * how a test gives a name to an address of its own namespace without DNS and without touching the host.
 */
export function withHostsFile(hosts: string, command: string[]): string[] {
  return ['unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec "$@"', hosts, ...command];
}
