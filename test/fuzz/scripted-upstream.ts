import { createHash } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { brotliCompressSync, createGzip, deflateSync, gzipSync } from 'node:zlib';
import { Prng } from './prng';

/**
 * The money fuzzer's upstream: a node:http server that behaves as a real API behind a real web framework would
 * (it resolves dot segments, %2e included, collapses `//`, decodes and trims what it reads from the path) and
 * answers each call the way its answer plan says (compressed, oversized, malformed, of the wrong shape, slow,
 * an error, a gzip bomb). It records, per call, the route it actually served and the ids its answer carries
 * under that route's pricing: what the checker says the call must cost.
 */

export type AnswerMode =
  | 'normal' | 'gzip' | 'deflate' | 'br' | 'mislabelled' | 'oversized' | 'huge-event' | 'malformed'
  | 'wrong-shape' | 'numeric-ids' | 'client-error' | 'server-error' | 'slow' | 'bomb';

export interface AnswerPlan {
  mode: AnswerMode;
  /** Seeds the answer's own draws (which ids, how many), so an answer is the same whatever the arrival order. */
  seed: number;
  delayMs: number;
}

/** How the upstream reads a path: segment by segment (Express, most frameworks), or decoding it whole first (naive servers, some proxies). */
export type Normalisation = 'segments' | 'decode-first';

/** The routes the upstream serves; `priced` says how the profile prices what it answers. */
export type ServedRoute =
  | 'trace:list' | 'trace:company' | 'trace:partnerships' | 'trace:graph' | 'trace:open'
  | 'trackyard:search' | 'trackyard:download';

export interface ServedCall {
  call: number;
  method: string;
  url: string;
  route: ServedRoute | null;
  status: number;
  mode: AnswerMode;
  /** Distinct ids the answer carries where the served route prices them (the graph's root excluded). */
  ids: string[];
  /** The answer is a 2xx of a per-entity route that cannot be priced: not JSON, undecodable, or not the route's shape. */
  unpriceable: boolean;
  /** Bytes sent on the wire. */
  bytes: number;
  /** How many times the upstream saw this call (a gateway that retries would show 2). */
  times: number;
}

export const fuzzCallHeader = 'x-fuzz-call';

/** 256 MiB of zeros, gzipped once per process (about 250 KB): a bomb for a gateway that inflates without a bound. */
let bomb: Promise<Buffer> | null = null;
export function gzipBomb(): Promise<Buffer> {
  bomb ??= new Promise((resolve, reject) => {
    const gz = createGzip({ level: 9 });
    const out: Buffer[] = [];
    gz.on('data', (c: Buffer) => out.push(c));
    gz.on('end', () => resolve(Buffer.concat(out)));
    gz.on('error', reject);
    const zeros = Buffer.alloc(1024 * 1024);
    let left = 256;
    const pump = () => {
      while (left > 0) {
        left--;
        if (!gz.write(zeros)) return void gz.once('drain', pump);
      }
      gz.end();
    };
    pump();
  });
  return bomb;
}

export class ScriptedUpstream {
  plans = new Map<number, AnswerPlan>();
  served = new Map<number, ServedCall>();
  private server: Server | null = null;
  private run = '';
  private normalisation: Normalisation = 'segments';
  private seed = 0;

  constructor(private readonly profile: 'trace' | 'trackyard') {}

