import { startOfNextMonth } from './time';
import { Account, BucketKind, CreditBucket, LedgerEntryDraft, PlanTerms } from './types';

/**
 * State is a fold: an org's account is what applying its ledger entries from seq 1 to an empty account gives.
 * The deciders (account.ts) decide which entries a command writes and change the account only by applying them
 * here, so the projection they return and the fold of the ledger can't disagree; a replay is this same fold.
 *
 * What each entry does, from its type, bucket and detail alone:
 * - `grant`: opens its bucket (`allowance:YYYY-MM`, expiring at `detail.expires_at` or the next month's start, and
 *   becoming the current allowance with nothing spent; or `one_time:<plan>`, never expiring, remembered in
 *   grantedOneTime) and fills it.
 * - `top_up`: opens a top-up bucket expiring at `detail.expires_at` (null = never) and fills it.
 * - `adjustment`: a plan change's correction of the current allowance: opens the allowance bucket of
 *   `detail.month` when it is missing, then fills it (positive) or withdraws from it (negative).
 * - `reservation` and `charge`: drain their bucket; with no bucket they are debt; on a bucket no longer open
 *   (it expired while the credits were held) they only move the balance: those credits are outside every bucket.
 * - `release`: gives credits back to its bucket (allowance given back is no longer spent), or, when the bucket is
 *   gone, holds them outside every bucket for the charge and expiry that follow in the same decision.
 * - `expiry`: closes its bucket, whose remaining must be exactly what it expires (0 for an emptied bucket: the
 *   entry is still written, so the fold knows the bucket closed); with `detail.expired_while_held` it expires
 *   credits held outside the closed bucket.
 * Filling pays debt first (the entry's `detail.paid_debt` says how much); allowance that pays debt is spent.
 * Every entry moves the balance by its amount and must carry the next seq and the running balance.
 */

/** An entry the fold cannot apply: the ledger and the rules disagree at `seq`. */
export class LedgerFoldError extends Error {
  constructor(
    readonly orgId: string,
    readonly seq: number,
    problem: string,
  ) {
    super(`ledger of ${orgId} cannot be folded at seq ${seq}: ${problem}`);
  }
}

/** The account of an org before its first entry. */
export function emptyAccount(orgId: string, plan: PlanTerms): Account {
  return { orgId, plan: { ...plan }, balance: 0, debt: 0, nextSeq: 1, allowanceMonth: null, allowanceSpent: 0, grantedOneTime: [], buckets: [] };
}

/** The account after one more entry. Never mutates its input. */
export function evolve(account: Account, entry: LedgerEntryDraft): Account {
  const next = copyAccount(account);
  applyEntry(next, entry);
  return next;
}

/**
 * An org's whole account from its ledger: the fold of `entries` (seq 1, 2, … in order) over the empty account.
 * `plan` is the org's current plan: plan terms are the recorded commands' business, not the ledger's.
 */
export function foldAccount(orgId: string, plan: PlanTerms, entries: Iterable<LedgerEntryDraft>): Account {
  const account = emptyAccount(orgId, plan);
  for (const entry of entries) applyEntry(account, entry);
  return account;
}

/** A copy the deciders may change in place. */
export function copyAccount(from: Account): Account {
  return { ...from, plan: { ...from.plan }, grantedOneTime: [...from.grantedOneTime], buckets: from.buckets.map((b) => ({ ...b })) };
}

/** The allowance bucket's id for a `YYYY-MM` month. */
export function allowanceBucketId(month: string): string {
  return `allowance:${month}`;
}

