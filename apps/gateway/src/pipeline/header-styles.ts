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

const seconds = (ms: number) => Math.ceil(ms / 1000);
const byName = (rate: RateDecision | null, name: string): WindowStatus | undefined => rate?.windows.find((w) => w.name === name);

/**
 * The rate-limit headers of each seed, exactly as its document shows them. Each style returns the full set
 * for one response; `Retry-After` is added by the caller on every 429.
 */
const styles: Record<Profile['headers']['style'], (h: HeaderInput, profile: Profile) => Record<string, string>> = {
  // Trackyard: every authenticated response carries the minute and daily windows and the credits left.
  trackyard: (h) => {
    if (!h.authenticated) return {};
    const out: Record<string, string> = {};
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
    return out;
  },
  // BeatPass: the most restrictive applicable limit (the refusing one on a 429), on every response.
  beatpass: (h): Record<string, string> => {
    const w = h.throttled && h.rate?.refusedBy ? h.rate.refusedBy : mostRestrictive(h.rate?.windows ?? []);
    if (!w) return {};
    return {
      [Headers.RateLimitLimit]: String(w.limit),
      [Headers.RateLimitRemaining]: String(w.remaining),
      [Headers.RateLimitReset]: String(seconds(w.resetAtMs)),
    };
  },
  // Trakt: the X-Ratelimit JSON describes the bucket that refused; nothing on success. Only the profile's own
  // buckets: the invalid-key throttle refuses "before the request reaches the API rate limiter", and the seed
  // says such 429s may not include X-Ratelimit (a bucket name outside its table would mislead a client).
  trakt: (h, profile): Record<string, string> => {
    const w = h.throttled ? h.rate?.refusedBy : null;
    if (!w || !profile.limits.some((l) => l.name === w.name)) return {};
    const until = new Date(w.resetAtMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
    return {
      [Headers.TraktRatelimit]: JSON.stringify({ name: w.name, period: w.periodSeconds, limit: w.limit, remaining: w.remaining, until }),
    };
  },
  // Trace: no X-RateLimit-* on success; on a 429 the minute and day windows.
  trace: (h) => {
    if (!h.throttled) return {};
    const out: Record<string, string> = {};
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
    return out;
  },
};

/**
 * IETF draft-ietf-httpapi-ratelimit-headers fields (structured fields):
 * `RateLimit-Policy: "minute";q=5;w=60` and `RateLimit: "minute";r=3;t=42`, one item per window.
 */
function ietf(rate: RateDecision | null, nowMs: number): Record<string, string> {
  const windows = rate?.windows ?? [];
  if (windows.length === 0) return {};
  return {
    [Headers.IetfRateLimitPolicy]: windows.map((w) => `"${w.name}";q=${w.limit};w=${w.periodSeconds}`).join(', '),
    [Headers.IetfRateLimit]: windows.map((w) => `"${w.name}";r=${w.remaining};t=${Math.max(0, seconds(w.resetAtMs - nowMs))}`).join(', '),
  };
}

export function rateLimitHeaders(profile: Profile, h: HeaderInput, nowMs: number): Record<string, string> {
  const out = styles[profile.headers.style]!(h, profile);
  if (profile.headers.standard_headers) Object.assign(out, ietf(h.rate, nowMs));
  if (h.throttled && h.rate) out[Headers.RetryAfter] = String(Math.max(1, h.rate.retryAfterSeconds));
  return out;
}
