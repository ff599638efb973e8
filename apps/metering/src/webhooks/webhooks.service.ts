import { NotFoundException } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { DataSource, EntityManager } from 'typeorm';
import { newId } from '@tollgate/persistence';
import { ProfileCatalog } from '@tollgate/ledger';
import { fieldError } from '@tollgate/platform';
import { answer, DefaultActor } from '../admin/admin-commands';
import { recordCommand } from '../admin/admin-command-store';
import { checkEndpointUrl, UrlRules } from './delivery-policy';
import { MessageQueueLock } from './notifier';
import { CreateWebhookDto, ResendDto, RotateSecretDto, SetAlertsDto } from './webhooks.dto';

/** How long the old secret still signs after a rotation, unless the request says otherwise (as Svix does: a day). */
export const DefaultSecretOverlapSeconds = 24 * 60 * 60;

/** The record of commands on global endpoints (org_id NULL) is kept under this org id, which no org can have. */
export const GlobalCommandsOrg = '*';

/** A Standard Webhooks secret: `whsec_` and 24 random bytes in base64. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

function normalise(dto: SetAlertsDto): { creditsBelow: number[]; percent: number[] } {
  return {
    creditsBelow: [...new Set(dto.credits_below ?? [])].sort((a, b) => b - a),
    percent: [...new Set(dto.allowance_used_percent ?? [])].sort((a, b) => a - b),
  };
}

interface EndpointRow {
  id: string;
  org_id: string | null;
  url: string;
  events: string[];
  created_at: Date;
  failing_since: Date | null;
  disabled_at: Date | null;
  previous_secret_until: Date | null;
}

function endpointView(r: EndpointRow) {
  return {
    id: r.id,
    url: r.url,
    events: r.events,
    org_id: r.org_id,
    created_at: r.created_at.toISOString(),
    failing_since: r.failing_since?.toISOString() ?? null,
    disabled_at: r.disabled_at?.toISOString() ?? null,
    // While an old secret still signs beside the current one (after a rotation).
    previous_secret_until: r.previous_secret_until && r.previous_secret_until.getTime() > Date.now() ? r.previous_secret_until.toISOString() : null,
  };
}

/**
 * Alert thresholds and webhook endpoints (SPEC §8). Every change is recorded in admin_commands in its own
 * transaction; an endpoint's secret is returned once, by the create, and never written to a log or a record.
 */
export class WebhooksService {
  constructor(
    private readonly ds: DataSource,
    private readonly urlRules: UrlRules,
    /** The plans a plan's thresholds may be set for: the active profile's. */
    private readonly catalog: ProfileCatalog,
    private readonly clock: () => number = Date.now,
  ) {}

  async setAlerts(orgId: string, dto: SetAlertsDto, actor = DefaultActor) {
    const { creditsBelow, percent } = normalise(dto);
    const commandId = newId('cmd');
    return this.ds.transaction(async (m) => {
      await this.requireOrg(m, orgId);
      await m.query(
        `INSERT INTO alert_thresholds (org_id, credits_below, allowance_used_percent) VALUES ($1, $2, $3)
         ON CONFLICT (org_id) DO UPDATE SET credits_below = EXCLUDED.credits_below, allowance_used_percent = EXCLUDED.allowance_used_percent, updated_at = now()`,
        [orgId, creditsBelow, percent],
      );
      const result = { org_id: orgId, credits_below: creditsBelow, allowance_used_percent: percent };
      await recordCommand(m, {
        id: commandId, orgId, command: 'set-alerts', actor, at: this.clock(),
        input: { credits_below: creditsBelow, allowance_used_percent: percent }, idempotencyKey: null, result, entrySeqs: [],
      });
      return answer(result, commandId);
    });
  }

  /**
   * Removes the org's own thresholds, so its plan's apply again (an org that set empty lists has opted out; this
   * opts it back in). Recorded as `clear-alerts` with what was removed; clearing an org that has none records
   * nothing and answers `cleared: false`.
   */
  async clearAlerts(orgId: string, actor = DefaultActor) {
    const commandId = newId('cmd');
    return this.ds.transaction(async (m) => {
      await this.requireOrg(m, orgId);
      // TypeORM answers a DELETE with [rows, count].
      const [[removed]]: [Array<{ credits_below: string[]; allowance_used_percent: number[] }>, number] = await m.query(
        `DELETE FROM alert_thresholds WHERE org_id = $1 RETURNING credits_below, allowance_used_percent`,
        [orgId],
      );
      const result = { org_id: orgId, cleared: removed !== undefined };
      if (!removed) return result;
      await recordCommand(m, {
        id: commandId, orgId, command: 'clear-alerts', actor, at: this.clock(),
        input: { credits_below: removed.credits_below.map(Number), allowance_used_percent: removed.allowance_used_percent }, idempotencyKey: null, result, entrySeqs: [],
      });
      return answer(result, commandId);
    });
  }

