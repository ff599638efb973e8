import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { Topics } from '@tollgate/contracts';
import { ProfileCatalog } from '@tollgate/ledger';
import { OutgoingMessage, Publisher } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { AdminService } from '../admin/admin.service';
import { LedgerOutboxRelay } from './ledger-outbox-relay';

/**
 * The relay against real PostgreSQL, a recording publisher in place of Kafka: an outbox row names its entry and the
 * message is the entry as stored; a row written before SlimLedgerOutbox is sent with the payload it carries.
 */
describe('LedgerOutboxRelay (real PostgreSQL)', () => {
  let ds: DataSource;
  let db: Client;
  const catalog = ProfileCatalog.load('trackyard');

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 2 });
    db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
  });

  afterAll(async () => {
    await db?.end();
    await ds?.destroy();
  });

  it('publishes each entry, built from ledger_entries, in seq order; a legacy row with its own payload; and empties the outbox of the org', async () => {
    const orgId = `org-relay-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
    await new AdminService(ds, catalog).createOrg({ id: orgId, name: 'relay test', plan: 'starter' });
    const legacy = { org_id: orgId, seq: 1000, type: 'charge', amount: -1, note: 'written before the outbox was slim' };
    await db.query(`INSERT INTO ledger_outbox (org_id, seq, payload) VALUES ($1, 1000, $2)`, [orgId, JSON.stringify(legacy)]);
    const outbox = await db.query(`SELECT seq, payload FROM ledger_outbox WHERE org_id = $1 ORDER BY seq`, [orgId]);
    // The entries the org was opened with: their outbox rows carry no copy.
    expect(outbox.rows.filter((r: { payload: unknown }) => r.payload === null).length).toBeGreaterThan(0);

    const sent: OutgoingMessage[] = [];
    const publisher: Publisher = {
      publish: async (topic, messages) => {
        expect(topic).toBe(Topics.Ledger);
        sent.push(...messages);
      },
      close: async () => undefined,
    };
    const relay = new LedgerOutboxRelay(ds, publisher);
    for (let i = 0; i < 50 && Number((await db.query(`SELECT count(*) AS n FROM ledger_outbox WHERE org_id = $1`, [orgId])).rows[0].n) > 0; i++) {
      await relay.runOnce();
    }

    const mine = sent.filter((m) => m.key === orgId).map((m) => JSON.parse(String(m.value)) as Record<string, unknown>);
    const entries = await db.query(
      `SELECT org_id, seq, type, amount, balance_after, cause, occurred_at, recorded_at, bucket_id, detail FROM ledger_entries WHERE org_id = $1 ORDER BY seq`,
      [orgId],
    );
    const asJson = entries.rows.map((e: Record<string, unknown>) => ({
      ...e,
      seq: Number(e.seq),
      amount: Number(e.amount),
      balance_after: Number(e.balance_after),
      occurred_at: (e.occurred_at as Date).toISOString(),
      recorded_at: (e.recorded_at as Date).toISOString(),
    }));
    const published = mine.map((m) => (m.seq === 1000 ? m : { ...m, occurred_at: new Date(m.occurred_at as string).toISOString(), recorded_at: new Date(m.recorded_at as string).toISOString() }));
    expect(published).toEqual([...asJson, legacy]);
    expect(Number((await db.query(`SELECT count(*) AS n FROM ledger_outbox WHERE org_id = $1`, [orgId])).rows[0].n)).toBe(0);
  });
});
