import { freePort, Stack, uniqueId } from '../../support/stack';
import { rawHeaderNames } from '../../support/http';
import { pool, roomInWindow, sleep } from '../../support/windows';

/**
 * Conformance of the trakt profile with its seed (../shared/seeds/003_*.txt) and SPEC §3's trakt row, through the
 * real gateway. One test per statement; the test name quotes it.
 *
 * Identity (SPEC §3): the application key goes in `trakt-api-key`; a user is optional, as
 * `Authorization: Bearer <user token>`, where a user token is a key created with `{"kind":"user"}` in the same
 * org as the application key (libs/persistence/src/authenticator.ts). Calls with a user token count per user,
 * calls without one per application.
 *
 * The seed's own numbers are used where reaching them is cheap (1 POST per second; 1000 GETs per 5 minutes);
 * 429 mechanics are tested with small admin overrides (PUT /admin/orgs/:org/limits). 300 s windows are
 * aligned to the UTC clock, so a test that fills one first waits until enough of the current window remains.
 */
jest.setTimeout(240_000);

const UnauthorizedBody = '{"error":"invalid_api_key","error_description":"Missing or invalid trakt-api-key or user token."}';

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

interface XRatelimit {
  name: string;
  period: number;
  limit: number;
  remaining: number;
  until: string;
}

/** The end of the UTC window of `periodSeconds` that contains `ms`, as Trakt writes it: ISO-8601 UTC, whole seconds. */
function windowEndIso(ms: number, periodSeconds: number): string {
  const periodMs = periodSeconds * 1000;
  return new Date(Math.floor(ms / periodMs) * periodMs + periodMs).toISOString().replace(/\.000Z$/, 'Z');
}

/**
 * The seed's 429 from the API rate limiter: `X-Ratelimit` is exactly `{"name","period","limit","remaining","until"}`
 * in that order (until: ISO-8601 UTC, whole seconds, the end of the bucket's window), and `Retry-After` is the
 * whole seconds until then (at least 1). Returns the parsed header.
 */
function expectTraktRateLimited(a: Answer, bucket: { name: string; period: number; limit: number }, sentAtMs: number): XRatelimit {
  expect(a.status).toBe(429);
  const raw = a.headers.get('x-ratelimit');
  expect(raw).not.toBeNull();
  const x = JSON.parse(raw!) as XRatelimit;
  expect(Object.keys(x)).toEqual(['name', 'period', 'limit', 'remaining', 'until']);
  expect(x).toEqual({ ...bucket, remaining: 0, until: x.until });
  expect(x.until).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  expect([windowEndIso(sentAtMs, bucket.period), windowEndIso(Date.now(), bucket.period)]).toContain(x.until);
  expect(raw).toBe(JSON.stringify(x)); // the exact wire form: compact JSON, the seed's key order

  const retryAfter = a.headers.get('retry-after');
  expect(retryAfter).toMatch(/^\d+$/);
  const seconds = Number(retryAfter);
  expect(seconds).toBeGreaterThanOrEqual(1);
  // Wait at least until the bucket resets, and not (much) longer.
  const untilReset = Math.max(1, Math.ceil((Date.parse(x.until) - Date.now()) / 1000));
  expect(Math.abs(seconds - untilReset)).toBeLessThanOrEqual(1);
  expect(seconds).toBeLessThanOrEqual(bucket.period);

  expect(a.headers.get('content-type')).toMatch(/^application\/json/);
  expect(JSON.parse(a.text)).toEqual({ error: 'rate_limit_exceeded', error_description: `Rate Limit Exceeded. Retry after ${seconds} seconds.` });
  return x;
}

