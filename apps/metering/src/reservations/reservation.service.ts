import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Batcher } from '@tollgate/platform';
import { Allocation, leaseSlice, release } from '@tollgate/billing';
import { MaxClockSkewMs } from '@tollgate/contracts';
import { appendEntries, closeReservations, lockAccounts, optimisticConflict, ProfileCatalog, saveAccounts } from '@tollgate/ledger';
import { NeedsLocks, ReserveCommand, ReserveOutcome, reserveBatch } from './reservation-batch';

export type { ReserveCommand, ReserveOutcome } from './reservation-batch';
export { UnknownOrgError, UnknownRouteError } from './reservation-batch';

/** The clock skew a reservation may have, as events may (a gateway whose clock is off can't move a month). */
export class ClockSkewError extends Error {}

/** What a ReservationService decided since its tally was last taken (metering's /metrics, see reservations-thread). */
export interface HoldTally {
  /** Group commits by how they were written (optimistic; under locks after losing to a writer; under locks). */
  batches: Record<'optimistic' | 'locked_after_conflict' | 'locked', number>;
  holds: Record<'granted' | 'refused' | 'failed', number>;
}

const emptyTally = (): HoldTally => ({ batches: { optimistic: 0, locked_after_conflict: 0, locked: 0 }, holds: { granted: 0, refused: 0, failed: 0 } });

/**
 * Credit holds for strict enforcement, group-committed: Reserve calls that arrive while a batch is being written
 * wait for it, then go together in the next one (one transaction, one commit; see reserveBatch). The calls that
 * arrive in one turn of the event loop go in one batch (the first batch starts on setImmediate, once every gRPC
 * stream the loop found ready has been read). An idle metering adds no delay; a busy one amortises the round trips
 * and the commit over every hold of the batch. One batch is written at a time (a Batcher with one flush in flight).
 * Holds of one org are decided one after another under its row lock, so concurrent calls can never together
 * overdraw a balance. A call is answered only after its batch committed (or failed, writing nothing).
 */
