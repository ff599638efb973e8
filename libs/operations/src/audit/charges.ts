import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

interface Row {
  kind: 'hold' | 'mismatch' | 'orphan' | 'unmatched' | 'unpaired';
  org_id: string;
  ref: string;
  status: string | null;
  credits: string | null;
  allocated: string | null;
  held: string | null;
  released: string | null;
  charged: string | null;
  calls: string | null;
  holds: string | null;
}

/**
 * `hold-entries` and `charges` for a batch, in one statement: both read the batch's reservation, release and charge
 * entries (once, materialized) and the reservations they name, by key (org_id, id); the rows no entry names are
 * `checkHoldsWithoutEntries`' business.
 *
 * `hold-entries`: a hold's `reservation` entries (cause `reservation:<id>`) take exactly its credits (and its
 * allocation says the same); `release` entries naming it (detail.reservation_id: the gateway's give-back, the
 * sweeper's timeout, or a settlement that released before charging) give back nothing while it is held, all of it
 * once released or expired, and nothing or all of it once settled. Entries naming a reservation with no row too.
 *
 * `charges`: usage rows and the ledger say the same about what each call cost. How a price reaches the ledger
 * (meterEvent, libs/billing settle and charge):
 * - without a hold, or with a hold settled at another price: `charge` entries caused by `event:<event_id>` summing
 *   to -credits (a part may be debt, bucket_id null); a hold settled that way is first released whole;
 * - with a hold settled at exactly what it held, from buckets still live: no entry names the event. The hold's
 *   `reservation` entries are the charge and its row says `settled` by `event:<event_id>`, so the call and the hold
 *   are paired exactly: same org, that event's usage row, the same credits. Holds settled before `closed_by` named
 *   the event (it said just 'event') are matched by what both record: org, `METHOD route`, occurred_at (the
 *   gateway dates the hold and the event with the same instant) and credits, by count per key.
 * - paid from a lease (usage_records.lease_id): no entry names the event; the lease's books are `checkLeases`'.
 * Checked both ways: a usage row whose credits are not what its event's charge entries sum to; a charged usage row
 * with neither charge entries nor a matching settled hold; charge entries with no usage row of their org (or a
 * cause that is not an event); a hold settled at its price with no charged call matching it.
 */
