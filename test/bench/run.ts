 
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import Redis from 'ioredis';
import { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { join } from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import { bearerMetadata } from '@tollgate/platform';
import { CounterCheck, MemoryCounterStore } from '@tollgate/rate-limit';
import { RedisCounterStore } from '@tollgate/rate-limit-redis';
import { requestCompleted, testKafka } from '../support/kafka';
import { gatewayBench, printGatewayTable } from './gateway';
import { replayBench } from './replay';
import { webhooksBench } from './webhooks';
import { eventually, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * `npm run bench`: the hot paths, measured on this machine against the real broker, database and Redis.
 * Prints a table; docs/BENCHMARKS.md keeps the results with the machine and the date.
 * Sizes can be lowered for a quick look: BENCH_EVENTS, BENCH_USAGE_ROWS.
 */
interface Row {
  name: string;
  n: number;
  p50: string;
  p99: string;
  throughput: string;
}

const rows: Row[] = [];
const ms = (v: number) => `${v.toFixed(3)} ms`;

function percentiles(samples: number[]): { p50: number; p99: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99) };
}

async function timeEach(name: string, n: number, fn: (i: number) => unknown | Promise<unknown>, concurrency = 1): Promise<void> {
  const samples: number[] = [];
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const t = performance.now();
      await fn(i);
      samples.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  const { p50, p99 } = percentiles(samples);
  rows.push({ name, n, p50: ms(p50), p99: ms(p99), throughput: `${Math.round(n / seconds)}/s` });
  console.error(`bench: ${name} done`);
}

function checksFor(i: number): CounterCheck[] {
  const key = `bench:key:${i % 1000}`;
  return [
    { subjectKey: `${key}:minute`, rule: { name: 'minute', periodSeconds: 60, limit: 1_000_000 } },
    { subjectKey: `${key}:day`, rule: { name: 'day', periodSeconds: 86_400, limit: 1_000_000 } },
  ];
}

async function rateLimits(): Promise<void> {
  const memory = new MemoryCounterStore();
  for (let i = 0; i < 20_000; i++) memory.consume(checksFor(i), Date.now()); // warm-up
  await timeEach('rate-limit check, memory (2 windows)', 200_000, (i) => memory.consume(checksFor(i), Date.now()));
  const redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
  const store = new RedisCounterStore(redis, { prefix: `bench:${uuidv7()}:` });
  for (let i = 0; i < 2000; i++) await store.consume(checksFor(i), Date.now());
  await timeEach('rate-limit check, Redis loopback (2 windows)', 20_000, (i) => store.consume(checksFor(i), Date.now()));
  await timeEach('rate-limit check, Redis, 32 in flight', 50_000, (i) => store.consume(checksFor(i), Date.now()), 32);
  redis.disconnect();
}

