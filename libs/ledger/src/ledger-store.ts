import { Account, Allocation, applyCharges, LedgerEntryDraft, LedgerEntryType } from '@tollgate/billing';
import { createHash } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { sqlState } from '@tollgate/persistence';
import { HeldReservation } from './meter-event';

const preparedNames = new Map<string, string>();

/**
 * A hot statement as a named prepared statement: PostgreSQL parses and plans it once per connection instead of on
 * every batch (the composed write's parse and plan were half its server time). The name is a digest of the text,
 * so one name never stands for two statements. TypeORM hands the object to `pg` as it is.
 */
function prepared(text: string): string {
  let name = preparedNames.get(text);
  if (!name) {
    name = `tg_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (preparedNames.size < 1000) preparedNames.set(text, name);
  }
  // toString: TypeORM's error logging prints the statement's text, not [object Object].
  return { name, text, toString: () => text } as unknown as string;
}

/**
 * SQL for the ledger and its projections. Every function takes the transaction's EntityManager and does one
 * round trip, whatever the number of rows (arrays through unnest): metering writes a whole Kafka batch with
 * a handful of statements.
 */
/**
 * One data-modifying statement of a composed write: SQL with its own placeholders ($1..$n) and their values.
 * `writeAll` runs several as one statement (each a CTE), so a batch's writes cost one round trip, not one each.
 * Parts must not touch the same row twice (PostgreSQL forbids it within one statement) and can't see each
 * other's effects (one snapshot); `rows` parts are skipped.
 */
export interface WritePart {
  sql: string;
  params: unknown[];
  /** The CTE's name, for a later part that reads what this one RETURNs. */
  name?: string;
}

/**
 * With `expect`, the statement is an optimistic write: part `expect.part` must RETURN exactly `expect.rows` rows,
 * else the whole statement rolls back with SQLSTATE 40001 (`tollgate_expect_rows`; see optimisticConflict).
 */
export async function writeAll(m: EntityManager, parts: Array<WritePart | null>, expect?: { part: string; rows: number }): Promise<void> {
  const live = parts.filter((p): p is WritePart => p !== null);
  if (live.length === 0) return;
  if (live.length === 1 && !expect) {
    await m.query(prepared(live[0]!.sql), live[0]!.params);
    return;
  }
  const params: unknown[] = [];
  const ctes = live.map((p, i) => {
    const base = params.length;
    params.push(...p.params);
    return `${p.name ?? `w${i}`} AS (${p.sql.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + base}`)})`;
  });
  if (!expect) {
    await m.query(prepared(`WITH ${ctes.join(',\n')} SELECT 1`), params);
    return;
  }
  params.push(expect.rows);
  await m.query(prepared(`WITH ${ctes.join(',\n')} SELECT tollgate_expect_rows((SELECT count(*) FROM ${expect.part}), $${params.length})`), params);
}

/**
 * Did an optimistic write lose to a concurrent one? Its guard refused it (40001), or a row it meant to add was
 * added meanwhile (23505: the ledger seq it read as next, or a reservation id a retried call took first). Either
 * way nothing of it was written, and deciding again under locks is the answer.
 */
export function optimisticConflict(e: unknown): boolean {
  const code = sqlState(e);
  return code === '40001' || code === '23505';
}

export interface LockedAccount {
  account: Account;
  profile: string;
}

/** An accounts row as `pg` returns it (bigint columns as strings). */
export interface AccountRow {
  org_id: string;
  plan: Account['plan'];
  balance: string;
  debt: string;
  next_seq: string;
  allowance_month: string | null;
  allowance_spent: string;
  granted_one_time: string[];
  buckets: Account['buckets'];
}

/** The columns of an accounts row, for readers of the projection (replay, audit). */
export const accountRowColumns = `org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets`;

/** A ledger_entries row selected with `entryRowColumns`. */
export interface EntryRow {
  org_id: string;
  seq: string;
  type: LedgerEntryType;
  amount: string;
  balance_after: string;
  cause: string;
  occurred_ms: string;
  bucket_id: string | null;
  detail: Record<string, unknown>;
}

