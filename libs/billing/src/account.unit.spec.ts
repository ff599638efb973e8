// Over 400 lines on purpose: every rule of the account's pure functions (reserve, settle, release, lease, charge, months, plans) beside the others, as libs/billing states them.
import { changePlan, charge, grantTopUp, lease, leaseSize, leaseSlice, openAccount, projectAccount, release, reserve, rollForward, settle } from './account';
import { AccountHistory, deepFreeze, plans, utc } from './testing/account-builder';
import { Account, LedgerEntryDraft } from './types';

const jan15 = utc('2026-01-15T10:00:00Z');
const jan20 = utc('2026-01-20T10:00:00Z');
const lastMsOfJan = utc('2026-01-31T23:59:59.999Z');
const feb1 = utc('2026-02-01T00:00:00.000Z');
const feb10 = utc('2026-02-10T10:00:00Z');
const mar1 = utc('2026-03-01T00:00:00.000Z');

/** The parts of entries a reader of the ledger cares about, for compact expectations. */
const brief = (entries: LedgerEntryDraft[]) => entries.map((e) => [e.type, e.amount, e.bucketId] as const);
const remainingOf = (account: Account) => Object.fromEntries(account.buckets.map((b) => [b.id, b.remaining]));

describe('opening an account', () => {
  it('given the starter plan, when the org is created mid-month, then this month\'s full allowance is granted, expiring at the next 1st 00:00 UTC', () => {
    const { account, entries } = openAccount('acme', plans.starter, jan15, 'admin:create-org:acme');
    expect(entries).toEqual([
      {
        orgId: 'acme',
        seq: 1,
        type: 'grant',
        amount: 500,
        balanceAfter: 500,
        cause: 'admin:create-org:acme',
        occurredAt: jan15,
        bucketId: 'allowance:2026-01',
        detail: { plan: 'starter', month: '2026-01', expires_at: '2026-02-01T00:00:00.000Z' },
      },
    ]);
    expect(account).toEqual({
      orgId: 'acme',
      plan: plans.starter,
      balance: 500,
      debt: 0,
      nextSeq: 2,
      allowanceMonth: '2026-01',
      allowanceSpent: 0,
      grantedOneTime: [],
      buckets: [{ id: 'allowance:2026-01', kind: 'allowance', expiresAt: feb1, remaining: 500 }],
    });
  });

  it('given the free plan, when the org is created, then 50 one-time credits that never expire are granted and remembered', () => {
    const { account, entries } = openAccount('acme', plans.free, jan15, 'admin:create-org:acme');
    expect(brief(entries)).toEqual([['grant', 50, 'one_time:free']]);
    expect(account.buckets).toEqual([{ id: 'one_time:free', kind: 'one_time', expiresAt: null, remaining: 50 }]);
    expect(account.grantedOneTime).toEqual(['free']);
    expect(account.allowanceMonth).toBeNull();
  });

  it('given a plan with both credits, when opened, then one-time credits come first and seq runs 1, 2', () => {
    const { account, entries } = openAccount('acme', { name: 'both', oneTimeCredits: 20, monthlyAllowance: 100 }, jan15, 'c');
    expect(entries.map((e) => [e.seq, e.type, e.amount, e.balanceAfter])).toEqual([
      [1, 'grant', 20, 20],
      [2, 'grant', 100, 120],
    ]);
    expect(account.nextSeq).toBe(3);
  });

  it('given a plan without credits (trace standard), when opened, then no entry is written and the first seq stays 1', () => {
    const { account, entries } = openAccount('acme', plans.standard, jan15, 'c');
    expect(entries).toEqual([]);
    expect(account).toMatchObject({ balance: 0, nextSeq: 1, buckets: [] });
  });

  it('given a plan with fractional or negative credits, when opened, then it throws', () => {
    expect(() => openAccount('acme', { name: 'x', oneTimeCredits: 1.5, monthlyAllowance: 0 }, jan15, 'c')).toThrow(RangeError);
    expect(() => openAccount('acme', { name: 'x', oneTimeCredits: 0, monthlyAllowance: -1 }, jan15, 'c')).toThrow(RangeError);
  });
});

