import { PoolClient } from 'pg';
import { DataSource } from 'typeorm';
import { Account, evolve, foldAccount, LedgerEntryDraft, LedgerEntryType, LedgerFoldError, PlanTerms } from '@tollgate/billing';
import { AccountRow, accountRowColumns, toAccount } from '@tollgate/ledger';
import { Difference, diffAccount } from './diff';
import { repairOrg, ShadowTables, writeShadowAccounts } from './shadow-tables';

/**
 * `npm run replay -- --source ledger`: every projection rebuilt from what it is a projection of, into shadow
 * tables, and diffed against the live ones field by field.
 *
 * - accounts: the fold of each org's ledger from seq 1 (`foldAccount` of @tollgate/billing, the same `evolve`
 *   the deciders' results obey), with the account's current plan (`accounts.plan`; `orgs.plan` from the profile
 *   when the row is missing);
 * - usage_totals: count(*) of the org's usage_records;
 * - reaccess_windows: max(occurred_at) per (org, entity) over the usage rows that charged the entity
 *   (`usage_records.charged_entities`). Rows metered before that column existed (NULL) charged entities nobody
 *   recorded: windows up to the last of them can't be verified. They are counted, not reported as differences,
 *   and `--apply` keeps those windows.
 *
 * Reading: orgs go in batches, each batch in one REPEATABLE READ transaction, so its ledger, usage rows and live
 * projections are one snapshot. Metering writes an org's entries and projections in one transaction, so a replay
 * while traffic flows sees no difference that isn't real. The batch's entries stream through a server-side cursor
 * in (org, seq) order (the primary key's order: no sort), folded as they arrive.
 *
 * `--apply`, org by org, each its own transaction: lock the account row (`SELECT … FOR UPDATE`, the lock every
 * money writer takes before it appends), fold the entries appended since the shadow was built onto the shadow's
 * account (the ledger is append-only and the fold deterministic; a plan changed meanwhile means a fold from seq 1),
 * write the account, the org's usage total and windows, commit. Every writer of an org's entries, usage rows and
 * windows holds that lock, so nothing the repair read can change before it commits. An interrupted apply stops
 * between orgs: each live row is untouched or repaired. ledger_entries is only ever read.
 */
export interface LedgerReplayOptions {
  orgs: string[] | 'all';
  apply: boolean;
  /** Orgs per snapshot (one REPEATABLE READ transaction each). */
  orgsPerBatch?: number;
  /** Runs of up to 2,000 entries of one org per FETCH from the cursor. */
  runsPerFetch?: number;
}

export interface LedgerReplayHooks {
  /** Entries folded so far, of the ledger's total. */
  progress?(entries: number, total: number): void;
  /** Orgs --apply has repaired so far, of those that differ. */
  repairProgress?(orgs: number, total: number): void;
  /** Checked between batches and between the orgs an apply repairs (Ctrl-C). */
  stopRequested?(): boolean;
  /** The terms of a plan, for an org whose account row is missing (its plan is then orgs.plan). */
  planTerms?(profile: string, plan: string): PlanTerms | undefined;
}

export interface LedgerReplayReport {
  differences: Difference[];
  orgs: number;
  entries: number;
  /** Wall time of the rebuild and diff, in seconds (apply not included). */
  seconds: number;
  /** Usage rows metered before charged_entities existed that charged entities: their windows can't be verified. */
  unverifiedRows: number;
  unverifiedOrgs: number;
  /**
   * Orgs that can't be replayed, each reported as a difference: a ledger the fold refuses (LedgerFoldError), or no
   * account row and no known plan. --apply leaves them alone.
   */
  unfoldable: string[];
  /** Orgs --apply repaired. */
  repaired: string[];
  /** Stopped by stopRequested() before the end. */
  interrupted: boolean;
}

/** Bad input the operator can fix (exit 2), as opposed to a failure. */
export class ReplayArgumentError extends Error {}

interface OrgToReplay {
  id: string;
  profile: string;
  plan: string;
}

