/** A ledger entry as the admin API shows it (GET .../ledger and the console's entries), from its row. */
export interface LedgerEntryRow {
  seq: string;
  type: unknown;
  amount: string;
  balance_after: string;
  cause: unknown;
  occurred_at: Date;
  recorded_at: Date;
  bucket_id: unknown;
  detail: unknown;
}

export function ledgerEntryView(r: LedgerEntryRow) {
  return {
    seq: Number(r.seq),
    type: r.type,
    amount: Number(r.amount),
    balance_after: Number(r.balance_after),
    cause: r.cause,
    occurred_at: r.occurred_at.toISOString(),
    recorded_at: r.recorded_at.toISOString(),
    bucket_id: r.bucket_id,
    detail: r.detail,
  };
}
