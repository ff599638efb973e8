import { isDeepStrictEqual } from 'node:util';
import { changePlan, charge, grantTopUp, openAccount, release, reserve, settle } from '../account';
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

/**
 * A random but reproducible history: `steps` commands (holds, settlements, releases, charges, top-ups, plan
 * changes) a few hours apart over months, from `seed`. Every decision goes through `AccountHistory.record`, which
 * folds the whole ledger and compares it with the projection; the ledger's invariants are checked after each step.
 */
export function randomHistory(seed: number, steps: number): AccountHistory {
  // mulberry32: the low bits of a power-of-two LCG cycle too quickly for `% n` to cover every branch.
  let state = seed;
  const random = (n: number) => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4_294_967_296) * n);
  };
  const planPool: PlanTerms[] = [plans.free, plans.starter, plans.pro, plans.standard, { name: 'bonus', oneTimeCredits: 30, monthlyAllowance: 60 }];
  let at = utc('2026-01-15T10:00:00Z');
  const h = AccountHistory.opened(planPool[seed % planPool.length] ?? plans.starter, at);
  const held: Array<{ id: string; allocation: ReturnType<typeof reserve>['allocation'] }> = [];
  for (let step = 0; step < steps; step++) {
    at += random(12 * 3_600_000);
    const roll = random(100);
    if (roll < 30) {
      const r = reserve(h.account, `res_${step}`, random(8), at);
      h.record(r.decided);
      if (r.granted && r.allocation.length > 0) held.push({ id: `res_${step}`, allocation: r.allocation });
    } else if (roll < 48 && held.length > 0) {
      const [hold] = held.splice(random(held.length), 1);
      if (hold) h.then((a) => settle(a, hold.id, hold.allocation, random(10), at, `event:${step}`));
    } else if (roll < 58 && held.length > 0) {
      const [hold] = held.splice(random(held.length), 1);
      if (hold) h.then((a) => release(a, hold.id, hold.allocation, at, `reservation:${hold.id}:expired`));
    } else if (roll < 84) {
      h.then((a) => charge(a, random(60), at, `event:${step}`));
    } else if (roll < 93) {
      const expiry = random(2) === 0 ? null : at + 1 + random(40 * 86_400_000);
      h.then((a) => grantTopUp(a, random(150), expiry, `top_up:${step}`, at, `admin:grant:${step}`));
    } else {
      const plan = planPool[random(planPool.length)] ?? plans.starter;
      h.then((a) => changePlan(a, plan, at, `admin:plan:${step}`));
    }
    const violations = h.violations();
    if (violations.length > 0) throw new Error(`seed ${seed}, step ${step}: ${violations.join('; ')}`);
  }
  return h;
}
