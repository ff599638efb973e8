// Over 400 lines on purpose: the fault suite's nine scenarios, one function each, in the order they run (the README's table follows it).
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { v7 as uuidv7 } from 'uuid';
import { MeteringConsumerGroup, RequestCompletedV1, Topics } from '@tollgate/contracts';
import { freePort, repoRoot, Stack } from '../support/stack';
import { Broker, emptyFigures, eventualProfilesDir, Figures, infra, Load, Observer, paidOrg, Postgres, say, sleep, spoolDir, startGateway } from './harness';

/**
 * `npm run test:faults`: the fault-injection suite (issue 12). Real processes (the built apps), a broker and a
 * PostgreSQL cluster of its own that it kills, pauses and stops. Each scenario prints calls answered, events
 * published and metered, duplicates and lost; after each, every call answered 2xx is metered exactly once (at its
 * cost) and every balance equals the sum of its ledger. Exit 1 on any failure.
 *
 * Sizes (short defaults fit CI; FAULTS_FULL=1 takes the sizes):
 *   FAULTS_ONLY=1,3         scenarios to run (default all)
 *   FAULTS_EVENTS           events produced in scenario 1 (short 4000, full 50000)
 *   FAULTS_KILLS            SIGKILLs of metering in scenario 1 (short 4, full 20)
 *   FAULTS_BROKER_OUTAGE_S  broker down in scenario 2 (short 12, full 20)
 *   FAULTS_PG_OUTAGE_S      PostgreSQL down in scenario 3 (short 15, full 30)
 *   FAULTS_LOAD_S           load around each fault (short 8, full 20)
 */
const full = process.env.FAULTS_FULL === '1';
const num = (name: string, short: number, long: number) => Number(process.env[name] ?? (full ? long : short));
const sizes = {
  events: num('FAULTS_EVENTS', 4000, 50_000),
  kills: num('FAULTS_KILLS', 4, 20),
  brokerOutageS: num('FAULTS_BROKER_OUTAGE_S', 12, 20),
  pgOutageS: num('FAULTS_PG_OUTAGE_S', 15, 30),
  loadS: num('FAULTS_LOAD_S', 8, 20),
};
const only = new Set((process.env.FAULTS_ONLY ?? '1,2,3,4,5,6,7').split(',').map((s) => s.trim()));

interface Ctx {
  stack: Stack;
  broker: Broker;
  pg: Postgres;
  observer: Observer;
  databaseUrl: string;
  brokers: string;
  kafka: Kafka;
}

/** Runs one scenario between two snapshots of the topic and the tables, then the checks every scenario ends with. */
async function scenario(ctx: Ctx, name: string, body: (f: Figures) => Promise<{ spools?: string[] } | void>): Promise<Figures> {
  const f = emptyFigures(name);
  say(`--- ${name}`);
  const started = Date.now();
  const before = { offsets: await ctx.observer.endOffsets(), ...(await ctx.observer.counts()) };
  try {
    const out = (await body(f)) ?? {};
    await ctx.observer.quiesce([spoolDir('gateway'), ...(out.spools ?? [])]);
    const after = { offsets: await ctx.observer.endOffsets(), ...(await ctx.observer.counts()) };
    f.published = after.offsets - before.offsets;
    f.metered = after.usage - before.usage;
    f.deadLettered = after.dead - before.dead;
    f.duplicates = f.published - f.metered - f.deadLettered;
    await ctx.observer.checkBalances(f);
  } catch (e) {
    f.failures.push(`scenario failed: ${(e as Error).stack ?? (e as Error).message}`);
    f.failures.push(await diagnosis(ctx));
  }
  if (f.lost > 0) f.failures.push(`${f.lost} calls answered 2xx (or valid events) not metered at their cost`);
  if (f.meteredTwice > 0) f.failures.push(`${f.meteredTwice} calls metered more than once`);
  if (f.unbalanced > 0) f.failures.push(`${f.unbalanced} orgs whose balance is not the sum of their ledger`);
  f.seconds = (Date.now() - started) / 1000;
  say(`${name}: ${f.failures.length === 0 ? 'ok' : 'FAILED'} in ${f.seconds.toFixed(1)} s; ${f.notes.join('; ')}`);
  for (const m of f.failures) say(`  ${m}`);
  return f;
}

