import { parseDocument } from 'yaml';
import { parseEntityExpression } from './entity-ids';
import { defaultErrorBodies, errorBodyVariables, placeholderPattern } from './error-bodies';
import { ProfileError } from './profile-error';
import {
  CostRule,
  ErrorBodies,
  HeaderStyle,
  HttpMethod,
  LimitDefinition,
  LimitSubject,
  PlanDefinition,
  Profile,
  RouteDefinition,
} from './profile.types';
import { parsePathTemplate, pathShape } from './route-table';

const httpMethods: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const headerStyles: readonly HeaderStyle[] = ['trackyard', 'beatpass', 'trakt', 'trace'];
const limitSubjects: readonly LimitSubject[] = ['key', 'user', 'application', 'ip', 'client'];
const errorKinds = Object.keys(errorBodyVariables) as Array<keyof ErrorBodies>;

/** Used when a profile leaves `credits` out: SPEC §4 makes strict the default. */
const defaultCredits: Profile['credits'] = { enforcement: 'strict', reservation_timeout_seconds: 120 };

const namePattern = /^[a-z][a-z0-9_-]*$/;
const limitNamePattern = /^[A-Za-z][A-Za-z0-9_]*$/;
const categoryPattern = /^[a-z][a-z0-9_-]*$/;
const basePathPattern = /^(\/|(\/[A-Za-z0-9._~-]+)+)$/;

type Json = Record<string, unknown>;

/**
 * Reads one profile and checks everything a gateway or metering relies on, so that nothing downstream has to
 * re-check: unknown keys, types, enum values, references between sections (plans -> limits, limits ->
 * categories, default_plan -> plans) and the SPEC's fixed routes (`GET /me`, `GET /usage`). The first problem
 * found throws a ProfileError naming the key path (`routes[3].cost.kind`).
 */
export function parseProfile(text: string, file: string): Profile {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const yamlError = doc.errors[0];
  if (yamlError) throw new ProfileError(file, '(yaml)', yamlError.message.split('\n')[0] ?? yamlError.message);
  return new ProfileReader(file).profile(doc.toJS({ maxAliasCount: 100 }) as unknown);
}

class ProfileReader {
  constructor(private readonly file: string) {}

  profile(raw: unknown): Profile {
    const top = this.object(raw, '(root)');
    this.keys(top, '', {
      required: ['name', 'base_path', 'identity', 'headers', 'limits', 'plans', 'default_plan', 'routes', 'invalid_key_throttle', 'errors'],
      optional: ['credits', 'lockout'],
    });

    const name = this.string(top.name, 'name', namePattern, 'lower-case letters, digits, - and _');
    const basePath = this.string(top.base_path, 'base_path', basePathPattern, '"/" or /segment/... without a trailing slash or parameters');
    const identity = this.oneOf(top.identity, 'identity', ['bearer', 'trakt'] as const);
    const credits = top.credits === undefined ? { ...defaultCredits } : this.credits(top.credits);
    const headers = this.headers(top.headers);
    const routes = this.list(top.routes, 'routes', true).map((r, i) => this.route(r, `routes[${i}]`));
    this.checkRouteSet(routes);
    routes.forEach((r, i) => {
      if (r.auth === 'user' && identity !== 'trakt') this.fail(`routes[${i}].auth`, `user needs identity trakt: a ${identity} profile never carries a user token`);
    });
    const limits = this.list(top.limits, 'limits', false).map((l, i) => this.limit(l, `limits[${i}]`, identity, routes));
    this.unique(limits.map((l) => l.name), 'limits', 'name', 'limit');
    const plans = this.list(top.plans, 'plans', true).map((p, i) => this.plan(p, `plans[${i}]`, limits));
    this.unique(plans.map((p) => p.name), 'plans', 'name', 'plan');
    const defaultPlan = this.string(top.default_plan, 'default_plan');
    if (!plans.some((p) => p.name === defaultPlan)) {
      this.fail('default_plan', `names no plan: "${defaultPlan}" (plans: ${plans.map((p) => p.name).join(', ')})`);
    }
    const invalidKeyThrottle = this.invalidKeyThrottle(top.invalid_key_throttle);
    const lockout = top.lockout === undefined ? undefined : this.lockout(top.lockout);
    if (lockout && !routes.some((r) => r.login)) this.fail('lockout', 'is set but no route has login: true, so no failure is ever counted');
    const errors = this.errors(top.errors);

    const profile: Profile = {
      name,
      source: this.file,
      base_path: basePath,
      identity,
      credits,
      headers,
      limits,
      plans,
      default_plan: defaultPlan,
      routes,
      invalid_key_throttle: invalidKeyThrottle,
      errors,
    };
    if (lockout) profile.lockout = lockout;
    return profile;
  }

