import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeadLetterHeaders, GatewayDeadLetterReasonPrefix } from '@tollgate/contracts';
import { DeadLetterFile, LocalDeadLetter } from './dead-letter-file';
import { MessageRefusedError, OutgoingMessage, Publisher, recordBatchBytesBound } from './messaging';
import { SpoolLog } from './spool-log';
import { DeadLetterCause, SpoolingPublisher } from './spooling-publisher';

const event = (i: number, extra: Record<string, unknown> = {}): OutgoingMessage => ({
  key: 'org-1',
  value: JSON.stringify({ event_id: `e-${i}`, org_id: 'org-1', request_id: `r-${i}`, entities: [], ...extra }),
});

async function tempDir(): Promise<string> {
  return fs.mkdtemp(join(tmpdir(), 'tollgate-spool-'));
}

/** A broker stand-in that refuses, for its content, any send holding a message with a `poison` header or value. */
class RefusingBroker implements Publisher {
  readonly received: OutgoingMessage[] = [];
  sends = 0;
  async publish(_topic: string, messages: OutgoingMessage[]): Promise<void> {
    this.sends++;
    if (messages.some((m) => m.headers?.poison !== undefined || String(m.value).includes('poison'))) throw new MessageRefusedError('INVALID_RECORD', 'the broker refused it: INVALID_RECORD (test)');
    this.received.push(...messages);
  }
  events(): string[] {
    return this.received.filter((m) => !m.headers?.[DeadLetterHeaders.Reason]).map((m) => (JSON.parse(String(m.value)) as { event_id: string }).event_id);
  }
  notices(): OutgoingMessage[] {
    return this.received.filter((m) => m.headers?.[DeadLetterHeaders.Reason] !== undefined);
  }
  async close(): Promise<void> {}
}

