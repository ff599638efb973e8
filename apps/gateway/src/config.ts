import { hostname } from 'node:os';
import { Cleaned, DatabaseEnv, flag, InternalTokenEnv, internalTokenOf, kafkaConfig, kafkaCrossCheck, KafkaEnv, optionalText, optionalUrl, port, ProfileEnv, readConfig, RuntimeEnv, runtimeConfig, text, url, whole } from '@tollgate/platform';

/**
 * Every variable the gateway reads (documented in .env.example), checked once at start by `gatewayConfig()` in
 * main.ts. To add one: a line in `GatewayEnv` (a validator from @tollgate/platform's config.ts with its default), a
 * field in what `gatewayConfig` returns, a case in config.unit.spec.ts, and its line in .env.example.
 */
export const GatewayEnv = {
  ...RuntimeEnv,
  ...ProfileEnv,
  ...DatabaseEnv,
  ...KafkaEnv,
  ...InternalTokenEnv,
  GATEWAY_PORT: port(8080),
  GATEWAY_HOST: text('127.0.0.1'),
  GATEWAY_DB_POOL: whole(5, { min: 1, max: 1000 }),
  UPSTREAM_URL: url('http://127.0.0.1:8090', ['http', 'https']),
  GATEWAY_UPSTREAM_MAX_BODY_BYTES: whole(64 * 1024 * 1024, { min: 1 }),
  QUERY_URL: url('http://127.0.0.1:8082', ['http', 'https']),
  METERING_GRPC_URL: text('127.0.0.1:50052'),
  /** Unset: rate-limit counters in this gateway's memory. */
  REDIS_URL: optionalUrl(['redis', 'rediss']),
  /** Comma-separated peer IPs (or IPv4 CIDRs) whose X-Forwarded-For is trusted. */
  TRUSTED_PROXIES: text(''),
  KEY_CACHE_TTL_MS: whole(2000),
  GATEWAY_SERVER_TIMING: flag(false),
  /** Default: .tollgate/spool/<GATEWAY_PORT>. */
  GATEWAY_SPOOL_DIR: optionalText(),
  GATEWAY_SPOOL_MAX_BYTES: whole(64 * 1024 * 1024, { min: 64 * 1024 }),
  GATEWAY_SPOOL_DEADLINE_MS: whole(1500, { min: 1 }),
  /** Strict credits: spend leases of credits held at metering (true), or hold per call (false). */
  GATEWAY_CREDIT_LEASES: flag(true),
  /** How metering names this gateway's leases. Default: <hostname>:<GATEWAY_PORT>. */
  GATEWAY_NAME: optionalText(),
};

export function gatewayConfig(env: NodeJS.ProcessEnv = process.env) {
  const c: Cleaned<typeof GatewayEnv> = readConfig(GatewayEnv, env, kafkaCrossCheck);
  return {
    ...runtimeConfig(c),
    port: c.GATEWAY_PORT,
    host: c.GATEWAY_HOST,
    profile: { name: c.TOLLGATE_PROFILE, dir: c.TOLLGATE_PROFILES_DIR },
    database: { url: c.DATABASE_URL, poolSize: c.GATEWAY_DB_POOL },
    kafka: kafkaConfig(c),
    internalToken: internalTokenOf(c),
    upstream: { url: c.UPSTREAM_URL, maxBodyBytes: c.GATEWAY_UPSTREAM_MAX_BODY_BYTES },
    queryUrl: c.QUERY_URL,
    meteringGrpcUrl: c.METERING_GRPC_URL,
    redisUrl: c.REDIS_URL,
    trustedProxies: c.TRUSTED_PROXIES.split(',').map((s) => s.trim()).filter(Boolean),
    keyCacheTtlMs: c.KEY_CACHE_TTL_MS,
    serverTiming: c.GATEWAY_SERVER_TIMING,
    creditLeases: c.GATEWAY_CREDIT_LEASES,
    gatewayName: c.GATEWAY_NAME ?? `${hostname()}:${c.GATEWAY_PORT}`,
    spool: { dir: c.GATEWAY_SPOOL_DIR ?? `.tollgate/spool/${c.GATEWAY_PORT}`, maxBytes: c.GATEWAY_SPOOL_MAX_BYTES, deadlineMs: c.GATEWAY_SPOOL_DEADLINE_MS },
  };
}

export type GatewayConfig = ReturnType<typeof gatewayConfig>;
