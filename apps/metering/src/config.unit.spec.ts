import { ConfigError } from '@tollgate/platform';
import { meteringConfig } from './config';

describe("metering's configuration", () => {
  it('keeps every documented default', () => {
    const c = meteringConfig({});
    expect(c).toMatchObject({
      port: 8081,
      host: '127.0.0.1',
      grpcPort: 50052,
      database: { poolSize: 10, reservationsPoolSize: 4, webhooksPoolSize: 4 },
      partitionsConcurrently: 6,
      stallMs: 120_000,
      publishWindowMs: 120_000,
      webhooks: {
        notifyIntervalMs: 250,
        sendIntervalMs: 250,
        policy: { retryBaseMs: 5000, retryMaxMs: 3_600_000, disableAfterMs: 259_200_000, timeoutMs: 5000 },
        urlRules: { production: false, allowPrivate: false },
      },
      failpoint: undefined,
    });
    expect(c.adminToken.isDefault).toBe(true);
  });

  it('reads production settings', () => {
    const c = meteringConfig({ NODE_ENV: 'production', TOLLGATE_ADMIN_TOKEN: 'a', TOLLGATE_INTERNAL_TOKEN: 'i', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' });
    expect(c.webhooks.urlRules).toEqual({ production: true, allowPrivate: true });
    expect(c.adminToken).toEqual({ token: 'a', isDefault: false });
  });

  it.each([
    ['METERING_PORT', '-1'],
    ['METERING_GRPC_PORT', '50052x'],
    ['METERING_DB_POOL', 'ten'],
    ['METERING_RESERVATIONS_DB_POOL', '0'],
    ['METERING_PARTITIONS_CONCURRENTLY', '0'],
    ['METERING_STALL_SECONDS', '2m'],
    ['RESERVATION_PUBLISH_WINDOW_SECONDS', '0'],
    ['WEBHOOK_TIMEOUT_MS', '5 s'],
    ['WEBHOOK_RETRY_BASE_MS', '0'],
    ['WEBHOOK_RETRY_MAX_MS', 'x'],
    ['WEBHOOK_DISABLE_AFTER_MS', '3d'],
    ['WEBHOOK_NOTIFY_INTERVAL_MS', '0'],
    ['WEBHOOK_SEND_INTERVAL_MS', '-5'],
    ['WEBHOOK_DB_POOL', '0'],
    ['WEBHOOK_ALLOW_PRIVATE_NETWORKS', 'maybe'],
    ['TOLLGATE_FAILPOINT', 'metering-before-commit'],
    ['KAFKA_REPLICATION_FACTOR', '0'],
    ['KAFKA_PARTITIONS', 'many'],
  ])('refuses %s=%s at start, naming it', (name, value) => {
    expect(() => meteringConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => meteringConfig({ [name]: value })).toThrow(new RegExp(`^invalid configuration: ${name}: `));
  });

  it('refuses to start in production without its tokens, naming both', () => {
    expect(() => meteringConfig({ NODE_ENV: 'production' })).toThrow(/TOLLGATE_ADMIN_TOKEN: must be set when NODE_ENV=production.*TOLLGATE_INTERNAL_TOKEN: must be set/);
  });
});
