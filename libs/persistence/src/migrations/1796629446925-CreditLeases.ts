import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Credit leases (SPEC §4): a gateway holds a block of an org's credits and spends it call by call.
 * - ledger_entries gains the `lease` type (the block taken, per bucket, caused by `lease:<id>`).
 * - A lease is a reservations row of kind 'lease': `spent` is what the events drawn from it were charged (metering
 *   adds to it as it meters them), `returned` what the gateway gave back early (EndLease: never drawn), and
 *   `lease_ms` how long after `held_at` the gateway may draw from it (0 for a per-call hold). The sweeper closes a
 *   lease like a hold, once its events can no longer arrive unseen, giving back `credits - spent - returned`.
 * - usage_records.lease_id: the lease a call was paid from (its price is in the lease's `spent`, not in a
 *   `charge` entry of its own), for the audit to pair them.
 * - (OrgLeadingKeys' index of the held rows per org serves what /me adds back: leased, not spent.)
 */
export class CreditLeases1796629446925 implements MigrationInterface {
  name = 'CreditLeases1796629446925';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_type_check`);
    await q.query(
      `ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_type_check
         CHECK (type IN ('grant','expiry','reservation','lease','release','charge','top_up','adjustment'))`,
    );
    await q.query(`ALTER TABLE reservations ADD COLUMN kind text NOT NULL DEFAULT 'hold' CHECK (kind IN ('hold', 'lease'))`);
    await q.query(`ALTER TABLE reservations ADD COLUMN spent bigint NOT NULL DEFAULT 0 CHECK (spent >= 0)`);
    await q.query(`ALTER TABLE reservations ADD COLUMN returned bigint NOT NULL DEFAULT 0 CHECK (returned >= 0)`);
    await q.query(`ALTER TABLE reservations ADD COLUMN lease_ms int NOT NULL DEFAULT 0 CHECK (lease_ms >= 0)`);
    await q.query(`ALTER TABLE reservations ADD COLUMN gateway text`);
    await q.query(`ALTER TABLE reservations ADD CONSTRAINT reservations_lease_within CHECK (spent + returned <= credits)`);
    await q.query(`ALTER TABLE usage_records ADD COLUMN lease_id text`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE usage_records DROP COLUMN lease_id`);
    await q.query(`ALTER TABLE reservations DROP CONSTRAINT reservations_lease_within`);
    for (const c of ['gateway', 'lease_ms', 'returned', 'spent', 'kind']) await q.query(`ALTER TABLE reservations DROP COLUMN ${c}`);
    await q.query(`ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_type_check`);
    await q.query(
      `ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_type_check
         CHECK (type IN ('grant','expiry','reservation','release','charge','top_up','adjustment'))`,
    );
  }
}
