/**
 * `tollgate`: the operator's one CLI (SPEC §8, §9). The admin commands are a client only: each is one or a few
 * HTTP calls to metering's admin API, so they work against any metering the operator can reach.
 *
 * replay, audit and dlq (commands/) work on the database and broker directly, like the `npm run` scripts they were.
 *
 * Exit codes (args.ts, also in `tollgate help`): 0 done; 1 the server failed (5xx) or answered something unexpected,
 * or an operator program found something wrong; 2 usage (bad arguments, or input the API refused with 400);
 * 3 auth (401/403: TOLLGATE_ADMIN_TOKEN missing or wrong); 4 not found (404); 5 metering unreachable; 6 conflict (409, e.g. a duplicate org id).
 */
import { randomUUID } from 'node:crypto';
import { CliError, ExitCode, parseFlags } from './args';
import { operatorCommands, operatorUsage } from './commands';

export { CliError, ExitCode };

const usage = `tollgate: the operator's CLI: metering's admin API, and replay, audit and dlq on the database and broker

Usage: tollgate <command> [arguments] [--json]

  orgs create <id> --plan PLAN [--name NAME]   create an org (its plan's credits are granted)
  orgs list [--search TEXT] [--sort FIELD] [--order asc|desc] [--limit N] [--offset N]
                                               FIELD: id, name, plan, balance, used_this_month, calls_today, last_call_at, created_at
  orgs show <org>                              plan, balance, limits and keys
  keys create <org> [--name NAME] [--kind key|user]   a new API key, shown once
  keys revoke <key-id>
  credits grant <org> <amount> [--reason TEXT] [--expires-at TIME] [--idempotency-key KEY]
                                               granted once per invocation (retries reuse its idempotency key)
  plan set <org> <plan>
  limits set <org> NAME=N [NAME=N ...]         per-org limit overrides (requests per window)
  limits show <org>
  ledger <org> [--after SEQ] [--limit N] [--follow] [--interval SECONDS]
  history <org> [--after SEQ] [--limit N]      the org's operator commands, oldest first: who did what, when
  usage <org> [--limit N] [--offset N]
  system                                       events/s, consumer lag, dead letters, holds, decisions
  alerts set (<org> | --plan PLAN) [--credits-below N,N...] [--allowance-used-percent P,P...]
                                               credits.low thresholds (the lists given replace the org's or the
                                               plan's); a plan's apply to its orgs that set none of their own
  alerts show (<org> | --plan PLAN)
  webhooks list [--org ORG]                    endpoints (the org's and the global ones with --org)
  webhooks create <url> --events TYPE,TYPE... [--org ORG]
                                               an endpoint (without --org: every org's); its secret is shown once
                                               TYPE: credits.low, credits.exhausted, credits.granted, credits.expired, allowance.reset,
                                               endpoint.disabled
  webhooks rotate-secret <id> [--overlap SECONDS]
                                               a new secret, shown once; the old one also signs for SECONDS (default 86400)
  webhooks delete <id>
  webhooks deliveries <id> [--limit N]         delivery attempts, newest first
  webhooks resend <id> (--msg MSG_ID | --since TIME)
                                               queue one message, or all since TIME, again (re-enables a disabled endpoint)
${operatorUsage}

Environment: TOLLGATE_ADMIN_URL (default http://127.0.0.1:8081), TOLLGATE_ADMIN_TOKEN.
--json prints the API's JSON (one object per line with ledger --follow) instead of tables.
--actor NAME records who issued a command (default: $USER; without either, metering records "admin-token").

Every command takes --help.
Exit codes: 0 ok, 1 a difference or violation found (replay, audit, dlq) or a server error, 2 usage or invalid
input, 3 auth, 4 not found, 5 unreachable, 6 conflict, 130 interrupted (Ctrl-C).
`;

type Json = Record<string, unknown>;

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  env: NodeJS.ProcessEnv;
  sleep: (ms: number) => Promise<void>;
  /** Resolves when the user asks to stop (Ctrl-C): ends `ledger --follow`. */
  stopped: Promise<void>;
}

class AdminClient {
  constructor(
    private readonly base: string,
    private readonly token: string | undefined,
    private readonly actor: string | undefined,
  ) {}

