/**
 * @tollgate/billing: the pure credit rules (ledger deciders, pricing, calendar, metering a batch of events). No I/O,
 * no clock: callers load state, pass time in, and store what the deciders return. See libs/billing/README.md for
 * the invariants.
 */
export * from './types';
export { monthOf, startOfMonth, startOfNextMonth } from './time';
export { changePlan, charge, grantTopUp, lease, LeaseShare, leaseSize, leaseSlice, openAccount, projectAccount, release, reserve, rollForward, settle } from './account';
export type { Reserved } from './account';
export { emptyAccount, evolve, foldAccount, LedgerFoldError } from './evolve';
export { applyCharges, DayMs, priceCall, withPendingCharges } from './pricing';
export type { CallOutcome, PendingEntityHold } from './pricing';
export { meterEvent } from './meter-event';
export type { HeldReservation, MeteredCall } from './meter-event';
export { meterBatch, reservationKey } from './meter-batch';
export type { MeterState, MeteredBatch, MeteredUsage, RoutePricing } from './meter-batch';
