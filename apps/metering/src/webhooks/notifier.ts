import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AdvisoryLocks, newId } from '@tollgate/persistence';
import { LockedRelay } from '../outbox/relay-loop';
import { recordCommand } from '../admin/admin-command-store';
import { deriveFromEntries, deriveFromRefusal, initialState, LedgerEntryView, messageBody, messageId, Notification, NoThresholds, NotifierState, Thresholds } from './notifications';

/** Who the record of a command the system issued itself (disabling a failing endpoint) names as its actor. */
export const SystemActor = 'tollgate';
/** The queue (webhook_messages.org_id) of global endpoints' own events, and their record's org (see GlobalCommandsOrg). */
export const GlobalOrg = '*';

/** The advisory lock of the notifier and of anything else that adds webhook messages (a re-send). */
export const MessageQueueLock = AdvisoryLocks.webhookMessages;

/**
 * Derives notifications from what metering recorded and queues them, one webhook_messages row per matching
 * endpoint. A relay, not part of the metering transaction: it reads each org's ledger entries in `seq` order from
 * its own stored position (notifier_positions), so the hot write path (group-committed batches) carries no extra
 * work, a replay of the ledger re-derives the same messages, and the crossing of a threshold is decided on the
 * org's serialised entries: concurrent paid calls are entries N, N+1, … of one org, so exactly one of them takes
 * the balance below a threshold, whichever instance or transaction wrote it.
 *
 * One notifier at a time (a transaction-scoped advisory lock, also taken by a re-send), so message ids (bigserial)
 * are handed out in order per (endpoint, org), and a round's messages and its positions commit together: a crash
 * either leaves both or neither.
 */
export class Notifier extends LockedRelay {
  constructor(ds: DataSource, intervalMs = 250, batchOrgs = 200, private readonly entriesPerOrg = 2000) {
    super(ds, new Logger('webhook-notifier'), 'notification derivation', MessageQueueLock, intervalMs, batchOrgs);
  }

  /**
   * One round (runOnce: under the lock): the endpoints disabled since the last round (endpoint.disabled), then the
   * orgs with unread entries or an unread refusal; returns how many orgs and endpoints were read.
   */
  protected async round(m: EntityManager): Promise<number> {
    const disabled = await announceDisabled(m);
    const due: Array<{ org_id: string }> = await m.query(
      `SELECT org_id FROM (
         -- Unread entries, or an org not seen yet (one with no entries still needs a position for its refusals).
         SELECT a.org_id FROM accounts a LEFT JOIN notifier_positions p USING (org_id)
          WHERE p.org_id IS NULL OR a.next_seq - 1 > p.seq
         UNION
         SELECT p.org_id FROM notifier_positions p
          WHERE NOT p.exhausted_fired AND EXISTS (SELECT 1 FROM usage_records u
                  WHERE u.org_id = p.org_id AND u.decision = 'insufficient_credits' AND u.occurred_at > p.exhausted_armed_at)
       ) d ORDER BY org_id LIMIT $1`,
      [this.batchSize],
    );
    if (due.length === 0) return disabled;
    const orgIds = due.map((d) => d.org_id);
    const states = await readStates(m, orgIds);
    const thresholds = await readThresholds(m, orgIds);
    const entries = await this.readEntries(m, orgIds, states);
    const derived = new Map<string, Notification[]>();
    for (const org of orgIds) {
      const r = deriveFromEntries(org, states.get(org)!, entries.get(org) ?? [], thresholds.get(org) ?? NoThresholds);
      states.set(org, r.state);
      derived.set(org, r.notifications);
    }
    const refusals = await readRefusals(m, orgIds.filter((o) => !states.get(o)!.exhaustedFired), states);
    for (const [org, refusal] of refusals) {
      const r = deriveFromRefusal(org, states.get(org)!, refusal);
      states.set(org, r.state);
      derived.get(org)!.push(...r.notifications);
    }
    await enqueue(m, orgIds, derived);
    await saveStates(m, states);
    return orgIds.length + disabled;
  }

  private async readEntries(m: EntityManager, orgIds: string[], states: Map<string, NotifierState>): Promise<Map<string, LedgerEntryView[]>> {
    const rows: Array<{ org_id: string; seq: string; type: string; amount: string; balance_after: string; occurred_ms: string; recorded_ms: string; bucket_id: string | null; cause: string }> =
      await m.query(
        `SELECT p.org_id, e.seq, e.type, e.amount, e.balance_after, e.cause, e.bucket_id,
                (extract(epoch FROM e.occurred_at) * 1000)::int8 AS occurred_ms, (extract(epoch FROM e.recorded_at) * 1000)::int8 AS recorded_ms
           FROM unnest($1::text[], $2::bigint[]) AS p(org_id, seq)
          CROSS JOIN LATERAL (SELECT * FROM ledger_entries e WHERE e.org_id = p.org_id AND e.seq > p.seq ORDER BY e.seq LIMIT $3) e
          ORDER BY p.org_id, e.seq`,
        [orgIds, orgIds.map((o) => states.get(o)!.seq), this.entriesPerOrg],
      );
    const out = new Map<string, LedgerEntryView[]>();
    for (const r of rows) {
      const list = out.get(r.org_id) ?? [];
      list.push({
        seq: Number(r.seq), type: r.type, amount: Number(r.amount), balanceAfter: Number(r.balance_after),
        occurredAt: Number(r.occurred_ms), recordedAt: Number(r.recorded_ms), bucketId: r.bucket_id, cause: r.cause,
      });
      out.set(r.org_id, list);
    }
    return out;
  }
}

