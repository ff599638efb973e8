import { existsSync, readFileSync } from 'node:fs';
import { PoolClient } from 'pg';
import { DataSource } from 'typeorm';
import { applyCharges, priceCall, Pricing } from '@tollgate/billing';
import { parseProfile, Profile, ProfileError } from '@tollgate/profiles';
import { pricingOf } from '@tollgate/ledger';
import { ReplayArgumentError } from './ledger-replay';

/**
 * `npm run replay -- --source ledger --profile FILE`: what the usage log would have cost under another profile.
 * Each org's calls are re-priced in occurred_at order with the consumer's own pricing (`priceCall` and the
 * re-access windows it keeps with `applyCharges`, starting empty), from what usage_records keeps of each call:
 * route, status, decision, the entities it was charged for (`charged_entities`) and how many it returned,
 * occurred_at. Nothing is written.
 *
 * Where it is approximate (each counted per org, and said in the README):
 * - a call's entities that were free under the history's pricing (re-accessed within the window, duplicates)
 *   are not stored, only their number: they stay free under the what-if, which may be wrong when its window is
 *   shorter or its pricing per entity where the history's was not;
 * - rows metered before charged_entities existed carry no ids at all: on a per-entity route they cost what they
 *   cost then, and feed no window;
 * - the calls are the ones that happened: whether the what-if's prices would have let each through (402) is not
 *   decided, and a route missing from the file costs nothing (metering would refuse its events).
 */
export interface WhatIfLine {
  orgId: string;
  calls: number;
  actual: number;
  whatIf: number;
  /** Calls whose what-if price rests on an assumption (see above). */
  approximate: number;
  /** Calls on routes the file does not have. */
  unknownRoute: number;
}

export interface WhatIfReport {
  profile: string;
  lines: WhatIfLine[];
  /** Orgs of other profiles, left out of an --all run. */
  otherProfiles: number;
}

/** Reads and validates a profile file; a bad one throws a ProfileError naming the file and the key. */
export function loadProfileFile(file: string): Profile {
  if (!existsSync(file)) throw new ProfileError(file, '(file)', 'not found');
  return parseProfile(readFileSync(file, 'utf8'), file);
}

interface UsageRow {
  org_id: string;
  method: string;
  route: string;
  status_code: number;
  decision: string;
  credits: string;
  cost_reason: string;
  entities: number;
  charged_entities: string[] | null;
  occurred_ms: string;
}

export async function whatIf(
  ds: DataSource,
  profile: Profile,
  which: string[] | 'all',
  progress?: (calls: number, total: number) => void,
): Promise<WhatIfReport> {
  const orgs: Array<{ id: string; profile: string }> =
    which === 'all'
      ? await ds.query(`SELECT id, profile FROM orgs ORDER BY id`)
      : await ds.query(`SELECT id, profile FROM orgs WHERE id = ANY($1::text[]) ORDER BY id`, [which]);
  if (which !== 'all') {
    const unknown = which.filter((id) => !orgs.some((o) => o.id === id));
    if (unknown.length > 0) throw new ReplayArgumentError(`no org ${unknown.map((id) => `"${id}"`).join(', ')}`);
    const foreign = orgs.filter((o) => o.profile !== profile.name);
    if (foreign.length > 0) {
      throw new ReplayArgumentError(
        `${foreign.map((o) => `org "${o.id}" uses profile "${o.profile}"`).join(', ')}; the file is profile "${profile.name}"`,
      );
    }
  }
  const ids = orgs.filter((o) => o.profile === profile.name).map((o) => o.id);
  const routes = new Map(profile.routes.map((r) => [`${r.method} ${r.path}`, pricingOf(r)]));
  const totalRows: Array<{ n: string }> = await ds.query(`SELECT count(*) AS n FROM usage_records WHERE org_id = ANY($1::text[])`, [ids]);
  const total = Number(totalRows[0]?.n ?? 0);

  const lines = new Map<string, WhatIfLine>();
  const runner = ds.createQueryRunner();
  const client = (await runner.connect()) as PoolClient;
  let done = 0;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(
      `DECLARE what_if NO SCROLL CURSOR FOR
         SELECT org_id, method, route, status_code, decision, credits, cost_reason, entities, charged_entities,
                (extract(epoch FROM occurred_at) * 1000)::int8 AS occurred_ms
           FROM usage_records WHERE org_id = ANY($1::text[]) ORDER BY org_id, occurred_at, id`,
      [ids],
    );
    let orgId: string | null = null;
    let windows = new Map<string, number>();
    for (;;) {
      const page = await client.query<UsageRow>(`FETCH 10000 FROM what_if`);
      for (const row of page.rows) {
        if (row.org_id !== orgId) {
          orgId = row.org_id;
          windows = new Map();
        }
        const line = lines.get(row.org_id) ?? { orgId: row.org_id, calls: 0, actual: 0, whatIf: 0, approximate: 0, unknownRoute: 0 };
        lines.set(row.org_id, line);
        line.calls++;
        line.actual += Number(row.credits);
        const pricing = routes.get(`${row.method} ${row.route}`);
        if (!pricing) {
          line.unknownRoute++;
          continue;
        }
        const priced = reprice(pricing, row, windows);
        line.whatIf += priced.credits;
        if (priced.approximate) line.approximate++;
      }
      done += page.rows.length;
      progress?.(done, total);
      if (page.rows.length < 10_000) break;
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    await runner.release();
  }
  return {
    profile: profile.name,
    lines: ids.map((id) => lines.get(id) ?? { orgId: id, calls: 0, actual: 0, whatIf: 0, approximate: 0, unknownRoute: 0 }),
    otherProfiles: orgs.length - ids.length,
  };
}

/** One call under the what-if pricing, with the org's windows so far (updated with what it pays for). */
function reprice(pricing: Pricing, row: UsageRow, windows: Map<string, number>): { credits: number; approximate: boolean } {
  // A 2xx whose hold the gateway gave back never reached the client: it costs nothing under any price.
  if (row.cost_reason === 'given_back') return { credits: 0, approximate: false };
  const at = Number(row.occurred_ms);
  const call = { statusCode: row.status_code, forwarded: row.decision === 'forwarded' };
  if (row.charged_entities === null && pricing.kind === 'per_entity' && row.entities > 0) {
    const paid = priceCall(pricing, { ...call, entities: ['?'] }, new Map(), at).credits > 0;
    return { credits: paid ? Number(row.credits) : 0, approximate: true };
  }
  const ids = row.charged_entities ?? [];
  const priced = priceCall(pricing, { ...call, entities: ids }, windows, at);
  applyCharges(windows, priced.chargedEntities, at);
  const unknownIds = row.entities > ids.length && pricing.kind === 'per_entity' && priced.reason !== 'free_status' && priced.reason !== 'rejected';
  return { credits: priced.credits, approximate: unknownIds };
}
