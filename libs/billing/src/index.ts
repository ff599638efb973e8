/**
 * @tollgate/billing: the pure credit rules (ledger deciders, pricing, calendar). No I/O, no clock: callers load
 * state, pass time in, and store what the deciders return. See libs/billing/README.md for the invariants.
 */
export * from './types';
export { monthOf, startOfMonth, startOfNextMonth } from './time';
export { changePlan, charge, grantTopUp, lease, LeaseShare, leaseSize, leaseSlice, openAccount, projectAccount, release, reserve, rollForward, settle } from './account';
export type { Reserved } from './account';
export { emptyAccount, evolve, foldAccount, LedgerFoldError } from './evolve';
export { applyCharges, DayMs, priceCall } from './pricing';
export type { CallOutcome } from './pricing';