describe('the monthly reset', () => {
  function starterWith200Spent(): AccountHistory {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 200, jan20, 'event:e1'));
    return h;
  }

  it('given 300 unused allowance, when the last millisecond of the month arrives, then nothing resets yet', () => {
    const h = starterWith200Spent();
    const entries = h.then((a) => charge(a, 1, lastMsOfJan, 'event:e2'));
    expect(brief(entries)).toEqual([['charge', -1, 'allowance:2026-01']]);
    expect(h.account.balance).toBe(299);
    expect(h.violations()).toEqual([]);
  });

  it('given 300 unused allowance, when the first millisecond of the next month arrives, then the 300 expire as an explicit entry and 500 are granted before the call is charged', () => {
    const h = starterWith200Spent();
    const entries = h.then((a) => charge(a, 1, feb1, 'event:e2'));
    expect(entries.map((e) => [e.type, e.amount, e.balanceAfter, e.cause, e.occurredAt, e.bucketId])).toEqual([
      ['expiry', -300, 0, 'expiry:allowance:2026-01', feb1, 'allowance:2026-01'],
      ['grant', 500, 500, 'reset:2026-02', feb1, 'allowance:2026-02'],
      ['charge', -1, 499, 'event:e2', feb1, 'allowance:2026-02'],
    ]);
    expect(h.account).toMatchObject({ allowanceMonth: '2026-02', allowanceSpent: 1, balance: 499 });
    expect(h.account.buckets).toEqual([{ id: 'allowance:2026-02', kind: 'allowance', expiresAt: mar1, remaining: 499 }]);
    expect(h.violations()).toEqual([]);
  });

  it('given an allowance never touched, when a later month is rolled to, then all 500 expire (the ledger shows the loss)', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    const entries = h.then((a) => rollForward(a, feb10));
    expect(brief(entries)).toEqual([
      ['expiry', -500, 'allowance:2026-01'],
      ['grant', 500, 'allowance:2026-02'],
    ]);
    expect(entries[1]?.occurredAt).toBe(feb1);
  });

  it('given an account idle for months, when it is next touched, then only the current month is granted (skipped months leave no entries)', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    const entries = h.then((a) => rollForward(a, utc('2026-04-10T00:00:00Z')));
    expect(entries.map((e) => [e.type, e.amount, e.cause])).toEqual([
      ['expiry', -500, 'expiry:allowance:2026-01'],
      ['grant', 500, 'reset:2026-04'],
    ]);
    expect(h.account.buckets.map((b) => b.id)).toEqual(['allowance:2026-04']);
  });

  it('given an account rolled into February, when an older instant is rolled to, then nothing goes back in time', () => {
    const h = starterWith200Spent();
    h.then((a) => rollForward(a, feb10));
    const before = h.account;
    const late = rollForward(before, jan20);
    expect(late.entries).toEqual([]);
    expect(late.account).toEqual(before);
  });

  it('given a January event metered after February began, when it is charged, then it spends the live (February) allowance', () => {
    const h = starterWith200Spent();
    h.then((a) => rollForward(a, feb10));
    const entries = h.then((a) => charge(a, 1, lastMsOfJan, 'event:late'));
    expect(brief(entries)).toEqual([['charge', -1, 'allowance:2026-02']]);
    expect(h.violations()).toEqual([]);
  });

  it('given no event since January, when /me projects the account at 00:00:01 on 1 February, then the new allowance shows and the stored account is untouched', () => {
    const h = starterWith200Spent();
    const stored = h.account;
    const shown = projectAccount(stored, feb1 + 1000);
    expect(shown).toMatchObject({ balance: 500, allowanceMonth: '2026-02', nextSeq: stored.nextSeq + 2 });
    expect(stored.balance).toBe(300);
  });

  it('given the free plan with 10 of its 50 one-time credits spent, when months pass, then they are never reset nor expired', () => {
    const h = AccountHistory.opened(plans.free, jan15);
    h.then((a) => charge(a, 10, jan20, 'event:e1'));
    expect(h.then((a) => rollForward(a, feb1))).toEqual([]);
    expect(h.then((a) => charge(a, 1, utc('2026-07-01T00:00:00Z'), 'event:e2'))).toHaveLength(1);
    expect(h.account.balance).toBe(39);
    expect(h.account.grantedOneTime).toEqual(['free']);
    expect(h.violations()).toEqual([]);
  });
});

describe('spending order', () => {
  it('given this month\'s allowance, one-time credits and a top-up, when a charge needs all three, then it takes allowance, then one-time, then top-up', () => {
    const h = AccountHistory.opened({ name: 'mixed', oneTimeCredits: 5, monthlyAllowance: 5 }, jan15);
    h.then((a) => grantTopUp(a, 5, null, 'top_up:k1', jan15, 'admin:grant:k1'));
    const entries = h.then((a) => charge(a, 12, jan20, 'event:e1'));
    expect(brief(entries)).toEqual([
      ['charge', -5, 'allowance:2026-01'],
      ['charge', -5, 'one_time:mixed'],
      ['charge', -2, 'top_up:k1'],
    ]);
    expect(entries.map((e) => e.balanceAfter)).toEqual([10, 5, 3]);
    expect(h.violations()).toEqual([]);
  });

  it('given two top-ups, one expiring and one not, when charged, then the expiring one is spent first although granted later', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    h.then((a) => grantTopUp(a, 10, null, 'top_up:forever', jan15, 'admin:grant:a'));
    h.then((a) => grantTopUp(a, 10, utc('2026-06-01T00:00:00Z'), 'top_up:june', jan15, 'admin:grant:b'));
    expect(brief(h.then((a) => charge(a, 12, jan20, 'event:e1')))).toEqual([
      ['charge', -10, 'top_up:june'],
      ['charge', -2, 'top_up:forever'],
    ]);
  });

  it('given a top-up expiring before this month\'s allowance, when charged, then soonest expiry wins over the kind', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => grantTopUp(a, 3, utc('2026-01-25T00:00:00Z'), 'top_up:soon', jan15, 'admin:grant:a'));
    expect(brief(h.then((a) => charge(a, 4, jan20, 'event:e1')))).toEqual([
      ['charge', -3, 'top_up:soon'],
      ['charge', -1, 'allowance:2026-01'],
    ]);
  });

  it('given a top-up expiring at the same instant as the allowance, when charged, then the allowance goes first', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => grantTopUp(a, 3, feb1, 'top_up:same', jan15, 'admin:grant:a'));
    expect(brief(h.then((a) => charge(a, 1, jan20, 'event:e1')))).toEqual([['charge', -1, 'allowance:2026-01']]);
  });
});

