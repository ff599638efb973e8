import { IncomingMessage, ServerResponse } from 'node:http';
import { v7 as uuidv7 } from 'uuid';
import { EventLimits, Headers } from '@tollgate/contracts';
import { Publisher } from '@tollgate/messaging';
import { KeyAuthenticator } from '@tollgate/persistence';
import { decisions, dependencyErrors } from '@tollgate/platform';
import { expandUpstreamPath, Profile, RouteDefinition, RouteTable } from '@tollgate/profiles';
import { clientIp, Clock, CounterStore } from '@tollgate/rate-limit';
import { forwardableHeaders, Upstream, UpstreamResponse } from '../clients/upstream';
import { Admission } from './admission';
import { Answers } from './answers';
import { Call, DependencyUnavailable, Draw, headerValue, joinPath, mark, pathOf, RoutePlan, serverTiming, UnrecordableEvent } from './call';
import { CreditPolicy, HoldOutcome, Need } from './credit-policy';
import { headerStyle } from './header-styles';
import { pricingOf } from './pricing';

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

/**
 * How a forwarded call ends: its upstream answer handed out (`answer`), nothing because the client went away
 * (`abandon`), or a refusal: 402 (the credits don't cover it) or 502 (upstream unreachable, answer unpriceable).
 */
type Ending = 'answer' | 'abandon' | { status: 402; requested: number; shortfall: number } | { status: 502; kind: 'upstream_unavailable' | 'unpriceable'; problem: string | null };

const upstreamUnavailable: Ending = { status: 502, kind: 'upstream_unavailable', problem: null };

const insufficient = (o: Extract<HoldOutcome, { granted: false }>): Ending => ({ status: 402, requested: o.requested, shortfall: o.shortfall });

/**
 * A caller's X-Request-Id is echoed and recorded only when an event may carry it as it is: visible ASCII, at
 * most `EventLimits.requestIdLength` characters. Any other is replaced by one the gateway makes (and answers
 * with), so no caller-chosen id can make its call's event invalid.
 */
const acceptableRequestId = new RegExp(`^[\\x21-\\x7e]{1,${EventLimits.requestIdLength}}$`);

/** Paths the gateway's Nest part answers even under a base path of `/`. */
const reservedPaths = new Set(['/health/live', '/health/ready', '/metrics']);

const retryAfterSeconds = 2;
const bodyLimit = 10 * 1024 * 1024;

/**
 * One call, as steps: route -> invalid-key throttle -> authenticate -> login lockout -> limit (Admission) -> credits
 * (hold) -> forward -> price (per-entity) -> record (event, acknowledged by Kafka) -> answer.
 * Every answer that reached a decision for a known org is published as a request-completed event, so /usage shows
 * rejected calls too. Data goes out only after its event is acknowledged, and only to a client still connected.
 *
 * What varies by profile and route is picked once, here in the constructor: the header style (`HeaderStyle`), each
 * route's pricing (`Pricing`: free, fixed, per entity), and the credit policy (strict, leases, eventual: main.ts).
 *
 * This is a plain Node request handler (no framework on the paid path); the gateway's server hands it every
 * request under the profile's base path and gives the rest (health, metrics, docs) to Nest.
 */
export class GatewayPipeline {
  private readonly routes: RouteTable;
  private readonly base: string;
  private readonly plans = new Map<RouteDefinition, RoutePlan>();
  private readonly answers: Answers;
  private readonly admission: Admission;

