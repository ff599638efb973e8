import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { IncomingBatch, OutgoingMessage, Publisher } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { requestCompleted } from '../../../../test/support/kafka';
import { AdminService } from '../admin/admin.service';
import { LedgerOutboxRelay } from '../outbox/ledger-outbox-relay';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { ReservationService } from '../reservations/reservation.service';

/**
 * Issue 10: the org-owned tables can be distributed by org_id (Citus) without a change of meaning. Every key
 * leads with org_id, an event or a reservation is its id within its org, and the ledger topic keeps each org's
 * order, not a global one.
 */
describe('keys scoped by org (real PostgreSQL)', () => {
  let ds: DataSource;
  let db: Client;
  const catalog = ProfileCatalog.load('trackyard');

  /** The tables distributed by org_id (README, "Distributing by org"). */
  const distributed = ['accounts', 'admin_commands', 'ledger_entries', 'ledger_outbox', 'reaccess_windows', 'reservations', 'usage_records', 'usage_totals'];

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 4 });
    db = new Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
  });

  afterAll(async () => {
    await db?.end();
    await ds?.destroy();
  });

  const uid = (p: string) => `${p}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  const newOrg = async () => (await new AdminService(ds, catalog).createOrg({ id: uid('org'), name: 'keys test', plan: 'starter' })).id;

  function batchOf(topic: string, first: number, values: string[]): IncomingBatch {
    return {
      topic,
      partition: 0,
      messages: values.map((v, i) => ({ offset: String(first + i), key: Buffer.from('key'), value: Buffer.from(v), headers: {} })),
      nextOffset: String(first + values.length),
    };
  }

  const usageOf = async (orgId: string) =>
    (await db.query(`SELECT event_id FROM usage_records WHERE org_id = $1 ORDER BY id`, [orgId])).rows.map((r: { event_id: string }) => r.event_id);
  const chargedOf = async (orgId: string) =>
    Number((await db.query(`SELECT COALESCE(-SUM(amount), 0) AS n FROM ledger_entries WHERE org_id = $1 AND type IN ('charge', 'reservation', 'release')`, [orgId])).rows[0].n);

  it('every primary key and unique constraint of the org-owned tables leads with org_id', async () => {
    const { rows } = await db.query<{ table: string; name: string; kind: string; first: string }>(
      `SELECT c.conrelid::regclass::text AS table, c.conname AS name, c.contype AS kind, a.attname AS first
         FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype IN ('p', 'u') AND c.conrelid::regclass::text = ANY($1::text[])`,
      [distributed],
    );
    // Unique indexes that are not constraints bind a distributed table just the same.
    const { rows: indexes } = await db.query<{ table: string; name: string; first: string }>(
      `SELECT i.indrelid::regclass::text AS table, i.indexrelid::regclass::text AS name, a.attname AS first
         FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indisunique AND i.indrelid::regclass::text = ANY($1::text[])`,
      [distributed],
    );
    // Every table has its primary key, and nothing unique leads with anything but org_id.
    expect([...new Set(rows.filter((r) => r.kind === 'p').map((r) => r.table))].sort()).toEqual([...distributed].sort());
    expect(rows.filter((r) => r.first !== 'org_id')).toEqual([]);
    expect(indexes.filter((r) => r.first !== 'org_id')).toEqual([]);
    // The idempotency keys in particular.
    const defs = (await db.query<{ def: string }>(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid IN ('usage_records'::regclass, 'reservations'::regclass, 'ledger_outbox'::regclass)`,
    )).rows.map((r) => r.def);
    expect(defs).toEqual(expect.arrayContaining(['UNIQUE (org_id, event_id)', 'PRIMARY KEY (org_id, id)', 'UNIQUE (org_id, seq)']));
  });

  it('an event id used by two orgs is two events, each metered for its org, while a redelivery under the same org is metered once', async () => {
    const [a, b] = [await newOrg(), await newOrg()];
    const consumer = new RequestCompletedConsumer(ds, catalog, { groupId: uid('group') });
    const topic = uid('keys');
    const shared = uuidv7();
    const ofA = JSON.stringify(requestCompleted({ org_id: a, event_id: shared }));
    const ofB = JSON.stringify(requestCompleted({ org_id: b, event_id: shared }));

    // In one batch: A's event, B's event with the same id, A's again (a redelivery).
    await consumer.handle(batchOf(topic, 0, [ofA, ofB, ofA]));
    // In later batches: both again (a republish, a restart after the commit).
    await consumer.handle(batchOf(topic, 3, [ofB]));
    await consumer.handle(batchOf(topic, 4, [ofA, ofB]));

    expect(await usageOf(a)).toEqual([shared]);
    expect(await usageOf(b)).toEqual([shared]);
    expect(await chargedOf(a)).toBe(1);
    expect(await chargedOf(b)).toBe(1);
  });

  it('a reservation id used by two orgs is two holds, each settled by its own org\'s event and released by its own org only', async () => {
    const [a, b] = [await newOrg(), await newOrg()];
    const reservations = new ReservationService(ds, catalog);
    const id = uuidv7();
    const hold = (orgId: string) => reservations.reserve({ reservationId: id, orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: Date.now() });
    expect(await hold(a)).toMatchObject({ granted: true, balance: 499 });
    expect(await hold(b)).toMatchObject({ granted: true, balance: 499 });
    // A retried Reserve of A gets A's hold back, not a second one.
    expect(await hold(a)).toMatchObject({ granted: true, balance: 499 });

    // A's event settles A's hold; B's hold with the same id stays held.
    const consumer = new RequestCompletedConsumer(ds, catalog, { groupId: uid('group') });
    await consumer.handle(batchOf(uid('keys'), 0, [JSON.stringify(requestCompleted({ org_id: a, reservation_id: id }))]));
    const status = async (orgId: string) => (await db.query(`SELECT status FROM reservations WHERE org_id = $1 AND id = $2`, [orgId, id])).rows[0]?.status;
    expect(await status(a)).toBe('settled');
    expect(await status(b)).toBe('held');

    // Releasing B's gives back B's credits; A's settled hold is untouched, and a second release is a no-op.
    expect(await reservations.release(id, b)).toBe(true);
    expect(await reservations.release(id, b)).toBe(false);
    expect(await status(a)).toBe('settled');
    expect(await status(b)).toBe('released');
    expect(await reservations.balance(a)).toBe(499);
    expect(await reservations.balance(b)).toBe(500);
  });

  it('the ledger relay publishes each org\'s entries in seq order, whatever order their ids are in, and every cut is a prefix per org', async () => {
    // Drain what earlier tests left, so this test sees only its own rows.
    const sink: OutgoingMessage[] = [];
    const publisher: Publisher = {
      publish: async (_topic, messages) => void sink.push(...messages),
      close: async () => undefined,
    };
    const relay = new LedgerOutboxRelay(ds, publisher, 200, 5);
    while ((await relay.runOnce()) > 0) {
      /* drain */
    }
    sink.length = 0;

    // Three orgs, ids deliberately against seq order (on a distributed database ids need not follow seq).
    const orgs = [uid('outbox'), uid('outbox'), uid('outbox')];
    const rows = orgs.flatMap((org, o) => [1, 2, 3, 4].map((seq) => ({ org, seq, id: 1_000_000_000 + o * 10 + (10 - seq) })));
    await db.query(
      `INSERT INTO ledger_outbox (id, org_id, seq, payload)
       SELECT id, org_id, seq, jsonb_build_object('org_id', org_id, 'seq', seq) FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS t(id, org_id, seq)`,
      [rows.map((r) => r.id), rows.map((r) => r.org), rows.map((r) => r.seq)],
    );

    // A batch of 5 over three orgs: cut mid-way, every org still gets a prefix of its entries.
    expect(await relay.runOnce()).toBe(5);
    const firstCut = new Map<string, number[]>();
    for (const m of sink) firstCut.set(m.key, [...(firstCut.get(m.key) ?? []), Number(m.headers?.seq)]);
    for (const seqs of firstCut.values()) expect(seqs).toEqual([1, 2, 3, 4].slice(0, seqs.length));

    while ((await relay.runOnce()) > 0) {
      /* drain */
    }
    for (const org of orgs) expect(sink.filter((m) => m.key === org).map((m) => Number(m.headers?.seq))).toEqual([1, 2, 3, 4]);
    expect(Number((await db.query(`SELECT count(*) AS n FROM ledger_outbox WHERE org_id = ANY($1)`, [orgs])).rows[0].n)).toBe(0);
  });
});
