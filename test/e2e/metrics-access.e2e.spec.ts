import { freePort, Stack } from '../support/stack';

/**
 * GET /metrics on the gateway's public port is not for the API's callers: with TOLLGATE_METRICS_TOKEN set every
 * app asks for it as a bearer token (Prometheus sends it, ops/prometheus.yml); a production gateway without one
 * answers 401. Health stays public.
 */
describe('who may read /metrics', () => {
  let stack: Stack;
  let productionPort: number;
  const token = 'metrics-e2e-token';

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard', env: { TOLLGATE_METRICS_TOKEN: token } });
    productionPort = await freePort();
    await stack.startApp('gateway', 'gateway-production', { GATEWAY_PORT: String(productionPort), NODE_ENV: 'production', TOLLGATE_METRICS_TOKEN: '' });
  }, 150_000);

  afterAll(async () => {
    await stack?.stop();
  });

  const get = (port: number, path: string, authorization?: string) => fetch(`http://127.0.0.1:${port}${path}`, { headers: authorization ? { authorization } : {} });

  it.each(['gateway', 'metering', 'query'] as const)('%s: /metrics only with Bearer TOLLGATE_METRICS_TOKEN; health without', async (app) => {
    const port = stack.ports[app];
    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${stack.adminToken}`, token]) {
      const res = await get(port, '/metrics', authorization);
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: 'unauthorized', message: 'metrics: missing or wrong Authorization: Bearer <TOLLGATE_METRICS_TOKEN>' });
    }
    const ok = await get(port, '/metrics', `Bearer ${token}`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toContain('text/plain');
    expect(await ok.text()).toContain('tollgate_http_requests_total');
    for (const path of ['/health/live', '/health/ready']) expect((await get(port, path)).status).toBe(200);
  });

  it('a production gateway without TOLLGATE_METRICS_TOKEN keeps /metrics closed on its public port, and says how to open it', async () => {
    const res = await get(productionPort, '/metrics');
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ message: 'metrics: set TOLLGATE_METRICS_TOKEN to read them on this port' });
    expect((await get(productionPort, '/metrics', `Bearer ${stack.adminToken}`)).status).toBe(401);
    expect((await get(productionPort, '/health/ready')).status).toBe(200);
    expect(stack.logs.get('gateway-production')!.join('')).toContain('GET /metrics answers 401 on this public port until TOLLGATE_METRICS_TOKEN is set');
  });
});
