import { CheckName, CheckNames } from '@tollgate/operations';
import { report } from './audit';

describe('tollgate audit: the report', () => {
  const opts = { orgs: 'all' as const, checks: new Set<CheckName>(CheckNames), group: null, readTopic: false, holdGraceSeconds: 120 };
  const at = new Date('2026-12-01T00:00:00Z');

  it('prints one tab-separated line per violation, by check, and a summary naming the checks that failed', () => {
    const text = report(
      opts,
      {
        violations: [
          { check: 'usage', org: 'b', subject: 'usage_totals.total', expected: '3 (usage rows)', found: '4' },
          { check: 'sequence', org: 'a', subject: 'entry after seq 2', expected: 'seq 3', found: 'seq 4 (gap of 1)' },
        ],
        notes: [],
        unknownOrgs: [],
        orgs: 2,
        entries: 10,
        at,
      },
      1,
      'db',
    );
    const lines = text.trimEnd().split('\n').filter((l) => !l.startsWith('#'));
    expect(lines).toEqual([
      'check\torg\tsubject\texpected\tfound',
      'sequence\ta\tentry after seq 2\texpected=seq 3\tfound=seq 4 (gap of 1)',
      'usage\tb\tusage_totals.total\texpected=3 (usage rows)\tfound=4',
      'audit: 2 violation(s) in sequence, usage: 10 check(s), 2 org(s), 10 entries in 1.0 s (10 entries/s)',
    ]);
    expect(text).toContain('# balance: ok');
  });

  it('shows at most 20 lines per check and org, and counts the rest', () => {
    const violations = Array.from({ length: 25 }, (_, i) => ({ check: 'balance' as const, org: 'a', subject: `seq ${i}`, expected: '1', found: '2' }));
    const text = report(opts, { violations, notes: [], unknownOrgs: [], orgs: 1, entries: 25, at }, 1, 'db');
    expect(text.split('\n').filter((l) => l.startsWith('balance\ta\tseq'))).toHaveLength(20);
    expect(text).toContain('balance\ta\t... and 5 more');
    expect(text).toContain('# balance: 25 violation(s)');
  });
});
