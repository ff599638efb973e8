/**
 * Calendar arithmetic for allowances, in UTC. Every instant is epoch milliseconds handed in by the caller
 * (the event's `occurred_at`, an admin command's clock): the domain never reads a clock, so replaying the same
 * inputs gives the same months.
 */

/** Throws unless `at` is a whole number of epoch milliseconds (NaN from a bad date must never reach the ledger). */
export function assertInstant(at: number, what = 'at'): void {
  if (!Number.isSafeInteger(at)) throw new RangeError(`${what} must be whole epoch milliseconds (got ${String(at)})`);
}

/** The UTC month `at` falls in, as `YYYY-MM`. Months of years 0..9999 compare correctly as strings. */
export function monthOf(at: number): string {
  assertInstant(at);
  const d = new Date(at);
  return `${String(d.getUTCFullYear()).padStart(4, '0')}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** 00:00:00.000 UTC on the 1st of the month `at` falls in. */
export function startOfMonth(at: number): number {
  assertInstant(at);
  const d = new Date(at);
  return firstOfMonth(d.getUTCFullYear(), d.getUTCMonth());
}

/** 00:00:00.000 UTC on the 1st of the month after `at`: when an allowance granted at `at` expires. */
export function startOfNextMonth(at: number): number {
  assertInstant(at);
  const d = new Date(at);
  return firstOfMonth(d.getUTCFullYear(), d.getUTCMonth() + 1);
}

/** setUTCFullYear, unlike Date.UTC, does not read years 0..99 as 1900..1999; month 12 rolls into the next year. */
function firstOfMonth(year: number, monthIndex: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, monthIndex, 1);
  return d.getTime();
}
