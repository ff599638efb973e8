import { Profile, RouteDefinition } from './profile.types';

export type PathSegment = { literal: string } | { param: string };

export type RouteMatch =
  | { route: RouteDefinition; params: Record<string, string> }
  /** No route: `methodNotAllowed` says whether the path exists for another method. */
  | { route: null; methodNotAllowed: boolean };

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
 * Invariants: a `:param` matches exactly one non-empty segment (percent-decoded); where several templates
 * match, the one with a literal at the first position where they differ wins (`/companies/:identifier/partnerships`
 * never reads `partnerships` as an identifier, `/shows/trending` beats `/shows/:id`); one trailing slash is
 * tolerated. HEAD is not mapped to GET: a HEAD would not count in limits restricted to GET (trakt).
 */
export class RouteTable {
  private readonly basePath: string;
  private readonly bySegmentCount = new Map<number, CompiledRoute[]>();

  constructor(profile: Profile) {
    this.basePath = profile.base_path === '/' ? '' : profile.base_path.replace(/\/+$/, '');
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

  match(method: string, path: string): RouteMatch {
    const segments = this.requestSegments(path);
    if (segments === null) return { route: null, methodNotAllowed: false };
    const wanted = method.toUpperCase();
    let pathExists = false;
    for (const candidate of this.bySegmentCount.get(segments.length) ?? []) {
      const params = bind(candidate.segments, segments);
      if (params === null) continue;
      if (candidate.route.method === wanted) return { route: candidate.route, params };
      pathExists = true;
    }
    return { route: null, methodNotAllowed: pathExists };
  }

  /** The decoded segments under the base path, or null when the path is outside it or badly encoded. */
  private requestSegments(fullPath: string): string[] | null {
    let path = fullPath.split('?')[0] ?? '';
    if (this.basePath !== '') {
      if (path === this.basePath) path = '/';
      else if (path.startsWith(this.basePath + '/')) path = path.slice(this.basePath.length);
      else return null;
    }
    if (!path.startsWith('/')) return null;
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    if (path === '/') return [];
    try {
      return path.slice(1).split('/').map((s) => decodeURIComponent(s));
    } catch {
      return null;
    }
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
