// TEMPORARY: stands in for @tollgate/billing's evolve/foldAccount until the lead's land. Must not be handed over.
import { Account, CreditBucket, LedgerEntryDraft, PlanTerms, startOfNextMonth } from '@tollgate/billing';

export function foldAccount(orgId: string, plan: PlanTerms, entries: Iterable<LedgerEntryDraft>): Account {
  let a: Account = { orgId, plan: { ...plan }, balance: 0, debt: 0, nextSeq: 1, allowanceMonth: null, allowanceSpent: 0, grantedOneTime: [], buckets: [] };
  for (const e of entries) a = evolve(a, e);
  return a;
}

export function evolve(account: Account, e: LedgerEntryDraft): Account {
  const a: Account = { ...account, grantedOneTime: [...account.grantedOneTime], buckets: account.buckets.map((b) => ({ ...b })) };
  a.balance += e.amount;
  a.nextSeq = e.seq + 1;
  const paid = Number(e.detail.paid_debt ?? 0);
  const current = () => (a.allowanceMonth === null ? undefined : a.buckets.find((b) => b.id === `allowance:${a.allowanceMonth}`));
  const bucket = e.bucketId === null ? undefined : a.buckets.find((b) => b.id === e.bucketId);
  const fill = (b: CreditBucket, credits: number) => {
    a.debt -= paid;
    b.remaining += credits - paid;
    if (b === current()) a.allowanceSpent += paid;
  };
  if (e.type === 'reservation' || e.type === 'charge') {
    a.buckets = a.buckets.filter((b) => !(b.remaining === 0 && b.expiresAt !== null && b.expiresAt <= e.occurredAt && b.id !== e.bucketId));
  }
  switch (e.type) {
    case 'grant': {
      const id = e.bucketId ?? '';
      if (id.startsWith('allowance:')) {
        const month = id.slice('allowance:'.length);
        a.allowanceMonth = month;
        a.allowanceSpent = 0;
        const b: CreditBucket = { id, kind: 'allowance', expiresAt: startOfNextMonth(e.occurredAt), remaining: 0 };
        a.buckets.push(b);
        fill(b, e.amount);
      } else {
        a.grantedOneTime.push(id.slice('one_time:'.length));
        const b: CreditBucket = { id, kind: 'one_time', expiresAt: null, remaining: 0 };
        a.buckets.push(b);
        fill(b, e.amount);
      }
      break;
    }
    case 'top_up': {
      const exp = e.detail.expires_at;
      const b: CreditBucket = { id: e.bucketId ?? '', kind: 'top_up', expiresAt: typeof exp === 'string' ? Date.parse(exp) : null, remaining: 0 };
      a.buckets.push(b);
      fill(b, e.amount);
      break;
    }
    case 'expiry':
      if (bucket && String(e.cause).startsWith('expiry:')) a.buckets = a.buckets.filter((b) => b !== bucket);
      break;
    case 'reservation':
    case 'charge':
      if (e.bucketId === null) a.debt -= e.amount;
      else if (bucket) {
        if (bucket === current()) a.allowanceSpent -= e.amount;
        bucket.remaining += e.amount;
      }
      break;
    case 'release':
      if (bucket) {
        if (bucket === current()) a.allowanceSpent -= e.amount;
        fill(bucket, e.amount);
      }
      break;
    case 'adjustment': {
      const month = String(e.detail.month);
      let b = bucket;
      if (!b) {
        if (a.allowanceMonth !== month) {
          a.allowanceMonth = month;
          a.allowanceSpent = 0;
        }
        b = { id: e.bucketId ?? '', kind: 'allowance', expiresAt: startOfNextMonth(Date.parse(`${month}-01T00:00:00Z`)), remaining: 0 };
        a.buckets.push(b);
      }
      if (e.amount > 0) fill(b, e.amount);
      else b.remaining += e.amount;
      break;
    }
  }
  return a;
}
