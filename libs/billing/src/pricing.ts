import { assertInstant } from './time';
import { PricedCall, Pricing, ReAccessWindows } from './types';

export const DayMs = 86_400_000;

/** What pricing needs to know about a finished call. */
export interface CallOutcome {
  statusCode: number;
  /** False when Tollgate answered itself (401, 402, 429, 502 ...): such calls never cost anything. */
  forwarded: boolean;
  /**
   * Entity ids the upstream returned, as the caller extracted them. Exclusions (such as the graph's queried
   * company) are the caller's job: every id given here is priced.
   */
  entities: readonly string[];
}

/**
 * What a call costs and why. Only forwarded calls the upstream answered with 2xx cost anything.
 * Per-entity routes charge 1 credit per distinct entity not charged to the org within `reaccessDays`:
 * an entity last charged at t is free while `|at - t| < reaccessDays * DayMs` and charged again from
 * exactly t + reaccessDays * DayMs on. Duplicates in one response count once.
 *
 * Calls are priced in arrival order (the order of the org's partition, which a replay from Kafka reads again),
 * and `t` is the latest `occurred_at` the org was charged at among the calls metered before. The distance is
 * taken both ways, so a late event (spooled during a broker outage, say) dated more than the window *before* a
 * charge is not free because of a charge that came after it. A late event never rewrites what an earlier one was
 * charged: the ledger is append-only and a customer's `/usage` rows keep the price they were shown.
 */
export function priceCall(pricing: Pricing, call: CallOutcome, windows: ReAccessWindows, at: number): PricedCall {
  assertInstant(at);
  if (pricing.kind === 'free') return { credits: 0, reason: 'free_route', chargedEntities: [] };
  if (!call.forwarded) return { credits: 0, reason: 'rejected', chargedEntities: [] };
  if (call.statusCode < 200 || call.statusCode > 299) return { credits: 0, reason: 'free_status', chargedEntities: [] };
  if (pricing.kind === 'fixed') {
    if (!Number.isSafeInteger(pricing.credits) || pricing.credits < 0) {
      throw new RangeError(`fixed price must be a whole number of credits, 0 or more (got ${String(pricing.credits)})`);
    }
    return { credits: pricing.credits, reason: 'charged', chargedEntities: [] };
  }

  if (!Number.isFinite(pricing.reaccessDays) || pricing.reaccessDays < 0) {
    throw new RangeError(`reaccessDays must be 0 or more (got ${String(pricing.reaccessDays)})`);
  }
  const distinct = [...new Set(call.entities)];
  if (distinct.length === 0) return { credits: 0, reason: 'no_entities', chargedEntities: [] };
  const window = pricing.reaccessDays * DayMs;
  const chargedEntities = distinct.filter((entity) => {
    const last = windows.get(entity);
    return last === undefined || Math.abs(at - last) >= window;
  });
  const reason = chargedEntities.length === distinct.length ? 'charged' : chargedEntities.length === 0 ? 'free_reaccess' : 'partly_reaccess';
  return { credits: chargedEntities.length, reason, chargedEntities };
}

/**
 * Records that the org paid for `entities` at `at`, in the caller's working set of windows. A window only moves
 * forward: an event metered late never shortens the free period a later charge started.
 */
export function applyCharges(windows: Map<string, number>, entities: readonly string[], at: number): void {
  assertInstant(at);
  for (const entity of entities) {
    const last = windows.get(entity);
    if (last === undefined || at > last) windows.set(entity, at);
  }
}

/** A held per-entity reservation: a 2xx call paying for `entities` (only those it charges), its event on the way. */
export interface PendingEntityHold {
  id: string;
  orgId: string;
  entities: string[];
  occurredAt: number;
}

/**
 * `windows` plus the entities `holds` are paying for, as if charged when their calls happened: for pricing
 * only (the holder's own settlement charges them and records the window). An entity another still-held call is
 * paying for is free to a second call, so the org pays once and never goes below zero. A copy; `windows` is
 * untouched (and returned as it is when there are no holds).
 */
export function withPendingCharges(windows: ReadonlyMap<string, number>, holds: readonly PendingEntityHold[]): ReadonlyMap<string, number> {
  if (holds.length === 0) return windows;
  const out = new Map(windows);
  for (const h of holds) applyCharges(out, h.entities, h.occurredAt);
  return out;
}