  /**
   * The org's own thresholds and which apply (`applied`): its own when it set any (even empty lists), else its
   * plan's (`plan_alerts`), else none.
   */
  async getAlerts(orgId: string) {
    const org: Array<{ profile: string; plan: string }> = await this.ds.query(`SELECT profile, plan FROM orgs WHERE id = $1`, [orgId]);
    if (!org[0]) throw new NotFoundException({ error: 'not_found', message: `org "${orgId}" does not exist` });
    const own: Array<{ credits_below: string[]; allowance_used_percent: number[] }> = await this.ds.query(
      `SELECT credits_below, allowance_used_percent FROM alert_thresholds WHERE org_id = $1`,
      [orgId],
    );
    const plan = await this.planThresholds(org[0].profile, org[0].plan);
    const applied = own[0] ? 'org' : plan ? 'plan' : 'none';
    return {
      org_id: orgId,
      credits_below: (own[0]?.credits_below ?? []).map(Number),
      allowance_used_percent: own[0]?.allowance_used_percent ?? [],
      plan: org[0].plan,
      plan_alerts: plan ?? { credits_below: [], allowance_used_percent: [] },
      applied,
    };
  }

  /** A plan's thresholds, for every org of the plan that sets none of its own; recorded under org '*'. */
  async setPlanAlerts(planName: string, dto: SetAlertsDto, actor = DefaultActor) {
    const profile = this.catalog.active.name;
    const plan = this.catalog.plan(profile, planName);
    if (!plan) throw this.planNotFound(planName);
    const { creditsBelow, percent } = normalise(dto);
    const commandId = newId('cmd');
    return this.ds.transaction(async (m) => {
      await m.query(
        `INSERT INTO plan_alert_thresholds (profile, plan, credits_below, allowance_used_percent) VALUES ($1, $2, $3, $4)
         ON CONFLICT (profile, plan) DO UPDATE SET credits_below = EXCLUDED.credits_below, allowance_used_percent = EXCLUDED.allowance_used_percent, updated_at = now()`,
        [profile, plan.name, creditsBelow, percent],
      );
      const result = { plan: plan.name, credits_below: creditsBelow, allowance_used_percent: percent };
      await m.query(`SELECT pg_advisory_xact_lock(hashtext('admin_commands:*'))`);
      await recordCommand(m, {
        id: commandId, orgId: GlobalCommandsOrg, command: 'set-plan-alerts', actor, at: this.clock(),
        input: { plan: plan.name, profile, credits_below: creditsBelow, allowance_used_percent: percent }, idempotencyKey: null, result, entrySeqs: [],
      });
      return answer(result, commandId);
    });
  }

  async getPlanAlerts(planName: string) {
    const plan = this.catalog.plan(this.catalog.active.name, planName);
    if (!plan) throw this.planNotFound(planName);
    return { plan: plan.name, ...((await this.planThresholds(this.catalog.active.name, plan.name)) ?? { credits_below: [], allowance_used_percent: [] }) };
  }

  private async planThresholds(profile: string, plan: string): Promise<{ credits_below: number[]; allowance_used_percent: number[] } | null> {
    const rows: Array<{ credits_below: string[]; allowance_used_percent: number[] }> = await this.ds.query(
      `SELECT credits_below, allowance_used_percent FROM plan_alert_thresholds WHERE profile = $1 AND plan = $2`,
      [profile, plan],
    );
    return rows[0] ? { credits_below: rows[0].credits_below.map(Number), allowance_used_percent: rows[0].allowance_used_percent } : null;
  }

  private planNotFound(plan: string): NotFoundException {
    const names = this.catalog.active.plans.map((p) => p.name).join(', ');
    return new NotFoundException({ error: 'not_found', message: `plan "${plan}" does not exist in profile ${this.catalog.active.name} (plans: ${names})` });
  }

