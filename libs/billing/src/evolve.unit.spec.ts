import { charge, openAccount } from './account';
import { emptyAccount, evolve, foldAccount, LedgerFoldError } from './evolve';
import { AccountHistory, deepFreeze, plans, randomHistory, utc } from './testing/account-builder';
import { LedgerEntryDraft } from './types';

const jan15 = utc('2026-01-15T10:00:00Z');
const jan20 = utc('2026-01-20T10:00:00Z');
const feb10 = utc('2026-02-10T10:00:00Z');

const grant = (over: Partial<LedgerEntryDraft> = {}): LedgerEntryDraft => ({
  orgId: 'acme',
  seq: 1,
  type: 'grant',
  amount: 500,
  balanceAfter: 500,
  cause: 'admin:create-org:acme',
  occurredAt: jan15,
  bucketId: 'allowance:2026-01',
  detail: { plan: 'starter', month: '2026-01' },
  ...over,
});

describe('the account is the fold of its ledger', () => {
  it('given no entries, when folded, then the account is empty at seq 1 with the plan it was given', () => {
    expect(foldAccount('acme', plans.standard, [])).toEqual(emptyAccount('acme', plans.standard));
  });

  it('given an entry written before expires_at was recorded, when folded, then the allowance expires at the next month\'s start', () => {
    expect(foldAccount('acme', plans.starter, [grant()]).buckets).toEqual([
      { id: 'allowance:2026-01', kind: 'allowance', expiresAt: utc('2026-02-01T00:00:00Z'), remaining: 500 },
    ]);
  });

  it('given an account and an entry, when evolved, then the input is untouched and the result has the entry applied', () => {
    const before = deepFreeze(foldAccount('acme', plans.starter, [grant()]));
    const after = evolve(before, { ...grant(), seq: 2, type: 'charge', amount: -7, balanceAfter: 493, cause: 'event:e1', detail: {} });
    expect(after).toMatchObject({ balance: 493, nextSeq: 3, allowanceSpent: 7, buckets: [{ remaining: 493 }] });
    expect(before).toMatchObject({ balance: 500, nextSeq: 2, allowanceSpent: 0 });
  });

  it('given an emptied allowance, when the month resets, then its expiry of 0 closes the bucket in the fold as in the projection', () => {
    const h = AccountHistory.opened(plans.starter, jan15);
    h.then((a) => charge(a, 500, jan20, 'event:e1'));
    h.then((a) => charge(a, 1, feb10, 'event:e2'));
    expect(h.folded().buckets.map((b) => b.id)).toEqual(['allowance:2026-02']);
    expect(h.entries.filter((e) => e.type === 'expiry').map((e) => [e.amount, e.bucketId])).toEqual([[0, 'allowance:2026-01']]);
  });

  it.each([
    ['a gap in seq', [grant(), grant({ seq: 3, type: 'charge', amount: -1, balanceAfter: 499, detail: {} })], /expected seq 2/],
    ['a balance_after that is not the running balance', [grant({ balanceAfter: 501 })], /balance_after 501 != 0 \+ 500/],
    ['an expiry of more than the bucket holds', [grant(), grant({ seq: 2, type: 'expiry', amount: -501, balanceAfter: -1, detail: {} })], /expires 501 of allowance:2026-01, which holds 500/],
    ['a hold taking more than its bucket holds', [grant(), grant({ seq: 2, type: 'reservation', amount: -501, balanceAfter: -1, detail: {} })], /takes 501/],
    ['a hold into debt', [grant({ seq: 1, type: 'reservation', amount: -1, balanceAfter: -1, bucketId: null, detail: {} })], /never creates debt/],
    ['the same allowance granted twice', [grant(), grant({ seq: 2, balanceAfter: 1000 })], /already open/],
    ['an entry of another org', [grant({ orgId: 'other' })], /belongs to other/],
    ['a charge of 0', [grant({ type: 'charge', amount: 0, balanceAfter: 0 })], /a charge of 0 credits/],
  ])('given %s, when folded, then it throws a LedgerFoldError naming the org and seq', (_what, entries, message) => {
    expect(() => foldAccount('acme', plans.starter, entries)).toThrow(LedgerFoldError);
    expect(() => foldAccount('acme', plans.starter, entries)).toThrow(message);
  });

  it.each([1, 7, 42, 1234, 99_991])('given 1,500 random commands (seed %i) over months, when each is decided, then fold(entries) equals the projection after every step', (seed) => {
    // AccountHistory.record compares foldAccount(entries) with the returned account after every decision.
    const h = randomHistory(seed, 1500);
    expect(h.violations()).toEqual([]);
    expect(h.folded()).toEqual(h.account);
    // The history exercised every kind of entry, debt and holds whose bucket expired while held.
    expect(new Set(h.entries.map((e) => e.type))).toEqual(new Set(['grant', 'expiry', 'reservation', 'release', 'charge', 'top_up', 'adjustment']));
    expect(h.entries.some((e) => e.bucketId === null)).toBe(true);
  });

  it('given an org opened with both kinds of plan credits, when folded, then grantedOneTime and the current allowance come from the grants', () => {
    const opened = openAccount('acme', { name: 'both', oneTimeCredits: 20, monthlyAllowance: 100 }, jan15, 'c');
    expect(foldAccount('acme', opened.account.plan, opened.entries)).toEqual(opened.account);
    expect(opened.account).toMatchObject({ grantedOneTime: ['both'], allowanceMonth: '2026-01' });
  });
});
