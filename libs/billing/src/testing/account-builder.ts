import { isDeepStrictEqual } from 'node:util';
import { openAccount } from '../account';
import { foldAccount } from '../evolve';
import { Account, Decided, LedgerEntryDraft, PlanTerms } from '../types';

/**
 * Test support for the billing deciders: readable histories (given these decisions, when this command, then these
 * entries) and a replay that checks the ledger's invariants. No test framework import, so it compiles anywhere.
 */

export const plans = {
  /** trackyard free: 50 one-time credits, never reset. */
  free: { name: 'free', oneTimeCredits: 50, monthlyAllowance: 0 },
  /** trackyard starter: 500 a month, unused allowance expires. */
  starter: { name: 'starter', oneTimeCredits: 0, monthlyAllowance: 500 },
  pro: { name: 'pro', oneTimeCredits: 0, monthlyAllowance: 5000 },
  /** trace standard: no plan credits, they come from top-ups. */
  standard: { name: 'standard', oneTimeCredits: 0, monthlyAllowance: 0 },
} satisfies Record<string, PlanTerms>;

/** Epoch ms of an ISO-8601 instant, throwing on a typo rather than returning NaN. */
export function utc(iso: string): number {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) throw new Error(`not an instant: ${iso}`);
  return at;
}

/**
 * One org's account and every entry it ever got, as the ledger table would hold them. Each decision is made on
 * a deep-frozen account, so a decider that mutated its input would throw.
 */
export class AccountHistory {
  private constructor(
    public account: Account,
    readonly entries: LedgerEntryDraft[],
  ) {}

  static opened(plan: PlanTerms, at: number, orgId = 'org_test'): AccountHistory {
    const opened = openAccount(orgId, plan, at, `admin:create-org:${orgId}`);
    return new AccountHistory(deepFreeze(opened.account), [...opened.entries]);
  }

  /** Runs a decider on the current account and keeps its result; returns the entries it wrote. */
  then(decide: (account: Account) => Decided): LedgerEntryDraft[] {
    return this.record(decide(deepFreeze(this.account)));
  }

  /** Keeps a decision made elsewhere (e.g. `reserve(...).decided`). */
  record(decided: Decided): LedgerEntryDraft[] {
    this.entries.push(...decided.entries);
    this.account = deepFreeze(decided.account);
    // State is a fold: every decision of every test also checks that replaying the ledger gives the projection.
    const folded = this.folded();
    if (!isDeepStrictEqual(folded, this.account)) {
      throw new Error(`fold(entries) != projection:\n folded ${JSON.stringify(folded)}\n projected ${JSON.stringify(this.account)}`);
    }
    return decided.entries;
  }

  /** The account as the fold of every entry so far (what a replay from the ledger gives). */
  folded(): Account {
    return foldAccount(this.account.orgId, this.account.plan, this.entries);
  }

  /** Everything wrong with the ledger so far; [] when every invariant holds. */
  violations(): string[] {
    return ledgerViolations(this.entries, this.account);
  }
}

/**
 * Replays a ledger from the account's opening and lists what breaks: seq gapless from 1, balanceAfter running,
 * balance = sum of amounts, balance = sum(remaining) - debt, whole amounts (0 only to open or close a bucket), one org.
 */
export function ledgerViolations(entries: readonly LedgerEntryDraft[], account: Account): string[] {
  const problems: string[] = [];
  let running = 0;
  entries.forEach((e, i) => {
    if (e.seq !== i + 1) problems.push(`entry ${i} has seq ${e.seq}, expected ${i + 1}`);
    if (e.orgId !== account.orgId) problems.push(`entry ${e.seq} belongs to ${e.orgId}`);
    if (!Number.isSafeInteger(e.amount)) problems.push(`entry ${e.seq} has amount ${e.amount}`);
    // 0 only where an entry opens or closes a bucket (an emptied bucket's expiry, a plan change's new allowance).
    if (e.amount === 0 && e.type !== 'expiry' && e.type !== 'adjustment') problems.push(`entry ${e.seq} is a ${e.type} of 0`);
    running += e.amount;
    if (e.balanceAfter !== running) problems.push(`entry ${e.seq} has balanceAfter ${e.balanceAfter}, running balance is ${running}`);
  });
  if (account.balance !== running) problems.push(`balance ${account.balance} != sum of entries ${running}`);
  if (account.nextSeq !== entries.length + 1) problems.push(`nextSeq ${account.nextSeq} after ${entries.length} entries`);
  const inBuckets = account.buckets.reduce((sum, b) => sum + b.remaining, 0);
  if (account.balance !== inBuckets - account.debt) problems.push(`balance ${account.balance} != buckets ${inBuckets} - debt ${account.debt}`);
  for (const b of account.buckets) if (b.remaining < 0) problems.push(`bucket ${b.id} has ${b.remaining} remaining`);
  if (account.debt < 0) problems.push(`debt ${account.debt}`);
  return problems;
}

/** Freezes a value and everything reachable from it. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
