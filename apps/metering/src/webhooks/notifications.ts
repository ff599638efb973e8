import { createHash } from 'node:crypto';

/**
 * The notifications an org's ledger implies (SPEC §8), decided from its entries in `seq` order and a small state
 * (where the reading stands). Pure: the notifier (notifier.ts) reads entries and writes messages around it, and a
 * replay of the same entries from the same state derives the same notifications with the same ids.
 *
 * Rules (the spec is silent on the details):
 * - credits.low: an entry takes the balance from at or above a credits_below threshold N to below it (N is
 *   "below N"). Once per crossing: N is then spent until an entry that adds credits (grant, top_up, a positive
 *   adjustment) leaves the balance at or above N. A hold given back (release) does not re-arm it, or every paid
 *   call near the threshold (hold, release, charge) would notify again.
 *   An allowance_used_percent threshold P is the same rule for N = (100 - P)% of the month's allowance (the amount
 *   of the org's latest allowance grant, read from the ledger): "P% of the allowance used" is "the balance fell
 *   below what is left of it". An org with no allowance grant yet has no such N.
 * - endpoint.disabled: not derived from the ledger; see notifier.ts.
 * - allowance.reset: a grant of the monthly allowance (bucket `allowance:<month>`).
 * - credits.granted: any other grant (one-time plan credits) and every top_up (operator grant).
 * - credits.expired: an expiry entry (the unspent credits of an expired bucket).
 * - credits.exhausted: the first call refused for want of credits (usage log, decision insufficient_credits) that
 *   happened after the org was last armed; armed again by an entry that adds credits.
 */

export const EventTypes = ['credits.low', 'credits.exhausted', 'credits.granted', 'credits.expired', 'allowance.reset', 'endpoint.disabled'] as const;
export type EventType = (typeof EventTypes)[number];

export interface NotifierState {
  /** The last entry read (0: none). */
  seq: number;
  /** The balance after it. */
  balance: number;
  /** credits_below thresholds that fired and are not re-armed. */
  firedBelow: number[];
  /** The amount of the latest monthly allowance grant (0: none yet). */
  allowance: number;
  /** allowance_used_percent thresholds that fired and are not re-armed. */
  firedPercent: number[];
  exhaustedFired: boolean;
  /** Refusals that happened after this instant (epoch ms) can fire credits.exhausted. */
  exhaustedArmedAt: number;
}

export interface LedgerEntryView {
  seq: number;
  type: string;
  amount: number;
  balanceAfter: number;
  occurredAt: number;
  bucketId: string | null;
  cause: string;
  /** When metering recorded it (epoch ms): the start of the entry-to-webhook lag. */
  recordedAt: number;
}

export interface Notification {
  /** The webhook-id: the same for every endpoint and attempt, and for a re-derivation of the same entry. */
  msgId: string;
  type: EventType;
  /** The instant of what happened (epoch ms): the body's `timestamp`. */
  at: number;
  /** When metering recorded what it derives from (epoch ms). */
  sourceAt: number;
  data: Record<string, unknown>;
}

export function initialState(): NotifierState {
  return { seq: 0, balance: 0, firedBelow: [], allowance: 0, firedPercent: [], exhaustedFired: false, exhaustedArmedAt: -Infinity };
}

export function messageId(orgId: string, ...parts: Array<string | number>): string {
  return `msg_${createHash('sha256').update([orgId, ...parts].join('\u0000')).digest('hex').slice(0, 26)}`;
}

function addsCredits(e: LedgerEntryView): boolean {
  return e.type === 'grant' || e.type === 'top_up' || (e.type === 'adjustment' && e.amount > 0);
}

/** An org's thresholds: its own if it set any, else its plan's (SPEC §8, `PUT /admin/orgs/:org/alerts`). */
export interface Thresholds {
  creditsBelow: readonly number[];
  allowanceUsedPercent: readonly number[];
}

export const NoThresholds: Thresholds = { creditsBelow: [], allowanceUsedPercent: [] };

/**
 * One threshold as a balance level: `below` N credits (absolute), or P% of `allowance` used, i.e. below
 * allowance * (100 - P) / 100. Compared in hundredths so no fraction is rounded.
 */
interface Level {
  kind: 'credits_below' | 'allowance_used_percent';
  key: number;
  /** The level in hundredths of a credit. */
  hundredths: number;
}

