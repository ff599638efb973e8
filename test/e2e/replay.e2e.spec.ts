import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { RequestCompletedV1 } from '@tollgate/contracts';
import { connectDatabase } from '@tollgate/persistence';
import { AdminService } from '../../apps/metering/src/admin/admin.service';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { ReservationService } from '../../apps/metering/src/reservations/reservation.service';
import { eventually, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * `npm run replay`: every projection (accounts with their buckets, debt and allowance, usage totals, re-access
 * windows) rebuilt from the ledger and the usage log matches the live one after a history with every kind of
 * entry; a projection corrupted on purpose is reported with its org and field, and `--apply` repairs it while
 * calls keep coming; `--profile` re-prices history and changes nothing.
 */
describe('replay (ledger source)', () => {
  const DayMs = 86_400_000;
  let stack: Stack;
  let db: Client;
  let ds: DataSource;
  const catalog = ProfileCatalog.load('trackyard');
  const groupId = `replay-e2e-${uuidv7()}`;
  let nextOffset = 0;

  // The orgs of the history: A (trackyard, through the running stack and in-process), T (trace: per-entity,
  // re-access and debt, through the consumer in-process), S (a plain starter org for the balance line).
  const orgs = { A: { id: '', key: '' }, S: { id: '', key: '' }, H: { id: '', key: '' }, T: { id: '' } };

  beforeAll(async () => {
    // A 3 s publish window: a gateway's lease closes within ~13 s of its last draw, so the org comes to rest.
    stack = await Stack.start({ profile: 'trackyard', env: { RESERVATION_PUBLISH_WINDOW_SECONDS: '3' } });
    db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
    ds = await connectDatabase({ migrate: false, poolSize: 2 });
  }, 120_000);

  afterAll(async () => {
    await ds?.destroy();
    await db?.end();
    await stack?.stop();
  });

  // `tollgate replay`, as `npm run replay` runs it.
  const script = join(repoRoot, 'bin/tollgate.js');
  const replay = (...args: string[]) => spawnSync(process.execPath, [script, 'replay', ...args], { env: process.env, encoding: 'utf8' });
  /** The same, without blocking this process: calls keep going while it runs. */
  const replayAsync = (...args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [script, 'replay', ...args], { env: process.env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.once('exit', (status) => resolve({ status, stdout, stderr }));
    });
  const ours = () => ['--org', orgs.A.id, '--org', orgs.S.id, '--org', orgs.H.id, '--org', orgs.T.id];

  const search = (key: string, query: string | null = 'replay') =>
    fetch(stack.gatewayUrl('/api/external/v1/search'), {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(query === null ? {} : { query }),
    });

  /** Meters one event through the real consumer, its clock at the event's instant (no broker: a batch handed in). */
  async function meter(event: Partial<RequestCompletedV1> & { org_id: string; occurred_at: string }) {
    const full: RequestCompletedV1 = {
      event_id: uuidv7(), schema_version: 1, api_key_id: null, subject: { kind: 'key', id: 'k' }, profile: 'trackyard',
      method: 'POST', route: '/search', path: '/api/external/v1/search', status_code: 200, response_time_ms: 5, entities: [],
      reservation_id: null, ...event,
    };
    const consumer = new RequestCompletedConsumer(ds, catalog, { groupId, clock: () => Date.parse(full.occurred_at) });
    const offset = nextOffset++;
    await consumer.handle({
      topic: 'replay-e2e', partition: 0, nextOffset: String(offset + 1),
      messages: [{ offset: String(offset), key: Buffer.from(full.org_id), value: Buffer.from(JSON.stringify(full)), headers: {} }],
    });
    const metered = await db.query(`SELECT 1 FROM usage_records WHERE event_id = $1`, [full.event_id]);
    expect(metered.rowCount).toBe(1);
  }

  const companies = (org: string, at: number, entities: string[]) =>
    meter({ org_id: org, occurred_at: new Date(at).toISOString(), profile: 'trace', method: 'GET', route: '/companies', path: '/v1/companies', entities });

  /** Every call answered so far is metered and no hold or lease is open: the live projections are at rest. */
  async function atRest(orgId: string) {
    await eventually(async () => {
      const open = await db.query(`SELECT 1 FROM reservations WHERE org_id = $1 AND status = 'held'`, [orgId]);
      return open.rowCount === 0;
    }, 45_000);
  }

  const account = async (orgId: string) => (await db.query(`SELECT * FROM accounts WHERE org_id = $1`, [orgId])).rows[0];

  it('finds no difference after charges, holds settled/released/expired, top-ups, plan changes, a month reset, debt and re-access', async () => {
    const now = Date.now();
    // A: trackyard starter through the stack.
    const a = await stack.orgWithKey('starter', uniqueId('replay-a'));
    orgs.A = { id: a.orgId, key: a.key };
    for (let i = 0; i < 3; i++) expect((await search(a.key, `paid ${i}`)).status).toBe(200); // drawn from a lease, paid from it by the event
    expect((await search(a.key, null)).status).toBe(400); // drawn, given back to the lease by the gateway: the upstream refused
    expect((await stack.admin('POST', `/admin/orgs/${a.orgId}/credits`, { amount: 20, reason: 'trial', idempotency_key: uniqueId('k'), expires_at: new Date(now + 10 * DayMs).toISOString() })).status).toBe(201);
    expect((await stack.admin('POST', `/admin/orgs/${a.orgId}/credits`, { amount: 5, reason: 'goodwill', idempotency_key: uniqueId('k') })).status).toBe(201);
    // A hold that no event settles, released by timeout.
    const reservations = new ReservationService(ds, catalog, () => now);
    const held = await reservations.reserve({ reservationId: uuidv7(), orgId: a.orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: now });
    expect(held.granted).toBe(true);
    expect(await reservations.release(held.reservationId, a.orgId, 'expired')).toBe(true);
    // Plan changes: pro (allowance adjusted), free (one-time credits), pro again (none granted twice).
    for (const plan of ['pro', 'free', 'pro']) expect((await stack.admin('PUT', `/admin/orgs/${a.orgId}/plan`, { plan })).status).toBe(200);
    await atRest(a.orgId);
    // A call two months on: the allowance and the 10-day top-up expire, the new month's allowance is granted.
    await meter({ org_id: a.orgId, occurred_at: new Date(now + 62 * DayMs).toISOString() });
    for (let i = 0; i < 2; i++) expect((await search(a.key, `later ${i}`)).status).toBe(200);
    await atRest(a.orgId);
    const types = (await db.query(`SELECT DISTINCT type FROM ledger_entries WHERE org_id = $1`, [a.orgId])).rows.map((r) => r.type).sort();
    expect(types).toEqual(['adjustment', 'charge', 'expiry', 'grant', 'lease', 'release', 'reservation', 'top_up']);

    // T: trace, credits from top-ups; calls without holds go into debt, a top-up pays it; 30-day re-access.
    const admin = new AdminService(ds, catalog, () => now);
    const t = uniqueId('replay-t');
    await admin.createOrg({ id: t, name: t, plan: 'standard', profile: 'trace' });
    orgs.T = { id: t };
    await admin.grantCredits(t, { amount: 2, reason: 'trial', idempotency_key: uniqueId('k') });
    await companies(t, now, ['c1', 'c2', 'c3', 'c4', 'c5', 'c1']); // 5 credits: 2 from the top-up, 3 of debt
    await admin.grantCredits(t, { amount: 10, reason: 'paid', idempotency_key: uniqueId('k') }); // pays the debt first
    await companies(t, now + DayMs, ['c1', 'c6']); // c1 re-accessed within 30 days: free
    await companies(t, now + 31 * DayMs, ['c1']); // 30 days on: charged again
    expect(Number((await account(t)).balance)).toBe(2 - 5 + 10 - 1 - 1);

    const s = await stack.orgWithKey('starter', uniqueId('replay-s'));
    orgs.S = { id: s.orgId, key: s.key };
    for (let i = 0; i < 3; i++) expect((await search(s.key, `s ${i}`)).status).toBe(200);
    const h = await stack.orgWithKey('pro', uniqueId('replay-h'));
    orgs.H = { id: h.orgId, key: h.key };
    expect((await search(h.key)).status).toBe(200);
    await eventually(async () => (await account(s.orgId))?.balance === '497');
    await atRest(s.orgId);
    await atRest(h.orgId);

    const clean = replay(...ours());
    expect(clean.stdout).toContain('projections match the ledger');
    expect(clean.stderr).not.toMatch(/error/i);
    expect(clean.status).toBe(0);
    expect(replay('--all').stdout).not.toContain(`${a.orgId}\t`);
  }, 120_000);

  it('reports each corrupted projection with its org and field; --apply repairs them while calls keep coming; then nothing differs', async () => {
    const { A, S, T } = orgs;
    const windowOf = async (entity: string) =>
      (await db.query(`SELECT last_charged_at FROM reaccess_windows WHERE org_id = $1 AND entity_id = $2`, [T.id, entity])).rows[0]?.last_charged_at as Date | undefined;
    const c6 = (await windowOf('c6'))!;
    const c2 = (await windowOf('c2'))!;
    const bucket = (await account(A.id)).buckets[0] as { id: string; remaining: number };
    const total = Number((await db.query(`SELECT total FROM usage_totals WHERE org_id = $1`, [A.id])).rows[0].total);

    await db.query(`UPDATE accounts SET balance = balance + 7 WHERE org_id = $1`, [S.id]);
    await db.query(`UPDATE accounts SET buckets = jsonb_set(buckets, '{0,remaining}', to_jsonb($2::int)) WHERE org_id = $1`, [A.id, bucket.remaining + 3]);
    await db.query(`UPDATE accounts SET debt = debt + 4 WHERE org_id = $1`, [T.id]);
    await db.query(`UPDATE reaccess_windows SET last_charged_at = last_charged_at - interval '1 day' WHERE org_id = $1 AND entity_id = 'c6'`, [T.id]);
    await db.query(`DELETE FROM reaccess_windows WHERE org_id = $1 AND entity_id = 'c2'`, [T.id]);
    await db.query(`UPDATE usage_totals SET total = total + 3 WHERE org_id = $1`, [A.id]);

    const drifted = replay(...ours());
    expect(drifted.status).toBe(1);
    expect(drifted.stdout).toContain(`${S.id}\tbalance\tlive=504\treplayed=497`);
    expect(drifted.stdout).toContain(`${A.id}\tbucket ${bucket.id} remaining\tlive=${bucket.remaining + 3}\treplayed=${bucket.remaining}`);
    expect(drifted.stdout).toContain(`${T.id}\tdebt\tlive=4\treplayed=0`);
    // The same for machines: one JSON object, the same exit code.
    const asJson = replay(...ours(), '--json');
    expect(asJson.status).toBe(1);
    const report = JSON.parse(asJson.stdout) as { source: string; apply: boolean; differences: Array<{ orgId: string; field: string; live: string; replayed: string }> };
    expect(report).toMatchObject({ source: 'ledger', apply: false });
    expect(report.differences).toContainEqual({ orgId: S.id, field: 'balance', live: '504', replayed: '497' });
    expect(drifted.stdout).toContain(`${T.id}\twindow c6\tlive=${new Date(c6.getTime() - DayMs).toISOString()}\treplayed=${c6.toISOString()}`);
    expect(drifted.stdout).toContain(`${T.id}\twindow c2\tlive=missing\treplayed=${c2.toISOString()}`);
    expect(drifted.stdout).toContain(`${A.id}\tusage_total\tlive=${total + 3}\treplayed=${total}`);
    expect(drifted.stdout).not.toContain(`${orgs.H.id}\t`);

    // Calls keep coming on every trackyard org while --apply runs (the corrupted ones are refused until repaired).
    let sending = true;
    let answered = 0;
    const traffic = (async () => {
      while (sending) {
        await Promise.all([orgs.H.key, A.key, S.key].map((key) => search(key, 'during apply').then((r) => r.text()).then(() => answered++)));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await eventually(async () => answered >= 3, 10_000, 20);
    const applied = await replayAsync(...ours(), '--apply');
    const answeredDuringApply = answered;
    await eventually(async () => answered >= answeredDuringApply + 6, 20_000, 20); // and after it
    sending = false;
    await traffic;
    expect(applied.stdout).toContain('repaired 3 of 3 org(s)');
    expect(applied.status).toBe(1);
    for (const org of [A.id, S.id, orgs.H.id]) await atRest(org);

    const after = replay(...ours());
    expect(after.stdout).toContain('projections match the ledger');
    expect(after.status).toBe(0);
    expect(await windowOf('c2')).toEqual(c2);
    // The repaired rows hold together again (balance = buckets - debt), so the org's deciders run.
    for (const org of [A.id, S.id, T.id]) {
      const row = await account(org);
      const inBuckets = (row.buckets as Array<{ remaining: number }>).reduce((sum, b) => sum + b.remaining, 0);
      expect(Number(row.balance)).toBe(inBuckets - Number(row.debt));
    }
  }, 120_000);

  it('Ctrl-C during --apply leaves every org either untouched or fully repaired', async () => {
    const admin = new AdminService(ds, catalog);
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      const id = uniqueId(`replay-int-${String(i).padStart(2, '0')}`);
      await admin.createOrg({ id, name: id, plan: 'starter' });
      ids.push(id);
    }
    await db.query(`UPDATE accounts SET balance = balance + 7, allowance_spent = allowance_spent + 1 WHERE org_id = ANY($1)`, [ids]);
    const child = spawn(process.execPath, [script, 'replay', ...ids.flatMap((id) => ['--org', id]), '--apply'], { env: process.env });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Whenever the signal lands (before the handler, during the diff, between repairs or after), the property holds.
    await new Promise((r) => setTimeout(r, 600 + Math.random() * 600));
    child.kill('SIGINT');
    const code = await exited;
    expect([null, 1, 130]).toContain(code);
    if (code === 130) expect(stderr).toMatch(/interrupted/);

    const after = replay(...ids.flatMap((id) => ['--org', id]));
    const lines = after.stdout.split('\n').filter((l) => l.startsWith('replay-int-'));
    const untouched = new Set(lines.map((l) => l.split('\t')[0]));
    for (const id of untouched) {
      expect(lines.filter((l) => l.startsWith(`${id}\t`)).sort()).toEqual([`${id}\tallowance_spent\tlive=1\treplayed=0`, `${id}\tbalance\tlive=507\treplayed=500`]);
    }
    for (const id of ids.filter((x) => !untouched.has(x))) expect(await account(id)).toMatchObject({ balance: '500', allowance_spent: '0' });
  }, 60_000);

  it('--profile prices the usage log under another profile and changes nothing; a bad file is named with its key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'replay-what-if-'));
    const file = join(dir, 'trackyard-dear.yaml');
    const text = readFileSync(join(repoRoot, 'config/profiles/trackyard.yaml'), 'utf8');
    writeFileSync(file, text.replace('cost: { kind: fixed, credits: 1 }', 'cost: { kind: fixed, credits: 3 }'));
    const before = await account(orgs.S.id);
    const paid = Number((await db.query(`SELECT count(*) AS n FROM usage_records WHERE org_id = $1 AND credits > 0`, [orgs.S.id])).rows[0].n);
    const cost = Number((await db.query(`SELECT sum(credits) AS n FROM usage_records WHERE org_id = $1`, [orgs.S.id])).rows[0].n);

    const res = replay('--org', orgs.S.id, '--profile', file);
    expect(res.status).toBe(0);
    expect(res.stdout).toContain(`${orgs.S.id}\tcredits\tcost=${cost}\twhat-if=${paid * 3}\t`);
    expect(res.stdout).toContain('nothing was changed');
    expect(await account(orgs.S.id)).toEqual(before);

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, text.replace('cost: { kind: fixed, credits: 1 }', 'cost: { kind: pricey, credits: 1 }'));
    const refused = replay('--all', '--profile', bad);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(bad);
    expect(refused.stderr).toContain('routes[0].cost.kind');
    expect(replay('--org', orgs.T.id, '--profile', file).status).toBe(2); // a trace org priced as trackyard: refused
  });

  it('refuses unclear arguments with exit 2 and a usage line', () => {
    for (const args of [[], ['--org'], ['--all', '--source', 'tape'], ['--all', '--apply', '--profile', 'x.yaml'], ['--org', 'no-such-org-at-all']]) {
      const res = replay(...args);
      expect(res.status).toBe(2);
      expect(res.stderr).toMatch(/^replay: /);
    }
    expect(replay().stderr).toContain('usage: tollgate replay');
  });
});
