import { loadProfile } from '@tollgate/profiles';
import { MemoryCounterStore } from '@tollgate/rate-limit';
import { rateLimitHeaders } from './header-styles';

/** The IETF draft fields (draft-ietf-httpapi-ratelimit-headers), sent only when a profile switches them on. */
describe('IETF RateLimit-Policy / RateLimit fields', () => {
  const now = Date.parse('2026-11-23T10:00:15Z');
  const rate = new MemoryCounterStore().consume(
    [
      { subjectKey: 'k:minute', rule: { name: 'minute', periodSeconds: 60, limit: 5 } },
      { subjectKey: 'k:day', rule: { name: 'day', periodSeconds: 86_400, limit: 50 } },
    ],
    now,
  );
  const trackyard = loadProfile('trackyard');

  it('given standard_headers on, when a call is admitted, then each window is a policy item and a remaining/reset item', () => {
    const on = { ...trackyard, headers: { ...trackyard.headers, standard_headers: true } };
    const h = rateLimitHeaders(on, { rate, credits: 10, authenticated: true, throttled: false }, now);
    expect(h['RateLimit-Policy']).toBe('"minute";q=5;w=60, "day";q=50;w=86400');
    expect(h['RateLimit']).toBe('"minute";r=4;t=45, "day";r=49;t=50385');
    expect(h['X-RateLimit-Limit']).toBe('5');
  });

  it('given standard_headers off (the shipped default), then only the seed headers are sent', () => {
    const h = rateLimitHeaders(trackyard, { rate, credits: 10, authenticated: true, throttled: false }, now);
    expect(Object.keys(h).some((k) => k.startsWith('RateLimit'))).toBe(false);
    expect(h['X-Credits-Remaining']).toBe('10');
  });
});
