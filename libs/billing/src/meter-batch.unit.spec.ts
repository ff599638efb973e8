import { RequestCompletedV1 } from '@tollgate/contracts';
import { evolve, reserve } from './index';
import { HeldReservation } from './meter-event';
import { meterBatch, MeterState, reservationKey, RoutePricing } from './meter-batch';
import { AccountHistory, deepFreeze, plans, utc } from './testing/account-builder';
import { Account, LedgerEntryDraft, Pricing } from './types';

const jan20 = utc('2026-01-20T10:00:00Z');
const at = (s: number) => new Date(jan20 + s * 1000).toISOString();

let ids = 0;
function event(org: string, o: Partial<RequestCompletedV1> = {}): RequestCompletedV1 {
  ids++;
  return {
    event_id: `ev-${ids}`,
    schema_version: 1,
    occurred_at: at(ids),
    api_key_id: null,
    subject: { kind: 'key', id: 'k' },
    profile: 'trackyard',
    method: 'POST',
    route: '/search',
    path: '/api/external/v1/search',
    status_code: 200,
    response_time_ms: 5,
    entities: [],
    reservation_id: null,
    ...o,
  } as RequestCompletedV1;
}

const routes: Record<string, Pricing> = {
  'POST /search': { kind: 'fixed', credits: 1 },
  'GET /companies': { kind: 'per_entity', reaccessDays: 30 },
  'GET /health': { kind: 'free' },
};
const pricing: RoutePricing = (e) => routes[`${e.method} ${e.route}`] ?? null;

function opened(org: string): Account {
  return AccountHistory.opened(plans.starter, jan20 - 86_400_000, org).account;
}

function state(o: Partial<MeterState> & { accounts: MeterState['accounts'] }): MeterState {
  return deepFreeze({ reservations: new Map(), givenBack: new Set(), windows: new Map(), pending: [], ...o });
}

/** The state as plain data, to compare before and after (the Maps' contents included). */
function snapshot(s: MeterState): string {
  const windows = [...s.windows].map(([org, w]) => [org, [...w]]);
  return JSON.stringify({ accounts: [...s.accounts], reservations: [...s.reservations], givenBack: [...s.givenBack], windows, pending: s.pending });
}

/** Every entry of `org` in the batch, folded onto its account before: must give the account the batch returned. */
function foldsTo(before: Account, entries: LedgerEntryDraft[], after: Account): void {
  const mine = entries.filter((e) => e.orgId === before.orgId);
  expect(mine.reduce((acc, e) => evolve(acc, e), before)).toEqual(after);
  expect(after.balance).toBe(before.balance + mine.reduce((s, e) => s + e.amount, 0));
}

