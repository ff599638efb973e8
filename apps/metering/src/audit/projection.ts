import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

/**
 * `projection` (until @tollgate/billing's foldAccount exists, the checks `npm run replay` makes): each bucket of
 * the accounts row holds what its entries sum to, less what they paid off as debt (detail.paid_debt); a bucket no
 * longer in the row sums to 0; balance = sum of bucket remaining - debt.
 */
export async function checkProjection(sql: Sql, batch: OrgBatch): Promise<Violation[]> {
  const rows = await sql<{ org_id: string; bucket_id: string; total: string }>(
    `SELECT org_id, bucket_id, SUM(amount - COALESCE((detail->>'paid_debt')::bigint, 0)) AS total
       FROM ledger_entries WHERE org_id = ANY($1::text[]) AND bucket_id IS NOT NULL GROUP BY 1, 2`,
    [batch.orgs],
  );
  const sums = new Map<string, Map<string, bigint>>();
  for (const r of rows) {
    const m = sums.get(r.org_id) ?? new Map<string, bigint>();
    m.set(r.bucket_id, BigInt(r.total));
    sums.set(r.org_id, m);
  }
  const out: Violation[] = [];
  for (const org of batch.orgs) {
    const a = batch.accounts.get(org);
    if (!a) continue; // `balance` reports the missing row
    const ledger = sums.get(org) ?? new Map<string, bigint>();
    const v = (subject: string, expected: string, found: string) => out.push({ check: 'projection', org, subject, expected, found });
    let inBuckets = 0n;
    for (const b of a.buckets) {
      inBuckets += BigInt(b.remaining);
      const expected = ledger.get(b.id) ?? 0n;
      if (BigInt(b.remaining) !== expected) v(`bucket ${b.id} remaining`, `${expected} (its entries less paid_debt)`, String(b.remaining));
    }
    for (const [id, total] of ledger) {
      if (total !== 0n && !a.buckets.some((b) => b.id === id)) v(`bucket ${id}`, `in the projection with ${total} remaining (or its entries summing to 0)`, 'not in the projection');
    }
    if (BigInt(a.balance) !== inBuckets - BigInt(a.debt)) v('balance = buckets - debt', `${inBuckets - BigInt(a.debt)} (${inBuckets} - ${a.debt})`, a.balance);
  }
  return out;
}
