import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Allocation, priceCall, release, reserve } from '@tollgate/billing';
import { ProfileCatalog, pricingOf } from '../profile-catalog';
import { appendEntries, closeReservations, loadWindows, lockAccounts, pendingEntityHolds, saveAccounts, withPendingCharges } from '../ledger/ledger-store';

export interface ReserveCommand {
  reservationId: string;
  orgId: string;
  profile: string;
  method: string;
  route: string;
  entities: string[];
  occurredAt: number;
}

export interface ReserveOutcome {
  granted: boolean;
  reservationId: string;
  requested: number;
  shortfall: number;
  balance: number;
}

export class UnknownOrgError extends Error {}
export class UnknownRouteError extends Error {}

/**
 * Credit holds for strict enforcement. Each call is one short transaction that locks the org's account row,
 * so concurrent reservations of one org queue on that lock and can never together overdraw the balance.
 */
export class ReservationService {
  private readonly log = new Logger('reservations');

  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    private readonly clock: () => number = Date.now,
  ) {}

  async reserve(cmd: ReserveCommand): Promise<ReserveOutcome> {
    // PostgreSQL's default isolation (READ COMMITTED) is what this needs: the row lock serialises an org.
    return this.ds.transaction(async (m) => {
      const locked = (await lockAccounts(m, [cmd.orgId])).get(cmd.orgId);
      if (!locked) throw new UnknownOrgError(`unknown org "${cmd.orgId}"`);
      const existing: Array<{ credits: string }> = await m.query(`SELECT credits FROM reservations WHERE id = $1 AND org_id = $2`, [cmd.reservationId, cmd.orgId]);
      if (existing[0]) {
        const credits = Number(existing[0].credits);
        return { granted: true, reservationId: cmd.reservationId, requested: credits, shortfall: 0, balance: locked.account.balance };
      }
      const route = this.catalog.route(locked.profile, cmd.method, cmd.route);
      if (!route) throw new UnknownRouteError(`route "${cmd.method} ${cmd.route}" is not in profile "${locked.profile}"`);
      const pricing = pricingOf(route);
      let credits = 0;
      // What the hold pays for: per-entity holds store only the entities they charge, so one entity is paid by
      // at most one held reservation of an org at a time (later ones see it pending, below).
      let payingFor: string[] = [];
      if (pricing.kind === 'fixed') credits = pricing.credits;
      else if (pricing.kind === 'per_entity') {
        const windows = await loadWindows(m, cmd.entities.map(() => cmd.orgId), cmd.entities);
        // A company another held call of this org is paying for (its 2xx went out, its event is on the way) is
        // already paid for: re-fetching it at once is free, not held twice or refused for want of credits.
        const pending = await pendingEntityHolds(m, [cmd.orgId], cmd.entities);
        const paid = withPendingCharges(windows.get(cmd.orgId) ?? new Map(), pending);
        const priced = priceCall(pricing, { statusCode: 200, forwarded: true, entities: cmd.entities }, paid, cmd.occurredAt);
        credits = priced.credits;
        payingFor = priced.chargedEntities;
      }
      const r = reserve(locked.account, cmd.reservationId, credits, cmd.occurredAt);
      if (r.decided.entries.length > 0) {
        await appendEntries(m, r.decided.entries);
        await saveAccounts(m, [r.decided.account]);
      }
      if (r.granted && credits > 0) {
        const profile = this.catalog.get(locked.profile)!;
        await m.query(
          `INSERT INTO reservations (id, org_id, credits, allocation, route, entities, occurred_at, expires_at, status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'held')`,
          [
            cmd.reservationId, cmd.orgId, credits, JSON.stringify(r.allocation), `${cmd.method} ${cmd.route}`, payingFor,
            new Date(cmd.occurredAt).toISOString(),
            new Date(this.clock() + profile.credits.reservation_timeout_seconds * 1000).toISOString(),
          ],
        );
      }
      return { granted: r.granted, reservationId: cmd.reservationId, requested: r.requested, shortfall: r.shortfall, balance: r.decided.account.balance };
    });
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
    const rows: Array<{ allocation: Allocation[] }> = await m.query(
      `SELECT allocation FROM reservations WHERE id = $1 AND org_id = $2 AND status = 'held' FOR UPDATE`,
      [reservationId, orgId],
    );
    if (!rows[0]) return false;
    // The clock only dates the entries: a release does not roll the account's month (see libs/billing).
    const decided = release(locked.account, reservationId, rows[0].allocation, this.clock(), `reservation:${reservationId}:${status}`);
    await appendEntries(m, decided.entries);
    await saveAccounts(m, [decided.account]);
    await closeReservations(m, [reservationId], status, [status === 'expired' ? 'timeout' : 'gateway']);
    return true;
  }
}
