import { RequestCompletedV1 } from '@tollgate/contracts';
import { HeldReservation, meterEvent, MeteredCall } from './meter-event';
import { applyCharges, PendingEntityHold, withPendingCharges } from './pricing';
import { Account, CostReason, LedgerEntryDraft, Pricing } from './types';

/**
 * Metering's write path as one pure function: a batch of request-completed events folded into the ledger.
 * The caller loads `MeterState` under the batch's locks (accounts, the holds the events name, re-access windows,
 * pending holds), calls `meterBatch`, and writes the `MeteredBatch` it returns, one statement per table: every
 * output list holds each row once by construction (an account, a window, a lease, a settled hold: once each).
 * The state is never changed: what the batch changes (accounts, windows, lease draws, settled holds) lives in
 * the function's own working copies.
 */

/** A reservation's identity as one string, `org_id/id` (ids are unique per org only). */
export function reservationKey(orgId: string, id: string): string {
  return `${orgId}/${id}`;
}

/** What metering knows before a batch, loaded under its locks. Read only. */
export interface MeterState {
  /** Each org's account and profile, by org id; an org missing here is unknown. */
  accounts: ReadonlyMap<string, { readonly account: Account; readonly profile: string }>;
  /** Held reservations (holds and leases) the events name, by `reservationKey(org, id)`. */
  reservations: ReadonlyMap<string, HeldReservation>;
  /** Reservations the events name that the gateway gave back (closed_by 'gateway'), by `reservationKey`. */
  givenBack: ReadonlySet<string>;
  /** Re-access windows of the events' (org, entity) pairs: org -> entity -> last charged at. */
  windows: ReadonlyMap<string, ReadonlyMap<string, number>>;
  /** Held per-entity reservations of these orgs paying for entities the events returned. */
  pending: readonly PendingEntityHold[];
}

/** How an event's route is priced; null when the route is not in the event's profile. */
export type RoutePricing = (event: RequestCompletedV1) => Pricing | null;

/** A usage row: what one metered call cost and why. */
export interface MeteredUsage {
  eventId: string;
  orgId: string;
  occurredAt: string;
  method: string;
  route: string;
  path: string;
  statusCode: number;
  credits: number;
  costReason: CostReason | string;
  responseTimeMs: number;
  requestId: string | null;
  decision: string;
  apiKeyId: string | null;
  entities: number;
  /** The entities the call paid for (per-entity pricing); re-access windows are rebuilt from these. */
  chargedEntities: readonly string[];
  /** The lease the call was paid from (its price is in the lease's `spent`, not in a charge entry), if any. */
  leaseId?: string | null;
}

/** What a batch writes. */
export interface MeteredBatch {
  /** Each touched org's account as it stands after the batch, once. */
  accounts: Account[];
  entries: LedgerEntryDraft[];
  /** One per metered event, in the events' order. */
  usage: MeteredUsage[];
  /** One per (org, entity) charged: its latest charge. */
  windows: Array<{ orgId: string; entityId: string; at: number }>;
  /** Holds settled by an event, once each; `by` is `event:<event_id>` (closed_by). */
  settled: Array<{ orgId: string; id: string; by: string }>;
  /** Leases the events drew on, once each, with their new `spent` (a lease stays held: the sweeper closes it). */
  leases: Array<{ orgId: string; id: string; spent: number }>;
  /** Events not metered, by their index in `events`, and why (they become dead letters). */
  refused: Array<{ index: number; reason: string }>;
  /** Credits the batch charged (the calls' prices). */
  credits: number;
}

/**
 * Meters `events` (already deduplicated: each event metered before, or twice in the batch, is the caller's to
 * drop) in their order, which is their partition's order for each org.
 * - An event of an unknown org, of another profile than its org's, or of a route its profile lacks is refused;
 *   so is one the rules refuse (a RangeError from the deciders: a bad instant, say).
 * - A hold an event names is settled once: a second event naming it finds it settled and is charged on its own.
 * - A lease is drawn on in arrival order; each draw sees what the events before it spent.
 * - An entity another still-held call (not a lease) is paying for is free here, as it was when that call's
 *   reservation priced this one: its holder's settlement charges it. A hold settled earlier in the batch no longer
 *   counts as pending. A call drawn from a lease is priced in arrival order only: its lease covers its every id.
 */
