/**
 * Fixed windows aligned to the UTC clock (SPEC §4): a 60 s window starts at :00 of every minute, a 300 s window
 * at every multiple of five minutes, an 86,400 s window at 00:00 UTC. Unix time has no leap seconds, so every
 * UTC day is exactly 86,400,000 ms and aligning to the epoch is aligning to the calendar.
 */

/** One limit as the counters see it: at most `limit` requests per fixed window of `periodSeconds`. */
export interface WindowRule {
  /** The name headers and admin overrides use: `minute`, `day`, `AUTHED_API_GET_LIMIT`. */
  name: string;
  periodSeconds: number;
  limit: number;
}

/** Where one window stands for one subject, after the decision it belongs to. */
export interface WindowStatus {
  name: string;
  limit: number;
  /** Requests counted in this window, including the current one when it was admitted by `consume`. */
  used: number;
  /** `limit - used`, never below 0 (a limit lowered mid-window can leave `used` above it). */
  remaining: number;
  periodSeconds: number;
  windowStartMs: number;
  /** When this window ends and the next one starts empty: `windowStartMs + periodSeconds * 1000`. */
  resetAtMs: number;
}

/** Start (epoch ms) of the fixed window of `periodSeconds` that contains `nowMs`. */
export function windowStart(nowMs: number, periodSeconds: number): number {
  const periodMs = periodMillis(periodSeconds);
  if (!Number.isFinite(nowMs)) throw new RangeError(`nowMs must be epoch milliseconds (got ${String(nowMs)})`);
  // `%` keeps the sign of the dividend; the double modulo keeps instants before 1970 in the right window.
  return nowMs - (((nowMs % periodMs) + periodMs) % periodMs);
}

/** The status of `rule`'s window containing `nowMs`, given how many requests it holds. */
export function windowStatus(rule: WindowRule, used: number, nowMs: number): WindowStatus {
  const start = windowStart(nowMs, rule.periodSeconds);
  return {
    name: rule.name,
    limit: rule.limit,
    used,
    remaining: Math.max(0, rule.limit - used),
    periodSeconds: rule.periodSeconds,
    windowStartMs: start,
    resetAtMs: start + periodMillis(rule.periodSeconds),
  };
}

function periodMillis(periodSeconds: number): number {
  const ms = Math.round(periodSeconds * 1000);
  if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`periodSeconds must be positive (got ${String(periodSeconds)})`);
  return ms;
}
