import { credentials, loadPackageDefinition, Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { connect } from 'node:net';
import { join } from 'node:path';
import { json, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * SPEC §8: bad input anywhere gets a 4xx JSON body naming the field and the problem, and nothing is written; numbers
 * beyond what the API allows (an offset past 2^53, an `after` of 1e20) are bad input too. Every surface whose input
 * reaches PostgreSQL, driven with what used to reach it unchecked (a 500): NUL bytes, control characters, bad UTF-8,
 * lone surrogates, overlong ids, integers past 2^53 or bigint. And SPEC §8's grants: an idempotency key reused with
 * another body is a 409 naming the key.
 */
describe('bad input never reaches PostgreSQL (trackyard)', () => {
  let stack: Stack;
  const base = '/api/external/v1';

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  type Fields = { error: string; message: string; fields: Array<{ field: string; problem: string }> };
  type Entry = { seq: number; type: string; amount: number };

  /** An admin request with the path sent exactly as written (percent-escapes and all). */
  async function admin(method: string, rawPath: string, body?: string): Promise<{ status: number; body: Fields }> {
    const res = await fetch(`http://127.0.0.1:${stack.ports.metering}${rawPath}`, {
      method,
      headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
      body,
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Fields) : (null as unknown as Fields) };
  }

  /** What an org has written: its ledger and its command history. Equal before and after a refused request. */
  async function written(orgId: string): Promise<{ entries: Entry[]; commands: number }> {
    const ledger = await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${orgId}/ledger?limit=500`);
    const history = await stack.admin<{ commands: unknown[] }>('GET', `/admin/orgs/${orgId}/history?limit=500`);
    return { entries: ledger.body.entries, commands: history.body.commands.length };
  }

  function expectNames(res: { status: number; body: Fields }, field: string): void {
    expect({ status: res.status, error: res.body?.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(res.body.fields.map((f) => f.field)).toContain(field);
    expect(res.body.message).toContain(field);
  }

  // ---- path parameters ----------------------------------------------------------------------------------------

  describe('ids in the path', () => {
    let orgId: string;
    let before: { entries: Entry[]; commands: number };

    beforeAll(async () => {
      orgId = (await stack.orgWithKey('free', uniqueId('path'))).orgId;
      before = await written(orgId);
    });

    const routes: Array<[string, (seg: string) => string, string?]> = [
      ['GET', (s) => `/admin/orgs/${s}`],
      ['GET', (s) => `/admin/orgs/${s}/ledger`],
      ['GET', (s) => `/admin/orgs/${s}/limits`],
      ['GET', (s) => `/admin/orgs/${s}/usage`],
      ['GET', (s) => `/admin/orgs/${s}/keys`],
      ['GET', (s) => `/admin/orgs/${s}/entries`],
      ['GET', (s) => `/admin/orgs/${s}/history`],
      ['GET', (s) => `/admin/orgs/${s}/activity`],
      ['POST', (s) => `/admin/orgs/${s}/keys`, '{}'],
      ['POST', (s) => `/admin/orgs/${s}/credits`, JSON.stringify({ amount: 1, reason: 'r', idempotency_key: 'path-k' })],
      ['PUT', (s) => `/admin/orgs/${s}/plan`, JSON.stringify({ plan: 'starter' })],
      ['PUT', (s) => `/admin/orgs/${s}/limits`, JSON.stringify({ minute: 1 })],
      ['DELETE', (s) => `/admin/keys/${s}`],
    ];

    it.each([
      ['a NUL byte', '%00'],
      ['a NUL byte after a real org id', 'ORG%00'],
      ['a control character', 'a%01b'],
      ['a line break', 'a%0Ab'],
      ['an id of 300 characters', 'o'.repeat(300)],
    ])('answers %s in an org or key id with a 400 naming the parameter, on every route, writing nothing', async (_, raw) => {
      for (const [method, path, body] of routes) {
        const res = await admin(method, path(raw.replace('ORG', orgId)), body);
        expect({ route: `${method} ${path(':id')}`, status: res.status }).toEqual({ route: `${method} ${path(':id')}`, status: 400 });
        expectNames(res, method === 'DELETE' ? 'id' : 'org');
      }
      expect(await written(orgId)).toEqual(before);
    });

    it.each([
      ['not UTF-8', '%FF'],
      ['an overlong UTF-8 "/"', '%C0%AF'],
      ['a lone surrogate', '%ED%A0%80'],
    ])('answers a path segment that is %s with a 400 naming the path, on every route', async (_, raw) => {
      for (const [method, path, body] of routes) expectNames(await admin(method, path(raw), body), 'path');
      expect(await written(orgId)).toEqual(before);
    });

    it('answers a well-formed id that names nothing with a 404', async () => {
      for (const id of ['no-such-org', 'No%20Such%20Org', encodeURIComponent('ü'.repeat(10))]) {
        expect((await admin('GET', `/admin/orgs/${id}`)).status).toBe(404);
        expect((await admin('POST', `/admin/orgs/${id}/credits`, JSON.stringify({ amount: 1, reason: 'r', idempotency_key: 'k' }))).status).toBe(404);
      }
      expect((await admin('DELETE', '/admin/keys/key_none')).status).toBe(404);
    });
  });

  // ---- query parameters -----------------------------------------------------------------------------------------

  describe('numbers and text in the query', () => {
    let orgId: string;

    beforeAll(async () => {
      orgId = (await stack.orgWithKey('free', uniqueId('query'))).orgId;
    });

    const tooBig = ['100000000000000000000', '9223372036854775808', '9007199254740992', '1e20', '1e3', '0x10', '1.5', '-1', '%2B5', '%205', 'a%00'];

    it.each([
      ['ledger', 'after'],
      ['ledger', 'limit'],
      ['history', 'after'],
      ['history', 'limit'],
      ['usage', 'offset'],
      ['usage', 'limit'],
      ['entries', 'before'],
      ['entries', 'limit'],
    ])('answers /admin/orgs/:org/%s?%s= past 2^53, in exponent or hex form, fractional or negative with a 400 naming it', async (view, param) => {
      for (const value of tooBig) {
        const res = await admin('GET', `/admin/orgs/${orgId}/${view}?${param}=${value}`);
        expect({ value, status: res.status }).toEqual({ value, status: 400 });
        expectNames(res, param);
      }
    });

    it('answers GET /admin/orgs with an offset past 2^53 or a NUL in the search with a 400 naming it', async () => {
      for (const value of tooBig) expectNames(await admin('GET', `/admin/orgs?offset=${value}`), 'offset');
      expectNames(await admin('GET', '/admin/orgs?search=a%00b'), 'search');
      expectNames(await admin('GET', '/admin/orgs?search=%01'), 'search');
      // A query string that is not UTF-8 is kept as it was written: a search for the literal text, no error.
      expect((await admin('GET', '/admin/orgs?search=%FF')).status).toBe(200);
    });

    it('takes the largest whole number, 2^53 - 1', async () => {
      const max = '9007199254740991';
      expect((await admin('GET', `/admin/orgs/${orgId}/ledger?after=${max}`)).body).toEqual({ entries: [] });
      expect((await admin('GET', `/admin/orgs/${orgId}/history?after=${max}`)).status).toBe(200);
      expect((await admin('GET', `/admin/orgs/${orgId}/entries?before=${max}`)).status).toBe(200);
      expect((await admin('GET', `/admin/orgs/${orgId}/usage?offset=${max}`)).status).toBe(200);
      expect((await admin('GET', `/admin/orgs?offset=${max}`)).status).toBe(200);
    });
  });

  // ---- bodies -----------------------------------------------------------------------------------------------------

  describe('body fields', () => {
    let orgId: string;
    let keyId: string;

    beforeAll(async () => {
      ({ orgId, keyId } = await stack.orgWithKey('free', uniqueId('body')));
    });

    const inAnHour = () => new Date(Date.now() + 3_600_000).toISOString();

    it.each([
      ['an amount of 1e20', { amount: 1e20, reason: 'r', idempotency_key: 'b1' }, 'amount'],
      ['an amount of 2^53', { amount: 2 ** 53, reason: 'r', idempotency_key: 'b2' }, 'amount'],
      ['a negative amount', { amount: -5, reason: 'r', idempotency_key: 'b3' }, 'amount'],
      ['a reason with a NUL byte', { amount: 5, reason: 'a\u0000b', idempotency_key: 'b4' }, 'reason'],
      ['a reason that is a lone surrogate', { amount: 5, reason: '\ud800', idempotency_key: 'b5' }, 'reason'],
      ['a reason with a line break', { amount: 5, reason: 'line\nbreak', idempotency_key: 'b6' }, 'reason'],
      ['a reason of 501 characters', { amount: 5, reason: 'r'.repeat(501), idempotency_key: 'b7' }, 'reason'],
      ['an idempotency key with a NUL byte', { amount: 5, reason: 'r', idempotency_key: 'k\u0000' }, 'idempotency_key'],
      ['an idempotency key with a space', { amount: 5, reason: 'r', idempotency_key: 'with space' }, 'idempotency_key'],
      ['an idempotency key of 201 characters', { amount: 5, reason: 'r', idempotency_key: 'k'.repeat(201) }, 'idempotency_key'],
      ['an expiry in year 275760', { amount: 5, reason: 'r', idempotency_key: 'b8', expires_at: '+275760-09-13T00:00:00.000Z' }, 'expires_at'],
      ['an expiry on a leap second', { amount: 5, reason: 'r', idempotency_key: 'b9', expires_at: '2099-06-30T23:59:60Z' }, 'expires_at'],
      ['an expiry in the past', { amount: 5, reason: 'r', idempotency_key: 'b10', expires_at: '2001-01-01T00:00:00Z' }, 'expires_at'],
      ['an expiry that is a number', { amount: 5, reason: 'r', idempotency_key: 'b11', expires_at: 1e20 }, 'expires_at'],
    ])('refuses a grant with %s with a 400 naming it, and writes nothing', async (_, body, field) => {
      const before = await written(orgId);
      expectNames(await admin('POST', `/admin/orgs/${orgId}/credits`, JSON.stringify(body)), field);
      expect(await written(orgId)).toEqual(before);
    });

    it('refuses NUL bytes and lone surrogates in org, key and plan fields with a 400 naming them, and writes nothing', async () => {
      const id = uniqueId('nul-org');
      expectNames(await admin('POST', '/admin/orgs', JSON.stringify({ id, name: 'a\u0000b', plan: 'free' })), 'name');
      expectNames(await admin('POST', '/admin/orgs', JSON.stringify({ id, name: 'ok', plan: 'fr\u0000ee' })), 'plan');
      expectNames(await admin('POST', '/admin/orgs', JSON.stringify({ id, name: 'ok', plan: 'free', profile: '\udc00' })), 'profile');
      expect((await admin('GET', `/admin/orgs/${id}`)).status).toBe(404);

      const before = await written(orgId);
      const keysBefore = (await stack.admin<unknown[]>('GET', `/admin/orgs/${orgId}/keys`)).body;
      expectNames(await admin('POST', `/admin/orgs/${orgId}/keys`, JSON.stringify({ name: 'k\u0000' })), 'name');
      expectNames(await admin('POST', `/admin/orgs/${orgId}/keys`, JSON.stringify({ name: '\ud800x' })), 'name');
      expectNames(await admin('PUT', `/admin/orgs/${orgId}/plan`, JSON.stringify({ plan: 'starter\u0000' })), 'plan');
      expectNames(await admin('PUT', `/admin/orgs/${orgId}/limits`, JSON.stringify({ minute: 1e20 })), 'minute');
      expectNames(await admin('PUT', `/admin/orgs/${orgId}/limits`, JSON.stringify({ minute: '5' })), 'minute');
      expect((await stack.admin<unknown[]>('GET', `/admin/orgs/${orgId}/keys`)).body).toEqual(keysBefore);
      expect(await written(orgId)).toEqual(before);
      expect((await stack.admin('GET', `/admin/orgs/${orgId}`)).body).toMatchObject({ plan: 'free', limits: {} });
      expect(keyId).toMatch(/^key_/);
    });

    it('still takes a grant with an expiry, text in any script and the longest key', async () => {
      const res = await admin('POST', `/admin/orgs/${orgId}/credits`, JSON.stringify({ amount: 3, reason: 'merci 🎉 ü', idempotency_key: 'k'.repeat(200), expires_at: inAnHour() }));
      expect(res.status).toBe(201);
    });
  });

  // ---- idempotency keys ---------------------------------------------------------------------------------------------

  describe('a grant idempotency key is bound to its request', () => {
    it('answers the same body with the first result, and another body with a 409 naming the key, granting once', async () => {
      const { orgId } = await stack.orgWithKey('free', uniqueId('idem'));
      const key = uniqueId('grant');
      const expiry = new Date(Date.now() + 86_400_000);
      const first = { amount: 10, reason: 'goodwill', idempotency_key: key, expires_at: expiry.toISOString() };
      const granted = await admin('POST', `/admin/orgs/${orgId}/credits`, JSON.stringify(first));
      expect(granted.status).toBe(201);
      const after = await written(orgId);

      const replay = await admin('POST', `/admin/orgs/${orgId}/credits`, JSON.stringify(first));
      expect(replay.status).toBe(201);
      expect(replay.body).toMatchObject({ amount: 10, replayed: true });
      // The same instant written another way is the same request.
      const sameInstant = { ...first, expires_at: expiry.toISOString().replace('Z', '+00:00') };
      expect((await admin('POST', `/admin/orgs/${orgId}/credits`, JSON.stringify(sameInstant))).status).toBe(201);

      for (const other of [
        { ...first, amount: 20 },
        { ...first, reason: 'another reason' },
        { ...first, expires_at: new Date(expiry.getTime() + 1000).toISOString() },
        { amount: 10, reason: 'goodwill', idempotency_key: key },
      ]) {
        const res = await admin('POST', `/admin/orgs/${orgId}/credits`, JSON.stringify(other));
        expect({ other, status: res.status, error: res.body.error }).toEqual({ other, status: 409, error: 'idempotency_key_reused' });
        expect(res.body.message).toContain(`idempotency_key "${key}"`);
        expect(res.body.message).toContain('amount 10');
        expect(res.body.fields.map((f) => f.field)).toEqual(['idempotency_key']);
      }
      expect(await written(orgId)).toEqual(after);
      expect(after.entries.filter((e) => e.type === 'top_up').map((e) => e.amount)).toEqual([10]);
    });

    it('lets another org use the same key for its own grant', async () => {
      const a = await stack.orgWithKey('free', uniqueId('idem-a'));
      const b = await stack.orgWithKey('free', uniqueId('idem-b'));
      const key = uniqueId('shared');
      expect((await admin('POST', `/admin/orgs/${a.orgId}/credits`, JSON.stringify({ amount: 1, reason: 'a', idempotency_key: key }))).status).toBe(201);
      expect((await admin('POST', `/admin/orgs/${b.orgId}/credits`, JSON.stringify({ amount: 2, reason: 'b', idempotency_key: key }))).body).toMatchObject({ amount: 2, replayed: false });
    });
  });

  // ---- metering's Reservations gRPC (the gateways' internal API) ------------------------------------------------------

  it('answers Release and GetBalance with a NUL, a control character or an overlong id with INVALID_ARGUMENT naming it', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('grpc-ids'));
    const definition = loadSync(join(repoRoot, 'libs/contracts/src/proto/metering.proto'), { keepCase: true, longs: String, defaults: true });
    const pkg = loadPackageDefinition(definition) as unknown as { tollgate: { metering: { v1: { Reservations: new (addr: string, c: unknown) => Record<string, (...args: unknown[]) => void> } } } };
    const client = new pkg.tollgate.metering.v1.Reservations(`127.0.0.1:${stack.ports.meteringGrpc}`, credentials.createInsecure());
    const call = (method: string, req: unknown) =>
      new Promise((resolve, reject) => {
        const md = new Metadata();
        md.set('authorization', `Bearer ${stack.internalToken}`);
        client[method]!(req, md, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res)));
      });
    for (const bad of [`${orgId}\u0000`, 'a\u0001', 'o'.repeat(65)]) {
      await expect(call('GetBalance', { org_id: bad })).rejects.toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: expect.stringContaining('org_id') });
      await expect(call('Release', { org_id: bad, reservation_id: 'r-1' })).rejects.toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: expect.stringContaining('org_id') });
    }
    await expect(call('Release', { org_id: orgId, reservation_id: 'r\u0000' })).rejects.toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: expect.stringContaining('reservation_id') });
    expect(await call('GetBalance', { org_id: orgId })).toMatchObject({ balance: '50' });
    client.close!();
  });

  // ---- the query service ------------------------------------------------------------------------------------------

  describe('/usage and the Accounts gRPC service', () => {
    let key: string;

    beforeAll(async () => {
      key = (await stack.orgWithKey('free', uniqueId('usage'))).key;
    });

    const direct = (path: string, headers: Record<string, string> = { authorization: `Bearer ${key}` }) =>
      fetch(`http://127.0.0.1:${stack.ports.query}${base}${path}`, { headers });
    const viaGateway = (path: string) => fetch(stack.gatewayUrl(`${base}${path}`), { headers: { authorization: `Bearer ${key}` } });
    const cursor = (occurredAt: string, id: string) => Buffer.from(`${occurredAt}|${id}`, 'utf8').toString('base64url');

    it.each([
      ['offset=100000000000000000000', 'offset'],
      ['offset=9223372036854775808', 'offset'],
      ['offset=9007199254740992', 'offset'],
      ['offset=1e20', 'offset'],
      ['limit=1e2', 'limit'],
      ['limit=99999999999999999999', 'limit'],
      [`cursor=${cursor('2026-01-01T00:00:00.000Z', '9999999999999999999')}`, 'cursor'],
      [`cursor=${cursor('Tue, 01 Jan 2030 00:00:00 GMT', '1')}`, 'cursor'],
      [`cursor=${cursor('2026-01-01T00:00:00.000Z', '1|x')}`, 'cursor'],
    ])('answers /usage?%s with a 400 naming %s, directly and through the gateway', async (query, field) => {
      for (const res of [await direct(`/usage?${query}`), await viaGateway(`/usage?${query}`)]) {
        expect(res.status).toBe(400);
        const body = (await json(res)) as Fields;
        expect(body.fields[0]!.field).toBe(field);
        expect(body.message).toContain(field);
      }
    });

    it('takes an offset of 2^53 - 1 (an empty page)', async () => {
      const res = await direct('/usage?offset=9007199254740991');
      expect(res.status).toBe(200);
      expect(await json(res)).toMatchObject({ usage: [], offset: 9007199254740991 });
    });

    it('answers a cursor past PostgreSQL bigint over gRPC with INVALID_ARGUMENT naming it', async () => {
      const definition = loadSync(join(repoRoot, 'libs/contracts/src/proto/query.proto'), { keepCase: true, longs: String, defaults: true });
      const pkg = loadPackageDefinition(definition) as unknown as { tollgate: { query: { v1: { Accounts: new (addr: string, c: unknown) => Record<string, (...args: unknown[]) => void> } } } };
      const client = new pkg.tollgate.query.v1.Accounts(`127.0.0.1:${stack.ports.queryGrpc}`, credentials.createInsecure());
      const call = (req: unknown, bearer: string) =>
        new Promise((resolve, reject) => {
          const md = new Metadata();
          md.set('authorization', `Bearer ${bearer}`);
          client.ListUsage!(req, md, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res)));
        });
      await expect(call({ limit: 1, cursor: cursor('2026-01-01T00:00:00.000Z', '9999999999999999999') }, key)).rejects.toMatchObject({
        code: GrpcStatus.INVALID_ARGUMENT,
        details: expect.stringContaining('cursor'),
      });
      await expect(call({ limit: 1 }, `tg_live_${'x'.repeat(4_000)}`)).rejects.toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });
      client.close!();
    });

    it('answers an oversized or NUL-bearing bearer token with a 4xx, never a 500', async () => {
      expect((await direct('/me', { authorization: `Bearer tg_live_${'x'.repeat(10_000)}` })).status).toBe(401);
      // Node answers 431 and closes at once; a client still writing the megabyte may lose that answer to EPIPE
      // (0 here). Either way the request never reaches the app, and nothing answers 5xx.
      expect([431, 0]).toContain(await rawStatus(stack.ports.query, `GET ${base}/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'x'.repeat(1_000_000)}\r\nConnection: close\r\n\r\n`, { closedIsAnswer: true }));
      expect(await rawStatus(stack.ports.query, `GET ${base}/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tg_live_a\u0000b\r\nConnection: close\r\n\r\n`)).toBe(400);
      expect(await rawStatus(stack.ports.metering, `GET /admin/orgs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\u0000b\r\nConnection: close\r\n\r\n`)).toBe(400);
      expect((await fetch(`http://127.0.0.1:${stack.ports.metering}/admin/orgs`, { headers: { authorization: `Bearer ${'x'.repeat(10_000)}` } })).status).toBe(401);
    });
  });
});

/** The status code of a request written byte for byte (fetch refuses to send a NUL in a header). */
function rawStatus(port: number, request: string, opts: { closedIsAnswer?: boolean } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(Buffer.from(request, 'latin1')));
    let text = '';
    socket.on('data', (b: Buffer) => (text += b.toString('latin1')));
    const status = () => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
    // The server may answer and close before a long request is written: the answer is what counts (and, where
    // the caller says so, a connection the server closed on it: 0).
    socket.on('error', (e) => (status() || opts.closedIsAnswer ? resolve(status()) : reject(e)));
    socket.on('close', () => resolve(status()));
  });
}
