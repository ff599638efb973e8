import { QueryFailedError } from 'typeorm';
import { databaseFailure } from './database-failures';

/** A batch is isolated message by message only when the database refused its data, never when it was unreachable. */
describe('databaseFailure', () => {
  const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code, severity: 'ERROR' });

  it.each([
    ['22021', 'invalid byte sequence for encoding "UTF8": 0x00'],
    ['22P05', 'unsupported Unicode escape sequence'],
    ['22008', 'date/time field value out of range'],
    ['23505', 'duplicate key value violates unique constraint'],
    ['23514', 'violates check constraint'],
  ])('SQLSTATE %s (%s) is the data\'s fault', (code, message) => {
    expect(databaseFailure(pgError(code, message))).toBe('data');
    expect(databaseFailure(new QueryFailedError('SELECT 1', [], pgError(code, message)))).toBe('data');
  });

  it.each([
    ['57P01', 'terminating connection due to administrator command'],
    ['08006', 'connection failure'],
    ['53300', 'too many connections'],
    ['40P01', 'deadlock detected'],
    ['40001', 'could not serialize access'],
    ['42P01', 'relation does not exist'],
  ])('SQLSTATE %s (%s) means the database is unavailable', (code, message) => {
    expect(databaseFailure(pgError(code, message))).toBe('unavailable');
  });

  it('network errors and unknown errors mean unavailable; a RangeError or TypeError from evaluating input is data', () => {
    expect(databaseFailure(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe('unavailable');
    expect(databaseFailure(new Error('Connection terminated unexpectedly'))).toBe('unavailable');
    expect(databaseFailure(new Error('timeout exceeded when trying to connect'))).toBe('unavailable');
    expect(databaseFailure('a string')).toBe('unavailable');
    expect(databaseFailure(new RangeError('Invalid time value'))).toBe('data');
    expect(databaseFailure(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBe('data');
  });
});
