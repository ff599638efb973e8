import { randomUUID } from 'node:crypto';
import { Admin, Consumer, Kafka, logLevel, Partitioners, Producer } from 'kafkajs';
import { TopicPartitions } from '@tollgate/contracts';
import { ConfigError, consumerOffsetResets } from '@tollgate/platform';
import {
  BatchConsumer,
  BatchConsumerOptions,
  IncomingBatch,
  IncomingMessage,
  MessageRefusedError,
  Messaging,
  OutgoingMessage,
  Publisher,
  recordBatchBytesBound,
} from './messaging';

export const DefaultBrokers = '127.0.0.1:9092';

export function kafkaBrokers(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.KAFKA_BROKERS || DefaultBrokers).split(',').map((b) => b.trim()).filter(Boolean);
}

export class KafkaUnavailableError extends Error {}

/** How ensureTopics creates missing topics. Topics that exist are left as they are (a warning says what differs). */
export interface TopicSettings {
  /** Copies of each partition (KAFKA_REPLICATION_FACTOR, default 1). */
  replicationFactor: number;
  /** The topics' min.insync.replicas (KAFKA_MIN_INSYNC_REPLICAS); null: the broker's default. */
  minInsyncReplicas: number | null;
  /** Partitions of the keyed topics, those created with more than one (KAFKA_PARTITIONS); null: their defaults. */
  partitions: number | null;
}

/** Reads the topic settings; a bad value stops start-up with a message naming the variable. */
export function topicSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): TopicSettings {
  const positive = (name: string, max: number): number | null => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return null;
    const n = Number(raw);
    if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < 1 || n > max) {
      throw new ConfigError(`environment: ${name}: must be a whole number from 1 to ${max} (got "${raw}")`);
    }
    return n;
  };
  const replicationFactor = positive('KAFKA_REPLICATION_FACTOR', 32767) ?? 1;
  const minInsyncReplicas = positive('KAFKA_MIN_INSYNC_REPLICAS', 32767);
  if (minInsyncReplicas !== null && minInsyncReplicas > replicationFactor) {
    throw new ConfigError(
      `environment: KAFKA_MIN_INSYNC_REPLICAS: must not exceed KAFKA_REPLICATION_FACTOR (${minInsyncReplicas} > ${replicationFactor}): no acks=all write could succeed`,
    );
  }
  return { replicationFactor, minInsyncReplicas, partitions: positive('KAFKA_PARTITIONS', 10000) };
}

/** The broker's default `message.max.bytes` (1 MiB + 12) rounded down: what a send is kept within by default. */
export const DefaultMaxMessageBytes = 1024 * 1024;

/**
 * KAFKA_MAX_MESSAGE_BYTES: the largest record batch the brokers take (their `message.max.bytes`, or a topic's
 * `max.message.bytes` when lower). Sends are cut to stay within it, and the gateway's spool dead-letters an event
 * larger than it without sending it (it could never be taken).
 */
export function maxMessageBytesFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.KAFKA_MAX_MESSAGE_BYTES;
  if (raw === undefined || raw.trim() === '') return DefaultMaxMessageBytes;
  const n = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < 65536 || n > 1024 * 1024 * 1024) {
    throw new ConfigError(`environment: KAFKA_MAX_MESSAGE_BYTES: must be a whole number of bytes from 65536 to 1073741824 (got "${raw}")`);
  }
  return n;
}

/**
 * The broker errors that refuse a send for its messages' own size or content: the same bytes are refused again on
 * every retry. CORRUPT_MESSAGE is not among them: it also means a CRC failure in transit, and Kafka and kafkajs
 * retry it; everything else (connections, leaders, replicas, sequences, authorisation) is the broker's state.
 */
const RefusedForContent = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD']);