  async call<T = Json>(method: string, path: string, body?: unknown, attempts = 1): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once<T>(method, path, body);
      } catch (e) {
        const retriable = e instanceof CliError && (e.code === ExitCode.unreachable || e.code === ExitCode.failed);
        if (!retriable || attempt >= attempts) throw e;
        await new Promise((r) => setTimeout(r, 300 * attempt));
      }
    }
  }

  private async once<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: {
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          ...(this.actor ? { 'x-tollgate-actor': this.actor } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(ExitCode.unreachable, `metering is unreachable at ${this.base} (${cause?.code ?? cause?.message ?? (e as Error).message}); set TOLLGATE_ADMIN_URL`);
    }
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (res.ok) return parsed as T;
    const message = (parsed as { message?: unknown } | null)?.message;
    const said = typeof message === 'string' ? message : Array.isArray(message) ? message.join('; ') : text.slice(0, 200) || res.statusText;
    if (res.status === 401 || res.status === 403) {
      throw new CliError(ExitCode.auth, `not authorised (${res.status}): ${this.token ? 'TOLLGATE_ADMIN_TOKEN was refused' : 'set TOLLGATE_ADMIN_TOKEN'}`);
    }
    if (res.status === 404) throw new CliError(ExitCode.notFound, `not found: ${said}`);
    // The server's message names the key and what it was first used for; with --idempotency-key the operator chose it.
    if (res.status === 409 && (parsed as { error?: unknown } | null)?.error === 'idempotency_key_reused') {
      throw new CliError(ExitCode.conflict, `idempotency key reused, nothing was done: ${said}`);
    }
    if (res.status === 409) throw new CliError(ExitCode.conflict, `conflict: ${said}`);
    if (res.status >= 400 && res.status < 500) throw new CliError(ExitCode.usage, `refused (${res.status}): ${said}`);
    throw new CliError(ExitCode.failed, `metering failed (${res.status}): ${said}`);
  }
}

// ---- output ---------------------------------------------------------------------------------------------

