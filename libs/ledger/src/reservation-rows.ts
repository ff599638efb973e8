import { Allocation, HeldReservation, PendingEntityHold, reservationKey } from '@tollgate/billing';
import { EntityManager } from 'typeorm';
import { prepared, WritePart, writeAll } from './sql';

/**
 * Reservations (holds and leases) as metering reads, locks and closes them. The pricing rule of pending holds
 * (withPendingCharges) and reservationKey are billing's, re-exported here for the callers that read holds.
 */
export { reservationKey, withPendingCharges } from '@tollgate/billing';
export type { PendingEntityHold } from '@tollgate/billing';

/**
 * Held reservations of `orgIds` that hold any of `entityIds`. Callers hold the orgs' account locks, and every
 * hold is written under its org's lock, so the answer cannot change before their transaction ends.
 */
export async function pendingEntityHolds(m: EntityManager, orgIds: string[], entityIds: string[]): Promise<PendingEntityHold[]> {
  if (orgIds.length === 0 || entityIds.length === 0) return [];
  const rows: Array<{ id: string; org_id: string; entities: string[]; occurred_at: Date }> = await m.query(
    `SELECT id, org_id, entities, occurred_at FROM reservations
      WHERE status = 'held' AND org_id = ANY($1::text[]) AND entities && $2::text[]`,
    [[...new Set(orgIds)], [...new Set(entityIds)]],
  );
  return rows.map((r) => ({ id: r.id, orgId: r.org_id, entities: r.entities, occurredAt: r.occurred_at.getTime() }));
}

/** A reservation's identity: its id within its org (ids are unique per org only). */
export interface ReservationRef {
  orgId: string;
  id: string;
}

/** Held reservations (holds and leases) among `refs`, locked until the transaction ends, by `org_id/id`. */
export async function lockHeldReservations(m: EntityManager, refs: readonly ReservationRef[]): Promise<Map<string, HeldReservation & { orgId: string }>> {
  if (refs.length === 0) return new Map();
  const rows: Array<{ id: string; org_id: string; credits: string; allocation: Allocation[]; kind: 'hold' | 'lease'; spent: string; returned: string; occurred_ms: string }> =
    await m.query(
      prepared(`SELECT r.id, r.org_id, r.credits, r.allocation, r.kind, r.spent, r.returned, (extract(epoch FROM r.occurred_at) * 1000)::int8 AS occurred_ms
       FROM unnest($1::text[], $2::text[]) AS p(org_id, id)
       JOIN reservations r ON r.org_id = p.org_id AND r.id = p.id
      WHERE r.status = 'held' FOR UPDATE OF r`),
      [refs.map((r) => r.orgId), refs.map((r) => r.id)],
    );
  return new Map(
    rows.map((r) => [
      reservationKey(r.org_id, r.id),
      {
        id: r.id,
        orgId: r.org_id,
        credits: Number(r.credits),
        allocation: r.allocation,
        lease: r.kind === 'lease' ? { spent: Number(r.spent), returned: Number(r.returned), takenAt: Number(r.occurred_ms) } : null,
      },
    ]),
  );
}

/** What the events of a batch spent from each lease they drew on: its new `spent`, one row per lease. */
export function leaseSpentPart(leases: ReadonlyArray<{ orgId: string; id: string; spent: number }>): WritePart | null {
  if (leases.length === 0) return null;
  return {
    sql: `UPDATE reservations r SET spent = u.spent
       FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(org_id, id, spent)
      WHERE r.org_id = u.org_id AND r.id = u.id AND r.status = 'held' AND r.kind = 'lease'`,
    params: [leases.map((l) => l.orgId), leases.map((l) => l.id), leases.map((l) => l.spent)],
  };
}

/**
 * Reservations among `refs` that the gateway gave back (closed_by 'gateway'), as `org_id/id`: their calls were not
 * answered with data, so an event naming one is charged nothing.
 */
export async function givenBackReservations(m: EntityManager, refs: readonly ReservationRef[]): Promise<Set<string>> {
  if (refs.length === 0) return new Set();
  const rows: Array<{ id: string; org_id: string }> = await m.query(
    `SELECT r.id, r.org_id FROM unnest($1::text[], $2::text[]) AS p(org_id, id)
       JOIN reservations r ON r.org_id = p.org_id AND r.id = p.id
      WHERE r.status = 'released' AND r.closed_by = 'gateway'`,
    [refs.map((r) => r.orgId), refs.map((r) => r.id)],
  );
  return new Set(rows.map((r) => reservationKey(r.org_id, r.id)));
}

export async function closeReservations(m: EntityManager, refs: readonly ReservationRef[], status: 'settled' | 'released' | 'expired', by: string[]): Promise<void> {
  await writeAll(m, [closeReservationsPart(refs, status, by)]);
}

export function closeReservationsPart(refs: readonly ReservationRef[], status: 'settled' | 'released' | 'expired', by: string[]): WritePart | null {
  if (refs.length === 0) return null;
  return {
    sql: `UPDATE reservations r SET status = $4, closed_at = now(), closed_by = u.by
       FROM unnest($1::text[], $2::text[], $3::text[]) AS u(org_id, id, by)
      WHERE r.org_id = u.org_id AND r.id = u.id AND r.status = 'held'`,
    params: [refs.map((r) => r.orgId), refs.map((r) => r.id), by, status],
  };
}
