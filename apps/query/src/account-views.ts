import { DataSource } from 'typeorm';
import { Account, projectAccount } from '@tollgate/billing';
import { leasedUnspentSql } from '@tollgate/ledger';
import { Principal } from '@tollgate/persistence';
import { MaxWholeNumber, wholeNumberProblem } from '@tollgate/platform';
import { Profile } from '@tollgate/profiles';

export interface UsageParams {
  limit: number;
  offset: number;
  cursor: { occurredAt: string; id: string } | null;
}

/** Effective limit numbers for an org: org override > plan > the profile's default. */
export function effectiveLimits(profile: Profile, planName: string, overrides: Record<string, number>) {
  const plan = profile.plans.find((p) => p.name === planName);
  return profile.limits.map((l) => ({
    name: l.name,
    period_seconds: l.period_seconds,
    limit: overrides[l.name] ?? plan?.limits[l.name] ?? l.limit,
    subject: l.subject,
  }));
}

const perCaller = new Set(['key', 'client', 'user', 'application']);

/** Read models for /me and /usage. Every query is scoped to the principal's org: no parameter can widen it. */
export class AccountViews {
  constructor(
    private readonly ds: DataSource,
    private readonly profiles: (name: string) => Profile | undefined,
    private readonly clock: () => number = Date.now,
  ) {}

  async me(principal: Principal) {
    const rows: Array<Record<string, unknown>> = await this.ds.query(
      `SELECT org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets,
              ${leasedUnspentSql('a.org_id')} AS leased
         FROM accounts a WHERE org_id = $1`,
      [principal.orgId],
    );
    const r = rows[0];
    const profile = this.profiles(principal.profile);
    const limits = profile ? effectiveLimits(profile, principal.plan, principal.limitOverrides) : [];
    const pick = (period: number) => limits.find((l) => l.period_seconds === period && perCaller.has(l.subject))?.limit ?? null;
    // The month's allowance shows as reset at 00:00 UTC on the 1st even before any event arrives.
    const account = r ? projectAccount(toAccount(r), this.clock()) : null;
    return {
      tier: principal.plan,
      // Credits leased to gateways and not spent by any call are still the org's (SPEC §4).
      credits_remaining: account ? account.balance + Number(r!.leased) : 0,
      monthly_allowance: account?.plan.monthlyAllowance ?? 0,
      rate_limit: { requests_per_minute: pick(60), requests_per_day: pick(86400) },
      limits: limits.map(({ name, period_seconds, limit }) => ({ name, period_seconds, limit })),
    };
  }

  async usage(principal: Principal, p: UsageParams) {
    // One statement, so the page and total_count come from the same snapshot: two parallel queries could see a
    // batch's usage total committed but not its rows (total_count 1, no row) or the other way round.
    const page = p.cursor
      ? { where: `AND (r.occurred_at, r.id) < ($3::timestamptz, $4::bigint)`, tail: `LIMIT $2`, params: [p.cursor.occurredAt, p.cursor.id] }
      : { where: '', tail: `LIMIT $2 OFFSET $3`, params: [p.offset] };
    const rows: Array<UsageRecordRow & { total: string }> = await this.ds.query(
      `SELECT t.total, u.* FROM (SELECT COALESCE((SELECT total FROM usage_totals WHERE org_id = $1), 0) AS total) t
       LEFT JOIN LATERAL (
         SELECT r.id, r.occurred_at, r.method, r.route, r.path, r.status_code, r.credits, r.cost_reason, r.response_time_ms, r.request_id, r.decision
           FROM usage_records r WHERE r.org_id = $1 ${page.where}
          ORDER BY r.occurred_at DESC, r.id DESC ${page.tail}) u ON true`,
      [principal.orgId, p.limit, ...page.params],
    );
    const records = rows.filter((r) => r.id !== null);
    const last = records[records.length - 1];
    return {
      usage: records.map(toUsage),
      total_count: Number(rows[0]?.total ?? 0),
      offset: p.offset,
      limit: p.limit,
      next_cursor: records.length === p.limit && last ? encodeCursor(last.occurred_at.toISOString(), last.id) : null,
    };
  }
}

