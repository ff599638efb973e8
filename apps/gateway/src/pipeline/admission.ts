import { Headers } from '@tollgate/contracts';
import { extractCredentials, KeyAuthenticator } from '@tollgate/persistence';
import { decisions } from '@tollgate/platform';
import { Profile } from '@tollgate/profiles';
import { applicableChecks, CallFacts, Clock, CounterCheck, CounterStore, MemoryCounterStore, RateDecision } from '@tollgate/rate-limit';
import { Answers } from './answers';
import { Call, DependencyUnavailable, headerValue } from './call';
import { CreditPolicy } from './credit-policy';

export interface AdmissionDeps {
  profile: Profile;
  auth: KeyAuthenticator;
  /** Shared counters (Redis when REDIS_URL is set): rate limits and login lockouts. */
  limits: CounterStore;
  credits: CreditPolicy;
  clock: Clock;
}

/** The invalid-key check's answer for nearly every call: one object, not one per call. */
const notThrottled: { refused: false; decision: RateDecision } = { refused: false, decision: { admitted: true, windows: [], refusedBy: null, retryAfterSeconds: 0 } };

/**
 * The steps before a call reaches its upstream, each answering the call itself when it refuses it: invalid-key
 * throttle -> authenticate -> login lockout -> rate limits. Each resolves true when the call goes on.
 */
export class Admission {
  /**
   * The invalid-key throttle. Failed keys are counted in the shared store (Redis when REDIS_URL is set, so guesses
   * spread over several gateways add up; this gateway's memory otherwise, or when Redis fails); an IP that used up
   * its attempts is remembered here until its window resets, so the check before authentication needs no round trip.
   */
  private readonly throttledIps = new Map<string, RateDecision>();
  private readonly localBadKeys = new MemoryCounterStore();
  /** Each plan's limits, looked up once. */
  private readonly planLimits = new Map<string, Record<string, number>>();
  private readonly noLimits: Record<string, number> = {};

  constructor(private readonly d: AdmissionDeps, private readonly answers: Answers) {
    for (const plan of d.profile.plans) if (!this.planLimits.has(plan.name)) this.planLimits.set(plan.name, plan.limits ?? this.noLimits);
  }

  /** Repeated invalid keys from one IP are refused before anything else is looked at. */
  passesBadKeyThrottle(call: Call): boolean {
    const throttle = this.invalidKeyCheck(call.ip);
    if (throttle.refused) this.answers.throttled(call, throttle.decision, 'invalid_key_throttled');
    return !throttle.refused;
  }

