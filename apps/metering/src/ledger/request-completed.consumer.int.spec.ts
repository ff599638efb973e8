import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { DeadLetterHeaders, RequestCompletedV1, Topics } from '@tollgate/contracts';
import { createKafkaMessaging, IncomingBatch, Messaging, OutgoingMessage, Publisher } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { collect, requestCompleted, testKafka } from '../../../../test/support/kafka';
import { AdminService } from '../admin/admin.service';
import { DeadLetterRelay } from '../dead-letters/dead-letter-relay';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';

/**
 * The consumer against real PostgreSQL (and Kafka for the dead-letter relay), batches handed to it directly: each
 * test uses its own topic name and consumer group, so offsets and dead letters are its own.
 */
describe('RequestCompletedConsumer (real PostgreSQL)', () => {
  let ds: DataSource;
  let db: Client;
  const catalog = ProfileCatalog.load('trackyard');

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 6 });
    db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
  });

  afterAll(async () => {
    await db?.end();
    await ds?.destroy();
  });

  const uid = (p: string) => `${p}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  const newOrg = async () => (await new AdminService(ds, catalog).createOrg({ id: uid('org'), name: 'consumer test', plan: 'starter' })).id;
  const json = (e: RequestCompletedV1) => JSON.stringify(e);
  /** Validation as loose as JSON.parse: to reach what only PostgreSQL refuses. */
  const lax = (bytes: Buffer | null) => ({ ok: true as const, event: JSON.parse(bytes!.toString('utf8')) as RequestCompletedV1 });

  function batchOf(topic: string, first: number, values: Array<string | Buffer>, partition = 0): IncomingBatch {
    return {
      topic,
      partition,
      messages: values.map((v, i) => ({ offset: String(first + i), key: Buffer.from('key'), value: Buffer.isBuffer(v) ? v : Buffer.from(v), headers: {} })),
      nextOffset: String(first + values.length),
    };
  }

  const charges = async (orgId: string) =>
    Number((await db.query(`SELECT count(*) AS n FROM ledger_entries WHERE org_id = $1 AND type = 'charge'`, [orgId])).rows[0].n);
  const metered = async (eventIds: string[]) =>
    (await db.query(`SELECT event_id FROM usage_records WHERE event_id = ANY($1)`, [eventIds])).rows.map((r: { event_id: string }) => r.event_id);
  const deadLetters = async (topic: string) =>
    (await db.query(`SELECT "offset", reason, value, key, sent_at FROM dead_letters WHERE topic = $1 ORDER BY id`, [topic])).rows as Array<{
      offset: string;
      reason: string;
      value: Buffer;
      key: Buffer;
      sent_at: Date | null;
    }>;
  const storedOffset = async (groupId: string, topic: string, partition = 0) =>
    (await db.query(`SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3`, [groupId, topic, partition])).rows[0]
      ?.next_offset as string | undefined;

  describe('poison isolation', () => {
    it('meters a batch PostgreSQL refuses message by message: the others are charged, each refused one is dead-lettered with the database reason, the offset moves past the batch', async () => {
      const orgId = await newOrg();
      const topic = uid('poison');
      const groupId = uid('group');
      const good = [0, 1, 2].map(() => requestCompleted({ org_id: orgId }));
      const nulId = json(requestCompleted({ org_id: orgId, event_id: 'abc\u0000def' }));
      const nulPath = json(requestCompleted({ org_id: orgId, path: '/api/external/v1/search\u0000' }));
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId, parse: lax });

      await consumer.handle(batchOf(topic, 0, [json(good[0]!), nulId, json(good[1]!), nulPath, json(good[2]!)]));

      expect((await metered(good.map((e) => e.event_id))).sort()).toEqual(good.map((e) => e.event_id).sort());
      expect(await charges(orgId)).toBe(3);
      const dead = await deadLetters(topic);
      expect(dead.map((d) => d.offset)).toEqual(['1', '3']);
      for (const d of dead) expect(d.reason).toMatch(/^refused by the database: invalid byte sequence for encoding "UTF8": 0x00/);
      expect(dead.map((d) => d.value.toString('utf8'))).toEqual([nulId, nulPath]);
      expect(dead[0]!.key.toString('utf8')).toBe('key');
      expect(await storedOffset(groupId, topic)).toBe('5');
    });

    it('dead-letters an event the validation accepts but PostgreSQL cannot store (year 0000), and meters the rest of the batch', async () => {
      const orgId = await newOrg();
      const topic = uid('year0');
      const groupId = uid('group');
      const before = requestCompleted({ org_id: orgId });
      const after = requestCompleted({ org_id: orgId });
      const ancient = json(requestCompleted({ org_id: orgId, occurred_at: '0000-01-01T00:00:00Z' }));
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId });

      await consumer.handle(batchOf(topic, 0, [json(before), ancient, json(after)]));

      expect(await charges(orgId)).toBe(2);
      const dead = await deadLetters(topic);
      expect(dead.map((d) => [d.offset, d.value.toString('utf8')])).toEqual([['1', ancient]]);
      expect(dead[0]!.reason).toMatch(/^refused by the database: .*out of range/);
      expect(await storedOffset(groupId, topic)).toBe('3');
    });

    it("records a gateway's dead-letter notice (x-dead-letter-reason) with its reason, without metering it, and meters the event behind it", async () => {
      const orgId = await newOrg();
      const topic = uid('notice');
      const groupId = uid('group');
      // Even a notice whose value is a valid event is not metered: the header says the event never arrived whole.
      const summary = json(requestCompleted({ org_id: orgId }));
      const after = requestCompleted({ org_id: orgId });
      const reason = 'refused at the gateway: too large for the broker (1300000 bytes as a record batch > 1048576, KAFKA_MAX_MESSAGE_BYTES); event_id x';
      const batch = batchOf(topic, 0, [summary, json(after)]);
      batch.messages[0]!.headers = { [DeadLetterHeaders.Reason]: reason };
      await new RequestCompletedConsumer(ds, catalog, { groupId }).handle(batch);

      expect(await metered([after.event_id])).toEqual([after.event_id]);
      expect(await charges(orgId)).toBe(1);
      const dead = await deadLetters(topic);
      expect(dead.map((d) => [d.offset, d.reason, d.value.toString('utf8')])).toEqual([['0', reason, summary]]);
      expect(await storedOffset(groupId, topic)).toBe('2');
    });

    it('dead-letters nothing while the database is unreachable: the batch fails, and meters normally once it is back', async () => {
      const orgId = await newOrg();
      const topic = uid('down');
      const groupId = uid('group');
      const good = requestCompleted({ org_id: orgId });
      const nulId = json(requestCompleted({ org_id: orgId, event_id: 'x\u0000' }));
      // A real connection failure, as pg reports it when PostgreSQL is down.
      const refused = await new Client({ host: '127.0.0.1', port: 1, connectionTimeoutMillis: 2000 }).connect().then(
        () => new Error('connected?'),
        (e: Error) => e,
      );
      expect((refused as Error & { code?: string }).code).toBe('ECONNREFUSED');
      // The batch's transaction fails on the NUL (a data error, so the batch is isolated), then the database goes
      // away: the first message's own transaction cannot connect. That message must not be dead-lettered.
      let calls = 0;
      const flaky = new Proxy(ds, {
        get(target, prop, receiver) {
          if (prop !== 'transaction') return Reflect.get(target, prop, receiver) as unknown;
          return (...args: unknown[]) => {
            calls++;
            if (calls === 2) return Promise.reject(refused);
            return (target.transaction as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          };
        },
      });
      const consumer = new RequestCompletedConsumer(flaky, catalog, { groupId, parse: lax });
      const batch = batchOf(topic, 0, [json(good), nulId]);

      await expect(consumer.handle(batch)).rejects.toThrow(/ECONNREFUSED/);
      expect(await deadLetters(topic)).toEqual([]);
      expect(await charges(orgId)).toBe(0);
      expect(await storedOffset(groupId, topic)).toBeUndefined();

      await consumer.handle(batch);
      expect(await charges(orgId)).toBe(1);
      expect((await deadLetters(topic)).map((d) => d.offset)).toEqual(['1']);
      expect(await storedOffset(groupId, topic)).toBe('2');
    });
  });

  describe('dead letters leave through the relay, after the commit', () => {
    let messaging: Messaging;
    let publisher: Publisher;

    beforeAll(async () => {
      messaging = createKafkaMessaging({ clientId: 'tollgate-consumer-int' });
      await messaging.ensureTopics();
      publisher = await messaging.publisher();
    });

    afterAll(async () => {
      await messaging?.close();
    });

    it('records the refused message with its bytes and reason in the batch transaction; no org row stays locked while Kafka is slow; the relay sends it with its headers', async () => {
      const orgId = await newOrg();
      const topic = uid('relay');
      const groupId = uid('group');
      const notJson = Buffer.from(`{not json ${topic}`);
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId });

      // A dead-letter send that hangs (a broker that does not answer) does not hold up metering.
      let release: () => void = () => undefined;
      const gate = new Promise<void>((r) => (release = r));
      const stalled: Publisher = {
        publish: async (t: string, messages: OutgoingMessage[]) => {
          await gate;
          throw new Error(`broker did not answer (${t}, ${messages.length} messages)`);
        },
        close: async () => undefined,
      };
      const stuck = new DeadLetterRelay(ds, stalled).runOnce().catch((e: Error) => e);
      await consumer.handle(batchOf(topic, 0, [notJson, json(requestCompleted({ org_id: orgId }))]));
      expect(await charges(orgId)).toBe(1);
      const locked = await db.query(`SELECT org_id FROM accounts WHERE org_id = $1 FOR UPDATE NOWAIT`, [orgId]);
      expect(locked.rowCount).toBe(1);
      release();
      expect(await stuck).toBeInstanceOf(Error);

      const [recorded] = await deadLetters(topic);
      expect(recorded).toMatchObject({ offset: '0', sent_at: null });
      expect(recorded!.value.equals(notJson)).toBe(true);
      expect(recorded!.reason).toMatch(/^value is not JSON/);

      const relay = new DeadLetterRelay(ds, publisher);
      while ((await relay.runOnce()) > 0) {
        /* until every unsent dead letter is out */
      }
      expect((await deadLetters(topic))[0]!.sent_at).toBeInstanceOf(Date);
      const seen = await collect(testKafka(), Topics.RequestCompletedDeadLetter, (s) => s.some((m) => m.value?.equals(notJson)));
      const sent = seen.find((m) => m.value?.equals(notJson));
      expect(sent?.key).toBe('key');
      expect(sent?.headers).toMatchObject({
        [DeadLetterHeaders.Reason]: recorded!.reason,
        [DeadLetterHeaders.OriginalTopic]: topic,
        [DeadLetterHeaders.OriginalPartition]: '0',
        [DeadLetterHeaders.OriginalOffset]: '0',
      });
    });
  });

  describe('events metered before (written without a probe first)', () => {
    it('meters a batch again with the probe when the unique (org_id, event_id) refuses its write: the repeat is not charged, the rest is, nothing is dead-lettered', async () => {
      const org = await newOrg();
      const topic = uid('redelivered');
      const groupId = uid('group');
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId });
      const [old, fresh, later] = [0, 1, 2].map(() => requestCompleted({ org_id: org }));

      await consumer.handle(batchOf(topic, 0, [json(old!)]));
      // The same event again at another offset (a producer's retry, a replaced log), with a new one behind it.
      await consumer.handle(batchOf(topic, 1, [json(old!), json(fresh!)]));
      // And once more after it: metered with the probe, which finds the repeat again.
      await consumer.handle(batchOf(topic, 3, [json(later!), json(old!)]));

      expect(await charges(org)).toBe(3);
      expect((await metered([old!.event_id, fresh!.event_id, later!.event_id])).sort()).toEqual([old!.event_id, fresh!.event_id, later!.event_id].sort());
      const usage = await db.query(`SELECT count(*) AS n FROM usage_records WHERE org_id = $1`, [org]);
      expect(Number(usage.rows[0].n)).toBe(3);
      expect(await deadLetters(topic)).toEqual([]);
      expect(await storedOffset(groupId, topic)).toBe('5');
      // The balance is the ledger's sum.
      const sums = await db.query(
        `SELECT a.balance, (SELECT sum(amount) FROM ledger_entries e WHERE e.org_id = a.org_id) AS total FROM accounts a WHERE a.org_id = $1`,
        [org],
      );
      expect(sums.rows[0].balance).toBe(sums.rows[0].total);
    });
  });

  describe('group commit: the batches of several partitions handed over together', () => {
    it('meters them in one transaction, each partition with its own offset', async () => {
      const [a, b] = [await newOrg(), await newOrg()];
      const topic = uid('group-commit');
      const groupId = uid('group');
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId });
      const first = [0, 1].map(() => requestCompleted({ org_id: a }));
      const second = [0, 1, 2].map(() => requestCompleted({ org_id: b }));

      await Promise.all([consumer.handle(batchOf(topic, 10, first.map(json), 0)), consumer.handle(batchOf(topic, 20, second.map(json), 1))]);

      expect(await charges(a)).toBe(2);
      expect(await charges(b)).toBe(3);
      expect([await storedOffset(groupId, topic, 0), await storedOffset(groupId, topic, 1)]).toEqual(['12', '23']);
      // One transaction wrote both partitions' offsets and both orgs' entries: they carry the same xmin.
      const writers = await db.query(
        `SELECT xmin::text AS x FROM consumer_offsets WHERE group_id = $1 AND topic = $2
         UNION SELECT xmin::text FROM ledger_entries WHERE org_id = ANY($3) AND type = 'charge'`,
        [groupId, topic, [a, b]],
      );
      expect(writers.rows).toHaveLength(1);
    });

    it('caps a transaction at groupMessages: past it, the next partitions go in the next transaction', async () => {
      const orgs = [await newOrg(), await newOrg(), await newOrg()];
      const topic = uid('group-cap');
      const groupId = uid('group');
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId, groupMessages: 3 });

      await Promise.all(orgs.map((org, p) => consumer.handle(batchOf(topic, 0, [0, 1].map(() => json(requestCompleted({ org_id: org }))), p))));

      expect(await Promise.all(orgs.map(charges))).toEqual([2, 2, 2]);
      const offsets = await db.query(`SELECT partition, xmin::text AS x FROM consumer_offsets WHERE group_id = $1 AND topic = $2 ORDER BY partition`, [groupId, topic]);
      // 2 + 2 messages would pass 3: every partition had a transaction of its own.
      expect(new Set(offsets.rows.map((r: { x: string }) => r.x)).size).toBe(3);
    });

    it('isolates one partition\'s poison: the other partition is metered, the poisoned batch message by message', async () => {
      const [a, b] = [await newOrg(), await newOrg()];
      const topic = uid('group-poison');
      const groupId = uid('group');
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId, parse: lax });
      const clean = [0, 1].map(() => requestCompleted({ org_id: a }));
      const good = [0, 1].map(() => requestCompleted({ org_id: b }));
      const nul = json(requestCompleted({ org_id: b, event_id: 'abc\u0000def' }));

      await Promise.all([
        consumer.handle(batchOf(topic, 0, clean.map(json), 0)),
        consumer.handle(batchOf(topic, 0, [json(good[0]!), nul, json(good[1]!)], 1)),
      ]);

      expect(await charges(a)).toBe(2);
      expect(await charges(b)).toBe(2);
      expect((await deadLetters(topic)).map((d) => d.offset)).toEqual(['1']);
      expect([await storedOffset(groupId, topic, 0), await storedOffset(groupId, topic, 1)]).toEqual(['2', '3']);
    });

    it('fences each partition by its own stored offset: a stale batch of one is dropped, the other is metered', async () => {
      const [a, b] = [await newOrg(), await newOrg()];
      const topic = uid('group-fence');
      const groupId = uid('group');
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId });
      const earlier = [0, 1, 2].map(() => requestCompleted({ org_id: a }));
      await consumer.handle(batchOf(topic, 0, earlier.map(json), 0));
      const fresh = [0, 1].map(() => requestCompleted({ org_id: b }));

      // Offsets 1..2 of partition 0 again (a consumer that lost it mid-batch), beside partition 1's first batch.
      await Promise.all([consumer.handle(batchOf(topic, 1, earlier.slice(1).map(json), 0)), consumer.handle(batchOf(topic, 0, fresh.map(json), 1))]);

      expect(await charges(a)).toBe(3);
      expect(await charges(b)).toBe(2);
      expect([await storedOffset(groupId, topic, 0), await storedOffset(groupId, topic, 1)]).toEqual(['3', '2']);
    });

    it('fails every batch of the group while the database is unreachable, and stores nothing of any', async () => {
      const [a, b] = [await newOrg(), await newOrg()];
      const topic = uid('group-down');
      const groupId = uid('group');
      // A real connection failure, as pg reports it when PostgreSQL is down.
      const refused = await new Client({ host: '127.0.0.1', port: 1, connectionTimeoutMillis: 2000 }).connect().then(
        () => new Error('connected?'),
        (e: Error) => e,
      );
      const down = new Proxy(ds, { get: (target, prop, receiver) => (prop === 'transaction' ? () => Promise.reject(refused) : (Reflect.get(target, prop, receiver) as unknown)) });
      const consumer = new RequestCompletedConsumer(down, catalog, { groupId });

      const outcomes = await Promise.allSettled([
        consumer.handle(batchOf(topic, 0, [json(requestCompleted({ org_id: a }))], 0)),
        consumer.handle(batchOf(topic, 0, [json(requestCompleted({ org_id: b }))], 1)),
      ]);

      expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as Error & { code?: string }).code : o.status))).toEqual(['ECONNREFUSED', 'ECONNREFUSED']);
      expect([await charges(a), await charges(b)]).toEqual([0, 0]);
      expect([await storedOffset(groupId, topic, 0), await storedOffset(groupId, topic, 1)]).toEqual([undefined, undefined]);
      expect(await deadLetters(topic)).toEqual([]);
    });
  });

  describe('the stored offset fences a consumer that lost its partition', () => {
    it('drops a stale batch below the stored offset and never moves the offset back', async () => {
      const orgId = await newOrg();
      const topic = uid('fence');
      const groupId = uid('group');
      const values = [json(requestCompleted({ org_id: orgId })), '{poison', json(requestCompleted({ org_id: orgId })), json(requestCompleted({ org_id: orgId }))];
      const owner = new RequestCompletedConsumer(ds, catalog, { groupId });
      const stale = new RequestCompletedConsumer(ds, catalog, { groupId });

      await owner.handle(batchOf(topic, 0, values));
      expect(await storedOffset(groupId, topic)).toBe('4');
      // The previous owner still had offsets 1..2 in flight when the partition moved.
      await stale.handle(batchOf(topic, 1, values.slice(1, 3)));

      expect(await storedOffset(groupId, topic)).toBe('4');
      expect((await deadLetters(topic)).map((d) => d.offset)).toEqual(['1']);
      expect(await charges(orgId)).toBe(3);
    });

    it('queues behind the transaction that holds the stored offset, then drops what that transaction stored past', async () => {
      const orgId = await newOrg();
      const topic = uid('fence-wait');
      const groupId = uid('group');
      const consumer = new RequestCompletedConsumer(ds, catalog, { groupId });
      await consumer.handle(batchOf(topic, 0, [json(requestCompleted({ org_id: orgId }))]));
      expect(await storedOffset(groupId, topic)).toBe('1');

      // Another consumer (the partition's new owner) is committing offsets 1..3 right now.
      const other = new Client({ connectionString: process.env.DATABASE_URL });
      await other.connect();
      try {
        await other.query('BEGIN');
        await other.query(`SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = 0 FOR UPDATE`, [groupId, topic]);
        await other.query(`UPDATE consumer_offsets SET next_offset = 4 WHERE group_id = $1 AND topic = $2 AND partition = 0`, [groupId, topic]);

        const late = [1, 2, 3].map(() => requestCompleted({ org_id: orgId }));
        let settled = false;
        const handling = consumer.handle(batchOf(topic, 1, late.map(json))).finally(() => (settled = true));
        await new Promise((r) => setTimeout(r, 500));
        expect(settled).toBe(false);
        await other.query('COMMIT');
        await handling;

        expect(await metered(late.map((e) => e.event_id))).toEqual([]);
        expect(await storedOffset(groupId, topic)).toBe('4');
      } finally {
        await other.end();
      }
    });
  });
});
