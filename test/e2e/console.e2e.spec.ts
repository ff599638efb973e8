import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';
import { produce, requestCompleted, testKafka } from '../support/kafka';
import { eventually, repoRoot, Stack, uniqueId } from '../support/stack';
import { roomInWindow } from '../support/windows';
import { WebhookReceiver } from '../support/webhook-receiver';

/**
 * The operator's console (`GET /console` on metering, SPEC §9) in a real browser: the system's Chromium (Debian's
 * `chromium`, or CHROMIUM_PATH), driven headless by playwright-core. Real data: calls through the gateway, metered
 * by the consumer, then every console action checked for its effect on the ledger.
 */
const chromiumPath = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && existsSync(p));

describe('operator console (trackyard, headless Chromium)', () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  const base = '/api/external/v1';
  const orgId = uniqueId('console');
  let key: string;
  // Earlier calls of the org, as another producer reports them (hours ago; charged unless they failed or were refused).
  type PastCall = { hoursAgo: number; status: number; decision?: 'rate_limited' | 'insufficient_credits' };
  const history: Array<PastCall & { at: number }> = ([
    ...[3, 5, 8, 12, 20, 26, 30, 38].map((hoursAgo) => ({ hoursAgo, status: 200 })),
    { hoursAgo: 6, status: 500 },
    { hoursAgo: 26, status: 503 },
    { hoursAgo: 9, status: 429, decision: 'rate_limited' },
    { hoursAgo: 27, status: 402, decision: 'insufficient_credits' },
  ] as PastCall[]).map((h) => ({ ...h, at: Date.now() - h.hoursAgo * 3_600_000 }));
  const charged = (from: number) => history.filter((h) => h.status === 200 && h.at >= from).length;
  const calls = (from: number) => history.filter((h) => h.at >= from).length;
  const problems: string[] = [];
  let webhookSecret = '';
  const receiver = new WebhookReceiver(() => webhookSecret);
  const requestUrls: string[] = [];

  const consoleUrl = () => `http://127.0.0.1:${stack.ports.metering}/console`;
  const search = (k: string) =>
    fetch(stack.gatewayUrl(`${base}/search`), {
      method: 'POST',
      headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'console' }),
    });
  const lastCommand = async (command: string) => {
    const { commands } = (await stack.admin<{ commands: Array<{ id: string; command: string; input: Record<string, unknown>; idempotency_key: string | null }> }>('GET', `/admin/orgs/${orgId}/history?limit=500`)).body;
    const found = commands.filter((c) => c.command === command).pop();
    if (!found) throw new Error(`no ${command} command in the history of ${orgId}`);
    return found;
  };
  const ledger = async () => (await stack.admin<{ entries: Array<{ seq: number; type: string; amount: number; cause: string }> }>('GET', `/admin/orgs/${orgId}/ledger?limit=500`)).body.entries;

  beforeAll(async () => {
    if (!chromiumPath) throw new Error('no Chromium: apt-get install -y chromium (or set CHROMIUM_PATH)');
    await receiver.start();
    stack = await Stack.start({
      profile: 'trackyard',
      env: { WEBHOOK_RETRY_BASE_MS: '50', WEBHOOK_RETRY_MAX_MS: '200', WEBHOOK_NOTIFY_INTERVAL_MS: '100', WEBHOOK_SEND_INTERVAL_MS: '100' },
    });
    // Real history: the free plan allows 5 calls a minute, so 6 calls are 5 charged and 1 rate-limited.
    ({ key } = await stack.orgWithKey('free', orgId));
    const statuses: number[] = [];
    // The six calls must fall in one minute window (fixed windows, aligned to the clock), or the sixth is admitted.
    await roomInWindow(60, 10_000);
    for (let i = 0; i < 6; i++) statuses.push((await search(key)).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses).toContain(429);
    await produce(testKafka(), history.map((h) => ({
      key: orgId,
      value: JSON.stringify(requestCompleted({ org_id: orgId, occurred_at: new Date(h.at).toISOString(), status_code: h.status, ...(h.decision ? { decision: h.decision } : {}) })),
    })));
    await eventually(async () => {
      const usage = await stack.admin<{ total_count: number }>('GET', `/admin/orgs/${orgId}/usage`);
      return usage.body.total_count === 6 + history.length;
    }, 15_000, 200);
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => {
      // HTTP errors the tests cause on purpose (a wrong token, a refused plan) are checked where they happen.
      if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('request', (r) => requestUrls.push(r.url()));
    page.on('dialog', (d) => void d.accept());
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await receiver.stop();
  });

  it('serves the page and its assets from metering with a strict CSP, nothing else', async () => {
    const res = await fetch(consoleUrl());
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    const html = await res.text();
    expect(html).not.toMatch(/https?:\/\//);
    for (const asset of ['console.js', 'console.css', 'uPlot.iife.min.js', 'uPlot.min.css']) {
      expect((await fetch(`${consoleUrl()}/assets/${asset}`)).status).toBe(200);
    }
    expect((await fetch(`${consoleUrl()}/assets/index.ts`)).status).toBe(404);
    expect((await fetch(`${consoleUrl()}/assets/..%2Fconsole.controller.js`)).status).toBe(404);
  });

  it('signs in only with the admin token, and keeps it out of every URL', async () => {
    await page.goto(consoleUrl());
    await page.fill('#token', 'not-the-token');
    await page.click('#signin button[type=submit]');
    await page.waitForSelector('#signin-error:has-text("refused")');
    await page.fill('#token', stack.adminToken);
    await page.fill('#actor', 'Ada Operator');
    await page.click('#signin button[type=submit]');
    await page.waitForSelector('#orgs tbody tr');
    expect(page.url()).not.toContain(stack.adminToken);
  });

  it('lists orgs with balance, credits used this month, calls today and last call, searchable', async () => {
    await page.fill('input[type=search]', orgId);
    const row = page.locator('#orgs tbody tr', { hasText: orgId });
    await row.waitFor();
    const cells = await row.locator('td').allInnerTexts();
    const now = new Date();
    const month = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    const day = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    expect(cells.slice(0, 6)).toEqual([orgId, `test ${orgId}`, 'free', String(45 - charged(0)), String(5 + charged(month)), String(6 + calls(day))]);
    expect(cells[6]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    await page.click('th[data-sort=balance]');
    await page.waitForSelector('th.sorted[data-sort=balance]');
  });

  it('shows an org with charts drawn from its calls, by reason, and the ledger with each entry\'s cause', async () => {
    await page.goto(`${consoleUrl()}#/orgs/${orgId}`);
    await page.waitForSelector('#calls-chart canvas');
    await page.waitForSelector('#ledger tbody tr');
    expect(await page.textContent('#org-balance')).toBe(String(45 - charged(0)));
    expect(await page.getAttribute('#calls-chart', 'data-calls')).toBe(String(6 + history.length));
    expect(Number(await page.getAttribute('#balance-chart', 'data-points'))).toBeGreaterThan(0);
    const legend = await page.textContent('#calls-chart');
    expect(legend).toContain('charged');
    expect(legend).toContain('rate-limited');
    expect(legend).toContain('insufficient credits');
    expect(legend).toContain('failure');
    // Both charts really painted: some pixels of each canvas are not blank.
    // (Browser code as a string: this file is compiled without the DOM's types.)
    const painted = await page.evaluate<number[]>(`['#balance-chart canvas', '#calls-chart canvas'].map((sel) => {
      const c = document.querySelector(sel);
      const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
      return n;
    })`);
    expect(painted.every((n) => n > 500)).toBe(true);
    const charge = page.locator('#ledger tbody tr[data-type=charge]').first();
    expect(await charge.textContent()).toContain('POST /api/external/v1/search → 200 (charged)');
    // The gateway spent the calls from a lease: its entry says whose and how much of it calls spent.
    expect(await page.locator('#ledger tbody tr[data-type=lease]').first().textContent()).toMatch(/lease of \d+ to .+: \d+ spent by calls, \d+ returned early \((open|closed)\)/);
  });

  it('grants credits once per submit, and the ledger shows the top-up with its reason', async () => {
    // The gateway's leases append their own entries meanwhile (a lease ended: a release), so top-ups are counted.
    const topUps = async () => (await ledger()).filter((e) => e.type === 'top_up');
    const before = (await topUps()).length;
    await page.fill('#grant-form input[name=amount]', '100');
    await page.fill('#grant-form input[name=reason]', 'browser goodwill');
    await page.click('#grant-form button[type=submit]');
    const balance = 145 - charged(0);
    await page.waitForSelector(`#grant-result:has-text("Granted 100 credits; balance ${balance}.")`);
    await page.waitForSelector(`#org-balance:has-text("${balance}")`);
    const top = page.locator('#ledger tbody tr[data-type=top_up]').first();
    expect(await top.textContent()).toContain('admin grant: browser goodwill');
    const after = await topUps();
    expect(after).toHaveLength(before + 1);
    expect(after[after.length - 1]).toMatchObject({ type: 'top_up', amount: 100, cause: `admin:${(await lastCommand('grant-credits')).id}` });
    expect((await lastCommand('grant-credits')).idempotency_key).toMatch(/^console-/);
  });

  it('changes the plan, and the ledger shows the plan change', async () => {
    await page.fill('#plan-form input[name=plan]', 'platinum');
    await page.click('#plan-form button[type=submit]');
    await page.waitForSelector('#plan-result.error:has-text("plan: must be one of")');
    await page.fill('#plan-form input[name=plan]', 'starter');
    await page.click('#plan-form button[type=submit]');
    await page.waitForSelector('#plan-result:has-text("Now on starter")');
    await page.waitForSelector('#org-plan:has-text("starter")');
    const changed = await lastCommand('change-plan');
    expect(changed.input).toEqual({ plan: 'starter' });
    expect((await ledger()).some((e) => e.cause === `admin:${changed.id}`)).toBe(true);
    expect(await page.locator('#ledger tbody tr', { hasText: `admin:${changed.id}` }).locator('text=plan changed to starter').count()).toBeGreaterThan(0);
  });

  it('sets limits, which the admin API then returns', async () => {
    await page.fill('#limits-form input[name=limits]', 'minute=2 day=50');
    await page.click('#limits-form button[type=submit]');
    await page.waitForSelector('#limits-result:has-text("Limits saved")');
    // jsonb keeps its own key order: day before minute.
    await page.waitForSelector('#limits-now:has-text("Overrides: day=50 minute=2")');
    expect((await stack.admin('GET', `/admin/orgs/${orgId}/limits`)).body).toEqual({ org_id: orgId, limits: { minute: 2, day: 50 } });
    // The history, newest first: each change by the name given at sign-in (the org itself was made over the API).
    await page.waitForSelector('#history tbody tr[data-command=set-limits]');
    const rows = await page.locator('#history tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    expect(rows.map((r) => [r[2], r[3]])).toEqual([
      ['set-limits', 'Ada Operator'], ['change-plan', 'Ada Operator'], ['grant-credits', 'Ada Operator'], ['create-key', 'admin-token'], ['create-org', 'admin-token'],
    ]);
    expect(rows[0]![4]).toContain('day=50 minute=2');
    expect(rows[1]![4]).toContain('plan free → starter');
    expect(rows[2]![4]).toContain('+100 "browser goodwill"');
    // The README's picture of an org page (before any key is shown on it).
    await page.screenshot({ path: screenshotPath(), fullPage: true });
  });

  it('creates a key shown once, and revokes it so the gateway refuses it', async () => {
    await page.fill('#key-form input[name=name]', 'browser');
    await page.click('#key-form button[type=submit]');
    const newKey = (await page.textContent('#new-key-value'))!;
    expect(newKey).toMatch(/^tg_live_[A-Za-z0-9]{40}$/);
    expect((await search(newKey)).status).toBe(200);
    await page.waitForSelector('#keys tbody tr:has-text("browser")');

    await page.reload();
    await page.waitForSelector('#keys tbody tr:has-text("browser")');
    expect(await page.content()).not.toContain(newKey);
    await page.locator('#keys tbody tr', { hasText: 'browser' }).locator('button:has-text("Revoke")').click();
    await page.waitForSelector('#keys tbody tr.revoked:has-text("browser")');
    await page.waitForSelector('#history tbody tr[data-command=revoke-key]:has-text("Ada Operator")');
    expect(await page.locator('#history').textContent()).not.toContain(newKey);
    await eventually(async () => (await search(newKey)).status === 401, 8000, 250);
  });

  it('sets the org\'s and its plan\'s alert thresholds, recorded as commands', async () => {
    await page.fill('#alerts-form input[name=credits_below]', '100, 20');
    await page.fill('#alerts-form input[name=allowance_used_percent]', 'x');
    await page.click('#alerts-form button[type=submit]');
    await page.waitForSelector('#alerts-result.error:has-text("allowance_used_percent: \\"x\\" is not a whole number")');
    await page.fill('#alerts-form input[name=allowance_used_percent]', '90');
    await page.click('#alerts-form button[type=submit]');
    await page.waitForSelector('#alerts-result:has-text("Alerts saved.")');
    await page.waitForSelector('#alerts-now[data-applied=org]');
    expect((await stack.admin('GET', `/admin/orgs/${orgId}/alerts`)).body).toMatchObject({ credits_below: [100, 20], allowance_used_percent: [90], applied: 'org' });
    await page.waitForSelector('#history tbody tr[data-command=set-alerts]:has-text("Ada Operator")');

    await page.fill('#plan-alerts-form input[name=allowance_used_percent]', '75');
    await page.click('#plan-alerts-form button[type=submit]');
    await page.waitForSelector('#alerts-now:has-text("Plan starter: below none, at 75%")');
    expect((await stack.admin('GET', '/admin/plans/starter/alerts')).body).toEqual({ plan: 'starter', credits_below: [], allowance_used_percent: [75] });

    // Back on the plan's: the org's own are removed, recorded with who did it.
    await page.click('#alerts-clear');
    await page.waitForSelector('#alerts-result:has-text("its plan\'s apply")');
    await page.waitForSelector('#alerts-now[data-applied=plan]');
    expect((await stack.admin('GET', `/admin/orgs/${orgId}/alerts`)).body).toMatchObject({ credits_below: [], allowance_used_percent: [], applied: 'plan' });
    await page.waitForSelector('#history tbody tr[data-command=clear-alerts]:has-text("Ada Operator")');
    expect((await stack.admin('PUT', '/admin/plans/starter/alerts', {})).status).toBe(200);
  });

  it('shows an endpoint\'s delivery log (each attempt: status, latency, response head) and re-sends one message, then everything since a time', async () => {
    receiver.answer = (n) => (n < 2 ? { status: 500 } : { status: 204 });
    const created = await stack.admin<{ id: string; secret: string }>('POST', '/admin/webhooks', { url: receiver.url, events: ['credits.granted'], org_id: orgId });
    expect(created.status).toBe(201);
    webhookSecret = created.body.secret;
    const sinceCreated = new Date(Date.now() - 1000);
    expect((await stack.admin('POST', `/admin/orgs/${orgId}/credits`, { amount: 5, reason: 'webhook', idempotency_key: `${orgId}-hook` })).status).toBe(201);
    await eventually(async () => receiver.accepted().length === 1, 20_000, 100);
    const msgId = receiver.accepted()[0]!.id;

    await page.reload();
    const row = page.locator(`#webhooks tbody tr[data-webhook=${created.body.id}]`);
    await row.waitFor();
    expect(await row.textContent()).toContain('enabled');
    await row.locator('button:has-text("Deliveries")').click();
    await page.waitForSelector('#deliveries tbody tr[data-status="204"]');
    const attempts = await page.locator('#deliveries tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    // Newest first: the delivery, after two answers of 500, each with its latency and the response's head.
    expect(attempts.map((a) => [a[1], a[2], a[3]])).toEqual([[msgId, 'credits.granted', '204'], [msgId, 'credits.granted', '500'], [msgId, 'credits.granted', '500']]);
    for (const a of attempts) expect(a[4]).toMatch(/^\d[\d,]*$/);
    expect(attempts[1]![5]).toContain('500 Internal Server Error\n{"ok":true}');
    expect(attempts[1]![5]).toContain('HTTP 500');
    expect(await page.textContent('#deliveries-info')).toContain('0 undelivered');

    // Re-send that one message: it arrives again, with the same webhook-id, and the log shows the new attempt.
    await page.locator('#deliveries tbody tr[data-status="204"]').first().locator('button:has-text("Re-send")').click();
    await page.waitForSelector('#resend-result:has-text("Queued 1 message again.")');
    await eventually(async () => receiver.hits.filter((h) => h.id === msgId && h.answered === 204).length === 2, 15_000, 100);
    // (Polled from here: the page's CSP refuses a predicate evaluated as a string.)
    await eventually(async () => {
      await page.click('#deliveries-refresh');
      return (await page.locator('#deliveries tbody tr[data-status="204"]').count()) === 2;
    }, 10_000, 250);

    // Everything since a time (UTC in the form): each message queued since then (its copies count once), again.
    const since = sinceCreated.toISOString().slice(0, 19);
    await page.fill('#resend-since-form input[name=since]', since);
    await page.click('#resend-since-form button[type=submit]');
    await page.waitForSelector('#resend-result:has-text("Queued 1 message(s) again.")');
    await eventually(async () => receiver.hits.filter((h) => h.id === msgId && h.answered === 204).length === 3, 15_000, 100);
    expect(receiver.badSignatures).toEqual([]);
    const resends = await stack.admin<{ commands: Array<{ command: string; actor: string; input: Record<string, unknown> }> }>('GET', `/admin/orgs/${orgId}/history?limit=500`);
    expect(resends.body.commands.filter((c) => c.command === 'resend-webhook').map((c) => [c.actor, c.input.msg_id ?? null, c.input.since ?? null]))
      .toEqual([['Ada Operator', msgId, null], ['Ada Operator', null, `${since}.000Z`]]);
    await page.waitForSelector('#history tbody tr[data-command=resend-webhook]');
  });

  it('shows the system: metered events, lag, dead letters, holds and decisions by outcome', async () => {
    await page.click('nav a[data-nav=system]');
    await page.waitForSelector('#decisions tbody tr[data-outcome=forwarded]');
    expect(Number((await page.textContent('#sys-metered'))!.replace(/,/g, ''))).toBeGreaterThanOrEqual(6);
    expect(await page.textContent('#sys-lag')).toMatch(/^\d[\d,]*$/);
    expect(await page.locator('#decisions tbody tr[data-outcome=rate_limited]').count()).toBe(1);
  });

  it('signs out, and no request carried the token in its URL, and no script or CSP error happened', async () => {
    await page.click('#signout');
    await page.waitForSelector('#signin');
    expect(await page.evaluate<number>('sessionStorage.length')).toBe(0);
    expect(requestUrls.some((u) => u.includes(stack.adminToken))).toBe(false);
    expect(problems).toEqual([]);
  });
});

/**
 * The README's picture is refreshed only when asked (TOLLGATE_REFRESH_DOCS=1), so a test run leaves the tree clean;
 * otherwise the screenshot goes to .tollgate/ (ignored), still taken so a broken page shows up as a failure here.
 */
function screenshotPath(): string {
  const dir = process.env.TOLLGATE_REFRESH_DOCS === '1' ? join(repoRoot, 'docs') : join(repoRoot, '.tollgate', 'screenshots');
  mkdirSync(dir, { recursive: true });
  return join(dir, 'console-org.png');
}
