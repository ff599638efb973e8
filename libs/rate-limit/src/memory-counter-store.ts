import { CounterStore, WINDOW_GRACE_MS, windowKey } from './counter-store';
import { CounterCheck, decide, RateDecision } from './decision';

/** Sweep at least this often (in the callers' time) so a quiet process still lets go of old windows. */
const SWEEP_EVERY_MS = 60_000;
/** Below this many entries a sweep is not worth it between the timed ones. */
const MIN_SWEEP_SIZE = 10_000;

interface Counter {
  count: number;
  /** The window's end plus the grace; after this no call can still need it. */
  expiresAtMs: number;
}

/**
 * Counters in this process's memory: exact for one gateway instance, not shared between instances.
 * Every method is synchronous (JavaScript runs one at a time, so each call is atomic by construction).
 *
 * Old windows are dropped by a sweep that runs on access, never by a timer, so the store never keeps a process
 * alive: when the maps have doubled since the last sweep, or a minute of caller time has passed. The amortised
 * cost stays O(1) per call and memory stays bounded by about twice the live windows.
 */
export class MemoryCounterStore implements CounterStore {
  private readonly counters = new Map<string, Counter>();
  private readonly locks = new Map<string, number>();
  private sweepAtSize = MIN_SWEEP_SIZE;
  private lastSweepMs = Number.NEGATIVE_INFINITY;

  consume(checks: CounterCheck[], nowMs: number): RateDecision {
    this.maybeSweep(nowMs);
    const keys = checks.map((c) => windowKey(c, nowMs));
    const decision = decide(checks, keys.map((k) => this.counters.get(k)?.count ?? 0), nowMs, 'consume');
    if (decision.admitted) {
      decision.windows.forEach((w, i) => {
        const key = keys[i]!;
        this.counters.set(key, { count: (this.counters.get(key)?.count ?? 0) + 1, expiresAtMs: w.resetAtMs + WINDOW_GRACE_MS });
      });
    }
    return decision;
  }

  peek(checks: CounterCheck[], nowMs: number): RateDecision {
    this.maybeSweep(nowMs);
    return decide(checks, checks.map((c) => this.counters.get(windowKey(c, nowMs))?.count ?? 0), nowMs, 'peek');
  }

  lock(key: string, untilMs: number): void {
    this.locks.set(key, untilMs);
  }

  lockedUntil(key: string, nowMs: number): number {
    this.maybeSweep(nowMs);
    const until = this.locks.get(key);
    return until !== undefined && until > nowMs ? until : 0;
  }

  private maybeSweep(nowMs: number): void {
    const size = this.counters.size + this.locks.size;
    if (size < this.sweepAtSize && nowMs - this.lastSweepMs < SWEEP_EVERY_MS) return;
    for (const [key, c] of this.counters) if (c.expiresAtMs <= nowMs) this.counters.delete(key);
    for (const [key, until] of this.locks) if (until <= nowMs) this.locks.delete(key);
    this.lastSweepMs = nowMs;
    this.sweepAtSize = Math.max(MIN_SWEEP_SIZE, 2 * (this.counters.size + this.locks.size));
  }
}