interface UsageRecordRow {
  id: string;
  occurred_at: Date;
  method: string;
  route: string;
  path: string;
  status_code: number;
  credits: string;
  cost_reason: string;
  response_time_ms: number;
  request_id: string | null;
  decision: string;
}

function toUsage(r: UsageRecordRow) {
  return {
    // The seed's format: seconds precision, UTC.
    timestamp: r.occurred_at.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    endpoint: r.route,
    status_code: r.status_code,
    credits_consumed: Number(r.credits),
    response_time_ms: Math.round(r.response_time_ms),
    method: r.method,
    path: r.path,
    cost_reason: r.cost_reason,
    decision: r.decision,
    request_id: r.request_id,
  };
}

function toAccount(r: Record<string, unknown>): Account {
  return {
    orgId: r.org_id as string,
    plan: r.plan as Account['plan'],
    balance: Number(r.balance),
    debt: Number(r.debt),
    nextSeq: Number(r.next_seq),
    allowanceMonth: r.allowance_month as string | null,
    allowanceSpent: Number(r.allowance_spent),
    grantedOneTime: r.granted_one_time as string[],
    buckets: r.buckets as Account['buckets'],
  };
}

export function encodeCursor(occurredAt: string, id: string): string {
  return Buffer.from(`${occurredAt}|${id}`, 'utf8').toString('base64url');
}

/** Largest bigint PostgreSQL holds: a cursor's id beyond it names no row and must not reach the query. */
const MaxBigint = 9223372036854775807n;

export function decodeCursor(cursor: string): { occurredAt: string; id: string } | null {
  if (cursor.length > 200 || !/^[A-Za-z0-9_-]+$/.test(cursor)) return null;
  const [occurredAt, id, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (!occurredAt || !id || rest.length > 0 || !/^\d{1,19}$/.test(id) || BigInt(id) > MaxBigint) return null;
  // Only the form encodeCursor writes: what Date.parse accepts beyond it PostgreSQL may not (a 500, not a 400).
  const at = Date.parse(occurredAt);
  if (!Number.isFinite(at) || new Date(at).toISOString() !== occurredAt) return null;
  return { occurredAt, id };
}

export type UsageParamsResult = { ok: true; params: UsageParams } | { ok: false; field: string; problem: string };

/**
 * `limit` 1..500 (default 50), `offset` 0..2^53 - 1 (default 0), `cursor` from a previous page. Numbers are decimal
 * digits; an offset past 2^53 (SPEC §8) is refused like any other bad one, never sent on to PostgreSQL.
 */
export function parseUsageParams(q: { limit?: unknown; offset?: unknown; cursor?: unknown }): UsageParamsResult {
  const int = (v: unknown) => (typeof v === 'string' && /^-?\d{1,400}$/.test(v) ? Number(v) : typeof v === 'number' ? v : NaN);
  let limit = 50;
  let offset = 0;
  if (q.limit !== undefined && q.limit !== '') {
    limit = int(q.limit);
    if (wholeNumberProblem(limit, 1, 500)) return { ok: false, field: 'limit', problem: `must be a whole number from 1 to 500 (got ${JSON.stringify(shown(q.limit))})` };
  }
  if (q.offset !== undefined && q.offset !== '') {
    offset = int(q.offset);
    if (wholeNumberProblem(offset, 0)) return { ok: false, field: 'offset', problem: `must be a whole number from 0 to ${MaxWholeNumber} (got ${JSON.stringify(shown(q.offset))})` };
  }
  let cursor = null;
  if (typeof q.cursor === 'string' && q.cursor !== '') {
    cursor = decodeCursor(q.cursor);
    if (!cursor) return { ok: false, field: 'cursor', problem: 'is not a cursor this API returned' };
    if (offset !== 0) return { ok: false, field: 'offset', problem: 'cannot be combined with cursor' };
  } else if (q.cursor !== undefined && typeof q.cursor !== 'string') {
    return { ok: false, field: 'cursor', problem: 'must be a single string' };
  }
  return { ok: true, params: { limit, offset, cursor } };
}

/** A bad value as the 400 echoes it: at most 40 characters of it. */
function shown(v: unknown): string {
  const s = Array.isArray(v) ? v.join(',') : String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
