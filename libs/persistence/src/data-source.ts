import { DataSource } from 'typeorm';
import { DatabaseEnv, readConfig } from '@tollgate/platform';
import { AdvisoryLocks } from './advisory-locks';
import { migrations } from './migrations';
import { QueryLogger } from './query-logger';

export { DefaultDatabaseUrl } from '@tollgate/platform';

/** DATABASE_URL (checked: a postgres:// URL), for code without a config of its own; apps pass their config's. */
export function databaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  return readConfig(DatabaseEnv, env).DATABASE_URL;
}

/** The URL without its password, safe to print. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable DATABASE_URL>';
  }
}

/**
 * Migrations only; `synchronize` stays off. Entities are not used: the hot paths are set-based SQL.
 * `searchPath` sets every connection's search_path (a replay's scratch schema: unqualified table names, the
 * same SQL as live, resolve there and nowhere else).
 */
export function createDataSource(url = databaseUrl(), poolSize = 10, searchPath?: string): DataSource {
  return new DataSource({
    type: 'postgres',
    url,
    synchronize: false,
    migrationsRun: false,
    migrations,
    migrationsTableName: 'typeorm_migrations',
    extra: {
      max: poolSize,
      connectionTimeoutMillis: 5000,
      application_name: 'tollgate',
      ...(searchPath === undefined ? {} : { options: `-c search_path=${searchPath}` }),
    },
    logging: ['error'],
    logger: new QueryLogger(['error']),
  });
}

export class DatabaseUnavailableError extends Error {}

/** Connects (and migrates when asked); a failure names the database and what went wrong, not a stack. */
export async function connectDatabase(opts: { url?: string; migrate: boolean; poolSize?: number; searchPath?: string }): Promise<DataSource> {
  const url = opts.url ?? databaseUrl();
  const ds = createDataSource(url, opts.poolSize, opts.searchPath);
  try {
    await ds.initialize();
  } catch (e) {
    throw new DatabaseUnavailableError(
      `PostgreSQL is not reachable at ${redactUrl(url)} (${(e as Error).message}). Start it or set DATABASE_URL.`,
    );
  }
  if (opts.migrate) {
    // Several apps may start together: a session-level advisory lock makes migrations run once.
    const runner = ds.createQueryRunner();
    try {
      await runner.query('SELECT pg_advisory_lock($1)', [AdvisoryLocks.migrations]);
      await ds.runMigrations({ transaction: 'each' });
    } finally {
      await runner.query('SELECT pg_advisory_unlock($1)', [AdvisoryLocks.migrations]).catch(() => undefined);
      await runner.release();
    }
  }
  return ds;
}
