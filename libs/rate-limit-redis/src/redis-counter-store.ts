import type { Redis } from 'ioredis';
import { Clock, CounterCheck, CounterStore, decide, RateDecision, systemClock, WINDOW_GRACE_MS, windowKey, windowStatus } from '@tollgate/rate-limit';

/**
 * Reads every window of one call and, only if all have room and the caller asked to consume, counts the call
 * in each of them. Redis runs a script alone, so the check and the increments are one atomic step for every
 * gateway sharing this Redis: no interleaving can admit a call over any limit, and a refused call touches
 * nothing. It returns the counts as they were before the call; `decide` turns them into the decision with the
 * same rule (`used < limit` everywhere), so the TypeScript answer always matches what the script did.
 *
 * KEYS[i]: the counter of window i. ARGV[1]: '1' to consume, '0' to peek. ARGV[2i]: limit of window i.
 * ARGV[2i+1]: how long (ms) window i's counter must live: to the window's end plus a grace.
 */
const WINDOWS_SCRIPT = `
local used = {}
local room = true
for i = 1, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i])) or 0
  used[i] = n
  if n >= tonumber(ARGV[2 * i]) then room = false end
end
if room and ARGV[1] == '1' then
  for i = 1, #KEYS do
    redis.call('INCR', KEYS[i])
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i + 1])
  end
end
return used
`;

const COMMAND = 'tollgateRateWindows';

type WithWindowsCommand = Redis & Record<typeof COMMAND, (numberOfKeys: number, ...keysAndArgs: Array<string | number>) => Promise<unknown>>;

export interface RedisCounterStoreOptions {
  /** Put before every key, so several deployments (or test runs) can share one Redis. Default ''. */
  prefix?: string;
  /** Reads "now" for lock expiry only (a lock's deadline comes without a now). Default: the system clock. */
  clock?: Clock;
}

/**
 * Window counters in Redis, shared by every gateway instance pointing at it (SPEC §4: limits hold across
 * instances). `consume` and `peek` each cost one round trip: one Lua script (EVALSHA, with ioredis falling back
 * to EVAL when Redis has not seen it yet).
 *
 * Keys: `${prefix}rl:${subjectKey}:${windowStartMs}` per window, expiring a grace after the window ends, and
 * `${prefix}lock:${key}` per lock, holding its deadline in epoch ms. Expiry uses relative TTLs computed from the
 * callers' clock, so a Redis server whose clock differs cannot end a window early.
 *
 * The keys of one call live in different hash slots, so this needs a single Redis (with or without replicas),
 * not Redis Cluster.
 */
export class RedisCounterStore implements CounterStore {
  private readonly redis: WithWindowsCommand;
  private readonly prefix: string;
  private readonly clock: Clock;

  constructor(redis: Redis, opts: RedisCounterStoreOptions = {}) {
    // defineCommand is idempotent: several stores on one connection share the same script.
    redis.defineCommand(COMMAND, { lua: WINDOWS_SCRIPT });
    this.redis = redis as WithWindowsCommand;
    this.prefix = opts.prefix ?? '';
    this.clock = opts.clock ?? systemClock;
  }

  consume(checks: CounterCheck[], nowMs: number): Promise<RateDecision> {
    return this.run(checks, nowMs, 'consume');
  }

  peek(checks: CounterCheck[], nowMs: number): Promise<RateDecision> {
    return this.run(checks, nowMs, 'peek');
  }

  async lock(key: string, untilMs: number): Promise<void> {
    const ttlMs = Math.max(1, Math.ceil(untilMs - this.clock.now()) + WINDOW_GRACE_MS);
    await this.redis.set(this.lockKey(key), String(untilMs), 'PX', ttlMs);
  }

  async lockedUntil(key: string, nowMs: number): Promise<number> {
    const raw = await this.redis.get(this.lockKey(key));
    const until = raw === null ? 0 : Number(raw);
    return Number.isFinite(until) && until > nowMs ? until : 0;
  }

  private async run(checks: CounterCheck[], nowMs: number, effect: 'consume' | 'peek'): Promise<RateDecision> {
    if (checks.length === 0) return decide(checks, [], nowMs, effect);
    const keys = checks.map((c) => `${this.prefix}rl:${windowKey(c, nowMs)}`);
    const args = checks.flatMap((c) => [c.rule.limit, Math.max(1, windowStatus(c.rule, 0, nowMs).resetAtMs - nowMs + WINDOW_GRACE_MS)]);
    const reply = await this.redis[COMMAND](keys.length, ...keys, effect === 'consume' ? 1 : 0, ...args);
    return decide(checks, countsFrom(reply, checks.length), nowMs, effect);
  }

  private lockKey(key: string): string {
    return `${this.prefix}lock:${key}`;
  }
}

function countsFrom(reply: unknown, expected: number): number[] {
  if (!Array.isArray(reply) || reply.length !== expected || !reply.every((n) => typeof n === 'number')) {
    throw new Error(`rate-limit script answered ${JSON.stringify(reply)}, expected ${expected} counts`);
  }
  return reply as number[];
}
