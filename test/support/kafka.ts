import { Kafka, logLevel } from 'kafkajs';
import { v7 as uuidv7 } from 'uuid';
import { RequestCompletedV1, Topics } from '@tollgate/contracts';

/** A raw kafkajs client for tests that play "another producer" or read the dead-letter and ledger topics. */
export function testKafka(): Kafka {
  return new Kafka({ clientId: 'tollgate-tests', brokers: (process.env.KAFKA_BROKERS || '127.0.0.1:9092').split(','), logLevel: logLevel.NOTHING });
}

export function requestCompleted(overrides: Partial<RequestCompletedV1> & { org_id: string }): RequestCompletedV1 {
  return {
    event_id: uuidv7(),
    schema_version: 1,
    occurred_at: new Date().toISOString(),
    api_key_id: null,
    subject: { kind: 'key', id: 'external-producer' },
    profile: 'trackyard',
    method: 'POST',
    route: '/search',
    path: '/api/external/v1/search',
    status_code: 200,
    response_time_ms: 12,
    entities: [],
    reservation_id: null,
    ...overrides,
  };
}

export async function produce(kafka: Kafka, messages: Array<{ key: string; value: string | Buffer | null }>, topic: string = Topics.RequestCompleted): Promise<void> {
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.send({ topic, messages });
  } finally {
    await producer.disconnect();
  }
}

/** Reads every message of `topic` (from the beginning) until `until` is satisfied or the time runs out. */
export async function collect(
  kafka: Kafka,
  topic: string,
  until: (messages: Array<{ key: string; value: Buffer | null; headers: Record<string, string> }>) => boolean,
  timeoutMs = 15_000,
) {
  const consumer = kafka.consumer({ groupId: `test-${uuidv7()}` });
  const seen: Array<{ key: string; value: Buffer | null; headers: Record<string, string> }> = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let done: () => void = () => undefined;
  const finished = new Promise<void>((r) => (done = r));
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen.push({
        key: message.key?.toString() ?? '',
        value: message.value,
        headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
      });
      if (until(seen)) done();
    },
  });
  const timer = new Promise<void>((r) => setTimeout(r, timeoutMs));
  await Promise.race([finished, timer]);
  await consumer.disconnect();
  return seen;
}