/** What a stall looks like from outside: the consumer group's members, and metering's last words. */
async function diagnosis(ctx: Ctx): Promise<string> {
  const admin = ctx.kafka.admin();
  let group = '?';
  try {
    await admin.connect();
    const g = (await admin.describeGroups([MeteringConsumerGroup])).groups[0];
    group = `${g?.state} with ${g?.members.length} member(s)`;
  } catch (e) {
    group = `unknown (${(e as Error).message})`;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const log = (ctx.stack.logs.get('metering') ?? []).join('').split('\n').filter((l) => l && !/max message size|dead-letter publication failed/.test(l)).slice(-12);
  return `consumer group ${MeteringConsumerGroup}: ${group}; metering's last log lines:\n    ${log.map((l) => l.slice(0, 400)).join('\n    ')}`;
}

const search = (o: { org_id: string } & Partial<RequestCompletedV1>): RequestCompletedV1 => ({
  event_id: uuidv7(),
  schema_version: 1,
  occurred_at: new Date().toISOString(),
  api_key_id: null,
  subject: { kind: 'key', id: 'fault-suite' },
  profile: 'trackyard',
  method: 'POST',
  route: '/search',
  path: '/api/external/v1/search',
  status_code: 200,
  response_time_ms: 3,
  entities: [],
  reservation_id: null,
  ...o,
});

async function produce(kafka: Kafka, messages: Array<{ key: string; value: string | Buffer }>, chunk = 500): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += chunk) await producer.send({ topic: Topics.RequestCompleted, acks: -1, messages: messages.slice(i, i + chunk) });
  } finally {
    await producer.disconnect();
  }
}

// ---- 1. SIGKILL metering N times during M events ------------------------------------------------------------

async function killMetering(ctx: Ctx, f: Figures): Promise<void> {
  const orgs = await Promise.all([0, 1, 2, 3].map(() => paidOrg(ctx.stack, 's1')));
  const events = Array.from({ length: sizes.events }, (_, i) => search({ org_id: orgs[i % orgs.length]!.orgId }));
  const producing = produce(ctx.kafka, events.map((e) => ({ key: e.org_id, value: JSON.stringify(e) })), 250);
  for (let k = 0; k < sizes.kills; k++) {
    await sleep(800 + Math.random() * 1500);
    await ctx.stack.kill('metering');
    await ctx.stack.startApp('metering');
  }
  await producing;
  await ctx.observer.quiesce([spoolDir('gateway')]);
  await ctx.observer.checkEvents(events.map((e) => e.event_id), f);
  f.notes.push(`${sizes.events} events produced, metering SIGKILLed ${sizes.kills} times`);
}

// ---- 2. The broker killed and restarted under gateway load (strict and eventual) -------------------------------

async function brokerOutage(ctx: Ctx, f: Figures, how: 'kill' | 'pause'): Promise<{ spools: string[] }> {
  const eventual = await startGateway(ctx.stack, `gateway-eventual-${how}`, { TOLLGATE_PROFILES_DIR: eventualProfilesDir() });
  try {
    const strictOrg = await paidOrg(ctx.stack, `s2-strict-${how}`);
    const eventualOrg = await paidOrg(ctx.stack, `s2-eventual-${how}`);
    const load = new Load(ctx.stack, [{ port: ctx.stack.ports.gateway, org: strictOrg }, { port: eventual, org: eventualOrg }]).start();
    await sleep(3000);
    const down = Date.now();
    if (how === 'kill') ctx.broker.kill();
    else ctx.broker.pause();
    const during = load.answers.length;
    await sleep(sizes.brokerOutageS * 1000);
    const answeredDuring = load.answers.slice(during).filter((a) => a.status >= 200 && a.status < 300).length;
    if (how === 'kill') await ctx.broker.restart();
    else ctx.broker.resume();
    f.notes.push(`broker ${how === 'kill' ? 'SIGKILLed and restarted' : 'SIGSTOPped and resumed'} after ${((Date.now() - down) / 1000).toFixed(1)} s; ${answeredDuring} calls answered 2xx while it was down`);
    await sleep(Math.max(3000, sizes.loadS * 500));
    await load.stop();
    await ctx.observer.quiesce([spoolDir('gateway'), spoolDir(`gateway-eventual-${how}`)]);
    await ctx.observer.checkAnswers(load.answers, f);
    if (answeredDuring === 0) f.failures.push('no call was answered 2xx while the broker was down (the spool should answer them)');
    return { spools: [spoolDir(`gateway-eventual-${how}`)] };
  } finally {
    await ctx.stack.stopProcess(`gateway-eventual-${how}`);
  }
}

