import { BadRequestException } from '@nestjs/common';

/**
 * Reading requests the way a lenient real API would: JSON bodies that are not objects count as empty,
 * repeated query parameters use the first value, and a bad parameter is a 400 that names it, in the
 * `{"error","message"}` shape every profile's upstream answers with.
 */

export type JsonObject = Record<string, unknown>;

export function invalidRequest(message: string): BadRequestException {
  return new BadRequestException({ error: 'invalid_request', message });
}

export function isJsonObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The request body as an object (`{}` when absent, not JSON, or not an object). */
export function bodyObject(body: unknown): JsonObject {
  return isJsonObject(body) ? body : {};
}

/** First value of a query parameter, or undefined. */
export function queryString(value: unknown): string | undefined {
  const first = Array.isArray(value) ? (value as unknown[])[0] : value;
  return typeof first === 'string' ? first : undefined;
}

/**
 * A whole-number query parameter. Absent or empty: `fallback`. Above `max`: `max` (real APIs clamp page
 * sizes). Not a whole number, or below `min`: 400 naming the parameter.
 */
export function intQuery(value: unknown, name: string, opts: { fallback: number; min: number; max: number }): number {
  const raw = queryString(value);
  if (raw === undefined || raw === '') return opts.fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < opts.min) throw invalidRequest(`${name} must be a whole number of at least ${opts.min}`);
  return Math.min(n, opts.max);
}
