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

/** A fetch of one org's balance that is out, and what this gateway spent from the org meanwhile. */
interface Fetch {
  promise: Promise<number>;
  /** Credits spent (given back: negative) since the fetch was asked for: taken off the fetched balance. */
  spent: number;
  /** A balance was remembered (a hold's reply) while the fetch was out: it stands, the fetched one is dropped. */
  superseded: boolean;
}

/**
 * The last balance a gateway saw per org, with what it admitted since (eventual mode spends it locally).
 *
 * Refreshed ahead of need: once a balance is `refreshAfterMs` old, the next call asks metering for a new one in the
 * background (a refresh that may linger a few ms to go with other orgs': see GrpcMeteringClient) and goes on with
 * the cached one; a call waits only for a balance older than `maxAgeMs`, or none at all. One fetch per org at a
 * time: the calls that must wait while one is out wait for that one instead of each asking metering.
 *
 * A fetch racing local spends: metering's answer may have been read after some of the calls this gateway admitted
 * since the fetch was asked for, but it can't contain their charges unless their events were metered meanwhile.
 * So every spend (and give-back) made while a fetch is out is counted, and the fetched balance stands less them:
 * exactly what the cached balance would be had the fetch answered at once and each spend come after it. (At worst
 * that counts a call twice, metered and spent: the balance is under-, never over-stated for it.) As before, a call
 * admitted before the fetch was asked for and not yet metered is missing from the fetched balance: the overdraw
 * bound's calls not yet metered (README, "How money moves").
 *
 * Failures: a refresh that fails leaves the cached balance as it is (spent as calls go), and the next call that
 * finds it past `refreshAfterMs` asks again; a call that waits for a fetch that fails gets that error.
 */
export class BalanceCache {
  /** `used`: a call read it since it was fetched (only such balances are refreshed along with another org's). */
  private readonly seen = new Map<string, { balance: number; at: number; used: boolean }>();
  private readonly fetching = new Map<string, Fetch>();
  private readonly refreshAfterMs: number;

  /** `fetch(orgId, ahead)`: `ahead` when no call waits for it (a refresh ahead of need). */
  constructor(
    private readonly clock: Clock,
    private readonly fetch: (orgId: string, ahead: boolean) => Promise<number>,
    private readonly maxAgeMs = 1000,
    refreshAfterMs?: number,
  ) {
    this.refreshAfterMs = Math.min(refreshAfterMs ?? maxAgeMs / 2, maxAgeMs);
  }

  /** A balance metering just answered (a hold's or a lease's reply): it replaces the cached one and any fetch's. */
  remember(orgId: string, balance: number): void {
    this.seen.set(orgId, { balance, at: this.clock.now(), used: false });
    const out = this.fetching.get(orgId);
    if (out) out.superseded = true;
  }

  /** The balance last seen, however old, without asking metering. */
  peek(orgId: string): number | null {
    return this.seen.get(orgId)?.balance ?? null;
  }

  /** Takes `credits` off the org's balance (negative: gives them back), and off the balance being fetched. */
  spend(orgId: string, credits: number): void {
    const hit = this.seen.get(orgId);
    if (hit) hit.balance -= credits;
    const out = this.fetching.get(orgId);
    if (out) out.spent += credits;
  }

  async get(orgId: string): Promise<number> {
    const hit = this.seen.get(orgId);
    if (hit) {
      const age = this.clock.now() - hit.at;
      hit.used = true;
      if (age < this.refreshAfterMs) return hit.balance;
      if (age < this.maxAgeMs) {
        // Young enough to use; old enough to refresh. A refresh that fails leaves this balance (a later call retries).
        if (!this.fetching.has(orgId)) {
          this.refresh(orgId, true).catch(() => undefined);
          this.refreshAlong(orgId);
        }
        return hit.balance;
      }
    }
    const pending = this.fetching.get(orgId)?.promise ?? this.refresh(orgId, false);
    await pending;
    // What this gateway admitted since the fetch was asked for (or since, by the calls that resumed before this one)
    // is spent from the fetched balance too.
    return this.seen.get(orgId)?.balance ?? pending;
  }

  /**
   * Refreshes, with `orgId`'s, every balance in use that is past half the refresh point: they go in the same
   * GetBalances, and their next refreshes fall together too, so a gateway's orgs settle into a few batches per
   * refresh period instead of one call each (orgs refresh at scattered times, which no linger of a few ms gathers).
   * One pass over the orgs per batch started, not per call. Balances no call read since their fetch are left to age.
   */
  private refreshAlong(orgId: string): void {
    const now = this.clock.now();
    for (const [other, e] of this.seen) {
      if (other !== orgId && e.used && now - e.at >= this.refreshAfterMs / 2 && !this.fetching.has(other)) this.refresh(other, true).catch(() => undefined);
    }
  }

  private refresh(orgId: string, ahead: boolean): Promise<number> {
    const out: Fetch = { promise: Promise.resolve(0), spent: 0, superseded: false };
    // Its age counts from the ask, before metering read it (however long the answer took to come back), so "at most
    // maxAgeMs old" holds of metering's read itself: the README's overdraw bound rests on it.
    const askedAt = this.clock.now();
    out.promise = new Promise<number>((resolve) => resolve(this.fetch(orgId, ahead))).then(
      (fetched) => {
        this.fetching.delete(orgId);
        if (out.superseded) return this.seen.get(orgId)?.balance ?? fetched - out.spent;
        this.seen.set(orgId, { balance: fetched - out.spent, at: askedAt, used: false });
        return fetched - out.spent;
      },
      (e: unknown) => {
        this.fetching.delete(orgId);
        throw e;
      },
    );
    this.fetching.set(orgId, out);
    return out.promise;
  }
}

/**
 * Strict: every paid call holds its credits with metering (one short transaction there, group-committed with
 * the other gateways' holds) before any data goes out. No concurrency can overdraw.
 */
export class StrictCredits implements CreditPolicy {
  private readonly cache: BalanceCache;

  constructor(private readonly metering: CreditReservations, clock: Clock) {
    this.cache = new BalanceCache(clock, (orgId, ahead) => metering.balance(orgId, ahead));
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
 * old, less what this gateway admitted since) covers it; metering charges it when its event arrives. The balance
 * is refreshed in the background once it is 0.5 s old, so a call with traffic before it never waits for metering;
 * only one that finds it over 1 s old (a quiet org) or unknown does. The overdraw bound is in the README ("How money
 * moves").
 */
export class EventualCredits implements CreditPolicy {
  private readonly cache: BalanceCache;

  constructor(metering: CreditReservations, clock: Clock) {
    this.cache = new BalanceCache(clock, (orgId, ahead) => metering.balance(orgId, ahead));
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