  // ---- sections ---------------------------------------------------------------------------------------

  private credits(raw: unknown): Profile['credits'] {
    const o = this.object(raw, 'credits');
    this.keys(o, 'credits', { optional: ['enforcement', 'reservation_timeout_seconds'] });
    return {
      enforcement: o.enforcement === undefined ? defaultCredits.enforcement : this.oneOf(o.enforcement, 'credits.enforcement', ['strict', 'eventual'] as const),
      reservation_timeout_seconds:
        o.reservation_timeout_seconds === undefined
          ? defaultCredits.reservation_timeout_seconds
          : this.positiveInt(o.reservation_timeout_seconds, 'credits.reservation_timeout_seconds'),
    };
  }

  private headers(raw: unknown): Profile['headers'] {
    const o = this.object(raw, 'headers');
    this.keys(o, 'headers', { required: ['style'], optional: ['standard_headers'] });
    return {
      style: this.oneOf(o.style, 'headers.style', headerStyles),
      standard_headers: o.standard_headers === undefined ? false : this.boolean(o.standard_headers, 'headers.standard_headers'),
    };
  }

  private route(raw: unknown, key: string): RouteDefinition {
    const o = this.object(raw, key);
    this.keys(o, key, {
      required: ['method', 'path', 'category', 'cost'],
      optional: ['upstream_path', 'auth', 'handler', 'counts_against_limits', 'login'],
    });
    const method = this.oneOf(o.method, `${key}.method`, httpMethods);
    const path = this.string(o.path, `${key}.path`);
    const segments = parsePathTemplate(path);
    if (typeof segments === 'string') this.fail(`${key}.path`, `${segments} (got "${path}")`);
    const category = this.string(o.category, `${key}.category`, categoryPattern, 'lower-case letters, digits, - and _');
    const auth = o.auth === undefined ? 'required' : this.oneOf(o.auth, `${key}.auth`, ['required', 'none', 'user'] as const);
    const handler = o.handler === undefined ? 'proxy' : this.oneOf(o.handler, `${key}.handler`, ['proxy', 'me', 'usage'] as const);
    const cost = this.cost(o.cost, `${key}.cost`);
    const countsAgainstLimits =
      o.counts_against_limits === undefined ? handler === 'proxy' : this.boolean(o.counts_against_limits, `${key}.counts_against_limits`);
    const route: RouteDefinition = { method, path, category, auth, handler, cost, counts_against_limits: countsAgainstLimits };

    if (o.upstream_path !== undefined) {
      const upstream = this.string(o.upstream_path, `${key}.upstream_path`);
      const upstreamSegments = parsePathTemplate(upstream);
      if (typeof upstreamSegments === 'string') this.fail(`${key}.upstream_path`, `${upstreamSegments} (got "${upstream}")`);
      const params = new Set(segments.flatMap((s) => ('param' in s ? [s.param] : [])));
      for (const s of upstreamSegments) {
        if ('param' in s && !params.has(s.param)) this.fail(`${key}.upstream_path`, `uses :${s.param}, which path "${path}" does not define`);
      }
      route.upstream_path = upstream;
    }
    if (o.login !== undefined) {
      route.login = this.boolean(o.login, `${key}.login`);
      if (route.login && handler !== 'proxy') this.fail(`${key}.login`, `only a proxy route can be a login route (handler is ${handler})`);
    }

    if (auth === 'none' && cost.kind !== 'free') this.fail(`${key}.cost.kind`, `must be free on a route with auth: none (nobody to charge), got ${cost.kind}`);
    if (handler !== 'proxy') {
      // The query service answers exactly GET {base}/me and GET {base}/usage (SPEC §7), with the caller's key.
      const expected = `/${handler}`;
      if (method !== 'GET') this.fail(`${key}.method`, `must be GET for handler ${handler}, got ${method}`);
      if (path !== expected) this.fail(`${key}.path`, `must be "${expected}" for handler ${handler}, got "${path}"`);
      if (auth !== 'required') this.fail(`${key}.auth`, `must be required for handler ${handler}`);
      if (cost.kind !== 'free') this.fail(`${key}.cost.kind`, `must be free for handler ${handler} (SPEC §7), got ${cost.kind}`);
    }
    return route;
  }

