import { NextFunction, Request, Response } from 'express';
import { v7 as uuidv7 } from 'uuid';
import { Decision, Headers, RequestCompletedV1, Topics } from '@tollgate/contracts';
import { Publisher } from '@tollgate/messaging';
import { extractCredentials, KeyAuthenticator, Principal } from '@tollgate/persistence';
import { decisions } from '@tollgate/platform';
import { Profile, readEntityIds, renderErrorBody, RouteDefinition, RouteTable, expandUpstreamPath } from '@tollgate/profiles';
import { applicableChecks, CallFacts, clientIp, Clock, CounterStore, MemoryCounterStore, RateDecision } from '@tollgate/rate-limit';
import { CreditReservations } from '../clients/metering-client';
import { forwardableHeaders, Upstream, UpstreamResponse } from '../clients/upstream';
import { rateLimitHeaders } from './header-styles';

export interface GatewayDeps {
  profile: Profile;
  auth: KeyAuthenticator;
  /** Shared counters (Redis when REDIS_URL is set): rate limits and login lockouts. */
  limits: CounterStore;
  credits: CreditReservations;
  upstream: Upstream;
  /** The query service, which answers /me and /usage. */
  query: Upstream;
  events: Publisher;
  trustedProxies: string[];
  clock: Clock;
}

type ErrorKind = keyof Profile['errors'];

/** What one call has established so far; each step adds to it. */
interface Call {
  req: Request;
  res: Response;
  startedAt: bigint;
  nowMs: number;
  requestId: string;
  route: RouteDefinition;
  params: Record<string, string>;
  ip: string;
  principal: Principal | null;
  rate: RateDecision | null;
  credits: number | null;
}

const reservedPaths = new Set(['/health/live', '/health/ready', '/metrics']);

/**
 * One call, in order: route -> invalid-key throttle -> authentication -> login lockout -> rate limits ->
 * credits (reserve) -> upstream -> per-entity pricing -> event published -> answer.
 * Every answer that reached a decision for a known org is published as a request-completed event, so
 * /usage shows rejected calls too. An answer is sent only after its event is acknowledged by Kafka.
 */
export class GatewayPipeline {
  private readonly routes: RouteTable;
  /** Invalid-key attempts are counted per gateway instance: a cheap shield that needs no round trip. */
  private readonly badKeys = new MemoryCounterStore();
  private readonly balances = new Map<string, { balance: number; at: number }>();

  constructor(private readonly d: GatewayDeps) {
    this.routes = new RouteTable(d.profile);
  }

  readonly middleware = (req: Request, res: Response, next: NextFunction): void => {
    this.handle(req, res, next).catch((e: Error) => {
      if (!res.headersSent) this.json(res, 500, { error: 'internal_error', message: 'Tollgate could not complete the request' });
      console.error(JSON.stringify({ level: 'error', context: 'gateway', msg: 'request failed', request_id: res.getHeader('x-request-id') ?? null, path: req.path, error: e.message }));
    });
  };

