import { AnswerMode, AnswerPlan } from './scripted-upstream';
import { Prng } from './prng';
import { RawRequest } from './raw-client';

/** The orgs of one seed's run: each profile with ample credits and with scarce ones (402s are expected there). */
export interface Lane {
  profile: 'trace' | 'trackyard';
  scarce: boolean;
}

export const lanes: readonly Lane[] = [
  { profile: 'trace', scarce: false },
  { profile: 'trace', scarce: true },
  { profile: 'trackyard', scarce: false },
  { profile: 'trackyard', scarce: true },
];

export interface FuzzCall {
  n: number;
  lane: number;
  request: RawRequest;
  /** How the upstream answers this call, should the gateway forward it. */
  plan: AnswerPlan;
  /** The request id the client sent, if any (as latin1). */
  sentRequestId: string | null;
  /** What was hostile about it, for the failure report. */
  traits: string[];
}

const answerModes: ReadonlyArray<readonly [AnswerMode, number]> = [
  ['normal', 40], ['gzip', 5], ['deflate', 3], ['br', 3], ['mislabelled', 4], ['oversized', 4], ['huge-event', 0.7],
  ['malformed', 5], ['wrong-shape', 9], ['numeric-ids', 3], ['client-error', 5], ['server-error', 5], ['slow', 5], ['bomb', 1.2],
];

/** Calls of one seed: the same list for the same seed and count, whatever else ran before. */
export function generateCalls(seed: number, count: number, run: string, auth: (lane: number) => string, tame = false): FuzzCall[] {
  const rng = new Prng(seed);
  return Array.from({ length: count }, (_, n) => (tame ? tameCall : generateCall)(seed, n, rng.fork(n), run, auth));
}

function generateCall(seed: number, n: number, rng: Prng, run: string, auth: (lane: number) => string): FuzzCall {
  const lane = rng.int(0, lanes.length - 1);
  const traits: string[] = [];
  const { method, path, body, contentType } = lanes[lane]!.profile === 'trace' ? tracePath(seed, rng, traits) : trackyardPath(rng, traits);
  const headers: Array<[string, string]> = [['Authorization', `Bearer ${auth(lane)}`], ['x-fuzz-call', `${run}:${n}`]];
  if (contentType) headers.push(['Content-Type', contentType]);
  const sentRequestId = requestIdHeaders(seed, n, rng, headers, traits);
  oddHeaders(rng, headers, traits);
  const mode = rng.weighted(answerModes);
  const plan: AnswerPlan = { mode, seed: rng.u32(), delayMs: mode === 'slow' ? rng.int(100, 800) : 0 };
  return { n, lane, request: { method, path, headers, body }, plan, sentRequestId, traits };
}

/**
 * FUZZ_TAME=1: only what a well-behaved client and upstream do (real ids and routes, plain request ids, answers
 * that are correct, compressed, errors or slow). Every invariant must hold on these: a tame run that fails is a
 * bug of the checker or a hole that needs no hostility.
 */
function tameCall(seed: number, n: number, rng: Prng, run: string, auth: (lane: number) => string): FuzzCall {
  const lane = rng.int(0, lanes.length - 1);
  const id = `e${seed}-${rng.int(0, 59)}`;
  const trace = lanes[lane]!.profile === 'trace';
  const path = trace
    ? rng.pick([`/v1/companies`, `/v1/companies?limit=100`, `/v1/companies/${id}`, `/v1/companies/${id}/partnerships`, `/v1/companies/${id}/partnerships/graph`])
    : rng.pick(['/api/external/v1/search', '/api/external/v1/download-track']);
  const body = trace ? null : Buffer.from(JSON.stringify(path.endsWith('search') ? { query: `q${rng.int(0, 99)}` } : { track_id: `t${rng.int(0, 99)}` }));
  const headers: Array<[string, string]> = [['Authorization', `Bearer ${auth(lane)}`], ['x-fuzz-call', `${run}:${n}`]];
  if (body) headers.push(['Content-Type', 'application/json']);
  const sentRequestId = rng.chance(0.5) ? `fz${seed}-${n}` : null;
  if (sentRequestId) headers.push(['X-Request-Id', sentRequestId]);
  const mode = rng.weighted<AnswerMode>([['normal', 60], ['gzip', 6], ['deflate', 4], ['br', 4], ['numeric-ids', 4], ['client-error', 6], ['server-error', 6], ['slow', 5], ['oversized', 3]]);
  const plan: AnswerPlan = { mode, seed: rng.u32(), delayMs: mode === 'slow' ? rng.int(50, 300) : 0 };
  return { n, lane, request: { method: trace ? 'GET' : 'POST', path, headers, body }, plan, sentRequestId, traits: ['tame'] };
}

