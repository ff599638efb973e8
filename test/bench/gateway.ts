import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Client } from 'pg';
import { Agent, request } from 'undici';
import { requestCompleted, testKafka } from '../support/kafka';
import { eventually, freePort, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * `npm run bench -- gateway`: a paid call through the whole system against the upstream called directly, side by
 * side in one run, the way a user meets it (trackyard `POST /search` with a JSON body, limits lifted, credits
 * ample). Everything (broker, database, apps, this load generator) shares the machine's cores.
 *
 * Rows: throughput at 32 connections, p50/p99 at 4 connections, and the CPU each process spent per call
 * (process CPU time / 2xx answers), read from /proc: each app, the broker, PostgreSQL (all its processes), Redis,
 * this load generator, and the whole machine (busy time across all cores, so anything not listed shows there). Afterwards every 2xx of the run must be charged exactly once:
 * the bench prints the credits the ledger charged next to the 2xx it counted.
 */
export interface GatewayRow {
  path: string;
  rps32: number;
  p50ms4: number;
  p99ms4: number;
  ratio: number;
  addedP50ms: number;
  non2xx: number;
  cpuMsPerCall: Record<string, number>;
}

const base = '/api/external/v1';
const seconds = Number(process.env.BENCH_SECONDS || 10);

function cpuTicks(pid: number | undefined, withChildren = false): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of /proc/PID/stat (1-based), in clock ticks (USER_HZ = 100); cutime and
    // cstime (16, 17) are those of its children that have exited (PostgreSQL's backends, once a pool closes them).
    return Number(fields[11]) + Number(fields[12]) + (withChildren ? Number(fields[13]) + Number(fields[14]) : 0);
  } catch {
    return 0;
  }
}

/** CPU ticks of every process whose command name is `comm` (PostgreSQL's backends, Redis). */
function ticksOfCommand(comm: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== comm) continue;
    } catch {
      continue;
    }
    total += cpuTicks(Number(entry), true);
  }
  return total;
}

/** Busy ticks of the whole machine (every CPU's time outside idle and iowait), from /proc/stat. */
function machineTicks(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return cpu.reduce((a, b) => a + b, 0) - (cpu[3] ?? 0) - (cpu[4] ?? 0);
}

/** The broker scripts/infra.js started for this run (its pid file); none when KAFKA_BROKERS names another one. */
function brokerPid(): number | undefined {
  try {
    return Number(readFileSync(join(repoRoot, '.tollgate', 'kafka', 'broker.pid'), 'utf8')) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * BENCH_RATE=N: the timed runs send N calls per second in all (below saturation) instead of as many as 32
 * connections can: every path then meets the same load, and its CPU per call compares across builds without the
 * machine's throughput noise.
 */
const fixedRate = Number(process.env.BENCH_RATE || 0);

async function load(url: string, keys: string[], connections: number, duration: number, rate = 0): Promise<autocannon.Result> {
  let i = 0;
  return autocannon({
    url,
    method: 'POST',
    connections,
    duration,
    ...(rate > 0 ? { overallRate: rate } : {}),
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: 'night drive' }),
    requests: [
      {
        setupRequest: (req) => {
          if (keys.length === 0) return req;
          const key = keys[i++ % keys.length]!;
          return { ...req, headers: { ...req.headers, authorization: `Bearer ${key}` } };
        },
      },
    ],
  });
}

/**
 * Light load: `connections` callers, each sending its next call when the last one is answered, timed to the
 * microsecond (autocannon's histogram has whole milliseconds, too coarse for a 1 ms budget).
 */
