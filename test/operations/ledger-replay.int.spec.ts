import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { RequestCompletedV1 } from '@tollgate/contracts';
import { connectDatabase } from '@tollgate/persistence';
import { parseProfile, profilesDir } from '@tollgate/profiles';
import { AdminService } from '../../apps/metering/src/admin/admin.service';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { formatDifference, ReplayArgumentError, replayLedger, whatIf } from '@tollgate/operations';

/** The ledger replay against real PostgreSQL: a stopped --apply, usage rows older than charged_entities, a what-if. */
describe('replayLedger (real PostgreSQL)', () => {
  let ds: DataSource;
  const catalog = ProfileCatalog.load('trackyard');
  const groupId = `ledger-replay-${uuidv7()}`;
  const now = Date.now();
  let nextOffset = 0;

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 3 });
  });

  afterAll(async () => {
    await ds?.destroy();
  });

  const newOrgId = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;

  async function meter(event: Partial<RequestCompletedV1> & { org_id: string }, at = now) {
    const full: RequestCompletedV1 = {
      event_id: uuidv7(), schema_version: 1, occurred_at: new Date(at).toISOString(), api_key_id: null, subject: { kind: 'key', id: 'k' },
      profile: 'trackyard', method: 'POST', route: '/search', path: '/api/external/v1/search', status_code: 200, response_time_ms: 5,
      entities: [], reservation_id: null, ...event,
    };
    const consumer = new RequestCompletedConsumer(ds, catalog, { groupId, clock: () => at });
    const offset = nextOffset++;
    await consumer.handle({
      topic: 'ledger-replay-test', partition: 0, nextOffset: String(offset + 1),
      messages: [{ offset: String(offset), key: Buffer.from(full.org_id), value: Buffer.from(JSON.stringify(full)), headers: {} }],
    });
    return full.event_id;
  }

  const balance = async (org: string) => Number((await ds.query(`SELECT balance FROM accounts WHERE org_id = $1`, [org]))[0].balance);

  it('stopped between orgs, --apply leaves each org either repaired or untouched', async () => {
    const admin = new AdminService(ds, catalog, () => now);
    const ids = [newOrgId('stop-a'), newOrgId('stop-b'), newOrgId('stop-c')].sort();
    for (const id of ids) {
      await admin.createOrg({ id, name: id, plan: 'starter' });
      await meter({ org_id: id });
      await ds.query(`UPDATE accounts SET balance = balance + 7 WHERE org_id = $1`, [id]);
    }
    let checks = 0;
    // The first check comes before the diff's only batch, the next ones before each org the apply repairs.
    const report = await replayLedger(ds, { orgs: ids, apply: true }, { stopRequested: () => ++checks > 2 });
    expect(report.interrupted).toBe(true);
    expect(report.repaired).toEqual([ids[0]]);
    expect(await Promise.all(ids.map(balance))).toEqual([499, 506, 506]);
    const again = await replayLedger(ds, { orgs: ids, apply: false });
    expect(again.differences.map(formatDifference)).toEqual([`${ids[1]}\tbalance\tlive=506\treplayed=499`, `${ids[2]}\tbalance\tlive=506\treplayed=499`]);
  });

  it('usage rows metered before charged_entities existed: their windows are counted, not reported, and --apply keeps them', async () => {
    const org = newOrgId('legacy');
    await new AdminService(ds, catalog, () => now).createOrg({ id: org, name: org, plan: 'standard', profile: 'trace' });
    await new AdminService(ds, catalog, () => now).grantCredits(org, { amount: 20, reason: 'trial', idempotency_key: `k-${org}` });
    const trace = { profile: 'trace', method: 'GET', route: '/companies', path: '/v1/companies' };
    const old = await meter({ org_id: org, ...trace, entities: ['c1', 'c2'] }, now);
    await meter({ org_id: org, ...trace, entities: ['c3'] }, now + 1000);
    // As the row would be had it been metered before the migration.
    await ds.query(`UPDATE usage_records SET charged_entities = NULL WHERE event_id = $1`, [old]);
    const windows = async () =>
      (await ds.query(`SELECT entity_id FROM reaccess_windows WHERE org_id = $1 ORDER BY entity_id`, [org])).map((r: { entity_id: string }) => r.entity_id);
    expect(await windows()).toEqual(['c1', 'c2', 'c3']);

    const clean = await replayLedger(ds, { orgs: [org], apply: false });
    expect(clean.differences).toEqual([]);
    expect(clean.unverifiedRows).toBe(1);
    expect(clean.unverifiedOrgs).toBe(1);

    // A window later than every unrecorded row is one no charge explains: reported, and removed by --apply.
    await ds.query(`INSERT INTO reaccess_windows (org_id, entity_id, last_charged_at) VALUES ($1, 'c9', $2)`, [org, new Date(now + 5000)]);
    await ds.query(`UPDATE accounts SET balance = balance + 1 WHERE org_id = $1`, [org]);
    const drifted = await replayLedger(ds, { orgs: [org], apply: true });
    expect(drifted.differences.map(formatDifference)).toEqual([
      `${org}\tbalance\tlive=18\treplayed=17`,
      `${org}\twindow c9\tlive=${new Date(now + 5000).toISOString()}\treplayed=missing`,
    ]);
    expect(drifted.repaired).toEqual([org]);
    expect(await windows()).toEqual(['c1', 'c2', 'c3']);
    expect((await replayLedger(ds, { orgs: [org], apply: false })).differences).toEqual([]);
  });

  it('what-if: a longer re-access window re-prices the entities charged again after 30 days as free, from charged_entities', async () => {
    const org = newOrgId('what-if');
    const admin = new AdminService(ds, catalog, () => now);
    await admin.createOrg({ id: org, name: org, plan: 'standard', profile: 'trace' });
    await admin.grantCredits(org, { amount: 20, reason: 'trial', idempotency_key: `k-${org}` });
    const trace = { profile: 'trace', method: 'GET', route: '/companies', path: '/v1/companies' };
    const day = 86_400_000;
    await meter({ org_id: org, ...trace, entities: ['c1', 'c2'] }, now); // 2
    await meter({ org_id: org, ...trace, entities: ['c3'] }, now + day); // 1
    await meter({ org_id: org, ...trace, entities: ['c1'] }, now + 40 * day); // 1: 40 days after c1 was charged
    const text = readFileSync(join(profilesDir(), 'trace.yaml'), 'utf8').replace(/reaccess_days: 30/g, 'reaccess_days: 60');
    const before = await ds.query(`SELECT * FROM accounts WHERE org_id = $1`, [org]);
    const report = await whatIf(ds, parseProfile(text, 'trace-60.yaml'), [org]);
    expect(report.lines).toEqual([{ orgId: org, calls: 3, actual: 4, whatIf: 3, approximate: 0, unknownRoute: 0 }]);
    expect(await ds.query(`SELECT * FROM accounts WHERE org_id = $1`, [org])).toEqual(before);
  });

  it('refuses an org that does not exist', async () => {
    await expect(replayLedger(ds, { orgs: ['no-such-org-anywhere'], apply: false })).rejects.toThrow(ReplayArgumentError);
  });
});
