/**
 * The one small interface Tollgate uses Kafka through. Apps depend on these types; only kafka-messaging.ts
 * knows kafkajs.
 */
export interface OutgoingMessage {
  key: string;
  value: string | Buffer;
  headers?: Record<string, string>;
}

export interface IncomingMessage {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

export interface IncomingBatch {
  topic: string;
  partition: number;
  messages: IncomingMessage[];
  /** Offset after the last message of the batch. */
  nextOffset: string;
}

/**
 * The broker refused a send for what its messages are (too large, an invalid record), not for its own state: the
 * same bytes will be refused every time, so retrying them can only block what comes after. A send of several
 * messages refused so may owe the refusal to one of them alone (send them one by one to find it).
 */
export class MessageRefusedError extends Error {
  constructor(
    /** The broker's error type, e.g. MESSAGE_TOO_LARGE. */
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The most bytes one record batch of `messages` can take on the wire (Kafka's v2 record format, uncompressed):
 * the 61-byte batch header plus, per record, its fields with every varint counted at its widest. The broker's
 * `message.max.bytes` limits a record batch (all of one send's messages for one partition), so a send whose
 * bound is within it is never refused for its size.
 */
export function recordBatchBytesBound(messages: readonly OutgoingMessage[]): number {
  let bytes = 61;
  for (const m of messages) bytes += recordBytesBound(m);
  return bytes;
}

function recordBytesBound(m: OutgoingMessage): number {
  // length, attributes, timestamp delta, offset delta, key length, value length, header count: 5+1+10+5+5+5+5.
  let bytes = 36 + Buffer.byteLength(m.key) + (Buffer.isBuffer(m.value) ? m.value.length : Buffer.byteLength(m.value));
  for (const k in m.headers ?? {}) bytes += 10 + Buffer.byteLength(k) + Buffer.byteLength(m.headers![k]!);
  return bytes;
}

export interface Publisher {
  /**
   * Resolves once the broker acknowledged every message (acks=all, idempotent, sends serialised). Rejects with
   * MessageRefusedError when the broker refused them for what they are (see there).
   */
  publish(topic: string, messages: OutgoingMessage[]): Promise<void>;
  /**
   * The partition a message with this key goes to, when the publisher knows (undefined otherwise). A sender that
   * must retry after a failed send uses it to send each partition's messages on their own, so that what the live
   * leaders acknowledged is not written again while one leader is away (see SpoolingPublisher.sendRun).
   */
  partitionOf?(topic: string, key: string): number | undefined;
  close(): Promise<void>;
}

export interface BatchConsumerOptions {
  groupId: string;
  topic: string;
  /**
   * Where to resume each partition, from the store that commits offsets with the data (the database).
   * Called on every assignment; partitions missing from the map start at the beginning.
   */
  storedOffsets(topic: string, partitions: number[]): Promise<Map<number, string>>;
  /**
   * Moves a partition's stored offset to `to` (the log's start) if it still is `from`, an offset the log no longer
   * holds: past its end (the log was replaced) or below its start (retention removed it unread). Resolves to false
   * when the stored offset is no longer `from` (another consumer moved it) and nothing was changed.
   */
  moveStoredOffset(topic: string, partition: number, from: string, to: string): Promise<boolean>;
  /**
   * Handles one partition's batch. It must store the batch's effects and `batch.nextOffset` atomically;
   * when it resolves, the offset is also committed to Kafka (only for lag monitoring: the stored offset wins).
   * Messages below the stored offset are already filtered out.
   */
  handle(batch: IncomingBatch): Promise<void>;
  partitionsConsumedConcurrently?: number;
  /** Failpoint for crash tests: runs after `handle` stored the batch, before the Kafka offset commit. */
  afterStored?: () => void;
}

export interface BatchConsumer {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True while the consumer is a member of its group (joined, not crashed or stopped): for readiness. */
  joined(): boolean;
  /** The partitions of the topic assigned to this consumer at its last join (none before it, or once stopped). */
  assignment(): number[];
}

export interface Messaging {
  /** Creates the project's topics when missing (idempotent). */
  ensureTopics(): Promise<void>;
  publisher(): Promise<Publisher>;
  batchConsumer(options: BatchConsumerOptions): BatchConsumer;
  /** True when the cluster answers (for readiness). */
  ping(): Promise<boolean>;
  /** Committed-vs-end offsets per partition (for the consumer lag metric). */
  lag(groupId: string, topic: string): Promise<number>;
  /** The topics the cluster has (asking never creates one). */
  topics(): Promise<string[]>;
  /** Each partition's high-water mark: the offset its next message will get (every message below it is written). */
  endOffsets(topic: string): Promise<Map<number, bigint>>;
  /**
   * Reads each partition of `topic` from its oldest retained message up to (not including) `until`'s offset for it,
   * handing the messages over batch by batch. Partitions not in `until` are not read. Kafka only serves reads to a
   * consumer group: this one joins a group of its own (`<groupPrefix>-<uuid>`), commits nothing and deletes the
   * group when done. Returns, per partition read, the offset reading started at (the log's start: what retention
   * removed is below it) and whether every offset up to `until` was reached before `idleMs` passed without a batch.
   */
  readTopic(
    topic: string,
    until: ReadonlyMap<number, bigint>,
    onBatch: (partition: number, messages: IncomingMessage[]) => Promise<void>,
    opts: { groupPrefix: string; idleMs?: number },
  ): Promise<Map<number, { from: bigint; complete: boolean }>>;
  /** A group's offsets as committed to Kafka, per partition (partitions it never committed are missing). */
  committedOffsets(groupId: string, topic: string): Promise<Map<number, bigint>>;
  /** Each partition's low-water mark: the earliest offset still retained. */
  startOffsets(topic: string): Promise<Map<number, bigint>>;
  /** Deletes a consumer group that has no members left (a replay's one-off group). */
  deleteGroup(groupId: string): Promise<void>;
  /** The partition `publish` puts a message keyed `key` on, in a topic of `partitions` partitions. */
  partitionOf(key: string, partitions: number): number;
  close(): Promise<void>;
}
