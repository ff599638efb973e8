import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import schema from './schemas/request-completed.v1.schema.json';

/**
 * Why Tollgate answered as it did. Absent on events from other producers, which are read as `forwarded`.
 * Only `forwarded` calls reached the upstream and can cost credits.
 */
export type Decision =
  | 'forwarded'
  | 'rate_limited'
  | 'insufficient_credits'
  | 'upstream_unavailable'
  | 'locked_out'
  /** The upstream answered 2xx but its body could not be read for pricing: not handed out (502). */
  | 'unpriceable'
  /** The client closed its connection before the answer: nothing handed out, nothing charged. */
  | 'client_closed';

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

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Bounds of the event, read from its schema (the one source): what a producer must keep to, and what the gateway
 * caps before forwarding (path, request id) or refuses after (entity ids). An event also has to fit the broker's
 * message size: `eventBytes` is kept well under Kafka's default `message.max.bytes` (1 MiB), so an event and
 * the record batch around it always fit; at ~40 bytes an id that is about 6,000 entities a call.
 */
export const EventLimits = {
  pathLength: schema.properties.path.maxLength,
  requestIdLength: schema.properties.request_id.maxLength,
  entityIdLength: schema.properties.entities.items.maxLength,
  entities: schema.properties.entities.maxItems,
  eventBytes: 256 * 1024,
} as const;

/**
 * Parses and validates raw message bytes. `nowMs` is the consumer's clock, used only for the skew check.
 *
 * Everything that passes is storable as it is: the schema bounds every string and array, and no string carries
 * a control character (PostgreSQL's text refuses NUL outright, and none belongs in an id or a path) or half a
 * surrogate pair. A refused event's reason names the field; it is printable, whatever the bytes were.
 */
export function parseRequestCompleted(bytes: Buffer | null, nowMs: number): EventValidation {
  if (!bytes || bytes.length === 0) return { ok: false, reason: 'empty message value' };
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: 'value is not valid UTF-8' };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: printable(`value is not JSON: ${(e as Error).message}`) };
  }
  return validateRequestCompleted(value, nowMs);
}

/**
 * The contract on a parsed value, the one check for both sides: the consumer runs it on every message, and the
 * gateway on every event it builds before any data goes out, so an event the gateway publishes is never
 * dead-lettered for its content. `bytes`, when given, is the serialised size, checked against `maxBytes`
 * (`EventLimits.eventBytes`, or less where the broker takes less).
 */
export function validateRequestCompleted(value: unknown, nowMs: number, bytes?: number, maxBytes: number = EventLimits.eventBytes): EventValidation {
  if (bytes !== undefined && bytes > maxBytes) {
    return { ok: false, reason: `event is ${bytes} bytes, over the limit of ${maxBytes}` };
  }
  if (!validateSchema(value)) {
    const err = validateSchema.errors?.[0];
    const where = err?.instancePath ? err.instancePath.slice(1).replace(/\//g, '.') : 'event';
    return { ok: false, reason: `schema: ${where} ${err?.message ?? 'is invalid'}` };
  }
  for (const [field, s] of stringFields(value)) {
    const at = forbiddenCharacterAt(s);
    if (at >= 0) return { ok: false, reason: `${field} contains ${describeCodeUnit(s.charCodeAt(at))} at index ${at}` };
  }
  const occurredMs = Date.parse(value.occurred_at);
  if (Number.isNaN(occurredMs)) return { ok: false, reason: `occurred_at ${value.occurred_at} is not a time this system can represent` };
  if (occurredMs - nowMs > MaxClockSkewMs) {
    return { ok: false, reason: `occurred_at ${value.occurred_at} is more than 5 minutes in the future` };
  }
  return { ok: true, event: value };
}

/** Every free-text field of an event, named as a reason names it. Enums and the date-time are checked by the schema. */
function stringFields(e: RequestCompletedV1): Array<[string, string]> {
  const out: Array<[string, string]> = [
    ['event_id', e.event_id],
    ['org_id', e.org_id],
    ['subject.id', e.subject.id],
    ['profile', e.profile],
    ['route', e.route],
    ['path', e.path],
  ];
  if (e.api_key_id !== null) out.push(['api_key_id', e.api_key_id]);
  if (e.reservation_id !== null) out.push(['reservation_id', e.reservation_id]);
  if (e.request_id !== undefined) out.push(['request_id', e.request_id]);
  e.entities.forEach((id, i) => out.push([`entities.${i}`, id]));
  return out;
}

/**
 * Index of the first code unit that has no place in an id or a path: a C0 control (NUL included), DEL, a C1
 * control, or a surrogate without its pair (it would be stored as U+FFFD, a different id). -1 when clean.
 */
export function forbiddenCharacterAt(s: string): number {
  for (let i = 0; i < s.length; ) {
    const n = characterLength(s, i);
    if (n === 0) return i;
    i += n;
  }
  return -1;
}

/** What makes `s` unfit for an id or a text field (its first forbidden character, named, and where), or null. */
export function forbiddenCharacterProblem(s: string): string | null {
  const at = forbiddenCharacterAt(s);
  return at < 0 ? null : `contains ${describeCodeUnit(s.charCodeAt(at))} at index ${at}`;
}

/** Code units of the well-formed, non-control character at `s[i]` (1, or 2 for a surrogate pair); 0 if forbidden. */
function characterLength(s: string, i: number): 0 | 1 | 2 {
  const c = s.charCodeAt(i);
  if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return 0;
  if (c >= 0xd800 && c <= 0xdbff) {
    const low = s.charCodeAt(i + 1);
    return low >= 0xdc00 && low <= 0xdfff ? 2 : 0;
  }
  return c >= 0xdc00 && c <= 0xdfff ? 0 : 1;
}

function describeCodeUnit(c: number): string {
  const hex = `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
  if (c === 0) return `a NUL character (${hex})`;
  if (c >= 0xd800 && c <= 0xdfff) return `an unpaired surrogate (${hex})`;
  return `a control character (${hex})`;
}

/**
 * `text` safe to store, log and send as a header: forbidden characters escaped as \uXXXX, at most `max`
 * characters (then cut with an ellipsis). Dead-letter reasons go through it: a JSON parser's message quotes the
 * input it choked on, NUL bytes included.
 */
export function printable(text: string, max = 500): string {
  let out = '';
  for (let i = 0; i < text.length; ) {
    const n = characterLength(text, i);
    const piece = n === 0 ? `\\u${text.charCodeAt(i).toString(16).padStart(4, '0')}` : text.slice(i, i + n);
    if (out.length + piece.length > max) return `${out}…`;
    out += piece;
    i += n === 0 ? 1 : n;
  }
  return out;
}
