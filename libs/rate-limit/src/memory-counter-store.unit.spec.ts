import { Clock } from './clock';
import { CounterCheck } from './decision';
import { MemoryCounterStore } from './memory-counter-store';

/** A clock the test moves by hand. */
class ManualClock implements Clock {
  constructor(private t: number) {}
  now(): number {
    return this.t;
  }
  set(iso: string): void {
    this.t = Date.parse(iso);
  }
}

const minute = (limit: number, subject = 'k1'): CounterCheck => ({ subjectKey: `trackyard:minute:key:${subject}`, rule: { name: 'minute', periodSeconds: 60, limit } });
const day = (limit: number, subject = 'k1'): CounterCheck => ({ subjectKey: `trackyard:day:key:${subject}`, rule: { name: 'day', periodSeconds: 86_400, limit } });

describe('MemoryCounterStore', () => {
  let store: MemoryCounterStore;
  let clock: ManualClock;
  const consume = (checks: CounterCheck[]) => store.consume(checks, clock.now());
  const times = (n: number, checks: CounterCheck[]) => Array.from({ length: n }, () => consume(checks));

  beforeEach(() => {
    store = new MemoryCounterStore();
    clock = new ManualClock(Date.parse('2026-11-22T10:00:00.000Z'));
  });

  describe('fixed minute windows', () => {
    it('given a full minute, when the clock is 1 ms before the next minute, then the call is still refused', () => {
      clock.set('2026-11-22T10:00:10.000Z');
      times(5, [minute(5)]);
      clock.set('2026-11-22T10:00:59.999Z');
      const d = consume([minute(5)]);
      expect(d.admitted).toBe(false);
      expect(d.retryAfterSeconds).toBe(1);
    });

    it('given a full minute, when the clock reaches :00 of the next minute, then the window is empty again', () => {
      times(5, [minute(5)]);
      clock.set('2026-11-22T10:01:00.000Z');
      const d = consume([minute(5)]);
      expect(d.admitted).toBe(true);
      expect(d.windows[0]).toMatchObject({ used: 1, remaining: 4, windowStartMs: Date.parse('2026-11-22T10:01:00.000Z') });
    });

    it('given calls 1 ms either side of a minute boundary, when both are counted, then each lands in its own minute', () => {
      clock.set('2026-11-22T10:00:59.999Z');
      expect(consume([minute(1)]).admitted).toBe(true);
      clock.set('2026-11-22T10:01:00.001Z');
      expect(consume([minute(1)]).admitted).toBe(true);
      expect(consume([minute(1)]).admitted).toBe(false);
    });
  });

  describe('minute and day together', () => {
    it('given room for the day, when the minute runs out, then the call is refused by the minute and waits only for it', () => {
      times(5, [minute(5), day(50)]);
      clock.set('2026-11-22T10:00:20.000Z');
      const d = consume([minute(5), day(50)]);
      expect(d.admitted).toBe(false);
      expect(d.refusedBy?.name).toBe('minute');
      expect(d.retryAfterSeconds).toBe(40);
      expect(d.windows.map((w) => [w.name, w.used, w.remaining])).toEqual([['minute', 5, 0], ['day', 5, 45]]);
    });

    it('given room in the minute, when the day runs out, then the call is refused by the day until 00:00 UTC', () => {
      times(3, [minute(5), day(3)]);
      clock.set('2026-11-22T10:05:00.000Z');
      const d = consume([minute(5), day(3)]);
      expect(d.admitted).toBe(false);
      expect(d.refusedBy?.name).toBe('day');
      expect(d.refusedBy?.resetAtMs).toBe(Date.parse('2026-11-23T00:00:00.000Z'));
      expect(d.retryAfterSeconds).toBe(13 * 3600 + 55 * 60);
    });

    it('given a full day, when the clock reaches 00:00 UTC, then the daily window starts again', () => {
      times(3, [day(3)]);
      clock.set('2026-11-22T23:59:59.999Z');
      expect(consume([day(3)]).admitted).toBe(false);
      clock.set('2026-11-23T00:00:00.000Z');
      const d = consume([day(3)]);
      expect(d.admitted).toBe(true);
      expect(d.windows[0]).toMatchObject({ used: 1, remaining: 2 });
    });
  });

  it('given the minute is full, when a call is refused, then it counts in none of its windows, the day included', () => {
    times(2, [minute(2), day(50)]);
    for (let i = 0; i < 10; i++) expect(consume([minute(2), day(50)]).admitted).toBe(false);
    clock.set('2026-11-22T10:01:00.000Z');
    expect(consume([minute(2), day(50)]).windows.map((w) => w.used)).toEqual([1, 3]);
  });

  it('given a limit lowered below what the window already holds, when a call arrives, then remaining shows 0, never negative', () => {
    times(8, [minute(10)]);
    const d = consume([minute(5)]);
    expect(d.admitted).toBe(false);
    expect(d.windows[0]).toMatchObject({ used: 8, remaining: 0 });
    expect(d.refusedBy?.remaining).toBe(0);
  });

  it('given any refusal, when Retry-After is computed, then it is whole seconds, at least 1, and not before the refusing reset', () => {
    times(2, [minute(2)]);
    for (const iso of ['2026-11-22T10:00:00.000Z', '2026-11-22T10:00:00.001Z', '2026-11-22T10:00:30.500Z', '2026-11-22T10:00:59.999Z']) {
      clock.set(iso);
      const d = consume([minute(2)]);
      expect(Number.isInteger(d.retryAfterSeconds)).toBe(true);
      expect(d.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(clock.now() + d.retryAfterSeconds * 1000).toBeGreaterThanOrEqual(d.refusedBy!.resetAtMs);
    }
  });

  it('given the last request of a window, when it is consumed, then it is admitted and remaining shows 0', () => {
    times(4, [minute(5)]);
    const d = consume([minute(5)]);
    expect(d).toMatchObject({ admitted: true, refusedBy: null, retryAfterSeconds: 0 });
    expect(d.windows[0]?.remaining).toBe(0);
  });

  it('given two subjects, when one runs out, then the other keeps its own window', () => {
    times(2, [minute(2, 'a')]);
    expect(consume([minute(2, 'a')]).admitted).toBe(false);
    expect(consume([minute(2, 'b')]).admitted).toBe(true);
  });

  describe('peek', () => {
    it('given some use, when a window is peeked, then it reports where the subject stands and counts nothing', () => {
      times(3, [minute(5)]);
      const first = store.peek([minute(5)], clock.now());
      const second = store.peek([minute(5)], clock.now());
      expect(first).toEqual(second);
      expect(first).toMatchObject({ admitted: true, retryAfterSeconds: 0 });
      expect(first.windows[0]).toMatchObject({ used: 3, remaining: 2 });
    });

    it('given a full window, when it is peeked, then it answers as consume would: refused, with Retry-After', () => {
      times(5, [minute(5)]);
      clock.set('2026-11-22T10:00:45.000Z');
      expect(store.peek([minute(5)], clock.now())).toMatchObject({ admitted: false, retryAfterSeconds: 15, refusedBy: { name: 'minute', used: 5 } });
    });
  });

  describe('locks', () => {
    it('given a lock, when asked before and after its deadline, then it is in force until then and 0 afterwards', () => {
      const until = clock.now() + 900_000;
      store.lock('beatpass:lockout:ip:1.2.3.4', until);
      expect(store.lockedUntil('beatpass:lockout:ip:1.2.3.4', clock.now())).toBe(until);
      expect(store.lockedUntil('beatpass:lockout:ip:1.2.3.4', until - 1)).toBe(until);
      expect(store.lockedUntil('beatpass:lockout:ip:1.2.3.4', until)).toBe(0);
      expect(store.lockedUntil('beatpass:lockout:ip:5.6.7.8', clock.now())).toBe(0);
    });
  });

  it('given windows long past, when later calls sweep, then their counters are forgotten and new windows start at zero', () => {
    for (let i = 0; i < 20_000; i++) store.consume([minute(5, `s${i}`)], clock.now());
    clock.set('2026-11-22T11:00:00.000Z');
    expect(consume([minute(5, 's1')]).windows[0]?.used).toBe(1);
    // Only the window just counted survives the sweep.
    expect((store as unknown as { counters: Map<string, unknown> }).counters.size).toBe(1);
  });
});
