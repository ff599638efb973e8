import { Headers } from '@tollgate/contracts';
import { Profile } from '@tollgate/profiles';
import { mostRestrictive, RateDecision, WindowStatus } from '@tollgate/rate-limit';

export interface HeaderInput {
  rate: RateDecision | null;
  /** Spendable credits after this call, when known (trackyard's X-Credits-Remaining). */
  credits: number | null;
  authenticated: boolean;
  /** This response is Tollgate's 429. */
  throttled: boolean;
}

type Out = Record<string, string>;

/**
 * A profile's way of showing where a caller stands, picked once at start (`headerStyle`): the pipeline asks it
 * what an answer needs instead of testing the style's name.
 */
export interface HeaderStyle {
  /** Answers show the org's spendable credits: answers that held nothing (429, /me, /usage) look the balance up. */
  readonly showsCredits: boolean;
  /** Answers given before the limits are counted (401, login lockout) show the limits too, peeked without counting. */
  readonly limitsOnEveryAnswer: boolean;
  /** Adds the answer's rate-limit headers to `out` (and returns it); `Retry-After` on every Tollgate 429. */
  decorate(h: HeaderInput, nowMs: number, out: Out): Out;
}

const seconds = (ms: number) => Math.ceil(ms / 1000);

function byName(rate: RateDecision | null, name: string): WindowStatus | undefined {
  if (!rate) return undefined;
  for (const w of rate.windows) if (w.name === name) return w;
  return undefined;
}

/**
 * The rate-limit headers of each seed, exactly as its document shows them: each writes the full set for one
 * response into `out`.
 */
const styles: Record<Profile['headers']['style'], (h: HeaderInput, profile: Profile, out: Out) => void> = {
  // Trackyard: every authenticated response carries the minute and daily windows and the credits left.
  trackyard: (h, _p, out) => {
    if (!h.authenticated) return;
    const minute = byName(h.rate, 'minute');
    const day = byName(h.rate, 'day');
    if (minute) {
      out[Headers.RateLimitLimit] = String(minute.limit);
      out[Headers.RateLimitRemaining] = String(minute.remaining);
    }
    if (day) {
      out[Headers.RateLimitLimitDaily] = String(day.limit);
      out[Headers.RateLimitRemainingDaily] = String(day.remaining);
    }
    if (h.credits !== null) out[Headers.CreditsRemaining] = String(Math.max(0, h.credits));
  },
  // BeatPass: the most restrictive applicable limit (the refusing one on a 429), on every response.
  beatpass: (h, _p, out) => {
    const w = h.throttled && h.rate?.refusedBy ? h.rate.refusedBy : mostRestrictive(h.rate?.windows ?? []);
    if (!w) return;
    out[Headers.RateLimitLimit] = String(w.limit);
    out[Headers.RateLimitRemaining] = String(w.remaining);
    out[Headers.RateLimitReset] = String(seconds(w.resetAtMs));
  },
  // Trakt: the X-Ratelimit JSON describes the bucket that refused; nothing on success. Only the profile's own
  // buckets: the invalid-key throttle refuses "before the request reaches the API rate limiter", and the seed
  // says such 429s may not include X-Ratelimit (a bucket name outside its table would mislead a client).
  trakt: (h, profile, out) => {
    const w = h.throttled ? h.rate?.refusedBy : null;
    if (!w || !profile.limits.some((l) => l.name === w.name)) return;
    const until = new Date(w.resetAtMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
    out[Headers.TraktRatelimit] = JSON.stringify({ name: w.name, period: w.periodSeconds, limit: w.limit, remaining: w.remaining, until });
  },
  // Trace: no X-RateLimit-* on success; on a 429 the minute and day windows.
  trace: (h, _p, out) => {
    if (!h.throttled) return;
    const minute = byName(h.rate, 'minute') ?? byName(h.rate, 'open_minute') ?? h.rate?.refusedBy ?? undefined;
    const day = byName(h.rate, 'day');
    if (minute) {
      out[Headers.RateLimitLimit] = String(minute.limit);
      out[Headers.RateLimitRemaining] = String(minute.remaining);
      out[Headers.RateLimitReset] = String(seconds(minute.resetAtMs));
    }
    if (day) {
      out[Headers.RateLimitLimitDay] = String(day.limit);
      out[Headers.RateLimitRemainingDay] = String(day.remaining);
      out[Headers.RateLimitResetDay] = String(seconds(day.resetAtMs));
    }
  },
};

/**
 * IETF draft-ietf-httpapi-ratelimit-headers fields (structured fields):
 * `RateLimit-Policy: "minute";q=5;w=60` and `RateLimit: "minute";r=3;t=42`, one item per window.
 */
function ietf(rate: RateDecision | null, nowMs: number, out: Out): void {
  const windows = rate?.windows ?? [];
  if (windows.length === 0) return;
  out[Headers.IetfRateLimitPolicy] = windows.map((w) => `"${w.name}";q=${w.limit};w=${w.periodSeconds}`).join(', ');
  out[Headers.IetfRateLimit] = windows.map((w) => `"${w.name}";r=${w.remaining};t=${Math.max(0, seconds(w.resetAtMs - nowMs))}`).join(', ');
}

/** The profile's header style, picked once (the gateway's start). */
export function headerStyle(profile: Profile): HeaderStyle {
  const style = styles[profile.headers.style];
  if (!style) throw new Error(`unknown header style ${profile.headers.style}`);
  const standard = profile.headers.standard_headers;
  return {
    // Only trackyard shows credits, and only BeatPass shows its limits on answers given before they are counted
    // ("Responses include standard rate limit headers", 401 and lockout too).
    showsCredits: profile.headers.style === 'trackyard',
    limitsOnEveryAnswer: profile.headers.style === 'beatpass',
    decorate(h, nowMs, out) {
      style(h, profile, out);
      if (standard) ietf(h.rate, nowMs, out);
      if (h.throttled && h.rate) out[Headers.RetryAfter] = String(Math.max(1, h.rate.retryAfterSeconds));
      return out;
    },
  };
}

/** One answer's rate-limit headers (tests and one-off callers; the pipeline keeps its `headerStyle`). */
export function rateLimitHeaders(profile: Profile, h: HeaderInput, nowMs: number): Out {
  return headerStyle(profile).decorate(h, nowMs, {});
}
