import { RequestCompletedV1 } from '@tollgate/contracts';
import { charge, settle } from './account';
import { priceCall } from './pricing';
import { monthOf } from './time';
import { Account, Allocation, CostReason, LedgerEntryDraft, PricedCall, Pricing, ReAccessWindows } from './types';

/** A reservation still holding credits for the call the event reports: a hold, or a lease (`lease` not null). */
export interface HeldReservation {
  id: string;
  credits: number;
  allocation: Allocation[];
  /** A lease: what its calls spent and its gateway returned so far, and when it was taken (its month). */
  lease: { spent: number; returned: number; takenAt: number } | null;
}

export interface MeteredCall {
  account: Account;
  entries: LedgerEntryDraft[];
  priced: PricedCall;
  reason: CostReason;
  /** Credits paid from the lease the event drew on (0 when it was charged on its own). */
  fromLease: number;
}

/**
 * Folds one request-completed event into an org's account. Pure: the caller loads the state and stores the
 * result. The event's `occurred_at` is the only clock: monthly resets and re-access windows follow it.
 * - With a held reservation: the hold is settled (charged on 2xx, released otherwise; entities charged
 *   meanwhile by a concurrent call are free now, so the hold is partly released).
 * - Drawn from a lease: paid from the lease (no entry: the lease's entries took its credits) when the lease still
 *   holds the price and was taken in the call's month; otherwise charged on its own, as without a hold (a call
 *   of a new month is paid by that month's credits, and a lease never pays more than it holds).
 * - With a hold the gateway gave back (`givenBack`): nothing, whatever the status (the answer never went out).
 * - Without one (eventual mode, another producer, or a hold that timed out): charged now; this is the only
 *   way a balance can go below zero, and the ledger shows it.
 * `windows` is only read: the caller records the entities this call paid for (`priced.chargedEntities`).
 */
export function meterEvent(
  account: Account,
  event: RequestCompletedV1,
  pricing: Pricing,
  windows: ReAccessWindows,
  reservation: HeldReservation | null,
  givenBack = false,
): MeteredCall {
  const at = Date.parse(event.occurred_at);
  const decision = event.decision ?? 'forwarded';
  const forwarded = decision === 'forwarded';
  // The gateway gives a hold back only when it did not hand the answer out (the event could not be confirmed, the
  // client went away): should such an event arrive after all, the call still costs nothing.
  if (givenBack && forwarded && event.status_code >= 200 && event.status_code < 300) {
    const rolled = charge(account, 0, at, `event:${event.event_id}`);
    return { account: rolled.account, entries: rolled.entries, priced: { credits: 0, reason: 'given_back', chargedEntities: [] }, reason: 'given_back', fromLease: 0 };
  }
  const priced = priceCall(pricing, { statusCode: event.status_code, forwarded, entities: event.entities }, windows, at);
  const cause = `event:${event.event_id}`;
  const lease = reservation?.lease ?? null;
  let fromLease = 0;
  let decided;
  if (lease) {
    const left = reservation!.credits - lease.spent - lease.returned;
    fromLease = priced.credits > 0 && priced.credits <= left && monthOf(lease.takenAt) === monthOf(at) ? priced.credits : 0;
    // Paid from the lease: only the roll to the call's instant is written (a month or an expiry it crosses).
    decided = charge(account, priced.credits - fromLease, at, cause);
  } else {
    decided = reservation ? settle(account, reservation.id, reservation.allocation, priced.credits, at, cause) : charge(account, priced.credits, at, cause);
  }
  return { account: decided.account, entries: decided.entries, priced, reason: forwarded ? priced.reason : rejectionReason(decision), fromLease };
}

function rejectionReason(decision: NonNullable<RequestCompletedV1['decision']>): CostReason {
  if (decision === 'rate_limited') return 'rate_limited';
  if (decision === 'insufficient_credits') return 'insufficient_credits';
  return 'rejected';
}
