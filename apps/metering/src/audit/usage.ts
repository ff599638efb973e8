import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

/**
 * `usage`: the per-org counter /usage pages with (usage_totals.total) equals the number of usage rows, and every
 * re-access window was opened by a charge.
 *
 * usage_records keeps how many entities a call returned, not which ones it charged, so a window can't be tied to
 * the one call that charged its entity. What the schema does prove: the consumer writes a window for each entity
 * a call charged, at the call's occurred_at, and a per-entity call costs 1 credit per entity it charged. So at each
 * (org, last_charged_at) there must be per-entity usage rows (entities > 0) charging at least as many credits as
 * there are windows stamped with that instant.
 */
export async function checkUsage(sql: Sql, batch: OrgBatch): Promise<Violation[]> {
  const totals = await sql<{ org_id: string; total: string | null; counted: string }>(
    `SELECT * FROM (
       SELECT o.org_id, t.total, (SELECT COUNT(*) FROM usage_records u WHERE u.org_id = o.org_id) AS counted
         FROM unnest($1::text[]) AS o(org_id) LEFT JOIN usage_totals t ON t.org_id = o.org_id) x
      WHERE COALESCE(total, 0) <> counted`,
    [batch.orgs],
  );
  const windows = await sql<{ org_id: string; at: Date; windows: string; charged: string; sample: string }>(
    `SELECT w.org_id, w.last_charged_at AS at, COUNT(*) AS windows, MIN(w.entity_id) AS sample,
            COALESCE((SELECT SUM(u.credits) FROM usage_records u
                       WHERE u.org_id = w.org_id AND u.occurred_at = w.last_charged_at AND u.entities > 0 AND u.credits > 0), 0) AS charged
       FROM reaccess_windows w WHERE w.org_id = ANY($1::text[])
      GROUP BY w.org_id, w.last_charged_at
     HAVING COUNT(*) > COALESCE((SELECT SUM(u.credits) FROM usage_records u
                                  WHERE u.org_id = w.org_id AND u.occurred_at = w.last_charged_at AND u.entities > 0 AND u.credits > 0), 0)
      ORDER BY 1, 2`,
    [batch.orgs],
  );
  return [
    ...totals.map((r): Violation => ({
      check: 'usage',
      org: r.org_id,
      subject: 'usage_totals.total',
      expected: `${r.counted} (usage rows)`,
      found: r.total ?? 'no usage_totals row',
    })),
    ...windows.map((r): Violation => ({
      check: 'usage',
      org: r.org_id,
      subject: `re-access windows at ${r.at.toISOString()} (${r.windows}, e.g. entity ${r.sample})`,
      expected: `per-entity calls at that instant charging at least ${r.windows} credit(s)`,
      found: `${r.charged} credit(s) charged`,
    })),
  ];
}
