import { ConfigResourceTypes, Kafka, logLevel } from 'kafkajs';
import { v7 as uuidv7 } from 'uuid';
import { ConfigError } from '@tollgate/platform';
import { createKafkaMessaging, kafkaBrokers } from './kafka-messaging';

/** ensureTopics against the real (single-broker) test cluster, on topics of this run only. */
describe('ensureTopics creates topics as configured (real Kafka)', () => {
  const kafka = new Kafka({ clientId: 'tollgate-tests', brokers: kafkaBrokers(), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();

  beforeAll(async () => {
    await admin.connect();
  });

  afterAll(async () => {
    await admin.disconnect();
  });

  it('gives the keyed topics KAFKA_PARTITIONS partitions and every topic min.insync.replicas; a single-partition topic stays one', async () => {
    const keyed = `test.topics.${uuidv7()}.keyed`;
    const single = `test.topics.${uuidv7()}.single`;
    const messaging = createKafkaMessaging({
      clientId: 'tollgate-tests',
      topics: { [keyed]: 6, [single]: 1 },
      topicSettings: { replicationFactor: 1, minInsyncReplicas: 1, partitions: 4 },
    });
    try {
      await messaging.ensureTopics();
      await messaging.ensureTopics(); // idempotent
    } finally {
      await messaging.close();
    }
    const metadata = await admin.fetchTopicMetadata({ topics: [keyed, single] });
    expect(Object.fromEntries(metadata.topics.map((t) => [t.name, t.partitions.length]))).toEqual({ [keyed]: 4, [single]: 1 });
    const configs = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [keyed, single].map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['min.insync.replicas'] })),
    });
    for (const r of configs.resources) {
      // Set on the topic itself, not inherited from the broker's default.
      expect(r.configEntries).toEqual([expect.objectContaining({ configName: 'min.insync.replicas', configValue: '1', isDefault: false })]);
    }
  });

  it('refuses a replication factor the cluster has too few brokers for, naming KAFKA_REPLICATION_FACTOR, and creates nothing', async () => {
    const topic = `test.topics.${uuidv7()}.rf`;
    const messaging = createKafkaMessaging({ clientId: 'tollgate-tests', topics: { [topic]: 6 }, topicSettings: { replicationFactor: 3, minInsyncReplicas: 2, partitions: null } });
    try {
      const failure = messaging.ensureTopics();
      await expect(failure).rejects.toThrow(ConfigError);
      await expect(failure).rejects.toThrow(/^invalid configuration: KAFKA_REPLICATION_FACTOR: 3 copies need as many brokers; the cluster at .* has 1$/);
    } finally {
      await messaging.close();
    }
    expect(await admin.listTopics()).not.toContain(topic);
  });
});

/** What a Kafka replay asks of the topic and its own group (real Kafka, a topic of this run only). */
describe('offsets and groups for a replay (real Kafka)', () => {
  const kafka = new Kafka({ clientId: 'tollgate-tests', brokers: kafkaBrokers(), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();

  beforeAll(async () => {
    await admin.connect();
  });

  afterAll(async () => {
    await admin.disconnect();
  });

  it("gives each partition's start and end, a group's committed offsets, and deletes a group that has no members", async () => {
    const topic = `test.replay.${uuidv7()}`;
    const messaging = createKafkaMessaging({ clientId: 'tollgate-tests', topics: { [topic]: 2 }, topicSettings: { replicationFactor: 1, minInsyncReplicas: null, partitions: null } });
    const groupId = `test-replay-${uuidv7()}`;
    try {
      await messaging.ensureTopics();
      // Idempotent, as the product's own producer is: on a loaded machine a send can time out after the
      // broker wrote it, and a plain producer's retry then writes it twice (CI once saw partition 1 end at 2).
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
      await producer.connect();
      await producer.send({ topic, acks: -1, messages: [0, 0, 0, 1].map((partition, i) => ({ partition, value: String(i) })) });
      await producer.disconnect();
      expect(await messaging.startOffsets(topic)).toEqual(new Map([[0, 0n], [1, 0n]]));
      expect(await messaging.endOffsets(topic)).toEqual(new Map([[0, 3n], [1, 1n]]));

      expect(await messaging.committedOffsets(groupId, topic)).toEqual(new Map());
      await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '2' }] });
      expect(await messaging.committedOffsets(groupId, topic)).toEqual(new Map([[0, 2n]]));

      await messaging.deleteGroup(groupId);
      expect((await admin.listGroups()).groups.map((g) => g.groupId)).not.toContain(groupId);
    } finally {
      await messaging.close();
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    }
  });
});
