import { NotFoundException } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { consumerLag, eventsMetered, holdsKeptPastTimeout } from '@tollgate/platform';
import { leasedUnspentSql } from '@tollgate/ledger';
import { OrgSort } from './admin-views.dto';
import { toHistoryItem } from './admin-commands';
import { readHistory } from './admin-command-store';
import { ledgerEntryView } from './ledger-entry-view';

/**
 * What an operator looks at (the CLI's `orgs list` and `usage`, the console's pages): read-only views over the
 * ledger, the usage records and the projections. Nothing here writes; commands stay in AdminService.
 */

/** How the console groups a call's cost reason: what was charged, and why a call was free. */
export const ReasonGroups = ['charged', 'reaccess', 'failure', 'rate_limited', 'insufficient_credits', 'free'] as const;
export type ReasonGroup = (typeof ReasonGroups)[number];

// `charged` and `partly_reaccess` cost credits; `free_reaccess` was inside its re-access window; `free_status`
// (upstream non-2xx), `given_back` (never handed out) and `rejected` (Tollgate's own failure) are failures;
// free routes and calls with no billable entity are simply free.
const reasonGroupSql = `CASE
  WHEN cost_reason IN ('charged', 'partly_reaccess') THEN 'charged'
  WHEN cost_reason = 'free_reaccess' THEN 'reaccess'
  WHEN cost_reason IN ('free_status', 'given_back', 'rejected') THEN 'failure'
  WHEN cost_reason = 'rate_limited' THEN 'rate_limited'
  WHEN cost_reason = 'insufficient_credits' THEN 'insufficient_credits'
  ELSE 'free' END`;

const sortColumns: Record<OrgSort, string> = {
  id: 'id',
  name: 'lower(name)',
  plan: 'plan',
  balance: 'balance',
  used_this_month: 'used_this_month',
  calls_today: 'calls_today',
  last_call_at: 'last_call_at',
  created_at: 'created_at',
};

/** The newest usage rows the system view reads for decisions by outcome (a bounded primary-key range). */
const RecentCallsWindow = 100_000;

