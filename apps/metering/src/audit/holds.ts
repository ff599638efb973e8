import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

/**
 * `stale-holds`: a hold still `held` more than `graceSeconds` after its `expires_at`. The sweeper releases a hold
 * once its timeout passed *and* the consumer has read every event published up to `held_at` + the publish window
 * (RESERVATION_PUBLISH_WINDOW_SECONDS, see HoldSweeper), so a healthy system can keep a hold up to about that
 * window past its timeout; the grace defaults to it. A hold older than that means the sweeper is not running or
 * the consumer is stalled on its partition (which keeps holds on purpose: the report says so). `now()` is the
 * database's clock at the audit's snapshot. One query over the partial index of held reservations.
 */
export async function checkStaleHolds(sql: Sql, orgs: string[] | 'all', graceSeconds: number): Promise<Violation[]> {
  const rows = await sql<{ id: string; org_id: string; credits: string; expires_at: Date; overdue: string }>(
    `SELECT id, org_id, credits, expires_at, round(EXTRACT(EPOCH FROM now() - expires_at))::bigint AS overdue
       FROM reservations
      WHERE status = 'held' AND expires_at < now() - make_interval(secs => $1)
        AND ($2::text[] IS NULL OR org_id = ANY($2::text[]))
      ORDER BY org_id, expires_at, id`,
    [graceSeconds, orgs === 'all' ? null : orgs],
  );
  return rows.map((r) => ({
    check: 'stale-holds' as const,
    org: r.org_id,
    subject: `reservation ${r.id} (${r.credits} credits, expires_at ${r.expires_at.toISOString()})`,
    expected: `released or settled within ${graceSeconds}s of expires_at`,
    found: `still held ${r.overdue}s after expires_at`,
  }));
}

/**
 * `hold-entries`: every reservation's ledger effect. Its `reservation` entries (cause `reservation:<id>`) take
 * exactly its credits (and its allocation says the same); `release` entries naming it (detail.reservation_id:
 * the gateway's give-back, the sweeper's timeout, or a settlement that released before charging) give back
 * nothing while it is held, all of it once released or expired, and nothing or all of it once settled (a
 * settlement either keeps the hold as the call's charge or releases it whole and charges the price). Entries
 * naming a reservation that has no row are reported too.
 */
export async function checkHoldEntries(sql: Sql, batch: OrgBatch): Promise<Violation[]> {
  const rows = await sql<{
    org_id: string;
    id: string;
    status: string | null;
    credits: string | null;
    allocated: string | null;
    held: string | null;
    released: string | null;
  }>(
    `WITH e AS (
       SELECT org_id, CASE WHEN type = 'reservation' THEN substr(cause, 13) ELSE detail->>'reservation_id' END AS id,
              SUM(amount) FILTER (WHERE type = 'reservation') AS held, SUM(amount) FILTER (WHERE type = 'release') AS released
         FROM ledger_entries
        WHERE org_id = ANY($1::text[]) AND (type = 'reservation' OR (type = 'release' AND detail->>'reservation_id' IS NOT NULL))
        GROUP BY 1, 2),
     r AS (
       SELECT org_id, id, status, credits,
              (SELECT COALESCE(SUM((a->>'credits')::bigint), 0) FROM jsonb_array_elements(allocation) a) AS allocated
         FROM reservations WHERE org_id = ANY($1::text[]))
     SELECT COALESCE(r.org_id, e.org_id) AS org_id, COALESCE(r.id, e.id) AS id, r.status, r.credits, r.allocated, e.held, e.released
       FROM r FULL JOIN e ON e.org_id = r.org_id AND e.id = r.id
      WHERE r.id IS NULL OR e.id IS NULL
         OR r.allocated <> r.credits
         OR COALESCE(e.held, 0) <> -r.credits
         OR CASE r.status WHEN 'held' THEN COALESCE(e.released, 0) <> 0
                          WHEN 'settled' THEN COALESCE(e.released, 0) NOT IN (0, r.credits)
                          ELSE COALESCE(e.released, 0) <> r.credits END
      ORDER BY 1, 2`,
    [batch.orgs],
  );
  const out: Violation[] = [];
  for (const r of rows) {
    const subject = `reservation ${r.id}`;
    const v = (expected: string, found: string) => out.push({ check: 'hold-entries', org: r.org_id, subject, expected, found });
    if (r.status === null || r.credits === null) {
      v('a reservations row for its entries', `none (entries hold ${r.held ?? 0}, release ${r.released ?? 0})`);
      continue;
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
  }
  return out;
}
