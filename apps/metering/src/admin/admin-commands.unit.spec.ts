import { BadRequestException, ConflictException } from '@nestjs/common';
import { commandCause, DefaultActor, idempotencyKeyReused, parseActor, sameGrant, toHistoryItem } from './admin-commands';

function problem(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(BadRequestException);
    return (e as BadRequestException).getResponse();
  }
  throw new Error('expected a 400');
}

describe('the actor of an admin command', () => {
  it('is the admin token holder when the request names none', () => {
    expect(parseActor(undefined)).toBe(DefaultActor);
    expect(DefaultActor).toBe('admin-token');
  });

  it('is the X-Tollgate-Actor header, trimmed', () => {
    expect(parseActor('alice')).toBe('alice');
    expect(parseActor('  ops-bot@example.com ')).toBe('ops-bot@example.com');
    expect(parseActor('x'.repeat(128))).toHaveLength(128);
  });

  it.each([
    ['empty', ''],
    ['blank', '   '],
    ['too long', 'x'.repeat(129)],
    ['a NUL', 'ali\u0000ce'],
    ['a newline', 'alice\nadmin'],
    ['an escape sequence', '\u001b[31mred'],
    ['a C1 control', 'a\u0085b'],
  ])('refuses %s with a 400 that names the header', (_, value) => {
    expect(problem(() => parseActor(value))).toMatchObject({ error: 'invalid_request', fields: [{ field: 'X-Tollgate-Actor' }] });
  });

  it('refuses a header given twice', () => {
    expect(problem(() => parseActor(['a', 'b']))).toMatchObject({ fields: [{ field: 'X-Tollgate-Actor', problem: 'must be given once' }] });
  });
});

describe('a recorded command', () => {
  it('causes ledger entries as admin:<command id>', () => {
    expect(commandCause('cmd_abc')).toBe('admin:cmd_abc');
  });

  it('reads in the history with its seq, time, input, result and entries as numbers in order', () => {
    const item = toHistoryItem({
      id: 'cmd_1',
      seq: '7',
      command: 'grant-credits',
      actor: 'alice',
      issued_at: new Date('2026-12-02T06:00:00.123Z'),
      input: { amount: 5, reason: 'goodwill', idempotency_key: 'k', expires_at: null },
      idempotency_key: 'k',
      result: { balance: 55 },
      entry_seqs: ['12', 3],
    });
    expect(item).toEqual({
      id: 'cmd_1',
      seq: 7,
      command: 'grant-credits',
      actor: 'alice',
      at: '2026-12-02T06:00:00.123Z',
      input: { amount: 5, reason: 'goodwill', idempotency_key: 'k', expires_at: null },
      idempotency_key: 'k',
      result: { balance: 55 },
      entries: [3, 12],
    });
  });
});

describe('a grant idempotency key bound to its request', () => {
  const recorded = { amount: 10, reason: 'goodwill', idempotency_key: 'k', expires_at: '2027-01-01T00:00:00.000Z' };

  it('matches the same amount, reason and expiry instant, however the instant is written', () => {
    expect(sameGrant(recorded, { amount: 10, reason: 'goodwill', expires_at: '2027-01-01T00:00:00.000Z' })).toBe(true);
    expect(sameGrant(recorded, { amount: 10, reason: 'goodwill', expires_at: '2027-01-01T01:00:00+01:00' })).toBe(true);
    expect(sameGrant({ ...recorded, expires_at: null }, { amount: 10, reason: 'goodwill', expires_at: null })).toBe(true);
  });

  it('does not match another amount, reason or expiry, or a missing expiry', () => {
    expect(sameGrant(recorded, { amount: 20, reason: 'goodwill', expires_at: recorded.expires_at })).toBe(false);
    expect(sameGrant(recorded, { amount: 10, reason: 'Goodwill', expires_at: recorded.expires_at })).toBe(false);
    expect(sameGrant(recorded, { amount: 10, reason: 'goodwill', expires_at: '2027-01-01T00:00:01.000Z' })).toBe(false);
    expect(sameGrant(recorded, { amount: 10, reason: 'goodwill', expires_at: null })).toBe(false);
  });

  it('is refused with a 409 that names the key and what it was first used for', () => {
    const e = idempotencyKeyReused('k-1', { command: 'grant-credits', input: recorded });
    expect(e).toBeInstanceOf(ConflictException);
    expect(e.getResponse()).toEqual({
      error: 'idempotency_key_reused',
      message: 'idempotency_key "k-1" was first used with another request (amount 10, reason "goodwill", expires_at "2027-01-01T00:00:00.000Z"); repeat that request exactly to get its result, or use a new key',
      idempotency_key: 'k-1',
      fields: [{ field: 'idempotency_key', problem: expect.stringContaining('was first used with another request') }],
    });
  });
});
