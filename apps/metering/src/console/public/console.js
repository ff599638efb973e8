// Tollgate's operator console: a small SPA over metering's admin API, no framework and no build step.
// The admin token lives in this tab's sessionStorage and travels only as an Authorization header; it is never put
// in a URL. Every value from the API is written with textContent (never innerHTML), and the page is served with a
// CSP that allows scripts from this origin only.
// Over 400 lines on purpose: the browser loads this one classic script as it is (no bundler, no module loader);
// its views share the closure's state and helpers, and splitting it would mean a build step or ordered globals.
/* global uPlot */
(function () {
  'use strict';
  const TOKEN = 'tollgate.adminToken';
  // Who the operator said they are at sign-in: recorded as the actor of every change (X-Tollgate-Actor).
  const ACTOR = 'tollgate.actor';
  const main = document.getElementById('main');
  const REASONS = [
    ['charged', 'charged', '#2563eb'],
    ['reaccess', 're-access (free)', '#10b981'],
    ['failure', 'failure (free)', '#f59e0b'],
    ['rate_limited', 'rate-limited', '#ef4444'],
    ['insufficient_credits', 'insufficient credits', '#8b5cf6'],
    ['free', 'free route', '#9ca3af'],
  ];
  let refreshTimer = null;
  let charts = [];

  // ---- DOM helpers ---------------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const fmt = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
  const when = (iso) => (iso ? new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–');
  const signed = (n) => h('span', { class: n > 0 ? 'pos' : n < 0 ? 'neg' : '' }, (n > 0 ? '+' : '') + fmt(n));

  // ---- API -----------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }
  async function api(method, path, body) {
    const token = sessionStorage.getItem(TOKEN);
    const res = await fetch(path, {
      method,
      headers: Object.assign(
        { authorization: `Bearer ${token || ''}`, 'x-tollgate-actor': sessionStorage.getItem(ACTOR) || 'console' },
        body === undefined ? {} : { 'content-type': 'application/json' },
      ),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : null;
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN);
      sessionStorage.removeItem(ACTOR);
      route();
      throw new ApiError(401, parsed);
    }
    if (!res.ok) throw new ApiError(res.status, parsed);
    return parsed;
  }
  const enc = encodeURIComponent;

  // ---- routing -------------------------------------------------------------------------------------------
  function route() {
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = null;
    for (const c of charts) c.destroy();
    charts = [];
    const signedIn = !!sessionStorage.getItem(TOKEN);
    document.getElementById('nav').hidden = !signedIn;
    main.replaceChildren();
    if (!signedIn) return signIn();
    const hash = location.hash || '#/orgs';
    let m;
    for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', hash.startsWith(`#/${a.dataset.nav}`));
    if ((m = /^#\/orgs\/([^/?]+)$/.exec(hash))) return orgPage(decodeURIComponent(m[1]));
    if (hash.startsWith('#/system')) return systemPage();
    return orgsPage();
  }
  window.addEventListener('hashchange', route);
  document.getElementById('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(ACTOR);
    location.hash = '#/orgs';
    route();
  });

  function failed(where, e) {
    where.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message));
  }

  // ---- sign in -------------------------------------------------------------------------------------------
  function signIn() {
    main.append(document.getElementById('signin-template').content.cloneNode(true));
    const form = document.getElementById('signin');
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const input = document.getElementById('token');
      const error = document.getElementById('signin-error');
      const res = await fetch('/admin/system', { headers: { authorization: `Bearer ${input.value}` }, cache: 'no-store', credentials: 'omit' });
      if (res.status === 401) {
        error.textContent = 'That token was refused.';
        input.value = '';
        return;
      }
      if (!res.ok) {
        error.textContent = `Metering answered ${res.status}.`;
        return;
      }
      sessionStorage.setItem(TOKEN, input.value);
      input.value = '';
      const actor = document.getElementById('actor').value.trim();
      if (actor) sessionStorage.setItem(ACTOR, actor);
      route();
    });
  }

  // ---- orgs ----------------------------------------------------------------------------------------------
  const orgsState = { search: '', sort: 'id', order: 'asc', offset: 0, limit: 25 };
  function orgsPage() {
    const columns = [
      ['id', 'Org'], ['name', 'Name'], ['plan', 'Plan'], ['balance', 'Balance', true], ['used_this_month', 'Used this month', true],
      ['calls_today', 'Calls today', true], ['last_call_at', 'Last call'],
    ];
    const search = h('input', { type: 'search', placeholder: 'Search id or name', value: orgsState.search, 'aria-label': 'Search orgs' });
    const body = h('tbody');
    const head = h('tr');
    const info = h('span', { class: 'muted' });
    const prev = h('button', { class: 'secondary', type: 'button' }, '← Previous');
    const next = h('button', { class: 'secondary', type: 'button' }, 'Next →');
    main.append(
      h('h1', {}, 'Orgs'),
      h('div', { class: 'toolbar' }, search),
      h('table', { id: 'orgs' }, h('thead', {}, head), body),
      h('div', { class: 'pager' }, prev, next, info),
    );
    for (const [key, label, num] of columns) {
      head.append(h('th', {
        class: `sortable${num ? ' num' : ''}${orgsState.sort === key ? ` sorted ${orgsState.order}` : ''}`,
        'data-sort': key,
        onclick: () => {
          orgsState.order = orgsState.sort === key ? (orgsState.order === 'asc' ? 'desc' : 'asc') : num || key === 'last_call_at' ? 'desc' : 'asc';
          orgsState.sort = key;
          orgsState.offset = 0;
          route();
        },
      }, label));
    }
    let debounce;
    search.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        orgsState.search = search.value.trim();
        orgsState.offset = 0;
        load();
      }, 250);
    });
    prev.addEventListener('click', () => { orgsState.offset = Math.max(0, orgsState.offset - orgsState.limit); load(); });
    next.addEventListener('click', () => { orgsState.offset += orgsState.limit; load(); });
    async function load() {
      const q = new URLSearchParams({ sort: orgsState.sort, order: orgsState.order, limit: orgsState.limit, offset: orgsState.offset });
      if (orgsState.search) q.set('search', orgsState.search);
      try {
        const page = await api('GET', `/admin/orgs?${q}`);
        body.replaceChildren(...page.orgs.map((o) => h('tr', {},
          h('td', {}, h('a', { href: `#/orgs/${enc(o.id)}` }, o.id)), h('td', {}, o.name), h('td', {}, h('span', { class: 'tag' }, o.plan)),
          h('td', { class: 'num' }, fmt(o.balance)), h('td', { class: 'num' }, fmt(o.used_this_month)), h('td', { class: 'num' }, fmt(o.calls_today)),
          h('td', {}, when(o.last_call_at)))));
        if (page.orgs.length === 0) body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No orgs match.')));
        info.textContent = page.orgs.length ? `${page.offset + 1}–${page.offset + page.orgs.length} of ${page.total_count}` : `0 of ${page.total_count}`;
        prev.disabled = page.offset === 0;
        next.disabled = page.offset + page.orgs.length >= page.total_count;
      } catch (e) {
        if (e.status !== 401) failed(body, e);
      }
    }
    load();
  }

  // ---- one org -------------------------------------------------------------------------------------------
  function orgPage(orgId) {
    const base = `/admin/orgs/${enc(orgId)}`;
    const title = h('h1', {}, orgId);
    const summary = h('div', { class: 'cards', id: 'org-summary' });
    const bucketSelect = h('select', { id: 'bucket', 'aria-label': 'Bucket' }, h('option', { value: 'hour' }, 'per hour (48 h)'), h('option', { value: 'day' }, 'per day (31 days)'));
    const balanceChart = h('div', { id: 'balance-chart' });
    const callsChart = h('div', { id: 'calls-chart' });
    const ledgerBody = h('tbody');
    const ledgerInfo = h('span', { class: 'muted' });
    const newer = h('button', { class: 'secondary', type: 'button' }, '← Newer');
    const older = h('button', { class: 'secondary', type: 'button' }, 'Older →');
    const keysBody = h('tbody');
    const historyBody = h('tbody');
    const historyInfo = h('p', { class: 'muted', id: 'history-info' });
    const keyResult = h('div', { id: 'new-key' });
    const limitsNow = h('p', { id: 'limits-now', class: 'muted' });
    const message = (id) => h('p', { id, class: 'muted', role: 'status' });
    const grantMsg = message('grant-result');
    const planMsg = message('plan-result');
    const limitsMsg = message('limits-result');
    const keyMsg = message('key-result');
    let idempotencyKey = crypto.randomUUID();
    const alertsNow = h('p', { id: 'alerts-now', class: 'muted' });
    const alertsMsg = message('alerts-result');
    const alertsForm = h('form', { id: 'alerts-form' },
      h('input', { name: 'credits_below', placeholder: 'credits below: 100,10', size: 18, 'aria-label': 'Credits below' }),
      h('input', { name: 'allowance_used_percent', placeholder: '% of allowance used: 80,95', size: 22, 'aria-label': 'Allowance used percent' }),
      h('button', { type: 'submit' }, 'Set org alerts'),
      h('button', { type: 'button', id: 'alerts-clear', class: 'secondary' }, "Use the plan's"));
    const planAlertsForm = h('form', { id: 'plan-alerts-form' },
      h('input', { name: 'credits_below', placeholder: 'credits below', size: 18, 'aria-label': 'Plan credits below' }),
      h('input', { name: 'allowance_used_percent', placeholder: '% of allowance used', size: 22, 'aria-label': 'Plan allowance used percent' }),
      h('button', { type: 'submit', class: 'secondary' }, 'Set for the plan'));
    const webhooksBody = h('tbody');
    const deliveriesPanel = h('div', { id: 'deliveries-panel' });

    const grantForm = h('form', { id: 'grant-form' },
      h('input', { name: 'amount', type: 'number', min: 1, step: 1, required: true, placeholder: 'credits', 'aria-label': 'Amount' }),
      h('input', { name: 'reason', required: true, placeholder: 'reason', 'aria-label': 'Reason' }),
      h('input', { name: 'expires_at', type: 'datetime-local', 'aria-label': 'Expires at (UTC, optional)', title: 'Expires at, UTC (optional)' }),
      h('button', { type: 'submit' }, 'Grant credits'));
    const planForm = h('form', { id: 'plan-form' },
      h('input', { name: 'plan', required: true, placeholder: 'plan name', 'aria-label': 'Plan' }), h('button', { type: 'submit' }, 'Change plan'));
    const limitsForm = h('form', { id: 'limits-form' },
      h('input', { name: 'limits', placeholder: 'minute=10 day=1000', size: 28, 'aria-label': 'Limits' }), h('button', { type: 'submit' }, 'Set limits'));
    const keyForm = h('form', { id: 'key-form' },
      h('input', { name: 'name', placeholder: 'key name', 'aria-label': 'Key name' }),
      h('select', { name: 'kind', 'aria-label': 'Kind' }, h('option', { value: 'key' }, 'key'), h('option', { value: 'user' }, 'user')),
      h('button', { type: 'submit' }, 'Create key'));

    main.append(
      h('p', {}, h('a', { href: '#/orgs' }, '← Orgs')), title, summary,
      h('div', { class: 'toolbar' }, h('h2', {}, 'Activity'), bucketSelect),
      h('div', { class: 'charts' },
        h('div', { class: 'chart' }, h('h2', {}, 'Balance'), balanceChart),
        h('div', { class: 'chart' }, h('h2', {}, 'Calls by reason'), callsChart)),
      h('div', { class: 'grid2' },
        h('div', { class: 'panel' }, h('h2', {}, 'Grant credits'), grantForm, grantMsg),
        h('div', { class: 'panel' }, h('h2', {}, 'Plan'), planForm, planMsg)),
      h('div', { class: 'grid2' },
        h('div', { class: 'panel' }, h('h2', {}, 'Limits'), limitsNow, limitsForm, limitsMsg),
        h('div', { class: 'panel' }, h('h2', {}, 'Keys'), keyForm, keyMsg, keyResult,
          h('table', { id: 'keys' }, h('thead', {}, h('tr', {}, ...['Key', 'Name', 'Kind', 'Created', ''].map((t) => h('th', {}, t)))), keysBody))),
      h('div', { class: 'grid2' },
        h('div', { class: 'panel' }, h('h2', {}, 'Alerts (credits.low)'), alertsNow, alertsForm,
          h('p', { class: 'muted' }, 'For every org of its plan that sets none of its own:'), planAlertsForm, alertsMsg),
        h('div', { class: 'panel' }, h('h2', {}, 'Webhooks'),
          h('table', { id: 'webhooks' }, h('thead', {}, h('tr', {}, ...['Endpoint', 'Events', 'State', ''].map((t) => h('th', {}, t)))), webhooksBody))),
      deliveriesPanel,
      h('h2', {}, 'Ledger'),
      h('table', { id: 'ledger' },
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Seq'), h('th', {}, 'Type'), h('th', { class: 'num' }, 'Amount'), h('th', { class: 'num' }, 'Balance'), h('th', {}, 'Cause'), h('th', {}, 'Occurred'))),
        ledgerBody),
      h('div', { class: 'pager' }, newer, older, ledgerInfo),
      h('h2', {}, 'History'),
      h('table', { id: 'history' },
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Seq'), h('th', {}, 'When'), h('th', {}, 'Command'), h('th', {}, 'Actor'), h('th', {}, 'What'), h('th', {}, 'Entries'))),
        historyBody),
      historyInfo,
    );

    async function loadSummary() {
      const org = await api('GET', base);
      const listed = await api('GET', `/admin/orgs?search=${enc(orgId)}&limit=50`);
      const row = listed.orgs.find((o) => o.id === orgId) || {};
      title.textContent = `${org.name} (${org.id})`;
      const card = (label, value, id) => h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value', id }, value));
      summary.replaceChildren(
        card('Plan', org.plan, 'org-plan'), card('Balance', fmt(org.balance), 'org-balance'), card('Used this month', fmt(row.used_this_month), 'org-used'),
        card('Calls today', fmt(row.calls_today), 'org-calls'), card('Last call', when(row.last_call_at), 'org-last'));
      const limits = Object.entries(org.limits || {});
      limitsNow.textContent = limits.length ? `Overrides: ${limits.map(([k, v]) => `${k}=${v}`).join(' ')}` : 'No overrides: the plan\'s limits apply.';
      limitsForm.elements.limits.value = limits.map(([k, v]) => `${k}=${v}`).join(' ');
      planForm.elements.plan.placeholder = `now ${org.plan}`;
    }

    async function loadCharts() {
      const a = await api('GET', `${base}/activity?bucket=${bucketSelect.value}`);
      for (const c of charts) c.destroy();
      charts = [];
      balanceChart.replaceChildren();
      callsChart.replaceChildren();
      const width = Math.max(320, balanceChart.clientWidth || 560);
      const axes = [{ stroke: '#6b7280', grid: { stroke: '#f3f4f6' } }, { stroke: '#6b7280', grid: { stroke: '#f3f4f6' } }];
      charts.push(new uPlot({
        width, height: 220, axes, legend: { show: true },
        scales: { x: { time: true } },
        // Points too: an org younger than one bucket has a single one, which a line alone would not show.
        series: [{}, { label: 'balance', stroke: '#2563eb', width: 2, fill: 'rgba(37,99,235,0.08)', points: { show: true, size: 6, fill: '#2563eb' } }],
      }, [a.times, a.balance], balanceChart));
      // Stacked bars: each series draws the running total up to it, the largest first, so the smaller overlay it;
      // the legend shows each reason's own count.
      const own = REASONS.map(([key]) => a.calls[key]);
      const stacked = [];
      let running = a.times.map(() => 0);
      for (const values of own) {
        running = running.map((r, i) => r + values[i]);
        stacked.push(running);
      }
      const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined;
      const order = REASONS.map((_, i) => i).reverse();
      charts.push(new uPlot({
        width, height: 220, axes, legend: { show: true },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
        series: [{}, ...order.map((i) => ({
          label: REASONS[i][1], stroke: REASONS[i][2], fill: REASONS[i][2], width: 0, paths: bars, points: { show: false },
          value: (u, v, si, idx) => (idx === null || idx === undefined ? '–' : fmt(own[i][idx])),
        }))],
      }, [a.times, ...order.map((i) => stacked[i])], callsChart));
      callsChart.dataset.calls = String(own.reduce((s, v) => s + v.reduce((x, y) => x + y, 0), 0));
      balanceChart.dataset.points = String(a.balance.filter((b) => b !== null).length);
    }

    function describe(e) {
      if (e.call) return `${e.call.method} ${e.call.path} → ${e.call.status_code} (${e.call.cost_reason})${e.call.request_id ? `, request ${e.call.request_id}` : ''}`;
      if (e.hold) return `hold for ${e.hold.route} (${e.hold.status})`;
      if (e.lease) {
        const l = e.lease;
        return `lease of ${fmt(l.credits)} to ${l.gateway || 'a gateway'}: ${fmt(l.spent)} spent by calls, ${fmt(l.returned)} returned early (${l.status === 'held' ? 'open' : 'closed'})`;
      }
      if (e.command) return describeCommand(e.command);
      // Entries written before every command was recorded name the command in their cause.
      if (e.cause.startsWith('admin:plan:')) return `admin: plan changed to ${e.cause.slice(11)}`;
      if (e.cause.startsWith('admin:create-org:')) return 'admin: org created';
      return '';
    }

    // The command behind an entry (as the entries view gives it): what it did and who issued it.
    function describeCommand(c) {
      const by = c.actor ? ` (by ${c.actor})` : '';
      const input = c.input || {};
      if (c.command === 'grant-credits') return `admin grant: ${c.reason}${by}`;
      if (c.command === 'change-plan') return `admin: plan changed to ${input.plan}${by}`;
      if (c.command === 'create-org') return `admin: org created${by}`;
      return `admin: ${c.command}${by}`;
    }

    const ledgerPages = [];
    async function loadLedger(before) {
      const q = new URLSearchParams({ limit: 20 });
      if (before) q.set('before', before);
      const page = await api('GET', `${base}/entries?${q}`);
      ledgerBody.replaceChildren(...page.entries.map((e) => h('tr', { 'data-seq': e.seq, 'data-type': e.type },
        h('td', { class: 'num' }, String(e.seq)), h('td', {}, e.type), h('td', { class: 'num' }, signed(e.amount)),
        h('td', { class: 'num' }, fmt(e.balance_after)),
        h('td', { class: 'cause' }, h('code', {}, e.cause), h('br'), h('span', { class: 'muted' }, describe(e))),
        h('td', {}, when(e.occurred_at)))));
      const first = page.entries[0];
      const last = page.entries[page.entries.length - 1];
      ledgerInfo.textContent = first ? `entries ${last.seq}–${first.seq} of ${page.last_seq}` : 'no entries';
      newer.disabled = !before;
      older.disabled = !last || last.seq <= 1;
      older.onclick = () => { ledgerPages.push(before); loadLedger(last.seq); };
      newer.onclick = () => loadLedger(ledgerPages.pop());
    }

    // The org's operator commands, newest first (the API pages oldest first: read every page; orgs have few).
    function what(c) {
      const i = c.input || {};
      const r = c.result || {};
      switch (c.command) {
        case 'create-org': return `plan ${i.plan}, name "${i.name}"`;
        case 'change-plan': return r.from_plan ? `plan ${r.from_plan} → ${i.plan}` : `plan → ${i.plan}`;
        case 'set-limits': return Object.entries(i.limits || {}).map(([k, v]) => `${k}=${v}`).join(' ') || '(plan defaults)';
        case 'create-key': return `${r.key_id} (${i.kind}, "${i.name}")`;
        case 'revoke-key': return `${i.key_id}${r.already_revoked ? ' (already revoked)' : ''}`;
        case 'grant-credits': return `+${fmt(i.amount)} "${i.reason}"${i.expires_at ? `, expires ${when(i.expires_at)}` : ''}`;
        case 'set-alerts': return `below ${list(i.credits_below)} credits; at ${list(i.allowance_used_percent)}% used`;
        case 'clear-alerts': return `own thresholds removed (were below ${list(i.credits_below)} credits; at ${list(i.allowance_used_percent)}% used): the plan's apply`;
        case 'create-webhook': return `${r.webhook_id} → ${i.url} (${(i.events || []).join(', ')})`;
        case 'resend-webhook': return `${i.webhook_id}: ${r.resent} message(s)${i.msg_id ? ` (${i.msg_id})` : ` since ${when(i.since)}`}`;
        case 'rotate-webhook-secret': return `${i.webhook_id}: new secret${r.previous_secret_until ? `, old one signs until ${when(r.previous_secret_until)}` : ''}`;
        case 'disable-webhook': return `${i.webhook_id} disabled after failing since ${when(i.failing_since)}`;
        default: return JSON.stringify(i);
      }
    }
    const HistoryShown = 20;
    async function loadHistory() {
      const commands = [];
      for (let after = 0; ;) {
        const page = await api('GET', `${base}/history?after=${after}&limit=500`);
        commands.push(...page.commands);
        if (page.commands.length < 500) break;
        after = page.commands[page.commands.length - 1].seq;
      }
      const shown = commands.slice(-HistoryShown).reverse();
      historyBody.replaceChildren(...shown.map((c) => h('tr', { 'data-command': c.command, 'data-id': c.id },
        h('td', { class: 'num' }, String(c.seq)), h('td', {}, when(c.at)), h('td', {}, c.command), h('td', {}, c.actor),
        h('td', { class: 'cause' }, what(c), h('br'), h('code', { class: 'muted' }, c.id)),
        h('td', {}, c.entries.length ? c.entries.join(', ') : '–'))));
      if (commands.length === 0) historyBody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No commands recorded.')));
      historyInfo.textContent = commands.length > HistoryShown ? `the newest ${HistoryShown} of ${commands.length} commands (tollgate history ${orgId} lists them all)` : '';
    }

    async function loadKeys() {
      const { keys } = await api('GET', `${base}/keys`);
      keysBody.replaceChildren(...keys.map((k) => h('tr', { 'data-key': k.id, class: k.revoked_at ? 'revoked' : '' },
        h('td', {}, h('code', {}, `${k.prefix}…`), ' ', h('span', { class: 'muted' }, k.id)), h('td', {}, k.name), h('td', {}, k.kind), h('td', {}, when(k.created_at)),
        h('td', {}, k.revoked_at ? `revoked ${when(k.revoked_at)}` : h('button', {
          class: 'danger', type: 'button',
          onclick: async () => {
            if (!confirm(`Revoke ${k.id}? Gateways refuse it within seconds.`)) return;
            await act(keyMsg, () => api('DELETE', `/admin/keys/${enc(k.id)}`), `Revoked ${k.id}.`);
            await Promise.all([loadKeys(), loadHistory()]);
          },
        }, 'Revoke')))));
      if (keys.length === 0) keysBody.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No keys.')));
    }

    const list = (v) => (v && v.length ? v.join(', ') : 'none');
    async function loadAlerts() {
      const a = await api('GET', `${base}/alerts`);
      const applied = a.applied === 'org' ? 'the org\'s own apply' : a.applied === 'plan' ? `plan ${a.plan}'s apply` : 'none set';
      alertsNow.textContent = `Org: below ${list(a.credits_below)} credits, at ${list(a.allowance_used_percent)}% of the allowance used. ` +
        `Plan ${a.plan}: below ${list(a.plan_alerts.credits_below)}, at ${list(a.plan_alerts.allowance_used_percent)}%. (${applied})`;
      alertsNow.dataset.applied = a.applied;
      alertsForm.elements.credits_below.value = a.credits_below.join(',');
      alertsForm.elements.allowance_used_percent.value = a.allowance_used_percent.join(',');
      planAlertsForm.dataset.plan = a.plan;
      planAlertsForm.elements.credits_below.value = a.plan_alerts.credits_below.join(',');
      planAlertsForm.elements.allowance_used_percent.value = a.plan_alerts.allowance_used_percent.join(',');
    }
    // "100, 10" -> [100, 10]; a word that is not a whole number is refused before anything is sent.
    function numbers(form, name) {
      const parts = form.elements[name].value.split(/[\s,]+/).filter(Boolean);
      const bad = parts.find((p) => !/^\d+$/.test(p));
      if (bad !== undefined) throw new Error(`${name}: "${bad}" is not a whole number`);
      return parts.map(Number);
    }
    async function submitAlerts(form, path) {
      let body;
      try {
        body = { credits_below: numbers(form, 'credits_below'), allowance_used_percent: numbers(form, 'allowance_used_percent') };
      } catch (e) {
        alertsMsg.className = 'error';
        alertsMsg.textContent = e.message;
        return;
      }
      if (await act(alertsMsg, () => api('PUT', path, body), 'Alerts saved.')) await Promise.all([loadAlerts(), loadHistory()]);
    }

    async function loadWebhooks() {
      const { webhooks } = await api('GET', `/admin/webhooks?org_id=${enc(orgId)}`);
      webhooksBody.replaceChildren(...webhooks.map((w) => h('tr', { 'data-webhook': w.id },
        h('td', {}, h('code', {}, w.url), h('br'), h('span', { class: 'muted' }, `${w.id}${w.org_id ? '' : ' (every org)'}`)),
        h('td', { class: 'cause' }, w.events.join(', ')),
        h('td', {}, w.disabled_at ? h('span', { class: 'neg' }, `disabled ${when(w.disabled_at)}`) : w.failing_since ? `failing since ${when(w.failing_since)}` : 'enabled'),
        h('td', {}, h('button', { class: 'secondary', type: 'button', onclick: () => showDeliveries(w) }, 'Deliveries')))));
      if (webhooks.length === 0) webhooksBody.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No endpoints (tollgate webhooks create).')));
    }

    // An endpoint's delivery log: every attempt (status, latency, the response's head), newest first, with a
    // re-send of one message or of everything queued since a time.
    async function showDeliveries(w) {
      const body = h('tbody');
      const info = h('p', { class: 'muted', id: 'deliveries-info' });
      const resendMsg = message('resend-result');
      const sinceForm = h('form', { id: 'resend-since-form' },
        h('input', { name: 'since', type: 'datetime-local', step: 1, required: true, 'aria-label': 'Since (UTC)', title: 'Since, UTC' }),
        h('button', { type: 'submit', class: 'secondary' }, 'Re-send everything since'));
      async function load() {
        const page = await api('GET', `/admin/webhooks/${enc(w.id)}/deliveries?limit=100`);
        body.replaceChildren(...page.deliveries.map((d) => h('tr', { 'data-attempt': d.id, 'data-msg': d.msg_id, 'data-status': d.status === null ? 'none' : d.status },
          h('td', {}, when(d.attempted_at)), h('td', {}, h('code', {}, d.msg_id)), h('td', {}, d.event_type),
          h('td', { class: 'num' }, d.status === null ? '–' : String(d.status)), h('td', { class: 'num' }, fmt(d.latency_ms)),
          h('td', { class: 'cause' }, d.response_head ? h('code', { class: 'head' }, d.response_head.slice(0, 200)) : '', d.error ? h('span', { class: 'neg' }, ` ${d.error}`) : ''),
          h('td', {}, h('button', {
            class: 'secondary', type: 'button',
            onclick: async () => {
              if (await act(resendMsg, () => api('POST', `/admin/webhooks/${enc(w.id)}/resend`, { msg_id: d.msg_id }), (r) => `Queued ${r.resent} message again.`)) await Promise.all([load(), loadHistory()]);
            },
          }, 'Re-send')))));
        if (page.deliveries.length === 0) body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No attempts yet.')));
        info.textContent = `${page.pending} undelivered; the newest ${page.deliveries.length} attempts.`;
      }
      sinceForm.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const v = sinceForm.elements.since.value;
        const since = new Date(`${v.length === 16 ? `${v}:00` : v}Z`).toISOString();
        if (await act(resendMsg, () => api('POST', `/admin/webhooks/${enc(w.id)}/resend`, { since }), (r) => `Queued ${r.resent} message(s) again${r.reenabled ? '; the endpoint is enabled again' : ''}.`)) {
          await Promise.all([load(), loadWebhooks(), loadHistory()]);
        }
      });
      deliveriesPanel.replaceChildren(
        h('div', { class: 'toolbar' }, h('h2', {}, `Deliveries to ${w.url}`),
          h('button', { class: 'secondary', type: 'button', id: 'deliveries-refresh', onclick: () => load().catch((e) => failed(info, e)) }, 'Refresh')),
        sinceForm, resendMsg, info,
        h('table', { id: 'deliveries' },
          h('thead', {}, h('tr', {}, ...['Attempted', 'Message', 'Event', 'Status', 'Latency ms', 'Response head', ''].map((t) => h('th', { class: t === 'Status' || t === 'Latency ms' ? 'num' : '' }, t)))),
          body));
      deliveriesPanel.dataset.webhook = w.id;
      await load();
    }

    async function act(msg, run, done) {
      msg.className = 'muted';
      msg.textContent = 'Working…';
      try {
        const result = await run();
        msg.className = 'ok';
        msg.textContent = typeof done === 'function' ? done(result) : done;
        return result;
      } catch (e) {
        msg.className = 'error';
        msg.textContent = e.message;
        return null;
      }
    }

    async function refreshAll() {
      await Promise.all([loadSummary(), loadLedger(undefined), loadCharts(), loadHistory()]);
      ledgerPages.length = 0;
    }

    grantForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = grantForm.elements;
      const body = { amount: Number(f.amount.value), reason: f.reason.value, idempotency_key: `console-${idempotencyKey}` };
      if (f.expires_at.value) body.expires_at = new Date(`${f.expires_at.value}:00Z`).toISOString();
      const grant = async () => {
        try {
          return await api('POST', `${base}/credits`, body);
        } catch (e) {
          // The key went to a grant with other values whose answer was lost: that grant stands (the message says
          // what it was); the next submit is a grant of its own.
          if (e instanceof ApiError && e.body && e.body.error === 'idempotency_key_reused') idempotencyKey = crypto.randomUUID();
          throw e;
        }
      };
      const r = await act(grantMsg, grant, (g) => (g.replayed ? 'Already granted (same request).' : `Granted ${fmt(g.amount)} credits; balance ${fmt(g.balance)}.`));
      // A new idempotency key only once the grant is known to be done: a retry of a failed submit can't grant twice.
      if (r) {
        idempotencyKey = crypto.randomUUID();
        grantForm.reset();
        await refreshAll();
      }
    });
    planForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const plan = planForm.elements.plan.value.trim();
      if (await act(planMsg, () => api('PUT', `${base}/plan`, { plan }), (r) => `Now on ${r.plan}; balance ${fmt(r.balance)}.`)) {
        planForm.reset();
        await refreshAll();
      }
    });
    limitsForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const limits = {};
      for (const pair of limitsForm.elements.limits.value.split(/[\s,]+/).filter(Boolean)) {
        const m = /^([A-Za-z0-9_.-]+)=(\d+)$/.exec(pair);
        if (!m) {
          limitsMsg.className = 'error';
          limitsMsg.textContent = `"${pair}" is not NAME=N.`;
          return;
        }
        limits[m[1]] = Number(m[2]);
      }
      if (await act(limitsMsg, () => api('PUT', `${base}/limits`, limits), 'Limits saved; gateways apply them within seconds.')) await Promise.all([loadSummary(), loadHistory()]);
    });
    keyForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      keyResult.replaceChildren();
      const body = { kind: keyForm.elements.kind.value };
      if (keyForm.elements.name.value.trim()) body.name = keyForm.elements.name.value.trim();
      const k = await act(keyMsg, () => api('POST', `${base}/keys`, body), (r) => `Created ${r.id}.`);
      if (k) {
        keyResult.replaceChildren(h('div', { class: 'secret' }, h('strong', {}, 'Copy the key now: it is shown only this once. '), h('code', { id: 'new-key-value' }, k.key)));
        keyForm.reset();
        await Promise.all([loadKeys(), loadHistory()]);
      }
    });
    alertsForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void submitAlerts(alertsForm, `${base}/alerts`);
    });
    alertsForm.querySelector('#alerts-clear').addEventListener('click', async () => {
      const r = await act(alertsMsg, () => api('DELETE', `${base}/alerts`), (c) => (c.cleared ? "The org's own alerts are removed: its plan's apply." : 'The org had no alerts of its own.'));
      if (r) await Promise.all([loadAlerts(), loadHistory()]);
    });
    planAlertsForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void submitAlerts(planAlertsForm, `/admin/plans/${enc(planAlertsForm.dataset.plan || '')}/alerts`);
    });
    bucketSelect.addEventListener('change', () => loadCharts().catch((e) => failed(callsChart, e)));

    Promise.all([loadSummary(), loadCharts(), loadLedger(undefined), loadKeys(), loadHistory(), loadAlerts(), loadWebhooks()]).catch((e) => {
      if (e.status !== 401) failed(summary, e);
    });
  }

  // ---- system --------------------------------------------------------------------------------------------
  function systemPage() {
    const cards = h('div', { class: 'cards', id: 'system' });
    const decisions = h('tbody');
    const at = h('p', { class: 'muted' });
    main.append(h('h1', {}, 'System'), cards,
      h('h2', {}, 'Gateway decisions in the last hour (metered calls)'),
      h('table', { id: 'decisions' }, h('thead', {}, h('tr', {}, h('th', {}, 'Outcome'), h('th', { class: 'num' }, 'Calls'))), decisions), at);
    async function load() {
      try {
        const s = await api('GET', '/admin/system');
        const card = (label, value, id) => h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value', id }, value));
        cards.replaceChildren(
          card('Events metered / s', fmt(s.events_per_second), 'sys-eps'),
          card('Events metered', fmt(s.events_metered.metered || 0), 'sys-metered'),
          card('Consumer lag', fmt(s.consumer_lag), 'sys-lag'),
          card('Dead letters pending', `${fmt(s.dead_letters.pending)} / ${fmt(s.dead_letters.total)}`, 'sys-dlq'),
          card('Holds', `${fmt(s.reservations_held.holds)} (${fmt(s.reservations_held.credits)} cr)`, 'sys-holds'),
          card('Holds kept past timeout', fmt(s.reservations_held.kept_past_timeout), 'sys-kept'),
          card('Orgs', fmt(s.orgs), 'sys-orgs'));
        const rows = Object.entries(s.decisions_last_hour);
        decisions.replaceChildren(...rows.map(([k, v]) => h('tr', { 'data-outcome': k }, h('td', {}, k), h('td', { class: 'num' }, fmt(v)))));
        if (rows.length === 0) decisions.append(h('tr', {}, h('td', { colspan: 2, class: 'muted' }, 'No calls in the last hour.')));
        at.textContent = `As of ${when(s.at)}; refreshes every 5 s. Events/s, lag and holds kept are this metering instance's figures.`;
      } catch (e) {
        if (e.status !== 401) failed(cards, e);
      }
    }
    load();
    refreshTimer = setInterval(load, 5000);
  }

  route();
})();
