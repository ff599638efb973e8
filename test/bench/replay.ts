import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { Account, Allocation, changePlan, charge, grantTopUp, LedgerEntryDraft, openAccount, PlanTerms, release, reserve, settle } from '@tollgate/billing';
import { connectDatabase } from '@tollgate/persistence';
import { replayLedger } from '@tollgate/operations';

/**
 * `npm run bench -- replay`: how fast `npm run replay -- --all` folds a ledger. BENCH_LEDGER_ENTRIES entries
 * (default 1,000,000) of BENCH_REPLAY_ORGS orgs (default 2,000) are decided by the real deciders (charges, holds
 * settled and released, top-ups, plan changes, months rolling over, debt), loaded with COPY into a scratch
 * database (`<database>_replay_bench`, recreated) with each org's final account as its live row, then replayed twice:
 * entries/s of the rebuild and diff, which must find no difference.
 */
export async function replayBench(): Promise<Array<{ name: string; n: number; seconds: number; rate: number }>> {
  const entriesWanted = Number(process.env.BENCH_LEDGER_ENTRIES || 1_000_000);
  const orgCount = Number(process.env.BENCH_REPLAY_ORGS || 2_000);
  const url = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tollgate');
  const scratch = `${url.pathname.slice(1)}_replay_bench`;
  const admin = new Client({ connectionString: url.toString() });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${scratch}`);
  await admin.end();
  url.pathname = `/${scratch}`;
  const ds = await connectDatabase({ url: url.toString(), migrate: true, poolSize: 2 });
  const db = new Client({ connectionString: url.toString() });
  await db.connect();
  try {
    const t0 = performance.now();
    const { entries, accounts } = history(orgCount, Math.ceil(entriesWanted / orgCount));
    console.error(`bench: decided ${entries.length} entries of ${orgCount} orgs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await copyRows(db, `COPY orgs (id, name, profile, plan) FROM STDIN (FORMAT csv)`, accounts.map((a) => [a.orgId, a.orgId, 'trackyard', a.plan.name]));
    await copyRows(
      db,
      `COPY accounts (org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets) FROM STDIN (FORMAT csv)`,
      accounts.map((a) => [a.orgId, JSON.stringify(a.plan), a.balance, a.debt, a.nextSeq, a.allowanceMonth, a.allowanceSpent, `{${a.grantedOneTime.join(',')}}`, JSON.stringify(a.buckets)]),
    );
    await copyRows(
      db,
      `COPY ledger_entries (org_id, seq, type, amount, balance_after, cause, occurred_at, bucket_id, detail) FROM STDIN (FORMAT csv)`,
      entries.map((e) => [e.orgId, e.seq, e.type, e.amount, e.balanceAfter, e.cause, new Date(e.occurredAt).toISOString(), e.bucketId, JSON.stringify(e.detail)]),
    );
    await db.query(`VACUUM ANALYZE ledger_entries`);
    await db.query(`ANALYZE accounts`);
    console.error(`bench: loaded into ${scratch}; replaying`);

    // Twice: the first run reads pages the load just wrote, the second what an operator's usual run meets.
    const results = [];
    for (const run of ['first run after loading', 'second run']) {
      const report = await replayLedger(ds, { orgs: 'all', apply: false });
      if (report.differences.length > 0) throw new Error(`replay found ${report.differences.length} differences, e.g. ${JSON.stringify(report.differences[0])}`);
      results.push({
        name: `replay --all (ledger source, ${orgCount} orgs, rebuild + diff, ${run})`,
        n: report.entries,
        seconds: report.seconds,
        rate: Math.round(report.entries / report.seconds),
      });
    }
    return results;
  } finally {
    await db.end();
    await ds.destroy();
  }
}

/** Deterministic histories (a fixed-seed generator) of about `perOrg` entries each, by the real deciders. */
function history(orgs: number, perOrg: number): { entries: LedgerEntryDraft[]; accounts: Account[] } {
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const plans: Record<string, PlanTerms> = {
    free: { name: 'free', oneTimeCredits: 50, monthlyAllowance: 0 },
    starter: { name: 'starter', oneTimeCredits: 0, monthlyAllowance: 500 },
    pro: { name: 'pro', oneTimeCredits: 0, monthlyAllowance: 5000 },
  };
  const entries: LedgerEntryDraft[] = [];
  const accounts: Account[] = [];
  for (let o = 0; o < orgs; o++) {
    const orgId = `bench-${String(o).padStart(6, '0')}`;
    let at = Date.parse('2026-01-01T00:00:00Z') + Math.floor(random() * 86_400_000);
    let { account, entries: mine } = openAccount(orgId, plans.starter!, at, `admin:create-org:${orgId}`);
    const out = [...mine];
    let n = 0;
    while (out.length < perOrg) {
      at += Math.floor(random() * 4 * 3_600_000); // ~2 months for 500 entries: each org rolls over at least once
      const r = random();
      n++;
      if (r < 0.45) ({ account, entries: mine } = charge(account, 1 + Math.floor(random() * 3), at, `event:${orgId}-${n}`));
      else if (r < 0.8) {
        const held = reserve(account, `${orgId}-${n}`, 1, at);
        ({ account, entries: mine } = held.decided);
        out.push(...mine);
        if (!held.granted) continue;
        const allocation: Allocation[] = held.allocation;
        ({ account, entries: mine } =
          random() < 0.8
            ? settle(account, `${orgId}-${n}`, allocation, 1, at + 50, `event:${orgId}-${n}`)
            : release(account, `${orgId}-${n}`, allocation, at + 50, `reservation:${orgId}-${n}:released`));
      } else if (r < 0.95) {
        const expiresAt = random() < 0.5 ? null : at + Math.floor(random() * 40) * 86_400_000 + 1;
        ({ account, entries: mine } = grantTopUp(account, 10 + Math.floor(random() * 100), expiresAt, `top_up:${orgId}-${n}`, at, `admin:grant:${orgId}-${n}`));
      } else {
        const next = Object.values(plans)[Math.floor(random() * 3)]!;
        ({ account, entries: mine } = changePlan(account, next, at, `admin:plan:${next.name}`));
      }
      out.push(...mine);
    }
    entries.push(...out);
    accounts.push(account);
  }
  return { entries, accounts };
}

const csv = (v: unknown): string => (v === null || v === undefined ? '' : `"${String(v).replace(/"/g, '""')}"`);

async function copyRows(db: Client, sql: string, rows: unknown[][]): Promise<void> {
  async function* lines() {
    for (let i = 0; i < rows.length; i += 10_000) {
      yield rows
        .slice(i, i + 10_000)
        .map((r) => `${r.map(csv).join(',')}\n`)
        .join('');
    }
  }
  await pipeline(Readable.from(lines()), db.query(copyFrom(sql)));
}