  /** A new seed's run: its own plans and records; a call of an earlier run that arrives late is ignored. */
  reset(run: string, seed: number, normalisation: Normalisation): void {
    this.run = run;
    this.seed = seed;
    this.normalisation = normalisation;
    this.plans = new Map();
    this.served = new Map();
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async start(): Promise<void> {
    await gzipBomb();
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 16 * 1024 * 1024) chunks.push(c);
      });
      req.on('end', () => void this.answer(req, res, Buffer.concat(chunks)).catch(() => res.destroy()));
      req.on('error', () => undefined);
    });
    // Keep-alive sockets of the gateway's pool must not keep close() waiting.
    this.server.keepAliveTimeout = 1000;
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private async answer(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    // `<run>:<n>`: the call's number in its seed's run.
    const [run, n] = String(req.headers[fuzzCallHeader] ?? '').split(':');
    const call = run === this.run ? Number(n) : -1;
    const plan = this.plans.get(call) ?? { mode: 'normal', seed: call, delayMs: 0 };
    const seen = this.served.get(call);
    const record: ServedCall = { call, method: req.method ?? '', url: req.url ?? '', route: null, status: 0, mode: plan.mode, ids: [], unpriceable: false, bytes: 0, times: (seen?.times ?? 0) + 1 };
    if (call >= 0) this.served.set(call, record);
    const rng = new Prng(plan.seed);
    const segments = normalisePath(req.url ?? '/', this.normalisation);
    const routed = segments === null ? null : this.route(segments);
    const send = (status: number, payload: Buffer, headers: Record<string, string> = {}) => {
      record.status = status;
      record.bytes = payload.length;
      // A HEAD hands no data out, whatever its answer would have held.
      if (req.method === 'HEAD') {
        record.ids = [];
        record.unpriceable = false;
      }
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(payload.length), ...headers });
      res.end(req.method === 'HEAD' ? undefined : payload);
    };
    const json = (status: number, value: unknown) => send(status, Buffer.from(JSON.stringify(value)));
    if (segments === null) return json(400, { error: 'bad_path' });
    if (!routed) return json(404, { error: 'not_found' });
    const wanted = this.profile === 'trace' ? ['GET', 'HEAD'] : ['POST'];
    if (!wanted.includes(req.method ?? '')) return json(405, { error: 'method_not_allowed' });
    record.route = routed.route;

    if (plan.delayMs > 0) await new Promise((r) => setTimeout(r, plan.delayMs));
    if (plan.mode === 'client-error') return json(rng.pick([400, 404, 409, 422]), { error: 'upstream_says_no' });
    if (plan.mode === 'server-error') return json(rng.pick([500, 502, 503, 504]), { error: 'upstream_broke' });

    let value: unknown;
    if (this.profile === 'trackyard') {
      const request = parseJson(body);
      if (routed.route === 'trackyard:search') {
        if (!isRecord(request) || typeof request.query !== 'string') return json(400, { error: 'query is required' });
        value = { results: Array.from({ length: rng.int(0, 5) }, (_, i) => ({ track_id: `t${i}`, title: `Song ${i}` })), total: 5 };
      } else {
        if (!isRecord(request) || typeof request.track_id !== 'string') return json(400, { error: 'track_id is required' });
        value = { track_id: request.track_id, url: `https://cdn.example/${encodeURIComponent(request.track_id)}` };
      }
    } else {
      const built = this.traceAnswer(routed.route, routed.identifier, plan.mode, rng);
      value = built.value;
      record.ids = built.ids;
      record.unpriceable = built.unpriceable && routed.route !== 'trace:open';
    }

    const plain = Buffer.from(JSON.stringify(value));
    switch (plan.mode) {
      case 'malformed':
        if (routed.route !== 'trace:open') record.unpriceable = this.profile === 'trace';
        record.ids = [];
        return send(200, rng.chance(0.5) ? plain.subarray(0, Math.max(1, plain.length - rng.int(1, 20))) : Buffer.from('<html><body>maintenance</body></html>'));
      case 'gzip':
        return send(200, gzipSync(plain), { 'content-encoding': 'gzip' });
      case 'deflate':
        return send(200, deflateSync(plain), { 'content-encoding': 'deflate' });
      case 'br':
        return send(200, brotliCompressSync(plain), { 'content-encoding': 'br' });
      case 'mislabelled': {
        if (routed.route !== 'trace:open') record.unpriceable = this.profile === 'trace';
        record.ids = [];
        const variant = rng.int(0, 2);
        if (variant === 0) return send(200, gzipSync(plain), { 'content-encoding': 'br' });
        if (variant === 1) return send(200, plain, { 'content-encoding': 'gzip' });
        return send(200, gzipSync(plain), { 'content-encoding': 'deflate' });
      }
      case 'bomb':
        if (routed.route !== 'trace:open') record.unpriceable = this.profile === 'trace';
        record.ids = [];
        return send(200, await gzipBomb(), { 'content-encoding': 'gzip' });
      default:
        return send(200, plain);
    }
  }

  private route(segments: string[]): { route: ServedRoute; identifier: string } | null {
    const s = segments;
    if (this.profile === 'trackyard') {
      if (s.length !== 4 || s[0] !== 'api' || s[1] !== 'external' || s[2] !== 'v1') return null;
      if (s[3] === 'search') return { route: 'trackyard:search', identifier: '' };
      if (s[3] === 'download-track') return { route: 'trackyard:download', identifier: '' };
      return null;
    }
    if (s[0] !== 'v1') return null;
    if (s.length === 3 && s[1] === 'open' && s[2] === 'companies') return { route: 'trace:open', identifier: '' };
    if (s[1] !== 'companies') return null;
    if (s.length === 2) return { route: 'trace:list', identifier: '' };
    const id = s[2]!;
    if (id.length === 0) return null;
    if (s.length === 3) return { route: 'trace:company', identifier: id };
    if (s[3] !== 'partnerships') return null;
    if (s.length === 4) return { route: 'trace:partnerships', identifier: id };
    if (s.length === 5 && s[4] === 'graph') return { route: 'trace:graph', identifier: id };
    return null;
  }

  /** The answer of a trace route, and the ids it prices under that route (or why it can't be priced). */
  private traceAnswer(route: ServedRoute, identifier: string, mode: AnswerMode, rng: Prng): { value: unknown; ids: string[]; unpriceable: boolean } {
    const poolId = () => `e${this.seed}-${rng.int(0, 59)}`;
    // A huge event's ids are all 250 characters: 4,500 of them make an event over the broker's 1 MB message limit.
    const longId = () => `L${this.seed}-${rng.int(0, 1e9)}-`.padEnd(mode === 'huge-event' ? 250 : rng.int(60, 250), 'x');
    const many = mode === 'oversized' ? rng.int(300, 1500) : mode === 'huge-event' ? 4500 : rng.int(0, 12);
    const someIds = (): Array<string | number> =>
      Array.from({ length: many }, () => (mode === 'numeric-ids' ? rng.int(1, 99) : mode === 'oversized' || mode === 'huge-event' ? longId() : poolId()));
    const self = canonicalId(identifier);
    const distinct = (ids: Array<string | number>) => [...new Set(ids.map(String))];
    if (mode === 'wrong-shape') return { value: wrongShape(route, rng, poolId()), ids: [], unpriceable: route !== 'trace:open' };
    switch (route) {
      case 'trace:list':
      case 'trace:open': {
        const ids = someIds();
        return { value: { data: ids.map((id) => ({ id, name: `Co ${id}` })), next_cursor: null }, ids: route === 'trace:open' ? [] : distinct(ids), unpriceable: false };
      }
      case 'trace:company':
        return { value: { id: self, name: `Co ${self}` }, ids: [self], unpriceable: false };
      case 'trace:partnerships': {
        const ids = someIds();
        return { value: { data: ids.map((id) => ({ partner: { id, name: `Co ${id}` }, since: '2020-01-01' })) }, ids: distinct(ids), unpriceable: false };
      }
      case 'trace:graph': {
        const ids = someIds();
        const nodes = [self, ...ids];
        return { value: { root: { id: self }, nodes: nodes.map((id) => ({ id })), edges: ids.map((id) => ({ from: self, to: id })) }, ids: distinct(ids).filter((id) => id !== self), unpriceable: false };
      }
      default:
        throw new Error(`not a trace route: ${route}`);
    }
  }
}

