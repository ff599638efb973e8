import { Logger } from '@nestjs/common';
import { RelayLoop } from './relay-loop';
import { DataSource } from 'typeorm';
import { Topics } from '@tollgate/contracts';
import { Publisher } from '@tollgate/messaging';

/**
 * Publishes ledger entries on tollgate.ledger.v1 from the transactional outbox: entries and their outbox rows
 * are written in one transaction, so an entry can never be lost.
 *
 * One relay at a time (a transaction-scoped advisory lock), rows in id order, so per org the topic carries
 * entries in `seq` order. Crash windows:
 * - before the send: the rows are still there; the next tick sends them.
 * - after the broker acknowledged, before the delete commits: the rows are sent again on the next tick. Each
 *   message's key is the org and carries `seq`: (org_id, seq) identifies an entry, so consumers drop the
 *   repeat. This is the one way a ledger message can appear twice; it needs a crash in a window of one
 *   DELETE round trip.
 */
export class LedgerOutboxRelay {
  private readonly log = new Logger('ledger-outbox');
  private readonly loop: RelayLoop;

  constructor(
    private readonly ds: DataSource,
    private readonly publisher: Publisher,
    intervalMs = 200,
    private readonly batchSize = 2000,
  ) {
    this.loop = new RelayLoop(this.log, 'ledger publication', () => this.publishOnce(), intervalMs, batchSize);
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Sends one batch of pending entries; returns how many. */
  async publishOnce(): Promise<number> {
    return this.ds.transaction(async (m) => {
      const [lock] = (await m.query(`SELECT pg_try_advisory_xact_lock(727275) AS ok`)) as Array<{ ok: boolean }>;
      if (!lock?.ok) return 0;
      const rows: Array<{ id: string; org_id: string; seq: string; payload: unknown }> = await m.query(
        `SELECT id, org_id, seq, payload FROM ledger_outbox ORDER BY id LIMIT $1`,
        [this.batchSize],
      );
      if (rows.length === 0) return 0;
      await this.publisher.publish(
        Topics.Ledger,
        rows.map((r) => ({ key: r.org_id, value: JSON.stringify(r.payload), headers: { seq: String(r.seq) } })),
      );
      await m.query(`DELETE FROM ledger_outbox WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
      return rows.length;
    });
  }
}
