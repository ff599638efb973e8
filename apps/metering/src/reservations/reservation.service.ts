import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Batcher } from '@tollgate/platform';
import { Allocation, LedgerEntryDraft, leaseSlice, release } from '@tollgate/billing';
import { MaxClockSkewMs } from '@tollgate/contracts';
import { appendEntries, closeReservations, loadAccounts, optimisticConflict, ProfileCatalog, ReservationRef, reservationKey, saveAccounts } from '@tollgate/ledger';
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
  private readonly giveBacks: Batcher<GiveBack, GivenBack>;

  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    private readonly clock: () => number = Date.now,
    maxBatch = 256,
  ) {
    this.holds = new Batcher((cmds, settle) => this.decide(cmds, settle), { maxItems: maxBatch });
    this.giveBacks = new Batcher((cmds, settle) => this.giveBackBatch(cmds, settle), { maxItems: maxBatch });
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
    const outcomes = await batchOrEachAlone(cmds, (batch) => this.write(batch), settle);
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

  /** The org's spendable balance (holds and leases are entries that already took it off), or null: unknown org. */
  async balance(orgId: string): Promise<number | null> {
    return (await this.balances([orgId])).get(orgId) ?? null;
  }

  /** `balance` of several orgs in one read; an unknown org is absent from the map. */
  async balances(orgIds: readonly string[]): Promise<Map<string, number>> {
    const rows: Array<{ org_id: string; balance: string }> = await this.ds.query(`SELECT org_id, balance FROM accounts WHERE org_id = ANY($1::text[])`, [orgIds]);
    return new Map(rows.map((r) => [r.org_id, Number(r.balance)]));
  }

  /**
   * Gives a hold back now (the gateway's cancel, or HoldSweeper once the hold can no longer be settled). Returns
   * false when it was not held (unknown, settled or already released). A lease gives back what its calls did not
   * spend and its gateway did not return already (leaseSlice), and closes.
   */
  async release(reservationId: string, orgId: string, status: 'released' | 'expired' = 'released'): Promise<boolean> {
    return (await this.giveBacks.add({ kind: 'release', id: reservationId, orgId, status })).closed;
  }

  /**
   * A gateway stopped drawing from a lease, having drawn `drawn` of its credits for calls: the rest comes back to
   * the balance now (`release` entries naming the lease, from the back of its allocation: see leaseSlice). What it
   * drew stays held for the calls' events; the sweeper gives back what they do not spend. Returns the credits
   * given back (0 for an unknown, closed or already ended lease). Serialised with the consumer's charges to the
   * lease by the org's account lock.
   */
  async endLease(leaseId: string, orgId: string, drawn: number): Promise<number> {
    return (await this.giveBacks.add({ kind: 'end', id: leaseId, orgId, drawn })).given;
  }

  /**
   * One batch of give-backs, group-committed like holds: the gateways' EndLease calls (one per lease, every few
   * seconds per org and gateway) and the sweeper's releases (a page at a time) each cost one transaction per batch
   * instead of one each. Should the batch fail, each is tried alone, as holds are.
   */
  private giveBackBatch(cmds: GiveBack[], settle: (i: number, o: GivenBack | Error) => void): Promise<Array<GivenBack | Error>> {
    return batchOrEachAlone(cmds, (batch) => this.ds.transaction((m) => this.giveBackIn(m, batch)), settle);
  }

  /**
   * Under the orgs' account locks (taken in org order, as every writer does) and the reservations' row locks, each
   * give-back is decided in arrival order against the state the ones before it left (an EndLease and the lease's
   * release in one batch: the release gives back only what the EndLease did not); then one statement per table.
   */
  private async giveBackIn(m: EntityManager, cmds: GiveBack[]): Promise<GivenBack[]> {
    const accounts = new Map([...(await loadAccounts(m, [...new Set(cmds.map((c) => c.orgId))], 'lock')).accounts].map(([org, l]) => [org, l.account]));
    const rows: Array<{ org_id: string; id: string; allocation: Allocation[]; kind: 'hold' | 'lease'; credits: string; spent: string; returned: string }> = await m.query(
      `SELECT org_id, id, allocation, kind, credits, spent, returned FROM reservations
        WHERE (org_id, id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND status = 'held'
        ORDER BY org_id, id FOR UPDATE`,
      [cmds.map((c) => c.orgId), cmds.map((c) => c.id)],
    );
    const held = new Map(rows.map((r) => [reservationKey(r.org_id, r.id), { ...r, credits: Number(r.credits), spent: Number(r.spent), returned: Number(r.returned), open: true }]));
    const entries: LedgerEntryDraft[] = [];
    const changed = new Set<string>();
    const closed: Record<'released' | 'expired', ReservationRef[]> = { released: [], expired: [] };
    const returned = new Map<string, { orgId: string; id: string; credits: number }>();
    const now = this.clock();
    const outcomes = cmds.map((cmd): GivenBack => {
      const account = accounts.get(cmd.orgId);
      const row = held.get(reservationKey(cmd.orgId, cmd.id));
      if (!account || !row?.open) return { closed: false, given: 0 };
      const isLease = row.kind === 'lease';
      let allocation: Allocation[];
      let cause: string;
      let given: number;
      if (cmd.kind === 'end') {
        if (!isLease) return { closed: false, given: 0 };
        const kept = Math.max(cmd.drawn, row.spent);
        given = row.credits - row.returned - kept;
        if (given <= 0) return { closed: false, given: 0 };
        allocation = leaseSlice(row.allocation, kept, row.credits - row.returned);
        cause = `lease:${cmd.id}:returned`;
        row.returned += given;
        const key = reservationKey(cmd.orgId, cmd.id);
        returned.set(key, { orgId: cmd.orgId, id: cmd.id, credits: (returned.get(key)?.credits ?? 0) + given });
      } else {
        allocation = isLease ? leaseSlice(row.allocation, row.spent, row.credits - row.returned) : row.allocation;
        cause = isLease ? `lease:${cmd.id}:${cmd.status}` : `reservation:${cmd.id}:${cmd.status}`;
        given = allocation.reduce((sum, a) => sum + a.credits, 0);
        row.open = false;
        closed[cmd.status].push({ orgId: cmd.orgId, id: cmd.id });
      }
      // The clock only dates the entries: a release does not roll the account's month (see libs/billing).
      const detail = isLease ? (cmd.kind === 'end' ? { lease_id: cmd.id, drawn: cmd.drawn } : { lease_id: cmd.id }) : undefined;
      const decided = release(account, cmd.id, allocation, now, cause, detail);
      entries.push(...decided.entries);
      accounts.set(cmd.orgId, decided.account);
      changed.add(cmd.orgId);
      return { closed: cmd.kind === 'release', given };
    });
    await appendEntries(m, entries);
    await saveAccounts(m, [...changed].map((org) => accounts.get(org)!));
    for (const status of ['released', 'expired'] as const) {
      if (closed[status].length > 0) await closeReservations(m, closed[status], status, closed[status].map(() => (status === 'expired' ? 'timeout' : 'gateway')));
    }
    if (returned.size > 0) {
      const r = [...returned.values()];
      await m.query(
        `UPDATE reservations SET returned = reservations.returned + u.credits FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(org_id, id, credits)
          WHERE reservations.org_id = u.org_id AND reservations.id = u.id`,
        [r.map((x) => x.orgId), r.map((x) => x.id), r.map((x) => x.credits)],
      );
    }
    return outcomes;
  }
}

/**
 * Writes a batch in one go; should that fail, each item alone (its own transaction), answered through `settle`
 * as soon as it is decided, so one item's bad data refuses only that item.
 */
async function batchOrEachAlone<T, R>(items: T[], write: (batch: T[]) => Promise<Array<R | Error>>, settle: (i: number, o: R | Error) => void): Promise<Array<R | Error>> {
  try {
    return await write(items);
  } catch (e) {
    if (items.length === 1) return [e as Error];
    const outcomes: Array<R | Error> = [];
    for (const [i, item] of items.entries()) {
      const o = await write([item]).then((r) => r[0]!, (err: Error) => err);
      outcomes.push(o);
      settle(i, o);
    }
    return outcomes;
  }
}

/** A give-back: a hold or lease released (gateway cancel or sweeper), or a lease ended by its gateway (EndLease). */
type GiveBack =
  | { kind: 'release'; id: string; orgId: string; status: 'released' | 'expired' }
  | { kind: 'end'; id: string; orgId: string; drawn: number };

/** `closed`: the reservation was held and is now closed (a release); `given`: the credits that came back. */
interface GivenBack {
  closed: boolean;
  given: number;
}
