import { CounterCheck, decide, mostRestrictive } from './decision';
import { WindowStatus } from './window';

const NOW = Date.parse('2026-11-22T10:00:30.000Z');
const minute: CounterCheck = { subjectKey: 'p:minute:key:k1', rule: { name: 'minute', periodSeconds: 60, limit: 5 } };
const day: CounterCheck = { subjectKey: 'p:day:key:k1', rule: { name: 'day', periodSeconds: 86_400, limit: 50 } };

describe('decide', () => {
  it('given no windows apply, when a call is decided, then it is admitted with nothing to report', () => {
    expect(decide([], [], NOW, 'consume')).toEqual({ admitted: true, windows: [], refusedBy: null, retryAfterSeconds: 0 });
  });

  it('given every window has room, when a call is consumed, then it is admitted and counted in each window, in check order', () => {
    const d = decide([minute, day], [4, 10], NOW, 'consume');
    expect(d.admitted).toBe(true);
    expect(d.windows.map((w) => [w.name, w.used, w.remaining])).toEqual([['minute', 5, 0], ['day', 11, 39]]);
    expect(d.retryAfterSeconds).toBe(0);
  });

  it('given every window has room, when a call is peeked, then it is admitted and counted nowhere', () => {
    const d = decide([minute, day], [4, 10], NOW, 'peek');
    expect(d.admitted).toBe(true);
    expect(d.windows.map((w) => w.used)).toEqual([4, 10]);
  });

  it('given the minute and the day are both full, when a call is decided, then Retry-After waits for the later reset (the day)', () => {
    const d = decide([minute, day], [5, 50], NOW, 'consume');
    expect(d.admitted).toBe(false);
    expect(d.refusedBy?.name).toBe('day');
    expect(d.retryAfterSeconds).toBe(Math.ceil((Date.parse('2026-11-23T00:00:00.000Z') - NOW) / 1000));
    expect(d.windows.map((w) => w.used)).toEqual([5, 50]);
  });

  it('given the refusing window resets in under a second, when a call is refused, then Retry-After is still 1', () => {
    const d = decide([minute], [5], Date.parse('2026-11-22T10:00:59.999Z'), 'consume');
    expect(d.retryAfterSeconds).toBe(1);
  });

  it('given the counts and the limits disagree in length, when a call is decided, then it refuses to guess', () => {
    expect(() => decide([minute, day], [1], NOW, 'consume')).toThrow(RangeError);
  });
});

describe('mostRestrictive', () => {
  const w = (name: string, remaining: number, limit: number, periodSeconds: number): WindowStatus => ({
    name, remaining, limit, periodSeconds, used: limit - remaining, windowStartMs: 0, resetAtMs: periodSeconds * 1000,
  });

  it('given no windows, when asked, then there is none', () => {
    expect(mostRestrictive([])).toBeUndefined();
  });

  it('given windows with different remaining, when asked, then the one with the fewest left decides', () => {
    expect(mostRestrictive([w('global', 299, 300, 60), w('media', 20, 30, 60), w('write', 25, 30, 60)])?.name).toBe('media');
  });

  it('given equal remaining, when asked, then the lower limit decides, then the shorter period', () => {
    expect(mostRestrictive([w('global', 10, 300, 60), w('media', 10, 30, 60)])?.name).toBe('media');
    expect(mostRestrictive([w('day', 10, 30, 86_400), w('minute', 10, 30, 60)])?.name).toBe('minute');
  });
});
