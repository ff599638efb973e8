/**
 * What `npm run audit` checks, by name, and what it reports when a check fails. Each check is one invariant
 * family; the names are the report's first column and what `--check` takes.
 */
export const CheckNames = [
  'sequence',
  'balance',
  'projection',
  'stale-holds',
  'hold-entries',
  'leases',
  'charges',
  'offsets',
  'append-only',
  'usage',
] as const;

export type CheckName = (typeof CheckNames)[number];

export const CheckDescriptions: Record<CheckName, string> = {
  sequence: 'per-org seq is gapless from 1 (no gap, no duplicate) and accounts.next_seq = last seq + 1',
  balance: 'each balance_after = previous balance_after + amount, and accounts.balance = sum of the org\'s entries',
  projection: 'the accounts row (balance, debt, next_seq, allowance month and spent, one-time grants, buckets by id: kind, expiry, remaining) equals foldAccount of the ledger',
  'stale-holds': 'no reservation still held more than the grace after its expires_at',
  'hold-entries': 'a hold\'s reservation entries sum to -credits; its releases to 0 while held, to +credits once released or expired',
  leases: "a lease's lease entries sum to -credits, the usage rows paid from it to its spent, its releases to what it returned (and, once closed, the rest it held)",
  charges: 'every usage row with credits has its charge in the ledger (charge entries caused by its event, or a hold settled at that cost), and every charge its usage row',
  offsets: 'consumed offsets are accounted for (see the header for what the schema lets the audit prove)',
  'append-only': 'ledger_entries refuses UPDATE, DELETE and TRUNCATE (probed in a transaction that is rolled back; triggers present and enabled)',
  usage: 'usage_totals.total = count of usage rows per org; each re-access window is at the latest call that charged its entity (usage_records.charged_entities), and every charged entity has one',
};

export function isCheckName(s: string): s is CheckName {
  return (CheckNames as readonly string[]).includes(s);
}

/** One broken invariant: which check, which org (null for a database-wide check), what, expected and found. */
export interface Violation {
  check: CheckName;
  org: string | null;
  /** What was looked at: `seq 12`, `bucket allowance:2026-01`, `reservation <id>`, `partition 3`... */
  subject: string;
  expected: string;
  found: string;
}

/** What a check could not look at, and why (it is not a violation, and the report says so). */
export interface Skipped {
  check: CheckName;
  reason: string;
}
