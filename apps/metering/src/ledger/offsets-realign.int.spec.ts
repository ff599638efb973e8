import { Kafka, logLevel } from 'kafkajs';
import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { RequestCompletedV1 } from '@tollgate/contracts';
import { BatchConsumer, createKafkaMessaging, kafkaBrokers, Messaging, Publisher } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { consumerOffsetResets, consumerStalledPartitions } from '@tollgate/platform';
import { AdminService } from '../admin/admin.service';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { HoldSweeper } from '../reservations/hold-sweeper';
import { ReservationService } from '../reservations/reservation.service';
import { ConsumerStallWatch } from './consumer-stall';

/**
 * Stored offsets the topic's log no longer holds (issue 18, item 8): a database paired with a recreated topic or
 * another broker, and a log retention cut short. Real Kafka and PostgreSQL, the real consumer; each test has its
 * own topic and consumer group.
 */
describe('the consumer and stored offsets its log no longer holds (real Kafka and PostgreSQL)', () => {
  const catalog = ProfileCatalog.load('trackyard');
  const kafka = new Kafka({ clientId: 'tollgate-tests', brokers: kafkaBrokers(), logLevel: logLevel.NOTHING });
  let ds: DataSource;
  let messaging: Messaging;
  let publisher: Publisher;
  const logs: Array<{ level: string; message: string; extra?: Record<string, unknown> }> = [];
  const consumers: BatchConsumer[] = [];

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 6 });
    messaging = createKafkaMessaging({ clientId: 'tollgate-tests', log: (level, message, extra) => logs.push({ level, message, extra }) });
    publisher = await messaging.publisher();
  });

  afterAll(async () => {
    for (const c of consumers) await c.stop();
    await messaging?.close();
    await ds?.destroy();
  });

  async function newTopic(partitions = 1): Promise<string> {
    const topic = `test.offsets.${uuidv7()}`;
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] });
    } finally {
      await admin.disconnect();
    }
    return topic;
  }

  function startConsumer(topic: string, metering: RequestCompletedConsumer): Promise<BatchConsumer> {
    const consumer = messaging.batchConsumer({
      groupId: metering.groupId,
      topic,
      storedOffsets: (t, ps) => metering.storedOffsets(t, ps),
      moveStoredOffset: (t, p, from, to) => metering.moveStoredOffset(t, p, from, to),
      handle: (batch) => metering.handle(batch),
    });
    consumers.push(consumer);
    return consumer.start().then(() => consumer);
  }

  const newOrg = async () => {
    const id = `offsets-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
    await new AdminService(ds, catalog).createOrg({ id, name: id, plan: 'free' });
    return id;
  };
  const event = (orgId: string, reservationId: string | null = null): RequestCompletedV1 => ({
    event_id: uuidv7(), schema_version: 1, occurred_at: new Date().toISOString(), org_id: orgId, api_key_id: null,
    subject: { kind: 'key', id: 'k' }, profile: 'trackyard', method: 'POST', route: '/search', path: '/api/external/v1/search',
    status_code: 200, response_time_ms: 5, entities: [], reservation_id: reservationId,
  });
  const message = (e: RequestCompletedV1) => ({ key: e.org_id, value: JSON.stringify(e) });
  const stored = async (groupId: string, topic: string, partition = 0) =>
    ((await ds.query(`SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3`, [groupId, topic, partition])) as Array<{ next_offset: string }>)[0]?.next_offset;
  const usage = async (orgId: string) =>
    ((await ds.query(`SELECT event_id FROM usage_records WHERE org_id = $1 ORDER BY event_id`, [orgId])) as Array<{ event_id: string }>).map((r) => r.event_id);
  const charges = async (orgId: string) =>
    ((await ds.query(`SELECT cause FROM ledger_entries WHERE org_id = $1 AND type = 'charge' ORDER BY cause`, [orgId])) as Array<{ cause: string }>).map((r) => r.cause);
  const resets = async (topic: string, reason: string) => (await consumerOffsetResets.get()).values.find((v) => v.labels.topic === topic && v.labels.reason === reason)?.value ?? 0;
  const status = async (id: string) => ((await ds.query(`SELECT status FROM reservations WHERE id = $1`, [id])) as Array<{ status: string }>)[0]?.status;

  async function eventually(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The database says the consumer read a log of `upTo` offsets: `metered` was metered there, at its last offset. */
  async function meteredOnAnotherLog(metering: RequestCompletedConsumer, topic: string, metered: RequestCompletedV1, upTo: number): Promise<void> {
    const last = upTo - 1;
    await metering.handle({ topic, partition: 0, nextOffset: String(upTo), messages: [{ offset: String(last), key: Buffer.from(metered.org_id), value: Buffer.from(JSON.stringify(metered)), headers: {} }] });
  }

  it('reads a topic whose log ends below the stored offset from its start: says so with both offsets, counts it, meters the new events and charges the old one once; holds are settled or released, not kept', async () => {
    const topic = await newTopic();
    const metering = new RequestCompletedConsumer(ds, catalog, { groupId: `test-offsets-${uuidv7()}` });
    const orgId = await newOrg();
    const afterTimeout = () => Date.now() + 200_000;
    const reservations = new ReservationService(ds, catalog);
    const settles = await reservations.reserve({ reservationId: uuidv7(), orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: Date.now() });
    const neverComes = await reservations.reserve({ reservationId: uuidv7(), orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: Date.now() });

    // Another broker's log: 50 000 offsets read, the last of them an event this topic holds too (a copy).
    const old = event(orgId);
    await meteredOnAnotherLog(metering, topic, old, 50_000);
    expect(await stored(metering.groupId, topic)).toBe('50000');
    const fresh = [event(orgId), event(orgId, settles.reservationId)];
    await publisher.publish(topic, [old, ...fresh].map(message));

    // Before the consumer runs, the sweeper cannot know anything was read: both expired holds are kept.
    const sweeper = new HoldSweeper(ds, new ReservationService(ds, catalog, afterTimeout), messaging, { groupId: metering.groupId, topic, publishWindowMs: 200, remapGraceMs: 0, clock: afterTimeout });
    await new Promise((r) => setTimeout(r, 300));
    await sweeper.sweep();
    expect([await status(settles.reservationId), await status(neverComes.reservationId)]).toEqual(['held', 'held']);

    const before = await resets(topic, 'past_log_end');
    await startConsumer(topic, metering);
    await eventually(async () => (await stored(metering.groupId, topic)) === '3');

    expect(await usage(orgId)).toEqual([old, ...fresh].map((e) => e.event_id).sort());
    // The old event was metered before: one charge for it, not two (usage_records dedupes by (org_id, event_id)).
    expect((await charges(orgId)).filter((c) => c === `event:${old.event_id}`)).toHaveLength(1);
    expect(await resets(topic, 'past_log_end')).toBe(before + 1);
    expect(logs).toContainEqual({
      level: 'error',
      message: expect.stringMatching(new RegExp(`stored offset 50000 of ${topic.replace(/\./g, '\\.')}\\[0\\] is past the log's end 3: the log was replaced.*again from its start 0`)),
      extra: { topic, partition: 0, stored: '50000', logStart: '0', logEnd: '3', detected: 'assignment' },
    });

    // Read to the log's end: the event settled its hold and the other hold goes back.
    await new Promise((r) => setTimeout(r, 300));
    await sweeper.sweep();
    expect([await status(settles.reservationId), await status(neverComes.reservationId)]).toEqual(['settled', 'expired']);
  });

  it('re-reads a log replaced under a running consumer (topic deleted and recreated) from its start', async () => {
    const topic = await newTopic();
    const metering = new RequestCompletedConsumer(ds, catalog, { groupId: `test-offsets-${uuidv7()}` });
    const orgId = await newOrg();
    const first = [event(orgId), event(orgId), event(orgId), event(orgId)];
    await publisher.publish(topic, first.map(message));
    await startConsumer(topic, metering);
    await eventually(async () => (await stored(metering.groupId, topic)) === '4');

    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.deleteTopics({ topics: [topic] });
      await eventually(async () => !(await admin.listTopics()).includes(topic));
      // The broker may still be removing the old log: creating the topic again is retried until it takes.
      await eventually(() => admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1, replicationFactor: 1 }] }).then(() => true, () => false));
    } finally {
      await admin.disconnect();
    }
    const second = [event(orgId), event(orgId)];
    await eventually(() => publisher.publish(topic, second.map(message)).then(() => true, () => false));

    await eventually(async () => (await usage(orgId)).length === 6, 45_000);
    expect(await usage(orgId)).toEqual([...first, ...second].map((e) => e.event_id).sort());
    expect(await stored(metering.groupId, topic)).toBe('2');
    // Mostly on a fetch: kafkajs found its position out of range and went back to the new log's start, and the batch
    // it fetched there ends below the stored offset. Sometimes the broker rebalances the group first (its topic went
    // away): then on that assignment, maybe before the new events were published (log end 0).
    expect(logs.filter((l) => l.level === 'error' && l.message.startsWith('consumer:') && l.extra?.topic === topic).map((l) => l.extra)).toEqual([
      { topic, partition: 0, stored: '4', logStart: '0', logEnd: expect.stringMatching(/^[0-2]$/), detected: expect.stringMatching(/^(fetch|assignment)$/) },
    ]);
  });

  it('continues from the log start when retention removed events never read: a warning naming both offsets, counted, the stored offset moved up', async () => {
    const topic = await newTopic();
    const metering = new RequestCompletedConsumer(ds, catalog, { groupId: `test-offsets-${uuidv7()}` });
    const orgId = await newOrg();
    const events = Array.from({ length: 5 }, () => event(orgId));
    await publisher.publish(topic, events.map(message));
    // Offset 0 was metered; retention then removed offsets 0 to 2.
    await meteredOnAnotherLog(metering, topic, events[0]!, 1);
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.fetchTopicMetadata({ topics: [topic] }); // deleteTopicRecords needs the topic's metadata loaded
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '3' }] });
    } finally {
      await admin.disconnect();
    }
    const before = await resets(topic, 'before_log_start');
    await startConsumer(topic, metering);
    await eventually(async () => (await stored(metering.groupId, topic)) === '5');
    expect(await usage(orgId)).toEqual([events[0]!, events[3]!, events[4]!].map((e) => e.event_id).sort());
    expect(await resets(topic, 'before_log_start')).toBe(before + 1);
    expect(logs).toContainEqual({
      level: 'warn',
      message: expect.stringContaining(`stored offset 1 of ${topic}[0] is below the log's start 3: retention removed 2 events before they were metered`),
      extra: { topic, partition: 0, stored: '1', logStart: '3', logEnd: '5', detected: 'assignment' },
    });
  });

  it('readiness: a consumer whose partition stays behind its log end without moving is not progressing after stallMs, and is again once it moves', async () => {
    const topic = await newTopic();
    const metering = new RequestCompletedConsumer(ds, catalog, { groupId: `test-offsets-${uuidv7()}` });
    const orgId = await newOrg();
    await publisher.publish(topic, [message(event(orgId))]);
    const consumer = await startConsumer(topic, metering);
    await eventually(async () => (await stored(metering.groupId, topic)) === '1');
    const watch = new ConsumerStallWatch({
      topic,
      stallMs: 1500,
      assignment: () => consumer.assignment(),
      storedOffsets: (t, ps) => metering.storedOffsets(t, ps),
      broker: messaging,
    });
    await eventually(async () => consumer.assignment().length === 1);

    // Idle at the log's end: ready however long nothing comes.
    for (let i = 0; i < 6; i++) {
      await watch.probe();
      await new Promise((r) => setTimeout(r, 400));
    }
    expect(watch.progressing()).toBe(true);

    // A transaction holds the partition's offset row: the consumer's batch waits on it, the offset stays, the log grows.
    const blocker = ds.createQueryRunner();
    await blocker.connect();
    await blocker.startTransaction();
    try {
      await blocker.query(`SELECT 1 FROM consumer_offsets WHERE group_id = $1 AND topic = $2 FOR UPDATE`, [metering.groupId, topic]);
      await publisher.publish(topic, [message(event(orgId))]);
      await watch.probe();
      expect(watch.progressing()).toBe(true);
      await new Promise((r) => setTimeout(r, 1600));
      await watch.probe();
      expect(watch.progressing()).toBe(false);
      expect((await consumerStalledPartitions.get()).values[0]?.value).toBe(1);
    } finally {
      await blocker.rollbackTransaction();
      await blocker.release();
    }
    await eventually(async () => (await stored(metering.groupId, topic)) === '2');
    await watch.probe();
    expect(watch.progressing()).toBe(true);
    expect((await consumerStalledPartitions.get()).values[0]?.value).toBe(0);
  });
});
