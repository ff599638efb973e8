// Over 400 lines on purpose: one test per statement of the seed, in the seed's order, so the file reads beside it.
import { freePort, Stack, uniqueId } from '../../support/stack';
import { rawHeaderNames } from '../../support/http';
import { pool, roomInWindow, sleep } from '../../support/windows';

/**
 * Conformance of the beatpass profile with its seed (../shared/seeds/002_*.txt), through the real gateway.
 * One test per statement of the seed; the test name quotes the statement. Numbers the seed leaves open
 * (media 60, analytics 30, write 20, auth 10 per minute; 5 failed logins in 5 minutes lock for 15 minutes)
 * are the profile's, documented in config/profiles/beatpass.yaml and libs/profiles/README.md.
 *
 * Every window is one UTC-aligned minute, so a test that fills one first waits until enough of the current
 * minute remains (`roomInMinute`). Login tests run on a second gateway started with TRUSTED_PROXIES=127.0.0.1
 * and give every simulated client its own address in X-Forwarded-For, so the per-IP auth limit and the IP
 * lockout of one test never touch another's.
 */
jest.setTimeout(180_000);

const base = '/api/v1';
const Limits = { global: 300, media: 60, analytics: 30, write: 20, auth: 10 } as const;
const Lockout = { maxFailures: 5, lockoutSeconds: 900 } as const;

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

/** Waits, if needed, until at least `seconds` remain in the current UTC minute. */
const roomInMinute = (seconds: number) => roomInWindow(60, seconds * 1000, 200);

/** The end of the UTC minute that contains `ms`, in unix seconds. */
const minuteEnd = (ms: number) => Math.floor(ms / 60_000) * 60 + 60;

function rl(a: Answer): { limit: number; remaining: number; reset: number } {
  const limit = a.headers.get('x-ratelimit-limit');
  const remaining = a.headers.get('x-ratelimit-remaining');
  const reset = a.headers.get('x-ratelimit-reset');
  if (limit === null || remaining === null || reset === null) {
    throw new Error(`missing X-RateLimit-* on a ${a.status}: limit=${limit} remaining=${remaining} reset=${reset}`);
  }
  for (const v of [limit, remaining, reset]) expect(v).toMatch(/^\d+$/);
  return { limit: Number(limit), remaining: Number(remaining), reset: Number(reset) };
}

/** The seed's 429 for a rate limit: Retry-After (whole seconds) and the profile's body carrying the same number. */
function expectRateLimited(a: Answer, limit: number): number {
  expect(a.status).toBe(429);
  expect(a.headers.get('content-type')).toMatch(/^application\/json/);
  const retryAfter = Number(a.headers.get('retry-after'));
  expect(a.headers.get('retry-after')).toMatch(/^\d+$/);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
  expect(JSON.parse(a.text)).toEqual({
    error: 'rate_limit_exceeded',
    message: `Too many requests. Retry after ${retryAfter} seconds.`,
    retry_after: retryAfter,
  });
  const h = rl(a);
  expect(h.limit).toBe(limit);
  expect(h.remaining).toBe(0);
  // Retry-After is no earlier than the reset of the window that refused.
  expect(retryAfter * 1000).toBeGreaterThanOrEqual(h.reset * 1000 - Date.now() - 1500);
  return retryAfter;
}