async function readStates(m: EntityManager, orgIds: string[]): Promise<Map<string, NotifierState>> {
  const rows: Array<{ org_id: string; seq: string; balance: string; fired_below: string[]; allowance: string; fired_percent: number[]; exhausted_fired: boolean; armed_ms: number }> = await m.query(
    `SELECT org_id, seq, balance, fired_below, allowance, fired_percent, exhausted_fired, extract(epoch FROM exhausted_armed_at) * 1000 AS armed_ms
       FROM notifier_positions WHERE org_id = ANY($1::text[])`,
    [orgIds],
  );
  const out = new Map(orgIds.map((o) => [o, initialState()]));
  for (const r of rows) {
    out.set(r.org_id, {
      seq: Number(r.seq), balance: Number(r.balance), firedBelow: r.fired_below.map(Number), allowance: Number(r.allowance), firedPercent: r.fired_percent,
      exhaustedFired: r.exhausted_fired, exhaustedArmedAt: Number(r.armed_ms),
    });
  }
  return out;
}

/** Each org's thresholds: its own row if it has one (even empty: it opted out), else its plan's, else none. */
async function readThresholds(m: EntityManager, orgIds: string[]): Promise<Map<string, Thresholds>> {
  const rows: Array<{ org_id: string; credits_below: string[] | null; allowance_used_percent: number[] | null }> = await m.query(
    `SELECT o.id AS org_id,
            CASE WHEN a.org_id IS NOT NULL THEN a.credits_below ELSE p.credits_below END AS credits_below,
            CASE WHEN a.org_id IS NOT NULL THEN a.allowance_used_percent ELSE p.allowance_used_percent END AS allowance_used_percent
       FROM orgs o
       LEFT JOIN alert_thresholds a ON a.org_id = o.id
       LEFT JOIN plan_alert_thresholds p ON p.profile = o.profile AND p.plan = o.plan
      WHERE o.id = ANY($1::text[])`,
    [orgIds],
  );
  return new Map(rows.map((r) => [r.org_id, { creditsBelow: (r.credits_below ?? []).map(Number), allowanceUsedPercent: r.allowance_used_percent ?? [] }]));
}

/**
 * endpoint.disabled for each endpoint disabled since it was last announced: queued for the other enabled endpoints
 * of its org (or, for a global endpoint, the other global ones) that take the type, and recorded as a
 * `disable-webhook` command in the org's history (global: under '*'), in this round's transaction, so a crash
 * announces it again or not at all, never twice. Returns how many were announced.
 */
async function announceDisabled(m: EntityManager): Promise<number> {
  const rows: Array<{ id: string; org_id: string | null; url: string; failing_since: Date | null; disabled_at: Date }> = await m.query(
    `SELECT id, org_id, url, failing_since, disabled_at FROM webhook_endpoints
      WHERE disabled_at IS NOT NULL AND disabled_notified_at IS DISTINCT FROM disabled_at ORDER BY disabled_at, id
        -- A re-send holds its endpoint's row while it waits for this round's lock: that endpoint waits for the next round.
        FOR UPDATE SKIP LOCKED`,
  );
  for (const e of rows) {
    const queue = e.org_id ?? GlobalOrg;
    const data = {
      org_id: e.org_id, webhook_id: e.id, url: e.url,
      failing_since: e.failing_since?.toISOString() ?? null, disabled_at: e.disabled_at.toISOString(),
    };
    const n: Notification = {
      msgId: messageId(queue, 'endpoint.disabled', e.id, e.disabled_at.getTime()),
      type: 'endpoint.disabled', at: e.disabled_at.getTime(), sourceAt: e.disabled_at.getTime(), data,
    };
    const others: Array<{ id: string }> = await m.query(
      `SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL AND id <> $1 AND org_id IS NOT DISTINCT FROM $2 AND 'endpoint.disabled' = ANY(events) ORDER BY id`,
      [e.id, e.org_id],
    );
    for (const o of others) {
      await m.query(
        `INSERT INTO webhook_messages (endpoint_id, org_id, msg_id, event_type, payload, source_at) VALUES ($1, $2, $3, $4, $5, $6)`,
        [o.id, queue, n.msgId, n.type, messageBody(n), e.disabled_at],
      );
    }
    if (e.org_id === null) await m.query(`SELECT pg_advisory_xact_lock(hashtext('admin_commands:*'))`);
    await recordCommand(m, {
      id: newId('cmd'), orgId: queue, command: 'disable-webhook', actor: SystemActor, at: Date.now(),
      input: { webhook_id: e.id, failing_since: data.failing_since },
      idempotencyKey: null, result: { webhook_id: e.id, url: e.url, disabled_at: data.disabled_at, notified: others.map((o) => o.id) }, entrySeqs: [],
    });
    await m.query(`UPDATE webhook_endpoints SET disabled_notified_at = disabled_at WHERE id = $1`, [e.id]);
  }
  return rows.length;
}

