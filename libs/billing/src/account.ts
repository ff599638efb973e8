import { assertInstant, monthOf, startOfNextMonth } from './time';
import { allowanceBucketId, emptyAccount } from './evolve';
import {
  assertAllocation,
  assertCredits,
  assertName,
  assertPlan,
  Books,
  booksAsTheyStand,
  booksAt,
  expireHeld,
  giveBack,
  grantAllowance,
  grantOneTime,
  take,
} from './books';
import { Account, Allocation, Decided, PlanTerms } from './types';

/**
 * The credit deciders: given an account and a command, the ledger entries to append and the account after them.
 *
 * Invariants every decider keeps (and checks before it returns, so a broken projection is never stored):
 * - balance === previous balance + sum(entry amounts); each entry's balanceAfter is the running balance;
 * - balance === sum(bucket.remaining) - debt, with remaining >= 0 and debt >= 0, all whole credits;
 * - debt > 0 only while every bucket is empty: anything that adds credits to a bucket pays debt off first;
 * - seq is gapless: entries get nextSeq, nextSeq + 1, ...; no entry has amount 0;
 * - the input account is never mutated.
 * The deciders of calls and plans first roll the account forward to their `at` (expiries, monthly allowance) and
 * return those entries too, so whatever event comes first after midnight on the 1st writes the month's reset.
 * `release` and `grantTopUp` do not roll: their outcome does not depend on the month, and their `at` is a
 * sweeper's or an operator's clock, not the instant a call happened. Were they to roll, a late event of the
 * previous month arriving after them would be charged from the new month's allowance (SPEC §6: resets follow
 * the events' occurred_at).
 */

/** The outcome of a credit hold: all or nothing. */
export interface Reserved {
  granted: boolean;
  requested: number;
  /** Credits missing for the hold (0 when granted): requested - max(0, balance). */
  shortfall: number;
  /** Where the hold came from, bucket by bucket; empty when nothing was held. */
  allocation: Allocation[];
  decided: Decided;
}

// ---------------------------------------------------------------------------------------------- commands

/** Opens an org's account with its plan's one-time credits and this month's allowance, both caused by `cause`. */
export function openAccount(orgId: string, plan: PlanTerms, at: number, cause: string): Decided {
  assertInstant(at);
  assertPlan(plan);
  const books = new Books(emptyAccount(orgId, plan));
  if (plan.oneTimeCredits > 0) grantOneTime(books, plan, at, cause);
  if (plan.monthlyAllowance > 0) grantAllowance(books, monthOf(at), at, cause);
  return books.decided();
}

/**
 * Brings the account to `at`: buckets whose expiry is at or before `at` expire (an explicit `expiry` entry for
 * their unspent credits), and a plan with a monthly allowance gets the allowance of `at`'s month once.
 * Never goes back in time: for an `at` earlier than one already rolled to, nothing qualifies and nothing happens.
 */
export function rollForward(account: Account, at: number): Decided {
  return booksAt(account, at).decided();
}

/** The account as it stands at `now` (a read model: `/me` shows the new allowance at 00:00 on the 1st). */
export function projectAccount(account: Account, now: number): Account {
  return rollForward(account, now).account;
}

/**
 * Holds `credits` for a call before it is answered, all or nothing, from the soonest-expiring buckets first.
 * A hold never creates debt: it is refused when the balance can't cover it.
 */
export function reserve(account: Account, reservationId: string, credits: number, at: number): Reserved {
  assertName(reservationId, 'reservationId');
  return hold(account, credits, at, { type: 'reservation', cause: `reservation:${reservationId}`, detail: { reservation_id: reservationId } });
}

/**
 * Leases `credits` to a gateway: a block it spends call by call without asking again (SPEC §4). A lease is a hold
 * like any other, all or nothing and never into debt, recorded as `lease` entries caused by `lease:<id>` whose
 * detail names the gateway, the size and until when it may be drawn. Calls drawn from it are charged against it
 * as their events arrive (no entry: the lease's entries already took the credits); what it did not spend comes
 * back with `release` entries naming it (`leaseSlice` says from which buckets).
 */
