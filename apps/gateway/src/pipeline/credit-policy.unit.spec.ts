import { CreditReservations } from '../clients/metering-client';
import { EventualCredits } from './credit-policy';

/** Metering's balances, answered when the test says so, counting the calls. */
class SlowMetering implements CreditReservations {
  calls = 0;
  private waiting: Array<{ resolve: (n: number) => void; reject: (e: Error) => void }> = [];

  balance(): Promise<number> {
    this.calls++;
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  answer(balance: number): void {
    for (const w of this.waiting.splice(0)) w.resolve(balance);
  }

  fail(): void {
    for (const w of this.waiting.splice(0)) w.reject(new Error('metering is down'));
  }

  reserve(): never {
    throw new Error('eventual mode never holds');
  }

  release(): Promise<void> {
    return Promise.resolve();
  }

  endLease(): Promise<number> {
    return Promise.resolve(0);
  }

  close(): void {}
}

describe('eventual credits: the balance cache', () => {
  let now = 1_000_000;
  const clock = { now: () => now };
  const call = { orgId: 'acme', profile: 'trackyard', method: 'POST', route: '/search', nowMs: now };

  it('asks metering once for the calls that find an org stale together, and spends each admitted call', async () => {
    const metering = new SlowMetering();
    const credits = new EventualCredits(metering, clock);
    const holds = Array.from({ length: 20 }, () => credits.hold(call, { kind: 'fixed', credits: 1 }));
    expect(metering.calls).toBe(1);
    metering.answer(5);
    const outcomes = await Promise.all(holds);
    // Waiters resume one by one: concurrent ones may see the same balance (eventual mode's documented overdraw),
    // but every admitted call is spent from it.
    expect(outcomes.filter((o) => o.granted).length).toBeGreaterThanOrEqual(5);
    expect(await credits.balance('acme')).toBe(5 - outcomes.filter((o) => o.granted).length);
    expect(metering.calls).toBe(1);
  });

  it('asks again once the balance is older than a second, and after a failed fetch', async () => {
    const metering = new SlowMetering();
    const credits = new EventualCredits(metering, clock);
    const first = credits.balance('acme');
    metering.fail();
    await expect(first).rejects.toThrow('metering is down');
    const second = credits.balance('acme');
    expect(metering.calls).toBe(2);
    metering.answer(7);
    expect(await second).toBe(7);
    now += 999;
    expect(await credits.balance('acme')).toBe(7);
    expect(metering.calls).toBe(2);
    now += 2;
    const third = credits.balance('acme');
    expect(metering.calls).toBe(3);
    metering.answer(6);
    expect(await third).toBe(6);
  });
});
