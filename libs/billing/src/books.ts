import { assertInstant, monthOf, startOfMonth, startOfNextMonth } from './time';
import { allowanceBucketId, applyEntry, copyAccount } from './evolve';
import { Account, Allocation, BucketKind, CreditBucket, Decided, LedgerEntryDraft, LedgerEntryType, PlanTerms } from './types';

/**
 * The deciders' working tools (account.ts has the deciders): a working copy of an account that changes only by
 * posting entries, rolled forward or as it stands, and the moves every decider is made of (take credits, give a
 * hold back, expire what expired while held, grant), with the spending order and the invariant checks.
 */
/**
 * A working copy of one account while a decider runs. The decider only chooses entries; `post` applies each
 * one with the fold's own `applyEntry`, so the account a decider returns is, by construction, its ledger folded.
 */
export class Books {
  readonly account: Account;
  readonly entries: LedgerEntryDraft[] = [];

  constructor(from: Account) {
    this.account = copyAccount(from);
  }

  /**
   * Appends an entry (next seq, running balance) and applies it. An amount of 0 writes nothing, except where the
   * entry opens or closes a bucket (`opensOrCloses`): the fold must see every bucket's life.
   */
  post(type: LedgerEntryType, amount: number, cause: string, occurredAt: number, bucketId: string | null, detail: Record<string, unknown>, opensOrCloses = false): void {
    if (amount === 0 && !opensOrCloses) return;
    const a = this.account;
    const entry: LedgerEntryDraft = { orgId: a.orgId, seq: a.nextSeq, type, amount, balanceAfter: a.balance + amount, cause, occurredAt, bucketId, detail };
    applyEntry(a, entry);
    this.entries.push(entry);
  }

  bucket(id: string): CreditBucket | undefined {
    return this.account.buckets.find((b) => b.id === id);
  }

  /** The allowance bucket of `allowanceMonth`, while it is live. */
  currentAllowance(): CreditBucket | undefined {
    const month = this.account.allowanceMonth;
    return month === null ? undefined : this.bucket(allowanceBucketId(month));
  }

  /** What of `credits` added to a bucket now would pay debt off (the entry's `paid_debt`). */
  debtPaidBy(credits: number): Record<string, number> {
    const paid = Math.min(this.account.debt, credits);
    return paid > 0 ? { paid_debt: paid } : {};
  }

  decided(): Decided {
    assertConsistent(this.account);
    return { account: this.account, entries: this.entries };
  }
}

/**
 * A working copy that is not rolled forward, for the deciders whose outcome doesn't depend on the month. Only an
 * event's or a calendar command's own instant may expire buckets and start a month.
 */
export function booksAsTheyStand(account: Account, at: number): Books {
  assertInstant(at);
  return new Books(account);
}

/** A working copy rolled forward to `at`: the first step of the deciders that depend on the month. */
export function booksAt(account: Account, at: number): Books {
  assertInstant(at);
  const books = new Books(account);
  const a = books.account;

  // Expiries are dated when they happened (the bucket's expiry), not when a command noticed them; their cause
  // names the bucket, so the same roll gives the same entries whichever command triggers it. An emptied bucket
  // closes with an expiry of 0: the ledger says when every bucket closed, so folding it gives these buckets.
  const expired = a.buckets.filter((b) => b.expiresAt !== null && b.expiresAt <= at).sort(bySpendingOrder);
  for (const b of expired) books.post('expiry', 0 - b.remaining, `expiry:${b.id}`, b.expiresAt ?? at, b.id, { kind: b.kind }, true);

  const month = monthOf(at);
  // 'YYYY-MM' strings order like the months they name.
  if (a.plan.monthlyAllowance > 0 && (a.allowanceMonth === null || month > a.allowanceMonth)) {
    grantAllowance(books, month, startOfMonth(at), `reset:${month}`);
  }
  return books;
}

/** The plan's allowance for `month`, expiring at the start of the next one; allowanceSpent starts over. */
export function grantAllowance(books: Books, month: string, at: number, cause: string): void {
  const a = books.account;
  const id = allowanceBucketId(month);
  if (books.bucket(id)) throw new Error(`allowance of ${month} was already granted to account ${a.orgId}`);
  const credits = a.plan.monthlyAllowance;
  const expiresAt = new Date(startOfNextMonth(at)).toISOString();
  books.post('grant', credits, cause, at, id, { plan: a.plan.name, month, expires_at: expiresAt, ...books.debtPaidBy(credits) });
}

/** A plan's one-time credits: never expire, never granted twice for the same plan name. */
export function grantOneTime(books: Books, plan: PlanTerms, at: number, cause: string): void {
  const a = books.account;
  const id = `one_time:${plan.name}`;
  if (books.bucket(id)) throw new Error(`one-time credits of plan "${plan.name}" already exist on account ${a.orgId}`);
  books.post('grant', plan.oneTimeCredits, cause, at, id, { plan: plan.name, ...books.debtPaidBy(plan.oneTimeCredits) });
}

interface TakeOptions {
  type: 'reservation' | 'lease' | 'charge';
  cause: string;
  at: number;
  detail: Record<string, unknown>;
  /** May the part no bucket covers become debt? (Charges yes, holds never.) */
  intoDebt: boolean;
  /** Buckets to take from before the spending order (a settled hold's own buckets). */
  first?: readonly string[];
  /** Released credits of buckets that expired while held: spendable by this call only. */
  expiredMeanwhile?: Map<string, number>;
}