export function lease(account: Account, leaseId: string, credits: number, at: number, terms: { gateway: string; drawUntil: number }): Reserved {
  assertName(leaseId, 'leaseId');
  assertInstant(terms.drawUntil, 'drawUntil');
  const detail = { lease_id: leaseId, gateway: terms.gateway, size: credits, draw_until: new Date(terms.drawUntil).toISOString() };
  return hold(account, credits, at, { type: 'lease', cause: `lease:${leaseId}`, detail });
}

/**
 * How many credits a gateway's lease may take: what it asked for, at most a `LeaseShare`th of the available balance
 * (so other gateways of the org can still lease, and no lease strands much), and none below `minimum` (the caller
 * falls back to a hold per call, which prices exactly: near a zero balance leases shrink to per-call holds).
 */
export function leaseSize(available: number, wanted: number, minimum: number): number {
  assertCredits(wanted, 'wanted');
  assertCredits(minimum, 'minimum');
  const size = Math.min(wanted, Math.floor(Math.max(0, available) / LeaseShare));
  return size >= Math.max(1, minimum) ? size : 0;
}

/** A lease takes at most this fraction (1/n) of an org's available balance. */
export const LeaseShare = 4;

/**
 * Credits `from` to `to` of a lease's allocation, counted from its front (the soonest-expiring bucket): a lease
 * spends from the front as calls are charged (credits 0 to `spent`) and gives back from the back (credits
 * `size - returned` to `size`), so what it still holds is `leaseSlice(allocation, spent, size - returned)`.
 */
export function leaseSlice(allocation: readonly Allocation[], from: number, to: number): Allocation[] {
  assertAllocation(allocation);
  const out: Allocation[] = [];
  let start = 0;
  for (const a of allocation) {
    const lo = Math.max(start, from);
    const hi = Math.min(start + a.credits, to);
    if (hi > lo) out.push({ bucketId: a.bucketId, credits: hi - lo });
    start += a.credits;
  }
  return out;
}

function hold(account: Account, credits: number, at: number, o: { type: 'reservation' | 'lease'; cause: string; detail: Record<string, unknown> }): Reserved {
  assertCredits(credits, 'credits');
  const books = booksAt(account, at);
  const balance = books.account.balance;
  if (credits === 0) return { granted: true, requested: 0, shortfall: 0, allocation: [], decided: books.decided() };
  if (balance < credits) {
    return { granted: false, requested: credits, shortfall: credits - Math.max(0, balance), allocation: [], decided: books.decided() };
  }
  const { allocation } = take(books, credits, { type: o.type, cause: o.cause, at, detail: o.detail, intoDebt: false });
  return { granted: true, requested: credits, shortfall: 0, allocation, decided: books.decided() };
}

/**
 * Settles a hold when the call's event arrives.
 * - The call costs exactly what was held and every bucket it was held from is still live (the common case: a 2xx
 *   fixed-price call): the hold's `reservation` entries are the call's charge, and nothing more is written. The
 *   ledger stays one entry per paid call; the hold's row (settled, by the event) says it was charged.
 * - Otherwise the hold is given back (`release`), then the call's price is charged (`charge`) from the same buckets
 *   first, then the others by soonest expiry, and whatever is still uncovered becomes debt. A non-2xx call writes
 *   only the release.
 * Credits whose bucket expired while they were held can still pay this call (the hold was taken for it); what
 * they don't pay expires at once, as it would have without the hold.
 */
export function settle(
  account: Account,
  reservationId: string,
  allocation: readonly Allocation[],
  chargeCredits: number,
  at: number,
  cause: string,
): Decided {
  assertName(reservationId, 'reservationId');
  assertAllocation(allocation);
  assertCredits(chargeCredits, 'chargeCredits');
  const books = booksAt(account, at);
  const held = allocation.reduce((sum, a) => sum + a.credits, 0);
  if (held > 0 && chargeCredits === held && allocation.every((a) => books.bucket(a.bucketId) !== undefined)) return books.decided();
  const detail = { reservation_id: reservationId };
  const expiredMeanwhile = giveBack(books, allocation, at, cause, detail);
  take(books, chargeCredits, {
    type: 'charge',
    cause,
    at,
    detail,
    intoDebt: true,
    first: allocation.map((a) => a.bucketId),
    expiredMeanwhile,
  });
  expireHeld(books, expiredMeanwhile, at, cause, detail);
  return books.decided();
}

