import { deriveFromEntries, deriveFromRefusal, initialState, LedgerEntryView, messageBody, NoThresholds } from './notifications';

const below = (...creditsBelow: number[]) => ({ creditsBelow, allowanceUsedPercent: [] });
const used = (...allowanceUsedPercent: number[]) => ({ creditsBelow: [], allowanceUsedPercent });

let seq = 0;
function entry(type: string, amount: number, balanceAfter: number, extra: Partial<LedgerEntryView> = {}): LedgerEntryView {
  seq += 1;
  return { seq, type, amount, balanceAfter, occurredAt: 1_000 + seq, recordedAt: 2_000 + seq, bucketId: null, cause: 'c', ...extra };
}

describe('notifications derived from ledger entries', () => {
  beforeEach(() => (seq = 0));

  it('credits.low once when the balance goes below a threshold, not again while it stays spent', () => {
    const entries = [entry('grant', 100, 100), entry('reservation', -5, 95), entry('release', 5, 100), entry('reservation', -5, 95), entry('charge', -10, 85)];
    const r = deriveFromEntries('acme', initialState(), entries, below(98, 90));
    expect(r.notifications.filter((n) => n.type === 'credits.low').map((n) => [n.data.threshold, n.data.seq])).toEqual([[98, 2], [90, 5]]);
    expect(r.state).toMatchObject({ seq: 5, balance: 85, firedBelow: [90, 98] });
  });

  it('a grant that leaves the balance at or above a spent threshold re-arms it; a hold given back does not', () => {
    const s0 = { ...initialState(), seq: 3, balance: 50, firedBelow: [60] };
    const released = deriveFromEntries('acme', s0, [entry('release', 20, 70), entry('charge', -20, 50)], below(60));
    expect(released.notifications).toEqual([]);
    const granted = deriveFromEntries('acme', s0, [entry('top_up', 20, 70), entry('charge', -20, 50)], below(60));
    expect(granted.notifications.map((n) => n.type)).toEqual(['credits.granted', 'credits.low']);
  });

  it('one event per crossing in one batch, however many entries cross at once (thresholds highest first)', () => {
    const r = deriveFromEntries('acme', { ...initialState(), balance: 100 }, [entry('charge', -100, 0)], below(10, 50));
    expect(r.notifications.map((n) => n.data.threshold)).toEqual([50, 10]);
  });

  it('names allowance.reset, credits.granted and credits.expired from the entry types', () => {
    const r = deriveFromEntries('acme', initialState(), [
      entry('grant', 500, 500, { bucketId: 'allowance:2026-12' }),
      entry('grant', 50, 550, { bucketId: 'one_time:free' }),
      entry('top_up', 10, 560, { bucketId: 'top_up:k' }),
      entry('expiry', -10, 550, { bucketId: 'top_up:k' }),
    ], NoThresholds);
    expect(r.notifications.map((n) => [n.type, n.data.amount])).toEqual([
      ['allowance.reset', 500], ['credits.granted', 50], ['credits.granted', 10], ['credits.expired', 10],
    ]);
    expect(r.notifications[0]!.data).toMatchObject({ org_id: 'acme', month: '2026-12' });
    expect(JSON.parse(messageBody(r.notifications[0]!))).toEqual({ type: 'allowance.reset', timestamp: new Date(1001).toISOString(), data: expect.objectContaining({ org_id: 'acme' }) });
  });

  it('the same entries from the same state give the same message ids (a replay re-derives them)', () => {
    const entries = [entry('grant', 10, 10), entry('charge', -10, 0)];
    const a = deriveFromEntries('acme', initialState(), entries, below(5));
    const b = deriveFromEntries('acme', initialState(), entries, below(5));
    expect(a.notifications.map((n) => n.msgId)).toEqual(b.notifications.map((n) => n.msgId));
    expect(new Set(a.notifications.map((n) => n.msgId)).size).toBe(2);
  });

  it('allowance_used_percent: credits.low when the balance falls below what is left of the month\'s allowance, once per crossing, re-armed by the next reset', () => {
    const r = deriveFromEntries('acme', initialState(), [
      entry('grant', 500, 500, { bucketId: 'allowance:2026-11' }),
      entry('charge', -99, 401), // 19.8% used: not yet
      entry('charge', -2, 399), // below 400 = 20% used
      entry('release', 5, 404),
      entry('charge', -5, 399), // a release does not re-arm
      entry('charge', -300, 99), // below 250 (50%) and 100 (80%) in one entry, and below the absolute 120
    ], { creditsBelow: [120], allowanceUsedPercent: [80, 20, 50] });
    expect(r.notifications.filter((n) => n.type === 'credits.low').map((n) => [n.data.seq, n.data.threshold, n.data.allowance_used_percent ?? null])).toEqual([
      [3, 400, 20], [6, 250, 50], [6, 120, null], [6, 100, 80],
    ]);
    expect(r.state).toMatchObject({ allowance: 500, firedPercent: [20, 50, 80], firedBelow: [120] });
    // December's allowance (another amount) re-arms what it leaves the balance above; its percents are of 1000.
    const next = deriveFromEntries('acme', r.state, [
      entry('expiry', -99, 0, { bucketId: 'allowance:2026-11' }),
      entry('grant', 1000, 1000, { bucketId: 'allowance:2026-12' }),
      entry('charge', -201, 799),
    ], used(80, 20, 50));
    expect(next.notifications.filter((n) => n.type === 'credits.low').map((n) => [n.data.threshold, n.data.allowance])).toEqual([[800, 1000]]);
    expect(new Set([...r.notifications, ...next.notifications].map((n) => n.msgId)).size).toBe(r.notifications.length + next.notifications.length);
  });

  it('allowance_used_percent does nothing for an org without an allowance (one-time credits only)', () => {
    const r = deriveFromEntries('acme', initialState(), [entry('grant', 50, 50, { bucketId: 'one_time:free' }), entry('charge', -49, 1)], used(10));
    expect(r.notifications.map((n) => n.type)).toEqual(['credits.granted']);
  });

  it('credits.exhausted once per exhaustion, re-armed by credits added after the refusal', () => {
    const opened = deriveFromEntries('acme', initialState(), [entry('grant', 1, 1)], NoThresholds).state;
    const first = deriveFromRefusal('acme', opened, { eventId: 'e1', occurredAt: 5_000 });
    expect(first.notifications.map((n) => n.type)).toEqual(['credits.exhausted']);
    expect(deriveFromRefusal('acme', first.state, { eventId: 'e2', occurredAt: 6_000 }).notifications).toEqual([]);
    const regranted = deriveFromEntries('acme', first.state, [entry('top_up', 5, 5, { occurredAt: 7_000 })], NoThresholds).state;
    expect(deriveFromRefusal('acme', regranted, { eventId: 'e0', occurredAt: 6_500 }).notifications).toEqual([]);
    expect(deriveFromRefusal('acme', regranted, { eventId: 'e3', occurredAt: 7_500 }).notifications).toHaveLength(1);
  });
});
