import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { MaxDeadLetterBytes, Topics } from '@tollgate/contracts';
import { Publisher } from '@tollgate/messaging';
import { AdvisoryLocks } from '@tollgate/persistence';
import { LockedRelay } from '../outbox/relay-loop';
import { deadLetterMessage, markSent, unsentDeadLetters } from '@tollgate/ledger';

/**
 * Sends recorded dead letters to tollgate.request-completed.v1.dlq after the batch that refused them committed.
 * The consumer's transaction only inserts rows, so no org row stays locked while Kafka is slow or down; the
 * relay's own transaction locks nothing but its advisory lock (one relay at a time) and the rows it sends.
 *
 * Crash windows: before the send, the rows stay unsent and the next tick sends them; after the broker
 * acknowledged, before `sent_at` commits, they are sent again. The dead-letter topic is at-least-once; each
 * record carries its dead-letter id and original partition and offset, so a repeat is recognisable.
 */
export class DeadLetterRelay extends LockedRelay {
  constructor(ds: DataSource, private readonly publisher: Publisher, intervalMs = 500, batchSize = 500) {
    super(ds, new Logger('dead-letters'), 'dead-letter publication', AdvisoryLocks.deadLetters, intervalMs, batchSize);
  }

  /** Sends one batch of unsent dead letters (runOnce: under the relay's lock); returns how many. */
  protected async round(m: EntityManager): Promise<number> {
    const unsent = await unsentDeadLetters(m, this.batchSize);
    if (unsent.length === 0) return 0;
    // One record batch on the broker: at most ~512 KiB of (cut) values per send, the rest on the next round.
    let bytes = 0;
    const letters = unsent.filter((d, i) => {
      bytes += Math.min(d.value?.length ?? 0, MaxDeadLetterBytes) + 2048;
      return i === 0 || bytes <= 512 * 1024;
    });
    await this.publisher.publish(Topics.RequestCompletedDeadLetter, letters.map(deadLetterMessage));
    await markSent(m, letters.map((d) => d.id));
    // A full batch tells the loop to go again at once, as does a batch cut short by size.
    return letters.length < unsent.length ? this.batchSize : letters.length;
  }
}