function levels(t: Thresholds, allowance: number): Level[] {
  const out: Level[] = t.creditsBelow.map((n) => ({ kind: 'credits_below' as const, key: n, hundredths: n * 100 }));
  if (allowance > 0) for (const p of t.allowanceUsedPercent) out.push({ kind: 'allowance_used_percent', key: p, hundredths: allowance * (100 - p) });
  // The highest level first: one entry crossing several gives their notifications in the order the balance fell.
  return out.sort((a, b) => b.hundredths - a.hundredths || (a.kind < b.kind ? -1 : 1));
}

/** The notifications of `entries` (consecutive, in seq order, after `state.seq`) and the state after them. */
export function deriveFromEntries(
  orgId: string,
  state: NotifierState,
  entries: readonly LedgerEntryView[],
  thresholds: Thresholds,
): { notifications: Notification[]; state: NotifierState } {
  const out: Notification[] = [];
  let balance = state.balance;
  let allowance = state.allowance;
  const fired = { credits_below: new Set(state.firedBelow), allowance_used_percent: new Set(state.firedPercent) };
  let exhaustedFired = state.exhaustedFired;
  let exhaustedArmedAt = state.exhaustedArmedAt;
  let seq = state.seq;
  for (const e of entries) {
    const base = { org_id: orgId, seq: e.seq, balance: e.balanceAfter };
    if (e.type === 'grant' && e.bucketId?.startsWith('allowance:')) {
      allowance = e.amount;
      out.push({ msgId: messageId(orgId, e.seq, 'allowance.reset'), type: 'allowance.reset', at: e.occurredAt, sourceAt: e.recordedAt, data: { ...base, amount: e.amount, month: e.bucketId.slice('allowance:'.length) } });
    } else if (e.type === 'grant' || e.type === 'top_up') {
      out.push({ msgId: messageId(orgId, e.seq, 'credits.granted'), type: 'credits.granted', at: e.occurredAt, sourceAt: e.recordedAt, data: { ...base, amount: e.amount, bucket_id: e.bucketId, cause: e.cause } });
    } else if (e.type === 'expiry') {
      out.push({ msgId: messageId(orgId, e.seq, 'credits.expired'), type: 'credits.expired', at: e.occurredAt, sourceAt: e.recordedAt, data: { ...base, amount: -e.amount, bucket_id: e.bucketId } });
    }
    for (const l of levels(thresholds, allowance)) {
      const spent = fired[l.kind];
      if (balance * 100 >= l.hundredths && e.balanceAfter * 100 < l.hundredths && !spent.has(l.key)) {
        spent.add(l.key);
        const data = l.kind === 'credits_below'
          ? { ...base, threshold: l.key }
          : { ...base, threshold: l.hundredths / 100, allowance_used_percent: l.key, allowance };
        const part = l.kind === 'credits_below' ? l.key : `${l.key}%`;
        out.push({ msgId: messageId(orgId, e.seq, 'credits.low', part), type: 'credits.low', at: e.occurredAt, sourceAt: e.recordedAt, data });
      } else if (spent.has(l.key) && e.balanceAfter * 100 >= l.hundredths && addsCredits(e)) {
        spent.delete(l.key);
      }
    }
    if (addsCredits(e)) {
      exhaustedFired = false;
      exhaustedArmedAt = Math.max(exhaustedArmedAt, e.occurredAt);
    }
    balance = e.balanceAfter;
    seq = e.seq;
  }
  const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return {
    notifications: out,
    state: { seq, balance, firedBelow: sorted(fired.credits_below), allowance, firedPercent: sorted(fired.allowance_used_percent), exhaustedFired, exhaustedArmedAt },
  };
}

/** credits.exhausted for a refusal (if armed), and the state after it. */
export function deriveFromRefusal(
  orgId: string,
  state: NotifierState,
  refusal: { eventId: string; occurredAt: number },
): { notifications: Notification[]; state: NotifierState } {
  if (state.exhaustedFired || refusal.occurredAt <= state.exhaustedArmedAt) return { notifications: [], state };
  return {
    notifications: [
      {
        msgId: messageId(orgId, 'exhausted', refusal.eventId),
        type: 'credits.exhausted',
        at: refusal.occurredAt,
        sourceAt: refusal.occurredAt,
        data: { org_id: orgId, balance: state.balance, event_id: refusal.eventId },
      },
    ],
    state: { ...state, exhaustedFired: true },
  };
}

/** The body every endpoint receives: `{"type","timestamp","data":{"org_id",…}}`. */
export function messageBody(n: Notification): string {
  return JSON.stringify({ type: n.type, timestamp: new Date(n.at).toISOString(), data: n.data });
}