  private async handle(req: Request, res: Response, next: NextFunction): Promise<void> {
    // Mounted under the base path, so Express's req.path has it cut off; routes match on the full path.
    const fullPath = req.baseUrl + req.path;
    const match = this.routes.match(req.method, fullPath);
    if (!match.route) {
      if (reservedPaths.has(fullPath) || fullPath.startsWith('/docs')) return next();
      return this.error(res, 404, 'not_found', {});
    }
    const nowMs = this.d.clock.now();
    const requestId = headerValue(req.headers['x-request-id']) ?? uuidv7();
    res.setHeader(Headers.RequestId, requestId);
    const call: Call = {
      req, res, nowMs, requestId, route: match.route, params: match.params,
      startedAt: process.hrtime.bigint(),
      ip: clientIp(req.socket.remoteAddress ?? '', headerValue(req.headers['x-forwarded-for']), this.d.trustedProxies),
      principal: null, rate: null, credits: null,
    };

    // Repeated invalid keys from one IP are refused before anything else is looked at.
    const throttle = this.invalidKeyCheck(call.ip);
    if (throttle.refused) return this.throttled(call, throttle.decision, 'invalid_key_throttled');

    if (call.route.auth !== 'none') {
      const creds = extractCredentials(this.d.profile.identity, req.headers);
      const result = await this.d.auth.authenticate(creds);
      // Only a presented-but-wrong key counts towards the throttle; a missing one is a client bug, not a guess.
      if (!result.ok || result.principal.profile !== this.d.profile.name) return await this.unauthorized(call, Boolean(creds.key || creds.userToken));
      // A valid application key without the user token this route acts for: refused, but not a guessed key.
      if (call.route.auth === 'user' && result.principal.userId === null) return await this.unauthorized(call, false);
      call.principal = result.principal;
    }

    if (call.route.login && this.d.profile.lockout) {
      const lockedUntil = await this.lockedUntil(call);
      if (lockedUntil > nowMs) return await this.lockedOut(call, lockedUntil);
    }

    const checks = applicableChecks(this.d.profile.limits, this.facts(call, call.route.counts_against_limits), this.planLimits(call.principal), call.principal?.limitOverrides ?? {});
    if (call.route.counts_against_limits) {
      call.rate = await this.d.limits.consume(checks, nowMs);
      if (!call.rate.admitted) return this.rateLimited(call);
    } else {
      // /me and /usage never count, but still show where the caller stands.
      call.rate = await this.d.limits.peek(
        applicableChecks(this.d.profile.limits, this.facts(call, true), this.planLimits(call.principal), call.principal?.limitOverrides ?? {}),
        nowMs,
      );
    }

    if (call.route.handler !== 'proxy') return this.answerFromQuery(call);
    return this.proxy(call);
  }

  private async proxy(call: Call): Promise<void> {
    const { route, principal } = call;
    const strict = this.d.profile.credits.enforcement === 'strict';
    let reservationId: string | null = null;

    // Fixed-cost routes hold their credits before the upstream is asked.
    if (principal && route.cost.kind === 'fixed' && route.cost.credits > 0) {
      const needed = route.cost.credits;
      if (strict) {
        reservationId = uuidv7();
        const r = await this.d.credits.reserve(this.reserveRequest(call, reservationId, []));
        this.rememberBalance(principal.orgId, r.balance);
        if (!r.granted) return this.insufficientCredits(call, r.requested, r.shortfall);
        call.credits = r.balance;
      } else {
        const balance = await this.balanceOf(principal.orgId);
        if (balance < needed) return this.insufficientCredits(call, needed, needed - Math.max(0, balance));
        call.credits = balance - needed;
        this.spendLocally(principal.orgId, needed);
      }
    }

    let upstream: UpstreamResponse;
    try {
      const path = joinPath(this.d.profile.base_path, expandUpstreamPath(route.upstream_path ?? route.path, call.params)) + queryString(call.req.originalUrl);
      upstream = await this.d.upstream.send(call.req.method, path, { ...forwardableHeaders(call.req.headers), 'x-request-id': call.requestId }, bodyOf(call.req));
    } catch {
      // Nothing is charged: the hold is given back now, and the event carries status 502.
      await this.giveBackFixedHold(call, reservationId);
      await this.publish(call, 502, 'upstream_unavailable', [], reservationId);
      return this.error(call.res, 502, 'upstream_unavailable', {}, this.decorate(call, false));
    }

    if (upstream.status < 200 || upstream.status >= 300) await this.giveBackFixedHold(call, reservationId);

    if (route.login && this.d.profile.lockout && upstream.status === 401) await this.countFailedLogin(call);

    // Per-entity routes are priced from what the upstream returned, before any of it reaches the caller.
    let entities: string[] = [];
    if (principal && route.cost.kind === 'per_entity' && upstream.status >= 200 && upstream.status < 300) {
      entities = billableEntities(upstream.body, route.cost.entities, route.cost.exclude);
      if (entities.length > 0) {
        if (strict) {
          reservationId = uuidv7();
          const r = await this.d.credits.reserve(this.reserveRequest(call, reservationId, entities));
          this.rememberBalance(principal.orgId, r.balance);
          if (!r.granted) return this.insufficientCredits(call, r.requested, r.shortfall);
          call.credits = r.balance;
        } else {
          const balance = await this.balanceOf(principal.orgId);
          if (balance <= 0) return this.insufficientCredits(call, entities.length, entities.length);
          call.credits = balance;
          this.spendLocally(principal.orgId, entities.length);
        }
      }
    }

    if (principal) {
      try {
        await this.publish(call, upstream.status, 'forwarded', entities, reservationId);
      } catch {
        // Unrecorded data is never handed out: give the hold back and refuse.
        if (reservationId) await this.d.credits.release(reservationId, principal.orgId).catch(() => undefined);
        return this.json(call.res, 503, { error: 'metering_unavailable', message: 'The call could not be recorded; nothing was charged. Retry shortly.' });
      }
    }
    decisions.inc({ profile: this.d.profile.name, outcome: 'forwarded' });
    const headers = { ...forwardableHeaders(upstream.headers), ...this.decorate(call, false) };
    call.res.status(upstream.status);
    for (const [k, v] of Object.entries(headers)) call.res.setHeader(k, v);
    call.res.end(upstream.body);
  }