/** The columns `toEntry` reads; occurred_at as epoch milliseconds, as the domain counts time. */
export const entryRowColumns = `org_id, seq, type, amount, balance_after, cause,
  (extract(epoch FROM occurred_at) * 1000)::int8 AS occurred_ms, bucket_id, detail`;

/** A stored entry as the fold takes it. */
export function toEntry(r: EntryRow): LedgerEntryDraft {
  return {
    orgId: r.org_id,
    seq: Number(r.seq),
    type: r.type,
    amount: Number(r.amount),
    balanceAfter: Number(r.balance_after),
    cause: r.cause,
    occurredAt: Number(r.occurred_ms),
    bucketId: r.bucket_id,
    detail: r.detail,
  };
}

export function toAccount(r: AccountRow): Account {
  return {
    orgId: r.org_id,
    plan: r.plan,
    balance: Number(r.balance),
    debt: Number(r.debt),
    nextSeq: Number(r.next_seq),
    allowanceMonth: r.allowance_month,
    allowanceSpent: Number(r.allowance_spent),
    grantedOneTime: r.granted_one_time,
    buckets: r.buckets,
  };
}

const accountColumns = `a.org_id, a.plan, a.balance, a.debt, a.next_seq, a.allowance_month, a.allowance_spent,
  a.granted_one_time, a.buckets, o.profile`;

/** Locks the accounts (in org order, so two writers never deadlock) and returns them. */
export async function lockAccounts(m: EntityManager, orgIds: string[]): Promise<Map<string, LockedAccount>> {
  const rows: Array<AccountRow & { profile: string }> = await m.query(
    prepared(`SELECT ${accountColumns} FROM accounts a JOIN orgs o ON o.id = a.org_id
      WHERE a.org_id = ANY($1::text[]) ORDER BY a.org_id FOR UPDATE OF a`),
    [orgIds],
  );
  return new Map(rows.map((r) => [r.org_id, { account: toAccount(r), profile: r.profile }]));
}

/**
 * `lockAccounts`, and in the same round trip the reservations among `reservationIds` each org already has (a
 * retried Reserve gets the hold it has, not a second one), by `org_id/id`. With `lock: false` nothing is locked
 * and each account comes with its row version (`xmin`), for an optimistic write (`accountsPart` with versions).
 */
export async function lockAccountsWithHolds(
  m: EntityManager,
  orgIds: string[],
  reservationIds: string[],
  lock = true,
): Promise<{ accounts: Map<string, LockedAccount>; existing: Map<string, { orgId: string; credits: number }>; versions: Map<string, string> }> {
  const rows: Array<AccountRow & { profile: string; version: string; held: Array<{ id: string; credits: number }> }> = await m.query(
    prepared(`SELECT ${accountColumns}, a.xmin::text AS version,
            (SELECT COALESCE(json_agg(json_build_object('id', r.id, 'credits', r.credits)), '[]'::json)
               FROM reservations r WHERE r.org_id = a.org_id AND r.id = ANY($2::text[])) AS held
       FROM accounts a JOIN orgs o ON o.id = a.org_id
      WHERE a.org_id = ANY($1::text[]) ORDER BY a.org_id${lock ? ' FOR UPDATE OF a' : ''}`),
    [orgIds, reservationIds],
  );
  const existing = new Map<string, { orgId: string; credits: number }>();
  for (const r of rows) for (const h of r.held) existing.set(reservationKey(r.org_id, h.id), { orgId: r.org_id, credits: Number(h.credits) });
  return {
    accounts: new Map(rows.map((r) => [r.org_id, { account: toAccount(r), profile: r.profile }])),
    existing,
    versions: new Map(rows.map((r) => [r.org_id, r.version])),
  };
}

/**
 * SQL for the credits an org's leases hold that no call has spent yet (`org` is the SQL naming the org id). They
 * stay the org's (SPEC §4): /me, the console and the CLI add them to the ledger's balance, which took them when
 * the leases were granted. A gateway may still draw them; what it does not comes back within a lease's life.
 */
