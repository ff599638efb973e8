import { MoneyFuzzer, summary } from '../fuzz/money-fuzzer';
import { fuzzPlan } from '../fuzz/options';

/**
 * The money fuzzer's short run (the long one is `npm run test:fuzz`): a few fixed seeds of hostile calls through
 * real gateways, the broker and metering in front of scripted upstreams; after each, every 2xx is in /usage once
 * at the price of the upstream's answer, nothing else is charged, no hold is left and balance = Σ ledger.
 * FUZZ_SEED=<n> reruns one seed exactly.
 */
describe('the money fuzzer (short run)', () => {
  const plan = fuzzPlan({ seeds: 3, calls: 150, seedBase: 1, settleMs: 30_000 });
  let fuzzer: MoneyFuzzer;

  beforeAll(async () => {
    fuzzer = await MoneyFuzzer.start();
  }, 120_000);

  afterAll(async () => {
    await fuzzer?.stop();
  });

  it('control: with only well-behaved calls and answers (FUZZ_TAME), every invariant holds, so a failure below is a hole, not the checker', async () => {
    const report = await fuzzer.runSeed(plan.seeds[0]!, { calls: plan.calls, settleMs: plan.settleMs, rssLimitMb: plan.rssLimitMb, tame: true, log: () => undefined });
    if (report.violations.length > 0) throw new Error(summary(report));
    expect(report.violations).toEqual([]);
    expect(report.settled).toBe(true);
  }, 180_000);

  it.each(plan.seeds)(
    'seed %i: every 2xx is metered once at its price, every other answer is free, no hold is left, balance = Σ ledger, memory stays bounded',
    async (seed) => {
      const report = await fuzzer.runSeed(seed, { calls: plan.calls, settleMs: plan.settleMs, rssLimitMb: plan.rssLimitMb, tame: plan.tame, log: () => undefined });
      if (report.violations.length > 0) throw new Error(summary(report));
      expect(report.violations).toEqual([]);
      expect(Object.values(report.statuses).reduce((s, n) => s + n, 0)).toBe(plan.calls);
    },
    180_000,
  );
});
