/**
 * The fuzzer's size from the environment: FUZZ_SEED pins one seed (a reproduction), FUZZ_SEEDS and FUZZ_CALLS
 * size the run, FUZZ_SEED_BASE is the first seed of a run of several (the long run picks one at random and
 * prints it), FUZZ_SETTLE_MS bounds the wait for metering, FUZZ_RSS_LIMIT_MB the gateways' peak memory, FUZZ_TAME=1
 * sends only well-behaved calls and answers (the checker's control).
 */
export interface FuzzPlan {
  seeds: number[];
  calls: number;
  settleMs: number;
  rssLimitMb: number;
  tame: boolean;
}

export function fuzzPlan(defaults: { seeds: number; calls: number; seedBase: number | 'random'; settleMs: number }, env = process.env): FuzzPlan {
  const int = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}: a whole number ≥ 0 (got ${JSON.stringify(raw)})`);
    return n;
  };
  const calls = int('FUZZ_CALLS', defaults.calls);
  const settleMs = int('FUZZ_SETTLE_MS', defaults.settleMs);
  const rssLimitMb = int('FUZZ_RSS_LIMIT_MB', 512);
  const tame = env.FUZZ_TAME === '1';
  if (env.FUZZ_SEED !== undefined && env.FUZZ_SEED !== '') return { seeds: [int('FUZZ_SEED', 0)], calls, settleMs, rssLimitMb, tame };
  const base = int('FUZZ_SEED_BASE', defaults.seedBase === 'random' ? Math.floor(Math.random() * 1_000_000) : defaults.seedBase);
  return { seeds: Array.from({ length: int('FUZZ_SEEDS', defaults.seeds) }, (_, i) => base + i), calls, settleMs, rssLimitMb, tame };
}
