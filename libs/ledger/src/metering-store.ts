import { MeteredBatch, MeterState, reservationKey } from '@tollgate/billing';
import { RequestCompletedV1 } from '@tollgate/contracts';
import { EntityManager } from 'typeorm';
import { accountsPart, entriesParts, loadAccounts } from './account-rows';
import { closeReservationsPart, givenBackReservations, leaseSpentPart, lockHeldReservations, pendingEntityHolds, ReservationRef } from './reservation-rows';
import { WritePart } from './sql';
import { loadWindows, usageCountPart, usagePart, windowsPart } from './usage-rows';

/**
 * The store around billing's meterBatch: `loadMeterState` reads (and locks) what a batch of events needs, and
 * `meteredBatchParts` writes what meterBatch returned, one statement per table (parts of one composed write).
 */

/**
 * Locks the events' accounts (org order) and the holds they name, and reads what pricing them needs. Round trips:
 * one for the accounts, and only when the events need them one each for the named holds, the holds given back,
 * the windows and the pending holds.
 */
export async function loadMeterState(m: EntityManager, events: readonly RequestCompletedV1[]): Promise<MeterState> {
  const orgIds = [...new Set(events.map((e) => e.org_id))];
  const { accounts } = await loadAccounts(m, orgIds, 'lock');
  // A reservation is named by the event's org and its id: an event settles only a hold of its own org.
  const named: ReservationRef[] = events.flatMap((e) => (e.reservation_id === null ? [] : [{ orgId: e.org_id, id: e.reservation_id }]));
  const reservations = await lockHeldReservations(m, named);
  // Holds named by an event but no longer held: only those the gateway gave back matter (see meterEvent).
  const givenBack = await givenBackReservations(m, named.filter((r) => !reservations.has(reservationKey(r.orgId, r.id))));
  const pairs = events.flatMap((e) => e.entities.map((entity) => [e.org_id, entity] as const));
  const windows = await loadWindows(m, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
  // Holds of other calls that are paying for entities these events returned (see ReservationService.reserve).
  const pending = await pendingEntityHolds(m, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
  return { accounts, reservations, givenBack, windows, pending };
}

/**
 * The writes of a metered batch, for the caller to send as one statement with its offsets and dead letters. Each
 * list of the batch holds a row once (meterBatch builds them so), as one statement can't touch a row twice.
 */
export function meteredBatchParts(batch: MeteredBatch): Array<WritePart | null> {
  return [
    ...entriesParts(batch.entries),
    accountsPart(batch.accounts),
    usagePart(batch.usage),
    usageCountPart(batch.usage),
    windowsPart(batch.windows),
    // closed_by `event:<event_id>`: a hold settled at its price has no entry naming the event, so this is how the
    // ledger's reader (npm run audit) pairs the call with the hold that paid for it.
    closeReservationsPart(batch.settled, 'settled', batch.settled.map((s) => s.by)),
    leaseSpentPart(batch.leases),
  ];
}
