import { EventLimits, forbiddenCharacterAt } from '@tollgate/contracts';
import { Profile, RouteDefinition } from './profile.types';

export type PathSegment = { literal: string } | { param: string };

export type RouteMatch =
  /** `path` is the canonical path the route was matched on: the one the event records. */
  | { route: RouteDefinition; params: Record<string, string>; path: string }
  /** No route: `methodNotAllowed` says whether the path exists for another method. */
  | { route: null; methodNotAllowed: boolean; refused?: undefined }
  /** A path that is not canonical: refused (400, or 414 when too long), never matched nor forwarded. */
  | { route: null; methodNotAllowed: false; refused: PathRefusal };

export interface PathRefusal {
  status: 400 | 414;
  problem: string;
}

/** A request path as the gateway reads it: decoded segments and their one canonical spelling. */
export type CanonicalPath = { segments: string[]; path: string } | { refused: PathRefusal };

/** What a request path may hold as it arrives: visible ASCII only (other bytes must be percent-encoded). */
const rawPathPattern = /^\/[\x21-\x5b\x5d-\x7e]*$/;

/**
 * The one reading of a request path (no query string) that both route matching and forwarding use, so what the
 * upstream is asked is what was priced. Servers disagree on dot segments (`/a/./b`, `/a/%2e%2e/b`), encoded
 * separators (`%2F`, `%5C`, a raw backslash) and empty segments (`//`): some resolve them, some don't. Rather
 * than guess which the upstream does, such a path is refused (400) before anything is counted or forwarded; so
 * is one that is not ASCII, not valid percent-encoded UTF-8, holds a control character, or whose canonical
 * spelling is longer than an event may record (414). One trailing slash is tolerated and dropped. The canonical
 * spelling encodes each decoded segment with `encodeURIComponent`, the way the upstream path is built.
 */
export function canonicalPath(raw: string): CanonicalPath {
  const refuse = (problem: string, status: 400 | 414 = 400): CanonicalPath => ({ refused: { status, problem } });
  if (!rawPathPattern.test(raw)) {
    return refuse(raw.includes('\\') ? 'path: a backslash is not a path character' : 'path: must start with "/" and hold only visible ASCII (percent-encode other bytes)');
  }
  if (raw === '/') return { segments: [], path: '/' };
  const parts = raw.slice(1).split('/');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  const segments: string[] = [];
  let length = 0;
  for (const part of parts) {
    if (part === '') return refuse('path: empty segments ("//") are not accepted');
    let segment: string;
    try {
      segment = decodeURIComponent(part);
    } catch {
      return refuse(`path: "${part.slice(0, 40)}" is not valid percent-encoded UTF-8`);
    }
    if (segment === '.' || segment === '..') return refuse('path: dot segments ("." and "..", encoded or not) are not accepted');
    if (segment.includes('/') || segment.includes('\\')) return refuse('path: an encoded separator (%2F or %5C) is not accepted');
    if (forbiddenCharacterAt(segment) >= 0) return refuse('path: a segment holds a control character');
    segments.push(segment);
    length += 1 + encodeURIComponent(segment).length;
    if (length > EventLimits.pathLength) return refuse(`path: longer than ${EventLimits.pathLength} characters`, 414);
  }
  return { segments, path: '/' + segments.map(encodeURIComponent).join('/') };
}

const literalPattern = /^[A-Za-z0-9._~-]+$/;
const paramPattern = /^:([A-Za-z_][A-Za-z0-9_]*)$/;

/**
 * The segments of a path template (`/companies/:identifier`), or the reason it is not one. `/` alone is the
 * template with no segments. Literals are restricted to URL-unreserved characters so that a template never
 * needs encoding and compares equal to the decoded request segment.
 */
export function parsePathTemplate(template: string): PathSegment[] | string {
  if (!template.startsWith('/')) return 'must start with "/"';
  if (template === '/') return [];
  if (template.endsWith('/')) return 'must not end with "/"';
  const segments: PathSegment[] = [];
  const seen = new Set<string>();
  for (const part of template.slice(1).split('/')) {
    if (part.length === 0) return 'must not contain an empty segment ("//")';
    const param = paramPattern.exec(part);
    if (param) {
      const name = param[1]!;
      if (seen.has(name)) return `names the parameter :${name} twice`;
      seen.add(name);
      segments.push({ param: name });
    } else if (part.startsWith(':')) {
      return `"${part}" is not a parameter: use :name with letters, digits and _`;
    } else if (!literalPattern.test(part)) {
      return `segment "${part}" may only hold letters, digits and . _ ~ -`;
    } else {
      segments.push({ literal: part });
    }
  }
  return segments;
}

