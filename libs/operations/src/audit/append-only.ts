import { randomUUID } from 'node:crypto';
import { sqlState } from '@tollgate/persistence';
import { Sql } from './sql';
import { Violation } from './violation';

/** tgtype bits (PostgreSQL's pg_trigger.h). */
const TriggerType = { row: 1, before: 2, insert: 4, delete: 8, update: 16, truncate: 32 } as const;

/**
 * `append-only` (SPEC §6: "the database enforces it"). Two ways:
 * 1. the catalog: enabled triggers on ledger_entries that fire on UPDATE, DELETE and TRUNCATE;
 * 2. a probe, on its own connection, in one transaction that is always rolled back: a probe entry is inserted (of
 *    an org id no org can have, so it touches no real row and works on an empty ledger), then UPDATE, DELETE and
 *    TRUNCATE are each tried under a savepoint. Any that succeeds is a violation. TRUNCATE needs the table's
 *    exclusive lock: it waits at most `lockTimeoutMs` for it (metering's writes queue behind it meanwhile), and is
 *    left unprobed, with a note, when the ledger is too busy. Ctrl-C or a crash mid-probe rolls back with the
 *    connection.
 * `inTransaction(work)` runs `work` in a transaction on `sql`'s connection and always rolls it back.
 */
export async function checkAppendOnly(
  sql: Sql,
  inTransaction: <T>(work: () => Promise<T>) => Promise<T>,
  lockTimeoutMs = 2000,
): Promise<{ violations: Violation[]; notes: string[] }> {
  const violations: Violation[] = [];
  const notes: string[] = [];
  const v = (subject: string, expected: string, found: string) => violations.push({ check: 'append-only', org: null, subject, expected, found });

  const triggers = await sql<{ tgname: string; tgtype: number; tgenabled: string }>(
    `SELECT tgname, tgtype, tgenabled FROM pg_trigger WHERE tgrelid = 'ledger_entries'::regclass AND NOT tgisinternal`,
  );
  for (const [op, bit] of [['UPDATE', TriggerType.update], ['DELETE', TriggerType.delete], ['TRUNCATE', TriggerType.truncate]] as const) {
    const on = triggers.filter((t) => (t.tgtype & bit) !== 0 && (t.tgtype & TriggerType.before) !== 0);
    if (on.length === 0) v(`trigger on ${op}`, 'a BEFORE trigger that raises', 'none');
    else if (on.every((t) => t.tgenabled === 'D')) v(`trigger on ${op}`, 'enabled', `${on.map((t) => t.tgname).join(', ')} disabled`);
  }

  const probeOrg = `audit-probe:${randomUUID()}`;
  await inTransaction(async () => {
    await sql(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
    try {
      await sql(
        `INSERT INTO ledger_entries (org_id, seq, type, amount, balance_after, cause, occurred_at) VALUES ($1, 1, 'adjustment', 0, 0, 'audit:probe', now())`,
        [probeOrg],
      );
    } catch (e) {
      notes.push(`append-only: not probed: the probe entry could not be inserted (SQLSTATE ${sqlState(e)}: ${(e as Error).message}); the catalog check above still applies`);
      return;
    }
    const attempts: Array<[string, string, unknown[]]> = [
      ['UPDATE', `UPDATE ledger_entries SET amount = amount + 1 WHERE org_id = $1`, [probeOrg]],
      ['DELETE', `DELETE FROM ledger_entries WHERE org_id = $1`, [probeOrg]],
      ['TRUNCATE', `TRUNCATE ledger_entries`, []],
    ];
    for (const [op, statement, params] of attempts) {
      await sql(`SAVEPOINT audit_probe`);
      try {
        await sql(statement, params);
        v(`${op} of a ledger entry`, 'refused by the database', `${op} succeeded (rolled back by the audit)`);
      } catch (e) {
        const state = sqlState(e);
        if (state === '55P03') notes.push(`append-only: TRUNCATE not probed: the ledger's lock was not free within ${lockTimeoutMs} ms (metering busy); the catalog check above still applies`);
        else if (state !== '23001') notes.push(`append-only: ${op} was refused, but not by the append-only trigger (SQLSTATE ${state}: ${(e as Error).message})`);
      }
      await sql(`ROLLBACK TO SAVEPOINT audit_probe`);
    }
  });
  return { violations, notes };
}
