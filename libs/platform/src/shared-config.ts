import { Cleaned, CrossCheck, hostPorts, oneOf, optionalText, optionalWhole, text, url, whole } from './config';

/**
 * The variables more than one app reads, in groups an app's config module spreads into its own (every variable is
 * documented in .env.example). Each group comes with the function that turns its cleaned values into settings.
 */

// ---- runtime and logging ----------------------------------------------------------------------------------------

export const LogLevels = ['verbose', 'debug', 'log', 'warn', 'error', 'fatal'] as const;
export type LogLevelName = (typeof LogLevels)[number];

export const RuntimeEnv = {
  /** Unset: development. production turns on the checks that refuse development defaults. */
  NODE_ENV: text('development'),
  LOG_LEVEL: oneOf(LogLevels, 'log'),
  LOG_FORMAT: oneOf(['json', 'text'] as const, 'json'),
  /** Required on every app's /metrics when set (metrics-access.ts). */
  TOLLGATE_METRICS_TOKEN: optionalText(),
};

export interface RuntimeConfig {
  nodeEnv: string;
  production: boolean;
  logging: { level: LogLevelName; format: 'json' | 'text' };
  /** What metricsAccess reads. */
  metrics: { TOLLGATE_METRICS_TOKEN?: string; NODE_ENV: string };
}

export function runtimeConfig(c: Cleaned<typeof RuntimeEnv>): RuntimeConfig {
  return {
    nodeEnv: c.NODE_ENV,
    production: c.NODE_ENV === 'production',
    logging: { level: c.LOG_LEVEL, format: c.LOG_FORMAT },
    metrics: { TOLLGATE_METRICS_TOKEN: c.TOLLGATE_METRICS_TOKEN, NODE_ENV: c.NODE_ENV },
  };
}

// ---- profiles -----------------------------------------------------------------------------------------------------

export const ProfileEnv = {
  /** config/profiles/<name>.yaml; whether it exists is checked when it is loaded (the message names the file). */
  TOLLGATE_PROFILE: text('trackyard'),
  TOLLGATE_PROFILES_DIR: optionalText(),
};

// ---- PostgreSQL ---------------------------------------------------------------------------------------------------

export const DefaultDatabaseUrl = 'postgres://postgres@127.0.0.1:5432/tollgate';

export const DatabaseEnv = {
  DATABASE_URL: url(DefaultDatabaseUrl, ['postgres', 'postgresql']),
};

// ---- Kafka --------------------------------------------------------------------------------------------------------

export const DefaultBrokers = '127.0.0.1:9092';
/** The broker's default `message.max.bytes` (1 MiB + 12) rounded down: what a send is kept within by default. */
export const DefaultMaxMessageBytes = 1024 * 1024;

export const KafkaEnv = {
  KAFKA_BROKERS: hostPorts(DefaultBrokers),
  KAFKA_REPLICATION_FACTOR: whole(1, { min: 1, max: 32767 }),
  KAFKA_MIN_INSYNC_REPLICAS: optionalWhole({ min: 1, max: 32767 }),
  KAFKA_PARTITIONS: optionalWhole({ min: 1, max: 10000 }),
  KAFKA_MAX_MESSAGE_BYTES: whole(DefaultMaxMessageBytes, { min: 65536, max: 1024 * 1024 * 1024 }),
  /**
   * How long a publisher waits to gather more messages into one produce request, in ms. 0 (the default, chosen
   * from the gateway bench: docs/BENCHMARKS.md): the calls of one event-loop turn, and those made while a send is
   * in flight, go together, with no timer.
   */
  KAFKA_LINGER_MS: whole(0, { min: 0, max: 1000 }),
};

/** No acks=all write could succeed with fewer replicas than min.insync.replicas. */
export const kafkaCrossCheck: CrossCheck<typeof KafkaEnv> = (c) => {
  const problems: Record<string, string> = {};
  const min = c.KAFKA_MIN_INSYNC_REPLICAS;
  if (min !== undefined && min > c.KAFKA_REPLICATION_FACTOR) {
    problems.KAFKA_MIN_INSYNC_REPLICAS = `must not exceed KAFKA_REPLICATION_FACTOR (${min} > ${c.KAFKA_REPLICATION_FACTOR}): no acks=all write could succeed`;
  }
  return problems;
};

export interface KafkaConfig {
  brokers: string[];
  /** How missing topics are created (existing ones keep theirs). null: the broker's or the project's default. */
  topicSettings: { replicationFactor: number; minInsyncReplicas: number | null; partitions: number | null };
  /** The largest record batch the brokers take: sends are kept within it. */
  maxMessageBytes: number;
  /** How long a publisher gathers messages for a send (0: one event-loop turn, no timer). */
  lingerMs: number;
}

export function kafkaConfig(c: Cleaned<typeof KafkaEnv>): KafkaConfig {
  return {
    brokers: c.KAFKA_BROKERS,
    topicSettings: { replicationFactor: c.KAFKA_REPLICATION_FACTOR, minInsyncReplicas: c.KAFKA_MIN_INSYNC_REPLICAS ?? null, partitions: c.KAFKA_PARTITIONS ?? null },
    maxMessageBytes: c.KAFKA_MAX_MESSAGE_BYTES,
    lingerMs: c.KAFKA_LINGER_MS,
  };
}

// ---- credentials --------------------------------------------------------------------------------------------------

export const DevelopmentAdminToken = 'dev-admin-token-change-me';
export const DevelopmentInternalToken = 'dev-internal-token-change-me';

const inProduction = (c: Record<string, unknown>) => c.NODE_ENV === 'production';

/** Production refuses to start without them; development falls back to printed defaults. Needs RuntimeEnv beside. */
export const AdminTokenEnv = {
  TOLLGATE_ADMIN_TOKEN: optionalText({ desc: 'must be set when NODE_ENV=production (it guards the admin API)', requiredWhen: inProduction }),
};

/**
 * What gateways present to metering's gRPC (`authorization: Bearer <token>` metadata). Development falls back to
 * a default metering and gateway share, so `npm run start:<app>` works out of the box.
 */
export const InternalTokenEnv = {
  TOLLGATE_INTERNAL_TOKEN: optionalText({
    desc: "must be set when NODE_ENV=production (gateways present it to metering's gRPC)",
    requiredWhen: inProduction,
  }),
};

export interface Token {
  token: string;
  isDefault: boolean;
}

export const adminTokenOf = (c: Cleaned<typeof AdminTokenEnv>): Token =>
  c.TOLLGATE_ADMIN_TOKEN ? { token: c.TOLLGATE_ADMIN_TOKEN, isDefault: false } : { token: DevelopmentAdminToken, isDefault: true };

export const internalTokenOf = (c: Cleaned<typeof InternalTokenEnv>): Token =>
  c.TOLLGATE_INTERNAL_TOKEN ? { token: c.TOLLGATE_INTERNAL_TOKEN, isDefault: false } : { token: DevelopmentInternalToken, isDefault: true };
