import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { eventually, repoRoot, Stack, uniqueId } from '../support/stack';
import { Webhook } from 'standardwebhooks';
import { WebhookReceiver } from '../support/webhook-receiver';

/** Alerts and webhooks (SPEC §8, §9) against the built apps: the gateway's paid calls, metering's notifier and sender. */
describe('alerts and webhooks (trackyard)', () => {
  let stack: Stack;
  let secret = '';
  const receiver = new WebhookReceiver(() => secret);

  beforeAll(async () => {
    await receiver.start();
    stack = await Stack.start({
      profile: 'trackyard',
      env: { WEBHOOK_RETRY_BASE_MS: '50', WEBHOOK_RETRY_MAX_MS: '300', WEBHOOK_TIMEOUT_MS: '1000', WEBHOOK_NOTIFY_INTERVAL_MS: '100', WEBHOOK_SEND_INTERVAL_MS: '100' },
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await receiver.stop();
  });

  function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [join(repoRoot, 'bin', 'tollgate.js'), ...args], {
        env: { ...process.env, TOLLGATE_ADMIN_URL: `http://127.0.0.1:${stack.ports.metering}`, TOLLGATE_ADMIN_TOKEN: stack.adminToken },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  const search = (key: string) =>
    fetch(stack.gatewayUrl('/api/external/v1/search'), {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'hooks' }),
    });

  const ofOrg = (org: string, type?: string) => receiver.accepted().filter((h) => h.body.data.org_id === org && (!type || h.body.type === type));

  it('the CLI sets alerts and creates an endpoint whose secret is shown once; concurrent paid calls through the gateway crossing a threshold give one credits.low', async () => {
    const { orgId, key } = await stack.orgWithKey('starter', uniqueId('hooks-low'));
    expect((await stack.admin('PUT', `/admin/orgs/${orgId}/limits`, { minute: 1000, day: 10000 })).status).toBe(200);

    // 490 and 480 credits, and 3% of the 500 a month used (below 485).
    const set = await cli(['alerts', 'set', orgId, '--credits-below', '490,480', '--allowance-used-percent', '3', '--json']);
    expect(set.code).toBe(0);
    expect(JSON.parse(set.stdout)).toEqual({ org_id: orgId, credits_below: [490, 480], allowance_used_percent: [3] });
    expect((await stack.admin('GET', `/admin/orgs/${orgId}/alerts`)).body).toEqual({
      org_id: orgId, credits_below: [490, 480], allowance_used_percent: [3], plan: 'starter', plan_alerts: { credits_below: [], allowance_used_percent: [] }, applied: 'org',
    });
    const shown = await cli(['alerts', 'show', orgId]);
    expect(shown.stdout).toMatch(/applied\s+org/);
    // A plan's thresholds, through the CLI (the org's own replace them here).
    const planSet = await cli(['alerts', 'set', '--plan', 'pro', '--credits-below', '1000', '--json']);
    expect([planSet.code, JSON.parse(planSet.stdout)]).toEqual([0, { plan: 'pro', credits_below: [1000], allowance_used_percent: [] }]);
    expect((await cli(['alerts', 'show', '--plan', 'nope'])).code).toBe(4);
    expect((await cli(['alerts', 'set', '--plan', 'pro', '--credits-below', '']))).toMatchObject({ code: 0 });

    const created = await cli(['webhooks', 'create', receiver.url, '--events', 'credits.low,credits.granted', '--org', orgId]);
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('shown only this once');
    secret = /secret\s+(whsec_\S+)/.exec(created.stdout)![1]!;
    const id = /^id\s+(\S+)/m.exec(created.stdout)![1]!;
    const listed = await cli(['webhooks', 'list', '--json']);
    const endpoint = (JSON.parse(listed.stdout) as { webhooks: Array<Record<string, unknown>> }).webhooks.find((w) => w.id === id);
    expect(endpoint).toMatchObject({ url: receiver.url, events: ['credits.low', 'credits.granted'], org_id: orgId, disabled_at: null });
    expect(JSON.stringify(JSON.parse(listed.stdout))).not.toContain(secret);

    const answers = await Promise.all(Array.from({ length: 25 }, () => search(key)));
    expect(answers.map((r) => r.status)).toEqual(Array(25).fill(200));
    await eventually(async () => ofOrg(orgId, 'credits.low').length === 3, 20_000);
    // Every call metered (its hold settled) and a while more: no second credits.low for either threshold.
    await eventually(async () => (await stack.admin<{ total_count: number }>('GET', `/admin/orgs/${orgId}/usage`)).body.total_count === 25, 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(ofOrg(orgId, 'credits.low').map((h) => [h.body.data.threshold, h.body.data.allowance_used_percent ?? null])).toEqual([[490, null], [485, 3], [480, null]]);
    expect(receiver.badSignatures).toEqual([]);

    // The delivery log and a re-send from the CLI.
    const deliveries = await cli(['webhooks', 'deliveries', id, '--json']);
    const log = JSON.parse(deliveries.stdout) as { deliveries: Array<{ msg_id: string; status: number; event_type: string }>; pending: number };
    expect(log.pending).toBe(0);
    expect(log.deliveries.map((d) => [d.event_type, d.status])).toEqual([['credits.low', 204], ['credits.low', 204], ['credits.low', 204]]);
    const first = log.deliveries[2]!.msg_id;
    const resent = await cli(['webhooks', 'resend', id, '--msg', first]);
    expect(resent.code).toBe(0);
    expect(resent.stdout).toContain('queued 1 message(s) again');
    await eventually(async () => receiver.hits.filter((h) => h.id === first).length === 2, 10_000);
    const table = await cli(['webhooks', 'deliveries', id]);
    expect(table.stdout.split('\n')[0]).toMatch(/^ATTEMPTED_AT\s+MSG_ID\s+ORG_ID\s+EVENT_TYPE\s+STATUS\s+LATENCY_MS\s+ERROR$/);
    expect(table.stdout).toContain('0 undelivered');

    // A rotation from the CLI: the new secret once; both sign for the overlap, so the receiver's old secret still verifies.
    const rotated = await cli(['webhooks', 'rotate-secret', id, '--overlap', '600']);
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toContain('shown only this once');
    expect(rotated.stdout).toMatch(/The old one also signs until \d{4}-/);
    const newSecret = /secret\s+(whsec_\S+)/.exec(rotated.stdout)![1]!;
    expect(newSecret).not.toBe(secret);
    expect((await cli(['webhooks', 'resend', id, '--msg', first])).code).toBe(0);
    await eventually(async () => receiver.hits.filter((h) => h.id === first).length === 3, 10_000);
    expect(receiver.badSignatures).toEqual([]);
    const signedTwice = receiver.hits.filter((h) => h.id === first)[2]!;
    expect(signedTwice.headers['webhook-signature'].split(' ')).toHaveLength(2);
    expect(new Webhook(newSecret).verify(signedTwice.raw, signedTwice.headers)).toMatchObject({ type: 'credits.low' });
    expect((await cli(['webhooks', 'rotate-secret', id, '--overlap', 'soon'])).code).toBe(2);

    // Recorded as commands, like every admin change.
    const history = await stack.admin<{ commands: Array<{ command: string; input: Record<string, unknown> }> }>('GET', `/admin/orgs/${orgId}/history`);
    expect(history.body.commands.map((c) => c.command)).toEqual(['create-org', 'create-key', 'set-limits', 'set-alerts', 'create-webhook', 'resend-webhook', 'rotate-webhook-secret', 'resend-webhook']);
    expect(JSON.stringify(history.body)).not.toContain(secret);
    expect(JSON.stringify(history.body)).not.toContain(newSecret);

    // Clearing the org's own thresholds from the CLI puts it back on its plan's; a second clear finds none.
    const clearedOwn = await cli(['alerts', 'clear', orgId]);
    expect([clearedOwn.code, clearedOwn.stdout]).toEqual([0, `alerts of ${orgId}: its own thresholds removed; its plan's apply\n`]);
    // Its plan's apply ('plan', or 'none' where the plan has no row: other suites may have set starter's).
    const after = (await stack.admin<{ credits_below: number[]; allowance_used_percent: number[]; applied: string }>('GET', `/admin/orgs/${orgId}/alerts`)).body;
    expect([after.credits_below, after.allowance_used_percent, ['plan', 'none'].includes(after.applied)]).toEqual([[], [], true]);
    expect(JSON.parse((await cli(['alerts', 'clear', orgId, '--json'])).stdout)).toEqual({ org_id: orgId, cleared: false });
    expect((await cli(['alerts', 'clear'])).code).toBe(2);

    const deleted = await cli(['webhooks', 'delete', id]);
    expect(deleted.code).toBe(0);
    expect((await cli(['webhooks', 'deliveries', id])).code).toBe(4);
  });

  it('refuses bad input naming the field, and writes nothing', async () => {
    const bad = [
      [{ url: 'ftp://example.com/', events: ['credits.low'] }, 'url'],
      [{ url: receiver.url, events: ['credits.nope'] }, 'events'],
      [{ url: receiver.url, events: [] }, 'events'],
      [{ url: receiver.url, events: ['credits.low'], org_id: 'Not An Org' }, 'org_id'],
    ] as const;
    const before = (await stack.admin<{ webhooks: unknown[] }>('GET', '/admin/webhooks')).body.webhooks.length;
    for (const [body, field] of bad) {
      const res = await stack.admin<{ fields: Array<{ field: string }> }>('POST', '/admin/webhooks', body);
      expect([res.status, res.body.fields?.[0]?.field]).toEqual([400, field]);
    }
    expect((await stack.admin('POST', '/admin/webhooks', { url: receiver.url, events: ['credits.low'], org_id: 'no-such-org' })).status).toBe(404);
    expect((await stack.admin<{ webhooks: unknown[] }>('GET', '/admin/webhooks')).body.webhooks).toHaveLength(before);
    const alerts = await stack.admin<{ fields: Array<{ field: string }> }>('PUT', '/admin/orgs/nobody/alerts', { credits_below: [-1] });
    expect([alerts.status, alerts.body.fields?.[0]?.field]).toEqual([400, 'credits_below']);
    const cliBad = await cli(['webhooks', 'resend', 'whk_x']);
    expect([cliBad.code, cliBad.stderr]).toEqual([2, 'tollgate: give exactly one of --msg MSG_ID or --since TIME\n']);
  });

  it('metering SIGKILLed while a delivery is in flight: after the restart the message arrives again with its webhook-id, and nothing is reordered', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('hooks-kill'));
    const created = await stack.admin<{ id: string; secret: string }>('POST', '/admin/webhooks', { url: receiver.url, events: ['credits.granted'], org_id: orgId });
    expect(created.status).toBe(201);
    secret = created.body.secret;
    const hitsBefore = receiver.hits.length;
    // The first request of this test is held (no answer) until metering is gone.
    receiver.answer = (n) => (n === hitsBefore ? { status: 200, delayMs: 5000 } : { status: 200 });
    for (let i = 1; i <= 3; i++) {
      expect((await stack.admin('POST', `/admin/orgs/${orgId}/credits`, { amount: i, reason: `kill ${i}`, idempotency_key: `${orgId}-${i}` })).status).toBe(201);
    }
    await eventually(async () => receiver.hits.length > hitsBefore, 10_000);
    const inFlight = receiver.hits[hitsBefore]!.id;
    await stack.kill('metering');
    await stack.startApp('metering');
    // The lease of the interrupted attempt runs out (timeout + 10 s), then the queue goes on from the same message.
    // (The org's opening grant of 50 is sent too if the notifier read it after the endpoint was created.)
    const grants = () => ofOrg(orgId).filter((h) => h.body.data.amount !== 50);
    await eventually(async () => grants().length === 3 && receiver.hits.filter((h) => h.id === inFlight).length >= 2, 40_000, 250);
    const seqs = ofOrg(orgId).map((h) => Number(h.body.data.seq));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(ofOrg(orgId)[0]!.id).toBe(inFlight);
    expect(grants().map((h) => h.body.data.amount)).toEqual([1, 2, 3]);
    expect(receiver.badSignatures).toEqual([]);
  }, 90_000);
});