async function metering(stack: Stack): Promise<void> {
  const n = Number(process.env.BENCH_EVENTS || 100_000);
  const orgs = await Promise.all(Array.from({ length: 20 }, (_, i) => stack.orgWithKey('starter', uniqueId(`bench-${i}`))));
  const holders = await Promise.all(Array.from({ length: 4 }, (_, i) => stack.orgWithKey('pro', uniqueId(`bench-backlog-hold-${i}`))));
  // Metering is stopped while the backlog is produced, so the run measures folding alone.
  await stack.stopProcess('metering');
  const kafka = testKafka();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const at = Date.now() - 60_000;
  for (let i = 0; i < n; i += 5000) {
    const messages = [];
    for (let j = i; j < Math.min(n, i + 5000); j++) {
      const org = orgs[j % orgs.length]!;
      messages.push({ key: org.orgId, value: JSON.stringify(requestCompleted({ org_id: org.orgId, occurred_at: new Date(at + j).toISOString(), status_code: j % 10 === 0 ? 500 : 200 })) });
    }
    await producer.send({ topic: 'tollgate.request-completed.v1', messages, acks: -1 });
  }
  await producer.disconnect();
  const db = new Client({ connectionString: process.env.DATABASE_URL });
  await db.connect();
  const counted = async () => Number((await db.query(`SELECT COALESCE(SUM(total), 0) AS n FROM usage_totals WHERE org_id = ANY($1)`, [orgs.map((o) => o.orgId)])).rows[0].n);
  const before = await counted();
  const launched = performance.now();
  await stack.startApp('metering');
  // Timed from the moment metering is ready (consumer in its group), so start-up is not counted as folding.
  const started = performance.now();
  const atReady = (await counted()) - before;
  // Meanwhile a gateway's holds, one at a time: what a paid call waits for while metering catches up on a backlog.
  const { client, reserve } = reservationsClient(stack, holders.map((o) => o.orgId));
  let folding = true;
  const holds: number[] = [];
  const holding = (async () => {
    for (let i = 0; folding; i++) {
      const t = performance.now();
      await reserve(i);
      holds.push(performance.now() - t);
    }
  })();
  await eventually(async () => (await counted()) - before >= n, 600_000, 50);
  const done = performance.now();
  folding = false;
  await holding;
  client.close();
  const held = percentiles(holds);
  rows.push({ name: 'reservation (gRPC Reserve, 1 at a time) while metering folds that backlog', n: holds.length, p50: ms(held.p50), p99: ms(held.p99), throughput: `${Math.round(holds.length / ((done - started) / 1000))}/s` });
  rows.push({ name: `metering: ${n} events backlog (20 orgs, 90% charged)`, n: n - atReady, p50: '-', p99: '-', throughput: `${Math.round((n - atReady) / ((done - started) / 1000))} events/s` });
  rows.push({ name: `metering: same, including process start-up`, n, p50: '-', p99: '-', throughput: `${Math.round(n / ((done - launched) / 1000))} events/s` });
  await copyBaseline(db, orgs.map((o) => o.orgId), n);
  await db.end();
}

/**
 * `npm run bench -- replay-kafka`: `npm run replay -- --all --source kafka` over a topic of `BENCH_REPLAY_EVENTS` synthetic events (default 100,000;
 * 200 orgs, 90% charged, 10% 500s), produced straight to the topic and metered live first. Reports the replay's
 * rate from its first progress line to its last (consuming and re-pricing) and end to end (wall clock of the
 * command: scratch schema, snapshot, group join, comparison included). Events other runs left on the topic are
 * read too (and skipped: their orgs are not in this database) and counted.
 */
