import { canonicalPath, expandUpstreamPath, RouteTable } from './route-table';
import { Profile, RouteDefinition } from './profile.types';

function route(method: RouteDefinition['method'], path: string): RouteDefinition {
  return { method, path, category: 'general', auth: 'required', handler: 'proxy', cost: { kind: 'free' }, counts_against_limits: true };
}

/** Only what RouteTable reads: the base path and the routes. */
function profile(basePath: string, routes: RouteDefinition[]): Profile {
  return { base_path: basePath, routes } as Profile;
}

const trace = new RouteTable(
  profile('/v1', [
    route('GET', '/companies'),
    route('GET', '/companies/:identifier'),
    route('GET', '/companies/:identifier/partnerships'),
    route('GET', '/companies/:identifier/partnerships/graph'),
    route('GET', '/open/companies'),
  ]),
);

const trakt = new RouteTable(
  profile('/', [route('GET', '/shows/:id'), route('GET', '/shows/trending'), route('POST', '/checkin'), route('DELETE', '/checkin'), route('GET', '/me')]),
);

const found = (m: ReturnType<RouteTable['match']>) => (m.route ? { path: m.route.path, method: m.route.method, params: 'params' in m ? m.params : null } : m);

describe('RouteTable', () => {
  it('given a full path under the base path, then the route matches and its parameters are bound', () => {
    expect(found(trace.match('GET', '/v1/companies/c_0042'))).toEqual({ path: '/companies/:identifier', method: 'GET', params: { identifier: 'c_0042' } });
    expect(found(trace.match('GET', '/v1/companies'))).toEqual({ path: '/companies', method: 'GET', params: {} });
  });

  it('given nested templates, then each depth matches its own route', () => {
    expect(found(trace.match('GET', '/v1/companies/acme/partnerships'))).toMatchObject({ path: '/companies/:identifier/partnerships', params: { identifier: 'acme' } });
    expect(found(trace.match('GET', '/v1/companies/acme/partnerships/graph'))).toMatchObject({ path: '/companies/:identifier/partnerships/graph' });
  });

  it('given a literal and a parameter at the same position, then the literal wins whatever the declaration order', () => {
    expect(found(trakt.match('GET', '/shows/trending'))).toMatchObject({ path: '/shows/trending', params: {} });
    expect(found(trakt.match('GET', '/shows/breaking-bad'))).toMatchObject({ path: '/shows/:id', params: { id: 'breaking-bad' } });
  });

  it('given a path outside the base path, then no route matches', () => {
    expect(trace.match('GET', '/companies/c_1')).toEqual({ route: null, methodNotAllowed: false });
    expect(trace.match('GET', '/v10/companies')).toEqual({ route: null, methodNotAllowed: false });
  });

  it('given the base path "/", then the full path is the route path', () => {
    expect(found(trakt.match('GET', '/me'))).toMatchObject({ path: '/me' });
  });

  it('given an unknown path, then route is null and the method is not blamed', () => {
    expect(trace.match('GET', '/v1/people')).toEqual({ route: null, methodNotAllowed: false });
    expect(trace.match('GET', '/v1/companies/a/b/c/d')).toEqual({ route: null, methodNotAllowed: false });
  });

  it('given a known path with another method, then route is null and methodNotAllowed is true', () => {
    expect(trace.match('POST', '/v1/companies/c_1')).toEqual({ route: null, methodNotAllowed: true });
  });

  it('given one path served under two methods, then each method gets its own route', () => {
    expect(found(trakt.match('POST', '/checkin'))).toMatchObject({ method: 'POST' });
    expect(found(trakt.match('DELETE', '/checkin'))).toMatchObject({ method: 'DELETE' });
    expect(trakt.match('PUT', '/checkin')).toEqual({ route: null, methodNotAllowed: true });
  });

  it('given a lower-case method, then it matches as upper case', () => {
    expect(found(trace.match('get', '/v1/companies'))).toMatchObject({ method: 'GET' });
  });

  it('given HEAD, then it does not borrow the GET route (a HEAD would escape GET-only limits)', () => {
    expect(trace.match('HEAD', '/v1/companies')).toEqual({ route: null, methodNotAllowed: true });
  });

  it('given a trailing slash, then it is tolerated', () => {
    expect(found(trace.match('GET', '/v1/companies/'))).toMatchObject({ path: '/companies' });
    expect(found(trace.match('GET', '/v1/companies/c_1/'))).toMatchObject({ params: { identifier: 'c_1' } });
  });

  it('given an empty segment where a parameter is expected, then the path is refused, not matched', () => {
    expect(trace.match('GET', '/v1/companies//partnerships')).toMatchObject({ route: null, refused: { status: 400 } });
  });

  it('given a percent-encoded parameter, then the bound value is decoded and the canonical path re-encodes it', () => {
    expect(trace.match('GET', '/v1/companies/acme%20inc')).toMatchObject({ params: { identifier: 'acme inc' }, path: '/v1/companies/acme%20inc' });
    expect(trace.match('GET', '/v1/companies/%61cme')).toMatchObject({ params: { identifier: 'acme' }, path: '/v1/companies/acme' });
  });

  it('given malformed percent-encoding, then the path is refused with 400 instead of throwing', () => {
    expect(trace.match('GET', '/v1/companies/%E0%A4%A')).toMatchObject({ route: null, refused: { status: 400, problem: expect.stringMatching(/percent-encoded/) } });
  });

  // Issue 18, hole 1: `/v1/companies/%2e?limit=100` matched `/companies/:identifier` (priced by `id`) while the
  // upstream resolved it to the list and answered 100 companies, priced 0. Every spelling an upstream may resolve
  // differently is refused before matching.
  it.each([
    ['/v1/companies/.', 'dot segments'],
    ['/v1/companies/%2e', 'dot segments'],
    ['/v1/companies/%2E%2e', 'dot segments'],
    ['/v1/companies/c_1/..', 'dot segments'],
    ['/v1/./companies', 'dot segments'],
    ['/v1/companies/a%2Fpartnerships', 'encoded separator'],
    ['/v1/companies/a%5cpartnerships', 'encoded separator'],
    ['/v1/companies/a\\b', 'backslash'],
    ['/v1//companies', 'empty segments'],
    ['/v1/companies/a%00b', 'control character'],
    ['/v1/companies/%C0%AF', 'percent-encoded UTF-8'],
    ['/v1/companies/\u00e9', 'visible ASCII'],
  ])('given %s, then it is refused with 400 (%s)', (path, problem) => {
    const m = trace.match('GET', path);
    expect(m).toMatchObject({ route: null, refused: { status: 400 } });
    expect(m.route === null && m.refused?.problem).toContain(problem);
  });

  it('given a path whose canonical spelling is longer than an event records, then it is refused with 414', () => {
    expect(trace.match('GET', `/v1/companies/c_1${'%20'.repeat(700)}`)).toMatchObject({ route: null, refused: { status: 414 } });
    expect(trace.match('GET', `/v1/companies/c_1${'%20'.repeat(600)}`)).toMatchObject({ params: { identifier: `c_1${' '.repeat(600)}` } });
  });

  it('given the base path spelled with percent-encoding, then it is read as the base path', () => {
    expect(canonicalPath('/%76%31/companies')).toEqual({ segments: ['v1', 'companies'], path: '/v1/companies' });
  });

  it('given a query string, then it is ignored', () => {
    expect(found(trace.match('GET', '/v1/companies?limit=5'))).toMatchObject({ path: '/companies' });
  });
});

describe('expandUpstreamPath', () => {
  it('given parameters, then each :name segment is replaced by its URI-encoded value', () => {
    expect(expandUpstreamPath('/companies/:identifier/partnerships', { identifier: 'acme inc/us' })).toBe('/companies/acme%20inc%2Fus/partnerships');
  });

  it('given a template without parameters, then it is returned unchanged', () => {
    expect(expandUpstreamPath('/shows/trending', {})).toBe('/shows/trending');
  });

  it('given a missing parameter value, then it throws rather than calling a wrong upstream path', () => {
    expect(() => expandUpstreamPath('/shows/:id', {})).toThrow(/no value for :id/);
  });
});
