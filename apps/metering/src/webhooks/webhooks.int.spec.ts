// Over 400 lines on purpose: one suite of the notifier and sender against one database and receiver (thresholds, retries, disabling, rotation, SSRF); split, each part would repeat the setup.
import { DataSource } from 'typeorm';
import { Webhook } from 'standardwebhooks';
import { v7 as uuidv7 } from 'uuid';
import { connectDatabase } from '@tollgate/persistence';
import { webhookEndpointsDisabled } from '@tollgate/platform';
import { AdminService } from '../admin/admin.service';
import { insertUsage, ProfileCatalog } from '@tollgate/ledger';
import { ReservationService } from '../reservations/reservation.service';
import { Notifier } from './notifier';
import { WebhookSender } from './webhook-sender';
import { WebhooksService } from './webhooks.service';
import { WebhookReceiver } from '../../../../test/support/webhook-receiver';

describe('webhooks (real PostgreSQL, a real receiver verifying Standard Webhooks signatures)', () => {
  let ds: DataSource;
  const catalog = ProfileCatalog.load('trackyard');
  const run = `wh-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  const policy = { retryBaseMs: 40, retryMaxMs: 200, disableAfterMs: 60 * 60_000, timeoutMs: 400 };
  const dev = { production: false, allowPrivate: false };
  let admin: AdminService;
  let hooks: WebhooksService;
  let notifier: Notifier;

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 8 });
    admin = new AdminService(ds, catalog);
    hooks = new WebhooksService(ds, dev, catalog);
    notifier = new Notifier(ds);
  });

  afterAll(async () => {
    await ds?.destroy();
  });

  /** Derives until nothing is left, and delivers with `senders` racing each other until every message is delivered. */
  async function drain(endpointId: string, senders: WebhookSender[], deadlineMs = 30_000): Promise<void> {
    while ((await notifier.runOnce()) > 0) {
      /* all orgs read */
    }
    const until = Date.now() + deadlineMs;
    for (;;) {
      await Promise.all(senders.map((s) => s.deliverOnce()));
      const [left] = (await ds.query(`SELECT count(*)::int AS n FROM webhook_messages WHERE endpoint_id = $1 AND delivered_at IS NULL`, [endpointId])) as Array<{ n: number }>;
      if (left!.n === 0) return;
      if (Date.now() > until) throw new Error(`${left!.n} messages still undelivered`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function ledgerSeqs(orgId: string): Promise<Array<{ seq: number; type: string; balance_after: number }>> {
    const rows: Array<{ seq: string; type: string; balance_after: string }> = await ds.query(`SELECT seq, type, balance_after FROM ledger_entries WHERE org_id = $1 ORDER BY seq`, [orgId]);
    return rows.map((r) => ({ seq: Number(r.seq), type: r.type, balance_after: Number(r.balance_after) }));
  }

  it('concurrent paid calls crossing two thresholds give exactly one credits.low each, signed, in ledger order, with distinct ids, even with two senders racing', async () => {
    let secret = '';
    const receiver = new WebhookReceiver(() => secret);
    await receiver.start();
    try {
      const org = `${run}-a`;
      await admin.createOrg({ id: org, name: org, plan: 'starter' }); // 500 monthly credits
      // Derive the org's opening before the endpoint exists: only what follows is sent.
      while ((await notifier.runOnce()) > 0) { /* caught up */ }
      const created = await hooks.create({ url: receiver.url, events: ['credits.low', 'credits.granted', 'allowance.reset'], org_id: org });
      secret = created.secret;
      expect(secret).toMatch(/^whsec_/);
      await hooks.setAlerts(org, { credits_below: [490, 480] });

      const reservations = new ReservationService(ds, catalog);
      const calls = Array.from({ length: 40 }, () => uuidv7());
      const outcomes = await Promise.all(
        calls.map((id) => reservations.reserve({ reservationId: id, orgId: org, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: Date.now() })),
      );
      expect(outcomes.every((o) => o.granted)).toBe(true);
      // The holds given back take the balance above both thresholds again: a release does not re-arm them.
      for (const id of calls.slice(0, 20)) await reservations.release(id, org);
      await admin.grantCredits(org, { amount: 5, reason: 'top-up', idempotency_key: `${org}-1` });

      const senders = [new WebhookSender(ds, policy, dev), new WebhookSender(ds, policy, dev)];
      await drain(created.id, senders);

      expect(receiver.badSignatures).toEqual([]);
      const got = receiver.accepted();
      const ledger = await ledgerSeqs(org);
      const crossing = (n: number) => ledger.find((e, i) => i > 0 && ledger[i - 1]!.balance_after >= n && e.balance_after < n)!.seq;
      expect(got.map((h) => [h.body.type, h.body.data.seq, h.body.data.threshold ?? null])).toEqual([
        ['credits.low', crossing(490), 490],
        ['credits.low', crossing(480), 480],
        ['credits.granted', ledger[ledger.length - 1]!.seq, null],
      ]);
      expect(new Set(got.map((h) => h.id)).size).toBe(3);
      for (const h of got) expect(h.body).toMatchObject({ timestamp: expect.any(String), data: { org_id: org } });
      // No message was sent twice: two senders never held the same one.
      expect(receiver.hits).toHaveLength(3);
    } finally {
      await receiver.stop();
    }
  });

  // The "receiver down for 30 s": WEBHOOK_TEST_RECEIVER_DOWN_MS=30000 runs it so; the suite's default is
  // shorter (the behaviour is the same: retries with backoff against a refused connection for that long).
  const downMs = Number(process.env.WEBHOOK_TEST_RECEIVER_DOWN_MS ?? 8_000);

  it('a receiver down (connections refused), then answering 500, then too slow, then well: every message arrives after, in order, with the same webhook-id on every attempt, each attempt logged', async () => {
    let secret = '';
    const receiver = new WebhookReceiver(() => secret);
    await receiver.start();
    try {
      const org = `${run}-b`;
      await admin.createOrg({ id: org, name: org, plan: 'free' });
      const created = await hooks.create({ url: receiver.url, events: ['credits.granted'], org_id: org });
      secret = created.secret;
      for (let i = 1; i <= 4; i++) await admin.grantCredits(org, { amount: i, reason: `grant ${i}`, idempotency_key: `${org}-${i}` });
      // Down for downMs; then 4 failures (HTTP 500), one answer slower than the 400 ms timeout, then 2xx.
      receiver.answer = (n) => (n < 4 ? { status: 500 } : n === 4 ? { status: 200, delayMs: 1200 } : { status: 200 });
      await receiver.down();
      const back = new Promise<void>((resolve, reject) => setTimeout(() => receiver.start().then(resolve, reject), downMs));

      await drain(created.id, [new WebhookSender(ds, policy, dev)], downMs + 30_000);
      await back;

      expect(receiver.badSignatures).toEqual([]);
      const got = receiver.accepted().filter((h) => h.answered === 200 && h.body.data.amount !== 50);
      expect(got.map((h) => h.body.data.amount)).toEqual([1, 2, 3, 4]);
      // The head was retried with its one webhook-id; nothing behind it was tried before it was delivered.
      const first = receiver.hits[0]!.id;
      expect(receiver.hits.slice(0, 6).map((h) => h.id)).toEqual(Array(6).fill(first));
      const order = [...new Set(receiver.hits.map((h) => h.id))];
      expect(receiver.accepted().map((h) => h.id)).toEqual(order);

      const deliveries = await hooks.deliveries(created.id, 500);
      expect(deliveries.pending).toBe(0);
      const attempts = [...deliveries.deliveries].reverse();
      // Every attempt while it was down is logged (refused, no status), all for the head, spread over the outage.
      const refused = attempts.findIndex((a) => a.status !== null);
      expect(refused).toBeGreaterThan(1);
      expect(attempts.slice(0, refused).map((a) => [a.msg_id, a.status, a.error])).toEqual(Array(refused).fill([first, null, 'ECONNREFUSED']));
      expect(Date.parse(attempts[refused - 1]!.attempted_at) - Date.parse(attempts[0]!.attempted_at)).toBeGreaterThan(downMs * 0.5);
      const after = attempts.slice(refused);
      expect(after).toHaveLength(receiver.hits.length);
      expect(after.slice(0, 4).map((a) => [a.msg_id, a.status, a.error])).toEqual(Array(4).fill([first, 500, 'HTTP 500']));
      expect(after[4]).toMatchObject({ msg_id: first, status: null, error: 'timed out after 400 ms' });
      expect(after[5]).toMatchObject({ msg_id: first, status: 200, error: null, response_head: '200 OK\n{"ok":true}' });
      // A re-send of one message: queued again at the tail with the same id, and delivered again.
      const resent = await hooks.resend(created.id, { msg_id: first });
      expect(resent).toMatchObject({ resent: 1, reenabled: false });
      await drain(created.id, [new WebhookSender(ds, policy, dev)]);
      expect(receiver.hits[receiver.hits.length - 1]!.id).toBe(first);
    } finally {
      await receiver.stop().catch(() => undefined);
    }
  }, downMs + 90_000);

  it('an endpoint failing for longer than allowed is disabled: its messages wait, nothing new is queued for it, and a re-send enables it again', async () => {
    let secret = '';
    const receiver = new WebhookReceiver(() => secret);
    await receiver.start();
    try {
      const org = `${run}-d`;
      await admin.createOrg({ id: org, name: org, plan: 'free' });
      const created = await hooks.create({ url: receiver.url, events: ['credits.granted'], org_id: org });
      secret = created.secret;
      // The org's other endpoint hears that the first was disabled; another org's does not.
      let watchSecret = '';
      const watcher = new WebhookReceiver(() => watchSecret);
      await watcher.start();
      const watching = await hooks.create({ url: watcher.url, events: ['endpoint.disabled'], org_id: org });
      watchSecret = watching.secret;
      await admin.createOrg({ id: `${org}-other`, name: 'other', plan: 'free' });
      const elsewhere = await hooks.create({ url: watcher.url, events: ['endpoint.disabled'], org_id: `${org}-other` });
      receiver.answer = () => ({ status: 503 });
      const sender = new WebhookSender(ds, { ...policy, disableAfterMs: 300 }, dev);
      while ((await notifier.runOnce()) > 0) { /* caught up */ }
      const until = Date.now() + 20_000;
      while (!(await hooks.list(org)).webhooks.find((w) => w.id === created.id)!.disabled_at) {
        if (Date.now() > until) throw new Error('never disabled');
        await sender.deliverOnce();
        await new Promise((r) => setTimeout(r, 30));
      }
      await sender.sample();
      expect(Number((await webhookEndpointsDisabled.get()).values[0]!.value)).toBeGreaterThanOrEqual(1);
      const attempts = receiver.hits.length;
      await admin.grantCredits(org, { amount: 3, reason: 'while disabled', idempotency_key: `${org}-1` });
      while ((await notifier.runOnce()) > 0) { /* caught up */ }
      await drain(watching.id, [sender]);
      expect(receiver.hits).toHaveLength(attempts);
      expect((await hooks.deliveries(created.id)).pending).toBe(1);
      const disabledAt = (await hooks.list(org)).webhooks.find((w) => w.id === created.id)!.disabled_at;
      expect(watcher.badSignatures).toEqual([]);
      expect(watcher.accepted().map((h) => h.body)).toEqual([{
        type: 'endpoint.disabled', timestamp: disabledAt,
        data: { org_id: org, webhook_id: created.id, url: receiver.url, failing_since: expect.any(String), disabled_at: disabledAt },
      }]);
      expect((await hooks.deliveries(elsewhere.id)).deliveries).toEqual([]);
      // Announced once, and recorded in the org's history as the system's command.
      while ((await notifier.runOnce()) > 0) { /* caught up */ }
      const [recorded] = (await ds.query(`SELECT actor, input, result FROM admin_commands WHERE org_id = $1 AND command = 'disable-webhook'`, [org])) as Array<{ actor: string; input: Record<string, unknown>; result: Record<string, unknown> }>;
      expect(recorded).toMatchObject({ actor: 'tollgate', input: { webhook_id: created.id }, result: { webhook_id: created.id, disabled_at: disabledAt, notified: [watching.id] } });
      expect(((await ds.query(`SELECT count(*)::int AS n FROM webhook_messages WHERE event_type = 'endpoint.disabled' AND endpoint_id = $1`, [watching.id])) as Array<{ n: number }>)[0]!.n).toBe(1);
      await watcher.stop();

      receiver.answer = () => ({ status: 200 });
      expect(await hooks.resend(created.id, { since: new Date(Date.now() - 60_000).toISOString() })).toMatchObject({ reenabled: true, resent: 1 });
      await drain(created.id, [sender]);
      // The message that waited, then its re-sent copy (same webhook-id); the grant made while disabled was never queued.
      expect(receiver.accepted().map((h) => h.body.data.amount)).toEqual([50]);
      expect(receiver.hits.filter((h) => h.answered === 200).map((h) => h.id)).toEqual([receiver.hits[0]!.id, receiver.hits[0]!.id]);
      expect(receiver.badSignatures).toEqual([]);
    } finally {
      await receiver.stop();
    }
  });

  it('credits.exhausted: once for the first refusal for want of credits, again only after credits are granted', async () => {
    let secret = '';
    const receiver = new WebhookReceiver(() => secret);
    await receiver.start();
    try {
      const org = `${run}-c`;
      await admin.createOrg({ id: org, name: org, plan: 'free' });
      const created = await hooks.create({ url: receiver.url, events: ['credits.exhausted'], org_id: org });
      secret = created.secret;
      const refuse = (at: number) =>
        insertUsage(ds.manager, [{
          eventId: uuidv7(), orgId: org, occurredAt: new Date(at).toISOString(), method: 'GET', route: '/search', path: '/search', statusCode: 402,
          credits: 0, costReason: 'insufficient_credits', responseTimeMs: 1, requestId: null, decision: 'insufficient_credits', apiKeyId: null, entities: 0, chargedEntities: [],
        }]);
      await refuse(Date.now());
      await refuse(Date.now() + 1);
      await notifier.runOnce();
      await refuse(Date.now() + 2);
      await drain(created.id, [new WebhookSender(ds, policy, dev)]);
      expect(receiver.accepted().map((h) => h.body.type)).toEqual(['credits.exhausted']);

      await admin.grantCredits(org, { amount: 10, reason: 'more', idempotency_key: `${org}-1` });
      await new Promise((r) => setTimeout(r, 5));
      await refuse(Date.now());
      await drain(created.id, [new WebhookSender(ds, policy, dev)]);
      expect(receiver.badSignatures).toEqual([]);
      expect(receiver.accepted().map((h) => h.body.type)).toEqual(['credits.exhausted', 'credits.exhausted']);
    } finally {
      await receiver.stop();
    }
  });

  it('allowance_used_percent and plan thresholds: credits.low when the balance falls below what is left of the allowance, once; an org\'s own thresholds replace its plan\'s', async () => {
    let secret = '';
    const receiver = new WebhookReceiver(() => secret);
    await receiver.start();
    try {
      const onPlan = `${run}-p1`;
      const own = `${run}-p2`;
      for (const org of [onPlan, own]) await admin.createOrg({ id: org, name: org, plan: 'starter' }); // 500 a month
      while ((await notifier.runOnce()) > 0) { /* caught up */ }
      const created = await hooks.create({ url: receiver.url, events: ['credits.low'], org_id: null });
      secret = created.secret;
      await expect(hooks.setPlanAlerts('no-such-plan', { credits_below: [1] })).rejects.toThrow(/plan "no-such-plan" does not exist/);
      expect(await hooks.setPlanAlerts('starter', { allowance_used_percent: [2, 4] })).toMatchObject({ plan: 'starter', credits_below: [], allowance_used_percent: [2, 4] });
      await hooks.setAlerts(own, { allowance_used_percent: [3] });
      expect(await hooks.getAlerts(onPlan)).toMatchObject({ credits_below: [], allowance_used_percent: [], plan: 'starter', plan_alerts: { allowance_used_percent: [2, 4] }, applied: 'plan' });
      expect(await hooks.getAlerts(own)).toMatchObject({ allowance_used_percent: [3], applied: 'org' });

      const reservations = new ReservationService(ds, catalog);
      for (const org of [onPlan, own]) {
        const outcomes = await Promise.all(Array.from({ length: 30 }, () =>
          reservations.reserve({ reservationId: uuidv7(), orgId: org, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: Date.now() })));
        expect(outcomes.every((o) => o.granted)).toBe(true);
      }
      await drain(created.id, [new WebhookSender(ds, policy, dev)]);
      expect(receiver.badSignatures).toEqual([]);
      const low = (org: string) => receiver.accepted().filter((h) => h.body.data.org_id === org).map((h) => [h.body.data.threshold, h.body.data.allowance_used_percent, h.body.data.allowance]);
      expect(low(onPlan)).toEqual([[490, 2, 500], [480, 4, 500]]);
      expect(low(own)).toEqual([[485, 3, 500]]);
      // Recorded: the plan's under '*', the org's in its history.
      const [planCmd] = (await ds.query(`SELECT input FROM admin_commands WHERE org_id = '*' AND command = 'set-plan-alerts' ORDER BY seq DESC LIMIT 1`)) as Array<{ input: Record<string, unknown> }>;
      expect(planCmd!.input).toMatchObject({ plan: 'starter', allowance_used_percent: [2, 4] });

      // Clearing the org's own thresholds puts it back on its plan's, recorded with what was removed; a second
      // clear finds none and records nothing; an unknown org is a 404.
      expect(await hooks.clearAlerts(own, 'Ada Operator')).toMatchObject({ org_id: own, cleared: true });
      expect(await hooks.getAlerts(own)).toMatchObject({ credits_below: [], allowance_used_percent: [], plan_alerts: { allowance_used_percent: [2, 4] }, applied: 'plan' });
      expect(await hooks.clearAlerts(own)).toEqual({ org_id: own, cleared: false });
      const cleared = (await ds.query(`SELECT actor, input, result FROM admin_commands WHERE org_id = $1 AND command = 'clear-alerts'`, [own])) as Array<{ actor: string; input: unknown; result: unknown }>;
      expect(cleared).toEqual([{ actor: 'Ada Operator', input: { credits_below: [], allowance_used_percent: [3] }, result: { org_id: own, cleared: true } }]);
      await expect(hooks.clearAlerts(`${run}-nobody`)).rejects.toThrow(/does not exist/);
      await hooks.setPlanAlerts('starter', {});
      await hooks.remove(created.id);
    } finally {
      await receiver.stop();
    }
  });

  it('a rotated secret: the new one is shown once; both sign (space-separated) during the overlap, only the new one after', async () => {
    let secret = '';
    const receiver = new WebhookReceiver(() => secret);
    await receiver.start();
    try {
      const org = `${run}-r`;
      await admin.createOrg({ id: org, name: org, plan: 'free' });
      const created = await hooks.create({ url: receiver.url, events: ['credits.granted'], org_id: org });
      const old = created.secret;
      secret = old;
      const rotated = await hooks.rotateSecret(created.id, { overlap_seconds: 3600 });
      expect(rotated.secret).toMatch(/^whsec_/);
      expect(rotated.secret).not.toBe(old);
      expect(Date.parse(rotated.previous_secret_until!) - Date.now()).toBeGreaterThan(3500_000);
      await admin.grantCredits(org, { amount: 7, reason: 'during overlap', idempotency_key: `${org}-1` });
      await drain(created.id, [new WebhookSender(ds, policy, dev)]);
      // The receiver verified with the old secret; the new one verifies the same message too.
      expect(receiver.badSignatures).toEqual([]);
      const during = receiver.hits[receiver.hits.length - 1]!;
      expect(during.headers['webhook-signature'].split(' ')).toHaveLength(2);
      expect(new Webhook(rotated.secret).verify(during.raw, during.headers)).toMatchObject({ type: 'credits.granted' });

      const again = await hooks.rotateSecret(created.id, { overlap_seconds: 0 });
      expect(again.previous_secret_until).toBeNull();
      secret = again.secret;
      await admin.grantCredits(org, { amount: 8, reason: 'after', idempotency_key: `${org}-2` });
      await drain(created.id, [new WebhookSender(ds, policy, dev)]);
      expect(receiver.badSignatures).toEqual([]);
      const after = receiver.hits[receiver.hits.length - 1]!;
      expect(after.body.data.amount).toBe(8);
      expect(after.headers['webhook-signature'].split(' ')).toHaveLength(1);
      expect(() => new Webhook(rotated.secret).verify(after.raw, after.headers)).toThrow();
      // Recorded, without any secret; never listed.
      const record = JSON.stringify(await ds.query(`SELECT input, result FROM admin_commands WHERE org_id = $1`, [org]));
      expect(record).toContain(created.id);
      for (const s of [old, rotated.secret, again.secret]) {
        expect(record).not.toContain(s);
        expect(JSON.stringify(await hooks.list(org))).not.toContain(s);
      }
      await expect(hooks.rotateSecret('whk_nope', {})).rejects.toThrow(/does not exist/);
    } finally {
      await receiver.stop();
    }
  });

  it('in production, an endpoint whose name resolves to a private address at delivery time is refused there: no connection, the attempt logged (DNS rebinding)', async () => {
    const org = `${run}-s`;
    await admin.createOrg({ id: org, name: org, plan: 'free' });
    // Accepted when it was created (as a name resolving to a public address would be), then rebound to loopback.
    const created = await hooks.create({ url: 'https://hooks.rebound.test:8443/x', events: ['credits.granted'], org_id: org });
    while ((await notifier.runOnce()) > 0) { /* caught up */ }
    const asked: string[] = [];
    const sender = new WebhookSender(ds, policy, { production: true, allowPrivate: false }, 250, 16, Date.now, async (host) => {
      asked.push(host);
      return ['127.0.0.1'];
    });
    try {
      // (A queue another test left behind may be attempted in the same round.)
      expect(await sender.deliverOnce()).toBeGreaterThanOrEqual(1);
    } finally {
      await sender.stop();
    }
    expect(asked).toEqual(['hooks.rebound.test']);
    const [attempt] = (await hooks.deliveries(created.id)).deliveries;
    expect(attempt).toMatchObject({ status: null, delivered: false, error: expect.stringContaining('private address (127.0.0.1)') });
    await hooks.remove(created.id);
  });

  it('throughput and lag from ledger entry to webhook, with the notifier and sender running (logged for the report)', async () => {
    let current = '';
    const receiver = new WebhookReceiver(() => current);
    await receiver.start();
    try {
      const orgs = Array.from({ length: 10 }, (_, i) => `${run}-l${i}`);
      for (const org of orgs) await admin.createOrg({ id: org, name: org, plan: 'free' });
      const created = await hooks.create({ url: receiver.url, events: ['credits.granted'], org_id: null });
      current = created.secret;
      const n = 30;
      const loopNotifier = new Notifier(ds, 20);
      const sender = new WebhookSender(ds, policy, dev, 20);
      loopNotifier.start();
      sender.start();
      const started = Date.now();
      await Promise.all(orgs.map(async (org) => {
        for (let i = 0; i < n; i++) await admin.grantCredits(org, { amount: 1, reason: 'load', idempotency_key: `${org}-${i}` });
      }));
      const until = Date.now() + 60_000;
      for (;;) {
        const [row] = (await ds.query(
          `SELECT count(*) FILTER (WHERE delivered_at IS NULL)::int AS left, count(*)::int AS total FROM webhook_messages WHERE endpoint_id = $1`,
          [created.id],
        )) as Array<{ left: number; total: number }>;
        if (row!.total >= orgs.length * (n + 1) && row!.left === 0) break;
        if (Date.now() > until) throw new Error('not delivered in time');
        await new Promise((r) => setTimeout(r, 50));
      }
      await loopNotifier.stop();
      await sender.stop();
      const [stats] = (await ds.query(
        `SELECT count(*)::int AS n,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - source_at) * 1000) AS p50,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - source_at) * 1000) AS p99,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - source_at) * 1000) AS queued_p50,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at) * 1000) AS sent_p50,
                extract(epoch FROM max(delivered_at) - min(source_at)) AS span
           FROM webhook_messages WHERE endpoint_id = $1`,
        [created.id],
      )) as Array<{ n: number; p50: number; p99: number; queued_p50: number; sent_p50: number; span: number }>;
      // eslint-disable-next-line no-console
      console.log(`webhook load: ${stats!.n} messages over ${orgs.length} orgs in ${(Date.now() - started) / 1000} s; ` +
        `${Math.round(stats!.n / stats!.span)} msg/s; ledger entry -> webhook p50 ${Math.round(stats!.p50)} ms, p99 ${Math.round(stats!.p99)} ms ` +
        `(entry -> queued p50 ${Math.round(stats!.queued_p50)} ms, queued -> delivered p50 ${Math.round(stats!.sent_p50)} ms)`);
      expect(receiver.badSignatures).toEqual([]);
      // In order per org.
      for (const org of orgs) {
        // The org's opening grant (50) was recorded before the endpoint existed but read after: it comes first.
        const seqs = receiver.accepted().filter((h) => h.body.data.org_id === org && h.body.data.amount === 1).map((h) => Number(h.body.data.seq));
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        expect(seqs).toHaveLength(n);
      }
      await hooks.remove(created.id);
    } finally {
      await receiver.stop();
    }
  });
});
