import { windowStatus, WindowRule, WindowStatus } from './window';

/** One window to check for one subject. `subjectKey` must name the rule too: two rules never share a key. */
export interface CounterCheck {
  /** `trackyard:minute:key:key_123`; see `applicableChecks`. */
  subjectKey: string;
  rule: WindowRule;
}

/**
 * The answer to one call: admitted only if every window had room. `windows` follows the order of the checks,
 * so a header style can find its windows by name or position.
 */
export interface RateDecision {
  admitted: boolean;
  windows: WindowStatus[];
  /** The full window whose reset the caller must wait for (the latest among the full ones); null when admitted. */
  refusedBy: WindowStatus | null;
  /**
   * 0 when admitted; otherwise whole seconds, at least 1, and never before `refusedBy.resetAtMs`. With several
   * full windows the request only passes once all of them have room, so it is the latest of their resets.
   */
  retryAfterSeconds: number;
}

/**
 * The single rule every counter store applies, so memory and Redis decide alike. `usedBefore[i]` is what
 * `checks[i]`'s current window held before this call. A window has room while `used < limit`. With
 * `effect: 'consume'` an admitted call is counted in every window (and the statuses include it); a refused call
 * is counted in none. `'peek'` never counts.
 */
export function decide(checks: readonly CounterCheck[], usedBefore: readonly number[], nowMs: number, effect: 'consume' | 'peek'): RateDecision {
  if (usedBefore.length !== checks.length) throw new RangeError(`expected ${checks.length} counts, got ${usedBefore.length}`);
  const before = checks.map((c, i) => windowStatus(c.rule, usedBefore[i]!, nowMs));
  const full = before.filter((w) => w.used >= w.limit);
  if (full.length === 0) {
    const windows = effect === 'consume' ? checks.map((c, i) => windowStatus(c.rule, usedBefore[i]! + 1, nowMs)) : before;
    return { admitted: true, windows, refusedBy: null, retryAfterSeconds: 0 };
  }
  // The first full window with the latest reset: waiting for it waits for all of them.
  const refusedBy = full.reduce((latest, w) => (w.resetAtMs > latest.resetAtMs ? w : latest));
  return {
    admitted: false,
    windows: before,
    refusedBy,
    retryAfterSeconds: Math.max(1, Math.ceil((refusedBy.resetAtMs - nowMs) / 1000)),
  };
}

/**
 * The window a client is closest to exhausting (BeatPass: "the most restrictive applicable limit"): lowest
 * remaining; on a tie the lowest limit, then the shortest period. Undefined when there are no windows.
 */
export function mostRestrictive(windows: readonly WindowStatus[]): WindowStatus | undefined {
  let best: WindowStatus | undefined;
  for (const w of windows) {
    if (
      best === undefined ||
      w.remaining < best.remaining ||
      (w.remaining === best.remaining && (w.limit < best.limit || (w.limit === best.limit && w.periodSeconds < best.periodSeconds)))
    ) {
      best = w;
    }
  }
  return best;
}
