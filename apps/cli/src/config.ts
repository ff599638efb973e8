import { Cleaned, DatabaseEnv, kafkaConfig, kafkaCrossCheck, KafkaEnv, optionalText, ProfileEnv, readConfig, url, whole } from '@tollgate/platform';

/**
 * Every variable the CLI reads (documented in .env.example), checked when a command starts: `run` (tollgate.ts)
 * reads it before dispatching, and each operator program reads it from the environment it was given, so a bad
 * value is refused before any connection with `invalid configuration: NAME: ...` (exit 2).
 */
export const CliEnv = {
  ...ProfileEnv,
  ...DatabaseEnv,
  ...KafkaEnv,
  /** Metering's admin API. */
  TOLLGATE_ADMIN_URL: url('http://127.0.0.1:8081', ['http', 'https']),
  TOLLGATE_ADMIN_TOKEN: optionalText(),
  /** audit's default --hold-grace: the sweeper's publish window. */
  RESERVATION_PUBLISH_WINDOW_SECONDS: whole(120, { min: 1 }),
  USER: optionalText(),
  LOGNAME: optionalText(),
};

export function cliConfig(env: NodeJS.ProcessEnv) {
  const c: Cleaned<typeof CliEnv> = readConfig(CliEnv, env, kafkaCrossCheck);
  return {
    adminUrl: c.TOLLGATE_ADMIN_URL.replace(/\/+$/, ''),
    adminToken: c.TOLLGATE_ADMIN_TOKEN,
    /** Who the admin commands are recorded as without --actor. */
    user: (c.USER ?? c.LOGNAME ?? '').trim(),
    profile: { name: c.TOLLGATE_PROFILE, dir: c.TOLLGATE_PROFILES_DIR },
    databaseUrl: c.DATABASE_URL,
    kafka: kafkaConfig(c),
    /** Whether KAFKA_BROKERS was given (audit --read-topic asks for it rather than trying the default). */
    kafkaBrokersSet: Boolean(env.KAFKA_BROKERS),
    publishWindowSeconds: c.RESERVATION_PUBLISH_WINDOW_SECONDS,
  };
}

export type CliConfig = ReturnType<typeof cliConfig>;
