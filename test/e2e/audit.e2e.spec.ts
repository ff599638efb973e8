import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Client } from 'pg';
import { MeteringConsumerGroup } from '@tollgate/contracts';
import { eventually, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * `tollgate audit` (`npm run audit`) after real traffic through the gateway: per-company holds taken after the upstream answered,
 * settled by their events (the charges check matches a hold settled at its price to its call by org, route,
 * instant and credits: this is where the gateway's own instants are put to the test), a re-access that costs
 * nothing, an upstream 404, a top-up and the re-access windows they open.
 */
describe('audit after real traffic (trace profile)', () => {
  let stack: Stack;
  let db: Client;

  beforeAll(async () => {
    // A 3 s publish window: a lease's rest comes back within ~13 s, so the org's holds and leases close in the test.
    stack = await Stack.start({ profile: 'trace', env: { RESERVATION_PUBLISH_WINDOW_SECONDS: '3' } });
    db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
  }, 120_000);

  afterAll(async () => {
    await db?.end();
    await stack?.stop();
  });

  const audit = (...args: string[]) =>
    spawnSync(process.execPath, [join(repoRoot, 'bin/tollgate.js'), 'audit', ...args], { env: process.env, encoding: 'utf8' });

  it('finds every invariant holding for the org the calls were made by, and names it once its projection drifts', async () => {
    const { orgId, key } = await stack.orgWithKey('standard', uniqueId('audit'));
    expect((await stack.admin('POST', `/admin/orgs/${orgId}/credits`, { amount: 20, reason: 'test', idempotency_key: uniqueId('grant') })).status).toBe(201);
    const get = (path: string) => fetch(stack.gatewayUrl(`/v1${path}`), { headers: { authorization: `Bearer ${key}` } });
    const statuses = [];
    for (const path of ['/companies?limit=3', '/companies?limit=3', '/companies/does-not-exist-at-all']) statuses.push((await get(path)).status);
    expect(statuses.slice(0, 2)).toEqual([200, 200]);
    await eventually(async () => Number((await db.query(`SELECT total FROM usage_totals WHERE org_id = $1`, [orgId])).rows[0]?.total ?? 0) === 3, 40_000);
    await eventually(async () => (await db.query(`SELECT 1 FROM reservations WHERE org_id = $1 AND status = 'held'`, [orgId])).rowCount === 0, 40_000);

    // Offsets of metering's own consumer group only: other suites sharing the database consume test topics of their own.
    const clean = audit('--org', orgId, '--group', MeteringConsumerGroup);
    expect(clean.stdout).toContain('audit: clean: 10 check(s), 1 org(s)');
    expect(clean.status).toBe(0);

    await db.query(`UPDATE accounts SET debt = debt + 1, balance = balance - 1 WHERE org_id = $1`, [orgId]);
    const drifted = audit('--org', orgId, '--check', 'projection');
    expect(drifted.stdout).toMatch(new RegExp(`^projection\\t${orgId}\\tdebt\\t`, 'm'));
    expect(drifted.status).toBe(1);

    // The same through npm: `npm run audit` is an alias of `tollgate audit`, and --json is the report for machines.
    const npm = (...args: string[]) => spawnSync('npm', ['run', '--silent', ...args], { cwd: repoRoot, env: process.env, encoding: 'utf8' });
    const viaAlias = npm('audit', '--', '--org', orgId, '--check', 'projection', '--json');
    expect(viaAlias.status).toBe(1);
    const report = JSON.parse(viaAlias.stdout) as { clean: boolean; checks: string[]; violations: Array<{ check: string; org: string; subject: string }> };
    expect(report).toMatchObject({ clean: false, checks: ['projection'] });
    expect(report.violations).toContainEqual(expect.objectContaining({ check: 'projection', org: orgId, subject: 'debt' }));
    const viaCli = npm('tollgate', '--', 'audit', '--org', orgId, '--check', 'sequence');
    expect(viaCli.stdout).toContain('audit: clean: 1 check(s), 1 org(s)');
    expect(viaCli.status).toBe(0);
    const bad = npm('tollgate', '--', 'audit', '--org', orgId, '--check', 'nope');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('audit: --check needs one of');
    expect(bad.stderr).toContain('usage: tollgate audit');
  });
});
