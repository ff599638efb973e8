import { DataSource, QueryRunner } from 'typeorm';
import { Messaging } from '@tollgate/messaging';
import { checkAppendOnly } from './append-only';
import { checkChain } from './chain';
import { checkHoldsAndCharges } from './charges';
import { checkHoldsWithoutEntries, checkStaleHolds } from './holds';
import { checkLeases } from './leases';
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
  /** `offsets`: also read the consumed partitions back from Kafka (needs the broker). */
  readTopic?: boolean;
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
  broker: Pick<Messaging, 'topics' | 'endOffsets' | 'readTopic'> | null;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Audits the database against the ledger's invariants (SPEC §6 and the ones metering keeps besides).
 *
 * Everything but the append-only probe reads one snapshot: REPEATABLE READ, READ ONLY transactions on two
 * connections sharing it (pg_export_snapshot), so metering writing meanwhile can't make the ledger and its
 * projections look inconsistent. Orgs are audited in batches (bounded by entries, so memory stays flat at
 * millions of entries), each check one set-based statement per batch; the fold of a batch runs on the second
 * connection while the first runs the other checks. The probe runs last on a connection of its own, in a
 * transaction that is always rolled back.
 */
export async function runAudit(ds: DataSource, opts: AuditOptions, deps: AuditDeps): Promise<AuditResult> {
  const reader = ds.createQueryRunner();
  const folder = ds.createQueryRunner();
  const on = (c: CheckName) => opts.checks.has(c);
  const violations: Violation[] = [];
  const notes: string[] = [];
  try {
    const sql = await sqlOf(reader);
    await sql('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // Short set-based statements over many rows: JIT compilation costs more than it saves, and sorts and hashes of
    // a batch fit in memory instead of spilling. Both only for this transaction.
    await sql(`SET LOCAL jit = off`);
    await sql(`SET LOCAL work_mem = '64MB'`);
    // The audit already reads on two connections; parallel workers per statement would only compete with them.
    await sql(`SET LOCAL max_parallel_workers_per_gather = 0`);
    // The fold reads the batch's entries on a second connection, in the same snapshot (as pg_dump's workers do),
    // while this one runs the set-based checks.
    const [{ snapshot }] = (await sql<{ snapshot: string }>(`SELECT pg_export_snapshot() AS snapshot`)) as [{ snapshot: string }];
    const foldSql = await sqlOf(folder);
    await foldSql('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await foldSql(`SET TRANSACTION SNAPSHOT '${snapshot.replace(/'/g, "''")}'`);
    await foldSql(`SET LOCAL jit = off`);

    const [{ at }] = (await sql<{ at: Date }>(`SELECT now() AS at`)) as [{ at: Date }];
    const orgs = await listOrgs(sql, opts.orgs);
    const unknownOrgs = orgs.filter((o) => !o.known).map((o) => o.org_id);
    if (unknownOrgs.length > 0) return { violations, notes, unknownOrgs, orgs: 0, entries: 0, at };
    const total = orgs.reduce((n, o) => n + Number(o.entries), 0);

    if (on('stale-holds')) violations.push(...(await checkStaleHolds(sql, opts.orgs, opts.holdGraceSeconds)));
    if (on('hold-entries')) violations.push(...(await checkHoldsWithoutEntries(sql, opts.orgs)));
    if (on('offsets')) {
      const r = await checkOffsets(sql, deps.broker, opts.group, opts.readTopic ?? false);
      violations.push(...r.violations);
      notes.push(...r.notes);
    }

    let done = 0;
    if (total > 0) deps.onProgress?.(0, total);
    for (const batch of batches(orgs, opts.batchEntries ?? 100_000, opts.batchOrgs ?? 1000)) {
      const b: OrgBatch = { orgs: batch.map((o) => o.org_id), accounts: await accountsOf(sql, batch.map((o) => o.org_id)) };
      // One statement at a time per connection: the set-based checks here, the fold on the other connection.
      let chainDone: (orgs: ReadonlySet<string>) => void = () => undefined;
      const brokenChains = new Promise<ReadonlySet<string>>((resolve) => (chainDone = resolve));
      const setBased = async (): Promise<Violation[]> => {
        const out: Violation[] = [];
        try {
          if (on('sequence') || on('balance')) out.push(...(await checkChain(sql, b)).filter((v) => on(v.check)));
        } finally {
          chainDone(new Set(out.map((v) => v.org ?? '')));
        }
        out.push(...(await checkHoldsAndCharges(sql, b, { holds: on('hold-entries'), charges: on('charges') })));
        if (on('leases')) out.push(...(await checkLeases(sql, b)));
        if (on('usage')) {
          const r = await checkUsage(sql, b);
          out.push(...r.violations);
          notes.push(...r.notes);
        }
        return out;
      };
      const [checked, projected] = await Promise.all([
        setBased(),
        on('projection') ? checkProjection(foldSql, b, brokenChains) : { violations: [], notes: [] },
      ]);
      violations.push(...checked, ...projected.violations);
      notes.push(...projected.notes);
      done += batch.reduce((n, o) => n + Number(o.entries), 0);
      deps.onProgress?.(done, total);
    }
    await sql('ROLLBACK');
    await foldSql('ROLLBACK');
    await folder.release();

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
    for (const runner of [reader, folder]) {
      if (runner.isReleased) continue;
      await runner.query('ROLLBACK').catch(() => undefined);
      await runner.release();
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