  private cost(raw: unknown, key: string): CostRule {
    const o = this.object(raw, key);
    const kind = this.oneOf(o.kind, `${key}.kind`, ['free', 'fixed', 'per_entity'] as const);
    if (kind === 'free') {
      this.keys(o, key, { required: ['kind'] });
      return { kind };
    }
    if (kind === 'fixed') {
      this.keys(o, key, { required: ['kind', 'credits'] });
      return { kind, credits: this.positiveInt(o.credits, `${key}.credits`) };
    }
    this.keys(o, key, { required: ['kind', 'entities', 'reaccess_days'], optional: ['exclude'] });
    const rule: CostRule = {
      kind,
      entities: this.entityExpression(o.entities, `${key}.entities`),
      reaccess_days: this.nonNegativeInt(o.reaccess_days, `${key}.reaccess_days`),
    };
    if (o.exclude !== undefined) rule.exclude = this.entityExpression(o.exclude, `${key}.exclude`);
    return rule;
  }

  private entityExpression(raw: unknown, key: string): string {
    const expression = this.string(raw, key);
    const parsed = parseEntityExpression(expression);
    if (typeof parsed === 'string') this.fail(key, parsed);
    return expression;
  }

  /** Route-set invariants: one route per method and path shape, and the two query routes every profile serves. */
  private checkRouteSet(routes: RouteDefinition[]): void {
    const seen = new Map<string, number>();
    routes.forEach((r, i) => {
      const segments = parsePathTemplate(r.path);
      const shape = `${r.method} ${typeof segments === 'string' ? r.path : pathShape(segments)}`;
      const first = seen.get(shape);
      if (first !== undefined) this.fail(`routes[${i}].path`, `${r.method} ${r.path} duplicates routes[${first}] (${routes[first]!.method} ${routes[first]!.path})`);
      seen.set(shape, i);
    });
    for (const handler of ['me', 'usage'] as const) {
      const count = routes.filter((r) => r.handler === handler).length;
      if (count === 0) this.fail('routes', `no route has handler ${handler}; every profile serves GET {base}/${handler} (SPEC §7)`);
    }
  }