/**
 * 2c: the gateway SIGKILLed while its spool holds events (broker paused), then started again on the same spool once
 * the broker is back: the spool left by the crash is sent first, and every call answered 2xx is metered once.
 */
async function gatewayCrashWithSpool(ctx: Ctx, f: Figures): Promise<void> {
  const org = await paidOrg(ctx.stack, 's2c');
  const load = new Load(ctx.stack, [{ port: ctx.stack.ports.gateway, org }]).start();
  await sleep(2000);
  ctx.broker.pause();
  await sleep(Math.max(5000, sizes.brokerOutageS * 500));
  const spooled = readdirSync(spoolDir('gateway')).filter((n) => n.endsWith('.spool')).length;
  await ctx.stack.kill('gateway');
  await load.stop();
  ctx.broker.resume();
  await ctx.stack.startApp('gateway');
  await ctx.observer.quiesce([spoolDir('gateway')]);
  await ctx.observer.checkAnswers(load.answers, f);
  if (spooled === 0) f.failures.push('the spool was empty when the gateway was killed: nothing tested');
  f.notes.push(`gateway SIGKILLed with ${spooled} spool segment(s) while the broker was paused; restarted on the same spool after the broker resumed`);
}

// ---- 3. PostgreSQL stopped under load, then started ---------------------------------------------------------

async function postgresOutage(ctx: Ctx, f: Figures): Promise<void> {
  const org = await paidOrg(ctx.stack, 's3');
  const load = new Load(ctx.stack, [{ port: ctx.stack.ports.gateway, org }]).start();
  await sleep(3000);
  let retryAfter = 0;
  try {
    ctx.pg.stop();
    const t = Date.now();
    await sleep(2000);
    // A call made while PostgreSQL is down: 503 + Retry-After (once the key cache expired), never 500.
    for (let i = 0; i < 5; i++) {
      const res = await fetch(ctx.stack.gatewayUrl('/api/external/v1/search'), { method: 'POST', headers: { authorization: `Bearer ${org.key}`, 'content-type': 'application/json' }, body: '{"query":"x"}' });
      if (res.status === 503) retryAfter = Number(res.headers.get('retry-after'));
      if (res.status === 500) f.failures.push('a call made while PostgreSQL was down was answered 500');
      await sleep(500);
    }
    await sleep(Math.max(0, sizes.pgOutageS * 1000 - (Date.now() - t)));
  } finally {
    ctx.pg.start();
  }
  await ctx.observer.reconnect(ctx.databaseUrl);
  await sleep(Math.max(3000, sizes.loadS * 500));
  await load.stop();
  await ctx.observer.quiesce([spoolDir('gateway')]);
  await ctx.observer.checkAnswers(load.answers, f);
  const fivehundreds = load.answers.filter((a) => a.status === 500).length;
  if (fivehundreds > 0) f.failures.push(`${fivehundreds} calls answered 500 during the outage (expected 503 + Retry-After)`);
  if (!(retryAfter >= 1)) f.failures.push('no 503 with Retry-After seen while PostgreSQL was down');
  f.notes.push(`PostgreSQL down ${sizes.pgOutageS} s; 503 Retry-After ${retryAfter}`);
}

// ---- 4. Two metering instances, one stopped and started every few seconds ------------------------------------