interface CompiledRoute {
  route: RouteDefinition;
  segments: PathSegment[];
}

/**
 * Finds the route of a request. Paths are full request paths, base path included
 * (`/api/external/v1/search`; with base `/` simply `/shows/trending`).
 *
 * Invariants: the path is read once, canonically (`canonicalPath`: dot segments, encoded separators and empty
 * segments are refused, never resolved); a `:param` matches exactly one segment (percent-decoded); where several templates
 * match, the one with a literal at the first position where they differ wins (`/companies/:identifier/partnerships`
 * never reads `partnerships` as an identifier, `/shows/trending` beats `/shows/:id`); one trailing slash is
 * tolerated. HEAD is not mapped to GET: a HEAD would not count in limits restricted to GET (trakt).
 */
export class RouteTable {
  private readonly baseSegments: string[];
  private readonly bySegmentCount = new Map<number, CompiledRoute[]>();

  constructor(profile: Profile) {
    this.baseSegments = profile.base_path.split('/').filter((s) => s !== '');
    for (const route of profile.routes) {
      const segments = parsePathTemplate(route.path);
      if (typeof segments === 'string') throw new Error(`route ${route.method} ${route.path}: path ${segments}`);
      const list = this.bySegmentCount.get(segments.length) ?? [];
      list.push({ route, segments });
      this.bySegmentCount.set(segments.length, list);
    }
    // Most specific first, so the first match for a method is the one that wins.
    for (const list of this.bySegmentCount.values()) list.sort((a, b) => compareSpecificity(a.segments, b.segments));
  }

  /** The route of a request path (query string ignored), matched on its canonical reading (`canonicalPath`). */
  match(method: string, rawPath: string): RouteMatch {
    const q = rawPath.indexOf('?');
    const canonical = canonicalPath(q === -1 ? rawPath : rawPath.slice(0, q));
    if ('refused' in canonical) return { route: null, methodNotAllowed: false, refused: canonical.refused };
    const segments = this.underBase(canonical.segments);
    if (segments === null) return { route: null, methodNotAllowed: false };
    const wanted = method.toUpperCase();
    let pathExists = false;
    for (const candidate of this.bySegmentCount.get(segments.length) ?? []) {
      const params = bind(candidate.segments, segments);
      if (params === null) continue;
      if (candidate.route.method === wanted) return { route: candidate.route, params, path: canonical.path };
      pathExists = true;
    }
    return { route: null, methodNotAllowed: pathExists };
  }

  /** The segments under the base path, or null when the path is outside it. */
  private underBase(segments: string[]): string[] | null {
    const base = this.baseSegments;
    if (segments.length < base.length) return null;
    for (let i = 0; i < base.length; i++) if (segments[i] !== base[i]) return null;
    return segments.slice(base.length);
  }
}

function bind(template: PathSegment[], segments: string[]): Record<string, string> | null {
  const params: Record<string, string> = {};
  for (let i = 0; i < template.length; i++) {
    const t = template[i]!;
    const s = segments[i]!;
    if ('literal' in t) {
      if (t.literal !== s) return null;
    } else {
      if (s.length === 0) return null;
      params[t.param] = s;
    }
  }
  return params;
}

function compareSpecificity(a: PathSegment[], b: PathSegment[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const aLiteral = 'literal' in a[i]!;
    const bLiteral = 'literal' in b[i]!;
    if (aLiteral !== bLiteral) return aLiteral ? -1 : 1;
  }
  return 0;
}

/** The upstream path of a route: each `:name` segment replaced by its URI-encoded value. */
export function expandUpstreamPath(template: string, params: Record<string, string>): string {
  return template
    .split('/')
    .map((part) => {
      const param = paramPattern.exec(part);
      if (!param) return part;
      const value = params[param[1]!];
      if (value === undefined) throw new Error(`upstream path ${template}: no value for :${param[1]!}`);
      return encodeURIComponent(value);
    })
    .join('/');
}

/** Two templates that match exactly the same requests (`/a/:x` and `/a/:y`). */
export function pathShape(segments: PathSegment[]): string {
  return '/' + segments.map((s) => ('literal' in s ? s.literal : ':')).join('/');
}
