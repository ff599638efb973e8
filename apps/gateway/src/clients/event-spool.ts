import { resolve } from 'node:path';
import { ConsoleLogger } from '@nestjs/common';
import { Publisher, SpoolingPublisher, SpoolLog } from '@tollgate/messaging';
import { ConfigError, intFromEnv, spoolBytes, spooledEvents, strFromEnv } from '@tollgate/platform';

/**
 * The gateway's events through a durable spool (README, "When the broker is down"): GATEWAY_SPOOL_DIR (default
 * `.tollgate/spool/<port>`, one directory per gateway), GATEWAY_SPOOL_MAX_BYTES (64 MiB), GATEWAY_SPOOL_DEADLINE_MS
 * (how long a call waits for the broker before its event is spooled, 1500 ms). Whatever an earlier run left in
 * the spool is sent before anything new.
 */
export async function openEventSpool(connect: () => Promise<Publisher>, port: number, logger: ConsoleLogger): Promise<SpoolingPublisher> {
  const dir = resolve(strFromEnv('GATEWAY_SPOOL_DIR', `.tollgate/spool/${port}`));
  const maxBytes = intFromEnv('GATEWAY_SPOOL_MAX_BYTES', 64 * 1024 * 1024);
  if (maxBytes < 64 * 1024) throw new ConfigError(`environment: GATEWAY_SPOOL_MAX_BYTES: at least 65536 bytes (got ${maxBytes})`);
  const log = (level: 'error' | 'warn' | 'info', message: string, extra?: Record<string, unknown>) =>
    level === 'error' ? logger.error({ msg: message, ...extra }) : logger.warn({ msg: message, ...extra });
  let spool: SpoolLog;
  try {
    spool = await SpoolLog.open(dir, { maxBytes, log });
  } catch (e) {
    throw new ConfigError(`GATEWAY_SPOOL_DIR=${dir}: ${(e as Error).message}`);
  }
  const publisher = new SpoolingPublisher(await connect(), spool, { deadlineMs: intFromEnv('GATEWAY_SPOOL_DEADLINE_MS', 1500), log, reconnect: connect });
  let counted = 0;
  // Metrics follow once a second, off the paid path.
  setInterval(() => {
    spoolBytes.set(spool.bytes());
    const n = publisher.spooled();
    if (n > counted) spooledEvents.inc(n - counted);
    counted = n;
  }, 1000).unref();
  publisher.start();
  return publisher;
}
