import { randomUUID } from 'node:crypto';
import { AdminClient } from '../admin-client';
import { CliError, ExitCode } from '../args';
import { CliConfig } from '../config';
import { cell, fields, table } from '../output';

/**
 * The admin commands (`tollgate orgs|keys|credits|plan|limits|ledger|history|usage|system|alerts|webhooks`): each
 * is one or a few HTTP calls to metering's admin API (admin-client.ts), printed as tables or, with --json, as the
 * API's JSON. Their usage is tollgate.ts's.
 */

type Json = Record<string, unknown>;

/** What the admin commands get from the process. */
export interface AdminIo {
  out: (s: string) => void;
  err: (s: string) => void;
  sleep: (ms: number) => Promise<void>;
  /** Resolves when the user asks to stop (Ctrl-C): ends `ledger --follow`. */
  stopped: Promise<void>;
}

export const options = {
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

export type Flags = { [K in keyof typeof options]?: (typeof options)[K]['type'] extends 'boolean' ? boolean : string };

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

/** Runs one admin command (flags and positionals already read with `options`); returns its exit code. */
export async function runAdmin(flags: Flags, args: string[], io: AdminIo, config: CliConfig): Promise<number> {
  const print = (value: unknown, human: () => string) => io.out(flags.json ? `${JSON.stringify(value, null, 2)}\n` : human());
  try {
    const client = new AdminClient(config.adminUrl, config.adminToken, actorOf(flags.actor, { USER: config.user }));
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
      case 'alerts clear': {
        const org = need(args, 2, 'the org id (tollgate alerts clear <org>)');
        const cleared = await client.call<Json>('DELETE', `/admin/orgs/${seg(org)}/alerts`);
        print(cleared, () => (cleared.cleared ? `alerts of ${org}: its own thresholds removed; its plan's apply\n` : `alerts of ${org}: it had none of its own\n`));
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

async function ledger(client: AdminClient, org: string, flags: Flags, io: AdminIo): Promise<number> {
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