describe('beatpass conformance (seed 002)', () => {
  let stack: Stack;
  /** A gateway that believes X-Forwarded-For from 127.0.0.1 (TRUSTED_PROXIES=127.0.0.1). */
  let trustedPort: number;
  let ipSeq = 0;
  const runTag = Math.floor(Math.random() * 200) + 20;
  /** A fresh simulated client address (TEST-NET-3), unique within this run. */
  const freshIp = () => {
    ipSeq++;
    return `203.0.${runTag}.${ipSeq}`;
  };

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'beatpass' });
    trustedPort = await freePort();
    await stack.startApp('gateway', 'gateway-trusted', { GATEWAY_PORT: String(trustedPort), TRUSTED_PROXIES: '127.0.0.1' });
  }, 180_000);

  afterAll(async () => {
    await stack?.stopProcess('gateway-trusted');
    await stack?.stop();
  });

  async function send(method: string, path: string, opts: { key?: string | null; headers?: Record<string, string>; body?: unknown; port?: number } = {}): Promise<Answer> {
    const headers: Record<string, string> = { ...(opts.key ? { authorization: `Bearer ${opts.key}` } : {}), ...(opts.headers ?? {}) };
    let body: string | undefined;
    if (typeof opts.body === 'string') {
      body = opts.body; // sent as given, with the caller's content-type
    } else if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    const res = await fetch(stack.gatewayUrl(`${base}${path}`, opts.port), { method, headers, body });
    return { status: res.status, headers: res.headers, text: await res.text() };
  }
  const get = (key: string | null, path: string, headers?: Record<string, string>) => send('GET', path, { key, headers });
  const login = (username: string, password: string, ip?: string, port = trustedPort) =>
    send('POST', '/auth/login', { body: { username, password }, headers: ip ? { 'x-forwarded-for': ip } : {}, port });

  async function client(overrides?: Record<string, number>): Promise<{ orgId: string; key: string }> {
    const c = await stack.orgWithKey('standard', uniqueId('bp'));
    if (overrides) {
      const put = await stack.admin('PUT', `/admin/orgs/${c.orgId}/limits`, overrides);
      expect(put.status).toBe(200);
    }
    return c;
  }

  const mediaPath = (i: number) => (i % 2 === 0 ? `/tracks/t-${i}/stream` : `/images/img-${i}`);
  const writes = ['/uploads', '/purchases', '/messages'];

  // ---- global limit ---------------------------------------------------------------------------------------

  it('"All API endpoints are subject to a global rate limit of 300 requests per minute per client"', async () => {
    const { key } = await client();
    const other = await client();
    await roomInMinute(45);
    const startedIn = minuteEnd(Date.now());
    const answers = await pool(Limits.global, 8, (i) => get(key, i % 2 === 0 ? '/tracks' : '/genres'));
    expect(minuteEnd(Date.now())).toBe(startedIn); // all 300 in one window
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(new Set(answers.map((a) => rl(a).limit))).toEqual(new Set([300]));
    expect(answers.map((a) => rl(a).remaining).sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i));

    // The 301st call of this client is refused on every endpoint, whatever its category...
    expectRateLimited(await get(key, '/artists'), 300);
    expectRateLimited(await get(key, '/tracks/t-1/stream'), 300);
    expectRateLimited(await send('POST', '/uploads', { key, body: {} }), 300);
    // ...while another client has its own 300.
    const fresh = await get(other.key, '/artists');
    expect(fresh.status).toBe(200);
    expect(rl(fresh)).toMatchObject({ limit: 300, remaining: 299 });
  });

  it('"Standard content endpoints (tracks, artists, albums, search, genres) are subject to the global rate limit"', async () => {
    const { key } = await client();
    await roomInMinute(5);
    const paths = ['/tracks', '/tracks/t-7', '/artists', '/albums', '/search?q=night', '/genres'];
    const answers: Answer[] = [];
    for (const p of paths) answers.push(await get(key, p));
    expect(answers.map((a) => a.status)).toEqual(paths.map(() => 200));
    // One counter for all of them: the global one, and no other.
    expect(answers.map((a) => rl(a).limit)).toEqual(paths.map(() => 300));
    expect(answers.map((a) => rl(a).remaining)).toEqual([299, 298, 297, 296, 295, 294]);
  });

  // ---- categories -------------------------------------------------------------------------------------------

  it('"Audio and image endpoints have stricter per-minute limits to prevent abuse" (media: 60/min)', async () => {
    const { key } = await client();
    await roomInMinute(30);
    const answers = await pool(Limits.media, 6, (i) => get(key, mediaPath(i)));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(answers[0]!.headers.get('content-type')).toMatch(/^audio\/mpeg/);
    expect(answers[1]!.headers.get('content-type')).toMatch(/^image\/svg\+xml/);
    expect(new Set(answers.map((a) => rl(a).limit))).toEqual(new Set([60]));
    expect(answers.map((a) => rl(a).remaining).sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i));

    expectRateLimited(await get(key, '/images/img-x'), 60);
    expectRateLimited(await get(key, '/tracks/t-x/stream'), 60);
    // Stricter than, not instead of, the global limit: general routes still pass, and the 60 counted there too.
    const general = await get(key, '/tracks');
    expect(general.status).toBe(200);
    expect(rl(general)).toMatchObject({ limit: 300, remaining: 300 - 61 });
  });

  it('"Analytics and dashboard endpoints have dedicated rate limits appropriate for their resource intensity" (analytics: 30/min)', async () => {
    const { key } = await client();
    await roomInMinute(20);
    const answers = await pool(Limits.analytics, 5, (i) => get(key, `/analytics/plays?days=${(i % 7) + 1}`));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(new Set(answers.map((a) => rl(a).limit))).toEqual(new Set([30]));
    expect(answers.map((a) => rl(a).remaining).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));

    expectRateLimited(await get(key, '/analytics/plays'), 30);
    // Dedicated: the media and general limits are untouched by analytics traffic.
    const media = await get(key, '/images/img-1');
    expect(media.status).toBe(200);
    expect(rl(media)).toMatchObject({ limit: 60, remaining: 59 });
  });

  it('"Endpoints that create or modify data (uploads, purchases, messages) have stricter limits" (write: 20/min)', async () => {
    const { key } = await client();
    await roomInMinute(20);
    const answers = await pool(Limits.write, 4, (i) => send('POST', writes[i % 3]!, { key, body: { note: `w${i}` } }));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 201));
    expect(new Set(answers.map((a) => rl(a).limit))).toEqual(new Set([20]));
    expect(answers.map((a) => rl(a).remaining).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));

    for (const path of writes) expectRateLimited(await send('POST', path, { key, body: {} }), 20);
    const read = await get(key, '/albums');
    expect(read.status).toBe(200);
    expect(rl(read)).toMatchObject({ limit: 300, remaining: 300 - 21 });
  });

  it('"Authentication endpoints have strict rate limits to prevent brute-force attacks" (auth: 10/min per client IP)', async () => {
    const ip = freshIp();
    await roomInMinute(15);
    const answers: Answer[] = [];
    // Correct credentials: the limit holds even when nothing fails (the lockout is a separate guard).
    for (let i = 0; i < Limits.auth; i++) answers.push(await login('demo', 'demo', ip));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(answers.map((a) => rl(a))).toEqual(answers.map((_, i) => ({ limit: 10, remaining: 9 - i, reset: minuteEnd(Date.now()) })));

    expectRateLimited(await login('demo', 'demo', ip), 10);
    // Per client IP: another address logs in.
    const other = await login('demo', 'demo', freshIp());
    expect(other.status).toBe(200);
    expect(rl(other)).toMatchObject({ limit: 10, remaining: 9 });
  });

  it('"The API applies the most restrictive applicable limit" — "Route-specific limits below may impose stricter thresholds on individual endpoints"', async () => {
    await roomInMinute(10);
    // A global limit below the media one: global decides for media calls too (headers and refusal).
    const lowGlobal = await client({ global: 4 });
    const m = await get(lowGlobal.key, '/images/img-1');
    expect(m.status).toBe(200);
    expect(rl(m)).toMatchObject({ limit: 4, remaining: 3 });
    for (let i = 0; i < 3; i++) expect((await get(lowGlobal.key, i === 1 ? '/tracks' : mediaPath(i))).status).toBe(200);
    expectRateLimited(await get(lowGlobal.key, '/images/img-2'), 4);

    // A media limit below the global one: media decides for media calls, global for the rest.
    const lowMedia = await client({ media: 3 });
    const media: Answer[] = [];
    for (let i = 0; i < 3; i++) media.push(await get(lowMedia.key, mediaPath(i)));
    expect(media.map((a) => [a.status, rl(a).limit, rl(a).remaining])).toEqual([
      [200, 3, 2],
      [200, 3, 1],
      [200, 3, 0],
    ]);
    expectRateLimited(await get(lowMedia.key, '/tracks/t-9/stream'), 3);
    const general = await get(lowMedia.key, '/tracks');
    expect(general.status).toBe(200);
    expect(rl(general)).toMatchObject({ limit: 300, remaining: 296 });

    // The tightest of several applicable limits is the one shown: with global at 10 and media at 5, a media call
    // shows global once global has less room left than media.
    const mixed = await client({ global: 10, media: 5 });
    for (let i = 0; i < 6; i++) expect((await get(mixed.key, '/genres')).status).toBe(200);
    const shown = await get(mixed.key, '/images/img-3');
    expect(rl(shown)).toMatchObject({ limit: 10, remaining: 3 }); // global 3 left < media 4 left
  });

  // ---- format and headers -----------------------------------------------------------------------------------

  it('"Rate limits are expressed as requests per time window" — "Window: Time period (typically 1 minute)"', async () => {
    const { key } = await client();
    const ip = freshIp();
    await roomInMinute(5);
    const expected = minuteEnd(Date.now());
    const answers = [
      await get(key, '/tracks'),
      await get(key, '/images/img-1'),
      await get(key, '/analytics/plays'),
      await send('POST', '/messages', { key, body: {} }),
      await login('demo', 'demo', ip),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 201, 200]);
    // Every category's window is the current UTC minute.
    expect(answers.map((a) => rl(a).reset)).toEqual(answers.map(() => expected));
    expect(expected % 60).toBe(0);
  });

  it('"Responses include standard rate limit headers" — X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset on every response', async () => {
    const { key } = await client({ write: 1 });
    const ip = freshIp();
    await roomInMinute(5);
    const answers: Array<[string, Answer]> = [
      ['general 200', await get(key, '/tracks/t-1')],
      ['media 200', await get(key, '/tracks/t-1/stream')],
      ['analytics 200', await get(key, '/analytics/plays')],
      ['write 201', await send('POST', '/purchases', { key, body: {} })],
      ['write 429', await send('POST', '/purchases', { key, body: {} })],
      ['upstream 404', await get(key, '/tracks/t-1', { 'x-upstream-status': '404' })],
      ['upstream 500', await get(key, '/genres', { 'x-upstream-status': '500' })],
      ['GET /me', await get(key, '/me')],
      ['GET /usage', await get(key, '/usage')],
      ['login 200', await login('demo', 'demo', ip)],
      ['login 401', await login(uniqueId('nobody'), 'wrong', ip)],
      ['missing key 401', await get(null, '/tracks', { 'x-forwarded-for': ip })],
    ];
    const missing = answers.filter(([, a]) => ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'].some((h) => a.headers.get(h) === null));
    expect(missing.map(([name, a]) => `${name} (${a.status})`)).toEqual([]);
    expect(answers.map(([name, a]) => [name, a.status])).toEqual([
      ['general 200', 200],
      ['media 200', 200],
      ['analytics 200', 200],
      ['write 201', 201],
      ['write 429', 429],
      ['upstream 404', 404],
      ['upstream 500', 500],
      ['GET /me', 200],
      ['GET /usage', 200],
      ['login 200', 200],
      ['login 401', 401],
      ['missing key 401', 401],
    ]);
    // The exact names, as the wire carries them.
    const raw = await rawHeaderNames(stack.gatewayUrl(`${base}/genres`), { authorization: `Bearer ${key}` });
    expect(raw).toEqual(expect.arrayContaining(['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']));
  });

  it('"Maximum requests allowed in the current window" — X-RateLimit-Limit is the applicable limit', async () => {
    const { key } = await client();
    const ip = freshIp();
    await roomInMinute(5);
    expect(rl(await get(key, '/search?q=x')).limit).toBe(Limits.global);
    expect(rl(await get(key, '/images/img-4')).limit).toBe(Limits.media);
    expect(rl(await get(key, '/analytics/plays')).limit).toBe(Limits.analytics);
    expect(rl(await send('POST', '/uploads', { key, body: {} })).limit).toBe(Limits.write);
    expect(rl(await login('demo', 'demo', ip)).limit).toBe(Limits.auth);
    // An org override is the maximum for that org.
    const custom = await client({ global: 42 });
    expect(rl(await get(custom.key, '/tracks')).limit).toBe(42);
  });

  it('"Number of requests remaining in the current window" — X-RateLimit-Remaining counts down and never goes below 0', async () => {
    const { key } = await client({ global: 3 });
    await roomInMinute(5);
    const answers: Answer[] = [];
    for (let i = 0; i < 5; i++) answers.push(await get(key, '/tracks'));
    expect(answers.map((a) => [a.status, rl(a).remaining])).toEqual([
      [200, 2],
      [200, 1],
      [200, 0],
      [429, 0],
      [429, 0],
    ]);
    // /me and /usage show where the client stands without counting.
    const me = await get(key, '/me');
    expect(me.status).toBe(200);
    expect(rl(me)).toMatchObject({ limit: 3, remaining: 0 });
  });

  it('"Unix timestamp when the rate limit window resets" — X-RateLimit-Reset is unix seconds at the end of the current minute', async () => {
    const { key } = await client();
    await roomInMinute(3);
    const before = Date.now();
    const a = await get(key, '/tracks');
    const after = Date.now();
    const { reset } = rl(a);
    expect(a.headers.get('x-ratelimit-reset')).toMatch(/^\d{10}$/); // seconds, not milliseconds
    expect(reset).toBe(minuteEnd(before));
    expect(reset).toBe(minuteEnd(after));
    expect(reset * 1000).toBeGreaterThan(after);
    expect(reset * 1000 - before).toBeLessThanOrEqual(60_000);
  });

  // ---- exceeding --------------------------------------------------------------------------------------------

  it('"When Limits Are Exceeded" — 429 Too Many Requests with Retry-After, the limit headers and a JSON body; nothing is forwarded', async () => {
    const { key } = await client({ write: 2 });
    await roomInMinute(5);
    expect((await send('POST', '/uploads', { key, body: {} })).status).toBe(201);
    expect((await send('POST', '/uploads', { key, body: {} })).status).toBe(201);
    // Even an upstream that would fail is not asked: the refusal is the gateway's own.
    const refused = await send('POST', '/uploads', { key, body: {}, headers: { 'x-upstream-status': '503' } });
    const retryAfter = expectRateLimited(refused, 2);
    // Retry-After is the time left until the refusing window resets (whole seconds, at least 1).
    const untilReset = Math.max(1, Math.ceil((rl(refused).reset * 1000 - Date.now()) / 1000));
    expect(Math.abs(retryAfter - untilReset)).toBeLessThanOrEqual(1);
    // A refused call counts in no window: the global one shows only the two admitted writes.
    const read = await get(key, '/tracks');
    expect(rl(read)).toMatchObject({ limit: 300, remaining: 297 });
  });

  it('"Check the Retry-After header — Wait the specified duration": after Retry-After seconds the call is admitted again', async () => {
    const { key } = await client({ analytics: 1 });
    await roomInMinute(2);
    expect((await get(key, '/analytics/plays')).status).toBe(200);
    const refused = await get(key, '/analytics/plays');
    const retryAfter = expectRateLimited(refused, 1);
    const oldReset = rl(refused).reset;
    // "Don't retry immediately": an immediate retry is refused again and does not move the wait.
    const again = await get(key, '/analytics/plays');
    expect(again.status).toBe(429);
    expect(Number(again.headers.get('retry-after'))).toBeLessThanOrEqual(retryAfter);

    await sleep(retryAfter * 1000);
    const admitted = await get(key, '/analytics/plays');
    expect(admitted.status).toBe(200);
    expect(rl(admitted)).toEqual({ limit: 1, remaining: 0, reset: oldReset + 60 });
  });

  // ---- lockout ----------------------------------------------------------------------------------------------

  it('"Excessive failed attempts will result in temporary lockout" — per client IP: 5 failed logins lock the IP for 900 s, even for correct credentials', async () => {
    const ip = freshIp();
    await roomInMinute(10);
    // Five different usernames: only the address ties these failures together.
    const failures: Answer[] = [];
    for (let i = 0; i < Lockout.maxFailures - 1; i++) failures.push(await login(uniqueId('guess'), 'wrong', ip));
    // Four failures are not yet excessive: a login from that address still reaches the login endpoint.
    expect((await login('demo', 'demo', ip)).status).toBe(200);
    failures.push(await login(uniqueId('guess'), 'wrong', ip));
    expect(failures.map((a) => a.status)).toEqual([401, 401, 401, 401, 401]);
    expect(JSON.parse(failures[0]!.text)).toEqual({ error: 'invalid_credentials', message: 'Invalid username or password.' });

    const locked = await login('demo', 'demo', ip);
    expectLockedOut(locked);
    // Only that address: demo/demo still works from elsewhere.
    expect((await login('demo', 'demo', freshIp())).status).toBe(200);
  });

  it('"Excessive failed attempts will result in temporary lockout" — per account: 5 failed logins for one username lock it for 900 s from every IP', async () => {
    const victim = uniqueId('victim');
    // Five different addresses: only the username ties these failures together.
    const failures: Answer[] = [];
    for (let i = 0; i < Lockout.maxFailures; i++) failures.push(await login(i % 2 === 0 ? victim : victim.toUpperCase(), 'wrong', freshIp()));
    expect(failures.map((a) => a.status)).toEqual([401, 401, 401, 401, 401]);

    const ip = freshIp();
    expectLockedOut(await login(victim, 'whatever', ip));
    // Only that account: the same fresh address may still try another username (and reaches the upstream).
    expect((await login(uniqueId('someone-else'), 'wrong', ip)).status).toBe(401);
    expect((await login('demo', 'demo', ip)).status).toBe(200);
  });

  // Issue 18: the account was read from JSON bodies only, while the upstream also takes form bodies: an attacker
  // guessed one account's password without end by posting forms.
  it('per account, whatever the body type: 5 failed logins posted as forms lock the username, for JSON logins too', async () => {
    const victim = uniqueId('formvictim');
    const form = (username: string, password: string, ip: string) =>
      send('POST', '/auth/login', { body: new URLSearchParams({ username, password }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip }, port: trustedPort });
    const failures: Answer[] = [];
    for (let i = 0; i < Lockout.maxFailures; i++) failures.push(await form(victim, 'wrong', freshIp()));
    expect(failures.map((a) => a.status)).toEqual([401, 401, 401, 401, 401]);
    expectLockedOut(await form(victim, 'whatever', freshIp()));
    expectLockedOut(await login(victim, 'whatever', freshIp()));
  });

  function expectLockedOut(a: Answer): void {
    expect(a.status).toBe(429);
    const retryAfter = Number(a.headers.get('retry-after'));
    expect(a.headers.get('retry-after')).toMatch(/^\d+$/);
    // The documented lockout: 900 seconds from the fifth failure.
    expect(retryAfter).toBeGreaterThan(Lockout.lockoutSeconds - 30);
    expect(retryAfter).toBeLessThanOrEqual(Lockout.lockoutSeconds);
    expect(JSON.parse(a.text)).toEqual({
      error: 'too_many_failed_attempts',
      message: `Too many failed login attempts. Try again in ${retryAfter} seconds.`,
      retry_after: retryAfter,
    });
    // "Responses include standard rate limit headers": this one too (the address's auth window, not counted).
    expect(rl(a)).toMatchObject({ limit: Limits.auth });
  }

  // ---- client IP ----------------------------------------------------------------------------------------------

  it('a spoofed X-Forwarded-For from an untrusted peer is ignored: two requests with different XFF from 127.0.0.1 count against the same IP limit', async () => {
    await roomInMinute(5);
    // The main gateway trusts no proxy; the auth limit is per client IP.
    const first = await login('demo', 'demo', freshIp(), stack.ports.gateway);
    const second = await login('demo', 'demo', freshIp(), stack.ports.gateway);
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(rl(first).limit).toBe(Limits.auth);
    expect(rl(second).remaining).toBe(rl(first).remaining - 1);
  });

  it('with TRUSTED_PROXIES=127.0.0.1 the X-Forwarded-For client IP is used', async () => {
    await roomInMinute(5);
    const a = freshIp();
    const b = freshIp();
    const a1 = await login('demo', 'demo', a);
    const b1 = await login('demo', 'demo', b);
    const a2 = await login('demo', 'demo', `${a}`);
    // The client is the right-most untrusted hop: a forged entry to its left buys nothing.
    const a3 = await login('demo', 'demo', `${freshIp()}, ${a}`);
    expect([a1, b1, a2, a3].map((x) => x.status)).toEqual([200, 200, 200, 200]);
    expect([a1, b1, a2, a3].map((x) => rl(x).remaining)).toEqual([9, 9, 8, 7]);
  });
});

