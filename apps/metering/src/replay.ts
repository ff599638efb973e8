import { DataSource } from 'typeorm';
import { connectDatabase } from '@tollgate/persistence';
import { progress, Progress, runCommand } from './ops/cli';

/**
 * `npm run replay -- (--all | --org ID) [--source ledger] [--apply]`
 *
 * Rebuilds the balance projection of each org from its ledger into a shadow table (`accounts_replay`), diffs it
 * against the live `accounts` rows and prints every difference; exit 1 when anything differs. With `--apply`
 * the shadow's figures replace the live ones in one transaction (the ledger itself is never touched: it is the
 * source of truth and append-only).
 *
 * What is checked per org: balance = sum of entries; next_seq = last seq + 1; sequence gapless from 1;
 * balance_after a running sum; each live bucket's remaining = the sum of its entries (less what they paid off as
 * debt, `detail.paid_debt`), and a bucket gone from the projection sums to 0; balance = sum(bucket remaining) - debt.
 *
 * `--source kafka` (re-deriving the ledger from the event topic into a scratch schema) is not built yet: the
 * command says so and exits 2 rather than pretend.
 */
interface Options {
  orgs: string[] | 'all';
  source: 'ledger' | 'kafka';
  apply: boolean;
}

export function parseArgs(argv: string[]): Options | string {
  let orgs: string[] | 'all' | null = null;
  let source: Options['source'] = 'ledger';
  let apply = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--all') orgs = 'all';
    else if (a === '--org') {
      const id = argv[++i];
      if (!id) return '--org needs an org id';
      orgs = orgs === 'all' ? 'all' : [...(orgs ?? []), id];
    } else if (a === '--source') {
      const s = argv[++i];
      if (s !== 'ledger' && s !== 'kafka') return '--source must be ledger or kafka';
      source = s;
    } else if (a === '--apply') apply = true;
    else return `unknown argument "${a}"`;
  }
  if (!orgs) return 'say which ledgers: --all or --org ID';
  return { orgs, source, apply };
}

interface Difference {
  org_id: string;
  what: string;
  live: string;
  replayed: string;
}

const batchSize = 500;

