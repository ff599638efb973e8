import { createHash } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { sqlState } from '@tollgate/persistence';

const preparedNames = new Map<string, string>();

/**
 * A hot statement as a named prepared statement: PostgreSQL parses and plans it once per connection instead of on
 * every batch (the composed write's parse and plan were half its server time). The name is a digest of the text,
 * so one name never stands for two statements. TypeORM hands the object to `pg` as it is.
 */
export function prepared(text: string): string {
  let name = preparedNames.get(text);
  if (!name) {
    name = `tg_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (preparedNames.size < 1000) preparedNames.set(text, name);
  }
  // toString: TypeORM's error logging prints the statement's text, not [object Object].
  return { name, text, toString: () => text } as unknown as string;
}

/**
 * One data-modifying statement of a composed write: SQL with its own placeholders ($1..$n) and their values.
 * `writeAll` runs several as one statement (each a CTE), so a batch's writes cost one round trip, not one each.
 * Parts must not touch the same row twice (PostgreSQL forbids it within one statement) and can't see each
 * other's effects (one snapshot); `rows` parts are skipped.
 */
export interface WritePart {
  sql: string;
  params: unknown[];
  /** The CTE's name, for a later part that reads what this one RETURNs. */
  name?: string;
}

/**
 * With `expect`, the statement is an optimistic write: part `expect.part` must RETURN exactly `expect.rows` rows,
 * else the whole statement rolls back with SQLSTATE 40001 (`tollgate_expect_rows`; see optimisticConflict).
 */
export async function writeAll(m: EntityManager, parts: Array<WritePart | null>, expect?: { part: string; rows: number }): Promise<void> {
  const live = parts.filter((p): p is WritePart => p !== null);
  if (live.length === 0) return;
  if (live.length === 1 && !expect) {
    await m.query(prepared(live[0]!.sql), live[0]!.params);
    return;
  }
  const params: unknown[] = [];
  const ctes = live.map((p, i) => {
    const base = params.length;
    params.push(...p.params);
    return `${p.name ?? `w${i}`} AS (${p.sql.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + base}`)})`;
  });
  if (!expect) {
    await m.query(prepared(`WITH ${ctes.join(',\n')} SELECT 1`), params);
    return;
  }
  params.push(expect.rows);
  await m.query(prepared(`WITH ${ctes.join(',\n')} SELECT tollgate_expect_rows((SELECT count(*) FROM ${expect.part}), $${params.length})`), params);
}

/**
 * Did an optimistic write lose to a concurrent one? Its guard refused it (40001), or a row it meant to add was
 * added meanwhile (23505: the ledger seq it read as next, or a reservation id a retried call took first), or
 * PostgreSQL chose it as a deadlock's victim (40P01; the guarded write locks in org order as the locking writers do,
 * so this is a defence, not a path taken). Either way nothing of it was written, and deciding again under locks is
 * the answer.
 */
export function optimisticConflict(e: unknown): boolean {
  const code = sqlState(e);
  return code === '40001' || code === '23505' || code === '40P01';
}