/**
 * Gives a hold back without charging (gateway cancel, timeout). `at` dates the entries only: the account is not
 * rolled forward (see the top of this file). Credits of a bucket already expired by an earlier roll come back and
 * expire in the same decision; a bucket whose expiry passed but that no roll has expired yet gets them back, and
 * the next event past its expiry expires them with the rest.
 */
export function release(
  account: Account,
  reservationId: string,
  allocation: readonly Allocation[],
  at: number,
  cause: string,
  detail: Record<string, unknown> = { reservation_id: reservationId },
): Decided {
  assertName(reservationId, 'reservationId');
  assertAllocation(allocation);
  const books = booksAsTheyStand(account, at);
  expireHeld(books, giveBack(books, allocation, at, cause, detail), at, cause, detail);
  return books.decided();
}

/**
 * Charges a call that held nothing (eventual enforcement, another producer, a hold that timed out): soonest
 * expiry first, and what the buckets can't cover becomes debt. This is the only way a balance goes below zero.
 */
export function charge(account: Account, credits: number, at: number, cause: string): Decided {
  assertCredits(credits, 'credits');
  const books = booksAt(account, at);
  take(books, credits, { type: 'charge', cause, at, detail: {}, intoDebt: true });
  return books.decided();
}

/**
 * Adds bought or operator-granted credits in their own bucket (`expiresAt` null = never expires). Outstanding
 * debt is paid first: the entry shows the whole `amount`, the bucket keeps `amount - paid-off debt`. Does not
 * roll the account forward: a grant on the 1st leaves last month's allowance to the late events that spend it.
 */
export function grantTopUp(account: Account, amount: number, expiresAt: number | null, bucketId: string, at: number, cause: string): Decided {
  assertCredits(amount, 'amount');
  assertName(bucketId, 'bucketId');
  assertInstant(at);
  if (expiresAt !== null) {
    assertInstant(expiresAt, 'expiresAt');
    if (expiresAt <= at) throw new RangeError(`a top-up must expire after it is granted (expiresAt ${expiresAt} <= at ${at})`);
  }
  const books = booksAsTheyStand(account, at);
  if (amount === 0) return books.decided();
  if (books.bucket(bucketId)) throw new Error(`bucket "${bucketId}" already exists on account ${account.orgId}`);
  books.post('top_up', amount, cause, at, bucketId, {
    expires_at: expiresAt === null ? null : new Date(expiresAt).toISOString(),
    ...books.debtPaidBy(amount),
  });
  return books.decided();
}

/**
 * Switches the plan. This month's allowance becomes what the new plan would have left after what was already
 * spent, max(0, new allowance - allowanceSpent), by one `adjustment` entry on the allowance bucket (created when
 * missing). The new plan's one-time credits are granted unless that plan granted them before.
 */
export function changePlan(account: Account, newPlan: PlanTerms, at: number, cause: string): Decided {
  assertPlan(newPlan);
  const books = booksAt(account, at);
  const a = books.account;
  const fromPlan = a.plan.name;
  // The plan itself is the command's record (admin_commands, orgs), not the ledger's: the fold takes it as given.
  a.plan = { ...newPlan };

  const live = books.currentAllowance();
  if (live || newPlan.monthlyAllowance > 0) {
    // Without a live allowance bucket the adjustment opens one for this month; spending recorded for an older month
    // (a plan without allowance doesn't roll allowanceMonth) is not this month's.
    const month = live ? (a.allowanceMonth as string) : monthOf(at);
    const spent = live || a.allowanceMonth === month ? a.allowanceSpent : 0;
    const delta = Math.max(0, newPlan.monthlyAllowance - spent) - (live?.remaining ?? 0);
    const detail: Record<string, unknown> = { from_plan: fromPlan, to_plan: newPlan.name, month };
    if (!live) detail.expires_at = new Date(startOfNextMonth(at)).toISOString();
    books.post('adjustment', delta, cause, at, allowanceBucketId(month), { ...detail, ...(delta > 0 ? books.debtPaidBy(delta) : {}) }, !live);
  }

  if (newPlan.oneTimeCredits > 0 && !a.grantedOneTime.includes(newPlan.name)) grantOneTime(books, newPlan, at, cause);
  return books.decided();
}
