import { DataSource } from 'typeorm';
import { Account, Decided, openAccount, reserve } from '@tollgate/billing';
import { connectDatabase, Principal } from '@tollgate/persistence';
import { loadAllProfiles } from '@tollgate/profiles';
import { AccountViews } from './account-views';

/**
 * /me against real PostgreSQL with an injected clock: the month's allowance shows as reset the moment the month
 * turns, before any event has made metering write the reset, and credits held by reservations are not spendable.
 */
describe('AccountViews.me (real PostgreSQL)', () => {
  let ds: DataSource;
  const profiles = loadAllProfiles();
  const utc = (iso: string) => Date.parse(iso);

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 2 });
  });

  afterAll(async () => {
    await ds?.destroy();
  });

  /** Stores an account with the ledger entries that produced it, as metering would (replay checks them). */
  async function storeAccount(orgId: string, plan: 'starter' | 'free', then: (account: Account) => Decided) {
    const terms = plan === 'starter' ? { name: 'starter', oneTimeCredits: 0, monthlyAllowance: 500 } : { name: 'free', oneTimeCredits: 50, monthlyAllowance: 0 };
    const opened = openAccount(orgId, terms, utc('2026-10-15T12:00:00Z'), `test:${orgId}`);
    const next = then(opened.account);
    const account = next.account;
    await ds.query(`INSERT INTO orgs (id, name, profile, plan) VALUES ($1, $1, 'trackyard', $2)`, [orgId, plan]);
    await ds.query(
      `INSERT INTO accounts (org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [orgId, JSON.stringify(account.plan), account.balance, account.debt, account.nextSeq, account.allowanceMonth, account.allowanceSpent, account.grantedOneTime, JSON.stringify(account.buckets)],
    );
    for (const e of [...opened.entries, ...next.entries]) {
      await ds.query(
        `INSERT INTO ledger_entries (org_id, seq, type, amount, balance_after, cause, occurred_at, bucket_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [e.orgId, e.seq, e.type, e.amount, e.balanceAfter, e.cause, new Date(e.occurredAt).toISOString(), e.bucketId, JSON.stringify(e.detail)],
      );
    }
  }

  const principal = (orgId: string, plan: string): Principal => ({ orgId, keyId: `key_${orgId}`, userId: null, plan, profile: 'trackyard', limitOverrides: {} });
  const id = (p: string) => `${p}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;

  it('shows a fresh 500-credit allowance at 00:00:01 UTC on the 1st although October ended with 120 unspent and no event came since', async () => {
    const orgId = id('reset');
    await storeAccount(orgId, 'starter', (account) => reserve(account, 'r1', 380, utc('2026-10-20T00:00:00Z')).decided);
    const october = await new AccountViews(ds, (n) => profiles.get(n), () => utc('2026-10-31T23:59:59.999Z')).me(principal(orgId, 'starter'));
    expect(october.credits_remaining).toBe(120);
    const november = await new AccountViews(ds, (n) => profiles.get(n), () => utc('2026-11-01T00:00:01Z')).me(principal(orgId, 'starter'));
    expect(november).toMatchObject({ tier: 'starter', credits_remaining: 500, monthly_allowance: 500, rate_limit: { requests_per_minute: 10, requests_per_day: 1000 } });
  });

  it('does not count credits held by a reservation as remaining', async () => {
    const orgId = id('held');
    await storeAccount(orgId, 'free', (account) => reserve(account, 'r1', 3, utc('2026-10-20T00:00:00Z')).decided);
    const me = await new AccountViews(ds, (n) => profiles.get(n), () => utc('2026-10-20T00:00:01Z')).me(principal(orgId, 'free'));
    expect(me).toMatchObject({ tier: 'free', credits_remaining: 47, monthly_allowance: 0, rate_limit: { requests_per_minute: 5, requests_per_day: 50 } });
  });
});
