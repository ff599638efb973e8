import { Cleaned, DatabaseEnv, port, ProfileEnv, readConfig, RuntimeEnv, runtimeConfig, text, whole } from '@tollgate/platform';

/**
 * Every variable the query service reads (documented in .env.example), checked once at start by `queryConfig()`
 * in main.ts. To add one: a line in `QueryEnv`, a field in what `queryConfig` returns, a case in
 * config.unit.spec.ts, and its line in .env.example.
 */
export const QueryEnv = {
  ...RuntimeEnv,
  ...ProfileEnv,
  ...DatabaseEnv,
  QUERY_PORT: port(8082),
  QUERY_HOST: text('127.0.0.1'),
  QUERY_GRPC_PORT: port(50051),
  QUERY_DB_POOL: whole(10, { min: 1, max: 1000 }),
};

export function queryConfig(env: NodeJS.ProcessEnv = process.env) {
  const c: Cleaned<typeof QueryEnv> = readConfig(QueryEnv, env);
  return {
    ...runtimeConfig(c),
    port: c.QUERY_PORT,
    host: c.QUERY_HOST,
    grpcPort: c.QUERY_GRPC_PORT,
    profile: { name: c.TOLLGATE_PROFILE, dir: c.TOLLGATE_PROFILES_DIR },
    database: { url: c.DATABASE_URL, poolSize: c.QUERY_DB_POOL },
  };
}

export type QueryConfig = ReturnType<typeof queryConfig>;
