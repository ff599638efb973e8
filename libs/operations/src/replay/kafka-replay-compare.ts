import { DataSource } from 'typeorm';
import { Account, Allocation, leaseSlice, projectAccount } from '@tollgate/billing';
import { ProfileCatalog, toAccount } from '@tollgate/ledger';
import { RecordedOrg } from './recorded-commands';
import { safeJson } from './topic-feed';

// The kafka replay's comparison (kafka-replay.ts step 5): scratch against live, each difference with its reason.

export interface Difference {
  orgId: string;
  /** `event <id>`, `balance`, `plan`, `account`. */
  what: string;
  live: string;
  replayed: string;
  reason: string;
  explained: boolean;
}

interface EventRow {
  org_id: string;
  event_id: string;
  live: string | null;
  replayed: string;
  method: string;
  route: string;
  occurred_at: Date;
}

/**
 * The differences, each with a reason; `explained` when timing legitimately changed a price:
 * - a per-entity event whose entities another call of the org was holding credits for when it was metered live
 *   (live: free, that hold pays; replay: no holds, so the first event to arrive pays), and the holder's own event
 *   that the replay then found inside the re-access window;
 * - a per-entity event of an org whose events came on several partitions (their arrival order differs);
 * - a per-entity event when the topic no longer holds the oldest events (earlier charges of the window are gone).
 * A balance difference is explained when it is exactly what the explained event differences add up to.
 */