export function meterBatch(state: MeterState, events: readonly RequestCompletedV1[], routePricing: RoutePricing): MeteredBatch {
  const accounts = new Map<string, Account>();
  const windows = new Map<string, Map<string, number>>();
  const charged = new Map<string, { orgId: string; entityId: string; at: number }>();
  const settledKeys = new Set<string>();
  const leases = new Map<string, { orgId: string; id: string; spent: number }>();
  const pendingByOrg = new Map<string, PendingEntityHold[]>();
  for (const h of state.pending) pendingByOrg.set(h.orgId, [...(pendingByOrg.get(h.orgId) ?? []), h]);
  const out: MeteredBatch = { accounts: [], entries: [], usage: [], windows: [], settled: [], leases: [], refused: [], credits: 0 };

  for (const [index, event] of events.entries()) {
    const org = event.org_id;
    const locked = state.accounts.get(org);
    if (!locked) {
      out.refused.push({ index, reason: `unknown org_id "${org}"` });
      continue;
    }
    if (locked.profile !== event.profile) {
      out.refused.push({ index, reason: `profile "${event.profile}" does not match org ${org}'s profile "${locked.profile}"` });
      continue;
    }
    const pricing = routePricing(event);
    if (!pricing) {
      out.refused.push({ index, reason: `route "${event.method} ${event.route}" is not in profile "${event.profile}"` });
      continue;
    }
    const key = event.reservation_id === null ? null : reservationKey(org, event.reservation_id);
    const reservation = key === null || settledKeys.has(key) ? null : currentReservation(state.reservations.get(key), leases.get(key));
    let orgWindows = windows.get(org);
    if (!orgWindows) {
      orgWindows = new Map(state.windows.get(org) ?? []);
      windows.set(org, orgWindows);
    }
    const others = reservation?.lease
      ? []
      : (pendingByOrg.get(org) ?? []).filter((h) => h.id !== event.reservation_id && !settledKeys.has(reservationKey(h.orgId, h.id)));
    const pricingWindows = withPendingCharges(orgWindows, others);
    let metered: MeteredCall;
    try {
      // Only holds that were not held when the batch began can have been given back (see MeterState.givenBack).
      const givenBack = reservation === null && key !== null && !settledKeys.has(key) && state.givenBack.has(key);
      metered = meterEvent(accounts.get(org) ?? locked.account, event, pricing, pricingWindows, reservation, givenBack);
    } catch (e) {
      out.refused.push({ index, reason: `cannot be metered: ${(e as Error).message}` });
      continue;
    }
    const at = Date.parse(event.occurred_at);
    applyCharges(orgWindows, metered.priced.chargedEntities, at);
    accounts.set(org, metered.account);
    out.entries.push(...metered.entries);
    if (reservation?.lease) {
      if (metered.fromLease > 0) leases.set(key!, { orgId: org, id: reservation.id, spent: reservation.lease.spent + metered.fromLease });
    } else if (reservation) {
      settledKeys.add(key!);
      out.settled.push({ orgId: org, id: reservation.id, by: `event:${event.event_id}` });
    }
    for (const entityId of metered.priced.chargedEntities) {
      const k = `${org}\u0000${entityId}`;
      if ((charged.get(k)?.at ?? -Infinity) < at) charged.set(k, { orgId: org, entityId, at });
    }
    out.credits += metered.priced.credits;
    out.usage.push({
      eventId: event.event_id,
      orgId: org,
      occurredAt: event.occurred_at,
      method: event.method,
      route: event.route,
      path: event.path,
      statusCode: event.status_code,
      credits: metered.priced.credits,
      costReason: metered.reason,
      responseTimeMs: event.response_time_ms,
      requestId: event.request_id ?? null,
      decision: event.decision ?? 'forwarded',
      apiKeyId: event.api_key_id,
      entities: event.entities.length,
      chargedEntities: metered.priced.chargedEntities,
      leaseId: metered.fromLease > 0 ? reservation!.id : null,
    });
  }
  out.accounts = [...accounts.values()];
  out.windows = [...charged.values()];
  out.leases = [...leases.values()];
  return out;
}

/** A held reservation as the batch has left it so far: a lease with what earlier events of the batch drew on it. */
function currentReservation(held: HeldReservation | undefined, drawn: { spent: number } | undefined): HeldReservation | null {
  if (!held) return null;
  if (!held.lease || !drawn) return held;
  return { ...held, lease: { ...held.lease, spent: drawn.spent } };
}
