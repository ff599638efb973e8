import { leaseSize } from '@tollgate/billing';
import { ReserveReply, ReserveRequest } from '@tollgate/contracts';
import { CreditReservations } from '../clients/metering-client';
import { LeasedCredits } from './credit-leases';

/**
 * Metering as the gateway sees it, in memory: one org's balance, leases sized by the domain's own `leaseSize` and
 * per-call holds of the route's price, all or nothing. (The real one is exercised by the lease int and e2e tests.)
 */
class MemoryMetering implements CreditReservations {
  reserves: ReserveRequest[] = [];
  ended: Array<{ leaseId: string; drawn: number }> = [];
  leases = new Map<string, { size: number; drawn: number | null }>();
  holds = new Map<string, number>();
  /** Answers wait until the test lets them go (`open`), when set. */
  gate: Promise<void> | null = null;

  constructor(public balanceNow: number, private readonly leaseMs = 5000, private readonly price = 1) {}

  async reserve(req: ReserveRequest): Promise<ReserveReply> {
    this.reserves.push(req);
    if (this.gate) await this.gate;
    if ((req.leaseCredits ?? 0) > 0) {
      const size = leaseSize(this.balanceNow, req.leaseCredits!, req.leaseMinimum ?? 0);
      this.balanceNow -= size;
      if (size > 0) this.leases.set(req.reservationId, { size, drawn: null });
      return { granted: size > 0, reservationId: req.reservationId, requested: size, shortfall: 0, balance: this.balanceNow, leaseCredits: size, leaseMs: size > 0 ? this.leaseMs : 0 };
    }
    if (this.balanceNow < this.price) return { granted: false, reservationId: req.reservationId, requested: this.price, shortfall: this.price - Math.max(0, this.balanceNow), balance: this.balanceNow };
    this.balanceNow -= this.price;
    this.holds.set(req.reservationId, this.price);
    return { granted: true, reservationId: req.reservationId, requested: this.price, shortfall: 0, balance: this.balanceNow };
  }

  async release(reservationId: string): Promise<void> {
    this.balanceNow += this.holds.get(reservationId) ?? 0;
    this.holds.delete(reservationId);
  }

  async endLease(leaseId: string, _orgId: string, drawn: number): Promise<number> {
    this.ended.push({ leaseId, drawn });
    const lease = this.leases.get(leaseId)!;
    lease.drawn = drawn;
    this.balanceNow += lease.size - drawn;
    return lease.size - drawn;
  }

  async balance(): Promise<number> {
    return this.balanceNow;
  }

  close(): void {}

  leaseAsks(): ReserveRequest[] {
    return this.reserves.filter((r) => (r.leaseCredits ?? 0) > 0);
  }
}

