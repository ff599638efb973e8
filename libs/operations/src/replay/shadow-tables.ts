import { PoolClient } from 'pg';
import { DataSource, EntityManager } from 'typeorm';
import { Account, evolve, foldAccount, PlanTerms } from '@tollgate/billing';
import { accountParams, AccountRow, accountRowColumns, accountsPart, EntryRow, entryRowColumns, loadAccount, toAccount, toEntry, writeAll } from '@tollgate/ledger';

// The ledger replay's shadow projections (ledger-replay.ts): their tables, their writes, and `--apply`'s repair.

/**
 * The shadow projections of one run, in a schema of their own (unlogged: they are rebuilt, never recovered), so
 * two replays never share them. Dropped at the end, whatever happens.
 */
export class ShadowTables {
  constructor(
    private readonly ds: DataSource,
    readonly schema: string,
  ) {}

  get accounts(): string {
    return `${this.schema}.accounts`;
  }
  get usageTotals(): string {
    return `${this.schema}.usage_totals`;
  }
  get windows(): string {
    return `${this.schema}.reaccess_windows`;
  }
  get unverified(): string {
    return `${this.schema}.unverified_windows`;
  }

  async create(): Promise<void> {
    await this.ds.query(`CREATE SCHEMA ${this.schema}`);
    await this.ds.query(`CREATE UNLOGGED TABLE ${this.accounts} (LIKE accounts INCLUDING DEFAULTS, PRIMARY KEY (org_id))`);
    await this.ds.query(`CREATE UNLOGGED TABLE ${this.usageTotals} (LIKE usage_totals INCLUDING DEFAULTS, PRIMARY KEY (org_id))`);
    await this.ds.query(`CREATE UNLOGGED TABLE ${this.windows} (LIKE reaccess_windows INCLUDING DEFAULTS, PRIMARY KEY (org_id, entity_id))`);
    // Per org: usage rows that charged entities before charged_entities was recorded, and the last one's instant.
    await this.ds.query(`CREATE UNLOGGED TABLE ${this.unverified} (org_id text PRIMARY KEY, rows bigint NOT NULL, last_at timestamptz NOT NULL)`);
  }

  async drop(): Promise<void> {
    await this.ds.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
  }
}

export async function writeShadowAccounts(client: PoolClient, shadow: ShadowTables, accounts: Account[]): Promise<void> {
  if (accounts.length === 0) return;
  await client.query(
    `INSERT INTO ${shadow.accounts} (org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets)
     SELECT u.org_id, u.plan, u.balance, u.debt, u.next_seq, u.allowance_month, u.allowance_spent,
            ARRAY(SELECT jsonb_array_elements_text(u.granted_one_time)), u.buckets
       FROM unnest($1::text[], $2::jsonb[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::jsonb[], $9::jsonb[])
         AS u(org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets)`,
    accountParams(accounts),
  );
}

const samePlan = (x: PlanTerms, y: PlanTerms): boolean =>
  x.name === y.name && x.oneTimeCredits === y.oneTimeCredits && x.monthlyAllowance === y.monthlyAllowance;

/**
 * Swaps one org's replayed projection in, under its account lock (see the top of this file). The shadow's
 * account was folded from a snapshot taken without the lock: the entries appended since are folded onto it here.
 */
export async function repairOrg(ds: DataSource, shadow: ShadowTables, orgId: string): Promise<void> {
  await ds.transaction(async (m: EntityManager) => {
    const shadowRows: AccountRow[] = await m.query(`SELECT ${accountRowColumns} FROM ${shadow.accounts} WHERE org_id = $1`, [orgId]);
    const shadowRow = shadowRows[0];
    let locked = await loadAccount(m, orgId, 'lock');
    if (!locked && shadowRow) {
      // A ledger without its account row: the row is created from the shadow, then locked like any other.
      await m.query(
        `INSERT INTO accounts (${accountRowColumns}) SELECT ${accountRowColumns} FROM ${shadow.accounts} WHERE org_id = $1 ON CONFLICT (org_id) DO NOTHING`,
        [orgId],
      );
      locked = await loadAccount(m, orgId, 'lock');
    }
    if (!locked) return;
    const plan = locked.account.plan;
    const base = shadowRow ? toAccount(shadowRow) : null;
    const from = base && samePlan(base.plan, plan) ? base : null;
    const rows: EntryRow[] = await m.query(`SELECT ${entryRowColumns} FROM ledger_entries WHERE org_id = $1 AND seq >= $2 ORDER BY seq`, [
      orgId,
      from?.nextSeq ?? 1,
    ]);
    const entries = rows.map(toEntry);
    const account = from ? entries.reduce(evolve, from) : foldAccount(orgId, plan, entries);
    await writeAll(m, [accountsPart([account])]);

    await m.query(
      `INSERT INTO usage_totals (org_id, total) SELECT $1, count(*) FROM usage_records WHERE org_id = $1
       ON CONFLICT (org_id) DO UPDATE SET total = EXCLUDED.total`,
      [orgId],
    );
    // Windows: what the recorded charges give; a window no later than the last usage row without
    // charged_entities may come from such a row, so it is kept (and never moved back).
    const cutoffRows: Array<{ at: Date | null }> = await m.query(
      `SELECT max(occurred_at) AS at FROM usage_records
        WHERE org_id = $1 AND charged_entities IS NULL AND credits > 0 AND entities > 0`,
      [orgId],
    );
    const cutoff = cutoffRows[0]?.at ?? null;
    await m.query(
      `WITH replayed AS (
         SELECT e.entity_id, max(u.occurred_at) AS at
           FROM usage_records u CROSS JOIN LATERAL unnest(u.charged_entities) AS e(entity_id)
          WHERE u.org_id = $1 GROUP BY e.entity_id),
       removed AS (
         DELETE FROM reaccess_windows w WHERE w.org_id = $1
            AND NOT EXISTS (SELECT 1 FROM replayed r WHERE r.entity_id = w.entity_id)
            AND w.last_charged_at > COALESCE($2::timestamptz, '-infinity'))
       INSERT INTO reaccess_windows (org_id, entity_id, last_charged_at)
       SELECT $1, entity_id, at FROM replayed
       ON CONFLICT (org_id, entity_id) DO UPDATE SET last_charged_at =
         CASE WHEN reaccess_windows.last_charged_at <= COALESCE($2::timestamptz, '-infinity')
              THEN GREATEST(reaccess_windows.last_charged_at, EXCLUDED.last_charged_at)
              ELSE EXCLUDED.last_charged_at END`,
      [orgId, cutoff],
    );
  });
}
