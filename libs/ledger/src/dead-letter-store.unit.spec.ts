import { DeadLetterHeaders, MaxDeadLetterBytes } from '@tollgate/contracts';
import { DeadLetter, deadLetterMessage } from './dead-letter-store';

const letter = (value: Buffer): DeadLetter => ({
  id: '7', topic: 'tollgate.request-completed.v1', partition: 2, offset: '41', key: Buffer.from('acme'), value,
  reason: 'schema: event_id must be string', createdAt: new Date(0), sentAt: null, replayedAt: null, replays: 0,
});

describe('the dead-letter topic message', () => {
  it('carries the original bytes, key and where they came from', () => {
    const m = deadLetterMessage(letter(Buffer.from('{"not":"valid"}')));
    expect(m.value).toEqual(Buffer.from('{"not":"valid"}'));
    expect(m.key).toBe('acme');
    expect(m.headers).toMatchObject({ [DeadLetterHeaders.OriginalPartition]: '2', [DeadLetterHeaders.OriginalOffset]: '41', [DeadLetterHeaders.Id]: '7' });
    expect(m.headers?.[DeadLetterHeaders.TruncatedFrom]).toBeUndefined();
  });

  it('cuts a 1 MB poison event to what Kafka accepts and says how long it was (the whole stays in the table)', () => {
    const huge = Buffer.alloc(1024 * 1024 + 10, 0x61);
    const m = deadLetterMessage(letter(huge));
    expect((m.value as Buffer).length).toBe(MaxDeadLetterBytes);
    expect(m.headers?.[DeadLetterHeaders.TruncatedFrom]).toBe(String(huge.length));
  });
});