describe('reserving credits', () => {
  it('given a balance of 3, when 5 are reserved, then the hold is refused with requested 5 and shortfall 2 and nothing is written', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    h.then((a) => grantTopUp(a, 3, null, 'top_up:k', jan15, 'admin:grant:k'));
    const r = reserve(h.account, 'res_1', 5, jan20);
    expect(r).toMatchObject({ granted: false, requested: 5, shortfall: 2, allocation: [] });
    expect(r.decided.entries).toEqual([]);
    expect(r.decided.account).toEqual(h.account);
  });

  it('given an account in debt, when a hold is asked for, then the shortfall is the whole request (a negative balance covers nothing)', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    h.then((a) => charge(a, 4, jan15, 'event:e0'));
    expect(reserve(h.account, 'res_1', 1, jan20)).toMatchObject({ granted: false, requested: 1, shortfall: 1 });
  });

  it('given a refused hold on the 1st, when it is decided, then the month\'s reset entries are still returned for storing', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    const r = reserve(h.account, 'res_1', 501, feb1);
    expect(r.granted).toBe(false);
    expect(brief(h.record(r.decided))).toEqual([
      ['expiry', -500, 'allowance:2026-01'],
      ['grant', 500, 'allowance:2026-02'],
    ]);
    expect(h.violations()).toEqual([]);
  });

  it('given credits in two buckets, when a hold spans them, then one reservation entry per bucket is written and the allocation names both', () => {
    const h = AccountHistory.opened({ name: 'mixed', oneTimeCredits: 5, monthlyAllowance: 2 }, jan15);
    const r = reserve(h.account, 'res_1', 4, jan20);
    const entries = h.record(r.decided);
    expect(r).toMatchObject({ granted: true, requested: 4, shortfall: 0 });
    expect(r.allocation).toEqual([
      { bucketId: 'allowance:2026-01', credits: 2 },
      { bucketId: 'one_time:mixed', credits: 2 },
    ]);
    expect(entries.map((e) => [e.type, e.amount, e.balanceAfter, e.cause, e.bucketId, e.detail])).toEqual([
      ['reservation', -2, 5, 'reservation:res_1', 'allowance:2026-01', { reservation_id: 'res_1' }],
      ['reservation', -2, 3, 'reservation:res_1', 'one_time:mixed', { reservation_id: 'res_1' }],
    ]);
    expect(h.account.allowanceSpent).toBe(2);
    expect(h.violations()).toEqual([]);
  });

  it('given a free call, when 0 credits are reserved, then it is granted without an entry', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    const r = reserve(h.account, 'res_1', 0, jan20);
    expect(r).toMatchObject({ granted: true, requested: 0, shortfall: 0, allocation: [] });
    expect(r.decided.entries).toEqual([]);
  });

  it('given exactly the balance, when reserved, then it is granted and the balance is 0 (never below)', () => {
    const h = AccountHistory.opened(plans.free, jan15);
    const r = reserve(h.account, 'res_1', 50, jan20);
    h.record(r.decided);
    expect(r.granted).toBe(true);
    expect(h.account.balance).toBe(0);
  });
});

