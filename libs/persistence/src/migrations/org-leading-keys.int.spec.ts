import { Client } from 'pg';
import { QueryRunner } from 'typeorm';
import { InitialSchema1732300000000 } from './1732300000000-InitialSchema';
import { DeadLetters1796181840252 } from './1796181840252-DeadLetters';
import { ReservationHeldAt1796181879934 } from './1796181879934-ReservationHeldAt';
import { OrgLeadingKeys1796192335631 } from './1796192335631-OrgLeadingKeys';

/**
 * OrgLeadingKeys on a database that already has rows: every row is kept, the keys lead with org_id, and `down`
 * goes back to global keys, refusing (and changing nothing) while two orgs share an id. Runs in a schema of its
 * own, so the test database's tables are not touched.
 */
describe('migration OrgLeadingKeys on existing data (real PostgreSQL)', () => {
  let db: Client;
  const schema = `mig_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 7)}`;
  /** The one method the migrations use, on this test's connection (search_path = its schema). */
  const q = { query: async (sql: string, params?: unknown[]) => (await db.query(sql, params)).rows } as unknown as QueryRunner;

  beforeAll(async () => {
    db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
    await db.query(`CREATE SCHEMA ${schema}`);
    await db.query(`SET search_path TO ${schema}`);
    for (const m of [new InitialSchema1732300000000(), new DeadLetters1796181840252(), new ReservationHeldAt1796181879934()]) await m.up(q);
  });

  afterAll(async () => {
    await db?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await db?.end();
  });

  /** Every row of the three changed tables, as text: what must survive the migration both ways. */
  const rows = async () =>
    (await db.query<{ t: string }>(
      `SELECT string_agg(x, ',' ORDER BY x) AS t FROM (
         SELECT 'u' || id || '/' || org_id || '/' || event_id AS x FROM usage_records
         UNION ALL SELECT 'r' || id || '/' || org_id || '/' || status FROM reservations
         UNION ALL SELECT 'o' || id || '/' || org_id || '/' || seq FROM ledger_outbox) rows`,
    )).rows[0]!.t;
  const keys = async () =>
    (await db.query<{ def: string }>(
      `SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE contype IN ('p', 'u') AND conrelid::regclass::text IN ('usage_records', 'reservations', 'ledger_outbox') ORDER BY 1`,
    )).rows.map((r) => r.def);

  it('keeps every row, keys them by org, and goes back only while no id is shared by two orgs', async () => {
    await db.query(
      `INSERT INTO usage_records (event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason, response_time_ms, decision)
       SELECT 'e' || g, 'org-' || (g % 7), now(), 'POST', '/search', '/s', 200, 1, 'charged', 3, 'forwarded' FROM generate_series(1, 500) g`,
    );
    await db.query(
      `INSERT INTO reservations (id, org_id, credits, allocation, route, occurred_at, expires_at, status)
       SELECT 'h' || g, 'org-' || (g % 7), 1, '[]', 'POST /search', now(), now(), CASE WHEN g % 3 = 0 THEN 'held' ELSE 'settled' END FROM generate_series(1, 300) g`,
    );
    await db.query(`INSERT INTO ledger_outbox (org_id, seq, payload) SELECT 'org-' || (g % 7), g, '{}' FROM generate_series(1, 200) g`);
    const before = await rows();
    const globalKeys = await keys();

    await new OrgLeadingKeys1796192335631().up(q);
    expect(await rows()).toBe(before);
    expect(await keys()).toEqual([
      'ledger_outbox PRIMARY KEY (org_id, id)',
      'ledger_outbox UNIQUE (org_id, seq)',
      'reservations PRIMARY KEY (org_id, id)',
      'usage_records PRIMARY KEY (org_id, id)',
      'usage_records UNIQUE (org_id, event_id)',
    ]);

    // Now an event id may repeat under another org, and not under the same one.
    const repeat = (org: string) =>
      db.query(
        `INSERT INTO usage_records (event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason, response_time_ms, decision)
         VALUES ('e1', $1, now(), 'POST', '/search', '/s', 200, 1, 'charged', 3, 'forwarded')`,
        [org],
      );
    await expect(repeat('org-1')).rejects.toThrow(/usage_records_org_event/);
    await repeat('org-other');

    // Going back would have to drop one of them: refused, nothing changed.
    await db.query('BEGIN');
    await expect(new OrgLeadingKeys1796192335631().down(q)).rejects.toThrow(/shared by several orgs \(usage_records\.event_id e1\)/);
    await db.query('ROLLBACK');
    await db.query(`DELETE FROM usage_records WHERE org_id = 'org-other'`);

    await new OrgLeadingKeys1796192335631().down(q);
    expect(await rows()).toBe(before);
    expect(await keys()).toEqual(globalKeys);
  });
});
