import { MigrationInterface, QueryRunner } from 'typeorm';

const Before = `'create-org', 'change-plan', 'set-limits', 'create-key', 'revoke-key', 'grant-credits', 'set-alerts', 'create-webhook', 'delete-webhook', 'resend-webhook'`;
const Added = `'set-plan-alerts', 'rotate-webhook-secret', 'disable-webhook'`;

/**
 * Alerts and webhooks, second part (issue 21):
 * - plan_alert_thresholds: a plan's thresholds (per profile and plan), used by the orgs of the plan that set none
 *   of their own.
 * - notifier_positions.allowance: the amount of the org's latest monthly allowance grant (what an
 *   allowance_used_percent threshold is a percent of), and fired_percent: the percent thresholds that fired and
 *   are not re-armed. Existing positions get their allowance from their ledger.
 * - webhook_endpoints.previous_secret / previous_secret_until: after a rotation, the old secret also signs until then.
 * - webhook_endpoints.disabled_notified_at: the disabled_at the notifier has announced (endpoint.disabled).
 *   Endpoints disabled before this migration count as announced.
 * admin_commands learns set-plan-alerts (recorded under org '*'), rotate-webhook-secret and disable-webhook.
 */
export class WebhookAlertsRotation1796630655981 implements MigrationInterface {
  name = 'WebhookAlertsRotation1796630655981';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE plan_alert_thresholds (
        profile text NOT NULL,
        plan text NOT NULL,
        credits_below bigint[] NOT NULL DEFAULT '{}',
        allowance_used_percent int[] NOT NULL DEFAULT '{}',
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (profile, plan)
      )`);
    await q.query(`ALTER TABLE notifier_positions ADD COLUMN allowance bigint NOT NULL DEFAULT 0, ADD COLUMN fired_percent int[] NOT NULL DEFAULT '{}'`);
    await q.query(`
      UPDATE notifier_positions p SET allowance = g.amount
        FROM (SELECT DISTINCT ON (org_id) org_id, amount FROM ledger_entries
               WHERE type = 'grant' AND bucket_id LIKE 'allowance:%' ORDER BY org_id, seq DESC) g
       WHERE g.org_id = p.org_id`);
    await q.query(`
      ALTER TABLE webhook_endpoints ADD COLUMN previous_secret text, ADD COLUMN previous_secret_until timestamptz,
        ADD COLUMN disabled_notified_at timestamptz`);
    await q.query(`UPDATE webhook_endpoints SET disabled_notified_at = disabled_at WHERE disabled_at IS NOT NULL`);
    await q.query(`ALTER TABLE admin_commands DROP CONSTRAINT admin_commands_command`);
    await q.query(`ALTER TABLE admin_commands ADD CONSTRAINT admin_commands_command CHECK (command IN (${Before}, ${Added}))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM admin_commands WHERE command IN (${Added})`);
    await q.query(`ALTER TABLE admin_commands DROP CONSTRAINT admin_commands_command`);
    await q.query(`ALTER TABLE admin_commands ADD CONSTRAINT admin_commands_command CHECK (command IN (${Before}))`);
    await q.query(`ALTER TABLE webhook_endpoints DROP COLUMN previous_secret, DROP COLUMN previous_secret_until, DROP COLUMN disabled_notified_at`);
    await q.query(`ALTER TABLE notifier_positions DROP COLUMN allowance, DROP COLUMN fired_percent`);
    await q.query(`DROP TABLE plan_alert_thresholds`);
  }
}