export class ReservationService {
  private readonly log = new Logger('reservations');
  private readonly holds: Batcher<ReserveCommand, ReserveOutcome>;

  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    private readonly clock: () => number = Date.now,
    maxBatch = 256,
  ) {
    this.holds = new Batcher((cmds, settle) => this.decide(cmds, settle), { maxItems: maxBatch });
  }

  private tally = emptyTally();

  /** What was decided since the last call, and a fresh tally. */
  takeTally(): HoldTally {
    const taken = this.tally;
    this.tally = emptyTally();
    return taken;
  }

  reserve(cmd: ReserveCommand): Promise<ReserveOutcome> {
    const skew = cmd.occurredAt - this.clock();
    if (Math.abs(skew) > MaxClockSkewMs) {
      return Promise.reject(new ClockSkewError(`occurred_at ${new Date(cmd.occurredAt).toISOString()} is more than 5 minutes ${skew > 0 ? 'ahead of' : 'behind'} metering's clock`));
    }
    return this.holds.add(cmd);
  }

  /**
   * One batch's outcomes, in order. One command's bad data must not refuse the others: when the batch fails, each
   * command is tried alone (its own transaction), and answered as soon as it is decided.
   */
  private async decide(cmds: ReserveCommand[], settle: (i: number, o: ReserveOutcome | Error) => void): Promise<Array<ReserveOutcome | Error>> {
    let outcomes: Array<ReserveOutcome | Error>;
    try {
      outcomes = await this.write(cmds);
    } catch (e) {
      if (cmds.length === 1) outcomes = [e as Error];
      else {
        outcomes = [];
        for (const [i, cmd] of cmds.entries()) {
          const o = await this.write([cmd]).then((r) => r[0]!, (err: Error) => err);
          outcomes.push(o);
          settle(i, o);
        }
      }
    }
    for (const o of outcomes) this.tally.holds[o instanceof Error ? 'failed' : o.granted ? 'granted' : 'refused']++;
    return outcomes;
  }

  /**
   * Optimistically first (two round trips: read, then one guarded statement that is its own transaction), and
   * under row locks when that lost to a concurrent writer or can't be decided without them (reserveBatch).
   */
  private async write(cmds: ReserveCommand[]): Promise<Array<ReserveOutcome | Error>> {
    const expiresAt = (profile: string, leaseMs: number) => this.clock() + (leaseMs > 0 ? leaseMs : (this.catalog.get(profile)?.credits.reservation_timeout_seconds ?? 120) * 1000);
    try {
      const outcomes = await reserveBatch(this.ds.manager, this.catalog, cmds, expiresAt, true);
      this.tally.batches.optimistic++;
      return outcomes;
    } catch (e) {
      if (!(e instanceof NeedsLocks) && !optimisticConflict(e)) throw e;
      this.tally.batches[e instanceof NeedsLocks ? 'locked' : 'locked_after_conflict']++;
    }
    // PostgreSQL's default isolation (READ COMMITTED) is what this needs: the row locks serialise each org.
    return this.ds.transaction((m) => reserveBatch(m, this.catalog, cmds, expiresAt));
  }

  async balance(orgId: string): Promise<number | null> {
    const rows: Array<{ balance: string }> = await this.ds.query(`SELECT balance FROM accounts WHERE org_id = $1`, [orgId]);
    return rows[0] ? Number(rows[0].balance) : null;
  }

  /**
   * Gives a hold back now (the gateway's cancel, or HoldSweeper once the hold can no longer be settled). Returns
   * false when it was not held (unknown, settled or already released).
   */
  async release(reservationId: string, orgId: string, status: 'released' | 'expired' = 'released'): Promise<boolean> {
    return this.ds.transaction((m) => this.releaseIn(m, reservationId, orgId, status));
  }

  private async releaseIn(m: EntityManager, reservationId: string, orgId: string, status: 'released' | 'expired'): Promise<boolean> {
    const locked = (await lockAccounts(m, [orgId])).get(orgId);
    if (!locked) return false;
    const rows: Array<{ allocation: Allocation[]; kind: 'hold' | 'lease'; credits: string; spent: string; returned: string }> = await m.query(
      `SELECT allocation, kind, credits, spent, returned FROM reservations WHERE id = $1 AND org_id = $2 AND status = 'held' FOR UPDATE`,
      [reservationId, orgId],
    );
    const row = rows[0];
    if (!row) return false;
    // A lease gives back what its calls did not spend and its gateway did not return already (leaseSlice).
    const isLease = row.kind === 'lease';
    const allocation = isLease ? leaseSlice(row.allocation, Number(row.spent), Number(row.credits) - Number(row.returned)) : row.allocation;
    const cause = isLease ? `lease:${reservationId}:${status}` : `reservation:${reservationId}:${status}`;
    // The clock only dates the entries: a release does not roll the account's month (see libs/billing).
    const decided = release(locked.account, reservationId, allocation, this.clock(), cause, isLease ? { lease_id: reservationId } : undefined);
    await appendEntries(m, decided.entries);
    await saveAccounts(m, [decided.account]);
    await closeReservations(m, [{ orgId, id: reservationId }], status, [status === 'expired' ? 'timeout' : 'gateway']);
    return true;
  }

  /**
   * A gateway stopped drawing from a lease, having drawn `drawn` of its credits for calls: the rest comes back to
   * the balance now (`release` entries naming the lease, from the back of its allocation: see leaseSlice). What it
   * drew stays held for the calls' events; the sweeper gives back what they do not spend. Returns the credits
   * given back (0 for an unknown, closed or already ended lease). Serialised with the consumer's charges to the
   * lease by the org's account lock.
   */
  async endLease(leaseId: string, orgId: string, drawn: number): Promise<number> {
    return this.ds.transaction(async (m) => {
      const locked = (await lockAccounts(m, [orgId])).get(orgId);
      if (!locked) return 0;
      const rows: Array<{ allocation: Allocation[]; credits: string; spent: string; returned: string }> = await m.query(
        `SELECT allocation, credits, spent, returned FROM reservations
          WHERE id = $1 AND org_id = $2 AND status = 'held' AND kind = 'lease' FOR UPDATE`,
        [leaseId, orgId],
      );
      const row = rows[0];
      if (!row) return 0;
      const credits = Number(row.credits);
      const returned = Number(row.returned);
      const kept = Math.max(drawn, Number(row.spent));
      const give = credits - returned - kept;
      if (give <= 0) return 0;
      const allocation = leaseSlice(row.allocation, kept, credits - returned);
      const decided = release(locked.account, leaseId, allocation, this.clock(), `lease:${leaseId}:returned`, { lease_id: leaseId, drawn });
      await appendEntries(m, decided.entries);
      await saveAccounts(m, [decided.account]);
      await m.query(`UPDATE reservations SET returned = returned + $3 WHERE id = $1 AND org_id = $2`, [leaseId, orgId, give]);
      return give;
    });
  }
}