  /**
   * A fixed-cost call that failed costs nothing ("Failed requests (4xx/5xx errors) don't count against your
   * balance"), so its hold goes back before the answer: the answer's credits header shows the untouched balance,
   * and a client retrying at once with its last credit is not refused for a hold metering has yet to settle.
   * The event still names the reservation; metering finds it released and charges the failed call nothing.
   * If the release can't be made now, settlement releases it when the event arrives, as before.
   */
  private async giveBackFixedHold(call: Call, reservationId: string | null): Promise<void> {
    const { route, principal } = call;
    if (!principal || route.cost.kind !== 'fixed' || route.cost.credits <= 0) return;
    const held = route.cost.credits;
    if (this.d.profile.credits.enforcement === 'strict') {
      if (!reservationId) return;
      const released = await this.d.credits.release(reservationId, principal.orgId).then(() => true, () => false);
      if (!released) return;
    }
    if (call.credits !== null) call.credits += held;
    this.spendLocally(principal.orgId, -held);
  }

  private async answerFromQuery(call: Call): Promise<void> {
    const path = joinPath(this.d.profile.base_path, call.route.path) + queryString(call.req.originalUrl);
    const headers: Record<string, string> = { 'x-request-id': call.requestId };
    for (const h of ['authorization', 'trakt-api-key']) {
      const v = headerValue(call.req.headers[h]);
      if (v) headers[h] = v;
    }
    const answer = await this.d.query.send('GET', path, headers, null);
    if (call.principal && this.d.profile.headers.style === 'trackyard') {
      const me = call.route.handler === 'me' && answer.status === 200 ? (JSON.parse(answer.body.toString('utf8')) as { credits_remaining?: number }) : null;
      call.credits = me?.credits_remaining ?? (await this.balanceOf(call.principal.orgId).catch(() => null));
    }
    call.res.status(answer.status);
    for (const [k, v] of Object.entries({ 'content-type': 'application/json; charset=utf-8', ...this.decorate(call, false) })) call.res.setHeader(k, v);
    call.res.end(answer.body);
  }

  // ---- rejections -------------------------------------------------------------------------------------

