import { IncomingMessage, ServerResponse } from 'node:http';
import { v7 as uuidv7 } from 'uuid';
import { Decision, EventLimits, Headers, RequestCompletedV1, Topics, validateRequestCompleted } from '@tollgate/contracts';
import { Publisher } from '@tollgate/messaging';
import { extractCredentials, KeyAuthenticator, Principal } from '@tollgate/persistence';
import { decisions, dependencyErrors } from '@tollgate/platform';
import { Profile, readEntityIds, renderErrorBody, RouteDefinition, RouteTable, expandUpstreamPath } from '@tollgate/profiles';
import { applicableChecks, CallFacts, clientIp, Clock, CounterStore, MemoryCounterStore, RateDecision } from '@tollgate/rate-limit';
import { decodedBody, forwardableHeaders, Upstream, UpstreamResponse } from '../clients/upstream';
import { CreditPolicy, HoldOutcome, Need, PaidCall } from './credit-policy';
import { rateLimitHeaders } from './header-styles';

export interface GatewayDeps {
  profile: Profile;
  auth: KeyAuthenticator;
  /** Shared counters (Redis when REDIS_URL is set): rate limits and login lockouts. */
  limits: CounterStore;
  credits: CreditPolicy;
  upstream: Upstream;
  /** The query service, which answers /me and /usage. */
  query: Upstream;
  events: Publisher;
  trustedProxies: string[];
  clock: Clock;
  /** Answer paid calls with a Server-Timing header (auth, limit, hold, upstream, price, record): for operators. */
  serverTiming?: boolean;
  /**
   * The largest event the gateway publishes for an answer it hands out: `EventLimits.eventBytes`, or less when the
   * broker takes less (KAFKA_MAX_MESSAGE_BYTES). A larger one is withheld (502 unpriceable) rather than answered
   * and then dead-lettered by the spool.
   */
  maxEventBytes?: number;
}

type ErrorKind = keyof Profile['errors'];

/** What one call has established so far; each step adds to it. */
interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  body: Buffer | null;
  /** The request's canonical path (no query string; RouteTable's reading) and its query string (with its `?`, or ''). */
  path: string;
  query: string;
  startedAt: bigint;
  nowMs: number;
  requestId: string;
  route: RouteDefinition;
  params: Record<string, string>;
  ip: string;
  principal: Principal | null;
  rate: RateDecision | null;
  /** Spendable credits after this call, when known (the credits header). */
  credits: number | null;
  /** The client closed its connection before its answer was sent. */
  clientGone: boolean;
  /** Step timings for the Server-Timing header (only with GATEWAY_SERVER_TIMING=1). */
  marks: Array<[string, bigint]> | null;
}

/** A hold the call still has: given back if the call ends without handing data out. */
interface HeldCredits {
  reservationId: string | null;
  credits: number;
}

/**
 * A 2xx the gateway can't record as an event metering accepts (its ids make the event too large, say): it is
 * not handed out; the call is answered 502 `unpriceable` and costs nothing.
 */
class UnrecordableEvent extends Error {}

/**
 * A caller's X-Request-Id is echoed and recorded only when an event may carry it as it is: visible ASCII, at
 * most `EventLimits.requestIdLength` characters. Any other is replaced by one the gateway makes (and answers
 * with), so no caller-chosen id can make its call's event invalid.
 */
const acceptableRequestId = new RegExp(`^[\\x21-\\x7e]{1,${EventLimits.requestIdLength}}$`);

/** The invalid-key check's answer for nearly every call: one object, not one per call. */
const notThrottled: { refused: false; decision: RateDecision } = { refused: false, decision: { admitted: true, windows: [], refusedBy: null, retryAfterSeconds: 0 } };

/** Paths the gateway's Nest part answers even under a base path of `/`. */
const reservedPaths = new Set(['/health/live', '/health/ready', '/metrics']);

