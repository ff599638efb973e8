import { windowsPart } from '@tollgate/ledger';

describe('windowsPart', () => {
  it('writes one row per (org, entity), its latest charge: an upsert must not touch a row twice in one statement', () => {
    const part = windowsPart([
      { orgId: 'a', entityId: 'c_1', at: Date.parse('2026-11-01T00:00:00Z') },
      { orgId: 'b', entityId: 'c_1', at: Date.parse('2026-11-02T00:00:00Z') },
      { orgId: 'a', entityId: 'c_1', at: Date.parse('2026-12-05T00:00:00Z') },
      { orgId: 'a', entityId: 'c_1', at: Date.parse('2026-11-20T00:00:00Z') },
    ])!;
    expect(part.params).toEqual([
      ['a', 'b'],
      ['c_1', 'c_1'],
      ['2026-12-05T00:00:00.000Z', '2026-11-02T00:00:00.000Z'],
    ]);
  });
});
