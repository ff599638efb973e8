import { EntityManager } from 'typeorm';
import { CommandRecord, CommandRow } from './admin-commands';

/**
 * Appends a command to its org's record, inside the caller's transaction (the one that applies its effect).
 *
 * The org's row is locked first (FOR NO KEY UPDATE: it doesn't block inserts that reference the org, such as a
 * new key) so the org's commands take their `seq` one after another: the next statement reads MAX(seq) with a
 * snapshot taken after the lock, so no two commands of an org get the same seq and a reader paging with
 * `after=` never finds a smaller seq appearing later. Commands that also lock the org's account (grants, plan
 * changes) lock it before the org row, and nothing locks them the other way round, so the two never deadlock.
 */
export async function recordCommand(m: EntityManager, rec: CommandRecord): Promise<number> {
  await m.query(`SELECT 1 FROM orgs WHERE id = $1 FOR NO KEY UPDATE`, [rec.orgId]);
  const rows: Array<{ seq: string }> = await m.query(
    `INSERT INTO admin_commands (org_id, id, seq, command, actor, issued_at, input, idempotency_key, result, entry_seqs)
     SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5, $6, $7, $8, $9::bigint[] FROM admin_commands WHERE org_id = $1
     RETURNING seq`,
    [rec.orgId, rec.id, rec.command, rec.actor, new Date(rec.at), JSON.stringify(rec.input), rec.idempotencyKey, JSON.stringify(rec.result), rec.entrySeqs],
  );
  return Number(rows[0]!.seq);
}

/** An org's commands with a seq above `after`, oldest first. */
export async function readHistory(m: EntityManager, orgId: string, after: number, limit: number): Promise<CommandRow[]> {
  return m.query(
    `SELECT id, seq, command, actor, issued_at, input, idempotency_key, result, entry_seqs
       FROM admin_commands WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
    [orgId, after, limit],
  );
}