/** Takes credits bucket by bucket, one entry per bucket, then into debt if allowed. */
export function take(books: Books, credits: number, o: TakeOptions): { allocation: Allocation[]; uncovered: number } {
  const a = books.account;
  const first = [...new Set(o.first ?? [])];
  const order = [...first, ...[...a.buckets].sort(bySpendingOrder).map((b) => b.id).filter((id) => !first.includes(id))];
  const allocation: Allocation[] = [];
  let need = credits;
  for (const id of order) {
    if (need === 0) break;
    const held = o.expiredMeanwhile?.get(id);
    const n = Math.min(need, held ?? books.bucket(id)?.remaining ?? 0);
    if (n === 0) continue;
    if (held !== undefined) o.expiredMeanwhile?.set(id, held - n);
    books.post(o.type, -n, o.cause, o.at, id, o.detail);
    allocation.push({ bucketId: id, credits: n });
    need -= n;
  }
  if (need > 0 && o.intoDebt) {
    books.post(o.type, -need, o.cause, o.at, null, { ...o.detail, debt: need });
    need = 0;
  }
  return { allocation, uncovered: need };
}

/**
 * Gives held credits back to the buckets they came from. Credits of a bucket that no longer exists (it expired
 * while they were held) are returned separately, for the caller to spend on the settled call or expire.
 */
export function giveBack(books: Books, allocation: readonly Allocation[], at: number, cause: string, detail: Record<string, unknown>): Map<string, number> {
  const expiredMeanwhile = new Map<string, number>();
  for (const { bucketId, credits } of allocation) {
    if (credits === 0) continue;
    // `paid_debt`: what of it went to debt rather than into the bucket.
    let paid: Record<string, number> = {};
    if (books.bucket(bucketId)) paid = books.debtPaidBy(credits);
    else expiredMeanwhile.set(bucketId, (expiredMeanwhile.get(bucketId) ?? 0) + credits);
    books.post('release', credits, cause, at, bucketId, { ...detail, ...paid });
  }
  return expiredMeanwhile;
}

/** Released credits whose bucket expired while they were held expire now, as they would have without the hold. */
export function expireHeld(books: Books, expiredMeanwhile: Map<string, number>, at: number, cause: string, detail: Record<string, unknown>): void {
  for (const [bucketId, credits] of expiredMeanwhile) {
    books.post('expiry', -credits, cause, at, bucketId, { ...detail, expired_while_held: true });
  }
}

// ---------------------------------------------------------------------------------------------- rules

const kindOrder: Record<BucketKind, number> = { allowance: 0, one_time: 1, top_up: 2 };

/**
 * Spending order: soonest expiry first, never-expiring last; on equal expiry this month's allowance, then
 * one-time credits, then top-ups, then bucket id (so the order is total and replays identically).
 */
function bySpendingOrder(x: CreditBucket, y: CreditBucket): number {
  if (x.expiresAt !== y.expiresAt) {
    if (x.expiresAt === null) return 1;
    if (y.expiresAt === null) return -1;
    return x.expiresAt - y.expiresAt;
  }
  return kindOrder[x.kind] - kindOrder[y.kind] || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
}

export function assertCredits(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a whole number of credits, 0 or more (got ${String(n)})`);
}

export function assertName(s: string, what: string): void {
  if (typeof s !== 'string' || s.length === 0) throw new RangeError(`${what} must be a non-empty string`);
}

export function assertPlan(plan: PlanTerms): void {
  assertName(plan.name, 'plan name');
  assertCredits(plan.oneTimeCredits, `plan "${plan.name}" oneTimeCredits`);
  assertCredits(plan.monthlyAllowance, `plan "${plan.name}" monthlyAllowance`);
}

export function assertAllocation(allocation: readonly Allocation[]): void {
  for (const a of allocation) {
    assertName(a.bucketId, 'allocation bucketId');
    assertCredits(a.credits, `allocation credits of "${a.bucketId}"`);
  }
}

/** The projection's own invariants; a decider that would break them throws instead of returning. */
function assertConsistent(a: Account): void {
  const problems: string[] = [];
  let inBuckets = 0;
  const ids = new Set<string>();
  for (const b of a.buckets) {
    if (!Number.isSafeInteger(b.remaining) || b.remaining < 0) problems.push(`bucket ${b.id} has ${b.remaining} remaining`);
    if (ids.has(b.id)) problems.push(`bucket ${b.id} appears twice`);
    ids.add(b.id);
    inBuckets += b.remaining;
  }
  if (!Number.isSafeInteger(a.debt) || a.debt < 0) problems.push(`debt is ${a.debt}`);
  if (!Number.isSafeInteger(a.allowanceSpent) || a.allowanceSpent < 0) problems.push(`allowanceSpent is ${a.allowanceSpent}`);
  if (a.balance !== inBuckets - a.debt) problems.push(`balance ${a.balance} != buckets ${inBuckets} - debt ${a.debt}`);
  if (a.debt > 0 && inBuckets > 0) problems.push(`debt ${a.debt} outstanding while buckets hold ${inBuckets}`);
  if (problems.length > 0) throw new Error(`billing invariant broken on account ${a.orgId}: ${problems.join('; ')}`);
}