export function leasedUnspentSql(org: string): string {
  return `(SELECT COALESCE(SUM(l.credits - l.spent - l.returned), 0) FROM reservations l WHERE l.org_id = ${org} AND l.status = 'held' AND l.kind = 'lease')`;
}

export async function readAccount(m: EntityManager, orgId: string): Promise<LockedAccount | null> {
  const rows: Array<AccountRow & { profile: string }> = await m.query(
    `SELECT ${accountColumns} FROM accounts a JOIN orgs o ON o.id = a.org_id WHERE a.org_id = $1`,
    [orgId],
  );
  return rows[0] ? { account: toAccount(rows[0]), profile: rows[0].profile } : null;
}

export async function insertAccount(m: EntityManager, a: Account): Promise<void> {
  await m.query(
    `INSERT INTO accounts (org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [a.orgId, JSON.stringify(a.plan), a.balance, a.debt, a.nextSeq, a.allowanceMonth, a.allowanceSpent, a.grantedOneTime, JSON.stringify(a.buckets)],
  );
}

export async function saveAccounts(m: EntityManager, accounts: Account[]): Promise<void> {
  await writeAll(m, [accountsPart(accounts)]);
}

/**
 * The accounts' new state. With `versions` (each org's `xmin` as read, see lockAccountsWithHolds) a row is written
 * only if it is still that version; the part is named `accounts_written` and RETURNs the rows written, for
 * `writeAll`'s `expect`.
 */
export function accountsPart(accounts: Account[], versions?: ReadonlyMap<string, string>): WritePart | null {
  if (accounts.length === 0) return null;
  const guarded = versions !== undefined;
  return {
    ...(guarded ? { name: 'accounts_written' } : {}),
    sql: `UPDATE accounts a SET plan = u.plan, balance = u.balance, debt = u.debt, next_seq = u.next_seq,
            allowance_month = u.allowance_month, allowance_spent = u.allowance_spent,
            granted_one_time = ARRAY(SELECT jsonb_array_elements_text(u.granted_one_time)),
            buckets = u.buckets, updated_at = now()
       FROM (SELECT * FROM unnest($1::text[], $2::jsonb[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::jsonb[], $9::jsonb[]${guarded ? ', $10::text[]' : ''})
             AS t(org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets${guarded ? ', version' : ''})) u
      WHERE a.org_id = u.org_id${guarded ? ` AND a.xmin = u.version::xid
      RETURNING a.org_id` : ''}`,
    params: guarded ? [...accountParams(accounts), accounts.map((a) => versions.get(a.orgId) ?? '0')] : accountParams(accounts),
  };
}

/**
 * Accounts as the nine arrays of `unnest($1::text[], $2::jsonb[], $3::bigint[], $4::bigint[], $5::bigint[],
 * $6::text[], $7::bigint[], $8::jsonb[], $9::jsonb[]) AS u(org_id, plan, balance, debt, next_seq, allowance_month,
 * allowance_spent, granted_one_time, buckets)`.
 */
export function accountParams(accounts: readonly Account[]): unknown[] {
  return [
    accounts.map((a) => a.orgId),
    accounts.map((a) => JSON.stringify(a.plan)),
    accounts.map((a) => a.balance),
    accounts.map((a) => a.debt),
    accounts.map((a) => a.nextSeq),
    accounts.map((a) => a.allowanceMonth),
    accounts.map((a) => a.allowanceSpent),
    accounts.map((a) => JSON.stringify(a.grantedOneTime)),
    accounts.map((a) => JSON.stringify(a.buckets)),
  ];
}

/** Appends entries and queues each for publication on tollgate.ledger.v1 (transactional outbox). */
export async function appendEntries(m: EntityManager, entries: LedgerEntryDraft[]): Promise<void> {
  await writeAll(m, entriesParts(entries));
}

/** The entries and, reading what was inserted, their outbox rows: two parts that go together, in this order. */
export function entriesParts(entries: LedgerEntryDraft[]): Array<WritePart | null> {
  if (entries.length === 0) return [];
  return [
    {
      name: 'appended',
      sql: `INSERT INTO ledger_entries (org_id, seq, type, amount, balance_after, cause, occurred_at, bucket_id, detail)
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::timestamptz[], $8::text[], $9::jsonb[])
            RETURNING org_id, seq, type, amount, balance_after, cause, occurred_at, recorded_at, bucket_id, detail`,
      params: [
        entries.map((e) => e.orgId),
        entries.map((e) => e.seq),
        entries.map((e) => e.type),
        entries.map((e) => e.amount),
        entries.map((e) => e.balanceAfter),
        entries.map((e) => e.cause),
        entries.map((e) => new Date(e.occurredAt).toISOString()),
        entries.map((e) => e.bucketId),
        entries.map((e) => JSON.stringify(e.detail)),
      ],
    },
    {
      sql: `INSERT INTO ledger_outbox (org_id, seq, payload)
            SELECT org_id, seq, jsonb_build_object('org_id', org_id, 'seq', seq, 'type', type, 'amount', amount,
                     'balance_after', balance_after, 'cause', cause, 'occurred_at', occurred_at, 'recorded_at', recorded_at,
                     'bucket_id', bucket_id, 'detail', detail)
              FROM appended`,
      params: [],
    },
  ];
}

export interface UsageRow {
  eventId: string;
  orgId: string;
  occurredAt: string;
  method: string;
  route: string;
  path: string;
  statusCode: number;
  credits: number;
  costReason: string;
  responseTimeMs: number;
  requestId: string | null;
  decision: string;
  apiKeyId: string | null;
  entities: number;
  /** The entities the call paid for (per-entity pricing); re-access windows are rebuilt from these. */
  chargedEntities: readonly string[];
  /** The lease the call was paid from (its price is in the lease's `spent`, not in a charge entry), if any. */
  leaseId?: string | null;
}

export async function insertUsage(m: EntityManager, rows: UsageRow[]): Promise<void> {
  await writeAll(m, [usagePart(rows)]);
}

export function usagePart(rows: UsageRow[]): WritePart | null {
  if (rows.length === 0) return null;
  return {
    // A jagged text[][] can't go through unnest, so each row's charged entities travel as a jsonb array.
    sql: `INSERT INTO usage_records (event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason,
                                response_time_ms, request_id, decision, api_key_id, entities, charged_entities, lease_id)
     SELECT u.event_id, u.org_id, u.occurred_at, u.method, u.route, u.path, u.status_code, u.credits, u.cost_reason,
            u.response_time_ms, u.request_id, u.decision, u.api_key_id, u.entities,
            CASE WHEN u.charged = '[]'::jsonb THEN '{}'::text[] ELSE ARRAY(SELECT jsonb_array_elements_text(u.charged)) END, u.lease_id
       FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::int[], $8::bigint[],
                   $9::text[], $10::float8[], $11::text[], $12::text[], $13::text[], $14::int[], $15::jsonb[], $16::text[])
         AS u(event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason, response_time_ms,
              request_id, decision, api_key_id, entities, charged, lease_id)`,
    params: [
      rows.map((r) => r.eventId),
      rows.map((r) => r.orgId),
      rows.map((r) => r.occurredAt),
      rows.map((r) => r.method),
      rows.map((r) => r.route),
      rows.map((r) => r.path),
      rows.map((r) => r.statusCode),
      rows.map((r) => r.credits),
      rows.map((r) => r.costReason),
      rows.map((r) => r.responseTimeMs),
      rows.map((r) => r.requestId),
      rows.map((r) => r.decision),
      rows.map((r) => r.apiKeyId),
      rows.map((r) => r.entities),
      rows.map((r) => JSON.stringify(r.chargedEntities)),
      rows.map((r) => r.leaseId ?? null),
    ],
  };
}

/** Bumps the exact per-org usage counts by the rows just inserted. */
export async function countUsage(m: EntityManager, rows: UsageRow[]): Promise<void> {
  await writeAll(m, [usageCountPart(rows)]);
}

export function usageCountPart(rows: UsageRow[]): WritePart | null {
  if (rows.length === 0) return null;
  const perOrg = new Map<string, number>();
  for (const r of rows) perOrg.set(r.orgId, (perOrg.get(r.orgId) ?? 0) + 1);
  return {
    sql: `INSERT INTO usage_totals (org_id, total) SELECT * FROM unnest($1::text[], $2::bigint[])
     ON CONFLICT (org_id) DO UPDATE SET total = usage_totals.total + EXCLUDED.total`,
    params: [[...perOrg.keys()], [...perOrg.values()]],
  };
}

/**
 * The events of the batch that were metered before (redelivery, replay, a restart after the DB commit), as
 * `org_id/event_id`: an event is identified within its org, so the same id from another org is another event.
 * One probe of the (org_id, event_id) unique index per event.
 */
export async function alreadyMetered(m: EntityManager, events: ReadonlyArray<{ orgId: string; eventId: string }>): Promise<Set<string>> {
  if (events.length === 0) return new Set();
  const rows: Array<{ org_id: string; event_id: string }> = await m.query(
    prepared(`SELECT u.org_id, u.event_id FROM unnest($1::text[], $2::text[]) AS p(org_id, event_id)
       JOIN usage_records u ON u.org_id = p.org_id AND u.event_id = p.event_id`),
    [events.map((e) => e.orgId), events.map((e) => e.eventId)],
  );
  return new Set(rows.map((r) => eventKey(r.org_id, r.event_id)));
}

/** An event's identity: its id within its org. */
export function eventKey(orgId: string, eventId: string): string {
  return `${orgId}/${eventId}`;
}

/** Re-access windows for the (org, entity) pairs of a batch, per org. */
export async function loadWindows(m: EntityManager, orgIds: string[], entityIds: string[]): Promise<Map<string, Map<string, number>>> {
  const out = new Map<string, Map<string, number>>();
  if (orgIds.length === 0) return out;
  const rows: Array<{ org_id: string; entity_id: string; last_charged_at: Date }> = await m.query(
    `SELECT w.org_id, w.entity_id, w.last_charged_at
       FROM reaccess_windows w JOIN unnest($1::text[], $2::text[]) AS p(org_id, entity_id)
         ON w.org_id = p.org_id AND w.entity_id = p.entity_id`,
    [orgIds, entityIds],
  );
  for (const r of rows) {
    const m2 = out.get(r.org_id) ?? new Map<string, number>();
    m2.set(r.entity_id, r.last_charged_at.getTime());
    out.set(r.org_id, m2);
  }
  return out;
}

export async function saveWindows(m: EntityManager, rows: Array<{ orgId: string; entityId: string; at: number }>): Promise<void> {
  await writeAll(m, [windowsPart(rows)]);
}

export function windowsPart(charged: Array<{ orgId: string; entityId: string; at: number }>): WritePart | null {
  if (charged.length === 0) return null;
  // One row per (org, entity), its latest charge: an upsert can't touch a row twice in one statement, and one
  // transaction may charge an entity twice (its window ran out between two events, or its org's events came on
  // two partitions of one group commit).
  const latest = new Map<string, { orgId: string; entityId: string; at: number }>();
  for (const c of charged) {
    const key = `${c.orgId}\u0000${c.entityId}`;
    if ((latest.get(key)?.at ?? -Infinity) < c.at) latest.set(key, c);
  }
  const rows = [...latest.values()];
  return {
    sql: `INSERT INTO reaccess_windows (org_id, entity_id, last_charged_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
     ON CONFLICT (org_id, entity_id) DO UPDATE SET last_charged_at = GREATEST(reaccess_windows.last_charged_at, EXCLUDED.last_charged_at)`,
    params: [rows.map((r) => r.orgId), rows.map((r) => r.entityId), rows.map((r) => new Date(r.at).toISOString())],
  };
}

/** A held per-entity reservation: a 2xx call paying for `entities` (only those it charges), its event on the way. */
export interface PendingEntityHold {
  id: string;
  orgId: string;
  entities: string[];
  occurredAt: number;
}

/**
 * Held reservations of `orgIds` that hold any of `entityIds`. Callers hold the orgs' account locks, and every
 * hold is written under its org's lock, so the answer cannot change before their transaction ends.
 */
export async function pendingEntityHolds(m: EntityManager, orgIds: string[], entityIds: string[]): Promise<PendingEntityHold[]> {
  if (orgIds.length === 0 || entityIds.length === 0) return [];
  const rows: Array<{ id: string; org_id: string; entities: string[]; occurred_at: Date }> = await m.query(
    `SELECT id, org_id, entities, occurred_at FROM reservations
      WHERE status = 'held' AND org_id = ANY($1::text[]) AND entities && $2::text[]`,
    [[...new Set(orgIds)], [...new Set(entityIds)]],
  );
  return rows.map((r) => ({ id: r.id, orgId: r.org_id, entities: r.entities, occurredAt: r.occurred_at.getTime() }));
}

/**
 * `windows` plus the entities `holds` are paying for, as if charged when their calls happened: for pricing
 * only (the holder's own settlement charges them and records the window). A copy; `windows` is untouched.
 */
export function withPendingCharges(windows: Map<string, number>, holds: readonly PendingEntityHold[]): Map<string, number> {
  if (holds.length === 0) return windows;
  const out = new Map(windows);
  for (const h of holds) applyCharges(out, h.entities, h.occurredAt);
  return out;
}

/** A reservation's identity: its id within its org (ids are unique per org only). */
export interface ReservationRef {
  orgId: string;
  id: string;
}

/** A reservation's identity as one string, `org_id/id`. */
export function reservationKey(orgId: string, id: string): string {
  return `${orgId}/${id}`;
}

/** Held reservations (holds and leases) among `refs`, locked until the transaction ends, by `org_id/id`. */
export async function lockHeldReservations(m: EntityManager, refs: readonly ReservationRef[]): Promise<Map<string, HeldReservation & { orgId: string }>> {
  if (refs.length === 0) return new Map();
  const rows: Array<{ id: string; org_id: string; credits: string; allocation: Allocation[]; kind: 'hold' | 'lease'; spent: string; returned: string; occurred_ms: string }> =
    await m.query(
      prepared(`SELECT r.id, r.org_id, r.credits, r.allocation, r.kind, r.spent, r.returned, (extract(epoch FROM r.occurred_at) * 1000)::int8 AS occurred_ms
       FROM unnest($1::text[], $2::text[]) AS p(org_id, id)
       JOIN reservations r ON r.org_id = p.org_id AND r.id = p.id
      WHERE r.status = 'held' FOR UPDATE OF r`),
      [refs.map((r) => r.orgId), refs.map((r) => r.id)],
    );
  return new Map(
    rows.map((r) => [
      reservationKey(r.org_id, r.id),
      {
        id: r.id,
        orgId: r.org_id,
        credits: Number(r.credits),
        allocation: r.allocation,
        lease: r.kind === 'lease' ? { spent: Number(r.spent), returned: Number(r.returned), takenAt: Number(r.occurred_ms) } : null,
      },
    ]),
  );
}

/** What the events of a batch spent from each lease they drew on: its new `spent`, one row per lease. */
export function leaseSpentPart(leases: ReadonlyArray<{ orgId: string; id: string; spent: number }>): WritePart | null {
  if (leases.length === 0) return null;
  return {
    sql: `UPDATE reservations r SET spent = u.spent
       FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(org_id, id, spent)
      WHERE r.org_id = u.org_id AND r.id = u.id AND r.status = 'held' AND r.kind = 'lease'`,
    params: [leases.map((l) => l.orgId), leases.map((l) => l.id), leases.map((l) => l.spent)],
  };
}

/**
 * Reservations among `refs` that the gateway gave back (closed_by 'gateway'), as `org_id/id`: their calls were not
 * answered with data, so an event naming one is charged nothing.
 */
export async function givenBackReservations(m: EntityManager, refs: readonly ReservationRef[]): Promise<Set<string>> {
  if (refs.length === 0) return new Set();
  const rows: Array<{ id: string; org_id: string }> = await m.query(
    `SELECT r.id, r.org_id FROM unnest($1::text[], $2::text[]) AS p(org_id, id)
       JOIN reservations r ON r.org_id = p.org_id AND r.id = p.id
      WHERE r.status = 'released' AND r.closed_by = 'gateway'`,
    [refs.map((r) => r.orgId), refs.map((r) => r.id)],
  );
  return new Set(rows.map((r) => reservationKey(r.org_id, r.id)));
}

export async function closeReservations(m: EntityManager, refs: readonly ReservationRef[], status: 'settled' | 'released' | 'expired', by: string[]): Promise<void> {
  await writeAll(m, [closeReservationsPart(refs, status, by)]);
}

export function closeReservationsPart(refs: readonly ReservationRef[], status: 'settled' | 'released' | 'expired', by: string[]): WritePart | null {
  if (refs.length === 0) return null;
  return {
    sql: `UPDATE reservations r SET status = $4, closed_at = now(), closed_by = u.by
       FROM unnest($1::text[], $2::text[], $3::text[]) AS u(org_id, id, by)
      WHERE r.org_id = u.org_id AND r.id = u.id AND r.status = 'held'`,
    params: [refs.map((r) => r.orgId), refs.map((r) => r.id), by, status],
  };
}

/**
 * The fence against a consumer that lost its partition in a rebalance but still holds a batch of it: locks each
 * partition's stored-offset row until the transaction ends and returns the offsets. The owner of a partition and
 * a stale consumer of it queue on this row, and each sees what the other committed: messages below the offset
 * were metered by whoever stored it. A partition without a row gets one at 0 (nothing metered), so there is
 * always a row to queue on; it commits only with the batch that stores a real offset. Several partitions are
 * locked in partition order, so two consumers of one group (mid-rebalance) never wait for each other in a cycle.
 */
export async function lockOffsets(m: EntityManager, groupId: string, topic: string, partitions: readonly number[]): Promise<Map<number, bigint>> {
  const lock = prepared(
    `SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[]) ORDER BY partition FOR UPDATE`,
  );
  let rows: Array<{ partition: number; next_offset: string }> = await m.query(lock, [groupId, topic, partitions]);
  if (rows.length < partitions.length) {
    await m.query(
      `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p ORDER BY p ON CONFLICT DO NOTHING`,
      [groupId, topic, partitions],
    );
    rows = await m.query(lock, [groupId, topic, partitions]);
  }
  return new Map(rows.map((r) => [r.partition, BigInt(r.next_offset)]));
}

/** Stores the next offset to consume of each partition; never moves one backwards. */
export function offsetsPart(groupId: string, topic: string, next: ReadonlyArray<{ partition: number; nextOffset: string }>): WritePart | null {
  if (next.length === 0) return null;
  return {
    sql: `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
          SELECT $1, $2, u.partition, u.next_offset FROM unnest($3::int[], $4::bigint[]) AS u(partition, next_offset)
     ON CONFLICT (group_id, topic, partition)
     DO UPDATE SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()`,
    params: [groupId, topic, next.map((n) => n.partition), next.map((n) => n.nextOffset)],
  };
}

/**
 * Sets a partition's stored offset to `to` if it still is `from`: the one write that may move an offset back, for an
 * offset the log no longer holds (see BatchConsumerOptions.moveStoredOffset). Comparing with `from` under the row's
 * lock keeps it from undoing what another consumer stored since `from` was read.
 */
export async function moveStoredOffset(m: EntityManager, groupId: string, topic: string, partition: number, from: string, to: string): Promise<boolean> {
  const rows: unknown[] = await m.query(
    `WITH moved AS (UPDATE consumer_offsets SET next_offset = $5, updated_at = now()
                     WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $4 RETURNING partition)
     SELECT partition FROM moved`,
    [groupId, topic, partition, from, to],
  );
  return rows.length === 1;
}

export async function storedOffsets(m: EntityManager, groupId: string, topic: string, partitions: number[]): Promise<Map<number, string>> {
  const rows: Array<{ partition: number; next_offset: string }> = await m.query(
    `SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])`,
    [groupId, topic, partitions],
  );
  return new Map(rows.map((r) => [r.partition, String(r.next_offset)]));
}
