/**
 * The PostgreSQL advisory lock keys Tollgate takes, one per job that must run once at a time across instances,
 * named in one place so no two jobs ever share a key by accident.
 */
export const AdvisoryLocks = {
  /** Migrations at start-up (session lock: several apps may start together). */
  migrations: 727274,
  /** metering's ledger outbox relay. */
  ledgerOutbox: 727275,
  /** metering's dead-letter relay. */
  deadLetters: 727276,
  /** The webhook notifier and anything else that adds webhook messages (a re-send). */
  webhookMessages: 727277,
} as const;
