import { eventually, json, Stack, uniqueId } from '../support/stack';

/** Strict enforcement: reservations taken before the gateway answers mean no concurrency can overdraw. */
describe('strict credit enforcement (trace)', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trace' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  type Entry = { seq: number; type: string; amount: number; balance_after: number };
  const ledger = async (orgId: string) => (await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${orgId}/ledger?limit=500`)).body.entries;
  /** Every call of the org metered: its /usage counts them all (a settled hold adds no ledger entry). */
  const metered = (key: string, calls: number) =>
    eventually(async () => (await json(await fetch(stack.gatewayUrl('/v1/usage'), { headers: { authorization: `Bearer ${key}` } }))).total_count === calls, 10_000);

  it('admits exactly 5 of 20 concurrent calls against a balance of 5; 15 get the seed 402 and the balance ends at 0, never below', async () => {
    const { orgId, key } = await stack.orgWithKey('standard', uniqueId('strict'));
    const grant = await stack.admin('POST', `/admin/orgs/${orgId}/credits`, { amount: 5, reason: 'test', idempotency_key: uniqueId('grant') });
    expect(grant.status).toBe(201);

    const calls = Array.from({ length: 20 }, (_, i) =>
      fetch(stack.gatewayUrl(`/v1/companies/strict-co-${i}`), { headers: { authorization: `Bearer ${key}` } }),
    );
    const answers = await Promise.all(calls);
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses.filter((s) => s === 402)).toHaveLength(15);
    for (const res of answers.filter((r) => r.status === 402)) {
      // Byte for byte the seed's body, and no upstream data in it.
      expect(await res.text()).toBe('{"error":"credit_exhausted","message":"Insufficient credits to complete this request.","requested":1,"shortfall":1}');
    }

    await metered(key, 20);
    const settled = await ledger(orgId);
    // Each settled hold is its call's charge: one reservation entry per 2xx, nothing released.
    expect(settled.map((e) => e.type)).toEqual(['top_up', 'reservation', 'reservation', 'reservation', 'reservation', 'reservation']);
    expect(settled.every((e) => e.balance_after >= 0)).toBe(true);
    expect(settled.reduce((s, e) => s + e.amount, 0)).toBe(0);
    expect(settled.map((e) => e.seq)).toEqual(settled.map((_, i) => i + 1));
    expect((await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance).toBe(0);
  });

  it('serves a company already paid for within 30 days at no cost, even with a balance of 0', async () => {
    const { orgId, key } = await stack.orgWithKey('standard', uniqueId('reaccess'));
    await stack.admin('POST', `/admin/orgs/${orgId}/credits`, { amount: 1, reason: 'test', idempotency_key: uniqueId('grant') });
    const auth = { authorization: `Bearer ${key}` };
    const first = await fetch(stack.gatewayUrl('/v1/companies/reaccess-co'), { headers: auth });
    expect(first.status).toBe(200);
    await metered(key, 1);
    const again = await fetch(stack.gatewayUrl('/v1/companies/reaccess-co'), { headers: auth });
    expect(again.status).toBe(200);
    expect(await json(again)).toEqual(await json(first));
    const usage = await eventually(async () => {
      const u = await json(await fetch(stack.gatewayUrl('/v1/usage'), { headers: auth }));
      return u.total_count === 2 ? u : null;
    });
    expect(usage.usage.map((r: { credits_consumed: number; cost_reason: string }) => [r.credits_consumed, r.cost_reason])).toEqual([
      [0, 'free_reaccess'],
      [1, 'charged'],
    ]);
    expect((await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance).toBe(0);
  });
});
