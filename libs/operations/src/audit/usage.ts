import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

/**
 * `usage`: the per-org counter /usage pages with (usage_totals.total) equals the number of usage rows, and the
 * re-access windows are what the charges say.
 *
 * Each usage row records the entities its call paid for (`charged_entities`), and the consumer moves an org's
 * window for an entity to the call's occurred_at, never back: so a window's last_charged_at is the latest
 * occurred_at of the org's rows that charged its entity, and every charged entity has a window. Rows metered before
 * `charged_entities` existed keep NULL there: a window no recorded charge explains is then accepted only if
 * per-entity calls of those (entities > 0, credits > 0, charged_entities NULL) at its instant charged at least as many
 * credits as there are such windows stamped with it (1 credit per entity charged); the report counts them.
 */
export async function checkUsage(sql: Sql, batch: OrgBatch): Promise<{ violations: Violation[]; notes: string[] }> {
  const totals = await sql<{ org_id: string; total: string | null; counted: string }>(
    `SELECT * FROM (
       SELECT o.org_id, t.total, (SELECT COUNT(*) FROM usage_records u WHERE u.org_id = o.org_id) AS counted
         FROM unnest($1::text[]) AS o(org_id) LEFT JOIN usage_totals t ON t.org_id = o.org_id) x
      WHERE COALESCE(total, 0) <> counted`,
    [batch.orgs],
  );
  const windows = await sql<{ org_id: string; entity_id: string; window_at: Date | null; charged_at: Date | null; legacy_ok: boolean }>(
    `WITH charged AS (
       SELECT u.org_id, e AS entity_id, MAX(u.occurred_at) AS charged_at
         FROM usage_records u CROSS JOIN LATERAL unnest(u.charged_entities) AS e
        WHERE u.org_id = ANY($1::text[]) AND cardinality(u.charged_entities) > 0
        GROUP BY 1, 2),
     w AS (SELECT org_id, entity_id, last_charged_at FROM reaccess_windows WHERE org_id = ANY($1::text[])),
     differ AS (
       SELECT COALESCE(w.org_id, c.org_id) AS org_id, COALESCE(w.entity_id, c.entity_id) AS entity_id,
              w.last_charged_at AS window_at, c.charged_at
         FROM w FULL JOIN charged c ON c.org_id = w.org_id AND c.entity_id = w.entity_id
        WHERE w.last_charged_at IS DISTINCT FROM c.charged_at),
     -- Windows later than any recorded charge of their entity, by instant: can calls metered before charged_entities
     -- existed explain them?
     unexplained AS (
       SELECT org_id, window_at, COUNT(*) AS n FROM differ
        WHERE window_at IS NOT NULL AND (charged_at IS NULL OR window_at > charged_at) GROUP BY 1, 2),
     legacy AS (
       SELECT x.org_id, x.window_at,
              x.n <= COALESCE((SELECT SUM(u.credits) FROM usage_records u
                                WHERE u.org_id = x.org_id AND u.occurred_at = x.window_at AND u.charged_entities IS NULL
                                  AND u.entities > 0 AND u.credits > 0), 0) AS ok
         FROM unexplained x)
     SELECT d.org_id, d.entity_id, d.window_at, d.charged_at, COALESCE(l.ok, FALSE) AS legacy_ok
       FROM differ d LEFT JOIN legacy l ON l.org_id = d.org_id AND l.window_at = d.window_at
              AND d.window_at IS NOT NULL AND (d.charged_at IS NULL OR d.window_at > d.charged_at)
      ORDER BY 1, 2`,
    [batch.orgs],
  );
  const violations: Violation[] = totals.map((r) => ({
    check: 'usage',
    org: r.org_id,
    subject: 'usage_totals.total',
    expected: `${r.counted} (usage rows)`,
    found: r.total ?? 'no usage_totals row',
  }));
  let legacy = 0;
  for (const w of windows) {
    if (w.legacy_ok) {
      legacy++;
      continue;
    }
    violations.push({
      check: 'usage',
      org: w.org_id,
      subject: `re-access window of entity ${w.entity_id}`,
      expected: w.charged_at ? `last_charged_at ${w.charged_at.toISOString()} (its latest charge)` : 'a usage row that charged the entity',
      found: w.window_at ? `last_charged_at ${w.window_at.toISOString()}` : 'no window',
    });
  }
  const notes = legacy > 0 ? [`usage: ${legacy} re-access window(s) of this batch are explained only by calls metered before charged_entities was recorded (checked by count at their instant)`] : [];
  return { violations, notes };
}