  private limit(raw: unknown, key: string, identity: Profile['identity'], routes: RouteDefinition[]): LimitDefinition {
    const o = this.object(raw, key);
    this.keys(o, key, { required: ['name', 'period_seconds', 'limit', 'subject'], optional: ['methods', 'categories', 'when'] });
    const limit: LimitDefinition = {
      name: this.string(o.name, `${key}.name`, limitNamePattern, 'a letter, then letters, digits and _'),
      period_seconds: this.positiveInt(o.period_seconds, `${key}.period_seconds`),
      limit: this.positiveInt(o.limit, `${key}.limit`),
      subject: this.oneOf(o.subject, `${key}.subject`, limitSubjects),
    };
    if (o.methods !== undefined) {
      const methods = this.list(o.methods, `${key}.methods`, true).map((m, i) => this.oneOf(m, `${key}.methods[${i}]`, httpMethods));
      this.unique(methods, `${key}.methods`, null, 'method');
      limit.methods = methods;
    }
    if (o.categories !== undefined) {
      const known = [...new Set(routes.map((r) => r.category))];
      const categories = this.list(o.categories, `${key}.categories`, true).map((c, i) => {
        const category = this.string(c, `${key}.categories[${i}]`);
        if (!known.includes(category)) this.fail(`${key}.categories[${i}]`, `no route has category "${category}" (categories: ${known.join(', ')})`);
        return category;
      });
      this.unique(categories, `${key}.categories`, null, 'category');
      limit.categories = categories;
    }
    if (o.when !== undefined) limit.when = this.oneOf(o.when, `${key}.when`, ['user', 'no_user'] as const);

    // A limit that can never apply is a misconfiguration that would silently leave an API unprotected.
    if (identity !== 'trakt' && (limit.subject === 'user' || limit.when !== undefined)) {
      this.fail(limit.subject === 'user' ? `${key}.subject` : `${key}.when`, `needs identity trakt: a ${identity} profile never carries a user token`);
    }
    if (limit.subject === 'user' && limit.when === 'no_user') this.fail(`${key}.when`, 'is no_user, but subject user only exists when a user token is present');
    if (limit.categories && limit.subject !== 'ip' && limit.subject !== 'client') {
      const inScope = routes.filter((r) => limit.categories!.includes(r.category));
      if (inScope.every((r) => r.auth === 'none')) {
        this.fail(`${key}.subject`, `is ${limit.subject}, but every route of categories ${limit.categories.join(', ')} has auth: none, so there is never a ${limit.subject}`);
      }
    }
    return limit;
  }

  private plan(raw: unknown, key: string, limits: LimitDefinition[]): PlanDefinition {
    const o = this.object(raw, key);
    this.keys(o, key, { required: ['name', 'one_time_credits', 'monthly_allowance'], optional: ['limits'] });
    const planLimits: Record<string, number> = {};
    if (o.limits !== undefined && o.limits !== null) {
      const l = this.object(o.limits, `${key}.limits`);
      for (const [name, value] of Object.entries(l)) {
        if (!limits.some((d) => d.name === name)) {
          this.fail(`${key}.limits.${name}`, `names no limit (limits: ${limits.map((d) => d.name).join(', ') || 'none'})`);
        }
        planLimits[name] = this.positiveInt(value, `${key}.limits.${name}`);
      }
    }
    return {
      name: this.string(o.name, `${key}.name`, namePattern, 'lower-case letters, digits, - and _'),
      one_time_credits: this.nonNegativeInt(o.one_time_credits, `${key}.one_time_credits`),
      monthly_allowance: this.nonNegativeInt(o.monthly_allowance, `${key}.monthly_allowance`),
      limits: planLimits,
    };
  }

  private invalidKeyThrottle(raw: unknown): Profile['invalid_key_throttle'] {
    const o = this.object(raw, 'invalid_key_throttle');
    this.keys(o, 'invalid_key_throttle', { required: ['attempts', 'period_seconds'] });
    return {
      attempts: this.positiveInt(o.attempts, 'invalid_key_throttle.attempts'),
      period_seconds: this.positiveInt(o.period_seconds, 'invalid_key_throttle.period_seconds'),
    };
  }

  private lockout(raw: unknown): NonNullable<Profile['lockout']> {
    const o = this.object(raw, 'lockout');
    this.keys(o, 'lockout', { required: ['max_failures', 'window_seconds', 'lockout_seconds'] });
    return {
      max_failures: this.positiveInt(o.max_failures, 'lockout.max_failures'),
      window_seconds: this.positiveInt(o.window_seconds, 'lockout.window_seconds'),
      lockout_seconds: this.positiveInt(o.lockout_seconds, 'lockout.lockout_seconds'),
    };
  }

