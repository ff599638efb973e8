import { OrgBatch, Sql } from './sql';
import { Violation } from './violation';

/**
 * Checks `sequence` and `balance` in one pass over the batch's ledger (the primary key's order): each entry is
 * compared with the one before it, so a gap or a forged amount is reported once, where it is, not at every
 * later entry. The pass returns only the broken entries and each org's last one (its seq and running sum),
 * which are then compared with the accounts row.
 */
export async function checkChain(sql: Sql, batch: OrgBatch): Promise<Violation[]> {
  const rows = await sql<{
    org_id: string;
    seq: string;
    prev_seq: string | null;
    amount: string;
    balance_after: string;
    prev_balance: string | null;
    running: string;
    last: boolean;
  }>(
    `SELECT * FROM (
       SELECT org_id, seq, amount, balance_after,
              lag(seq) OVER w AS prev_seq, lag(balance_after) OVER w AS prev_balance,
              sum(amount) OVER w AS running, lead(seq) OVER w IS NULL AS last
         FROM ledger_entries WHERE org_id = ANY($1::text[])
       WINDOW w AS (PARTITION BY org_id ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) e
      WHERE last OR seq <> COALESCE(prev_seq, 0) + 1 OR balance_after <> COALESCE(prev_balance, 0) + amount`,
    [batch.orgs],
  );
  const out: Violation[] = [];
  const lastOf = new Map<string, { seq: bigint; running: bigint }>();
  for (const r of rows) {
    const expectedSeq = BigInt(r.prev_seq ?? 0) + 1n;
    if (BigInt(r.seq) !== expectedSeq) {
      out.push({
        check: 'sequence',
        org: r.org_id,
        subject: r.prev_seq === null ? 'first entry' : `entry after seq ${r.prev_seq}`,
        expected: `seq ${expectedSeq}`,
        found: BigInt(r.seq) < expectedSeq ? `seq ${r.seq} (duplicate or out of order)` : `seq ${r.seq} (gap of ${BigInt(r.seq) - expectedSeq})`,
      });
    }
    const expectedBalance = BigInt(r.prev_balance ?? 0) + BigInt(r.amount);
    if (BigInt(r.balance_after) !== expectedBalance) {
      out.push({
        check: 'balance',
        org: r.org_id,
        subject: `balance_after at seq ${r.seq} (amount ${r.amount})`,
        expected: String(expectedBalance),
        found: r.balance_after,
      });
    }
    if (r.last) lastOf.set(r.org_id, { seq: BigInt(r.seq), running: BigInt(r.running) });
  }
  for (const org of batch.orgs) {
    const a = batch.accounts.get(org);
    const last = lastOf.get(org) ?? { seq: 0n, running: 0n };
    if (!a) {
      // Every org gets its account in the transaction that creates it (AdminService.createOrg).
      out.push({ check: 'balance', org, subject: 'accounts row', expected: `present (sum of entries ${last.running}, last seq ${last.seq})`, found: 'missing' });
      continue;
    }
    if (BigInt(a.next_seq) !== last.seq + 1n) {
      out.push({ check: 'sequence', org, subject: 'accounts.next_seq', expected: `${last.seq + 1n} (last seq + 1)`, found: a.next_seq });
    }
    if (BigInt(a.balance) !== last.running) {
      out.push({ check: 'balance', org, subject: 'accounts.balance', expected: `${last.running} (sum of entries)`, found: a.balance });
    }
  }
  return out;
}