describe('trakt conformance (seed 003)', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trakt' });
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
  });

  async function send(
    method: string,
    path: string,
    opts: { app?: string | null; user?: string | null; headers?: Record<string, string>; body?: unknown; port?: number } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = {
      ...(opts.app ? { 'trakt-api-key': opts.app } : {}),
      ...(opts.user ? { authorization: `Bearer ${opts.user}` } : {}),
      ...(opts.headers ?? {}),
    };
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    const res = await fetch(stack.gatewayUrl(path, opts.port), { method, headers, body });
    return { status: res.status, headers: res.headers, text: await res.text() };
  }

  /** An org with one application key (trakt-api-key), optionally with limit overrides. */
  async function application(overrides?: Record<string, number>): Promise<{ orgId: string; app: string }> {
    const { orgId, key } = await stack.orgWithKey('standard', uniqueId('trakt'));
    if (overrides) expect((await stack.admin('PUT', `/admin/orgs/${orgId}/limits`, overrides)).status).toBe(200);
    return { orgId, app: key };
  }

  /** A user token of the org: POST /admin/orgs/:org/keys {"kind":"user"}. */
  async function userToken(orgId: string): Promise<string> {
    const res = await stack.admin<{ key: string; kind: string }>('POST', `/admin/orgs/${orgId}/keys`, { name: 'user', kind: 'user' });
    expect(res.status).toBe(201);
    expect(res.body.kind).toBe('user');
    return res.body.key;
  }

  // ---- identity (SPEC §3) -------------------------------------------------------------------------------------

  it('identity: the application key goes in `trakt-api-key`; without a valid one the call is refused with 401', async () => {
    const { orgId, app } = await application();
    const user = await userToken(orgId);

    const ok = await send('GET', '/shows/trending', { app });
    expect(ok.status).toBe(200);
    expect(Array.isArray(JSON.parse(ok.text))).toBe(true);
    // No X-Ratelimit on success: the seed describes it on rate-limit responses.
    expect(ok.headers.get('x-ratelimit')).toBeNull();

    const refused: Array<[string, Answer]> = [
      ['no key', await send('GET', '/shows/trending')],
      ['unknown key', await send('GET', '/shows/trending', { app: 'tg_live_0000000000000000000000000000000000000000' })],
      ['application key as Bearer only', await send('GET', '/shows/trending', { user: app })],
      ['user token as trakt-api-key', await send('GET', '/shows/trending', { app: user })],
    ];
    for (const [why, a] of refused) {
      expect([why, a.status, a.text]).toEqual([why, 401, UnauthorizedBody]);
    }
  });

  it('identity: an optional user in `Authorization: Bearer <user token>`, valid only with an application key of the same org', async () => {
    const { orgId, app } = await application();
    const user = await userToken(orgId);
    const other = await application();
    const otherUser = await userToken(other.orgId);

    expect((await send('GET', '/shows/1', { app, user })).status).toBe(200);
    expect((await send('POST', '/checkin', { app, user, body: { movie: { ids: { trakt: 1 } } } })).status).toBe(201);
    // Writes act for a user: with the application key alone they are refused, so none escapes AUTHED_API_POST_LIMIT.
    const anonymousWrite = await send('POST', '/checkin', { app, body: { movie: { ids: { trakt: 1 } } } });
    expect([anonymousWrite.status, anonymousWrite.text]).toEqual([401, UnauthorizedBody]);
    expect((await send('DELETE', '/checkin', { app })).status).toBe(401);

    const refused: Array<[string, Answer]> = [
      ['unknown user token', await send('GET', '/shows/1', { app, user: 'tg_user_0000000000000000000000000000000000000000' })],
      ["another org's user token", await send('GET', '/shows/1', { app, user: otherUser })],
      ['an application key as the user token', await send('GET', '/shows/1', { app, user: other.app })],
      ['a user token without an application key', await send('GET', '/shows/1', { user })],
    ];
    for (const [why, a] of refused) {
      expect([why, a.status, a.text]).toEqual([why, 401, UnauthorizedBody]);
    }
  });

  // ---- 429 and its headers ------------------------------------------------------------------------------------

  it('"When a request is rate limited, the API returns a 429 Too Many Requests response"', async () => {
    const { app } = await application({ UNAUTHED_API_GET_LIMIT: 2 });
    await roomInWindow(300, 5000, 50);
    expect((await send('GET', '/shows/trending', { app })).status).toBe(200);
    expect((await send('GET', '/movies/tron', { app })).status).toBe(200);
    const sentAt = Date.now();
    const refused = await send('GET', '/search/movie?query=tron', { app });
    expect(refused.status).toBe(429);
    expectTraktRateLimited(refused, { name: 'UNAUTHED_API_GET_LIMIT', period: 300, limit: 2 }, sentAt);
    // Rate limited, not merely failed: it stays refused, and the upstream is not asked (its forced status never shows).
    const again = await send('GET', '/shows/trending', { app, headers: { 'x-upstream-status': '500' } });
    expect(again.status).toBe(429);
  });

  it('"Most API rate limit responses include X-Ratelimit and Retry-After" — X-Ratelimit is {"name","period","limit","remaining","until"} with until in ISO-8601 UTC', async () => {
    const { orgId, app } = await application({ AUTHED_API_GET_LIMIT: 1 });
    const user = await userToken(orgId);
    await roomInWindow(300, 5000, 50);
    expect((await send('GET', '/shows/trending', { app, user })).status).toBe(200);
    const sentAt = Date.now();
    const refused = await send('GET', '/shows/trending', { app, user });
    const x = expectTraktRateLimited(refused, { name: 'AUTHED_API_GET_LIMIT', period: 300, limit: 1 }, sentAt);
    // The seed's example shape, value for value: a 5-minute bucket ends on a multiple of 5 minutes.
    expect(Date.parse(x.until) % 300_000).toBe(0);
    // Exact names on the wire.
    const raw = await rawHeaderNames(stack.gatewayUrl('/shows/trending'), { 'trakt-api-key': app, authorization: `Bearer ${user}` });
    expect(raw).toEqual(expect.arrayContaining(['X-Ratelimit', 'Retry-After']));
  });

  it('"Retry-After: Number of seconds to wait before retrying the request" — "retry your API call after the number of seconds specified by Retry-After" succeeds', async () => {
    const { orgId, app } = await application();
    const user = await userToken(orgId);
    const answer = await twoInOneSecond(() => send('POST', '/checkin', { app, user, body: {} }), () => send('POST', '/checkin', { app, user, body: {} }));
    expect(answer.first.status).toBe(201);
    const x = expectTraktRateLimited(answer.second, { name: 'AUTHED_API_POST_LIMIT', period: 1, limit: 1 }, answer.sentAt);
    const retryAfter = Number(answer.second.headers.get('retry-after'));
    expect(retryAfter).toBe(1);
    await sleep(retryAfter * 1000);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(x.until));
    expect((await send('POST', '/checkin', { app, user, body: {} })).status).toBe(201);
  });

  // ---- the three buckets --------------------------------------------------------------------------------------

  it('"There are separate limits for authed (user level) and unauthed (application level) calls"', async () => {
    const { orgId, app } = await application({ UNAUTHED_API_GET_LIMIT: 2, AUTHED_API_GET_LIMIT: 2 });
    const alice = await userToken(orgId);
    const bob = await userToken(orgId);
    await roomInWindow(300, 5000, 50);

    // The application's own GETs fill only the application bucket...
    for (let i = 0; i < 2; i++) expect((await send('GET', '/shows/trending', { app })).status).toBe(200);
    let at = Date.now();
    expectTraktRateLimited(await send('GET', '/shows/trending', { app }), { name: 'UNAUTHED_API_GET_LIMIT', period: 300, limit: 2 }, at);
    // ...so its users still have theirs, one bucket per user.
    for (let i = 0; i < 2; i++) expect((await send('GET', '/shows/trending', { app, user: alice })).status).toBe(200);
    at = Date.now();
    expectTraktRateLimited(await send('GET', '/shows/trending', { app, user: alice }), { name: 'AUTHED_API_GET_LIMIT', period: 300, limit: 2 }, at);
    expect((await send('GET', '/shows/trending', { app, user: bob })).status).toBe(200);
    // Authed calls did not count against the application: it is still exactly full, not over.
    at = Date.now();
    expectTraktRateLimited(await send('GET', '/shows/trending', { app }), { name: 'UNAUTHED_API_GET_LIMIT', period: 300, limit: 2 }, at);
  });

  it('"AUTHED_API_POST_LIMIT | Authenticated user | POST, PUT, DELETE | all | 1 call per second"', async () => {
    const { orgId, app } = await application();
    const alice = await userToken(orgId);
    const bob = await userToken(orgId);
    const bucket = { name: 'AUTHED_API_POST_LIMIT', period: 1, limit: 1 };
    // All within one clock second (retried when a second boundary falls in between).
    const r = await inOneSecond(async () => ({
      post: await send('POST', '/sync/history', { app, user: alice, body: { movies: [{ ids: { trakt: 1 } }] } }),
      secondPost: await send('POST', '/checkin', { app, user: alice, body: {} }),
      del: await send('DELETE', '/checkin', { app, user: alice }),
      otherUser: await send('POST', '/checkin', { app, user: bob, body: {} }),
      get: await send('GET', '/shows/trending', { app, user: alice }),
    }));
    expect(r.value.post.status).toBe(201);
    // The second write of the same user in that second (POST or DELETE, any route) is refused...
    expectTraktRateLimited(r.value.secondPost, bucket, r.sentAt);
    expectTraktRateLimited(r.value.del, bucket, r.sentAt);
    // ...per user: another user of the same application writes, and GETs are not in this bucket.
    expect(r.value.otherUser.status).toBe(201);
    expect(r.value.get.status).toBe(200);
    // The next second admits the next write (DELETE /checkin answers 204).
    await sleep(1000 - (Date.now() % 1000) + 20);
    expect((await send('DELETE', '/checkin', { app, user: alice })).status).toBe(204);
  });

  it('"AUTHED_API_GET_LIMIT | Authenticated user | GET | all | 1000 calls every 5 minutes"', async () => {
    const { orgId, app } = await application();
    const alice = await userToken(orgId);
    const bob = await userToken(orgId);
    await roomInWindow(300, 90_000, 50);
    const sentAt = Date.now();
    const paths = ['/shows/trending', '/shows/breaking-bad', '/movies/tron', '/search/show?query=x'];
    const answers = await pool(1000, 8, (i) => send('GET', paths[i % paths.length]!, { app, user: alice }));
    expect(windowEndIso(Date.now(), 300)).toBe(windowEndIso(sentAt, 300)); // one window
    expect(answers.filter((a) => a.status !== 200).map((a) => a.status)).toEqual([]);

    expectTraktRateLimited(await send('GET', '/shows/trending', { app, user: alice }), { name: 'AUTHED_API_GET_LIMIT', period: 300, limit: 1000 }, sentAt);
    // Per user: another user of the same application, and the application's own unauthed calls, go on.
    expect((await send('GET', '/shows/trending', { app, user: bob })).status).toBe(200);
    expect((await send('GET', '/shows/trending', { app })).status).toBe(200);
    // GET only: the user's writes are limited by the POST bucket alone.
    expect((await send('POST', '/checkin', { app, user: alice, body: {} })).status).toBe(201);
  });

  it('"UNAUTHED_API_GET_LIMIT | Application | GET | all | 1000 calls every 5 minutes"', async () => {
    const { orgId, app } = await application();
    const other = await application();
    const user = await userToken(orgId);
    await roomInWindow(300, 90_000, 50);
    const sentAt = Date.now();
    const paths = ['/shows/trending', '/shows/42', '/movies/the-matrix', '/search/movie,show?query=y'];
    const answers = await pool(1000, 8, (i) => send('GET', paths[i % paths.length]!, { app }));
    expect(windowEndIso(Date.now(), 300)).toBe(windowEndIso(sentAt, 300));
    expect(answers.filter((a) => a.status !== 200).map((a) => a.status)).toEqual([]);

    expectTraktRateLimited(await send('GET', '/movies/tron', { app }), { name: 'UNAUTHED_API_GET_LIMIT', period: 300, limit: 1000 }, sentAt);
    // Per application: another application goes on, and so do this application's authed (user) calls.
    expect((await send('GET', '/movies/tron', { app: other.app })).status).toBe(200);
    expect((await send('GET', '/movies/tron', { app, user })).status).toBe(200);
  });

  // ---- 429s from before the rate limiter ------------------------------------------------------------------------

  it('"In some cases, a 429 may be returned before the request reaches the API rate limiter, for example by security or abuse-prevention systems" — the invalid-key throttle answers 429 with Retry-After', async () => {
    // Its own gateway: the throttle counts per gateway instance and per client IP, and would refuse every other
    // test's calls from 127.0.0.1 for a minute.
    const port = await freePort();
    await stack.startApp('gateway', 'gateway-throttle', { GATEWAY_PORT: String(port) });
    try {
      const { app } = await application();
      await roomInWindow(60, 5000, 50);
      for (let i = 0; i < 20; i++) {
        const wrong = await send('GET', '/shows/trending', { app: `tg_live_wrong${i}`, port });
        expect(wrong.status).toBe(401);
      }
      // Now even a valid application key from that address is refused before it is looked at.
      const refused = await send('GET', '/shows/trending', { app, port });
      expect(refused.status).toBe(429);
      const retryAfter = refused.headers.get('retry-after');
      expect(retryAfter).toMatch(/^\d+$/);
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(retryAfter)).toBeLessThanOrEqual(60);
      expect(JSON.parse(refused.text)).toEqual({
        error: 'rate_limit_exceeded',
        error_description: `Too many requests with an invalid key. Retry after ${retryAfter} seconds.`,
      });
      // "These responses may not include the X-Ratelimit header": this one does not, as it names no API bucket.
      expect(refused.headers.get('x-ratelimit')).toBeNull();
      // The API rate limiter's buckets are untouched: the same key through another gateway is served.
      expect((await send('GET', '/shows/trending', { app })).status).toBe(200);
    } finally {
      await stack.stopProcess('gateway-throttle');
    }
  });

  /** Runs `fn` starting at the top of a clock second; retries (up to 5 times) when it did not finish in that second. */
  async function inOneSecond<T>(fn: () => Promise<T>): Promise<{ value: T; sentAt: number }> {
    for (let attempt = 0; ; attempt++) {
      await sleep(1000 - (Date.now() % 1000) + 5);
      const sentAt = Date.now();
      const value = await fn();
      if (Math.floor(Date.now() / 1000) === Math.floor(sentAt / 1000) || attempt === 4) return { value, sentAt };
      // A second boundary fell inside: the next second's bucket may have admitted a later call. Let this
      // second's writes age out and try again.
    }
  }

  async function twoInOneSecond(first: () => Promise<Answer>, second: () => Promise<Answer>): Promise<{ first: Answer; second: Answer; sentAt: number }> {
    const r = await inOneSecond(async () => ({ first: await first(), second: await second() }));
    return { ...r.value, sentAt: r.sentAt };
  }
});