async function rebalances(ctx: Ctx, f: Figures): Promise<void> {
  const second = async () =>
    ctx.stack.startApp('metering', 'metering-2', { METERING_PORT: String(await freePort()), METERING_GRPC_PORT: String(await freePort()) });
  await second();
  const orgs = await Promise.all([0, 1, 2].map(() => paidOrg(ctx.stack, 's4')));
  const load = new Load(ctx.stack, orgs.map((org) => ({ port: ctx.stack.ports.gateway, org })), { clients: 1 }).start();
  // Another producer in parallel, so every partition has traffic to hand over.
  const events = Array.from({ length: 1500 }, (_, i) => search({ org_id: orgs[i % orgs.length]!.orgId }));
  const producing = produce(ctx.kafka, events.map((e) => ({ key: e.org_id, value: JSON.stringify(e) })), 50);
  const until = Date.now() + Math.max(15_000, sizes.loadS * 2000);
  let cycles = 0;
  while (Date.now() < until) {
    await sleep(1500);
    await ctx.stack.stopProcess('metering-2', cycles % 2 === 0 ? 'SIGTERM' : 'SIGKILL');
    await sleep(1000);
    await second();
    cycles++;
  }
  await producing;
  await load.stop();
  await ctx.observer.quiesce([spoolDir('gateway')]);
  await ctx.stack.stopProcess('metering-2');
  await ctx.observer.checkAnswers(load.answers, f);
  await ctx.observer.checkEvents(events.map((e) => e.event_id), f);
  f.notes.push(`second metering stopped and started ${cycles} times (SIGTERM and SIGKILL alternately); 1500 events from another producer too`);
}

// ---- 5. 10% of events republished with the same id, out of order; clients that time out mid-call ----------------

async function republishAndImpatience(ctx: Ctx, f: Figures): Promise<void> {
  const orgs = await Promise.all([0, 1].map(() => paidOrg(ctx.stack, 's5')));
  const load = new Load(ctx.stack, orgs.map((org) => ({ port: ctx.stack.ports.gateway, org })), { impatient: 0.2 }).start();
  await sleep(sizes.loadS * 1000);
  await load.stop();
  await ctx.observer.quiesce([spoolDir('gateway')]);
  const mine = new Set(orgs.map((o) => o.orgId));
  const published = await readTopic(ctx.kafka, (key) => mine.has(key));
  const again = published.filter(() => Math.random() < 0.1).sort(() => Math.random() - 0.5);
  await produce(ctx.kafka, again);
  await ctx.observer.quiesce([spoolDir('gateway')]);
  await ctx.observer.checkAnswers(load.answers, f);
  f.notes.push(`${again.length} of ${published.length} events republished with their ids, shuffled`);
}

async function readTopic(kafka: Kafka, keep: (key: string) => boolean): Promise<Array<{ key: string; value: Buffer }>> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(Topics.RequestCompleted);
  await admin.disconnect();
  const remaining = new Map(ends.map((p) => [p.partition, Number(p.high)]));
  const out: Array<{ key: string; value: Buffer }> = [];
  const consumer = kafka.consumer({ groupId: `faults-${uuidv7()}`, maxBytesPerPartition: 8 * 1024 * 1024 });
  await consumer.connect();
  await consumer.subscribe({ topic: Topics.RequestCompleted, fromBeginning: true });
  let done: () => void = () => undefined;
  const finished = new Promise<void>((r) => (done = r));
  const check = () => [...remaining.values()].every((v) => v <= 0) && done();
  for (const [p, v] of remaining) if (v === 0) remaining.delete(p);
  check();
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        const key = m.key?.toString() ?? '';
        if (keep(key) && m.value) out.push({ key, value: m.value });
      }
      const last = batch.messages[batch.messages.length - 1];
      if (last) remaining.set(batch.partition, (ends.find((e) => e.partition === batch.partition) ? Number(ends.find((e) => e.partition === batch.partition)!.high) : 0) - Number(last.offset) - 1);
      check();
    },
  });
  await Promise.race([finished, sleep(60_000)]);
  await consumer.disconnect();
  return out;
}

// ---- 6. Poison of every kind mixed in ------------------------------------------------------------------------

