import { createHash } from 'node:crypto';
import { Stack, uniqueId } from '../support/stack';

/**
 * Every operator command is recorded (admin_commands): who, when, what (no secret), the result and the ledger
 * entries it appended, which carry `cause = admin:<command id>`. `GET /admin/orgs/:org/history` lists them.
 */
describe('admin command history (trackyard)', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  type Json = Record<string, any>;
  interface Command {
    id: string;
    seq: number;
    command: string;
    actor: string;
    at: string;
    input: Json;
    idempotency_key: string | null;
    result: Json;
    entries: number[];
  }
  interface Entry {
    seq: number;
    type: string;
    amount: number;
    cause: string;
  }

  /** The admin API as an operator named `actor` (no header at all when undefined). */
  async function as(actor: string | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json; commandId: string | null }> {
    const res = await fetch(`http://127.0.0.1:${stack.ports.metering}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${stack.adminToken}`,
        'content-type': 'application/json',
        ...(actor === undefined ? {} : { 'x-tollgate-actor': actor }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Json) : {}, commandId: res.headers.get('x-tollgate-command-id') };
  }

  const history = async (org: string, q = '') => (await stack.admin<{ commands: Command[] }>('GET', `/admin/orgs/${org}/history${q}`)).body.commands;
  const ledger = async (org: string) => (await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${org}/ledger?limit=500`)).body.entries;

  it('records create org, plan change, limits, key create and revoke, and a grant (replayed once), in order, with actor and input, and no secret', async () => {
    const org = uniqueId('hist');
    const created = await as('alice', 'POST', '/admin/orgs', { id: org, name: 'History Inc', plan: 'free' });
    expect(created.status).toBe(201);
    // Each answer names its command in X-Tollgate-Command-Id; the bodies are what they always were.
    expect(created.commandId).toMatch(/^cmd_[A-Za-z0-9]{16}$/);
    expect(created.body).not.toHaveProperty('command_id');
    const planned = await as('bob', 'PUT', `/admin/orgs/${org}/plan`, { plan: 'starter' });
    expect(planned.status).toBe(200);
    const limited = await as(undefined, 'PUT', `/admin/orgs/${org}/limits`, { minute: 7, day: 70 });
    expect(limited.body).toEqual({ org_id: org, limits: { minute: 7, day: 70 } });
    const key = await as('alice', 'POST', `/admin/orgs/${org}/keys`, { name: 'ci', kind: 'key' });
    expect(key.status).toBe(201);
    const revoked = await as('alice', 'DELETE', `/admin/keys/${key.body.id}`);
    expect(revoked.status).toBe(204);
    const grant = { amount: 25, reason: 'goodwill', idempotency_key: uniqueId('idem') };
    const granted = await as('carol', 'POST', `/admin/orgs/${org}/credits`, grant);
    const replayed = await as('dave', 'POST', `/admin/orgs/${org}/credits`, grant);
    expect(granted.body).toMatchObject({ replayed: false });
    expect(replayed.body).toMatchObject({ replayed: true });
    expect(replayed.commandId).toBe(granted.commandId);

    // Rejected commands write nothing: a bad plan, a bad amount, an unknown key, a bad actor, no token.
    expect((await as('mallory', 'PUT', `/admin/orgs/${org}/plan`, { plan: 'platinum' })).status).toBe(400);
    expect((await as('mallory', 'POST', `/admin/orgs/${org}/credits`, { amount: 0, reason: 'x', idempotency_key: uniqueId('bad') })).status).toBe(400);
    expect((await as('mallory', 'PUT', `/admin/orgs/${org}/limits`, { hourly: 5 })).status).toBe(400);
    expect((await as('mallory', 'DELETE', '/admin/keys/key_does_not_exist')).status).toBe(404);
    const badActor = await as('x'.repeat(129), 'PUT', `/admin/orgs/${org}/plan`, { plan: 'pro' });
    expect(badActor.status).toBe(400);
    expect(badActor.body.fields).toEqual([expect.objectContaining({ field: 'X-Tollgate-Actor' })]);
    const anonymous = await fetch(`http://127.0.0.1:${stack.ports.metering}/admin/orgs/${org}/plan`, {
      method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ plan: 'pro' }),
    });
    expect(anonymous.status).toBe(401);

    const commands = await history(org);
    expect(commands.map((c) => [c.seq, c.command, c.actor])).toEqual([
      [1, 'create-org', 'alice'],
      [2, 'change-plan', 'bob'],
      [3, 'set-limits', 'admin-token'],
      [4, 'create-key', 'alice'],
      [5, 'revoke-key', 'alice'],
      [6, 'grant-credits', 'carol'],
    ]);
    const [create, plan, limits, createKey, revokeKey, credit] = commands as [Command, Command, Command, Command, Command, Command];
    expect(commands.map((c) => c.id)).toEqual([created, planned, limited, key, revoked, granted].map((r) => r.commandId));
    expect(create).toMatchObject({ input: { id: org, name: 'History Inc', plan: 'free', profile: 'trackyard' }, idempotency_key: null });
    expect(plan.input).toEqual({ plan: 'starter' });
    expect(plan.result).toMatchObject({ plan: 'starter', from_plan: 'free' });
    expect(limits.input).toEqual({ limits: { minute: 7, day: 70 } });
    expect(createKey.input).toEqual({ name: 'ci', kind: 'key' });
    expect(createKey.result).toMatchObject({ key_id: key.body.id });
    expect(revokeKey.input).toEqual({ key_id: key.body.id });
    expect(revokeKey.result).toMatchObject({ already_revoked: false, revoked_at: expect.any(String) });
    expect(credit).toMatchObject({ input: { ...grant, expires_at: null }, idempotency_key: grant.idempotency_key });
    for (const c of commands) expect(Date.parse(c.at)).toBeGreaterThan(Date.now() - 120_000);
    expect(commands.map((c) => c.at)).toEqual([...commands.map((c) => c.at)].sort());

    // The key is shown once (in the create answer) and never recorded, nor its hash in any encoding.
    const text = JSON.stringify(commands);
    const hash = createHash('sha256').update(key.body.key as string).digest();
    for (const secret of [key.body.key as string, (key.body.key as string).slice(12), hash.toString('hex'), hash.toString('base64')]) {
      expect(text).not.toContain(secret);
    }

    // The ledger entries the commands appended carry their ids as causes, and only theirs.
    const entries = await ledger(org);
    expect(entries.map((e) => [e.seq, e.type, e.amount, e.cause])).toEqual([
      [1, 'grant', 50, `admin:${create.id}`],
      [2, 'adjustment', 500, `admin:${plan.id}`],
      [3, 'top_up', 25, `admin:${credit.id}`],
    ]);
    expect([create.entries, plan.entries, limits.entries, createKey.entries, revokeKey.entries, credit.entries]).toEqual([[1], [2], [], [], [], [3]]);

    // The console's ledger view names the command behind each entry.
    const newest = await stack.admin<{ entries: Array<{ seq: number; command: Json | null }> }>('GET', `/admin/orgs/${org}/entries`);
    expect(newest.body.entries.map((e) => [e.seq, e.command?.command, e.command?.actor])).toEqual([
      [3, 'grant-credits', 'carol'],
      [2, 'change-plan', 'bob'],
      [1, 'create-org', 'alice'],
    ]);
  });

  it('revoking a key again is recorded as changing nothing', async () => {
    const { orgId, keyId } = await stack.orgWithKey('free', uniqueId('hist-revoke'));
    expect((await as('erin', 'DELETE', `/admin/keys/${keyId}`)).status).toBe(204);
    expect((await as('erin', 'DELETE', `/admin/keys/${keyId}`)).status).toBe(204);
    const revokes = (await history(orgId)).filter((c) => c.command === 'revoke-key');
    expect(revokes.map((c) => c.result.already_revoked)).toEqual([false, true]);
    expect(revokes[0]!.result.revoked_at).toBe(revokes[1]!.result.revoked_at);
  });

  it('pages the history like the ledger: seq above `after`, at most `limit`, 400 naming a bad parameter, 404 for an unknown org, 401 without the token', async () => {
    const org = uniqueId('hist-page');
    await as('pager', 'POST', '/admin/orgs', { id: org, name: org, plan: 'free' });
    for (let i = 0; i < 4; i++) await as('pager', 'POST', `/admin/orgs/${org}/credits`, { amount: 1, reason: `r${i}`, idempotency_key: `k${i}` });
    expect((await history(org, '?after=1&limit=2')).map((c) => [c.seq, c.input.reason])).toEqual([[2, 'r0'], [3, 'r1']]);
    expect((await history(org, '?after=4')).map((c) => c.seq)).toEqual([5]);
    expect(await history(org, '?after=5')).toEqual([]);
    for (const [q, field] of [['limit=0', 'limit'], ['limit=501', 'limit'], ['after=-1', 'after'], ['limit=x', 'limit']] as const) {
      const res = await stack.admin<{ fields: Array<{ field: string }> }>('GET', `/admin/orgs/${org}/history?${q}`);
      expect(res.status).toBe(400);
      expect(res.body.fields.map((f) => f.field)).toContain(field);
    }
    expect((await stack.admin('GET', '/admin/orgs/no-such-org/history')).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${stack.ports.metering}/admin/orgs/${org}/history`)).status).toBe(401);
  });
});