export async function replayLedger(ds: DataSource, opts: LedgerReplayOptions, hooks: LedgerReplayHooks = {}): Promise<LedgerReplayReport> {
  const started = Date.now();
  const orgs = await orgsToReplay(ds, opts.orgs);
  const shadow = new ShadowTables(ds, `replay_${process.pid}_${Date.now().toString(36)}`);
  const report: LedgerReplayReport = { differences: [], orgs: orgs.length, entries: 0, seconds: 0, unverifiedRows: 0, unverifiedOrgs: 0, unfoldable: [], repaired: [], interrupted: false };
  await shadow.create();
  try {
    const total = await countEntries(ds, opts.orgs === 'all' ? null : orgs.map((o) => o.id));
    const runner = ds.createQueryRunner();
    const client = (await runner.connect()) as PoolClient;
    try {
      const perBatch = opts.orgsPerBatch ?? 1000;
      for (let i = 0; i < orgs.length; i += perBatch) {
        if (hooks.stopRequested?.()) {
          report.interrupted = true;
          break;
        }
        const batch = orgs.slice(i, i + perBatch);
        const found = await replayBatch(client, shadow, batch, opts.runsPerFetch ?? 25, hooks, (n) => {
          report.entries += n;
          hooks.progress?.(report.entries, Math.max(total, report.entries));
        });
        // A loop, not push(...): a batch can find more differences than a call takes arguments.
        for (const d of found.differences) report.differences.push(d);
        report.unfoldable.push(...found.unfoldable);
        report.unverifiedRows += found.unverifiedRows;
        report.unverifiedOrgs += found.unverifiedOrgs;
      }
    } finally {
      await runner.release();
    }
    report.seconds = (Date.now() - started) / 1000;

    if (opts.apply && !report.interrupted) {
      const unfoldable = new Set(report.unfoldable);
      const toRepair = [...new Set(report.differences.map((d) => d.orgId))].filter((id) => !unfoldable.has(id));
      for (const [i, orgId] of toRepair.entries()) {
        hooks.repairProgress?.(i, toRepair.length);
        if (hooks.stopRequested?.()) {
          report.interrupted = true;
          break;
        }
        try {
          await repairOrg(ds, shadow, orgId);
          report.repaired.push(orgId);
        } catch (e) {
          // An entry appended since the diff that the fold refuses: the org's transaction rolled back, untouched.
          if (!(e instanceof LedgerFoldError)) throw e;
          report.differences.push({ orgId, field: 'ledger', live: `seq ${e.seq}`, replayed: `cannot be folded: ${e.message}` });
          report.unfoldable.push(orgId);
        }
      }
      if (!report.interrupted) hooks.repairProgress?.(toRepair.length, toRepair.length);
    }
    return report;
  } finally {
    await shadow.drop();
  }
}

/** The orgs asked for, in id order; an unknown id is the operator's mistake. */
async function orgsToReplay(ds: DataSource, which: string[] | 'all'): Promise<OrgToReplay[]> {
  const rows: OrgToReplay[] =
    which === 'all'
      ? await ds.query(`SELECT id, profile, plan FROM orgs ORDER BY id`)
      : await ds.query(`SELECT id, profile, plan FROM orgs WHERE id = ANY($1::text[]) ORDER BY id`, [which]);
  if (which !== 'all') {
    const known = new Set(rows.map((r) => r.id));
    const unknown = which.filter((id) => !known.has(id));
    if (unknown.length > 0) throw new ReplayArgumentError(`no org ${unknown.map((id) => `"${id}"`).join(', ')}`);
  }
  return rows;
}

async function countEntries(ds: DataSource, orgIds: string[] | null): Promise<number> {
  const rows: Array<{ n: string }> =
    orgIds === null
      ? await ds.query(`SELECT count(*) AS n FROM ledger_entries`)
      : await ds.query(`SELECT count(*) AS n FROM ledger_entries WHERE org_id = ANY($1::text[])`, [orgIds]);
  return Number(rows[0]?.n ?? 0);
}

interface BatchResult {
  differences: Difference[];
  unfoldable: Set<string>;
  unverifiedRows: number;
  unverifiedOrgs: number;
}