async function poison(ctx: Ctx, f: Figures): Promise<void> {
  const org = await paidOrg(ctx.stack, 's6');
  const valid = Array.from({ length: 200 }, () => search({ org_id: org.orgId }));
  const mb = 'x'.repeat(1_000_000);
  const farPast = search({ org_id: org.orgId, occurred_at: '1999-01-01T00:00:00.000Z' });
  const bad: Array<{ what: string; value: string | Buffer }> = [
    { what: 'not JSON', value: '{"event_id": "oops", ' },
    { what: 'not UTF-8', value: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) },
    { what: 'JSON null', value: 'null' },
    { what: 'an array', value: '[1,2,3]' },
    ...(['event_id', 'occurred_at', 'org_id', 'api_key_id', 'profile', 'method', 'route', 'path', 'request_id', 'reservation_id'] as const).map((field) => ({
      what: `NUL in ${field}`,
      value: JSON.stringify({ ...search({ org_id: org.orgId }), [field]: `a\u0000b` }),
    })),
    { what: 'NUL in subject.id', value: JSON.stringify(search({ org_id: org.orgId, subject: { kind: 'key', id: 'a\u0000b' } })) },
    { what: 'NUL in an entity', value: JSON.stringify(search({ org_id: org.orgId, entities: ['c_1', 'c\u0000'] })) },
    { what: '1 MB path', value: JSON.stringify(search({ org_id: org.orgId, path: mb })) },
    { what: '1 MB entity', value: JSON.stringify(search({ org_id: org.orgId, entities: [mb] })) },
    { what: '1 MB event_id', value: JSON.stringify(search({ org_id: org.orgId, event_id: mb })) },
    { what: 'status_code as a string', value: JSON.stringify({ ...search({ org_id: org.orgId }), status_code: '200' }) },
    { what: 'entities not an array', value: JSON.stringify({ ...search({ org_id: org.orgId }), entities: 'c_1' }) },
    { what: 'schema_version 2', value: JSON.stringify({ ...search({ org_id: org.orgId }), schema_version: 2 }) },
    { what: 'occurred_at a number', value: JSON.stringify({ ...search({ org_id: org.orgId }), occurred_at: 12345 }) },
    { what: 'no event_id', value: JSON.stringify({ ...search({ org_id: org.orgId }), event_id: undefined }) },
    { what: 'unknown org', value: JSON.stringify(search({ org_id: `nobody-${uuidv7()}` })) },
    { what: 'unknown route', value: JSON.stringify(search({ org_id: org.orgId, route: '/no-such-route' })) },
    { what: 'unknown profile', value: JSON.stringify(search({ org_id: org.orgId, profile: 'no-such-profile' })) },
    { what: 'far future', value: JSON.stringify(search({ org_id: org.orgId, occurred_at: '2999-01-01T00:00:00.000Z' })) },
  ];
  // Poison among valid events, each one where it lands; the 1 MB ones alone (a broker batch holds at most 1 MB).
  const mixed: Array<{ key: string; value: string | Buffer }> = valid.map((e) => ({ key: e.org_id, value: JSON.stringify(e) }));
  const big = bad.filter((b) => b.what.startsWith('1 MB'));
  for (const b of bad.filter((x) => !big.includes(x))) mixed.splice(Math.floor(Math.random() * mixed.length), 0, { key: org.orgId, value: b.value });
  mixed.push({ key: org.orgId, value: JSON.stringify(farPast) });
  const load = new Load(ctx.stack, [{ port: ctx.stack.ports.gateway, org }], { clients: 1 }).start();
  await produce(ctx.kafka, mixed, 20);
  for (const b of big) await produce(ctx.kafka, [{ key: org.orgId, value: b.value }]);
  await produce(ctx.kafka, valid.slice(0, 20).map((e) => ({ key: e.org_id, value: JSON.stringify(e) }))); // redeliveries after the poison
  await sleep(3000);
  await load.stop();
  await ctx.observer.quiesce([spoolDir('gateway')]);
  await ctx.observer.checkEvents(valid.map((e) => e.event_id), f);
  await ctx.observer.checkAnswers(load.answers, f);
  const far = await ctx.observer.db.query<{ n: string }>(`SELECT count(*) n FROM usage_records WHERE event_id = $1`, [farPast.event_id]);
  // The relay must get every dead letter onto the dead-letter topic, the 1 MB ones too.
  const unsent = Number((await ctx.observer.db.query<{ n: string }>(`SELECT count(*) n FROM dead_letters WHERE sent_at IS NULL`)).rows[0]!.n);
  if (unsent > 0) f.notes.push(`FINDING: ${unsent} dead letters never reached ${Topics.RequestCompletedDeadLetter} (the relay retries a batch the broker refuses as too large, forever)`);
  const reasons = (await ctx.observer.db.query<{ reason: string }>(`SELECT reason FROM dead_letters ORDER BY id DESC LIMIT $1`, [bad.length])).rows.map((r) => r.reason);
  f.notes.push(`${bad.length} poison events (${bad.map((b) => b.what).join(', ')}); far past metered ${far.rows[0]!.n} time(s); dead-letter reasons seen: ${new Set(reasons.map((r) => r.slice(0, 40))).size}`);
}

