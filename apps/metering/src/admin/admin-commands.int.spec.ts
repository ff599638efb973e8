import { DataSource } from 'typeorm';
import { connectDatabase } from '@tollgate/persistence';
import { ProfileCatalog } from '@tollgate/ledger';
import { AdminService } from './admin.service';
import { readHistory } from './admin-command-store';

/** Commands of one org recorded concurrently: each gets its own place in the org's history, none is lost. */
describe('admin commands recorded under concurrency (real PostgreSQL)', () => {
  let ds: DataSource;
  const catalog = ProfileCatalog.load('trackyard');

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 8 });
  });

  afterAll(async () => {
    await ds?.destroy();
  });

  it('gives concurrent commands of one org the seqs 1..N, each with the entries it caused, and records no rejected one', async () => {
    const admin = new AdminService(ds, catalog);
    const org = `cmds-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
    await admin.createOrg({ id: org, name: org, plan: 'free' }, 'setup');
    const key = await admin.createKey(org, { name: 'k' }, 'setup');
    const runs = await Promise.allSettled([
      ...Array.from({ length: 8 }, (_, i) => admin.grantCredits(org, { amount: 1, reason: `g${i}`, idempotency_key: `g${i}` }, `grant-${i}`)),
      ...Array.from({ length: 4 }, (_, i) => admin.setLimits(org, { minute: i + 1 }, `limits-${i}`)),
      ...Array.from({ length: 4 }, (_, i) => admin.createKey(org, { name: `k${i}` }, `key-${i}`)),
      admin.changePlan(org, { plan: 'starter' }, 'planner'),
      admin.changePlan(org, { plan: 'platinum' }, 'rejected'),
      admin.revokeKey(key.id, 'revoker'),
    ]);
    expect(runs.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(await admin.grantCredits(org, { amount: 1, reason: 'g0', idempotency_key: 'g0' }, 'replayer')).toMatchObject({ replayed: true, reason: 'g0' });
    // The key is bound to its first request: another reason is refused, and recorded nowhere.
    await expect(admin.grantCredits(org, { amount: 1, reason: 'again', idempotency_key: 'g0' }, 'reuser')).rejects.toMatchObject({
      response: { error: 'idempotency_key_reused' },
    });
    const rows = await readHistory(ds.manager, org, 0, 500);
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const actors = rows.map((r) => r.actor);
    expect(actors).not.toContain('rejected');
    expect(actors).not.toContain('replayer');
    expect(actors).not.toContain('reuser');
    expect(actors.filter((a) => a.startsWith('grant-'))).toHaveLength(8);
    const entries: Array<{ seq: string; cause: string }> = await ds.query(`SELECT seq, cause FROM ledger_entries WHERE org_id = $1 ORDER BY seq`, [org]);
    const causeOf = new Map(entries.map((e) => [Number(e.seq), e.cause]));
    for (const r of rows) for (const seq of r.entry_seqs) expect(causeOf.get(Number(seq))).toBe(`admin:${r.id}`);
    // Every entry is some command's: 50 one-time credits, 8 grants, the starter allowance.
    expect(rows.flatMap((r) => r.entry_seqs.map(Number)).sort((a, b) => a - b)).toEqual(entries.map((e) => Number(e.seq)));
  });
});