/** One batch of orgs in one snapshot: fold, write the shadow, diff. */
async function replayBatch(
  client: PoolClient,
  shadow: ShadowTables,
  batch: OrgToReplay[],
  runsPerFetch: number,
  hooks: LedgerReplayHooks,
  folded: (entries: number) => void,
): Promise<BatchResult> {
  const ids = batch.map((o) => o.id);
  const differences: Difference[] = [];
  const unfoldable = new Set<string>();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  try {
    const liveRows = await client.query<AccountRow>(`SELECT ${accountRowColumns} FROM accounts WHERE org_id = ANY($1::text[])`, [ids]);
    const live = new Map(liveRows.rows.map((r) => [r.org_id, toAccount(r)]));

    const replayed = new Map<string, Account>();
    // The account's plan, else the org's plan from its profile; an org with neither can't be replayed (reported).
    const planOf = (org: OrgToReplay | undefined): PlanTerms | null => {
      const plan = org && (live.get(org.id)?.plan ?? hooks.planTerms?.(org.profile, org.plan));
      if (plan) return plan;
      if (org) {
        differences.push({ orgId: org.id, field: 'account', live: 'missing', replayed: `no terms for plan "${org.plan}" in profile "${org.profile}"` });
        unfoldable.add(org.id);
      }
      return null;
    };
    const byId = new Map(batch.map((o) => [o.id, o]));
    let current = null as OrgFold | null;
    const finish = (fold: OrgFold | null) => {
      const account = fold?.finish();
      if (account) replayed.set(account.orgId, account);
      else if (fold?.failed) {
        const e = fold.failed;
        differences.push({ orgId: fold.orgId, field: 'ledger', live: `seq ${e.seq}`, replayed: `cannot be folded: ${e.message}` });
        unfoldable.add(fold.orgId);
      }
    };

    // PostgreSQL packs each run of up to 2,000 entries of an org into one JSON array (parsed natively, far faster
    // than row by row through the driver); the runs come in (org, seq) order.
    await client.query(
      `DECLARE replay_entries NO SCROLL CURSOR FOR
         SELECT org_id, json_agg(json_build_array(seq, type, amount, balance_after, cause,
                  (extract(epoch FROM occurred_at) * 1000)::int8, bucket_id, detail) ORDER BY seq)::text AS entries
           FROM ledger_entries WHERE org_id = ANY($1::text[])
          GROUP BY org_id, (seq - 1) / 2000 ORDER BY org_id, min(seq)`,
      [ids],
    );
    // The next FETCH is asked for before this page is folded: PostgreSQL packs it meanwhile.
    const fetchRuns = () => client.query<{ org_id: string; entries: string }>(`FETCH ${runsPerFetch} FROM replay_entries`);
    let next = fetchRuns();
    for (;;) {
      const page = await next;
      const more = page.rows.length === runsPerFetch;
      if (more) next = fetchRuns();
      let n = 0;
      for (const row of page.rows) {
        if (row.org_id !== current?.orgId) {
          finish(current);
          const plan = planOf(byId.get(row.org_id));
          current = new OrgFold(row.org_id, plan ?? noPlan, maxBuffered);
          if (!plan) current.skip();
        }
        const entries = (JSON.parse(row.entries) as PackedEntry[]).map((e) => unpack(row.org_id, e));
        n += entries.length;
        current.add(entries);
      }
      folded(n);
      if (!more) break;
    }
    finish(current);
    await client.query(`CLOSE replay_entries`);

    // An org without a single entry folds to an empty account: a live row with anything in it differs.
    for (const org of batch) {
      const plan = live.get(org.id)?.plan;
      if (!replayed.has(org.id) && !unfoldable.has(org.id) && plan) replayed.set(org.id, foldAccount(org.id, plan, []));
    }
    for (const org of batch) {
      const r = replayed.get(org.id);
      if (r) differences.push(...diffAccount(live.get(org.id) ?? null, r));
    }
    await writeShadowAccounts(client, shadow, [...replayed.values()]);

    await client.query(
      `INSERT INTO ${shadow.usageTotals} (org_id, total)
       SELECT org_id, count(*) FROM usage_records WHERE org_id = ANY($1::text[]) GROUP BY org_id`,
      [ids],
    );
    await client.query(
      `INSERT INTO ${shadow.windows} (org_id, entity_id, last_charged_at)
       SELECT u.org_id, e.entity_id, max(u.occurred_at)
         FROM usage_records u CROSS JOIN LATERAL unnest(u.charged_entities) AS e(entity_id)
        WHERE u.org_id = ANY($1::text[]) GROUP BY u.org_id, e.entity_id`,
      [ids],
    );
    const unverified = await client.query<{ rows: string; orgs: string }>(
      `WITH ins AS (
         INSERT INTO ${shadow.unverified} (org_id, rows, last_at)
         SELECT org_id, count(*), max(occurred_at) FROM usage_records
          WHERE org_id = ANY($1::text[]) AND charged_entities IS NULL AND credits > 0 AND entities > 0 GROUP BY org_id
         RETURNING rows)
       SELECT COALESCE(sum(rows), 0) AS rows, count(*) AS orgs FROM ins`,
      [ids],
    );

    const totals = await client.query<{ org_id: string; live: string | null; replayed: string | null }>(
      `SELECT o.org_id, l.total AS live, r.total AS replayed
         FROM unnest($1::text[]) AS o(org_id)
         LEFT JOIN usage_totals l ON l.org_id = o.org_id
         LEFT JOIN ${shadow.usageTotals} r ON r.org_id = o.org_id
        WHERE COALESCE(l.total, 0) <> COALESCE(r.total, 0)`,
      [ids],
    );
    for (const t of totals.rows) differences.push({ orgId: t.org_id, field: 'usage_total', live: t.live ?? 'missing', replayed: t.replayed ?? '0' });

    // A live window no recorded charge explains is not reported when it is no later than the org's last usage row
    // without charged_entities (and no recorded charge is later): such a row may have charged it.
    const windows = await client.query<{ org_id: string; entity_id: string; live: Date | null; replayed: Date | null }>(
      `SELECT org_id, entity_id, l.last_charged_at AS live, r.last_charged_at AS replayed
         FROM (SELECT * FROM reaccess_windows WHERE org_id = ANY($1::text[])) l
         FULL JOIN (SELECT * FROM ${shadow.windows} WHERE org_id = ANY($1::text[])) r USING (org_id, entity_id)
         LEFT JOIN ${shadow.unverified} v USING (org_id)
        WHERE l.last_charged_at IS DISTINCT FROM r.last_charged_at
          AND NOT (v.last_at IS NOT NULL AND l.last_charged_at <= v.last_at
                   AND (r.last_charged_at IS NULL OR r.last_charged_at < l.last_charged_at))
        ORDER BY org_id, entity_id`,
      [ids],
    );
    for (const w of windows.rows) {
      differences.push({
        orgId: w.org_id,
        field: `window ${w.entity_id}`,
        live: w.live ? w.live.toISOString() : 'missing',
        replayed: w.replayed ? w.replayed.toISOString() : 'missing',
      });
    }
    await client.query('COMMIT');
    differences.sort((a, b) => (a.orgId < b.orgId ? -1 : a.orgId > b.orgId ? 1 : 0));
    return { differences, unfoldable, unverifiedRows: Number(unverified.rows[0]?.rows ?? 0), unverifiedOrgs: Number(unverified.rows[0]?.orgs ?? 0) };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** An entry as the cursor packs it: [seq, type, amount, balance_after, cause, occurred_at ms, bucket_id, detail]. */
type PackedEntry = [number, LedgerEntryType, number, number, string, number, string | null, Record<string, unknown>];

function unpack(orgId: string, e: PackedEntry): LedgerEntryDraft {
  return { orgId, seq: e[0], type: e[1], amount: e[2], balanceAfter: e[3], cause: e[4], occurredAt: e[5], bucketId: e[6], detail: e[7] };
}

/** Entries of one org held in memory before its fold goes entry by entry (about 100 MB at most). */
const maxBuffered = 200_000;
/** Stands in for the plan of an org that can't be replayed: its fold is skipped, never used. */
const noPlan: PlanTerms = { name: 'unknown', oneTimeCredits: 0, monthlyAllowance: 0 };

/**
 * One org's fold while its entries stream in. They are buffered and folded by one `foldAccount` when the org's
 * last entry has arrived (the account is changed in place: no copy per entry); a ledger that outgrows the buffer
 * goes on entry by entry with `evolve`, so memory stays bounded. The fold checks the ledger on the way (seq
 * gapless from 1, balance_after the running sum, each entry possible): a LedgerFoldError stops this org's fold.
 */
class OrgFold {
  private buffered: LedgerEntryDraft[] = [];
  private account: Account | null = null;
  private skipped = false;
  failed: LedgerFoldError | null = null;

  constructor(
    readonly orgId: string,
    private readonly plan: PlanTerms,
    private readonly cap: number,
  ) {}

  /** Entries of an org that can't be replayed (reported by the caller) are read past, not folded. */
  skip(): void {
    this.skipped = true;
    this.buffered = [];
  }

  add(entries: LedgerEntryDraft[]): void {
    if (this.failed || this.skipped) return;
    if (this.account === null && this.buffered.length + entries.length <= this.cap) {
      for (const e of entries) this.buffered.push(e);
      return;
    }
    this.guard(() => {
      let account = this.account ?? foldAccount(this.orgId, this.plan, this.buffered);
      this.buffered = [];
      for (const e of entries) account = evolve(account, e);
      this.account = account;
    });
  }

  /** The org's account, or null when its ledger can't be folded (`failed` says where). */
  finish(): Account | null {
    if (this.failed || this.skipped) return null;
    let account: Account | null = this.account;
    this.guard(() => (account ??= foldAccount(this.orgId, this.plan, this.buffered)));
    return this.failed ? null : account;
  }

  private guard(fold: () => void): void {
    try {
      fold();
    } catch (e) {
      if (!(e instanceof LedgerFoldError)) throw e;
      this.failed = e;
    }
  }
}
