import { isIP, LookupFunction } from 'node:net';
import { lookup } from 'node:dns/promises';

/**
 * When to try a message again, and which endpoint URLs are acceptable. Pure except `checkEndpointUrl`'s DNS lookup.
 */

export interface DeliveryPolicy {
  /** Attempt n (1-based) failed: the next one waits about base * 2^(n-1), capped at `maxMs`, with full jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** An endpoint failing without a success for this long is disabled (its messages wait, nothing more is queued). */
  disableAfterMs: number;
  timeoutMs: number;
}

export const DefaultPolicy: DeliveryPolicy = {
  retryBaseMs: 5_000,
  retryMaxMs: 60 * 60_000,
  // Retries go on for at least a day: an endpoint is disabled only after three days of failing.
  disableAfterMs: 3 * 24 * 60 * 60_000,
  timeoutMs: 5_000,
};

/**
 * The delay before the attempt after failed attempt `n`: exponential, capped, with "equal jitter" (half fixed,
 * half random), so a fleet of endpoints that failed together does not retry together, and no delay is near zero.
 */
export function retryDelayMs(attempt: number, p: Pick<DeliveryPolicy, 'retryBaseMs' | 'retryMaxMs'>, random: () => number = Math.random): number {
  const exp = Math.min(p.retryMaxMs, p.retryBaseMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  return Math.round(exp / 2 + (exp / 2) * random());
}

/** Whether an IP address is loopback, link-local, private, unique-local, CGNAT, multicast or unspecified. */
export function isPrivateAddress(ip: string): boolean {
  const v = isIP(ip);
  if (v === 4) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return (
      a === 0 || a === 10 || a === 127 || a >= 224 ||
      (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b <= 127) || (a === 198 && (b === 18 || b === 19))
    );
  }
  if (v === 6) {
    const x = ip.toLowerCase();
    if (x === '::' || x === '::1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(x);
    if (mapped) return isPrivateAddress(mapped[1]!);
    return /^f[cd]/.test(x) || /^fe[89ab]/.test(x) || x.startsWith('ff');
  }
  return true;
}

export interface UrlRules {
  /** NODE_ENV=production: https only, public addresses only (unless `allowPrivate`). */
  production: boolean;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS=true. */
  allowPrivate: boolean;
}

/** Whether endpoints' addresses must be checked (production, private networks not allowed). */
export function guardsAddresses(rules: UrlRules): boolean {
  return rules.production && !rules.allowPrivate;
}

/**
 * Why `url` is not an acceptable endpoint, or null, without resolving a host name (an IP literal is checked):
 * the scheme, credentials, https in production, and a literal private address.
 */
export function checkUrlShape(url: string, rules: UrlRules): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'must be an http(s) URL';
  if (u.username || u.password) return 'must not carry credentials';
  if (!rules.production) return null;
  if (u.protocol !== 'https:') return 'must be https in production';
  if (rules.allowPrivate) return null;
  const host = hostOf(u);
  if (isIP(host) && isPrivateAddress(host)) return privateRefusal(host);
  return null;
}

function hostOf(u: URL): string {
  return u.hostname.replace(/^\[|\]$/g, '');
}

function privateRefusal(address: string): string {
  return `its host resolves to a private address (${address}); set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow it`;
}

/**
 * Why `url` is not an acceptable endpoint, or null (at creation). Resolves the host: a name that resolves to any
 * private address is refused (SSRF), in production unless the operator allows private networks. In development
 * any http(s) URL is accepted. At delivery the same check runs on the connection itself (`pinnedLookup`).
 */
export async function checkEndpointUrl(url: string, rules: UrlRules, resolve: (host: string) => Promise<string[]> = resolveAll): Promise<string | null> {
  const shape = checkUrlShape(url, rules);
  if (shape || !guardsAddresses(rules)) return shape;
  const host = hostOf(new URL(url));
  if (isIP(host)) return null;
  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch {
    return `its host "${host}" does not resolve`;
  }
  if (addresses.length === 0) return `its host "${host}" does not resolve`;
  const bad = addresses.find(isPrivateAddress);
  if (bad) return privateRefusal(bad);
  return null;
}

/**
 * The DNS lookup of a delivery's connection (net.connect's `lookup`): the name is resolved once, every address is
 * checked, and the connection goes to those checked addresses only. A check before the request followed by a
 * resolution of its own in the HTTP client would let a name that answers a public address first and a private one
 * next (DNS rebinding) reach the private one.
 */
export function pinnedLookup(resolve: (host: string) => Promise<string[]> = resolveAll): LookupFunction {
  return ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    resolve(hostname).then(
      (addresses) => {
        if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} does not resolve`), { code: 'ENOTFOUND' }));
        const bad = addresses.find(isPrivateAddress);
        if (bad) return callback(Object.assign(new Error(`url refused: ${privateRefusal(bad)}`), { code: 'EPRIVATEADDRESS' }));
        const list = addresses.map((address) => ({ address, family: isIP(address) }));
        if (options?.all) callback(null, list);
        else callback(null, list[0]!.address, list[0]!.family);
      },
      (e: Error) => callback(e),
    );
  }) as unknown as LookupFunction;
}

export async function resolveAll(host: string): Promise<string[]> {
  return (await lookup(host, { all: true })).map((a) => a.address);
}
