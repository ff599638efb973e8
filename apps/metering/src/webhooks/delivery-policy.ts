import { isIP } from 'node:net';
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

/**
 * Why `url` is not an acceptable endpoint, or null. Resolves the host: a name that resolves to any private
 * address is refused (SSRF), in production unless the operator allows private networks. In development any
 * http(s) URL is accepted.
 */
export async function checkEndpointUrl(url: string, rules: UrlRules, resolve: (host: string) => Promise<string[]> = resolveAll): Promise<string | null> {
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
  const host = u.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : await resolve(host);
  } catch {
    return `its host "${host}" does not resolve`;
  }
  if (addresses.length === 0) return `its host "${host}" does not resolve`;
  const bad = addresses.find(isPrivateAddress);
  if (bad) return `its host resolves to a private address (${bad}); set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow it`;
  return null;
}

async function resolveAll(host: string): Promise<string[]> {
  return (await lookup(host, { all: true })).map((a) => a.address);
}
