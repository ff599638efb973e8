import { BlockList, isIP } from 'node:net';

/**
 * The address a call is limited and throttled by.
 *
 * `X-Forwarded-For` is written by whoever sent the request, so it is believed only when the TCP peer is one of
 * our own proxies (`trustedProxies`: exact addresses or CIDR blocks such as `10.0.0.0/8`, IPv4 or IPv6).
 * Each proxy appends the address it received from, so the list is read from the right: the first entry that is
 * not itself a trusted proxy is the client. Entries to its left were supplied by the client and are ignored,
 * so a forged header cannot buy a fresh limit. An unreadable entry on that path means the chain cannot be
 * trusted, and the peer is used. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is written as plain IPv4 so one client
 * has one counter whichever socket family it arrived on.
 */
export function clientIp(peer: string, xForwardedFor: string | undefined, trustedProxies: readonly string[]): string {
  const from = normaliseIp(peer) ?? peer;
  if (xForwardedFor === undefined || trustedProxies.length === 0) return from;
  const trusted = proxyList(trustedProxies);
  if (!isTrusted(trusted, from)) return from;
  const hops = xForwardedFor.split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normaliseIp(hops[i]!);
    if (hop === null) return from;
    if (!isTrusted(trusted, hop) || i === 0) return hop;
  }
  // An empty header value: nothing was forwarded.
  return from;
}

/** `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::ffff:1.2.3.4` -> the bare address; null when it is not one. */
function normaliseIp(raw: string): string | null {
  let s = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
  if (bracketed) s = bracketed[1]!;
  const v4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(s);
  if (v4WithPort) s = v4WithPort[1]!;
  const family = isIP(s);
  if (family === 4) return s;
  if (family !== 6) return null;
  s = s.toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(s);
  return mapped && isIP(mapped[1]!) === 4 ? mapped[1]! : s;
}

// The proxy list is configuration, built once per array (main.ts passes the same one to every call).
const proxyLists = new WeakMap<readonly string[], BlockList>();

/** Entries that are neither an address nor a CIDR block are ignored: they can match no peer. */
function proxyList(entries: readonly string[]): BlockList {
  const cached = proxyLists.get(entries);
  if (cached) return cached;
  const list = new BlockList();
  for (const entry of entries) {
    const [addr, bits, ...rest] = entry.trim().split('/');
    const ip = normaliseIp(addr ?? '');
    if (ip === null || rest.length > 0) continue;
    const type = isIP(ip) === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) {
      list.addAddress(ip, type);
      continue;
    }
    const prefix = Number(bits);
    if (/^\d+$/.test(bits) && prefix <= (type === 'ipv4' ? 32 : 128)) list.addSubnet(ip, prefix, type);
  }
  proxyLists.set(entries, list);
  return list;
}

function isTrusted(list: BlockList, ip: string): boolean {
  const family = isIP(ip);
  return family !== 0 && list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}