async function replayKafkaBench(stack: Stack): Promise<void> {
  const n = Number(process.env.BENCH_REPLAY_EVENTS || 100_000);
  const orgs: string[] = [];
  for (let i = 0; i < 200; i += 20) {
    orgs.push(...(await Promise.all(Array.from({ length: 20 }, (_, j) => stack.orgWithKey('pro', uniqueId(`replay-bench-${i + j}`))))).map((o) => o.orgId));
  }
  const kafka = testKafka();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const at = Date.now() - 120_000;
  const produced = performance.now();
  for (let i = 0; i < n; i += 10_000) {
    const messages = [];
    for (let j = i; j < Math.min(n, i + 10_000); j++) {
      const org = orgs[j % orgs.length]!;
      messages.push({ key: org, value: JSON.stringify(requestCompleted({ org_id: org, occurred_at: new Date(at + Math.floor(j / 10)).toISOString(), status_code: j % 10 === 0 ? 500 : 200 })) });
    }
    await producer.send({ topic: 'tollgate.request-completed.v1', messages, acks: -1 });
  }
  await producer.disconnect();
  const produceSeconds = (performance.now() - produced) / 1000;
  const db = new Client({ connectionString: process.env.DATABASE_URL });
  await db.connect();
  const counted = async () => Number((await db.query(`SELECT COALESCE(SUM(total), 0) AS n FROM usage_totals WHERE org_id = ANY($1)`, [orgs])).rows[0].n);
  const liveStarted = performance.now();
  await eventually(async () => (await counted()) >= n, 3_600_000, 500);
  const liveSeconds = (performance.now() - liveStarted) / 1000;
  await db.end();

  const started = performance.now();
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/tollgate.js'), 'replay', '--all', '--source', 'kafka'], { env: { ...process.env, TOLLGATE_PROFILE: 'trackyard' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      if (process.env.BENCH_LOGS) process.stderr.write(b);
    });
    child.once('exit', (c) => resolve({ code: c, stdout: out, stderr: err }));
  });
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`replay exited ${code}:\n${stdout.slice(0, 4000)}\n${stderr.slice(-4000)}`);
  const counts = /(\d+) event\(s\) of \d+ org\(s\) re-priced \((\d+) read/.exec(stdout);
  const repriced = Number(counts?.[1] ?? n);
  const total = Number(counts?.[2] ?? n);
  const rates = [...stderr.matchAll(/(\d+)\/(\d+) events\s+(\d+) events\/s/g)];
  const consuming = rates.length > 0 ? `${rates[rates.length - 1]![3]} events/s` : '-';
  rows.push({ name: `produce ${n} synthetic events straight to the topic`, n, p50: '-', p99: '-', throughput: `${Math.round(n / produceSeconds)} events/s` });
  rows.push({ name: `live metering of them (backlog, 200 orgs)`, n, p50: '-', p99: '-', throughput: `${Math.round(n / liveSeconds)} events/s` });
  rows.push({ name: `replay --all --source kafka: consuming and re-pricing (its progress line)`, n: total, p50: '-', p99: '-', throughput: consuming });
  rows.push({ name: `replay --all --source kafka: end to end (${seconds.toFixed(1)} s, no difference), events read`, n: total, p50: '-', p99: '-', throughput: `${Math.round(total / seconds)} events/s` });
  rows.push({ name: `same, events of this run's orgs re-priced (the rest skipped)`, n: repriced, p50: '-', p99: '-', throughput: `${Math.round(repriced / seconds)} events/s` });
}

/**
 * The floor under metering: the rows it writes for `n` charged events (a usage row, a ledger entry and its outbox
 * row each) bulk-loaded with COPY into tables shaped like the real ones, in one transaction. Metering also reads,
 * decides, dedupes and updates projections; this is what the writes alone cost on this machine.
 */
async function copyBaseline(db: Client, orgIds: string[], n: number): Promise<void> {
  const tables = ['usage_records', 'ledger_entries', 'ledger_outbox'];
  for (const t of tables) await db.query(`CREATE TEMP TABLE bench_${t} (LIKE ${t} INCLUDING DEFAULTS INCLUDING INDEXES)`);
  const at = new Date().toISOString();
  const usage = (i: number) => `${uuidv7()}\t${orgIds[i % orgIds.length]}\t${at}\tPOST\t/search\t/api/external/v1/search\t200\t1\tcharged\t12\treq-${i}\tforwarded\tkey_bench\t0\n`;
  const entry = (i: number) => `${orgIds[i % orgIds.length]}\t${i + 1}\tcharge\t-1\t${1_000_000 - i}\tevent:${i}\t${at}\tallowance:bench\t{}\n`;
  const outbox = (i: number) => `${orgIds[i % orgIds.length]}\t${i + 1}\t{"seq":${i + 1},"type":"charge","amount":-1}\n`;
  const copy = async (sql: string, line: (i: number) => string) => {
    const stream = db.query(copyFrom(sql));
    for (let i = 0; i < n; i += 1000) {
      let chunk = '';
      for (let j = i; j < Math.min(n, i + 1000); j++) chunk += line(j);
      if (!stream.write(chunk)) await new Promise((r) => stream.once('drain', r));
    }
    await new Promise<void>((resolve, reject) => stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
  };
  const started = performance.now();
  await db.query('BEGIN');
  await copy(`COPY bench_usage_records (event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason, response_time_ms, request_id, decision, api_key_id, entities) FROM STDIN`, usage);
  await copy(`COPY bench_ledger_entries (org_id, seq, type, amount, balance_after, cause, occurred_at, bucket_id, detail) FROM STDIN`, entry);
  await copy(`COPY bench_ledger_outbox (org_id, seq, payload) FROM STDIN`, outbox);
  await db.query('COMMIT');
  const seconds = (performance.now() - started) / 1000;
  rows.push({ name: `COPY of the same rows (${n} usage rows + ledger entries + outbox rows), one transaction`, n, p50: '-', p99: '-', throughput: `${Math.round(n / seconds)} events/s` });
  for (const t of tables) await db.query(`DROP TABLE bench_${t}`);
}

/** A gRPC Reservations client on the stack's metering, and a one-hold Reserve for one of `orgIds` by index. */
function reservationsClient(stack: Stack, orgIds: string[]) {
  const definition = loadSync(join(repoRoot, 'libs/contracts/src/proto/metering.proto'), { keepCase: true, longs: String, defaults: true });
   
  const pkg = loadPackageDefinition(definition) as any;
  const client = new pkg.tollgate.metering.v1.Reservations(`127.0.0.1:${stack.ports.meteringGrpc}`, credentials.createInsecure());
  const reserve = (i: number) =>
    new Promise((resolve, reject) =>
      client.Reserve(
        { reservation_id: uuidv7(), org_id: orgIds[i % orgIds.length]!, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurred_at: new Date().toISOString() },
        bearerMetadata(stack.internalToken),
        (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res)),
      ),
    );
  return { client, reserve };
}

