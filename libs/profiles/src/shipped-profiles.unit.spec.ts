import { renderErrorBody } from './error-bodies';
import { loadAllProfiles, profilesDir } from './load-profile';
import { Profile } from './profile.types';
import { RouteTable } from './route-table';

// Reads the shipped config/profiles files (read-only): what ships must satisfy the seeds.
const profiles = loadAllProfiles(profilesDir({}));
const get = (name: string): Profile => {
  const p = profiles.get(name);
  if (!p) throw new Error(`profile ${name} did not load`);
  return p;
};
const routeKeys = (p: Profile) => p.routes.map((r) => `${r.method} ${r.path}`);
const limitOf = (p: Profile, name: string) => p.limits.find((l) => l.name === name);
const render = (p: Profile, kind: keyof Profile['errors'], vars: Record<string, number>) => JSON.stringify(renderErrorBody(p.errors[kind], vars));

describe('shipped profiles', () => {
  it('given config/profiles, then exactly the four seed profiles load', () => {
    expect([...profiles.keys()].sort()).toEqual(['beatpass', 'trace', 'trackyard', 'trakt']);
  });

  it.each(['trackyard', 'beatpass', 'trakt', 'trace'])('given %s, then GET /me and GET /usage are free, authenticated and never count against limits', (name) => {
    const p = get(name);
    for (const handler of ['me', 'usage'] as const) {
      const r = p.routes.find((x) => x.handler === handler);
      expect(r).toMatchObject({ method: 'GET', path: `/${handler}`, auth: 'required', cost: { kind: 'free' }, counts_against_limits: false, category: 'account' });
      const base = p.base_path === '/' ? '' : p.base_path;
      expect(new RouteTable(p).match('GET', `${base}/${handler}`).route).toBe(r);
    }
    expect(p.headers).toEqual({ style: name, standard_headers: false });
    expect(p.invalid_key_throttle).toEqual({ attempts: 20, period_seconds: 60 });
  });

  describe('trackyard (seeds 000, 001)', () => {
    const p = get('trackyard');

    it('given the seed, then base path, identity and per-key minute and day limits match', () => {
      expect(p).toMatchObject({ base_path: '/api/external/v1', identity: 'bearer', default_plan: 'free', credits: { enforcement: 'strict' } });
      expect(p.limits).toEqual([
        { name: 'minute', period_seconds: 60, limit: 5, subject: 'key' },
        { name: 'day', period_seconds: 86400, limit: 50, subject: 'key' },
      ]);
    });

    it('given the tiers, then free is 50 one-time credits at 5/min and 50/day and starter 500 a month at 10/min and 1000/day', () => {
      expect(p.plans).toEqual([
        { name: 'free', one_time_credits: 50, monthly_allowance: 0, limits: { minute: 5, day: 50 } },
        { name: 'starter', one_time_credits: 0, monthly_allowance: 500, limits: { minute: 10, day: 1000 } },
        { name: 'pro', one_time_credits: 0, monthly_allowance: 5000, limits: { minute: 60, day: 10000 } },
      ]);
    });

    it('given search and download, then each costs 1 credit and counts against limits', () => {
      const table = new RouteTable(p);
      for (const path of ['/api/external/v1/search', '/api/external/v1/download-track']) {
        expect(table.match('POST', path).route).toMatchObject({ cost: { kind: 'fixed', credits: 1 }, counts_against_limits: true, auth: 'required' });
      }
      expect(routeKeys(p)).toEqual(['POST /search', 'POST /download-track', 'GET /me', 'GET /usage']);
    });
  });

  describe('beatpass (seed 002)', () => {
    const p = get('beatpass');

    it('given the seed, then the global limit is 300 per minute per client and every category limit is stricter', () => {
      expect(limitOf(p, 'global')).toEqual({ name: 'global', period_seconds: 60, limit: 300, subject: 'client' });
      for (const name of ['media', 'analytics', 'write', 'auth']) {
        const l = limitOf(p, name)!;
        expect(l).toMatchObject({ period_seconds: 60, categories: [name] });
        expect(l.limit).toBeLessThan(300);
      }
      expect(limitOf(p, 'auth')!.subject).toBe('ip');
      expect(p.limits.map((l) => l.name)).toEqual(['global', 'media', 'analytics', 'write', 'auth']);
    });

    it('given the example-upstream routes, then each has its category and costs nothing', () => {
      const byCategory = (c: string) => p.routes.filter((r) => r.category === c).map((r) => `${r.method} ${r.path}`);
      expect(byCategory('general')).toEqual(['GET /tracks', 'GET /tracks/:id', 'GET /artists', 'GET /albums', 'GET /search', 'GET /genres']);
      expect(byCategory('media')).toEqual(['GET /tracks/:id/stream', 'GET /images/:id']);
      expect(byCategory('analytics')).toEqual(['GET /analytics/plays']);
      expect(byCategory('write')).toEqual(['POST /uploads', 'POST /purchases', 'POST /messages']);
      expect(byCategory('auth')).toEqual(['POST /auth/login']);
      expect(p.routes.every((r) => r.cost.kind === 'free')).toBe(true);
      expect(p.plans).toEqual([{ name: 'standard', one_time_credits: 0, monthly_allowance: 0, limits: {} }]);
    });

    it('given login, then it is anonymous, counts failures and locks out after repeated failures', () => {
      expect(new RouteTable(p).match('POST', '/api/v1/auth/login').route).toMatchObject({ auth: 'none', login: true, counts_against_limits: true });
      expect(p.lockout).toEqual({ max_failures: 5, window_seconds: 300, lockout_seconds: 900 });
    });
  });

  describe('trakt (seed 003)', () => {
    const p = get('trakt');

    it('given the seed table, then the three buckets have its names, scopes, verbs and numbers', () => {
      expect(p).toMatchObject({ base_path: '/', identity: 'trakt' });
      expect(p.limits).toEqual([
        { name: 'AUTHED_API_POST_LIMIT', period_seconds: 1, limit: 1, subject: 'user', methods: ['POST', 'PUT', 'DELETE'], when: 'user' },
        { name: 'AUTHED_API_GET_LIMIT', period_seconds: 300, limit: 1000, subject: 'user', methods: ['GET'], when: 'user' },
        { name: 'UNAUTHED_API_GET_LIMIT', period_seconds: 300, limit: 1000, subject: 'application', methods: ['GET'], when: 'no_user' },
      ]);
    });

    it('given the example-upstream routes, then they are served at the root and /shows/trending is not read as an id', () => {
      expect(routeKeys(p).slice(0, 7)).toEqual(['GET /shows/trending', 'GET /shows/:id', 'GET /movies/:id', 'GET /search/:type', 'POST /sync/history', 'POST /checkin', 'DELETE /checkin']);
      expect(new RouteTable(p).match('GET', '/shows/trending').route?.path).toBe('/shows/trending');
    });
  });

  describe('trace (seed 004)', () => {
    const p = get('trace');

    it('given the seed, then 600/min and 100,000/day per key, and a lower per-IP ceiling on /v1/open/*', () => {
      expect(p).toMatchObject({ base_path: '/v1', identity: 'bearer', credits: { enforcement: 'strict' } });
      expect(limitOf(p, 'minute')).toMatchObject({ period_seconds: 60, limit: 600, subject: 'key' });
      expect(limitOf(p, 'day')).toMatchObject({ period_seconds: 86400, limit: 100000, subject: 'key' });
      const open = limitOf(p, 'open_minute')!;
      expect(open).toMatchObject({ subject: 'ip', categories: ['open'] });
      expect(open.limit).toBeLessThan(600);
      expect(open.limit * (86400 / open.period_seconds)).toBeLessThan(100000);
    });

    it('given credits come from top-ups, then the only plan grants none', () => {
      expect(p.plans).toEqual([{ name: 'standard', one_time_credits: 0, monthly_allowance: 0, limits: {} }]);
    });

    it('given the per-endpoint charging table, then each company route bills its companies with a 30-day re-access window', () => {
      const table = new RouteTable(p);
      const cost = (path: string) => table.match('GET', path).route?.cost;
      expect(cost('/v1/companies')).toEqual({ kind: 'per_entity', entities: 'data[].id', reaccess_days: 30 });
      expect(cost('/v1/companies/c_1')).toEqual({ kind: 'per_entity', entities: 'id', reaccess_days: 30 });
      expect(cost('/v1/companies/c_1/partnerships')).toEqual({ kind: 'per_entity', entities: 'data[].partner.id', reaccess_days: 30 });
      expect(cost('/v1/companies/c_1/partnerships/graph')).toEqual({ kind: 'per_entity', entities: 'nodes[].id', exclude: 'root.id', reaccess_days: 30 });
      expect(table.match('GET', '/v1/open/companies').route).toMatchObject({ auth: 'none', cost: { kind: 'free' }, category: 'open' });
    });

    it('given a 429 and a 402, then the bodies are byte-exact to the seed', () => {
      const throttled = '{"error":"operational_rate_limit_exceeded","message":"Too many requests. Please wait before retrying.","retry_after_seconds":30}';
      expect(render(p, 'rate_limited', { retry_after: 30 })).toBe(throttled);
      expect(render(p, 'invalid_key_throttled', { retry_after: 30 })).toBe(throttled);
      expect(render(p, 'insufficient_credits', { requested: 50, shortfall: 12 })).toBe(
        '{"error":"credit_exhausted","message":"Insufficient credits to complete this request.","requested":50,"shortfall":12}',
      );
    });
  });

  it.each(['trackyard', 'beatpass', 'trakt'])('given %s, then its 429 and 402 bodies carry the numbers as numbers', (name) => {
    const p = get(name);
    const throttled = JSON.parse(render(p, 'rate_limited', { retry_after: 17 })) as Record<string, unknown>;
    expect(JSON.stringify(throttled)).toContain('17');
    expect(Object.values(throttled).some((v) => typeof v === 'string' && v.includes('{'))).toBe(false);
    const broke = JSON.parse(render(p, 'insufficient_credits', { requested: 1, shortfall: 1 })) as Record<string, unknown>;
    expect(Object.values(broke).some((v) => typeof v === 'string' && v.includes('{'))).toBe(false);
  });
});
