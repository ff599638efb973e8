import { MigrationInterface, QueryRunner } from 'typeorm';

const Before = `'create-org', 'change-plan', 'set-limits', 'create-key', 'revoke-key', 'grant-credits', 'set-alerts', 'create-webhook', 'delete-webhook', 'resend-webhook', 'set-plan-alerts', 'rotate-webhook-secret', 'disable-webhook'`;
const Added = `'clear-alerts'`;

/** admin_commands learns clear-alerts: an org's own thresholds removed, so its plan's apply again. */
export class ClearAlerts1796700000000 implements MigrationInterface {
  name = 'ClearAlerts1796700000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE admin_commands DROP CONSTRAINT admin_commands_command`);
    await q.query(`ALTER TABLE admin_commands ADD CONSTRAINT admin_commands_command CHECK (command IN (${Before}, ${Added}))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM admin_commands WHERE command IN (${Added})`);
    await q.query(`ALTER TABLE admin_commands DROP CONSTRAINT admin_commands_command`);
    await q.query(`ALTER TABLE admin_commands ADD CONSTRAINT admin_commands_command CHECK (command IN (${Before}))`);
  }
}