// ---- paths ------------------------------------------------------------------------------------------------

/** An identifier as a client could send it: mostly a real one (re-access), else something hostile. */
function identifier(seed: number, rng: Prng, traits: string[]): string {
  const real = `e${seed}-${rng.int(0, 59)}`;
  const kind = rng.weighted<string>([
    ['real', 45], ['long', 5], ['unicode', 4], ['pct-utf8', 4], ['invalid-utf8', 3], ['pad-%20', 6], ['pad-tab', 2], ['dot', 4], ['dotdot', 3],
    ['pct-dot', 5], ['pct-dotdot', 4], ['pct-slash', 4], ['pct-backslash', 3], ['nul', 1], ['semicolon', 2], ['pct-question', 1], ['pct-space-only', 2], ['plus', 2],
  ]);
  if (kind !== 'real') traits.push(`id:${kind}`);
  switch (kind) {
    case 'long': return real + '-' + 'x'.repeat(rng.int(200, 3000));
    case 'unicode': return encodeURI(`société-日本-🚀-${real}`);
    case 'pct-utf8': return encodeURIComponent(`Ünïcødé ${real}`);
    case 'invalid-utf8': return rng.pick(['%ff%fe', '%c3%28', '%e2%82', '%80']) + real;
    case 'pad-%20': return real + '%20'.repeat(rng.int(10, 1500));
    case 'pad-tab': return real + rng.pick(['%09', '%0a', '%0d%0a', '%0b']).repeat(rng.int(1, 50));
    case 'dot': return '.';
    case 'dotdot': return '..';
    case 'pct-dot': return rng.pick(['%2e', '%2E']);
    case 'pct-dotdot': return rng.pick(['%2e%2e', '%2E%2e', '.%2e', '%2e.']);
    case 'pct-slash': return rng.pick([`${real}%2f..`, `..%2f${real}`, `${real}%2Fpartnerships`, `%2f`, `${real}%2f`]);
    case 'pct-backslash': return rng.pick([`${real}%5c..`, `..%5c${real}`, `%5c`]);
    case 'nul': return `${real}%00`;
    case 'semicolon': return `${real};jsessionid=1`;
    case 'pct-question': return `${real}%3flimit=100`;
    case 'pct-space-only': return '%20'.repeat(rng.int(1, 40));
    case 'plus': return `${real}+`;
    default: return real;
  }
}

