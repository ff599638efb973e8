import { DataSource, QueryRunner } from 'typeorm';
import { Messaging } from '@tollgate/messaging';
import { checkAppendOnly } from './append-only';
import { checkChain } from './chain';
import { checkCharges } from './charges';
import { checkHoldEntries, checkStaleHolds } from './holds';
import { checkOffsets } from './offsets';
import { checkProjection } from './projection';
import { AccountRow, OrgBatch, Sql } from './sql';
import { checkUsage } from './usage';
import { CheckName, Violation } from './violation';

export interface AuditOptions {
  /** The orgs to audit, or every org (those with an orgs row, an accounts row or ledger entries). */
  orgs: string[] | 'all';
  checks: ReadonlySet<CheckName>;
  /** `offsets`: only this consumer group's stored offsets (and the dead letters of its topics); null = every group. */
  group: string | null;
  /** `stale-holds`: how long past its expires_at a hold may still be held. */
  holdGraceSeconds: number;
  /** A batch is at most this many ledger entries (by accounts.next_seq) ... */
  batchEntries?: number;
  /** ... and this many orgs. */
  batchOrgs?: number;
}

export interface AuditResult {
  violations: Violation[];
  /** What was not checked, or checked only partly, and why. */
  notes: string[];
  /** `--org` ids no table knows: nothing was audited. */
  unknownOrgs: string[];
  orgs: number;
  entries: number;
  /** The database's clock at the snapshot. */
  at: Date;
}

