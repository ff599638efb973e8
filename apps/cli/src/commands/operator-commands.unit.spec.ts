import { parseFlags } from '../args';
import { run } from '../tollgate';
import { flags as auditFlags, parseAuditArgs } from './audit';
import { flags as dlqFlags, parseDlqArgs } from './dlq';
import { flags as replayFlags, parseReplayArgs } from './replay';

const common = { json: { type: 'boolean' }, help: { type: 'boolean' } } as const;
const replayArgs = (argv: string[]) => {
  const { values, positionals } = parseFlags(argv, { ...replayFlags, ...common });
  return parseReplayArgs(values, positionals);
};
const auditArgs = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const { values, positionals } = parseFlags(argv, { ...auditFlags, ...common });
  return parseAuditArgs(values, positionals, env);
};
const dlqArgs = (argv: string[]) => {
  const { values, positionals } = parseFlags(argv, { ...dlqFlags, ...common });
  return parseDlqArgs(values, positionals);
};

/** Runs `tollgate ...argv` in-process, collecting what it prints. */
async function tollgate(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(argv, { out: (s) => (out += s), err: (s) => (err += s), env: {}, sleep: async () => undefined, stopped: new Promise(() => undefined) });
  return { code, out, err };
}

describe('tollgate replay: arguments', () => {
  it('takes --source kafka with --all or --org, and --profile FILE with it', () => {
    expect(replayArgs(['--all', '--source', 'kafka'])).toEqual({ orgs: 'all', source: 'kafka', apply: false, profile: null, json: false });
    expect(replayArgs(['--org', 'a', '--org', 'b', '--source', 'kafka', '--profile', 'x.yaml'])).toEqual({ orgs: ['a', 'b'], source: 'kafka', apply: false, profile: 'x.yaml', json: false });
    expect(replayArgs(['--all'])).toEqual({ orgs: 'all', source: 'ledger', apply: false, profile: null, json: false });
    expect(replayArgs(['--org', 'a', '--all'])).toEqual({ orgs: 'all', source: 'ledger', apply: false, profile: null, json: false });    expect(replayArgs(['--all', '--json'])).toMatchObject({ orgs: 'all', json: true });
  });

  it.each([
    [['--all', '--source', 'kafka', '--profile'], '--profile needs a profile file'],
    [['--all', '--source', 'kafka', '--apply'], 'use it with --source ledger'],
    [['--all', '--apply', '--profile', 'x.yaml'], 'it does not go with --apply'],
    [['--source', 'kafka'], 'say which ledgers: --all or --org ID'],
    [['--all', '--source', 'redis'], '--source must be ledger or kafka'],
    [['--org'], '--org needs an org id'],
    [['--org', '--apply'], '--org needs an org id'],
    [['--all', '--bogus'], 'unknown argument "--bogus"'],
    [['--all', 'extra'], 'unknown argument "extra"'],
  ])('refuses %j: %s', (argv, message) => {
    expect(() => replayArgs(argv)).toThrow(message);
  });
});

describe('tollgate audit: arguments', () => {
  it('audits every org with every check by default, the hold grace being the publish window', () => {
    expect(auditArgs([])).toMatchObject({ orgs: 'all', group: null, readTopic: false, holdGraceSeconds: 120 });
    expect(auditArgs([]).checks.size).toBe(10);
    expect(auditArgs([], { RESERVATION_PUBLISH_WINDOW_SECONDS: '300' })).toMatchObject({ holdGraceSeconds: 300 });
  });

  it('takes repeated --org and --check, --group and --hold-grace', () => {
    expect(auditArgs(['--org', 'a', '--org', 'b', '--check', 'charges', '--group', 'g', '--hold-grace', '5'])).toEqual({
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
    [['--hold-grace', 'soon'], '--hold-grace needs a whole number'],
    [['--all'], 'unknown argument "--all"'],
    [['--read-topic'], 'set KAFKA_BROKERS'],
  ])('refuses %j: %s', (argv, message) => {
    expect(() => auditArgs(argv)).toThrow(message);
  });
});

describe('tollgate dlq: arguments', () => {
  it('reads list and replay selections', () => {
    expect(dlqArgs(['list'])).toEqual({ command: 'list', pending: false, json: false });
    expect(dlqArgs(['list', '--json', '--pending'])).toEqual({ command: 'list', pending: true, json: true });
    expect(dlqArgs(['replay', '--all'])).toEqual({ command: 'replay', selection: { pending: true } });
    expect(dlqArgs(['replay', '--id', '7', '--id', '9'])).toEqual({ command: 'replay', selection: { ids: ['7', '9'], offsets: undefined, partition: undefined } });
    expect(dlqArgs(['replay', '--offset', '42', '--partition', '3'])).toEqual({ command: 'replay', selection: { ids: undefined, offsets: ['42'], partition: 3 } });
  });

  it.each([
    [[], 'say list or replay'],
    [['purge'], 'unknown command "purge"'],
    [['replay'], 'say which dead letters: --all, --id ID or --offset N'],
    [['replay', '--id'], '--id needs a whole number'],
    [['replay', '--id', 'x'], '--id needs a whole number'],
    [['replay', '--all', '--id', '1'], '--all replays every pending dead letter'],
    [['replay', '--id', '1', '--partition', '0'], '--partition narrows --offset: give an --offset too'],
    [['list', '--all'], 'unknown argument "--all"'],
    [['replay', '--all', '--pending'], 'unknown argument "--pending"'],
  ])('refuses %j: %s', (argv, message) => {
    expect(() => dlqArgs(argv)).toThrow(message);
  });
});

describe('tollgate replay|audit|dlq: help and usage errors', () => {
  it.each(['replay', 'audit', 'dlq'])('tollgate %s --help prints its usage on stdout and exits 0', async (command) => {
    for (const help of ['--help', '-h']) {
      const res = await tollgate(command, help);
      expect(res.code).toBe(0);
      expect(res.out).toContain(`usage: tollgate ${command} `);
      expect(res.out).toContain(`npm run ${command} -- ... is the same`);
      expect(res.out).toMatch(/Exit codes: 0 /);
      expect(res.err).toBe('');
    }
  });

  it.each([
    ['replay', ['--all', '--bogus'], 'replay: unknown argument "--bogus"'],
    ['replay', ['--org'], 'replay: --org needs an org id'],
    ['audit', ['--check', 'nope'], 'audit: --check needs one of'],
    ['audit', ['--hold-grace'], 'audit: --hold-grace needs a whole number of seconds'],
    ['dlq', ['list', '--bogus'], 'dlq: unknown argument "--bogus"'],
    ['dlq', ['replay', '--id', 'x'], 'dlq: --id needs a whole number'],
  ])('tollgate %s %j: the shared usage error, exit 2, nothing run', async (command, argv, message) => {
    const res = await tollgate(command, ...argv);
    expect(res.code).toBe(2);
    expect(res.err.startsWith(message)).toBe(true);
    expect(res.err).toContain(`usage: tollgate ${command} `);
    expect(res.out).toBe('');
  });

  it('lists the operator programs and the one set of exit codes in tollgate --help', async () => {
    const res = await tollgate('--help');
    expect(res.code).toBe(0);
    for (const command of ['replay (--all', 'audit [--org', 'dlq list', 'dlq replay']) expect(res.out).toContain(command);
    expect(res.out).toContain('130 interrupted');
  });

  it('gives an unknown flag to the admin commands the same usage error and exit code', async () => {
    const res = await tollgate('orgs', 'list', '--bogus');
    expect(res.code).toBe(2);
    expect(res.err).toBe('tollgate: unknown argument "--bogus"; see tollgate help\n');
  });
});
