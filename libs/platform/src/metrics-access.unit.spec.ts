import { mayReadMetrics, metricsAccess } from './metrics-access';

describe('who may read GET /metrics', () => {
  const internal = { publicPort: false };
  const gateway = { publicPort: true };

  it('requires Bearer TOLLGATE_METRICS_TOKEN on every app when it is set, and nothing else', () => {
    for (const where of [internal, gateway]) {
      for (const NODE_ENV of ['development', 'production']) {
        const access = metricsAccess({ TOLLGATE_METRICS_TOKEN: 'scrape-me', NODE_ENV, TOLLGATE_ADMIN_TOKEN: 'admin' }, where);
        expect(mayReadMetrics(access, 'Bearer scrape-me')).toBe(true);
        for (const header of [undefined, '', 'Bearer ', 'Bearer scrape-m', 'Bearer scrape-me2', 'scrape-me', 'Basic scrape-me', 'Bearer admin']) {
          expect(mayReadMetrics(access, header)).toBe(false);
        }
      }
    }
  });

  it('keeps the gateway\'s /metrics closed in production when no token is set (its port is the public one)', () => {
    const access = metricsAccess({ NODE_ENV: 'production', TOLLGATE_ADMIN_TOKEN: 'admin' }, gateway);
    expect(mayReadMetrics(access, undefined)).toBe(false);
    expect(mayReadMetrics(access, 'Bearer admin')).toBe(false);
  });

  it('serves /metrics without a token on internal ports, and on the gateway outside production', () => {
    expect(mayReadMetrics(metricsAccess({ NODE_ENV: 'production' }, internal), undefined)).toBe(true);
    expect(mayReadMetrics(metricsAccess({ NODE_ENV: 'development' }, gateway), undefined)).toBe(true);
    expect(mayReadMetrics(metricsAccess({}, gateway), undefined)).toBe(true);
  });
});
