/**
 * How far the ledger consumer has certainly read, in time: the sweeper's evidence that the event which would
 * settle a hold can no longer arrive unseen (SPEC §4).
 *
 * Each sweep records a snapshot: an instant `at`, then the topic's end offsets read after it, so every message
 * acknowledged before `at` lies below them. Once the consumer's stored offset of a partition reaches a
 * snapshot's end offset, every event published on that partition before the snapshot's `at` has been metered
 * (or dead-lettered). A partition's horizon is the latest such `at`. Pure: the caller reads the clock, the
 * broker and the database.
 */
export interface EndOffsetsSnapshot {
  at: number;
  ends: ReadonlyMap<number, bigint>;
}

export class ConsumerProgress {
  private snapshots: EndOffsetsSnapshot[] = [];
  /** Holds taken before this instant may have their events on a partition of another partition count. */
  private perPartitionFrom = Number.POSITIVE_INFINITY;

  /**
   * @param remapGraceMs how long after the partition count is first seen (start-up) or seen to change producers
   *   may still key with the old count (kafkajs refreshes topic metadata every 5 minutes); holds taken before
   *   that wait for every partition, not just their org's.
   * @param keep most snapshots kept while some partition reaches none of them (one per sweep); dropping the
   *   oldest only makes horizons earlier, never later.
   */
  constructor(
    private readonly remapGraceMs = 5 * 60_000,
    private readonly keep = 2000,
  ) {}

  record(snapshot: EndOffsetsSnapshot): void {
    const last = this.snapshots[this.snapshots.length - 1];
    if (last && snapshot.at < last.at) throw new RangeError(`snapshots must be recorded in time order (${snapshot.at} < ${last.at})`);
    if (!last || last.ends.size !== snapshot.ends.size) this.perPartitionFrom = snapshot.at + this.remapGraceMs;
    this.snapshots.push(snapshot);
    if (this.snapshots.length > this.keep) this.snapshots.splice(0, this.snapshots.length - this.keep);
  }

  /**
   * The horizons given the consumer's stored offsets now (a partition missing from `stored` was never read).
   * Drops the snapshots that no partition can need again while stored offsets grow. One moves back only to the
   * start of a log that replaced the one it was stored for (the consumer's realign): then it reaches fewer
   * snapshots, and fewer kept snapshots only make horizons earlier, never later, so no hold is released early.
   */
  horizons(stored: ReadonlyMap<number, bigint>): Horizons {
    const latest = this.snapshots[this.snapshots.length - 1];
    const byPartition = new Map<number, number | null>();
    if (!latest) return new Horizons(byPartition, this.perPartitionFrom);
    let oldestNeeded = this.snapshots.length - 1;
    for (const [partition, end] of latest.ends) {
      const read = stored.get(partition) ?? 0n;
      let horizon: number | null = null;
      // An offset past the log's end belongs to another log (the topic was recreated): nothing is known until the
      // consumer moves it to the log's start (at its next assignment or fetch) and reads on from there.
      if (read <= end) {
        for (let i = this.snapshots.length - 1; i >= 0; i--) {
          const e = this.snapshots[i]!.ends.get(partition);
          if (e !== undefined && read >= e) {
            horizon = this.snapshots[i]!.at;
            oldestNeeded = Math.min(oldestNeeded, i);
            break;
          }
        }
      }
      if (horizon === null) oldestNeeded = 0;
      byPartition.set(partition, horizon);
    }
    this.snapshots = this.snapshots.slice(oldestNeeded);
    return new Horizons(byPartition, this.perPartitionFrom);
  }
}

export class Horizons {
  constructor(
    private readonly byPartition: ReadonlyMap<number, number | null>,
    private readonly perPartitionFrom: number,
  ) {}

  get partitions(): number {
    return this.byPartition.size;
  }

  /**
   * The instant before which an event of a call held at `heldAt`, keyed to `partition`, has certainly been read:
   * its partition's horizon, or for a hold taken while the partition count may have been another, the earliest
   * horizon of all partitions. null: not yet.
   */
  settledBefore(partition: number, heldAt: number): number | null {
    if (heldAt >= this.perPartitionFrom) return this.byPartition.get(partition) ?? null;
    let earliest: number | null = null;
    for (const h of this.byPartition.values()) {
      if (h === null) return null;
      if (earliest === null || h < earliest) earliest = h;
    }
    return earliest;
  }
}
