/**
 * tollgate.metering.v1.Reservations messages (proto/metering.proto) as TypeScript sees them through
 * @grpc/proto-loader (camelCase fields). The gateway sends them; metering answers them.
 */
export interface ReserveRequest {
  reservationId: string;
  orgId: string;
  profile: string;
  method: string;
  /** The route template of the profile (`/companies/:identifier`), not the concrete path. */
  route: string;
  entities: string[];
  /** When the call happened (RFC 3339): decides the month and the re-access window. */
  occurredAt: string;
}

export interface ReserveReply {
  granted: boolean;
  reservationId: string;
  requested: number;
  shortfall: number;
  balance: number;
}

export interface ReserveBatchRequest {
  requests: ReserveRequest[];
}

/** One answer per request of a batch: `reply`, or the status code (non-zero) and message Reserve would fail with. */
export interface ReserveResult {
  reply?: ReserveReply | null;
  errorCode: number;
  errorMessage: string;
}

export interface ReserveBatchReply {
  results: ReserveResult[];
}

/** ReserveStream: a ReserveBatch named by the id its sender chose; the reply carries the same id. */
export interface ReserveStreamRequest {
  id: number;
  requests: ReserveRequest[];
}

export interface ReserveStreamReply {
  id: number;
  results: ReserveResult[];
}
