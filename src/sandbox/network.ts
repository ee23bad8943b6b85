/**
 * A grant's network, as data: which of the three modes lockdown gives its program (NETWORK_MODES
 * in tiers.ts says what each one isolates), how two of them compare (an exec flag may only
 * narrow), and for an egress allow-list the nftables ruleset and /etc/hosts the sandbox gets.
 * The side effects (resolving names, the user-mode stack) are in egress.ts.
 *
 * The grammar (docs/FORMAT.md, "policy.json"): `none`, `host`, or `HOST:PORT[,HOST:PORT…]` where
 * HOST is an IPv4 address, `localhost` or a DNS name (RFC 1123 labels) and PORT 1–65535, TCP.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { VaultError } from '../vault/errors.js';

/** One listed destination, as the grant writes it: host lower-cased, port a number. */
export interface Destination {
  host: string;
  port: number;
}

export type Network = { mode: 'none' } | { mode: 'host' } | { mode: 'egress'; allow: Destination[] };

/** How a grant stores it in policy.json: "none", "host", or the list as written. */
export type NetworkField = 'none' | 'host' | string[];

/**
 * The user-mode stack's fixed addresses (slirp4netns(1), "--configure"): the sandbox is 10.0.2.100
 * on tap0, 10.0.2.2 is the gateway that slirp4netns maps to the host's 127.0.0.1, 10.0.2.3 its DNS.
 */
export const STACK = {
  device: 'tap0', network: '10.0.2.0/24', gateway: '10.0.2.2', dns: '10.0.2.3', mtu: 65520,
} as const;

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const MAX_DESTINATIONS = 64;

/**
 * RFC 1123 labels, and a last label that starts with a letter: no top-level domain starts with a
 * digit, and the resolver would read `0x7f000001` or `2130706433` as an address (inet_aton(3)).
 */
function isName(host: string): boolean {
  const labels = host.split('.');
  return host.length <= 253 && labels.every((label) => LABEL.test(label)) && /^[a-z]/.test(labels.at(-1)!);
}

/** The host's loopback, as a grant may name it: only 127.0.0.1 (slirp4netns reaches no other). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '127.0.0.1';
}

function parseDestination(flag: string, word: string): Destination {
  const at = word.lastIndexOf(':');
  const host = word.slice(0, at).toLowerCase();
  const portText = word.slice(at + 1);
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  const bad = (why: string) =>
    new VaultError('usage', `${flag} ${word}: ${why}; write none, host, or HOST:PORT[,HOST:PORT…]`);
  if (at <= 0 || !(port >= 1 && port <= 65535)) throw bad('each destination is HOST:PORT with a port from 1 to 65535');
  if (isIPv6(host) || host.startsWith('[')) {
    throw bad('IPv6 destinations are not supported (the sandbox has IPv4 only)');
  }
  if (isIPv4(host)) {
    if (host.startsWith('127.') && host !== '127.0.0.1') {
      throw bad("of the host's loopback only 127.0.0.1 can be reached");
    }
    if (host.startsWith('10.0.2.')) {
      throw bad("10.0.2.0/24 is the sandbox's own network (its gateway is the host's loopback)");
    }
    if (host === '0.0.0.0' || host === '255.255.255.255') throw bad('not a destination');
    return { host, port };
  }
  if (!isName(host)) throw bad(`"${host}" is neither an IPv4 address nor a DNS name`);
  return { host, port };
}

/** `--net` as a user writes it (allow or exec). Throws 'usage' naming what is wrong. */
export function parseNetwork(flag: string, text: string): Network {
  if (text === 'none' || text === 'host') return { mode: text };
  const words = text.split(',');
  const usage = (why: string) => new VaultError('usage', `${flag} ${text}: ${why}; write none, host, or HOST:PORT[,HOST:PORT…]`);
  if (words.some((w) => w === 'none' || w === 'host')) throw usage('none and host stand alone, not in a list');
  if (words.some((w) => w === '')) throw usage('an empty destination (a stray comma?)');
  if (words.some((w) => /\s/.test(w))) throw usage('a destination holds white space');
  if (words.length > MAX_DESTINATIONS) {
    throw new VaultError('usage', `${flag}: at most ${MAX_DESTINATIONS} destinations`);
  }
  return egress(words.map((w) => parseDestination(flag, w)));
}

function egress(allow: Destination[]): Network {
  const unique = new Map(allow.map((d) => [destinationText(d), d]));
  return unique.size === 0 ? { mode: 'none' } : { mode: 'egress', allow: [...unique.values()] };
}

