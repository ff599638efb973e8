import type { AccountRow } from '@tollgate/ledger';

/** One round trip on the audit's connection (its snapshot): rows as `pg` returns them (bigint as string). */
export type Sql = <T = Record<string, unknown>>(query: string, params?: unknown[]) => Promise<T[]>;

export type { AccountRow };

/** A batch of orgs audited together, with their accounts rows (absent when an org has none). */
export interface OrgBatch {
  orgs: string[];
  accounts: Map<string, AccountRow>;
}