function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A plain left-aligned table (numbers right-aligned), headers in upper case. */
export function table(rows: Json[], columns: string[]): string {
  if (rows.length === 0) return '(none)\n';
  const cells = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const numeric = columns.map((_, i) => cells.every((r) => r[i] === '-' || /^-?\d+(\.\d+)?$/.test(r[i]!)));
  const line = (vals: string[]) => vals.map((v, i) => (numeric[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n') + '\n';
}

function fields(obj: Json, keys: string[]): string {
  const width = Math.max(...keys.map((k) => k.length));
  return keys.map((k) => `${k.padEnd(width)}  ${cell(obj[k])}`).join('\n') + '\n';
}

// ---- arguments ------------------------------------------------------------------------------------------

const options = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  plan: { type: 'string' },
  name: { type: 'string' },
  kind: { type: 'string' },
  search: { type: 'string' },
  sort: { type: 'string' },
  order: { type: 'string' },
  limit: { type: 'string' },
  offset: { type: 'string' },
  after: { type: 'string' },
  follow: { type: 'boolean', short: 'f' },
  interval: { type: 'string' },
  reason: { type: 'string' },
  'expires-at': { type: 'string' },
  'idempotency-key': { type: 'string' },
  actor: { type: 'string' },
  events: { type: 'string' },
  org: { type: 'string' },
  'credits-below': { type: 'string' },
  'allowance-used-percent': { type: 'string' },
  msg: { type: 'string' },
  since: { type: 'string' },
  overlap: { type: 'string' },
} as const;

type Flags = { [K in keyof typeof options]?: (typeof options)[K]['type'] extends 'boolean' ? boolean : string };

function int(name: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new CliError(ExitCode.usage, `--${name} must be a whole number from ${min} to ${max} (got "${value}")`);
  return Number(value);
}

/** A comma-separated list of whole numbers (`--credits-below 100,50`); '' is the empty list. */
function ints(name: string, value: string | undefined, min: number, max: number): number[] | undefined {
  if (value === undefined) return undefined;
  if (value.trim() === '') return [];
  return value.split(',').map((v) => int(name, v.trim(), min, max)!);
}

/** `alerts set|show <org>` or `alerts set|show --plan PLAN`: the one the thresholds are of. */
function alertsTarget(args: string[], plan: string | undefined, usage: string): { path: string; name: string } {
  if (plan !== undefined) {
    if (args[2] !== undefined) throw new CliError(ExitCode.usage, 'give an org or --plan PLAN, not both');
    if (plan === '') throw new CliError(ExitCode.usage, '--plan must name a plan');
    return { path: `/admin/plans/${seg(plan)}/alerts`, name: `plan ${plan}` };
  }
  const org = need(args, 2, `the org id or --plan PLAN (${usage})`);
  return { path: `/admin/orgs/${seg(org)}/alerts`, name: org };
}

function need(args: string[], i: number, what: string): string {
  const v = args[i];
  if (v === undefined || v === '') throw new CliError(ExitCode.usage, `missing ${what}; see tollgate help`);
  return v;
}

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

const seg = encodeURIComponent;

/** What an HTTP header can carry and metering accepts as an actor: 1-128 printable Latin-1 characters. */
const actorPattern = /^[\x20-\x7e\u00a0-\u00ff]{1,128}$/;

/** Who the commands are recorded as: --actor, else $USER (or $LOGNAME) when it is a usable name, else nobody named. */
export function actorOf(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (flag !== undefined) {
    if (!actorPattern.test(flag.trim())) throw new CliError(ExitCode.usage, `--actor must be 1-128 printable Latin-1 characters (got "${flag}")`);
    return flag.trim();
  }
  const user = (env.USER || env.LOGNAME || '').trim();
  return actorPattern.test(user) ? user : undefined;
}

/** One line for a recorded command: what it asked for, in the operator's words. */
export function describeCommand(c: Json): string {
  const input = (c.input ?? {}) as Json;
  const result = (c.result ?? {}) as Json;
  switch (c.command) {
    case 'create-org':
      return `plan ${cell(input.plan)}, name ${JSON.stringify(input.name ?? null)}`;
    case 'change-plan':
      return result.from_plan ? `plan ${cell(result.from_plan)} -> ${cell(input.plan)}` : `plan -> ${cell(input.plan)}`;
    case 'set-limits': {
      const limits = Object.entries((input.limits ?? {}) as Json);
      return limits.length ? limits.map(([k, v]) => `${k}=${cell(v)}`).join(' ') : '(plan defaults)';
    }
    case 'create-key':
      return `${cell(result.key_id)} (${cell(input.kind)}, ${JSON.stringify(input.name ?? null)})`;
    case 'revoke-key':
      return `${cell(input.key_id)}${result.already_revoked ? ' (already revoked)' : ''}`;
    case 'grant-credits':
      return `+${cell(input.amount)} ${JSON.stringify(input.reason ?? null)}${input.expires_at ? `, expires ${cell(input.expires_at)}` : ''}`;
    default:
      return JSON.stringify(input);
  }
}

// ---- commands -------------------------------------------------------------------------------------------

export async function run(argv: string[], io: Io): Promise<number> {
  // The operator programs (replay, audit, dlq) read their own flags with the same parser: commands/.
  const operator = operatorCommands[argv[0] ?? ''];
  if (operator) return operator(argv.slice(1), io);
  let parsed: { values: Flags; positionals: string[] };
  try {
    parsed = parseFlags(argv, options) as { values: Flags; positionals: string[] };
  } catch (e) {
    io.err(`tollgate: ${(e as Error).message}; see tollgate help\n`);
    return ExitCode.usage;
  }
  const { values: flags, positionals: args } = parsed;
  if (flags.help || args.length === 0 || args[0] === 'help') {
    (args.length === 0 && !flags.help ? io.err : io.out)(usage);
    return args.length === 0 && !flags.help ? ExitCode.usage : ExitCode.ok;
  }
  const base = (io.env.TOLLGATE_ADMIN_URL || 'http://127.0.0.1:8081').replace(/\/+$/, '');
  const print = (value: unknown, human: () => string) => io.out(flags.json ? `${JSON.stringify(value, null, 2)}\n` : human());
  try {
    const client = new AdminClient(base, io.env.TOLLGATE_ADMIN_TOKEN || undefined, actorOf(flags.actor, io.env));
    const [noun, verb] = args;
    const command = noun === 'ledger' || noun === 'usage' || noun === 'system' || noun === 'history' ? noun : `${noun} ${verb ?? ''}`.trim();
    switch (command) {
      case 'orgs create': {
        const id = need(args, 2, 'the org id (tollgate orgs create <id> --plan PLAN)');
        if (!flags.plan) throw new CliError(ExitCode.usage, 'missing --plan (tollgate orgs create <id> --plan PLAN)');
        const org = await client.call('POST', '/admin/orgs', { id, name: flags.name ?? id, plan: flags.plan });
        print(org, () => `created org ${cell(org.id)}\n${fields(org, ['id', 'name', 'profile', 'plan', 'balance', 'created_at'])}`);
        return ExitCode.ok;
      }
      case 'orgs list': {
        const page = await client.call<{ orgs: Json[]; total_count: number; offset: number }>(
          'GET',
          `/admin/orgs${query({ search: flags.search, sort: flags.sort, order: flags.order, limit: int('limit', flags.limit, 1, 500), offset: int('offset', flags.offset, 0) })}`,
        );
        print(page, () => {
          const shown = page.orgs.length ? `${page.offset + 1}-${page.offset + page.orgs.length}` : '0';
          return table(page.orgs, ['id', 'name', 'plan', 'balance', 'used_this_month', 'calls_today', 'last_call_at']) + `${shown} of ${page.total_count} orgs\n`;
        });
        return ExitCode.ok;
      }
      case 'orgs show': {
        const id = need(args, 2, 'the org id');
        const org = await client.call('GET', `/admin/orgs/${seg(id)}`);
        const keys = await client.call<{ keys: Json[] }>('GET', `/admin/orgs/${seg(id)}/keys`);
        print({ ...org, keys: keys.keys }, () =>
          fields({ ...org, limits: Object.keys((org.limits as Json) ?? {}).length ? org.limits : '(plan defaults)' }, ['id', 'name', 'profile', 'plan', 'balance', 'limits', 'created_at']) +
          `\nkeys\n${table(keys.keys, ['id', 'name', 'kind', 'prefix', 'created_at', 'revoked_at'])}`,
        );
        return ExitCode.ok;
      }
      case 'keys create': {
        const org = need(args, 2, 'the org id');
        if (flags.kind !== undefined && flags.kind !== 'key' && flags.kind !== 'user') throw new CliError(ExitCode.usage, `--kind must be key or user (got "${flags.kind}")`);
        const key = await client.call('POST', `/admin/orgs/${seg(org)}/keys`, { ...(flags.name ? { name: flags.name } : {}), ...(flags.kind ? { kind: flags.kind } : {}) });
        print(key, () => `${fields(key, ['id', 'org_id', 'name', 'kind', 'key'])}\nThe key is shown only this once: store it now.\n`);
        return ExitCode.ok;
      }
      case 'keys revoke': {
        const id = need(args, 2, 'the key id');
        await client.call('DELETE', `/admin/keys/${seg(id)}`);
        print({ id, revoked: true }, () => `revoked key ${id} (gateways refuse it within seconds)\n`);
        return ExitCode.ok;
      }
      case 'credits grant': {
        const org = need(args, 2, 'the org id (tollgate credits grant <org> <amount>)');
        const amountText = need(args, 3, 'the amount (tollgate credits grant <org> <amount>)');
        if (!/^\d+$/.test(amountText) || Number(amountText) < 1) throw new CliError(ExitCode.usage, `amount must be a whole number of credits, 1 or more (got "${amountText}")`);
        let expiresAt: string | undefined;
        if (flags['expires-at'] !== undefined) {
          const t = Date.parse(flags['expires-at']);
          if (Number.isNaN(t)) throw new CliError(ExitCode.usage, `--expires-at must be a time such as 2027-01-01T00:00:00Z (got "${flags['expires-at']}")`);
          expiresAt = new Date(t).toISOString();
        }
        // One key per invocation: the retries below (a timeout, a restart of metering) can never grant twice.
        const idempotencyKey = flags['idempotency-key'] ?? `cli-${randomUUID()}`;
        const granted = await client.call(
          'POST',
          `/admin/orgs/${seg(org)}/credits`,
          { amount: Number(amountText), reason: flags.reason ?? 'granted with the tollgate CLI', idempotency_key: idempotencyKey, ...(expiresAt ? { expires_at: expiresAt } : {}) },
          3,
        );
        print(granted, () =>
          `${granted.replayed ? 'already granted earlier with this idempotency key (nothing new granted)' : `granted ${cell(granted.amount)} credits to ${org}`}\n` +
          fields(granted, ['org_id', 'amount', 'reason', 'expires_at', 'balance', 'seq', 'idempotency_key']),
        );
        return ExitCode.ok;
      }
      case 'plan set': {
        const org = need(args, 2, 'the org id (tollgate plan set <org> <plan>)');
        const plan = need(args, 3, 'the plan (tollgate plan set <org> <plan>)');
        const changed = await client.call('PUT', `/admin/orgs/${seg(org)}/plan`, { plan });
        print(changed, () => `${org} is on plan ${cell(changed.plan)}, balance ${cell(changed.balance)}\n`);
        return ExitCode.ok;
      }
      case 'limits set': {
        const org = need(args, 2, 'the org id (tollgate limits set <org> NAME=N ...)');
        const pairs = args.slice(3);
        if (pairs.length === 0) throw new CliError(ExitCode.usage, 'missing NAME=N (tollgate limits set <org> minute=10 day=1000)');
        const limits: Record<string, number> = {};
        for (const p of pairs) {
          const m = /^([A-Za-z0-9_.-]+)=(\d+)$/.exec(p);
          if (!m) throw new CliError(ExitCode.usage, `limits are NAME=N with N a whole number (got "${p}")`);
          limits[m[1]!] = Number(m[2]);
        }
        const set = await client.call('PUT', `/admin/orgs/${seg(org)}/limits`, limits);
        print(set, () => `limits of ${org}: ${Object.entries(set.limits as Json).map(([k, v]) => `${k}=${cell(v)}`).join(' ') || '(plan defaults)'}\n`);
        return ExitCode.ok;
      }
      case 'limits show': {
        const org = need(args, 2, 'the org id');
        const got = await client.call('GET', `/admin/orgs/${seg(org)}/limits`);
        print(got, () => `limits of ${org}: ${Object.entries(got.limits as Json).map(([k, v]) => `${k}=${cell(v)}`).join(' ') || '(plan defaults)'}\n`);
        return ExitCode.ok;
      }
      case 'ledger':
        return await ledger(client, need(args, 1, 'the org id (tollgate ledger <org>)'), flags, io);
      case 'history': {
        const org = need(args, 1, 'the org id (tollgate history <org>)');
        const page = await client.call<{ commands: Json[] }>(
          'GET',
          `/admin/orgs/${seg(org)}/history${query({ after: int('after', flags.after, 0), limit: int('limit', flags.limit, 1, 500) })}`,
        );
        print(page, () =>
          table(
            page.commands.map((c) => ({ ...c, what: describeCommand(c), entries: (c.entries as number[]).join(',') || '-' })),
            ['seq', 'at', 'command', 'actor', 'what', 'entries', 'id'],
          ),
        );
        return ExitCode.ok;
      }
      case 'usage': {
        const org = need(args, 1, 'the org id (tollgate usage <org>)');
        const page = await client.call<{ usage: Json[]; total_count: number; offset: number }>(
          'GET',
          `/admin/orgs/${seg(org)}/usage${query({ limit: int('limit', flags.limit, 1, 500), offset: int('offset', flags.offset, 0) })}`,
        );
        print(page, () => table(page.usage, ['timestamp', 'method', 'path', 'status_code', 'credits_consumed', 'cost_reason', 'response_time_ms']) + `${page.usage.length} of ${page.total_count} calls\n`);
        return ExitCode.ok;
      }
      case 'system': {
        const s = await client.call('GET', '/admin/system');
        print(s, () => fields(s, ['at', 'events_per_second', 'events_metered', 'consumer_lag', 'dead_letters', 'reservations_held', 'decisions_last_hour', 'orgs']));
        return ExitCode.ok;
      }
      case 'alerts set': {
        const target = alertsTarget(args, flags.plan, 'tollgate alerts set <org> --credits-below N,N');
        const creditsBelow = ints('credits-below', flags['credits-below'], 1, 1_000_000_000_000);
        const percent = ints('allowance-used-percent', flags['allowance-used-percent'], 1, 100);
        if (creditsBelow === undefined && percent === undefined) throw new CliError(ExitCode.usage, 'give --credits-below N,N and/or --allowance-used-percent P,P');
        const current = await client.call<Json>('GET', target.path);
        const set = await client.call('PUT', target.path, {
          credits_below: creditsBelow ?? current.credits_below,
          allowance_used_percent: percent ?? current.allowance_used_percent,
        });
        print(set, () => `alerts of ${target.name}\n${fields(set, ['credits_below', 'allowance_used_percent'])}`);
        return ExitCode.ok;
      }
      case 'alerts show': {
        const target = alertsTarget(args, flags.plan, 'tollgate alerts show <org>');
        const got = await client.call<Json>('GET', target.path);
        print(got, () => {
          if (flags.plan !== undefined) return `alerts of ${target.name}\n${fields(got, ['credits_below', 'allowance_used_percent'])}`;
          const plan = got.plan_alerts as Json;
          return `alerts of ${target.name}\n${fields({ ...got, plan_credits_below: plan.credits_below, plan_allowance_used_percent: plan.allowance_used_percent },
            ['credits_below', 'allowance_used_percent', 'plan', 'plan_credits_below', 'plan_allowance_used_percent', 'applied'])}`;
        });
        return ExitCode.ok;
      }
      case 'webhooks rotate-secret': {
        const id = need(args, 2, 'the webhook id (tollgate webhooks rotate-secret <id> [--overlap SECONDS])');
        const overlap = int('overlap', flags.overlap, 0, 7 * 24 * 60 * 60);
        const rotated = await client.call('POST', `/admin/webhooks/${seg(id)}/rotate-secret`, overlap === undefined ? {} : { overlap_seconds: overlap });
        print(rotated, () => `${fields(rotated, ['id', 'secret', 'previous_secret_until'])}\nThe secret is shown only this once: store it now. ` +
          (rotated.previous_secret_until ? `The old one also signs until ${cell(rotated.previous_secret_until)}.\n` : 'The old one no longer signs.\n'));
        return ExitCode.ok;
      }
      case 'webhooks list': {
        const page = await client.call<{ webhooks: Json[] }>('GET', `/admin/webhooks${query({ org_id: flags.org })}`);
        print(page, () => table(page.webhooks.map((w) => ({ ...w, org_id: w.org_id ?? '(all)', events: (w.events as string[]).join(',') })), ['id', 'org_id', 'url', 'events', 'failing_since', 'disabled_at']));
        return ExitCode.ok;
      }
      case 'webhooks create': {
        const url = need(args, 2, 'the URL (tollgate webhooks create <url> --events TYPE,...)');
        if (!flags.events) throw new CliError(ExitCode.usage, 'missing --events TYPE,TYPE (e.g. --events credits.low,credits.exhausted)');
        const events = flags.events.split(',').map((e) => e.trim()).filter((e) => e !== '');
        const created = await client.call('POST', '/admin/webhooks', { url, events, ...(flags.org ? { org_id: flags.org } : {}) });
        print(created, () => `${fields({ ...created, org_id: created.org_id ?? '(all)' }, ['id', 'url', 'events', 'org_id', 'secret'])}\nThe secret is shown only this once: store it now (receivers verify signatures with it).\n`);
        return ExitCode.ok;
      }
      case 'webhooks delete': {
        const id = need(args, 2, 'the webhook id');
        await client.call('DELETE', `/admin/webhooks/${seg(id)}`);
        print({ id, deleted: true }, () => `deleted webhook ${id} (its undelivered messages with it)\n`);
        return ExitCode.ok;
      }
      case 'webhooks deliveries': {
        const id = need(args, 2, 'the webhook id');
        const page = await client.call<{ deliveries: Json[]; pending: number }>('GET', `/admin/webhooks/${seg(id)}/deliveries${query({ limit: int('limit', flags.limit, 1, 500) })}`);
        print(page, () => table(page.deliveries, ['attempted_at', 'msg_id', 'org_id', 'event_type', 'status', 'latency_ms', 'error']) + `${page.pending} undelivered\n`);
        return ExitCode.ok;
      }
      case 'webhooks resend': {
        const id = need(args, 2, 'the webhook id (tollgate webhooks resend <id> --msg MSG_ID | --since TIME)');
        if ((flags.msg === undefined) === (flags.since === undefined)) throw new CliError(ExitCode.usage, 'give exactly one of --msg MSG_ID or --since TIME');
        let since: string | undefined;
        if (flags.since !== undefined) {
          const t = Date.parse(flags.since);
          if (Number.isNaN(t)) throw new CliError(ExitCode.usage, `--since must be a time such as 2027-01-01T00:00:00Z (got "${flags.since}")`);
          since = new Date(t).toISOString();
        }
        const done = await client.call('POST', `/admin/webhooks/${seg(id)}/resend`, flags.msg !== undefined ? { msg_id: flags.msg } : { since });
        print(done, () => `queued ${cell(done.resent)} message(s) again for ${id}${done.reenabled ? ' (the endpoint is enabled again)' : ''}\n`);
        return ExitCode.ok;
      }
      default:
        throw new CliError(ExitCode.usage, `unknown command "${args.join(' ')}"; see tollgate help`);
    }
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`tollgate: ${e.message}\n`);
      return e.code;
    }
    io.err(`tollgate: ${(e as Error).message}\n`);
    return ExitCode.failed;
  }
}

