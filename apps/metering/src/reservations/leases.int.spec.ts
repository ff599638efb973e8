import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { RequestCompletedV1 } from '@tollgate/contracts';
import { leasedUnspentSql, ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { CheckNames, runAudit } from '@tollgate/operations';
import { connectDatabase } from '@tollgate/persistence';
import { AdminService } from '../admin/admin.service';
import { ReservationService } from './reservation.service';

/**
 * Credit leases at metering (SPEC §4), real PostgreSQL: granting (a hold of a block, never more than a quarter of
 * the balance, none near zero or past the month), spending (events naming the lease are paid from it, no entry of
 * their own), ending early (EndLease gives back what was not drawn), closing (what the calls did not spend comes
 * back), and the audit's `leases` check agreeing at every step.
 */
describe('credit leases at metering (real PostgreSQL)', () => {
  const catalog = ProfileCatalog.load('trackyard');
  const utc = (iso: string) => Date.parse(iso);
  const jan15 = utc('2026-01-15T10:00:00Z');
  let ds: DataSource;
  let now = jan15;
  let reservations: ReservationService;
  let offset = 0;
  const topic = `leases-test-${uuidv7()}`;
  const groupId = `leases-test-${uuidv7()}`;

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 4 });
    reservations = new ReservationService(ds, catalog, () => now);
  });

  afterAll(async () => {
    await ds?.destroy();
  });

  beforeEach(() => {
    now = jan15;
  });

  async function orgWith(plan: string): Promise<string> {
    const org = `lease-${uuidv7()}`;
    await new AdminService(ds, catalog, () => jan15).createOrg({ id: org, name: org, plan });
    return org;
  }

  const lease = (org: string, wanted: number, at = now, minimum = 2) =>
    reservations.reserve({ reservationId: `lease_t_${uuidv7()}`, orgId: org, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: at, lease: { wanted, minimum, gateway: 'gw-test' } });

  /** Meters events through the real consumer (a batch handed in directly: no broker needed). */
  async function meter(org: string, calls: Array<{ reservationId: string | null; status?: number; at?: number }>) {
    const messages = calls.map((c) => {
      const event: RequestCompletedV1 = {
        event_id: uuidv7(), schema_version: 1, occurred_at: new Date(c.at ?? now).toISOString(), org_id: org, api_key_id: null,
        subject: { kind: 'key', id: 'k' }, profile: 'trackyard', method: 'POST', route: '/search', path: '/api/external/v1/search',
        status_code: c.status ?? 200, response_time_ms: 5, entities: [], reservation_id: c.reservationId,
      };
      return { offset: String(offset++), key: Buffer.from(org), value: Buffer.from(JSON.stringify(event)), headers: {} };
    });
    const consumer = new RequestCompletedConsumer(ds, catalog, { groupId, clock: () => now });
    await consumer.handle({ topic, partition: 0, nextOffset: String(offset), messages });
  }

  async function ledger(org: string) {
    const rows: Array<{ type: string; amount: string; detail: Record<string, unknown> }> = await ds.query(`SELECT type, amount, detail FROM ledger_entries WHERE org_id = $1 ORDER BY seq`, [org]);
    return rows.map((r) => [r.type, Number(r.amount)] as const);
  }

  const balance = async (org: string) => Number((await ds.query(`SELECT balance FROM accounts WHERE org_id = $1`, [org]))[0].balance);
  const shown = async (org: string) => Number((await ds.query(`SELECT a.balance + ${leasedUnspentSql('a.org_id')} AS n FROM accounts a WHERE a.org_id = $1`, [org]))[0].n);
  const row = async (org: string, id: string) =>
    (await ds.query(`SELECT status, credits::int, spent::int, returned::int, kind, lease_ms, gateway FROM reservations WHERE org_id = $1 AND id = $2`, [org, id]))[0];
  const usage = async (org: string) => (await ds.query(`SELECT credits::int, lease_id, cost_reason FROM usage_records WHERE org_id = $1 ORDER BY id`, [org])) as Array<{ credits: number; lease_id: string | null; cost_reason: string }>;
  // Every check but those about the clock and the broker (this test's clock is January 2026).
  const audit = async (org: string) =>
    (await runAudit(ds, { orgs: [org], holdGraceSeconds: 120, group: groupId, checks: new Set(CheckNames.filter((c) => c !== 'offsets' && c !== 'append-only' && c !== 'stale-holds')) }, { broker: null })).violations;

  it('grants a lease as one hold of a block, pays the calls drawn from it without an entry each, and closes it giving the rest back', async () => {
    const org = await orgWith('starter');
    const granted = await lease(org, 40);
    expect(granted).toMatchObject({ granted: true, requested: 40, leaseCredits: 40, leaseMs: 5000, balance: 460 });
    expect(await row(org, granted.reservationId)).toMatchObject({ status: 'held', kind: 'lease', credits: 40, spent: 0, returned: 0, lease_ms: 5000, gateway: 'gw-test' });
    expect(await shown(org)).toBe(500); // leased, not spent: still the org's

    await meter(org, [{ reservationId: granted.reservationId }, { reservationId: granted.reservationId }, { reservationId: granted.reservationId, status: 502 }]);
    expect(await row(org, granted.reservationId)).toMatchObject({ spent: 2 });
    expect((await usage(org)).map((u) => [u.credits, u.lease_id])).toEqual([
      [1, granted.reservationId],
      [1, granted.reservationId],
      [0, null],
    ]);
    expect(await ledger(org)).toEqual([['grant', 500], ['lease', -40]]);
    expect(await shown(org)).toBe(498);
    expect(await audit(org)).toEqual([]);

    // The sweeper's release (what its calls did not spend comes back).
    now += 10_000;
    expect(await reservations.release(granted.reservationId, org, 'expired')).toBe(true);
    expect(await ledger(org)).toEqual([['grant', 500], ['lease', -40], ['release', 38]]);
    expect(await balance(org)).toBe(498);
    expect(await shown(org)).toBe(498);
    expect(await audit(org)).toEqual([]);
  });

  it('EndLease gives back at once what the gateway did not draw; the calls in flight are still paid from the lease', async () => {
    const org = await orgWith('starter');
    const granted = await lease(org, 100);
    expect(await reservations.endLease(granted.reservationId, org, 3)).toBe(97);
    expect(await reservations.endLease(granted.reservationId, org, 3)).toBe(0); // idempotent
    expect(await balance(org)).toBe(497);
    await meter(org, [{ reservationId: granted.reservationId }, { reservationId: granted.reservationId }]);
    expect(await row(org, granted.reservationId)).toMatchObject({ spent: 2, returned: 97 });
    expect(await shown(org)).toBe(498);
    expect(await audit(org)).toEqual([]);
    await reservations.release(granted.reservationId, org, 'expired');
    expect(await ledger(org)).toEqual([['grant', 500], ['lease', -100], ['release', 97], ['release', 1]]);
    expect(await balance(org)).toBe(498);
    expect(await audit(org)).toEqual([]);
  });

  it('give-backs arriving together go in one batch, each decided against what the ones before it left: an EndLease and its lease\'s release, a hold, a repeat, an unknown id, several orgs', async () => {
    const [a, b] = [await orgWith('starter'), await orgWith('starter')];
    const leaseA = await lease(a, 100);
    const leaseB = await lease(b, 40);
    const hold = await reservations.reserve({ reservationId: `hold_t_${uuidv7()}`, orgId: b, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: now });
    expect([leaseA.granted, leaseB.granted, hold.granted]).toEqual([true, true, true]);
    await meter(a, [{ reservationId: leaseA.reservationId }, { reservationId: leaseA.reservationId }]);
    now += 10_000;
    // Issued in one turn of the event loop: one group commit.
    const outcomes = await Promise.all([
      reservations.endLease(leaseA.reservationId, a, 5), // 100 - 5 drawn = 95 back
      reservations.release(leaseA.reservationId, a, 'expired'), // then the 3 drawn but not spent
      reservations.release(leaseA.reservationId, a, 'expired'), // already closed
      reservations.endLease(leaseB.reservationId, b, 40), // all drawn: nothing back
      reservations.release(hold.reservationId, b),
      reservations.release('no-such-hold', b),
      reservations.endLease(hold.reservationId, b, 0), // a hold is not a lease (and it is closed by then)
    ]);
    expect(outcomes).toEqual([95, true, false, 0, true, false, 0]);
    expect(await ledger(a)).toEqual([['grant', 500], ['lease', -100], ['release', 95], ['release', 3]]);
    expect(await row(a, leaseA.reservationId)).toMatchObject({ status: 'expired', spent: 2, returned: 95 });
    expect(await ledger(b)).toEqual([['grant', 500], ['lease', -40], ['reservation', -1], ['release', 1]]);
    expect(await row(b, hold.reservationId)).toMatchObject({ status: 'released' });
    expect([await balance(a), await balance(b)]).toEqual([498, 460]);
    expect(await audit(a)).toEqual([]);
    expect(await audit(b)).toEqual([]);
  });

  it('an event the lease can no longer cover is charged on its own (a lease never pays more than it holds)', async () => {
    const org = await orgWith('starter');
    const granted = await lease(org, 2);
    await reservations.endLease(granted.reservationId, org, 1); // the gateway says it drew 1
    // A second call's event arrives anyway (its give-back raced a lost acknowledgement): charged, not from the lease.
    await meter(org, [{ reservationId: granted.reservationId }, { reservationId: granted.reservationId }]);
    expect((await usage(org)).map((u) => [u.credits, u.lease_id])).toEqual([
      [1, granted.reservationId],
      [1, null],
    ]);
    expect(await ledger(org)).toEqual([['grant', 500], ['lease', -2], ['release', 1], ['charge', -1]]);
    expect(await audit(org)).toEqual([]);
  });

  it('takes at most a quarter of the balance, and refuses near zero (the gateway then holds per call)', async () => {
    const org = await orgWith('free'); // 50 one-time credits
    expect(await lease(org, 1000)).toMatchObject({ granted: true, leaseCredits: 12 });
    expect(await lease(org, 1000)).toMatchObject({ granted: true, leaseCredits: 9 });
    const small = await orgWith('free');
    await meter(small, Array.from({ length: 44 }, () => ({ reservationId: null })));
    expect(await balance(small)).toBe(6);
    expect(await lease(small, 100)).toMatchObject({ granted: false, leaseCredits: 0, leaseMs: 0, balance: 6 });
    expect(await ledger(small)).toHaveLength(45);
  });

  it('a plan change while a lease is open: its calls are still paid from it, its rest comes back, the books stay exact', async () => {
    const org = await orgWith('starter');
    const granted = await lease(org, 100);
    const admin = new AdminService(ds, catalog, () => now);
    await admin.changePlan(org, { plan: 'pro' });
    const afterUpgrade = await shown(org);
    await meter(org, [{ reservationId: granted.reservationId }, { reservationId: granted.reservationId }, { reservationId: granted.reservationId }]);
    expect((await usage(org)).every((u) => u.lease_id === granted.reservationId)).toBe(true);
    expect(await shown(org)).toBe(afterUpgrade - 3);
    await admin.changePlan(org, { plan: 'free' });
    const afterDowngrade = await shown(org);
    now += 10_000;
    await reservations.release(granted.reservationId, org, 'expired');
    expect(await shown(org)).toBe(afterDowngrade);
    expect(await balance(org)).toBe(afterDowngrade);
    expect(await audit(org)).toEqual([]);
  });

  it('never lives past its month, and a call of the next month is paid by that month\'s credits, not the lease', async () => {
    const org = await orgWith('starter');
    const late = utc('2026-01-31T23:59:58Z');
    now = late;
    const granted = await lease(org, 10, late);
    expect(granted).toMatchObject({ granted: true, leaseMs: 2000 });
    expect(await lease(org, 10, utc('2026-01-31T23:59:59.500Z'))).toMatchObject({ granted: false }); // under a second left
    // A gateway whose clock runs ahead dates a call drawn from it in February: February's allowance pays.
    now = utc('2026-02-01T00:00:01Z');
    await meter(org, [{ reservationId: granted.reservationId, at: now }]);
    expect((await usage(org)).map((u) => u.lease_id)).toEqual([null]);
    const entries = await ledger(org);
    expect(entries.slice(2)).toEqual([['expiry', -490], ['grant', 500], ['charge', -1]]);
    await reservations.release(granted.reservationId, org, 'expired');
    expect(await balance(org)).toBe(499);
    expect(await audit(org)).toEqual([]);
  });
});
