import { Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Messaging } from '@tollgate/messaging';
import { holdsKeptPastTimeout } from '@tollgate/platform';
import { storedOffsets } from '@tollgate/ledger';
import { ConsumerProgress } from './consumer-progress';
import { ReservationService } from './reservation.service';

export interface HoldSweeperOptions {
  groupId: string;
  topic: string;
  /**
   * The longest a gateway takes from a granted Reserve to Kafka's acknowledgement of the call's event (the
   * upstream's timeout, then the publish with its retries). An event of a hold taken at `held_at` is in the log
   * by `held_at + publishWindowMs`, or never.
   */
  publishWindowMs: number;
  /** See ConsumerProgress. */
  remapGraceMs?: number;
  /** The clock `expires_at` was stamped with (ReservationService's). */
  clock?: () => number;
}

/**
 * Releases holds whose event never came, and only those (SPEC §4: "a hold is released by time only once the
 * event that would settle it can no longer arrive unseen"). A hold is released when both:
 * 1. its `expires_at` (taken + the profile's reservation_timeout_seconds) has passed, and
 * 2. the consumer has read every event published on its org's partition up to `held_at + publishWindowMs`
 *    (a lease: `held_at + lease_ms + publishWindowMs`, its gateway draws from it for lease_ms):
 *    its stored offset (consumer_offsets, committed with the ledger) has reached the end offset the partition
 *    had at some sweep's snapshot taken after that instant (ConsumerProgress).
 * A stalled consumer therefore keeps every hold of its partitions: no credits come back to be reserved again
 * and later charged as debt. Once it catches up, a hold its events did not settle is released at the next sweep.
 * A late event of a released hold is still charged, without a hold; by (2) that needs an event published
 * outside the publish window.
 * `held_at` and the snapshots' instants are both read from the database's clock, so gateway and metering clocks
 * play no part in (2).
 */
export class HoldSweeper {
  private readonly log = new Logger('reservations');
  private readonly progress: ConsumerProgress;
  private readonly clock: () => number;
  private running = false;
  private lastWarned = 0;

  constructor(
    private readonly ds: DataSource,
    private readonly reservations: ReservationService,
    private readonly broker: Pick<Messaging, 'endOffsets' | 'partitionOf'>,
    private readonly opts: HoldSweeperOptions,
  ) {
    this.progress = new ConsumerProgress(opts.remapGraceMs);
    this.clock = opts.clock ?? Date.now;
  }

  /** One sweep; a call while one runs does nothing. Returns the holds released and those kept past their timeout. */
  async sweep(pageSize = 500, maxPages = 10): Promise<{ released: number; kept: number }> {
    if (this.running) return { released: 0, kept: 0 };
    this.running = true;
    try {
      return await this.sweepOnce(pageSize, maxPages);
    } finally {
      this.running = false;
    }
  }

  private async sweepOnce(pageSize: number, maxPages: number): Promise<{ released: number; kept: number }> {
    const { groupId, topic, publishWindowMs } = this.opts;
    // The instant first, then the end offsets: every message acknowledged before `at` is below them.
    const [{ at }] = (await this.ds.query(`SELECT clock_timestamp() AS at`)) as [{ at: Date }];
    const ends = await this.broker.endOffsets(topic);
    this.progress.record({ at: at.getTime(), ends });
    const stored = await storedOffsets(this.ds.manager, groupId, topic, [...ends.keys()]);
    const horizons = this.progress.horizons(new Map([...stored].map(([p, o]) => [p, BigInt(o)])));
    if (horizons.partitions === 0) return { released: 0, kept: 0 };

    const now = new Date(this.clock()).toISOString();
    let released = 0;
    let kept = 0;
    const lagging = new Set<number>();
    // Keyset paging by (expires_at, org_id, id): a reservation id is unique within its org only.
    let after: { expiresAt: Date; orgId: string; id: string } | null = null;
    for (let page = 0; page < maxPages; page++) {
      const rows: Array<{ id: string; org_id: string; held_at: Date; expires_at: Date; lease_ms: number }> = await this.ds.query(
        `SELECT id, org_id, held_at, expires_at, lease_ms FROM reservations
          WHERE status = 'held' AND expires_at < $1
            AND ($2::timestamptz IS NULL OR (expires_at, org_id, id) > ($2::timestamptz, $3::text, $4::text))
          ORDER BY expires_at, org_id, id LIMIT $5`,
        [now, after?.expiresAt.toISOString() ?? null, after?.orgId ?? '', after?.id ?? '', pageSize],
      );
      // A page's due reservations are released together: the service group-commits them (one transaction a batch).
      const due: Array<Promise<boolean>> = [];
      for (const r of rows) {
        const partition = this.broker.partitionOf(r.org_id, horizons.partitions);
        // held_at has microseconds, a Date keeps milliseconds: +1 rounds it up rather than down. A lease's calls are
        // taken up to lease_ms after it was granted (the gateway measures that from before it asked), each event
        // published within the window after its call.
        const heldAt = r.held_at.getTime() + 1;
        const lastCallAt = heldAt + Number(r.lease_ms);
        const settledBefore = horizons.settledBefore(partition, heldAt);
        if (settledBefore !== null && lastCallAt + publishWindowMs < settledBefore) {
          due.push(this.reservations.release(r.id, r.org_id, 'expired'));
        } else {
          kept++;
          lagging.add(partition);
        }
      }
      for (const closed of await Promise.all(due)) if (closed) released++;
      const last = rows[rows.length - 1];
      if (!last || rows.length < pageSize) break;
      after = { expiresAt: last.expires_at, orgId: last.org_id, id: last.id };
    }

    holdsKeptPastTimeout.set(kept);
    if (released > 0) this.log.log({ msg: 'released expired reservations', count: released });
    if (kept > 0 && Date.now() - this.lastWarned > 60_000) {
      this.lastWarned = Date.now();
      this.log.warn({
        msg: 'reservations past their timeout are kept: the consumer has not read every event that could settle them',
        count: kept,
        partitions: [...lagging].sort((a, b) => a - b),
      });
    }
    return { released, kept };
  }
}