/** The refusal in a kafkajs error (itself or a cause it wraps), or null when the error is not one. */
export function messageRefusal(e: unknown): MessageRefusedError | null {
  let c = e as { type?: unknown; message?: string; cause?: unknown; originalError?: unknown } | undefined;
  for (let depth = 0; c && depth < 5; depth++) {
    if (typeof c.type === 'string' && RefusedForContent.has(c.type)) return new MessageRefusedError(c.type, `the broker refused it: ${c.type} (${c.message ?? ''})`);
    c = (c.cause ?? c.originalError) as typeof c;
  }
  return null;
}

export interface KafkaMessagingOptions {
  clientId: string;
  brokers?: string[];
  log?: (level: 'error' | 'warn' | 'info', message: string, extra?: Record<string, unknown>) => void;
  /** Default: from the environment (topicSettingsFromEnv), read when the messaging is created. */
  topicSettings?: TopicSettings;
  /** The topics ensureTopics creates, with their default partition counts. Default: the project's (TopicPartitions). */
  topics?: Readonly<Record<string, number>>;
  /** Default: KAFKA_MAX_MESSAGE_BYTES (maxMessageBytesFromEnv). */
  maxMessageBytes?: number;
}

export function createKafkaMessaging(opts: KafkaMessagingOptions): Messaging {
  return new KafkaMessaging(opts);
}

class KafkaMessaging implements Messaging {
  private readonly kafka: Kafka;
  private readonly brokers: string[];
  private readonly topicSettings: TopicSettings;
  private readonly maxMessageBytes: number;
  private admin: Admin | null = null;
  private readonly closers: Array<() => Promise<void>> = [];

  constructor(private readonly opts: KafkaMessagingOptions) {
    this.brokers = opts.brokers ?? kafkaBrokers();
    this.topicSettings = opts.topicSettings ?? topicSettingsFromEnv();
    this.maxMessageBytes = opts.maxMessageBytes ?? maxMessageBytesFromEnv();
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
        throw new ConfigError(`environment: KAFKA_REPLICATION_FACTOR: ${replicationFactor} copies need as many brokers; the cluster at ${this.brokers.join(',')} has ${brokers}`);
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
    const publisher = new SerialisedPublisher(await connect(), connect, this.maxMessageBytes);
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

const keyPartitioner = Partitioners.DefaultPartitioner();

/**
 * Where the publisher's partitioner (kafkajs DefaultPartitioner: Java-compatible murmur2 of the key, modulo the
 * topic's partition count, whichever partitions are available) puts a keyed message. Asked of the partitioner
 * the producer is created with rather than a copy of its hash; an int test checks it against real publishes.
 */
export function partitionOfKey(key: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) throw new RangeError(`partitions must be a positive integer (got ${partitions})`);
  const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0, partitionErrorCode: 0, replicas: [], isr: [] }));
  return keyPartitioner({ topic: '', partitionMetadata, message: { key, value: null } });
}

