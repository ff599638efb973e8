import { eventually, json, Stack, uniqueId } from '../support/stack';

/** One paid call end to end: gateway -> upstream -> Kafka -> metering -> ledger -> /me and /usage. */
describe('walking skeleton (trackyard)', () => {
  let stack: Stack;
  const base = '/api/external/v1';

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  const search = (key: string | null, body: unknown = { query: 'upbeat music' }) =>
    fetch(stack.gatewayUrl(`${base}/search`), {
      method: 'POST',
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('charges one credit for a successful search: /me and /usage agree within 2 seconds, and the ledger once its lease ends', async () => {
    const { orgId, key } = await stack.orgWithKey('starter', uniqueId('skeleton'));

    const res = await search(key);
    expect(res.status).toBe(200);
    expect((await json(res)).results.length).toBeGreaterThan(0);
    expect(res.headers.get('x-ratelimit-limit')).toBe('10');
    expect(res.headers.get('x-ratelimit-remaining')).toBe('9');
    expect(res.headers.get('x-ratelimit-limit-daily')).toBe('1000');
    expect(res.headers.get('x-ratelimit-remaining-daily')).toBe('999');
    expect(res.headers.get('x-credits-remaining')).toBe('499');

    const auth = { authorization: `Bearer ${key}` };
    const usage = await eventually(async () => {
      const u = await json(await fetch(stack.gatewayUrl(`${base}/usage`), { headers: auth }));
      return u.total_count === 1 ? u : null;
    }, 2000, 50);
    expect(usage.usage[0]).toMatchObject({ endpoint: '/search', status_code: 200, credits_consumed: 1, cost_reason: 'charged' });

    const me = await json(await fetch(stack.gatewayUrl(`${base}/me`), { headers: auth }));
    expect(me).toEqual({
      tier: 'starter',
      credits_remaining: 499,
      monthly_allowance: 500,
      rate_limit: { requests_per_minute: 10, requests_per_day: 1000 },
      limits: expect.any(Array),
    });

    // The gateway spent the call from a lease: a block of 8 credits held for it (one `lease` entry). The lease
    // still holds 7 the org has not spent, so the org shows 499 while the ledger's own balance is 492; when the
    // gateway stops drawing from it (5 s after it was granted) the 7 come back with a `release` entry.
    const org = await stack.admin<{ balance: number; held_by_gateways: number }>('GET', `/admin/orgs/${orgId}`);
    expect(org.body).toMatchObject({ balance: 499, held_by_gateways: 7 });
    type Entry = { type: string; amount: number; balance_after: number; seq: number; detail: Record<string, unknown> };
    const ended = await eventually(async () => {
      const entries = (await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${orgId}/ledger?limit=500`)).body.entries;
      return entries.length === 3 ? entries : null;
    }, 15_000, 250);
    expect(ended.map((e) => [e.type, e.amount])).toEqual([['grant', 500], ['lease', -8], ['release', 7]]);
    expect(ended.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(ended[1]!.detail).toMatchObject({ size: 8, gateway: expect.any(String) });
    expect(ended[2]!.detail).toMatchObject({ lease_id: ended[1]!.detail.lease_id, drawn: 1 });
    expect(ended[2]!.balance_after).toBe(499);
    expect((await stack.admin<{ balance: number; held_by_gateways: number }>('GET', `/admin/orgs/${orgId}`)).body).toMatchObject({ balance: 499, held_by_gateways: 0 });
  }, 30_000);

  it('answers 401 JSON without a key or with a wrong one, and charges nothing', async () => {
    const missing = await search(null);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('content-type')).toMatch(/application\/json/);
    expect(await json(missing)).toHaveProperty('error');
    const wrong = await search('tg_live_not-a-real-key');
    expect(wrong.status).toBe(401);
  });

  it('answers 404 JSON for an unknown route', async () => {
    const res = await fetch(stack.gatewayUrl(`${base}/no-such-route`));
    expect(res.status).toBe(404);
    expect(await json(res)).toHaveProperty('error');
  });

  it('does not charge a call the upstream answers with 400', async () => {
    const { key } = await stack.orgWithKey('starter', uniqueId('bad-query'));
    const res = await search(key, { filters: {} });
    expect(res.status).toBe(400);
    const auth = { authorization: `Bearer ${key}` };
    const usage = await eventually(async () => {
      const u = await json(await fetch(stack.gatewayUrl(`${base}/usage`), { headers: auth }));
      return u.total_count === 1 ? u : null;
    });
    expect(usage.usage[0]).toMatchObject({ status_code: 400, credits_consumed: 0, cost_reason: 'free_status' });
    const me = await json(await fetch(stack.gatewayUrl(`${base}/me`), { headers: auth }));
    expect(me.credits_remaining).toBe(500);
  });

  it('rejects a malformed admin body with a 400 that names the field, and writes nothing', async () => {
    const id = uniqueId('badbody');
    const res = await stack.admin<{ fields: Array<{ field: string }> }>('POST', '/admin/orgs', { id, name: 'x' });
    expect(res.status).toBe(400);
    expect(res.body.fields.map((f) => f.field)).toContain('plan');
    expect((await stack.admin('GET', `/admin/orgs/${id}`)).status).toBe(404);
  });

  it('guards the admin API with the admin token', async () => {
    const res = await fetch(`http://127.0.0.1:${stack.ports.metering}/admin/orgs/anything`, { headers: { authorization: 'Bearer wrong' } });
    expect(res.status).toBe(401);
  });

  it('serves OpenAPI documents generated from the code on the gateway, the query service and the admin API', async () => {
    const gateway = await json(await fetch(stack.gatewayUrl('/docs/openapi.json')));
    expect(Object.keys(gateway.paths)).toEqual(expect.arrayContaining([`${base}/search`, `${base}/download-track`, `${base}/me`, `${base}/usage`]));
    const query = await json(await fetch(`http://127.0.0.1:${stack.ports.query}/docs/openapi.json`));
    expect(Object.keys(query.paths)).toEqual(expect.arrayContaining([`${base}/me`, `${base}/usage`]));
    const admin = await json(await fetch(`http://127.0.0.1:${stack.ports.metering}/docs/openapi.json`));
    expect(Object.keys(admin.paths)).toEqual(expect.arrayContaining(['/admin/orgs', '/admin/orgs/{org}/credits', '/admin/orgs/{org}/ledger']));
  });

  it('serves health and Prometheus metrics on every app', async () => {
    for (const port of [stack.ports.gateway, stack.ports.metering, stack.ports.query, stack.ports.upstream]) {
      expect((await fetch(`http://127.0.0.1:${port}/health/live`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/health/ready`)).status).toBe(200);
    }
    const metrics = await (await fetch(`http://127.0.0.1:${stack.ports.gateway}/metrics`)).text();
    expect(metrics).toMatch(/tollgate_/);
  });
});
