import { Clock } from '@tollgate/rate-limit';
import { CreditReservations } from '../clients/metering-client';
import { BalanceCache, CreditPolicy, HoldOutcome, holdPerCall, Need, PaidCall } from './credit-policy';

/** A block of an org's credits this gateway holds at metering and spends call by call (SPEC §4). */
interface Lease {
  id: string;
  size: number;
  /** Credits not drawn yet; `size - left` were drawn for calls (less those given back). */
  left: number;
  /** On this gateway's monotonic clock: no call is drawn from it at or after this instant. */
  deadline: number;
  /** No more draws: its time is up (EndLease is on its way or done). An emptied lease lives on until then. */
  ended: boolean;
  timer: NodeJS.Timeout | null;
}

interface OrgLeases {
  orgId: string;
  /** Oldest first: a call draws from the oldest lease that covers it, so a renewed lease strands nothing. */
  leases: Lease[];
  /** The lease being asked for, which every call that finds no credits waits for. */
  asking: Promise<Lease | null> | null;
  /** Credits asked for by calls in the current and the previous second: the next lease's size. */
  demand: { second: number; now: number; before: number };
  /** After metering refused a lease (too few credits), calls hold per call until then (monotonic ms). */
  perCallUntil: number;
}

export interface LeaseOptions {
  /** Recorded with each lease at metering (the ledger entry's detail). */
  gateway: string;
  /** This gateway's monotonic clock in ms (performance.now by default): lease deadlines don't follow wall-clock jumps. */
  monotonic?: () => number;
  /** A lease is asked for at least this many times the call's price (the first lease of an org, a quiet org). */
  minimumCalls?: number;
  /** Stop drawing this long before metering's draw time is up: the margin for the grant's way back. */
  marginMs?: number;
  /** After a refused lease, hold per call for this long before asking for a lease again. */
  perCallMs?: number;
}

/**
 * Strict credits with leases: no round trip on the paid path while an org's lease covers its calls. A call draws
 * its price (for a per-entity call, one credit per id on the page: an upper bound, metering charges what is new)
 * from the org's oldest live lease; a new lease is asked for ahead of need (half the newest one drawn, or less than
 * a second of its draw time left), sized from the org's demand over the last second; calls that find no credits
 * wait for that one ask. When metering refuses a lease (the org's balance is too low: `leaseSize`), calls hold per
 * call, exactly as `StrictCredits` does, so 20 concurrent calls on 5 credits still admit exactly 5.
 *
 * Exactness (the ledger's side is in metering: reservation-batch, the consumer and HoldSweeper):
 * - a lease is a hold: metering never leases more than the org's balance less every other lease and hold;
 * - a call is drawn only before the lease's deadline, measured on this gateway's monotonic clock from before the
 *   lease was asked for, so it is never later than the draw time metering granted (the sweeper waits that long,
 *   plus the publish window, before it gives back what the lease's events did not spend);
 * - a call that ends without data going out (upstream error, client gone, unpriceable) is given back to the lease
 *   locally, and its event costs nothing; a call whose event could not be recorded is given back too, and should
 *   that event reach Kafka after all, metering charges it on its own (a lease can't take one call back);
 * - at its deadline (or when this gateway stops) a lease is ended: EndLease says how much was drawn and the rest
 *   comes back to the balance at once. A gateway that dies ends nothing: its leases' rest comes back through the
 *   sweeper, once their events can no longer arrive unseen.
 */
export class LeasedCredits implements CreditPolicy {
  private readonly orgs = new Map<string, OrgLeases>();
  private readonly byId = new Map<string, { org: OrgLeases; lease: Lease }>();
  private readonly cache: BalanceCache;
  private readonly now: () => number;
  private readonly minimumCalls: number;
  private readonly marginMs: number;
  private readonly perCallMs: number;
  private nextLease = 0;
  private closing = false;