  constructor(private readonly d: GatewayDeps) {
    this.routes = new RouteTable(d.profile);
    this.base = d.profile.base_path.replace(/\/+$/, '');
    for (const route of d.profile.routes) {
      const template = route.upstream_path ?? route.path;
      const upstreamPath = template.includes(':') ? null : joinPath(d.profile.base_path, expandUpstreamPath(template, {}));
      this.plans.set(route, { pricing: pricingOf(route), upstreamPath });
    }
    this.answers = new Answers(d.profile, headerStyle(d.profile), d.events, d.maxEventBytes);
    this.admission = new Admission(d, this.answers);
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
    if (declared > bodyLimit) return this.answers.json(res, 413, { error: 'payload_too_large', message: `request bodies are limited to ${bodyLimit} bytes` });
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
      if (size > bodyLimit) {
        refused = true;
        chunks.length = 0;
        res.setHeader('connection', 'close');
        this.answers.json(res, 413, { error: 'payload_too_large', message: `request bodies are limited to ${bodyLimit} bytes` });
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
          this.answers.json(res, 503, { error: 'service_unavailable', message: `A dependency (${e.dependency}) is unavailable; nothing was charged. Retry shortly.` });
        }
      } else if (!res.headersSent) this.answers.json(res, 500, { error: 'internal_error', message: 'Tollgate could not complete the request' });
      console.error(JSON.stringify({ level: 'error', context: 'gateway', msg: 'request failed', request_id: res.getHeader(Headers.RequestId) ?? null, path: pathOf(req.url ?? '/'), error: e.message }));
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse, body: Buffer | null): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const method = req.method ?? 'GET';
    const match = this.routes.match(method, q === -1 ? url : url.slice(0, q));
    if (!match.route) {
      // A path read differently by us and by the upstream is refused before anything is counted or forwarded.
      if (match.refused) return this.answers.error(res, match.refused.status, 'bad_request', { field: 'path', problem: match.refused.problem });
      return this.answers.error(res, 404, 'not_found', {});
    }
    const offered = headerValue(req.headers['x-request-id']);
    const requestId = offered !== undefined && acceptableRequestId.test(offered) ? offered : uuidv7();
    res.setHeader(Headers.RequestId, requestId);
    const call = new Call(
      req, res, body, match.path, q === -1 ? '' : url.slice(q), method, requestId, match.route, this.plans.get(match.route)!, match.params,
      clientIp(req.socket.remoteAddress ?? '', headerValue(req.headers['x-forwarded-for']), this.d.trustedProxies),
      this.d.clock.now(),
      process.hrtime.bigint(),
      this.d.serverTiming ? [['start', process.hrtime.bigint()]] : null,
    );

    const admission = this.admission;
    if (!admission.passesBadKeyThrottle(call)) return;
    if (call.route.auth !== 'none' && !(await admission.authenticate(call))) return;
    mark(call, 'auth');
    if (call.route.login && !(await admission.passesLockout(call))) return;
    if (!(await admission.limit(call))) return;
    mark(call, 'limit');
    if (call.route.handler !== 'proxy') return this.answerFromQuery(call);
    return this.proxy(call);
  }

  // ---- a forwarded call -----------------------------------------------------------------------------------

  /**
   * Forwards the call and ends it. What the call drew is released in ONE place, the `finally` below, which every
   * way out passes through (an ending, or a thrown dependency error) before any answer is written: the answer's
   * credits header then shows the untouched balance, and a client retrying at once with its last credit is not
   * refused for a hold metering has yet to settle ("Failed requests (4xx/5xx errors) don't count against your
   * balance"). Only a 2xx whose event was acknowledged keeps what it drew (`Draw.keep`, in `record`), so the
   * release gives nothing back for it; `Draw` makes a second release a no-op.
   */
  private async proxy(call: Call): Promise<void> {
    let end: Ending;
    try {
      end = await this.forwardAndPrice(call);
      // A 2xx for a known org is recorded before the release: once its event is acknowledged its credits are spent.
      if (end === 'answer' && spends(call)) end = await this.record(call);
    } finally {
      // Crash window: a gateway that dies here has held credits it never gives back; metering's sweeper releases
      // a per-call hold (or ends a lease) once its event can no longer arrive.
      const back = call.draw ? await call.draw.release() : 0;
      if (back > 0 && call.credits !== null) call.credits += back;
    }
    // Any other answer is recorded after the release; its event (status non-2xx) costs nothing.
    if (end === 'answer' && !spends(call)) end = await this.record(call);
    if (end === 'answer') return this.handOut(call);
    if (end === 'abandon') return this.abandon(call);
    if (end.status === 402) return this.insufficientCredits(call, end.requested, end.shortfall);
    return this.refuseAfterForward(call, end.kind, end.problem);
  }

  /** Holds what the route costs, forwards, prices: everything but the answer (and the release: `proxy`). */
  private async forwardAndPrice(call: Call): Promise<Ending> {
    const { principal } = call;
    const pricing = call.plan.pricing;
    // Fixed-cost routes hold their credits before the upstream is asked.
    if (principal && pricing.upfront) {
      const outcome = await this.hold(call, pricing.upfront);
      if (!outcome.granted) return insufficient(outcome);
      mark(call, 'hold');
    }

    let upstream: UpstreamResponse;
    try {
      upstream = await this.forward(call);
      mark(call, 'upstream');
    } catch {
      // Nothing is charged: the hold is given back (the release), and the event carries status 502.
      return upstreamUnavailable;
    }
    const ok = isSuccess(upstream);
    if (upstream.status === 401) await this.admission.countFailedLogin(call);

    // A client that went away gets nothing, so it pays nothing: checked before anything more is held or recorded.
    if (principal && call.clientGone) return 'abandon';

    // Per-entity routes are priced from what the upstream returned, before any of it reaches the caller.
    if (principal && ok && pricing.readsAnswer) {
      const priced = await pricing.price(upstream);
      // An answer that can't be read, or has another shape than the route prices, can't be priced: it is not
      // handed out (fail closed), and costs nothing.
      if ('problem' in priced) return { status: 502, kind: 'unpriceable', problem: priced.problem };
      upstream = priced.response;
      call.entities = priced.entities;
      if (priced.entities.length > 0) {
        const outcome = await this.hold(call, { kind: 'entities', ids: priced.entities });
        if (!outcome.granted) return insufficient(outcome);
      }
      mark(call, 'price');
    }
    call.upstream = upstream;
    if (principal && call.clientGone) return 'abandon';
    return 'answer';
  }

  /** The call's credits held by the credit policy; a granted hold becomes the call's `Draw`. */
  private async hold(call: Call, need: Need): Promise<HoldOutcome> {
    const draw = new Draw(this.d.credits, call.principal!.orgId, this.d.profile.name, call.method, call.route.path, call.nowMs);
    const outcome = await this.d.credits.hold(draw, need, uuidv7()).catch((e: unknown) => {
      throw new DependencyUnavailable('metering', e);
    });
    if (outcome.granted) {
      draw.took(outcome);
      call.draw = draw;
      call.credits = outcome.balance;
    }
    return outcome;
  }

  private forward(call: Call): Promise<UpstreamResponse> {
    const { route } = call;
    const path = (call.plan.upstreamPath ?? joinPath(this.d.profile.base_path, expandUpstreamPath(route.upstream_path ?? route.path, call.params))) + call.query;
    const headers = forwardableHeaders(call.req.headers);
    headers['x-request-id'] = call.requestId;
    // A priced answer is read by the gateway: ask for it uncompressed (decodedBody still copes if it comes compressed).
    if (call.plan.pricing.readsAnswer) headers['accept-encoding'] = 'identity';
    return this.d.upstream.send(call.method, path, headers, call.body);
  }

  /**
   * The answer's event, acknowledged before any of it goes out; a 2xx's keeps what the call drew. Unrecorded data
   * is never handed out: the call is refused (the release gives its credits back). Should the event have reached
   * Kafka after all (the ack was lost), metering finds its hold given back by the gateway and charges nothing: a
   * refused call is never charged.
   */
  private async record(call: Call): Promise<Ending> {
    if (call.principal) {
      try {
        await this.answers.publish(call, call.upstream!.status, 'forwarded', call.entities, call.draw?.reservationId ?? null);
      } catch (e) {
        if (e instanceof UnrecordableEvent) return { status: 502, kind: 'unpriceable', problem: e.message };
        throw new DependencyUnavailable('kafka', e);
      }
      call.draw?.keep();
    }
    mark(call, 'record');
    return 'answer';
  }

  private handOut(call: Call): void {
    const upstream = call.upstream!;
    decisions.inc({ profile: this.d.profile.name, outcome: 'forwarded' });
    const headers = forwardableHeaders(upstream.headers);
    this.answers.decorate(call, false, headers);
    if (call.marks) headers['server-timing'] = serverTiming(call.marks);
    call.res.writeHead(upstream.status, headers);
    call.res.end(upstream.body);
  }

  /** The client closed its connection before its answer: recorded, free (its hold went back). */
  private async abandon(call: Call): Promise<void> {
    await this.answers.publish(call, 499, 'client_closed', call.entities, call.draw?.reservationId ?? null).catch(() => undefined);
    decisions.inc({ profile: this.d.profile.name, outcome: 'client_closed' });
  }

  /**
   * The upstream could not be reached, or its answer could not be priced or recorded (`problem`): 502, nothing
   * charged, recorded. An unpriceable 2xx is not handed out.
   */
  private async refuseAfterForward(call: Call, kind: 'upstream_unavailable' | 'unpriceable', problem: string | null): Promise<void> {
    if (problem !== null) console.warn(JSON.stringify({ level: 'warn', context: 'gateway', msg: 'unpriceable answer withheld', request_id: call.requestId, route: call.route.path, problem }));
    decisions.inc({ profile: this.d.profile.name, outcome: kind });
    await this.answers.publish(call, 502, kind, [], call.draw?.reservationId ?? null).catch(() => undefined);
    this.answers.error(call.res, 502, kind, {}, this.answers.decorate(call, false));
  }

  private async insufficientCredits(call: Call, requested: number, shortfall: number): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: 'insufficient_credits' });
    call.credits = Math.max(0, call.credits ?? requested - shortfall);
    await this.answers.publish(call, 402, 'insufficient_credits', [], null).catch(() => undefined);
    return this.answers.error(call.res, 402, 'insufficient_credits', { requested, shortfall }, this.answers.decorate(call, false));
  }

  // ---- /me and /usage -------------------------------------------------------------------------------------

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
    if (call.principal && this.answers.style.showsCredits) {
      const me = call.route.handler === 'me' && answer.status === 200 ? (JSON.parse(answer.body.toString('utf8')) as { credits_remaining?: number }) : null;
      call.credits = me?.credits_remaining ?? (await this.d.credits.balance(call.principal.orgId).catch(() => null));
    }
    const out: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
    call.res.writeHead(answer.status, this.answers.decorate(call, false, out));
    call.res.end(answer.body);
  }
}

/** The call's answer is a 2xx for a known org: the one kind of answer that is charged. */
function spends(call: Call): boolean {
  return call.principal !== null && isSuccess(call.upstream!);
}

function isSuccess(upstream: UpstreamResponse): boolean {
  return upstream.status >= 200 && upstream.status < 300;
}