  async authenticate(call: Call): Promise<boolean> {
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

  async passesLockout(call: Call): Promise<boolean> {
    if (!call.route.login || !this.d.profile.lockout) return true;
    const until = Math.max(0, ...(await Promise.all(this.loginKeys(call).map((k) => this.d.limits.lockedUntil(k, call.nowMs)))));
    if (until <= call.nowMs) return true;
    await this.lockedOut(call, until);
    return false;
  }

  async limit(call: Call): Promise<boolean> {
    if (call.route.counts_against_limits) {
      call.rate = await this.d.limits.consume(this.checks(call), call.nowMs);
      if (call.rate.admitted) return true;
      await this.rateLimited(call);
      return false;
    }
    // /me and /usage never count, but still show where the caller stands.
    call.rate = await this.d.limits.peek(this.checks(call), call.nowMs);
    return true;
  }

  /** An upstream 401 on a login route: one more failed login for the IP and each account the body tries. */
  async countFailedLogin(call: Call): Promise<void> {
    const l = this.d.profile.lockout;
    if (!call.route.login || !l) return;
    for (const key of this.loginKeys(call)) {
      const d = await this.d.limits.consume([{ subjectKey: `${key}:failures`, rule: { name: 'failed_logins', periodSeconds: l.window_seconds, limit: l.max_failures } }], call.nowMs);
      const w = d.windows[0];
      if (!d.admitted || (w && w.remaining === 0)) await this.d.limits.lock(key, call.nowMs + l.lockout_seconds * 1000);
    }
  }

  // ---- refusals -------------------------------------------------------------------------------------------

  private async rateLimited(call: Call): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: 'rate_limited' });
    if (call.principal) {
      if (this.answers.style.showsCredits) call.credits = await this.d.credits.balance(call.principal.orgId).catch(() => null);
      await this.answers.publish(call, 429, 'rate_limited', [], null).catch(() => undefined);
    }
    return this.answers.throttled(call, call.rate!, 'rate_limited');
  }

  private async unauthorized(call: Call, guessedKey: boolean): Promise<void> {
    if (guessedKey && (await this.countBadKey(call.ip, call.nowMs))) {
      // Over the shared count already (guesses made through other gateways): throttled, as the next ones will be.
      const throttle = this.invalidKeyCheck(call.ip);
      return this.answers.throttled(call, throttle.decision, 'invalid_key_throttled');
    }
    decisions.inc({ profile: this.d.profile.name, outcome: 'unauthorized' });
    await this.peekForEveryResponse(call);
    this.answers.error(call.res, 401, 'unauthorized', {}, this.answers.decorate(call, false));
  }

  private async lockedOut(call: Call, untilMs: number): Promise<void> {
    decisions.inc({ profile: this.d.profile.name, outcome: 'locked_out' });
    const retryAfter = Math.max(1, Math.ceil((untilMs - call.nowMs) / 1000));
    await this.peekForEveryResponse(call);
    // Not `throttled`: the Retry-After is the lockout's, not a window's.
    const headers = this.answers.decorate(call, false);
    headers[Headers.RetryAfter] = String(retryAfter);
    this.answers.error(call.res, 429, 'locked_out', { retry_after: retryAfter }, headers);
  }

  /**
   * A style that shows limits on every answer (BeatPass: "Responses include standard rate limit headers") shows
   * them on the answers given before the limits are counted (401, login lockout) too: peeked without counting;
   * without a key the client is its IP. Other styles show nothing on these answers, so they skip the round trip.
   */
  private async peekForEveryResponse(call: Call): Promise<void> {
    if (!this.answers.style.limitsOnEveryAnswer) return;
    try {
      call.rate = await this.d.limits.peek(this.checks(call), call.nowMs);
    } catch {
      call.rate = null; // the answer does not depend on the headers: send it without them
    }
  }

  // ---- the invalid-key throttle ----------------------------------------------------------------------------

  private invalidKeyCheck(ip: string): { refused: boolean; decision: RateDecision } {
    const counted = this.throttledIps.get(ip);
    if (!counted) return notThrottled;
    const now = this.d.clock.now();
    const w = counted.windows[0];
    if (!w || w.resetAtMs <= now) {
      this.throttledIps.delete(ip);
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

  // ---- helpers --------------------------------------------------------------------------------------------

  private loginKeys(call: Call): string[] {
    const keys = [`${this.d.profile.name}:lockout:ip:${call.ip}`];
    for (const account of loginAccounts(call.body, headerValue(call.req.headers['content-type'])))
      keys.push(`${this.d.profile.name}:lockout:account:${account}`);
    return keys;
  }

  /** The limit windows this call counts in (or is shown). */
  private checks(call: Call): CounterCheck[] {
    const p = call.principal;
    const facts: CallFacts = {
      method: call.method,
      category: call.route.category,
      countsAgainstLimits: true,
      keyId: p?.keyId ?? null,
      userId: p?.userId ?? null,
      applicationId: p?.keyId ?? null,
      clientIp: call.ip,
      profile: this.d.profile.name,
    };
    const plan = this.planLimits.get(p?.plan ?? this.d.profile.default_plan) ?? this.noLimits;
    return applicableChecks(this.d.profile.limits, facts, plan, p?.limitOverrides ?? this.noLimits);
  }
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