async function closedLoop(url: string, keys: string[], connections: number, duration: number): Promise<{ p50: number; p99: number; ok: number; failed: number }> {
  const agent = new Agent({ connections, pipelining: 1 });
  const body = JSON.stringify({ query: 'night drive' });
  const samples: number[] = [];
  let ok = 0;
  let failed = 0;
  let i = 0;
  const until = performance.now() + duration * 1000;
  const worker = async () => {
    while (performance.now() < until) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (keys.length > 0) headers.authorization = `Bearer ${keys[i++ % keys.length]!}`;
      const t = performance.now();
      const res = await request(url, { method: 'POST', headers, body, dispatcher: agent });
      await res.body.arrayBuffer();
      samples.push(performance.now() - t);
      if (res.statusCode >= 200 && res.statusCode < 300) ok++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  await agent.close();
  samples.sort((a, b) => a - b);
  const at = (q: number) => Number((samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? NaN).toFixed(2));
  return { p50: at(0.5), p99: at(0.99), ok, failed };
}

export async function gatewayBench(): Promise<{ rows: GatewayRow[]; notes: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-profiles-'));
  for (const name of ['trackyard', 'beatpass', 'trakt', 'trace']) {
    let text = readFileSync(join(repoRoot, 'config/profiles', `${name}.yaml`), 'utf8');
    if (name === 'trackyard') text = text.replace(/enforcement:\s*strict/, 'enforcement: eventual');
    writeFileSync(join(dir, `${name}.yaml`), text);
  }
  // BENCH_CPU_PROF=DIR: every app writes a V8 CPU profile into DIR when it stops (node --cpu-prof).
  const nodeArgs = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const stack = await Stack.start({ profile: 'trackyard', env: { LOG_LEVEL: 'warn' }, nodeArgs });
  const notes: string[] = [];
  const rows: GatewayRow[] = [];
  try {
    const eventualPort = await freePort();
    await stack.startApp('gateway', 'gateway-eventual', { GATEWAY_PORT: String(eventualPort), TOLLGATE_PROFILES_DIR: dir });
    // The strict gateway before leases (a hold per call), side by side with the one that spends leases.
    const holdsPort = await freePort();
    await stack.startApp('gateway', 'gateway-holds', { GATEWAY_PORT: String(holdsPort), GATEWAY_CREDIT_LEASES: '0' });

    const orgs = [];
    for (let i = 0; i < 101; i++) orgs.push(await stack.orgWithKey('pro', uniqueId(`bench-gw-${i}`)));
    for (const o of orgs) {
      await stack.admin('POST', `/admin/orgs/${o.orgId}/credits`, { amount: 100_000_000, reason: 'bench', idempotency_key: uniqueId('bench') });
      await stack.admin('PUT', `/admin/orgs/${o.orgId}/limits`, { minute: 1_000_000_000, day: 1_000_000_000 });
    }
    const hot = orgs.pop()!;
    const keys = orgs.map((o) => o.key);
    // Limit overrides reach every gateway within 5 s (key cache); wait until a call shows the lifted limit.
    for (const port of [stack.ports.gateway, eventualPort, holdsPort]) {
      await eventually(async () => {
        const res = await fetch(stack.gatewayUrl(`${base}/search`, port), { method: 'POST', headers: { authorization: `Bearer ${hot.key}`, 'content-type': 'application/json' }, body: '{"query":"x"}' });
        await res.arrayBuffer();
        return res.headers.get('x-ratelimit-limit') === '1000000000';
      }, 15_000, 200);
    }

    const pids: Record<string, number | undefined> = {
      gateway: stack.processes.get('gateway')?.pid,
      'gateway-eventual': stack.processes.get('gateway-eventual')?.pid,
      'gateway-holds': stack.processes.get('gateway-holds')?.pid,
      metering: stack.processes.get('metering')?.pid,
      upstream: stack.processes.get('example-upstream')?.pid,
      broker: brokerPid(),
    };
    const sample = (n: string): number => {
      if (n === 'postgres') return ticksOfCommand('postgres');
      if (n === 'redis') return ticksOfCommand('redis-server');
      if (n === 'loadgen') return cpuTicks(process.pid);
      if (n === 'machine') return machineTicks();
      return cpuTicks(pids[n]);
    };
    const all = ['metering', 'query', 'broker', 'postgres', 'redis', 'upstream', 'loadgen', 'machine'];
    pids.query = stack.processes.get('query')?.pid;
    // BENCH_PATHS=strict,eventual (any of holds, holds-hot, strict, hot, eventual): only those gateway rows, after the direct one.
    const only = (process.env.BENCH_PATHS ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    const picked = (name: string) => only.length === 0 || only.includes(name);
    const targets = [
      { row: 'direct', path: 'upstream, called directly', url: `http://127.0.0.1:${stack.ports.upstream}${base}/search`, keys: [], cpu: ['upstream', 'loadgen', 'machine'] },
      { row: 'holds', path: 'gateway, strict with a hold per call, 100 orgs', url: stack.gatewayUrl(`${base}/search`, holdsPort), keys, cpu: ['gateway-holds', ...all] },
      { row: 'holds-hot', path: 'gateway, strict with a hold per call, one hot org', url: stack.gatewayUrl(`${base}/search`, holdsPort), keys: [hot.key], cpu: ['gateway-holds', ...all] },
      { row: 'strict', path: 'gateway, strict with leases, 100 orgs', url: stack.gatewayUrl(`${base}/search`), keys, cpu: ['gateway', ...all] },
      { row: 'hot', path: 'gateway, strict with leases, one hot org', url: stack.gatewayUrl(`${base}/search`), keys: [hot.key], cpu: ['gateway', ...all] },
      { row: 'eventual', path: 'gateway, eventual, 100 orgs', url: stack.gatewayUrl(`${base}/search`, eventualPort), keys, cpu: ['gateway-eventual', ...all] },
    ].filter((t) => t.row === 'direct' || picked(t.row));

    // Warm-up: a first pass over every path at full load, so the broker's JIT, metering and the gateways reach steady
    // state before anything is timed (measured cold, the first gateway row paid for the whole stack's warm-up and
    // came out at half the throughput of the same path measured later).
    const warmSeconds = Number(process.env.BENCH_WARMUP_SECONDS || 8);
    for (const t of targets) if (t.keys.length > 0) await load(t.url, t.keys, 32, warmSeconds);
    // Statistics as a database in service has them. Autovacuum analyses a table once a tenth of it has changed, but
    // visits a database about once a minute (autovacuum_naptime), so the bench's new database would be timed with
    // statistics taken while its tables were nearly empty: the plans then read every held lease once per row of a
    // consumer batch (auto_explain: 16-100 ms a batch of 50, against 1-4 ms with current statistics), and PostgreSQL's
    // CPU per call swung 3x between runs with when autovacuum happened to come. BENCH_ANALYZE=0 times it as it is.
    if (process.env.BENCH_ANALYZE !== '0') {
      const db = new Client({ connectionString: process.env.DATABASE_URL });
      await db.connect();
      await db.query('ANALYZE').finally(() => db.end());
    }

    let answered2xx = 0;
    let directP50 = 0;
    let directRps = 0;
    for (const t of targets) {
      await load(t.url, t.keys, 8, 2); // warm-up: JIT, pools, connections
      const before = Object.fromEntries(t.cpu.map((n) => [n, sample(n)]));
      const heavy = await load(t.url, t.keys, 32, seconds, fixedRate);
      const after = Object.fromEntries(t.cpu.map((n) => [n, sample(n)]));
      const light = await closedLoop(t.url, t.keys, 4, seconds);
      const ok = heavy['2xx'];
      if (t.keys.length > 0) answered2xx += heavy['2xx'] + light.ok;
      const cpuMsPerCall = Object.fromEntries(t.cpu.map((n) => [n.replace(/-(eventual|holds)$/, ''), ok > 0 ? ((after[n]! - before[n]!) * 10) / ok : NaN]));
      if (t.keys.length === 0) {
        directP50 = light.p50;
        directRps = heavy.requests.average;
      }
      rows.push({
        path: t.path,
        rps32: heavy.requests.average,
        p50ms4: light.p50,
        p99ms4: light.p99,
        ratio: directRps > 0 ? heavy.requests.average / directRps : 1,
        addedP50ms: light.p50 - directP50,
        non2xx: heavy.non2xx + heavy.errors + light.failed,
        cpuMsPerCall,
      });
      console.error(`bench: ${t.path} done (${Math.round(heavy.requests.average)} req/s)`);
    }
    // One warm-up call per org of the eventual and strict gateways was also charged before the counters above.
    const db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
    try {
      const ids = [...orgs.map((o) => o.orgId), hot.orgId];
      const charged = async () => {
        const r = await db.query(`SELECT COALESCE(SUM(credits), 0)::bigint AS c, COUNT(*) FILTER (WHERE status_code BETWEEN 200 AND 299)::bigint AS ok FROM usage_records WHERE org_id = ANY($1)`, [ids]);
        return { credits: Number(r.rows[0].c), ok: Number(r.rows[0].ok) };
      };
      const settled = await eventually(async () => {
        const a = await charged();
        await new Promise((r) => setTimeout(r, 1000));
        const b = await charged();
        return a.credits === b.credits && a.ok === b.ok ? b : null;
      }, 120_000, 100);
      notes.push(`exactness: ${answered2xx} 2xx counted by the load generator in the timed runs; the ledger charged ${settled.credits} credits for ${settled.ok} metered 2xx calls (the difference is the warm-up calls)`);
      notes.push(`event from another producer visible in /me: ${await visibility(stack, hot.key, hot.orgId)}`);
    } finally {
      await db.end();
    }
  } finally {
    await stack.stop();
  }
  return { rows, notes };
}

/** An event produced by another service, timed from the producer's ack until /me on the query service shows it. */
async function visibility(stack: Stack, key: string, orgId: string): Promise<string> {
  const kafka = testKafka();
  const producer = kafka.producer();
  await producer.connect();
  const me = async () => {
    const res = await fetch(`http://127.0.0.1:${stack.ports.query}${base}/me`, { headers: { authorization: `Bearer ${key}` } });
    return ((await res.json()) as { credits_remaining: number }).credits_remaining;
  };
  const samples: number[] = [];
  try {
    for (let i = 0; i < 100; i++) {
      const before = await me();
      await producer.send({ topic: 'tollgate.request-completed.v1', acks: -1, messages: [{ key: orgId, value: JSON.stringify(requestCompleted({ org_id: orgId })) }] });
      const t = performance.now();
      await eventually(async () => (await me()) < before, 10_000, 2);
      samples.push(performance.now() - t);
    }
  } finally {
    await producer.disconnect();
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!.toFixed(1);
  return `p50 ${at(0.5)} ms, p99 ${at(0.99)} ms (n=${samples.length})`;
}

export function printGatewayTable(rows: GatewayRow[], notes: string[]): void {
  console.log(`\nGateway vs upstream (${seconds} s per run; throughput at 32 connections${fixedRate > 0 ? `, sending ${fixedRate} calls/s in all` : ''}, latency at 4)\n`);
  console.log('| path | req/s (32 conns) | % of direct | p50 (4 conns) | p99 (4 conns) | p50 added | non-2xx | CPU ms per call |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of rows) {
    const cpu = Object.entries(r.cpuMsPerCall).map(([n, v]) => `${n} ${v.toFixed(3)}`).join(', ');
    console.log(`| ${r.path} | ${Math.round(r.rps32)} | ${(r.ratio * 100).toFixed(0)}% | ${r.p50ms4} ms | ${r.p99ms4} ms | ${r.addedP50ms.toFixed(2)} ms | ${r.non2xx} | ${cpu} |`);
  }
  for (const n of notes) console.log(`\n${n}`);
}