export async function checkHoldsAndCharges(sql: Sql, batch: OrgBatch, which: { holds: boolean; charges: boolean }): Promise<Violation[]> {
  if (!which.holds && !which.charges) return [];
  const rows = await sql<Row>(
    `WITH x AS MATERIALIZED (
       SELECT org_id, type, amount, cause,
              CASE type WHEN 'reservation' THEN substr(cause, 13) WHEN 'release' THEN detail->>'reservation_id' END AS rid
         FROM ledger_entries WHERE org_id = ANY($1::text[]) AND type IN ('reservation', 'release', 'charge')),
     e AS (
       SELECT org_id, rid AS id, SUM(amount) FILTER (WHERE type = 'reservation') AS held, SUM(amount) FILTER (WHERE type = 'release') AS released
         FROM x WHERE rid IS NOT NULL GROUP BY 1, 2),
     r AS MATERIALIZED (
       SELECT org_id, id, status, credits, route, occurred_at, closed_by,
              (SELECT COALESCE(SUM((a->>'credits')::bigint), 0) FROM jsonb_array_elements(allocation) a) AS allocated
         FROM reservations WHERE (org_id, id) IN (SELECT org_id, id FROM e)),
     hold AS (
       SELECT COALESCE(r.org_id, e.org_id) AS org_id, COALESCE(r.id, e.id) AS id, r.status, r.credits, r.allocated, e.held, e.released
         FROM r FULL JOIN e ON e.org_id = r.org_id AND e.id = r.id
        WHERE $2 AND (r.id IS NULL OR e.id IS NULL
           OR r.allocated <> r.credits
           OR COALESCE(e.held, 0) <> -r.credits
           OR CASE r.status WHEN 'held' THEN COALESCE(e.released, 0) <> 0
                            WHEN 'settled' THEN COALESCE(e.released, 0) NOT IN (0, r.credits)
                            ELSE COALESCE(e.released, 0) <> r.credits END)),
     c AS (SELECT org_id, cause, SUM(amount) AS amount FROM x WHERE $3 AND type = 'charge' GROUP BY 1, 2),
     u AS (
       SELECT org_id, event_id, credits, method || ' ' || route AS route, occurred_at FROM usage_records
        WHERE $3 AND org_id = ANY($1::text[]) AND lease_id IS NULL),
     paired AS (
       SELECT COALESCE(u.org_id, c.org_id) AS org_id, u.event_id, c.cause, u.credits, c.amount, u.route, u.occurred_at
         FROM u FULL JOIN c ON c.org_id = u.org_id AND c.cause = 'event:' || u.event_id),
     paid_by_hold AS (
       SELECT r.org_id, r.id, r.credits, r.route, r.occurred_at, CASE WHEN r.closed_by LIKE 'event:%' THEN substr(r.closed_by, 7) END AS event_id
         FROM r JOIN e ON e.org_id = r.org_id AND e.id = r.id
        WHERE $3 AND r.status = 'settled' AND e.released IS NULL),
     kept AS (
       SELECT org_id, route, occurred_at, credits, COUNT(*) AS n, MIN(id) AS ref FROM paid_by_hold
        WHERE event_id IS NULL GROUP BY 1, 2, 3, 4),
     uncharged AS (
       SELECT org_id, route, occurred_at, credits, COUNT(*) AS n, MIN(event_id) AS ref FROM paired p
        WHERE cause IS NULL AND credits > 0
          AND NOT EXISTS (SELECT 1 FROM paid_by_hold h WHERE h.org_id = p.org_id AND h.event_id = p.event_id AND h.credits = p.credits)
        GROUP BY 1, 2, 3, 4),
     unpaired AS (
       SELECT h.org_id, h.id, h.event_id, h.credits FROM paid_by_hold h
        WHERE h.event_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM u WHERE u.org_id = h.org_id AND u.event_id = h.event_id AND u.credits = h.credits))
     SELECT 'hold' AS kind, org_id, id AS ref, status, credits::text, allocated::text, held::text, released::text,
            NULL AS charged, NULL AS calls, NULL AS holds
       FROM hold
     UNION ALL
     SELECT CASE WHEN event_id IS NULL THEN 'orphan' ELSE 'mismatch' END, org_id, COALESCE(event_id, cause),
            NULL, credits::text, NULL, NULL, NULL, (-amount)::text, NULL, NULL
       FROM paired WHERE cause IS NOT NULL AND (event_id IS NULL OR credits <> -amount)
     UNION ALL
     SELECT 'unmatched', org_id, COALESCE(uc.ref, k.ref) || ' (' || route || ' at ' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || ')',
            NULL, credits::text, NULL, NULL, NULL, NULL, COALESCE(uc.n, 0)::text, COALESCE(k.n, 0)::text
       FROM uncharged uc FULL JOIN kept k USING (org_id, route, occurred_at, credits)
      WHERE COALESCE(uc.n, 0) <> COALESCE(k.n, 0)
     UNION ALL
     SELECT 'unpaired', org_id, id || ' (settled by event ' || event_id || ')', NULL, credits::text, NULL, NULL, NULL, NULL, NULL, NULL
       FROM unpaired
     ORDER BY 2, 3`,
    [batch.orgs, which.holds, which.charges],
  );
  const out: Violation[] = [];
  for (const r of rows) {
    if (r.kind === 'hold') out.push(...holdViolations(r));
    else out.push(chargeViolation(r));
  }
  return out;
}

function holdViolations(r: Row): Violation[] {
  const out: Violation[] = [];
  const v = (expected: string, found: string) => out.push({ check: 'hold-entries', org: r.org_id, subject: `reservation ${r.ref}`, expected, found });
  if (r.status === null || r.credits === null) {
    v('a reservations row for its entries', `none (entries hold ${r.held ?? 0}, release ${r.released ?? 0})`);
    return out;
  }
  const credits = BigInt(r.credits);
  const held = BigInt(r.held ?? 0);
  const released = BigInt(r.released ?? 0);
  if (BigInt(r.allocated ?? 0) !== credits) v(`allocation summing to its ${credits} credits`, `allocation of ${r.allocated}`);
  if (held !== -credits) v(`reservation entries summing to ${-credits}`, `${held} (${r.status})`);
  const net = held + released;
  if (r.status === 'held' && released !== 0n) v(`net ${-credits} while held (nothing released)`, `net ${net} (released ${released})`);
  else if (r.status === 'settled' && released !== 0n && released !== credits) v(`released 0 or ${credits} once settled`, `released ${released}`);
  else if ((r.status === 'released' || r.status === 'expired') && released !== credits) v(`net 0 once ${r.status} (released ${credits})`, `net ${net} (released ${released})`);
  return out;
}

function chargeViolation(r: Row): Violation {
  if (r.kind === 'orphan') {
    return {
      check: 'charges',
      org: r.org_id,
      subject: `charge entries caused by ${r.ref}`,
      expected: r.ref.startsWith('event:') ? `a usage row of this org for ${r.ref.slice(6)}` : 'a cause event:<event_id>',
      found: `none (charged ${r.charged})`,
    };
  }
  if (r.kind === 'unpaired') {
    const event = r.ref.slice(r.ref.lastIndexOf(' ') + 1, -1);
    return { check: 'charges', org: r.org_id, subject: `reservation ${r.ref}`, expected: `a usage row of event ${event} costing its ${r.credits} credits`, found: 'none' };
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
}