/**
 * 100 parallel calls spread over three gateways that share Redis: the shared counters admit exactly the limit.
 */
describe('beatpass conformance: several gateway instances sharing Redis', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'beatpass', extraGateways: 2, env: { REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' } });
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('"300 requests/minute per client" holds across instances: 100 parallel requests through 3 gateway instances sharing the real Redis admit exactly the limit', async () => {
    const { orgId, key } = await stack.orgWithKey('standard', uniqueId('bp-redis'));
    expect((await stack.admin('PUT', `/admin/orgs/${orgId}/limits`, { global: 25 })).status).toBe(200);
    const ports = [stack.ports.gateway, ...stack.extraGatewayPorts];
    expect(ports).toHaveLength(3);
    await roomInMinute(5);
    const startedIn = minuteEnd(Date.now());
    const answers = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const res = await fetch(stack.gatewayUrl(`${base}/tracks`, ports[i % 3]), { headers: { authorization: `Bearer ${key}` } });
        await res.arrayBuffer();
        return { status: res.status, remaining: res.headers.get('x-ratelimit-remaining'), port: ports[i % 3] };
      }),
    );
    expect(minuteEnd(Date.now())).toBe(startedIn);
    const admitted = answers.filter((a) => a.status === 200);
    expect(admitted).toHaveLength(25);
    expect(answers.filter((a) => a.status === 429)).toHaveLength(75);
    // One shared counter: the admitted calls saw each remaining value exactly once, whichever instance served them.
    expect(admitted.map((a) => Number(a.remaining)).sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, i) => i));
    // Every instance took part.
    expect(new Set(answers.map((a) => a.port)).size).toBe(3);
  });
});
