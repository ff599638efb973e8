import { Sql } from './sql';
import { Violation } from './violation';

/**
 * A lease's `expires_at` is the end of its draw time, and the sweeper closes it after the publish window on top, at
 * its next sweep (every 5 s) once the consumer has read that far: a lease gets that sweep, and as much again, more.
 */
const LeaseSweepSlackSeconds = 10;

/**
 * `stale-holds`: a hold still `held` more than `graceSeconds` after its `expires_at`. The sweeper releases a hold
 * once its timeout passed *and* the consumer has read every event published up to `held_at` + the publish window
 * (RESERVATION_PUBLISH_WINDOW_SECONDS, see HoldSweeper), so a healthy system can keep a hold up to about that
 * window past its timeout; the grace defaults to it (a lease, whose expires_at ends its draw time, gets 10 s more).
 * A hold older than that means the sweeper is not running or the consumer is stalled on its partition (which keeps
 * holds on purpose: the report says so). `now()` is the database's clock at the audit's snapshot. One query over
 * the partial index of held reservations.
 */
export async function checkStaleHolds(sql: Sql, orgs: string[] | 'all', graceSeconds: number): Promise<Violation[]> {
  const rows = await sql<{ id: string; org_id: string; credits: string; expires_at: Date; overdue: string }>(
    `SELECT id, org_id, credits, expires_at, round(EXTRACT(EPOCH FROM now() - expires_at))::bigint AS overdue
       FROM reservations
      WHERE status = 'held' AND expires_at < now() - make_interval(secs => $1 + CASE WHEN kind = 'lease' THEN $3 ELSE 0 END)
        AND ($2::text[] IS NULL OR org_id = ANY($2::text[]))
      ORDER BY org_id, expires_at, id`,
    [graceSeconds, orgs === 'all' ? null : orgs, LeaseSweepSlackSeconds],
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
 * `hold-entries`, the other way round: reservations rows of the audited orgs that no `reservation` entry of their
 * org names (a hold every credit of which is missing from the ledger). One anti-join over the whole selection.
 */
export async function checkHoldsWithoutEntries(sql: Sql, orgs: string[] | 'all'): Promise<Violation[]> {
  const rows = await sql<{ org_id: string; id: string; status: string; credits: string }>(
    `SELECT r.org_id, r.id, r.status, r.credits FROM reservations r
      WHERE ($1::text[] IS NULL OR r.org_id = ANY($1::text[])) AND r.kind = 'hold'
        AND NOT EXISTS (SELECT 1 FROM ledger_entries e
                         WHERE e.type = 'reservation' AND e.org_id = r.org_id AND e.cause = 'reservation:' || r.id
                           AND ($1::text[] IS NULL OR e.org_id = ANY($1::text[])))
      ORDER BY 1, 2`,
    [orgs === 'all' ? null : orgs],
  );
  return rows.map((r) => ({
    check: 'hold-entries' as const,
    org: r.org_id,
    subject: `reservation ${r.id}`,
    expected: `reservation entries summing to -${r.credits}`,
    found: `none (${r.status})`,
  }));
}
