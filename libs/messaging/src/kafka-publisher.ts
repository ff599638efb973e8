import { Partitioners, Producer } from 'kafkajs';
import { Batcher } from '@tollgate/platform';
import { MessageRefusedError, OutgoingMessage, Publisher, recordBatchBytesBound } from './messaging';

/** kafkajs's producer behind the Publisher port: one send at a time, calls coalesced (kafka-messaging.ts makes it). */

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
}

/**
 * An idempotent producer must not have two sends in flight (kafkajs can then fail with out-of-order
 * sequence errors), so sends are serialised: a Batcher with one flush in flight. Calls made while a send is in
 * flight are coalesced into the next send, and so are the calls made in the same turn of the event loop (the send
 * starts on setImmediate, after every socket the loop found ready has been handled): under load this batches
 * naturally, and an idle gateway pays no linger delay (a few microseconds, not a timer). A call resolves only once
 * the broker acknowledged its send (acks: -1), so the gateway never answers ahead of the ack.
 *
 * A send is kept within `maxBatchBytes` (the broker's limit on a record batch): coalesced calls beyond it wait for
 * the next send, so calls that fit alone are never refused for being sent together. A send the broker refuses for
 * its messages (MessageRefusedError) may have been written on the other partitions of the same request while
 * kafkajs rolls every partition's sequence back; the producer's next sends there would be refused for good
 * (out-of-order sequence), so after such a refusal of several messages the producer is replaced (a new producer
 * id; its copies of what was written are duplicates, deduped by event_id) before the next send starts.
 */
export class SerialisedPublisher implements Publisher {
  private readonly sends: Batcher<QueuedPublish>;
  private closed = false;
  private producer: Producer | null;

  constructor(
    producer: Producer,
    private readonly connect: () => Promise<Producer>,
    maxBatchBytes: number,
    /** KAFKA_LINGER_MS: 0 gathers one event-loop turn (no timer); more waits that long for a send to fill. */
    lingerMs = 0,
    /** Each topic's partition count, when known (read from the broker when the publisher was made): partitionOf. */
    private readonly partitions: (topic: string) => number | undefined = () => undefined,
  ) {
    this.producer = producer;
    this.sends = new Batcher((pending) => this.send(pending), { concurrency: 1, maxWeight: maxBatchBytes, weigh: (p) => p.bytes, linger: lingerMs > 0 ? lingerMs : 'turn' });
  }

  publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('publisher is closed'));
    return this.sends.add({ topic, messages, bytes: recordBatchBytesBound(messages) });
  }

  partitionOf(topic: string, key: string): number | undefined {
    const count = this.partitions(topic);
    return count === undefined ? undefined : partitionOfKey(key, count);
  }

  /** One send of the coalesced calls (the first always goes, alone if it is larger than the limit). */
  private async send(pending: QueuedPublish[]): Promise<void> {
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
    } catch (e) {
      const refused = messageRefusal(e);
      if (refused && messages > 1) await this.renewProducer();
      throw refused ?? e;
    }
  }

  /** A new producer (new producer id, sequences from 0) for the next send; made at that send if the broker is away. */
  private async renewProducer(): Promise<void> {
    const old = this.producer;
    this.producer = null;
    await old?.disconnect().catch(() => undefined);
    this.producer = await this.connect().catch(() => null);
  }

  /** Sends what was published before it (the calls wait for their acks), then disconnects. */
  async close(): Promise<void> {
    this.closed = true;
    await this.sends.close();
    await this.producer?.disconnect();
  }
}
