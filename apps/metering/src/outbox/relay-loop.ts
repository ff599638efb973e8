import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';

/**
 * The loop every relay in metering runs (ledger outbox, dead letters, webhook notifications and deliveries): every
 * `intervalMs`, unless the last round is still going, call `sendOnce` again at once while `more(itsResult)` says a
 * backlog is waiting (e.g. a full batch), so a backlog drains without waiting. A failure is logged and retried on
 * the next tick; `stop` ends a drain after its current round and waits for it.
 */
export class RelayLoop {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly log: Logger,
    private readonly what: string,
    private readonly sendOnce: () => Promise<number>,
    private readonly intervalMs: number,
    private readonly more: (sent: number) => boolean,
  ) {}

  start(): void {
    const tick = async () => {
      if (this.running) return;
      this.running = true;
      try {
        while (this.more(await this.sendOnce()) && this.timer) {
          /* drain a backlog without waiting */
        }
      } catch (e) {
        this.log.error({ msg: `${this.what} failed; will retry`, error: (e as Error).message });
      } finally {
        this.running = false;
      }
    };
    this.timer = setInterval(() => void tick(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    while (this.running) await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A relay that runs once at a time across metering instances: each round is one transaction that first tries the
 * relay's advisory lock (AdvisoryLocks in @tollgate/persistence) and, holding it, runs `round`; another instance's
 * round meanwhile does nothing. A round returning `batchSize` (a full batch) is followed by another at once. The
 * ledger outbox, the dead-letter relay and the webhook notifier are such relays.
 */
export abstract class LockedRelay {
  private readonly loop: RelayLoop;

  protected constructor(
    protected readonly ds: DataSource,
    log: Logger,
    what: string,
    private readonly lockKey: number,
    intervalMs: number,
    protected readonly batchSize: number,
  ) {
    this.loop = new RelayLoop(log, what, () => this.runOnce(), intervalMs, (done) => done === batchSize);
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One round under the lock; returns what `round` did (0 when another instance holds the lock). */
  runOnce(): Promise<number> {
    return this.ds.transaction(async (m) => {
      const [lock] = (await m.query(`SELECT pg_try_advisory_xact_lock($1) AS ok`, [this.lockKey])) as Array<{ ok: boolean }>;
      return lock?.ok ? this.round(m) : 0;
    });
  }

  /** The relay's work, in the transaction that holds its lock: returns how many it did. */
  protected abstract round(m: EntityManager): Promise<number>;
}
