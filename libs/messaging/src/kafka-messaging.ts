import { randomUUID } from 'node:crypto';
import { Admin, Kafka, logLevel, Partitioners, Producer } from 'kafkajs';
import { TopicPartitions } from '@tollgate/contracts';
import { ConfigError, KafkaConfig, kafkaConfig, kafkaCrossCheck, KafkaEnv, readConfig } from '@tollgate/platform';
import { KafkaLog, OffsetStoringConsumer } from './kafka-batch-consumer';
import { partitionOfKey, SerialisedPublisher } from './kafka-publisher';
import { BatchConsumer, BatchConsumerOptions, IncomingMessage, Messaging, Publisher } from './messaging';

export { DefaultBrokers, DefaultMaxMessageBytes } from '@tollgate/platform';

/** The Kafka group of the environment (KAFKA_*), checked: a bad value throws a ConfigError naming it. */
export function kafkaFromEnv(env: NodeJS.ProcessEnv = process.env): KafkaConfig {
  return kafkaConfig(readConfig(KafkaEnv, env, kafkaCrossCheck));
}

export function kafkaBrokers(env: NodeJS.ProcessEnv = process.env): string[] {
  return kafkaFromEnv(env).brokers;
}

export class KafkaUnavailableError extends Error {}

/** How ensureTopics creates missing topics. Topics that exist are left as they are (a warning says what differs). */
export type TopicSettings = KafkaConfig['topicSettings'];

/** KAFKA_REPLICATION_FACTOR (default 1), KAFKA_MIN_INSYNC_REPLICAS, KAFKA_PARTITIONS. */
export function topicSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): TopicSettings {
  return kafkaFromEnv(env).topicSettings;
}

/**
 * KAFKA_MAX_MESSAGE_BYTES: the largest record batch the brokers take (their `message.max.bytes`, or a topic's
 * `max.message.bytes` when lower). Sends are cut to stay within it, and the gateway's spool dead-letters an event
 * larger than it without sending it (it could never be taken).
 */
export function maxMessageBytesFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return kafkaFromEnv(env).maxMessageBytes;
}

export interface KafkaMessagingOptions {
  clientId: string;
  brokers?: string[];
  log?: KafkaLog;
  /** Default: from the environment (topicSettingsFromEnv), read when the messaging is created. */
  topicSettings?: TopicSettings;
  /** The topics ensureTopics creates, with their default partition counts. Default: the project's (TopicPartitions). */
  topics?: Readonly<Record<string, number>>;
  /** Default: KAFKA_MAX_MESSAGE_BYTES (maxMessageBytesFromEnv). */
  maxMessageBytes?: number;
  /** Default: KAFKA_LINGER_MS. */
  lingerMs?: number;
}

export function createKafkaMessaging(opts: KafkaMessagingOptions): Messaging {
  return new KafkaMessaging(opts);
}

class KafkaMessaging implements Messaging {
  private readonly kafka: Kafka;
  private readonly brokers: string[];
  private readonly topicSettings: TopicSettings;
  private readonly maxMessageBytes: number;
  private readonly lingerMs: number;
  private admin: Admin | null = null;
  private readonly closers: Array<() => Promise<void>> = [];