async function reservations(stack: Stack): Promise<void> {
  const orgs = await Promise.all(Array.from({ length: 8 }, (_, i) => stack.orgWithKey('pro', uniqueId(`bench-res-${i}`))));
  const { client, reserve } = reservationsClient(stack, orgs.map((o) => o.orgId));
  for (let i = 0; i < 200; i++) await reserve(i);
  await timeEach('reservation (gRPC Reserve, 1 org at a time)', 2000, reserve);
  await timeEach('reservation (gRPC Reserve, 16 in flight, 8 orgs)', 4000, reserve, 16);
  // What a busy gateway sends: ReserveBatch calls of 64 holds, 4 in flight; a third of the holds for one hot org.
  const hot = await stack.orgWithKey('pro', uniqueId('bench-res-hot'));
  await stack.admin('POST', `/admin/orgs/${hot.orgId}/credits`, { amount: 10_000_000, reason: 'bench', idempotency_key: uniqueId('bench') });
  for (const o of orgs) await stack.admin('POST', `/admin/orgs/${o.orgId}/credits`, { amount: 10_000_000, reason: 'bench', idempotency_key: uniqueId('bench') });
  const batch = (i: number) =>
    new Promise((resolve, reject) =>
      client.ReserveBatch(
        {
          requests: Array.from({ length: 64 }, (_, j) => ({
            reservation_id: uuidv7(), org_id: j % 3 === 0 ? hot.orgId : orgs[(i + j) % orgs.length]!.orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [],
            occurred_at: new Date().toISOString(),
          })),
        },
        bearerMetadata(stack.internalToken),
        (err: Error | null, res: { results: Array<{ error_code: number }> }) => (err ? reject(err) : res.results.some((r) => r.error_code !== 0) ? reject(new Error('a hold failed')) : resolve(res)),
      ),
    );
  const calls = 250;
  const before = rows.length;
  await timeEach('reservation (gRPC ReserveBatch of 64, 4 in flight, 8 orgs + 1 hot org)', calls, batch, 4);
  const row = rows[before]!;
  row.name += ` — ${Math.round(Number(row.throughput.replace('/s', '')) * 64)} holds/s`;
  client.close();
}

