import { Logger } from '@nestjs/common';

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