describe('leases', () => {
  it('given 500 credits, when a gateway leases 100, then one lease entry per bucket takes them and names the gateway and the draw time', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    const r = lease(h.account, 'lease_1', 100, jan20, { gateway: 'gw-a', drawUntil: jan20 + 5000 });
    expect(r).toMatchObject({ granted: true, requested: 100, allocation: [{ bucketId: 'allowance:2026-01', credits: 100 }] });
    const entries = h.record(r.decided);
    expect(brief(entries)).toEqual([['lease', -100, 'allowance:2026-01']]);
    expect(entries[0]).toMatchObject({ cause: 'lease:lease_1', detail: { lease_id: 'lease_1', gateway: 'gw-a', size: 100, draw_until: '2026-01-20T10:00:05.000Z' } });
    expect(h.account.balance).toBe(400);
    expect(h.violations()).toEqual([]);
  });

  it('given a lease, when its unspent rest comes back, then release entries name the lease and the fold agrees', () => {
    const h = AccountHistory.opened({ name: 'mixed', oneTimeCredits: 5, monthlyAllowance: 10 }, jan15);
    const r = lease(h.account, 'lease_1', 12, jan20, { gateway: 'gw-a', drawUntil: jan20 + 5000 });
    h.record(r.decided);
    // 7 spent by calls (from the front: the allowance first), 2 returned early by the gateway (from the back).
    const rest = leaseSlice(r.allocation, 7, 12 - 2);
    expect(rest).toEqual([{ bucketId: 'allowance:2026-01', credits: 3 }]);
    expect(leaseSlice(r.allocation, 10, 12)).toEqual([{ bucketId: 'one_time:mixed', credits: 2 }]);
    h.record(release(h.account, 'lease_1', rest, jan20 + 6000, 'lease:lease_1:expired', { lease_id: 'lease_1' }));
    expect(h.account.balance).toBe(15 - 12 + 3);
    expect(h.violations()).toEqual([]);
  });

  it('a lease is all or nothing and never creates debt', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    h.then((a) => grantTopUp(a, 3, null, 'top_up:k', jan15, 'admin:grant:k'));
    expect(lease(h.account, 'lease_1', 5, jan20, { gateway: 'gw', drawUntil: jan20 + 1 })).toMatchObject({ granted: false, shortfall: 2 });
  });

  it('leases take at most a quarter of the balance, and none below the minimum (near zero: holds per call)', () => {
    expect(leaseSize(1000, 100, 2)).toBe(100);
    expect(leaseSize(1000, 10_000, 2)).toBe(250);
    expect(leaseSize(8, 100, 2)).toBe(2);
    expect(leaseSize(5, 100, 2)).toBe(0);
    expect(leaseSize(-40, 100, 2)).toBe(0);
    expect(leaseSize(1000, 100, 0)).toBe(100);
  });
});

