import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The whole first schema. Invariants the database itself enforces:
 * - ledger_entries is append-only: UPDATE, DELETE and TRUNCATE raise.
 * - (org_id, seq) is unique, so two writers can never both append entry N.
 * - usage_records.event_id is unique: an event is metered once, whatever the redelivery.
 */
export class InitialSchema1732300000000 implements MigrationInterface {
  name = 'InitialSchema1732300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE orgs (
        id text PRIMARY KEY,
        name text NOT NULL,
        profile text NOT NULL,
        plan text NOT NULL,
        limit_overrides jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE api_keys (
        id text PRIMARY KEY,
        org_id text NOT NULL REFERENCES orgs(id),
        name text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('key', 'user')),
        prefix text NOT NULL,
        key_hash bytea NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      )`);
    await q.query(`CREATE INDEX api_keys_org ON api_keys (org_id)`);

    // The balance projection: one row per org, locked FOR UPDATE by whoever appends to its ledger.
    await q.query(`
      CREATE TABLE accounts (
        org_id text PRIMARY KEY REFERENCES orgs(id),
        plan jsonb NOT NULL,
        balance bigint NOT NULL,
        debt bigint NOT NULL DEFAULT 0,
        next_seq bigint NOT NULL,
        allowance_month text,
        allowance_spent bigint NOT NULL DEFAULT 0,
        granted_one_time text[] NOT NULL DEFAULT '{}',
        buckets jsonb NOT NULL DEFAULT '[]'::jsonb,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);

    await q.query(`
      CREATE TABLE ledger_entries (
        org_id text NOT NULL,
        seq bigint NOT NULL CHECK (seq >= 1),
        type text NOT NULL CHECK (type IN ('grant','expiry','reservation','release','charge','top_up','adjustment')),
        amount bigint NOT NULL,
        balance_after bigint NOT NULL,
        cause text NOT NULL,
        occurred_at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        bucket_id text,
        detail jsonb NOT NULL DEFAULT '{}'::jsonb,
        PRIMARY KEY (org_id, seq)
      )`);
    await q.query(`
      CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'ledger_entries is append-only: % is not allowed', TG_OP USING ERRCODE = 'restrict_violation';
      END $$`);
    await q.query(`
      CREATE TRIGGER ledger_entries_no_update_delete BEFORE UPDATE OR DELETE ON ledger_entries
      FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()`);
    await q.query(`
      CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
      FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()`);

    // Every call that reached a decision, newest first per org. event_id is the idempotency key.
    await q.query(`
      CREATE TABLE usage_records (
        id bigserial PRIMARY KEY,
        event_id text NOT NULL UNIQUE,
        org_id text NOT NULL,
        occurred_at timestamptz NOT NULL,
        method text NOT NULL,
        route text NOT NULL,
        path text NOT NULL,
        status_code int NOT NULL,
        credits bigint NOT NULL,
        cost_reason text NOT NULL,
        response_time_ms double precision NOT NULL,
        request_id text,
        decision text NOT NULL,
        api_key_id text,
        entities int NOT NULL DEFAULT 0
      )`);
    await q.query(`CREATE INDEX usage_records_org_newest ON usage_records (org_id, occurred_at DESC, id DESC)`);

    // Exact usage counts per org, kept in the same transaction as the rows (count(*) is too slow at millions).
    await q.query(`CREATE TABLE usage_totals (org_id text PRIMARY KEY, total bigint NOT NULL)`);

    // Re-access windows: the last time an org was charged for an entity.
    await q.query(`
      CREATE TABLE reaccess_windows (
        org_id text NOT NULL,
        entity_id text NOT NULL,
        last_charged_at timestamptz NOT NULL,
        PRIMARY KEY (org_id, entity_id)
      )`);

    await q.query(`
      CREATE TABLE reservations (
        id text PRIMARY KEY,
        org_id text NOT NULL,
        credits bigint NOT NULL,
        allocation jsonb NOT NULL,
        route text NOT NULL,
        entities text[] NOT NULL DEFAULT '{}',
        occurred_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        status text NOT NULL CHECK (status IN ('held', 'settled', 'released', 'expired')),
        closed_at timestamptz,
        closed_by text
      )`);
    await q.query(`CREATE INDEX reservations_open ON reservations (expires_at) WHERE status = 'held'`);

    // Admin commands that must never apply twice (credit grants by idempotency key).
    await q.query(`
      CREATE TABLE admin_commands (
        org_id text NOT NULL,
        idempotency_key text NOT NULL,
        command text NOT NULL,
        result jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (org_id, idempotency_key)
      )`);

    // Kafka offsets committed in the same transaction as the entries they produced.
    await q.query(`
      CREATE TABLE consumer_offsets (
        group_id text NOT NULL,
        topic text NOT NULL,
        partition int NOT NULL,
        next_offset bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (group_id, topic, partition)
      )`);

    // Ledger entries waiting to be published on tollgate.ledger.v1 (transactional outbox).
    await q.query(`
      CREATE TABLE ledger_outbox (
        id bigserial PRIMARY KEY,
        org_id text NOT NULL,
        seq bigint NOT NULL,
        payload jsonb NOT NULL,
        UNIQUE (org_id, seq)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['ledger_outbox', 'consumer_offsets', 'admin_commands', 'reservations', 'reaccess_windows', 'usage_totals', 'usage_records']) {
      await q.query(`DROP TABLE IF EXISTS ${t}`);
    }
    await q.query(`DROP TABLE IF EXISTS ledger_entries`);
    await q.query(`DROP FUNCTION IF EXISTS ledger_entries_append_only`);
    for (const t of ['accounts', 'api_keys', 'orgs']) await q.query(`DROP TABLE IF EXISTS ${t}`);
  }
}