export interface AuditDeps {
  /** Null when KAFKA_BROKERS is not set. */
  broker: Pick<Messaging, 'topics' | 'endOffsets'> | null;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Audits the database against the ledger's invariants (SPEC §6 and the ones metering keeps besides).
 *
 * Everything but the append-only probe reads one snapshot: a REPEATABLE READ, READ ONLY transaction on one
 * connection, so metering writing meanwhile can't make the ledger and its projections look inconsistent. Orgs are
 * audited in batches (bounded by entries, so memory stays flat at millions of entries), each check one set-based
 * statement per batch. The probe runs last on a second connection, in a transaction that is always rolled back.
 */
export async function runAudit(ds: DataSource, opts: AuditOptions, deps: AuditDeps): Promise<AuditResult> {
  const reader = ds.createQueryRunner();
  const on = (c: CheckName) => opts.checks.has(c);
  const violations: Violation[] = [];
  const notes: string[] = [];
  try {
    const sql = await sqlOf(reader);
    await sql('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const [{ at }] = (await sql<{ at: Date }>(`SELECT now() AS at`)) as [{ at: Date }];
    const orgs = await listOrgs(sql, opts.orgs);
    const unknownOrgs = orgs.filter((o) => !o.known).map((o) => o.org_id);
    if (unknownOrgs.length > 0) return { violations, notes, unknownOrgs, orgs: 0, entries: 0, at };
    const total = orgs.reduce((n, o) => n + Number(o.entries), 0);

    if (on('stale-holds')) violations.push(...(await checkStaleHolds(sql, opts.orgs, opts.holdGraceSeconds)));
    if (on('offsets')) {
      const r = await checkOffsets(sql, deps.broker, opts.group);
      violations.push(...r.violations);
      notes.push(...r.notes);
    }

    let done = 0;
    for (const batch of batches(orgs, opts.batchEntries ?? 100_000, opts.batchOrgs ?? 1000)) {
      const b: OrgBatch = { orgs: batch.map((o) => o.org_id), accounts: await accountsOf(sql, batch.map((o) => o.org_id)) };
      const chain = on('sequence') || on('balance') || on('projection') ? await checkChain(sql, b) : [];
      const reported = chain.filter((v) => on(v.check));
      violations.push(...reported);
      if (on('projection')) {
        const r = await checkProjection(sql, b, new Set(reported.map((v) => v.org ?? '')));
        violations.push(...r.violations);
        notes.push(...r.notes);
      }
      if (on('hold-entries')) violations.push(...(await checkHoldEntries(sql, b)));
      if (on('charges')) violations.push(...(await checkCharges(sql, b)));
      if (on('usage')) violations.push(...(await checkUsage(sql, b)));
      done += batch.reduce((n, o) => n + Number(o.entries), 0);
      deps.onProgress?.(done, total);
    }
    await reader.query('ROLLBACK');

    if (on('append-only')) {
      const probe = ds.createQueryRunner();
      try {
        const probeSql = await sqlOf(probe);
        const r = await checkAppendOnly(probeSql, async (work) => {
          await probeSql('BEGIN');
          try {
            return await work();
          } finally {
            await probeSql('ROLLBACK');
          }
        });
        violations.push(...r.violations);
        notes.push(...r.notes);
      } finally {
        await probe.release();
      }
    }
    return { violations, notes, unknownOrgs, orgs: orgs.length, entries: total, at };
  } finally {
    if (!reader.isReleased) {
      await reader.query('ROLLBACK').catch(() => undefined);
      await reader.release();
    }
  }
}

/**
 * The runner's own `pg` connection: TypeORM's `query` would log every refused statement as an error, and the
 * probe's refusals are the expected outcome.
 */
async function sqlOf(runner: QueryRunner): Promise<Sql> {
  const client = (await runner.connect()) as { query(q: string, p?: unknown[]): Promise<{ rows: unknown[] }> };
  return async <T>(query: string, params?: unknown[]) => (await client.query(query, params)).rows as T[];
}

interface OrgToAudit {
  org_id: string;
  /** Entries the accounts row says the org has (next_seq - 1): for batching and progress only. */
  entries: string;
  known: boolean;
}

/**
 * Every org: those with an orgs row or an accounts row, and those with ledger entries, found by a loose index scan
 * of the ledger's primary key (one probe per org, not a scan of every entry).
 */
async function listOrgs(sql: Sql, orgs: string[] | 'all'): Promise<OrgToAudit[]> {
  if (orgs !== 'all') {
    return sql<OrgToAudit>(
      `SELECT o.org_id, COALESCE(a.next_seq - 1, 0)::text AS entries,
              (a.org_id IS NOT NULL OR EXISTS (SELECT 1 FROM orgs WHERE id = o.org_id)
                 OR EXISTS (SELECT 1 FROM ledger_entries e WHERE e.org_id = o.org_id)) AS known
         FROM (SELECT DISTINCT org_id FROM unnest($1::text[]) AS u(org_id)) o LEFT JOIN accounts a ON a.org_id = o.org_id
        ORDER BY 1`,
      [orgs],
    );
  }
  return sql<OrgToAudit>(
    `WITH RECURSIVE l(org_id) AS (
       (SELECT org_id FROM ledger_entries ORDER BY org_id LIMIT 1)
       UNION ALL
       SELECT (SELECT e.org_id FROM ledger_entries e WHERE e.org_id > l.org_id ORDER BY e.org_id LIMIT 1) FROM l WHERE l.org_id IS NOT NULL)
     SELECT x.org_id, COALESCE(a.next_seq - 1, 0)::text AS entries, TRUE AS known
       FROM (SELECT org_id FROM l WHERE org_id IS NOT NULL UNION SELECT id FROM orgs UNION SELECT org_id FROM accounts) x
       LEFT JOIN accounts a ON a.org_id = x.org_id
      ORDER BY 1`,
  );
}

function* batches(orgs: OrgToAudit[], maxEntries: number, maxOrgs: number): Generator<OrgToAudit[]> {
  let batch: OrgToAudit[] = [];
  let entries = 0;
  for (const o of orgs) {
    const n = Math.max(1, Number(o.entries));
    if (batch.length > 0 && (entries + n > maxEntries || batch.length >= maxOrgs)) {
      yield batch;
      batch = [];
      entries = 0;
    }
    batch.push(o);
    entries += n;
  }
  if (batch.length > 0) yield batch;
}

async function accountsOf(sql: Sql, orgs: string[]): Promise<Map<string, AccountRow>> {
  const rows = await sql<AccountRow>(
    `SELECT org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets
       FROM accounts WHERE org_id = ANY($1::text[])`,
    [orgs],
  );
  return new Map(rows.map((r) => [r.org_id, r]));
}
