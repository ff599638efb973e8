import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { eventually, freePort, json, repoRoot, Stack, uniqueId } from '../support/stack';

/** Bad input and broken dependencies: a clear answer that names what is wrong, and nothing charged or written. */
describe('failures and bad input (trackyard)', () => {
  let stack: Stack;
  const base = '/api/external/v1';

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  const search = (port: number, key: string) =>
    fetch(stack.gatewayUrl(`${base}/search`, port), {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'x' }),
    });

  it('answers 502 JSON when the upstream is down, gives the credits back and charges nothing', async () => {
    const port = await freePort();
    await stack.startApp('gateway', 'gateway-no-upstream', { GATEWAY_PORT: String(port), UPSTREAM_URL: `http://127.0.0.1:${await freePort()}` });
    try {
      const { orgId, key } = await stack.orgWithKey('starter', uniqueId('down'));
      const res = await search(port, key);
      expect(res.status).toBe(502);
      expect(await json(res)).toEqual({ error: 'upstream_unavailable', message: 'The service is temporarily unavailable. Nothing was charged.' });
      const usage = await eventually(async () => {
        const u = await json(await fetch(stack.gatewayUrl(`${base}/usage`), { headers: { authorization: `Bearer ${key}` } }));
        return u.total_count === 1 ? u : null;
      });
      expect(usage.usage[0]).toMatchObject({ status_code: 502, credits_consumed: 0, decision: 'upstream_unavailable' });
      // The call drew from a lease and was given back to it; when the gateway stops drawing from the lease, all of
      // it comes back (nothing was drawn for a call that went out).
      expect((await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance).toBe(500);
      const entries = await eventually(async () => {
        const e = (await stack.admin<{ entries: Array<{ type: string; amount: number }> }>('GET', `/admin/orgs/${orgId}/ledger`)).body.entries;
        return e.length === 3 ? e : null;
      }, 15_000, 250);
      expect(entries.map((e) => [e.type, e.amount])).toEqual([['grant', 500], ['lease', -8], ['release', 8]]);
      expect((await stack.admin<{ balance: number; held_by_gateways: number }>('GET', `/admin/orgs/${orgId}`)).body).toMatchObject({ balance: 500, held_by_gateways: 0 });
    } finally {
      await stack.stopProcess('gateway-no-upstream');
    }
  });

  it('throttles repeated invalid keys from one IP with 429 and Retry-After before looking them up', async () => {
    const port = await freePort();
    await stack.startApp('gateway', 'gateway-throttle', { GATEWAY_PORT: String(port) });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push((await search(port, `tg_live_wrong${i}`)).status);
      expect(statuses.every((s) => s === 401)).toBe(true);
      const throttled = await search(port, 'tg_live_wrong-again');
      expect(throttled.status).toBe(429);
      expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect((await json(throttled)).error).toBe('rate_limit_exceeded');
      // A valid key from the same IP is refused too while the throttle lasts: the IP is what is throttled.
      const { key } = await stack.orgWithKey('starter', uniqueId('throttled-ip'));
      expect((await search(port, key)).status).toBe(429);
    } finally {
      await stack.stopProcess('gateway-throttle');
    }
  });

  // Found by the money fuzzer: a body over the limit, written in one go, got a connection reset instead of its 413
  // (the gateway destroyed the request with the rest of the body unread, so the kernel answered with RST).
  it('a request body over 10 MiB is answered 413, not reset', async () => {
    const { key } = await stack.orgWithKey('starter', uniqueId('big-body'));
    const size = 11 * 1024 * 1024;
    const status = await new Promise<number>((resolve) => {
      const socket = connect(stack.ports.gateway, '127.0.0.1', () => {
        socket.write(`POST ${base}/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
        const chunk = Buffer.alloc(1024 * 1024, 0x20);
        for (let sent = 0; sent < size; sent += chunk.length) socket.write(`${chunk.length.toString(16)}\r\n${chunk.toString('latin1')}\r\n`);
        socket.end('0\r\n\r\n');
      });
      let text = '';
      socket.on('data', (b: Buffer) => (text += b.toString('latin1')));
      const status = () => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      socket.on('error', () => resolve(status()));
      socket.on('close', () => resolve(status()));
    });
    expect(status).toBe(413);
  });

  // Issue 18 left-over: the throttle lived in each gateway's memory, so guesses spread over N gateways got N
  // times the attempts. With REDIS_URL the count is shared.
  it('with Redis, invalid keys spread over two gateways add up: 20 guesses in all, then both answer 429', async () => {
    const ports = [await freePort(), await freePort()];
    const env = { REDIS_URL: process.env.REDIS_URL || 'redis://127.0.0.1:6379', TRUSTED_PROXIES: '127.0.0.1' };
    await stack.startApp('gateway', 'gateway-shared-a', { ...env, GATEWAY_PORT: String(ports[0]) });
    await stack.startApp('gateway', 'gateway-shared-b', { ...env, GATEWAY_PORT: String(ports[1]) });
    // An address of this run's own: the counters in Redis outlive the run.
    const ip = `198.18.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;
    const guess = (port: number, i: number) =>
      fetch(stack.gatewayUrl(`${base}/search`, port), {
        method: 'POST',
        headers: { authorization: `Bearer tg_live_shared${i}`, 'content-type': 'application/json', 'x-forwarded-for': ip },
        body: JSON.stringify({ query: 'x' }),
      });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push((await guess(ports[i % 2]!, i)).status);
      expect(statuses).toEqual(Array(20).fill(401));
      // Each gateway saw 10 guesses, under the limit of 20 on its own; together they used it up.
      for (const port of ports) {
        const next = await guess(port, 99);
        expect(next.status).toBe(429);
        expect(Number(next.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      }
    } finally {
      await stack.stopProcess('gateway-shared-a');
      await stack.stopProcess('gateway-shared-b');
    }
  });

  describe('start-up failures name what is wrong, without a stack trace', () => {
    const start = (app: string, env: Record<string, string>) =>
      spawnSync(process.execPath, [join(repoRoot, 'dist/apps', app, 'src/main.js')], {
        env: { ...stack.env(), METERING_PORT: '0', QUERY_PORT: '0', GATEWAY_PORT: '0', ...env },
        encoding: 'utf8',
        timeout: 60_000,
      });

    it('PostgreSQL unreachable: names PostgreSQL and where', () => {
      const r = start('query', { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/tollgate' });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/PostgreSQL.*127\.0\.0\.1:1/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    });

    // A gateway starts without the broker (its events are spooled: broker-down.e2e.spec.ts); metering can't.
    it('Kafka unreachable: names Kafka and the brokers', () => {
      const r = start('metering', { KAFKA_BROKERS: '127.0.0.1:1' });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/Kafka.*127\.0\.0\.1:1/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    });

    it('unknown profile: names the file', () => {
      const r = start('gateway', { TOLLGATE_PROFILE: 'no-such-profile' });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/no-such-profile\.yaml/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    });

    it('production without an admin token: names the variable', () => {
      const r = start('metering', { NODE_ENV: 'production', TOLLGATE_ADMIN_TOKEN: '' });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/TOLLGATE_ADMIN_TOKEN/);
    });
  });
});