describe('settling a hold', () => {
  function starterHolding(credits: number, at = jan20): { h: AccountHistory; allocation: ReturnType<typeof reserve>['allocation'] } {
    const h = AccountHistory.opened(plans.starter, jan15);
    const r = reserve(h.account, 'res_1', credits, at);
    h.record(r.decided);
    return { h, allocation: r.allocation };
  }

  it('given a hold of 1 for a fixed route, when the call answered 2xx, then the hold is the charge: nothing more is written (net -1)', () => {
    const { h, allocation } = starterHolding(1);
    const entries = h.then((a) => settle(a, 'res_1', allocation, 1, jan20, 'event:e1'));
    expect(entries).toEqual([]);
    expect(h.entries.map((e) => [e.type, e.amount, e.balanceAfter, e.bucketId])).toEqual([
      ['grant', 500, 500, 'allowance:2026-01'],
      ['reservation', -1, 499, 'allowance:2026-01'],
    ]);
    expect(h.account).toMatchObject({ balance: 499, allowanceSpent: 1 });
    expect(h.violations()).toEqual([]);
  });

  it('given a hold spanning two buckets, when the call costs exactly the hold, then nothing more is written and the buckets stay drained', () => {
    const h = AccountHistory.opened({ name: 'mixed', oneTimeCredits: 1, monthlyAllowance: 0 }, jan15);
    h.then((a) => grantTopUp(a, 10, null, 'top_up:a', jan15, 'admin:grant:a'));
    const r = reserve(h.account, 'res_1', 3, jan20);
    h.record(r.decided);
    expect(r.allocation).toEqual([{ bucketId: 'one_time:mixed', credits: 1 }, { bucketId: 'top_up:a', credits: 2 }]);
    expect(h.then((a) => settle(a, 'res_1', r.allocation, 3, jan20, 'event:e1'))).toEqual([]);
    expect(h.account).toMatchObject({ balance: 8 });
    expect(h.violations()).toEqual([]);
  });

  it('given a hold of 1, when the call answered non-2xx (priced 0), then only the release is written and nothing is spent', () => {
    const { h, allocation } = starterHolding(1);
    const entries = h.then((a) => settle(a, 'res_1', allocation, 0, jan20, 'event:e1'));
    expect(brief(entries)).toEqual([['release', 1, 'allowance:2026-01']]);
    expect(h.account).toMatchObject({ balance: 500, allowanceSpent: 0 });
  });

  it('given a hold of 3 entities of which 2 were charged meanwhile by a concurrent call, when settled for 1, then 3 are released and 1 charged', () => {
    const { h, allocation } = starterHolding(3);
    const entries = h.then((a) => settle(a, 'res_1', allocation, 1, jan20, 'event:e1'));
    expect(brief(entries)).toEqual([
      ['release', 3, 'allowance:2026-01'],
      ['charge', -1, 'allowance:2026-01'],
    ]);
    expect(h.account.balance).toBe(499);
    expect(h.violations()).toEqual([]);
  });

  it('given a hold smaller than the final price, when settled, then the hold\'s buckets pay first and the rest follows the spending order', () => {
    const h = AccountHistory.opened({ name: 'mixed', oneTimeCredits: 10, monthlyAllowance: 0 }, jan15);
    h.then((a) => grantTopUp(a, 10, utc('2026-01-25T00:00:00Z'), 'top_up:soon', jan15, 'admin:grant:a'));
    const r = reserve(h.account, 'res_1', 1, jan20);
    h.record(r.decided);
    // The hold came from the soonest-expiring top-up; then a sooner bucket does not exist, so order is top-up, one-time.
    const entries = h.then((a) => settle(a, 'res_1', r.allocation, 12, jan20, 'event:e1'));
    expect(brief(entries)).toEqual([
      ['release', 1, 'top_up:soon'],
      ['charge', -10, 'top_up:soon'],
      ['charge', -2, 'one_time:mixed'],
    ]);
    expect(h.violations()).toEqual([]);
  });

  it('given a hold whose price grew beyond the balance, when settled, then the uncovered part becomes debt', () => {
    const h = AccountHistory.opened(plans.free, jan15);
    const r = reserve(h.account, 'res_1', 50, jan20);
    h.record(r.decided);
    const entries = h.then((a) => settle(a, 'res_1', r.allocation, 53, jan20, 'event:e1'));
    expect(brief(entries)).toEqual([
      ['release', 50, 'one_time:free'],
      ['charge', -50, 'one_time:free'],
      ['charge', -3, null],
    ]);
    expect(h.account).toMatchObject({ balance: -3, debt: 3 });
    expect(h.violations()).toEqual([]);
  });

  it('given a hold taken from January\'s allowance, when the event is settled after the reset, then the held credits pay the call and the rest expires at once', () => {
    const { h, allocation } = starterHolding(2, lastMsOfJan);
    const entries = h.then((a) => settle(a, 'res_1', allocation, 1, feb1 + 5, 'event:e1'));
    expect(entries.map((e) => [e.type, e.amount, e.balanceAfter, e.bucketId])).toEqual([
      ['expiry', -498, 0, 'allowance:2026-01'],
      ['grant', 500, 500, 'allowance:2026-02'],
      ['release', 2, 502, 'allowance:2026-01'],
      ['charge', -1, 501, 'allowance:2026-01'],
      ['expiry', -1, 500, 'allowance:2026-01'],
    ]);
    expect(entries[4]?.detail).toEqual({ reservation_id: 'res_1', expired_while_held: true });
    expect(h.account).toMatchObject({ balance: 500, allowanceSpent: 0 });
    expect(h.violations()).toEqual([]);
  });

  it('given a hold of 1 and a debt made meanwhile, when the call settles 2xx, then balance and debt are exactly as before the hold plus the charge', () => {
    const h = AccountHistory.opened(plans.free, jan15);
    const r = reserve(h.account, 'res_1', 1, jan20);
    h.record(r.decided);
    h.then((a) => charge(a, 52, jan20, 'event:other'));
    expect(h.account).toMatchObject({ balance: -3, debt: 3 });
    h.then((a) => settle(a, 'res_1', r.allocation, 1, jan20, 'event:e1'));
    expect(h.account).toMatchObject({ balance: -3, debt: 3 });
    expect(h.violations()).toEqual([]);
  });
});

describe('releasing a hold', () => {
  it('given a hold from the allowance, when it is released (timeout), then the credits return to their bucket and stop counting as spent', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    const r = reserve(h.account, 'res_1', 5, jan20);
    h.record(r.decided);
    expect(h.account.allowanceSpent).toBe(5);
    const entries = h.then((a) => release(a, 'res_1', r.allocation, jan20 + 30_000, 'reservation:res_1:expired'));
    expect(entries.map((e) => [e.type, e.amount, e.cause, e.bucketId, e.detail])).toEqual([
      ['release', 5, 'reservation:res_1:expired', 'allowance:2026-01', { reservation_id: 'res_1' }],
    ]);
    expect(h.account).toMatchObject({ balance: 500, allowanceSpent: 0 });
  });

  it('given a hold whose bucket expired meanwhile, when released, then the credits come back and expire in the same decision', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    const r = reserve(h.account, 'res_1', 5, lastMsOfJan);
    h.record(r.decided);
    h.then((a) => rollForward(a, feb1));
    const entries = h.then((a) => release(a, 'res_1', r.allocation, feb10, 'reservation:res_1:expired'));
    expect(brief(entries)).toEqual([
      ['release', 5, 'allowance:2026-01'],
      ['expiry', -5, 'allowance:2026-01'],
    ]);
    expect(h.account.balance).toBe(500);
    expect(h.violations()).toEqual([]);
  });
});

