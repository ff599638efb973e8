import { Kafka, logLevel } from 'kafkajs';
import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { RequestCompletedV1 } from '@tollgate/contracts';
import { BatchConsumer, createKafkaMessaging, kafkaBrokers, Messaging, Publisher } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { AdminService } from '../admin/admin.service';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { HoldSweeper } from './hold-sweeper';
import { ReservationService } from './reservation.service';

/**
 * SPEC §4: "a hold is released by time only once the event that would settle it can no longer arrive unseen".
 * Real Kafka and PostgreSQL; the consumer is the real one, started late to play a stalled metering. Each run
 * uses its own topic and consumer group, so the offsets it reads are its own.
 */
describe('HoldSweeper: holds never outlive a stalled consumer (real Kafka and PostgreSQL)', () => {
  const catalog = ProfileCatalog.load('trackyard');
  const topic = `test.holds.${uuidv7()}`;
  const groupId = `test-holds-${uuidv7()}`;
  const partitions = 3;
  const publishWindowMs = 500;
  const afterTimeout = () => Date.now() + 200_000;
  let ds: DataSource;
  let messaging: Messaging;
  let publisher: Publisher;
  let consumer: BatchConsumer | null = null;
  const seen: Array<{ partition: number; key: string }> = [];

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 4 });
    const admin = new Kafka({ clientId: 'tollgate-tests', brokers: kafkaBrokers(), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] });
    await admin.disconnect();
    messaging = createKafkaMessaging({ clientId: 'tollgate-tests' });
    publisher = await messaging.publisher();
  });

  afterAll(async () => {
    await consumer?.stop();
    await messaging?.close();
    await ds?.destroy();
  });

  /** Metering coming back: the real consumer, in this run's group, from the offsets stored with the data. */
  async function startConsumer(): Promise<void> {
    if (consumer) return;
    const metering = new RequestCompletedConsumer(ds, catalog, { groupId });
    consumer = messaging.batchConsumer({
      groupId,
      topic,
      storedOffsets: (t, ps) => metering.storedOffsets(t, ps),
      moveStoredOffset: (t, p, from, to) => metering.moveStoredOffset(t, p, from, to),
      handle: async (batch) => {
        for (const m of batch.messages) seen.push({ partition: batch.partition, key: m.key?.toString() ?? '' });
        await metering.handle(batch);
      },
    });
    await consumer.start();
  }

  async function caughtUp(): Promise<boolean> {
    const ends = await messaging.endOffsets(topic);
    const rows: Array<{ partition: number; next_offset: string }> = await ds.query(
      `SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2`,
      [groupId, topic],
    );
    const stored = new Map(rows.map((r) => [r.partition, BigInt(r.next_offset)]));
    return [...ends].every(([p, end]) => (stored.get(p) ?? 0n) >= end);
  }

  async function eventually(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const event = (orgId: string, reservationId: string | null): RequestCompletedV1 => ({
    event_id: uuidv7(), schema_version: 1, occurred_at: new Date().toISOString(), org_id: orgId, api_key_id: null,
    subject: { kind: 'key', id: 'k' }, profile: 'trackyard', method: 'POST', route: '/search', path: '/api/external/v1/search',
    status_code: 200, response_time_ms: 5, entities: [], reservation_id: reservationId,
  });

  const status = async (id: string) => ((await ds.query(`SELECT status FROM reservations WHERE id = $1`, [id])) as Array<{ status: string }>)[0]?.status;
  const balance = async (orgId: string) => Number(((await ds.query(`SELECT balance FROM accounts WHERE org_id = $1`, [orgId])) as Array<{ balance: string }>)[0]?.balance);
  const reserveOne = (reservations: ReservationService, orgId: string) =>
    reservations.reserve({ reservationId: uuidv7(), orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: Date.now() });
  const newOrg = async (plan = 'free') => {
    const id = `holds-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
    await new AdminService(ds, catalog).createOrg({ id, name: id, plan });
    return id;
  };

  it('keeps expired holds while their events sit unread, then settles the one its event names and releases the other once the consumer caught up', async () => {
    const orgId = await newOrg();
    const reservations = new ReservationService(ds, catalog);
    const settledByEvent = await reserveOne(reservations, orgId);
    const neverSettled = await reserveOne(reservations, orgId);
    expect([settledByEvent.granted, neverSettled.granted, await balance(orgId)]).toEqual([true, true, 48]);

    // The gateway published the first call's event; metering is stalled and hasn't read it.
    await publisher.publish(topic, [{ key: orgId, value: JSON.stringify(event(orgId, settledByEvent.reservationId)) }]);
    await new Promise((r) => setTimeout(r, publishWindowMs + 100));

    // Both holds are past their timeout (the sweeper's clock is 200 s ahead), yet neither comes back: the credits
    // stay held, so the gateway can't reserve them again for calls that would be charged later as debt.
    const sweeper = new HoldSweeper(ds, new ReservationService(ds, catalog, afterTimeout), messaging, { groupId, topic, publishWindowMs, remapGraceMs: 0, clock: afterTimeout });
    // (Counts include other holds of the shared database: statuses are what this test owns.)
    expect((await sweeper.sweep()).kept).toBeGreaterThanOrEqual(2);
    expect((await sweeper.sweep()).kept).toBeGreaterThanOrEqual(2);
    expect([await status(settledByEvent.reservationId), await status(neverSettled.reservationId), await balance(orgId)]).toEqual(['held', 'held', 48]);

    // Metering comes back and reads everything: the event settles its own hold (a charge, never a debt).
    await startConsumer();
    await eventually(caughtUp);
    expect(await status(settledByEvent.reservationId)).toBe('settled');

    // Now no event can settle the other hold unseen: the next sweep releases it.
    expect((await sweeper.sweep()).released).toBeGreaterThanOrEqual(1);
    expect([await status(neverSettled.reservationId), await balance(orgId)]).toEqual(['expired', 49]);
    const debt: unknown[] = await ds.query(`SELECT 1 FROM ledger_entries WHERE org_id = $1 AND bucket_id IS NULL`, [orgId]);
    expect(debt).toEqual([]);
  });

  it('keeps an expired hold taken less than the publish window ago, even with the consumer caught up', async () => {
    const orgId = await newOrg();
    const hold = await reserveOne(new ReservationService(ds, catalog), orgId);
    const sweeper = new HoldSweeper(ds, new ReservationService(ds, catalog, afterTimeout), messaging, {
      groupId, topic, publishWindowMs: 60_000, remapGraceMs: 0, clock: afterTimeout,
    });
    await startConsumer();
    await eventually(caughtUp);
    expect((await sweeper.sweep()).kept).toBeGreaterThanOrEqual(1);
    expect(await status(hold.reservationId)).toBe('held');
    // Past the window it goes.
    const later = () => afterTimeout() + 60_000;
    await new Promise((r) => setTimeout(r, publishWindowMs + 100));
    await new HoldSweeper(ds, new ReservationService(ds, catalog, later), messaging, { groupId, topic, publishWindowMs, remapGraceMs: 0, clock: later }).sweep();
    expect(await status(hold.reservationId)).toBe('expired');
  });

  it('asks the publisher\'s own partitioner: every org\'s events land on messaging.partitionOf(org)', async () => {
    const orgIds = await Promise.all(Array.from({ length: 12 }, () => newOrg()));
    await startConsumer();
    await publisher.publish(topic, orgIds.map((o) => ({ key: o, value: JSON.stringify(event(o, null)) })));
    await eventually(async () => orgIds.every((o) => seen.some((s) => s.key === o)));
    for (const o of orgIds) expect(seen.find((s) => s.key === o)?.partition).toBe(messaging.partitionOf(o, partitions));
  });
});
