#!/usr/bin/env node
// `node scripts/dev/consumer-fold-bench.js [REPO] [DBNAME]`: metering's consumer alone, from REPO's dist (default this
// checkout, after `npm run build`), folding 100,000 events of 20 orgs (10% answered 500) handed over in batches of
// 10,000 on 4 partitions, as kafkajs hands them over, without Kafka, the relays or the rest of the app. The database
// DBNAME (default tollgate_consumer_bench) on the local PostgreSQL is recreated each run. Two checkouts run one after
// the other compare two builds of the consumer with less noise than `npm run bench -- metering`. Prints events/s.
const path = require('node:path');
const repo = path.resolve(process.argv[2] || path.join(__dirname, '..', '..'));
const dbName = process.argv[3] || 'tollgate_consumer_bench';
const { ensureDatabase, defaultDatabaseUrl } = require(path.join(repo, 'scripts/infra.js'));
(async () => {
  const target = new URL(process.env.DATABASE_URL || defaultDatabaseUrl);
  target.pathname = `/${dbName}`;
  const url = await ensureDatabase(target.toString(), { fresh: true });
  process.env.DATABASE_URL = url;
  const { connectDatabase } = require(path.join(repo, 'dist/libs/persistence/src/index.js'));
  const { ProfileCatalog, RequestCompletedConsumer } = require(path.join(repo, 'dist/libs/ledger/src/index.js'));
  const { AdminService } = require(path.join(repo, 'dist/apps/metering/src/admin/admin.service.js'));
  const { v7 } = require(path.join(repo, 'node_modules/uuid'));
  const ds = await connectDatabase({ url, migrate: true, poolSize: 6 });
  const catalog = ProfileCatalog.load('trackyard');
  const admin = new AdminService(ds, catalog);
  const orgs = [];
  for (let i = 0; i < 20; i++) orgs.push((await admin.createOrg({ id: `fb-${i}-${Date.now().toString(36)}`, name: 'fb', plan: 'starter' })).id);
  const consumer = new RequestCompletedConsumer(ds, catalog, { groupId: 'fb' });
  const N = 100000, B = 10000, P = 4;
  const at = Date.now() - 60000;
  const next = new Array(P).fill(0);
  const msgs = Array.from({ length: P }, () => []);
  for (let j = 0; j < N; j++) {
    const org = orgs[j % 20];
    const p = j % 20 % P;
    const e = { event_id: v7(), org_id: org, schema_version: 1, occurred_at: new Date(at + j).toISOString(), api_key_id: null, subject: { kind: 'key', id: 'x' }, profile: 'trackyard', method: 'POST', route: '/search', path: '/api/external/v1/search', status_code: j % 10 === 0 ? 500 : 200, response_time_ms: 12, entities: [], reservation_id: null };
    msgs[p].push({ offset: String(next[p]++), key: Buffer.from(org), value: Buffer.from(JSON.stringify(e)), headers: {} });
  }
  const todo = [];
  for (let p = 0; p < P; p++) for (let i = 0; i < msgs[p].length; i += B) {
    const m = msgs[p].slice(i, i + B);
    todo.push({ topic: 'fb', partition: p, messages: m, nextOffset: String(Number(m[m.length - 1].offset) + 1) });
  }
  const t = performance.now();
  // Per partition in order; partitions in parallel (the consumer groups and caps them itself).
  await Promise.all([...Array(P).keys()].map(async (p) => { for (const b of todo.filter((x) => x.partition === p)) await consumer.handle(b); }));
  const s = (performance.now() - t) / 1000;
  const n = Number((await ds.query(`SELECT count(*) AS n FROM usage_records`))[0].n);
  console.log(`${path.basename(repo)} ${Math.round(N / s)} events/s (${s.toFixed(1)} s, ${n} usage rows)`);
  await ds.destroy();
})().catch((e) => { console.error(e); process.exit(1); });
