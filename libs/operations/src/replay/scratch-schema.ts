import { DataSource, EntityManager } from 'typeorm';
import { connectDatabase, databaseUrl } from '@tollgate/persistence';

/**
 * A replay's scratch schema: the whole schema, made by the same migrations, in `replay_kafka_<pid>`, and a data
 * source whose connections have `search_path` set to it alone. Metering's SQL names its tables unqualified, so
 * the consumer and ledger store write there unchanged, and a table the migrations did not create there is an
 * error, never a write to a live table.
 */
export class ScratchSchema {
  private constructor(
    readonly name: string,
    readonly ds: DataSource,
  ) {}

  static async create(live: DataSource, name: string, url = databaseUrl()): Promise<ScratchSchema> {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`scratch schema name "${name}" is not a plain identifier`);
    await live.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
    await live.query(`CREATE SCHEMA ${name}`);
    const ds = await connectDatabase({ url, migrate: true, poolSize: 2, searchPath: name });
    const schema: Array<{ s: string }> = await ds.query(`SELECT current_schema() AS s`);
    if (schema[0]?.s !== name) {
      await ds.destroy();
      throw new Error(`the scratch connection's schema is "${schema[0]?.s}", not "${name}": refusing to write`);
    }
    // The replay's own record of per-entity events (entities and the hold they named), to explain differences.
    await ds.query(`CREATE TABLE replayed_entities (event_id text NOT NULL, org_id text NOT NULL, reservation_id text, entities text[] NOT NULL)`);
    return new ScratchSchema(name, ds);
  }

  /** Drops the schema and everything in it. Safe to call twice. */
  async drop(live: DataSource): Promise<void> {
    if (this.ds.isInitialized) await this.ds.destroy().catch(() => undefined);
    await live.query(`DROP SCHEMA IF EXISTS ${this.name} CASCADE`);
  }
}

/**
 * What the replay compares against, copied from the live tables in one snapshot (REPEATABLE READ) once the live
 * consumer has metered the replayed range, into the scratch schema (`live_*` tables, never touched by the
 * consumer): live usage rows can then be compared while live metering goes on.
 * - live_accounts: each org's projection (balance, buckets, plan) at the snapshot;
 * - live_holds: reservations still held at the snapshot (credits and the buckets they came from; a lease's spent and
 *   returned, for what it still holds);
 * - live_entity_holds: every per-entity reservation (any status), to explain per-entity price differences;
 * - live_usage: every usage row of the orgs at the snapshot.
 * `alsoRead` runs in the same snapshot (the operator's commands, so they are exactly those the balances include).
 * Returns the snapshot's instant on the database clock and what `alsoRead` returned.
 */
export async function snapshotLive<T>(
  live: DataSource,
  schema: string,
  orgIds: string[],
  alsoRead: (m: EntityManager) => Promise<T>,
): Promise<{ asOf: number; read: T }> {
  return live.transaction('REPEATABLE READ', async (m) => {
    const now = ((await m.query(`SELECT clock_timestamp() AS now`)) as Array<{ now: Date }>)[0]!.now;
    await m.query(
      `CREATE TABLE ${schema}.live_accounts AS
         SELECT a.org_id, a.plan, a.balance, a.debt, a.next_seq, a.allowance_month, a.allowance_spent, a.granted_one_time, a.buckets, o.plan AS org_plan
           FROM accounts a JOIN orgs o ON o.id = a.org_id WHERE a.org_id = ANY($1::text[])`,
      [orgIds],
    );
    await m.query(
      `CREATE TABLE ${schema}.live_holds AS
         SELECT id, org_id, credits, allocation, kind, spent, returned FROM reservations WHERE status = 'held' AND org_id = ANY($1::text[])`,
      [orgIds],
    );
    await m.query(
      `CREATE TABLE ${schema}.live_entity_holds AS
         SELECT id, org_id, entities, occurred_at, held_at, closed_at, status FROM reservations
          WHERE org_id = ANY($1::text[]) AND cardinality(entities) > 0`,
      [orgIds],
    );
    await m.query(
      `CREATE TABLE ${schema}.live_usage AS
         SELECT event_id, org_id, occurred_at, method, route, credits, cost_reason FROM usage_records WHERE org_id = ANY($1::text[])`,
      [orgIds],
    );
    // Event ids are unique within their org (the same id under two orgs is two events).
    await m.query(`CREATE UNIQUE INDEX ON ${schema}.live_usage (org_id, event_id)`);
    // Holds the gateway gave back: an event naming one costs nothing (meterEvent's givenBack). The scratch
    // consumer reads them from its own reservations table, as live metering does; they are closed, so they
    // hold nothing and settle nothing there.
    await m.query(
      `INSERT INTO ${schema}.reservations (id, org_id, credits, allocation, route, entities, occurred_at, expires_at, status, closed_at, closed_by, held_at)
       SELECT id, org_id, credits, allocation, route, entities, occurred_at, expires_at, status, closed_at, closed_by, held_at
         FROM reservations WHERE status = 'released' AND closed_by = 'gateway' AND org_id = ANY($1::text[])`,
      [orgIds],
    );
    return { asOf: now.getTime(), read: await alsoRead(m) };
  });
}
