/**
 * Runs an app's start-up; a failure the operator can fix (a bad profile, an unreachable Kafka or PostgreSQL,
 * a missing setting) prints one clear line naming what and where, not a stack trace, and exits 1.
 */
export function runMain(app: string, start: () => Promise<unknown>): void {
  start().catch((e: Error) => {
    const known = ['ConfigError', 'DatabaseUnavailableError', 'KafkaUnavailableError', 'ProfileError'];
    const line = known.includes(e.constructor.name) ? e.message : `${e.message}\n${e.stack ?? ''}`;
    console.error(`${app}: cannot start: ${line}`);
    process.exit(1);
  });
}

/** Stops cleanly on SIGINT/SIGTERM, once. */
export function onShutdown(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    stop()
      .catch((e: Error) => console.error(`shutdown after ${signal} failed: ${e.message}`))
      .finally(() => process.exit(0));
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
}
