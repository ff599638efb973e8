import { Kafka, logLevel } from 'kafkajs';
import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { kafkaBrokers } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { produce } from '../support/kafka';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { offsetsAhead, warnIfOffsetsAhead } = require('../../scripts/offsets-check') as {
  offsetsAhead: (o: { databaseUrl: string; brokers: string; topic?: string }) => Promise<Array<{ group: string; partition: number; stored: bigint; end: bigint }>>;
  warnIfOffsetsAhead: (o: { databaseUrl: string; brokers: string; log: (m: string) => void }) => Promise<void>;
};

/** `npm run up`'s check of a database paired with another broker's log (real PostgreSQL and Kafka, a topic of this run). */
describe('scripts/offsets-check: stored offsets past the broker log end', () => {
  let ds: DataSource;
  const kafka = new Kafka({ clientId: 'tollgate-tests', brokers: kafkaBrokers(), logLevel: logLevel.NOTHING });
  const databaseUrl = process.env.DATABASE_URL!;
  const brokers = kafkaBrokers().join(',');

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 2 });
  });

  afterAll(async () => {
    await ds?.destroy();
  });

  it('names each partition whose stored offset is past the log end, with both offsets, and not one within the log', async () => {
    const topic = `test.offsets-check.${uuidv7()}`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 2, replicationFactor: 1 }] });
    await admin.disconnect();
    await produce(kafka, [{ key: 'a', value: 'x' }, { key: 'a', value: 'y' }], topic);
    const ends = new Map<number, bigint>();
    const a2 = kafka.admin();
    await a2.connect();
    for (const p of await a2.fetchTopicOffsets(topic)) ends.set(p.partition, BigInt(p.high));
    await a2.disconnect();
    const group = `test-check-${uuidv7()}`;
    await ds.query(`INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, 0, 50000), ($1, $2, 1, $3)`, [group, topic, String(ends.get(1))]);

    expect(await offsetsAhead({ databaseUrl, brokers, topic })).toEqual([{ group, partition: 0, stored: 50000n, end: ends.get(0) }]);
    // A topic the broker does not have: every log end is 0.
    const missing = `test.offsets-check.${uuidv7()}`;
    await ds.query(`INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, 0, 7)`, [group, missing]);
    expect(await offsetsAhead({ databaseUrl, brokers, topic: missing })).toEqual([{ group, partition: 0, stored: 7n, end: 0n }]);
  });

  it("warns about the request-completed topic naming the stored offset and the log's end, and says nothing when the database is not ahead", async () => {
    const topic = 'tollgate.request-completed.v1';
    const lines: string[] = [];
    await warnIfOffsetsAhead({ databaseUrl, brokers, log: (m) => lines.push(m) });
    expect(lines).toEqual([]);
    const group = `test-check-${uuidv7()}`;
    await ds.query(`INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, 0, 123456)`, [group, topic]);
    try {
      await warnIfOffsetsAhead({ databaseUrl, brokers, log: (m) => lines.push(m) });
    } finally {
      await ds.query(`DELETE FROM consumer_offsets WHERE group_id = $1`, [group]);
    }
    expect(lines).toEqual([expect.stringMatching(/^warning: this database was used with another broker log: .*tollgate\.request-completed\.v1\[0\] stored 123456, log end \d+ .*Metering will read the topic from its start/)]);
  });
});
