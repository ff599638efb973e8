import { MoneyFuzzer } from './money-fuzzer';
import { fuzzPlan } from './options';

/**
 * `npm run test:fuzz`: the long run of the money fuzzer (README, "The money fuzzer"). Defaults: 20 seeds from a
 * random base, 2,000 calls each. Exit 1 when any invariant fails; each failing seed prints its reproduction.
 */
async function main(): Promise<void> {
  const plan = fuzzPlan({ seeds: 20, calls: 2000, seedBase: 'random', settleMs: 30_000 });
  const log = (line: string) => process.stdout.write(line + '\n');
  log(`money fuzzer: seeds ${plan.seeds[0]}..${plan.seeds[plan.seeds.length - 1]} (${plan.seeds.length}), ${plan.calls} calls each`);
  const fuzzer = await MoneyFuzzer.start();
  const failed: number[] = [];
  let calls = 0;
  try {
    for (const seed of plan.seeds) {
      const report = await fuzzer.runSeed(seed, { calls: plan.calls, settleMs: plan.settleMs, rssLimitMb: plan.rssLimitMb, tame: plan.tame, log });
      calls += report.calls;
      if (report.violations.length > 0) failed.push(seed);
    }
  } finally {
    await fuzzer.stop();
  }
  log(`money fuzzer: ${calls} calls over ${plan.seeds.length} seed(s); ${failed.length ? `FAILED seeds ${failed.join(', ')}` : 'every invariant held'}`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e: Error) => {
  process.stderr.write(`money fuzzer: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
