import { Stack, uniqueId } from '../support/stack';

/**
 * `node dist/test/bench/timing-probe.js` (under scripts/with-infra.js): where a paid call's time goes, step by step,
 * from the gateway's Server-Timing header at light load (PROBE_CONNECTIONS callers, default 1).
 */
async function main(): Promise<void> {
  // PROBE_PROFILES_DIR: profiles to run the gateway with (e.g. trackyard with credits.enforcement: eventual).
  const dir: Record<string, string> = process.env.PROBE_PROFILES_DIR ? { TOLLGATE_PROFILES_DIR: process.env.PROBE_PROFILES_DIR } : {};
  const nodeArgs = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const stack = await Stack.start({ profile: 'trackyard', env: { GATEWAY_SERVER_TIMING: '1', ...dir }, nodeArgs });
  try {
    const orgs: Array<{ key: string }> = [];
    for (let i = 0; i < Number(process.env.PROBE_ORGS || 20); i++) {
      const o = await stack.orgWithKey('pro', uniqueId(`probe-${i}`));
      await stack.admin('PUT', `/admin/orgs/${o.orgId}/limits`, { minute: 1_000_000, day: 1_000_000 });
      orgs.push(o);
    }
    await new Promise((r) => setTimeout(r, 2500));
    const steps = new Map<string, number[]>();
    const totals: number[] = [];
    const n = Number(process.env.PROBE_CALLS || 400);
    const connections = Number(process.env.PROBE_CONNECTIONS || 1);
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        const res = await fetch(stack.gatewayUrl('/api/external/v1/search'), {
          method: 'POST', headers: { authorization: `Bearer ${orgs[i % orgs.length]!.key}`, 'content-type': 'application/json' }, body: '{"query":"night drive"}',
        });
        await res.arrayBuffer();
        if (i < 50) continue; // warm-up
        totals.push(performance.now() - t);
        for (const part of (res.headers.get('server-timing') ?? '').split(',')) {
          const [name, dur] = part.trim().split(';dur=');
          if (name && dur) steps.set(name, [...(steps.get(name) ?? []), Number(dur)]);
        }
      }
    };
    await Promise.all(Array.from({ length: connections }, worker));
    const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]!.toFixed(2);
    console.log(`client total: p50 ${p(totals, 0.5)} ms, p90 ${p(totals, 0.9)} ms`);
    for (const [name, xs] of steps) console.log(`${name.padEnd(10)} p50 ${p(xs, 0.5)} ms  p90 ${p(xs, 0.9)} ms`);
  } finally {
    await stack.stop();
  }
}

main().catch((e: Error) => {
  console.error(e.stack);
  process.exit(1);
});
