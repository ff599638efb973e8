import { TopicPartitions, Topics } from '@tollgate/contracts';
import { AdminTokenEnv, adminTokenOf, Cleaned, DatabaseEnv, flag, InternalTokenEnv, internalTokenOf, kafkaConfig, kafkaCrossCheck, KafkaEnv, optionalOneOf, port, ProfileEnv, readConfig, RuntimeEnv, runtimeConfig, text, whole } from '@tollgate/platform';
import { DefaultPolicy } from './webhooks/delivery-policy';

/**
 * Every variable metering reads (documented in .env.example), checked once at start by `meteringConfig()` in
 * main.ts. To add one: a line in `MeteringEnv`, a field in what `meteringConfig` returns, a case in
 * config.unit.spec.ts, and its line in .env.example.
 */
export const MeteringEnv = {
  ...RuntimeEnv,
  ...ProfileEnv,
  ...DatabaseEnv,
  ...KafkaEnv,
  ...AdminTokenEnv,
  ...InternalTokenEnv,
  METERING_PORT: port(8081),
  METERING_HOST: text('127.0.0.1'),
  METERING_GRPC_PORT: port(50052),
  METERING_DB_POOL: whole(10, { min: 1, max: 1000 }),
  METERING_RESERVATIONS_DB_POOL: whole(4, { min: 1, max: 1000 }),
  METERING_PARTITIONS_CONCURRENTLY: whole(TopicPartitions[Topics.RequestCompleted], { min: 1, max: 10000 }),
  /** A consumer whose partitions stay behind, offsets unmoved, this long is not ready. */
  METERING_STALL_SECONDS: whole(120, { min: 1 }),
  /** A gateway's longest time from a granted hold to its event acknowledged by Kafka (HoldSweeper). */
  RESERVATION_PUBLISH_WINDOW_SECONDS: whole(120, { min: 1 }),
  WEBHOOK_DB_POOL: whole(4, { min: 1, max: 1000 }),
  WEBHOOK_NOTIFY_INTERVAL_MS: whole(250, { min: 1 }),
  WEBHOOK_SEND_INTERVAL_MS: whole(250, { min: 1 }),
  WEBHOOK_RETRY_BASE_MS: whole(DefaultPolicy.retryBaseMs, { min: 1 }),
  WEBHOOK_RETRY_MAX_MS: whole(DefaultPolicy.retryMaxMs, { min: 1 }),
  WEBHOOK_DISABLE_AFTER_MS: whole(DefaultPolicy.disableAfterMs, { min: 1 }),
  WEBHOOK_TIMEOUT_MS: whole(DefaultPolicy.timeoutMs, { min: 1 }),
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: flag(false),
  /** Crash tests only: metering-after-db-commit kills metering between the database and Kafka commits. */
  TOLLGATE_FAILPOINT: optionalOneOf(['metering-after-db-commit'] as const),
};

export function meteringConfig(env: NodeJS.ProcessEnv = process.env) {
  const c: Cleaned<typeof MeteringEnv> = readConfig(MeteringEnv, env, kafkaCrossCheck);
  const runtime = runtimeConfig(c);
  return {
    ...runtime,
    port: c.METERING_PORT,
    host: c.METERING_HOST,
    grpcPort: c.METERING_GRPC_PORT,
    profile: { name: c.TOLLGATE_PROFILE, dir: c.TOLLGATE_PROFILES_DIR },
    database: { url: c.DATABASE_URL, poolSize: c.METERING_DB_POOL, reservationsPoolSize: c.METERING_RESERVATIONS_DB_POOL, webhooksPoolSize: c.WEBHOOK_DB_POOL },
    kafka: kafkaConfig(c),
    adminToken: adminTokenOf(c),
    internalToken: internalTokenOf(c),
    partitionsConcurrently: c.METERING_PARTITIONS_CONCURRENTLY,
    stallMs: c.METERING_STALL_SECONDS * 1000,
    publishWindowMs: c.RESERVATION_PUBLISH_WINDOW_SECONDS * 1000,
    webhooks: {
      notifyIntervalMs: c.WEBHOOK_NOTIFY_INTERVAL_MS,
      sendIntervalMs: c.WEBHOOK_SEND_INTERVAL_MS,
      policy: { retryBaseMs: c.WEBHOOK_RETRY_BASE_MS, retryMaxMs: c.WEBHOOK_RETRY_MAX_MS, disableAfterMs: c.WEBHOOK_DISABLE_AFTER_MS, timeoutMs: c.WEBHOOK_TIMEOUT_MS },
      urlRules: { production: runtime.production, allowPrivate: c.WEBHOOK_ALLOW_PRIVATE_NETWORKS },
    },
    failpoint: c.TOLLGATE_FAILPOINT,
  };
}

export type MeteringConfig = ReturnType<typeof meteringConfig>;
