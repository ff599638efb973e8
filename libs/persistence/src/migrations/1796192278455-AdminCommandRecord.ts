import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * admin_commands becomes the record of every operator command (create-org, change-plan, set-limits, create-key,
 * revoke-key, grant-credits), not only of credit grants:
 * - each command has its own id (`cmd_…`), the cause of the ledger entries it appends (`admin:<id>`);
 * - `seq` orders an org's commands (1, 2, …; the writer holds the org's row lock while it takes the next one), so
 *   `GET /admin/orgs/:org/history?after=` pages like the ledger;
 * - who (`actor`), when (`issued_at`), what (`input`: the command's input, never a key or its hash), the
 *   `result`, and the ledger entries it appended (`entry_seqs`);
 * - `idempotency_key` stays unique per org, required for grants (their replay semantics are unchanged) and
 *   optional for the rest.
 * The primary key leads with org_id, like every key in the schema.
 *
 * Rows already there are grants: they get a deterministic id, their order by time, their input rebuilt from the
 * stored result, and their one top_up entry (result.seq). Their ledger entries keep the cause they were written
 * with (`admin:grant:<idempotency key>`: the ledger is append-only); readers resolve both forms.
 */
export class AdminCommandRecord1796192278455 implements MigrationInterface {
  name = 'AdminCommandRecord1796192278455';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE admin_commands DROP CONSTRAINT admin_commands_pkey`);
    await q.query(`ALTER TABLE admin_commands RENAME COLUMN created_at TO issued_at`);
    await q.query(`
      ALTER TABLE admin_commands
        ADD COLUMN id text,
        ADD COLUMN seq bigint,
        ADD COLUMN actor text NOT NULL DEFAULT 'admin-token',
        ADD COLUMN input jsonb NOT NULL DEFAULT '{}'::jsonb,
        ADD COLUMN entry_seqs bigint[] NOT NULL DEFAULT '{}',
        ALTER COLUMN idempotency_key DROP NOT NULL`);
    await q.query(`
      UPDATE admin_commands c
         SET id = 'cmd_' || substr(md5(c.org_id || ':' || c.idempotency_key), 1, 16),
             seq = n.seq,
             input = jsonb_build_object(
               'amount', c.result->'amount',
               'reason', c.result->'reason',
               'idempotency_key', to_jsonb(c.idempotency_key),
               'expires_at', COALESCE(c.result->'expires_at', 'null'::jsonb)),
             entry_seqs = CASE WHEN jsonb_typeof(c.result->'seq') = 'number' THEN ARRAY[(c.result->>'seq')::bigint] ELSE '{}' END
        FROM (SELECT org_id, idempotency_key, row_number() OVER (PARTITION BY org_id ORDER BY issued_at, idempotency_key) AS seq
                FROM admin_commands) n
       WHERE n.org_id = c.org_id AND n.idempotency_key = c.idempotency_key`);
    await q.query(`
      ALTER TABLE admin_commands
        ALTER COLUMN id SET NOT NULL,
        ALTER COLUMN seq SET NOT NULL,
        ALTER COLUMN actor DROP DEFAULT,
        ALTER COLUMN issued_at DROP DEFAULT,
        ADD CONSTRAINT admin_commands_pkey PRIMARY KEY (org_id, id),
        ADD CONSTRAINT admin_commands_org_seq UNIQUE (org_id, seq),
        ADD CONSTRAINT admin_commands_org_idempotency_key UNIQUE (org_id, idempotency_key),
        ADD CONSTRAINT admin_commands_command CHECK (command IN ('create-org', 'change-plan', 'set-limits', 'create-key', 'revoke-key', 'grant-credits')),
        ADD CONSTRAINT admin_commands_grant_key CHECK (command <> 'grant-credits' OR idempotency_key IS NOT NULL),
        ADD CONSTRAINT admin_commands_actor CHECK (length(actor) BETWEEN 1 AND 128)`);
  }

  async down(q: QueryRunner): Promise<void> {
    // Back to grants only: the other commands' rows have no place in the old table.
    await q.query(`DELETE FROM admin_commands WHERE command <> 'grant-credits'`);
    await q.query(`
      ALTER TABLE admin_commands
        DROP CONSTRAINT admin_commands_pkey,
        DROP CONSTRAINT admin_commands_org_seq,
        DROP CONSTRAINT admin_commands_org_idempotency_key,
        DROP CONSTRAINT admin_commands_command,
        DROP CONSTRAINT admin_commands_grant_key,
        DROP CONSTRAINT admin_commands_actor,
        DROP COLUMN id,
        DROP COLUMN seq,
        DROP COLUMN actor,
        DROP COLUMN input,
        DROP COLUMN entry_seqs,
        ALTER COLUMN idempotency_key SET NOT NULL,
        ALTER COLUMN issued_at SET DEFAULT now()`);
    await q.query(`ALTER TABLE admin_commands RENAME COLUMN issued_at TO created_at`);
    await q.query(`ALTER TABLE admin_commands ADD PRIMARY KEY (org_id, idempotency_key)`);
  }
}
