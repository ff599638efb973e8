import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Which entities each call paid for (per-entity pricing: the ids it was charged for, deduplicated; `{}` for any
 * other call). Re-access windows are a projection of these: an org's window for an entity is the latest
 * `occurred_at` of a row that charged it, so `npm run replay` can rebuild and verify them.
 * Rows metered before this column existed keep NULL: which entities they charged is not known, so replay
 * cannot verify windows up to the last of them (it says so and counts them instead of reporting differences).
 * Adding a nullable column without a default rewrites nothing: instant on a large table.
 */
export class UsageChargedEntities1796194700000 implements MigrationInterface {
  name = 'UsageChargedEntities1796194700000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE usage_records ADD COLUMN charged_entities text[]`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE usage_records DROP COLUMN charged_entities`);
  }
}
