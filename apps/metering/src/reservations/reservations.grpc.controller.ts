import { Controller } from '@nestjs/common';
import { GrpcMethod, GrpcStreamCall, RpcException } from '@nestjs/microservices';
import { ServerDuplexStream, status } from '@grpc/grpc-js';
import {
  BalancesReply,
  BalancesRequest,
  forbiddenCharacterAt,
  MaxBalancesPerCall,
  ReserveBatchReply,
  ReserveBatchRequest,
  ReserveRequest,
  ReserveResult,
  ReserveStreamReply,
  ReserveStreamRequest,
} from '@tollgate/contracts';
import { ClockSkewError, ReserveCommand, ReservationService, UnknownOrgError, UnknownRouteError } from './reservation.service';

/** tollgate.metering.v1.Reservations (libs/contracts/src/proto/metering.proto). */
@Controller()
export class ReservationsGrpcController {
  constructor(private readonly reservations: ReservationService) {}

  @GrpcMethod('Reservations', 'ReserveBatch')
  async reserveBatch(req: ReserveBatchRequest): Promise<ReserveBatchReply> {
    const requests = req.requests ?? [];
    if (requests.length > 1000) throw invalid('requests has more than 1000 holds');
    // All of them join the same group commit; each is answered on its own.
    const settled = await Promise.allSettled(requests.map((r) => this.reserve(r)));
    return { results: settled.map((s) => (s.status === 'fulfilled' ? { reply: s.value, errorCode: 0, errorMessage: '' } : failed(s.reason))) };
  }

  /**
   * ReserveBatch over one long-lived stream (how gateways send their holds): each request is answered, with its id,
   * once its holds are decided; the stream ends once the caller ended it and every answer is out.
   */
  @GrpcStreamCall('Reservations', 'ReserveStream')
  reserveStream(call: ServerDuplexStream<ReserveStreamRequest, ReserveStreamReply>): void {
    let unanswered = 0;
    let ended = false;
    const endIfDone = () => {
      if (ended && unanswered === 0) call.end();
    };
    call.on('data', (req: ReserveStreamRequest) => {
      unanswered++;
      const requests = req.requests ?? [];
      this.reserveBatch({ requests })
        .catch((e: unknown) => ({ results: requests.map(() => failed(e)) }))
        .then((reply) => {
          if (!call.cancelled) call.write({ id: req.id, results: reply.results });
        })
        .finally(() => {
          unanswered--;
          endIfDone();
        });
    });
    call.on('end', () => {
      ended = true;
      endIfDone();
    });
    // A caller that went away: what it asked for is still decided (as a unary call past its deadline would be).
    call.on('error', () => undefined);
  }

  @GrpcMethod('Reservations', 'Reserve')
  async reserve(req: ReserveRequest) {
    if (!req.reservationId) throw invalid('reservation_id is required');
    if (!req.orgId) throw invalid('org_id is required');
    // Bounded and printable before anything reaches SQL: one bad hold must not fail its batch's neighbours.
    for (const [field, value, max] of [['reservation_id', req.reservationId, 128], ['org_id', req.orgId, 64], ['method', req.method ?? '', 16], ['route', req.route ?? '', 512]] as const) {
      checkText(field, value, max);
    }
    const entities = req.entities ?? [];
    if (entities.length > 10_000) throw invalid('entities has more than 10000 ids');
    entities.forEach((e, i) => checkText(`entities.${i}`, e, 256));
    const at = req.occurredAt ? Date.parse(req.occurredAt) : Date.now();
    if (Number.isNaN(at)) throw invalid('occurred_at must be an RFC 3339 time');
    const lease = leaseTerms(req);
    try {
      return await this.reservations.reserve({ ...req, entities, occurredAt: at, lease });
    } catch (e) {
      if (e instanceof UnknownOrgError) throw new RpcException({ code: status.NOT_FOUND, message: e.message });
      if (e instanceof UnknownRouteError || e instanceof ClockSkewError) throw invalid(e.message);
      throw e;
    }
  }

