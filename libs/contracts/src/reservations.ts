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
  /** Above 0: a lease of up to this many credits instead of a hold for the call (reservationId names it). */
  leaseCredits?: number;
  /** A lease smaller than this is refused (the gateway then holds per call). */
  leaseMinimum?: number;
  /** The gateway asking, recorded with a lease. */
  gateway?: string;
}

export interface ReserveReply {
  granted: boolean;
  reservationId: string;
  requested: number;
  shortfall: number;
  balance: number;
  /** A lease: its credits, and for how many milliseconds from now it may be drawn from (0 for a hold). */
  leaseCredits?: number;
  leaseMs?: number;
}

export interface EndLeaseRequest {
  leaseId: string;
  orgId: string;
  /** Credits drawn for calls (given-back draws not counted). */
  drawn: number;
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

/** GetBalances: several orgs' balances in one call (at most `MaxBalancesPerCall` ids). */
export interface BalancesRequest {
  orgIds: string[];
}

/** One org's spendable balance at metering (holds and leases taken off), as GetBalance answers it. */
export interface BalanceReply {
  orgId: string;
  balance: number;
}

/** The orgs metering knows among those asked for, each once; an unknown org is left out. */
export interface BalancesReply {
  balances: BalanceReply[];
}

/** The most org ids one GetBalances may name. */
export const MaxBalancesPerCall = 1000;