describe('strict credits with leases (the gateway side)', () => {
  let mono = 0;
  const wall = { now: () => 1_790_000_000_000 + mono };
  const call = { orgId: 'acme', profile: 'trackyard', method: 'POST', route: '/search', nowMs: wall.now() };
  const fixed = { kind: 'fixed' as const, credits: 1 };
  const policy = (m: MemoryMetering, minimumCalls = 8) => new LeasedCredits(m, wall, { gateway: 'gw-test', monotonic: () => mono, minimumCalls });

  beforeEach(() => {
    mono = 0;
  });

  it('draws calls from one lease without asking metering again, and shows the balance exactly as holds would', async () => {
    const m = new MemoryMetering(500);
    const credits = policy(m, 100);
    const shown: number[] = [];
    for (let i = 0; i < 5; i++) {
      const o = await credits.hold(call, fixed, `r${i}`);
      expect(o.granted).toBe(true);
      if (o.granted) shown.push(o.balance);
    }
    expect(m.leaseAsks()).toHaveLength(1);
    expect(m.reserves).toHaveLength(1); // 5 calls, one round trip
    expect(shown).toEqual([499, 498, 497, 496, 495]);
    expect(await credits.balance('acme')).toBe(495);
  });

  it('calls that find no credits wait for one ask together', async () => {
    const m = new MemoryMetering(10_000);
    let open!: () => void;
    m.gate = new Promise((r) => (open = r));
    const credits = policy(m, 100);
    const calls = Array.from({ length: 6 }, (_, i) => credits.hold(call, fixed, `r${i}`));
    await Promise.resolve();
    open();
    const outcomes = await Promise.all(calls);
    expect(outcomes.every((o) => o.granted)).toBe(true);
    expect(m.leaseAsks()).toHaveLength(1);
    expect(new Set(outcomes.map((o) => (o.granted ? o.reservationId : null))).size).toBe(1);
  });

  it('near a zero balance holds per call: 20 concurrent calls on 5 credits admit exactly 5', async () => {
    const m = new MemoryMetering(5);
    const credits = policy(m);
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => credits.hold(call, fixed, `r${i}`)));
    expect(outcomes.filter((o) => o.granted)).toHaveLength(5);
    expect(m.balanceNow).toBe(0);
    const refused = outcomes.find((o) => !o.granted)!;
    expect(refused).toMatchObject({ granted: false, requested: 1, shortfall: 1 });
  });

  it('gives a failed call back to its lease, and the next call draws it again', async () => {
    const m = new MemoryMetering(500);
    const credits = policy(m);
    const first = await credits.hold(call, fixed, 'r1');
    if (!first.granted) throw new Error('refused');
    expect(await credits.giveBack('acme', first.reservationId, 1)).toBe(true);
    const again = await credits.hold(call, fixed, 'r2');
    expect(again).toMatchObject({ granted: true, balance: 499 });
    expect(m.reserves).toHaveLength(1);
  });

  it('stops drawing at the deadline and ends the lease: what was not drawn comes back at once', async () => {
    jest.useFakeTimers();
    try {
      const m = new MemoryMetering(1000, 5000);
      const credits = policy(m);
      const o = await credits.hold(call, fixed, 'r1');
      if (!o.granted) throw new Error('refused');
      const size = m.leases.get(o.reservationId!)!.size;
      // The deadline is measured from before the ask, less a margin: at 4.8 s of 5 the lease is no longer drawn.
      mono = 4800;
      jest.advanceTimersByTime(4800);
      await Promise.resolve();
      await Promise.resolve();
      expect(m.ended).toEqual([{ leaseId: o.reservationId, drawn: 1 }]);
      expect(m.balanceNow).toBe(1000 - 1);
      const next = await credits.hold(call, fixed, 'r2');
      if (!next.granted) throw new Error('refused');
      expect(next.reservationId).not.toBe(o.reservationId);
      expect(size).toBeGreaterThan(1);
    } finally {
      jest.useRealTimers();
    }
  });

  it('asks for the next lease ahead of need, sized from the last second of demand', async () => {
    const m = new MemoryMetering(1_000_000);
    const credits = policy(m);
    for (let i = 0; i < 40; i++) await credits.hold(call, fixed, `r${i}`);
    await new Promise((r) => setImmediate(r));
    const asks = m.leaseAsks();
    expect(asks.length).toBeGreaterThan(1);
    expect(asks[0]!.leaseCredits).toBe(8); // a quiet org: 8 calls' worth
    expect(asks[asks.length - 1]!.leaseCredits).toBeGreaterThan(8); // then its demand
    await credits.close();
  });

  it('per-entity calls draw one credit per id on the page (metering charges what is new)', async () => {
    const m = new MemoryMetering(500);
    const credits = policy(m);
    const o = await credits.hold(call, { kind: 'entities', ids: ['a', 'b', 'c'] }, 'r1');
    expect(o).toMatchObject({ granted: true, held: 3 });
    expect(m.leaseAsks()[0]!.leaseMinimum).toBe(6);
  });
});