  async create(dto: CreateWebhookDto, actor = DefaultActor) {
    const refused = await checkEndpointUrl(dto.url, this.urlRules);
    if (refused) throw fieldError('url', refused);
    if (dto.events.length === 0) throw fieldError('events', 'must name at least one event type');
    const events = [...new Set(dto.events)];
    const orgId = dto.org_id ?? null;
    const id = newId('whk');
    const secret = newWebhookSecret();
    const commandId = newId('cmd');
    return this.ds.transaction(async (m) => {
      if (orgId !== null) await this.requireOrg(m, orgId);
      await m.query(`INSERT INTO webhook_endpoints (id, org_id, url, events, secret) VALUES ($1, $2, $3, $4, $5)`, [id, orgId, dto.url, events, secret]);
      await this.record(m, orgId, commandId, 'create-webhook', actor, { url: dto.url, events, org_id: orgId }, { webhook_id: id });
      // The only time the secret leaves metering.
      return answer({ id, url: dto.url, events, org_id: orgId, secret }, commandId);
    });
  }

  async list(orgId?: string) {
    const rows: EndpointRow[] = await this.ds.query(
      `SELECT id, org_id, url, events, created_at, failing_since, disabled_at, previous_secret_until FROM webhook_endpoints
        WHERE $1::text IS NULL OR org_id = $1 OR org_id IS NULL ORDER BY created_at, id`,
      [orgId ?? null],
    );
    return { webhooks: rows.map(endpointView) };
  }

  async remove(id: string, actor = DefaultActor) {
    const commandId = newId('cmd');
    return this.ds.transaction(async (m) => {
      const row = await this.lockEndpoint(m, id);
      await m.query(`DELETE FROM webhook_endpoints WHERE id = $1`, [id]);
      await this.record(m, row.org_id, commandId, 'delete-webhook', actor, { webhook_id: id }, { webhook_id: id, url: row.url });
      return answer({}, commandId);
    });
  }

  /**
   * A new secret for the endpoint, returned once. The old one keeps signing beside it (two signatures in
   * webhook-signature, as Standard Webhooks allows) for `overlap_seconds` (default a day; 0: not at all), so
   * receivers can switch without refusing a message. A rotation during an overlap drops the oldest secret.
   */
  async rotateSecret(id: string, dto: RotateSecretDto, actor = DefaultActor) {
    const overlap = dto.overlap_seconds ?? DefaultSecretOverlapSeconds;
    const secret = newWebhookSecret();
    const commandId = newId('cmd');
    return this.ds.transaction(async (m) => {
      const row = await this.lockEndpoint(m, id);
      const [updated] = (await m.query(
        `WITH rotated AS (
           UPDATE webhook_endpoints SET previous_secret = CASE WHEN $3::float8 > 0 THEN secret END, secret = $2,
                  previous_secret_until = CASE WHEN $3::float8 > 0 THEN clock_timestamp() + make_interval(secs => $3::float8) END
            WHERE id = $1 RETURNING previous_secret_until)
         SELECT previous_secret_until FROM rotated`,
        [id, secret, overlap],
      )) as Array<{ previous_secret_until: Date | null }>;
      const until = updated!.previous_secret_until?.toISOString() ?? null;
      await this.record(m, row.org_id, commandId, 'rotate-webhook-secret', actor, { webhook_id: id, overlap_seconds: overlap }, { webhook_id: id, previous_secret_until: until });
      // The only time the new secret leaves metering.
      return answer({ id, secret, previous_secret_until: until }, commandId);
    });
  }

  /** The endpoint's delivery attempts, newest first, with the message each was for. */
  async deliveries(id: string, limit = 100) {
    await this.requireEndpoint(id);
    const rows: Array<{ id: string; msg_id: string; org_id: string; event_type: string; attempted_at: Date; status: number | null; latency_ms: number; response_head: string | null; error: string | null; delivered_at: Date | null }> =
      await this.ds.query(
        `SELECT a.id, m.msg_id, m.org_id, m.event_type, a.attempted_at, a.status, a.latency_ms, a.response_head, a.error, m.delivered_at
           FROM webhook_attempts a JOIN webhook_messages m ON m.id = a.message_id
          WHERE a.endpoint_id = $1 ORDER BY a.id DESC LIMIT $2`,
        [id, limit],
      );
    const [pending] = (await this.ds.query(`SELECT count(*)::int8 AS n FROM webhook_messages WHERE endpoint_id = $1 AND delivered_at IS NULL`, [id])) as Array<{ n: string }>;
    return {
      webhook_id: id,
      pending: Number(pending!.n),
      deliveries: rows.map((r) => ({
        id: Number(r.id),
        msg_id: r.msg_id,
        org_id: r.org_id,
        event_type: r.event_type,
        attempted_at: r.attempted_at.toISOString(),
        status: r.status,
        latency_ms: r.latency_ms,
        response_head: r.response_head,
        error: r.error,
        delivered: r.delivered_at !== null,
      })),
    };
  }

