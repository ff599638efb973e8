import { ConfigError } from '@tollgate/platform';
import { createKafkaMessaging, topicSettingsFromEnv } from './kafka-messaging';
import { partitionOfKey } from './kafka-publisher';

describe('topic settings from the environment', () => {
  it('defaults to one replica, the broker\'s min.insync.replicas and the project\'s partition counts', () => {
    expect(topicSettingsFromEnv({})).toEqual({ replicationFactor: 1, minInsyncReplicas: null, partitions: null });
  });

  it('reads a three-broker setup: RF 3, min ISR 2, 12 partitions', () => {
    expect(topicSettingsFromEnv({ KAFKA_REPLICATION_FACTOR: '3', KAFKA_MIN_INSYNC_REPLICAS: '2', KAFKA_PARTITIONS: '12' })).toEqual({
      replicationFactor: 3,
      minInsyncReplicas: 2,
      partitions: 12,
    });
  });

  it.each([
    ['KAFKA_REPLICATION_FACTOR', '0'],
    ['KAFKA_REPLICATION_FACTOR', 'three'],
    ['KAFKA_REPLICATION_FACTOR', '1.5'],
    ['KAFKA_MIN_INSYNC_REPLICAS', '-1'],
    ['KAFKA_PARTITIONS', '0'],
    ['KAFKA_PARTITIONS', '6 partitions'],
    ['KAFKA_PARTITIONS', '1e3'],
  ])('refuses %s=%s, naming the variable', (name, value) => {
    expect(() => topicSettingsFromEnv({ [name]: value })).toThrow(ConfigError);
    expect(() => topicSettingsFromEnv({ [name]: value })).toThrow(new RegExp(`^invalid configuration: ${name}: must be a whole number`));
  });

  it('refuses a min.insync.replicas above the replication factor: no acks=all write could succeed', () => {
    expect(() => topicSettingsFromEnv({ KAFKA_MIN_INSYNC_REPLICAS: '2' })).toThrow(/KAFKA_MIN_INSYNC_REPLICAS: must not exceed KAFKA_REPLICATION_FACTOR \(2 > 1\)/);
  });

  it('stops an app at start-up: creating the messaging reads and checks them before connecting to anything', () => {
    const saved = process.env.KAFKA_PARTITIONS;
    process.env.KAFKA_PARTITIONS = 'many';
    try {
      expect(() => createKafkaMessaging({ clientId: 'test' })).toThrow(/KAFKA_PARTITIONS/);
    } finally {
      if (saved === undefined) delete process.env.KAFKA_PARTITIONS;
      else process.env.KAFKA_PARTITIONS = saved;
    }
  });
});

describe('partitionOfKey', () => {
  it('is stable, within range, and spreads keys over the partitions', () => {
    const keys = Array.from({ length: 600 }, (_, i) => `org-${i}`);
    const partitions = keys.map((k) => partitionOfKey(k, 6));
    expect(keys.map((k) => partitionOfKey(k, 6))).toEqual(partitions);
    expect(new Set(partitions)).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    expect(() => partitionOfKey('org', 0)).toThrow(RangeError);
  });
});
