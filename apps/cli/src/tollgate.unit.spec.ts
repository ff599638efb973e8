import { actorOf, CliError, describeCommand, ExitCode } from './tollgate';

describe('who the CLI records as the actor', () => {
  it('is --actor when given, else $USER, else $LOGNAME, else nobody (metering records admin-token)', () => {
    expect(actorOf('alice', { USER: 'root' })).toBe('alice');
    expect(actorOf(undefined, { USER: 'bob', LOGNAME: 'carol' })).toBe('bob');
    expect(actorOf(undefined, { LOGNAME: 'carol' })).toBe('carol');
    expect(actorOf(undefined, {})).toBeUndefined();
  });

  it('refuses an --actor no header can carry, and ignores such a $USER', () => {
    for (const bad of ['', 'a\nb', 'x'.repeat(129), '名前']) {
      expect(() => actorOf(bad, {})).toThrow(CliError);
      try {
        actorOf(bad, {});
      } catch (e) {
        expect((e as CliError).code).toBe(ExitCode.usage);
      }
    }
    expect(actorOf(undefined, { USER: 'a\u0007b' })).toBeUndefined();
  });
});

describe('a recorded command in one line', () => {
  it.each([
    [{ command: 'create-org', input: { id: 'acme', name: 'Acme', plan: 'free', profile: 'trackyard' } }, 'plan free, name "Acme"'],
    [{ command: 'change-plan', input: { plan: 'pro' }, result: { from_plan: 'starter' } }, 'plan starter -> pro'],
    [{ command: 'set-limits', input: { limits: { minute: 7, day: 70 } } }, 'minute=7 day=70'],
    [{ command: 'set-limits', input: { limits: {} } }, '(plan defaults)'],
    [{ command: 'create-key', input: { name: 'ci', kind: 'key' }, result: { key_id: 'key_1' } }, 'key_1 (key, "ci")'],
    [{ command: 'revoke-key', input: { key_id: 'key_1' }, result: { already_revoked: true } }, 'key_1 (already revoked)'],
    [{ command: 'grant-credits', input: { amount: 25, reason: 'goodwill', expires_at: null } }, '+25 "goodwill"'],
    [{ command: 'grant-credits', input: { amount: 5, reason: 'trial', expires_at: '2027-01-01T00:00:00.000Z' } }, '+5 "trial", expires 2027-01-01T00:00:00.000Z'],
  ])('%j reads "%s"', (command, line) => {
    expect(describeCommand(command)).toBe(line);
  });
});