/** A body that is JSON but not the shape the route's pricing reads (a list where an object is expected, ids as objects or null). */
function wrongShape(route: ServedRoute, rng: Prng, id: string): unknown {
  const list = [{ id, name: 'Co' }];
  switch (route) {
    case 'trace:company':
      return rng.pick<unknown>([{ data: list, next_cursor: null }, list, { id: null, name: 'Co' }, { id: { value: id } }, { name: 'Co' }, { id: [id] }]);
    case 'trace:partnerships':
      return rng.pick<unknown>([{ data: [{ partner: id }] }, { data: list }, { data: { partner: { id } } }, [{ partner: { id } }], { data: [{ partner: { id: null } }] }]);
    case 'trace:graph':
      return rng.pick<unknown>([{ root: { id: 'r' }, nodes: { id } }, { root: { id: 'r' }, nodes: [{ id: { v: id } }] }, { root: { id: 'r' }, nodes: [id] }, list]);
    default:
      return rng.pick<unknown>([list, { data: { id } }, { data: [{ id: null }] }, { data: [{ id: { v: id } }] }, { items: list }, { data: [{ id: '' }] }]);
  }
}

/**
 * What a real company API answers as a company's id: the identifier itself when it reads as one, else a stable
 * id derived from it (an API that looks companies up by name or domain).
 */
export function canonicalId(identifier: string): string {
  return /^[\x21-\x7e]{1,64}$/.test(identifier) ? identifier : `c_${createHash('sha1').update(identifier).digest('hex').slice(0, 16)}`;
}

/**
 * The path's segments as the upstream's framework reads them, or null for a path it refuses (400): dot segments
 * (also %2e) resolved as WHATWG URL does, empty segments dropped (`//`, a trailing `/`), each segment
 * percent-decoded and trimmed; with `decode-first` the whole path is decoded before it is split (so %2f is a
 * separator and `..%2f` climbs).
 */
export function normalisePath(rawUrl: string, how: Normalisation): string[] | null {
  let path: string;
  try {
    path = new URL(rawUrl, 'http://upstream').pathname;
    if (how === 'decode-first') path = new URL(decodeURIComponent(path).replace(/[?#]/g, (c) => encodeURIComponent(c)), 'http://upstream').pathname;
  } catch {
    return null;
  }
  const out: string[] = [];
  for (const raw of path.split('/')) {
    if (raw === '') continue;
    let s: string;
    try {
      s = decodeURIComponent(raw);
    } catch {
      return null;
    }
    s = s.trim();
    if (s !== '') out.push(s);
  }
  return out;
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return null;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
