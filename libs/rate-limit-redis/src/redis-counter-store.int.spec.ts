import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { CounterCheck, MemoryCounterStore, RateDecision } from '@tollgate/rate-limit';
import { RedisCounterStore } from './redis-counter-store';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
// One prefix per run: runs and parallel workers never see each other's counters.
const PREFIX = `tollgate-test:${randomUUID()}:`;
const T0 = Date.parse('2026-11-22T10:00:00.000Z');

const minute = (limit: number, subject: string): CounterCheck => ({ subjectKey: `${subject}:minute`, rule: { name: 'minute', periodSeconds: 60, limit } });
const day = (limit: number, subject: string): CounterCheck => ({ subjectKey: `${subject}:day`, rule: { name: 'day', periodSeconds: 86_400, limit } });

describe('RedisCounterStore (real Redis)', () => {
  const connections: Redis[] = [];
  const connect = (): Redis => {
    // Configured as the gateway configures its connection (main.ts), auto-pipelining included.
    const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 2, enableAutoPipelining: true });
    connections.push(r);
    return r;
  };
  let redis: Redis;
  let store: RedisCounterStore;
  let subject: string;

  beforeAll(() => {
    redis = connect();
    store = new RedisCounterStore(redis, { prefix: PREFIX, clock: { now: () => T0 } });
  });

  beforeEach(() => {
    subject = randomUUID();
  });

  afterAll(async () => {
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
    await Promise.all(connections.map((c) => c.quit()));
  });

  it('given the same calls, when decided by Redis and by memory, then every decision is identical', async () => {
    const memory = new MemoryCounterStore();
    const checks = [minute(3, subject), day(5, subject)];
    const script: Array<['consume' | 'peek', number]> = [
      ['consume', T0], ['consume', T0 + 1_000], ['peek', T0 + 2_000], ['consume', T0 + 59_999], ['consume', T0 + 59_999],
      ['peek', T0 + 59_999], ['consume', T0 + 60_000], ['consume', T0 + 60_001], ['consume', T0 + 61_000], ['peek', T0 + 62_000],
    ];
    const fromRedis: RateDecision[] = [];
    const fromMemory: RateDecision[] = [];
    for (const [effect, at] of script) {
      fromRedis.push(await store[effect](checks, at));
      fromMemory.push(memory[effect](checks, at));
    }
    expect(fromRedis).toEqual(fromMemory);
    // The script covered admission, a refusal by the minute and a refusal by the day.
    expect(fromRedis.map((d) => d.refusedBy?.name ?? null)).toEqual([null, null, null, null, 'minute', 'minute', null, null, 'day', 'day']);
  });

  it('given a full window, when calls are refused, then they count in none of the windows', async () => {
    await store.consume([minute(1, subject), day(100, subject)], T0);
    for (let i = 0; i < 5; i++) expect((await store.consume([minute(1, subject), day(100, subject)], T0 + i)).admitted).toBe(false);
    const after = await store.peek([day(100, subject)], T0 + 10);
    expect(after.windows[0]?.used).toBe(1);
  });

  it('given a counted window, when its keys are inspected, then they expire shortly after the window ends', async () => {
    const at = T0 + 59_000;
    await store.consume([minute(5, subject), day(5, subject)], at);
    const minuteTtl = await redis.pttl(`${PREFIX}rl:${subject}:minute:${T0}`);
    const dayTtl = await redis.pttl(`${PREFIX}rl:${subject}:day:${Date.parse('2026-11-22T00:00:00.000Z')}`);
    expect(minuteTtl).toBeGreaterThan(1_000 - 100);
    expect(minuteTtl).toBeLessThanOrEqual(1_000 + 2_000);
    const untilMidnight = Date.parse('2026-11-23T00:00:00.000Z') - at;
    expect(dayTtl).toBeGreaterThan(untilMidnight - 1_000);
    expect(dayTtl).toBeLessThanOrEqual(untilMidnight + 2_000);
  });

  it('given a peek, when nothing was counted yet, then no key is created', async () => {
    await store.peek([minute(5, subject)], T0);
    expect(await redis.exists(`${PREFIX}rl:${subject}:minute:${T0}`)).toBe(0);
  });

  it('given a lock, when asked before and after its deadline, then it is in force until then and its key expires', async () => {
    const key = `beatpass:lockout:ip:${subject}`;
    await store.lock(key, T0 + 30_000);
    expect(await store.lockedUntil(key, T0)).toBe(T0 + 30_000);
    expect(await store.lockedUntil(key, T0 + 30_000)).toBe(0);
    expect(await store.lockedUntil(`${key}:other`, T0)).toBe(0);
    const ttl = await redis.pttl(`${PREFIX}lock:${key}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(30_000 + 2_000);
  });

  it('given three gateway instances on their own connections, when 100 calls race for a limit of 10, then exactly 10 are admitted', async () => {
    const gateways = [connect(), connect(), connect()].map((c) => new RedisCounterStore(c, { prefix: PREFIX }));
    const checks = [minute(10, subject), day(1_000, subject)];
    const at = T0 + 30_000;
    const decisions = await Promise.all(Array.from({ length: 100 }, (_, i) => gateways[i % 3]!.consume(checks, at)));
    expect(decisions.filter((d) => d.admitted)).toHaveLength(10);
    const standing = await store.peek(checks, at);
    expect(standing.windows.map((w) => w.used)).toEqual([10, 10]);
  });
});
