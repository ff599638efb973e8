import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import schema from './schemas/request-completed.v1.schema.json';

/**
 * Why Tollgate answered as it did. Absent on events from other producers, which are read as `forwarded`.
 * Only `forwarded` calls reached the upstream and can cost credits.
 */
export type Decision = 'forwarded' | 'rate_limited' | 'insufficient_credits' | 'upstream_unavailable' | 'locked_out';

/** `tollgate.request-completed.v1`: one per call that reached a decision. Key = org_id. */
export interface RequestCompletedV1 {
  event_id: string;
  schema_version: 1;
  occurred_at: string;
  org_id: string;
  api_key_id: string | null;
  subject: { kind: 'key' | 'user' | 'application' | 'ip'; id: string };
  profile: string;
  method: string;
  /** The profile's route template, e.g. `/search` or `/companies/:identifier`. */
  route: string;
  path: string;
  status_code: number;
  response_time_ms: number;
  /** Billable entity ids read from the upstream body (per-entity routes), already without exclusions. */
  entities: string[];
  reservation_id: string | null;
  /** Extensions (optional for other producers). */
  request_id?: string;
  decision?: Decision;
}

export type EventValidation = { ok: true; event: RequestCompletedV1 } | { ok: false; reason: string };

const ajv = new Ajv({ allErrors: false, strict: true });
addFormats(ajv, ['date-time', 'uuid']);
const validateSchema = ajv.compile<RequestCompletedV1>(schema);

/** The future tolerance for `occurred_at`: an event from further ahead is dead-lettered. */
export const MaxClockSkewMs = 5 * 60 * 1000;

/** Parses and validates raw message bytes. `nowMs` is the consumer's clock, used only for the skew check. */
export function parseRequestCompleted(bytes: Buffer | null, nowMs: number): EventValidation {
  if (!bytes || bytes.length === 0) return { ok: false, reason: 'empty message value' };
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    return { ok: false, reason: `value is not JSON: ${(e as Error).message}` };
  }
  if (!validateSchema(value)) {
    const err = validateSchema.errors?.[0];
    const where = err?.instancePath ? err.instancePath.slice(1).replace(/\//g, '.') : 'event';
    return { ok: false, reason: `schema: ${where} ${err?.message ?? 'is invalid'}` };
  }
  const occurredMs = Date.parse(value.occurred_at);
  if (occurredMs - nowMs > MaxClockSkewMs) {
    return { ok: false, reason: `occurred_at ${value.occurred_at} is more than 5 minutes in the future` };
  }
  return { ok: true, event: value };
}
