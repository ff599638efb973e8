import { encodeCursor, parseUsageParams } from './account-views';

describe('/usage parameters (SPEC §7)', () => {
  it('takes limit 1..500 and offset 0..2^53 - 1', () => {
    expect(parseUsageParams({ limit: '500', offset: '9007199254740991' })).toEqual({ ok: true, params: { limit: 500, offset: 9007199254740991, cursor: null } });
  });

  it.each(['100000000000000000000', '9223372036854775808', '9007199254740992', '1e20', '-1', '1.5'])('refuses offset=%s naming offset', (offset) => {
    expect(parseUsageParams({ offset })).toMatchObject({ ok: false, field: 'offset', problem: expect.stringContaining('whole number from 0 to 9007199254740991') });
  });

  it('takes only a cursor the API wrote: a row id within bigint, an ISO instant, nothing after', () => {
    expect(parseUsageParams({ cursor: encodeCursor('2026-01-01T00:00:00.000Z', '42') })).toMatchObject({ ok: true, params: { cursor: { id: '42' } } });
    for (const cursor of [
      encodeCursor('2026-01-01T00:00:00.000Z', '9223372036854775808'),
      encodeCursor('Tue, 01 Jan 2030 00:00:00 GMT', '1'),
      encodeCursor('2026-01-01T00:00:00.000Z', '1|x'),
      'not a cursor',
    ]) {
      expect(parseUsageParams({ cursor })).toEqual({ ok: false, field: 'cursor', problem: 'is not a cursor this API returned' });
    }
  });
});
