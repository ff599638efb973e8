import { applyCharges, DayMs, priceCall } from './pricing';
import { utc } from './testing/account-builder';
import { Pricing } from './types';

describe('pricing a call', () => {
  const at = utc('2026-05-10T12:00:00Z');
  const fixed: Pricing = { kind: 'fixed', credits: 1 };
  const perCompany: Pricing = { kind: 'per_entity', reaccessDays: 30 };
  const ok = (entities: string[] = []) => ({ statusCode: 200, forwarded: true, entities });
  const none = new Map<string, number>();

  it('given a free route, when a 2xx call is priced, then it costs nothing because of the route', () => {
    expect(priceCall({ kind: 'free' }, ok(['c_1']), none, at)).toEqual({ credits: 0, reason: 'free_route', chargedEntities: [] });
  });

  it('given a call Tollgate answered itself (not forwarded), when priced, then it costs nothing as rejected', () => {
    expect(priceCall(fixed, { statusCode: 429, forwarded: false, entities: [] }, none, at)).toEqual({
      credits: 0,
      reason: 'rejected',
      chargedEntities: [],
    });
  });

  it.each([199, 300, 304, 400, 404, 500, 503])(
    'given the upstream answered %i, when priced, then only 2xx is charged so it is free_status',
    (statusCode) => {
      expect(priceCall(fixed, { statusCode, forwarded: true, entities: ['c_1'] }, none, at)).toEqual({
        credits: 0,
        reason: 'free_status',
        chargedEntities: [],
      });
    },
  );

  it.each([200, 201, 204, 299])('given a fixed route answered %i, when priced, then its credits are charged', (statusCode) => {
    expect(priceCall({ kind: 'fixed', credits: 3 }, { statusCode, forwarded: true, entities: [] }, none, at)).toEqual({
      credits: 3,
      reason: 'charged',
      chargedEntities: [],
    });
  });

  it('given a per-entity response with duplicates, when priced, then each entity counts once, in first-seen order', () => {
    const priced = priceCall(perCompany, ok(['c_2', 'c_1', 'c_2', 'c_3', 'c_1']), none, at);
    expect(priced).toEqual({ credits: 3, reason: 'charged', chargedEntities: ['c_2', 'c_1', 'c_3'] });
  });

  it('given a per-entity response without entities, when priced, then it is free as no_entities', () => {
    expect(priceCall(perCompany, ok([]), none, at)).toEqual({ credits: 0, reason: 'no_entities', chargedEntities: [] });
  });

  describe('30-day re-access window', () => {
    const charged = utc('2026-04-01T08:00:00Z');
    const windows = new Map([['c_1', charged]]);

    it('given an entity charged 30 days minus 1 ms ago, when it is returned again, then it is free', () => {
      const priced = priceCall(perCompany, ok(['c_1']), windows, charged + 30 * DayMs - 1);
      expect(priced).toEqual({ credits: 0, reason: 'free_reaccess', chargedEntities: [] });
    });

    it('given an entity charged exactly 30 days ago, when it is returned again, then it is charged again', () => {
      const priced = priceCall(perCompany, ok(['c_1']), windows, charged + 30 * DayMs);
      expect(priced).toEqual({ credits: 1, reason: 'charged', chargedEntities: ['c_1'] });
    });

    // Issue 18: arrival-order pricing, decided. A late event is priced when it arrives, against the latest charge.
    it('given a late event dated less than the window before the charge, when it arrives after it, then it is free', () => {
      expect(priceCall(perCompany, ok(['c_1']), windows, charged - 30 * DayMs + 1).credits).toBe(0);
    });

    it('given a late event dated the window or more before the charge, when it arrives after it, then it is charged', () => {
      expect(priceCall(perCompany, ok(['c_1']), windows, charged - 30 * DayMs).credits).toBe(1);
      expect(priceCall(perCompany, ok(['c_1']), windows, charged - 44 * DayMs).credits).toBe(1);
    });

    it('given some entities inside their window and some not, when priced, then only the new ones are charged', () => {
      const priced = priceCall(perCompany, ok(['c_9', 'c_1', 'c_8']), windows, charged + DayMs);
      expect(priced).toEqual({ credits: 2, reason: 'partly_reaccess', chargedEntities: ['c_9', 'c_8'] });
    });

    it('given a window stored for another entity, when an unrelated entity is priced, then that window does not apply', () => {
      expect(priceCall(perCompany, ok(['c_2']), windows, charged + DayMs).credits).toBe(1);
    });

    it('given pricing, when a call is priced, then the windows are left untouched (recording is applyCharges)', () => {
      const before = new Map(windows);
      priceCall(perCompany, ok(['c_1', 'c_5']), windows, charged + 31 * DayMs);
      expect(windows).toEqual(before);
    });
  });

  it('given an entity the caller should have excluded (the graph\'s queried company), when it is passed in, then it is priced like any other: exclusions are the caller\'s job', () => {
    const priced = priceCall(perCompany, ok(['queried', 'partner']), none, at);
    expect(priced.chargedEntities).toEqual(['queried', 'partner']);
  });

  it('given a fractional fixed price or a NaN instant, when priced, then it throws instead of charging nonsense', () => {
    expect(() => priceCall({ kind: 'fixed', credits: 0.5 }, ok(), none, at)).toThrow(RangeError);
    expect(() => priceCall(fixed, ok(), none, Number.NaN)).toThrow(RangeError);
  });
});

describe('recording charges in re-access windows', () => {
  const t = utc('2026-05-10T12:00:00Z');

  it('given entities paid for, when charges are applied, then each window starts at the charge time', () => {
    const windows = new Map<string, number>();
    applyCharges(windows, ['c_1', 'c_2'], t);
    expect([...windows]).toEqual([
      ['c_1', t],
      ['c_2', t],
    ]);
  });

  it('given a window started later, when an older event is applied late, then the window does not move back', () => {
    const windows = new Map([['c_1', t]]);
    applyCharges(windows, ['c_1'], t - 1000);
    expect(windows.get('c_1')).toBe(t);
    applyCharges(windows, ['c_1'], t + 1000);
    expect(windows.get('c_1')).toBe(t + 1000);
  });
});