function tracePath(seed: number, rng: Prng, traits: string[]): { method: string; path: string; body: Buffer | null; contentType: string | null } {
  const shape = rng.weighted<string>([['list', 25], ['company', 35], ['partnerships', 15], ['graph', 15], ['open', 5], ['attack', 15]]);
  let path: string;
  if (shape === 'attack') {
    const id = `e${seed}-${rng.int(0, 59)}`;
    path = rng.pick([
      '/v1/companies/%2e', '/v1/companies/.', '/v1/companies/%2E%2e/companies', `/v1/companies/${id}/..`, `/v1/companies/${id}/%2e%2e`,
      `/v1/companies/${id}/partnerships/..`, `/v1/companies/${id}/partnerships/%2e%2e`, `/v1/companies/${id}%2fpartnerships`,
      `/v1/companies/x/../${id}`, `/v1/companies//${id}`, `/v1//companies/${id}`, `/v1/open/../companies`, `/v1/open/companies/..%2f..%2fcompanies`,
      `/v1/companies/${id}/partnerships/graph/..`, `/v1/companies/${id}/partnerships%2fgraph`, `/v1/./companies/${id}`, `/v1/companies/./${id}`,
      `/v1/companies/${id}%2f..%2f`, `/v1/companies/${id}%5c..%5c`, `/v1/companies/%2e%2e%2fcompanies`, `/v1/companies/${id}/partnerships/./graph`,
    ]);
    traits.push('attack-path');
  } else {
    const id = identifier(seed, rng, traits);
    const tail = { list: '', company: `/${id}`, partnerships: `/${id}/partnerships`, graph: `/${id}/partnerships/graph`, open: '' }[shape] ?? '';
    path = shape === 'open' ? '/v1/open/companies' : `/v1/companies${tail}`;
    path = mutatePath(path, rng, traits);
  }
  path += query(rng, traits);
  const method = rng.weighted<string>([['GET', 90], ['HEAD', 6], ['POST', 2], ['OPTIONS', 1], ['DELETE', 1]]);
  if (method !== 'GET') traits.push(`method:${method}`);
  return { method, path, body: method === 'POST' ? Buffer.from('{}') : null, contentType: method === 'POST' ? 'application/json' : null };
}

function trackyardPath(rng: Prng, traits: string[]): { method: string; path: string; body: Buffer | null; contentType: string | null } {
  const route = rng.pick(['search', 'download-track']);
  const other = route === 'search' ? 'download-track' : 'search';
  let path = rng.weighted<string>([
    [`/api/external/v1/${route}`, 60], [`/api/external/v1/./${route}`, 4], [`/api/external/v1/${route}/`, 4], [`/api/external/v1/${other}/../${route}`, 4],
    [`/api/external/v1/${other}/%2e%2e/${route}`, 4], [`/api/external/v1/${other}%2f..%2f${route}`, 4], [`/api/external/v1//${route}`, 3],
    [`/api/external/v1/${route}%20`, 3], [`/api/external/v1/${route}${'%20'.repeat(500)}`, 2], [`/api/external/v1/me/../${route}`, 3],
    [`/api/external/v1/${route}/..`, 3], [`/api/external/v1/${route}%2e`, 2], [`/api/external/v1/%2e/${route}`, 3],
  ]);
  if (!path.endsWith(`/v1/${route}`)) traits.push('odd-path');
  path += query(rng, traits);
  const kind = rng.weighted<string>([['json', 65], ['huge', 4], ['too-large', 1], ['malformed', 8], ['form', 6], ['empty', 5], ['array', 4], ['wrong-field', 7]]);
  if (kind !== 'json') traits.push(`body:${kind}`);
  const good = route === 'search' ? { query: `q${rng.int(0, 999)}` } : { track_id: `t${rng.int(0, 999)}` };
  let body: Buffer;
  let contentType: string | null = 'application/json';
  switch (kind) {
    case 'huge': body = Buffer.from(JSON.stringify({ ...good, pad: 'p'.repeat(rng.int(1, 4) * 1024 * 1024) })); break;
    case 'too-large': body = Buffer.alloc(10 * 1024 * 1024 + rng.int(1, 1024), 0x61); break;
    case 'malformed': body = Buffer.from(JSON.stringify(good).slice(0, -1)); break;
    case 'form': body = Buffer.from(route === 'search' ? 'query=abc' : 'track_id=t1'); contentType = 'application/x-www-form-urlencoded'; break;
    case 'empty': body = Buffer.alloc(0); contentType = rng.chance(0.5) ? null : contentType; break;
    case 'array': body = Buffer.from(JSON.stringify([good])); break;
    case 'wrong-field': body = Buffer.from(JSON.stringify(route === 'search' ? { q: 'x' } : { track: 1 })); break;
    default: body = Buffer.from(JSON.stringify(good));
  }
  const method = rng.weighted<string>([['POST', 94], ['GET', 3], ['HEAD', 2], ['PUT', 1]]);
  if (method !== 'POST') traits.push(`method:${method}`);
  return { method, path, body: method === 'GET' || method === 'HEAD' ? null : body, contentType };
}