/** Applies one entry to `a` in place (the deciders' working copy, or a fold's accumulator). */
export function applyEntry(a: Account, e: LedgerEntryDraft): void {
  const fail = (problem: string): never => {
    throw new LedgerFoldError(a.orgId, e.seq, problem);
  };
  if (e.orgId !== a.orgId) fail(`entry belongs to ${e.orgId}`);
  if (e.seq !== a.nextSeq) fail(`expected seq ${a.nextSeq}`);
  if (!Number.isSafeInteger(e.amount)) fail(`amount ${e.amount} is not whole credits`);
  if (e.balanceAfter !== a.balance + e.amount) fail(`balance_after ${e.balanceAfter} != ${a.balance} + ${e.amount}`);
  if (e.amount === 0 && e.type !== 'expiry' && e.type !== 'adjustment') fail(`a ${e.type} of 0 credits`);

  const bucket = e.bucketId === null ? undefined : a.buckets.find((b) => b.id === e.bucketId);
  const isCurrentAllowance = (b: CreditBucket | undefined) => b !== undefined && a.allowanceMonth !== null && b.id === allowanceBucketId(a.allowanceMonth);
  const fill = (b: CreditBucket, credits: number) => {
    const paid = Math.min(a.debt, credits);
    a.debt -= paid;
    b.remaining += credits - paid;
    if (isCurrentAllowance(b)) a.allowanceSpent += paid;
  };
  const open = (id: string, kind: BucketKind, expiresAt: number | null): CreditBucket => {
    if (bucket) fail(`bucket ${id} is already open`);
    const b: CreditBucket = { id, kind, expiresAt, remaining: 0 };
    a.buckets.push(b);
    return b;
  };
  const needBucketId = (): string => e.bucketId ?? fail(`a ${e.type} needs a bucket`);

  switch (e.type) {
    case 'grant': {
      const id = needBucketId();
      if (id.startsWith('allowance:')) {
        const month = id.slice('allowance:'.length);
        const b = open(id, 'allowance', instantOr(e, 'expires_at', () => allowanceExpiry(month, fail)));
        a.allowanceMonth = month;
        a.allowanceSpent = 0;
        fill(b, e.amount);
      } else if (id.startsWith('one_time:')) {
        const plan = typeof e.detail.plan === 'string' ? e.detail.plan : id.slice('one_time:'.length);
        if (a.grantedOneTime.includes(plan)) fail(`one-time credits of plan "${plan}" were already granted`);
        a.grantedOneTime.push(plan);
        fill(open(id, 'one_time', null), e.amount);
      } else fail(`a grant on bucket ${id}, which is neither allowance nor one-time`);
      if (e.amount <= 0) fail('a grant must add credits');
      break;
    }
    case 'top_up': {
      if (e.amount <= 0) fail('a top-up must add credits');
      fill(open(needBucketId(), 'top_up', instantOr(e, 'expires_at', () => null)), e.amount);
      break;
    }
    case 'adjustment': {
      const month = (typeof e.detail.month === 'string' ? e.detail.month : a.allowanceMonth) ?? fail('an adjustment names no allowance month');
      const id = needBucketId();
      if (id !== allowanceBucketId(month)) fail(`an adjustment on ${id}, not the allowance of ${month}`);
      let b = bucket;
      if (!b) {
        if (a.allowanceMonth !== month) {
          a.allowanceMonth = month;
          a.allowanceSpent = 0;
        }
        b = open(id, 'allowance', instantOr(e, 'expires_at', () => allowanceExpiry(month, fail)));
      }
      if (e.amount > 0) fill(b, e.amount);
      else if (b.remaining + e.amount < 0) fail(`withdraws ${-e.amount} from ${id}, which holds ${b.remaining}`);
      // Withdrawing allowance is not spending it: allowanceSpent only counts credits that paid for calls or debt.
      else b.remaining += e.amount;
      break;
    }
    case 'reservation':
    case 'lease':
    case 'charge': {
      if (e.amount >= 0) fail(`a ${e.type} must take credits`);
      const credits = -e.amount;
      if (e.bucketId === null) {
        if (e.type !== 'charge') fail(`a ${e.type} never creates debt`);
        a.debt += credits;
      } else if (bucket) {
        if (bucket.remaining < credits) fail(`takes ${credits} from ${bucket.id}, which holds ${bucket.remaining}`);
        bucket.remaining -= credits;
        if (isCurrentAllowance(bucket)) a.allowanceSpent += credits;
      } else if (e.type !== 'charge') fail(`a ${e.type} on ${e.bucketId}, which is not open`);
      // else: credits released from a bucket that expired while they were held, spent by the call they were held for.
      break;
    }
    case 'release': {
      if (e.amount <= 0) fail('a release must give credits back');
      if (bucket) {
        // The hold counted as spent allowance when it was taken; given back, it no longer does.
        if (isCurrentAllowance(bucket)) a.allowanceSpent -= e.amount;
        fill(bucket, e.amount);
      }
      // else: the bucket expired while the credits were held; the decision's charge and expiry that follow use them.
      break;
    }
    case 'expiry': {
      if (e.amount > 0) fail('an expiry must take credits');
      if (e.detail.expired_while_held === true) {
        if (bucket) fail(`expires held credits of ${bucket.id}, which is still open`);
      } else {
        if (!bucket) fail(`expires ${e.bucketId ?? 'no bucket'}, which is not open`);
        else if (bucket.remaining !== -e.amount) fail(`expires ${-e.amount} of ${bucket.id}, which holds ${bucket.remaining}`);
        a.buckets = a.buckets.filter((b) => b !== bucket);
      }
      break;
    }
    default:
      fail(`unknown entry type "${String(e.type)}"`);
  }
  a.balance = e.balanceAfter;
  a.nextSeq = e.seq + 1;
}

/** `detail[key]` as epoch ms (an ISO string or null in the ledger), or `fallback()` for entries written without it. */
function instantOr(e: LedgerEntryDraft, key: string, fallback: () => number | null): number | null {
  if (!(key in e.detail)) return fallback();
  const v = e.detail[key];
  if (v === null) return null;
  const at = typeof v === 'string' ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(at)) throw new LedgerFoldError(e.orgId, e.seq, `detail.${key} is not an instant: ${JSON.stringify(v)}`);
  return at;
}

/** Entries written before `expires_at` was recorded: an allowance expires at the start of the month after its own. */
function allowanceExpiry(month: string, fail: (problem: string) => never): number {
  const start = Date.parse(`${month}-01T00:00:00.000Z`);
  return Number.isNaN(start) ? fail(`"${month}" is not a month`) : startOfNextMonth(start);
}