/** A dependency that is down: the call is refused with 503 and Retry-After, and nothing is charged. */
export class DependencyUnavailable extends Error {
  constructor(readonly dependency: 'postgres' | 'metering' | 'kafka' | 'redis' | 'query', cause: unknown) {
    super(`${dependency} is unavailable: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

const retryAfterSeconds = 2;

/**
 * One call, as steps: route -> invalid-key throttle -> authenticate -> login lockout -> limit -> credits (hold)
 * -> forward -> price (per-entity) -> record (event, acknowledged by Kafka) -> answer.
 * Every answer that reached a decision for a known org is published as a request-completed event, so /usage shows
 * rejected calls too. Data goes out only after its event is acknowledged, and only to a client still connected.
 *
 * This is a plain Node request handler (no framework on the paid path); the gateway's server hands it every
 * request under the profile's base path and gives the rest (health, metrics, docs) to Nest.
 */
export class GatewayPipeline {
  private readonly routes: RouteTable;
  private readonly base: string;
  /**
   * The invalid-key throttle. Failed keys are counted in the shared store (Redis when REDIS_URL is set, so guesses
   * spread over several gateways add up; this gateway's memory otherwise, or when Redis fails); an IP that used up
   * its attempts is remembered here until its window resets, so the check before authentication needs no round trip.
   */
  private readonly throttledIps = new Map<string, RateDecision>();
  private readonly localBadKeys = new MemoryCounterStore();
  private readonly bodyLimit = 10 * 1024 * 1024;

  constructor(private readonly d: GatewayDeps) {
    this.routes = new RouteTable(d.profile);
    this.base = d.profile.base_path.replace(/\/+$/, '');
  }

  /** Does this request belong to the profile's API (as opposed to health, metrics and docs)? */
  owns(url: string): boolean {
    const path = pathOf(url);
    if (this.base === '') return !reservedPaths.has(path) && !path.startsWith('/docs');
    return path === this.base || path.startsWith(this.base + '/');
  }

  /** Reads the body (bounded), then runs the call; never throws. */
  serve(req: IncomingMessage, res: ServerResponse): void {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.bodyLimit) return this.json(res, 413, { error: 'payload_too_large', message: `request bodies are limited to ${this.bodyLimit} bytes` });
    if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) {
      this.run(req, res, null);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      if (refused) return; // the rest is read and dropped, so the client gets its 413 instead of a reset
      size += c.length;
      if (size > this.bodyLimit) {
        refused = true;
        chunks.length = 0;
        res.setHeader('connection', 'close');
        this.json(res, 413, { error: 'payload_too_large', message: `request bodies are limited to ${this.bodyLimit} bytes` });
        // A client that keeps sending is cut off after a while.
        setTimeout(() => req.destroy(), 10_000).unref();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!refused) this.run(req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    });
    req.on('error', () => undefined);
  }

  private run(req: IncomingMessage, res: ServerResponse, body: Buffer | null): void {
    this.handle(req, res, body).catch((e: Error) => {
      if (e instanceof DependencyUnavailable) {
        dependencyErrors.inc({ app: 'gateway', dependency: e.dependency });
        if (!res.headersSent) {
          res.setHeader(Headers.RetryAfter, String(retryAfterSeconds));
          this.json(res, 503, { error: 'service_unavailable', message: `A dependency (${e.dependency}) is unavailable; nothing was charged. Retry shortly.` });
        }
      } else if (!res.headersSent) this.json(res, 500, { error: 'internal_error', message: 'Tollgate could not complete the request' });
      console.error(JSON.stringify({ level: 'error', context: 'gateway', msg: 'request failed', request_id: res.getHeader(Headers.RequestId) ?? null, path: pathOf(req.url ?? '/'), error: e.message }));
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse, body: Buffer | null): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const match = this.routes.match(req.method ?? 'GET', path);
    if (!match.route) {
      // A path read differently by us and by the upstream is refused before anything is counted or forwarded.
      if (match.refused) return this.error(res, match.refused.status, 'bad_request', { field: 'path', problem: match.refused.problem });
      return this.error(res, 404, 'not_found', {});
    }
    const offered = headerValue(req.headers['x-request-id']);
    const requestId = offered !== undefined && acceptableRequestId.test(offered) ? offered : uuidv7();
    res.setHeader(Headers.RequestId, requestId);
    const call: Call = {
      req, res, body, path: match.path, query: q === -1 ? '' : url.slice(q), requestId, route: match.route, params: match.params,
      nowMs: this.d.clock.now(),
      startedAt: process.hrtime.bigint(),
      ip: clientIp(req.socket.remoteAddress ?? '', headerValue(req.headers['x-forwarded-for']), this.d.trustedProxies),
      principal: null, rate: null, credits: null, clientGone: false,
      marks: this.d.serverTiming ? [['start', process.hrtime.bigint()]] : null,
    };
    res.once('close', () => {
      if (!res.writableFinished) call.clientGone = true;
    });

    if (!this.passesBadKeyThrottle(call)) return;
    if (!(await this.authenticate(call))) return;
    mark(call, 'auth');
    if (!(await this.passesLockout(call))) return;
    if (!(await this.limit(call))) return;
    mark(call, 'limit');
    if (call.route.handler !== 'proxy') return this.answerFromQuery(call);
    return this.proxy(call);
  }

  // ---- steps ----------------------------------------------------------------------------------------------

  /** Repeated invalid keys from one IP are refused before anything else is looked at. */
  private passesBadKeyThrottle(call: Call): boolean {
    const throttle = this.invalidKeyCheck(call.ip);
    if (throttle.refused) this.throttled(call, throttle.decision, 'invalid_key_throttled');
    return !throttle.refused;
  }

  private async authenticate(call: Call): Promise<boolean> {
    if (call.route.auth === 'none') return true;
    const creds = extractCredentials(this.d.profile.identity, call.req.headers);
    const result = await this.d.auth.authenticate(creds).catch((e: unknown) => {
      throw new DependencyUnavailable('postgres', e);
    });
    // Only a presented-but-wrong key counts towards the throttle; a missing one is a client bug, not a guess.
    if (!result.ok || result.principal.profile !== this.d.profile.name) {
      await this.unauthorized(call, Boolean(creds.key || creds.userToken));
      return false;
    }
    // A valid application key without the user token this route acts for: refused, but not a guessed key.
    if (call.route.auth === 'user' && result.principal.userId === null) {
      await this.unauthorized(call, false);
      return false;
    }
    call.principal = result.principal;
    return true;
  }

  private async passesLockout(call: Call): Promise<boolean> {
    if (!call.route.login || !this.d.profile.lockout) return true;
    const until = Math.max(0, ...(await Promise.all(this.loginKeys(call).map((k) => this.d.limits.lockedUntil(k, call.nowMs)))));
    if (until <= call.nowMs) return true;
    await this.lockedOut(call, until);
    return false;
  }

  private async limit(call: Call): Promise<boolean> {
    if (call.route.counts_against_limits) {
      call.rate = await this.d.limits.consume(this.checks(call, true), call.nowMs);
      if (call.rate.admitted) return true;
      await this.rateLimited(call);
      return false;
    }
    // /me and /usage never count, but still show where the caller stands.
    call.rate = await this.d.limits.peek(this.checks(call, true), call.nowMs);
    return true;
  }

  private async proxy(call: Call): Promise<void> {
    const { route, principal } = call;
    let hold: HeldCredits | null = null;

    // Fixed-cost routes hold their credits before the upstream is asked.
    if (principal && route.cost.kind === 'fixed' && route.cost.credits > 0) {
      const outcome = await this.hold(call, { kind: 'fixed', credits: route.cost.credits });
      if (!outcome.granted) return this.insufficientCredits(call, outcome.requested, outcome.shortfall);
      hold = { reservationId: outcome.reservationId, credits: outcome.held };
      mark(call, 'hold');
    }

    let upstream: UpstreamResponse;
    try {
      upstream = await this.forward(call);
      mark(call, 'upstream');
    } catch {
      // Nothing is charged: the hold is given back now, and the event carries status 502.
      await this.giveBack(call, hold);
      return this.refuseAfterForward(call, 502, 'upstream_unavailable', hold, 'upstream_unavailable');
    }
    const ok = upstream.status >= 200 && upstream.status < 300;
    if (!ok && hold) {
      await this.giveBack(call, hold);
      hold = { ...hold, credits: 0 };
    }
    if (route.login && this.d.profile.lockout && upstream.status === 401) await this.countFailedLogin(call);

    // A client that went away gets nothing, so it pays nothing: checked before anything more is held or recorded.
    if (principal && call.clientGone) return this.abandon(call, hold, []);

    // Per-entity routes are priced from what the upstream returned, before any of it reaches the caller.
    let entities: string[] = [];
    if (principal && route.cost.kind === 'per_entity' && ok) {
      const priced = await this.entitiesOf(upstream, route.cost.entities, route.cost.exclude);
      // An answer that can't be read, or has another shape than the route prices, can't be priced: it is not
      // handed out (fail closed), and costs nothing.
      if ('problem' in priced) return this.unpriceable(call, null, priced.problem);
      upstream = priced.response;
      entities = priced.entities;
      if (entities.length > 0) {
        const outcome = await this.hold(call, { kind: 'entities', ids: entities });
        if (!outcome.granted) return this.insufficientCredits(call, outcome.requested, outcome.shortfall);
        hold = { reservationId: outcome.reservationId, credits: outcome.held };
      }
      mark(call, 'price');
    }

    if (principal) {
      if (call.clientGone) return this.abandon(call, hold, entities);
      try {
        await this.publish(call, upstream.status, 'forwarded', entities, hold?.reservationId ?? null);
      } catch (e) {
        if (e instanceof UnrecordableEvent) {
          await this.giveBack(call, hold);
          return this.unpriceable(call, hold, e.message);
        }
        // Unrecorded data is never handed out: the hold goes back and the call is refused. Should the event have
        // reached Kafka after all (the ack was lost), metering finds its hold given back by the gateway and
        // charges nothing: a refused call is never charged.
        await this.giveBack(call, hold);
        throw new DependencyUnavailable('kafka', e);
      }
    }
    mark(call, 'record');
    decisions.inc({ profile: this.d.profile.name, outcome: 'forwarded' });
    const headers = forwardableHeaders(upstream.headers);
    this.decorate(call, false, headers);
    if (call.marks) headers['server-timing'] = serverTiming(call.marks);
    call.res.writeHead(upstream.status, headers);
    call.res.end(upstream.body);
  }

  /** The client closed its connection before its answer: the hold goes back and the call is recorded, free. */
  private async abandon(call: Call, hold: HeldCredits | null, entities: string[]): Promise<void> {
    await this.giveBack(call, hold);
    await this.publish(call, 499, 'client_closed', entities, hold?.reservationId ?? null).catch(() => undefined);
    decisions.inc({ profile: this.d.profile.name, outcome: 'client_closed' });
  }

  private async hold(call: Call, need: Need): Promise<HoldOutcome> {
    const paid: PaidCall = { orgId: call.principal!.orgId, profile: this.d.profile.name, method: call.req.method ?? 'GET', route: call.route.path, nowMs: call.nowMs };
    const outcome = await this.d.credits.hold(paid, need, uuidv7()).catch((e: unknown) => {
      throw new DependencyUnavailable('metering', e);
    });
    if (outcome.granted) call.credits = outcome.balance;
    return outcome;
  }

  /**
   * A hold of a call that will not hand data out goes back before the answer: the answer's credits header shows
   * the untouched balance, and a client retrying at once with its last credit is not refused for a hold metering
   * has yet to settle ("Failed requests (4xx/5xx errors) don't count against your balance"). If the give-back
   * can't be made now, settlement releases the hold when the event arrives.
   */
  private async giveBack(call: Call, hold: HeldCredits | null): Promise<void> {
    if (!hold || hold.credits === 0 || !call.principal) return;
    const given = await this.d.credits.giveBack(call.principal.orgId, hold.reservationId, hold.credits);
    if (given && call.credits !== null) call.credits += hold.credits;
  }

  private forward(call: Call): Promise<UpstreamResponse> {
    const { route } = call;
    const path = joinPath(this.d.profile.base_path, expandUpstreamPath(route.upstream_path ?? route.path, call.params)) + call.query;
    const headers = forwardableHeaders(call.req.headers);
    headers['x-request-id'] = call.requestId;
    // A priced answer is read by the gateway: ask for it uncompressed (decodedBody still copes if it comes compressed).
    if (route.cost.kind === 'per_entity') headers['accept-encoding'] = 'identity';
    return this.d.upstream.send(call.req.method ?? 'GET', path, headers, call.body);
  }

  /**
   * The billable ids of a 2xx answer (distinct, exclusions removed), or the problem that makes it unpriceable: a
   * body that can't be decoded (within `maxDecodedBytes`), isn't JSON, or hasn't the shape the route reads.
   */
  private async entitiesOf(upstream: UpstreamResponse, expression: string, exclude?: string): Promise<{ entities: string[]; response: UpstreamResponse } | { problem: string }> {
    let body: Buffer;
    let decoded: boolean;
    let json: unknown;
    try {
      ({ body, decoded } = await decodedBody(upstream));
    } catch (e) {
      return { problem: `the body can't be decoded: ${(e as Error).message}` };
    }
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      return { problem: 'the body is not JSON' };
    }
    const read = readEntityIds(json, expression);
    if (!read.ok) return { problem: read.problem };
    let ids = read.ids;
    if (exclude) {
      const excluded = readEntityIds(json, exclude);
      if (!excluded.ok) return { problem: excluded.problem };
      const skip = new Set(excluded.ids);
      ids = ids.filter((id) => !skip.has(id));
    }
    const entities = [...new Set(ids)];
    if (!decoded) return { entities, response: upstream };
    const headers = { ...upstream.headers };
    delete headers['content-encoding'];
    return { entities, response: { status: upstream.status, headers, body } };
  }

  /** A 2xx that can't be priced or recorded: not handed out, answered 502 `unpriceable`, recorded free. */
  private unpriceable(call: Call, hold: HeldCredits | null, problem: string): Promise<void> {
    console.warn(JSON.stringify({ level: 'warn', context: 'gateway', msg: 'unpriceable answer withheld', request_id: call.requestId, route: call.route.path, problem }));
    return this.refuseAfterForward(call, 502, 'unpriceable', hold, 'unpriceable');
  }

  /** The upstream could not be reached, or its answer could not be priced: 502, nothing charged, recorded. */
  private async refuseAfterForward(call: Call, status: 502, kind: ErrorKind, hold: HeldCredits | null, decision: Decision): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: decision });
    await this.publish(call, status, decision, [], hold?.reservationId ?? null).catch(() => undefined);
    this.error(call.res, status, kind, {}, this.decorate(call, false));
  }

  private async answerFromQuery(call: Call): Promise<void> {
    const path = joinPath(this.d.profile.base_path, call.route.path) + call.query;
    const headers: Record<string, string> = { 'x-request-id': call.requestId };
    for (const h of ['authorization', 'trakt-api-key']) {
      const v = headerValue(call.req.headers[h]);
      if (v) headers[h] = v;
    }
    const answer = await this.d.query.send('GET', path, headers, null).catch((e: unknown) => {
      throw new DependencyUnavailable('query', e);
    });
    if (call.principal && this.d.profile.headers.style === 'trackyard') {
      const me = call.route.handler === 'me' && answer.status === 200 ? (JSON.parse(answer.body.toString('utf8')) as { credits_remaining?: number }) : null;
      call.credits = me?.credits_remaining ?? (await this.d.credits.balance(call.principal.orgId).catch(() => null));
    }
    const out: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
    call.res.writeHead(answer.status, this.decorate(call, false, out));
    call.res.end(answer.body);
  }

  // ---- rejections -------------------------------------------------------------------------------------

  private async rateLimited(call: Call): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: 'rate_limited' });
    if (call.principal) {
      if (this.d.profile.headers.style === 'trackyard') call.credits = await this.d.credits.balance(call.principal.orgId).catch(() => null);
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
    if (guessedKey && (await this.countBadKey(call.ip, call.nowMs))) {
      // Over the shared count already (guesses made through other gateways): throttled, as the next ones will be.
      const throttle = this.invalidKeyCheck(call.ip);
      return this.throttled(call, throttle.decision, 'invalid_key_throttled');
    }
    decisions.inc({ profile: this.d.profile.name, outcome: 'unauthorized' });
    await this.peekForEveryResponse(call);
    this.error(call.res, 401, 'unauthorized', {}, this.decorate(call, false));
  }

  private invalidKeyCheck(ip: string): { refused: boolean; decision: RateDecision } {
    const counted = this.throttledIps.get(ip);
    const now = this.d.clock.now();
    const w = counted?.windows[0];
    if (!counted || !w || w.resetAtMs <= now) {
      if (counted) this.throttledIps.delete(ip);
      return notThrottled;
    }
    const full = { ...w, remaining: 0 };
    return { refused: true, decision: { admitted: false, windows: [full], refusedBy: full, retryAfterSeconds: Math.max(1, Math.ceil((w.resetAtMs - now) / 1000)) } };
  }

  /**
   * Counts a presented-but-wrong key against its IP; an IP with no attempt left is throttled until its window
   * resets. True when this attempt was itself over the count (refused by the shared store).
   */
  private async countBadKey(ip: string, nowMs: number): Promise<boolean> {
    const t = this.d.profile.invalid_key_throttle;
    const checks = [{ subjectKey: `${this.d.profile.name}:bad-key:${ip}`, rule: { name: 'invalid_key', periodSeconds: t.period_seconds, limit: t.attempts } }];
    const decision = await Promise.resolve(this.d.limits.consume(checks, nowMs)).catch(() => this.localBadKeys.consume(checks, nowMs));
    const w = decision.windows[0] ?? decision.refusedBy;
    if (!w || (decision.admitted && w.remaining > 0)) return false;
    if (this.throttledIps.size >= 100_000) {
      for (const [k, d] of this.throttledIps) if ((d.windows[0]?.resetAtMs ?? 0) <= nowMs) this.throttledIps.delete(k);
    }
    this.throttledIps.set(ip, { ...decision, windows: [w] });
    return !decision.admitted;
  }

  // ---- login lockout (beatpass) -------------------------------------------------------------------------

  private loginKeys(call: Call): string[] {
    const keys = [`${this.d.profile.name}:lockout:ip:${call.ip}`];
    for (const account of loginAccounts(call.body, headerValue(call.req.headers['content-type'])))
      keys.push(`${this.d.profile.name}:lockout:account:${account}`);
    return keys;
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
    try {
      call.rate = await this.d.limits.peek(this.checks(call, true), call.nowMs);
    } catch {
      call.rate = null; // the answer does not depend on the headers: send it without them
    }
  }

  // ---- helpers ------------------------------------------------------------------------------------------

  private checks(call: Call, counts: boolean) {
    const facts: CallFacts = {
      method: call.req.method ?? 'GET',
      category: call.route.category,
      countsAgainstLimits: counts,
      keyId: call.principal?.keyId ?? null,
      userId: call.principal?.userId ?? null,
      applicationId: call.principal?.keyId ?? null,
      clientIp: call.ip,
      profile: this.d.profile.name,
    };
    return applicableChecks(this.d.profile.limits, facts, this.planLimits(call.principal), call.principal?.limitOverrides ?? {});
  }

  private planLimits(principal: Principal | null): Record<string, number> {
    const plan = this.d.profile.plans.find((p) => p.name === (principal?.plan ?? this.d.profile.default_plan));
    return plan?.limits ?? {};
  }

  private decorate(call: Call, throttled: boolean, into: Record<string, string> = {}): Record<string, string> {
    return Object.assign(into, rateLimitHeaders(this.d.profile, { rate: call.rate, credits: call.credits, authenticated: call.principal !== null, throttled }, call.nowMs));
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
      method: call.req.method ?? 'GET',
      route: call.route.path,
      path: call.path,
      status_code: status,
      response_time_ms: Number(process.hrtime.bigint() - call.startedAt) / 1e6,
      entities,
      reservation_id: reservationId,
      request_id: call.requestId,
      decision,
    };
    const value = JSON.stringify(event);
    // The consumer's own contract, checked before any data goes out: an event metering would dead-letter is never
    // published for an answer the client gets.
    const valid = validateRequestCompleted(event, call.nowMs, Buffer.byteLength(value), this.d.maxEventBytes);
    if (!valid.ok) throw new UnrecordableEvent(`the call's event would be refused by metering: ${valid.reason}`);
    await this.d.events.publish(Topics.RequestCompleted, [{ key: p.orgId, value }]);
  }

  private error(res: ServerResponse, status: number, kind: ErrorKind, vars: Record<string, number | string>, headers: Record<string, string> = {}): void {
    for (const k in headers) res.setHeader(k, headers[k]!);
    this.json(res, status, renderErrorBody(this.d.profile.errors[kind], vars));
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) return;
    res.statusCode = status;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify(body));
  }
}