  /**
   * Queues one message (by webhook-id) or every message queued since an instant again, at the tail of its
   * (endpoint, org) queue with the same webhook-id and body. A disabled endpoint is enabled again: a re-send is the
   * operator saying it is fixed.
   */
  async resend(id: string, dto: ResendDto, actor = DefaultActor) {
    if ((dto.msg_id === undefined) === (dto.since === undefined)) throw fieldError('msg_id', 'give exactly one of msg_id or since');
    const since = dto.since !== undefined ? Date.parse(dto.since) : null;
    if (since !== null && !Number.isFinite(since)) throw fieldError('since', 'must be an ISO 8601 instant');
    const commandId = newId('cmd');
    return this.ds.transaction(async (m) => {
      const row = await this.lockEndpoint(m, id);
      // The notifier's lock: ids are handed out in queue order only under it.
      await m.query(`SELECT pg_advisory_xact_lock($1)`, [MessageQueueLock]);
      const picked: Array<{ id: string }> = await m.query(
        dto.msg_id !== undefined
          ? `SELECT max(id) AS id FROM webhook_messages WHERE endpoint_id = $1 AND msg_id = $2 HAVING max(id) IS NOT NULL`
          : `SELECT max(id) AS id FROM webhook_messages WHERE endpoint_id = $1 AND created_at >= $2 GROUP BY msg_id ORDER BY max(id)`,
        [id, dto.msg_id ?? new Date(since!)],
      );
      if (dto.msg_id !== undefined && picked.length === 0) {
        throw new NotFoundException({ error: 'not_found', message: `message "${dto.msg_id}" was never queued for webhook "${id}"` });
      }
      if (picked.length > 0) {
        await m.query(
          `INSERT INTO webhook_messages (endpoint_id, org_id, msg_id, event_type, payload, source_at)
           SELECT m.endpoint_id, m.org_id, m.msg_id, m.event_type, m.payload, m.source_at
             FROM unnest($1::bigint[]) WITH ORDINALITY AS p(id, ord) JOIN webhook_messages m ON m.id = p.id ORDER BY p.ord`,
          [picked.map((p) => p.id)],
        );
      }
      await m.query(`UPDATE webhook_endpoints SET disabled_at = NULL, failing_since = NULL WHERE id = $1`, [id]);
      const result = { webhook_id: id, resent: picked.length, reenabled: row.disabled_at !== null };
      await this.record(m, row.org_id, commandId, 'resend-webhook', actor, { webhook_id: id, msg_id: dto.msg_id ?? null, since: dto.since ?? null }, result);
      return answer(result, commandId);
    });
  }

  private async record(m: EntityManager, orgId: string | null, id: string, command: 'create-webhook' | 'delete-webhook' | 'resend-webhook' | 'rotate-webhook-secret', actor: string, input: Record<string, unknown>, result: Record<string, unknown>) {
    // Global endpoints have no org row to serialise their record's seq on: a lock of their own.
    if (orgId === null) await m.query(`SELECT pg_advisory_xact_lock(hashtext('admin_commands:*'))`);
    await recordCommand(m, { id, orgId: orgId ?? GlobalCommandsOrg, command, actor, at: this.clock(), input, idempotencyKey: null, result, entrySeqs: [] });
  }

  private async requireOrg(m: EntityManager, orgId: string): Promise<void> {
    const rows: unknown[] = await m.query(`SELECT 1 FROM orgs WHERE id = $1`, [orgId]);
    if (rows.length === 0) throw new NotFoundException({ error: 'not_found', message: `org "${orgId}" does not exist` });
  }

  private async requireEndpoint(id: string): Promise<void> {
    const rows: unknown[] = await this.ds.query(`SELECT 1 FROM webhook_endpoints WHERE id = $1`, [id]);
    if (rows.length === 0) throw this.endpointNotFound(id);
  }

  private async lockEndpoint(m: EntityManager, id: string): Promise<EndpointRow> {
    const rows: EndpointRow[] = await m.query(
      `SELECT id, org_id, url, events, created_at, failing_since, disabled_at, previous_secret_until FROM webhook_endpoints WHERE id = $1 FOR UPDATE`,
      [id],
    );
    if (!rows[0]) throw this.endpointNotFound(id);
    return rows[0];
  }

  private endpointNotFound(id: string): NotFoundException {
    return new NotFoundException({ error: 'not_found', message: `webhook "${id}" does not exist` });
  }
}
