import { eventually, json, Stack, uniqueId } from '../support/stack';

/** The admin API of SPEC §8: every command, its validation (400 naming the field), 404 and 409. */
describe('admin API (trackyard)', () => {
  let stack: Stack;
  const base = '/api/external/v1';

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  type Entry = { seq: number; type: string; amount: number; balance_after: number; cause: string; occurred_at: string; recorded_at: string };
  const me = async (key: string) => json(await fetch(stack.gatewayUrl(`${base}/me`), { headers: { authorization: `Bearer ${key}` } }));

  it('creates an org with its plan credits as ledger entries, and answers 409 for a duplicate id', async () => {
    const id = uniqueId('create');
    const created = await stack.admin('POST', '/admin/orgs', { id, name: 'Acme', plan: 'free' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id, name: 'Acme', plan: 'free', balance: 50 });
    expect((await stack.admin('POST', '/admin/orgs', { id, name: 'Again', plan: 'free' })).status).toBe(409);
    const org = await stack.admin('GET', `/admin/orgs/${id}`);
    expect(org.body).toMatchObject({ id, plan: 'free', balance: 50 });
    const ledger = await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${id}/ledger`);
    expect(ledger.body.entries).toEqual([expect.objectContaining({ seq: 1, type: 'grant', amount: 50, balance_after: 50, occurred_at: expect.any(String), recorded_at: expect.any(String) })]);
  });

  it('issues keys shown once with a recognisable prefix, stored only as a hash, and revokes them', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('keys'));
    const key = await stack.admin<{ id: string; key: string; prefix: string; kind: string }>('POST', `/admin/orgs/${orgId}/keys`, { name: 'ci' });
    expect(key.status).toBe(201);
    expect(key.body.key).toMatch(/^tg_live_[A-Za-z0-9]{40}$/);
    expect(key.body.key.startsWith(key.body.prefix)).toBe(true);
    expect(key.body.kind).toBe('key');
    const user = await stack.admin<{ key: string; kind: string }>('POST', `/admin/orgs/${orgId}/keys`, { kind: 'user' });
    expect(user.body.key).toMatch(/^tg_user_/);
    expect(JSON.stringify((await stack.admin('GET', `/admin/orgs/${orgId}`)).body)).not.toContain(key.body.key);
    expect((await stack.admin('DELETE', `/admin/keys/${key.body.id}`)).status).toBe(204);
    expect((await stack.admin('DELETE', '/admin/keys/key_does_not_exist')).status).toBe(404);
    expect((await stack.admin('POST', `/admin/orgs/${orgId}/keys`, { kind: 'admin' })).status).toBe(400);
  });

  it('grants credits once per idempotency key, with an optional expiry', async () => {
    const { orgId, key } = await stack.orgWithKey('free', uniqueId('grant'));
    const body = { amount: 25, reason: 'goodwill', idempotency_key: uniqueId('idem') };
    const first = await stack.admin<{ replayed: boolean }>('POST', `/admin/orgs/${orgId}/credits`, body);
    const again = await stack.admin<{ replayed: boolean }>('POST', `/admin/orgs/${orgId}/credits`, body);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body.replayed).toBe(true);
    const expiring = await stack.admin('POST', `/admin/orgs/${orgId}/credits`, {
      amount: 5, reason: 'trial', idempotency_key: uniqueId('idem'), expires_at: new Date(Date.now() + 86_400_000).toISOString(),
    });
    expect(expiring.status).toBe(201);
    const entries = (await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${orgId}/ledger`)).body.entries;
    expect(entries.filter((e) => e.type === 'top_up').map((e) => e.amount)).toEqual([25, 5]);
    expect((await me(key)).credits_remaining).toBe(80);
  });

  it.each([
    [{ amount: 0, reason: 'x', idempotency_key: 'k' }, 'amount'],
    [{ amount: 1.5, reason: 'x', idempotency_key: 'k' }, 'amount'],
    [{ amount: '5', reason: 'x', idempotency_key: 'k' }, 'amount'],
    [{ amount: 5, idempotency_key: 'k' }, 'reason'],
    [{ amount: 5, reason: 'x' }, 'idempotency_key'],
    [{ amount: 5, reason: 'x', idempotency_key: 'k', expires_at: 'tomorrow' }, 'expires_at'],
  ])('refuses credits body %j with a 400 naming %s, and writes nothing', async (body, field) => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('badgrant'));
    const res = await stack.admin<{ fields: Array<{ field: string }> }>('POST', `/admin/orgs/${orgId}/credits`, body);
    expect(res.status).toBe(400);
    expect(res.body.fields.map((f) => f.field)).toContain(field);
    expect((await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${orgId}/ledger`)).body.entries).toHaveLength(1);
  });

  it('changes the plan mid-month: the allowance becomes the new plan less what was spent, and /me follows', async () => {
    const { orgId, key } = await stack.orgWithKey('starter', uniqueId('plan'));
    const search = await fetch(stack.gatewayUrl(`${base}/search`), {
      method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ query: 'q' }),
    });
    expect(search.status).toBe(200);
    // Settled, not only held: the call is in /usage (a settled hold is its charge; no further entry is written).
    await eventually(async () => (await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance === 499 &&
      (await json(await fetch(stack.gatewayUrl(`${base}/usage`), { headers: { authorization: `Bearer ${key}` } }))).total_count === 1);
    const changed = await stack.admin('PUT', `/admin/orgs/${orgId}/plan`, { plan: 'pro' });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ plan: 'pro', balance: 4999 });
    await eventually(async () => (await me(key)).tier === 'pro', 6000);
    expect(await me(key)).toMatchObject({ tier: 'pro', credits_remaining: 4999, monthly_allowance: 5000 });
    expect((await stack.admin('PUT', `/admin/orgs/${orgId}/plan`, { plan: 'platinum' })).status).toBe(400);
    expect((await stack.admin('PUT', '/admin/orgs/no-such-org/plan', { plan: 'pro' })).status).toBe(404);
  });

  it('sets and reads per-org limit overrides by the profile names, refusing unknown names', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('limits'));
    const set = await stack.admin('PUT', `/admin/orgs/${orgId}/limits`, { minute: 7, day: 70 });
    expect(set.status).toBe(200);
    expect((await stack.admin('GET', `/admin/orgs/${orgId}/limits`)).body).toMatchObject({ limits: { minute: 7, day: 70 } });
    const bad = await stack.admin<{ fields: Array<{ field: string }> }>('PUT', `/admin/orgs/${orgId}/limits`, { hourly: 5 });
    expect(bad.status).toBe(400);
    expect(bad.body.fields[0]!.field).toBe('hourly');
    expect((await stack.admin('PUT', `/admin/orgs/${orgId}/limits`, { minute: -1 })).status).toBe(400);
    expect((await stack.admin('GET', `/admin/orgs/${orgId}/limits`)).body).toMatchObject({ limits: { minute: 7, day: 70 } });
  });

  it('lists the ledger in sequence order after a given seq, validating after and limit', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('ledger'));
    for (let i = 0; i < 3; i++) await stack.admin('POST', `/admin/orgs/${orgId}/credits`, { amount: 1, reason: 'x', idempotency_key: `k${i}` });
    const page = await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${orgId}/ledger?after=1&limit=2`);
    expect(page.body.entries.map((e) => e.seq)).toEqual([2, 3]);
    for (const q of ['limit=0', 'limit=501', 'after=-1', 'limit=x']) {
      expect((await stack.admin('GET', `/admin/orgs/${orgId}/ledger?${q}`)).status).toBe(400);
    }
    expect((await stack.admin('GET', '/admin/orgs/no-such-org/ledger')).status).toBe(404);
  });
});
