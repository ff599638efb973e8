import { CounterCheck, RateDecision } from './decision';
import { windowStart } from './window';

/**
 * Where windows are counted: in the gateway's memory, or in Redis when several gateways share limits.
 * Methods may answer synchronously (memory) or with a promise (Redis); callers `await` either.
 *
 * Invariants every implementation keeps (they are what SPEC §4 promises):
 * - `consume` is atomic over all its checks, also across processes sharing the store: a call is admitted only
 *   if every window has `used < limit`, and then counts +1 in each; a refused call counts in none.
 * - `peek` returns the decision `consume` would take, and counts nothing.
 * - Decisions are built by `decide`, so every store answers the same counts with the same decision.
 */
export interface CounterStore {
  consume(checks: CounterCheck[], nowMs: number): RateDecision | Promise<RateDecision>;
  peek(checks: CounterCheck[], nowMs: number): RateDecision | Promise<RateDecision>;
  /** Locks `key` until `untilMs` (login lockout). A later call replaces the earlier deadline. */
  lock(key: string, untilMs: number): void | Promise<void>;
  /** The deadline of `key`'s lock when it is still in force at `nowMs`; 0 when not locked. */
  lockedUntil(key: string, nowMs: number): number | Promise<number>;
}

/**
 * How long a counter outlives its window. A call that read the clock just before a boundary may reach the
 * store just after it; its window must still be there, or it would start again from zero.
 */
export const WINDOW_GRACE_MS = 2_000;

/**
 * The identity of one window of one subject: `${subjectKey}:${windowStartMs}`. Each window is its own counter,
 * so a new window starts at zero without a reset step, and an old one only has to be forgotten.
 */
export function windowKey(check: CounterCheck, nowMs: number): string {
  return `${check.subjectKey}:${windowStart(nowMs, check.rule.periodSeconds)}`;
}
