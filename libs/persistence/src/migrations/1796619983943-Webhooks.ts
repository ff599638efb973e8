import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Alerts and webhooks (SPEC §8):
 * - alert_thresholds: an org's credits_below thresholds (and allowance_used_percent, stored for the API).
 * - webhook_endpoints: an org's (org_id) or every org's (org_id NULL) endpoint, its event types and its whsec_
 *   secret; disabled_at once it has failed for long enough, failing_since from its first failure in a row.
 * - notifier_positions: how far the notifier has read each org's ledger (seq, the balance after it) and the
 *   state of its once-per-crossing notifications (which thresholds fired and are not re-armed; exhaustion).
 * - webhook_messages: the notification outbox, one row per notification per matching endpoint. `id` order is the
 *   delivery order per (endpoint, org): rows are only added under the notifier's advisory lock.
 * - webhook_attempts: every delivery attempt (status, latency, response head, error).
 * admin_commands learns the new commands; a global endpoint's commands are recorded under org_id '*'.
 */
export class Webhooks1796619983943 implements MigrationInterface {
  name = 'Webhooks1796619983943';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE alert_thresholds (
        org_id text PRIMARY KEY REFERENCES orgs(id),
        credits_below bigint[] NOT NULL DEFAULT '{}',
        allowance_used_percent int[] NOT NULL DEFAULT '{}',
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE webhook_endpoints (
        id text PRIMARY KEY,
        org_id text REFERENCES orgs(id),
        url text NOT NULL,
        events text[] NOT NULL,
        secret text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        failing_since timestamptz,
        disabled_at timestamptz
      )`);
    await q.query(`CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id)`);
    await q.query(`
      CREATE TABLE notifier_positions (
        org_id text PRIMARY KEY,
        seq bigint NOT NULL,
        balance bigint NOT NULL,
        fired_below bigint[] NOT NULL DEFAULT '{}',
        exhausted_fired boolean NOT NULL DEFAULT false,
        exhausted_armed_at timestamptz NOT NULL DEFAULT '-infinity'
      )`);
    // Existing orgs are read from now on: their history is not notified again.
    await q.query(`
      INSERT INTO notifier_positions (org_id, seq, balance, exhausted_armed_at) SELECT org_id, next_seq - 1, balance, now() FROM accounts`);
    await q.query(`
      CREATE TABLE webhook_messages (
        id bigserial PRIMARY KEY,
        endpoint_id text NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
        org_id text NOT NULL,
        msg_id text NOT NULL,
        event_type text NOT NULL,
        payload text NOT NULL,
        source_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        leased_until timestamptz,
        attempts int NOT NULL DEFAULT 0,
        first_failed_at timestamptz,
        delivered_at timestamptz
      )`);
    // The head of every (endpoint, org) queue, and the due undelivered rows.
    await q.query(`CREATE INDEX webhook_messages_queue ON webhook_messages (endpoint_id, org_id, id) WHERE delivered_at IS NULL`);
    await q.query(`CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at) WHERE delivered_at IS NULL`);
    await q.query(`
      CREATE TABLE webhook_attempts (
        id bigserial PRIMARY KEY,
        message_id bigint NOT NULL REFERENCES webhook_messages(id) ON DELETE CASCADE,
        endpoint_id text NOT NULL,
        attempted_at timestamptz NOT NULL,
        status int,
        latency_ms int NOT NULL,
        response_head text,
        error text
      )`);
    await q.query(`CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC)`);
    await q.query(`CREATE INDEX webhook_attempts_message ON webhook_attempts (message_id)`);
    // credits.exhausted looks for an org's first refusal for want of credits after a point in time.
    await q.query(`CREATE INDEX usage_records_refused ON usage_records (org_id, occurred_at) WHERE decision = 'insufficient_credits'`);
    await q.query(`ALTER TABLE admin_commands DROP CONSTRAINT admin_commands_command`);
    await q.query(`
      ALTER TABLE admin_commands ADD CONSTRAINT admin_commands_command CHECK (command IN ('create-org', 'change-plan', 'set-limits',
        'create-key', 'revoke-key', 'grant-credits', 'set-alerts', 'create-webhook', 'delete-webhook', 'resend-webhook'))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM admin_commands WHERE command IN ('set-alerts', 'create-webhook', 'delete-webhook', 'resend-webhook')`);
    await q.query(`ALTER TABLE admin_commands DROP CONSTRAINT admin_commands_command`);
    await q.query(`
      ALTER TABLE admin_commands ADD CONSTRAINT admin_commands_command CHECK (command IN ('create-org', 'change-plan', 'set-limits',
        'create-key', 'revoke-key', 'grant-credits'))`);
    await q.query(`DROP INDEX usage_records_refused`);
    for (const t of ['webhook_attempts', 'webhook_messages', 'notifier_positions', 'webhook_endpoints', 'alert_thresholds']) {
      await q.query(`DROP TABLE ${t}`);
    }
  }
}