  constructor(
    private readonly metering: CreditReservations,
    private readonly clock: Clock,
    private readonly opts: LeaseOptions,
  ) {
    // At most 2 s old: every lease granted refreshes it, so an org with traffic rarely needs a GetBalance of its own
    // (measured: a 1 s bound made quiet orgs ask about once per call at 3 calls/s).
    this.cache = new BalanceCache(clock, (orgId, ahead) => metering.balance(orgId, ahead), 2000);
    this.now = opts.monotonic ?? (() => performance.now());
    this.minimumCalls = opts.minimumCalls ?? 8;
    this.marginMs = opts.marginMs ?? 250;
    this.perCallMs = opts.perCallMs ?? 1000;
  }

  async hold(call: PaidCall, need: Need, reservationId: string): Promise<HoldOutcome> {
    const price = need.kind === 'fixed' ? need.credits : need.ids.length;
    const org = this.org(call.orgId);
    this.count(org, price);
    let lease = this.drawable(org, price);
    while (!lease && !this.closing && this.now() >= org.perCallUntil) {
      const asked = await this.ask(org, call, price);
      if (!asked) break;
      lease = this.drawable(org, price);
    }
    if (!lease) return this.holdPerCall(call, need, reservationId);
    lease.left -= price;
    this.renewAhead(org, call, price);
    return { granted: true, reservationId: lease.id, held: price, balance: await this.shown(org) };
  }

  async giveBack(orgId: string, reservationId: string | null, credits: number): Promise<boolean> {
    if (!reservationId) return true;
    const leased = this.byId.get(reservationId);
    if (leased) {
      // An ended lease already told metering what it drew: these credits come back when the sweeper closes it.
      if (!leased.lease.ended) {
        leased.lease.left += credits;
      }
      return true;
    }
    if (!isLeaseId(reservationId)) {
      const released = await this.metering.release(reservationId, orgId).then(() => true, () => false);
      if (released) this.cache.spend(orgId, -credits);
      return released;
    }
    return true; // a lease this gateway forgot (ended over 30 s ago): its rest came back when the sweeper closed it
  }

  async balance(orgId: string): Promise<number> {
    const balance = await this.cache.get(orgId);
    return balance + this.undrawn(this.orgs.get(orgId));
  }

  /** Ends every lease (at shutdown): what was not drawn comes back to the balance now. */
  async close(): Promise<void> {
    this.closing = true;
    const ending: Array<Promise<void>> = [];
    for (const org of this.orgs.values()) for (const lease of org.leases) ending.push(this.end(org, lease));
    await Promise.allSettled(ending);
  }

  // ---- leases ----------------------------------------------------------------------------------------------

  private org(orgId: string): OrgLeases {
    let org = this.orgs.get(orgId);
    if (!org) {
      org = { orgId, leases: [], asking: null, demand: { second: 0, now: 0, before: 0 }, perCallUntil: 0 };
      this.orgs.set(orgId, org);
    }
    return org;
  }

  private count(org: OrgLeases, price: number): void {
    const second = Math.floor(this.now() / 1000);
    const d = org.demand;
    if (second !== d.second) {
      d.before = second === d.second + 1 ? d.now : 0;
      d.now = 0;
      d.second = second;
    }
    d.now += price;
  }

  private drawable(org: OrgLeases, price: number): Lease | null {
    const now = this.now();
    for (const lease of org.leases) if (!lease.ended && lease.left >= price && now < lease.deadline) return lease;
    return null;
  }

  /** Asks for a lease ahead of need when the newest is half drawn or has less than a second left. */
  private renewAhead(org: OrgLeases, call: PaidCall, price: number): void {
    if (org.asking || this.closing) return;
    // The newest live lease, found without allocating (this runs on every paid call).
    let newest: Lease | undefined;
    for (let i = org.leases.length - 1; i >= 0 && !newest; i--) if (!org.leases[i]!.ended) newest = org.leases[i];
    if (newest && newest.left * 2 >= newest.size && newest.deadline - this.now() > 1000) return;
    void this.ask(org, call, price).catch(() => undefined);
  }