export function destinationText(d: Destination): string {
  return `${d.host}:${d.port}`;
}

/** What a destination reaches: `localhost:P` and `127.0.0.1:P` are one (the host's loopback). */
function reaches(d: Destination): string {
  return isLoopback(d.host) ? `127.0.0.1:${d.port}` : destinationText(d);
}

export function networkText(network: Network): string {
  return network.mode === 'egress' ? network.allow.map(destinationText).join(',') : network.mode;
}

export function toField(network: Network): NetworkField {
  return network.mode === 'egress' ? network.allow.map(destinationText) : network.mode;
}

/** A grant's stored field; absent is `none` (lockdown's network before grants carried one). */
export function fromField(field: NetworkField | undefined): Network {
  if (field === undefined || field === 'none' || field === 'host') return { mode: field ?? 'none' };
  return egress(field.map((w) => parseDestination('policy.json net', w)));
}

/** Whether `narrow` gives no more than `wide`: none ⊆ any list ⊆ host. */
export function within(narrow: Network, wide: Network): boolean {
  if (wide.mode === 'host' || narrow.mode === 'none') return true;
  if (narrow.mode === 'host' || wide.mode === 'none') return false;
  const allowed = new Set(wide.allow.map(reaches));
  return narrow.allow.every((d) => allowed.has(reaches(d)));
}

/** What every one of several grants allows: the run of secrets granted differently gets the least. */
export function intersect(networks: readonly Network[]): Network {
  return networks.reduce<Network>((sum, next) => {
    if (sum.mode === 'host') return next;
    if (next.mode === 'host') return sum;
    if (sum.mode === 'none' || next.mode === 'none') return { mode: 'none' };
    const keep = new Set(next.allow.map(reaches));
    return egress(sum.allow.filter((d) => keep.has(reaches(d))));
  }, { mode: 'host' });
}

/** A listed destination with the IPv4 addresses vault resolved its name to at start. */
export interface ResolvedDestination extends Destination {
  addresses: string[];
}

/**
 * The ruleset set in the sandbox's own network namespace before the target starts (nft(8)). A
 * listed 127.0.0.1:PORT (or localhost) is rewritten to the stack's gateway, which slirp4netns maps
 * to the host's loopback, so that the target reaches it at the address it was configured with;
 * route_localnet lets such packets leave lo. Everything not listed is rejected (a TCP reset, else
 * ICMP administratively prohibited), so a refused connection fails at once instead of timing out.
 */
export function egressRuleset(destinations: readonly ResolvedDestination[]): string {
  const loopbackPorts = [...new Set(destinations.filter((d) => isLoopback(d.host)).map((d) => d.port))];
  const dnat = `    ip daddr 127.0.0.1 tcp dport { ${loopbackPorts.join(', ')} } dnat ip to ${STACK.gateway}`;
  const accepts = destinations.flatMap((d) =>
    isLoopback(d.host)
      ? [`ip daddr ${STACK.gateway} tcp dport ${d.port} accept`]
      : d.addresses.map((a) => `ip daddr ${a} tcp dport ${d.port} accept`),
  );
  const lines = [
    'table inet sealvault {',
    '  chain nat_output {',
    '    type nat hook output priority -100; policy accept;',
    ...(loopbackPorts.length > 0 ? [dnat] : []),
    '  }',
    '  chain nat_postrouting {',
    '    type nat hook postrouting priority 100; policy accept;',
    `    oifname "${STACK.device}" ip saddr 127.0.0.0/8 masquerade`,
    '  }',
    '  chain output {',
    '    type filter hook output priority 0; policy drop;',
    '    oifname "lo" accept',
    ...[...new Set(accepts)].map((rule) => `    ${rule}`),
    '    meta l4proto tcp reject with tcp reset',
    '    reject with icmpx type admin-prohibited',
    '  }',
    '}',
    '',
  ];
  return lines.join('\n');
}

/** The sandbox's /etc/hosts: loopback, and each listed name at the addresses vault allowed. */
export function egressHosts(destinations: readonly ResolvedDestination[]): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost'];
  for (const d of destinations) {
    if (isLoopback(d.host) || isIPv4(d.host)) continue;
    for (const address of d.addresses) lines.push(`${address}\t${d.host}`);
  }
  return `${[...new Set(lines)].join('\n')}\n`;
}
