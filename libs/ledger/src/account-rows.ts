import { Account, LedgerEntryDraft, LedgerEntryType, reservationKey } from '@tollgate/billing';
import { EntityManager } from 'typeorm';
import { prepared, WritePart, writeAll } from './sql';

/** Accounts and ledger entries: their rows, the account locks, and the writes of both. */

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

/**
 * How `loadAccounts` reads the accounts:
 * - `lock`: row locks (FOR UPDATE), taken in org order so two writers never wait for each other in a cycle; for a
 *   decision written in the same transaction;
 * - `optimistic`: no lock; each account comes with its row version (`xmin`, in `versions`) for a write guarded by
 *   it (`accountsPart` with versions), which fails if another writer got there first;
 * - `read`: no lock, for a reader.
 */
export type AccountLoad = 'lock' | 'optimistic' | 'read';

export interface LoadedAccounts {
  accounts: Map<string, LockedAccount>;
  /** The reservations among `holdsAmong` that exist, by `org_id/id` (reservationKey). */
  existing: Map<string, { orgId: string; credits: number }>;
  /** Each account's row version (`optimistic` only). */
  versions: Map<string, string>;
}

/**
 * The one way to load accounts (with their org's profile), in one round trip. With `holdsAmong`, the same round
 * trip also says which of those reservation ids each org already has (a retried Reserve gets the hold it has, not
 * a second one).
 */
export async function loadAccounts(m: EntityManager, orgIds: readonly string[], mode: AccountLoad, holdsAmong?: readonly string[]): Promise<LoadedAccounts> {
  const held = holdsAmong
    ? `, (SELECT COALESCE(json_agg(json_build_object('id', r.id, 'credits', r.credits)), '[]'::json)
           FROM reservations r WHERE r.org_id = a.org_id AND r.id = ANY($2::text[])) AS held`
    : '';
  const rows: Array<AccountRow & { profile: string; version?: string; held?: Array<{ id: string; credits: number }> }> = await m.query(
    prepared(`SELECT ${accountColumns}${mode === 'optimistic' ? ', a.xmin::text AS version' : ''}${held}
       FROM accounts a JOIN orgs o ON o.id = a.org_id
      WHERE a.org_id = ANY($1::text[]) ORDER BY a.org_id${mode === 'lock' ? ' FOR UPDATE OF a' : ''}`),
    holdsAmong ? [orgIds, holdsAmong] : [orgIds],
  );
  const existing = new Map<string, { orgId: string; credits: number }>();
  for (const r of rows) for (const h of r.held ?? []) existing.set(reservationKey(r.org_id, h.id), { orgId: r.org_id, credits: Number(h.credits) });
  return {
    accounts: new Map(rows.map((r) => [r.org_id, { account: toAccount(r), profile: r.profile }])),
    existing,
    versions: new Map(rows.flatMap((r) => (r.version === undefined ? [] : [[r.org_id, r.version] as const]))),
  };
}

/** `loadAccounts` for one org: its account, or null when it has none. */
export async function loadAccount(m: EntityManager, orgId: string, mode: AccountLoad): Promise<LockedAccount | null> {
  return (await loadAccounts(m, [orgId], mode)).accounts.get(orgId) ?? null;
}

/**
 * SQL for the credits an org's leases hold that no call has spent yet (`org` is the SQL naming the org id). They
 * stay the org's (SPEC §4): /me, the console and the CLI add them to the ledger's balance, which took them when
 * the leases were granted. A gateway may still draw them; what it does not comes back within a lease's life.
 */
export function leasedUnspentSql(org: string): string {
  return `(SELECT COALESCE(SUM(l.credits - l.spent - l.returned), 0) FROM reservations l WHERE l.org_id = ${org} AND l.status = 'held' AND l.kind = 'lease')`;
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
 * The accounts' new state. With `versions` (each org's `xmin` as read, see loadAccounts, `optimistic`) a row is written
 * only if it is still that version; the part is named `accounts_written` and RETURNs the rows written, for
 * `writeAll`'s `expect`.
 *
 * The guarded write takes its rows' locks in org order, as every locking reader does (loadAccounts 'lock'): the
 * sub-select locks them sorted, each before the row is written. Without it the UPDATE locked them in whatever order
 * its plan met them, and an optimistic batch of holds could deadlock with a consumer batch or an admin grant that
 * locked the same orgs in order (PostgreSQL's log in the scale test: "deadlock detected" between the two, three times
 * in a run; the grant answered 500).
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
        AND a.org_id IN (SELECT l.org_id FROM accounts l WHERE l.org_id = ANY($1::text[]) ORDER BY l.org_id FOR UPDATE)
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

/**
 * The entries and their outbox rows: two parts that go together. An outbox row only names its entry (org_id, seq);
 * the relay reads the entry itself when it publishes (see LedgerOutboxRelay), so the write path stores each entry
 * once instead of once more as a JSON copy.
 */
export function entriesParts(entries: LedgerEntryDraft[]): Array<WritePart | null> {
  if (entries.length === 0) return [];
  const orgIds = entries.map((e) => e.orgId);
  const seqs = entries.map((e) => e.seq);
  return [
    {
      sql: `INSERT INTO ledger_entries (org_id, seq, type, amount, balance_after, cause, occurred_at, bucket_id, detail)
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::timestamptz[], $8::text[], $9::jsonb[])`,
      params: [
        orgIds,
        seqs,
        entries.map((e) => e.type),
        entries.map((e) => e.amount),
        entries.map((e) => e.balanceAfter),
        entries.map((e) => e.cause),
        entries.map((e) => new Date(e.occurredAt).toISOString()),
        entries.map((e) => e.bucketId),
        entries.map((e) => JSON.stringify(e.detail)),
      ],
    },
    { sql: `INSERT INTO ledger_outbox (org_id, seq) SELECT * FROM unnest($1::text[], $2::bigint[])`, params: [orgIds, seqs] },
  ];
}
