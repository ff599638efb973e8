import { Account, CreditBucket } from '@tollgate/billing';

/** One field of one org that the live projection and the ledger's fold disagree on. */
export interface Difference {
  orgId: string;
  field: string;
  live: string;
  replayed: string;
}

/** The report's line for a difference: `org<TAB>field<TAB>live=…<TAB>replayed=…`. */
export function formatDifference(d: Difference): string {
  return `${d.orgId}\t${d.field}\tlive=${d.live}\treplayed=${d.replayed}`;
}

const instant = (ms: number | null): string => (ms === null ? 'never' : new Date(ms).toISOString());
const bucketText = (b: CreditBucket): string => `${b.kind}/${instant(b.expiresAt)}/${b.remaining}`;

/**
 * Field by field: the account the live row holds against the one the ledger folds to. `live` null: the ledger
 * has entries but no account row. Buckets are matched by id (their order in the row means nothing: spending
 * sorts them); a bucket on one side only is reported as missing or extra with its kind/expiry/remaining.
 */
export function diffAccount(live: Account | null, replayed: Account): Difference[] {
  const orgId = replayed.orgId;
  if (!live) return [{ orgId, field: 'account', live: 'missing', replayed: `${replayed.nextSeq - 1} entries, balance ${replayed.balance}` }];
  const out: Difference[] = [];
  const field = (name: string, l: string | number | null, r: string | number | null) => {
    if (l !== r) out.push({ orgId, field: name, live: String(l ?? 'none'), replayed: String(r ?? 'none') });
  };
  field('balance', live.balance, replayed.balance);
  field('debt', live.debt, replayed.debt);
  field('next_seq', live.nextSeq, replayed.nextSeq);
  field('allowance_month', live.allowanceMonth, replayed.allowanceMonth);
  field('allowance_spent', live.allowanceSpent, replayed.allowanceSpent);
  field('granted_one_time', [...live.grantedOneTime].sort().join(',') || 'none', [...replayed.grantedOneTime].sort().join(',') || 'none');
  const liveBuckets = new Map(live.buckets.map((b) => [b.id, b]));
  const replayedBuckets = new Map(replayed.buckets.map((b) => [b.id, b]));
  for (const id of [...new Set([...liveBuckets.keys(), ...replayedBuckets.keys()])].sort()) {
    const l = liveBuckets.get(id);
    const r = replayedBuckets.get(id);
    if (!l || !r) {
      out.push({ orgId, field: `bucket ${id}`, live: l ? bucketText(l) : 'missing', replayed: r ? bucketText(r) : 'missing' });
      continue;
    }
    field(`bucket ${id} kind`, l.kind, r.kind);
    field(`bucket ${id} expires_at`, instant(l.expiresAt), instant(r.expiresAt));
    field(`bucket ${id} remaining`, l.remaining, r.remaining);
  }
  return out;
}
