import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Who may read GET /metrics. `TOLLGATE_METRICS_TOKEN`, when set, is required on every app (`Authorization: Bearer
 * <token>`; Prometheus sends it with `authorization.credentials_file`, see ops/prometheus.yml). Without it, apps on
 * internal ports serve /metrics to anyone who reaches them; the gateway, whose port is the public one, does so only
 * outside production: with NODE_ENV=production and no token its /metrics answers 401, so the figures of every org's
 * traffic never leak to the API's callers. Not the admin token: a scraper should hold no power over money, and a
 * public port must not become a place to guess the admin token.
 */
export interface MetricsAccess {
  /** sha256 of the token, or null when none is set. */
  readonly digest: Buffer | null;
  /** Whether /metrics is served without a token (only when none is set). */
  readonly openWithoutToken: boolean;
}

export const MetricsAccessPolicy = Symbol('MetricsAccessPolicy');

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export function metricsAccess(env: NodeJS.ProcessEnv, where: { publicPort: boolean }): MetricsAccess {
  const token = env.TOLLGATE_METRICS_TOKEN;
  if (token) return { digest: sha256(token), openWithoutToken: false };
  return { digest: null, openWithoutToken: !(where.publicPort && env.NODE_ENV === 'production') };
}

/** Whether a request with this Authorization header may read /metrics (the token compared in constant time). */
export function mayReadMetrics(access: MetricsAccess, authorization: string | undefined): boolean {
  if (!access.digest) return access.openWithoutToken;
  const presented = authorization?.startsWith('Bearer ') ? authorization.slice(7) : '';
  return presented !== '' && timingSafeEqual(sha256(presented), access.digest);
}
