import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

/**
 * `charges`: usage rows and the ledger say the same about what each call cost.
 *
 * How a call's price reaches the ledger (meterEvent, libs/billing settle and charge):
 * - without a hold, or with a hold settled at another price: `charge` entries caused by `event:<event_id>`
 *   summing to -credits (a part may be debt, bucket_id null); a hold settled that way is first released whole
 *   (`release` entries naming it);
 * - with a hold settled at exactly what it held, from buckets still live: no entry names the event. The hold's
 *   `reservation` entries are the charge and its row says `settled`. The schema does not record which event
 *   settled a hold (`closed_by` is just 'event', usage_records has no reservation id), so such calls are matched
 *   to such holds by what both record: org, `METHOD route`, occurred_at (the gateway dates the hold and the event
 *   with the same instant) and credits, by count per key.
 * Checked both ways: a usage row whose credits are not what its event's charge entries sum to; a charged usage row
 * with neither charge entries nor a matching settled hold; charge entries with no usage row of their org (or a
 * cause that is not an event); a hold settled at its price with no charged call matching it.
 */
export async function checkCharges(sql: Sql, batch: OrgBatch): Promise<Violation[]> {
  const rows = await sql<{
    kind: 'mismatch' | 'orphan' | 'unmatched';
    org_id: string;
    ref: string;
    credits: string | null;
    charged: string | null;
    calls: string | null;
    holds: string | null;
  }>(
    `WITH c AS (
       SELECT org_id, cause, SUM(amount) AS amount FROM ledger_entries
        WHERE org_id = ANY($1::text[]) AND type = 'charge' GROUP BY 1, 2),
     u AS (
       SELECT org_id, event_id, credits, method || ' ' || route AS route, occurred_at FROM usage_records WHERE org_id = ANY($1::text[])),
     paired AS (
       SELECT COALESCE(u.org_id, c.org_id) AS org_id, u.event_id, c.cause, u.credits, c.amount, u.route, u.occurred_at
         FROM u FULL JOIN c ON c.org_id = u.org_id AND c.cause = 'event:' || u.event_id),
     released AS (
       SELECT DISTINCT org_id, detail->>'reservation_id' AS id FROM ledger_entries
        WHERE org_id = ANY($1::text[]) AND type = 'release' AND detail->>'reservation_id' IS NOT NULL),
     kept AS (
       SELECT r.org_id, r.route, r.occurred_at, r.credits, COUNT(*) AS n, MIN(r.id) AS ref FROM reservations r
        WHERE r.org_id = ANY($1::text[]) AND r.status = 'settled'
          AND NOT EXISTS (SELECT 1 FROM released x WHERE x.org_id = r.org_id AND x.id = r.id)
        GROUP BY 1, 2, 3, 4),
     uncharged AS (
       SELECT org_id, route, occurred_at, credits, COUNT(*) AS n, MIN(event_id) AS ref FROM paired
        WHERE cause IS NULL AND credits > 0 GROUP BY 1, 2, 3, 4)
     SELECT CASE WHEN event_id IS NULL THEN 'orphan' ELSE 'mismatch' END AS kind, org_id, COALESCE(event_id, cause) AS ref,
            credits::text, (-amount)::text AS charged, NULL AS calls, NULL AS holds
       FROM paired WHERE cause IS NOT NULL AND (event_id IS NULL OR credits <> -amount)
     UNION ALL
     SELECT 'unmatched', org_id, COALESCE(uc.ref, k.ref) || ' (' || route || ' at ' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || ')',
            credits::text, NULL, COALESCE(uc.n, 0)::text, COALESCE(k.n, 0)::text
       FROM uncharged uc FULL JOIN kept k USING (org_id, route, occurred_at, credits)
      WHERE COALESCE(uc.n, 0) <> COALESCE(k.n, 0)
     ORDER BY 2, 3`,
    [batch.orgs],
  );
  return rows.map((r): Violation => {
    if (r.kind === 'orphan') {
      return {
        check: 'charges',
        org: r.org_id,
        subject: `charge entries caused by ${r.ref}`,
        expected: r.ref.startsWith('event:') ? `a usage row of this org for ${r.ref.slice(6)}` : 'a cause event:<event_id>',
        found: `none (charged ${r.charged})`,
      };
    }
    if (r.kind === 'mismatch') {
      return { check: 'charges', org: r.org_id, subject: `usage row ${r.ref}`, expected: `charge entries summing to -${r.credits}`, found: `-${r.charged}` };
    }
    const calls = Number(r.calls);
    const holds = Number(r.holds);
    return calls > holds
      ? {
          check: 'charges',
          org: r.org_id,
          subject: `usage row ${r.ref}, ${r.credits} credits`,
          expected: `charge entries caused by its event, or a hold settled at ${r.credits} credits at that instant (${calls} such call(s))`,
          found: `no charge entries, ${holds} such hold(s)`,
        }
      : {
          check: 'charges',
          org: r.org_id,
          subject: `reservation ${r.ref}, settled at its ${r.credits} credits`,
          expected: `a charged usage row at its instant and route with no charge entries (${holds} such hold(s))`,
          found: `${calls} such usage row(s)`,
        };
  });
}