describe('meterBatch', () => {
  it('meters a batch of two orgs: each account once, seqs gapless, the state untouched', () => {
    const a = opened('org_a');
    const b = opened('org_b');
    const s = state({ accounts: new Map([['org_a', { account: a, profile: 'trackyard' }], ['org_b', { account: b, profile: 'trackyard' }]]) });
    const before = snapshot(s);
    const events = [event('org_a', { org_id: 'org_a' }), event('org_b', { org_id: 'org_b' }), event('org_a', { org_id: 'org_a' }), event('org_a', { org_id: 'org_a', status_code: 500 })];
    const out = meterBatch(s, events, pricing);
    expect(out.refused).toEqual([]);
    expect(out.accounts.map((x) => x.orgId)).toEqual(['org_a', 'org_b']);
    expect(out.usage.map((u) => [u.orgId, u.credits, u.costReason])).toEqual([
      ['org_a', 1, 'charged'],
      ['org_b', 1, 'charged'],
      ['org_a', 1, 'charged'],
      ['org_a', 0, 'free_status'],
    ]);
    expect(out.credits).toBe(3);
    foldsTo(a, out.entries, out.accounts[0]!);
    foldsTo(b, out.entries, out.accounts[1]!);
    expect(out.accounts[0]!.balance).toBe(a.balance - 2);
    expect(snapshot(s)).toEqual(before);
  });

  it('refuses unknown orgs, another profile and unknown routes by index, and meters the rest', () => {
    const a = opened('org_a');
    const s = state({ accounts: new Map([['org_a', { account: a, profile: 'trackyard' }]]) });
    const events = [
      event('x', { org_id: 'org_missing' }),
      event('x', { org_id: 'org_a', profile: 'trace' }),
      event('x', { org_id: 'org_a', route: '/nowhere' }),
      event('x', { org_id: 'org_a', occurred_at: 'not a date' }),
      event('x', { org_id: 'org_a' }),
    ];
    const out = meterBatch(s, events, pricing);
    expect(out.refused.map((r) => r.index)).toEqual([0, 1, 2, 3]);
    expect(out.refused[0]!.reason).toContain('unknown org_id');
    expect(out.refused[1]!.reason).toContain('does not match');
    expect(out.refused[2]!.reason).toContain('is not in profile');
    expect(out.refused[3]!.reason).toContain('cannot be metered');
    expect(out.usage.map((u) => u.eventId)).toEqual([events[4]!.event_id]);
  });

  it('settles a hold once: a second event naming it is charged on its own', () => {
    const held = reserve(opened('org_a'), 'r1', 1, jan20);
    deepFreeze(held.decided.account);
    const hold: HeldReservation = { id: 'r1', credits: 1, allocation: held.allocation, lease: null };
    const s = state({
      accounts: new Map([['org_a', { account: held.decided.account, profile: 'trackyard' }]]),
      reservations: new Map([[reservationKey('org_a', 'r1'), hold]]),
    });
    const before = snapshot(s);
    const out = meterBatch(s, [event('x', { org_id: 'org_a', reservation_id: 'r1' }), event('x', { org_id: 'org_a', reservation_id: 'r1' })], pricing);
    expect(out.settled).toEqual([{ orgId: 'org_a', id: 'r1', by: `event:ev-${ids - 1}` }]);
    // The first is paid by its hold (no entry); the second is a charge of its own.
    expect(out.entries.map((e) => [e.type, e.amount, e.cause])).toEqual([['charge', -1, `event:ev-${ids}`]]);
    expect(out.accounts[0]!.balance).toBe(held.decided.account.balance - 1);
    expect(snapshot(s)).toEqual(before);
  });

  it('draws on a lease in arrival order and reports each lease once with what it spent', () => {
    const leased = reserve(opened('org_a'), 'l1', 2, jan20);
    deepFreeze(leased.decided.account);
    const lease: HeldReservation = { id: 'l1', credits: 2, allocation: leased.allocation, lease: { spent: 0, returned: 0, takenAt: jan20 } };
    const s = state({
      accounts: new Map([['org_a', { account: leased.decided.account, profile: 'trackyard' }]]),
      reservations: new Map([[reservationKey('org_a', 'l1'), lease]]),
    });
    const events = [1, 2, 3].map(() => event('x', { org_id: 'org_a', reservation_id: 'l1' }));
    const out = meterBatch(s, events, pricing);
    expect(out.leases).toEqual([{ orgId: 'org_a', id: 'l1', spent: 2 }]);
    expect(out.usage.map((u) => u.leaseId)).toEqual(['l1', 'l1', null]);
    // Two paid from the lease (no entry), the third charged on its own: the lease held 2.
    expect(out.entries.map((e) => e.amount)).toEqual([-1]);
    expect(out.settled).toEqual([]);
    expect(lease.lease!.spent).toBe(0);
  });

  it("prices entities against the windows, the batch's own charges and other calls' pending holds; one window row each", () => {
    const a = opened('org_a');
    const windows = new Map([['org_a', new Map([['c_old', jan20 - 86_400_000]])]]);
    const s = state({
      accounts: new Map([['org_a', { account: a, profile: 'trackyard' }]]),
      windows,
      pending: [{ id: 'r_other', orgId: 'org_a', entities: ['c_held'], occurredAt: jan20 }],
    });
    const before = snapshot(s);
    const call = (entities: string[]) => event('x', { org_id: 'org_a', method: 'GET', route: '/companies', entities });
    const out = meterBatch(s, [call(['c_old', 'c_new']), call(['c_new']), call(['c_held'])], pricing);
    expect(out.usage.map((u) => [u.credits, u.costReason, u.chargedEntities])).toEqual([
      [1, 'partly_reaccess', ['c_new']],
      [0, 'free_reaccess', []],
      [0, 'free_reaccess', []],
    ]);
    expect(out.windows).toEqual([{ orgId: 'org_a', entityId: 'c_new', at: Date.parse(out.usage[0]!.occurredAt) }]);
    expect(snapshot(s)).toEqual(before);
    expect(windows.get('org_a')!.size).toBe(1);
  });

  it('charges nothing for a call whose hold the gateway gave back', () => {
    const a = opened('org_a');
    const s = state({ accounts: new Map([['org_a', { account: a, profile: 'trackyard' }]]), givenBack: new Set([reservationKey('org_a', 'gone')]) });
    const out = meterBatch(s, [event('x', { org_id: 'org_a', reservation_id: 'gone' })], pricing);
    expect(out.usage.map((u) => [u.credits, u.costReason])).toEqual([[0, 'given_back']]);
    expect(out.entries).toEqual([]);
    expect(out.credits).toBe(0);
  });
});
