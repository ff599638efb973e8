import { monthOf, startOfMonth, startOfNextMonth } from './time';
import { utc } from './testing/account-builder';

describe('UTC months', () => {
  const lastMsOfJanuary = utc('2026-01-31T23:59:59.999Z');
  const firstMsOfFebruary = utc('2026-02-01T00:00:00.000Z');

  it('given the last millisecond of a month, when its month is taken, then it still belongs to that month', () => {
    expect(monthOf(lastMsOfJanuary)).toBe('2026-01');
    expect(startOfNextMonth(lastMsOfJanuary)).toBe(firstMsOfFebruary);
  });

  it('given the first millisecond of a month, when its month is taken, then it is the new month and its own start', () => {
    expect(monthOf(firstMsOfFebruary)).toBe('2026-02');
    expect(startOfMonth(firstMsOfFebruary)).toBe(firstMsOfFebruary);
    expect(startOfMonth(firstMsOfFebruary - 1)).toBe(utc('2026-01-01T00:00:00.000Z'));
  });

  it('given a local-time offset in the input, when the month is taken, then UTC decides (not the server zone)', () => {
    expect(monthOf(utc('2026-03-01T00:30:00+01:00'))).toBe('2026-02');
  });

  it('given December, when the next month starts, then the year rolls over', () => {
    expect(startOfNextMonth(utc('2026-12-15T12:00:00Z'))).toBe(utc('2027-01-01T00:00:00Z'));
    expect(monthOf(utc('2026-12-31T23:59:59.999Z'))).toBe('2026-12');
    expect(monthOf(utc('2027-01-01T00:00:00Z'))).toBe('2027-01');
  });

  it('given a leap February, when the next month starts, then it is 1 March after 29 days', () => {
    expect(startOfNextMonth(utc('2028-02-10T00:00:00Z'))).toBe(utc('2028-03-01T00:00:00Z'));
  });

  it('given months as YYYY-MM, when compared as strings, then they order like time (across years too)', () => {
    expect(monthOf(utc('2026-12-01T00:00:00Z')) < monthOf(utc('2027-01-01T00:00:00Z'))).toBe(true);
    expect(monthOf(utc('2026-09-01T00:00:00Z')) < monthOf(utc('2026-10-01T00:00:00Z'))).toBe(true);
  });

  it('given a year below 100, when months are computed, then it is not read as 19xx', () => {
    const at = utc('0050-06-15T00:00:00Z');
    expect(monthOf(at)).toBe('0050-06');
    expect(monthOf(startOfNextMonth(at))).toBe('0050-07');
  });

  it('given NaN or a fractional instant (an unparsable date), when a month is asked for, then it throws', () => {
    expect(() => monthOf(Number.NaN)).toThrow(RangeError);
    expect(() => startOfMonth(1.5)).toThrow(RangeError);
    expect(() => startOfNextMonth(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });
});
