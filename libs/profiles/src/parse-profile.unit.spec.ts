import { stringify } from 'yaml';
import { parseProfile } from './parse-profile';
import { rejection } from './testing/rejection';

type Doc = Record<string, any>;

/** The smallest profile that passes; each case below breaks one thing in a fresh copy. */
function validDoc(): Doc {
  return {
    name: 'sample',
    base_path: '/api',
    identity: 'bearer',
    headers: { style: 'trackyard' },
    limits: [
      { name: 'minute', period_seconds: 60, limit: 5, subject: 'key' },
      { name: 'open_minute', period_seconds: 60, limit: 10, subject: 'ip', categories: ['open'] },
    ],
    plans: [{ name: 'free', one_time_credits: 50, monthly_allowance: 0, limits: { minute: 5 } }],
    default_plan: 'free',
    routes: [
      { method: 'POST', path: '/search', category: 'search', cost: { kind: 'fixed', credits: 1 } },
      { method: 'GET', path: '/items/:id', category: 'items', cost: { kind: 'per_entity', entities: 'data[].id', reaccess_days: 30 } },
      { method: 'GET', path: '/open/items', category: 'open', auth: 'none', cost: { kind: 'free' } },
      { method: 'GET', path: '/me', category: 'account', handler: 'me', cost: { kind: 'free' } },
      { method: 'GET', path: '/usage', category: 'account', handler: 'usage', cost: { kind: 'free' } },
    ],
    invalid_key_throttle: { attempts: 20, period_seconds: 60 },
    errors: {
      unauthorized: { error: 'unauthorized' },
      not_found: { error: 'not_found' },
      rate_limited: { error: 'rate_limited', retry_after: '{retry_after}' },
      insufficient_credits: { error: 'insufficient_credits', requested: '{requested}', shortfall: '{shortfall}' },
      upstream_unavailable: { error: 'upstream_unavailable' },
      locked_out: { error: 'locked_out', message: 'Wait {retry_after} s' },
      invalid_key_throttled: { error: 'throttled' },
    },
  };
}

const parse = (doc: Doc) => parseProfile(stringify(doc), 'sample.yaml');