describe('only an event\'s own occurred_at moves the month (SPEC §6)', () => {
  const feb1At5s = feb1 + 5_000;
  const lateJanuaryCall = utc('2026-01-31T23:59:58Z');

  it('given a hold taken on January 31, when the sweeper releases it on February 1, then no reset is written and a late January event is still charged from January\'s allowance', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 495, jan20, 'event:e1'));
    const r = reserve(h.account, 'res_1', 2, lastMsOfJan);
    h.record(r.decided);
    expect(brief(h.then((a) => release(a, 'res_1', r.allocation, feb1At5s, 'reservation:res_1:expired')))).toEqual([['release', 2, 'allowance:2026-01']]);
    expect(h.account).toMatchObject({ allowanceMonth: '2026-01', balance: 5 });
    expect(brief(h.then((a) => charge(a, 1, lateJanuaryCall, 'event:late')))).toEqual([['charge', -1, 'allowance:2026-01']]);
    // The first February event writes January's expiry (dated February 1) and February's allowance.
    const feb = h.then((a) => charge(a, 1, feb10, 'event:feb'));
    expect(feb.map((e) => [e.type, e.amount, e.bucketId, e.occurredAt])).toEqual([
      ['expiry', -4, 'allowance:2026-01', feb1],
      ['grant', 500, 'allowance:2026-02', feb1],
      ['charge', -1, 'allowance:2026-02', feb10],
    ]);
    expect(h.violations()).toEqual([]);
  });

  it('given an operator grant on February 1, when a January event arrives after it, then the grant wrote no reset and the event is charged from January\'s allowance', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 499, jan20, 'event:e1'));
    expect(brief(h.then((a) => grantTopUp(a, 10, null, 'top_up:k', feb1At5s, 'admin:grant:k')))).toEqual([['top_up', 10, 'top_up:k']]);
    expect(h.account.allowanceMonth).toBe('2026-01');
    expect(brief(h.then((a) => charge(a, 1, lateJanuaryCall, 'event:late')))).toEqual([['charge', -1, 'allowance:2026-01']]);
    expect(h.account.balance).toBe(10);
    expect(brief(h.then((a) => charge(a, 1, feb10, 'event:feb')))).toEqual([
      ['expiry', 0, 'allowance:2026-01'],
      ['grant', 500, 'allowance:2026-02'],
      ['charge', -1, 'allowance:2026-02'],
    ]);
    expect(h.violations()).toEqual([]);
  });

  it('given a hold whose bucket\'s expiry passed but no event rolled it, when released, then the credits return to it and the next later event expires them', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    const r = reserve(h.account, 'res_1', 5, jan20);
    h.record(r.decided);
    expect(brief(h.then((a) => release(a, 'res_1', r.allocation, feb10, 'reservation:res_1:expired')))).toEqual([['release', 5, 'allowance:2026-01']]);
    expect(brief(h.then((a) => rollForward(a, feb10)))).toEqual([
      ['expiry', -500, 'allowance:2026-01'],
      ['grant', 500, 'allowance:2026-02'],
    ]);
    expect(h.violations()).toEqual([]);
  });
});

describe('debt', () => {
  it('given 5 credits, when a call without a hold costs 8, then 5 are charged from the bucket and 3 become debt with a negative balance', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    h.then((a) => grantTopUp(a, 5, null, 'top_up:k1', jan15, 'admin:grant:k1'));
    const entries = h.then((a) => charge(a, 8, jan20, 'event:e1'));
    expect(entries.map((e) => [e.type, e.amount, e.balanceAfter, e.bucketId, e.detail])).toEqual([
      ['charge', -5, 0, 'top_up:k1', {}],
      ['charge', -3, -3, null, { debt: 3 }],
    ]);
    expect(h.account).toMatchObject({ balance: -3, debt: 3 });
    expect(h.violations()).toEqual([]);
  });

  it('given a debt of 3, when 10 credits are topped up, then the entry shows +10, the debt is paid and the bucket keeps 7', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    h.then((a) => charge(a, 3, jan15, 'event:e1'));
    const entries = h.then((a) => grantTopUp(a, 10, null, 'top_up:k2', jan20, 'admin:grant:k2'));
    expect(entries.map((e) => [e.type, e.amount, e.balanceAfter, e.detail])).toEqual([['top_up', 10, 7, { expires_at: null, paid_debt: 3 }]]);
    expect(h.account).toMatchObject({ balance: 7, debt: 0 });
    expect(remainingOf(h.account)).toEqual({ 'top_up:k2': 7 });
    expect(h.violations()).toEqual([]);
  });

  it('given a debt larger than a top-up, when topped up, then all of it pays debt and the balance stays negative', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    h.then((a) => charge(a, 8, jan15, 'event:e1'));
    h.then((a) => grantTopUp(a, 5, null, 'top_up:k', jan20, 'admin:grant:k'));
    expect(h.account).toMatchObject({ balance: -3, debt: 3 });
    expect(remainingOf(h.account)).toEqual({ 'top_up:k': 0 });
    expect(h.violations()).toEqual([]);
  });

  it('given a debt of 20 on starter, when the month resets, then the emptied allowance closes with an expiry of 0 and the new allowance pays the debt and counts it as spent', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 520, jan20, 'event:e1'));
    const entries = h.then((a) => rollForward(a, feb1));
    expect(entries.map((e) => [e.type, e.amount, e.balanceAfter])).toEqual([
      ['expiry', 0, -20],
      ['grant', 500, 480],
    ]);
    expect(h.account).toMatchObject({ debt: 0, allowanceSpent: 20 });
    expect(h.violations()).toEqual([]);
  });

  it('given a charge of 0 credits, when charged, then no entry is written', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    expect(h.then((a) => charge(a, 0, jan20, 'event:e1'))).toEqual([]);
  });
});

