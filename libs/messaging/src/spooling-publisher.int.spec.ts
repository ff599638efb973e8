import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { v7 as uuidv7 } from 'uuid';
import { DeadLetterHeaders } from '@tollgate/contracts';
import { DeadLetterFile } from './dead-letter-file';
import { createKafkaMessaging, kafkaBrokers } from './kafka-messaging';
import { Messaging, OutgoingMessage, recordBatchBytesBound } from './messaging';
import { SpoolLog } from './spool-log';
import { DeadLetterCause, SpoolingPublisher } from './spooling-publisher';

/**
 * The spool against the real broker, on topics of this run whose `max.message.bytes` is 100,000: a message the
 * broker can never take is dead-lettered, and the messages behind it are delivered in order.
 */
describe('SpoolingPublisher and the broker message limit (real Kafka)', () => {
  const kafka = new Kafka({ clientId: 'tollgate-tests', brokers: kafkaBrokers(), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const limit = 100_000;
  let messaging: Messaging;

  const event = (id: string, padding = 0): OutgoingMessage => ({
    key: 'org-int',
    value: JSON.stringify({ event_id: id, org_id: 'org-int', request_id: `req-${id}`, entities: padding > 0 ? ['x'.repeat(padding)] : [] }),
  });

  async function topicWithLimit(): Promise<string> {
    const topic = `test.spool.${uuidv7()}`;
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, configEntries: [{ name: 'max.message.bytes', value: String(limit) }] }] });
    return topic;
  }

  async function read(topic: string, count: number): Promise<Array<{ value: string; headers: Record<string, string> }>> {
    const consumer = kafka.consumer({ groupId: `test-${uuidv7()}` });
    const seen: Array<{ value: string; headers: Record<string, string> }> = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        seen.push({ value: message.value?.toString() ?? '', headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])) });
      },
    });
    for (let i = 0; i < 300 && seen.length < count; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300)); // and nothing more
    await consumer.disconnect();
    return seen;
  }

  async function spooling(maxMessageBytes: number, counted: DeadLetterCause[]): Promise<SpoolingPublisher> {
    const dir = await fs.mkdtemp(join(tmpdir(), 'tollgate-spool-int-'));
    return new SpoolingPublisher(await messaging.publisher(), await SpoolLog.open(dir, { maxBytes: 16 * 1024 * 1024 }), await DeadLetterFile.open(dir), {
      deadlineMs: 3000,
      retryMs: 50,
      maxMessageBytes,
      connect: () => messaging.publisher(),
      onDeadLetter: (_l, cause) => counted.push(cause),
    });
  }

  const eventIds = (seen: Array<{ value: string; headers: Record<string, string> }>) =>
    seen.filter((m) => m.headers[DeadLetterHeaders.Reason] === undefined).map((m) => (JSON.parse(m.value) as { event_id: string }).event_id);

  beforeAll(async () => {
    await admin.connect();
    messaging = createKafkaMessaging({ clientId: 'tollgate-tests', topics: {}, maxMessageBytes: limit });
  });

  afterAll(async () => {
    await messaging.close();
    await admin.disconnect();
  });

  it('a message the broker refuses as too large is dead-lettered, counted and noticed; the messages behind it are delivered in order', async () => {
    const topic = await topicWithLimit();
    const counted: DeadLetterCause[] = [];
    // The spool believes the broker takes 1 MiB: the topic's 100,000 is found out by the broker's refusal.
    const publisher = await spooling(1024 * 1024, counted);
    publisher.start();
    await publisher.publish(topic, [event('e1')]);
    await publisher.publish(topic, [event('big', 150_000)]); // answered: spooled behind nothing, then dead-lettered
    for (const id of ['e2', 'e3', 'e4']) await publisher.publish(topic, [event(id)]);
    const seen = await read(topic, 5);
    expect(eventIds(seen)).toEqual(['e1', 'e2', 'e3', 'e4']);
    const notices = seen.filter((m) => m.headers[DeadLetterHeaders.Reason] !== undefined);
    expect(notices).toHaveLength(1);
    expect(notices[0]!.headers[DeadLetterHeaders.Reason]).toMatch(/^refused at the gateway: the broker refused it: MESSAGE_TOO_LARGE .*; event_id big, request_id req-big$/);
    expect(JSON.parse(notices[0]!.value)).toMatchObject({ ids: { event_id: 'big', org_id: 'org-int' }, bytes: Buffer.byteLength(String(event('big', 150_000).value)) });
    expect(counted).toEqual(['too_large']);
    expect(publisher.spool.holdsAny()).toBe(false);
    await publisher.close();
  });

  it('refuses locally, without sending, a message over maxMessageBytes; one whose bound is just within it is taken by the broker', async () => {
    const topic = await topicWithLimit();
    const counted: DeadLetterCause[] = [];
    const publisher = await spooling(limit, counted);
    publisher.start();
    // The largest event whose bound is within the limit: the broker must take it (the bound is an upper bound).
    let padding = limit;
    while (recordBatchBytesBound([event('fits', padding)]) > limit) padding--;
    expect(recordBatchBytesBound([event('fits', padding)])).toBe(limit);
    await publisher.publish(topic, [event('fits', padding)]);
    await publisher.publish(topic, [event('over', padding + 1)]);
    await publisher.publish(topic, [event('after')]);
    expect(publisher.spool.holdsAny()).toBe(false); // nothing waited for the broker's refusal
    const seen = await read(topic, 3);
    expect(eventIds(seen)).toEqual(['fits', 'after']);
    expect(seen.find((m) => m.headers[DeadLetterHeaders.Reason])?.headers[DeadLetterHeaders.Reason]).toMatch(/too large for the broker \(\d+ bytes as a record batch > 100000, KAFKA_MAX_MESSAGE_BYTES\); event_id over/);
    expect(counted).toEqual(['too_large']);
    await publisher.close();
  });

  it('keeps concurrent publishes that fit alone from being refused together: a send stays within the limit', async () => {
    const topic = await topicWithLimit();
    const publisher = await messaging.publisher();
    // 20 events of ~10 KB to one partition at once: coalesced into one 200 KB batch the topic would refuse.
    const ids = Array.from({ length: 20 }, (_, i) => `c${i}`);
    await Promise.all(ids.map((id) => publisher.publish(topic, [event(id, 10_000)])));
    expect(eventIds(await read(topic, 20))).toEqual(ids);
  });
});
