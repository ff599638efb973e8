import { applicableChecks, CallFacts, LimitSpec } from './applicable-checks';

const call = (over: Partial<CallFacts> = {}): CallFacts => ({
  method: 'GET', category: 'general', countsAgainstLimits: true,
  keyId: 'key_1', userId: null, applicationId: 'key_1', clientIp: '203.0.113.9', profile: 'p',
  ...over,
});
const names = (defs: LimitSpec[], facts: CallFacts) => applicableChecks(defs, facts, {}, {}).map((c) => c.rule.name);

describe('applicableChecks', () => {
  describe('subjects', () => {
    const limit = (subject: LimitSpec['subject']): LimitSpec[] => [{ name: 'l', period_seconds: 60, limit: 10, subject }];
    const keyOf = (subject: LimitSpec['subject'], facts: CallFacts) => applicableChecks(limit(subject), facts, {}, {}).map((c) => c.subjectKey);

    it('given a per-key limit, when a keyed call arrives, then it is counted for that key', () => {
      expect(keyOf('key', call())).toEqual(['p:l:key:key_1']);
    });

    it('given a per-key limit, when a call without a key arrives, then it is counted by client IP rather than escaping the limit', () => {
      expect(keyOf('key', call({ keyId: null, applicationId: null }))).toEqual(['p:l:key:ip:203.0.113.9']);
    });

    it('given a per-user limit, when a call carries a user, then it is counted for the user; without one the limit does not apply', () => {
      expect(keyOf('user', call({ userId: 'u_7' }))).toEqual(['p:l:user:u_7']);
      expect(keyOf('user', call())).toEqual([]);
    });

    it('given a per-application limit, when a call carries an application, then it is counted for it; without one it does not apply', () => {
      expect(keyOf('application', call({ applicationId: 'app_3' }))).toEqual(['p:l:application:app_3']);
      expect(keyOf('application', call({ applicationId: null }))).toEqual([]);
    });

    it('given a per-IP limit, when any call arrives, then it is counted for the client IP, key or not', () => {
      expect(keyOf('ip', call())).toEqual(['p:l:ip:203.0.113.9']);
    });

    it('given a per-client limit, when a call has a key it is counted for the key, and without one for the IP', () => {
      expect(keyOf('client', call())).toEqual(['p:l:client:key_1']);
      expect(keyOf('client', call({ keyId: null }))).toEqual(['p:l:client:ip:203.0.113.9']);
    });
  });

  describe('filters', () => {
    const trakt: LimitSpec[] = [
      { name: 'AUTHED_API_POST_LIMIT', period_seconds: 1, limit: 1, subject: 'user', methods: ['POST', 'PUT', 'DELETE'], when: 'user' },
      { name: 'AUTHED_API_GET_LIMIT', period_seconds: 300, limit: 1000, subject: 'user', methods: ['GET'], when: 'user' },
      { name: 'UNAUTHED_API_GET_LIMIT', period_seconds: 300, limit: 1000, subject: 'application', methods: ['GET'], when: 'no_user' },
    ];

    it('given method filters, when calls of each method arrive, then only the limits naming that method apply', () => {
      expect(names(trakt, call({ method: 'POST', userId: 'u' }))).toEqual(['AUTHED_API_POST_LIMIT']);
      expect(names(trakt, call({ method: 'delete', userId: 'u' }))).toEqual(['AUTHED_API_POST_LIMIT']);
      expect(names(trakt, call({ method: 'GET', userId: 'u' }))).toEqual(['AUTHED_API_GET_LIMIT']);
    });

    it('given when user / no_user, when calls with and without a user token arrive, then each gets only its bucket', () => {
      expect(names(trakt, call({ method: 'GET', userId: null }))).toEqual(['UNAUTHED_API_GET_LIMIT']);
      expect(names(trakt, call({ method: 'POST', userId: null }))).toEqual([]);
    });

    it('given category limits beside a global one, when a call of a category arrives, then the global and its category apply, in declared order', () => {
      const beatpass: LimitSpec[] = [
        { name: 'global', period_seconds: 60, limit: 300, subject: 'client' },
        { name: 'media', period_seconds: 60, limit: 30, subject: 'client', categories: ['media'] },
        { name: 'auth', period_seconds: 60, limit: 5, subject: 'ip', categories: ['auth'] },
      ];
      expect(names(beatpass, call({ category: 'media' }))).toEqual(['global', 'media']);
      expect(names(beatpass, call({ category: 'auth', keyId: null }))).toEqual(['global', 'auth']);
      expect(names(beatpass, call({ category: 'general' }))).toEqual(['global']);
    });

    it('given a call that does not count against limits (/me, /usage), when checks are built, then there are none', () => {
      expect(names(trakt, call({ method: 'GET', countsAgainstLimits: false }))).toEqual([]);
    });
  });

  describe('requests per window', () => {
    const defs: LimitSpec[] = [
      { name: 'minute', period_seconds: 60, limit: 5, subject: 'key' },
      { name: 'day', period_seconds: 86_400, limit: 50, subject: 'key' },
    ];
    const limits = (plan: Record<string, number>, overrides: Record<string, number>) =>
      applicableChecks(defs, call(), plan, overrides).map((c) => [c.rule.name, c.rule.periodSeconds, c.rule.limit]);

    it('given no plan number and no override, when checks are built, then the profile default applies', () => {
      expect(limits({}, {})).toEqual([['minute', 60, 5], ['day', 86_400, 50]]);
    });

    it('given a plan number, when checks are built, then it replaces the default', () => {
      expect(limits({ minute: 10, day: 1000 }, {})).toEqual([['minute', 60, 10], ['day', 86_400, 1000]]);
    });

    it('given an org override, when checks are built, then it wins over the plan, limit by limit', () => {
      expect(limits({ minute: 10, day: 1000 }, { minute: 2 })).toEqual([['minute', 60, 2], ['day', 86_400, 1000]]);
      expect(limits({}, { day: 0 })).toEqual([['minute', 60, 5], ['day', 86_400, 0]]);
    });

    it('given an override that is not a request count, when checks are built, then the plan number applies instead', () => {
      expect(limits({ minute: 10 }, { minute: Number.NaN, day: -1 })).toEqual([['minute', 60, 10], ['day', 86_400, 50]]);
    });
  });
});
