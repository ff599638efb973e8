import { expectedQueryFailure } from './query-logger';

const pgError = (fields: Record<string, unknown>) => Object.assign(new Error(String(fields.message ?? 'x')), fields);

describe('expectedQueryFailure: the failed queries the log leaves out', () => {
  it('leaves out an optimistic write that lost (40001 from tollgate_expect_rows) and a duplicate event (23505 on usage_records_org_event)', () => {
    expect(expectedQueryFailure(pgError({ code: '40001', message: 'optimistic write: 1 of 2 rows were unchanged since they were read' }))).toBe(true);
    expect(expectedQueryFailure(pgError({ code: '23505', constraint: 'usage_records_org_event' }))).toBe(true);
    // TypeORM's QueryFailedError keeps pg's error as driverError.
    expect(expectedQueryFailure(Object.assign(new Error('duplicate key'), { code: '23505', driverError: { constraint: 'usage_records_org_event' } }))).toBe(true);
  });

  it('keeps everything else: another serialization failure, another unique violation, a deadlock, a connection error', () => {
    expect(expectedQueryFailure(pgError({ code: '40001', message: 'could not serialize access due to concurrent update' }))).toBe(false);
    expect(expectedQueryFailure(pgError({ code: '23505', constraint: 'ledger_entries_pkey' }))).toBe(false);
    expect(expectedQueryFailure(pgError({ code: '40P01', message: 'deadlock detected' }))).toBe(false);
    expect(expectedQueryFailure(pgError({ code: 'ECONNREFUSED' }))).toBe(false);
    expect(expectedQueryFailure('a string')).toBe(false);
  });
});
