import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { RequestCompletedV1 } from '@tollgate/contracts';
import { connectDatabase } from '@tollgate/persistence';
import { AdminService } from '../admin/admin.service';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { ReservationService } from '../reservations/reservation.service';

/**
 * SPEC §6: monthly resets follow occurred_at. A sweeper's release or an operator's grant just after midnight on
 * the 1st happens on a wall clock, not at a call's instant: it must not start the new month, or a call made on
 * the 31st whose event arrives after it would be charged from the new month's allowance.
 */
describe('month rollover follows events, not the wall clock (real PostgreSQL)', () => {
  let ds: DataSource;
  const catalog = ProfileCatalog.load('trackyard');
  const utc = (iso: string) => Date.parse(iso);
  const jan15 = utc('2026-01-15T10:00:00Z');
  const jan31 = utc('2026-01-31T23:59:50Z');
  const feb1 = utc('2026-02-01T00:00:05Z');
  const groupId = `month-rollover-${uuidv7()}`;

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 2 });
  });

  afterAll(async () => {
    await ds?.destroy();
  });

  const orgId = () => `rollover-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;

  async function ledger(org: string) {
    const rows: Array<{ type: string; amount: string; bucket_id: string | null }> = await ds.query(
      `SELECT type, amount, bucket_id FROM ledger_entries WHERE org_id = $1 ORDER BY seq`,
      [org],
    );
    return rows.map((r) => [r.type, Number(r.amount), r.bucket_id]);
  }

  let nextOffset = 0;

  /** Meters one event dated `at` through the real consumer (no broker needed: a batch handed in directly). */
  async function meter(org: string, at: number, now: number, reservationId: string | null = null) {
    const event: RequestCompletedV1 = {
      event_id: uuidv7(), schema_version: 1, occurred_at: new Date(at).toISOString(), org_id: org, api_key_id: null,
      subject: { kind: 'key', id: 'k' }, profile: 'trackyard', method: 'POST', route: '/search', path: '/api/external/v1/search',
      status_code: 200, response_time_ms: 5, entities: [], reservation_id: reservationId,
    };
    const consumer = new RequestCompletedConsumer(ds, catalog, { groupId, clock: () => now });
    // Each batch at the next offset: the consumer's fence drops what lies below the offset it stored.
    const offset = nextOffset++;
    await consumer.handle({ topic: 'month-rollover-test', partition: 0, nextOffset: String(offset + 1), messages: [{ offset: String(offset), key: Buffer.from(org), value: Buffer.from(JSON.stringify(event)), headers: {} }] });
  }

  it('a hold released by timeout at 00:00:05 on the 1st writes no reset: the 31st\'s late event is charged from January\'s allowance', async () => {
    const org = orgId();
    await new AdminService(ds, catalog, () => jan15).createOrg({ id: org, name: org, plan: 'starter' });
    const reservations = new ReservationService(ds, catalog, () => jan31);
    const held = await reservations.reserve({ reservationId: uuidv7(), orgId: org, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: jan31 });
    expect(held.granted).toBe(true);

    const sweeperAtFeb1 = new ReservationService(ds, catalog, () => feb1);
    expect(await sweeperAtFeb1.release(held.reservationId, org, 'expired')).toBe(true);
    await meter(org, jan31 + 1000, feb1);

    expect(await ledger(org)).toEqual([
      ['grant', 500, 'allowance:2026-01'],
      ['reservation', -1, 'allowance:2026-01'],
      ['release', 1, 'allowance:2026-01'],
      ['charge', -1, 'allowance:2026-01'],
    ]);
  });

  it('an operator grant at 00:00:05 on the 1st writes no reset: the 31st\'s late event is charged from January\'s allowance', async () => {
    const org = orgId();
    await new AdminService(ds, catalog, () => jan15).createOrg({ id: org, name: org, plan: 'starter' });
    await new AdminService(ds, catalog, () => feb1).grantCredits(org, { amount: 10, reason: 'goodwill', idempotency_key: `g-${org}` });
    await meter(org, jan31, feb1);
    await meter(org, feb1 + 60_000, feb1 + 60_000);

    expect(await ledger(org)).toEqual([
      ['grant', 500, 'allowance:2026-01'],
      ['top_up', 10, `top_up:g-${org}`],
      ['charge', -1, 'allowance:2026-01'],
      // The first event dated February: January's rest expires, February's allowance is granted, then charged.
      ['expiry', -499, 'allowance:2026-01'],
      ['grant', 500, 'allowance:2026-02'],
      ['charge', -1, 'allowance:2026-02'],
    ]);
  });
});