  /** One ask per org at a time; resolves with the new lease, or null when metering refused one. */
  private ask(org: OrgLeases, call: PaidCall, price: number): Promise<Lease | null> {
    if (org.asking) return org.asking;
    // The last second or two of the org's demand (this second so far and the one before): a lease renewed at half
    // lasts about a second of steady traffic, and a quiet org still gets `minimumCalls` calls' worth.
    const wanted = Math.max(this.minimumCalls * price, org.demand.now + org.demand.before);
    const startedAt = this.now();
    const id = `lease_${this.opts.gateway.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 60)}_${Date.now().toString(36)}_${(this.nextLease++).toString(36)}`;
    const asking = this.metering
      .reserve({
        reservationId: id,
        orgId: org.orgId,
        profile: call.profile,
        method: call.method,
        route: call.route,
        entities: [],
        occurredAt: new Date(this.clock.now()).toISOString(),
        leaseCredits: wanted,
        leaseMinimum: 2 * price,
        gateway: this.opts.gateway,
      })
      .then((r) => {
        this.cache.remember(org.orgId, r.balance);
        const size = r.granted ? Number(r.leaseCredits ?? 0) : 0;
        const ms = Number(r.leaseMs ?? 0);
        if (size <= 0 || ms <= this.marginMs) {
          org.perCallUntil = this.now() + this.perCallMs;
          return null;
        }
        // The deadline counts from before the ask: the grant happened after startedAt, so no draw is later than
        // metering's own held_at + lease_ms.
        const lease: Lease = { id, size, left: size, deadline: startedAt + ms - this.marginMs, ended: false, timer: null };
        lease.timer = setTimeout(() => void this.end(org, lease), Math.max(0, lease.deadline - this.now()));
        lease.timer.unref();
        org.leases.push(lease);
        this.byId.set(id, { org, lease });
        return lease;
      })
      .finally(() => {
        org.asking = null;
      });
    org.asking = asking;
    return asking;
  }

  /** The lease's time is up (or the gateway stops): no more draws; metering gives back what was not drawn. */
  private async end(org: OrgLeases, lease: Lease): Promise<void> {
    if (lease.ended) return;
    lease.ended = true;
    if (lease.timer) clearTimeout(lease.timer);
    try {
      if (lease.left > 0) {
        const returned = await this.metering.endLease(lease.id, org.orgId, lease.size - lease.left);
        this.cache.spend(org.orgId, -returned);
      }
    } catch {
      // Metering did not answer: the sweeper gives the rest back once the lease's events can no longer arrive.
    } finally {
      org.leases = org.leases.filter((l) => l !== lease);
      setTimeout(() => this.forget(org, lease), 30_000).unref();
    }
  }

  private forget(org: OrgLeases, lease: Lease): void {
    this.byId.delete(lease.id);
    if (org.leases.length === 0 && !org.asking && this.orgs.get(org.orgId) === org && this.now() >= org.perCallUntil) this.orgs.delete(org.orgId);
  }

  /** Credits this gateway holds for the org and has not drawn: spendable, so shown as the org's. */
  private undrawn(org: OrgLeases | undefined): number {
    let sum = 0;
    for (const l of org?.leases ?? []) sum += l.left;
    return sum;
  }

  /**
   * The credits header: the org's balance at metering as last seen (leases and holds taken off) plus what this
   * gateway's leases have not drawn. Exact with one gateway; with several, the others' undrawn leases are missing.
   */
  private async shown(org: OrgLeases): Promise<number> {
    // At most 2 s old (the cache's bound): a top-up or a plan change shows within that.
    const balance = await this.cache.get(org.orgId).catch(() => this.cache.peek(org.orgId) ?? 0);
    return balance + this.undrawn(org);
  }

  // ---- per-call holds (no lease: near a zero balance) --------------------------------------------------------

  private async holdPerCall(call: PaidCall, need: Need, reservationId: string): Promise<HoldOutcome> {
    const held = await holdPerCall(this.metering, this.cache, call, need, reservationId);
    return { ...held, balance: (held.balance ?? 0) + this.undrawn(this.orgs.get(call.orgId)) };
  }
}

/** Lease ids this gateway makes; a per-call hold's id is a uuid. */
function isLeaseId(id: string): boolean {
  return id.startsWith('lease_');
}
