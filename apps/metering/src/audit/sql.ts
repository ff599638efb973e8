import { PlanTerms } from '@tollgate/billing';

/** One round trip on the audit's connection (its snapshot): rows as `pg` returns them (bigint as string). */
export type Sql = <T = Record<string, unknown>>(query: string, params?: unknown[]) => Promise<T[]>;

/** The accounts row of an org as stored, bigint columns still strings. */
export interface AccountRow {
  org_id: string;
  plan: PlanTerms;
  balance: string;
  debt: string;
  next_seq: string;
  allowance_month: string | null;
  allowance_spent: string;
  granted_one_time: string[];
  buckets: Array<{ id: string; kind: string; expiresAt: number | null; remaining: number }>;
}

/** A batch of orgs audited together, with their accounts rows (absent when an org has none). */
export interface OrgBatch {
  orgs: string[];
  accounts: Map<string, AccountRow>;
}