function startOfUtcDay(t: number): number {
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

function startOfUtcMonth(t: number): number {
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

function likePattern(search: string): string {
  return `%${search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function iso(d: Date | null): string | null {
  return d ? d.toISOString() : null;
}

export class AdminViews {
  /** (time, events metered so far) every 5 s over the last minute: events/s is the slope. */
  private readonly samples: Array<{ at: number; metered: number }> = [];
  private sampler: NodeJS.Timeout | null = null;

  constructor(
    private readonly ds: DataSource,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Starts sampling this process's metered-events counter (unref'd: never keeps the process alive). */
  startSampling(everyMs = 5000): void {
    if (this.sampler) return;
    void this.sample();
    this.sampler = setInterval(() => void this.sample(), everyMs);
    this.sampler.unref();
  }

  stopSampling(): void {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = null;
  }

  private async sample(): Promise<void> {
    const metered = (await eventsMetered.get()).values.filter((v) => v.labels.result === 'metered').reduce((s, v) => s + v.value, 0);
    this.samples.push({ at: this.clock(), metered });
    while (this.samples.length > 13) this.samples.shift();
  }

  async listOrgs(q: { search?: string; sort?: OrgSort; order?: 'asc' | 'desc'; limit?: number; offset?: number }) {
    const now = this.clock();
    const limit = q.limit ?? 50;
    const offset = q.offset ?? 0;
    const sort = q.sort ?? 'id';
    const order = q.order ?? (sort === 'id' || sort === 'name' || sort === 'plan' ? 'asc' : 'desc');
    // Sorting by a figure needs it for every matching org: fine for an operator's thousands of orgs, each
    // figure read from the (org_id, occurred_at DESC) index.
    const rows: Array<{
      id: string; name: string; profile: string; plan: string; created_at: Date; balance: string;
      used_this_month: string; calls_today: string; last_call_at: Date | null; total: string;
    }> = await this.ds.query(
      `WITH o AS (
         SELECT o.id, o.name, o.profile, o.plan, o.created_at, COALESCE(a.balance, 0) + ${leasedUnspentSql('o.id')} AS balance,
                COALESCE(m.used, 0) AS used_this_month, COALESCE(t.calls, 0) AS calls_today, l.occurred_at AS last_call_at
           FROM orgs o
           LEFT JOIN accounts a ON a.org_id = o.id
           LEFT JOIN LATERAL (SELECT SUM(r.credits) AS used FROM usage_records r WHERE r.org_id = o.id AND r.occurred_at >= $2) m ON true
           LEFT JOIN LATERAL (SELECT COUNT(*) AS calls FROM usage_records r WHERE r.org_id = o.id AND r.occurred_at >= $3) t ON true
           LEFT JOIN LATERAL (SELECT r.occurred_at FROM usage_records r WHERE r.org_id = o.id ORDER BY r.occurred_at DESC LIMIT 1) l ON true
          WHERE $1::text IS NULL OR o.id ILIKE $1 OR o.name ILIKE $1)
       SELECT o.*, COUNT(*) OVER () AS total FROM o
        ORDER BY ${sortColumns[sort]} ${order === 'asc' ? 'ASC' : 'DESC'} NULLS LAST, id ASC
        LIMIT $4 OFFSET $5`,
      [q.search ? likePattern(q.search) : null, new Date(startOfUtcMonth(now)), new Date(startOfUtcDay(now)), limit, offset],
    );
    let total = Number(rows[0]?.total ?? 0);
    if (rows.length === 0 && offset > 0) {
      const counted: Array<{ n: string }> = await this.ds.query(
        `SELECT COUNT(*) AS n FROM orgs o WHERE $1::text IS NULL OR o.id ILIKE $1 OR o.name ILIKE $1`,
        [q.search ? likePattern(q.search) : null],
      );
      total = Number(counted[0]?.n ?? 0);
    }
    return {
      orgs: rows.map((r) => ({
        id: r.id,
        name: r.name,
        profile: r.profile,
        plan: r.plan,
        balance: Number(r.balance),
        used_this_month: Number(r.used_this_month),
        calls_today: Number(r.calls_today),
        last_call_at: iso(r.last_call_at),
        created_at: r.created_at.toISOString(),
      })),
      total_count: total,
      offset,
      limit,
      sort,
      order,
    };
  }

  async usage(orgId: string, limit = 50, offset = 0) {
    await this.requireOrg(orgId);
    const rows: Array<{
      event_id: string; occurred_at: Date; method: string; route: string; path: string; status_code: number; credits: string;
      cost_reason: string; response_time_ms: number; request_id: string | null; decision: string; api_key_id: string | null;
    }> = await this.ds.query(
      `SELECT event_id, occurred_at, method, route, path, status_code, credits, cost_reason, response_time_ms, request_id, decision, api_key_id
         FROM usage_records WHERE org_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2 OFFSET $3`,
      [orgId, limit, offset],
    );
    const total: Array<{ total: string }> = await this.ds.query(`SELECT total FROM usage_totals WHERE org_id = $1`, [orgId]);
    return {
      usage: rows.map((r) => ({
        timestamp: r.occurred_at.toISOString(),
        endpoint: r.route,
        method: r.method,
        path: r.path,
        status_code: r.status_code,
        credits_consumed: Number(r.credits),
        cost_reason: r.cost_reason,
        decision: r.decision,
        response_time_ms: Math.round(r.response_time_ms),
        request_id: r.request_id,
        event_id: r.event_id,
        api_key_id: r.api_key_id,
      })),
      total_count: Number(total[0]?.total ?? 0),
      offset,
      limit,
    };
  }

  async keys(orgId: string) {
    await this.requireOrg(orgId);
    const rows: Array<{ id: string; name: string; kind: string; prefix: string; created_at: Date; revoked_at: Date | null }> = await this.ds.query(
      `SELECT id, name, kind, prefix, created_at, revoked_at FROM api_keys WHERE org_id = $1 ORDER BY created_at DESC, id`,
      [orgId],
    );
    return {
      keys: rows.map((k) => ({ id: k.id, name: k.name, kind: k.kind, prefix: k.prefix, created_at: k.created_at.toISOString(), revoked_at: iso(k.revoked_at) })),
    };
  }

  /** The ledger newest first, each entry with what caused it: the call (event), the hold or lease, or the admin command. */
  async entries(orgId: string, before?: number, limit = 50) {
    await this.requireOrg(orgId);
    const rows: Array<{
      seq: string; type: string; amount: string; balance_after: string; cause: string; occurred_at: Date; recorded_at: Date;
      bucket_id: string | null; detail: unknown; method: string | null; path: string | null; status_code: number | null;
      cost_reason: string | null; request_id: string | null; hold_route: string | null; hold_status: string | null;
      lease_id: string | null; lease_gateway: string | null; lease_credits: string | null; lease_spent: string | null; lease_returned: string | null; lease_status: string | null;
      command_id: string | null; command: string | null; command_actor: string | null; command_input: Record<string, unknown> | null;
    }> = await this.ds.query(
      `SELECT e.seq, e.type, e.amount, e.balance_after, e.cause, e.occurred_at, e.recorded_at, e.bucket_id, e.detail,
              u.method, u.path, u.status_code, u.cost_reason, u.request_id,
              h.route AS hold_route, h.status AS hold_status,
              l.id AS lease_id, l.gateway AS lease_gateway, l.credits AS lease_credits, l.spent AS lease_spent, l.returned AS lease_returned, l.status AS lease_status,
              c.id AS command_id, c.command, c.actor AS command_actor, c.input AS command_input
         FROM ledger_entries e
         LEFT JOIN usage_records u ON e.cause LIKE 'event:%' AND u.org_id = e.org_id AND u.event_id = substr(e.cause, 7)
         LEFT JOIN reservations h ON e.cause LIKE 'reservation:%' AND h.org_id = e.org_id AND h.id = substr(e.cause, 13)
         -- a lease's entries and the releases of what it did not spend name it in their detail
         LEFT JOIN reservations l ON e.detail ? 'lease_id' AND l.org_id = e.org_id AND l.id = e.detail->>'lease_id'
         -- admin:<command id>; grants recorded before commands had ids: admin:grant:<idempotency key>
         LEFT JOIN admin_commands c ON e.cause LIKE 'admin:%' AND c.org_id = e.org_id
               AND (c.id = substr(e.cause, 7) OR (e.cause LIKE 'admin:grant:%' AND c.idempotency_key = substr(e.cause, 13)))
        WHERE e.org_id = $1 AND ($2::bigint IS NULL OR e.seq < $2)
        ORDER BY e.seq DESC LIMIT $3`,
      [orgId, before ?? null, limit],
    );
    const last: Array<{ seq: string | null }> = await this.ds.query(`SELECT MAX(seq) AS seq FROM ledger_entries WHERE org_id = $1`, [orgId]);
    return {
      entries: rows.map((r) => ({
        ...ledgerEntryView(r),
        call: r.path ? { method: r.method, path: r.path, status_code: r.status_code, cost_reason: r.cost_reason, request_id: r.request_id } : null,
        hold: r.hold_route ? { route: r.hold_route, status: r.hold_status } : null,
        lease: r.lease_id
          ? { id: r.lease_id, gateway: r.lease_gateway, credits: Number(r.lease_credits), spent: Number(r.lease_spent), returned: Number(r.lease_returned), status: r.lease_status }
          : null,
        command: r.command_id
          ? { id: r.command_id, command: r.command, actor: r.command_actor, reason: r.command_input?.reason ?? null, idempotency_key: r.command_input?.idempotency_key ?? null, input: r.command_input }
          : null,
      })),
      last_seq: Number(last[0]?.seq ?? 0),
    };
  }

  /** The org's operator commands with a seq above `after`, oldest first (paged like the ledger). */
  async history(orgId: string, after = 0, limit = 100) {
    await this.requireOrg(orgId);
    return { commands: (await readHistory(this.ds.manager, orgId, after, limit)).map(toHistoryItem) };
  }

  /**
   * Calls per hour (the last 48 hours) or per day (the last 31 days) by reason group, credits charged, and the
   * balance at the end of each bucket (carried forward from the last entry before it). Buckets are UTC.
   */
  async activity(orgId: string, bucket: 'hour' | 'day' = 'hour') {
    await this.requireOrg(orgId);
    const step = bucket === 'hour' ? 3_600_000 : 86_400_000;
    const now = this.clock();
    const end = Math.floor(now / step) * step;
    const start = end - (bucket === 'hour' ? 47 : 30) * step;
    const calls: Array<{ t: string; grp: ReasonGroup; calls: string; credits: string }> = await this.ds.query(
      `SELECT EXTRACT(EPOCH FROM date_trunc($3, occurred_at AT TIME ZONE 'UTC'))::bigint AS t, ${reasonGroupSql} AS grp,
              COUNT(*) AS calls, COALESCE(SUM(credits), 0) AS credits
         FROM usage_records WHERE org_id = $1 AND occurred_at >= $2 GROUP BY 1, 2`,
      [orgId, new Date(start), bucket],
    );
    const balances: Array<{ t: string; balance_after: string }> = await this.ds.query(
      `SELECT DISTINCT ON (1) EXTRACT(EPOCH FROM date_trunc($3, occurred_at AT TIME ZONE 'UTC'))::bigint AS t, balance_after
         FROM ledger_entries WHERE org_id = $1 AND occurred_at >= $2 ORDER BY 1, seq DESC`,
      [orgId, new Date(start), bucket],
    );
    const before: Array<{ balance_after: string }> = await this.ds.query(
      `SELECT balance_after FROM ledger_entries WHERE org_id = $1 AND occurred_at < $2 ORDER BY seq DESC LIMIT 1`,
      [orgId, new Date(start)],
    );
    const n = Math.round((end - start) / step) + 1;
    const times = Array.from({ length: n }, (_, i) => (start + i * step) / 1000);
    const index = (t: string) => Math.round((Number(t) * 1000 - start) / step);
    const byReason = Object.fromEntries(ReasonGroups.map((g) => [g, new Array<number>(n).fill(0)])) as Record<ReasonGroup, number[]>;
    const credits = new Array<number>(n).fill(0);
    for (const c of calls) {
      const i = index(c.t);
      if (i < 0 || i >= n) continue;
      byReason[c.grp][i] = (byReason[c.grp][i] ?? 0) + Number(c.calls);
      credits[i] = (credits[i] ?? 0) + Number(c.credits);
    }
    const balanceAt = new Map(balances.map((b) => [index(b.t), Number(b.balance_after)]));
    let carried: number | null = before[0] ? Number(before[0].balance_after) : null;
    const balance = times.map((_, i) => {
      carried = balanceAt.get(i) ?? carried;
      return carried;
    });
    return { org_id: orgId, bucket, times, calls: byReason, credits_charged: credits, balance };
  }

  /**
   * The system at a glance. Events/s, lag and holds kept are this metering instance's own /metrics figures; dead
   * letters, holds and decisions come from PostgreSQL, so they cover every instance (decisions: the calls metered
   * in the last hour, read from at most the newest 100,000 usage rows).
   */
  async system() {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    const eventsPerSecond = first && last && last.at > first.at ? (last.metered - first.metered) / ((last.at - first.at) / 1000) : 0;
    const metered = Object.fromEntries((await eventsMetered.get()).values.map((v) => [String(v.labels.result), v.value]));
    const lag = (await consumerLag.get()).values[0]?.value ?? 0;
    const keptPastTimeout = (await holdsKeptPastTimeout.get()).values[0]?.value ?? 0;
    const [dead]: Array<{ total: string; pending: string; last_at: Date | null }> = await this.ds.query(
      `SELECT COUNT(*) AS total, COUNT(*) FILTER (WHERE replayed_at IS NULL) AS pending, MAX(created_at) AS last_at FROM dead_letters`,
    );
    const [held]: Array<{ holds: string; credits: string; oldest: Date | null }> = await this.ds.query(
      `SELECT COUNT(*) AS holds, COALESCE(SUM(credits), 0) AS credits, MIN(occurred_at) AS oldest FROM reservations WHERE status = 'held'`,
    );
    const decisions: Array<{ decision: string; calls: string }> = await this.ds.query(
      `SELECT decision, COUNT(*) AS calls FROM usage_records
        WHERE id > (SELECT COALESCE(MAX(id), 0) - $1 FROM usage_records) AND occurred_at >= $2
        GROUP BY decision ORDER BY decision`,
      [RecentCallsWindow, new Date(this.clock() - 3_600_000)],
    );
    const [orgs]: Array<{ orgs: string }> = await this.ds.query(`SELECT COUNT(*) AS orgs FROM orgs`);
    return {
      at: new Date(this.clock()).toISOString(),
      events_per_second: Math.round(eventsPerSecond * 100) / 100,
      events_metered: metered,
      consumer_lag: lag,
      dead_letters: { total: Number(dead?.total ?? 0), pending: Number(dead?.pending ?? 0), last_at: iso(dead?.last_at ?? null) },
      reservations_held: { holds: Number(held?.holds ?? 0), credits: Number(held?.credits ?? 0), oldest_at: iso(held?.oldest ?? null), kept_past_timeout: keptPastTimeout },
      decisions_last_hour: Object.fromEntries(decisions.map((d) => [d.decision, Number(d.calls)])),
      orgs: Number(orgs?.orgs ?? 0),
    };
  }

  private async requireOrg(orgId: string): Promise<void> {
    const rows: unknown[] = await this.ds.query(`SELECT 1 FROM orgs WHERE id = $1`, [orgId]);
    if (rows.length === 0) throw new NotFoundException({ error: 'not_found', message: `org "${orgId}" does not exist` });
  }
}
