import { Controller } from '@nestjs/common';
import { GrpcMethod, RpcException } from '@nestjs/microservices';
import { status } from '@grpc/grpc-js';
import { ReserveRequest } from '@tollgate/contracts';
import { ReservationService, UnknownOrgError, UnknownRouteError } from './reservation.service';

/** tollgate.metering.v1.Reservations (libs/contracts/src/proto/metering.proto). */
@Controller()
export class ReservationsGrpcController {
  constructor(private readonly reservations: ReservationService) {}

  @GrpcMethod('Reservations', 'Reserve')
  async reserve(req: ReserveRequest) {
    if (!req.reservationId) throw invalid('reservation_id is required');
    if (!req.orgId) throw invalid('org_id is required');
    const at = req.occurredAt ? Date.parse(req.occurredAt) : Date.now();
    if (Number.isNaN(at)) throw invalid('occurred_at must be an RFC 3339 time');
    try {
      return await this.reservations.reserve({ ...req, entities: req.entities ?? [], occurredAt: at });
    } catch (e) {
      if (e instanceof UnknownOrgError) throw new RpcException({ code: status.NOT_FOUND, message: e.message });
      if (e instanceof UnknownRouteError) throw invalid(e.message);
      throw e;
    }
  }

  @GrpcMethod('Reservations', 'Release')
  async release(req: { reservationId: string; orgId: string }) {
    return { released: await this.reservations.release(req.reservationId, req.orgId) };
  }

  @GrpcMethod('Reservations', 'GetBalance')
  async getBalance(req: { orgId: string }) {
    const balance = await this.reservations.balance(req.orgId);
    if (balance === null) throw new RpcException({ code: status.NOT_FOUND, message: `unknown org "${req.orgId}"` });
    return { orgId: req.orgId, balance };
  }
}

function invalid(message: string): RpcException {
  return new RpcException({ code: status.INVALID_ARGUMENT, message });
}
