/**
 * Why a unit of work against PostgreSQL failed, as far as trying it again goes.
 *
 * - `data`: the work was refused for the values it carried, so the same input fails the same way every time:
 *   SQLSTATE class 22 (data exception: a NUL in text, a date out of range, a number too large) and 23 (integrity
 *   constraint violation), or our own code failing on those values before they were sent (a RangeError or
 *   TypeError, such as formatting an impossible date). Retrying cannot help; isolating the input can.
 * - `unavailable`: anything else. Connection refused, reset or timed out, the server shutting down (57P01),
 *   too many connections, a deadlock or serialization failure, a missing table after a bad deploy: the input is
 *   not at fault, and retrying later can succeed. Unknown errors land here, so a doubt never discards input.
 */
export type DatabaseFailure = 'data' | 'unavailable';

export function databaseFailure(e: unknown): DatabaseFailure {
  const code = sqlState(e);
  if (code !== null) return code.startsWith('22') || code.startsWith('23') ? 'data' : 'unavailable';
  const networkCode = (e as { code?: unknown } | null)?.code;
  if (networkCode !== undefined) return 'unavailable';
  return e instanceof RangeError || e instanceof TypeError ? 'data' : 'unavailable';
}

/** The five-character SQLSTATE of a PostgreSQL error (pg's, or TypeORM's wrapper of it); null for others. */
export function sqlState(e: unknown): string | null {
  if (typeof e !== 'object' || e === null) return null;
  for (const candidate of [(e as { code?: unknown }).code, (e as { driverError?: { code?: unknown } }).driverError?.code]) {
    if (typeof candidate === 'string' && /^[0-9A-Z]{5}$/.test(candidate)) return candidate;
  }
  return null;
}
