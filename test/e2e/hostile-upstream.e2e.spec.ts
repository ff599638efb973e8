import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { eventually, freePort, json, Stack, uniqueId } from '../support/stack';

/**
 * Issue 12: what a paid call does when the upstream or the client misbehaves, through a real gateway (trace
 * profile, strict) in front of an upstream written for the test:
 * - it compresses whatever the client asked for (as nginx, Express `compression` or a CDN do);
 * - it can send a body that claims gzip and isn't;
 * - it can be slow, so the client gives up first.
 * And what it does when metering (its hold service) is down.
 */
describe('hostile upstreams, departed clients and a missing metering (trace, strict)', () => {
  let stack: Stack;
  let upstream: Server;
  let gatewayPort: number;
  let requestedEncodings: Array<string | undefined> = [];

  const companies = (n: number, prefix: string) => ({ data: Array.from({ length: n }, (_, i) => ({ id: `c_${prefix}_${i}`, name: `Co ${i}` })), next_cursor: null });

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      requestedEncodings.push(req.headers['accept-encoding'] as string | undefined);
      const url = new URL(req.url ?? '/', 'http://x');
      const send = (body: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        res.end(gzipSync(JSON.stringify(body)));
      };
      if (url.pathname === '/v1/companies') return send(companies(5, url.searchParams.get('tag') ?? 'x'));
      if (url.pathname === '/v1/companies/broken-co') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        return res.end('this is not gzip');
      }
      if (url.pathname === '/v1/companies/slow-co') return setTimeout(() => send({ id: 'c_slow', name: 'Slow' }), 1500);
      return send({ id: url.pathname.split('/').pop(), name: 'Any' });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    stack = await Stack.start({ profile: 'trace' });
    gatewayPort = await freePort();
    await stack.startApp('gateway', 'gateway-hostile', { GATEWAY_PORT: String(gatewayPort), UPSTREAM_URL: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    upstream?.close();
  });

  async function orgWith(credits: number) {
    const o = await stack.orgWithKey('standard', uniqueId('hostile'));
    await stack.admin('POST', `/admin/orgs/${o.orgId}/credits`, { amount: credits, reason: 'test', idempotency_key: uniqueId('grant') });
    return o;
  }
  const balance = async (orgId: string) => (await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance;
  const usage = async (key: string) => json(await fetch(stack.gatewayUrl('/v1/usage', gatewayPort), { headers: { authorization: `Bearer ${key}` } }));

  it('a gzipped page of 5 companies is decoded, priced and charged 5 (and the gateway asked for identity)', async () => {
    const { orgId, key } = await orgWith(100);
    requestedEncodings = [];
    const res = await fetch(stack.gatewayUrl('/v1/companies?limit=5&tag=gz', gatewayPort), { headers: { authorization: `Bearer ${key}`, 'accept-encoding': 'gzip, br' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-encoding')).toBeNull();
    expect((await json(res)).data).toHaveLength(5);
    expect(requestedEncodings).toEqual(['identity']);
    await eventually(async () => (await usage(key)).total_count === 1);
    expect(await balance(orgId)).toBe(95);
  });

  it('an answer that claims gzip and is not is never handed out: 502, nothing charged, recorded as unpriceable', async () => {
    const { orgId, key } = await orgWith(100);
    const res = await fetch(stack.gatewayUrl('/v1/companies/broken-co', gatewayPort), { headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(502);
    expect(await res.text()).not.toContain('this is not gzip');
    const u = await eventually(async () => {
      const page = await usage(key);
      return page.total_count === 1 ? page : null;
    });
    expect(u.usage[0]).toMatchObject({ status_code: 502, credits_consumed: 0, decision: 'unpriceable' });
    expect(await balance(orgId)).toBe(100);
  });

  it('a client that gives up before the answer pays nothing: the call is recorded as client_closed and nothing stays held', async () => {
    const { orgId, key } = await orgWith(100);
    const abort = new AbortController();
    const call = fetch(stack.gatewayUrl('/v1/companies/slow-co', gatewayPort), { headers: { authorization: `Bearer ${key}` }, signal: abort.signal });
    setTimeout(() => abort.abort(), 300);
    await expect(call).rejects.toThrow();
    const u = await eventually(async () => {
      const page = await usage(key);
      return page.total_count === 1 ? page : null;
    }, 10_000);
    expect(u.usage[0]).toMatchObject({ status_code: 499, credits_consumed: 0, decision: 'client_closed' });
    expect(await balance(orgId)).toBe(100);
  });

  it('with metering down, a paid call is refused 503 with Retry-After, names no secret, and the metric names the dependency', async () => {
    const { key } = await orgWith(100);
    await stack.stopProcess('metering');
    try {
      const res = await fetch(stack.gatewayUrl('/v1/companies/any-co', gatewayPort), { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await json(res)).toMatchObject({ error: 'service_unavailable', message: expect.stringContaining('metering') });
      const metrics = await (await fetch(stack.gatewayUrl('/metrics', gatewayPort))).text();
      expect(metrics).toMatch(/tollgate_dependency_unavailable_total\{app="gateway",dependency="metering"\} [1-9]/);
    } finally {
      await stack.startApp('metering');
    }
  });
});