// ---- 7. Either side of a month boundary and of the 30-day window, out of order ----------------------------------

async function boundaries(ctx: Ctx, f: Figures): Promise<void> {
  const now = new Date();
  const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const monthly = await paidOrg(ctx.stack, 's7-month', { plan: 'starter', credits: 0 });
  // Around the start of this month and of the last one: each month's calls spend that month's allowance.
  const prevStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
  const times = [monthStart - 1, monthStart, monthStart + 1, monthStart - 3_600_000, monthStart + 3_600_000, prevStart - 1, prevStart + 1, Date.now() - 1000];
  const monthEvents = times.flatMap((t) => Array.from({ length: 3 }, () => search({ org_id: monthly.orgId, occurred_at: new Date(t).toISOString() })));
  const trace = await paidOrg(ctx.stack, 's7-window', { profile: 'trace', plan: 'standard', credits: 1000 });
  const day = 86_400_000;
  const t0 = Date.now() - 45 * day;
  const windowTimes = [t0, t0 + 30 * day - 1000, t0 + 30 * day + 1000, t0 + 44 * day, t0 + 10 * day];
  const windowEvents = windowTimes.map((t) =>
    search({ org_id: trace.orgId, profile: 'trace', method: 'GET', route: '/companies/:identifier', path: '/v1/companies/c_77', entities: ['c_77'], occurred_at: new Date(t).toISOString() }),
  );
  const all = [...monthEvents, ...windowEvents].sort(() => Math.random() - 0.5);
  await produce(ctx.kafka, all.map((e) => ({ key: e.org_id, value: JSON.stringify(e) })), 1);
  await ctx.observer.quiesce([spoolDir('gateway')]);
  const ids = all.map((e) => e.event_id);
  const got = (await ctx.observer.db.query<{ event_id: string }>(`SELECT event_id FROM usage_records WHERE event_id = ANY($1)`, [ids])).rows.length;
  if (got !== ids.length) {
    f.lost += ids.length - got;
  }
  const charged = (await ctx.observer.db.query<{ org_id: string; credits: string }>(`SELECT org_id, sum(credits) credits FROM usage_records WHERE org_id = ANY($1) GROUP BY org_id`, [[monthly.orgId, trace.orgId]])).rows;
  // The replay folds the ledger again: it must agree with the projections whatever order the events came in.
  for (const org of [monthly.orgId, trace.orgId]) {
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin/tollgate.js'), 'replay', '--org', org], { env: { ...process.env, DATABASE_URL: ctx.databaseUrl }, encoding: 'utf8' });
    if (r.status !== 0) f.failures.push(`replay --org ${org} exit ${r.status}: ${(r.stdout + r.stderr).slice(-500)}`);
  }
  const windowCharge = Number(charged.find((c) => c.org_id === trace.orgId)?.credits ?? 0);
  // Re-access is priced in arrival order (README, "How money moves"): a call is free when the latest charge before
  // it in the partition lies less than 30 days away, either way. The same shuffle must give exactly that.
  const arrivalTimes = all.filter((e) => e.org_id === trace.orgId).map((e) => Date.parse(e.occurred_at));
  let last: number | undefined;
  let expected = 0;
  for (const t of arrivalTimes) {
    if (last === undefined || Math.abs(t - last) >= 30 * day) {
      expected++;
      last = last === undefined ? t : Math.max(last, t);
    }
  }
  const arrival = arrivalTimes.map((t) => Math.round((t - t0) / day));
  f.notes.push(
    `${monthEvents.length} events around month starts, ${windowEvents.length} around a 30-day re-access window, shuffled; the window org paid ${windowCharge} credit(s) for one company on days ${arrival.join(', ')} (arrival-order pricing expects ${expected})`,
  );
  if (windowCharge !== expected) f.failures.push(`re-access in arrival order: charged ${windowCharge} credit(s) for days ${arrival.join(', ')}, the rule gives ${expected}`);
}

