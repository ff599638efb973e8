import { forbiddenCharacterAt, parseRequestCompleted, printable, RequestCompletedV1 } from './request-completed';

/** What metering accepts from any producer: only events it can store, and a reason naming the field otherwise. */
describe('parseRequestCompleted', () => {
  const now = Date.parse('2026-11-22T10:00:00.000Z');
  const valid: RequestCompletedV1 = {
    event_id: '0193a0c4-0000-7000-8000-000000000001',
    schema_version: 1,
    occurred_at: '2026-11-22T09:59:59.123Z',
    org_id: 'acme',
    api_key_id: 'key_1',
    subject: { kind: 'key', id: 'key_1' },
    profile: 'trace',
    method: 'GET',
    route: '/companies',
    path: '/v1/companies',
    status_code: 200,
    response_time_ms: 142,
    entities: ['c_1', 'c_2'],
    reservation_id: 'res_1',
    request_id: 'req_1',
  };
  const bytes = (v: unknown) => Buffer.from(JSON.stringify(v));
  const reasonFor = (v: unknown) => {
    const r = parseRequestCompleted(Buffer.isBuffer(v) ? v : bytes(v), now);
    return r.ok ? null : r.reason;
  };

  it('accepts a valid event, non-ASCII ids included', () => {
    expect(parseRequestCompleted(bytes(valid), now)).toEqual({ ok: true, event: valid });
    expect(reasonFor({ ...valid, entities: ['société-😀', 'Zürich'] })).toBeNull();
  });

  const withString = (field: string, s: string): unknown => {
    switch (field) {
      case 'subject.id':
        return { ...valid, subject: { kind: 'key', id: s } };
      case 'entities.1':
        return { ...valid, entities: ['c_1', s] };
      default:
        return { ...valid, [field]: s };
    }
  };
  const fields = ['event_id', 'org_id', 'api_key_id', 'subject.id', 'profile', 'route', 'path', 'reservation_id', 'request_id', 'entities.1'];

  it.each(fields)('refuses a NUL character in %s, naming the field', (field) => {
    expect(reasonFor(withString(field, 'ab\u0000cd'))).toBe(`${field} contains a NUL character (U+0000) at index 2`);
  });

  it.each(fields)('refuses other control characters and unpaired surrogates in %s', (field) => {
    expect(reasonFor(withString(field, 'a\u001bb'))).toBe(`${field} contains a control character (U+001B) at index 1`);
    expect(reasonFor(withString(field, 'a\u0085'))).toBe(`${field} contains a control character (U+0085) at index 1`);
    expect(reasonFor(withString(field, 'a\u007f'))).toBe(`${field} contains a control character (U+007F) at index 1`);
    expect(reasonFor(withString(field, 'x\ud800y'))).toBe(`${field} contains an unpaired surrogate (U+D800) at index 1`);
  });

  it('refuses over-long strings and too many entities, naming the field', () => {
    expect(reasonFor({ ...valid, event_id: 'e'.repeat(65) })).toBe('schema: event_id must NOT have more than 64 characters');
    expect(reasonFor({ ...valid, org_id: 'o'.repeat(1024 * 1024) })).toBe('schema: org_id must NOT have more than 64 characters');
    expect(reasonFor({ ...valid, path: `/${'p'.repeat(2048)}` })).toBe('schema: path must NOT have more than 2048 characters');
    expect(reasonFor({ ...valid, entities: ['c_1', 'c'.repeat(257)] })).toBe('schema: entities.1 must NOT have more than 256 characters');
    expect(reasonFor({ ...valid, entities: Array.from({ length: 10_001 }, (_, i) => `c_${i}`) })).toBe('schema: entities must NOT have more than 10000 items');
  });

  it('refuses bytes that are not UTF-8, and says why a value is not JSON without echoing control characters', () => {
    expect(reasonFor(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))).toBe('value is not valid UTF-8');
    const reason = reasonFor(Buffer.from('{"event_id":\u0000}'))!;
    expect(reason).toMatch(/^value is not JSON: /);
    expect(forbiddenCharacterAt(reason)).toBe(-1);
    expect(reason).toContain('\\u0000');
  });

  it('refuses a time the schema lets through but no clock can represent (a leap second)', () => {
    expect(reasonFor({ ...valid, occurred_at: '2026-06-30T23:59:60Z' })).toBe('occurred_at 2026-06-30T23:59:60Z is not a time this system can represent');
  });

  it('still refuses events from more than 5 minutes ahead', () => {
    expect(reasonFor({ ...valid, occurred_at: '2026-11-22T10:05:01Z' })).toMatch(/more than 5 minutes in the future/);
  });
});

describe('printable', () => {
  it('escapes control characters and unpaired surrogates, keeps pairs, and cuts long text', () => {
    expect(printable('a\u0000b\ud83d\ude00c\udc00')).toBe('a\\u0000b😀c\\udc00');
    expect(printable('x'.repeat(20), 10)).toBe(`${'x'.repeat(10)}…`);
    expect(printable('short', 10)).toBe('short');
  });
});