describe('top-ups', () => {
  it('given a top-up with an expiry, when that instant passes, then its unspent credits expire as an entry', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    const june = utc('2026-06-01T00:00:00Z');
    h.then((a) => grantTopUp(a, 10, june, 'top_up:k', jan15, 'admin:grant:k'));
    h.then((a) => charge(a, 4, jan20, 'event:e1'));
    expect(h.then((a) => rollForward(a, june - 1))).toEqual([]);
    expect(h.then((a) => rollForward(a, june)).map((e) => [e.type, e.amount, e.occurredAt])).toEqual([['expiry', -6, june]]);
    expect(h.violations()).toEqual([]);
  });

  it('given a top-up that would expire at or before it is granted, or a reused bucket id, when granted, then it throws', () => {
    const h = AccountHistory.opened(plans.standard, jan15);
    expect(() => grantTopUp(h.account, 10, jan15, 'top_up:k', jan15, 'c')).toThrow(RangeError);
    h.then((a) => grantTopUp(a, 10, null, 'top_up:k', jan15, 'c'));
    expect(() => grantTopUp(h.account, 10, null, 'top_up:k', jan20, 'c')).toThrow(/already exists/);
  });
});

describe('changing plan', () => {
  it('given starter with 200 spent mid-month, when moved to pro (5000), then this month\'s allowance becomes 4800 via one adjustment', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 200, jan20, 'event:e1'));
    const entries = h.then((a) => changePlan(a, plans.pro, jan20, 'admin:plan:pro'));
    expect(entries.map((e) => [e.type, e.amount, e.balanceAfter, e.bucketId, e.detail])).toEqual([
      ['adjustment', 4500, 4800, 'allowance:2026-01', { from_plan: 'starter', to_plan: 'pro', month: '2026-01' }],
    ]);
    expect(h.account.plan).toEqual(plans.pro);
    expect(h.violations()).toEqual([]);
  });

  it('given starter with 200 spent, when moved to a plan of 100 a month, then the allowance left drops to 0 (never below)', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 200, jan20, 'event:e1'));
    expect(brief(h.then((a) => changePlan(a, { name: 'tiny', oneTimeCredits: 0, monthlyAllowance: 100 }, jan20, 'c')))).toEqual([
      ['adjustment', -300, 'allowance:2026-01'],
    ]);
    expect(h.account.balance).toBe(0);
  });

  it('given free with 10 spent, when moved to starter mid-month, then this month\'s allowance is created in full and the one-time credits stay', () => {
    const h = AccountHistory.opened(plans.free, jan15);
    h.then((a) => charge(a, 10, jan20, 'event:e1'));
    expect(brief(h.then((a) => changePlan(a, plans.starter, jan20, 'admin:plan:starter')))).toEqual([['adjustment', 500, 'allowance:2026-01']]);
    expect(remainingOf(h.account)).toEqual({ 'one_time:free': 40, 'allowance:2026-01': 500 });
    expect(h.account.buckets.find((b) => b.kind === 'allowance')?.expiresAt).toBe(feb1);
    // Next month the starter allowance resets as usual.
    h.then((a) => rollForward(a, feb10));
    expect(remainingOf(h.account)).toEqual({ 'one_time:free': 40, 'allowance:2026-02': 500 });
    expect(h.violations()).toEqual([]);
  });

  it('given an org that had free, when it returns to free later, then the 50 one-time credits are not granted twice', () => {
    const h = AccountHistory.opened(plans.free, jan15);
    h.then((a) => changePlan(a, plans.starter, jan20, 'c1'));
    const back = h.then((a) => changePlan(a, plans.free, feb10, 'c2'));
    expect(back.filter((e) => e.bucketId === 'one_time:free')).toEqual([]);
    expect(remainingOf(h.account)['one_time:free']).toBe(50);
    expect(h.account.grantedOneTime).toEqual(['free']);
    expect(h.violations()).toEqual([]);
  });

  it('given a plan never held before with one-time credits, when moved to it, then they are granted once', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    const bonus = { name: 'bonus', oneTimeCredits: 25, monthlyAllowance: 500 };
    expect(brief(h.then((a) => changePlan(a, bonus, jan20, 'c1')))).toEqual([['grant', 25, 'one_time:bonus']]);
    h.then((a) => changePlan(a, plans.starter, jan20, 'c2'));
    expect(brief(h.then((a) => changePlan(a, bonus, jan20, 'c3')))).toEqual([]);
    expect(h.account.grantedOneTime).toEqual(['bonus']);
  });

  it('given starter moved to free and back within the month, when back on starter, then only the unspent part of the month returns', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 100, jan20, 'e1'));
    h.then((a) => changePlan(a, plans.free, jan20, 'c1'));
    h.then((a) => charge(a, 5, jan20, 'e2')); // from the one-time credits: not allowance
    h.then((a) => changePlan(a, plans.starter, jan20, 'c2'));
    expect(remainingOf(h.account)).toEqual({ 'allowance:2026-01': 400, 'one_time:free': 45 });
    expect(h.violations()).toEqual([]);
  });

  it('given a hold from the allowance while the plan changes, when the hold is released, then allowance left + spent equals the new allowance', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 90, jan20, 'e1'));
    const r = reserve(h.account, 'res_1', 10, jan20);
    h.record(r.decided);
    h.then((a) => changePlan(a, { name: 'small', oneTimeCredits: 0, monthlyAllowance: 200 }, jan20, 'c'));
    h.then((a) => release(a, 'res_1', r.allocation, jan20, 'reservation:res_1:released'));
    expect(h.account.allowanceSpent).toBe(90);
    expect(remainingOf(h.account)).toEqual({ 'allowance:2026-01': 110 });
    expect(h.violations()).toEqual([]);
  });

  it('given the same plan, when "changed" to it, then nothing is written', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 7, jan20, 'e1'));
    expect(h.then((a) => changePlan(a, plans.starter, jan20, 'c'))).toEqual([]);
  });

  it('given a free org that never had an allowance, when moved to starter in a later month, then that month\'s allowance is created with nothing spent', () => {
    const h = AccountHistory.opened(plans.free, jan15);
    const entries = h.then((a) => changePlan(a, plans.starter, utc('2026-03-05T00:00:00Z'), 'c'));
    expect(brief(entries)).toEqual([['adjustment', 500, 'allowance:2026-03']]);
    expect(h.account).toMatchObject({ allowanceMonth: '2026-03', allowanceSpent: 0 });
  });
});