// ---- the suite -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = Date.now();
  process.env.TOLLGATE_KAFKA_PORT = process.env.FAULTS_KAFKA_PORT ?? '39792';
  delete process.env.KAFKA_BROKERS;
  const pg = new Postgres();
  const databaseUrl = await infra.ensureDatabase(pg.ensure(process.env.FAULTS_DATABASE ?? 'tollgate_faults'), { log: say, fresh: true });
  const broker = new Broker();
  const brokers = await broker.start(true);
  process.env.DATABASE_URL = databaseUrl;
  process.env.KAFKA_BROKERS = brokers;
  rmSync(join(repoRoot, '.tollgate', 'faults', 'spool'), { recursive: true, force: true });
  const stack = await Stack.start({ profile: 'trackyard', env: { GATEWAY_SPOOL_DIR: spoolDir('gateway'), LOG_LEVEL: process.env.LOG_LEVEL ?? 'error' } });
  // However the suite ends, the apps it started end with it.
  process.once('exit', () => {
    for (const child of stack.processes.values()) if (child.exitCode === null) child.kill('SIGKILL');
  });
  const observer = new Observer(databaseUrl, brokers);
  await observer.connect();
  const ctx: Ctx = { stack, broker, pg, observer, databaseUrl, brokers, kafka: new Kafka({ clientId: 'tollgate-faults', brokers: [brokers], logLevel: logLevel.NOTHING, retry: { retries: 10 } }) };
  const results: Figures[] = [];
  try {
    if (only.has('1')) results.push(await scenario(ctx, '1 SIGKILL metering', (f) => killMetering(ctx, f)));
    if (only.has('2')) {
      results.push(await scenario(ctx, '2a broker SIGKILL + restart', (f) => brokerOutage(ctx, f, 'kill')));
      results.push(await scenario(ctx, '2b broker SIGSTOP', (f) => brokerOutage(ctx, f, 'pause')));
      results.push(await scenario(ctx, '2c gateway SIGKILL with a spool', (f) => gatewayCrashWithSpool(ctx, f)));
    }
    if (only.has('3')) results.push(await scenario(ctx, '3 PostgreSQL stopped', (f) => postgresOutage(ctx, f)));
    if (only.has('4')) results.push(await scenario(ctx, '4 rebalances', (f) => rebalances(ctx, f)));
    if (only.has('5')) results.push(await scenario(ctx, '5 republished + impatient', (f) => republishAndImpatience(ctx, f)));
    if (only.has('6')) results.push(await scenario(ctx, '6 poison', (f) => poison(ctx, f)));
    if (only.has('7')) results.push(await scenario(ctx, '7 month + 30-day window', (f) => boundaries(ctx, f)));
  } finally {
    await stack.stop();
    await observer.close();
    await broker.stop();
  }
  const head = ['scenario', 's', '2xx', 'other', 'timeouts', 'published', 'metered', 'dead', 'dups', 'twice', 'lost', 'unbal', 'ok'];
  const rows = results.map((r) => [r.scenario, r.seconds.toFixed(0), r.answered2xx, r.answeredOther, r.timedOut, r.published, r.metered, r.deadLettered, r.duplicates, r.meteredTwice, r.lost, r.unbalanced, r.failures.length === 0 ? 'yes' : 'NO'].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  console.log([line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
  console.log(`fault suite (${full ? 'full' : 'short'} sizes ${JSON.stringify(sizes)}) took ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const failed = results.filter((r) => r.failures.length > 0);
  if (failed.length > 0) {
    console.log(`FAILED: ${failed.map((r) => r.scenario).join(', ')}`);
    process.exit(1);
  }
}

main().catch((e: Error) => {
  console.error(`fault suite: ${e.stack ?? e.message}`);
  process.exit(1);
});
