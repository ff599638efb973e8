import { windowStart, windowStatus } from './window';

const at = (iso: string) => Date.parse(iso);

describe('windowStart: fixed windows aligned to the UTC clock', () => {
  it('given any instant in a minute, when its 60 s window is asked, then it starts at :00 of that minute', () => {
    expect(windowStart(at('2026-11-22T10:00:00.000Z'), 60)).toBe(at('2026-11-22T10:00:00.000Z'));
    expect(windowStart(at('2026-11-22T10:00:59.999Z'), 60)).toBe(at('2026-11-22T10:00:00.000Z'));
    expect(windowStart(at('2026-11-22T10:01:00.000Z'), 60)).toBe(at('2026-11-22T10:01:00.000Z'));
  });

  it('given any instant in a UTC day, when its 86,400 s window is asked, then it starts at 00:00 UTC', () => {
    expect(windowStart(at('2026-11-22T00:00:00.000Z'), 86_400)).toBe(at('2026-11-22T00:00:00.000Z'));
    expect(windowStart(at('2026-11-22T23:59:59.999Z'), 86_400)).toBe(at('2026-11-22T00:00:00.000Z'));
  });

  it('given a 300 s period, when a window is asked, then it starts at a multiple of five minutes', () => {
    expect(windowStart(at('2026-11-22T10:04:59.999Z'), 300)).toBe(at('2026-11-22T10:00:00.000Z'));
    expect(windowStart(at('2026-11-22T10:07:30.000Z'), 300)).toBe(at('2026-11-22T10:05:00.000Z'));
  });

  it('given an instant before 1970, when its window is asked, then it still contains the instant', () => {
    expect(windowStart(-1, 60)).toBe(-60_000);
  });

  it('given a period that is not positive, when a window is asked, then it refuses', () => {
    expect(() => windowStart(0, 0)).toThrow(RangeError);
    expect(() => windowStart(0, -60)).toThrow(RangeError);
  });
});

describe('windowStatus', () => {
  it('given more requests than the limit (a limit lowered mid-window), when the status is built, then remaining is 0, not negative', () => {
    const w = windowStatus({ name: 'minute', periodSeconds: 60, limit: 5 }, 9, at('2026-11-22T10:00:30.000Z'));
    expect(w).toEqual({
      name: 'minute', limit: 5, used: 9, remaining: 0, periodSeconds: 60,
      windowStartMs: at('2026-11-22T10:00:00.000Z'), resetAtMs: at('2026-11-22T10:01:00.000Z'),
    });
  });
});
