import { Logger } from '@nestjs/common';
import { Messaging } from '@tollgate/messaging';
import { consumerStalledPartitions } from '@tollgate/platform';

/** One assigned partition as a probe saw it: its stored offset (null: none yet) and its log's bounds. */
export interface PartitionPosition {
  partition: number;
  stored: bigint | null;
  start: bigint;
  end: bigint;
}

export interface StalledPartition {
  partition: number;
  /** Where the consumer is (its stored offset, or the log's start when nothing below it can be read). */
  read: bigint;
  end: bigint;
  since: number;
}

/**
 * Whether the ledger consumer is making progress, for readiness: a consumer that is a member of its group may
 * still meter nothing (its stored offsets past a replaced log's end, a batch failing on every retry). A partition
 * is stalled when it has been behind its log's end (or past it) with the same stored offset for `stallMs`. Any
 * move of the offset restarts the clock, and a partition at its log's end is never stalled, so an idle consumer,
 * one catching up, a start-up and a rebalance (shorter than `stallMs`) stay ready. Pure: the caller reads the
 * clock, the store and the broker.
 */
export class ConsumerStall {
  private readonly behind = new Map<number, { read: bigint; end: bigint; since: number }>();

  constructor(private readonly stallMs: number) {}

  observe(now: number, positions: readonly PartitionPosition[]): void {
    const seen = new Set(positions.map((p) => p.partition));
    for (const partition of [...this.behind.keys()]) if (!seen.has(partition)) this.behind.delete(partition);
    for (const p of positions) {
      // Nothing below the log's start can be read: a partition never read, or read up to what retention has since removed, is at its start.
      const read = p.stored === null || p.stored < p.start ? p.start : p.stored;
      if (read === p.end) {
        this.behind.delete(p.partition);
        continue;
      }
      const was = this.behind.get(p.partition);
      this.behind.set(p.partition, { read, end: p.end, since: was && was.read === read ? was.since : now });
    }
  }

  stalled(now: number): StalledPartition[] {
    return [...this.behind]
      .filter(([, b]) => now - b.since >= this.stallMs)
      .map(([partition, b]) => ({ partition, ...b }))
      .sort((a, b) => a.partition - b.partition);
  }
}

export interface ConsumerStallWatchOptions {
  topic: string;
  stallMs: number;
  /** The partitions assigned to this consumer (BatchConsumer.assignment). */
  assignment: () => number[];
  storedOffsets: (topic: string, partitions: number[]) => Promise<Map<number, string>>;
  broker: Pick<Messaging, 'startOffsets' | 'endOffsets'>;
  clock?: () => number;
}

/** Probes the consumer's partitions into a ConsumerStall; says so (a log line, tollgate_consumer_stalled_partitions) when it stalls. */
export class ConsumerStallWatch {
  private readonly log = new Logger('metering');
  private readonly stall: ConsumerStall;
  private readonly clock: () => number;
  private reported = '';

  constructor(private readonly opts: ConsumerStallWatchOptions) {
    this.stall = new ConsumerStall(opts.stallMs);
    this.clock = opts.clock ?? Date.now;
  }

  async probe(): Promise<void> {
    const { topic } = this.opts;
    const partitions = this.opts.assignment();
    // Out of its group (crashed, rejoining) the consumer is not ready anyway (BatchConsumer.joined); the clocks run
    // on, so that a consumer crashing and rejoining in a loop does not look like one that keeps starting afresh.
    if (partitions.length === 0) return;
    // The stored offsets first, then the log's end: an offset stored before the end was read is at most the end.
    const stored = await this.opts.storedOffsets(topic, partitions);
    const [starts, ends] = await Promise.all([this.opts.broker.startOffsets(topic), this.opts.broker.endOffsets(topic)]);
    const now = this.clock();
    this.stall.observe(
      now,
      partitions.flatMap((partition) => {
        const end = ends.get(partition);
        const s = stored.get(partition);
        return end === undefined ? [] : [{ partition, stored: s === undefined ? null : BigInt(s), start: starts.get(partition) ?? 0n, end }];
      }),
    );
    const stalled = this.stall.stalled(now);
    consumerStalledPartitions.set(stalled.length);
    const report = stalled.map((s) => `${topic}[${s.partition}] at ${s.read} (log end ${s.end}) since ${new Date(s.since).toISOString()}`).join(', ');
    if (report !== this.reported) {
      if (stalled.length > 0) this.log.error({ msg: 'consumer: not making progress; /health/ready reports it', partitions: report });
      else this.log.log({ msg: 'consumer: making progress again' });
      this.reported = report;
    }
  }

  /** No assigned partition stalled, as of the last probe. */
  progressing(): boolean {
    return this.stall.stalled(this.clock()).length === 0;
  }
}