describe('the deciders\' contract', () => {
  it('given a deep-frozen account, when every decider runs on it, then none mutates its input', () => {
    const opened = openAccount('acme', { name: 'mixed', oneTimeCredits: 5, monthlyAllowance: 5 }, jan15, 'c');
    const held = reserve(opened.account, 'r', 1, jan20);
    const account = deepFreeze(held.decided.account);
    const snapshot = structuredClone(account);
    const allocation = deepFreeze(held.allocation);
    expect(() => {
      rollForward(account, feb10);
      projectAccount(account, feb10);
      reserve(account, 'r', 3, feb10);
      settle(account, 'r', allocation, 1, feb10, 'e');
      release(account, 'r', allocation, jan20, 'e');
      charge(account, 20, feb10, 'e');
      grantTopUp(account, 5, null, 'top_up:x', feb10, 'g');
      changePlan(account, plans.pro, feb10, 'p');
    }).not.toThrow();
    expect(account).toEqual(snapshot);
  });

  it.each([
    ['a fractional charge', (a: Account) => charge(a, 1.5, jan20, 'e')],
    ['a negative charge', (a: Account) => charge(a, -1, jan20, 'e')],
    ['a NaN hold', (a: Account) => reserve(a, 'r', Number.NaN, jan20)],
    ['a negative top-up', (a: Account) => grantTopUp(a, -5, null, 'top_up:x', jan20, 'g')],
    ['a fractional allocation', (a: Account) => release(a, 'r', [{ bucketId: 'allowance:2026-01', credits: 0.5 }], jan20, 'e')],
    ['a NaN instant (unparsable occurred_at)', (a: Account) => charge(a, 1, Number.NaN, 'e')],
  ])('given %s, when decided, then it throws: credits are whole numbers', (_what, decide) => {
    const h = AccountHistory.opened(plans.starter, jan15);
    expect(() => decide(h.account)).toThrow(RangeError);
  });

  it('given a corrupted projection (balance not buckets - debt), when any decider runs, then it refuses to return it', () => {
    const { account } = openAccount('acme', plans.starter, jan15, 'c');
    expect(() => charge({ ...account, balance: 499 }, 1, jan20, 'e')).toThrow(/invariant/);
  });
});
