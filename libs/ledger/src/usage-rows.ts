import { MeteredUsage } from '@tollgate/billing';
import { EntityManager } from 'typeorm';
import { sqlState } from '@tollgate/persistence';
import { prepared, WritePart, writeAll } from './sql';

/** Usage rows, their per-org counts, the event-id probe, and re-access windows. */

/** A usage row as metering writes it (billing's MeteredUsage). */
export type UsageRow = MeteredUsage;

export async function insertUsage(m: EntityManager, rows: UsageRow[]): Promise<void> {
  await writeAll(m, [usagePart(rows)]);
}

export function usagePart(rows: UsageRow[]): WritePart | null {
  if (rows.length === 0) return null;
  return {
    // A jagged text[][] can't go through unnest, so each row's charged entities travel as a jsonb array.
    sql: `INSERT INTO usage_records (event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason,
                                response_time_ms, request_id, decision, api_key_id, entities, charged_entities, lease_id)
     SELECT u.event_id, u.org_id, u.occurred_at, u.method, u.route, u.path, u.status_code, u.credits, u.cost_reason,
            u.response_time_ms, u.request_id, u.decision, u.api_key_id, u.entities,
            CASE WHEN u.charged = '[]'::jsonb THEN '{}'::text[] ELSE ARRAY(SELECT jsonb_array_elements_text(u.charged)) END, u.lease_id
       FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::int[], $8::bigint[],
                   $9::text[], $10::float8[], $11::text[], $12::text[], $13::text[], $14::int[], $15::jsonb[], $16::text[])
         AS u(event_id, org_id, occurred_at, method, route, path, status_code, credits, cost_reason, response_time_ms,
              request_id, decision, api_key_id, entities, charged, lease_id)`,
    params: [
      rows.map((r) => r.eventId),
      rows.map((r) => r.orgId),
      rows.map((r) => r.occurredAt),
      rows.map((r) => r.method),
      rows.map((r) => r.route),
      rows.map((r) => r.path),
      rows.map((r) => r.statusCode),
      rows.map((r) => r.credits),
      rows.map((r) => r.costReason),
      rows.map((r) => r.responseTimeMs),
      rows.map((r) => r.requestId),
      rows.map((r) => r.decision),
      rows.map((r) => r.apiKeyId),
      rows.map((r) => r.entities),
      rows.map((r) => JSON.stringify(r.chargedEntities)),
      rows.map((r) => r.leaseId ?? null),
    ],
  };
}

/** Bumps the exact per-org usage counts by the rows just inserted. */
export async function countUsage(m: EntityManager, rows: UsageRow[]): Promise<void> {
  await writeAll(m, [usageCountPart(rows)]);
}

export function usageCountPart(rows: UsageRow[]): WritePart | null {
  if (rows.length === 0) return null;
  const perOrg = new Map<string, number>();
  for (const r of rows) perOrg.set(r.orgId, (perOrg.get(r.orgId) ?? 0) + 1);
  return {
    sql: `INSERT INTO usage_totals (org_id, total) SELECT * FROM unnest($1::text[], $2::bigint[])
     ON CONFLICT (org_id) DO UPDATE SET total = usage_totals.total + EXCLUDED.total`,
    params: [[...perOrg.keys()], [...perOrg.values()]],
  };
}

/**
 * The events of the batch that were metered before (redelivery, replay, a restart after the DB commit), as
 * `org_id/event_id`: an event is identified within its org, so the same id from another org is another event.
 * One probe of the (org_id, event_id) unique index per event.
 */
export async function alreadyMetered(m: EntityManager, events: ReadonlyArray<{ orgId: string; eventId: string }>): Promise<Set<string>> {
  if (events.length === 0) return new Set();
  // LATERAL ... LIMIT 1 keeps it a probe per event: as a plain join, a big batch was planned as a hash join over a
  // sequential scan of all of usage_records, whose cost grew with the table.
  const rows: Array<{ org_id: string; event_id: string }> = await m.query(
    prepared(`SELECT p.org_id, p.event_id FROM unnest($1::text[], $2::text[]) AS p(org_id, event_id)
       CROSS JOIN LATERAL (SELECT 1 FROM usage_records u WHERE u.org_id = p.org_id AND u.event_id = p.event_id LIMIT 1) hit`),
    [events.map((e) => e.orgId), events.map((e) => e.eventId)],
  );
  return new Set(rows.map((r) => eventKey(r.org_id, r.event_id)));
}

/**
 * Did a write fail because one of its usage rows was there already (the unique `usage_records (org_id, event_id)`)?
 * Metering writes without probing first (see RequestCompletedConsumer.fold): this is how it learns that a batch
 * held an event metered before, and meters the batch again with the probe.
 */
export function duplicateEvent(e: unknown): boolean {
  if (sqlState(e) !== '23505') return false;
  const constraint = (e as { constraint?: unknown }).constraint ?? (e as { driverError?: { constraint?: unknown } }).driverError?.constraint;
  return constraint === 'usage_records_org_event';
}

/** An event's identity: its id within its org. */
export function eventKey(orgId: string, eventId: string): string {
  return `${orgId}/${eventId}`;
}

/** Re-access windows for the (org, entity) pairs of a batch, per org. */
export async function loadWindows(m: EntityManager, orgIds: string[], entityIds: string[]): Promise<Map<string, Map<string, number>>> {
  const out = new Map<string, Map<string, number>>();
  if (orgIds.length === 0) return out;
  const rows: Array<{ org_id: string; entity_id: string; last_charged_at: Date }> = await m.query(
    `SELECT w.org_id, w.entity_id, w.last_charged_at
       FROM reaccess_windows w JOIN unnest($1::text[], $2::text[]) AS p(org_id, entity_id)
         ON w.org_id = p.org_id AND w.entity_id = p.entity_id`,
    [orgIds, entityIds],
  );
  for (const r of rows) {
    const m2 = out.get(r.org_id) ?? new Map<string, number>();
    m2.set(r.entity_id, r.last_charged_at.getTime());
    out.set(r.org_id, m2);
  }
  return out;
}

export async function saveWindows(m: EntityManager, rows: Array<{ orgId: string; entityId: string; at: number }>): Promise<void> {
  await writeAll(m, [windowsPart(rows)]);
}

export function windowsPart(charged: Array<{ orgId: string; entityId: string; at: number }>): WritePart | null {
  if (charged.length === 0) return null;
  // One row per (org, entity), its latest charge: an upsert can't touch a row twice in one statement, and one
  // transaction may charge an entity twice (its window ran out between two events, or its org's events came on
  // two partitions of one group commit).
  const latest = new Map<string, { orgId: string; entityId: string; at: number }>();
  for (const c of charged) {
    const key = `${c.orgId}\u0000${c.entityId}`;
    if ((latest.get(key)?.at ?? -Infinity) < c.at) latest.set(key, c);
  }
  const rows = [...latest.values()];
  return {
    sql: `INSERT INTO reaccess_windows (org_id, entity_id, last_charged_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
     ON CONFLICT (org_id, entity_id) DO UPDATE SET last_charged_at = GREATEST(reaccess_windows.last_charged_at, EXCLUDED.last_charged_at)`,
    params: [rows.map((r) => r.orgId), rows.map((r) => r.entityId), rows.map((r) => new Date(r.at).toISOString())],
  };
}

