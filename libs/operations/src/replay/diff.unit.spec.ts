import { Account } from '@tollgate/billing';
import { diffAccount, formatDifference } from './diff';

describe('diffAccount: the live account against the fold of its ledger, field by field', () => {
  const may = Date.parse('2026-06-01T00:00:00Z');
  const folded: Account = {
    orgId: 'acme',
    plan: { name: 'starter', oneTimeCredits: 0, monthlyAllowance: 500 },
    balance: 510,
    debt: 0,
    nextSeq: 9,
    allowanceMonth: '2026-05',
    allowanceSpent: 40,
    grantedOneTime: ['free'],
    buckets: [
      { id: 'allowance:2026-05', kind: 'allowance', expiresAt: may, remaining: 460 },
      { id: 'top_up:k1', kind: 'top_up', expiresAt: null, remaining: 50 },
    ],
  };

  it('finds nothing when they agree, whatever the order of the buckets', () => {
    expect(diffAccount({ ...folded, buckets: [...folded.buckets].reverse() }, folded)).toEqual([]);
  });

  it('names each differing scalar with both values', () => {
    const live = { ...folded, balance: 517, debt: 3, nextSeq: 8, allowanceMonth: null, allowanceSpent: 41, grantedOneTime: [] };
    expect(diffAccount(live, folded).map(formatDifference)).toEqual([
      'acme\tbalance\tlive=517\treplayed=510',
      'acme\tdebt\tlive=3\treplayed=0',
      'acme\tnext_seq\tlive=8\treplayed=9',
      'acme\tallowance_month\tlive=none\treplayed=2026-05',
      'acme\tallowance_spent\tlive=41\treplayed=40',
      'acme\tgranted_one_time\tlive=none\treplayed=free',
    ]);
  });

  it("names a bucket's kind, expiry and remaining, and buckets on one side only", () => {
    const live: Account = {
      ...folded,
      buckets: [
        { id: 'allowance:2026-05', kind: 'top_up', expiresAt: null, remaining: 461 },
        { id: 'top_up:ghost', kind: 'top_up', expiresAt: null, remaining: 7 },
      ],
    };
    expect(diffAccount(live, folded).map(formatDifference)).toEqual([
      'acme\tbucket allowance:2026-05 kind\tlive=top_up\treplayed=allowance',
      'acme\tbucket allowance:2026-05 expires_at\tlive=never\treplayed=2026-06-01T00:00:00.000Z',
      'acme\tbucket allowance:2026-05 remaining\tlive=461\treplayed=460',
      'acme\tbucket top_up:ghost\tlive=top_up/never/7\treplayed=missing',
      'acme\tbucket top_up:k1\tlive=missing\treplayed=top_up/never/50',
    ]);
  });

  it('reports a ledger without its account row', () => {
    expect(diffAccount(null, folded).map(formatDifference)).toEqual(['acme\taccount\tlive=missing\treplayed=8 entries, balance 510']);
  });
});