export async function replay(ds: DataSource, opts: Options, progress: (done: number, total: number) => void): Promise<Difference[]> {
  await ds.query(`DROP TABLE IF EXISTS accounts_replay`);
  await ds.query(`CREATE UNLOGGED TABLE accounts_replay (org_id text PRIMARY KEY, balance bigint NOT NULL, next_seq bigint NOT NULL, buckets jsonb NOT NULL)`);
  const ids: string[] =
    opts.orgs === 'all'
      ? (await ds.query(`SELECT org_id FROM accounts ORDER BY org_id`)).map((r: { org_id: string }) => r.org_id)
      : opts.orgs;
  const differences: Difference[] = [];
  for (let i = 0; i < ids.length; i += batchSize) {
    const chunk = ids.slice(i, i + batchSize);
    await ds.query(
      `INSERT INTO accounts_replay (org_id, balance, next_seq, buckets)
       SELECT o.org_id, COALESCE(SUM(e.amount), 0), COALESCE(MAX(e.seq), 0) + 1,
              COALESCE((SELECT jsonb_object_agg(b.bucket_id, b.total) FROM
                (SELECT bucket_id, SUM(amount - COALESCE((detail->>'paid_debt')::bigint, 0)) AS total FROM ledger_entries WHERE org_id = o.org_id AND bucket_id IS NOT NULL GROUP BY bucket_id) b), '{}'::jsonb)
         FROM unnest($1::text[]) AS o(org_id) LEFT JOIN ledger_entries e ON e.org_id = o.org_id
        GROUP BY o.org_id`,
      [chunk],
    );
    const rows: Difference[] = await ds.query(
      `WITH live AS (SELECT * FROM accounts WHERE org_id = ANY($1)),
       chain AS (
         SELECT org_id, seq, balance_after,
                SUM(amount) OVER (PARTITION BY org_id ORDER BY seq) AS running,
                ROW_NUMBER() OVER (PARTITION BY org_id ORDER BY seq) AS n
           FROM ledger_entries WHERE org_id = ANY($1))
       SELECT r.org_id, 'account' AS what, 'missing' AS live, 'ledger has ' || (r.next_seq - 1) || ' entries' AS replayed
         FROM accounts_replay r LEFT JOIN live l USING (org_id) WHERE r.org_id = ANY($1) AND l.org_id IS NULL
       UNION ALL
       SELECT l.org_id, 'balance', l.balance::text, r.balance::text FROM live l JOIN accounts_replay r USING (org_id) WHERE l.balance <> r.balance
       UNION ALL
       SELECT l.org_id, 'next_seq', l.next_seq::text, r.next_seq::text FROM live l JOIN accounts_replay r USING (org_id) WHERE l.next_seq <> r.next_seq
       UNION ALL
       SELECT l.org_id, 'balance = buckets - debt', l.balance::text,
              ((SELECT COALESCE(SUM((b->>'remaining')::bigint), 0) FROM jsonb_array_elements(l.buckets) b) - l.debt)::text
         FROM live l
        WHERE l.balance <> (SELECT COALESCE(SUM((b->>'remaining')::bigint), 0) FROM jsonb_array_elements(l.buckets) b) - l.debt
       UNION ALL
       SELECT l.org_id, 'bucket ' || (b->>'id'), b->>'remaining', COALESCE(r.buckets->>(b->>'id'), '0')
         FROM live l JOIN accounts_replay r USING (org_id), jsonb_array_elements(l.buckets) b
        WHERE (b->>'remaining')::bigint <> COALESCE((r.buckets->>(b->>'id'))::bigint, 0)
       UNION ALL
       SELECT r.org_id, 'bucket ' || k.key || ' (not in projection)', '0', k.value::text
         FROM accounts_replay r JOIN live l USING (org_id), jsonb_each(r.buckets) k
        WHERE k.value::bigint <> 0 AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(l.buckets) b WHERE b->>'id' = k.key)
       UNION ALL
       SELECT org_id, 'seq ' || seq, 'entry ' || n, 'gap or duplicate' FROM chain WHERE seq <> n
       UNION ALL
       SELECT org_id, 'balance_after at seq ' || seq, balance_after::text, running::text FROM chain WHERE balance_after <> running
       ORDER BY 1, 2`,
      [chunk],
    );
    differences.push(...rows);
    progress(Math.min(i + batchSize, ids.length), ids.length);
  }
  if (opts.apply && differences.length > 0) {
    await ds.transaction(async (m) => {
      await m.query(
        `UPDATE accounts a SET balance = r.balance, next_seq = r.next_seq, updated_at = now()
           FROM accounts_replay r WHERE a.org_id = r.org_id AND (a.balance <> r.balance OR a.next_seq <> r.next_seq)`,
      );
    });
  }
  await ds.query(`DROP TABLE accounts_replay`);
  return differences;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (typeof opts === 'string') {
    process.stderr.write(`replay: ${opts}\nusage: npm run replay -- (--all | --org ID) [--source ledger] [--apply]\n`);
    return 2;
  }
  if (opts.source === 'kafka') {
    process.stderr.write('replay: --source kafka is not available yet; replay from the ledger (--source ledger)\n');
    return 2;
  }
  const ds = await connectDatabase({ migrate: false, poolSize: 2 });
  try {
    let bar: Progress | undefined;
    const differences = await replay(ds, opts, (done, total) => (bar ??= progress('replay', 'orgs', total)).update(done, total));
    bar?.finish();
    for (const d of differences) process.stdout.write(`${d.org_id}\t${d.what}\tlive=${d.live}\treplayed=${d.replayed}\n`);
    process.stdout.write(differences.length === 0 ? 'replay: projections match the ledger\n' : `replay: ${differences.length} difference(s)${opts.apply ? ', applied the replayed balances' : ''}\n`);
    return differences.length === 0 ? 0 : 1;
  } finally {
    await ds.destroy();
  }
}

runCommand('replay', module, main);
