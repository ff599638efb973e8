import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Dead letters: request-completed messages metering refused, recorded in the transaction that moved the
 * partition's stored offset past them, and published to tollgate.request-completed.v1.dlq after that commit (no
 * Kafka send happens while a batch holds its org rows). The original bytes are kept as bytea: a poison
 * message is exactly what text columns refuse. `id` is the operator's handle (`npm run dlq -- replay --id`); the
 * relay sends unsent rows in id order.
 */
export class DeadLetters1796181840252 implements MigrationInterface {
  name = 'DeadLetters1796181840252';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE dead_letters (
        id bigserial PRIMARY KEY,
        topic text NOT NULL,
        partition int NOT NULL,
        "offset" bigint NOT NULL,
        key bytea,
        value bytea,
        reason text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz,
        replayed_at timestamptz,
        replays int NOT NULL DEFAULT 0
      )`);
    await q.query(`CREATE INDEX dead_letters_origin ON dead_letters (topic, partition, "offset")`);
    await q.query(`CREATE INDEX dead_letters_unsent ON dead_letters (id) WHERE sent_at IS NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS dead_letters`);
  }
}
