import { BadRequestException } from '@nestjs/common';
import { commandCause, DefaultActor, parseActor, toHistoryItem } from './admin-commands';

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