  constructor(private readonly opts: KafkaMessagingOptions) {
    // An app passes its config's Kafka settings; whatever is left out is read from the environment (checked).
    const fromEnv = opts.brokers && opts.topicSettings && opts.maxMessageBytes && opts.lingerMs !== undefined ? null : kafkaFromEnv();
    this.brokers = opts.brokers ?? fromEnv!.brokers;
    this.topicSettings = opts.topicSettings ?? fromEnv!.topicSettings;
    this.maxMessageBytes = opts.maxMessageBytes ?? fromEnv!.maxMessageBytes;
    this.lingerMs = opts.lingerMs ?? fromEnv!.lingerMs;
    const log = opts.log;
    this.kafka = new Kafka({
      clientId: opts.clientId,
      brokers: this.brokers,
      connectionTimeout: 3000,
      requestTimeout: 30000,
      retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 5000 },
      logLevel: logLevel.WARN,
      logCreator: () => ({ level, log: entry }) => {
        if (!log) return;
        const { message, ...extra } = entry as { message: string } & Record<string, unknown>;
        log(level <= logLevel.ERROR ? 'error' : 'warn', `kafka: ${message}`, extra);
      },
    });
  }

  private async connectedAdmin(): Promise<Admin> {
    if (this.admin) return this.admin;
    const admin = this.kafka.admin();
    try {
      await admin.connect();
    } catch (e) {
      throw new KafkaUnavailableError(
        `Kafka is not reachable at ${this.brokers.join(',')} (${(e as Error).message}). Start a broker or set KAFKA_BROKERS.`,
      );
    }
    this.admin = admin;
    this.closers.push(() => admin.disconnect());
    return admin;
  }

  async ensureTopics(): Promise<void> {
    const admin = await this.connectedAdmin();
    const { replicationFactor, minInsyncReplicas } = this.topicSettings;
    const wanted = Object.entries(this.opts.topics ?? TopicPartitions).map(([topic, partitions]) => ({ topic, partitions: this.partitionsOf(partitions) }));
    const existing = new Set(await admin.listTopics());
    const missing = wanted.filter((t) => !existing.has(t.topic));
    if (missing.length > 0) {
      const brokers = (await admin.describeCluster()).brokers.length;
      if (replicationFactor > brokers) {
        throw new ConfigError(`invalid configuration: KAFKA_REPLICATION_FACTOR: ${replicationFactor} copies need as many brokers; the cluster at ${this.brokers.join(',')} has ${brokers}`);
      }
      // Not kafkajs's waitForLeaders: it asks one broker once the controller took the topics, and on a cluster a
      // broker that has not applied them yet answers UNKNOWN_TOPIC_OR_PARTITION, which it gives up on.
      await admin.createTopics({
        waitForLeaders: false,
        topics: missing.map(({ topic, partitions }) => ({
          topic,
          numPartitions: partitions,
          replicationFactor,
          configEntries: minInsyncReplicas === null ? [] : [{ name: 'min.insync.replicas', value: String(minInsyncReplicas) }],
        })),
      }).catch((e: Error & { type?: string }) => {
        // Several apps start together: another one may have created them first.
        if (e.type !== 'TOPIC_ALREADY_EXISTS' && !/already exists/i.test(e.message)) throw e;
      });
      await this.awaitLeaders(admin, missing.map((t) => t.topic));
    }
    // Topics that were there already keep their settings: say so when they differ from what is configured.
    const present = wanted.filter((t) => existing.has(t.topic));
    if (present.length === 0) return;
    const metadata = await admin.fetchTopicMetadata({ topics: present.map((t) => t.topic) });
    for (const t of metadata.topics) {
      const want = present.find((p) => p.topic === t.name);
      const replicas = t.partitions[0]?.replicas.length ?? 0;
      if (want && (t.partitions.length !== want.partitions || replicas !== replicationFactor)) {
        this.opts.log?.('warn', `kafka: topic ${t.name} exists with ${t.partitions.length} partitions and ${replicas} replicas; configured ${want.partitions} and ${replicationFactor} apply only to topics created now (change it with kafka-topics.sh / kafka-reassign-partitions.sh)`);
      }
    }
  }

  /**
   * Waits until every partition of `topics` has a leader, asking again while the broker asked has not learnt of
   * them (UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE: a cluster's brokers apply a new topic one by one).
   */
  private async awaitLeaders(admin: Admin, topics: string[], timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no metadata yet';
    for (;;) {
      try {
        const meta = await admin.fetchTopicMetadata({ topics });
        const waiting = meta.topics.filter((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0)).map((t) => t.name);
        if (meta.topics.length === topics.length && waiting.length === 0) return;
        last = `no leader yet for ${waiting.join(', ') || 'some topics'}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new KafkaUnavailableError(`Kafka at ${this.brokers.join(',')}: topics ${topics.join(', ')} created, but without leaders after ${timeoutMs / 1000} s (${last})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** KAFKA_PARTITIONS applies to the keyed topics (default more than 1); a single-partition topic stays one. */
  private partitionsOf(defaultPartitions: number): number {
    return defaultPartitions > 1 && this.topicSettings.partitions !== null ? this.topicSettings.partitions : defaultPartitions;
  }

  async publisher(): Promise<Publisher> {
    const connect = async (): Promise<Producer> => {
      const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
      try {
        await producer.connect();
      } catch (e) {
        throw new KafkaUnavailableError(`Kafka is not reachable at ${this.brokers.join(',')} (${(e as Error).message}).`);
      }
      return producer;
    };
    const producer = await connect();
    // Partition counts, best effort: without them a failed send is retried whole (see Publisher.partitionOf).
    const partitions = new Map<string, number>();
    const topics = Object.keys(this.opts.topics ?? TopicPartitions);
    await this.connectedAdmin()
      .then((admin) => admin.fetchTopicMetadata({ topics }))
      .then((meta) => meta.topics.forEach((t) => t.partitions.length > 0 && partitions.set(t.name, t.partitions.length)))
      .catch((e: Error) => this.opts.log?.('warn', `kafka: partition counts unknown (${e.message}); a failed send is retried whole`));
    const publisher = new SerialisedPublisher(producer, connect, this.maxMessageBytes, this.lingerMs, (topic) => partitions.get(topic));
    this.closers.push(() => publisher.close());
    return publisher;
  }

  batchConsumer(options: BatchConsumerOptions): BatchConsumer {
    const consumer = new OffsetStoringConsumer(this.kafka, options, this.opts.log);
    this.closers.push(() => consumer.stop());
    return consumer;
  }

  async ping(): Promise<boolean> {
    try {
      const admin = await this.connectedAdmin();
      await admin.describeCluster();
      return true;
    } catch {
      return false;
    }
  }

  async lag(groupId: string, topic: string): Promise<number> {
    const admin = await this.connectedAdmin();
    const [ends, committed] = await Promise.all([
      admin.fetchTopicOffsets(topic),
      admin.fetchOffsets({ groupId, topics: [topic] }),
    ]);
    const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
    return ends.reduce((sum, p) => sum + Math.max(0, Number(p.high) - Math.max(0, done.get(p.partition) ?? 0)), 0);
  }

  async topics(): Promise<string[]> {
    return (await this.connectedAdmin()).listTopics();
  }

  async endOffsets(topic: string): Promise<Map<number, bigint>> {
    const admin = await this.connectedAdmin();
    return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  }

  async readTopic(
    topic: string,
    until: ReadonlyMap<number, bigint>,
    onBatch: (partition: number, messages: IncomingMessage[]) => Promise<void>,
    opts: { groupPrefix: string; idleMs?: number },
  ): Promise<Map<number, { from: bigint; complete: boolean }>> {
    const admin = await this.connectedAdmin();
    const offsets = await admin.fetchTopicOffsets(topic);
    const result = new Map<number, { from: bigint; complete: boolean }>();
    // Where each partition must be read to: `until`, or its end when `until` is beyond it (nothing is there).
    const targets = new Map<number, bigint>();
    for (const p of offsets) {
      const want = until.get(p.partition);
      if (want === undefined) continue;
      const from = BigInt(p.low);
      const to = want < BigInt(p.high) ? want : BigInt(p.high);
      result.set(p.partition, { from, complete: from >= to });
      if (from < to) targets.set(p.partition, to);
    }
    if (targets.size === 0) return result;

    const groupId = `${opts.groupPrefix}-${randomUUID()}`;
    const consumer = this.kafka.consumer({ groupId, allowAutoTopicCreation: false, sessionTimeout: 10000, heartbeatInterval: 1000, maxBytesPerPartition: 4 * 1024 * 1024 });
    let failed: Error | null = null;
    let lastBatchAt = Date.now();
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, heartbeat }) => {
          lastBatchAt = Date.now();
          const to = targets.get(batch.partition);
          if (to === undefined || batch.messages.length === 0) return;
          const messages = batch.messages.filter((m) => BigInt(m.offset) < to);
          try {
            if (messages.length > 0) {
              await onBatch(
                batch.partition,
                messages.map((m) => ({
                  offset: m.offset,
                  key: m.key,
                  value: m.value,
                  headers: Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, Array.isArray(v) ? String(v[0]) : String(v ?? '')])),
                })),
              );
            }
          } catch (e) {
            failed ??= e as Error;
          }
          if (BigInt(batch.lastOffset()) + 1n >= to) {
            targets.delete(batch.partition);
            result.set(batch.partition, { from: result.get(batch.partition)!.from, complete: true });
            consumer.pause([{ topic, partitions: [batch.partition] }]);
          }
          await heartbeat();
        },
      });
      const idleMs = opts.idleMs ?? 15_000;
      while (targets.size > 0 && failed === null && Date.now() - lastBatchAt < idleMs) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await consumer.disconnect().catch(() => undefined);
      await admin.deleteGroups([groupId]).catch(() => undefined);
    }
    if (failed) throw failed;
    return result;
  }

  async committedOffsets(groupId: string, topic: string): Promise<Map<number, bigint>> {
    const admin = await this.connectedAdmin();
    const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
    return new Map((committed[0]?.partitions ?? []).filter((p) => Number(p.offset) >= 0).map((p) => [p.partition, BigInt(p.offset)]));
  }

  async startOffsets(topic: string): Promise<Map<number, bigint>> {
    const admin = await this.connectedAdmin();
    return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.low)]));
  }

  async deleteGroup(groupId: string): Promise<void> {
    const admin = await this.connectedAdmin();
    await admin.deleteGroups([groupId]);
  }

  partitionOf(key: string, partitions: number): number {
    return partitionOfKey(key, partitions);
  }

  async close(): Promise<void> {
    for (const close of this.closers.reverse()) await close().catch(() => undefined);
    this.closers.length = 0;
    this.admin = null;
  }
}