/** Dot segments, empty segments and trailing slashes around the segments of a well-formed path. */
function mutatePath(path: string, rng: Prng, traits: string[]): string {
  if (!rng.chance(0.3)) return path;
  const parts = path.split('/');
  const at = rng.int(2, Math.max(2, parts.length - 1));
  const what = rng.pick(['dot', 'pct-dot', 'up', 'pct-up', 'double-slash', 'trailing-slash', 'trailing-dot', 'trailing-dotdot', 'case']);
  traits.push(`path:${what}`);
  switch (what) {
    case 'dot': parts.splice(at, 0, '.'); break;
    case 'pct-dot': parts.splice(at, 0, '%2e'); break;
    case 'up': parts.splice(at, 0, 'zz', '..'); break;
    case 'pct-up': parts.splice(at, 0, 'zz', '%2E%2E'); break;
    case 'double-slash': parts.splice(at, 0, ''); break;
    case 'trailing-slash': parts.push(''); break;
    case 'trailing-dot': parts.push(rng.pick(['.', '%2e'])); break;
    case 'trailing-dotdot': parts.push(rng.pick(['..', '%2e%2e', '.%2E'])); break;
    case 'case': return path.replace('/companies', rng.pick(['/Companies', '/compan%69es', '/COMPANIES']));
  }
  return parts.join('/');
}

function query(rng: Prng, traits: string[]): string {
  const q = rng.weighted<string>([['', 70], ['?limit=100', 10], ['?limit=-1', 3], ['?limit=99999999999999999999', 2], [`?cursor=${'c'.repeat(3000)}`, 2], ['?x=%ff', 3], ['?' + '&'.repeat(50), 2], ['?limit=5&limit=500', 3], ['?#frag', 2], ['?a=%00', 3]]);
  if (q) traits.push(`query:${q.slice(0, 24)}`);
  return q;
}

// ---- headers ----------------------------------------------------------------------------------------------

/** X-Request-Id: absent, ordinary, huge, UTF-8 bytes, control characters, repeated. Returns the first one sent. */
function requestIdHeaders(seed: number, n: number, rng: Prng, headers: Array<[string, string]>, traits: string[]): string | null {
  const mine = `fz${seed}-${n}`;
  const kind = rng.weighted<string>([['absent', 15], ['plain', 40], ['long', 10], ['utf8', 9], ['control', 4], ['duplicate', 6], ['quotes', 5], ['empty', 4], ['spaces', 4], ['uuid-like', 3]]);
  if (kind !== 'plain') traits.push(`request-id:${kind}`);
  const utf8 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
  let value: string | null;
  switch (kind) {
    case 'absent': value = null; break;
    case 'long': value = `${mine}-${'r'.repeat(rng.int(250, 5000))}`; break;
    case 'utf8': value = utf8(`${mine}-ünï-日本-🚀`); break;
    case 'control': value = `${mine}-${rng.pick(['\x01', '\x7f', '\x1b[31m', '\x00'])}`; break;
    case 'duplicate': value = mine; headers.push(['X-Request-Id', mine], ['X-Request-Id', `${mine}-second`]); return value;
    case 'quotes': value = `${mine}"}{\\'<script>`; break;
    case 'empty': value = ''; break;
    case 'spaces': value = `  ${mine}  with spaces  `; break;
    case 'uuid-like': value = `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`; break;
    default: value = mine;
  }
  if (value !== null) headers.push(['X-Request-Id', value]);
  return value;
}

function oddHeaders(rng: Prng, headers: Array<[string, string]>, traits: string[]): void {
  if (rng.chance(0.1)) {
    headers.push(['Accept-Encoding', rng.pick(['gzip, br', 'deflate', '*', 'identity;q=0'])]);
    traits.push('accept-encoding');
  }
  if (rng.chance(0.05)) {
    headers.push(['X-Junk', 'j'.repeat(rng.int(1000, 9000))]);
    traits.push('big-header');
  }
  if (rng.chance(0.05)) {
    headers.push(['X-Forwarded-For', '10.0.0.1, 203.0.113.9']);
    traits.push('x-forwarded-for');
  }
}
