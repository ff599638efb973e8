import { ConfigError } from '@tollgate/platform';
import { gatewayConfig } from './config';

describe("the gateway's configuration", () => {
  it('keeps every documented default', () => {
    const c = gatewayConfig({});
    expect(c).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      profile: { name: 'trackyard', dir: undefined },
      database: { url: 'postgres://postgres@127.0.0.1:5432/tollgate', poolSize: 5 },
      kafka: { brokers: ['127.0.0.1:9092'], maxMessageBytes: 1048576, lingerMs: 0, topicSettings: { replicationFactor: 1, minInsyncReplicas: null, partitions: null } },
      upstream: { url: 'http://127.0.0.1:8090', maxBodyBytes: 64 * 1024 * 1024 },
      queryUrl: 'http://127.0.0.1:8082',
      meteringGrpcUrl: '127.0.0.1:50052',
      redisUrl: undefined,
      trustedProxies: [],
      keyCacheTtlMs: 2000,
      serverTiming: false,
      creditLeases: true,
      spool: { dir: '.tollgate/spool/8080', maxBytes: 64 * 1024 * 1024, deadlineMs: 1500 },
      production: false,
    });
    expect(c.internalToken.isDefault).toBe(true);
  });

  it('reads the values .env.example shows', () => {
    const c = gatewayConfig({ GATEWAY_PORT: '9000', TRUSTED_PROXIES: '10.0.0.1, 10.1.0.0/16', GATEWAY_SERVER_TIMING: '1', REDIS_URL: 'redis://127.0.0.1:6379' });
    expect(c.spool.dir).toBe('.tollgate/spool/9000');
    expect(c.trustedProxies).toEqual(['10.0.0.1', '10.1.0.0/16']);
    expect(c.serverTiming).toBe(true);
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(gatewayConfig({ GATEWAY_CREDIT_LEASES: '0', GATEWAY_NAME: 'edge-1' })).toMatchObject({ creditLeases: false, gatewayName: 'edge-1' });
    expect(gatewayConfig({ GATEWAY_PORT: '9000' }).gatewayName).toMatch(/:9000$/);
  });

  it.each([
    ['GATEWAY_PORT', 'http'],
    ['GATEWAY_DB_POOL', '0'],
    ['UPSTREAM_URL', '127.0.0.1:8090'],
    ['QUERY_URL', 'ftp://127.0.0.1'],
    ['REDIS_URL', '127.0.0.1:6379'],
    ['KEY_CACHE_TTL_MS', '2s'],
    ['GATEWAY_SERVER_TIMING', 'on'],
    ['GATEWAY_UPSTREAM_MAX_BODY_BYTES', '64MiB'],
    ['GATEWAY_SPOOL_MAX_BYTES', '1024'],
    ['GATEWAY_SPOOL_DEADLINE_MS', '0'],
    ['GATEWAY_CREDIT_LEASES', '2'],
    ['KAFKA_BROKERS', 'localhost'],
    ['KAFKA_MAX_MESSAGE_BYTES', '1k'],
    ['KAFKA_LINGER_MS', '-1'],
    ['KAFKA_LINGER_MS', '5000'],
    ['DATABASE_URL', 'mysql://db/tollgate'],
    ['LOG_LEVEL', 'trace'],
    ['LOG_FORMAT', 'xml'],
  ])('refuses %s=%s at start, naming it', (name, value) => {
    expect(() => gatewayConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => gatewayConfig({ [name]: value })).toThrow(new RegExp(`^invalid configuration: ${name}: `));
  });

  it('refuses to start in production without the internal token', () => {
    expect(() => gatewayConfig({ NODE_ENV: 'production' })).toThrow(/TOLLGATE_INTERNAL_TOKEN: must be set when NODE_ENV=production/);
  });
});
