/** Reading the environment: every variable is documented in .env.example. */
export class ConfigError extends Error {}

export function intFromEnv(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`environment: ${name}: must be a whole number (got "${raw}")`);
  return n;
}

export function strFromEnv(name: string, fallback: string, env: NodeJS.ProcessEnv = process.env): string {
  const raw = env[name];
  return raw === undefined || raw === '' ? fallback : raw;
}

export const DevelopmentAdminToken = 'dev-admin-token-change-me';

/**
 * The admin token. Production refuses to start without one; development falls back to a printed default.
 */
export function adminToken(env: NodeJS.ProcessEnv = process.env): { token: string; isDefault: boolean } {
  const token = env.TOLLGATE_ADMIN_TOKEN;
  if (token) return { token, isDefault: false };
  if (env.NODE_ENV === 'production') {
    throw new ConfigError('environment: TOLLGATE_ADMIN_TOKEN: must be set when NODE_ENV=production (it guards the admin API)');
  }
  return { token: DevelopmentAdminToken, isDefault: true };
}

export const DevelopmentInternalToken = 'dev-internal-token-change-me';

/**
 * The credential gateways present to metering's gRPC (`authorization: Bearer <token>` metadata). Production
 * refuses to start without one; development falls back to a default that metering and gateway share, so
 * `npm run start:<app>` works out of the box (`npm run up` and the tests make up their own).
 */
export function internalToken(env: NodeJS.ProcessEnv = process.env): { token: string; isDefault: boolean } {
  const token = env.TOLLGATE_INTERNAL_TOKEN;
  if (token) return { token, isDefault: false };
  if (env.NODE_ENV === 'production') {
    throw new ConfigError("environment: TOLLGATE_INTERNAL_TOKEN: must be set when NODE_ENV=production (gateways present it to metering's gRPC)");
  }
  return { token: DevelopmentInternalToken, isDefault: true };
}