async function ledger(client: AdminClient, org: string, flags: Flags, io: Io): Promise<number> {
  const limit = int('limit', flags.limit, 1, 500) ?? 100;
  const interval = (int('interval', flags.interval, 1, 3600) ?? 2) * 1000;
  let after = int('after', flags.after, 0) ?? 0;
  const columns = ['seq', 'type', 'amount', 'balance_after', 'cause', 'occurred_at'];
  let printedHeader = false;
  let stop = false;
  void io.stopped.then(() => (stop = true));
  for (;;) {
    const page = await client.call<{ entries: Json[] }>('GET', `/admin/orgs/${seg(org)}/ledger${query({ after, limit })}`, undefined, flags.follow ? 3 : 1);
    if (flags.json) {
      if (flags.follow) for (const e of page.entries) io.out(`${JSON.stringify(e)}\n`);
      else io.out(`${JSON.stringify(page, null, 2)}\n`);
    } else if (page.entries.length > 0 || !flags.follow) {
      const text = table(page.entries, columns);
      // Following: the header once, then rows as they come.
      io.out(printedHeader ? text.split('\n').slice(1).join('\n') : text);
      printedHeader = true;
    }
    const last = page.entries[page.entries.length - 1];
    if (last) after = Number(last.seq);
    if (!flags.follow) return ExitCode.ok;
    // A full page means more are waiting: read on at once.
    if (page.entries.length < limit) {
      await Promise.race([io.sleep(interval), io.stopped]);
    }
    if (stop) return ExitCode.ok;
  }
}

/** The process entry (`npm run tollgate`, the `tollgate` bin): real stdout, environment and Ctrl-C. */
export function main(): void {
  // Only `--follow` turns Ctrl-C into a clean stop (exit 0); any other command keeps the default (interrupted).
  const following = process.argv.includes('--follow') || process.argv.includes('-f');
  const stopped = new Promise<void>((resolve) => {
    if (!following) return;
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  run(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    env: process.env,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms).unref()),
    stopped,
  }).then(
    (code) => {
      // exitCode, not exit(): a piped stdout is flushed before the process ends. The operator programs end at once
      // when done (after stdout is flushed), as their scripts did: a broker client may linger otherwise.
      process.exitCode = code;
      if (operatorCommands[process.argv[2] ?? '']) process.stdout.write('', () => process.exit(code));
    },
    (e: Error) => {
      process.stderr.write(`tollgate: ${e.message}\n`);
      process.exitCode = ExitCode.failed;
    },
  );
}

if (require.main === module) main();
