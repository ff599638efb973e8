import { AdvancedConsoleLogger, QueryRunner } from 'typeorm';
import { sqlState } from './database-failures';

/**
 * Whether a failed query is one the code expects and handles, and counts where it decides it: an optimistic write
 * that lost to a concurrent one (`tollgate_expect_rows`, SQLSTATE 40001, "optimistic write: ..."; decided again under
 * locks, metering's hold-batch metric) or an event metered before (23505 on `usage_records_org_event`; the consumer
 * meters the batch again with its duplicate probe and counts the duplicates).
 */
export function expectedQueryFailure(e: unknown): boolean {
  const code = sqlState(e);
  const err = e as { message?: unknown; constraint?: unknown; driverError?: { constraint?: unknown } } | null;
  if (code === '40001') return typeof err?.message === 'string' && err.message.includes('optimistic write:');
  if (code === '23505') return (err?.constraint ?? err?.driverError?.constraint) === 'usage_records_org_event';
  return false;
}

/**
 * TypeORM's console logger (what `logging: ['error']` uses), less the expected failures above. In a scale run they
 * were most of metering's log, each with every parameter of a batch, and hid the one error that mattered.
 */
export class QueryLogger extends AdvancedConsoleLogger {
  // Typed `string` by AbstractLogger; the postgres driver passes pg's error object.
  override logQueryError(error: string, query: string, parameters?: unknown[], queryRunner?: QueryRunner): void {
    if (expectedQueryFailure(error as unknown)) return;
    super.logQueryError(error, query, parameters, queryRunner);
  }
}
