import { Clock } from '@tollgate/rate-limit';
import { CreditReservations } from '../clients/metering-client';

/** What a paid call asks of the credit policy: who pays, for which route, when. */
export interface PaidCall {
  orgId: string;
  profile: string;
  method: string;
  /** The profile's route template. */
  route: string;
  nowMs: number;
}

/** The credits a call needs: a fixed price, or the entities its upstream answer returned (priced by metering). */
export type Need = { kind: 'fixed'; credits: number } | { kind: 'entities'; ids: string[] };

export type HoldOutcome =
  | { granted: true; reservationId: string | null; held: number; balance: number }
  | { granted: false; requested: number; shortfall: number; balance: number | null };

/**
 * How a gateway makes sure a call is paid for. Picked once at start from the profile's `credits.enforcement`:
 * strict holds credits with metering before the answer; eventual trusts the last known balance.
 */
export interface CreditPolicy {
  /** Holds (or checks) the call's credits. A refused call gets 402 and is never forwarded or answered with data. */
  hold(call: PaidCall, need: Need, reservationId: string): Promise<HoldOutcome>;
  /**
   * Gives a hold back because the call will not be answered with data (upstream failed, client gone, the event
   * could not be recorded). Metering charges nothing for a call whose hold the gateway gave back.
   * Resolves false when the give-back could not be made now (settlement then releases it).
   */
  giveBack(orgId: string, reservationId: string | null, credits: number): Promise<boolean>;
  /** The org's balance as last known (at most 1 s old): the credits header of answers that held nothing. */
  balance(orgId: string): Promise<number>;
  /** Gives back what the policy holds for calls not yet made (leases), at shutdown. */
  close?(): Promise<void>;
}

/**
 * The last balance a gateway saw per org, with what it admitted since (eventual mode spends it locally). One fetch
 * per org at a time: the calls that find the balance stale while it is being fetched wait for that fetch instead of
 * each asking metering.
 */
export class BalanceCache {
  private readonly seen = new Map<string, { balance: number; at: number }>();
  private readonly fetching = new Map<string, Promise<number>>();

  constructor(private readonly clock: Clock, private readonly fetch: (orgId: string) => Promise<number>, private readonly maxAgeMs = 1000) {}

  remember(orgId: string, balance: number): void {
    this.seen.set(orgId, { balance, at: this.clock.now() });
  }

  /** The balance last seen, however old, without asking metering. */
  peek(orgId: string): number | null {
    return this.seen.get(orgId)?.balance ?? null;
  }

  spend(orgId: string, credits: number): void {
    const hit = this.seen.get(orgId);
    if (hit) hit.balance -= credits;
  }

  async get(orgId: string): Promise<number> {
    const hit = this.seen.get(orgId);
    if (hit && this.clock.now() - hit.at < this.maxAgeMs) return hit.balance;
    let pending = this.fetching.get(orgId);
    if (!pending) {
      pending = this.fetch(orgId).then(
        (balance) => {
          this.fetching.delete(orgId);
          this.remember(orgId, balance);
          return balance;
        },
        (e: unknown) => {
          this.fetching.delete(orgId);
          throw e;
        },
      );
      this.fetching.set(orgId, pending);
    }
    await pending;
    // What this gateway admitted while the fetch was out is spent from the fetched balance too.
    return this.seen.get(orgId)?.balance ?? pending;
  }
}

/**
 * Strict: every paid call holds its credits with metering (one short transaction there, group-committed with
 * the other gateways' holds) before any data goes out. No concurrency can overdraw.
 */
export class StrictCredits implements CreditPolicy {
  private readonly cache: BalanceCache;

  constructor(private readonly metering: CreditReservations, clock: Clock) {
    this.cache = new BalanceCache(clock, (orgId) => metering.balance(orgId));
  }

  hold(call: PaidCall, need: Need, reservationId: string): Promise<HoldOutcome> {
    return holdPerCall(this.metering, this.cache, call, need, reservationId);
  }

  async giveBack(orgId: string, reservationId: string | null, credits: number): Promise<boolean> {
    if (!reservationId) return true;
    const released = await this.metering.release(reservationId, orgId).then(() => true, () => false);
    if (released) this.cache.spend(orgId, -credits);
    return released;
  }

  balance(orgId: string): Promise<number> {
    return this.cache.get(orgId);
  }
}

/**
 * One call's credits held at metering (metering prices it: a fixed cost, or the entities new to the org), all or
 * nothing; the balance it answers is remembered. `balance` in the outcome is the org's balance at metering after it.
 */
export async function holdPerCall(metering: CreditReservations, cache: BalanceCache, call: PaidCall, need: Need, reservationId: string): Promise<HoldOutcome> {
  const r = await metering.reserve({
    reservationId,
    orgId: call.orgId,
    profile: call.profile,
    method: call.method,
    route: call.route,
    entities: need.kind === 'entities' ? need.ids : [],
    occurredAt: new Date(call.nowMs).toISOString(),
  });
  cache.remember(call.orgId, r.balance);
  if (!r.granted) return { granted: false, requested: r.requested, shortfall: r.shortfall, balance: r.balance };
  return { granted: true, reservationId: r.requested > 0 ? reservationId : null, held: r.requested, balance: r.balance };
}

/**
 * Eventual: no round trip on the paid path. A call is admitted when the org's last known balance (at most 1 s
 * old, less what this gateway admitted since) covers it; metering charges it when its event arrives. The
 * overdraw bound is in the README ("How money moves").
 */
export class EventualCredits implements CreditPolicy {
  private readonly cache: BalanceCache;

  constructor(metering: CreditReservations, clock: Clock) {
    this.cache = new BalanceCache(clock, (orgId) => metering.balance(orgId));
  }

  async hold(call: PaidCall, need: Need): Promise<HoldOutcome> {
    const balance = await this.cache.get(call.orgId);
    // Per-entity calls are priced by metering (re-access is free), so any credit left admits them.
    const needed = need.kind === 'fixed' ? need.credits : 1;
    const spends = need.kind === 'fixed' ? need.credits : need.ids.length;
    if (balance < needed) {
      const requested = need.kind === 'fixed' ? need.credits : need.ids.length;
      return { granted: false, requested, shortfall: requested - Math.max(0, balance), balance };
    }
    this.cache.spend(call.orgId, spends);
    return { granted: true, reservationId: null, held: spends, balance: balance - (need.kind === 'fixed' ? spends : 0) };
  }

  async giveBack(orgId: string, _reservationId: string | null, credits: number): Promise<boolean> {
    this.cache.spend(orgId, -credits);
    return true;
  }

  balance(orgId: string): Promise<number> {
    return this.cache.get(orgId);
  }
}
