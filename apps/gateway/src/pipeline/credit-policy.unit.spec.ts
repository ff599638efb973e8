import { CreditReservations } from '../clients/metering-client';
import { BalanceCache, EventualCredits } from './credit-policy';

/** Metering's balances, answered when the test says so, counting the calls (and which were refreshes ahead). */
class SlowMetering implements CreditReservations {
  calls = 0;
  ahead = 0;
  private waiting: Array<{ resolve: (n: number) => void; reject: (e: Error) => void }> = [];

  balance(_orgId: string, ahead = false): Promise<number> {
    this.calls++;
    if (ahead) this.ahead++;
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

  it('asks again once the balance is older than a second (waiting for it), and after a failed fetch', async () => {
    const metering = new SlowMetering();
    const credits = new EventualCredits(metering, clock);
    const first = credits.balance('acme');
    metering.fail();
    await expect(first).rejects.toThrow('metering is down');
    const second = credits.balance('acme');
    expect(metering.calls).toBe(2);
    metering.answer(7);
    expect(await second).toBe(7);
    now += 1000;
    const third = settledOrNot(credits.balance('acme'));
    expect(metering.calls).toBe(3);
    expect(metering.ahead).toBe(0);
    await turns();
    expect(third.settled).toBe(false);
    metering.answer(6);
    expect(await third.promise).toBe(6);
  });

  it('refreshes ahead: from half the max age a call starts one background fetch and goes on with the cached balance', async () => {
    const metering = new SlowMetering();
    const credits = new EventualCredits(metering, clock);
    const first = credits.balance('acme');
    metering.answer(10);
    expect(await first).toBe(10);
    now += 499;
    expect(await credits.hold(call, { kind: 'fixed', credits: 1 })).toMatchObject({ granted: true, balance: 9 });
    expect(metering.calls).toBe(1);
    now += 1;
    // Answered without metering answering: the fetch is out in the background, and only one for every call.
    const during = await Promise.all([credits.hold(call, { kind: 'fixed', credits: 1 }), credits.hold(call, { kind: 'fixed', credits: 1 })]);
    expect(during.map((o) => o.granted)).toEqual([true, true]);
    expect(await credits.balance('acme')).toBe(7);
    expect([metering.calls, metering.ahead]).toEqual([2, 1]);
    metering.answer(10);
    await turns();
    // Metering had metered none of them: the two calls admitted since the refresh was asked for stay spent.
    expect(await credits.balance('acme')).toBe(8);
    now += 499;
    expect(await credits.balance('acme')).toBe(8);
    expect(metering.calls).toBe(2);
  });

  it('spends what was admitted and given back while a fetch was out from the fetched balance', async () => {
    const metering = new SlowMetering();
    const cache = new BalanceCache(clock, (orgId, ahead) => metering.balance(orgId, ahead));
    const first = cache.get('acme');
    metering.answer(100);
    expect(await first).toBe(100);
    cache.spend('acme', 5); // admitted before the refresh: its event is (say) metered before metering's read
    now += 600;
    expect(await cache.get('acme')).toBe(95);
    expect(metering.ahead).toBe(1);
    cache.spend('acme', 3);
    cache.spend('acme', 2);
    cache.spend('acme', -2); // given back: the call went out with no data
    expect(await cache.get('acme')).toBe(92);
    metering.answer(95);
    await turns();
    expect(cache.peek('acme')).toBe(92);
    // The refreshed balance is fresh again: spends go on from it, and no fetch is asked for.
    cache.spend('acme', 1);
    expect(await cache.get('acme')).toBe(91);
    expect(metering.calls).toBe(2);
  });

  it('refreshes along with an org the balances in use past half the refresh point, so they go in one batch; not the unread ones', async () => {
    const metering = new SlowMetering();
    const asked: string[] = [];
    const cache = new BalanceCache(clock, (orgId, ahead) => {
      asked.push(`${orgId}${ahead ? ' ahead' : ''}`);
      return metering.balance(orgId, ahead);
    });
    const known = ['a', 'b', 'c', 'd'].map((org) => cache.get(org));
    metering.answer(10);
    await Promise.all(known);
    now += 200;
    await cache.get('b'); // read at 200 ms: in use
    await cache.get('d');
    now += 100;
    await cache.get('c'); // read at 300 ms
    now += 200;
    // a at 500 ms: its refresh takes b, c and d along (read since their fetch, over 250 ms old).
    await cache.get('a');
    cache.spend('b', 1);
    expect(asked.slice(4)).toEqual(['a ahead', 'b ahead', 'c ahead', 'd ahead']);
    metering.answer(20);
    await turns();
    expect(['a', 'b', 'c', 'd'].map((org) => cache.peek(org))).toEqual([20, 19, 20, 20]);
    now += 200;
    await cache.get('b'); // b read at 200 ms; a, c and d not read since their refresh
    now += 300;
    // a at 500 ms: its refresh takes b along, and leaves c and d to age.
    await cache.get('a');
    expect(asked.slice(8)).toEqual(['a ahead', 'b ahead']);
  });

  it('keeps a balance remembered while a fetch was out (a hold answered) and drops the fetched one', async () => {
    const metering = new SlowMetering();
    const cache = new BalanceCache(clock, (orgId, ahead) => metering.balance(orgId, ahead));
    const first = cache.get('acme');
    metering.answer(50);
    await first;
    now += 600;
    await cache.get('acme');
    cache.remember('acme', 40);
    cache.spend('acme', 1);
    metering.answer(45);
    await turns();
    expect(cache.peek('acme')).toBe(39);
    expect(metering.calls).toBe(2);
  });

  it('keeps the cached balance when a refresh fails, and asks again on a later call', async () => {
    const metering = new SlowMetering();
    const credits = new EventualCredits(metering, clock);
    const first = credits.balance('acme');
    metering.answer(10);
    await first;
    now += 700;
    expect(await credits.hold(call, { kind: 'fixed', credits: 1 })).toMatchObject({ granted: true, balance: 9 });
    metering.fail();
    await turns();
    expect(await credits.balance('acme')).toBe(9);
    expect([metering.calls, metering.ahead]).toEqual([3, 2]);
    metering.answer(4);
    await turns();
    expect(await credits.balance('acme')).toBe(4);
    expect(metering.calls).toBe(3);
  });

  it('makes a call that finds the balance too old wait, even for a refresh already out, and fails it when that fetch fails', async () => {
    const metering = new SlowMetering();
    const credits = new EventualCredits(metering, clock);
    const first = credits.balance('acme');
    metering.answer(10);
    await first;
    now += 900;
    expect(await credits.balance('acme')).toBe(10); // starts a refresh
    now += 200;
    const held = settledOrNot(credits.hold(call, { kind: 'fixed', credits: 1 }));
    await turns();
    expect(held.settled).toBe(false);
    expect(metering.calls).toBe(2); // it waits for the refresh already out
    metering.fail();
    await expect(held.promise).rejects.toThrow('metering is down');
    // The next call asks again, and waits for it.
    const again = credits.hold(call, { kind: 'fixed', credits: 1 });
    expect([metering.calls, metering.ahead]).toEqual([3, 1]);
    metering.answer(3);
    expect(await again).toMatchObject({ granted: true, balance: 2 });
  });
});

/** A promise, and whether it has settled yet. */
function settledOrNot<T>(promise: Promise<T>): { promise: Promise<T>; settled: boolean } {
  const out = { promise, settled: false };
  promise.then(
    () => (out.settled = true),
    () => (out.settled = true),
  );
  return out;
}

/** Lets every pending promise callback run (no timers involved). */
async function turns(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}
