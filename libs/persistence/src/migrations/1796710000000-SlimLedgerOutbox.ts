import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * ledger_outbox rows name their entry (org_id, seq) and no longer carry a copy of it: the relay builds the message
 * from ledger_entries (append-only, so the entry it reads is the one written). Rows written before keep their
 * payload, which the relay sends as it is. `down` fills the payload of the rows without one and makes it required.
 */
export class SlimLedgerOutbox1796710000000 implements MigrationInterface {
  name = 'SlimLedgerOutbox1796710000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ledger_outbox ALTER COLUMN payload DROP NOT NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      UPDATE ledger_outbox o SET payload = jsonb_build_object('org_id', e.org_id, 'seq', e.seq, 'type', e.type, 'amount', e.amount,
               'balance_after', e.balance_after, 'cause', e.cause, 'occurred_at', e.occurred_at, 'recorded_at', e.recorded_at,
               'bucket_id', e.bucket_id, 'detail', e.detail)
        FROM ledger_entries e
       WHERE o.payload IS NULL AND e.org_id = o.org_id AND e.seq = o.seq`);
    await q.query(`ALTER TABLE ledger_outbox ALTER COLUMN payload SET NOT NULL`);
  }
}
