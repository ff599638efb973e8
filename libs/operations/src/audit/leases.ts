import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

interface Row {
  org_id: string;
  id: string;
  status: string | null;
  credits: string | null;
  spent: string | null;
  returned: string | null;
  taken: string | null;
  back: string | null;
  paid: string | null;
}

/**
 * `leases`: each lease's books balance. A lease (reservations row of kind 'lease') is taken by `lease` entries
 * caused by `lease:<id>` summing to -credits; the calls it paid for are the usage rows naming it (lease_id), whose
 * credits sum to its `spent`; what comes back are `release` entries naming it (detail.lease_id): its `returned`
 * (given back early by the gateway, EndLease) while it is held, and once it is closed also the rest it held,
 * credits - spent - returned. Entries or usage rows naming a lease with no row are reported too.
 */
export async function checkLeases(sql: Sql, batch: OrgBatch): Promise<Violation[]> {
  const rows = await sql<Row>(
    `WITH l AS (
       SELECT org_id, id, status, credits, spent, returned FROM reservations WHERE kind = 'lease' AND org_id = ANY($1::text[])),
     taken AS (
       SELECT org_id, substr(cause, 7) AS id, SUM(amount) AS taken FROM ledger_entries
        WHERE org_id = ANY($1::text[]) AND type = 'lease' GROUP BY 1, 2),
     back AS (
       SELECT org_id, detail->>'lease_id' AS id, SUM(amount) AS back FROM ledger_entries
        WHERE org_id = ANY($1::text[]) AND type = 'release' AND detail ? 'lease_id' GROUP BY 1, 2),
     paid AS (
       SELECT org_id, lease_id AS id, SUM(credits) AS paid FROM usage_records
        WHERE org_id = ANY($1::text[]) AND lease_id IS NOT NULL GROUP BY 1, 2),
     k AS (SELECT org_id, id FROM l UNION SELECT org_id, id FROM taken UNION SELECT org_id, id FROM back UNION SELECT org_id, id FROM paid)
     SELECT k.org_id, k.id, l.status, l.credits::text, l.spent::text, l.returned::text, t.taken::text, b.back::text, p.paid::text
       FROM k LEFT JOIN l USING (org_id, id) LEFT JOIN taken t USING (org_id, id) LEFT JOIN back b USING (org_id, id) LEFT JOIN paid p USING (org_id, id)
      WHERE l.id IS NULL
         OR COALESCE(t.taken, 0) <> -l.credits
         OR COALESCE(p.paid, 0) <> l.spent
         OR COALESCE(b.back, 0) <> l.returned + CASE WHEN l.status = 'held' THEN 0 ELSE l.credits - l.spent - l.returned END
      ORDER BY 1, 2`,
    [batch.orgs],
  );
  const out: Violation[] = [];
  for (const r of rows) {
    const v = (expected: string, found: string) => out.push({ check: 'leases', org: r.org_id, subject: `lease ${r.id}`, expected, found });
    if (r.status === null || r.credits === null) {
      v('a reservations row of kind lease', `none (lease entries ${r.taken ?? 0}, releases ${r.back ?? 0}, calls paid ${r.paid ?? 0})`);
      continue;
    }
    const credits = BigInt(r.credits);
    const spent = BigInt(r.spent ?? 0);
    const returned = BigInt(r.returned ?? 0);
    if (BigInt(r.taken ?? 0) !== -credits) v(`lease entries summing to ${-credits}`, String(r.taken ?? 0));
    if (BigInt(r.paid ?? 0) !== spent) v(`usage rows paid from it summing to its spent ${spent}`, String(r.paid ?? 0));
    const expectedBack = returned + (r.status === 'held' ? 0n : credits - spent - returned);
    if (BigInt(r.back ?? 0) !== expectedBack) v(`releases summing to ${expectedBack} (${r.status})`, String(r.back ?? 0));
  }
  return out;
}