  @GrpcMethod('Reservations', 'Release')
  async release(req: { reservationId: string; orgId: string }) {
    // A hold is its id within its org: both name it.
    if (!req.reservationId) throw invalid('reservation_id is required');
    if (!req.orgId) throw invalid('org_id is required');
    checkText('reservation_id', req.reservationId, 128);
    checkText('org_id', req.orgId, 64);
    return { released: await this.reservations.release(req.reservationId, req.orgId) };
  }

  @GrpcMethod('Reservations', 'EndLease')
  async endLease(req: { leaseId: string; orgId: string; drawn: number }) {
    if (!req.leaseId) throw invalid('lease_id is required');
    if (!req.orgId) throw invalid('org_id is required');
    checkText('lease_id', req.leaseId, 128);
    checkText('org_id', req.orgId, 64);
    const drawn = Number(req.drawn ?? 0);
    if (!Number.isSafeInteger(drawn) || drawn < 0) throw invalid('drawn must be a whole number of credits, 0 or more');
    return { returned: await this.reservations.endLease(req.leaseId, req.orgId, drawn) };
  }

  @GrpcMethod('Reservations', 'GetBalance')
  async getBalance(req: { orgId: string }) {
    if (!req.orgId) throw invalid('org_id is required');
    checkText('org_id', req.orgId, 64);
    const balance = await this.reservations.balance(req.orgId);
    if (balance === null) throw new RpcException({ code: status.NOT_FOUND, message: `unknown org "${req.orgId}"` });
    return { orgId: req.orgId, balance };
  }

  /**
   * GetBalance for several orgs in one read (how gateways refresh their balances): each id checked as GetBalance
   * checks it, a bad one refusing the call (INVALID_ARGUMENT naming `org_ids.<i>`); unknown orgs are left out.
   */
  @GrpcMethod('Reservations', 'GetBalances')
  async getBalances(req: BalancesRequest): Promise<BalancesReply> {
    const orgIds = req.orgIds ?? [];
    if (orgIds.length > MaxBalancesPerCall) throw invalid(`org_ids has more than ${MaxBalancesPerCall} ids`);
    orgIds.forEach((id, i) => {
      if (!id) throw invalid(`org_ids.${i} is empty`);
      checkText(`org_ids.${i}`, id, 64);
    });
    const distinct = [...new Set(orgIds)];
    if (distinct.length === 0) return { balances: [] };
    const found = await this.reservations.balances(distinct);
    return { balances: distinct.filter((orgId) => found.has(orgId)).map((orgId) => ({ orgId, balance: found.get(orgId)! })) };
  }
}

/** A lease request's terms, checked; undefined for a per-call hold. */
function leaseTerms(req: ReserveRequest): ReserveCommand['lease'] {
  const wanted = Number(req.leaseCredits ?? 0);
  if (wanted === 0) return undefined;
  const minimum = Number(req.leaseMinimum ?? 0);
  for (const [field, n] of [['lease_credits', wanted], ['lease_minimum', minimum]] as const) {
    if (!Number.isSafeInteger(n) || n < 0 || n > 1e12) throw invalid(`${field} must be a whole number of credits from 0 to 10^12`);
  }
  const gateway = req.gateway ?? '';
  checkText('gateway', gateway, 128);
  return { wanted, minimum, gateway: gateway || 'unnamed' };
}

function checkText(field: string, value: string, max: number): void {
  if (value.length > max) throw invalid(`${field} is longer than ${max} characters`);
  const at = forbiddenCharacterAt(value);
  if (at >= 0) throw invalid(`${field} contains a control character at index ${at}`);
}

/** A hold's failure as ReserveBatch reports it: the status code and message Reserve would have failed with. */
function failed(reason: unknown): ReserveResult {
  const err = reason instanceof RpcException ? (reason.getError() as { code?: number; message?: string }) : null;
  return { reply: null, errorCode: err?.code ?? status.INTERNAL, errorMessage: err?.message ?? (reason as Error).message ?? 'reservation failed' };
}

function invalid(message: string): RpcException {
  return new RpcException({ code: status.INVALID_ARGUMENT, message });
}