  private errors(raw: unknown): ErrorBodies {
    const o = this.object(raw, 'errors');
    const optional = errorKinds.filter((k) => defaultErrorBodies[k] !== undefined);
    this.keys(o, 'errors', { required: errorKinds.filter((k) => !optional.includes(k)), optional });
    const out = {} as ErrorBodies;
    for (const kind of errorKinds) {
      const body = this.object(o[kind] ?? defaultErrorBodies[kind], `errors.${kind}`);
      this.checkTemplate(body, `errors.${kind}`, errorBodyVariables[kind]);
      out[kind] = body;
    }
    return out;
  }

  /** Every value must be plain JSON, and every `{name}` one the gateway supplies for this kind of error. */
  private checkTemplate(value: unknown, key: string, available: readonly string[]): void {
    if (typeof value === 'string') {
      for (const m of value.matchAll(placeholderPattern)) {
        if (!available.includes(m[1]!)) this.fail(key, `uses {${m[1]!}}, which this error does not supply (available: ${available.map((v) => `{${v}}`).join(', ') || 'none'})`);
      }
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value)) this.fail(key, 'must be a finite number');
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => this.checkTemplate(v, `${key}[${i}]`, available));
    } else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) this.checkTemplate(v, `${key}.${k}`, available);
    } else if (value !== null && typeof value !== 'boolean') {
      this.fail(key, `must be JSON (got ${typeof value})`);
    }
  }

  // ---- primitives -------------------------------------------------------------------------------------

  private fail(key: string, problem: string): never {
    throw new ProfileError(this.file, key, problem);
  }

  private keys(o: Json, key: string, spec: { required?: readonly string[]; optional?: readonly string[] }): void {
    const required = spec.required ?? [];
    const allowed = [...required, ...(spec.optional ?? [])];
    const at = (k: string) => (key ? `${key}.${k}` : k);
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.fail(at(k), `unknown key (allowed here: ${allowed.join(', ')})`);
    }
    for (const k of required) {
      if (o[k] === undefined || o[k] === null) this.fail(at(k), 'is required');
    }
  }

  private object(v: unknown, key: string): Json {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(key, `must be a mapping (got ${describe(v)})`);
    return v as Json;
  }

  private list(v: unknown, key: string, nonEmpty: boolean): unknown[] {
    if (!Array.isArray(v)) this.fail(key, `must be a list (got ${describe(v)})`);
    if (nonEmpty && v.length === 0) this.fail(key, 'must not be empty');
    return v;
  }

  private string(v: unknown, key: string, pattern?: RegExp, patternText?: string): string {
    if (typeof v !== 'string') this.fail(key, `must be a string (got ${describe(v)})`);
    if (v.length === 0) this.fail(key, 'must not be empty');
    if (pattern && !pattern.test(v)) this.fail(key, `must be ${patternText ?? pattern.source} (got "${v}")`);
    return v;
  }

  private boolean(v: unknown, key: string): boolean {
    if (typeof v !== 'boolean') this.fail(key, `must be true or false (got ${describe(v)})`);
    return v;
  }

  private positiveInt(v: unknown, key: string): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) this.fail(key, `must be a positive integer (got ${describe(v)})`);
    return v;
  }

  private nonNegativeInt(v: unknown, key: string): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(key, `must be a whole number >= 0 (got ${describe(v)})`);
    return v;
  }

  private oneOf<T extends string>(v: unknown, key: string, values: readonly T[]): T {
    if (typeof v !== 'string' || !values.includes(v as T)) this.fail(key, `must be one of ${values.join(', ')} (got ${describe(v)})`);
    return v as T;
  }

  private unique(values: string[], key: string, field: string | null, what: string): void {
    const seen = new Map<string, number>();
    values.forEach((v, i) => {
      const first = seen.get(v);
      if (first !== undefined) this.fail(field ? `${key}[${i}].${field}` : `${key}[${i}]`, `duplicate ${what} "${v}" (first at ${key}[${first}])`);
      seen.set(v, i);
    });
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}
