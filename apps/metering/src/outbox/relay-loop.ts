import { Logger } from '@nestjs/common';

/**
 * The loop both relays (ledger outbox, dead letters) run: every `intervalMs`, unless the last round is still
 * going, call `sendOnce` until it returns less than a full batch (a backlog drains without waiting). A failure
 * is logged and retried on the next tick; `stop` waits for a round in progress.
 */
export class RelayLoop {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly log: Logger,
    private readonly what: string,
    private readonly sendOnce: () => Promise<number>,
    private readonly intervalMs: number,
    private readonly batchSize: number,
  ) {}

  start(): void {
    const tick = async () => {
      if (this.running) return;
      this.running = true;
      try {
        while ((await this.sendOnce()) === this.batchSize) {
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