  private async rateLimited(call: Call): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: 'rate_limited' });
    if (call.principal) {
      if (this.d.profile.headers.style === 'trackyard') call.credits = await this.balanceOf(call.principal.orgId).catch(() => null);
      await this.publish(call, 429, 'rate_limited', [], null).catch(() => undefined);
    }
    return this.throttled(call, call.rate!, 'rate_limited');
  }

  private throttled(call: Call, rate: RateDecision, kind: ErrorKind): void {
    call.rate = rate;
    const retryAfter = Math.max(1, rate.retryAfterSeconds);
    this.error(call.res, 429, kind, { retry_after: retryAfter }, this.decorate(call, true));
  }

  private async insufficientCredits(call: Call, requested: number, shortfall: number): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: 'insufficient_credits' });
    call.credits = Math.max(0, call.credits ?? requested - shortfall);
    await this.publish(call, 402, 'insufficient_credits', [], null).catch(() => undefined);
    return this.error(call.res, 402, 'insufficient_credits', { requested, shortfall }, this.decorate(call, false));
  }

  private async unauthorized(call: Call, guessedKey: boolean): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: 'unauthorized' });
    if (guessedKey) {
      const t = this.d.profile.invalid_key_throttle;
      this.badKeys.consume([{ subjectKey: `${this.d.profile.name}:bad-key:${call.ip}`, rule: { name: 'invalid_key', periodSeconds: t.period_seconds, limit: t.attempts } }], call.nowMs);
    }
    await this.peekForEveryResponse(call);
    this.error(call.res, 401, 'unauthorized', {}, this.decorate(call, false));
  }

  private invalidKeyCheck(ip: string): { refused: boolean; decision: RateDecision } {
    const t = this.d.profile.invalid_key_throttle;
    const decision = this.badKeys.peek(
      [{ subjectKey: `${this.d.profile.name}:bad-key:${ip}`, rule: { name: 'invalid_key', periodSeconds: t.period_seconds, limit: t.attempts } }],
      this.d.clock.now(),
    ) as RateDecision;
    const w = decision.windows[0];
    const refused = w !== undefined && w.remaining <= 0;
    return { refused, decision: refused ? { ...decision, admitted: false, refusedBy: w, retryAfterSeconds: Math.max(1, Math.ceil((w.resetAtMs - this.d.clock.now()) / 1000)) } : decision };
  }

  // ---- login lockout (beatpass) -------------------------------------------------------------------------

  private loginKeys(call: Call): string[] {
    const keys = [`${this.d.profile.name}:lockout:ip:${call.ip}`];
    const account = loginAccount(call.req);
    if (account) keys.push(`${this.d.profile.name}:lockout:account:${account}`);
    return keys;
  }

  private async lockedUntil(call: Call): Promise<number> {
    const until = await Promise.all(this.loginKeys(call).map((k) => this.d.limits.lockedUntil(k, call.nowMs)));
    return Math.max(0, ...until);
  }

  private async countFailedLogin(call: Call): Promise<void> {
    const l = this.d.profile.lockout!;
    for (const key of this.loginKeys(call)) {
      const d = await this.d.limits.consume([{ subjectKey: `${key}:failures`, rule: { name: 'failed_logins', periodSeconds: l.window_seconds, limit: l.max_failures } }], call.nowMs);
      const w = d.windows[0];
      if (!d.admitted || (w && w.remaining === 0)) await this.d.limits.lock(key, call.nowMs + l.lockout_seconds * 1000);
    }
  }

  private async lockedOut(call: Call, untilMs: number): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: 'locked_out' });
    const retryAfter = Math.max(1, Math.ceil((untilMs - call.nowMs) / 1000));
    await this.peekForEveryResponse(call);
    // Not `throttled`: the Retry-After is the lockout's, not a window's.
    this.error(call.res, 429, 'locked_out', { retry_after: retryAfter }, { ...this.decorate(call, false), [Headers.RetryAfter]: String(retryAfter) });
  }

  /**
   * BeatPass: "Responses include standard rate limit headers", also the answers given before the limits are
   * counted (401, login lockout). Those show where the caller stands without counting; without a key the
   * client is its IP. Other styles show nothing on these answers, so they skip the round trip.
   */
  private async peekForEveryResponse(call: Call): Promise<void> {
    if (this.d.profile.headers.style !== 'beatpass') return;
    const checks = applicableChecks(this.d.profile.limits, this.facts(call, true), this.planLimits(call.principal), call.principal?.limitOverrides ?? {});
    try {
      call.rate = await this.d.limits.peek(checks, call.nowMs);
    } catch {
      call.rate = null; // the answer does not depend on the headers: send it without them
    }
  }

  // ---- helpers ------------------------------------------------------------------------------------------

  private facts(call: Call, counts: boolean): CallFacts {
    return {
      method: call.req.method,
      category: call.route.category,
      countsAgainstLimits: counts,
      keyId: call.principal?.keyId ?? null,
      userId: call.principal?.userId ?? null,
      applicationId: call.principal?.keyId ?? null,
      clientIp: call.ip,
      profile: this.d.profile.name,
    };
  }

  private planLimits(principal: Principal | null): Record<string, number> {
    const plan = this.d.profile.plans.find((p) => p.name === (principal?.plan ?? this.d.profile.default_plan));
    return plan?.limits ?? {};
  }

  private decorate(call: Call, throttled: boolean): Record<string, string> {
    return rateLimitHeaders(this.d.profile, { rate: call.rate, credits: call.credits, authenticated: call.principal !== null, throttled }, call.nowMs);
  }

  private reserveRequest(call: Call, reservationId: string, entities: string[]) {
    return {
      reservationId,
      orgId: call.principal!.orgId,
      profile: this.d.profile.name,
      method: call.req.method,
      route: call.route.path,
      entities,
      occurredAt: new Date(call.nowMs).toISOString(),
    };
  }

  private async publish(call: Call, status: number, decision: Decision, entities: string[], reservationId: string | null): Promise<void> {
    const p = call.principal;
    if (!p) return;
    const event: RequestCompletedV1 = {
      event_id: uuidv7(),
      schema_version: 1,
      occurred_at: new Date(call.nowMs).toISOString(),
      org_id: p.orgId,
      api_key_id: p.keyId,
      subject: p.userId ? { kind: 'user', id: p.userId } : { kind: 'key', id: p.keyId },
      profile: this.d.profile.name,
      method: call.req.method,
      route: call.route.path,
      path: call.req.originalUrl.split('?')[0] ?? call.req.path,
      status_code: status,
      response_time_ms: Number(process.hrtime.bigint() - call.startedAt) / 1e6,
      entities,
      reservation_id: reservationId,
      request_id: call.requestId,
      decision,
    };
    await this.d.events.publish(Topics.RequestCompleted, [{ key: p.orgId, value: JSON.stringify(event) }]);
  }

  private rememberBalance(orgId: string, balance: number): void {
    this.balances.set(orgId, { balance, at: this.d.clock.now() });
  }

  /** Eventual mode: what this gateway admitted comes off its cached balance until the next refresh. */
  private spendLocally(orgId: string, credits: number): void {
    const hit = this.balances.get(orgId);
    if (hit) hit.balance -= credits;
  }

  /** The last known balance, at most 1 s old (eventual mode and the credits header of free answers). */
  private async balanceOf(orgId: string): Promise<number> {
    const hit = this.balances.get(orgId);
    if (hit && this.d.clock.now() - hit.at < 1000) return hit.balance;
    const balance = await this.d.credits.balance(orgId);
    this.rememberBalance(orgId, balance);
    return balance;
  }

  private error(res: Response, status: number, kind: ErrorKind, vars: Record<string, number | string>, headers: Record<string, string> = {}): void {
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    this.json(res, status, renderErrorBody(this.d.profile.errors[kind], vars));
  }

  private json(res: Response, status: number, body: unknown): void {
    res.status(status).setHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify(body));
  }
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function bodyOf(req: Request): Buffer | null {
  return Buffer.isBuffer(req.body) ? req.body : null;
}

function queryString(originalUrl: string): string {
  const i = originalUrl.indexOf('?');
  return i === -1 ? '' : originalUrl.slice(i);
}

export function joinPath(base: string, path: string): string {
  return (base.replace(/\/+$/, '') + '/' + path.replace(/^\/+/, '')).replace(/\/+$/, '') || '/';
}

/** The billable ids of an upstream JSON body: deduplicated (first seen wins), without the excluded ones. */
export function billableEntities(body: Buffer, expression: string, exclude?: string): string[] {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return [];
  }
  const excluded = new Set(exclude ? readEntityIds(json, exclude) : []);
  return [...new Set(readEntityIds(json, expression))].filter((id) => !excluded.has(id));
}

function loginAccount(req: Request): string | null {
  const body = bodyOf(req);
  if (!body || body.length === 0 || body.length > 64 * 1024) return null;
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { username?: unknown };
    return typeof parsed.username === 'string' && parsed.username.length > 0 ? parsed.username.toLowerCase().slice(0, 200) : null;
  } catch {
    return null;
  }
}
