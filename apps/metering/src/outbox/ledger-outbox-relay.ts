import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Topics } from '@tollgate/contracts';
import { Publisher } from '@tollgate/messaging';
import { AdvisoryLocks } from '@tollgate/persistence';
import { LockedRelay } from './relay-loop';

/**
 * Publishes ledger entries on tollgate.ledger.v1 from the transactional outbox: entries and their outbox rows
 * are written in one transaction, so an entry can never be lost.
 *
 * One relay at a time (a transaction-scoped advisory lock). The order promised is per org: the topic carries an
 * org's entries in `seq` order (the message key is the org, so they share a partition), which is what consumers
 * of tollgate.ledger.v1 rely on. No order across orgs is promised: entries of different orgs may be published in
 * any order relative to each other. Each round reads, per org, a prefix of its pending entries by `seq`, never
 * relying on `id` (on a distributed database ids need not follow seq): an org's entry N+1 commits only after
 * entry N did (both are written under the org's account lock), so a snapshot that sees N+1 sees N or finds N
 * already sent. Orgs are served oldest pending entry first and then round-robin, so one busy org can't starve
 * the others. Crash windows:
 * - before the send: the rows are still there; the next tick sends them.
 * - after the broker acknowledged, before the delete commits: the rows are sent again on the next tick. Each
 *   message's key is the org and carries `seq`: (org_id, seq) identifies an entry, so consumers drop the
 *   repeat. This is the one way a ledger message can appear twice; it needs a crash in a window of one
 *   DELETE round trip.
 */
export class LedgerOutboxRelay extends LockedRelay {
  constructor(ds: DataSource, private readonly publisher: Publisher, intervalMs = 200, batchSize = 2000) {
    super(ds, new Logger('ledger-outbox'), 'ledger publication', AdvisoryLocks.ledgerOutbox, intervalMs, batchSize);
  }

  /** Sends one batch of pending entries (runOnce: under the relay's lock); returns how many. */
  protected async round(m: EntityManager): Promise<number> {
    // The orgs of the oldest pending rows; for each, its lowest seqs, an equal share of the batch (the (org_id, seq)
    // unique index); then the first of every org, the second of every org, ... up to the batch size. Every org's
    // part is a prefix of its pending entries by seq, whatever is cut.
    // An outbox row names its entry (org_id, seq); the message is built from the entry (ledger_entries is append-only,
    // so it is the entry as written). Rows written before SlimLedgerOutbox carry their payload and are sent as they are.
    const rows: Array<{ org_id: string; seq: string; payload: unknown }> = await m.query(
      `SELECT o.org_id, o.seq,
              COALESCE(o.payload, jsonb_build_object('org_id', e.org_id, 'seq', e.seq, 'type', e.type, 'amount', e.amount,
                'balance_after', e.balance_after, 'cause', e.cause, 'occurred_at', e.occurred_at, 'recorded_at', e.recorded_at,
                'bucket_id', e.bucket_id, 'detail', e.detail)) AS payload
         FROM (SELECT org_id, count(*) OVER () AS orgs
                 FROM (SELECT DISTINCT org_id FROM (SELECT org_id FROM ledger_outbox ORDER BY id LIMIT $1) oldest) d) orgs
        CROSS JOIN LATERAL (
              SELECT org_id, seq, payload, row_number() OVER (ORDER BY seq) AS rank
                FROM ledger_outbox WHERE org_id = orgs.org_id ORDER BY seq LIMIT ($1 + orgs.orgs - 1) / orgs.orgs) o
         LEFT JOIN ledger_entries e ON o.payload IS NULL AND e.org_id = o.org_id AND e.seq = o.seq
        ORDER BY o.rank, o.org_id LIMIT $1`,
      [this.batchSize],
    );
    if (rows.length === 0) return 0;
    await this.publisher.publish(
      Topics.Ledger,
      rows.map((r) => ({ key: r.org_id, value: JSON.stringify(r.payload), headers: { seq: String(r.seq) } })),
    );
    await m.query(
      `DELETE FROM ledger_outbox o USING unnest($1::text[], $2::bigint[]) AS d(org_id, seq) WHERE o.org_id = d.org_id AND o.seq = d.seq`,
      [rows.map((r) => r.org_id), rows.map((r) => r.seq)],
    );
    return rows.length;
  }
}