async function readRefusals(m: EntityManager, orgIds: string[], states: Map<string, NotifierState>): Promise<Map<string, { eventId: string; occurredAt: number }>> {
  if (orgIds.length === 0) return new Map();
  const rows: Array<{ org_id: string; event_id: string; occurred_ms: string }> = await m.query(
    `SELECT p.org_id, u.event_id, (extract(epoch FROM u.occurred_at) * 1000)::int8 AS occurred_ms
       FROM unnest($1::text[], $2::float8[]) AS p(org_id, armed_ms)
      CROSS JOIN LATERAL (SELECT event_id, occurred_at FROM usage_records u
                           WHERE u.org_id = p.org_id AND u.decision = 'insufficient_credits' AND u.occurred_at > to_timestamp(p.armed_ms / 1000)
                           ORDER BY u.occurred_at LIMIT 1) u`,
    [orgIds, orgIds.map((o) => states.get(o)!.exhaustedArmedAt)],
  );
  return new Map(rows.map((r) => [r.org_id, { eventId: r.event_id, occurredAt: Number(r.occurred_ms) }]));
}

/** One message per notification per enabled endpoint of the org (or global) that takes its type, in order. */
async function enqueue(m: EntityManager, orgIds: string[], derived: Map<string, Notification[]>): Promise<void> {
  if (![...derived.values()].some((n) => n.length > 0)) return;
  const endpoints: Array<{ id: string; org_id: string | null; events: string[] }> = await m.query(
    `SELECT id, org_id, events FROM webhook_endpoints WHERE disabled_at IS NULL AND (org_id IS NULL OR org_id = ANY($1::text[])) ORDER BY id`,
    [orgIds],
  );
  const rows: Array<{ endpoint: string; org: string; n: Notification }> = [];
  for (const org of orgIds) {
    for (const n of derived.get(org) ?? []) {
      for (const e of endpoints) if ((e.org_id === null || e.org_id === org) && e.events.includes(n.type)) rows.push({ endpoint: e.id, org, n });
    }
  }
  if (rows.length === 0) return;
  await m.query(
    `INSERT INTO webhook_messages (endpoint_id, org_id, msg_id, event_type, payload, source_at)
     SELECT endpoint_id, org_id, msg_id, event_type, payload, to_timestamp(source_ms / 1000.0)
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[]) WITH ORDINALITY
         AS u(endpoint_id, org_id, msg_id, event_type, payload, source_ms, ord)
      ORDER BY ord`,
    [
      rows.map((r) => r.endpoint), rows.map((r) => r.org), rows.map((r) => r.n.msgId), rows.map((r) => r.n.type),
      rows.map((r) => messageBody(r.n)), rows.map((r) => r.n.sourceAt),
    ],
  );
}

async function saveStates(m: EntityManager, states: Map<string, NotifierState>): Promise<void> {
  const list = [...states.entries()];
  await m.query(
    `INSERT INTO notifier_positions (org_id, seq, balance, fired_below, allowance, fired_percent, exhausted_fired, exhausted_armed_at)
     SELECT org_id, seq, balance, ARRAY(SELECT jsonb_array_elements_text(fired))::bigint[], allowance, ARRAY(SELECT jsonb_array_elements_text(fired_p))::int[],
            fired_x, to_timestamp(armed_ms / 1000)
       FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::jsonb[], $5::bigint[], $6::jsonb[], $7::boolean[], $8::float8[])
         AS u(org_id, seq, balance, fired, allowance, fired_p, fired_x, armed_ms)
     ON CONFLICT (org_id) DO UPDATE SET seq = EXCLUDED.seq, balance = EXCLUDED.balance, fired_below = EXCLUDED.fired_below,
       allowance = EXCLUDED.allowance, fired_percent = EXCLUDED.fired_percent,
       exhausted_fired = EXCLUDED.exhausted_fired, exhausted_armed_at = EXCLUDED.exhausted_armed_at`,
    [
      list.map(([o]) => o), list.map(([, s]) => s.seq), list.map(([, s]) => s.balance), list.map(([, s]) => JSON.stringify(s.firedBelow)),
      list.map(([, s]) => s.allowance), list.map(([, s]) => JSON.stringify(s.firedPercent)),
      list.map(([, s]) => s.exhaustedFired), list.map(([, s]) => s.exhaustedArmedAt),
    ],
  );
}
