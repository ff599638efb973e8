import { Consumer, Kafka } from 'kafkajs';
import { consumerOffsetResets } from '@tollgate/platform';
import { BatchConsumer, BatchConsumerOptions, IncomingBatch } from './messaging';

export type KafkaLog = (level: 'error' | 'warn' | 'info', message: string, extra?: Record<string, unknown>) => void;

/** kafkajs's consumer behind the BatchConsumer port, offsets stored with the data (kafka-messaging.ts makes it). */
export class OffsetStoringConsumer implements BatchConsumer {
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
    private readonly log?: KafkaLog,
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
