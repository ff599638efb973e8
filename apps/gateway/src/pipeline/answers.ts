import { ServerResponse } from 'node:http';
import { v7 as uuidv7 } from 'uuid';
import { Decision, RequestCompletedV1, Topics, validateRequestCompleted } from '@tollgate/contracts';
import { Publisher } from '@tollgate/messaging';
import { Profile, renderErrorBody } from '@tollgate/profiles';
import { RateDecision } from '@tollgate/rate-limit';
import { Call, UnrecordableEvent } from './call';
import { HeaderStyle } from './header-styles';

export type ErrorKind = keyof Profile['errors'];

/**
 * How the gateway answers and records a call, shared by its steps: the profile's headers (its `HeaderStyle`),
 * its error bodies, and the request-completed event every decided call of a known org is recorded with.
 */
export class Answers {
  constructor(
    private readonly profile: Profile,
    readonly style: HeaderStyle,
    private readonly events: Publisher,
    /** The largest event published for an answer the client gets (GatewayDeps.maxEventBytes). */
    private readonly maxEventBytes: number | undefined,
  ) {}

  /** The call's rate-limit (and credits) headers, added to `into`. */
  decorate(call: Call, throttled: boolean, into: Record<string, string> = {}): Record<string, string> {
    return this.style.decorate({ rate: call.rate, credits: call.credits, authenticated: call.principal !== null, throttled }, call.nowMs, into);
  }

  /** Tollgate's 429 of a window (a limit, or the invalid-key throttle): its headers show that window. */
  throttled(call: Call, rate: RateDecision, kind: ErrorKind): void {
    call.rate = rate;
    const retryAfter = Math.max(1, rate.retryAfterSeconds);
    this.error(call.res, 429, kind, { retry_after: retryAfter }, this.decorate(call, true));
  }

  /** The call's request-completed event, acknowledged by Kafka (or the spool) before it resolves. */
  async publish(call: Call, status: number, decision: Decision, entities: string[], reservationId: string | null): Promise<void> {
    const p = call.principal;
    if (!p) return;
    const event: RequestCompletedV1 = {
      event_id: uuidv7(),
      schema_version: 1,
      occurred_at: new Date(call.nowMs).toISOString(),
      org_id: p.orgId,
      api_key_id: p.keyId,
      subject: p.userId ? { kind: 'user', id: p.userId } : { kind: 'key', id: p.keyId },
      profile: this.profile.name,
      method: call.method,
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
    const valid = validateRequestCompleted(event, call.nowMs, Buffer.byteLength(value), this.maxEventBytes);
    if (!valid.ok) throw new UnrecordableEvent(`the call's event would be refused by metering: ${valid.reason}`);
    await this.events.publish(Topics.RequestCompleted, [{ key: p.orgId, value }]);
  }

  error(res: ServerResponse, status: number, kind: ErrorKind, vars: Record<string, number | string>, headers?: Record<string, string>): void {
    if (headers) for (const k in headers) res.setHeader(k, headers[k]!);
    this.json(res, status, renderErrorBody(this.profile.errors[kind], vars));
  }

  json(res: ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) return;
    res.statusCode = status;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify(body));
  }
}