describe('parseProfile', () => {
  it('given a valid profile, when parsed, then defaults are filled in and the source is the file', () => {
    const p = parse(validDoc());
    expect(p.source).toBe('sample.yaml');
    expect(p.credits).toEqual({ enforcement: 'strict', reservation_timeout_seconds: 120 });
    expect(p.headers.standard_headers).toBe(false);
    expect(p.routes[0]).toEqual({
      method: 'POST', path: '/search', category: 'search', auth: 'required', handler: 'proxy',
      cost: { kind: 'fixed', credits: 1 }, counts_against_limits: true,
    });
    // /me and /usage never count against limits unless the profile says so (SPEC §7).
    expect(p.routes[3]!.counts_against_limits).toBe(false);
    expect(p.lockout).toBeUndefined();
  });

  it('given an error naming a key, then the message is "file: key: problem"', () => {
    const doc = validDoc();
    doc.routes[1].cost.kind = 'fixd';
    const e = rejection(() => parse(doc));
    expect(e.message).toBe('sample.yaml: routes[1].cost.kind: must be one of free, fixed, per_entity (got "fixd")');
    expect(e.name).toBe('ProfileError');
  });

  it('given text that is not YAML, then the error names (yaml) and the line', () => {
    const e = rejection(() => parseProfile('name: a\nroutes: [\n', 'broken.yaml'));
    expect(e.file).toBe('broken.yaml');
    expect(e.key).toBe('(yaml)');
    expect(e.problem).toMatch(/line/);
  });

  it('given a duplicated YAML key, then it is rejected rather than silently overwritten', () => {
    const text = stringify(validDoc()) + 'default_plan: free\n';
    expect(rejection(() => parseProfile(text, 'dup.yaml')).key).toBe('(yaml)');
  });

  it('given a document that is a list, then the root is rejected', () => {
    const e = rejection(() => parseProfile(stringify([validDoc()]), 'sample.yaml'));
    expect([e.key, e.problem]).toEqual(['(root)', 'must be a mapping (got a list)']);
  });

  const broken: Array<[string, (d: Doc) => void, string, RegExp]> = [
    ['an unknown top-level key', (d) => (d.rate_limits = []), 'rate_limits', /unknown key/],
    ['a missing name', (d) => delete d.name, 'name', /is required/],
    ['a name with capitals', (d) => (d.name = 'Sample'), 'name', /lower-case/],
    ['a base path without a leading slash', (d) => (d.base_path = 'api'), 'base_path', /"\/"/],
    ['a base path with a trailing slash', (d) => (d.base_path = '/api/'), 'base_path', /trailing slash/],
    ['an unknown identity', (d) => (d.identity = 'basic'), 'identity', /one of bearer, trakt/],
    ['an unknown enforcement', (d) => (d.credits = { enforcement: 'lazy' }), 'credits.enforcement', /one of strict, eventual/],
    ['a zero reservation timeout', (d) => (d.credits = { reservation_timeout_seconds: 0 }), 'credits.reservation_timeout_seconds', /positive integer/],
    ['an unknown header style', (d) => (d.headers.style = 'github'), 'headers.style', /one of trackyard, beatpass, trakt, trace/],
    ['standard_headers as a string', (d) => (d.headers.standard_headers = 'yes'), 'headers.standard_headers', /true or false/],
    ['an unknown header key', (d) => (d.headers.colour = 'red'), 'headers.colour', /unknown key/],
    ['no routes', (d) => (d.routes = []), 'routes', /must not be empty/],
    ['a route path without a leading slash', (d) => (d.routes[0].path = 'search'), 'routes[0].path', /start with "\/"/],
    ['a route path with an empty segment', (d) => (d.routes[0].path = '/a//b'), 'routes[0].path', /empty segment/],
    ['a route path with a bad parameter', (d) => (d.routes[1].path = '/items/:1d'), 'routes[1].path', /not a parameter/],
    ['a route path naming a parameter twice', (d) => (d.routes[1].path = '/items/:id/:id'), 'routes[1].path', /twice/],
    ['an unknown method', (d) => (d.routes[0].method = 'FETCH'), 'routes[0].method', /one of GET, POST, PUT, PATCH, DELETE/],
    ['a lower-case method', (d) => (d.routes[0].method = 'post'), 'routes[0].method', /got "post"/],
    ['an unknown route key', (d) => (d.routes[0].price = 1), 'routes[0].price', /unknown key/],
    ['a route without a category', (d) => delete d.routes[0].category, 'routes[0].category', /is required/],
    ['a route without a cost', (d) => delete d.routes[0].cost, 'routes[0].cost', /is required/],
    ['an unknown auth', (d) => (d.routes[0].auth = 'optional'), 'routes[0].auth', /one of required, none/],
    ['an unknown handler', (d) => (d.routes[0].handler = 'admin'), 'routes[0].handler', /one of proxy, me, usage/],
    ['an unknown cost kind', (d) => (d.routes[0].cost.kind = 'fixd'), 'routes[0].cost.kind', /one of free, fixed, per_entity/],
    ['a fixed cost of zero', (d) => (d.routes[0].cost.credits = 0), 'routes[0].cost.credits', /positive integer/],
    ['a fractional fixed cost', (d) => (d.routes[0].cost.credits = 1.5), 'routes[0].cost.credits', /positive integer \(got 1.5\)/],
    ['a free cost with credits', (d) => (d.routes[2].cost.credits = 1), 'routes[2].cost.credits', /unknown key/],
    ['a per-entity cost without entities', (d) => delete d.routes[1].cost.entities, 'routes[1].cost.entities', /is required/],
    ['a per-entity cost without reaccess_days', (d) => delete d.routes[1].cost.reaccess_days, 'routes[1].cost.reaccess_days', /is required/],
    ['a malformed entity expression', (d) => (d.routes[1].cost.entities = 'data[0].id'), 'routes[1].cost.entities', /not an entity expression/],
    ['a malformed exclude expression', (d) => (d.routes[1].cost.exclude = 'root..id'), 'routes[1].cost.exclude', /not an entity expression/],
    ['a negative re-access window', (d) => (d.routes[1].cost.reaccess_days = -1), 'routes[1].cost.reaccess_days', />= 0/],
    ['a charged anonymous route', (d) => (d.routes[2].cost = { kind: 'fixed', credits: 1 }), 'routes[2].cost.kind', /auth: none/],
    ['an upstream path with an undefined parameter', (d) => (d.routes[1].upstream_path = '/v2/things/:thing'), 'routes[1].upstream_path', /:thing/],
    ['a duplicate method and path', (d) => d.routes.push({ method: 'POST', path: '/search', category: 'search', cost: { kind: 'free' } }), 'routes[5].path', /duplicates routes\[0\]/],
    ['two templates matching the same requests', (d) => d.routes.push({ method: 'GET', path: '/items/:other', category: 'items', cost: { kind: 'free' } }), 'routes[5].path', /duplicates routes\[1\]/],
    ['no /me route', (d) => d.routes.splice(3, 1), 'routes', /handler me/],
    ['no /usage route', (d) => d.routes.splice(4, 1), 'routes', /handler usage/],
    ['/me served at another path', (d) => (d.routes[3].path = '/account'), 'routes[3].path', /must be "\/me"/],
    ['/usage as a POST', (d) => (d.routes[4].method = 'POST'), 'routes[4].method', /must be GET/],
    ['a charged /me', (d) => (d.routes[3].cost = { kind: 'fixed', credits: 1 }), 'routes[3].cost.kind', /must be free/],
    ['an anonymous /usage', (d) => (d.routes[4].auth = 'none'), 'routes[4].auth', /must be required/],
    ['a login flag on /me', (d) => (d.routes[3].login = true), 'routes[3].login', /only a proxy route/],
    ['counts_against_limits as a number', (d) => (d.routes[0].counts_against_limits = 1), 'routes[0].counts_against_limits', /true or false/],
    ['limits as a mapping', (d) => (d.limits = { minute: 5 }), 'limits', /must be a list/],
    ['a duplicate limit name', (d) => d.limits.push({ name: 'minute', period_seconds: 3600, limit: 1, subject: 'key' }), 'limits[2].name', /duplicate limit "minute"/],
    ['a limit name with spaces', (d) => (d.limits[0].name = 'per minute'), 'limits[0].name', /letters, digits and _/],
    ['a zero period', (d) => (d.limits[0].period_seconds = 0), 'limits[0].period_seconds', /positive integer/],
    ['a negative limit', (d) => (d.limits[0].limit = -5), 'limits[0].limit', /positive integer/],
    ['a limit given as a string', (d) => (d.limits[0].limit = '5'), 'limits[0].limit', /positive integer \(got "5"\)/],
    ['an unknown subject', (d) => (d.limits[0].subject = 'org'), 'limits[0].subject', /one of key, user, application, ip, client/],
    ['an unknown limit method', (d) => (d.limits[0].methods = ['GET', 'HEAD']), 'limits[0].methods[1]', /one of GET/],
    ['a repeated limit method', (d) => (d.limits[0].methods = ['GET', 'GET']), 'limits[0].methods[1]', /duplicate method/],
    ['an empty method list', (d) => (d.limits[0].methods = []), 'limits[0].methods', /must not be empty/],
    ['a category no route has', (d) => (d.limits[1].categories = ['media']), 'limits[1].categories[0]', /no route has category "media"/],
    ['an unknown when', (d) => (d.limits[0].when = 'always'), 'limits[0].when', /one of user, no_user/],
    ['a user subject in a bearer profile', (d) => (d.limits[0].subject = 'user'), 'limits[0].subject', /needs identity trakt/],
    ['a when condition in a bearer profile', (d) => (d.limits[0].when = 'user'), 'limits[0].when', /needs identity trakt/],
    ['a user-only route in a bearer profile', (d) => (d.routes[0].auth = 'user'), 'routes[0].auth', /needs identity trakt/],
    ['a user limit only for calls without a user', (d) => { d.identity = 'trakt'; Object.assign(d.limits[0], { subject: 'user', when: 'no_user' }); }, 'limits[0].when', /only exists when a user token/],
    ['a per-key limit on anonymous routes only', (d) => (d.limits[1].subject = 'key'), 'limits[1].subject', /auth: none/],
    ['no plans', (d) => (d.plans = []), 'plans', /must not be empty/],
    ['a duplicate plan', (d) => d.plans.push({ name: 'free', one_time_credits: 0, monthly_allowance: 0 }), 'plans[1].name', /duplicate plan "free"/],
    ['a plan without monthly_allowance', (d) => delete d.plans[0].monthly_allowance, 'plans[0].monthly_allowance', /is required/],
    ['negative one-time credits', (d) => (d.plans[0].one_time_credits = -1), 'plans[0].one_time_credits', />= 0/],
    ['a plan limit for an unknown limit', (d) => (d.plans[0].limits.hour = 100), 'plans[0].limits.hour', /names no limit \(limits: minute, open_minute\)/],
    ['a zero plan limit', (d) => (d.plans[0].limits.minute = 0), 'plans[0].limits.minute', /positive integer/],
    ['an unknown plan key', (d) => (d.plans[0].credits = 5), 'plans[0].credits', /unknown key/],
    ['a default plan that does not exist', (d) => (d.default_plan = 'pro'), 'default_plan', /names no plan: "pro"/],
    ['no invalid-key throttle', (d) => delete d.invalid_key_throttle, 'invalid_key_throttle', /is required/],
    ['a zero invalid-key attempt count', (d) => (d.invalid_key_throttle.attempts = 0), 'invalid_key_throttle.attempts', /positive integer/],
    ['a lockout without a login route', (d) => (d.lockout = { max_failures: 5, window_seconds: 300, lockout_seconds: 900 }), 'lockout', /no route has login: true/],
    ['a lockout missing its duration', (d) => { d.routes[0].login = true; d.lockout = { max_failures: 5, window_seconds: 300 }; }, 'lockout.lockout_seconds', /is required/],
    ['a missing error body', (d) => delete d.errors.locked_out, 'errors.locked_out', /is required/],
    ['an unknown error body', (d) => (d.errors.forbidden = { error: 'forbidden' }), 'errors.forbidden', /unknown key/],
    ['an error body that is a string', (d) => (d.errors.not_found = 'not found'), 'errors.not_found', /must be a mapping/],
    ['a misspelt placeholder', (d) => (d.errors.rate_limited.retry_after = '{retry_afer}'), 'errors.rate_limited.retry_after', /uses \{retry_afer\}/],
    ['a placeholder the error does not supply', (d) => (d.errors.unauthorized.wait = '{retry_after}'), 'errors.unauthorized.wait', /available: none/],
    ['a placeholder nested in a list', (d) => (d.errors.insufficient_credits.details = [{ need: '{needed}' }]), 'errors.insufficient_credits.details[0].need', /uses \{needed\}/],
  ];

  it.each(broken.map(([what, breakIt, key, problem]) => ({ what, breakIt, key, problem })))(
    'given $what, then it is rejected at $key',
    ({ breakIt, key, problem }) => {
      const doc = validDoc();
      breakIt(doc);
      const e = rejection(() => parse(doc));
      expect({ file: e.file, key: e.key }).toEqual({ file: 'sample.yaml', key });
      expect(e.problem).toMatch(problem);
    },
  );

  it('given a trakt profile with user and application limits, then it is accepted', () => {
    const doc = validDoc();
    doc.identity = 'trakt';
    doc.limits = [
      { name: 'AUTHED_API_POST_LIMIT', period_seconds: 1, limit: 1, subject: 'user', methods: ['POST', 'PUT', 'DELETE'], when: 'user' },
      { name: 'UNAUTHED_API_GET_LIMIT', period_seconds: 300, limit: 1000, subject: 'application', methods: ['GET'], when: 'no_user' },
    ];
    doc.plans[0].limits = {};
    expect(parse(doc).limits.map((l) => l.when)).toEqual(['user', 'no_user']);
  });
});