async function queries(stack: Stack): Promise<void> {
  const n = Number(process.env.BENCH_USAGE_ROWS || 1_000_000);
  const { orgId, key } = await stack.orgWithKey('starter', uniqueId('bench-usage'));
  const db = new Client({ connectionString: process.env.DATABASE_URL });
  await db.connect();
  // Rows written straight into the read model: this measures reading, not metering.
  await db.query(
    `INSERT INTO usage_records (event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason, response_time_ms, request_id, decision)
     SELECT gen_random_uuid()::text, $1, now() - (g || ' seconds')::interval, 'POST', '/search', '/api/external/v1/search', 200, 1, 'charged', 40, 'req-' || g, 'forwarded'
       FROM generate_series(1, $2) g`,
    [orgId, n],
  );
  await db.query(`INSERT INTO usage_totals (org_id, total) VALUES ($1, $2) ON CONFLICT (org_id) DO UPDATE SET total = usage_totals.total + $2`, [orgId, n]);
  await db.query(`ANALYZE usage_records`);
  await db.end();
  const base = `http://127.0.0.1:${stack.ports.query}/api/external/v1`;
  const get = async (path: string) => {
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
    if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
    return res.json() as Promise<{ next_cursor: string | null }>;
  };
  await timeEach('GET /me (query service)', 2000, () => get('/me'));
  await timeEach(`GET /usage?limit=50 (${n} rows)`, 2000, () => get('/usage?limit=50'));
  await timeEach(`GET /usage?limit=50&offset=${Math.floor(n / 2)} (${n} rows)`, 50, () => get(`/usage?limit=50&offset=${Math.floor(n / 2)}`));
  let cursor: string | null = null;
  await timeEach(`GET /usage?limit=500&cursor= (walk, ${n} rows)`, 400, async () => {
    const page = await get(`/usage?limit=500${cursor ? `&cursor=${cursor}` : ''}`);
    cursor = page.next_cursor;
  });
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const want = (name: string) => only.length === 0 || only.includes(name);
  const started = new Date();
  const gateway = want('gateway') ? await gatewayBench() : null;
  if (want('rate-limit')) await rateLimits();
  if (want('replay')) {
    for (const r of await replayBench()) rows.push({ name: r.name, n: r.n, p50: '-', p99: '-', throughput: `${r.rate} entries/s (${r.seconds.toFixed(1)} s)` });
  }
  // Only when asked for (`npm run bench -- replay-kafka`): it meters the whole backlog live first.
  if (only.includes('replay-kafka')) {
    const stack = await Stack.start({ profile: 'trackyard' });
    try {
      await replayKafkaBench(stack);
    } finally {
      await stack.stop();
    }
  }
  // Only when asked for (`npm run bench -- webhooks`): delivery throughput and lag from ledger entry to webhook.
  let webhookNotes: string[] = [];
  if (only.includes('webhooks')) {
    const r = await webhooksBench();
    rows.push(...r.rows);
    webhookNotes = r.notes;
  }
  if (want('metering') || want('reservations') || want('query')) {
    // BENCH_CPU_PROF=DIR: every app (and metering's reservations thread) writes a V8 CPU profile into DIR on exit.
    const nodeArgs = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
    const stack = await Stack.start({ profile: 'trackyard', nodeArgs });
    try {
      if (want('reservations')) await reservations(stack);
      if (want('query')) await queries(stack);
      if (want('metering')) await metering(stack);
    } finally {
      await stack.stop();
    }
  }
  const os = await import('node:os');
  console.log(`\nTollgate benchmarks, ${started.toISOString()}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}\n`);
  if (rows.length > 0) {
    console.log('| benchmark | n | p50 | p99 | throughput |');
    console.log('| --- | ---: | ---: | ---: | ---: |');
  }
  for (const r of rows) console.log(`| ${r.name} | ${r.n} | ${r.p50} | ${r.p99} | ${r.throughput} |`);
  for (const n of webhookNotes) console.log(`- ${n}`);
  if (gateway) printGatewayTable(gateway.rows, gateway.notes);
}

main().catch((e: Error) => {
  console.error(`bench: ${e.stack ?? e.message}`);
  process.exit(1);
});
