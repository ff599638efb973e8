import { credentials, loadPackageDefinition, Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join } from 'node:path';
import { produce, requestCompleted, testKafka } from '../support/kafka';
import { eventually, json, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * The query service and its gRPC surface, read the way other services and end users read them: through the
 * gateway, directly over HTTP, and with a gRPC client built from the .proto file alone.
 */
describe('query service (trackyard)', () => {
  let stack: Stack;
  const base = '/api/external/v1';
  const kafka = testKafka();

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  const direct = (path: string, key: string) => fetch(`http://127.0.0.1:${stack.ports.query}${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
  const viaGateway = (path: string, key: string) => fetch(stack.gatewayUrl(`${base}${path}`), { headers: { authorization: `Bearer ${key}` } });

  /** Events from "another producer": failed calls cost nothing, so 10,000 of them leave the balance alone. */
  async function meterFailedCalls(orgId: string, count: number, startMs: number): Promise<void> {
    const batch = 1000;
    for (let i = 0; i < count; i += batch) {
      const messages = [];
      for (let j = i; j < Math.min(count, i + batch); j++) {
        // Pairs share a timestamp, so ordering must fall back to the row id.
        const at = new Date(startMs + Math.floor(j / 2) * 1000).toISOString();
        messages.push({ key: orgId, value: JSON.stringify(requestCompleted({ org_id: orgId, status_code: 500, occurred_at: at, request_id: `req-${j}` })) });
      }
      await produce(kafka, messages);
    }
  }

  describe('/usage pagination over 10,000 rows', () => {
    let key: string;
    const count = 10_000;

    beforeAll(async () => {
      const org = await stack.orgWithKey('starter', uniqueId('pages'));
      key = org.key;
      await meterFailedCalls(org.orgId, count, Date.now() - 3 * 3600_000);
      await eventually(async () => (await json(await direct('/usage?limit=1', key))).total_count === count, 90_000, 500);
    }, 180_000);

    it('reports the exact total_count and the requested offset and limit', async () => {
      const page = await json(await direct('/usage?limit=500&offset=9990', key));
      expect(page.total_count).toBe(count);
      expect(page.offset).toBe(9990);
      expect(page.limit).toBe(500);
      expect(page.usage).toHaveLength(10);
    });

    it('lists newest first, and a cursor walk returns every row exactly once', async () => {
      const seen = new Set<string>();
      let previous = Infinity;
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await direct(`/usage?limit=500${cursor ? `&cursor=${cursor}` : ''}`, key);
        expect(res.status).toBe(200);
        const page = await json(res);
        for (const row of page.usage) {
          const t = Date.parse(row.timestamp);
          expect(t).toBeLessThanOrEqual(previous);
          previous = t;
          expect(seen.has(row.request_id)).toBe(false);
          seen.add(row.request_id);
          expect(row).toMatchObject({ endpoint: '/search', status_code: 500, credits_consumed: 0, cost_reason: 'free_status' });
        }
        cursor = page.next_cursor;
        pages++;
      } while (cursor);
      expect(seen.size).toBe(count);
      expect(pages).toBe(count / 500 + 1); // the last full page still hands out a cursor; the page after it is empty
    });

    it('gives the same rows through offsets as through the cursor at the boundaries', async () => {
      const first = await json(await direct('/usage?limit=1&offset=0', key));
      const last = await json(await direct(`/usage?limit=1&offset=${count - 1}`, key));
      const past = await json(await direct(`/usage?limit=50&offset=${count}`, key));
      // Same timestamp: the row metered later (higher id) comes first.
      expect(first.usage[0].request_id).toBe(`req-${count - 1}`);
      expect(last.usage).toHaveLength(1);
      expect(last.usage[0].request_id).toBe('req-0');
      expect(past.usage).toEqual([]);
      expect(past.total_count).toBe(count);
    });

    it.each([
      ['limit=0', 'limit'],
      ['limit=501', 'limit'],
      ['limit=abc', 'limit'],
      ['limit=1.5', 'limit'],
      ['offset=-1', 'offset'],
      ['offset=x', 'offset'],
      ['cursor=not-a-cursor', 'cursor'],
    ])('answers 400 naming the parameter for %s', async (query, field) => {
      for (const res of [await direct(`/usage?${query}`, key), await viaGateway(`/usage?${query}`, key)]) {
        expect(res.status).toBe(400);
        const body = await json(res);
        expect(body.fields[0].field).toBe(field);
        expect(body.message).toContain(field);
      }
    });
  });

  describe('tenant isolation', () => {
    let a: { orgId: string; key: string };
    let b: { orgId: string; key: string };

    beforeAll(async () => {
      a = await stack.orgWithKey('starter', uniqueId('tenant-a'));
      b = await stack.orgWithKey('free', uniqueId('tenant-b'));
      await meterFailedCalls(b.orgId, 3, Date.now() - 60_000);
      await eventually(async () => (await json(await direct('/usage', b.key))).total_count === 3, 20_000);
    }, 60_000);

    it("never shows org B's balance or usage to a key of org A, whatever it puts in the path or query", async () => {
      for (const path of [`/me?org_id=${b.orgId}`, `/me?org=${b.orgId}`, `/usage?org_id=${b.orgId}`, `/usage?org=${b.orgId}&limit=500`]) {
        for (const res of [await direct(path, a.key), await viaGateway(path, a.key)]) {
          expect(res.status).toBe(200);
          const body = await json(res);
          if ('usage' in body) expect(body.total_count).toBe(0);
          else expect(body).toMatchObject({ tier: 'starter', credits_remaining: 500 });
        }
      }
    });

    it('refuses an API key on the admin API (ledger, org, credits)', async () => {
      const asTenant = (method: string, path: string, body?: unknown) =>
        fetch(`http://127.0.0.1:${stack.ports.metering}${path}`, {
          method,
          headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      expect((await asTenant('GET', `/admin/orgs/${b.orgId}/ledger`)).status).toBe(401);
      expect((await asTenant('GET', `/admin/orgs/${b.orgId}`)).status).toBe(401);
      expect((await asTenant('POST', `/admin/orgs/${a.orgId}/credits`, { amount: 5, reason: 'x', idempotency_key: 'x' })).status).toBe(401);
    });

    it('scopes every gRPC call to the org of the key in the metadata', async () => {
      const client = grpcClient();
      const account = await call<{ org_id: string }>(client, 'GetAccount', {}, a.key);
      expect(account.org_id).toBe(a.orgId);
      const page = await call<{ total_count: string }>(client, 'ListUsage', { limit: 50 }, a.key);
      expect(Number(page.total_count)).toBe(0);
      await expect(call(client, 'GetAccount', {}, null)).rejects.toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });
      await expect(call(client, 'GetAccount', {}, 'tg_live_forged')).rejects.toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });
      client.close();
    });
  });

  it('serves balance and a usage page to a gRPC client built from the .proto alone', async () => {
    const { orgId, key } = await stack.orgWithKey('starter', uniqueId('grpc'));
    const paid = await fetch(stack.gatewayUrl(`${base}/search`), {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'grpc' }),
    });
    expect(paid.status).toBe(200);
    const client = grpcClient();
    const page = await eventually(async () => {
      const p = await call<{ total_count: string; usage: Array<Record<string, unknown>> }>(client, 'ListUsage', { limit: 10 }, key);
      return Number(p.total_count) === 1 ? p : null;
    });
    expect(page.usage[0]).toMatchObject({ endpoint: '/search', status_code: 200, credits_consumed: '1', cost_reason: 'charged' });
    const account = await call<Record<string, unknown>>(client, 'GetAccount', {}, key);
    expect(account).toMatchObject({ org_id: orgId, tier: 'starter', credits_remaining: '499', monthly_allowance: '500', requests_per_minute: '10', requests_per_day: '1000' });
    client.close();
  });

  it('refuses a revoked key at the gateway within 5 seconds', async () => {
    const { keyId, key } = await stack.orgWithKey('starter', uniqueId('revoke'));
    expect((await viaGateway('/me', key)).status).toBe(200); // now cached by the gateway
    const revokedAt = Date.now();
    expect((await stack.admin('DELETE', `/admin/keys/${keyId}`)).status).toBe(204);
    await eventually(async () => (await viaGateway('/me', key)).status === 401, 5000, 100);
    expect(Date.now() - revokedAt).toBeLessThan(5000);
    expect((await direct('/me', key)).status).toBe(401);
  });

  // ---- a gRPC client from the .proto file, as another language would build one ---------------------------

   
  function grpcClient(): any {
    const definition = loadSync(join(repoRoot, 'libs/contracts/src/proto/query.proto'), { keepCase: true, longs: String, defaults: true });
     
    const pkg = loadPackageDefinition(definition) as any;
    return new pkg.tollgate.query.v1.Accounts(`127.0.0.1:${stack.ports.queryGrpc}`, credentials.createInsecure());
  }

   
  function call<T>(client: any, method: string, request: unknown, key: string | null): Promise<T> {
    const md = new Metadata();
    if (key) md.set('authorization', `Bearer ${key}`);
    return new Promise((resolve, reject) => client[method](request, md, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));
  }
});