export async function compare(
  scratch: DataSource,
  catalog: ProfileCatalog,
  orgs: Map<string, RecordedOrg>,
  asOf: number,
  context: { truncated: boolean; multiPartition: Set<string> },
): Promise<Difference[]> {
  const out: Difference[] = [];
  const eventRows: EventRow[] = await scratch.query(
    `SELECT r.org_id, r.event_id, l.credits AS live, r.credits AS replayed, r.method, r.route, r.occurred_at
       FROM usage_records r LEFT JOIN live_usage l USING (org_id, event_id)
      WHERE l.event_id IS NULL OR l.credits <> r.credits
      ORDER BY r.org_id, r.occurred_at, r.event_id`,
  );
  // Per-entity events that differ: which holds of their org could have made them free live.
  const perEntity = eventRows.filter((r) => {
    const profile = orgs.get(r.org_id)?.profile ?? '';
    return catalog.route(profile, r.method, r.route)?.cost.kind === 'per_entity' && r.live !== null;
  });
  const key = (orgId: string, eventId: string) => `${orgId}/${eventId}`;
  const holdsByEvent = new Map<string, string[]>();
  if (perEntity.length > 0) {
    const rows: Array<{ org_id: string; event_id: string; hold_id: string }> = await scratch.query(
      `SELECT e.org_id, e.event_id, h.id AS hold_id
         FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS e(event_id, org_id, occurred_at)
         JOIN replayed_entities x ON x.org_id = e.org_id AND x.event_id = e.event_id
         JOIN live_entity_holds h ON h.org_id = e.org_id AND h.entities && x.entities
          AND h.id IS DISTINCT FROM x.reservation_id
          AND h.held_at <= e.occurred_at + interval '5 minutes'
          AND (h.closed_at IS NULL OR h.closed_at >= e.occurred_at)`,
      [perEntity.map((r) => r.event_id), perEntity.map((r) => r.org_id), perEntity.map((r) => r.occurred_at)],
    );
    for (const r of rows) holdsByEvent.set(key(r.org_id, r.event_id), [...(holdsByEvent.get(key(r.org_id, r.event_id)) ?? []), r.hold_id]);
  }
  const ownHold = new Map<string, string>();
  if (perEntity.length > 0) {
    const rows: Array<{ org_id: string; event_id: string; reservation_id: string }> = await scratch.query(
      `SELECT x.org_id, x.event_id, x.reservation_id FROM replayed_entities x
         JOIN unnest($1::text[], $2::text[]) AS e(org_id, event_id) ON x.org_id = e.org_id AND x.event_id = e.event_id
        WHERE x.reservation_id IS NOT NULL`,
      [perEntity.map((r) => r.org_id), perEntity.map((r) => r.event_id)],
    );
    for (const r of rows) ownHold.set(key(r.org_id, r.event_id), `${r.org_id}/${r.reservation_id}`);
  }
  const explainingHolds = new Set([...holdsByEvent].flatMap(([k, ids]) => ids.map((id) => `${k.split('/')[0]}/${id}`)));
  const explainedDelta = new Map<string, number>();
  for (const r of eventRows) {
    let reason: string;
    let explained = false;
    if (r.live === null) reason = 'metered by the replay, not live';
    else {
      const holds = holdsByEvent.get(key(r.org_id, r.event_id));
      const own = ownHold.get(key(r.org_id, r.event_id));
      const isPerEntity = perEntity.includes(r);
      if (holds) {
        reason = `entity paid by a still-held call live (reservation ${holds.join(', ')}); the replay holds nothing, so this event paid`;
        explained = true;
      } else if (own && explainingHolds.has(own)) {
        reason = `its hold (${own.slice(r.org_id.length + 1)}) paid live for an entity that, in the replay, an earlier event had paid`;
        explained = true;
      } else if (isPerEntity && context.multiPartition.has(r.org_id)) {
        reason = 're-access window: the org\'s events came on several partitions, so they arrive in another order';
        explained = true;
      } else if (isPerEntity && context.truncated) {
        reason = 're-access window: the charges before the oldest retained event are not in the topic';
        explained = true;
      } else reason = 'credits differ';
    }
    if (explained) explainedDelta.set(r.org_id, (explainedDelta.get(r.org_id) ?? 0) + Number(r.replayed) - Number(r.live));
    out.push({ orgId: r.org_id, what: `event ${r.event_id}`, live: r.live ?? 'none', replayed: r.replayed, reason, explained });
  }

  // Events live metered that the replay refused (its dead letters).
  const refused: Array<{ value: Buffer | null; reason: string }> = await scratch.query(`SELECT value, reason FROM dead_letters`);
  const refusedIds = new Map<string, string>();
  for (const d of refused) {
    const head = d.value ? safeJson(d.value) : null;
    if (head && typeof head.event_id === 'string' && typeof head.org_id === 'string') refusedIds.set(key(head.org_id, head.event_id), d.reason);
  }
  const refusedOrgs = [...refusedIds.keys()].map((k) => k.slice(0, k.indexOf('/')));
  const refusedEvents = [...refusedIds.keys()].map((k) => k.slice(k.indexOf('/') + 1));
  if (refusedIds.size > 0) {
    const rows: Array<{ org_id: string; event_id: string; credits: string }> = await scratch.query(
      `SELECT l.org_id, l.event_id, l.credits FROM live_usage l JOIN unnest($1::text[], $2::text[]) AS d(org_id, event_id)
          ON l.org_id = d.org_id AND l.event_id = d.event_id ORDER BY l.org_id, l.event_id`,
      [refusedOrgs, refusedEvents],
    );
    for (const r of rows) {
      out.push({ orgId: r.org_id, what: `event ${r.event_id}`, live: r.credits, replayed: 'none', reason: `refused by the replay: ${refusedIds.get(key(r.org_id, r.event_id))}`, explained: false });
    }
  }

  // Balances: both projected to the snapshot; live without its holds and without events the replay did not read.
  const accounts: Array<Record<string, unknown> & { org_id: string; side: 'live' | 'replayed'; org_plan: string | null }> = await scratch.query(
    `SELECT 'live' AS side, org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets, org_plan FROM live_accounts
     UNION ALL
     SELECT 'replayed', a.org_id, a.plan, a.balance, a.debt, a.next_seq, a.allowance_month, a.allowance_spent, a.granted_one_time, a.buckets, o.plan FROM accounts a JOIN orgs o ON o.id = a.org_id`,
  );
  // What each still-held reservation holds: a hold all its allocation, a lease what its calls did not spend and its
  // gateway did not return (leaseSlice).
  const holds: Array<{ org_id: string; allocation: Allocation[] }> = (
    await scratch.query(`SELECT org_id, allocation, kind, credits, spent, returned FROM live_holds`)
  ).map((h: { org_id: string; allocation: Allocation[]; kind: string; credits: string; spent: string; returned: string }) => ({
    org_id: h.org_id,
    allocation: h.kind === 'lease' ? leaseSlice(h.allocation, Number(h.spent), Number(h.credits) - Number(h.returned)) : h.allocation,
  }));
  const unreplayed: Array<{ org_id: string; credits: string }> = await scratch.query(
    `SELECT l.org_id, SUM(l.credits) AS credits FROM live_usage l
      WHERE NOT EXISTS (SELECT 1 FROM usage_records r WHERE r.org_id = l.org_id AND r.event_id = l.event_id)
        AND NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS d(org_id, event_id) WHERE d.org_id = l.org_id AND d.event_id = l.event_id)
      GROUP BY l.org_id`,
    [refusedOrgs, refusedEvents],
  );
  const notReplayed = new Map(unreplayed.map((r) => [r.org_id, Number(r.credits)]));
  type Side = { live?: Account; replayed?: Account; livePlan?: string; broken?: string };
  const sides = new Map<string, Side>();
  for (const a of accounts) {
    const s = sides.get(a.org_id) ?? {};
    let account = toAccount(a as unknown as Parameters<typeof toAccount>[0]);
    try {
      account = projectAccount(account, asOf);
    } catch (e) {
      // A projection that breaks the deciders' invariants (balance != buckets - debt) can't be rolled: compare as is.
      s.broken = `${a.side === 'live' ? 'live' : 'replayed'} projection: ${(e as Error).message}`;
    }
    if (a.side === 'live') {
      s.live = account;
      s.livePlan = a.org_plan ?? undefined;
    } else s.replayed = account;
    sides.set(a.org_id, s);
  }
  for (const orgId of [...orgs.keys()].sort()) {
    const s = sides.get(orgId);
    if (!s?.live && !s?.replayed) continue;
    if (!s.live || !s.replayed) {
      out.push({ orgId, what: 'account', live: s.live ? 'present' : 'missing', replayed: s.replayed ? 'present' : 'missing', reason: 'one side has no account', explained: false });
      continue;
    }
    if (s.broken) out.push({ orgId, what: 'account', live: 'inconsistent', replayed: '', reason: s.broken, explained: false });
    const liveBuckets = new Set(s.live.buckets.map((b) => b.id));
    const held = holds
      .filter((h) => h.org_id === orgId)
      .reduce((sum, h) => sum + h.allocation.filter((a) => liveBuckets.has(a.bucketId)).reduce((x, a) => x + Number(a.credits), 0), 0);
    const liveComparable = s.live.balance + held + (notReplayed.get(orgId) ?? 0);
    if (liveComparable !== s.replayed.balance) {
      const expected = -(explainedDelta.get(orgId) ?? 0);
      const explained = expected !== 0 && s.replayed.balance - liveComparable === expected;
      const parts = [`live balance ${s.live.balance}`, held ? `+ ${held} held` : '', notReplayed.get(orgId) ? `+ ${notReplayed.get(orgId)} of events not replayed` : '']
        .filter(Boolean)
        .join(' ');
      out.push({
        orgId,
        what: 'balance',
        live: String(liveComparable),
        replayed: String(s.replayed.balance),
        reason: explained ? `follows from the explained event differences (${parts})` : `balances differ (${parts})`,
        explained,
      });
    }
    if (s.livePlan && s.replayed.plan.name !== s.livePlan) {
      out.push({ orgId, what: 'plan', live: s.livePlan, replayed: s.replayed.plan.name, reason: 'a plan change the ledger has no entry of (nothing to adjust) cannot be replayed', explained: false });
    }
  }
  return out;
}
