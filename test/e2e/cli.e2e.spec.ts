import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { eventually, repoRoot, Stack, uniqueId } from '../support/stack';

/** `tollgate` (SPEC §9): the operator's CLI against a real metering, and the admin views it reads (SPEC §8). */
describe('tollgate CLI and the admin views behind it (trackyard)', () => {
  let stack: Stack;
  const base = '/api/external/v1';

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  interface Ran {
    code: number | null;
    stdout: string;
    stderr: string;
  }

  function cli(args: string[], env: Record<string, string | undefined> = {}, opts: { killAfterMs?: number } = {}): Promise<Ran> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [join(repoRoot, 'bin', 'tollgate.js'), ...args], {
        env: { ...process.env, TOLLGATE_ADMIN_URL: `http://127.0.0.1:${stack.ports.metering}`, TOLLGATE_ADMIN_TOKEN: stack.adminToken, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      if (opts.killAfterMs) setTimeout(() => child.kill('SIGINT'), opts.killAfterMs);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  const json = async (args: string[]) => {
    const r = await cli([...args, '--json']);
    if (r.code !== 0) throw new Error(`tollgate ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, any>;
  };

  const search = (key: string) =>
    fetch(stack.gatewayUrl(`${base}/search`), {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'cli' }),
    });

  it('creates, lists and shows orgs, as tables for people and JSON for scripts', async () => {
    const id = uniqueId('cli-org');
    const created = await cli(['orgs', 'create', id, '--plan', 'free', '--name', 'CLI Org']);
    expect(created.code).toBe(0);
    expect(created.stdout).toContain(`created org ${id}`);
    expect(created.stdout).toMatch(/balance\s+50/);

    const listed = await cli(['orgs', 'list', '--search', id]);
    expect(listed.code).toBe(0);
    expect(listed.stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+PLAN\s+BALANCE\s+USED_THIS_MONTH\s+CALLS_TODAY\s+LAST_CALL_AT$/);
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).toContain('1-1 of 1 orgs');

    const page = await json(['orgs', 'list', '--search', id]);
    expect(page).toMatchObject({ total_count: 1, orgs: [{ id, name: 'CLI Org', plan: 'free', balance: 50, used_this_month: 0, calls_today: 0, last_call_at: null }] });

    const shown = await json(['orgs', 'show', id]);
    expect(shown).toMatchObject({ id, plan: 'free', balance: 50, keys: [] });
  });

  it('issues a key shown once, and revokes it so the gateway refuses it', async () => {
    const id = uniqueId('cli-keys');
    await json(['orgs', 'create', id, '--plan', 'free']);
    const created = await cli(['keys', 'create', id, '--name', 'laptop']);
    expect(created.code).toBe(0);
    const key = /key\s+(tg_live_\S+)/.exec(created.stdout)?.[1];
    const keyId = /^id\s+(\S+)/m.exec(created.stdout)?.[1];
    expect(key).toMatch(/^tg_live_[A-Za-z0-9]{40}$/);
    expect(created.stdout).toContain('shown only this once');
    expect((await search(key!)).status).toBe(200);

    const shown = await json(['orgs', 'show', id]);
    expect(shown.keys).toEqual([expect.objectContaining({ id: keyId, name: 'laptop', kind: 'key', revoked_at: null })]);
    expect(JSON.stringify(shown)).not.toContain(key);

    const revoked = await cli(['keys', 'revoke', keyId!]);
    expect(revoked.code).toBe(0);
    await eventually(async () => (await search(key!)).status === 401, 8000, 250);
    expect((await json(['orgs', 'show', id])).keys[0].revoked_at).toEqual(expect.any(String));
  });

  it('grants credits once per invocation, with a reason and an expiry, and shows them in the ledger', async () => {
    const id = uniqueId('cli-grant');
    await json(['orgs', 'create', id, '--plan', 'free']);
    const granted = await json(['credits', 'grant', id, '25', '--reason', 'goodwill', '--expires-at', new Date(Date.now() + 86_400_000).toISOString()]);
    expect(granted).toMatchObject({ org_id: id, amount: 25, reason: 'goodwill', balance: 75, replayed: false });
    expect(granted.idempotency_key).toMatch(/^cli-/);
    // Each invocation is a new grant; repeating an idempotency key explicitly never grants twice.
    await json(['credits', 'grant', id, '5', '--idempotency-key', 'cli-fixed']);
    const again = await json(['credits', 'grant', id, '5', '--idempotency-key', 'cli-fixed']);
    expect(again).toMatchObject({ replayed: true, balance: 80 });
    // The same key with another amount grants nothing and says why, naming the key (exit 6: conflict).
    const reused = await cli(['credits', 'grant', id, '7', '--idempotency-key', 'cli-fixed']);
    expect(reused.code).toBe(6);
    expect(reused.stderr).toContain('idempotency key reused, nothing was done: idempotency_key "cli-fixed" was first used with another request (amount 5');

    const ledger = await json(['ledger', id]);
    expect(ledger.entries.map((e: { type: string; amount: number }) => [e.type, e.amount])).toEqual([['grant', 50], ['top_up', 25], ['top_up', 5]]);
    const table = await cli(['ledger', id, '--after', '1']);
    expect(table.stdout.split('\n')[0]).toMatch(/^SEQ\s+TYPE\s+AMOUNT\s+BALANCE_AFTER\s+CAUSE\s+OCCURRED_AT$/);
    // The grant's entry is caused by its recorded command.
    const commands = (await stack.admin<{ commands: Array<{ id: string; command: string; idempotency_key: string | null }> }>('GET', `/admin/orgs/${id}/history`)).body.commands;
    const command = commands.find((c) => c.idempotency_key === granted.idempotency_key);
    expect(command).toMatchObject({ command: 'grant-credits' });
    expect(table.stdout).toContain(`admin:${command!.id}`);
    expect(table.stdout).not.toMatch(/^\s*1\s+grant/m);
  });

  it('records who ran each command (--actor, else $USER) and lists the org\'s commands with history', async () => {
    const id = uniqueId('cli-history');
    expect((await cli(['orgs', 'create', id, '--plan', 'free', '--actor', 'alice'])).code).toBe(0);
    expect((await cli(['plan', 'set', id, 'starter'], { USER: 'bob' })).code).toBe(0);
    expect((await cli(['credits', 'grant', id, '7', '--reason', 'thanks'], { USER: '', LOGNAME: '' })).code).toBe(0);
    expect((await cli(['plan', 'set', id, 'platinum', '--actor', 'mallory'])).code).toBe(2);
    expect((await cli(['plan', 'set', id, 'pro', '--actor', 'a'.repeat(129)])).code).toBe(2);

    const page = await json(['history', id]);
    expect(page.commands.map((c: { command: string; actor: string }) => [c.command, c.actor])).toEqual([
      ['create-org', 'alice'], ['change-plan', 'bob'], ['grant-credits', 'admin-token'],
    ]);
    const table = await cli(['history', id]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SEQ\s+AT\s+COMMAND\s+ACTOR\s+WHAT\s+ENTRIES\s+ID$/);
    expect(lines.slice(1).map((l) => l.trim().split(/\s{2,}/).slice(0, 6).filter((_, i) => i !== 1))).toEqual([
      ['1', 'create-org', 'alice', `plan free, name "${id}"`, '1'],
      ['2', 'change-plan', 'bob', 'plan free -> starter', '2'],
      ['3', 'grant-credits', 'admin-token', '+7 "thanks"', '3'],
    ]);
    expect((await json(['history', id, '--after', '2'])).commands.map((c: { seq: number }) => c.seq)).toEqual([3]);
    expect((await cli(['history', 'no-such-org'])).code).toBe(4);
  });

  it('changes the plan and sets and shows the limit overrides', async () => {
    const id = uniqueId('cli-plan');
    await json(['orgs', 'create', id, '--plan', 'free']);
    const plan = await cli(['plan', 'set', id, 'starter']);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain(`${id} is on plan starter`);
    const limits = await json(['limits', 'set', id, 'minute=1', 'day=100']);
    expect(limits).toEqual({ org_id: id, limits: { minute: 1, day: 100 } });
    expect((await json(['limits', 'show', id])).limits).toEqual({ minute: 1, day: 100 });
    expect((await json(['orgs', 'show', id])).plan).toBe('starter');
  });

  it('lists an org\'s calls with what each cost, and follows its ledger as entries arrive', async () => {
    const id = uniqueId('cli-usage');
    await json(['orgs', 'create', id, '--plan', 'free']);
    const key = (await json(['keys', 'create', id])).key as string;
    // Followed long enough for the gateway to end its lease (5 s after it was granted) and give back the rest.
    const follower = cli(['ledger', id, '--follow', '--interval', '1', '--json'], {}, { killAfterMs: 15_000 });
    expect((await search(key)).status).toBe(200);
    await eventually(async () => (await json(['usage', id])).total_count === 1, 10_000, 200);

    const usage = await json(['usage', id]);
    expect(usage.usage).toEqual([expect.objectContaining({ method: 'POST', path: `${base}/search`, status_code: 200, credits_consumed: 1, cost_reason: 'charged' })]);
    const table = await cli(['usage', id]);
    expect(table.stdout).toMatch(/POST\s+\/api\/external\/v1\/search\s+200\s+1\s+charged/);
    const listed = await json(['orgs', 'list', '--search', id]);
    expect(listed.orgs[0]).toMatchObject({ used_this_month: 1, calls_today: 1, last_call_at: expect.any(String), balance: 49 });

    await eventually(async () => (await json(['ledger', id])).entries?.length === 3, 14_000, 250);
    const followed = await follower;
    expect(followed.code).toBe(0);
    const lines = followed.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; type: string; balance_after: number });
    expect(lines[0]).toMatchObject({ seq: 1, type: 'grant' });
    // The paid call's entries arrived while following (a lease of 8, then the 7 it did not spend), ending at 49.
    expect(lines.length).toBeGreaterThan(1);
    expect(lines[lines.length - 1]?.balance_after).toBe(49);
    expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i + 1));
  });

  it('sorts and pages the org list', async () => {
    const tag = uniqueId('cli-page');
    for (const [i, plan] of ['free', 'starter', 'free'].entries()) await json(['orgs', 'create', `${tag}-${i}`, '--plan', plan]);
    const byBalance = await json(['orgs', 'list', '--search', tag, '--sort', 'balance', '--order', 'desc']);
    expect(byBalance.orgs.map((o: { id: string }) => o.id)[0]).toBe(`${tag}-1`);
    const second = await json(['orgs', 'list', '--search', tag, '--sort', 'id', '--limit', '1', '--offset', '1']);
    expect(second).toMatchObject({ total_count: 3, offset: 1, limit: 1, orgs: [{ id: `${tag}-1` }] });
  });

  it.each([
    [['orgs', 'list', '--limit', '0'], 2, /--limit must be a whole number from 1 to 500/],
    [['orgs', 'create', 'x'], 2, /missing --plan/],
    [['credits', 'grant', 'someone', 'ten'], 2, /amount must be a whole number/],
    [['credits', 'grant', 'someone', '5', '--expires-at', 'soon'], 2, /--expires-at must be a time/],
    [['frobnicate'], 2, /unknown command/],
    [['orgs', 'list', '--bogus'], 2, /^tollgate: unknown argument "--bogus"/],
    // The operator programs: the same parser, the same usage error and exit code.
    [['replay', '--all', '--bogus'], 2, /^replay: unknown argument "--bogus"\nusage: tollgate replay /],
    [['audit', '--hold-grace'], 2, /^audit: --hold-grace needs a whole number of seconds\nusage: tollgate audit /],
    [['dlq', 'replay', '--id', 'x'], 2, /^dlq: --id needs a whole number\nusage: tollgate dlq /],
    [['orgs', 'show', 'no-such-org'], 4, /not found: org "no-such-org" does not exist/],
    [['keys', 'revoke', 'key_nope'], 4, /not found/],
  ])('tollgate %j exits %d saying %s', async (args, code, said) => {
    const r = await cli(args as string[]);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(said as RegExp);
  });

  it.each(['replay', 'audit', 'dlq'])('tollgate %s --help prints its usage and exits 0', async (command) => {
    const r = await cli([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`usage: tollgate ${command} `);
    expect(r.stderr).toBe('');
  });

  it('refuses input the API refuses with exit 2 and the field, a duplicate with 6', async () => {
    const id = uniqueId('cli-bad');
    await json(['orgs', 'create', id, '--plan', 'free']);
    const badPlan = await cli(['plan', 'set', id, 'platinum']);
    expect(badPlan.code).toBe(2);
    expect(badPlan.stderr).toMatch(/plan: must be one of free, starter, pro/);
    const badLimit = await cli(['limits', 'set', id, 'hour=5']);
    expect(badLimit.code).toBe(2);
    expect(badLimit.stderr).toMatch(/hour: is not a limit/);
    const dup = await cli(['orgs', 'create', id, '--plan', 'free']);
    expect(dup.code).toBe(6);
  });

  it('exits 3 without or with a wrong token, and 5 when metering is unreachable', async () => {
    const none = await cli(['orgs', 'list'], { TOLLGATE_ADMIN_TOKEN: '' });
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/set TOLLGATE_ADMIN_TOKEN/);
    const wrong = await cli(['orgs', 'list'], { TOLLGATE_ADMIN_TOKEN: 'wrong' });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).not.toContain('wrong');
    const away = await cli(['orgs', 'list'], { TOLLGATE_ADMIN_URL: 'http://127.0.0.1:1' });
    expect(away.code).toBe(5);
    expect(away.stderr).toMatch(/unreachable at http:\/\/127\.0\.0\.1:1/);
  });

  it('validates the admin views\' parameters with a 400 naming the field', async () => {
    for (const [path, field] of [
      ['/admin/orgs?limit=501', 'limit'],
      ['/admin/orgs?sort=secret', 'sort'],
      ['/admin/orgs?offset=-1', 'offset'],
      ['/admin/orgs/x/activity?bucket=week', 'bucket'],
      ['/admin/orgs/x/entries?before=0', 'before'],
    ] as const) {
      const res = await stack.admin<{ fields: Array<{ field: string }> }>('GET', path);
      expect([path, res.status]).toEqual([path, 400]);
      expect(res.body.fields.map((f) => f.field)).toContain(field);
    }
    expect((await stack.admin('GET', '/admin/orgs/no-such-org/usage')).status).toBe(404);
    const anon = await fetch(`http://127.0.0.1:${stack.ports.metering}/admin/orgs`);
    expect(anon.status).toBe(401);
  });

  it('reports the system: metered events, holds, dead letters and decisions', async () => {
    const s = await json(['system']);
    expect(s).toMatchObject({
      events_per_second: expect.any(Number),
      consumer_lag: expect.any(Number),
      dead_letters: { total: expect.any(Number), pending: expect.any(Number) },
      reservations_held: { holds: expect.any(Number), credits: expect.any(Number) },
      decisions_last_hour: expect.objectContaining({ forwarded: expect.any(Number) }),
    });
    expect(s.events_metered.metered).toBeGreaterThan(0);
  });
});