interface QueuedPublish {
  topic: string;
  messages: OutgoingMessage[];
  bytes: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * An idempotent producer must not have two sends in flight (kafkajs can then fail with out-of-order
 * sequence errors), so sends are serialised. Calls made while a send is in flight are coalesced into the
 * next send, and so are the calls made in the same turn of the event loop (the send starts on setImmediate, after
 * every socket the loop found ready has been handled): under load this batches naturally, and an idle gateway pays
 * no linger delay (a few microseconds, not a timer).
 *
 * A send is kept within `maxBatchBytes` (the broker's limit on a record batch): coalesced calls beyond it wait for
 * the next send, so calls that fit alone are never refused for being sent together. A send the broker refuses for
 * its messages (MessageRefusedError) may have been written on the other partitions of the same request while
 * kafkajs rolls every partition's sequence back; the producer's next sends there would be refused for good
 * (out-of-order sequence), so after such a refusal of several messages the producer is replaced (a new producer
 * id; its copies of what was written are duplicates, deduped by event_id).
 */
class SerialisedPublisher implements Publisher {
  private queue: QueuedPublish[] = [];
  private sending = false;
  private closed = false;
  private producer: Producer | null;

  constructor(
    producer: Producer,
    private readonly connect: () => Promise<Producer>,
    private readonly maxBatchBytes: number,
  ) {
    this.producer = producer;
  }

  publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('publisher is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ topic, messages, bytes: recordBatchBytesBound(messages), resolve, reject });
      if (!this.sending) {
        this.sending = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    this.sending = true;
    while (this.queue.length > 0) {
      // The calls that fit in one send (the first one always goes, alone if it is larger than the limit).
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length && (n === 0 || bytes + this.queue[n]!.bytes <= this.maxBatchBytes)) bytes += this.queue[n++]!.bytes;
      const pending = this.queue.splice(0, n);
      const byTopic = new Map<string, OutgoingMessage[]>();
      let messages = 0;
      for (const p of pending) {
        const list = byTopic.get(p.topic) ?? [];
        for (const m of p.messages) list.push(m);
        messages += p.messages.length;
        byTopic.set(p.topic, list);
      }
      try {
        this.producer ??= await this.connect();
        await this.producer.sendBatch({
          acks: -1,
          topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
        });
        for (const p of pending) p.resolve();
      } catch (e) {
        const refused = messageRefusal(e);
        if (refused && messages > 1) await this.renewProducer();
        for (const p of pending) p.reject(refused ?? (e as Error));
      }
    }
    this.sending = false;
  }

  /** A new producer (new producer id, sequences from 0) for the next send; made at that send if the broker is away. */
  private async renewProducer(): Promise<void> {
    const old = this.producer;
    this.producer = null;
    await old?.disconnect().catch(() => undefined);
    this.producer = await this.connect().catch(() => null);
  }

  async close(): Promise<void> {
    this.closed = true;
    while (this.sending) await new Promise((r) => setTimeout(r, 5));
    await this.producer?.disconnect();
  }
}

class OffsetStoringConsumer implements BatchConsumer {
  private consumer: Consumer | null = null;
  /** Next offset to process per partition, as last stored; messages below it are already metered. */
  private readonly resumeAt = new Map<number, bigint>();
  /** Offsets stored with the data that Kafka has not been told yet (it only feeds the lag metric). */
  private readonly uncommitted = new Map<number, string>();
  private flusher: NodeJS.Timeout | null = null;
  private member = false;
  /** The topic's partitions assigned at the last join. */
  private assigned: number[] = [];

  constructor(
    private readonly kafka: Kafka,
    private readonly options: BatchConsumerOptions,
    private readonly log?: KafkaMessagingOptions['log'],
  ) {}

  async start(): Promise<void> {
    const { groupId, topic } = this.options;
    const consumer = this.kafka.consumer({
      groupId,
      sessionTimeout: 10000,
      heartbeatInterval: 1000,
      maxBytesPerPartition: 4 * 1024 * 1024,
      // The broker answers a fetch once 32 KiB (~60 events) are there or 50 ms have passed: under load each batch
      // (one transaction) carries many events instead of the broker and the database spinning on one-event
      // fetches; when idle an event still waits at most 50 ms (well inside /me's 250 ms visibility budget).
      minBytes: 32 * 1024,
      maxWaitTimeInMs: 50,
      allowAutoTopicCreation: false,
    });
    this.consumer = consumer;
    // Exported at 0 from the start, so that the first reset is an increase Prometheus sees.
    for (const reason of ['past_log_end', 'before_log_start']) consumerOffsetResets.inc({ topic, reason }, 0);

    // On every assignment, seek each partition to the offset stored with the data. Kafka's own committed
    // offset can lag behind it (a crash between the database commit and the Kafka commit), never lead it.
    consumer.on(consumer.events.CRASH, (e) => {
      this.member = false;
      // kafkajs restarts the consumer itself after a retriable error, but after a non-retriable one (such as "the
      // coordinator is not aware of this member" once a broker pause outlasted the session) it stays stopped while
      // the process lives on, looking healthy and metering nothing. Start it again.
      if (!e.payload.restart) {
        this.log?.('error', `consumer: crashed (${e.payload.error.message}); starting it again`);
        setTimeout(() => void this.restartAfterCrash(consumer), 1000);
      }
    });
    consumer.on(consumer.events.STOP, () => (this.member = false));
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.member = true;
      this.resumeAt.clear();
      const partitions = e.payload.memberAssignment[topic] ?? [];
      this.assigned = [...partitions].sort((a, b) => a - b);
      void this.loadStored(partitions, true, 'assignment').catch((err: Error) =>
        this.log?.('error', `consumer: could not seek to stored offsets: ${err.message}`),
      );
    });

    // A refused commit (the group moved on: this member was dropped, a rebalance) must not crash the consumer.
    this.flusher = setInterval(
      () => void this.flushKafkaOffsets().catch((err: Error) => this.log?.('warn', `consumer: Kafka offset commit refused (${err.message}); the stored offsets stand`)),
      1000,
    );
    this.flusher.unref();
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently ?? 1,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (!isRunning() || isStale() || batch.messages.length === 0) return;
        // A fetch may start before the seek above lands: filter by the stored offset, loading it if needed.
        if (!this.resumeAt.has(batch.partition)) await this.loadStored([batch.partition], false, 'fetch');
        const resume = this.resumeAt.get(batch.partition) ?? -1n;
        // Checked on every fetch, not only on assignment: a log replaced under a running consumer. kafkajs, finding
        // its position past the new log's end (OFFSET_OUT_OF_RANGE), went back to the log's start, so the batch is
        // below the stored offset and its log ends before it; the fence would drop every message of it, forever.
        // A batch that starts past the stored offset is the other case: retention removed what was never read.
        // Both: the stored offset is read again; moved (see realign), the batch is fetched again from it. Not moved
        // (a gap for another reason), the batch goes on from the stored offset: no seek, so no loop.
        if (resume > BigInt(batch.highWatermark) || (resume >= 0n && BigInt(batch.messages[0]!.offset) > resume)) {
          await this.loadStored([batch.partition], false, 'fetch');
          if (isStale()) return;
        }
        const from = this.resumeAt.get(batch.partition) ?? -1n;
        const messages = batch.messages.filter((m) => BigInt(m.offset) >= from);
        const last = batch.messages[batch.messages.length - 1]!;
        const nextOffset = (BigInt(last.offset) + 1n).toString();
        if (messages.length > 0) {
          // Crash before handle() commits: nothing was stored; the batch is fetched again from the stored offset.
          await this.options.handle({
            topic: batch.topic,
            partition: batch.partition,
            nextOffset,
            messages: messages.map((m) => ({
              offset: m.offset,
              key: m.key,
              value: m.value,
              headers: Object.fromEntries(
                Object.entries(m.headers ?? {}).map(([k, v]) => [k, Array.isArray(v) ? String(v[0]) : String(v ?? '')]),
              ),
            })),
          } satisfies IncomingBatch);
        }
        this.options.afterStored?.();
        this.resumeAt.set(batch.partition, BigInt(nextOffset));
        resolveOffset(last.offset);
        await heartbeat();
        // Crash here (after the database commit, before Kafka's): the database holds the offset; the seek on
        // re-assignment skips the batch, and event_id deduplication would catch it anyway.
        // Kafka's copy of the offset only feeds the lag metric, so it is sent once a second (flushKafkaOffsets), not
        // per batch: under load a commit per batch would be a broker request per handful of events.
        this.uncommitted.set(batch.partition, nextOffset);
      },
    });
  }

  /** After a crash kafkajs won't recover from: a new consumer in the group, unless stopped or restarted meanwhile. */
  private async restartAfterCrash(crashed: Consumer): Promise<void> {
    if (this.consumer !== crashed) return;
    await crashed.disconnect().catch(() => undefined);
    if (this.consumer !== crashed) return;
    try {
      await this.start();
    } catch (err) {
      this.log?.('error', `consumer: could not start again (${(err as Error).message}); retrying in 5 s`);
      const failed = this.consumer;
      if (failed) setTimeout(() => void this.restartAfterCrash(failed), 5000);
    }
  }

  private async loadStored(partitions: number[], seek: boolean, on: 'assignment' | 'fetch'): Promise<void> {
    if (!this.consumer || partitions.length === 0) return;
    // The stored offsets first, then the log's bounds (in realign): an offset stored before the log's end was read
    // and yet past it is not this log's.
    const stored = await this.options.storedOffsets(this.options.topic, partitions);
    const moved = stored.size > 0 ? await this.realign(stored, on) : new Set<number>();
    for (const partition of partitions) {
      const offset = stored.get(partition);
      this.resumeAt.set(partition, offset === undefined ? -1n : BigInt(offset));
      if ((seek || moved.has(partition)) && offset !== undefined) this.consumer?.seek({ topic: this.options.topic, partition, offset });
    }
  }

  /**
   * Moves each stored offset the log no longer holds to the log's start, in `stored` and in the store, and returns
   * the partitions moved (they need a seek).
   * - Past the log's end: the log is not the one the offset was stored for (the topic recreated, a broker whose log
   *   was replaced, a database used with another cluster). Resuming there, the fence would drop every message
   *   until the new log grew past it: nothing metered, holds kept forever. So the partition is read again from its
   *   start, loudly (an error with both offsets, tollgate_consumer_offset_resets_total, an alert): what was metered
   *   before comes out as duplicates (usage_records is unique on (org_id, event_id)).
   * - Below the log's start: retention removed events before they were metered; they are lost. A warning, and the
   *   stored offset moves up to the start, so that the hold sweeper sees the partition read (an empty log would
   *   never move it) and readiness sees it at the log's end.
   */
  private async realign(stored: Map<number, string>, on: 'assignment' | 'fetch'): Promise<Set<number>> {
    const { topic } = this.options;
    const moved = new Set<number>();
    const admin = this.kafka.admin();
    let bounds: Array<{ partition: number; low: string; high: string }>;
    try {
      await admin.connect();
      bounds = await admin.fetchTopicOffsets(topic);
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    for (const { partition, low, high } of bounds) {
      const offset = stored.get(partition);
      if (offset === undefined) continue;
      const reason = BigInt(offset) > BigInt(high) ? 'past_log_end' : BigInt(offset) < BigInt(low) ? 'before_log_start' : null;
      if (reason === null) continue;
      moved.add(partition);
      if (!(await this.options.moveStoredOffset(topic, partition, offset, low))) {
        // Another consumer moved it since it was read (and said so): resume where it is now.
        const now = (await this.options.storedOffsets(topic, [partition])).get(partition);
        if (now === undefined) stored.delete(partition);
        else stored.set(partition, now);
        continue;
      }
      stored.set(partition, low);
      consumerOffsetResets.inc({ topic, reason });
      const where = { topic, partition, stored: offset, logStart: low, logEnd: high, detected: on };
      if (reason === 'past_log_end') {
        this.log?.('error', `consumer: stored offset ${offset} of ${topic}[${partition}] is past the log's end ${high}: the log was replaced (topic recreated, another broker, or this database used with another cluster); reading the partition again from its start ${low}, events metered before count as duplicates`, where);
      } else {
        this.log?.('warn', `consumer: stored offset ${offset} of ${topic}[${partition}] is below the log's start ${low}: retention removed ${BigInt(low) - BigInt(offset)} events before they were metered; continuing from the log's start`, where);
      }
    }
    return moved;
  }

  private async flushKafkaOffsets(): Promise<void> {
    if (!this.consumer || this.uncommitted.size === 0) return;
    const offsets = [...this.uncommitted].map(([partition, offset]) => ({ topic: this.options.topic, partition, offset }));
    this.uncommitted.clear();
    await this.consumer.commitOffsets(offsets);
  }

  joined(): boolean {
    return this.member;
  }

  assignment(): number[] {
    return this.member ? [...this.assigned] : [];
  }

  async stop(): Promise<void> {
    this.member = false;
    if (this.flusher) clearInterval(this.flusher);
    this.flusher = null;
    await this.flushKafkaOffsets().catch(() => undefined);
    const c = this.consumer;
    this.consumer = null;
    if (c) await c.disconnect().catch(() => undefined);
  }
}