const until = async (fn: () => boolean, ms = 4000) => {
  for (let i = 0; i < ms / 10 && !fn(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(fn()).toBe(true);
};

describe('SpoolingPublisher: faults that never pass are dead-lettered, not retried', () => {
  it('dead-letters a message larger than maxMessageBytes without sending it, answers, and the next messages go on', async () => {
    const dir = await tempDir();
    const broker = new RefusingBroker();
    const counted: Array<[LocalDeadLetter, DeadLetterCause]> = [];
    const publisher = new SpoolingPublisher(broker, await SpoolLog.open(dir, { maxBytes: 1024 * 1024 }), await DeadLetterFile.open(dir), {
      deadlineMs: 50,
      maxMessageBytes: 4096,
      onDeadLetter: (l, c) => counted.push([l, c]),
    });
    publisher.start();
    const big = event(1, { entities: Array.from({ length: 500 }, (_, i) => `company-${i}`) });
    expect(recordBatchBytesBound([big])).toBeGreaterThan(4096);
    await publisher.publish('t', [big]);
    await publisher.publish('t', [event(2)]);
    await publisher.publish('t', [event(3)]);
    expect(broker.events()).toEqual(['e-2', 'e-3']);
    expect(publisher.spool.holdsAny()).toBe(false);
    expect(counted.map(([l, c]) => [l.ids.event_id, c])).toEqual([['e-1', 'too_large']]);
    const [letter] = counted[0]!;
    expect(letter.reason).toMatch(new RegExp(`^${GatewayDeadLetterReasonPrefix}too large for the broker \\(\\d+ bytes as a record batch > 4096, KAFKA_MAX_MESSAGE_BYTES\\); event_id e-1, request_id r-1$`));
    expect(letter).toMatchObject({ topic: 't', key: 'org-1', bytes: Buffer.byteLength(String(big.value)), ids: { event_id: 'e-1', org_id: 'org-1', request_id: 'r-1' }, counts: { entities: 500 } });
    expect(letter.head).toBe(String(big.value).slice(0, 4096 / 8));
    // Its notice goes to the same topic and key, small, with the reason in the header.
    await until(() => broker.notices().length === 1);
    const notice = broker.notices()[0]!;
    expect(notice.key).toBe('org-1');
    expect(notice.headers![DeadLetterHeaders.Reason]).toBe(letter.reason);
    expect(JSON.parse(String(notice.value))).toMatchObject({ sha256: letter.sha256, bytes: letter.bytes, ids: letter.ids });
    await publisher.close();
    // Recorded in the spool directory, with its notice marked published.
    const lines = (await fs.readFile(join(dir, 'dead-letters.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([expect.objectContaining({ id: letter.id, reason: letter.reason }), { noticed: letter.id }]);
  });

  it('a spooled batch the broker refuses is sent again one by one: only the refused message is dead-lettered, the rest delivered in order', async () => {
    const dir = await tempDir();
    const left = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    await left.append('t', [event(1), { ...event(2), headers: { poison: '1' } }, event(3), event(4)]);
    await left.close();
    const broker = new RefusingBroker();
    const counted: DeadLetterCause[] = [];
    const publisher = new SpoolingPublisher(broker, await SpoolLog.open(dir, { maxBytes: 1024 * 1024 }), await DeadLetterFile.open(dir), {
      deadlineMs: 50,
      retryMs: 5,
      onDeadLetter: (_l, c) => counted.push(c),
    });
    publisher.start();
    await publisher.publish('t', [event(5)]);
    await until(() => !publisher.spool.holdsAny() && broker.notices().length === 1);
    expect(broker.events()).toEqual(['e-1', 'e-3', 'e-4', 'e-5']);
    expect(counted).toEqual(['invalid_record']);
    expect(broker.notices()[0]!.headers![DeadLetterHeaders.Reason]).toBe(`${GatewayDeadLetterReasonPrefix}the broker refused it: INVALID_RECORD (test); event_id e-2, request_id r-2`);
    await publisher.close();
  });

  it('keeps a notice it could not publish (broker down, spool full) in the file and publishes it at the next start', async () => {
    const dir = await tempDir();
    const down: Publisher = { publish: () => new Promise(() => undefined), close: async () => undefined };
    // A spool too small for the notice: it can be neither acknowledged nor spooled.
    const first = new SpoolingPublisher(down, await SpoolLog.open(dir, { maxBytes: 200 }), await DeadLetterFile.open(dir), { deadlineMs: 20, maxMessageBytes: 1024 });
    await first.publish('t', [event(1, { entities: Array.from({ length: 200 }, (_, i) => `c-${i}`) })]);
    await until(() => first.deadLetters.size() === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(first.deadLetters.awaitingNotice()).toHaveLength(1);
    await first.close(0);
    const broker = new RefusingBroker();
    const second = new SpoolingPublisher(broker, await SpoolLog.open(dir, { maxBytes: 64 * 1024 }), await DeadLetterFile.open(dir), { deadlineMs: 50, retryMs: 5 });
    second.start();
    await until(() => broker.notices().length === 1 && second.deadLetters.awaitingNotice().length === 0);
    expect(JSON.parse(String(broker.notices()[0]!.value))).toMatchObject({ ids: { event_id: 'e-1' }, counts: { entities: 200 } });
    await second.close();
    const third = new SpoolingPublisher(broker, await SpoolLog.open(dir, { maxBytes: 64 * 1024 }), await DeadLetterFile.open(dir), { deadlineMs: 50 });
    expect(third.deadLetters.awaitingNotice()).toEqual([]);
    expect(third.deadLetters.size()).toBe(1);
    await third.close();
  });

  it('gives a notice the broker refuses no notice of its own', async () => {
    const dir = await tempDir();
    const broker = new RefusingBroker();
    const publisher = new SpoolingPublisher(broker, await SpoolLog.open(dir, { maxBytes: 1024 * 1024 }), await DeadLetterFile.open(dir), { deadlineMs: 50, maxMessageBytes: 2048, retryMs: 5 });
    publisher.start();
    // The notice carries the event's ids: "poison" in one makes the broker refuse the notice too.
    await publisher.publish('t', [event(1, { request_id: 'poison', entities: Array.from({ length: 200 }, (_, i) => `c-${i}`) })]);
    await publisher.publish('t', [event(2)]);
    await until(() => publisher.deadLetters.size() === 2 && !publisher.spool.holdsAny());
    await new Promise((r) => setTimeout(r, 50));
    expect(broker.notices()).toEqual([]);
    expect(publisher.deadLetters.awaitingNotice()).toEqual([]);
    expect(broker.events()).toEqual(['e-2']);
    await publisher.close();
  });
});

describe('SpoolingPublisher without a broker at start', () => {
  it('spools at once while no publisher exists, keeps connecting in the background, then drains in order', async () => {
    const dir = await tempDir();
    const broker = new RefusingBroker();
    let attempts = 0;
    let brokerUp = false;
    const connect = async (): Promise<Publisher> => {
      attempts++;
      if (!brokerUp) throw new Error('Kafka is not reachable at 127.0.0.1:1');
      return broker;
    };
    const logs: string[] = [];
    const spool = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    const deadLetters = await DeadLetterFile.open(dir);
    const publisher = new SpoolingPublisher(connect(), spool, deadLetters, {
      deadlineMs: 5000,
      retryMs: 5,
      maxRetryMs: 20,
      connect,
      log: (_level, m) => logs.push(m),
    });
    publisher.start();
    const started = Date.now();
    for (let i = 1; i <= 3; i++) await publisher.publish('t', [event(i)]);
    expect(Date.now() - started).toBeLessThan(1000); // no deadline waited: there is no broker to wait for
    expect(publisher.connected()).toBe(false);
    await until(() => attempts >= 3);
    expect(logs.some((m) => /the broker is unreachable .*events are spooled to/.test(m))).toBe(true);
    brokerUp = true;
    await until(() => publisher.connected() && !publisher.spool.holdsAny());
    await publisher.publish('t', [event(4)]);
    expect(broker.events()).toEqual(['e-1', 'e-2', 'e-3', 'e-4']);
    await publisher.close();
  });
});

/**
 * A broker of `partitions` partitions (key `org-N` on partition N mod partitions) whose partition `down` has no
 * leader while `away` is set: a send holding any of its messages fails, and the rest of that send is written anyway
 * (as kafkajs's per-broker requests are), so a naive retry writes the live partitions again.
 */
class PartitionedBroker implements Publisher {
  readonly written: string[] = [];
  away = true;
  constructor(
    private readonly partitions: number,
    private readonly down: number,
    private readonly knowsPartitions = true,
  ) {}
  partitionOf(_topic: string, key: string): number | undefined {
    return this.knowsPartitions ? Number(key.slice(4)) % this.partitions : undefined;
  }
  async publish(_topic: string, messages: OutgoingMessage[]): Promise<void> {
    const onDown = (m: OutgoingMessage) => Number(m.key.slice(4)) % this.partitions === this.down;
    for (const m of messages) if (!(this.away && onDown(m))) this.written.push((JSON.parse(String(m.value)) as { event_id: string }).event_id);
    if (this.away && messages.some(onDown)) throw new Error('There is no leader for this topic-partition (test)');
  }
  async close(): Promise<void> {}
}

const orgEvent = (i: number, org: number): OutgoingMessage => ({ key: `org-${org}`, value: JSON.stringify({ event_id: `e-${i}`, org_id: `org-${org}` }) });

describe('SpoolingPublisher: a partition whose leader is away', () => {
  async function drainWith(broker: PartitionedBroker) {
    const dir = await tempDir();
    const spool = await SpoolLog.open(dir, { maxBytes: 1024 * 1024 });
    // 12 events over 6 orgs on 3 partitions, spooled (the broker missed the deadline), in one batch.
    const events = Array.from({ length: 12 }, (_, i) => orgEvent(i + 1, i % 6));
    await spool.append('t', events);
    const publisher = new SpoolingPublisher(broker, spool, await DeadLetterFile.open(dir), { deadlineMs: 50, retryMs: 5, maxRetryMs: 10 });
    publisher.start();
    return { publisher, spool, events };
  }

  it('writes the live partitions once while the batch waits for the one away, then the rest once, in order per key', async () => {
    const broker = new PartitionedBroker(3, 1);
    const { publisher, spool } = await drainWith(broker);
    // Several attempts fail on partition 1 meanwhile.
    await new Promise((r) => setTimeout(r, 150));
    expect(spool.holdsAny()).toBe(true);
    const live = ['e-1', 'e-3', 'e-4', 'e-6', 'e-7', 'e-9', 'e-10', 'e-12']; // orgs 0, 2, 3, 5
    const count = (id: string) => broker.written.filter((w) => w === id).length;
    // The first attempt (the batch whole) wrote them, the retry by partition again: never more than twice.
    for (const id of live) expect(count(id)).toBeLessThanOrEqual(2);
    expect(broker.written.filter((w) => !live.includes(w))).toEqual([]);
    broker.away = false;
    await until(() => !spool.holdsAny());
    for (const id of live) expect(count(id)).toBeLessThanOrEqual(2);
    // Partition 1's events (orgs 1 and 4), once each, in spool order.
    expect(broker.written.filter((w) => ['e-2', 'e-5', 'e-8', 'e-11'].includes(w))).toEqual(['e-2', 'e-5', 'e-8', 'e-11']);
    await publisher.close();
  });

  it('without partition counts the batch is sent again whole on every attempt (the behaviour before), and nothing is lost', async () => {
    const broker = new PartitionedBroker(3, 1, false);
    const { publisher, spool } = await drainWith(broker);
    await until(() => broker.written.filter((w) => w === 'e-1').length >= 3);
    broker.away = false;
    await until(() => !spool.holdsAny());
    for (let i = 1; i <= 12; i++) expect(broker.written).toContain(`e-${i}`);
    await publisher.close();
  });
});
