import { createServer, request, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { createGzip } from 'node:zlib';
import { eventually, freePort, json, Stack, uniqueId } from '../support/stack';

/**
 * Issue 18: no free call at the edges. A real gateway (trace, strict) in front of an upstream written for the
 * test that reads paths the way common servers do (WHATWG URL: dot segments and `%2e` resolved, ids trimmed),
 * and can answer with shapes, sizes and encodings the route does not expect. Each case held paid data out for
 * nothing on the code before this change (named per test).
 */
describe('the edges: what the upstream sees is what is priced, and every 2xx is metered (trace, strict)', () => {
  let stack: Stack;
  let upstream: Server;
  let gatewayPort: number;
  /** Paths the upstream was asked, in order. */
  let asked: string[] = [];
  let bomb: Buffer;

  const company = (id: string) => ({ id, name: `Company ${id}` });
  const page = (ids: string[]) => ({ data: ids.map(company), next_cursor: null });

  beforeAll(async () => {
    bomb = await gzipOfZeros(512 * 1024 * 1024);
    upstream = createServer((req, res) => {
      // A lenient real server: WHATWG URL resolves `.`/`..`/`%2e`, then the id is trimmed.
      const url = new URL(req.url ?? '/', 'http://upstream');
      asked.push(url.pathname);
      const send = (body: unknown, status = 200) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      const parts = url.pathname.split('/').filter((p) => p !== '');
      if (parts.length === 2 && parts[1] === 'companies') {
        const n = Number(url.searchParams.get('limit') ?? '10');
        const width = Number(url.searchParams.get('id_width') ?? '0');
        return send(page(Array.from({ length: n }, (_, i) => `c_${String(i).padStart(width, '0')}`)));
      }
      const id = decodeURIComponent(parts[2] ?? '').trim();
      if (id === 'bomb') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        return res.end(bomb);
      }
      if (id === 'huge') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(Buffer.alloc(3 * 1024 * 1024, 0x20));
      }
      if (id === 'list-shaped') return send(page(['c_1', 'c_2', 'c_3']));
      if (id === 'null-id') return send({ id: null, name: 'No id' });
      return send(company(id));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    stack = await Stack.start({ profile: 'trace' });
    gatewayPort = await freePort();
    await stack.startApp('gateway', 'gateway-edges', {
      GATEWAY_PORT: String(gatewayPort),
      UPSTREAM_URL: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      GATEWAY_UPSTREAM_MAX_BODY_BYTES: String(2 * 1024 * 1024),
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    upstream?.close();
  });

  beforeEach(() => {
    asked = [];
  });

  async function orgWith(credits: number) {
    const o = await stack.orgWithKey('standard', uniqueId('edges'));
    await stack.admin('POST', `/admin/orgs/${o.orgId}/credits`, { amount: credits, reason: 'test', idempotency_key: uniqueId('grant') });
    return o;
  }
  const balance = async (orgId: string) => (await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance;
  const usage = async (key: string) => json(await fetch(stack.gatewayUrl('/v1/usage?limit=500', gatewayPort), { headers: { authorization: `Bearer ${key}` } }));
  const usageOf = (key: string, n: number) =>
    eventually(async () => {
      const u = await usage(key);
      return u.total_count === n ? u : null;
    }, 15_000);

  /** A raw request: the path and header bytes exactly as given (fetch would resolve dot segments itself). */
  function raw(path: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gatewayPort, method: 'GET', path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  // Hole 1: `%2e` matched `/companies/:identifier` (priced by `id`) while the upstream served the list: 100 free.
  it.each(['/v1/companies/%2e?limit=100', '/v1/companies/.?limit=100', '/v1/companies/%2E%2e/companies?limit=100', '/v1/companies/x%2Fpartnerships', '/v1//companies?limit=100'])(
    'a path an upstream may resolve otherwise (%s) is refused with 400 naming the path; nothing is forwarded or charged',
    async (path) => {
      const { orgId, key } = await orgWith(5);
      const res = await raw(path, { authorization: `Bearer ${key}` });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'bad_request', field: 'path' });
      expect(asked).toEqual([]);
      expect(await balance(orgId)).toBe(5);
    },
  );

  it('the path the upstream is asked is the canonical one the call was priced on', async () => {
    const { orgId, key } = await orgWith(5);
    const res = await raw('/v1/companies/%61cme/', { authorization: `Bearer ${key}` });
    expect(res.status).toBe(200);
    expect(asked).toEqual(['/v1/companies/acme']);
    const u = await usageOf(key, 1);
    expect(u.usage[0]).toMatchObject({ path: '/v1/companies/acme', credits_consumed: 1 });
    expect(await balance(orgId)).toBe(4);
  });

  // Hole 2: these 2xx were answered and held, then their events were dead-lettered: free data.
  it.each([
    ['300 characters', 'r'.repeat(300)],
    ['UTF-8 bytes (read as latin1: control characters)', Buffer.from('réq-é', 'utf8').toString('latin1')],
    ['a space', 'my request'],
  ])('a request id of %s is replaced by the gateway own: the 2xx is metered and charged', async (_, id) => {
    const { orgId, key } = await orgWith(5);
    const res = await raw('/v1/companies/c_rid', { authorization: `Bearer ${key}`, 'x-request-id': id });
    expect(res.status).toBe(200);
    const given = res.headers['x-request-id'] as string;
    expect(given).not.toBe(id);
    expect(given).toMatch(/^[0-9a-f-]{36}$/);
    const u = await usageOf(key, 1);
    expect(u.usage[0]).toMatchObject({ status_code: 200, credits_consumed: 1, request_id: given });
    expect(await balance(orgId)).toBe(4);
  });

  it('a well-formed request id is kept and recorded', async () => {
    const { key } = await orgWith(5);
    const res = await raw('/v1/companies/c_keep', { authorization: `Bearer ${key}`, 'x-request-id': 'client-req-42' });
    expect(res.headers['x-request-id']).toBe('client-req-42');
    expect((await usageOf(key, 1)).usage[0]).toMatchObject({ request_id: 'client-req-42', credits_consumed: 1 });
  });

  it('a path of KBs of %20 after a real id is refused with 414 before forwarding; a short padding is priced as the upstream answers', async () => {
    const { orgId, key } = await orgWith(5);
    const long = await raw(`/v1/companies/c_pad${'%20'.repeat(2000)}`, { authorization: `Bearer ${key}` });
    expect(long.status).toBe(414);
    expect(JSON.parse(long.body)).toMatchObject({ error: 'bad_request', field: 'path' });
    expect(asked).toEqual([]);
    const short = await raw(`/v1/companies/c_pad${'%20'.repeat(20)}`, { authorization: `Bearer ${key}` });
    expect(short.status).toBe(200);
    expect(JSON.parse(short.body)).toMatchObject({ id: 'c_pad' });
    const u = await usageOf(key, 1);
    expect(u.usage[0]).toMatchObject({ status_code: 200, credits_consumed: 1 });
    expect(await balance(orgId)).toBe(4);
  });

  // A per-entity 2xx whose body has another shape was priced 0 and handed out.
  it.each([
    ['a list where one company is expected', '/v1/companies/list-shaped'],
    ['an id that is null', '/v1/companies/null-id'],
  ])('an answer of another shape (%s) is unpriceable: 502, withheld, free, recorded', async (_, path) => {
    const { orgId, key } = await orgWith(5);
    const res = await raw(path, { authorization: `Bearer ${key}` });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'unpriceable' });
    expect(res.body).not.toContain('c_1');
    const u = await usageOf(key, 1);
    expect(u.usage[0]).toMatchObject({ status_code: 502, credits_consumed: 0, decision: 'unpriceable' });
    expect(await balance(orgId)).toBe(5);
  });

  // Hole 3's cause: a page of long ids made an event the broker could not take; it blocked every later event.
  it('a page whose event would be too large for the broker is withheld (502, free, no hold left) and the next call is metered', async () => {
    const { orgId, key } = await orgWith(5000);
    const res = await raw('/v1/companies?limit=2000&id_width=250', { authorization: `Bearer ${key}` });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'unpriceable' });
    const next = await raw('/v1/companies/c_after', { authorization: `Bearer ${key}` });
    expect(next.status).toBe(200);
    const u = await usageOf(key, 2);
    expect(u.usage.map((r: { status_code: number; credits_consumed: number }) => [r.status_code, r.credits_consumed])).toEqual([
      [200, 1],
      [502, 0],
    ]);
    await eventually(async () => (await balance(orgId)) === 4999, 15_000);
  });

  // Hole 4: the bomb was inflated whole (RSS 2.2 GB) before it was refused.
  it('a gzip bomb (512 MiB from a few hundred KB) and an oversized body are refused while read: 502, free, the gateway stays small', async () => {
    const { orgId, key } = await orgWith(5);
    const pid = stack.processes.get('gateway-edges')!.pid!;
    const before = peakRssMb(pid);
    const bombed = await raw('/v1/companies/bomb', { authorization: `Bearer ${key}` });
    expect(bombed.status).toBe(502);
    const huge = await raw('/v1/companies/huge', { authorization: `Bearer ${key}` });
    expect(huge.status).toBe(502);
    expect(peakRssMb(pid) - before).toBeLessThan(150);
    await usageOf(key, 2);
    expect(await balance(orgId)).toBe(5);
  });
});

/** Peak resident memory of a process, in MB (VmHWM). */
function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** `bytes` of zeros, gzipped as a stream (a few hundred KB), without holding them in memory. */
function gzipOfZeros(bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const gz = createGzip({ level: 9 });
    const out: Buffer[] = [];
    gz.on('data', (c: Buffer) => out.push(c));
    gz.on('end', () => resolve(Buffer.concat(out)));
    gz.on('error', reject);
    const chunk = Buffer.alloc(1024 * 1024);
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        left -= chunk.length;
        if (!gz.write(chunk)) return gz.once('drain', pump);
      }
      gz.end();
    };
    pump();
  });
}
