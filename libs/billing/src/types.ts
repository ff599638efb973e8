/**
 * The billing domain's vocabulary. Pure data: no framework, ORM or broker types. Time is always an input
 * (epoch milliseconds), never read from a clock inside the domain.
 */

/** The credit terms of a plan, as the domain sees them (from the profile's `plans`). */
export interface PlanTerms {
  name: string;
  oneTimeCredits: number;
  monthlyAllowance: number;
}

export type BucketKind = 'allowance' | 'one_time' | 'top_up';

/** A pot of credits with its own expiry. Spending takes from the soonest-expiring live bucket first. */
export interface CreditBucket {
  id: string;
  kind: BucketKind;
  /** Epoch ms at which the bucket's unspent credits expire; null = never. */
  expiresAt: number | null;
  remaining: number;
}

/** Credits held by one reservation, bucket by bucket, so settlement can give back exactly these. */
export interface Allocation {
  bucketId: string;
  credits: number;
}

/** One org's credit projection: what the ledger sums to, kept in one row (plus its buckets). */
export interface Account {
  orgId: string;
  plan: PlanTerms;
  /** Spendable balance = sum of all ledger entries = sum(bucket.remaining) - debt. */
  balance: number;
  /** Credits charged with nothing left to take them from (events without a reservation). Paid off by later grants. */
  debt: number;
  /** Sequence number the next ledger entry gets (gapless per org, starting at 1). */
  nextSeq: number;
  /** Month of the allowance currently granted, `YYYY-MM` in UTC; null when none was ever granted. */
  allowanceMonth: string | null;
  /** Credits spent from allowance in `allowanceMonth` (for plan changes mid-month). */
  allowanceSpent: number;
  /** Names of plans whose one-time credits were already granted: re-entering a plan never grants them twice. */
  grantedOneTime: string[];
  buckets: CreditBucket[];
}

export type LedgerEntryType =
  | 'grant' // plan credits: one-time or monthly allowance
  | 'expiry' // unspent credits of an expired bucket
  | 'reservation' // a hold taken before the gateway answered
  | 'lease' // a block of credits a gateway holds and spends call by call (see `lease`)
  | 'release' // a hold given back (settled, timed out, or cancelled)
  | 'charge' // credits spent by a call
  | 'top_up' // credits bought or granted by an operator
  | 'adjustment'; // plan change corrections

/**
 * A ledger entry before it is stored. `seq` and `balanceAfter` are assigned by the decider so that
 * `balanceAfter` = previous balance + amount, always.
 */
export interface LedgerEntryDraft {
  orgId: string;
  seq: number;
  type: LedgerEntryType;
  /** Signed credits: negative spends, positive gives. */
  amount: number;
  balanceAfter: number;
  /** What caused it: `event:<event_id>`, `reservation:<id>`, `admin:<command id>`, `reset:<YYYY-MM>`. */
  cause: string;
  occurredAt: number;
  bucketId: string | null;
  /** Small structured detail (reservation id, entity ids, plan names). */
  detail: Record<string, unknown>;
}

/** Result of a decider: the entries to append and the account after them. Never mutates the input. */
export interface Decided {
  account: Account;
  entries: LedgerEntryDraft[];
}

/** How a route is priced (mirrors the profile's cost rule, in domain terms). */
export type Pricing =
  | { kind: 'free' }
  | { kind: 'fixed'; credits: number }
  | { kind: 'per_entity'; reaccessDays: number };

/** Why a call cost what it cost: shown on each usage row. */
export type CostReason =
  | 'charged'
  | 'free_route'
  | 'free_status' // upstream answered non-2xx
  | 'free_reaccess' // every entity was inside its re-access window
  | 'partly_reaccess' // some entities were free, some charged
  | 'no_entities'
  | 'rate_limited'
  | 'insufficient_credits'
  | 'given_back' // a 2xx whose hold the gateway gave back: its answer never went out (event not recorded, client gone)
  | 'rejected'; // any other decision Tollgate took before the upstream (401 lockout, 502 ...)

export interface PricedCall {
  credits: number;
  reason: CostReason;
  /** Entities this call pays for (per-entity pricing), deduplicated, in first-seen order. */
  chargedEntities: string[];
}

/** Last time an org was charged for an entity; an entity charged within `reaccessDays` before is free. */
export type ReAccessWindows = ReadonlyMap<string, number>;
