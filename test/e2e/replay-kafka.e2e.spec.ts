import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Client } from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { Topics } from '@tollgate/contracts';
import { bearerMetadata } from '@tollgate/platform';
import { produce, requestCompleted, testKafka } from '../support/kafka';
import { eventually, freePort, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * `npm run replay -- --source kafka`: the request-completed topic re-priced into a scratch schema by metering's own
 * consumer must agree with live metering (per event and per balance) after real traffic through strict gateways
 * (holds settled and released, per-entity re-access), a top-up and a plan change; a corrupted usage row or balance
 * is named with exit 1; a what-if profile prices history and changes nothing.
 *
 * The stack gets a database of its own (the broker is shared): `--all` then covers exactly this test's orgs, and
 * events other tests left on the topic belong to orgs this database doesn't know (skipped by both sides).
 */
describe('replay (kafka source)', () => {
  let stack: Stack;
  let db: Client;
  let databaseUrl: string;
  const env = () => ({ ...process.env, DATABASE_URL: databaseUrl, TOLLGATE_PROFILE: 'trace' });
  const replay = (...args: string[]) => {
    const res = spawnSync(process.execPath, [join(repoRoot, 'bin/tollgate.js'), 'replay', ...args], { env: env(), encoding: 'utf8', timeout: 120_000 });
    if (process.env.REPLAY_LOGS) process.stderr.write(`replay ${args.join(' ')} -> ${res.status}\n${res.stdout}${res.stderr}`);
    return res;
  };

  let traceOrg: string;
  let trackOrg: string;
  let trackyardPort: number;

  beforeAll(async () => {
    const base = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tollgate_test');
    const admin = new Client({ connectionString: base.toString() });
    await admin.connect();
    const name = `${base.pathname.slice(1)}_replay_kafka`;
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    base.pathname = `/${name}`;
    databaseUrl = base.toString();
    // Per-call holds (GATEWAY_CREDIT_LEASES=0, the path near a zero balance): what this file proves is how the replay
    // explains holds settled, released and still open. Traffic spent from leases is replayed in replay.e2e.spec.ts.
    stack = await Stack.start({ profile: 'trace', env: { DATABASE_URL: databaseUrl, GATEWAY_CREDIT_LEASES: '0' } });
    trackyardPort = await freePort();
    await stack.startApp('gateway', 'gateway-trackyard', { GATEWAY_PORT: String(trackyardPort), TOLLGATE_PROFILE: 'trackyard' });
    db = new Client({ connectionString: databaseUrl });
    await db.connect();
  }, 180_000);

  afterAll(async () => {
    await db?.end();
    await stack?.stop();
    const base = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/tollgate_test');
    const admin = new Client({ connectionString: base.toString() });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${base.pathname.slice(1)}_replay_kafka WITH (FORCE)`);
    await admin.end();
  });

  const call = (key: string, path: string, init: RequestInit = {}, port?: number) =>
    fetch(stack.gatewayUrl(path, port), { ...init, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });

  it('re-prices real traffic (holds settled and released, re-access, a top-up, a plan change) with no difference', async () => {
    // trace: credits from a top-up; per-entity calls reserve after the upstream answered and settle on the event.
    const trace = await stack.orgWithKey('standard', uniqueId('rk-trace'));
    traceOrg = trace.orgId;
    expect((await stack.admin('POST', `/admin/orgs/${traceOrg}/credits`, { amount: 50, reason: 'test', idempotency_key: uniqueId('grant') })).status).toBe(201);
    expect((await call(trace.key, '/v1/companies?limit=3')).status).toBe(200); // 3 companies: 3 credits
    expect((await call(trace.key, '/v1/companies?limit=5')).status).toBe(200); // 3 again (free) + 2 new
    const first = (await (await call(trace.key, '/v1/companies?limit=1')).json()) as { data: Array<{ id: string }> };
    expect((await call(trace.key, `/v1/companies/${first.data[0]!.id}`)).status).toBe(200); // re-access: free
    expect((await call(trace.key, `/v1/companies/${first.data[0]!.id}/partnerships`)).status).toBe(200);

    // trackyard on a second gateway: fixed price, a hold per call; a 400 from upstream releases it.
    const org = await stack.admin<{ id: string }>('POST', '/admin/orgs', { id: uniqueId('rk-track'), name: 'replay kafka', plan: 'free', profile: 'trackyard' });
    expect(org.status).toBe(201);
    trackOrg = org.body.id;
    const key = (await stack.admin<{ key: string }>('POST', `/admin/orgs/${trackOrg}/keys`, {})).body.key;
    // free: 5 calls a minute, so five calls in all (the gateway may take a few seconds to see the new plan's limits).
    for (let i = 0; i < 2; i++) expect((await call(key, '/api/external/v1/search', { method: 'POST', body: JSON.stringify({ query: `q${i}` }) }, trackyardPort)).status).toBe(200);
    expect((await call(key, '/api/external/v1/search', { method: 'POST', body: JSON.stringify({}) }, trackyardPort)).status).toBe(400);
    expect((await stack.admin('PUT', `/admin/orgs/${trackOrg}/plan`, { plan: 'starter' })).status).toBe(200);
    expect((await stack.admin('POST', `/admin/orgs/${trackOrg}/credits`, { amount: 25, reason: 'test', idempotency_key: uniqueId('grant') })).status).toBe(201);
    for (let i = 0; i < 2; i++) expect((await call(key, '/api/external/v1/search', { method: 'POST', body: JSON.stringify({ query: `p${i}` }) }, trackyardPort)).status).toBe(200);
    // Another producer's event: no reservation, charged when metered.
    await produce(testKafka(), [{ key: trackOrg, value: JSON.stringify(requestCompleted({ org_id: trackOrg })) }], Topics.RequestCompleted);

    await eventually(async () => (await db.query(`SELECT count(*)::int AS n FROM usage_records WHERE org_id = $1`, [trackOrg])).rows[0].n === 6, 20_000);
    await eventually(async () => (await db.query(`SELECT count(*)::int AS n FROM usage_records WHERE org_id = $1`, [traceOrg])).rows[0].n === 5, 20_000);
    const holds = await db.query(`SELECT status, count(*)::int AS n FROM reservations GROUP BY status ORDER BY status`);
    expect(holds.rows.map((r) => r.status)).toEqual(expect.arrayContaining(['released', 'settled']));

    const res = replay('--all', '--source', 'kafka');
    expect(res.stdout).toContain('no difference');
    const metered = (await db.query(`SELECT count(*)::int AS n FROM usage_records`)).rows[0].n;
    expect(res.stdout).toContain(` ${metered} event(s) of 2 org(s) re-priced`);
    expect(res.status).toBe(0);
    expect((await db.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'replay_kafka_%'`)).rows[0].n).toBe(0);
  }, 120_000);

  it('names a corrupted usage row and a corrupted balance, exit 1', async () => {
    const row = (await db.query(`SELECT event_id, credits FROM usage_records WHERE org_id = $1 AND credits > 0 ORDER BY occurred_at LIMIT 1`, [traceOrg])).rows[0];
    await db.query(`UPDATE usage_records SET credits = credits + 5 WHERE event_id = $1`, [row.event_id]);
    try {
      const res = replay('--org', traceOrg, '--source', 'kafka');
      expect(res.status).toBe(1);
      expect(res.stdout).toContain(`${traceOrg}\tevent ${row.event_id}\tlive=${Number(row.credits) + 5}\treplayed=${row.credits}\tUNEXPLAINED`);
    } finally {
      await db.query(`UPDATE usage_records SET credits = $2 WHERE event_id = $1`, [row.event_id, row.credits]);
    }

    const before = (await db.query(`SELECT balance FROM accounts WHERE org_id = $1`, [trackOrg])).rows[0].balance;
    await db.query(`UPDATE accounts SET balance = balance + 7 WHERE org_id = $1`, [trackOrg]);
    try {
      const res = replay('--org', trackOrg, '--source', 'kafka');
      expect(res.status).toBe(1);
      expect(res.stdout).toContain(`${trackOrg}\tbalance\tlive=${Number(before) + 7}\treplayed=${before}\tUNEXPLAINED`);
    } finally {
      await db.query(`UPDATE accounts SET balance = $2 WHERE org_id = $1`, [trackOrg, before]);
    }
    expect(replay('--all', '--source', 'kafka').status).toBe(0);
  }, 120_000);

  it('--profile prices history under another profile (a doubled route) and changes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-whatif-'));
    const file = join(dir, 'trackyard-doubled.yaml');
    const shipped = readFileSync(join(repoRoot, 'config/profiles/trackyard.yaml'), 'utf8');
    const doubled = shipped.replace(/(path: \/search\n(?:\s+\w+:.*\n)*?\s+cost: )\{ kind: fixed, credits: 1 \}/, '$1{ kind: fixed, credits: 2 }');
    expect(doubled).not.toBe(shipped);
    writeFileSync(file, doubled);
    const usage = async () => (await db.query(`SELECT count(*)::int AS n, COALESCE(sum(credits), 0)::int AS credits FROM usage_records WHERE org_id = $1`, [trackOrg])).rows[0];
    const balance = async () => (await db.query(`SELECT balance FROM accounts WHERE org_id = $1`, [trackOrg])).rows[0].balance;
    const [usageBefore, balanceBefore] = [await usage(), await balance()];
    expect(usageBefore.credits).toBe(5); // 4 searches answered 200 and the other producer's event; the 400 is free

    const res = replay('--org', trackOrg, '--source', 'kafka', '--profile', file);
    expect(res.stderr).not.toContain('invalid');
    expect(res.status).toBe(0);
    expect(res.stdout).toContain(`${trackOrg}\t6\t5\t10\t+5`);
    expect(await usage()).toEqual(usageBefore);
    expect(await balance()).toBe(balanceBefore);

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, shipped.replace('cost: { kind: fixed, credits: 1 }', 'cost: { kind: fixed, credits: -1 }'));
    const refused = replay('--all', '--source', 'kafka', '--profile', bad);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(bad);
    expect(refused.stderr).toMatch(/routes\[\d+\]\.cost/);
  }, 120_000);

  it('explains what holds change: an entity a still-held call was paying for, and a hold still open', async () => {
    const { orgId } = await stack.orgWithKey('standard', uniqueId('rk-holds'));
    expect((await stack.admin('POST', `/admin/orgs/${orgId}/credits`, { amount: 20, reason: 'test', idempotency_key: uniqueId('grant') })).status).toBe(201);
    const definition = loadSync(join(repoRoot, 'libs/contracts/src/proto/metering.proto'), { keepCase: true, longs: String, defaults: true });
    const pkg = loadPackageDefinition(definition) as any;
    const client = new pkg.tollgate.metering.v1.Reservations(`127.0.0.1:${stack.ports.meteringGrpc}`, credentials.createInsecure());
    const route = '/companies/:identifier';
    const reserve = (id: string, entity: string) =>
      new Promise<{ granted: boolean }>((resolve, reject) =>
        client.Reserve(
          { reservation_id: id, org_id: orgId, profile: 'trace', method: 'GET', route, entities: [entity], occurred_at: new Date().toISOString() },
          bearerMetadata(stack.internalToken),
          (err: Error | null, res: { granted: boolean }) => (err ? reject(err) : resolve(res)),
        ),
      );
    const event = (entity: string, reservationId: string | null) =>
      requestCompleted({ org_id: orgId, profile: 'trace', method: 'GET', route, path: `/v1/companies/${entity}`, entities: [entity], reservation_id: reservationId });
    // A holds c_held; B returns c_held while A's hold is open (free live: A pays); then A's event settles.
    const held = uuidv7();
    expect((await reserve(held, 'c_held')).granted).toBe(true);
    const b = event('c_held', null);
    await produce(testKafka(), [{ key: orgId, value: JSON.stringify(b) }]);
    await eventually(async () => (await db.query(`SELECT 1 FROM usage_records WHERE event_id = $1`, [b.event_id])).rowCount === 1);
    const a = event('c_held', held);
    await produce(testKafka(), [{ key: orgId, value: JSON.stringify(a) }]);
    await eventually(async () => (await db.query(`SELECT 1 FROM usage_records WHERE event_id = $1`, [a.event_id])).rowCount === 1);
    // A hold whose event never comes (yet): live's balance is lower by it until it settles or is released.
    const open = uuidv7();
    expect((await reserve(open, 'c_open')).granted).toBe(true);
    client.close();
    const balance = async () => Number((await db.query(`SELECT balance FROM accounts WHERE org_id = $1`, [orgId])).rows[0].balance);
    expect(await balance()).toBe(18); // 20 - c_held (A's settled hold) - c_open (held)

    const res = replay('--org', orgId, '--source', 'kafka');
    expect(res.stdout).toContain(`${orgId}\tevent ${b.event_id}\tlive=0\treplayed=1\texplained: entity paid by a still-held call live (reservation ${held})`);
    expect(res.stdout).toContain(`${orgId}\tevent ${a.event_id}\tlive=1\treplayed=0\texplained: its hold (${held})`);
    expect(res.stdout).not.toContain('UNEXPLAINED');
    expect(res.stdout).not.toContain(`${orgId}\tbalance`); // live 18 + 1 held = replayed 20 - 1 (B paid)
    expect(res.status).toBe(0);
    // Still held when the replay compared (120 s timeout): the balance matched because the hold was added back.
    expect((await db.query(`SELECT status FROM reservations WHERE org_id = $1 AND id = $2`, [orgId, open])).rows[0].status).toBe('held');
  }, 120_000);

  it('Ctrl-C stops the replay, drops its scratch schema and consumer group and leaves live tables alone', async () => {
    const before = (await db.query(`SELECT sum(balance)::int AS b FROM accounts`)).rows[0].b;
    const child = spawn(process.execPath, [join(repoRoot, 'bin/tollgate.js'), 'replay', '--all', '--source', 'kafka'], { env: env() });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    // Once the scratch schema exists, interrupt.
    await eventually(async () => (await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [`replay_kafka_${child.pid}`])).rowCount === 1, 30_000, 20);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect([130, 0]).toContain(code); // 0 only if it had already finished
    if (code === 130) expect(stderr).toContain('interrupted');
    expect((await db.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'replay_kafka_%'`)).rows[0].n).toBe(0);
    expect((await db.query(`SELECT sum(balance)::int AS b FROM accounts`)).rows[0].b).toBe(before);
    const kafkaAdmin = testKafka().admin();
    await kafkaAdmin.connect();
    const groups = await kafkaAdmin.listGroups();
    await kafkaAdmin.disconnect();
    expect(groups.groups.map((g) => g.groupId).filter((g) => g.startsWith(`tollgate-replay-${child.pid}-`))).toEqual([]);
  }, 120_000);
});