function mark(call: Call, step: string): void {
  call.marks?.push([step, process.hrtime.bigint()]);
}

/** `auth;dur=0.021, limit;dur=0.004, ...`: each step's milliseconds since the one before. */
function serverTiming(marks: Array<[string, bigint]>): string {
  return marks.slice(1).map(([name, at], i) => `${name};dur=${(Number(at - marks[i]![1]) / 1e6).toFixed(3)}`).join(', ');
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

export function joinPath(base: string, path: string): string {
  return (base.replace(/\/+$/, '') + '/' + path.replace(/^\/+/, '')).replace(/\/+$/, '') || '/';
}

/**
 * The account names a login body tries, however the upstream may read it: a JSON object's `username`, or a form
 * body's (`application/x-www-form-urlencoded`, every value of a repeated field). Lower-cased and bounded, so
 * `Demo` and `demo` share one lockout.
 */
function loginAccounts(body: Buffer | null, contentType: string | undefined): string[] {
  if (!body || body.length === 0 || body.length > 64 * 1024) return [];
  const text = body.toString('utf8');
  const names: unknown[] = [];
  if (/^\s*application\/x-www-form-urlencoded/i.test(contentType ?? '')) {
    names.push(...new URLSearchParams(text).getAll('username'));
  } else {
    try {
      const parsed = JSON.parse(text) as { username?: unknown } | null;
      names.push(parsed?.username);
    } catch {
      return [];
    }
  }
  const accounts = names.filter((n): n is string => typeof n === 'string' && n.length > 0).map((n) => n.toLowerCase().slice(0, 200));
  return [...new Set(accounts)];
}
