import { parseArgs, report } from './audit';
import { CheckNames } from './audit/violation';

describe('npm run audit: arguments', () => {
  it('audits every org with every check by default, the hold grace being the publish window', () => {
    expect(parseArgs([], {})).toEqual({ orgs: 'all', checks: new Set(CheckNames), group: null, readTopic: false, holdGraceSeconds: 120 });
    expect(parseArgs([], { RESERVATION_PUBLISH_WINDOW_SECONDS: '300' })).toMatchObject({ holdGraceSeconds: 300 });
  });

  it('takes repeated --org and --check, --group and --hold-grace', () => {
    expect(parseArgs(['--org', 'a', '--org', 'b', '--check', 'charges', '--group', 'g', '--hold-grace', '5'], {})).toEqual({
      orgs: ['a', 'b'],
      checks: new Set(['charges']),
      group: 'g',
      readTopic: false,
      holdGraceSeconds: 5,
    });
  });

  it.each([
    [['--org'], '--org needs an org id'],
    [['--org', '--check'], '--org needs an org id'],
    [['--check', 'balances'], '--check needs one of'],
    [['--hold-grace', '-1'], '--hold-grace needs a whole number'],
    [['--all'], 'unknown argument "--all"'],
    [['--read-topic'], 'set KAFKA_BROKERS'],
  ])('refuses %j', (argv, message) => {
    expect(parseArgs(argv, {})).toContain(message);
  });
});

describe('npm run audit: the report', () => {
  const opts = { orgs: 'all' as const, checks: new Set(CheckNames), group: null, readTopic: false, holdGraceSeconds: 120 };
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
      'audit: 2 violation(s) in sequence, usage: 9 check(s), 2 org(s), 10 entries in 1.0 s (10 entries/s)',
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
