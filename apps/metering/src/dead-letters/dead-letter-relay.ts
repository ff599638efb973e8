import { Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Topics } from '@tollgate/contracts';
import { Publisher } from '@tollgate/messaging';
import { deadLetterMessage, markSent, unsentDeadLetters } from './dead-letter-store';

/**
 * Sends recorded dead letters to tollgate.request-completed.v1.dlq after the batch that refused them committed.
 * The consumer's transaction only inserts rows, so no org row stays locked while Kafka is slow or down; the
 * relay's own transaction locks nothing but its advisory lock (one relay at a time) and the rows it sends.
 *
 * Crash windows: before the send, the rows stay unsent and the next tick sends them; after the broker
 * acknowledged, before `sent_at` commits, they are sent again. The dead-letter topic is at-least-once; each
 * record carries its dead-letter id and original partition and offset, so a repeat is recognisable.
 */
export class DeadLetterRelay {
  private readonly log = new Logger('dead-letters');
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly ds: DataSource,
    private readonly publisher: Publisher,
    private readonly intervalMs = 500,
    private readonly batchSize = 500,
  ) {}

  start(): void {
    const tick = async () => {
      if (this.running) return;
      this.running = true;
      try {
        while ((await this.publishOnce()) === this.batchSize) {
          /* drain a backlog without waiting */
        }
      } catch (e) {
        this.log.error({ msg: 'dead-letter publication failed; will retry', error: (e as Error).message });
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

  /** Sends one batch of unsent dead letters; returns how many. */
  async publishOnce(): Promise<number> {
    return this.ds.transaction(async (m) => {
      const [lock] = (await m.query(`SELECT pg_try_advisory_xact_lock(727276) AS ok`)) as Array<{ ok: boolean }>;
      if (!lock?.ok) return 0;
      const letters = await unsentDeadLetters(m, this.batchSize);
      if (letters.length === 0) return 0;
      await this.publisher.publish(Topics.RequestCompletedDeadLetter, letters.map(deadLetterMessage));
      await markSent(m, letters.map((d) => d.id));
      return letters.length;
    });
  }
}
