import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every key and unique constraint of the org-owned tables leads with `org_id`, so they can be distributed by org
 * (Citus `create_distributed_table(..., 'org_id')`, colocated) with the same semantics: a distributed table can
 * only enforce a PRIMARY KEY or UNIQUE constraint that contains its distribution column.
 *
 * - usage_records: PK (org_id, id); the idempotency key becomes UNIQUE (org_id, event_id). An event id reused by
 *   another org is another event; a redelivery under the same org is still metered once.
 * - reservations: PK (org_id, id). A reservation belongs to its org; settle, release and sweep name both.
 * - ledger_outbox: PK (org_id, id); UNIQUE (org_id, seq) was already there. The relay keeps seq order per org and
 *   promises no global order.
 * - ledger_entries (org_id, seq), reaccess_windows (org_id, entity_id), accounts and usage_totals (org_id) already
 *   lead with org_id. dead_letters has no org to lead with: a poison message may carry no valid org (not JSON, no
 *   org_id, an org that does not exist), so it stays a local table keyed by its own id. admin_commands is
 *   changed by its own migration.
 *
 * Existing rows all satisfy the new constraints (a globally unique column is unique per org), so nothing is
 * rewritten or dropped: the new unique indexes are built first, then swapped in for the old constraints, in this
 * migration's one transaction. The hot lookups keep an index that leads with their equality columns (see the
 * README, "Distributing by org", for the EXPLAINs).
 */
export class OrgLeadingKeys1796192335631 implements MigrationInterface {
  name = 'OrgLeadingKeys1796192335631';

  async up(q: QueryRunner): Promise<void> {
    // usage_records: (org_id, event_id) serves the consumer's dedupe, (org_id, id) the row's identity.
    await q.query(`CREATE UNIQUE INDEX usage_records_org_event ON usage_records (org_id, event_id)`);
    await q.query(`CREATE UNIQUE INDEX usage_records_org_id ON usage_records (org_id, id)`);
    await q.query(`ALTER TABLE usage_records DROP CONSTRAINT usage_records_event_id_key`);
    await q.query(`ALTER TABLE usage_records DROP CONSTRAINT usage_records_pkey`);
    await q.query(`ALTER TABLE usage_records ADD CONSTRAINT usage_records_pkey PRIMARY KEY USING INDEX usage_records_org_id`);
    await q.query(`ALTER TABLE usage_records ADD CONSTRAINT usage_records_org_event UNIQUE USING INDEX usage_records_org_event`);

    // reservations: settle, release and the give-back check look holds up by (org_id, id).
    await q.query(`CREATE UNIQUE INDEX reservations_org_id ON reservations (org_id, id)`);
    await q.query(`ALTER TABLE reservations DROP CONSTRAINT reservations_pkey`);
    await q.query(`ALTER TABLE reservations ADD CONSTRAINT reservations_pkey PRIMARY KEY USING INDEX reservations_org_id`);
    // The sweeper pages through open holds by (expires_at, org_id, id): ids are unique per org only now.
    await q.query(`DROP INDEX reservations_open`);
    await q.query(`CREATE INDEX reservations_open ON reservations (expires_at, org_id, id) WHERE status = 'held'`);
    // The holds an org has open (the entities other calls are paying for): read by every per-entity Reserve and
    // consumer batch. The primary key's org_id prefix would also walk every settled hold the org ever had.
    await q.query(`CREATE INDEX reservations_held_by_org ON reservations (org_id) WHERE status = 'held'`);

    // ledger_outbox: (org_id, seq) is the relay's order within an org; id only says roughly how old a row is, so
    // the relay can serve the orgs with the oldest pending entries first.
    await q.query(`CREATE UNIQUE INDEX ledger_outbox_org_id ON ledger_outbox (org_id, id)`);
    await q.query(`ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_pkey`);
    await q.query(`ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_pkey PRIMARY KEY USING INDEX ledger_outbox_org_id`);
    await q.query(`CREATE INDEX ledger_outbox_age ON ledger_outbox (id)`);
  }

  /**
   * Back to global keys. Refuses (and changes nothing) when rows written since need the per-org keys: the same
   * event id or reservation id under two orgs. Dropping either would lose a metered call or a hold, so that is
   * left to the operator.
   */
  async down(q: QueryRunner): Promise<void> {
    const shared: Array<{ what: string; id: string }> = await q.query(
      `(SELECT 'usage_records.event_id' AS what, event_id AS id FROM usage_records GROUP BY event_id HAVING count(*) > 1 LIMIT 5)
       UNION ALL
       (SELECT 'reservations.id', id FROM reservations GROUP BY id HAVING count(*) > 1 LIMIT 5)`,
    );
    if (shared.length > 0) {
      throw new Error(
        `cannot revert OrgLeadingKeys: ids are shared by several orgs (${shared.map((s) => `${s.what} ${s.id}`).join(', ')}); a global key would drop one of them`,
      );
    }
    await q.query(`DROP INDEX ledger_outbox_age`);
    await q.query(`ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_pkey`);
    await q.query(`ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_pkey PRIMARY KEY (id)`);

    await q.query(`DROP INDEX reservations_held_by_org`);
    await q.query(`DROP INDEX reservations_open`);
    await q.query(`CREATE INDEX reservations_open ON reservations (expires_at) WHERE status = 'held'`);
    await q.query(`ALTER TABLE reservations DROP CONSTRAINT reservations_pkey`);
    await q.query(`ALTER TABLE reservations ADD CONSTRAINT reservations_pkey PRIMARY KEY (id)`);

    await q.query(`ALTER TABLE usage_records DROP CONSTRAINT usage_records_org_event`);
    await q.query(`ALTER TABLE usage_records DROP CONSTRAINT usage_records_pkey`);
    await q.query(`ALTER TABLE usage_records ADD CONSTRAINT usage_records_pkey PRIMARY KEY (id)`);
    await q.query(`ALTER TABLE usage_records ADD CONSTRAINT usage_records_event_id_key UNIQUE (event_id)`);
  }
}
