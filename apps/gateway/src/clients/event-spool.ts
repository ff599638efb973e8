import { resolve } from 'node:path';
import { ConsoleLogger } from '@nestjs/common';
import { DeadLetterFile, Publisher, SpoolingPublisher, SpoolLog } from '@tollgate/messaging';
import { ConfigError, gatewayDeadLetters, spoolBytes, spooledEvents } from '@tollgate/platform';
import { GatewayConfig } from '../config';

/** How long start-up waits for the broker before it goes on without it (events spooled meanwhile). */
const BrokerWaitMs = 3000;

/**
 * The gateway's events through a durable spool (README, "When the broker is down"): GATEWAY_SPOOL_DIR (default
 * `.tollgate/spool/<port>`, one directory per gateway), GATEWAY_SPOOL_MAX_BYTES (64 MiB), GATEWAY_SPOOL_DEADLINE_MS
 * (how long a call waits for the broker before its event is spooled, 1500 ms). Whatever an earlier run left in
 * the spool is sent before anything new. An event larger than KAFKA_MAX_MESSAGE_BYTES, or one the broker refuses
 * for its content, is dead-lettered (`dead-letters.jsonl` in the spool directory, a notice to metering,
 * `tollgate_gateway_dead_letters_total`) instead of blocking the events behind it.
 *
 * `connect` makes a broker publisher. The gateway does not need the broker to start: when `connect` has not
 * succeeded within a few seconds, the spool opens without it, takes the events, and keeps trying in the
 * background. A configuration error the broker reveals (KAFKA_REPLICATION_FACTOR above its broker count) still
 * stops a start-up that saw it.
 */
export async function openEventSpool(
  connect: () => Promise<Publisher>,
  settings: GatewayConfig['spool'],
  maxMessageBytes: number,
  logger: ConsoleLogger,
): Promise<SpoolingPublisher> {
  const dir = resolve(settings.dir);
  const maxBytes = settings.maxBytes;
  const log = (level: 'error' | 'warn' | 'info', message: string, extra?: Record<string, unknown>) =>
    level === 'error' ? logger.error({ msg: message, ...extra }) : logger.warn({ msg: message, ...extra });
  let spool: SpoolLog;
  let deadLetters: DeadLetterFile;
  try {
    spool = await SpoolLog.open(dir, { maxBytes, log });
    deadLetters = await DeadLetterFile.open(dir);
  } catch (e) {
    throw new ConfigError(`GATEWAY_SPOOL_DIR=${dir}: ${(e as Error).message}`);
  }
  const first = connect();
  let connected = false;
  let timer: NodeJS.Timeout | undefined;
  const early = await Promise.race([
    first.then(
      () => ((connected = true), null),
      (e: unknown) => e,
    ),
    new Promise<null>((r) => (timer = setTimeout(() => r(null), BrokerWaitMs))),
  ]);
  clearTimeout(timer);
  if (early instanceof ConfigError) throw early;
  if (!connected) {
    log('error', `spool: the broker did not answer within ${BrokerWaitMs} ms (${early instanceof Error ? early.message : 'still connecting'}); starting without it: paid calls go on, their events are spooled to ${dir} and sent once it answers`);
  }
  const publisher = new SpoolingPublisher(first, spool, deadLetters, {
    deadlineMs: settings.deadlineMs,
    log,
    connect,
    maxMessageBytes,
    onDeadLetter: (_letter, cause) => gatewayDeadLetters.inc({ reason: cause }),
  });
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
