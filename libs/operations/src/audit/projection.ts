import { Account, foldAccount, LedgerEntryDraft, LedgerFoldError } from '@tollgate/billing';
import { EntryRow, entryRowColumns, toEntry } from '@tollgate/ledger';
import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

/**
 * `projection`: the accounts row is what folding the org's ledger gives (@tollgate/billing foldAccount, the same
 * fold the deciders apply their entries with), field by field: balance, debt, next_seq, allowance month and spent,
 * the plans whose one-time credits were granted, and every bucket by id (kind, expiry, remaining).
 *
 * A ledger the fold refuses (an entry the rules can't apply) is a violation at that seq, unless the org's
 * `sequence`/`balance` check already reported a broken chain: the fold checks seq and balance_after too, so it then
 * stops where that violation is, and the projection is left uncompared with a note rather than reported twice.
 * The batch's entries are read in one statement, in (org, seq) order, and folded org by org.
 */
export async function checkProjection(
  sql: Sql,
  batch: OrgBatch,
  brokenChains: Promise<ReadonlySet<string>>,
): Promise<{ violations: Violation[]; notes: string[] }> {
  const rows = await sql<EntryRow>(
    `SELECT ${entryRowColumns}
       FROM ledger_entries WHERE org_id = ANY($1::text[]) ORDER BY org_id, seq`,
    [batch.orgs],
  );
  const byOrg = new Map<string, LedgerEntryDraft[]>();
  for (const r of rows) {
    let entries = byOrg.get(r.org_id);
    if (!entries) byOrg.set(r.org_id, (entries = []));
    entries.push(toEntry(r));
  }
  const violations: Violation[] = [];
  const notes: string[] = [];
  for (const org of batch.orgs) {
    const row = batch.accounts.get(org);
    if (!row) continue; // `balance` reports the missing row
    const v = (subject: string, expected: string, found: string) => violations.push({ check: 'projection', org, subject, expected, found });
    let folded: Account;
    try {
      folded = foldAccount(org, row.plan, byOrg.get(org) ?? []);
    } catch (e) {
      if (!(e instanceof LedgerFoldError)) throw e;
      if ((await brokenChains).has(org)) notes.push(`projection: ${org} not compared: ${e.message} (its sequence/balance violation is reported)`);
      else v(`fold of the ledger at seq ${e.seq}`, 'an entry the billing rules can apply', e.message);
      continue;
    }
    const fields: Array<[string, string, string]> = [
      ['balance', String(folded.balance), row.balance],
      ['debt', String(folded.debt), row.debt],
      ['next_seq', String(folded.nextSeq), row.next_seq],
      ['allowance_month', String(folded.allowanceMonth), String(row.allowance_month)],
      ['allowance_spent', String(folded.allowanceSpent), row.allowance_spent],
      ['granted_one_time', [...folded.grantedOneTime].sort().join(',') || '(none)', [...row.granted_one_time].sort().join(',') || '(none)'],
    ];
    for (const [field, expected, found] of fields) if (expected !== found) v(field, `${expected} (fold of the ledger)`, found);

    const live = new Map(row.buckets.map((b) => [b.id, b]));
    for (const b of folded.buckets) {
      const p = live.get(b.id);
      live.delete(b.id);
      if (!p) {
        v(`bucket ${b.id}`, `open with ${b.remaining} remaining (${b.kind}, expires ${instant(b.expiresAt)})`, 'not in the projection');
        continue;
      }
      if (p.kind !== b.kind) v(`bucket ${b.id} kind`, b.kind, p.kind);
      if (p.expiresAt !== b.expiresAt) v(`bucket ${b.id} expires_at`, instant(b.expiresAt), instant(p.expiresAt));
      if (p.remaining !== b.remaining) v(`bucket ${b.id} remaining`, String(b.remaining), String(p.remaining));
    }
    for (const p of live.values()) v(`bucket ${p.id}`, 'closed (not open in the fold of the ledger)', `open with ${p.remaining} remaining`);
  }
  return { violations, notes };
}

function instant(ms: number | null): string {
  return ms === null ? 'never' : new Date(ms).toISOString();
}
