import { IncomingMessage, ServerResponse } from 'node:http';
import { Principal } from '@tollgate/persistence';
import { RouteDefinition } from '@tollgate/profiles';
import { RateDecision } from '@tollgate/rate-limit';
import { UpstreamResponse } from '../clients/upstream';
import { CreditPolicy, HoldOutcome, PaidCall } from './credit-policy';
import { Pricing } from './pricing';

/** What the gateway works out once per route, at start, instead of on each call. */
export interface RoutePlan {
  /** How the route is paid for (free, fixed, per entity). */
  readonly pricing: Pricing;
  /** The upstream path (base path included, no query) when the route's template has no parameter; else null. */
  readonly upstreamPath: string | null;
}

/** What one call has established so far; each step adds to it. One object per call, its shape fixed here. */
export class Call {
  principal: Principal | null = null;
  rate: RateDecision | null = null;
  /** Spendable credits after this call, when known (the credits header). */
  credits: number | null = null;
  /** What the call drew from the org's credits (made at its first hold): given back once unless it is spent. */
  draw: Draw | null = null;
  /** The upstream's answer, once forwarded (as handed out: a priced one decoded). */
  upstream: UpstreamResponse | null = null;
  /** The billable entities of a per-entity answer. */
  entities: string[] = noEntities;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly body: Buffer | null,
    /** The request's canonical path (no query string; RouteTable's reading). */
    readonly path: string,
    /** Its query string, with its `?`, or ''. */
    readonly query: string,
    readonly method: string,
    readonly requestId: string,
    readonly route: RouteDefinition,
    readonly plan: RoutePlan,
    readonly params: Record<string, string>,
    readonly ip: string,
    readonly nowMs: number,
    readonly startedAt: bigint,
    /** Step timings for the Server-Timing header (only with GATEWAY_SERVER_TIMING=1). */
    readonly marks: Array<[string, bigint]> | null,
  ) {}

  /** The client closed its connection before its answer was sent (Node marks the response destroyed then). */
  get clientGone(): boolean {
    return this.res.destroyed && !this.res.writableFinished;
  }
}

/** Shared by every call that bills no entity (never written to). */
const noEntities: string[] = [];

/**
 * The credits one call drew: the call's single release. It is what the credit policy is asked to hold (the paid
 * call's facts), remembers what was granted, and ends one of two ways, each at most once:
 * - `keep()`: the call's 2xx was recorded (its event acknowledged): the credits are spent;
 * - `release()`: anything else (an error answer, upstream down, client gone, unpriceable, unrecorded, a thrown
 *   dependency error): the credits go back. After `keep()` or a first `release()` it does nothing, so the
 *   pipeline calls it from one `finally` that every exit passes through, before any answer is written.
 * A call holds at most once: a fixed price before the upstream is asked, or its entities after (never both).
 */
export class Draw implements PaidCall {
  reservationId: string | null = null;
  /** Credits held and not given back. */
  credits = 0;
  private state: 'empty' | 'held' | 'kept' | 'released' = 'empty';

  constructor(
    private readonly policy: CreditPolicy,
    readonly orgId: string,
    readonly profile: string,
    readonly method: string,
    /** The profile's route template. */
    readonly route: string,
    readonly nowMs: number,
  ) {}

  /** A granted hold is now the call's. */
  took(outcome: Extract<HoldOutcome, { granted: true }>): void {
    if (this.state !== 'empty') throw new Error('a call holds its credits once');
    this.state = 'held';
    this.reservationId = outcome.reservationId;
    this.credits = outcome.held;
  }

  /** The call's 2xx is recorded: what it drew is spent (metering charges it from the event). */
  keep(): void {
    if (this.state === 'held') this.state = 'kept';
  }

  /**
   * Gives back what the call drew, once; resolves with the credits given back now (0 when nothing was held, it
   * was spent or given back already, or metering could not be told now: settlement then releases the hold when
   * the call's event arrives, which is never a charged one, or the sweeper does when no event arrives).
   */
  async release(): Promise<number> {
    if (this.state !== 'held') return 0;
    this.state = 'released';
    if (this.credits === 0) return 0;
    const given = await this.policy.giveBack(this.orgId, this.reservationId, this.credits);
    return given ? this.credits : 0;
  }
}

/** A dependency that is down: the call is refused with 503 and Retry-After, and nothing is charged. */
export class DependencyUnavailable extends Error {
  constructor(readonly dependency: 'postgres' | 'metering' | 'kafka' | 'redis' | 'query', cause: unknown) {
    super(`${dependency} is unavailable: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

/**
 * A 2xx the gateway can't record as an event metering accepts (its ids make the event too large, say): it is
 * not handed out; the call is answered 502 `unpriceable` and costs nothing.
 */
export class UnrecordableEvent extends Error {}

export function mark(call: Call, step: string): void {
  call.marks?.push([step, process.hrtime.bigint()]);
}

/** `auth;dur=0.021, limit;dur=0.004, ...`: each step's milliseconds since the one before. */
export function serverTiming(marks: Array<[string, bigint]>): string {
  return marks.slice(1).map(([name, at], i) => `${name};dur=${(Number(at - marks[i]![1]) / 1e6).toFixed(3)}`).join(', ');
}

export function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

export function joinPath(base: string, path: string): string {
  return (base.replace(/\/+$/, '') + '/' + path.replace(/^\/+/, '')).replace(/\/+$/, '') || '/';
}
